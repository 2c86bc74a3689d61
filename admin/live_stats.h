// Live request statistics for /health: a RequestObserver that keeps a sliding window of the most
// recent requests and computes latency percentiles, cache hit rate, target-latency rate and error
// rate over it, plus a since-start request count.
//
// Definitions (over the window unless noted):
//  - total_requests: every request observed since start, whatever its outcome (/health's
//    total_reranks; equals the sum of rerank_requests_total).
//  - requests_in_window: every request whose completion time falls in the window.
//  - errors: failures of the service (IsServerFailure, common/observers.h: INTERNAL,
//    UNAVAILABLE, DEADLINE_EXCEEDED, queue-full RESOURCE_EXHAUSTED, ...); error_rate_percent =
//    errors / requests_in_window. Client mistakes (INVALID_ARGUMENT, FAILED_PRECONDITION, ...) and
//    CANCELLED are client_errors; rate-limited requests are policy working: neither is an error.
//  - latency figures (avg, p95, p99, target_latency_met_rate_percent) are over successful (OK)
//    requests only: failures return early and would flatter the latency.
//  - cache_hit_rate_percent = cache hits / cache lookups (pairs), over all requests.
// A rate with an empty denominator is 0.
//
// Window and memory: time is cut into whole seconds by the injected Clock; the window is the last
// `window` seconds including the current one, i.e. a request completed in second s is in the
// window while floor(now) - s < window_seconds. Counts live in one small bucket per second (a ring
// of window_seconds buckets), so every count and the average are exact whatever the traffic.
// Percentiles are exact (nearest rank) over the latencies of the newest `max_samples` successful
// requests in the window: beyond that many requests per window they describe the most recent
// ones. Memory is bounded by window_seconds buckets + max_samples samples.
//
// Thread-safe (one mutex, O(1) per request). The Clock is not owned and must outlive this.
#ifndef RERANK_ADMIN_LIVE_STATS_H_
#define RERANK_ADMIN_LIVE_STATS_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/observers.h"

namespace rerank {

class LiveStats final : public RequestObserver {
 public:
  // Longest supported window: a ring of one bucket per second stays small (about 5 MB).
  static constexpr int64_t kMaxWindowSeconds = 86400;

  struct Options {
    // Sliding window (admin.stats_window_seconds). Whole seconds, 1..kMaxWindowSeconds.
    absl::Duration window = absl::Seconds(300);
    // Latency samples kept for the percentiles (newest first). Must be >= 1.
    size_t max_samples = 65536;
    // A successful request meets the target when its latency is <= this
    // (rerank.target_latency_ms). Must be > 0.
    absl::Duration target_latency = absl::Milliseconds(50);
  };

  struct Snapshot {
    uint64_t total_requests = 0;  // since start
    int64_t window_seconds = 0;
    uint64_t requests_in_window = 0;
    uint64_t ok_in_window = 0;
    uint64_t errors_in_window = 0;
    uint64_t client_errors_in_window = 0;  // not OK, not rate-limited, not a server failure
    uint64_t rate_limited_in_window = 0;
    uint64_t cache_lookups_in_window = 0;
    uint64_t cache_hits_in_window = 0;
    double avg_latency_ms = 0;
    double p95_latency_ms = 0;
    double p99_latency_ms = 0;
    double target_latency_met_rate_percent = 0;
    double cache_hit_rate_percent = 0;
    double error_rate_percent = 0;
    double target_latency_ms = 0;
    size_t latency_samples = 0;  // samples the percentiles were computed from
  };

  // InvalidArgument naming the bad option; `clock` must not be null.
  static absl::StatusOr<std::unique_ptr<LiveStats>> Create(const Options& options, Clock* clock);

  // RequestObserver.
  void OnRequest(const RequestReport& report) override;

  // The figures as of clock->Now(). O(window_seconds + samples log samples).
  Snapshot GetSnapshot() const;

  const Options& options() const { return options_; }

 private:
  struct Bucket {
    int64_t second = INT64_MIN;  // which second this bucket currently holds
    uint64_t requests = 0;
    uint64_t ok = 0;
    uint64_t errors = 0;
    uint64_t client_errors = 0;
    uint64_t rate_limited = 0;
    uint64_t cache_lookups = 0;
    uint64_t cache_hits = 0;
    uint64_t target_met = 0;  // ok requests within the target
    double ok_latency_ms_sum = 0;
  };
  struct Sample {
    int64_t second;
    double latency_ms;
  };

  LiveStats(const Options& options, Clock* clock);
  int64_t SecondOf(absl::Time t) const;
  bool InWindow(int64_t second, int64_t now_second) const {
    // Written so that the INT64_MIN "empty" marker cannot overflow.
    return second <= now_second && second > now_second - window_seconds_;
  }

  const Options options_;
  const int64_t window_seconds_;
  Clock* const clock_;

  mutable absl::Mutex mu_;
  uint64_t total_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Bucket> buckets_ ABSL_GUARDED_BY(mu_);  // index: second mod window_seconds_
  // Latencies of successful requests, oldest first; expired ones are dropped lazily (at the next
  // request or snapshot), and the oldest when full.
  mutable std::deque<Sample> samples_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rerank

#endif  // RERANK_ADMIN_LIVE_STATS_H_
