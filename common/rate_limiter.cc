#include "common/rate_limiter.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace rerank {
namespace {

// One token = one minute in nanoseconds, so that refilling for `elapsed_ns` at `rpm` tokens per
// minute adds exactly elapsed_ns * rpm units (integer, no rounding).
constexpr int64_t kUnitsPerToken = 60'000'000'000;

// Buckets checked for expiry per Allow(): enough to keep up with any arrival rate of new keys
// (each call adds at most one) while bounding the work done under the lock.
constexpr int kExpiryChecksPerCall = 8;

}  // namespace

absl::StatusOr<std::unique_ptr<RateLimiter>> RateLimiter::Create(Options options, Clock* clock) {
  if (options.requests_per_minute == 0 || options.requests_per_minute > kMaxRate) {
    return absl::InvalidArgumentError(absl::StrCat("RateLimiter: requests_per_minute must be 1..",
                                                   kMaxRate, ", got ",
                                                   options.requests_per_minute));
  }
  if (options.burst > kMaxRate) {
    return absl::InvalidArgumentError(
        absl::StrCat("RateLimiter: burst must be 0..", kMaxRate, ", got ", options.burst));
  }
  if (options.idle_ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("RateLimiter: idle_ttl must be > 0, got ",
                                                   absl::FormatDuration(options.idle_ttl)));
  }
  if (options.max_clients < 1) {
    return absl::InvalidArgumentError("RateLimiter: max_clients must be >= 1, got 0");
  }
  if (clock == nullptr) return absl::InvalidArgumentError("RateLimiter: clock must not be null");
  return std::unique_ptr<RateLimiter>(new RateLimiter(options, clock));
}

RateLimiter::RateLimiter(const Options& options, Clock* clock)
    : fixed_burst_(options.burst),
      idle_ttl_(options.idle_ttl),
      max_clients_(options.max_clients),
      clock_(clock),
      requests_per_minute_(options.requests_per_minute) {}

int64_t RateLimiter::CapacityLocked() const {
  const uint32_t burst = fixed_burst_ != 0 ? fixed_burst_ : requests_per_minute_;
  return static_cast<int64_t>(burst) * kUnitsPerToken;
}

void RateLimiter::RefillLocked(Bucket& b, absl::Time now) const {
  if (now <= b.last_refill) return;  // same instant, or the clock stepped back: nothing to add
  const int64_t capacity = CapacityLocked();
  const __int128 elapsed_ns = absl::ToInt64Nanoseconds(now - b.last_refill);
  const __int128 units = static_cast<__int128>(b.units) + elapsed_ns * requests_per_minute_;
  b.units = units >= capacity ? capacity : static_cast<int64_t>(units);
  b.last_refill = now;
}

void RateLimiter::ExpireIdleLocked(absl::Time now, int max_checks) {
  const int64_t capacity = CapacityLocked();
  for (int i = 0; i < max_checks && !lru_.empty(); ++i) {
    Bucket& b = lru_.back();
    if (now - b.last_used < idle_ttl_) return;  // the tail is the least recently used
    RefillLocked(b, now);
    // Only a full bucket is equivalent to a fresh one; a partly used one (possible when burst
    // takes longer than idle_ttl to refill) must be kept or the client would gain tokens.
    if (b.units < capacity) return;
    index_.erase(absl::string_view(b.key));
    lru_.pop_back();
    ++expired_;
  }
}

RateLimiter::Decision RateLimiter::Allow(std::string_view client_key, uint32_t cost) {
  cost = std::max<uint32_t>(cost, 1);
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  ExpireIdleLocked(now, kExpiryChecksPerCall);

  const absl::string_view key(client_key.data(), client_key.size());
  auto it = index_.find(key);
  BucketList::iterator bucket;
  if (it != index_.end()) {
    bucket = it->second;
    lru_.splice(lru_.begin(), lru_, bucket);
  } else {
    while (lru_.size() >= max_clients_) {
      index_.erase(absl::string_view(lru_.back().key));
      lru_.pop_back();
      ++evicted_;
    }
    lru_.push_front(Bucket{std::string(client_key), CapacityLocked(), now, now});
    bucket = lru_.begin();
    index_.emplace(absl::string_view(bucket->key), bucket);
  }

  Bucket& b = *bucket;
  RefillLocked(b, now);
  b.last_used = now;
  Decision d;
  // 128-bit: cost (up to 2^32) x kUnitsPerToken does not fit in 64 bits.
  const __int128 needed = static_cast<__int128>(cost) * kUnitsPerToken;
  if (b.units >= needed) {
    b.units -= static_cast<int64_t>(needed);
    d.allowed = true;
    ++allowed_;
  } else if (needed > CapacityLocked()) {
    d.retry_after = absl::InfiniteDuration();
    ++denied_;
  } else {
    const int64_t missing = static_cast<int64_t>(needed - b.units);
    const int64_t rate = requests_per_minute_;
    d.retry_after = absl::Nanoseconds((missing + rate - 1) / rate);  // ceil
    ++denied_;
  }
  d.remaining = static_cast<double>(b.units) / static_cast<double>(kUnitsPerToken);
  return d;
}

absl::Status RateLimiter::SetRequestsPerMinute(uint32_t n) {
  if (n == 0 || n > kMaxRate) {
    return absl::InvalidArgumentError(
        absl::StrCat("RateLimiter: requests_per_minute must be 1..", kMaxRate, ", got ", n));
  }
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  if (n == requests_per_minute_) return absl::OkStatus();
  // Account the time so far at the old rate, so the change is not applied retroactively.
  for (Bucket& b : lru_) RefillLocked(b, now);
  requests_per_minute_ = n;
  const int64_t capacity = CapacityLocked();
  for (Bucket& b : lru_) b.units = std::min(b.units, capacity);
  return absl::OkStatus();
}

size_t RateLimiter::ClientCount() const {
  absl::MutexLock lock(&mu_);
  return lru_.size();
}

RateLimiter::Stats RateLimiter::GetStats() const {
  absl::MutexLock lock(&mu_);
  Stats s;
  s.clients = lru_.size();
  s.allowed = allowed_;
  s.denied = denied_;
  s.expired = expired_;
  s.evicted = evicted_;
  s.requests_per_minute = requests_per_minute_;
  s.burst = static_cast<uint32_t>(CapacityLocked() / kUnitsPerToken);
  return s;
}

}  // namespace rerank
