#include "common/feature_flags.h"

#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rerank {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A base where every field differs from what any stage sets, to see what a stage leaves alone.
FeatureFlags OddBase() {
  FeatureFlags f;
  f.stage = "custom";
  f.reranker_enabled = false;
  f.cache_enabled = true;
  f.cache_traffic_percent = 33;
  f.cache_max_entries = 777;
  f.batch_enabled = false;
  f.audit_enabled = false;
  f.overfetch_enabled = true;
  f.overfetch_candidates = 40;
  f.overfetch_top_n = 7;
  f.rate_limit_enabled = false;
  f.rate_limit_per_minute = 250;
  return f;
}

FeatureFlags Apply(const std::string& stage, const FeatureFlags& base = OddBase()) {
  absl::StatusOr<FeatureFlags> f = ApplyStage(stage, base);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *f : FeatureFlags{};
}

TEST(FeatureFlagsTest, StageNamesInRolloutOrder) {
  EXPECT_THAT(StageNames(), ElementsAre("feature-flags", "cache-10", "cache-50", "cache-100",
                                        "full", "rollback", "disabled"));
}

TEST(FeatureFlagsTest, FeatureFlagsStage) {
  FeatureFlags expected = OddBase();
  expected.stage = "feature-flags";
  expected.reranker_enabled = true;
  expected.cache_enabled = false;
  expected.cache_traffic_percent = 0;
  EXPECT_EQ(Apply("feature-flags"), expected);
}

TEST(FeatureFlagsTest, CacheStages) {
  for (uint32_t percent : {10u, 50u, 100u}) {
    const std::string stage = "cache-" + std::to_string(percent);
    FeatureFlags expected = OddBase();
    expected.stage = stage;
    expected.reranker_enabled = true;
    expected.cache_enabled = true;
    expected.cache_traffic_percent = percent;
    EXPECT_EQ(Apply(stage), expected) << stage;
  }
}

TEST(FeatureFlagsTest, FullStage) {
  FeatureFlags expected = OddBase();
  expected.stage = "full";
  expected.reranker_enabled = true;
  expected.cache_enabled = true;
  expected.cache_traffic_percent = 100;
  expected.cache_max_entries = 1000;
  expected.batch_enabled = true;
  expected.audit_enabled = true;
  expected.overfetch_enabled = true;
  expected.overfetch_candidates = 20;
  expected.overfetch_top_n = 5;
  // Rate limiting is not part of the stages.
  EXPECT_EQ(Apply("full"), expected);
}

TEST(FeatureFlagsTest, RollbackStage) {
  const FeatureFlags from_full = Apply("full");
  FeatureFlags expected = from_full;
  expected.stage = "rollback";
  expected.cache_enabled = false;
  expected.cache_traffic_percent = 0;
  expected.batch_enabled = false;
  expected.overfetch_enabled = false;
  EXPECT_EQ(Apply("rollback", from_full), expected);
  EXPECT_TRUE(Apply("rollback", OddBase()).reranker_enabled);  // the reranker stays on
}

TEST(FeatureFlagsTest, DisabledStageTurnsOnlyTheRerankerOff) {
  const FeatureFlags from_full = Apply("full");
  FeatureFlags expected = from_full;
  expected.stage = "disabled";
  expected.reranker_enabled = false;
  EXPECT_EQ(Apply("disabled", from_full), expected);
  // And a later stage turns it back on.
  EXPECT_TRUE(Apply("feature-flags", Apply("disabled")).reranker_enabled);
}

TEST(FeatureFlagsTest, WholeRolloutFromDefaults) {
  FeatureFlags f;  // defaults are the feature-flags stage
  EXPECT_EQ(Apply("feature-flags", f), f);
  for (const std::string& stage : StageNames()) {
    f = Apply(stage, f);
    EXPECT_EQ(f.stage, stage);
    EXPECT_TRUE(ValidateFlags(f).ok()) << stage << ": " << ValidateFlags(f);
  }
}

TEST(FeatureFlagsTest, UnknownStageIsAnErrorListingValidOnes) {
  absl::StatusOr<FeatureFlags> f = ApplyStage("cache-75", FeatureFlags{});
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("'cache-75'"));
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("feature-flags, cache-10"));
  EXPECT_FALSE(ApplyStage("", FeatureFlags{}).ok());
  EXPECT_FALSE(ApplyStage("FULL", FeatureFlags{}).ok());    // names are exact
  EXPECT_FALSE(ApplyStage("custom", FeatureFlags{}).ok());  // a label, not a stage to apply
}

TEST(FeatureFlagsTest, EqualityComparesEveryField) {
  const std::vector<std::function<void(FeatureFlags&)>> mutations = {
      [](FeatureFlags& f) { f.stage = "full"; },
      [](FeatureFlags& f) { f.reranker_enabled = !f.reranker_enabled; },
      [](FeatureFlags& f) { f.cache_enabled = !f.cache_enabled; },
      [](FeatureFlags& f) { f.cache_traffic_percent += 1; },
      [](FeatureFlags& f) { f.cache_max_entries += 1; },
      [](FeatureFlags& f) { f.batch_enabled = !f.batch_enabled; },
      [](FeatureFlags& f) { f.audit_enabled = !f.audit_enabled; },
      [](FeatureFlags& f) { f.overfetch_enabled = !f.overfetch_enabled; },
      [](FeatureFlags& f) { f.overfetch_candidates += 1; },
      [](FeatureFlags& f) { f.overfetch_top_n += 1; },
      [](FeatureFlags& f) { f.rate_limit_enabled = !f.rate_limit_enabled; },
      [](FeatureFlags& f) { f.rate_limit_per_minute += 1; },
  };
  EXPECT_EQ(FeatureFlags{}, FeatureFlags{});
  for (size_t i = 0; i < mutations.size(); ++i) {
    FeatureFlags f;
    mutations[i](f);
    EXPECT_NE(f, FeatureFlags{}) << "mutation " << i;
    EXPECT_FALSE(f == FeatureFlags{}) << "mutation " << i;
  }
}

TEST(FeatureFlagsTest, ValidateNamesTheKey) {
  EXPECT_TRUE(ValidateFlags(FeatureFlags{}).ok());
  struct Case {
    std::function<void(FeatureFlags&)> mutate;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](FeatureFlags& f) { f.cache_traffic_percent = 150; },
       "cache.traffic_percent: must be 0..100, got 150"},
      {[](FeatureFlags& f) { f.cache_max_entries = 0; }, "cache.max_entries: must be 1.."},
      {[](FeatureFlags& f) { f.overfetch_candidates = 0; }, "overfetch.candidates: must be 1.."},
      {[](FeatureFlags& f) { f.overfetch_top_n = 21; }, "overfetch.top_n: must be 1..overfetch"},
      {[](FeatureFlags& f) { f.overfetch_top_n = 0; }, "overfetch.top_n"},
      {[](FeatureFlags& f) { f.rate_limit_per_minute = 0; },
       "rate_limit.per_minute: must be 1..100000000, got 0"},
      {[](FeatureFlags& f) { f.stage = "beta"; }, "stage: must be one of"},
      {[](FeatureFlags& f) { f.stage = ""; }, "stage"},
  };
  for (const Case& c : cases) {
    FeatureFlags f;
    c.mutate(f);
    absl::Status s = ValidateFlags(f);
    ASSERT_FALSE(s.ok()) << c.message;
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message));
  }
  FeatureFlags custom;
  custom.stage = kCustomStage;
  EXPECT_TRUE(ValidateFlags(custom).ok());
}

TEST(FeatureFlagsTest, StaticFlagSource) {
  FeatureFlags f = Apply("full");
  StaticFlagSource source(f);
  ASSERT_NE(source.Current(), nullptr);
  EXPECT_EQ(*source.Current(), f);
  EXPECT_EQ(source.Current(), source.Current());  // the same snapshot
}

}  // namespace
}  // namespace rerank
