// Prometheus metrics of rerankd (served as text by the admin HTTP server's GET /metrics).
//
// Every family is built once in Create(); label sets are small and fixed by the code (rpc,
// outcome, status code, stage). The one label that request data chooses, `client`, is capped at
// Options::max_client_series values (then "_other"). Names carry the `rerank_` prefix; counters
// end in `_total`, durations are `_seconds` histograms.
//
// Two kinds of series:
//  - event-driven, updated by the observer hooks on the data-plane threads (requests, batches,
//    dropped jobs): a few atomic updates and one label lookup per event, never blocking;
//  - scrape-time, refreshed from the components' own counters by Refresh() just before each
//    serialization (Scrape()): cache hits/misses/evictions/entries from ScoreCache::GetStats(),
//    rate-limiter denials and clients, audit written/dropped, flags (stage, reranker, cache
//    traffic), readiness and queue depth. Taking them from the source of truth at scrape time
//    means /metrics and /health (which reads the same sources) agree exactly.
//
// Series (`rpc` is the gRPC method, "Rerank" | "RerankBatch", or the HTTP data plane's route,
// "/v2/rerank" | "/v1/rerank" | "/rerank": both transports share the names, the label tells them
// apart):
//   rerank_requests_total{rpc,outcome="ok|passthrough|rate_limited|client_error|error",code}
//     error: failures of the service (IsServerFailure: INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED,
//     queue-full RESOURCE_EXHAUSTED, ...); client_error: the caller's mistakes (INVALID_ARGUMENT,
//     FAILED_PRECONDITION, ...) and CANCELLED.
//   rerank_client_requests_total{client,outcome} (bounded, see Options::max_client_series)
//   rerank_request_duration_seconds{rpc}, rerank_pairs_scored_total
//   rerank_target_latency_met_total{rpc}, rerank_target_latency_seconds
//   rerank_queue_wait_seconds, rerank_inference_duration_seconds, rerank_batch_pairs,
//   rerank_batch_tokens, rerank_batch_padding_ratio, rerank_batches_total{outcome},
//   rerank_model_forwards_total, rerank_batch_real_tokens_total, rerank_batch_padded_tokens_total,
//   rerank_jobs_dropped_total{code} (jobs dropped before inference or failed),
//   rerank_dropped_pairs_total{reason="cancelled|deadline"} (pairs whose inference was saved)
//   rerank_cache_hits_total, rerank_cache_misses_total, rerank_cache_evictions_total,
//   rerank_cache_entries, rerank_cache_max_entries, rerank_cache_bytes
//   rerank_rate_limited_total, rerank_rate_limiter_clients
//   rerank_stage_info{stage}, rerank_reranker_enabled, rerank_cache_enabled,
//   rerank_cache_traffic_percent, rerank_flags_file_invalid
//   rerank_audit_written_total, rerank_audit_dropped_total, rerank_audit_failed_total
//   rerank_model_info{name,version,precision}, rerank_ready, rerank_queue_pairs,
//   rerank_busy_workers, rerank_uptime_seconds
//
// Thread-safe. The registry and every source are not owned and must outlive this object.
#ifndef RERANK_ADMIN_SERVICE_METRICS_H_
#define RERANK_ADMIN_SERVICE_METRICS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/audit_log.h"
#include "common/clock.h"
#include "common/feature_flags.h"
#include "common/observers.h"
#include "common/rate_limiter.h"
#include "common/score_cache.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace rerank {

class ServiceMetrics final : public RequestObserver, public BatcherObserver {
 public:
  struct Options {
    // rerank_request_duration_seconds and rerank_inference_duration_seconds buckets (seconds).
    std::vector<double> duration_buckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,     10};
    // rerank_queue_wait_seconds buckets (seconds): batching delays are sub-millisecond.
    std::vector<double> queue_wait_buckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                              0.01,   0.025,   0.05,   0.1,   0.25,   1};
    // rerank_batch_pairs buckets (rows per batch).
    std::vector<double> batch_pairs_buckets = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
    // rerank_batch_tokens buckets (padded tokens per batch).
    std::vector<double> batch_tokens_buckets = {64,   128,  256,  512,   1024,
                                                2048, 4096, 8192, 16384, 32768};
    // rerank_batch_padding_ratio buckets: padded-but-not-real share of a batch's tokens.
    std::vector<double> padding_ratio_buckets = {0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75};
    // rerank.target_latency_ms. rerank_target_latency_met_total counts the successful (OK)
    // requests answered within it, as /health's target_latency_met_rate_percent does; counting
    // at observation time (rather than reading a histogram bucket) keeps the rate right for any
    // target, and rerank_target_latency_seconds exposes the target in force. Must be > 0.
    absl::Duration target_latency = absl::Milliseconds(50);
    // rerank_client_requests_total{client,outcome}: a series for each of the first this many
    // distinct clients; later clients count under client="_other" (client ids are chosen by
    // callers, so the label space must be bounded). 0: no per-client series. Must be >= 0.
    int max_client_series = 32;
  };

  // Read at scrape time; each may be null/empty (that series then stays at its last value, 0).
  struct Sources {
    const ScoreCache* cache = nullptr;
    const RateLimiter* rate_limiter = nullptr;
    const AuditLog* audit = nullptr;
    // When it is a FlagStore, rerank_flags_file_invalid follows its last_error().
    const FlagSource* flags = nullptr;
    const QueueStats* queue = nullptr;  // rerank_queue_pairs, rerank_busy_workers
    std::function<bool()> ready;
    Clock* clock = nullptr;  // with `start`: rerank_uptime_seconds
    absl::Time start = absl::InfinitePast();
  };

  // Builds every family in `registry` (not owned; must outlive this). InvalidArgument if a
  // bucket list is empty or not increasing, target_latency is not positive, or the registry
  // refuses a family (name clash).
  static absl::StatusOr<std::unique_ptr<ServiceMetrics>> Create(const Options& options,
                                                                prometheus::Registry* registry);

  // Sets the scrape-time sources. Call before serving scrapes; may be called again.
  void SetSources(Sources sources);
  // rerank_model_info{name,version,precision} = 1 (replacing a previous one).
  void SetModelInfo(const std::string& name, const std::string& version,
                    const std::string& precision);

  // RequestObserver.
  void OnRequest(const RequestReport& report) override;
  // BatcherObserver.
  void OnBatch(const BatchReport& report) override;
  void OnJobDropped(absl::StatusCode code) override;

  // Brings the scrape-time series up to date from the sources.
  void Refresh();
  // Refresh() then the whole registry in the Prometheus text exposition format (0.0.4).
  std::string Scrape();

  // "ok" | "passthrough" | "rate_limited" | "client_error" | "error".
  static const char* Outcome(const RequestReport& report);

 private:
  explicit ServiceMetrics(prometheus::Registry* registry) : registry_(registry) {}
  absl::Status Build(const Options& options);
  // Moves a scrape-time counter up to `value` (a source counter that only grows).
  void SyncCounter(prometheus::Counter* counter, uint64_t value, uint64_t* last)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(refresh_mu_);

  prometheus::Registry* const registry_;
  Options options_;

  // Families (owned by the registry) and fixed series.
  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  prometheus::Family<prometheus::Counter>* client_requests_ = nullptr;
  prometheus::Family<prometheus::Histogram>* request_duration_ = nullptr;
  prometheus::Counter* pairs_scored_ = nullptr;
  prometheus::Family<prometheus::Counter>* target_met_ = nullptr;
  prometheus::Gauge* target_latency_ = nullptr;
  prometheus::Histogram* queue_wait_ = nullptr;
  prometheus::Histogram* inference_ = nullptr;
  prometheus::Histogram* batch_pairs_ = nullptr;
  prometheus::Histogram* batch_tokens_ = nullptr;
  prometheus::Histogram* padding_ratio_ = nullptr;
  prometheus::Counter* batches_ok_ = nullptr;
  prometheus::Counter* batches_error_ = nullptr;
  prometheus::Counter* forwards_ = nullptr;
  prometheus::Counter* real_tokens_ = nullptr;
  prometheus::Counter* padded_tokens_ = nullptr;
  prometheus::Family<prometheus::Counter>* jobs_dropped_ = nullptr;
  prometheus::Counter* dropped_pairs_cancelled_ = nullptr;
  prometheus::Counter* dropped_pairs_deadline_ = nullptr;
  prometheus::Counter* cache_hits_ = nullptr;
  prometheus::Counter* cache_misses_ = nullptr;
  prometheus::Counter* cache_evictions_ = nullptr;
  prometheus::Gauge* cache_entries_ = nullptr;
  prometheus::Gauge* cache_max_entries_ = nullptr;
  prometheus::Gauge* cache_bytes_ = nullptr;
  prometheus::Counter* rate_limited_ = nullptr;
  prometheus::Gauge* rate_limiter_clients_ = nullptr;
  prometheus::Family<prometheus::Gauge>* stage_info_ = nullptr;
  std::map<std::string, prometheus::Gauge*> stage_gauges_;  // every stage name + custom
  prometheus::Gauge* reranker_enabled_ = nullptr;
  prometheus::Gauge* cache_enabled_ = nullptr;
  prometheus::Gauge* cache_traffic_percent_ = nullptr;
  prometheus::Gauge* flags_file_invalid_ = nullptr;
  prometheus::Counter* audit_written_ = nullptr;
  prometheus::Counter* audit_dropped_ = nullptr;
  prometheus::Counter* audit_failed_ = nullptr;
  prometheus::Family<prometheus::Gauge>* model_info_ = nullptr;
  prometheus::Gauge* ready_ = nullptr;
  prometheus::Gauge* queue_pairs_ = nullptr;
  prometheus::Gauge* busy_workers_ = nullptr;
  prometheus::Gauge* uptime_ = nullptr;

  // The clients that have their own rerank_client_requests_total series (bounded).
  absl::Mutex clients_mu_;
  absl::flat_hash_set<std::string> clients_ ABSL_GUARDED_BY(clients_mu_);

  // Serializes Refresh() (concurrent scrapes) and guards the sources and last synced values.
  absl::Mutex refresh_mu_;
  Sources sources_ ABSL_GUARDED_BY(refresh_mu_);
  prometheus::Gauge* model_info_gauge_ ABSL_GUARDED_BY(refresh_mu_) = nullptr;
  uint64_t last_cache_hits_ ABSL_GUARDED_BY(refresh_mu_) = 0;
  uint64_t last_cache_misses_ ABSL_GUARDED_BY(refresh_mu_) = 0;
  uint64_t last_cache_evictions_ ABSL_GUARDED_BY(refresh_mu_) = 0;
  uint64_t last_rate_limited_ ABSL_GUARDED_BY(refresh_mu_) = 0;
  uint64_t last_audit_written_ ABSL_GUARDED_BY(refresh_mu_) = 0;
  uint64_t last_audit_dropped_ ABSL_GUARDED_BY(refresh_mu_) = 0;
  uint64_t last_audit_failed_ ABSL_GUARDED_BY(refresh_mu_) = 0;
};

}  // namespace rerank

#endif  // RERANK_ADMIN_SERVICE_METRICS_H_
