// Internals of RerankServer (app/rerank_server.h): the components it owns, in construction order.
// Only app/rerank_server.cc and the test peer (tests/testing/rerank_server_peer.h) include this.
#ifndef RERANK_APP_RERANK_SERVER_IMPL_H_
#define RERANK_APP_RERANK_SERVER_IMPL_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "admin/admin_core.h"
#include "admin/admin_service.h"
#include "admin/http_server.h"
#include "admin/live_stats.h"
#include "admin/service_metrics.h"
#include "app/model_manager.h"
#include "app/rerank_server.h"
#include "common/audit_log.h"
#include "common/flag_store.h"
#include "common/http/http_server.h"
#include "common/rate_limiter.h"
#include "common/score_cache.h"
#include "server/http_rerank_service.h"
#include "server/rerank_engine.h"
#include "server/rerank_service.h"

namespace prometheus {
class Registry;
}

namespace rerank {

struct RerankServer::Impl {
  explicit Impl(Options o) : options(std::move(o)), config(options.config) {}

  // Build steps, in order; each fills the members below it.
  absl::Status Build();
  absl::Status InitAudit();
  absl::Status StartHttpDataPlane();  // part of StartDataPlane
  absl::Status InitFlags();
  absl::Status InitCacheAndRateLimiter();
  absl::Status InitObservability();
  absl::Status InitModel();
  absl::Status InitEngine();
  absl::Status StartAdmin();
  absl::Status ResolveAdminToken();
  absl::Status StartDataPlane();
  // A hot reload's new bundle: into the engine and the metrics (ModelManager's SwapFn).
  absl::Status SwapModel(const std::shared_ptr<const ServingModel>& model);
  void Shutdown();
  Readiness GetReadiness() const;

  Options options;
  const Config& config;
  Clock* clock = nullptr;
  absl::Time start_time;
  std::unique_ptr<AuditLog> audit;
  std::unique_ptr<FlagStore> flags;
  std::unique_ptr<ScoreCache> cache;
  std::unique_ptr<RateLimiter> rate_limiter;
  std::unique_ptr<RateLimiter> pair_limiter;  // null unless rate_limit.pairs_per_minute > 0
  // Declared before the batcher and engine, which hold pointers to them.
  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<ServiceMetrics> metrics;
  std::unique_ptr<LiveStats> live_stats;
  std::unique_ptr<CompositeRequestObserver> request_observers;
  std::unique_ptr<CompositeBatcherObserver> batcher_observers;
  // The served model bundles (tokenizer + batcher of replicas), swapped by hot reloads.
  std::unique_ptr<ModelManager> models;
  std::unique_ptr<RerankEngine> engine;
  std::unique_ptr<RerankService> service;
  std::unique_ptr<grpc::Server> grpc_server;
  int data_port = 0;
  // The HTTP data plane (server.http_listen); null when disabled.
  std::unique_ptr<HttpRerankService> http_service;
  std::unique_ptr<HttpServer> http_server;
  int http_port = 0;
  std::atomic<bool> ready{false};
  std::atomic<bool> shut_down{false};
  absl::Notification stopped;
  // The admin token in force: admin.token, or the one generated into admin.token_file.
  std::string admin_token;
  // Admin plane; declared last so it is destroyed first (it reads everything above).
  std::unique_ptr<AdminCore> admin_core;
  std::unique_ptr<AdminHttpServer> admin_http;
  std::unique_ptr<AdminGrpcServer> admin_grpc;
  int admin_http_port = 0;
  int admin_grpc_port = 0;
};

}  // namespace rerank

#endif  // RERANK_APP_RERANK_SERVER_IMPL_H_
