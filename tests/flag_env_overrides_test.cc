// Flag environment variables at startup: ApplyFlagOverrides' rules and FlagStore applying them
// over an existing flags file (written, audited as flag_change by "environment"). Plus the rate
// limiter's cost-based Allow, which the pair limit (rate_limit.pairs_per_minute) uses.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/flag_store.h"
#include "common/rate_limiter.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_audit_sink.h"
#include "tests/testing/fake_clock.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(FlagOverridesTest, StageFirstThenSingleVariablesAndCustomWhenTheyDisagree) {
  FeatureFlags base;
  auto full_off = ApplyFlagOverrides(
      {{"$ENABLE_RERANKER", "reranker.enabled", "false"}, {"$RERANKER_STAGE", "stage", "full"}},
      base);
  ASSERT_TRUE(full_off.ok()) << full_off.status();
  EXPECT_FALSE(full_off->reranker_enabled) << "the single variable wins over the stage";
  EXPECT_TRUE(full_off->overfetch_enabled) << "the rest of `full` applies";
  EXPECT_EQ(full_off->stage, "custom");

  auto restated = ApplyFlagOverrides({{"$ENABLE_RERANKER", "reranker.enabled", "true"}}, base);
  ASSERT_TRUE(restated.ok());
  EXPECT_EQ(restated->stage, "feature-flags") << "nothing changed: the stage keeps its name";

  auto staged = ApplyFlagOverrides({{"$RERANKER_STAGE", "stage", "cache-50"}}, base);
  ASSERT_TRUE(staged.ok());
  EXPECT_EQ(staged->stage, "cache-50");
  EXPECT_EQ(staged->cache_traffic_percent, 50u);

  EXPECT_THAT(std::string(ApplyFlagOverrides({{"$ENABLE_RERANKER", "reranker.enabled", "off"}},
                                             base, "flags.initial")
                              .status()
                              .message()),
              HasSubstr("flags.initial.reranker.enabled (from $ENABLE_RERANKER): must be true or "
                        "false, got 'off'"));
  EXPECT_THAT(
      std::string(
          ApplyFlagOverrides({{"$RERANKER_STAGE", "stage", "cache-42"}}, base).status().message()),
      HasSubstr("stage (from $RERANKER_STAGE): unknown stage 'cache-42'"));
}

class FlagEnvOverridesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("flag_env_overrides_test_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  FlagStore::Options Options() {
    FlagStore::Options o;
    o.path = (dir_ / "flags.yaml").string();
    o.poll_interval = absl::ZeroDuration();
    return o;
  }
  std::string FileText() {
    std::ifstream in(dir_ / "flags.yaml");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  fs::path dir_;
  testing::FakeClock clock_;
  testing::FakeAuditSink audit_;
};

TEST_F(FlagEnvOverridesTest, AnOverrideWinsOverTheFileIsWrittenAuditedAndAppliedOnce) {
  {
    FlagStore::Options o = Options();
    o.initial = *ApplyStage("full", FeatureFlags());
    auto first = FlagStore::Create(o, &clock_, &audit_);  // writes the file: reranker on
    ASSERT_TRUE(first.ok()) << first.status();
  }
  EXPECT_EQ(audit_.EventsOfType("flag_change").size(), 0u);

  FlagStore::Options o = Options();
  o.overrides = {{"$ENABLE_RERANKER", "reranker.enabled", "false"}};
  auto store = FlagStore::Create(o, &clock_, &audit_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_FALSE((*store)->Current()->reranker_enabled);
  EXPECT_TRUE((*store)->Current()->overfetch_enabled) << "the file's other flags stay";
  auto file = ParseFlagsYaml(FileText());
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(*file, *(*store)->Current()) << "written to the file";
  EXPECT_EQ((*store)->metadata().updated_by, "environment");
  auto changes = audit_.EventsOfType("flag_change");
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].fields["actor"], "environment");
  EXPECT_EQ(changes[0].fields["old"]["reranker"]["enabled"], true);
  EXPECT_EQ(changes[0].fields["new"]["reranker"]["enabled"], false);
  store->reset();

  // The next start with the same variable: the file already agrees, nothing written or audited.
  auto again = FlagStore::Create(o, &clock_, &audit_);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE((*again)->Current()->reranker_enabled);
  EXPECT_EQ(audit_.EventsOfType("flag_change").size(), 1u);
}

TEST(RateLimiterCostTest, AllowTakesCostTokensOrNone) {
  testing::FakeClock clock;
  RateLimiter::Options o;
  o.requests_per_minute = 60;  // one token per second, burst 60
  auto limiter = RateLimiter::Create(o, &clock);
  ASSERT_TRUE(limiter.ok());
  RateLimiter& l = **limiter;
  EXPECT_TRUE(l.Allow("c", 50).allowed);
  RateLimiter::Decision d = l.Allow("c", 20);  // 10 left: denied, nothing taken
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, absl::Seconds(10)) << "10 more tokens at 1/s";
  EXPECT_DOUBLE_EQ(d.remaining, 10);
  EXPECT_TRUE(l.Allow("c", 10).allowed);
  d = l.Allow("c", 61);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, absl::InfiniteDuration()) << "more than the bucket ever holds";
  clock.Advance(absl::Seconds(60));
  EXPECT_TRUE(l.Allow("c", 60).allowed);
  EXPECT_TRUE(l.Allow("d").allowed) << "cost 1 by default";
}

}  // namespace
}  // namespace rerank
