#include "common/rate_limiter.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"

namespace rerank {
namespace {

using ::testing::HasSubstr;

class RateLimiterTest : public ::testing::Test {
 protected:
  std::unique_ptr<RateLimiter> Make(RateLimiter::Options options = {}) {
    auto limiter = RateLimiter::Create(options, &clock_);
    EXPECT_TRUE(limiter.ok()) << limiter.status();
    return std::move(limiter).value();
  }
  testing::FakeClock clock_;
};

TEST_F(RateLimiterTest, CreateValidatesOptions) {
  RateLimiter::Options options;
  options.requests_per_minute = 0;
  auto bad = RateLimiter::Create(options, &clock_);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("requests_per_minute"));

  options = {};
  options.idle_ttl = absl::ZeroDuration();
  bad = RateLimiter::Create(options, &clock_);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("idle_ttl"));

  options = {};
  options.max_clients = 0;
  bad = RateLimiter::Create(options, &clock_);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("max_clients"));

  options = {};
  options.burst = RateLimiter::kMaxRate + 1;
  bad = RateLimiter::Create(options, &clock_);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("burst"));

  EXPECT_FALSE(RateLimiter::Create(RateLimiter::Options{}, nullptr).ok());
}

TEST_F(RateLimiterTest, ExactCountsAndRetryAfter) {
  auto limiter = Make();  // 100/min, burst 100
  for (int i = 0; i < 100; ++i) {
    const RateLimiter::Decision d = limiter->Allow("alice");
    ASSERT_TRUE(d.allowed) << i;
    EXPECT_DOUBLE_EQ(d.remaining, 99 - i);
    EXPECT_EQ(d.retry_after, absl::ZeroDuration());
  }
  RateLimiter::Decision d = limiter->Allow("alice");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, absl::Milliseconds(600));  // 60 s / 100 tokens
  EXPECT_DOUBLE_EQ(d.remaining, 0);

  // Half a token later: still denied, and retry_after counts down exactly.
  clock_.Advance(absl::Milliseconds(300));
  d = limiter->Allow("alice");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, absl::Milliseconds(300));
  EXPECT_DOUBLE_EQ(d.remaining, 0.5);

  clock_.Advance(absl::Milliseconds(299));
  d = limiter->Allow("alice");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, absl::Milliseconds(1));

  // 600 ms after the bucket emptied: exactly one more.
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(limiter->Allow("alice").allowed);
  d = limiter->Allow("alice");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, absl::Milliseconds(600));

  // A full minute refills to the burst, not beyond.
  clock_.Advance(absl::Minutes(5));
  int allowed = 0;
  while (limiter->Allow("alice").allowed) ++allowed;
  EXPECT_EQ(allowed, 100);

  const RateLimiter::Stats stats = limiter->GetStats();
  EXPECT_EQ(stats.allowed, 201u);
  EXPECT_EQ(stats.denied, 5u);
}

TEST_F(RateLimiterTest, RetryAfterRoundsUpToTheNanosecond) {
  RateLimiter::Options options;
  options.requests_per_minute = 7;  // 60/7 s per token is not a whole number of ns
  auto limiter = Make(options);
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(limiter->Allow("k").allowed);
  const RateLimiter::Decision d = limiter->Allow("k");
  ASSERT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, absl::Nanoseconds(8571428572));  // ceil(60e9 / 7)
  clock_.Advance(d.retry_after - absl::Nanoseconds(1));
  EXPECT_FALSE(limiter->Allow("k").allowed);
  clock_.Advance(absl::Nanoseconds(1));
  EXPECT_TRUE(limiter->Allow("k").allowed);
}

TEST_F(RateLimiterTest, ExplicitBurst) {
  RateLimiter::Options options;
  options.requests_per_minute = 60;
  options.burst = 5;
  auto limiter = Make(options);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(limiter->Allow("k").allowed);
  EXPECT_FALSE(limiter->Allow("k").allowed);
  clock_.Advance(absl::Hours(1));
  int allowed = 0;
  while (limiter->Allow("k").allowed) ++allowed;
  EXPECT_EQ(allowed, 5);
  clock_.Advance(absl::Seconds(1));  // 60/min = one per second
  EXPECT_TRUE(limiter->Allow("k").allowed);
  EXPECT_FALSE(limiter->Allow("k").allowed);
}

TEST_F(RateLimiterTest, ClientsAreIndependent) {
  auto limiter = Make();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(limiter->Allow("alice").allowed);
  EXPECT_FALSE(limiter->Allow("alice").allowed);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(limiter->Allow("bob").allowed) << i;
  EXPECT_FALSE(limiter->Allow("bob").allowed);
  // Keys are compared in full (a prefix is another client).
  EXPECT_TRUE(limiter->Allow("alic").allowed);
  EXPECT_TRUE(limiter->Allow(std::string_view("alice\0x", 7)).allowed);
  EXPECT_EQ(limiter->ClientCount(), 4u);
}

TEST_F(RateLimiterTest, LimitChangeAtRuntime) {
  auto limiter = Make();  // 100/min
  EXPECT_FALSE(limiter->SetRequestsPerMinute(0).ok());
  EXPECT_FALSE(limiter->SetRequestsPerMinute(RateLimiter::kMaxRate + 1).ok());

  for (int i = 0; i < 50; ++i) ASSERT_TRUE(limiter->Allow("old").allowed);  // 50 left
  ASSERT_TRUE(limiter->SetRequestsPerMinute(10).ok());
  EXPECT_EQ(limiter->GetStats().requests_per_minute, 10u);
  EXPECT_EQ(limiter->GetStats().burst, 10u);  // burst follows the rate when not set
  // The existing bucket is clamped to the new capacity.
  int allowed = 0;
  while (limiter->Allow("old").allowed) ++allowed;
  EXPECT_EQ(allowed, 10);
  // New clients get the new capacity, refilling at the new rate (one per 6 s).
  allowed = 0;
  while (limiter->Allow("new").allowed) ++allowed;
  EXPECT_EQ(allowed, 10);
  RateLimiter::Decision d = limiter->Allow("new");
  EXPECT_EQ(d.retry_after, absl::Seconds(6));

  // Raising the limit: time before the change refilled at the old rate (3 s at 10/min = 0.5
  // token), time after at the new one (0.3 s at 100/min = 0.5 token).
  clock_.Advance(absl::Seconds(3));
  ASSERT_TRUE(limiter->SetRequestsPerMinute(100).ok());
  d = limiter->Allow("new");
  EXPECT_FALSE(d.allowed);
  EXPECT_DOUBLE_EQ(d.remaining, 0.5);
  EXPECT_EQ(d.retry_after, absl::Milliseconds(300));
  clock_.Advance(absl::Milliseconds(300));
  EXPECT_TRUE(limiter->Allow("new").allowed);
  // A fresh client now gets 100.
  allowed = 0;
  while (limiter->Allow("fresh").allowed) ++allowed;
  EXPECT_EQ(allowed, 100);
}

TEST_F(RateLimiterTest, IdleBucketsExpireAndBoundMemory) {
  RateLimiter::Options options;  // 100/min: one token refills in 0.6 s; idle_ttl 10 min
  auto limiter = Make(options);
  size_t max_seen = 0;
  constexpr int kClients = 100000;
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(limiter->Allow("client-" + std::to_string(i)).allowed);
    clock_.Advance(absl::Milliseconds(10));
    max_seen = std::max(max_seen, limiter->ClientCount());
  }
  // 10 min / 10 ms = 60,000 clients can be within idle_ttl at once; the rest must be gone.
  EXPECT_LE(max_seen, 60001u);
  EXPECT_GE(max_seen, 59990u);
  const RateLimiter::Stats stats = limiter->GetStats();
  EXPECT_EQ(stats.evicted, 0u);
  EXPECT_EQ(stats.expired + stats.clients, static_cast<uint64_t>(kClients));

  // An expired client comes back with a full bucket (what it would have had anyway).
  int allowed = 0;
  while (limiter->Allow("client-0").allowed) ++allowed;
  EXPECT_EQ(allowed, 100);
}

TEST_F(RateLimiterTest, ActiveOrDrainedBucketsDoNotExpire) {
  RateLimiter::Options options;
  options.requests_per_minute = 1;
  options.burst = 100;  // takes 100 min to refill: longer than idle_ttl
  options.idle_ttl = absl::Minutes(10);
  auto limiter = Make(options);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(limiter->Allow("drained").allowed);
  clock_.Advance(absl::Minutes(11));
  ASSERT_TRUE(limiter->Allow("other").allowed);  // triggers a sweep
  EXPECT_EQ(limiter->ClientCount(), 2u);         // "drained" is idle but not full: kept
  // It has 11 tokens (one per minute), not a fresh 100.
  int allowed = 0;
  while (limiter->Allow("drained").allowed) ++allowed;
  EXPECT_EQ(allowed, 11);
}

TEST_F(RateLimiterTest, MaxClientsEvictsLeastRecentlyUsed) {
  RateLimiter::Options options;
  options.requests_per_minute = 2;
  options.max_clients = 3;
  auto limiter = Make(options);
  auto drain = [&](const std::string& key) {
    while (limiter->Allow(key).allowed) {
    }
  };
  drain("a");
  drain("b");
  drain("c");
  EXPECT_FALSE(limiter->Allow("a").allowed);  // a is now the most recently used; b the LRU
  EXPECT_TRUE(limiter->Allow("d").allowed);   // evicts b
  EXPECT_EQ(limiter->ClientCount(), 3u);
  EXPECT_TRUE(limiter->Allow("b").allowed);    // b starts over (and evicts c)
  EXPECT_FALSE(limiter->Allow("a").allowed);   // a kept its drained bucket
  EXPECT_TRUE(limiter->Allow("c").allowed);    // c was evicted
  EXPECT_EQ(limiter->GetStats().evicted, 3u);  // b, c, then d (LRU when c returned)

  // Under a flood of distinct keys at one instant the cap holds.
  for (int i = 0; i < 10000; ++i) limiter->Allow("flood-" + std::to_string(i));
  EXPECT_EQ(limiter->ClientCount(), 3u);
}

TEST_F(RateLimiterTest, ThreadSafetySmoke) {
  auto limiter = Make();  // 100 per client at a fixed instant
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  std::atomic<int> shared_allowed{0};
  std::atomic<int> own_allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (limiter->Allow("shared").allowed) ++shared_allowed;
        if (limiter->Allow("own-" + std::to_string(t)).allowed) ++own_allowed;
        if (i % 100 == 0) limiter->ClientCount();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(shared_allowed.load(), 100);
  EXPECT_EQ(own_allowed.load(), 100 * kThreads);
  EXPECT_EQ(limiter->ClientCount(), 1u + kThreads);
  const RateLimiter::Stats stats = limiter->GetStats();
  EXPECT_EQ(stats.allowed + stats.denied, 2u * kThreads * kPerThread);
}

}  // namespace
}  // namespace rerank
