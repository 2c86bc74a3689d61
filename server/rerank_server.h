// Wires one rerankd process together from a Config: model, tokenizer, batcher, flags, cache,
// rate limiter, audit log, engine and the gRPC data-plane server (plus the admin plane when
// attached). main() is a thin shell around it; integration tests start it in-process on port 0.
//
// Lifecycle: Create() loads and warms the model and starts serving; Shutdown() drains (health
// NOT_SERVING, finish queued work up to server.drain_timeout_ms, stop listeners, flush the audit
// log). Thread-safe accessors; Shutdown() is idempotent.
#ifndef RERANK_SERVER_RERANK_SERVER_H_
#define RERANK_SERVER_RERANK_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
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

namespace rerank {

class RerankServer {
 public:
  // Test seams. Production leaves them empty.
  struct Overrides {
    Clock* clock = nullptr;          // default: RealClock
    ScorerFactory scorer_factory;    // default: TorchScorer on config.model
    RequestObserver* observer = nullptr;
    BatcherObserver* batcher_observer = nullptr;
  };

  static absl::StatusOr<std::unique_ptr<RerankServer>> Create(const Config& config);
  static absl::StatusOr<std::unique_ptr<RerankServer>> Create(const Config& config,
                                                              Overrides overrides);
  ~RerankServer();

  // Drains and stops. Safe to call more than once and from any thread but a gRPC callback.
  void Shutdown();

  int data_port() const { return data_port_; }
  bool ready() const { return ready_.load(); }
  const Config& config() const { return config_; }
  const ModelInfo& model() const { return model_; }
  FlagStore* flags() { return flags_.get(); }
  ScoreCache* cache() { return cache_.get(); }
  RateLimiter* rate_limiter() { return rate_limiter_.get(); }
  AuditLog* audit() { return audit_.get(); }
  Batcher* batcher() { return batcher_.get(); }
  RerankEngine* engine() { return engine_.get(); }
  Clock* clock() { return clock_; }

 private:
  explicit RerankServer(const Config& config) : config_(config) {}
  absl::Status Init(Overrides overrides);
  absl::Status Warmup();

  Config config_;
  Clock* clock_ = nullptr;
  ModelInfo model_;
  std::unique_ptr<WordPieceTokenizer> tokenizer_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<FlagStore> flags_;
  std::unique_ptr<ScoreCache> cache_;
  std::unique_ptr<RateLimiter> rate_limiter_;
  std::unique_ptr<Batcher> batcher_;
  std::unique_ptr<RerankEngine> engine_;
  std::unique_ptr<RerankService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int data_port_ = 0;
  std::atomic<bool> ready_{false};
  std::atomic<bool> shut_down_{false};
};

}  // namespace rerank

#endif  // RERANK_SERVER_RERANK_SERVER_H_
