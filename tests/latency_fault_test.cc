// The TEST-ONLY latency fault (server/latency_fault.h): which stages it fires at, that it delays
// the forward through the injected sleep and follows stage changes at once, and its validation.
#include "server/latency_fault.h"

#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rerank {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ConstantScorer final : public Scorer {
 public:
  absl::StatusOr<std::vector<float>> Score(const ScoreBatch& batch) override {
    return std::vector<float>(batch.rows, 1.0f);
  }
};

// A FlagSource whose stage the test changes.
class MutableFlags final : public FlagSource {
 public:
  void SetStage(const std::string& stage) {
    FeatureFlags f;
    f.stage = stage;
    absl::MutexLock lock(&mu_);
    flags_ = std::make_shared<const FeatureFlags>(f);
  }
  std::shared_ptr<const FeatureFlags> Current() const override {
    absl::MutexLock lock(&mu_);
    return flags_;
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const FeatureFlags> flags_ = std::make_shared<const FeatureFlags>();
};

TEST(LatencyFaultAppliesTest, FromAStageOnInRolloutOrder) {
  EXPECT_TRUE(LatencyFaultApplies("", "feature-flags"));
  EXPECT_TRUE(LatencyFaultApplies("", "rollback"));
  EXPECT_FALSE(LatencyFaultApplies("cache-50", "feature-flags"));
  EXPECT_FALSE(LatencyFaultApplies("cache-50", "cache-10"));
  EXPECT_TRUE(LatencyFaultApplies("cache-50", "cache-50"));
  EXPECT_TRUE(LatencyFaultApplies("cache-50", "cache-100"));
  EXPECT_TRUE(LatencyFaultApplies("cache-50", "full"));
  EXPECT_FALSE(LatencyFaultApplies("cache-50", "rollback"));
  EXPECT_FALSE(LatencyFaultApplies("cache-50", "disabled"));
  EXPECT_FALSE(LatencyFaultApplies("cache-50", "custom"));
}

TEST(WithLatencyFaultTest, SleepsBeforeForwardsWhileTheStageQualifies) {
  MutableFlags flags;
  std::vector<absl::Duration> slept;
  LatencyFaultOptions o;
  o.delay = absl::Milliseconds(250);
  o.from_stage = "cache-50";
  o.sleep = [&slept](absl::Duration d) { slept.push_back(d); };
  absl::StatusOr<ScorerFactory> factory = WithLatencyFault(
      [] { return absl::StatusOr<std::unique_ptr<Scorer>>(std::make_unique<ConstantScorer>()); }, o,
      &flags);
  ASSERT_TRUE(factory.ok()) << factory.status();
  std::unique_ptr<Scorer> scorer = *(*factory)();
  ScoreBatch batch;
  batch.rows = 2;
  flags.SetStage("cache-10");
  EXPECT_EQ(scorer->Score(batch)->size(), 2u);
  EXPECT_TRUE(slept.empty());
  flags.SetStage("cache-50");
  EXPECT_EQ(scorer->Score(batch)->size(), 2u);
  flags.SetStage("full");
  scorer->Score(batch).IgnoreError();
  EXPECT_THAT(slept, ElementsAre(absl::Milliseconds(250), absl::Milliseconds(250)));
  flags.SetStage("cache-10");  // rolled back: healed at once
  scorer->Score(batch).IgnoreError();
  EXPECT_EQ(slept.size(), 2u);
}

TEST(WithLatencyFaultTest, ValidatesNamingTheConfigKey) {
  MutableFlags flags;
  ScorerFactory inner = [] {
    return absl::StatusOr<std::unique_ptr<Scorer>>(std::make_unique<ConstantScorer>());
  };
  LatencyFaultOptions o;
  EXPECT_THAT(WithLatencyFault(inner, o, &flags).status().message(),
              HasSubstr("testing.inject_latency_ms: must be > 0"));
  o.delay = absl::Milliseconds(5);
  o.from_stage = "rollback";
  EXPECT_THAT(WithLatencyFault(inner, o, &flags).status().message(),
              HasSubstr("testing.inject_latency_from_stage: must be empty or one of "
                        "feature-flags, cache-10, cache-50, cache-100, full, got 'rollback'"));
  o.from_stage = "";
  EXPECT_FALSE(WithLatencyFault(inner, o, nullptr).ok());
  EXPECT_TRUE(WithLatencyFault(inner, o, &flags).ok());
}

}  // namespace
}  // namespace rerank
