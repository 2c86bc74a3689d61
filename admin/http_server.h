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
//   POST /model/reload  token; ReloadModelRequest {"dir": d, "actor": a} -> ReloadModelResponse
//                  once the new model serves (the reload runs in the background; the answer
//                  comes from the reload thread, never blocking an I/O thread). 404 / 400 for a
//                  broken model (the old one keeps serving), 409 while another reload runs.
// Errors are Error {"error": "..."}: 400 bad JSON / unknown stage / invalid value (naming the
// key) / malformed HTTP, 401 missing or wrong token, 403 no token configured, 404 unknown path,
// 405 wrong method (with an Allow header), 408 request not completed in request_timeout_ms,
// 413 body too large, 431 headers too large, 503 too many open connections or shutting down.
//
// Transport: the shared asynchronous HTTP layer (common/http/http_server.h, Boost.Beast):
// keep-alive, pipelining, "Expect: 100-continue", chunked or Content-Length bodies; an absolute
// deadline per request and an idle timeout between requests; a bound on open connections. Idle
// or trickling clients cost no thread, so a few hundred slow connections do not delay the
// kubelet's /live and /ready probes. (Not civetweb: the Debian build fixes its threads' stacks
// at 100 KiB, below the static TLS that libopenblas, glog and libtorch bring into rerankd, so it
// cannot start a single thread in this process; the Asio threads here are ours, normal stacks.)
//
// Threads: `threads` I/O threads ("admin-http-<i>"), owned and joined, separate from the data
// plane's; handlers run on them and do bounded work (a snapshot, a flags-file write), so they
// never hold up reranking. A model reload is answered from the reload thread. Start() binds before
// returning, so the bound port is known (listen port 0 is allowed). Stop() (and the destructor)
// stops accepting at once, closes connections that are idle or still sending a request, lets
// requests being handled finish, and joins every thread.
//
// Thread-safe. `core` is not owned and must outlive the server.
#ifndef RERANK_ADMIN_HTTP_SERVER_H_
#define RERANK_ADMIN_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "admin/admin_core.h"
#include "common/http/http_server.h"
#include "common/http/http_types.h"

namespace rerank {

// One request, as the router sees it (header names lower-case), and its answer.
using AdminHttpRequest = HttpRequest;
using AdminHttpResponse = HttpResponse;

// The router. Calls `respond` exactly once: inline for every route but POST /model/reload, which
// answers later from the reload thread. Never throws.
void RouteAdminHttp(AdminCore& core, const AdminHttpRequest& request,
                    std::function<void(AdminHttpResponse)> respond);
// RouteAdminHttp waiting for the answer (blocks for the length of a model reload): for tests.
AdminHttpResponse HandleAdminHttp(AdminCore& core, const AdminHttpRequest& request);

class AdminHttpServer {
 public:
  struct Options {
    // host:port to bind (admin.http_listen). Loopback by default: the admin plane is for
    // operators on the host (or a sidecar / port-forward), not for the data network. Port 0
    // picks a free port (see port()). The host may be a name ("localhost"), an IPv4 address,
    // "[IPv6]", or empty / "0.0.0.0" for every interface.
    std::string listen = "127.0.0.1:8000";
    // I/O threads serving every admin connection. 1..64.
    int threads = 2;
    // Largest accepted request body (POST /flags); beyond it 413. Must be >= 1.
    size_t max_body_bytes = 64 * 1024;
    // Largest accepted request line + headers; beyond it 431. 1 KiB..1 MiB.
    size_t max_header_bytes = 16 * 1024;
    // Absolute deadline of one request, from its first byte until the response is written;
    // beyond it 408 and the connection closes. Must be >= 1.
    int request_timeout_ms = 10000;
    // A keep-alive connection waiting longer than this for its next request is closed. >= 1.
    int idle_timeout_ms = 30000;
    // Open connections; beyond it a new one gets 503 and is closed. Probes, scrapes and
    // operators need a handful; the headroom absorbs slow or stuck clients. 1..1000000.
    int max_connections = 512;
  };

  // Binds and starts serving. InvalidArgument naming a bad option; UNAVAILABLE naming
  // admin.http_listen when the address cannot be resolved or bound.
  static absl::StatusOr<std::unique_ptr<AdminHttpServer>> Start(const Options& options,
                                                                AdminCore* core);
  ~AdminHttpServer() = default;  // stops the server
  AdminHttpServer(const AdminHttpServer&) = delete;
  AdminHttpServer& operator=(const AdminHttpServer&) = delete;

  // The bound port.
  int port() const { return http_->port(); }
  // Transport counters (connections, refusals, timeouts).
  HttpServer::Stats stats() const { return http_->stats(); }
  // See the file comment. Idempotent; not from a handler.
  void Stop() { http_->Stop(); }

 private:
  explicit AdminHttpServer(std::unique_ptr<HttpServer> http) : http_(std::move(http)) {}

  std::unique_ptr<HttpServer> http_;
};

}  // namespace rerank

#endif  // RERANK_ADMIN_HTTP_SERVER_H_
