#include "admin/live_stats.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rerank {
namespace {

// Nearest-rank percentile of sorted values: the smallest value with at least p% of the values at
// or below it. Exact, and always one of the observed latencies.
double NearestRank(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double rank = std::ceil(p / 100.0 * static_cast<double>(sorted.size()));
  const size_t index = static_cast<size_t>(std::max(1.0, rank)) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

double Percent(uint64_t part, uint64_t whole) {
  return whole == 0 ? 0.0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LiveStats>> LiveStats::Create(const Options& options, Clock* clock) {
  if (clock == nullptr) return absl::InvalidArgumentError("LiveStats: clock must not be null");
  if (options.window < absl::Seconds(1) || options.window > absl::Seconds(kMaxWindowSeconds) ||
      options.window != absl::Trunc(options.window, absl::Seconds(1))) {
    return absl::InvalidArgumentError(
        absl::StrCat("admin.stats_window_seconds: must be a whole number of seconds in 1..",
                     kMaxWindowSeconds, ", got ", absl::FormatDuration(options.window)));
  }
  if (options.max_samples < 1) {
    return absl::InvalidArgumentError("LiveStats: max_samples must be >= 1");
  }
  if (options.target_latency <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("rerank.target_latency_ms: must be > 0, got ",
                                                   absl::FormatDuration(options.target_latency)));
  }
  return std::unique_ptr<LiveStats>(new LiveStats(options, clock));
}

LiveStats::LiveStats(const Options& options, Clock* clock)
    : options_(options),
      window_seconds_(absl::ToInt64Seconds(options.window)),
      clock_(clock),
      buckets_(static_cast<size_t>(window_seconds_)) {}

int64_t LiveStats::SecondOf(absl::Time t) const {
  // Floor, also before the epoch (fake clocks may start anywhere).
  return absl::ToInt64Seconds(absl::Floor(t - absl::UnixEpoch(), absl::Seconds(1)));
}

void LiveStats::OnRequest(const RequestReport& report) {
  const int64_t second = SecondOf(clock_->Now());
  const bool ok = report.code == absl::StatusCode::kOk;
  const double latency_ms = absl::ToDoubleMilliseconds(report.latency);
  absl::MutexLock lock(&mu_);
  ++total_;
  // ((s % n) + n) % n: a non-negative slot for any second.
  Bucket& b = buckets_[static_cast<size_t>(((second % window_seconds_) + window_seconds_) %
                                           window_seconds_)];
  if (b.second != second) b = Bucket{second};
  ++b.requests;
  b.cache_lookups += static_cast<uint64_t>(std::max(0, report.cache_lookups));
  b.cache_hits += static_cast<uint64_t>(std::max(0, report.cache_hits));
  if (ok) {
    ++b.ok;
    b.ok_latency_ms_sum += latency_ms;
    if (report.latency <= options_.target_latency) ++b.target_met;
    if (samples_.size() >= options_.max_samples) samples_.pop_front();
    samples_.push_back({second, latency_ms});
  } else if (report.rate_limited) {
    ++b.rate_limited;
  } else if (IsServerFailure(report)) {
    ++b.errors;
  } else {
    ++b.client_errors;
  }
  while (!samples_.empty() && !InWindow(samples_.front().second, second)) samples_.pop_front();
}

LiveStats::Snapshot LiveStats::GetSnapshot() const {
  const int64_t now_second = SecondOf(clock_->Now());
  Snapshot s;
  s.window_seconds = window_seconds_;
  s.target_latency_ms = absl::ToDoubleMilliseconds(options_.target_latency);
  uint64_t target_met = 0;
  double ok_latency_sum = 0;
  std::vector<double> latencies;
  {
    absl::MutexLock lock(&mu_);
    s.total_requests = total_;
    for (const Bucket& b : buckets_) {
      if (!InWindow(b.second, now_second)) continue;
      s.requests_in_window += b.requests;
      s.ok_in_window += b.ok;
      s.errors_in_window += b.errors;
      s.client_errors_in_window += b.client_errors;
      s.rate_limited_in_window += b.rate_limited;
      s.cache_lookups_in_window += b.cache_lookups;
      s.cache_hits_in_window += b.cache_hits;
      target_met += b.target_met;
      ok_latency_sum += b.ok_latency_ms_sum;
    }
    while (!samples_.empty() && !InWindow(samples_.front().second, now_second)) {
      samples_.pop_front();
    }
    latencies.reserve(samples_.size());
    for (const Sample& sample : samples_) {
      // Samples from a future second (the clock went back) are not in the window either.
      if (InWindow(sample.second, now_second)) latencies.push_back(sample.latency_ms);
    }
  }
  std::sort(latencies.begin(), latencies.end());
  s.latency_samples = latencies.size();
  s.avg_latency_ms =
      s.ok_in_window == 0 ? 0.0 : ok_latency_sum / static_cast<double>(s.ok_in_window);
  s.p95_latency_ms = NearestRank(latencies, 95);
  s.p99_latency_ms = NearestRank(latencies, 99);
  s.target_latency_met_rate_percent = Percent(target_met, s.ok_in_window);
  s.cache_hit_rate_percent = Percent(s.cache_hits_in_window, s.cache_lookups_in_window);
  s.error_rate_percent = Percent(s.errors_in_window, s.requests_in_window);
  return s;
}

}  // namespace rerank
