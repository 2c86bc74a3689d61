// The admin HTTP API: GET /health /live /ready /metrics /flags, POST /flags /reload.
// Bodies are the messages of proto/rerank/admin/v1/admin.proto in protobuf's JSON mapping
// (common/proto_json.h), the one definition of the contract, which rerankctl parses too:
//   GET  /health   200 ready | 503 not ready; Health
//   GET  /live     200 Liveness {"live": true}
//   GET  /ready    200 | 503 Readiness {"ready", "reason"}
//   GET  /metrics  Prometheus text exposition
//   GET  /flags    FlagsView
//   POST /flags    token; UpdateFlagsRequest {"stage": s, "actor": a} or {"flags": {patch},
//                  "actor": a} -> FlagsView
//   POST /reload   token; ReloadRequest {"actor": a} -> ReloadResponse
// Errors are Error {"error": "..."}: 400 bad JSON / unknown stage / invalid value (naming the
// key), 401 missing or wrong token, 403 no token configured, 404 unknown path, 405 wrong method
// (with an Allow header), 413 body too large, 431 headers too large, 501 chunked request body.
//
// Transport: a small HTTP/1.1 server on plain sockets, one request per connection (every
// response says "Connection: close"); "Expect: 100-continue" is honoured, request bodies need a
// Content-Length. That is all probes, Prometheus, curl and rerankctl need. (Not civetweb: the
// Debian build fixes its threads' stacks at 100 KiB, below the static TLS that libopenblas, glog
// and libtorch bring into rerankd, so it cannot start a single thread in this process.)
//
// Threads: one acceptor ("admin-http") and `threads` workers ("admin-http-w<i>"), all owned and
// joined, separate from the data plane's; each handler does bounded work (a snapshot, a
// flags-file write), so it never holds up reranking. A client that stalls holds one worker for at
// most request_timeout_ms. Start() binds before returning, so the bound port is known (listen
// port 0 is allowed). Stop() (and the destructor) stops accepting at once, lets requests being
// handled finish, ends connections still waiting for a request (shutting their read side), drops
// queued connections and joins every thread.
//
// Thread-safe. `core` is not owned and must outlive the server.
#ifndef RERANK_ADMIN_HTTP_SERVER_H_
#define RERANK_ADMIN_HTTP_SERVER_H_

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "admin/admin_core.h"

namespace rerank {

// One request, as the router sees it. Header names are lower-case.
struct AdminHttpRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;
  std::string body;
};

struct AdminHttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

// The router: pure function of the request and the core's state. Never throws.
AdminHttpResponse HandleAdminHttp(AdminCore& core, const AdminHttpRequest& request);

class AdminHttpServer {
 public:
  struct Options {
    // host:port to bind (admin.http_listen). Loopback by default: the admin plane is for
    // operators on the host (or a sidecar / port-forward), not for the data network. Port 0
    // picks a free port (see port()). The host may be a name ("localhost"), an IPv4 address,
    // "[IPv6]", or empty / "0.0.0.0" for every interface.
    std::string listen = "127.0.0.1:8000";
    // Worker threads (concurrent admin requests). Must be >= 1.
    int threads = 4;
    // Largest accepted request body (POST /flags); beyond it 413. Must be >= 1.
    size_t max_body_bytes = 64 * 1024;
    // Largest accepted request line + headers; beyond it 431. Must be >= 1024.
    size_t max_header_bytes = 16 * 1024;
    // Socket read/write timeout per request. Must be >= 1.
    int request_timeout_ms = 10000;
    // Accepted connections waiting for a worker; beyond it new connections are closed.
    // Must be >= 1.
    int max_pending_connections = 64;
  };

  // Binds and starts serving. InvalidArgument naming a bad option; UNAVAILABLE naming
  // admin.http_listen when the address cannot be resolved or bound.
  static absl::StatusOr<std::unique_ptr<AdminHttpServer>> Start(const Options& options,
                                                                AdminCore* core);
  ~AdminHttpServer();  // Stop()
  AdminHttpServer(const AdminHttpServer&) = delete;
  AdminHttpServer& operator=(const AdminHttpServer&) = delete;

  // The bound port.
  int port() const { return port_; }
  // Stops accepting, finishes running requests, closes queued connections and joins every
  // thread. Idempotent; not from a handler.
  void Stop();

 private:
  AdminHttpServer(const Options& options, AdminCore* core) : options_(options), core_(core) {}
  absl::Status Bind();
  void AcceptLoop();
  void WorkerLoop(int index);
  void Serve(int fd);

  const Options options_;
  AdminCore* const core_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: wakes the acceptor's poll() on Stop()
  int port_ = 0;

  absl::Mutex mu_;
  std::deque<int> pending_ ABSL_GUARDED_BY(mu_);  // accepted sockets waiting for a worker
  std::vector<int> active_ ABSL_GUARDED_BY(mu_);  // per worker: its connection, or -1
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex stop_mu_;  // serializes Stop() callers
  std::thread acceptor_;
  std::vector<std::thread> workers_;
};

}  // namespace rerank

#endif  // RERANK_ADMIN_HTTP_SERVER_H_
