#include "common/rollout.h"

#include "common/hash.h"

namespace rerank {

uint64_t StableHash64(std::string_view key) {
  uint64_t h = Fnv1a64(key);
  // murmur3 fmix64: FNV-1a's low bits (which `% kRolloutBuckets` mostly uses) correlate for keys
  // that differ only in the last characters, like "client-1", "client-2".
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

uint32_t RolloutBucket(std::string_view client_key) {
  return static_cast<uint32_t>(StableHash64(client_key) % kRolloutBuckets);
}

bool InRollout(std::string_view client_key, uint32_t percent) {
  if (percent >= 100) return true;
  return RolloutBucket(client_key) < percent * 100;
}

}  // namespace rerank
