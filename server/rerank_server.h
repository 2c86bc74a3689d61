// Wires one rerankd process together from a Config: model, tokenizer, batcher, flags, cache,
// rate limiter, audit log, engine and the gRPC data-plane server, plus the admin plane: Prometheus
// metrics, live /health stats, the admin HTTP server (admin.http_listen) and the admin gRPC
// server (admin.grpc_listen); an empty admin listen address disables that server. main() is a
// thin shell around it; integration tests start it in-process on port 0.
//
// Lifecycle: Create() loads the model, starts the admin servers (so /live answers and /ready says
// "warming up" during warmup), warms the model and starts serving; only then is it ready.
// Shutdown() marks it not ready (/ready 503 "draining"), drains (health NOT_SERVING, finish
// queued work up to server.drain_timeout_ms, stop the data listener, flush the audit log) and
// stops the admin servers last. Thread-safe accessors; Shutdown() is idempotent.
#ifndef RERANK_SERVER_RERANK_SERVER_H_
#define RERANK_SERVER_RERANK_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "admin/admin_core.h"
#include "admin/admin_service.h"
#include "admin/composite_observer.h"
#include "admin/http_server.h"
#include "admin/live_stats.h"
#include "admin/service_metrics.h"
#include "common/audit_log.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/flag_store.h"
#include "common/rate_limiter.h"
#include "common/score_cache.h"
#include "server/batcher.h"
#include "server/model_info.h"
#include "server/rerank_engine.h"
#include "server/rerank_service.h"
#include "server/request_observer.h"
#include "server/scorer.h"
#include "server/tokenizer.h"

namespace prometheus {
class Registry;
}

namespace rerank {

class RerankServer {
 public:
  // Test seams. Production leaves them empty.
  struct Overrides {
    Clock* clock = nullptr;          // default: RealClock
    ScorerFactory scorer_factory;    // default: TorchScorer on config.model
    RequestObserver* observer = nullptr;         // in addition to metrics and live stats
    BatcherObserver* batcher_observer = nullptr; // in addition to metrics
    // Called from Create() once the admin servers listen, before model warmup, with their ports
    // (0 = disabled): lets a test probe /live and /ready while the server is still warming up.
    std::function<void(int admin_http_port, int admin_grpc_port)> on_admin_listening;
  };

  static absl::StatusOr<std::unique_ptr<RerankServer>> Create(const Config& config);
  static absl::StatusOr<std::unique_ptr<RerankServer>> Create(const Config& config,
                                                              Overrides overrides);
  ~RerankServer();

  // Drains and stops. Safe to call more than once and from any thread but a gRPC callback.
  void Shutdown();

  int data_port() const { return data_port_; }
  int admin_http_port() const { return admin_http_port_; }  // 0 when disabled
  int admin_grpc_port() const { return admin_grpc_port_; }  // 0 when disabled
  bool ready() const { return ready_.load(); }
  // What /ready reports: ready after warmup until Shutdown() begins.
  Readiness readiness() const;
  const Config& config() const { return config_; }
  const ModelInfo& model() const { return model_; }
  FlagStore* flags() { return flags_.get(); }
  ScoreCache* cache() { return cache_.get(); }
  RateLimiter* rate_limiter() { return rate_limiter_.get(); }
  AuditLog* audit() { return audit_.get(); }
  Batcher* batcher() { return batcher_.get(); }
  RerankEngine* engine() { return engine_.get(); }
  Clock* clock() { return clock_; }
  ServiceMetrics* metrics() { return metrics_.get(); }
  LiveStats* live_stats() { return live_stats_.get(); }
  AdminCore* admin() { return admin_core_.get(); }

 private:
  explicit RerankServer(const Config& config) : config_(config) {}
  absl::Status Init(Overrides overrides);
  absl::Status Warmup();
  // Metrics, live stats and the observer fan-out; before the batcher, which reports to them.
  absl::Status InitObservability(const Overrides& overrides);
  // The admin core and its HTTP and gRPC servers; after the engine.
  absl::Status StartAdmin();

  Config config_;
  Clock* clock_ = nullptr;
  ModelInfo model_;
  std::unique_ptr<WordPieceTokenizer> tokenizer_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<FlagStore> flags_;
  std::unique_ptr<ScoreCache> cache_;
  std::unique_ptr<RateLimiter> rate_limiter_;
  // Declared before the batcher and engine, which hold pointers to them.
  absl::Time start_time_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<ServiceMetrics> metrics_;
  std::unique_ptr<LiveStats> live_stats_;
  std::unique_ptr<CompositeRequestObserver> request_observers_;
  std::unique_ptr<CompositeBatcherObserver> batcher_observers_;
  std::unique_ptr<Batcher> batcher_;
  std::unique_ptr<RerankEngine> engine_;
  std::unique_ptr<RerankService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int data_port_ = 0;
  std::atomic<bool> ready_{false};
  std::atomic<bool> shut_down_{false};
  // Admin plane; declared last so it is destroyed first (it reads everything above).
  std::unique_ptr<AdminCore> admin_core_;
  std::unique_ptr<AdminHttpServer> admin_http_;
  std::unique_ptr<AdminGrpcServer> admin_grpc_;
  int admin_http_port_ = 0;
  int admin_grpc_port_ = 0;
};

}  // namespace rerank

#endif  // RERANK_SERVER_RERANK_SERVER_H_
