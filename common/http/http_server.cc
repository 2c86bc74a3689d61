#include "common/http/http_server.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <exception>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/asio/bind_executor.hpp"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/string.hpp"
#include "boost/beast/http.hpp"
#include "spdlog/spdlog.h"

namespace rerank {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Bytes read at once while waiting for a request's first byte (the buffer grows from there).
constexpr size_t kReadChunk = 8192;
// After the final response on a connection: how long, and how much, to drain before closing.
constexpr milliseconds kLinger{1000};
constexpr size_t kMaxDrainBytes = 256 * 1024;
// Time allowed to write an answer the request's deadline no longer covers (408, 503).
constexpr milliseconds kLateWriteGrace{1000};
// Connections being refused (503) at once; beyond it a surplus connection is closed unanswered.
constexpr int64_t kMaxRefusing = 64;
constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";

std::string ToString(beast::string_view s) { return std::string(s.data(), s.size()); }

// Headers a handler may not set: the server frames the message itself.
bool ReservedHeader(const std::string& name) {
  return absl::EqualsIgnoreCase(name, "content-length") ||
         absl::EqualsIgnoreCase(name, "transfer-encoding") ||
         absl::EqualsIgnoreCase(name, "connection");
}

bool HasLineBreak(const std::string& s) { return s.find_first_of("\r\n") != std::string::npos; }

// accept() errors that concern one pending connection only (see accept(2): such errors should
// be treated like EAGAIN): retrying at once consumes that connection, so it cannot spin.
bool PerConnectionAcceptError(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category()) return false;
  switch (ec.value()) {
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

// "host:port" -> (host, port). The host may be "[v6]" (brackets removed), a name, empty or "*"
// (both: every interface).
absl::StatusOr<std::pair<std::string, std::string>> SplitHostPort(const std::string& listen,
                                                                  const std::string& key) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": expected host:port, got '", listen, "'"));
  }
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  int port_num = 0;
  if (!absl::SimpleAtoi(port, &port_num) || port_num < 0 || port_num > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": port must be 0..65535, got '", port, "'"));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": write an IPv6 host in brackets ([::1]:port), got '", listen, "'"));
  }
  if (host == "*") host.clear();
  return std::make_pair(host, std::to_string(port_num));
}

absl::Status Validate(const HttpServer::Options& o) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("HttpServer ", o.name, ": ", what));
  };
  if (o.listen.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(o.listen_key, ": must not be empty"));
  }
  if (absl::StatusOr<std::pair<std::string, std::string>> hp =
          SplitHostPort(o.listen, o.listen_key);
      !hp.ok()) {
    return hp.status();
  }
  if (o.name.empty()) return bad("name must not be empty");
  if (o.io_threads < 1 || o.io_threads > 64) {
    return bad(absl::StrCat("io_threads must be 1..64, got ", o.io_threads));
  }
  if (o.max_connections < 1 || o.max_connections > 1000000) {
    return bad(absl::StrCat("max_connections must be 1..1000000, got ", o.max_connections));
  }
  if (o.max_header_bytes < 1024 || o.max_header_bytes > 1024 * 1024) {
    return bad(absl::StrCat("max_header_bytes must be 1024..1048576, got ", o.max_header_bytes));
  }
  if (o.max_body_bytes > (size_t{1} << 30)) {
    return bad(absl::StrCat("max_body_bytes must be at most 1 GiB, got ", o.max_body_bytes));
  }
  if (o.request_timeout_ms < 1) {
    return bad(absl::StrCat("request_timeout_ms must be >= 1, got ", o.request_timeout_ms));
  }
  if (o.idle_timeout_ms < 1) {
    return bad(absl::StrCat("idle_timeout_ms must be >= 1, got ", o.idle_timeout_ms));
  }
  if (o.accept_backoff_initial_ms < 1 || o.accept_backoff_max_ms < o.accept_backoff_initial_ms) {
    return bad(absl::StrCat("need 1 <= accept_backoff_initial_ms <= accept_backoff_max_ms, got ",
                            o.accept_backoff_initial_ms, " and ", o.accept_backoff_max_ms));
  }
  if (o.stop_timeout_ms < 0) {
    return bad(absl::StrCat("stop_timeout_ms must be >= 0, got ", o.stop_timeout_ms));
  }
  return absl::OkStatus();
}

// Whether responders may still post to the server's I/O context. Responders hold it (shared) and
// may outlive the server; Stop() closes it before the I/O context stops.
struct Gate {
  absl::Mutex mu;
  bool open ABSL_GUARDED_BY(mu) = true;
};

class Session;

}  // namespace

class HttpServer::Impl {
 public:
  Impl(Options options, HttpHandler handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        ioc_(options_.io_threads),
        accept_strand_(net::make_strand(ioc_)),
        acceptor_(accept_strand_),
        backoff_timer_(accept_strand_) {}
  ~Impl() { Stop(); }

  absl::Status Bind();
  void Run();
  void Stop();
  int port() const { return port_; }
  Stats stats() const;

  // For sessions.
  const Options& options() const { return options_; }
  const HttpHandler& handler() const { return handler_; }
  const std::shared_ptr<Gate>& gate() const { return gate_; }
  HttpResponse RenderError(int status, std::string_view message) const;
  void Unregister(uint64_t id, bool refused);
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> timeouts{0};

 private:
  void DoAccept();
  void OnAccept(const boost::system::error_code& ec, tcp::socket socket);
  void PauseAccepting(const boost::system::error_code& ec);
  bool NoSessions() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return sessions_.empty(); }

  const Options options_;
  const HttpHandler handler_;
  const std::shared_ptr<Gate> gate_ = std::make_shared<Gate>();
  int port_ = 0;

  mutable absl::Mutex mu_;
  std::unordered_map<uint64_t, std::weak_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  int64_t open_ ABSL_GUARDED_BY(mu_) = 0;      // sessions serving requests
  int64_t refusing_ ABSL_GUARDED_BY(mu_) = 0;  // sessions answering 503
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int64_t> accepted_{0};
  std::atomic<int64_t> refused_{0};
  std::atomic<int64_t> accept_failures_{0};

  absl::Mutex stop_mu_;  // serializes Stop() callers
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;

  // Asio objects last, so they are destroyed first: destroying the I/O context destroys queued
  // handlers, which may own the last reference to a session, which unregisters itself above.
  net::io_context ioc_;
  net::strand<net::io_context::executor_type> accept_strand_;
  tcp::acceptor acceptor_;           // accept strand only (and Bind/Stop with no thread running)
  net::steady_timer backoff_timer_;  // accept strand only
  int backoff_ms_ = 0;               // accept strand only: the current pause, 0 when accepting
  absl::Time last_backoff_log_ = absl::InfinitePast();  // accept strand only
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
};

namespace {

// One connection: a state machine on its own strand (every method runs there, except the
// constructor and destructor). Pending asynchronous operations own it (shared_from_this); when
// the last one completes after Close(), it is destroyed and unregisters from the server.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(HttpServer::Impl* server, tcp::socket socket, uint64_t id, bool refuse)
      : server_(server),
        options_(server->options()),
        id_(id),
        refuse_(refuse),
        executor_(socket.get_executor()),
        socket_(std::move(socket)),
        timer_(executor_),
        buffer_(options_.max_header_bytes + kReadChunk) {}
  ~Session() { server_->Unregister(id_, refuse_); }

  const net::any_io_executor& executor() const { return executor_; }

  void Start() {
    if (phase_ == Phase::kClosed) return;  // Stop() got here first
    boost::system::error_code ec;
    const tcp::endpoint ep = socket_.remote_endpoint(ec);
    if (!ec) {
      net::ip::address a = ep.address();
      if (a.is_v6() && a.to_v6().is_v4_mapped()) {
        a = net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6());
      }
      peer_ = a.to_string();
    }
    socket_.set_option(tcp::no_delay(true), ec);
    if (refuse_) {
      ArmTimer(SteadyClock::now() + kLateWriteGrace);
      WriteResponse(
          server_->RenderError(503, absl::StrCat("too many open connections (max_connections ",
                                                 options_.max_connections, "); retry later")),
          /*close=*/true);
      return;
    }
    WaitForRequest();
  }

  // Server shutdown: close now unless a request is being handled or answered (then the
  // connection closes after its response).
  void Stop() {
    stopping_ = true;
    if (phase_ == Phase::kIdle || phase_ == Phase::kHeader || phase_ == Phase::kBody) Close();
  }

  void ForceClose() { Close(); }

  // A responder's answer (nullopt: dropped) for request number `seq`.
  void OnAnswer(uint64_t seq, std::optional<HttpResponse> response) {
    if (phase_ != Phase::kHandling || seq != seq_) return;  // answered 408 already, or closed
    if (!response.has_value()) {
      response = server_->RenderError(500, "internal error: the request handler did not answer");
    }
    WriteResponse(*std::move(response), !keep_alive_ || stopping_);
  }

 private:
  enum class Phase {
    kIdle,      // waiting for a request's first byte (idle_timeout_ms)
    kHeader,    // reading request line + headers (deadline)
    kBody,      // reading the body (deadline)
    kHandling,  // the handler has the request (deadline)
    kWriting,   // writing a response (deadline, or kLateWriteGrace)
    kLinger,    // half-closed after the last response, draining (kLinger)
    kClosed,
  };

  void ArmTimer(SteadyClock::time_point at) {
    timer_.expires_at(at);  // cancels the previous wait; the generation ignores a stale one
    timer_.async_wait(
        [self = shared_from_this(), gen = ++timer_gen_](boost::system::error_code ec) {
          if (!ec && gen == self->timer_gen_) self->OnTimer();
        });
  }

  void OnTimer() {
    switch (phase_) {
      case Phase::kIdle:
        Close();
        break;
      case Phase::kHeader:
      case Phase::kBody:
        // Abort the read; its completion sees timed_out_ and answers 408.
        timed_out_ = true;
        {
          boost::system::error_code ignored;
          socket_.cancel(ignored);
        }
        break;
      case Phase::kHandling:
        timed_out_ = true;
        Timeout();
        break;
      case Phase::kWriting:  // the client does not read what we write
      case Phase::kLinger:
      case Phase::kClosed:
        Close();
        break;
    }
  }

  void WaitForRequest() {
    parser_.reset();
    timed_out_ = false;
    if (stopping_) return Close();
    if (buffer_.size() > 0) return BeginRequest();  // pipelined: already here
    phase_ = Phase::kIdle;
    ArmTimer(SteadyClock::now() + milliseconds(options_.idle_timeout_ms));
    socket_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              self->OnFirstBytes(ec, n);
                            });
  }

  void OnFirstBytes(boost::system::error_code ec, size_t n) {
    if (phase_ == Phase::kClosed) return;
    if (ec) return Close();  // the client closed, or idle timeout / Stop() closed the socket
    buffer_.commit(n);
    BeginRequest();
  }

  void BeginRequest() {
    phase_ = Phase::kHeader;
    request_complete_ = false;
    ArmTimer(SteadyClock::now() + milliseconds(options_.request_timeout_ms));  // absolute
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(options_.max_header_bytes));
    parser_->body_limit(static_cast<std::uint64_t>(options_.max_body_bytes));
    bhttp::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(boost::system::error_code ec) {
    if (phase_ == Phase::kClosed) return;
    if (timed_out_) return Timeout();
    if (ec) return OnReadError(ec);
    if (parser_->is_done()) return OnRequest();
    phase_ = Phase::kBody;
    const auto& req = parser_->get();
    if (req.version() >= 11 && beast::iequals(req[bhttp::field::expect], "100-continue") &&
        buffer_.size() == 0) {
      // The client waits for this before it sends the body (curl, for bodies over 1 KiB).
      net::async_write(socket_, net::buffer(kContinue, sizeof(kContinue) - 1),
                       [self = shared_from_this()](boost::system::error_code ec, size_t) {
                         if (self->phase_ == Phase::kClosed) return;
                         if (self->timed_out_) return self->Timeout();
                         if (ec) return self->Close();
                         self->ReadBody();
                       });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    bhttp::async_read(socket_, buffer_, *parser_,
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        if (self->phase_ == Phase::kClosed) return;
                        if (self->timed_out_) return self->Timeout();
                        if (ec) return self->OnReadError(ec);
                        self->OnRequest();
                      });
  }

  void OnReadError(boost::system::error_code ec) {
    const bool in_header = phase_ == Phase::kHeader;
    if (ec == bhttp::error::header_limit || (in_header && ec == bhttp::error::buffer_overflow)) {
      return SendError(431, absl::StrCat("request line and headers exceed ",
                                         options_.max_header_bytes, " bytes"));
    }
    if (ec == bhttp::error::body_limit || ec == bhttp::error::buffer_overflow) {
      return SendError(413,
                       absl::StrCat("request body exceeds ", options_.max_body_bytes, " bytes"));
    }
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() &&
        ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
      return SendError(400, absl::StrCat("malformed HTTP request: ", ec.message()));
    }
    Close();  // the client closed or reset mid-request: nobody to answer
  }

  void Timeout() {
    server_->timeouts.fetch_add(1, std::memory_order_relaxed);
    ArmTimer(SteadyClock::now() + kLateWriteGrace);
    SendError(408,
              absl::StrCat("request not completed within ", options_.request_timeout_ms, " ms"));
  }

  void SendError(int status, std::string_view message) {
    if (parser_.has_value() && parser_->is_header_done()) version_ = parser_->get().version();
    WriteResponse(server_->RenderError(status, message), /*close=*/true);
  }

  void OnRequest() {
    phase_ = Phase::kHandling;
    request_complete_ = true;
    bhttp::request<bhttp::string_body> msg = parser_->release();
    parser_.reset();
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();
    HttpRequest req;
    req.method = ToString(msg.method_string());
    const std::string target = ToString(msg.target());
    const size_t q = target.find('?');
    req.path = target.substr(0, q);
    if (q != std::string::npos) req.query = target.substr(q + 1);
    for (const auto& field : msg) {
      std::string name = absl::AsciiStrToLower(ToString(field.name_string()));
      auto [it, inserted] = req.headers.emplace(std::move(name), ToString(field.value()));
      if (!inserted) absl::StrAppend(&it->second, ", ", ToString(field.value()));
    }
    req.body = std::move(msg.body());
    req.peer = peer_;
    req.version = static_cast<int>(msg.version());
    const uint64_t seq = ++seq_;
    server_->requests.fetch_add(1, std::memory_order_relaxed);
    HttpResponder responder(std::make_shared<Slot>(server_->gate(), weak_from_this(), seq));
    try {
      server_->handler()(std::move(req), std::move(responder));
    } catch (const std::exception& e) {
      // The responder, destroyed while unwinding, has answered 500 unless the handler answered.
      spdlog::error("{}: request handler threw: {}", options_.name, e.what());
    } catch (...) {
      spdlog::error("{}: request handler threw a non-exception", options_.name);
    }
  }

  void WriteResponse(HttpResponse r, bool close) {
    phase_ = Phase::kWriting;
    close_after_write_ = close;
    if (r.status < 200 || r.status > 599) {
      spdlog::error("{}: handler answered with status {}; sending 500", options_.name, r.status);
      r = server_->RenderError(500, "internal error: invalid response status");
    }
    res_ = {};
    res_.version(version_);
    res_.result(static_cast<unsigned>(r.status));
    if (!r.content_type.empty() && !HasLineBreak(r.content_type)) {
      res_.set(bhttp::field::content_type, r.content_type);
    }
    for (const auto& [name, value] : r.headers) {
      if (name.empty() || ReservedHeader(name) || HasLineBreak(name) || HasLineBreak(value)) {
        spdlog::warn("{}: dropping response header '{}'", options_.name, absl::CEscape(name));
        continue;
      }
      res_.insert(name, value);
    }
    res_.body() = std::move(r.body);
    res_.keep_alive(!close);
    res_.prepare_payload();
    bhttp::async_write(
        socket_, res_,
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->OnWrite(ec); });
  }

  void OnWrite(boost::system::error_code ec) {
    if (phase_ == Phase::kClosed) return;
    res_ = {};
    if (ec) return Close();
    if (close_after_write_ || stopping_) {
      // Unread input (a refused body, a pipelined request) would make close() reset the
      // connection: linger. With none, the whole request was read: close now.
      boost::system::error_code avail_ec;
      if (request_complete_ && buffer_.size() == 0 && socket_.available(avail_ec) == 0 &&
          !avail_ec) {
        socket_.shutdown(tcp::socket::shutdown_send, avail_ec);
        return Close();
      }
      return Linger();
    }
    WaitForRequest();
  }

  // Half-close, then read and discard until the client closes (bounded in time and bytes): a
  // close with unread input would reset the connection and could destroy the response in the
  // client's receive buffer before it is read.
  void Linger() {
    phase_ = Phase::kLinger;
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    ArmTimer(SteadyClock::now() + kLinger);
    buffer_.consume(buffer_.size());
    drained_ = 0;
    Drain();
  }

  void Drain() {
    socket_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              if (self->phase_ == Phase::kClosed) return;
                              self->drained_ += n;
                              if (ec || self->drained_ > kMaxDrainBytes) return self->Close();
                              self->Drain();  // nothing committed: the bytes are discarded
                            });
  }

  void Close() {
    if (phase_ == Phase::kClosed) return;
    phase_ = Phase::kClosed;
    ++timer_gen_;
    timer_.cancel();
    boost::system::error_code ignored;
    socket_.close(ignored);  // pending operations complete with operation_aborted
  }

  // The server end of this connection's responders.
  class Slot final : public HttpResponseSlot {
   public:
    Slot(std::shared_ptr<Gate> gate, std::weak_ptr<Session> session, uint64_t seq)
        : gate_(std::move(gate)), session_(std::move(session)), seq_(seq) {}
    void Deliver(std::optional<HttpResponse> response) override {
      absl::ReaderMutexLock lock(&gate_->mu);
      if (!gate_->open) return;  // the server has stopped
      std::shared_ptr<Session> s = session_.lock();
      if (s == nullptr) return;  // the connection is gone
      net::post(s->executor(), [s, seq = seq_, r = std::move(response)]() mutable {
        s->OnAnswer(seq, std::move(r));
      });
    }

   private:
    const std::shared_ptr<Gate> gate_;
    const std::weak_ptr<Session> session_;
    const uint64_t seq_;
  };

  HttpServer::Impl* const server_;
  const HttpServer::Options& options_;
  const uint64_t id_;
  const bool refuse_;                    // answer 503 and close
  const net::any_io_executor executor_;  // this connection's strand
  tcp::socket socket_;
  net::steady_timer timer_;
  uint64_t timer_gen_ = 0;
  beast::flat_buffer buffer_;  // bounded: max_header_bytes + kReadChunk
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> res_;
  Phase phase_ = Phase::kIdle;
  uint64_t seq_ = 0;  // number of the current request
  unsigned version_ = 11;
  bool keep_alive_ = false;
  bool close_after_write_ = false;
  bool timed_out_ = false;
  bool request_complete_ = false;  // the current request was read to its end
  bool stopping_ = false;
  size_t drained_ = 0;
  std::string peer_;
};

}  // namespace

absl::Status HttpServer::Impl::Bind() {
  absl::StatusOr<std::pair<std::string, std::string>> hp =
      SplitHostPort(options_.listen, options_.listen_key);
  if (!hp.ok()) return hp.status();
  tcp::resolver resolver(ioc_);
  boost::system::error_code ec;
  const tcp::resolver::results_type found = resolver.resolve(
      hp->first, hp->second, tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(options_.listen_key, ": cannot resolve '",
                                               options_.listen, "': ", ec.message()));
  }
  std::string error = "no address";
  for (const auto& entry : found) {
    const tcp::endpoint ep = entry.endpoint();
    acceptor_.close(ec);
    if (acceptor_.open(ep.protocol(), ec) ||
        // SO_REUSEADDR (not SO_REUSEPORT): restart over TIME_WAIT, but a port in use is an error.
        acceptor_.set_option(net::socket_base::reuse_address(true), ec) || acceptor_.bind(ep, ec) ||
        acceptor_.listen(net::socket_base::max_listen_connections, ec)) {
      error = ec.message();
      continue;
    }
    port_ = acceptor_.local_endpoint(ec).port();
    if (ec) {
      error = ec.message();
      continue;
    }
    return absl::OkStatus();
  }
  acceptor_.close(ec);
  return absl::UnavailableError(
      absl::StrCat(options_.listen_key, ": cannot listen on '", options_.listen, "': ", error));
}

void HttpServer::Impl::Run() {
  work_.emplace(ioc_.get_executor());
  for (int i = 0; i < options_.io_threads; ++i) {
    threads_.emplace_back([this, i] {
      const std::string name = absl::StrCat(options_.name, "-", i).substr(0, 15);
      pthread_setname_np(pthread_self(), name.c_str());
      while (true) {
        try {
          ioc_.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("{}: uncaught exception on an I/O thread: {}", name, e.what());
        }
      }
    });
  }
  net::post(accept_strand_, [this] { DoAccept(); });
}

void HttpServer::Impl::DoAccept() {
  acceptor_.async_accept(
      net::make_strand(ioc_),
      net::bind_executor(accept_strand_, [this](boost::system::error_code ec, tcp::socket socket) {
        OnAccept(ec, std::move(socket));
      }));
}

void HttpServer::Impl::OnAccept(const boost::system::error_code& ec, tcp::socket socket) {
  if (!acceptor_.is_open()) return;  // Stop()
  if (ec) {
    if (ec == net::error::operation_aborted) return;
    if (PerConnectionAcceptError(ec)) return DoAccept();
    return PauseAccepting(ec);
  }
  backoff_ms_ = 0;
  accepted_.fetch_add(1, std::memory_order_relaxed);
  std::shared_ptr<Session> session;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;  // `socket` closes
    bool refuse = false;
    if (open_ >= options_.max_connections) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      if (refusing_ >= kMaxRefusing) return DoAccept();  // too many to even answer: close
      refuse = true;
      ++refusing_;
    } else {
      ++open_;
    }
    const uint64_t id = next_id_++;
    session = std::make_shared<Session>(this, std::move(socket), id, refuse);
    sessions_.emplace(id, session);
  }
  net::dispatch(session->executor(), [session] { session->Start(); });
  DoAccept();
}

void HttpServer::Impl::PauseAccepting(const boost::system::error_code& ec) {
  accept_failures_.fetch_add(1, std::memory_order_relaxed);
  backoff_ms_ = backoff_ms_ == 0 ? options_.accept_backoff_initial_ms
                                 : std::min(backoff_ms_ * 2, options_.accept_backoff_max_ms);
  const absl::Time now = absl::Now();
  if (now - last_backoff_log_ >= absl::Seconds(10)) {
    last_backoff_log_ = now;
    int64_t open = 0;
    {
      absl::MutexLock lock(&mu_);
      open = open_;
    }
    spdlog::warn(
        "{}: accept() on {} failed: {} ({} open connections); pausing accepts for {} ms "
        "(then up to {} ms while it keeps failing)",
        options_.name, options_.listen, ec.message(), open, backoff_ms_,
        options_.accept_backoff_max_ms);
  }
  backoff_timer_.expires_after(milliseconds(backoff_ms_));
  backoff_timer_.async_wait([this](boost::system::error_code wait_ec) {
    if (wait_ec || !acceptor_.is_open()) return;
    DoAccept();
  });
}

void HttpServer::Impl::Unregister(uint64_t id, bool refused) {
  absl::MutexLock lock(&mu_);
  sessions_.erase(id);
  --(refused ? refusing_ : open_);
}

HttpResponse HttpServer::Impl::RenderError(int status, std::string_view message) const {
  if (options_.render_error) {
    try {
      return options_.render_error(status, message);
    } catch (const std::exception& e) {
      spdlog::error("{}: render_error threw: {}", options_.name, e.what());
    }
  }
  return JsonErrorResponse(status, message);
}

HttpServer::Stats HttpServer::Impl::stats() const {
  Stats s;
  {
    absl::MutexLock lock(&mu_);
    s.open_connections = open_;
  }
  s.accepted_connections = accepted_.load();
  s.refused_connections = refused_.load();
  s.accept_failures = accept_failures_.load();
  s.requests = requests.load();
  s.timeouts = timeouts.load();
  return s;
}

void HttpServer::Impl::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  const bool running = !threads_.empty();
  if (running) {
    net::post(accept_strand_, [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      backoff_timer_.cancel();
    });
  }
  // Ask every connection to finish: idle ones close now, busy ones after their response.
  auto for_each_session = [this](auto fn) {
    std::vector<std::shared_ptr<Session>> live;
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      for (auto& [id, weak] : sessions_) {
        if (std::shared_ptr<Session> s = weak.lock()) live.push_back(std::move(s));
      }
    }
    for (std::shared_ptr<Session>& s : live) net::post(s->executor(), [s, fn] { fn(*s); });
  };
  if (running) {
    for_each_session([](Session& s) { s.Stop(); });
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &Impl::NoSessions),
                              absl::Milliseconds(options_.stop_timeout_ms))) {
      spdlog::warn("{}: {} connection(s) still busy {} ms into Stop(); closing them", options_.name,
                   sessions_.size(), options_.stop_timeout_ms);
    }
  }
  bool busy = false;
  {
    absl::MutexLock lock(&mu_);
    busy = !sessions_.empty();
  }
  if (running && busy) {
    for_each_session([](Session& s) { s.ForceClose(); });
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &Impl::NoSessions), absl::Seconds(1));
  }
  {
    absl::WriterMutexLock lock(&gate_->mu);  // no responder posts from here on
    gate_->open = false;
  }
  work_.reset();
  ioc_.stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() { Stop(); }
int HttpServer::port() const { return impl_->port(); }
HttpServer::Stats HttpServer::stats() const { return impl_->stats(); }
void HttpServer::Stop() { impl_->Stop(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(Options options,
                                                              HttpHandler handler) {
  if (!handler) return absl::InvalidArgumentError("HttpServer: handler must not be null");
  if (absl::Status s = Validate(options); !s.ok()) return s;
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handler));
  if (absl::Status s = impl->Bind(); !s.ok()) return s;
  impl->Run();
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

}  // namespace rerank
