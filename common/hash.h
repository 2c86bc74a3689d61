// Stable (process-, replica- and version-independent) hashes. absl::Hash and std::hash are
// seeded or unspecified and must not be used for anything persisted or shared between processes.
#ifndef RERANK_COMMON_HASH_H_
#define RERANK_COMMON_HASH_H_

#include <cstdint>
#include <string_view>

namespace rerank {

// 64-bit FNV-1a of the bytes of `data` (embedded NULs included). Fast and fixed forever, but weak
// in its low bits for keys that differ only at the end: mix it (see common/rollout.cc) before
// taking a small modulus.
constexpr uint64_t Fnv1a64(std::string_view data) {
  uint64_t h = 0xcbf29ce484222325ull;  // offset basis
  for (const char c : data) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;  // FNV prime
  }
  return h;
}

}  // namespace rerank

#endif  // RERANK_COMMON_HASH_H_
