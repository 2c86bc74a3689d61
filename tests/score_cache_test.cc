#include "common/score_cache.h"

#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rerank {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;

std::unique_ptr<ScoreCache> MakeCache(size_t max_entries, size_t max_bytes = 64u << 20) {
  ScoreCache::Options options;
  options.max_entries = max_entries;
  options.max_bytes = max_bytes;
  auto cache = ScoreCache::Create(options);
  EXPECT_TRUE(cache.ok()) << cache.status();
  return std::move(cache).value();
}

TEST(ScoreCacheTest, CreateValidatesOptions) {
  ScoreCache::Options options;
  options.max_entries = 0;
  auto bad = ScoreCache::Create(options);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr("max_entries"));

  options = {};
  options.max_bytes = ScoreCache::kPerEntryOverhead - 1;
  bad = ScoreCache::Create(options);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr("max_bytes"));

  auto good = ScoreCache::Create(ScoreCache::Options{});
  ASSERT_TRUE(good.ok());
  EXPECT_EQ((*good)->GetStats().max_entries, 1000u);
  EXPECT_EQ((*good)->GetStats().max_bytes, 64u << 20);
}

TEST(ScoreCacheTest, HitRequiresExactTriple) {
  auto cache = MakeCache(100);
  EXPECT_EQ(cache->Lookup("m1", "query", "doc"), std::nullopt);
  cache->Insert("m1", "query", "doc", 0.75f);
  EXPECT_THAT(cache->Lookup("m1", "query", "doc"), Optional(0.75f));
  EXPECT_EQ(cache->Lookup("m2", "query", "doc"), std::nullopt);   // other model version
  EXPECT_EQ(cache->Lookup("m1", "query2", "doc"), std::nullopt);  // other query
  EXPECT_EQ(cache->Lookup("m1", "query", "doc2"), std::nullopt);  // other doc
  EXPECT_EQ(cache->Lookup("m1", "quer", "ydoc"), std::nullopt);   // same concatenation
  EXPECT_EQ(cache->Lookup("m1q", "uery", "doc"), std::nullopt);

  // Boundary-shifting triples with identical concatenations are distinct keys.
  cache->Insert("a", "bc", "", 1.0f);
  cache->Insert("ab", "c", "", 2.0f);
  cache->Insert("", "abc", "", 3.0f);
  cache->Insert("", "", "abc", 4.0f);
  EXPECT_THAT(cache->Lookup("a", "bc", ""), Optional(1.0f));
  EXPECT_THAT(cache->Lookup("ab", "c", ""), Optional(2.0f));
  EXPECT_THAT(cache->Lookup("", "abc", ""), Optional(3.0f));
  EXPECT_THAT(cache->Lookup("", "", "abc"), Optional(4.0f));
  // Strings that embed the separator and digits are fine too.
  cache->Insert("1:", "2:x", "y", 5.0f);
  EXPECT_THAT(cache->Lookup("1:", "2:x", "y"), Optional(5.0f));
  EXPECT_EQ(cache->Lookup("1", ":2:x", "y"), std::nullopt);

  const ScoreCache::Stats stats = cache->GetStats();
  EXPECT_EQ(stats.size, 6u);
  EXPECT_EQ(stats.inserts, 6u);
  EXPECT_EQ(stats.hits, 6u);
  EXPECT_EQ(stats.misses, 7u);
}

TEST(ScoreCacheTest, UpdateReplacesScoreWithoutCountingInsert) {
  auto cache = MakeCache(10);
  cache->Insert("m", "q", "d", 1.0f);
  cache->Insert("m", "q", "d", 2.0f);
  EXPECT_THAT(cache->Lookup("m", "q", "d"), Optional(2.0f));
  EXPECT_EQ(cache->GetStats().size, 1u);
  EXPECT_EQ(cache->GetStats().inserts, 1u);
}

TEST(ScoreCacheTest, EvictsLeastRecentlyUsed) {
  auto cache = MakeCache(3);
  cache->Insert("m", "q", "a", 1);
  cache->Insert("m", "q", "b", 2);
  cache->Insert("m", "q", "c", 3);
  ASSERT_TRUE(cache->Lookup("m", "q", "a").has_value());  // a is now the most recent; b the LRU
  cache->Insert("m", "q", "d", 4);
  EXPECT_EQ(cache->Lookup("m", "q", "b"), std::nullopt);
  EXPECT_THAT(cache->Lookup("m", "q", "a"), Optional(1.0f));
  EXPECT_THAT(cache->Lookup("m", "q", "c"), Optional(3.0f));
  EXPECT_THAT(cache->Lookup("m", "q", "d"), Optional(4.0f));
  // Order now (MRU..LRU): d c a. An update also refreshes recency: a d c, so c is the LRU.
  cache->Insert("m", "q", "a", 10);
  cache->Insert("m", "q", "e", 5);
  EXPECT_EQ(cache->Lookup("m", "q", "c"), std::nullopt);
  EXPECT_THAT(cache->Lookup("m", "q", "a"), Optional(10.0f));
  EXPECT_TRUE(cache->Lookup("m", "q", "d").has_value());
  EXPECT_TRUE(cache->Lookup("m", "q", "e").has_value());
  const ScoreCache::Stats stats = cache->GetStats();
  EXPECT_EQ(stats.size, 3u);
  EXPECT_EQ(stats.evictions, 2u);
  EXPECT_EQ(stats.inserts, 5u);
}

TEST(ScoreCacheTest, ByteBoundEvictsAndCountsKeyBytes) {
  // Measure one entry's accounted size through the public stats.
  auto probe = MakeCache(10);
  const std::string doc(100, 'x');
  probe->Insert("m", "q", doc, 1);
  const size_t one = probe->GetStats().bytes;
  EXPECT_GE(one, doc.size() + ScoreCache::kPerEntryOverhead);  // key bytes + overhead
  EXPECT_LT(one, doc.size() + ScoreCache::kPerEntryOverhead + 16);

  // Room for exactly two such entries (entry count is not the binding bound).
  auto cache = MakeCache(100, 2 * one + one / 2);
  cache->Insert("m", "q", std::string(100, 'a'), 1);
  cache->Insert("m", "q", std::string(100, 'b'), 2);
  EXPECT_EQ(cache->GetStats().size, 2u);
  EXPECT_EQ(cache->GetStats().bytes, 2 * one);
  cache->Insert("m", "q", std::string(100, 'c'), 3);
  ScoreCache::Stats stats = cache->GetStats();
  EXPECT_EQ(stats.size, 2u);
  EXPECT_EQ(stats.evictions, 1u);
  EXPECT_LE(stats.bytes, stats.max_bytes);
  EXPECT_EQ(cache->Lookup("m", "q", std::string(100, 'a')), std::nullopt);
  EXPECT_TRUE(cache->Lookup("m", "q", std::string(100, 'c')).has_value());

  // One big entry pushes out several small ones.
  auto small = MakeCache(100, 1000);
  for (int i = 0; i < 5; ++i) small->Insert("m", "q", std::to_string(i), static_cast<float>(i));
  ASSERT_EQ(small->GetStats().size, 5u);  // 5 * ~(128 + 7) bytes
  small->Insert("m", "q", std::string(600, 'z'), 9);
  stats = small->GetStats();
  EXPECT_LE(stats.bytes, 1000u);
  EXPECT_THAT(small->Lookup("m", "q", std::string(600, 'z')), Optional(9.0f));
  EXPECT_EQ(small->Lookup("m", "q", "0"), std::nullopt);  // oldest went first
  EXPECT_EQ(stats.evictions, 5u - (stats.size - 1));

  // An entry that alone exceeds max_bytes is never stored and evicts nothing.
  const uint64_t evictions_before = stats.evictions;
  small->Insert("m", "q", std::string(2000, 'y'), 1);
  EXPECT_EQ(small->Lookup("m", "q", std::string(2000, 'y')), std::nullopt);
  EXPECT_EQ(small->GetStats().evictions, evictions_before);
  EXPECT_THAT(small->Lookup("m", "q", std::string(600, 'z')), Optional(9.0f));
}

TEST(ScoreCacheTest, BatchCallsGivePartialHits) {
  auto cache = MakeCache(100);
  std::vector<std::string_view> first = {"d1", "d2", "d3"};
  cache->InsertBatch("m", "q", first, std::vector<float>{0.1f, 0.2f, 0.3f});
  std::vector<std::string_view> second = {"d2", "d4", "d3", "d5"};
  EXPECT_THAT(cache->LookupBatch("m", "q", second),
              ElementsAre(Optional(0.2f), std::nullopt, Optional(0.3f), std::nullopt));
  EXPECT_THAT(cache->LookupBatch("m", "other query", second),
              ElementsAre(std::nullopt, std::nullopt, std::nullopt, std::nullopt));
  const ScoreCache::Stats stats = cache->GetStats();
  EXPECT_EQ(stats.hits, 2u);
  EXPECT_EQ(stats.misses, 6u);
  EXPECT_EQ(stats.inserts, 3u);

  // Mismatched lengths: only the common prefix is inserted.
  cache->InsertBatch("m", "q2", second, std::vector<float>{1.0f});
  EXPECT_THAT(cache->Lookup("m", "q2", "d2"), Optional(1.0f));
  EXPECT_EQ(cache->Lookup("m", "q2", "d4"), std::nullopt);
  EXPECT_TRUE(cache->LookupBatch("m", "q", {}).empty());
}

TEST(ScoreCacheTest, SetMaxEntriesShrinksByEvictingLru) {
  auto cache = MakeCache(10);
  for (int i = 0; i < 10; ++i) cache->Insert("m", "q", std::to_string(i), static_cast<float>(i));
  ASSERT_TRUE(cache->Lookup("m", "q", "0").has_value());  // 0 becomes MRU
  cache->SetMaxEntries(3);
  ScoreCache::Stats stats = cache->GetStats();
  EXPECT_EQ(stats.size, 3u);
  EXPECT_EQ(stats.max_entries, 3u);
  EXPECT_EQ(stats.evictions, 7u);
  EXPECT_TRUE(cache->Lookup("m", "q", "0").has_value());
  EXPECT_TRUE(cache->Lookup("m", "q", "9").has_value());
  EXPECT_TRUE(cache->Lookup("m", "q", "8").has_value());
  EXPECT_EQ(cache->Lookup("m", "q", "7"), std::nullopt);

  cache->SetMaxEntries(5);  // growing evicts nothing and admits more
  for (int i = 20; i < 22; ++i) cache->Insert("m", "q", std::to_string(i), 1);
  EXPECT_EQ(cache->GetStats().size, 5u);
  EXPECT_EQ(cache->GetStats().evictions, 7u);

  cache->SetMaxEntries(0);  // empties and stays empty
  EXPECT_EQ(cache->GetStats().size, 0u);
  EXPECT_EQ(cache->GetStats().bytes, 0u);
  cache->Insert("m", "q", "x", 1);
  EXPECT_EQ(cache->Lookup("m", "q", "x"), std::nullopt);
  EXPECT_EQ(cache->GetStats().size, 0u);
}

TEST(ScoreCacheTest, ClearKeepsCounters) {
  auto cache = MakeCache(10);
  cache->Insert("m", "q", "a", 1);
  ASSERT_TRUE(cache->Lookup("m", "q", "a").has_value());
  cache->Clear();
  EXPECT_EQ(cache->Lookup("m", "q", "a"), std::nullopt);
  const ScoreCache::Stats stats = cache->GetStats();
  EXPECT_EQ(stats.size, 0u);
  EXPECT_EQ(stats.bytes, 0u);
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.evictions, 0u);
}

TEST(ScoreCacheTest, ConcurrentUseKeepsInvariants) {
  constexpr size_t kMaxEntries = 64;
  constexpr size_t kMaxBytes = 50 * (ScoreCache::kPerEntryOverhead + 16);
  auto cache = MakeCache(kMaxEntries, kMaxBytes);
  constexpr int kThreads = 4;
  constexpr int kOps = 20000;
  std::vector<std::thread> threads;
  std::vector<uint64_t> lookups(kThreads, 0);
  std::vector<uint64_t> wrong(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      uint32_t x = 12345u + static_cast<uint32_t>(t);
      for (int i = 0; i < kOps; ++i) {
        x = x * 1664525u + 1013904223u;
        const int k = static_cast<int>((x >> 8) % 200);
        const std::string doc = "doc-" + std::to_string(k);
        // The score is a function of the key, so any hit can be checked.
        if ((x >> 4) % 3 == 0) {
          cache->Insert("m", "q", doc, static_cast<float>(k));
        } else if ((x >> 4) % 3 == 1) {
          ++lookups[t];
          auto v = cache->Lookup("m", "q", doc);
          if (v.has_value() && *v != static_cast<float>(k)) ++wrong[t];
        } else {
          std::vector<std::string> docs = {doc, "doc-" + std::to_string((k + 1) % 200)};
          std::vector<std::string_view> views(docs.begin(), docs.end());
          lookups[t] += 2;
          auto v = cache->LookupBatch("m", "q", views);
          if (v[0].has_value() && *v[0] != static_cast<float>(k)) ++wrong[t];
          if (v[1].has_value() && *v[1] != static_cast<float>((k + 1) % 200)) ++wrong[t];
        }
        if (i % 5000 == 0) cache->SetMaxEntries(i % 10000 == 0 ? kMaxEntries : kMaxEntries / 2);
        const ScoreCache::Stats s = cache->GetStats();
        if (s.size > s.max_entries || s.bytes > kMaxBytes) ++wrong[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  uint64_t total_lookups = 0;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(wrong[t], 0u) << "thread " << t;
    total_lookups += lookups[t];
  }
  const ScoreCache::Stats stats = cache->GetStats();
  EXPECT_EQ(stats.hits + stats.misses, total_lookups);
  EXPECT_GT(stats.hits, 0u);
  EXPECT_GT(stats.evictions, 0u);
  EXPECT_EQ(stats.inserts - stats.evictions, stats.size);  // no Clear(): every insert accounted
  EXPECT_LE(stats.size, stats.max_entries);
  EXPECT_LE(stats.bytes, kMaxBytes);
}

}  // namespace
}  // namespace rerank
