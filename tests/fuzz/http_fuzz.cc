// Fuzz target: the HTTP layer (common/http/) as a client reaches it: raw bytes over a real
// loopback connection into a running HttpServer (Boost.Beast parser, connection state machine:
// keep-alive, pipelining, 100-continue, chunked bodies, limits) and an HttpRouter with a few
// routes. The server is started once; every input is one connection that sends the bytes,
// half-closes and reads until the server closes.
//
// Why a socket rather than calling the parser: the parsing is not separable from the connection
// code (Session reads through beast::http::async_read on the socket), and the state machine
// (pipelining, limits, lingering close) is the part worth fuzzing. Loopback costs a connection
// per input, which is fast enough (thousands per second).
//
// Properties checked beyond "no crash, no sanitizer report":
//  - the server always closes the connection (no hang) once the client has sent everything;
//  - what it sends back is a sequence of complete, well-formed HTTP/1.x responses.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http.hpp"
#include "common/http/http_router.h"
#include "common/http/http_server.h"
#include "common/http/http_types.h"
#include "spdlog/spdlog.h"
#include "tests/fuzz/fuzz_util.h"

namespace rerank {
namespace {

namespace bhttp = boost::beast::http;

HttpServer& Server() {
  static HttpServer* const kServer = [] {
    spdlog::set_level(spdlog::level::off);  // the server logs dropped headers, throwing handlers
    static HttpRouter router;
    auto add = [](const std::string& method, const std::string& path, HttpHandler h) {
      absl::Status s = router.Add(method, path, std::move(h));
      FUZZ_CHECK(s.ok(), "%s", s.ToString().c_str());
    };
    add("GET", "/health", SyncHttpHandler([](const HttpRequest&) {
          return HttpResponse{200, "text/plain", "ok\n", {}};
        }));
    // Echoes what the handler saw; "x-echo" comes back as a response header (the server must
    // drop it when it holds CR or LF).
    auto echo = [](const HttpRequest& r) {
      HttpResponse out;
      out.content_type = "text/plain";
      out.body = absl::StrCat(r.method, " ", r.path, "?", r.query, " v", r.version, " ",
                              r.headers.size(), " headers\n", r.body);
      if (auto e = r.header("x-echo")) out.headers.emplace_back("x-echo", *e);
      return out;
    };
    add("POST", "/echo", SyncHttpHandler(echo));
    add("PUT", "/echo", SyncHttpHandler(echo));
    // Answers with the status the query names (invalid ones must become 500).
    add("GET", "/status", SyncHttpHandler([](const HttpRequest& r) {
          int status = 200;
          if (!absl::SimpleAtoi(r.query, &status)) status = 400;
          return HttpResponse{status, "", "", {}};
        }));
    add("GET", "/throw", SyncHttpHandler([](const HttpRequest&) -> HttpResponse {
          throw std::runtime_error("fuzz");
        }));
    add("GET", "/drop", [](HttpRequest, HttpResponder) {});  // never answers: 500
    HttpServer::Options o;
    o.name = "fuzz-http";
    o.io_threads = 1;
    o.max_header_bytes = 1024;
    o.max_body_bytes = 4096;
    o.request_timeout_ms = 5000;
    o.idle_timeout_ms = 5000;
    auto server = HttpServer::Start(o, router.AsHandler());
    FUZZ_CHECK(server.ok(), "%s", server.status().ToString().c_str());
    return server->release();
  }();
  return *kServer;
}

// Sends `in` on a fresh connection, half-closes, returns everything received until the server
// closed. Fails the run if the server keeps the connection open for 20 s.
std::string Exchange(const std::string& in) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  FUZZ_CHECK(fd >= 0, "socket: %d", errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(Server().port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Non-blocking from the start: libFuzzer's timeout timer (SIGALRM) interrupts blocking calls.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    FUZZ_CHECK(errno == EINPROGRESS || errno == EINTR, "connect: %d", errno);
    pollfd p{fd, POLLOUT, 0};
    while (poll(&p, 1, 20000) < 0) FUZZ_CHECK(errno == EINTR, "poll: %d", errno);
    int error = 0;
    socklen_t len = sizeof(error);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
    FUZZ_CHECK((p.revents & POLLOUT) && error == 0, "connect: %d", error);
  }
  std::string out;
  size_t sent = 0;
  bool write_closed = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (true) {
    if (!write_closed && sent == in.size()) {
      shutdown(fd, SHUT_WR);
      write_closed = true;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (write_closed ? 0 : POLLOUT)), 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    FUZZ_CHECK(left.count() > 0, "the server did not close the connection within 20 s");
    if (poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
      FUZZ_CHECK(false, "poll: %d", errno);
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[16384];
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n == 0) break;  // closed
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        break;  // reset: the server closed with our bytes unread (allowed after an error)
      }
      out.append(buf, static_cast<size_t>(n));
      FUZZ_CHECK(out.size() < (64u << 20), "the server sent over 64 MiB");
    }
    if (!write_closed && (p.revents & POLLOUT)) {
      const ssize_t n = send(fd, in.data() + sent, in.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        write_closed = true;  // the server closed its end; read what it said
      }
    }
  }
  close(fd);
  return out;
}

// Every response the server sent must be complete and well formed.
void CheckResponses(const std::string& bytes) {
  size_t at = 0;
  int responses = 0;
  while (at < bytes.size()) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64u << 20);
    parser.eager(true);
    const size_t start = at;
    while (!parser.is_done()) {
      boost::system::error_code ec;
      const size_t used = parser.put(boost::asio::buffer(bytes.data() + at, bytes.size() - at), ec);
      at += used;
      if (ec == bhttp::error::need_more && used > 0 && at < bytes.size()) continue;
      FUZZ_CHECK(!ec && used > 0, "response %d at byte %zu is malformed or incomplete (%s):\n%s",
                 responses, start, ec.message().c_str(), bytes.substr(start, 2048).c_str());
    }
    const unsigned status = parser.get().result_int();
    FUZZ_CHECK(status >= 100 && status <= 599, "status %u", status);
    ++responses;
  }
}

}  // namespace
}  // namespace rerank

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  rerank::CheckResponses(rerank::Exchange(in));
  return 0;
}
