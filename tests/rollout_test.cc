#include "common/rollout.h"

#include <string>
#include <string_view>

#include "common/hash.h"
#include "gtest/gtest.h"

namespace rerank {
namespace {

// Values computed by an independent implementation (Python) of FNV-1a 64 + fmix64. If these
// change, every client's rollout assignment changes: do not "fix" them.
TEST(RolloutTest, StableKnownValues) {
  EXPECT_EQ(StableHash64(""), 0xefd01f60ba992926ull);
  EXPECT_EQ(StableHash64("a"), 0x82a2a958a9bece5bull);
  EXPECT_EQ(StableHash64("client-0"), 0x8a8e64e106503bc7ull);
  EXPECT_EQ(StableHash64("client-1"), 0xf93bd2c16ac6882dull);
  EXPECT_EQ(RolloutBucket(""), 4342u);
  EXPECT_EQ(RolloutBucket("a"), 8315u);
  EXPECT_EQ(RolloutBucket("client-0"), 8999u);
  EXPECT_EQ(RolloutBucket("client-1"), 1741u);
  EXPECT_EQ(RolloutBucket("tenant-42:user-7"), 4562u);
}

// FNV-1a 64 reference vectors (from the FNV authors' test suite): the hash under the rollout.
TEST(RolloutTest, Fnv1a64KnownValues) {
  static_assert(Fnv1a64("") == 0xcbf29ce484222325ull, "usable at compile time");
  EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(Fnv1a64("foobar"), 0x85944171f73967e8ull);
  EXPECT_NE(Fnv1a64(std::string_view("a\0", 2)), Fnv1a64("a"));
  EXPECT_EQ(Fnv1a64(std::string_view("\xff", 1)), (0xcbf29ce484222325ull ^ 0xff) * 0x100000001b3ull)
      << "bytes are unsigned";
}

TEST(RolloutTest, SameKeyAlwaysSameAnswer) {
  for (int i = 0; i < 1000; ++i) {
    const std::string key = "client-" + std::to_string(i);
    const uint32_t bucket = RolloutBucket(key);
    EXPECT_LT(bucket, kRolloutBuckets);
    EXPECT_EQ(RolloutBucket(std::string(key)), bucket);  // a different buffer, same bytes
    // Only the key's own bytes count: the same key as a view into a larger buffer (not
    // NUL-terminated, other bytes on both sides) is in the same bucket.
    const std::string padded = "xx" + key + "yy";
    const std::string_view embedded = std::string_view(padded).substr(2, key.size());
    EXPECT_EQ(RolloutBucket(embedded), bucket);
    for (uint32_t p : {0u, 10u, 50u, 100u}) {
      EXPECT_EQ(InRollout(embedded, p), InRollout(key, p));
      EXPECT_EQ(InRollout(key, p), bucket < p * 100);
    }
  }
  // Embedded NULs are part of the key, not terminators.
  EXPECT_NE(StableHash64(std::string_view("a\0b", 3)), StableHash64("a"));
}

TEST(RolloutTest, FractionsMatchPercentages) {
  constexpr int kClients = 10000;
  for (uint32_t percent : {0u, 1u, 10u, 25u, 50u, 90u, 100u}) {
    int in = 0;
    for (int i = 0; i < kClients; ++i) {
      if (InRollout("client-" + std::to_string(i), percent)) ++in;
    }
    const double fraction = static_cast<double>(in) / kClients;
    if (percent == 0) {
      EXPECT_EQ(in, 0);
    } else if (percent == 100) {
      EXPECT_EQ(in, kClients);
    } else {
      EXPECT_NEAR(fraction, percent / 100.0, 0.02) << percent << "%";
    }
  }
}

TEST(RolloutTest, BucketsAreSpreadEvenly) {
  // 10 deciles of the bucket range each get ~10% of clients.
  int deciles[10] = {0};
  for (int i = 0; i < 10000; ++i) ++deciles[RolloutBucket("client-" + std::to_string(i)) / 1000];
  for (int d = 0; d < 10; ++d) EXPECT_NEAR(deciles[d], 1000, 200) << "decile " << d;
}

TEST(RolloutTest, RaisingThePercentageOnlyAddsClients) {
  for (int i = 0; i < 10000; ++i) {
    const std::string key = "client-" + std::to_string(i);
    bool was_in = false;
    for (uint32_t p = 0; p <= 100; p += 5) {
      const bool in = InRollout(key, p);
      EXPECT_TRUE(in || !was_in) << key << " dropped out at " << p << "%";
      was_in = in;
    }
    if (InRollout(key, 10)) {
      EXPECT_TRUE(InRollout(key, 50)) << key;
    }
  }
  // Above 100 is clamped to everyone.
  EXPECT_TRUE(InRollout("client-0", 250));
}

}  // namespace
}  // namespace rerank
