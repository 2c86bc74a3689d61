// The HTTP layer (common/http/) over real loopback sockets on port 0: routing, keep-alive,
// pipelining, limits (413, 431), the absolute request deadline (408), the connection cap (503),
// asynchronous and dropped responders, 100-continue, chunked bodies, Stop() with requests in
// flight, option validation and the accept back-off when the process is out of descriptors.
#include "common/http/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/http/http_router.h"
#include "common/http/http_types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/http_conn.h"

namespace rerank {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using json = nlohmann::json;
using testing::HttpConn;
using testing::RawResponse;

json Parse(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << body;
  return j;
}

std::string Get(const std::string& target, const std::string& extra_headers = "") {
  return absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: t\r\n", extra_headers, "\r\n");
}

std::string Post(const std::string& target, const std::string& body,
                 const std::string& extra_headers = "") {
  return absl::StrCat("POST ", target, " HTTP/1.1\r\nHost: t\r\nContent-Length: ", body.size(),
                      "\r\n", extra_headers, "\r\n", body);
}

HttpResponse Echo(const HttpRequest& r) {
  HttpResponse out;
  out.body = json{{"method", r.method},   {"path", r.path}, {"query", r.query},    {"body", r.body},
                  {"headers", r.headers}, {"peer", r.peer}, {"version", r.version}}
                 .dump();
  return out;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (server_ != nullptr) server_->Stop();
    {
      absl::MutexLock lock(&mu_);
      held_.clear();  // answers 500 into a stopped server: a no-op
    }
    for (std::thread& t : later_) t.join();
  }

  HttpServer::Options Defaults() {
    HttpServer::Options o;
    o.listen = "127.0.0.1:0";
    o.name = "test-http";
    return o;
  }

  // Routes:  GET|POST /echo  the request as JSON (synchronous)
  //          GET /later?ms=N  answered from another thread after N ms
  //          GET /hold        the responder is kept in held_ until the test answers it
  //          GET /drop        the responder is dropped unanswered
  //          GET /throw       the synchronous handler throws
  HttpRouter MakeRouter(HttpErrorRenderer render = JsonErrorResponse) {
    HttpRouter router(render);
    EXPECT_TRUE(router.Add("GET", "/echo", SyncHttpHandler(Echo)).ok());
    EXPECT_TRUE(router.Add("POST", "/echo", SyncHttpHandler(Echo)).ok());
    EXPECT_TRUE(router
                    .Add("GET", "/later",
                         [this](HttpRequest req, HttpResponder responder) {
                           int ms = 0;
                           (void)absl::SimpleAtoi(req.query.substr(req.query.find('=') + 1), &ms);
                           absl::MutexLock lock(&mu_);
                           later_.emplace_back([ms, req, r = std::move(responder)]() mutable {
                             absl::SleepFor(absl::Milliseconds(ms));
                             HttpResponse out = Echo(req);
                             out.headers.emplace_back("X-Answered-By", "another thread");
                             r.Respond(std::move(out));
                           });
                         })
                    .ok());
    EXPECT_TRUE(router
                    .Add("GET", "/hold",
                         [this](HttpRequest, HttpResponder responder) {
                           absl::MutexLock lock(&mu_);
                           held_.push_back(std::move(responder));
                         })
                    .ok());
    EXPECT_TRUE(router.Add("GET", "/drop", [](HttpRequest, HttpResponder) {}).ok());
    EXPECT_TRUE(router
                    .Add("GET", "/throw", SyncHttpHandler([](const HttpRequest&) -> HttpResponse {
                           throw std::runtime_error("boom");
                         }))
                    .ok());
    return router;
  }

  void Start(HttpServer::Options o) {
    HttpRouter router = MakeRouter(o.render_error ? o.render_error : JsonErrorResponse);
    absl::StatusOr<std::unique_ptr<HttpServer>> s = HttpServer::Start(o, router.AsHandler());
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
  }
  void Start() { Start(Defaults()); }
  int port() const { return server_->port(); }

  // Waits (up to 10 s) for a responder the /hold route kept, and takes it.
  HttpResponder TakeHeld() {
    const bool held = Eventually([&] {
      absl::MutexLock lock(&mu_);
      return !held_.empty();
    });
    absl::MutexLock lock(&mu_);
    if (!held) return HttpResponder();
    HttpResponder r = std::move(held_.back());
    held_.pop_back();
    return r;
  }

  // Polls `pred` for up to 10 s.
  template <typename Pred>
  bool Eventually(Pred pred) {
    for (int i = 0; i < 1000; ++i) {
      if (pred()) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return pred();
  }

  std::unique_ptr<HttpServer> server_;
  absl::Mutex mu_;
  std::vector<HttpResponder> held_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> later_;  // joined in TearDown
};

TEST_F(HttpServerTest, RequestFieldsAnd404And405) {
  Start();
  HttpConn c(port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Send(Get("/echo?a=1&b=two", "X-Multi: 1\r\nx-multi: 2\r\nX-Case: V\r\n")));
  std::optional<RawResponse> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("content-type"), "application/json");
  json j = Parse(r->body);
  EXPECT_EQ(j["method"], "GET");
  EXPECT_EQ(j["path"], "/echo");
  EXPECT_EQ(j["query"], "a=1&b=two");
  EXPECT_EQ(j["headers"]["x-multi"], "1, 2");
  EXPECT_EQ(j["headers"]["x-case"], "V");
  EXPECT_EQ(j["headers"]["host"], "t");
  EXPECT_EQ(j["peer"], "127.0.0.1");
  EXPECT_EQ(j["version"], 11);

  ASSERT_TRUE(c.Send(Get("/nope?x=1")));
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(Parse(r->body)["error"], "no such endpoint: /nope");

  ASSERT_TRUE(c.Send("DELETE /echo HTTP/1.1\r\nHost: t\r\n\r\n"));
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->header("allow"), "GET, POST");
  EXPECT_THAT(Parse(r->body)["error"].get<std::string>(), HasSubstr("DELETE not allowed"));
  EXPECT_EQ(server_->stats().accepted_connections, 1);  // all on one connection
  EXPECT_EQ(server_->stats().requests, 3);
}

TEST_F(HttpServerTest, KeepAliveConnectionCloseAndHttp10) {
  Start();
  HttpConn c(port());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.Send(Post("/echo", absl::StrCat("body", i))));
    std::optional<RawResponse> r = c.Read();
    ASSERT_TRUE(r.has_value()) << i;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("connection"), "");  // HTTP/1.1: keep-alive is the default
    EXPECT_EQ(Parse(r->body)["body"], absl::StrCat("body", i));
  }
  EXPECT_TRUE(c.OpenAndSilent());
  ASSERT_TRUE(c.Send(Get("/echo", "Connection: close\r\n")));
  std::optional<RawResponse> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->header("connection"), "close");
  EXPECT_TRUE(c.WaitClosed(absl::Seconds(5)));
  EXPECT_EQ(server_->stats().accepted_connections, 1);

  HttpConn old(port());
  ASSERT_TRUE(old.Send("GET /echo HTTP/1.0\r\n\r\n"));
  r = old.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_THAT(r->status_line, StartsWith("HTTP/1.0 200"));
  EXPECT_EQ(Parse(r->body)["version"], 10);
  EXPECT_TRUE(old.WaitClosed(absl::Seconds(5)));

  HttpConn old_keep(port());  // HTTP/1.0 asking for keep-alive gets it
  ASSERT_TRUE(old_keep.Send("GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  r = old_keep.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->header("connection"), "keep-alive");
  ASSERT_TRUE(old_keep.Send("GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  EXPECT_TRUE(old_keep.Read().has_value());
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  Start();
  HttpConn c(port());
  // The first is answered 200 ms later from another thread, the others at once: order holds.
  ASSERT_TRUE(c.Send(Get("/later?ms=200") + Post("/echo", "second") + Get("/echo?third")));
  std::optional<RawResponse> first = c.Read();
  std::optional<RawResponse> second = c.Read();
  std::optional<RawResponse> third = c.Read();
  ASSERT_TRUE(first && second && third);
  EXPECT_EQ(first->header("x-answered-by"), "another thread");
  EXPECT_EQ(Parse(first->body)["path"], "/later");
  EXPECT_EQ(Parse(second->body)["body"], "second");
  EXPECT_EQ(Parse(third->body)["query"], "third");
}

TEST_F(HttpServerTest, HandlerAnswersFromAnotherThreadLater) {
  Start();
  HttpConn c(port());
  const absl::Time start = absl::Now();
  ASSERT_TRUE(c.Send(Get("/later?ms=150")));
  std::optional<RawResponse> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("x-answered-by"), "another thread");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(150));
  // Held and answered by the test thread, twice: the second is refused.
  ASSERT_TRUE(c.Send(Get("/hold")));
  HttpResponder held = TakeHeld();
  EXPECT_FALSE(held.answered());
  HttpResponse ok;
  ok.body = R"({"held": true})";
  EXPECT_TRUE(held.Respond(ok));
  EXPECT_TRUE(held.answered());
  EXPECT_FALSE(held.Respond(ok));
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(Parse(r->body)["held"], true);
}

TEST_F(HttpServerTest, DroppedResponderOrThrowingHandlerIs500) {
  Start();
  HttpConn c(port());
  ASSERT_TRUE(c.Send(Get("/drop")));
  std::optional<RawResponse> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
  EXPECT_THAT(Parse(r->body)["error"].get<std::string>(), HasSubstr("did not answer"));
  ASSERT_TRUE(c.Send(Get("/throw")));
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
  ASSERT_TRUE(c.Send(Get("/echo")));  // the connection survives both
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, BodyOverTheLimitIs413WithoutReadingIt) {
  HttpServer::Options o = Defaults();
  o.max_body_bytes = 100;
  Start(o);
  {  // Exactly at the limit: fine.
    HttpConn c(port());
    ASSERT_TRUE(c.Send(Post("/echo", std::string(100, 'x'))));
    std::optional<RawResponse> r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
  }
  {  // Declared too large: refused from the headers; the body is never sent.
    HttpConn c(port());
    ASSERT_TRUE(c.Send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n"));
    std::optional<RawResponse> r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 413);
    EXPECT_THAT(Parse(r->body)["error"].get<std::string>(), HasSubstr("exceeds 100 bytes"));
    EXPECT_EQ(r->header("connection"), "close");
    EXPECT_TRUE(c.WaitClosed(absl::Seconds(5)));
  }
  {  // With "Expect: 100-continue": 413 instead of 100 Continue.
    HttpConn c(port());
    ASSERT_TRUE(
        c.Send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n"
               "Expect: 100-continue\r\n\r\n"));
    std::optional<RawResponse> r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 413);
  }
  {  // Chunked: the decoded body crosses the limit mid-stream.
    HttpConn c(port());
    ASSERT_TRUE(
        c.Send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               "40\r\n" +
               std::string(64, 'a') + "\r\n40\r\n" + std::string(64, 'b') + "\r\n0\r\n\r\n"));
    std::optional<RawResponse> r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 413);
  }
  {  // A large body sent in full anyway: the client still reads its 413 (no reset).
    HttpConn c(port());
    ASSERT_TRUE(c.Send(Post("/echo", std::string(200 * 1024, 'z'))));
    std::optional<RawResponse> r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 413);
  }
}

TEST_F(HttpServerTest, HeadersOverTheLimitAre431AndGarbageIs400) {
  HttpServer::Options o = Defaults();
  o.max_header_bytes = 2048;
  Start(o);
  {
    HttpConn c(port());
    ASSERT_TRUE(c.Send(Get("/echo", "X-Big: " + std::string(4096, 'a') + "\r\n")));
    std::optional<RawResponse> r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 431);
    EXPECT_THAT(Parse(r->body)["error"].get<std::string>(), HasSubstr("2048"));
    EXPECT_TRUE(c.WaitClosed(absl::Seconds(5)));
  }
  {  // Just under the limit: served.
    HttpConn c(port());
    ASSERT_TRUE(c.Send(Get("/echo", "X-Big: " + std::string(1800, 'a') + "\r\n")));
    std::optional<RawResponse> r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
  }
  for (const char* garbage : {"HELLO\r\n\r\n", "GET /echo HTTP/9.9\r\n\r\n",
                              "GET /echo HTTP/1.1\r\nNo colon here\r\n\r\n",
                              "POST /echo HTTP/1.1\r\nContent-Length: x\r\n\r\n"}) {
    HttpConn c(port());
    ASSERT_TRUE(c.Send(garbage));
    std::optional<RawResponse> r = c.Read();
    ASSERT_TRUE(r.has_value()) << garbage;
    EXPECT_EQ(r->status, 400) << garbage;
    EXPECT_THAT(Parse(r->body)["error"].get<std::string>(), HasSubstr("malformed HTTP request"));
    EXPECT_TRUE(c.WaitClosed(absl::Seconds(5)));
  }
}

TEST_F(HttpServerTest, TricklingRequestGets408AtItsAbsoluteDeadline) {
  HttpServer::Options o = Defaults();
  o.request_timeout_ms = 500;
  Start(o);
  HttpConn c(port());
  const std::string request = Get("/echo", "X-Pad: " + std::string(200, 'p') + "\r\n");
  const absl::Time start = absl::Now();
  // One byte every 50 ms: each byte is progress, but the deadline counts from the first.
  size_t sent = 0;
  while (sent < request.size() - 1 && c.OpenAndSilent()) {
    ASSERT_TRUE(c.Send(request.substr(sent++, 1)));
    absl::SleepFor(absl::Milliseconds(50));
  }
  std::optional<RawResponse> r = c.Read();
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 408);
  EXPECT_THAT(Parse(r->body)["error"].get<std::string>(), HasSubstr("500 ms"));
  EXPECT_GE(took, absl::Milliseconds(450));
  EXPECT_LT(took, absl::Milliseconds(2500)) << "the deadline was not absolute";
  EXPECT_LT(sent, request.size() - 1);
  EXPECT_TRUE(c.WaitClosed(absl::Seconds(5)));
  EXPECT_EQ(server_->stats().timeouts, 1);
}

TEST_F(HttpServerTest, SlowHandlerGets408AndItsLateAnswerIsDropped) {
  HttpServer::Options o = Defaults();
  o.request_timeout_ms = 300;
  Start(o);
  HttpConn c(port());
  ASSERT_TRUE(c.Send(Get("/hold")));
  HttpResponder held = TakeHeld();
  std::optional<RawResponse> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 408);
  EXPECT_TRUE(c.WaitClosed(absl::Seconds(5)));
  EXPECT_TRUE(held.Respond(HttpResponse()));  // accepted, and dropped: the client has its 408
  HttpConn next(port());                      // the server is fine
  ASSERT_TRUE(next.Send(Get("/echo")));
  r = next.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionsAreClosed) {
  HttpServer::Options o = Defaults();
  o.idle_timeout_ms = 200;
  o.request_timeout_ms = 5000;
  Start(o);
  HttpConn c(port());
  ASSERT_TRUE(c.Send(Get("/echo")));
  ASSERT_TRUE(c.Read().has_value());
  const absl::Time start = absl::Now();
  EXPECT_TRUE(c.WaitClosed(absl::Seconds(5)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(150));
  EXPECT_TRUE(Eventually([&] { return server_->stats().open_connections == 0; }));
}

TEST_F(HttpServerTest, ConnectionsBeyondTheCapAreRefusedWith503) {
  HttpServer::Options o = Defaults();
  o.max_connections = 2;
  Start(o);
  HttpConn a(port()), b(port());
  ASSERT_TRUE(a.Send("GET /ec"));  // partial requests: both connections stay open
  ASSERT_TRUE(b.Send("GET /ec"));
  ASSERT_TRUE(Eventually([&] { return server_->stats().open_connections == 2; }));
  HttpConn refused(port());
  ASSERT_TRUE(refused.connected());
  std::optional<RawResponse> r = refused.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 503);
  EXPECT_THAT(Parse(r->body)["error"].get<std::string>(), HasSubstr("max_connections 2"));
  EXPECT_EQ(r->header("connection"), "close");
  EXPECT_TRUE(refused.WaitClosed(absl::Seconds(5)));
  EXPECT_EQ(server_->stats().refused_connections, 1);

  a.Close();  // frees a slot
  ASSERT_TRUE(Eventually([&] { return server_->stats().open_connections == 1; }));
  HttpConn c(port());
  ASSERT_TRUE(c.Send(Get("/echo")));
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  ASSERT_TRUE(b.Send("ho HTTP/1.1\r\n\r\n"));  // b was kept all along
  r = b.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, ExpectContinueAndChunkedBodies) {
  Start();
  HttpConn c(port());
  ASSERT_TRUE(
      c.Send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
             "Expect: 100-continue\r\n\r\n"));
  ASSERT_TRUE(c.ReadUntil("\r\n\r\n"));
  EXPECT_EQ(c.Take(25), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(c.Send("hello"));
  std::optional<RawResponse> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(Parse(r->body)["body"], "hello");

  ASSERT_TRUE(
      c.Send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"));
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(Parse(r->body)["body"], "hello, world");
}

TEST_F(HttpServerTest, StopClosesIdleConnectionsAndLetsInFlightRequestsAnswer) {
  Start();
  const int p = port();
  HttpConn busy(p), idle(p), partial(p);
  ASSERT_TRUE(busy.Send(Get("/hold")));
  ASSERT_TRUE(partial.Send("GET /echo HTTP/1.1\r\n"));
  HttpResponder held = TakeHeld();
  ASSERT_TRUE(Eventually([&] { return server_->stats().open_connections == 3; }));

  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    server_->Stop();
    stopped = true;
  });
  EXPECT_TRUE(idle.WaitClosed(absl::Seconds(5)));
  EXPECT_TRUE(partial.WaitClosed(absl::Seconds(5)));
  EXPECT_TRUE(Eventually([&] { return !HttpConn(p).connected(); })) << "still accepting";
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(stopped.load()) << "Stop() did not wait for the request in flight";
  HttpResponse ok;
  ok.body = "{}";
  EXPECT_TRUE(held.Respond(ok));
  std::optional<RawResponse> r = busy.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("connection"), "close");
  EXPECT_TRUE(busy.WaitClosed(absl::Seconds(5)));
  stopper.join();
  EXPECT_TRUE(stopped.load());
}

TEST_F(HttpServerTest, StopIsBoundedWhenAHandlerNeverAnswers) {
  HttpServer::Options o = Defaults();
  o.stop_timeout_ms = 200;
  Start(o);
  HttpConn busy(port());
  ASSERT_TRUE(busy.Send(Get("/hold")));
  HttpResponder held = TakeHeld();
  const absl::Time start = absl::Now();
  server_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_TRUE(busy.WaitClosed(absl::Seconds(5)));
  server_.reset();                            // the responder outlives the server:
  EXPECT_TRUE(held.Respond(HttpResponse()));  // answering is a harmless no-op
}

TEST_F(HttpServerTest, CustomErrorDialect) {
  HttpServer::Options o = Defaults();
  o.max_body_bytes = 10;
  o.render_error = [](int status, std::string_view message) {
    HttpResponse r;
    r.status = status;
    r.body = json{{"message", std::string(message)}, {"code", status}}.dump();
    return r;
  };
  Start(o);  // the router renders with the same function
  HttpConn c(port());
  ASSERT_TRUE(c.Send(Get("/nope")));
  std::optional<RawResponse> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(Parse(r->body), json({{"message", "no such endpoint: /nope"}, {"code", 404}}));
  ASSERT_TRUE(c.Send(Get("/drop")));
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(Parse(r->body)["code"], 500);
  ASSERT_TRUE(c.Send(Post("/echo", std::string(11, 'x'))));
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  EXPECT_THAT(Parse(r->body)["message"].get<std::string>(), HasSubstr("exceeds 10 bytes"));
}

TEST_F(HttpServerTest, OptionsAreValidated) {
  auto start = [](const HttpServer::Options& o) {
    return HttpServer::Start(o, SyncHttpHandler(Echo)).status();
  };
  struct Bad {
    const char* field;
    std::function<void(HttpServer::Options&)> set;
  };
  const std::vector<Bad> bad = {
      {"io_threads", [](auto& o) { o.io_threads = 0; }},
      {"max_connections", [](auto& o) { o.max_connections = 0; }},
      {"max_header_bytes", [](auto& o) { o.max_header_bytes = 100; }},
      {"max_body_bytes", [](auto& o) { o.max_body_bytes = size_t{2} << 30; }},
      {"request_timeout_ms", [](auto& o) { o.request_timeout_ms = 0; }},
      {"idle_timeout_ms", [](auto& o) { o.idle_timeout_ms = -1; }},
      {"accept_backoff", [](auto& o) { o.accept_backoff_max_ms = 1; }},
      {"stop_timeout_ms", [](auto& o) { o.stop_timeout_ms = -1; }},
      {"web.listen", [](auto& o) { o.listen = "127.0.0.1:99999"; }},
      {"web.listen", [](auto& o) { o.listen = "127.0.0.1"; }},
      {"web.listen", [](auto& o) { o.listen = "::1:80"; }},
      {"web.listen", [](auto& o) { o.listen = ""; }},
  };
  for (const Bad& b : bad) {
    HttpServer::Options o = Defaults();
    o.listen_key = "web.listen";
    b.set(o);
    absl::Status s = start(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.field << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(b.field));
  }
  EXPECT_EQ(HttpServer::Start(Defaults(), nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);

  Start();
  HttpServer::Options taken = Defaults();
  taken.listen = absl::StrCat("127.0.0.1:", port());
  taken.listen_key = "web.listen";
  absl::Status s = start(taken);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("web.listen"));

  {
    HttpServer::Options o = Defaults();
    o.listen = "localhost:0";  // a name (it may resolve to ::1 first: no IPv4 client here)
    absl::StatusOr<std::unique_ptr<HttpServer>> server =
        HttpServer::Start(o, SyncHttpHandler(Echo));
    ASSERT_TRUE(server.ok()) << server.status();
    EXPECT_NE((*server)->port(), 0);
  }
  for (const char* good : {":0", "*:0"}) {
    HttpServer::Options o = Defaults();
    o.listen = good;
    absl::StatusOr<std::unique_ptr<HttpServer>> server =
        HttpServer::Start(o, SyncHttpHandler(Echo));
    ASSERT_TRUE(server.ok()) << good << ": " << server.status();
    EXPECT_NE((*server)->port(), 0);
    HttpConn c((*server)->port());  // every interface includes IPv4 loopback
    ASSERT_TRUE(c.Send(Get("/any")));
    std::optional<RawResponse> r = c.Read();
    ASSERT_TRUE(r.has_value()) << good;
    EXPECT_EQ(r->status, 200);
  }
}

// The process runs out of descriptors: accept() fails with EMFILE while the listening socket
// stays readable. The server must pause (and log), not spin, and recover once descriptors free up.
TEST_F(HttpServerTest, AcceptFailuresBackOffInsteadOfSpinning) {
  HttpServer::Options o = Defaults();
  o.accept_backoff_initial_ms = 10;
  o.accept_backoff_max_ms = 100;
  Start(o);
  // Sockets created (not connected) while descriptors are still available.
  std::vector<int> fds;
  for (int i = 0; i < 3; ++i) fds.push_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  const int lowest_free = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(lowest_free, 0);
  ::close(lowest_free);
  rlimit tight = old;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);  // no descriptor can be created now
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int fd : fds) {
    // The kernel completes the handshake; the server's accept() fails with EMFILE.
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  rusage before{}, after{};
  ::getrusage(RUSAGE_SELF, &before);
  absl::SleepFor(absl::Seconds(1));
  ::getrusage(RUSAGE_SELF, &after);
  const int64_t failures = server_->stats().accept_failures;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
  auto cpu = [](const rusage& u) {
    return absl::DurationFromTimeval(u.ru_utime) + absl::DurationFromTimeval(u.ru_stime);
  };
  const absl::Duration used = cpu(after) - cpu(before);
  EXPECT_LT(used, absl::Milliseconds(300)) << "the acceptor spun";
  EXPECT_GE(failures, 3);
  EXPECT_LE(failures, 40);  // 10, 20, 40, 80, then every 100 ms: about 13 in a second
  std::cout << "accept failures in 1 s: " << failures << ", CPU used: " << used << "\n";
  // Descriptors are back: the waiting connections are served.
  for (int fd : fds) {
    const std::string req = Get("/echo", "Connection: close\r\n");
    ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[64] = {};
    ASSERT_GT(::recv(fd, buf, sizeof(buf) - 1, 0), 0);
    EXPECT_THAT(std::string(buf), StartsWith("HTTP/1.1 200 "));
    ::close(fd);
  }
}

TEST(HttpRouterTest, AddValidates) {
  HttpRouter router;
  HttpHandler h = SyncHttpHandler(Echo);
  EXPECT_TRUE(router.Add("GET", "/a", h).ok());
  EXPECT_TRUE(router.Add("POST", "/a", h).ok());
  EXPECT_THAT(router.Add("GET", "/a", h).message(), HasSubstr("'GET /a': added twice"));
  EXPECT_FALSE(router.Add("", "/b", h).ok());
  EXPECT_FALSE(router.Add("GET", "b", h).ok());
  EXPECT_FALSE(router.Add("GET", "/b?x=1", h).ok());
  EXPECT_FALSE(router.Add("GET", "/b", nullptr).ok());
}

// The router and responders without a server: a slot that records what it gets.
class RecordingSlot : public HttpResponseSlot {
 public:
  void Deliver(std::optional<HttpResponse> response) override {
    ++calls;
    got = std::move(response);
  }
  int calls = 0;
  std::optional<HttpResponse> got;
};

TEST(HttpResponderTest, AnswersExactlyOnceAndDroppingAnswersNullopt) {
  auto slot = std::make_shared<RecordingSlot>();
  {
    HttpResponder r(slot);
    HttpResponder moved = std::move(r);
    EXPECT_FALSE(r.Respond(HttpResponse()));  // NOLINT(bugprone-use-after-move): moved from
  }                                           // `moved` is destroyed unanswered
  EXPECT_EQ(slot->calls, 1);
  EXPECT_FALSE(slot->got.has_value());

  auto slot2 = std::make_shared<RecordingSlot>();
  HttpRequest req;
  req.method = "PUT";
  req.path = "/a";
  HttpRouter router;
  ASSERT_TRUE(router.Add("GET", "/a", SyncHttpHandler(Echo)).ok());
  router.Handle(req, HttpResponder(slot2));
  ASSERT_EQ(slot2->calls, 1);
  ASSERT_TRUE(slot2->got.has_value());
  EXPECT_EQ(slot2->got->status, 405);
}

}  // namespace
}  // namespace rerank
