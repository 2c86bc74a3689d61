#include <thread>
#include <vector>

#include "admin/live_stats.h"
#include "common/observers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"

namespace rerank {
namespace {

using testing::FakeClock;
using ::testing::HasSubstr;

RequestReport Ok(double latency_ms, int lookups = 0, int hits = 0) {
  RequestReport r;
  r.rpc = "Rerank";
  r.code = absl::StatusCode::kOk;
  r.latency = absl::Microseconds(static_cast<int64_t>(latency_ms * 1000));
  r.cache_lookups = lookups;
  r.cache_hits = hits;
  r.reranked = true;
  return r;
}

RequestReport Failed(absl::StatusCode code, double latency_ms = 1) {
  RequestReport r = Ok(latency_ms);
  r.code = code;
  r.reranked = false;
  return r;
}

RequestReport RateLimited() {
  RequestReport r = Failed(absl::StatusCode::kResourceExhausted);
  r.rate_limited = true;
  return r;
}

std::unique_ptr<LiveStats> Make(FakeClock* clock, absl::Duration window = absl::Seconds(10),
                                size_t max_samples = 65536,
                                absl::Duration target = absl::Milliseconds(50)) {
  LiveStats::Options o;
  o.window = window;
  o.max_samples = max_samples;
  o.target_latency = target;
  absl::StatusOr<std::unique_ptr<LiveStats>> s = LiveStats::Create(o, clock);
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

TEST(LiveStatsTest, EmptyIsAllZero) {
  FakeClock clock;
  auto stats = Make(&clock, absl::Seconds(300));
  LiveStats::Snapshot s = stats->GetSnapshot();
  EXPECT_EQ(s.total_requests, 0u);
  EXPECT_EQ(s.requests_in_window, 0u);
  EXPECT_EQ(s.window_seconds, 300);
  EXPECT_EQ(s.avg_latency_ms, 0);
  EXPECT_EQ(s.p95_latency_ms, 0);
  EXPECT_EQ(s.p99_latency_ms, 0);
  EXPECT_EQ(s.cache_hit_rate_percent, 0);
  EXPECT_EQ(s.error_rate_percent, 0);
  EXPECT_EQ(s.target_latency_met_rate_percent, 0);
  EXPECT_EQ(s.target_latency_ms, 50);
}

TEST(LiveStatsTest, ExactPercentilesAverageAndTargetRate) {
  FakeClock clock;
  auto stats = Make(&clock);
  // 1..100 ms, shuffled order must not matter.
  for (int i = 100; i >= 1; --i) stats->OnRequest(Ok(i));
  LiveStats::Snapshot s = stats->GetSnapshot();
  EXPECT_EQ(s.requests_in_window, 100u);
  EXPECT_EQ(s.ok_in_window, 100u);
  EXPECT_DOUBLE_EQ(s.avg_latency_ms, 50.5);
  EXPECT_DOUBLE_EQ(s.p95_latency_ms, 95);  // nearest rank: ceil(0.95 * 100) = 95th value
  EXPECT_DOUBLE_EQ(s.p99_latency_ms, 99);
  EXPECT_DOUBLE_EQ(s.target_latency_met_rate_percent, 50);  // 1..50 ms are <= 50 ms
  EXPECT_EQ(s.latency_samples, 100u);
}

// error_rate_percent counts failures of the service only; the caller's mistakes, cancellations
// and rate-limit denials are not errors.
TEST(LiveStatsTest, OnlyServerSideFailuresAreErrors) {
  FakeClock clock;
  auto stats = Make(&clock);
  for (absl::StatusCode c : {absl::StatusCode::kInvalidArgument,
                             absl::StatusCode::kFailedPrecondition, absl::StatusCode::kCancelled}) {
    stats->OnRequest(Failed(c));
  }
  stats->OnRequest(RateLimited());
  LiveStats::Snapshot s = stats->GetSnapshot();
  EXPECT_EQ(s.errors_in_window, 0u);
  EXPECT_EQ(s.client_errors_in_window, 3u);
  EXPECT_DOUBLE_EQ(s.error_rate_percent, 0);
  for (absl::StatusCode c : {absl::StatusCode::kInternal, absl::StatusCode::kUnavailable,
                             absl::StatusCode::kDeadlineExceeded,
                             absl::StatusCode::kResourceExhausted /* queue full */}) {
    stats->OnRequest(Failed(c));
  }
  s = stats->GetSnapshot();
  EXPECT_EQ(s.errors_in_window, 4u);
  EXPECT_DOUBLE_EQ(s.error_rate_percent, 50);  // 4 of 8
}

TEST(LiveStatsTest, ErrorsRateLimitsAndCacheRates) {
  FakeClock clock;
  auto stats = Make(&clock);
  stats->OnRequest(Ok(10, /*lookups=*/4, /*hits=*/0));
  stats->OnRequest(Ok(30, 4, 4));
  stats->OnRequest(Ok(70, 2, 1));
  stats->OnRequest(Failed(absl::StatusCode::kInternal));
  stats->OnRequest(RateLimited());
  LiveStats::Snapshot s = stats->GetSnapshot();
  EXPECT_EQ(s.total_requests, 5u);
  EXPECT_EQ(s.requests_in_window, 5u);
  EXPECT_EQ(s.ok_in_window, 3u);
  EXPECT_EQ(s.errors_in_window, 1u);  // rate limiting is not an error
  EXPECT_EQ(s.rate_limited_in_window, 1u);
  EXPECT_DOUBLE_EQ(s.error_rate_percent, 20);
  EXPECT_EQ(s.cache_lookups_in_window, 10u);
  EXPECT_EQ(s.cache_hits_in_window, 5u);
  EXPECT_DOUBLE_EQ(s.cache_hit_rate_percent, 50);
  // Latency figures over the 3 successful requests only.
  EXPECT_DOUBLE_EQ(s.avg_latency_ms, (10 + 30 + 70) / 3.0);
  EXPECT_DOUBLE_EQ(s.p99_latency_ms, 70);
  EXPECT_NEAR(s.target_latency_met_rate_percent, 200.0 / 3, 1e-9);
}

TEST(LiveStatsTest, OldRequestsLeaveTheWindowButTotalKeepsCounting) {
  FakeClock clock(absl::FromUnixSeconds(1'000'000));
  auto stats = Make(&clock, absl::Seconds(10));
  for (int i = 0; i < 5; ++i) stats->OnRequest(Ok(100, 2, 2));  // second 1'000'000
  stats->OnRequest(Failed(absl::StatusCode::kInternal));
  clock.Advance(absl::Seconds(5));
  for (int i = 0; i < 3; ++i) stats->OnRequest(Ok(10, 2, 0));  // second 1'000'005

  LiveStats::Snapshot s = stats->GetSnapshot();
  EXPECT_EQ(s.total_requests, 9u);
  EXPECT_EQ(s.requests_in_window, 9u);
  EXPECT_DOUBLE_EQ(s.p99_latency_ms, 100);

  // 9.999 s after the first batch: still inside the 10 s window.
  clock.Set(absl::FromUnixSeconds(1'000'000) + absl::Milliseconds(9999));
  EXPECT_EQ(stats->GetSnapshot().requests_in_window, 9u);

  // 10 s after: the first six requests left; the figures are those of the last three.
  clock.Set(absl::FromUnixSeconds(1'000'010));
  s = stats->GetSnapshot();
  EXPECT_EQ(s.total_requests, 9u);
  EXPECT_EQ(s.requests_in_window, 3u);
  EXPECT_EQ(s.errors_in_window, 0u);
  EXPECT_DOUBLE_EQ(s.error_rate_percent, 0);
  EXPECT_DOUBLE_EQ(s.avg_latency_ms, 10);
  EXPECT_DOUBLE_EQ(s.p95_latency_ms, 10);
  EXPECT_DOUBLE_EQ(s.p99_latency_ms, 10);
  EXPECT_DOUBLE_EQ(s.cache_hit_rate_percent, 0);
  EXPECT_DOUBLE_EQ(s.target_latency_met_rate_percent, 100);

  // 15 s after: nothing left in the window; the total is unchanged.
  clock.Set(absl::FromUnixSeconds(1'000'015));
  s = stats->GetSnapshot();
  EXPECT_EQ(s.total_requests, 9u);
  EXPECT_EQ(s.requests_in_window, 0u);
  EXPECT_EQ(s.latency_samples, 0u);
  EXPECT_EQ(s.p99_latency_ms, 0);

  // New traffic counts again, and a reused ring slot does not leak old counts.
  stats->OnRequest(Ok(20));
  s = stats->GetSnapshot();
  EXPECT_EQ(s.total_requests, 10u);
  EXPECT_EQ(s.requests_in_window, 1u);
  EXPECT_DOUBLE_EQ(s.avg_latency_ms, 20);
}

TEST(LiveStatsTest, SameRingSlotOneWindowLaterIsReset) {
  FakeClock clock(absl::FromUnixSeconds(500));
  auto stats = Make(&clock, absl::Seconds(10));
  stats->OnRequest(Failed(absl::StatusCode::kInternal));
  stats->OnRequest(Failed(absl::StatusCode::kInternal));
  clock.Advance(absl::Seconds(10));  // second 510 maps to the same slot as 500
  stats->OnRequest(Ok(5));
  LiveStats::Snapshot s = stats->GetSnapshot();
  EXPECT_EQ(s.requests_in_window, 1u);
  EXPECT_EQ(s.errors_in_window, 0u);
  EXPECT_EQ(s.total_requests, 3u);
}

TEST(LiveStatsTest, PercentilesUseTheNewestSamplesWhenCapped) {
  FakeClock clock;
  auto stats = Make(&clock, absl::Seconds(10), /*max_samples=*/10);
  for (int i = 1; i <= 20; ++i) stats->OnRequest(Ok(i));
  LiveStats::Snapshot s = stats->GetSnapshot();
  EXPECT_EQ(s.requests_in_window, 20u);      // counts stay exact
  EXPECT_DOUBLE_EQ(s.avg_latency_ms, 10.5);  // so does the average
  EXPECT_EQ(s.latency_samples, 10u);
  EXPECT_DOUBLE_EQ(s.p95_latency_ms, 20);  // over 11..20
  EXPECT_DOUBLE_EQ(s.p99_latency_ms, 20);
  stats->OnRequest(Ok(1));
  EXPECT_EQ(stats->GetSnapshot().latency_samples, 10u);
}

TEST(LiveStatsTest, RejectsBadOptions) {
  FakeClock clock;
  LiveStats::Options o;
  o.window = absl::ZeroDuration();
  EXPECT_THAT(LiveStats::Create(o, &clock).status().message(),
              HasSubstr("admin.stats_window_seconds"));
  o.window = absl::Milliseconds(1500);
  EXPECT_THAT(LiveStats::Create(o, &clock).status().message(),
              HasSubstr("admin.stats_window_seconds"));
  o.window = absl::Seconds(LiveStats::kMaxWindowSeconds + 1);
  EXPECT_FALSE(LiveStats::Create(o, &clock).ok());
  o = LiveStats::Options();
  o.max_samples = 0;
  EXPECT_THAT(LiveStats::Create(o, &clock).status().message(), HasSubstr("max_samples"));
  o = LiveStats::Options();
  o.target_latency = absl::ZeroDuration();
  EXPECT_THAT(LiveStats::Create(o, &clock).status().message(),
              HasSubstr("rerank.target_latency_ms"));
  EXPECT_FALSE(LiveStats::Create(LiveStats::Options(), nullptr).ok());
}

TEST(LiveStatsTest, ConcurrentReportsAreAllCounted) {
  FakeClock clock;
  auto stats = Make(&clock, absl::Seconds(10), /*max_samples=*/100);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) stats->OnRequest(Ok(1, 1, 1));
    });
  }
  for (auto& t : threads) t.join();
  LiveStats::Snapshot s = stats->GetSnapshot();
  EXPECT_EQ(s.total_requests, 4000u);
  EXPECT_EQ(s.requests_in_window, 4000u);
  EXPECT_EQ(s.cache_hits_in_window, 4000u);
  EXPECT_EQ(s.latency_samples, 100u);
}

class CountingObserver : public RequestObserver, public BatcherObserver {
 public:
  void OnRequest(const RequestReport&) override { ++requests; }
  void OnBatch(const BatchReport&) override { ++batches; }
  void OnJobDropped(absl::StatusCode) override { ++dropped; }
  int requests = 0, batches = 0, dropped = 0;
};

TEST(CompositeObserverTest, FansOutToEveryObserverAndSkipsNull) {
  FakeClock clock;
  auto stats = Make(&clock);
  CountingObserver a, b;
  CompositeRequestObserver requests({stats.get(), nullptr, &a, &b});
  EXPECT_EQ(requests.size(), 3u);
  requests.OnRequest(Ok(1));
  requests.OnRequest(Ok(2));
  EXPECT_EQ(a.requests, 2);
  EXPECT_EQ(b.requests, 2);
  EXPECT_EQ(stats->GetSnapshot().total_requests, 2u);

  CompositeBatcherObserver batches({&a, nullptr, &b});
  batches.OnBatch(BatchReport{});
  batches.OnJobDropped(absl::StatusCode::kCancelled);
  EXPECT_EQ(a.batches, 1);
  EXPECT_EQ(b.batches, 1);
  EXPECT_EQ(a.dropped, 1);
  EXPECT_EQ(b.dropped, 1);
}

}  // namespace
}  // namespace rerank
