// Sticky percentage rollout: a client is in or out of a feature based only on a stable hash of its
// key, so the same client always gets the same answer (across requests, replicas and restarts)
// and raising the percentage only ever adds clients (a client in at 10% is in at 50%).
//
// The hash is FNV-1a 64 (common/hash.h Fnv1a64) followed by a 64-bit finalizer (murmur3 fmix64)
// to spread FNV's weak low bits; it is fixed forever by tests with known values. absl::Hash is
// deliberately not used: it is seeded per process, which would reshuffle clients on every restart
// and between replicas.
//
// Stateless, thread-safe free functions.
#ifndef RERANK_COMMON_ROLLOUT_H_
#define RERANK_COMMON_ROLLOUT_H_

#include <cstdint>
#include <string_view>

namespace rerank {

// Number of rollout buckets: percentages have a resolution of 0.01%.
inline constexpr uint32_t kRolloutBuckets = 10000;

// Stable 64-bit hash of `key` (FNV-1a 64 + fmix64). Exposed for tests and for tooling that must
// reproduce bucket assignments.
uint64_t StableHash64(std::string_view key);

// The client's bucket in [0, kRolloutBuckets).
uint32_t RolloutBucket(std::string_view client_key);

// True iff RolloutBucket(client_key) < percent * 100. percent >= 100 is everyone, 0 is nobody.
bool InRollout(std::string_view client_key, uint32_t percent);

}  // namespace rerank

#endif  // RERANK_COMMON_ROLLOUT_H_
