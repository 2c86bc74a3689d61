// Per-client token-bucket rate limiter.
//
// Each client key gets a bucket of `burst` tokens that refills continuously at
// requests_per_minute / 60 tokens per second; a request takes one token or is denied with the exact
// time until one is available. Token arithmetic is fixed-point integer (1 token = 60e9 units,
// refill = elapsed_ns * requests_per_minute units), so counts are exact: with 100/min, 100
// requests pass at once, the 101st is denied with retry_after = 600 ms, and 600 ms later exactly
// one more passes. No floating-point drift.
//
// Memory is bounded: a bucket that is full and unused for idle_ttl is indistinguishable from a new
// one, so it is dropped (a few least-recently-used buckets are checked on every Allow(): amortized
// O(1), no sweeper thread). If max_clients is reached anyway (many active clients), the
// least-recently-used bucket is evicted; that client starts over with a full bucket, which only
// errs in the client's favour.
//
// Thread-safe (one mutex). Time comes from the injected Clock (not owned, must outlive this).
#ifndef RERANK_COMMON_RATE_LIMITER_H_
#define RERANK_COMMON_RATE_LIMITER_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace rerank {

class RateLimiter {
 public:
  // Upper bound for requests_per_minute and burst (keeps the fixed-point math far from overflow).
  static constexpr uint32_t kMaxRate = 100'000'000;

  struct Options {
    // Sustained rate per client. Must be in 1..kMaxRate.
    uint32_t requests_per_minute = 100;
    // Bucket capacity. 0 means "= requests_per_minute" (and then follows SetRequestsPerMinute).
    uint32_t burst = 0;
    // A bucket unused this long (and full) is forgotten. Must be > 0.
    absl::Duration idle_ttl = absl::Minutes(10);
    // Hard cap on tracked clients; beyond it the least-recently-used bucket is evicted. >= 1.
    size_t max_clients = 100000;
  };

  struct Decision {
    bool allowed = false;
    // When denied: time until one token is available (exact, rounded up to the nanosecond).
    // Zero when allowed.
    absl::Duration retry_after = absl::ZeroDuration();
    // Tokens left in the bucket after this decision (fractional while refilling).
    double remaining = 0;
  };

  struct Stats {
    size_t clients = 0;  // buckets currently tracked
    uint64_t allowed = 0;
    uint64_t denied = 0;
    uint64_t expired = 0;  // idle buckets dropped
    uint64_t evicted = 0;  // buckets dropped because max_clients was reached
    uint32_t requests_per_minute = 0;
    uint32_t burst = 0;  // effective capacity
  };

  // InvalidArgument naming the field; `clock` must not be null.
  static absl::StatusOr<std::unique_ptr<RateLimiter>> Create(Options options, Clock* clock);

  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Takes `cost` tokens (>= 1; e.g. a request's query-document pairs) from `client_key`'s bucket
  // if that many are available, else takes none. A cost above the bucket's capacity is never
  // allowed (retry_after is then absl::InfiniteDuration()).
  Decision Allow(std::string_view client_key, uint32_t cost = 1);

  // Changes the sustained rate at runtime (flags). Existing buckets are first refilled at the old
  // rate up to now, then clamped to the new capacity. O(clients); meant for rare flag changes.
  // InvalidArgument if n is 0 or above kMaxRate.
  absl::Status SetRequestsPerMinute(uint32_t n);

  size_t ClientCount() const;
  Stats GetStats() const;

 private:
  struct Bucket {
    std::string key;
    int64_t units;  // tokens * kUnitsPerToken
    absl::Time last_refill;
    absl::Time last_used;
  };
  using BucketList = std::list<Bucket>;

  RateLimiter(const Options& options, Clock* clock);

  int64_t CapacityLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefillLocked(Bucket& b, absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops up to `max_checks` expired buckets from the LRU tail.
  void ExpireIdleLocked(absl::Time now, int max_checks) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint32_t fixed_burst_;  // Options::burst (0 = follow the rate)
  const absl::Duration idle_ttl_;
  const size_t max_clients_;
  Clock* const clock_;

  mutable absl::Mutex mu_;
  uint32_t requests_per_minute_ ABSL_GUARDED_BY(mu_);
  BucketList lru_ ABSL_GUARDED_BY(mu_);  // front = most recently used
  // Keys view into Bucket::key of lru_ nodes (list nodes never move).
  absl::flat_hash_map<absl::string_view, BucketList::iterator> index_ ABSL_GUARDED_BY(mu_);
  uint64_t allowed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t denied_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t expired_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evicted_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace rerank

#endif  // RERANK_COMMON_RATE_LIMITER_H_
