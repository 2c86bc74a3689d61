#include "admin/service_metrics.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/flag_store.h"
#include "prometheus/text_serializer.h"

namespace rerank {
namespace {

// The client label of a report without a client key (none reaches here from the engine).
constexpr char kUnknownClient[] = "_unknown";

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

absl::Status CheckBuckets(const char* field, const std::vector<double>& b) {
  if (b.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("ServiceMetrics: ", field, " must not be empty"));
  for (size_t i = 1; i < b.size(); ++i) {
    if (!(b[i] > b[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("ServiceMetrics: ", field, " must be strictly increasing"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServiceMetrics>> ServiceMetrics::Create(
    const Options& options, prometheus::Registry* registry) {
  if (registry == nullptr)
    return absl::InvalidArgumentError("ServiceMetrics: registry must not be null");
  for (const auto& [field, buckets] :
       std::vector<std::pair<const char*, const std::vector<double>*>>{
           {"duration_buckets", &options.duration_buckets},
           {"queue_wait_buckets", &options.queue_wait_buckets},
           {"batch_pairs_buckets", &options.batch_pairs_buckets},
           {"batch_tokens_buckets", &options.batch_tokens_buckets},
           {"padding_ratio_buckets", &options.padding_ratio_buckets}}) {
    if (absl::Status s = CheckBuckets(field, *buckets); !s.ok()) return s;
  }
  if (options.max_client_series < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ServiceMetrics: max_client_series must be >= 0, got ", options.max_client_series));
  }
  if (options.target_latency <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ServiceMetrics: target_latency must be > 0, got ",
                     absl::FormatDuration(options.target_latency)));
  }
  std::unique_ptr<ServiceMetrics> m(new ServiceMetrics(registry));
  if (absl::Status s = m->Build(options); !s.ok()) return s;
  return m;
}

absl::Status ServiceMetrics::Build(const Options& options) {
  options_ = options;
  prometheus::Registry& r = *registry_;
  // prometheus-cpp reports invalid names and clashes by throwing: this is the adapter boundary.
  try {
    requests_ =
        &BuildCounter()
             .Name("rerank_requests_total")
             .Help(
                 "Data-plane RPCs by rpc, outcome (ok|passthrough|rate_limited|client_error|"
                 "error; error = failures of the service) and gRPC status code.")
             .Register(r);
    client_requests_ = &BuildCounter()
                            .Name("rerank_client_requests_total")
                            .Help(
                                "Data-plane RPCs by client (the rate-limit key; the first "
                                "admin.metrics_max_clients clients, later ones as \"_other\") "
                                "and outcome (as in rerank_requests_total).")
                            .Register(r);
    request_duration_ = &BuildHistogram()
                             .Name("rerank_request_duration_seconds")
                             .Help("Data-plane RPC latency, from arrival to response.")
                             .Register(r);
    target_met_ = &BuildCounter()
                       .Name("rerank_target_latency_met_total")
                       .Help(
                           "Successful (OK) RPCs answered within the latency target "
                           "(rerank_target_latency_seconds) in force when they finished.")
                       .Register(r);
    for (const char* rpc : {"Rerank", "RerankBatch"}) {
      // Series that exist from the start (at 0), so rate() works before the first request.
      requests_->Add({{"rpc", rpc}, {"outcome", "ok"}, {"code", "OK"}});
      request_duration_->Add({{"rpc", rpc}}, options_.duration_buckets);
      target_met_->Add({{"rpc", rpc}});
    }
    target_latency_ = &BuildGauge()
                           .Name("rerank_target_latency_seconds")
                           .Help("The latency target (rerank.target_latency_ms), in seconds.")
                           .Register(r)
                           .Add({});
    target_latency_->Set(absl::ToDoubleSeconds(options_.target_latency));
    pairs_scored_ = &BuildCounter()
                         .Name("rerank_pairs_scored_total")
                         .Help(
                             "(query, document) rows sent to the model by successful requests "
                             "(cache hits excluded, long-document chunks counted).")
                         .Register(r)
                         .Add({});
    queue_wait_ = &BuildHistogram()
                       .Name("rerank_queue_wait_seconds")
                       .Help("Oldest row's wait in the batch queue before its batch started.")
                       .Register(r)
                       .Add({}, options_.queue_wait_buckets);
    inference_ = &BuildHistogram()
                      .Name("rerank_inference_duration_seconds")
                      .Help("Model time per batch (all its forwards).")
                      .Register(r)
                      .Add({}, options_.duration_buckets);
    batch_pairs_ = &BuildHistogram()
                        .Name("rerank_batch_pairs")
                        .Help("Rows taken from the queue per batch.")
                        .Register(r)
                        .Add({}, options_.batch_pairs_buckets);
    batch_tokens_ =
        &BuildHistogram()
             .Name("rerank_batch_tokens")
             .Help("Padded tokens per batch (sum over its forwards of rows x longest row).")
             .Register(r)
             .Add({}, options_.batch_tokens_buckets);
    padding_ratio_ =
        &BuildHistogram()
             .Name("rerank_batch_padding_ratio")
             .Help("Share of a batch's padded tokens that are padding: 1 - real/padded.")
             .Register(r)
             .Add({}, options_.padding_ratio_buckets);
    auto& batches = BuildCounter()
                        .Name("rerank_batches_total")
                        .Help("Batches run by the workers, by outcome (ok|error).")
                        .Register(r);
    batches_ok_ = &batches.Add({{"outcome", "ok"}});
    batches_error_ = &batches.Add({{"outcome", "error"}});
    forwards_ = &BuildCounter()
                     .Name("rerank_model_forwards_total")
                     .Help("Model forward passes (micro-batches).")
                     .Register(r)
                     .Add({});
    real_tokens_ = &BuildCounter()
                        .Name("rerank_batch_real_tokens_total")
                        .Help("Real (unpadded) tokens of the unique rows scored.")
                        .Register(r)
                        .Add({});
    padded_tokens_ = &BuildCounter()
                          .Name("rerank_batch_padded_tokens_total")
                          .Help("Padded tokens run through the model.")
                          .Register(r)
                          .Add({});
    jobs_dropped_ = &BuildCounter()
                         .Name("rerank_jobs_dropped_total")
                         .Help("Scoring jobs dropped before inference or failed, by status code.")
                         .Register(r);
    auto& dropped_pairs =
        BuildCounter()
            .Name("rerank_dropped_pairs_total")
            .Help(
                "Pairs never sent to the model because their request was cancelled or its "
                "deadline passed while queued (inference saved), by reason.")
            .Register(r);
    dropped_pairs_cancelled_ = &dropped_pairs.Add({{"reason", "cancelled"}});
    dropped_pairs_deadline_ = &dropped_pairs.Add({{"reason", "deadline"}});
    cache_hits_ = &BuildCounter()
                       .Name("rerank_cache_hits_total")
                       .Help("Score-cache lookups that hit (per query-document pair).")
                       .Register(r)
                       .Add({});
    cache_misses_ = &BuildCounter()
                         .Name("rerank_cache_misses_total")
                         .Help("Score-cache lookups that missed (per query-document pair).")
                         .Register(r)
                         .Add({});
    cache_evictions_ = &BuildCounter()
                            .Name("rerank_cache_evictions_total")
                            .Help("Score-cache entries evicted to respect its bounds.")
                            .Register(r)
                            .Add({});
    cache_entries_ = &BuildGauge()
                          .Name("rerank_cache_entries")
                          .Help("Entries in the score cache.")
                          .Register(r)
                          .Add({});
    cache_max_entries_ = &BuildGauge()
                              .Name("rerank_cache_max_entries")
                              .Help("Score-cache entry bound (flag cache.max_entries).")
                              .Register(r)
                              .Add({});
    cache_bytes_ = &BuildGauge()
                        .Name("rerank_cache_bytes")
                        .Help("Accounted bytes of the score cache.")
                        .Register(r)
                        .Add({});
    rate_limited_ = &BuildCounter()
                         .Name("rerank_rate_limited_total")
                         .Help("Requests denied by the per-client rate limiter.")
                         .Register(r)
                         .Add({});
    rate_limiter_clients_ = &BuildGauge()
                                 .Name("rerank_rate_limiter_clients")
                                 .Help("Clients currently tracked by the rate limiter.")
                                 .Register(r)
                                 .Add({});
    stage_info_ = &BuildGauge()
                       .Name("rerank_stage_info")
                       .Help("1 for the current rollout stage, 0 for the others.")
                       .Register(r);
    for (const std::string& stage : StageNames()) {
      stage_gauges_[stage] = &stage_info_->Add({{"stage", stage}});
    }
    stage_gauges_[kCustomStage] = &stage_info_->Add({{"stage", kCustomStage}});
    reranker_enabled_ = &BuildGauge()
                             .Name("rerank_reranker_enabled")
                             .Help("1 when the reranker is enabled (flag reranker.enabled).")
                             .Register(r)
                             .Add({});
    cache_enabled_ = &BuildGauge()
                          .Name("rerank_cache_enabled")
                          .Help("1 when the score cache is enabled (flag cache.enabled).")
                          .Register(r)
                          .Add({});
    cache_traffic_percent_ = &BuildGauge()
                                  .Name("rerank_cache_traffic_percent")
                                  .Help(
                                      "Share of clients routed through the cache (flag "
                                      "cache.traffic_percent; 0 when the cache is disabled).")
                                  .Register(r)
                                  .Add({});
    flags_file_invalid_ = &BuildGauge()
                               .Name("rerank_flags_file_invalid")
                               .Help(
                                   "1 while the flags file's latest content is invalid or "
                                   "missing (the last good flags stay in force), else 0.")
                               .Register(r)
                               .Add({});
    audit_written_ = &BuildCounter()
                          .Name("rerank_audit_written_total")
                          .Help("Audit events appended to the audit log.")
                          .Register(r)
                          .Add({});
    audit_dropped_ = &BuildCounter()
                          .Name("rerank_audit_dropped_total")
                          .Help("Audit events dropped (queue full or after shutdown).")
                          .Register(r)
                          .Add({});
    audit_failed_ = &BuildCounter()
                         .Name("rerank_audit_failed_total")
                         .Help("Audit events lost to I/O errors.")
                         .Register(r)
                         .Add({});
    model_info_ = &BuildGauge()
                       .Name("rerank_model_info")
                       .Help("1, labelled with the served model's name, version and precision.")
                       .Register(r);
    ready_ = &BuildGauge()
                  .Name("rerank_ready")
                  .Help("1 when the server is ready (model warmed, not draining).")
                  .Register(r)
                  .Add({});
    queue_pairs_ = &BuildGauge()
                        .Name("rerank_queue_pairs")
                        .Help("Rows waiting in the batch queue.")
                        .Register(r)
                        .Add({});
    busy_workers_ = &BuildGauge()
                         .Name("rerank_busy_workers")
                         .Help("Model workers currently running a batch.")
                         .Register(r)
                         .Add({});
    uptime_ = &BuildGauge()
                   .Name("rerank_uptime_seconds")
                   .Help("Seconds since the server started.")
                   .Register(r)
                   .Add({});
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("ServiceMetrics: cannot register metrics: ", e.what()));
  }
  return absl::OkStatus();
}

void ServiceMetrics::SetSources(Sources sources) {
  absl::MutexLock lock(&refresh_mu_);
  sources_ = std::move(sources);
}

void ServiceMetrics::SetModelInfo(const std::string& name, const std::string& version,
                                  const std::string& precision) {
  absl::MutexLock lock(&refresh_mu_);
  if (model_info_gauge_ != nullptr) model_info_->Remove(model_info_gauge_);
  model_info_gauge_ =
      &model_info_->Add({{"name", name}, {"version", version}, {"precision", precision}});
  model_info_gauge_->Set(1);
}

const char* ServiceMetrics::Outcome(const RequestReport& report) {
  if (report.code == absl::StatusCode::kOk) return report.reranked ? "ok" : "passthrough";
  if (report.rate_limited) return "rate_limited";
  // "error" is what the error alert counts: failures of the service only.
  return IsServerFailure(report) ? "error" : "client_error";
}

void ServiceMetrics::OnRequest(const RequestReport& report) {
  // Family::Add returns the existing series for known labels (a lookup under the family's
  // mutex); the label space is rpc x outcome x code, a few dozen series at most.
  requests_
      ->Add({{"rpc", report.rpc},
             {"outcome", Outcome(report)},
             {"code", absl::StatusCodeToString(report.code)}})
      .Increment();
  if (options_.max_client_series > 0) {
    std::string client = "_other";
    {
      const std::string& key = report.client.empty() ? kUnknownClient : report.client;
      absl::MutexLock lock(&clients_mu_);
      if (clients_.contains(key) ||
          (static_cast<int>(clients_.size()) < options_.max_client_series &&
           clients_.insert(key).second)) {
        client = key;
      }
    }
    client_requests_->Add({{"client", client}, {"outcome", Outcome(report)}}).Increment();
  }
  request_duration_->Add({{"rpc", report.rpc}}, options_.duration_buckets)
      .Observe(absl::ToDoubleSeconds(report.latency));
  if (report.code == absl::StatusCode::kOk && report.pairs_scored > 0) {
    pairs_scored_->Increment(report.pairs_scored);
  }
  if (report.code == absl::StatusCode::kOk && report.latency <= options_.target_latency) {
    target_met_->Add({{"rpc", report.rpc}}).Increment();
  }
}

void ServiceMetrics::OnBatch(const BatchReport& report) {
  (report.ok ? batches_ok_ : batches_error_)->Increment();
  queue_wait_->Observe(absl::ToDoubleSeconds(report.queue_wait));
  inference_->Observe(absl::ToDoubleSeconds(report.inference));
  batch_pairs_->Observe(report.rows);
  batch_tokens_->Observe(static_cast<double>(report.padded_tokens));
  if (report.padded_tokens > 0) {
    padding_ratio_->Observe(1.0 - static_cast<double>(report.real_tokens) /
                                      static_cast<double>(report.padded_tokens));
  }
  if (report.forwards > 0) forwards_->Increment(report.forwards);
  if (report.real_tokens > 0) real_tokens_->Increment(static_cast<double>(report.real_tokens));
  if (report.padded_tokens > 0)
    padded_tokens_->Increment(static_cast<double>(report.padded_tokens));
  if (report.dropped_cancelled_pairs > 0) {
    dropped_pairs_cancelled_->Increment(report.dropped_cancelled_pairs);
  }
  if (report.dropped_deadline_pairs > 0) {
    dropped_pairs_deadline_->Increment(report.dropped_deadline_pairs);
  }
}

void ServiceMetrics::OnJobDropped(absl::StatusCode code) {
  jobs_dropped_->Add({{"code", absl::StatusCodeToString(code)}}).Increment();
}

void ServiceMetrics::SyncCounter(prometheus::Counter* counter, uint64_t value, uint64_t* last) {
  // Counters only go up; a source that restarted from 0 (never, for ours) would just pause it.
  if (value > *last) {
    counter->Increment(static_cast<double>(value - *last));
    *last = value;
  }
}

void ServiceMetrics::Refresh() {
  absl::MutexLock lock(&refresh_mu_);
  const Sources& s = sources_;
  if (s.cache != nullptr) {
    const ScoreCache::Stats st = s.cache->GetStats();
    SyncCounter(cache_hits_, st.hits, &last_cache_hits_);
    SyncCounter(cache_misses_, st.misses, &last_cache_misses_);
    SyncCounter(cache_evictions_, st.evictions, &last_cache_evictions_);
    cache_entries_->Set(static_cast<double>(st.size));
    cache_max_entries_->Set(static_cast<double>(st.max_entries));
    cache_bytes_->Set(static_cast<double>(st.bytes));
  }
  if (s.rate_limiter != nullptr) {
    const RateLimiter::Stats st = s.rate_limiter->GetStats();
    SyncCounter(rate_limited_, st.denied, &last_rate_limited_);
    rate_limiter_clients_->Set(static_cast<double>(st.clients));
  }
  if (s.audit != nullptr) {
    SyncCounter(audit_written_, s.audit->written(), &last_audit_written_);
    SyncCounter(audit_dropped_, s.audit->dropped(), &last_audit_dropped_);
    SyncCounter(audit_failed_, s.audit->failed(), &last_audit_failed_);
  }
  if (s.flags != nullptr) {
    const std::shared_ptr<const FeatureFlags> f = s.flags->Current();
    for (const auto& [stage, gauge] : stage_gauges_) gauge->Set(stage == f->stage ? 1 : 0);
    reranker_enabled_->Set(f->reranker_enabled ? 1 : 0);
    cache_enabled_->Set(f->cache_enabled ? 1 : 0);
    cache_traffic_percent_->Set(f->cache_enabled ? f->cache_traffic_percent : 0);
    // The wiring hands the FlagStore over as its FlagSource interface; its last_error() is what
    // tells an operator that a ConfigMap or hand edit was rejected.
    if (const auto* store = dynamic_cast<const FlagStore*>(s.flags)) {
      flags_file_invalid_->Set(store->last_error().ok() ? 0 : 1);
    }
  }
  if (s.queue != nullptr) {
    queue_pairs_->Set(s.queue->queued_rows());
    busy_workers_->Set(s.queue->busy_workers());
  }
  if (s.ready) ready_->Set(s.ready() ? 1 : 0);
  if (s.clock != nullptr && s.start != absl::InfinitePast()) {
    uptime_->Set(std::max(0.0, absl::ToDoubleSeconds(s.clock->Now() - s.start)));
  }
}

std::string ServiceMetrics::Scrape() {
  Refresh();
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace rerank
