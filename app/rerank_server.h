// The composition root: wires one rerankd process together from a Config, above both planes
// (like TF Serving's model_servers/server.h). The data plane (server/: model, tokenizer, batcher,
// engine, gRPC service) and the admin plane (admin/: metrics, live /health stats, admin HTTP and
// gRPC servers) know only the small interfaces of common/observers.h; this is the one place that
// knows both. main() (app/main.cc) is a thin shell around it; integration tests start it
// in-process on port 0 and reach its components through tests/testing/rerank_server_peer.h.
//
// Lifecycle: BuildAndStart() loads the model, starts the admin servers (so /live answers and
// /ready says "warming up" during warmup), warms the model and starts serving; only then is it
// ready; then hot model reloads are accepted (app/model_manager.h). Shutdown() (SIGTERM) turns
// not ready at once (/ready 503 "draining", grpc.health.v1 NOT_SERVING) while the data port keeps
// serving for server.drain_grace_ms, so load balancers move away; then it stops accepting
// (GOAWAY), lets in-flight requests finish for up to server.drain_timeout_ms, stops the model's
// workers, flushes the audit log (a `shutdown` event) and stops the admin servers last. Wait()
// blocks until Shutdown() has finished.
//
// Thread-safe. Shutdown() is idempotent; not from a gRPC callback.
#ifndef RERANK_APP_RERANK_SERVER_H_
#define RERANK_APP_RERANK_SERVER_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/observers.h"
#include "server/scorer.h"

namespace rerank {

class RerankServer {
 public:
  struct Options {
    Config config;  // validated by the caller (ValidateConfig); BuildAndStart re-checks nothing
    // Test seams; production leaves them empty.
    Clock* clock = nullptr;                       // default: RealClock
    ScorerFactory scorer_factory;                 // default: TorchScorer on config.model
    RequestObserver* observer = nullptr;          // in addition to metrics and live stats
    BatcherObserver* batcher_observer = nullptr;  // in addition to metrics
    // Called once the admin servers listen, before model warmup, with their ports (0 =
    // disabled): lets a test probe /live and /ready while the server is still warming up.
    std::function<void(int admin_http_port, int admin_grpc_port)> on_admin_listening;
  };

  // Builds every component and starts serving. On error everything started is stopped again.
  static absl::StatusOr<std::unique_ptr<RerankServer>> BuildAndStart(Options options);
  ~RerankServer();  // Shutdown()
  RerankServer(const RerankServer&) = delete;
  RerankServer& operator=(const RerankServer&) = delete;

  // Drains and stops (see the file comment; takes up to drain_grace_ms + drain_timeout_ms).
  // Safe to call more than once and from any thread but a gRPC callback.
  void Shutdown();
  // Blocks until Shutdown() has completed (called from another thread, e.g. a signal waiter).
  void Wait();

  // Bound ports (listen port 0 picks one); 0 when that listener is disabled.
  int data_port() const;
  int http_port() const;  // the HTTP data plane (server.http_listen)
  int admin_http_port() const;
  int admin_grpc_port() const;

 private:
  friend class RerankServerTestPeer;
  struct Impl;
  explicit RerankServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rerank

#endif  // RERANK_APP_RERANK_SERVER_H_
