#include <unistd.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "admin/service_metrics.h"
#include "common/flag_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/batcher.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_scorer.h"
#include "tests/testing/files.h"
#include "tests/testing/prometheus_text.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using testing::FakeClock;
using testing::FakeScorerControl;
using testing::PromText;

class ServiceMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = ServiceMetrics::Create(ServiceMetrics::Options(), &registry_);
    ASSERT_TRUE(m.ok()) << m.status();
    metrics_ = *std::move(m);
  }
  PromText Scrape() {
    absl::StatusOr<PromText> p = PromText::Parse(metrics_->Scrape());
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *std::move(p) : PromText();
  }
  static RequestReport Report(const std::string& rpc, absl::StatusCode code, double seconds,
                              bool reranked = true, int pairs = 0) {
    RequestReport r;
    r.rpc = rpc;
    r.code = code;
    r.latency = absl::Milliseconds(seconds * 1000);
    r.reranked = code == absl::StatusCode::kOk && reranked;
    r.pairs_scored = pairs;
    return r;
  }

  prometheus::Registry registry_;
  std::unique_ptr<ServiceMetrics> metrics_;
};

TEST_F(ServiceMetricsTest, NamingConventionsAndTypes) {
  // Labelled families without a series are not exposed: give each one first.
  metrics_->OnJobDropped(absl::StatusCode::kCancelled);
  metrics_->SetModelInfo("m", "v", "fp32");
  PromText p = Scrape();
  // Request counters exist from the start, at 0.
  EXPECT_EQ(p.Value("rerank_requests_total", {{"rpc", "Rerank"}, {"outcome", "ok"}}), 0);
  EXPECT_EQ(p.Value("rerank_requests_total", {{"rpc", "RerankBatch"}, {"outcome", "ok"}}), 0);
  ASSERT_FALSE(p.samples().empty());
  for (const testing::PromSample& s : p.samples()) {
    EXPECT_EQ(s.name.rfind("rerank_", 0), 0u) << s.name;
  }
  for (const char* counter :
       {"rerank_requests_total", "rerank_pairs_scored_total", "rerank_cache_hits_total",
        "rerank_cache_misses_total", "rerank_cache_evictions_total", "rerank_rate_limited_total",
        "rerank_audit_written_total", "rerank_audit_dropped_total", "rerank_jobs_dropped_total",
        "rerank_dropped_pairs_total", "rerank_batches_total", "rerank_model_forwards_total"}) {
    EXPECT_EQ(p.Type(counter), "counter") << counter;
  }
  for (const char* histogram : {"rerank_request_duration_seconds", "rerank_queue_wait_seconds",
                                "rerank_inference_duration_seconds", "rerank_batch_pairs",
                                "rerank_batch_tokens", "rerank_batch_padding_ratio"}) {
    EXPECT_EQ(p.Type(histogram), "histogram") << histogram;
  }
  for (const char* gauge :
       {"rerank_cache_entries", "rerank_rate_limiter_clients", "rerank_stage_info",
        "rerank_reranker_enabled", "rerank_cache_traffic_percent", "rerank_model_info",
        "rerank_ready", "rerank_queue_pairs"}) {
    EXPECT_EQ(p.Type(gauge), "gauge") << gauge;
  }
}

TEST_F(ServiceMetricsTest, RequestsByRpcOutcomeAndCode) {
  metrics_->OnRequest(Report("Rerank", absl::StatusCode::kOk, 0.003, true, 4));
  metrics_->OnRequest(Report("Rerank", absl::StatusCode::kOk, 0.020, true, 2));
  metrics_->OnRequest(Report("Rerank", absl::StatusCode::kOk, 0.001, /*reranked=*/false));
  metrics_->OnRequest(Report("RerankBatch", absl::StatusCode::kInvalidArgument, 0.0005));
  RequestReport limited = Report("Rerank", absl::StatusCode::kResourceExhausted, 0.0001);
  limited.rate_limited = true;
  metrics_->OnRequest(limited);
  // Queue full is RESOURCE_EXHAUSTED too, but an error, not a rate limit.
  metrics_->OnRequest(Report("Rerank", absl::StatusCode::kResourceExhausted, 0.0001));

  PromText p = Scrape();
  EXPECT_EQ(p.Sum("rerank_requests_total"), 6);
  EXPECT_EQ(
      p.Value("rerank_requests_total", {{"rpc", "Rerank"}, {"outcome", "ok"}, {"code", "OK"}}), 2);
  EXPECT_EQ(p.Value("rerank_requests_total",
                    {{"rpc", "Rerank"}, {"outcome", "passthrough"}, {"code", "OK"}}),
            1);
  EXPECT_EQ(
      p.Value("rerank_requests_total",
              {{"rpc", "RerankBatch"}, {"outcome", "client_error"}, {"code", "INVALID_ARGUMENT"}}),
      1);
  EXPECT_EQ(
      p.Value("rerank_requests_total",
              {{"rpc", "Rerank"}, {"outcome", "rate_limited"}, {"code", "RESOURCE_EXHAUSTED"}}),
      1);
  EXPECT_EQ(p.Value("rerank_requests_total",
                    {{"rpc", "Rerank"}, {"outcome", "error"}, {"code", "RESOURCE_EXHAUSTED"}}),
            1);
  EXPECT_EQ(p.Value("rerank_request_duration_seconds_count", {{"rpc", "Rerank"}}), 5);
  EXPECT_EQ(p.Value("rerank_request_duration_seconds_count", {{"rpc", "RerankBatch"}}), 1);
  EXPECT_NEAR(*p.Value("rerank_request_duration_seconds_sum", {{"rpc", "Rerank"}}),
              0.003 + 0.020 + 0.001 + 0.0001 + 0.0001, 1e-9);
  // 3 ms and 1 ms and two 0.1 ms land at or below the 5 ms bucket; 20 ms does not.
  EXPECT_EQ(p.Value("rerank_request_duration_seconds_bucket", {{"rpc", "Rerank"}, {"le", "0.005"}}),
            4);
  EXPECT_EQ(p.Value("rerank_pairs_scored_total"), 6);
}

TEST_F(ServiceMetricsTest, BatchesAndDroppedJobs) {
  BatchReport b;
  b.rows = 8;
  b.unique_rows = 6;
  b.forwards = 2;
  b.real_tokens = 300;
  b.padded_tokens = 400;
  b.queue_wait = absl::Microseconds(700);
  b.inference = absl::Milliseconds(12);
  b.dropped_cancelled_pairs = 2;
  metrics_->OnBatch(b);
  b.ok = false;
  b.dropped_cancelled_pairs = 0;
  b.dropped_deadline_pairs = 3;
  metrics_->OnBatch(b);
  metrics_->OnJobDropped(absl::StatusCode::kDeadlineExceeded);
  metrics_->OnJobDropped(absl::StatusCode::kDeadlineExceeded);
  metrics_->OnJobDropped(absl::StatusCode::kCancelled);

  PromText p = Scrape();
  EXPECT_EQ(p.Value("rerank_batches_total", {{"outcome", "ok"}}), 1);
  EXPECT_EQ(p.Value("rerank_batches_total", {{"outcome", "error"}}), 1);
  EXPECT_EQ(p.Value("rerank_batch_pairs_count"), 2);
  EXPECT_EQ(p.Value("rerank_batch_pairs_sum"), 16);
  EXPECT_EQ(p.Value("rerank_batch_tokens_sum"), 800);
  EXPECT_NEAR(*p.Value("rerank_batch_padding_ratio_sum"), 2 * 0.25, 1e-12);
  EXPECT_EQ(p.Value("rerank_model_forwards_total"), 4);
  EXPECT_EQ(p.Value("rerank_batch_real_tokens_total"), 600);
  EXPECT_EQ(p.Value("rerank_batch_padded_tokens_total"), 800);
  EXPECT_NEAR(*p.Value("rerank_queue_wait_seconds_sum"), 0.0014, 1e-12);
  EXPECT_EQ(p.Value("rerank_queue_wait_seconds_bucket", {{"le", "0.0005"}}), 0);
  EXPECT_EQ(p.Value("rerank_queue_wait_seconds_bucket", {{"le", "0.001"}}), 2);
  EXPECT_NEAR(*p.Value("rerank_inference_duration_seconds_sum"), 0.024, 1e-12);
  EXPECT_EQ(p.Value("rerank_jobs_dropped_total", {{"code", "DEADLINE_EXCEEDED"}}), 2);
  EXPECT_EQ(p.Value("rerank_jobs_dropped_total", {{"code", "CANCELLED"}}), 1);
  EXPECT_EQ(p.Value("rerank_dropped_pairs_total", {{"reason", "cancelled"}}), 2);
  EXPECT_EQ(p.Value("rerank_dropped_pairs_total", {{"reason", "deadline"}}), 3);
}

TEST_F(ServiceMetricsTest, ScrapeTimeSeriesFollowTheirSources) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  auto cache = ScoreCache::Create(ScoreCache::Options{});
  ASSERT_TRUE(cache.ok());
  RateLimiter::Options rl;
  rl.requests_per_minute = 2;
  auto limiter = RateLimiter::Create(rl, &clock);
  ASSERT_TRUE(limiter.ok());
  const fs::path dir = fs::path(::testing::TempDir()) / absl::StrCat("metrics_audit_", getpid());
  fs::remove_all(dir);
  AuditLog::Options ao;
  ao.path = (dir / "audit.jsonl").string();
  auto audit = AuditLog::Create(ao, &clock);
  ASSERT_TRUE(audit.ok()) << audit.status();
  absl::StatusOr<FeatureFlags> cache50 = ApplyStage("cache-50", FeatureFlags{});
  ASSERT_TRUE(cache50.ok());
  StaticFlagSource flags(*cache50);
  bool ready = false;

  ServiceMetrics::Sources s;
  s.cache = cache->get();
  s.rate_limiter = limiter->get();
  s.audit = audit->get();
  s.flags = &flags;
  s.ready = [&ready] { return ready; };
  s.clock = &clock;
  s.start = absl::FromUnixSeconds(900);
  metrics_->SetSources(s);
  metrics_->SetModelInfo("tiny", "v1", "fp32");

  (*cache)->Insert("m", "q", "a", 1.0f);
  (*cache)->Insert("m", "q", "b", 2.0f);
  (*cache)->Lookup("m", "q", "a");
  (*cache)->Lookup("m", "q", "zzz");
  (*cache)->Lookup("m", "q", "yyy");
  for (int i = 0; i < 3; ++i) (*limiter)->Allow("client");
  (*audit)->Record("startup", {});
  (*audit)->Record("rerank", {});
  (*audit)->Flush();

  PromText p = Scrape();
  EXPECT_EQ(p.Value("rerank_cache_hits_total"), 1);
  EXPECT_EQ(p.Value("rerank_cache_misses_total"), 2);
  EXPECT_EQ(p.Value("rerank_cache_entries"), 2);
  EXPECT_EQ(p.Value("rerank_cache_evictions_total"), 0);
  EXPECT_EQ(p.Value("rerank_rate_limited_total"), 1);
  EXPECT_EQ(p.Value("rerank_rate_limiter_clients"), 1);
  EXPECT_EQ(p.Value("rerank_audit_written_total"), 2);
  EXPECT_EQ(p.Value("rerank_audit_dropped_total"), 0);
  EXPECT_EQ(p.Value("rerank_stage_info", {{"stage", "cache-50"}}), 1);
  EXPECT_EQ(p.Sum("rerank_stage_info"), 1);  // every other stage 0
  EXPECT_EQ(p.Value("rerank_stage_info", {{"stage", "feature-flags"}}), 0);
  EXPECT_EQ(p.Value("rerank_reranker_enabled"), 1);
  EXPECT_EQ(p.Value("rerank_cache_traffic_percent"), 50);
  EXPECT_EQ(p.Value("rerank_ready"), 0);
  EXPECT_EQ(
      p.Value("rerank_model_info", {{"name", "tiny"}, {"version", "v1"}, {"precision", "fp32"}}),
      1);
  EXPECT_EQ(p.Value("rerank_uptime_seconds"), 100);

  // Second scrape after more activity: counters advance by the difference, not twice.
  (*cache)->Lookup("m", "q", "b");
  (*cache)->SetMaxEntries(1);  // evicts one
  (*audit)->Shutdown();
  (*audit)->Record("late", {});  // dropped after shutdown
  ready = true;
  clock.Advance(absl::Seconds(5));
  p = Scrape();
  EXPECT_EQ(p.Value("rerank_cache_hits_total"), 2);
  EXPECT_EQ(p.Value("rerank_cache_misses_total"), 2);
  EXPECT_EQ(p.Value("rerank_cache_evictions_total"), 1);
  EXPECT_EQ(p.Value("rerank_cache_entries"), 1);
  EXPECT_EQ(p.Value("rerank_audit_dropped_total"), 1);
  EXPECT_EQ(p.Value("rerank_ready"), 1);
  EXPECT_EQ(p.Value("rerank_uptime_seconds"), 105);
  // Model info is replaced, not duplicated.
  metrics_->SetModelInfo("tiny", "v2", "bf16");
  p = Scrape();
  EXPECT_EQ(p.Sum("rerank_model_info"), 1);
  EXPECT_EQ(p.Value("rerank_model_info", {{"version", "v2"}, {"precision", "bf16"}}), 1);
  fs::remove_all(dir);
}

TEST_F(ServiceMetricsTest, StageInfoFollowsFlagChangesAndDisabledReranker) {
  absl::StatusOr<FeatureFlags> disabled = ApplyStage("disabled", FeatureFlags{});
  ASSERT_TRUE(disabled.ok());
  StaticFlagSource flags(*disabled);
  ServiceMetrics::Sources s;
  s.flags = &flags;
  metrics_->SetSources(s);
  PromText p = Scrape();
  EXPECT_EQ(p.Value("rerank_stage_info", {{"stage", "disabled"}}), 1);
  EXPECT_EQ(p.Value("rerank_reranker_enabled"), 0);
  EXPECT_EQ(p.Value("rerank_cache_traffic_percent"), 0);
}

TEST_F(ServiceMetricsTest, QueueDepthFromTheBatcher) {
  FakeClock clock;
  FakeScorerControl control;
  Batcher::Options bo;
  bo.max_queue_delay = absl::ZeroDuration();
  auto batcher = Batcher::Create(bo, control.Factory(), &clock, metrics_.get());
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  ServiceMetrics::Sources s;
  s.queue = batcher->get();
  metrics_->SetSources(s);

  auto row = [](int64_t tok) {
    Encoding e;
    e.input_ids = {101, tok, 102, tok, 102};
    e.token_type_ids = {0, 0, 0, 1, 1};
    return e;
  };
  absl::Notification first_done, second_done;
  auto job = [&](std::vector<Encoding> rows, absl::Notification* done) {
    auto j = std::make_shared<ScoringJob>();
    j->rows = std::move(rows);
    j->done = [done](absl::StatusOr<std::vector<float>>) { done->Notify(); };
    return j;
  };
  control.Gate();
  ASSERT_TRUE((*batcher)->Submit(job({row(1000)}, &first_done)).ok());
  control.WaitForCalls(1);  // the worker holds the first job
  ASSERT_TRUE((*batcher)->Submit(job({row(1001), row(1002), row(1003)}, &second_done)).ok());
  PromText p = Scrape();
  EXPECT_EQ(p.Value("rerank_queue_pairs"), 3);
  EXPECT_EQ(p.Value("rerank_busy_workers"), 1);
  control.Release();
  first_done.WaitForNotification();
  second_done.WaitForNotification();
  (*batcher)->Stop();
  p = Scrape();
  EXPECT_EQ(p.Value("rerank_queue_pairs"), 0);
  EXPECT_EQ(p.Sum("rerank_batches_total"), 2);  // reported through the BatcherObserver
  EXPECT_EQ(p.Value("rerank_batch_pairs_sum"), 4);
}

TEST(ServiceMetricsTargetTest, CountsOkRequestsWithinTheConfiguredTarget) {
  auto report = [](const char* rpc, absl::StatusCode code, absl::Duration latency) {
    RequestReport r;
    r.rpc = rpc;
    r.code = code;
    r.latency = latency;
    r.reranked = code == absl::StatusCode::kOk;
    r.rate_limited = code == absl::StatusCode::kResourceExhausted;
    return r;
  };
  // The same traffic against two targets: the counter follows the target in force.
  for (const auto& [target_ms, want_met] : std::vector<std::pair<int, double>>{{20, 2}, {100, 3}}) {
    prometheus::Registry registry;
    ServiceMetrics::Options o;
    o.target_latency = absl::Milliseconds(target_ms);
    auto m = ServiceMetrics::Create(o, &registry);
    ASSERT_TRUE(m.ok()) << m.status();
    (*m)->OnRequest(report("Rerank", absl::StatusCode::kOk, absl::Milliseconds(10)));
    (*m)->OnRequest(report("Rerank", absl::StatusCode::kOk, absl::Milliseconds(20)));  // == target
    (*m)->OnRequest(report("Rerank", absl::StatusCode::kOk, absl::Milliseconds(30)));
    (*m)->OnRequest(report("Rerank", absl::StatusCode::kOk, absl::Milliseconds(150)));
    // Fast failures never count as meeting the target.
    (*m)->OnRequest(report("Rerank", absl::StatusCode::kInvalidArgument, absl::Milliseconds(1)));
    (*m)->OnRequest(report("Rerank", absl::StatusCode::kResourceExhausted, absl::Milliseconds(1)));
    (*m)->OnRequest(report("RerankBatch", absl::StatusCode::kOk, absl::Milliseconds(5)));
    absl::StatusOr<PromText> p = PromText::Parse((*m)->Scrape());
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->Type("rerank_target_latency_met_total"), "counter");
    EXPECT_EQ(p->Value("rerank_target_latency_met_total", {{"rpc", "Rerank"}}), want_met)
        << "target " << target_ms << " ms";
    EXPECT_EQ(p->Value("rerank_target_latency_met_total", {{"rpc", "RerankBatch"}}), 1);
    EXPECT_NEAR(*p->Value("rerank_target_latency_seconds"), target_ms / 1000.0, 1e-12);
  }
  prometheus::Registry registry;
  ServiceMetrics::Options o;
  o.target_latency = absl::ZeroDuration();
  EXPECT_THAT(ServiceMetrics::Create(o, &registry).status().message(),
              ::testing::HasSubstr("target_latency"));
}

TEST_F(ServiceMetricsTest, FlagsFileInvalidFollowsTheFlagStore) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  const fs::path dir = fs::path(::testing::TempDir()) / absl::StrCat("metrics_flags_", getpid());
  fs::remove_all(dir);
  FlagStore::Options fo;
  fo.path = (dir / "flags.yaml").string();
  fo.poll_interval = absl::ZeroDuration();  // polled by CheckNow() below
  auto store = FlagStore::Create(fo, &clock, nullptr);
  ASSERT_TRUE(store.ok()) << store.status();
  ServiceMetrics::Sources s;
  s.flags = store->get();
  metrics_->SetSources(s);
  EXPECT_EQ(Scrape().Value("rerank_flags_file_invalid"), 0);

  testing::WriteFile(fo.path, "stage: full\ncache: {traffic_percent: 150}\n");
  EXPECT_FALSE((*store)->CheckNow().ok());
  EXPECT_EQ(Scrape().Value("rerank_flags_file_invalid"), 1);
  EXPECT_EQ(Scrape().Value("rerank_stage_info", {{"stage", "feature-flags"}}), 1);  // last good

  testing::WriteFile(fo.path, "stage: cache-10\ncache: {enabled: true, traffic_percent: 10}\n");
  ASSERT_TRUE((*store)->CheckNow().ok());
  PromText p = Scrape();
  EXPECT_EQ(p.Value("rerank_flags_file_invalid"), 0);
  EXPECT_EQ(p.Value("rerank_stage_info", {{"stage", "cache-10"}}), 1);
  (*store)->Stop();
  fs::remove_all(dir);
}

TEST(ServiceMetricsClientTest, PerClientSeriesAreBoundedThenOther) {
  prometheus::Registry registry;
  ServiceMetrics::Options o;
  o.max_client_series = 2;
  auto m = ServiceMetrics::Create(o, &registry);
  ASSERT_TRUE(m.ok()) << m.status();
  auto report = [](const std::string& client, absl::StatusCode code, bool rate_limited = false) {
    RequestReport r;
    r.rpc = "Rerank";
    r.client = client;
    r.code = code;
    r.reranked = code == absl::StatusCode::kOk;
    r.rate_limited = rate_limited;
    return r;
  };
  (*m)->OnRequest(report("search-api", absl::StatusCode::kOk));
  (*m)->OnRequest(report("search-api", absl::StatusCode::kOk));
  (*m)->OnRequest(report("rag-bot", absl::StatusCode::kResourceExhausted, true));
  // The cap is reached: new clients share one series, known ones keep theirs.
  for (int i = 0; i < 100; ++i) {
    (*m)->OnRequest(report(absl::StrCat("crawler-", i), absl::StatusCode::kOk));
  }
  (*m)->OnRequest(report("rag-bot", absl::StatusCode::kOk));
  absl::StatusOr<PromText> p = PromText::Parse((*m)->Scrape());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->Type("rerank_client_requests_total"), "counter");
  EXPECT_EQ(p->Value("rerank_client_requests_total", {{"client", "search-api"}, {"outcome", "ok"}}),
            2);
  EXPECT_EQ(p->Value("rerank_client_requests_total",
                     {{"client", "rag-bot"}, {"outcome", "rate_limited"}}),
            1);
  EXPECT_EQ(p->Value("rerank_client_requests_total", {{"client", "rag-bot"}, {"outcome", "ok"}}),
            1);
  EXPECT_EQ(p->Value("rerank_client_requests_total", {{"client", "_other"}, {"outcome", "ok"}}),
            100);
  EXPECT_EQ(p->Sum("rerank_client_requests_total"), 104);
  // Exactly 2 named clients + _other, whatever the callers sent.
  EXPECT_FALSE(
      p->Value("rerank_client_requests_total", {{"client", "crawler-0"}, {"outcome", "ok"}})
          .has_value());

  // 0 turns the family's series off; negative is refused.
  prometheus::Registry off_registry;
  o.max_client_series = 0;
  auto off = ServiceMetrics::Create(o, &off_registry);
  ASSERT_TRUE(off.ok()) << off.status();
  (*off)->OnRequest(report("search-api", absl::StatusCode::kOk));
  absl::StatusOr<PromText> q = PromText::Parse((*off)->Scrape());
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->Sum("rerank_client_requests_total"), 0);
  prometheus::Registry bad_registry;
  o.max_client_series = -1;
  EXPECT_THAT(ServiceMetrics::Create(o, &bad_registry).status().message(),
              ::testing::HasSubstr("max_client_series"));
}

TEST(ServiceMetricsCreateTest, RejectsBadBuckets) {
  prometheus::Registry registry;
  ServiceMetrics::Options o;
  o.batch_pairs_buckets = {4, 2};
  EXPECT_THAT(ServiceMetrics::Create(o, &registry).status().message(),
              ::testing::HasSubstr("batch_pairs_buckets"));
  o = ServiceMetrics::Options();
  o.duration_buckets.clear();
  EXPECT_FALSE(ServiceMetrics::Create(o, &registry).ok());
  EXPECT_FALSE(ServiceMetrics::Create(ServiceMetrics::Options(), nullptr).ok());
}

}  // namespace
}  // namespace rerank
