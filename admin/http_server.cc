#include "admin/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>

#include <cstring>
#include <exception>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/proto_json.h"
#include "common/status_macros.h"

namespace rerank {
namespace {

AdminHttpResponse Json(int status, const google::protobuf::Message& body) {
  AdminHttpResponse r;
  r.status = status;
  r.body = MessageToJson(body);
  return r;
}

AdminHttpResponse Error(int status, absl::string_view message) {
  admin::v1::Error e;
  e.set_error(std::string(message));
  return Json(status, e);
}

int HttpStatusFor(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    default:
      return 500;
  }
}

AdminHttpResponse FromStatus(const absl::Status& s) { return Error(HttpStatusFor(s), s.message()); }

std::optional<std::string> Header(const AdminHttpRequest& req, const std::string& name) {
  auto it = req.headers.find(name);
  if (it == req.headers.end()) return std::nullopt;
  return it->second;
}

// Parses the body into `message` (strict: unknown keys and wrong types are errors naming the
// field). An empty body is an empty message.
std::optional<AdminHttpResponse> ParseBody(const std::string& body,
                                           google::protobuf::Message* message) {
  if (absl::StripAsciiWhitespace(body).empty()) {
    message->Clear();
    return std::nullopt;
  }
  absl::Status s = JsonToMessage(body, message, "request body");
  if (!s.ok()) return FromStatus(s);
  return std::nullopt;
}

// The request's actor when present (even empty: that is an error), else `fallback`; validated.
template <typename Request>
absl::StatusOr<std::string> Actor(const Request& request, const std::string& fallback) {
  const std::string a = request.has_actor() ? request.actor() : fallback;
  RETURN_IF_ERROR(ValidateActor(a));
  return a;
}

AdminHttpResponse PostFlags(AdminCore& core, const AdminHttpRequest& req) {
  admin::v1::UpdateFlagsRequest update;
  if (std::optional<AdminHttpResponse> err = ParseBody(req.body, &update)) return *err;
  absl::StatusOr<std::string> actor = Actor(update, "admin-http");
  if (!actor.ok()) return FromStatus(actor.status());
  const bool has_stage = !update.stage().empty();
  if (has_stage == update.has_flags()) {
    return Error(400, "request body: give exactly one of \"stage\" or \"flags\"");
  }
  absl::StatusOr<admin::v1::FlagsView> result = has_stage
                                                    ? core.SetStage(update.stage(), *actor)
                                                    : core.PatchFlags(update.flags(), *actor);
  if (!result.ok()) return FromStatus(result.status());
  return Json(200, *result);
}

AdminHttpResponse PostReload(AdminCore& core, const AdminHttpRequest& req) {
  admin::v1::ReloadRequest reload;
  if (std::optional<AdminHttpResponse> err = ParseBody(req.body, &reload)) return *err;
  absl::StatusOr<std::string> actor = Actor(reload, "admin-http");
  if (!actor.ok()) return FromStatus(actor.status());
  return Json(200, core.Reload(*actor, "admin-http"));
}

struct Route {
  const char* path;
  const char* method;
  bool needs_token;
  AdminHttpResponse (*handler)(AdminCore&, const AdminHttpRequest&);
};

const Route kRoutes[] = {
    {"/health", "GET", false,
     [](AdminCore& core, const AdminHttpRequest&) {
       const admin::v1::Health h = core.Health();
       return Json(h.ready() ? 200 : 503, h);
     }},
    {"/live", "GET", false,
     [](AdminCore&, const AdminHttpRequest&) {
       admin::v1::Liveness live;
       live.set_live(true);
       return Json(200, live);
     }},
    {"/ready", "GET", false,
     [](AdminCore& core, const AdminHttpRequest&) {
       const Readiness r = core.GetReadiness();
       admin::v1::Readiness body;
       body.set_ready(r.ready);
       body.set_reason(r.reason);
       return Json(r.ready ? 200 : 503, body);
     }},
    {"/metrics", "GET", false,
     [](AdminCore& core, const AdminHttpRequest&) {
       AdminHttpResponse r;
       r.content_type = "text/plain; version=0.0.4; charset=utf-8";
       r.body = core.MetricsText();
       return r;
     }},
    {"/flags", "GET", false,
     [](AdminCore& core, const AdminHttpRequest&) { return Json(200, core.FlagsView()); }},
    {"/flags", "POST", true, PostFlags},
    {"/reload", "POST", true, PostReload},
};

}  // namespace

AdminHttpResponse HandleAdminHttp(AdminCore& core, const AdminHttpRequest& req) {
  try {
    std::vector<std::string> allowed;
    for (const Route& route : kRoutes) {
      if (req.path != route.path) continue;
      if (req.method != route.method) {
        allowed.push_back(route.method);
        continue;
      }
      if (route.needs_token) {
        absl::Status auth = core.Authorize(
            AdminTokenFromHeaders(Header(req, "authorization"), Header(req, "x-admin-token")));
        if (!auth.ok()) {
          AdminHttpResponse r = FromStatus(auth);
          if (r.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
          return r;
        }
      }
      return route.handler(core, req);
    }
    if (!allowed.empty()) {
      AdminHttpResponse r = Error(
          405, absl::StrCat("method ", req.method, " not allowed on ", req.path, "; use ",
                            absl::StrJoin(allowed, " or ")));
      r.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
      return r;
    }
    return Error(404, absl::StrCat("no such endpoint: ", req.path,
                                   " (try /health, /live, /ready, /metrics, /flags, /reload)"));
  } catch (const std::exception& e) {
    // json type errors and the like: an adapter boundary, never let them escape.
    return Error(500, absl::StrCat("internal error: ", e.what()));
  }
}

// ---- Transport ----

namespace {

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads more bytes into `buf`; false on EOF, error or timeout (SO_RCVTIMEO).
bool RecvSome(int fd, std::string* buf) {
  char chunk[8192];
  while (true) {
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf->append(chunk, static_cast<size_t>(n));
    return true;
  }
}

void SendResponse(int fd, const AdminHttpResponse& r) {
  std::string head = absl::StrCat("HTTP/1.1 ", r.status, " ", ReasonPhrase(r.status),
                                  "\r\nContent-Type: ", r.content_type,
                                  "\r\nContent-Length: ", r.body.size(),
                                  "\r\nCache-Control: no-store\r\nConnection: close\r\n");
  for (const auto& [name, value] : r.headers) absl::StrAppend(&head, name, ": ", value, "\r\n");
  head += "\r\n";
  if (SendAll(fd, head)) SendAll(fd, r.body);
}

// Parses "METHOD target HTTP/1.x" and the header lines. False on a malformed head.
bool ParseHead(absl::string_view head, AdminHttpRequest* req) {
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  std::vector<absl::string_view> parts = absl::StrSplit(lines[0], ' ');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty() ||
      !absl::StartsWith(parts[2], "HTTP/1.")) {
    return false;
  }
  req->method = std::string(parts[0]);
  absl::string_view target = parts[1];
  target = target.substr(0, target.find_first_of("?#"));
  req->path = std::string(target);
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos || colon == 0) return false;
    req->headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  return true;
}

// "host:port" (host may be "[v6]", a name, or empty) -> getaddrinfo results for a passive socket.
absl::StatusOr<std::pair<std::string, std::string>> SplitHostPort(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("admin.http_listen: expected host:port, got '", listen, "'"));
  }
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  int port_num = 0;
  if (!absl::SimpleAtoi(port, &port_num) || port_num < 0 || port_num > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("admin.http_listen: port must be 0..65535, got '", port, "'"));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "*") host.clear();
  return std::make_pair(host, port);
}

}  // namespace

absl::StatusOr<std::unique_ptr<AdminHttpServer>> AdminHttpServer::Start(const Options& options,
                                                                        AdminCore* core) {
  if (core == nullptr) return absl::InvalidArgumentError("AdminHttpServer: core must not be null");
  if (options.listen.empty()) {
    return absl::InvalidArgumentError("admin.http_listen: must not be empty");
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdminHttpServer: threads must be >= 1, got ", options.threads));
  }
  if (options.max_body_bytes < 1) {
    return absl::InvalidArgumentError("AdminHttpServer: max_body_bytes must be >= 1");
  }
  if (options.max_header_bytes < 1024) {
    return absl::InvalidArgumentError("AdminHttpServer: max_header_bytes must be >= 1024");
  }
  if (options.request_timeout_ms < 1) {
    return absl::InvalidArgumentError("AdminHttpServer: request_timeout_ms must be >= 1");
  }
  if (options.max_pending_connections < 1) {
    return absl::InvalidArgumentError("AdminHttpServer: max_pending_connections must be >= 1");
  }
  std::unique_ptr<AdminHttpServer> server(new AdminHttpServer(options, core));
  if (absl::Status s = server->Bind(); !s.ok()) {
    server->Stop();
    return s;
  }
  {
    absl::MutexLock lock(&server->mu_);
    server->active_.assign(options.threads, -1);
  }
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  for (int i = 0; i < options.threads; ++i) {
    server->workers_.emplace_back([s = server.get(), i] { s->WorkerLoop(i); });
  }
  return server;
}

absl::Status AdminHttpServer::Bind() {
  absl::StatusOr<std::pair<std::string, std::string>> hp = SplitHostPort(options_.listen);
  if (!hp.ok()) return hp.status();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(hp->first.empty() ? nullptr : hp->first.c_str(), hp->second.c_str(),
                               &hints, &found);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat("admin.http_listen: cannot resolve '",
                                               options_.listen, "': ", gai_strerror(rc)));
  }
  std::string error = "no address";
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    const int one = 1;
    // SO_REUSEADDR (not SO_REUSEPORT): restart over TIME_WAIT, but a port in use is an error.
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
      error = std::strerror(errno);
      ::close(fd);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = ntohs(bound.ss_family == AF_INET6
                      ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                      : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    listen_fd_ = fd;
    break;
  }
  ::freeaddrinfo(found);
  if (listen_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("admin.http_listen: cannot listen on '", options_.listen, "': ", error));
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  return absl::OkStatus();
}

AdminHttpServer::~AdminHttpServer() { Stop(); }

void AdminHttpServer::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // A connection still waiting for its request (an idle or slow client) would hold its worker
    // until the receive timeout: end its read side so recv() returns now. A request already
    // being handled is unaffected (its response is still written).
    for (int fd : active_) {
      if (fd >= 0) ::shutdown(fd, SHUT_RD);
    }
  }
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
  }
  if (acceptor_.joinable()) acceptor_.join();
  for (std::thread& w : workers_) {
    if (w.joinable()) w.join();  // each finishes its current request, then sees stopping_
  }
  workers_.clear();
  {
    absl::MutexLock lock(&mu_);
    for (int fd : pending_) ::close(fd);
    pending_.clear();
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
  listen_fd_ = wake_fd_ = -1;
}

void AdminHttpServer::AcceptLoop() {
  pthread_setname_np(pthread_self(), "admin-http");
  pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  while (true) {
    const int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || (fds[1].revents & POLLIN) != 0) return;  // Stop()
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;  // the client went away, or out of descriptors: try again
    timeval tv{options_.request_timeout_ms / 1000, (options_.request_timeout_ms % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    absl::MutexLock lock(&mu_);
    if (stopping_ || static_cast<int>(pending_.size()) >= options_.max_pending_connections) {
      ::close(fd);  // overloaded: the client retries (probes and scrapes do)
      continue;
    }
    pending_.push_back(fd);
  }
}

void AdminHttpServer::WorkerLoop(int index) {
  pthread_setname_np(pthread_self(), absl::StrCat("admin-http-w", index).substr(0, 15).c_str());
  while (true) {
    int fd = -1;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](AdminHttpServer* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return s->stopping_ || !s->pending_.empty();
          },
          this));
      if (stopping_) return;
      fd = pending_.front();
      pending_.pop_front();
      active_[index] = fd;
    }
    Serve(fd);
    {
      absl::MutexLock lock(&mu_);  // Stop() must not shut down a descriptor number reused later
      active_[index] = -1;
    }
    ::close(fd);
  }
}

void AdminHttpServer::Serve(int fd) {
  std::string buf;
  size_t head_end = std::string::npos;
  while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
    if (buf.size() > options_.max_header_bytes) {
      SendResponse(fd, Error(431, "request line and headers too large"));
      return;
    }
    if (!RecvSome(fd, &buf)) return;  // closed or timed out before a full request
  }
  AdminHttpRequest req;
  if (head_end > options_.max_header_bytes) {
    SendResponse(fd, Error(431, "request line and headers too large"));
    return;
  }
  if (!ParseHead(absl::string_view(buf).substr(0, head_end), &req)) {
    SendResponse(fd, Error(400, "malformed HTTP request"));
    return;
  }
  AdminHttpResponse resp;
  std::string body = buf.substr(head_end + 4);
  size_t length = 0;
  bool complete = true;
  if (req.headers.count("transfer-encoding") != 0) {
    resp = Error(501, "chunked request bodies are not supported; send Content-Length");
    complete = false;
  } else if (auto it = req.headers.find("content-length"); it != req.headers.end()) {
    if (!absl::SimpleAtoi(it->second, &length)) {
      resp = Error(400, "Content-Length: not a number");
      complete = false;
    } else if (length > options_.max_body_bytes) {
      resp = Error(413, absl::StrCat("request body exceeds ", options_.max_body_bytes, " bytes"));
      complete = false;
    } else {
      if (body.size() < length) {
        auto expect = req.headers.find("expect");
        if (expect != req.headers.end() && absl::EqualsIgnoreCase(expect->second, "100-continue")) {
          SendAll(fd, "HTTP/1.1 100 Continue\r\n\r\n");
        }
      }
      while (body.size() < length) {
        if (!RecvSome(fd, &body)) return;  // the client gave up
      }
      body.resize(length);  // one request per connection: ignore anything pipelined after it
    }
  } else {
    body.clear();
  }
  if (complete) {
    req.body = std::move(body);
    resp = HandleAdminHttp(*core_, req);
  }
  SendResponse(fd, resp);
  if (!complete) {
    // The body was refused unread. Half-close, then drain what the client still sends until it
    // closes: closing with unread input would reset the connection and could discard the
    // response before the client reads it. Bounded by the receive timeout and 1 MiB.
    ::shutdown(fd, SHUT_WR);
    std::string sink;
    while (sink.size() < (1u << 20) && RecvSome(fd, &sink)) {
    }
  }
}

}  // namespace rerank
