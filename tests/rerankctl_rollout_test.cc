// Unit tests of `rerankctl rollout`'s pure part (tools/rerankctl_rollout.h): gate/plan/duration
// parsing, the state machine driven by a fake clock (absl::Time values) and fake samples, the
// state file, the /health and Prometheus readings. The command against a real rerankd (stage
// changes, audit, restart) is tests/rerankctl_rollout_test.py.
#include "tools/rerankctl_rollout.h"

#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/files.h"

namespace rerank::ctl {
namespace {

namespace fs = std::filesystem;
using Action = Decision::Action;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

MATCHER_P(StatusHas, text, "") {
  return !arg.ok() && absl::StrContains(arg.status().message(), text);
}

// ---- parsing ----

TEST(ParseGatesTest, ParsesTheIssuesGates) {
  absl::StatusOr<std::vector<Gate>> gates = ParseGates(
      "p95_latency_ms<50,error_rate_percent<0.1, cache_hit_rate_percent>30,"
      "p99_latency_ms<=80,target_latency_met_rate_percent>=99.5");
  ASSERT_TRUE(gates.ok()) << gates.status();
  ASSERT_EQ(gates->size(), 5u);
  EXPECT_EQ((*gates)[0].metric, "p95_latency_ms");
  EXPECT_EQ((*gates)[0].op, "<");
  EXPECT_EQ((*gates)[0].threshold, 50);
  EXPECT_EQ((*gates)[1].ToString(), "error_rate_percent<0.1");
  EXPECT_EQ((*gates)[2].ToString(), "cache_hit_rate_percent>30");
  EXPECT_EQ((*gates)[3].op, "<=");
  EXPECT_EQ((*gates)[4].op, ">=");
  EXPECT_TRUE((*gates)[0].Holds(49.9));
  EXPECT_FALSE((*gates)[0].Holds(50));
  EXPECT_TRUE((*gates)[3].Holds(80));
  EXPECT_FALSE((*gates)[2].Holds(30));
  EXPECT_TRUE((*gates)[4].Holds(99.5));
}

TEST(ParseGatesTest, RejectsBadItemsNamingThem) {
  EXPECT_THAT(ParseGates("p95_latency_ms<50,p42_latency<3"),
              StatusHas("unknown metric 'p42_latency' in 'p42_latency<3'; known: p95_latency_ms"));
  EXPECT_THAT(ParseGates("p95_latency_ms=50"), StatusHas("unknown operator '=' in"));
  EXPECT_THAT(ParseGates("p95_latency_ms<>50"), StatusHas("unknown operator '<>'"));
  EXPECT_THAT(ParseGates("p95_latency_ms"), StatusHas("'p95_latency_ms' has no operator"));
  EXPECT_THAT(ParseGates("p95_latency_ms<fast"),
              StatusHas("threshold must be a number, got 'fast'"));
  EXPECT_THAT(ParseGates("p95_latency_ms<inf"), StatusHas("threshold must be a number"));
  EXPECT_THAT(ParseGates("p95_latency_ms<50,,error_rate_percent<1"), StatusHas("empty gate"));
  EXPECT_THAT(ParseGates("p95_latency_ms<50,p95_latency_ms<60"), StatusHas("given twice"));
  EXPECT_THAT(ParseGates(""), StatusHas("--gate: empty gate"));
}

TEST(ParsePlanTest, AcceptsRolloutStagesInOrder) {
  absl::StatusOr<std::vector<std::string>> plan =
      ParsePlan("feature-flags,cache-10,cache-50,cache-100,full");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(*plan, ElementsAre("feature-flags", "cache-10", "cache-50", "cache-100", "full"));
  EXPECT_TRUE(ParsePlan("cache-10,full").ok());
}

TEST(ParsePlanTest, RejectsBadStagesNamingThem) {
  EXPECT_THAT(ParsePlan("feature-flags,cache-20"),
              StatusHas("--plan: unknown stage 'cache-20'; rollout stages, in order: "
                        "feature-flags, cache-10"));
  EXPECT_THAT(ParsePlan("cache-10,rollback"), StatusHas("unknown stage 'rollback'"));
  EXPECT_THAT(ParsePlan("cache-50,cache-10"),
              StatusHas("'cache-10' comes after 'cache-50' in rollout order"));
  EXPECT_THAT(ParsePlan("cache-10,cache-10"), StatusHas("'cache-10' is repeated"));
  EXPECT_THAT(ParsePlan("cache-10,"), StatusHas("--plan: empty stage"));
}

TEST(ParsePositiveDurationTest, AcceptsUnitsAndRejectsTheRest) {
  EXPECT_EQ(*ParsePositiveDuration("--hold", "24h"), absl::Hours(24));
  EXPECT_EQ(*ParsePositiveDuration("--hold", "30m"), absl::Minutes(30));
  EXPECT_EQ(*ParsePositiveDuration("--hold", "0.5s"), absl::Milliseconds(500));
  EXPECT_EQ(*ParsePositiveDuration("--hold", "1h30m"), absl::Minutes(90));
  for (const char* bad : {"0s", "-1s", "10", "inf", "", "1 day", "5x"}) {
    EXPECT_THAT(ParsePositiveDuration("--window", bad),
                StatusHas(absl::StrCat("--window: expected a positive duration like 24h, 30m, "
                                       "10s or 0.5s, got '",
                                       bad, "'")))
        << bad;
  }
}

TEST(ValidateRolloutOptionsTest, IntervalMustNotExceedHold) {
  RolloutOptions o;
  o.plan = {"cache-10"};
  o.gates = *ParseGates("p95_latency_ms<50");
  o.hold = absl::Seconds(2);
  o.interval = absl::Seconds(3);
  EXPECT_THAT(ValidateRolloutOptions(o).message(), HasSubstr("--interval: must be <= --hold"));
  o.interval = absl::Seconds(2);
  EXPECT_TRUE(ValidateRolloutOptions(o).ok());
  o.gates.clear();
  EXPECT_THAT(ValidateRolloutOptions(o).message(), HasSubstr("--gate"));
}

TEST(ValidateGateSourcesTest, RateLimitedNeedsPrometheus) {
  std::vector<Gate> gates = *ParseGates("p95_latency_ms<50,rate_limited_percent<5");
  EXPECT_THAT(ValidateGateSources(gates, /*with_prometheus=*/false).message(),
              HasSubstr("rate_limited_percent is not available from GET /health"));
  EXPECT_TRUE(ValidateGateSources(gates, /*with_prometheus=*/true).ok());
}

// ---- the state machine ----

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

class ControllerTest : public ::testing::Test {
 protected:
  ControllerTest() {
    options_.plan = {"feature-flags", "cache-10", "cache-50"};
    options_.gates =
        *ParseGates("p95_latency_ms<50,error_rate_percent<1,cache_hit_rate_percent>30");
    options_.hold = absl::Seconds(10);
    options_.interval = absl::Seconds(1);
    options_.window = absl::Seconds(3);
  }

  // A sample `seconds` after kT0 at the controller's target stage.
  MetricSample At(double seconds, double p95, double errors = 0,
                  std::optional<double> cache_hit = std::nullopt) const {
    MetricSample s;
    s.time = kT0 + absl::Seconds(seconds);
    s.values["p95_latency_ms"] = p95;
    s.values["error_rate_percent"] = errors;
    if (cache_hit.has_value()) s.values["cache_hit_rate_percent"] = *cache_hit;
    return s;
  }

  // Feeds one good sample per second from `from` to `to` (inclusive); returns the decisions.
  std::vector<Decision> Good(RolloutController& c, int from, int to, double cache_hit = 50) {
    std::vector<Decision> out;
    for (int t = from; t <= to; ++t) out.push_back(c.Observe(At(t, 10, 0, cache_hit)));
    return out;
  }

  RolloutOptions options_;
};

TEST_F(ControllerTest, StartsAtTheFirstStage) {
  absl::StatusOr<RolloutController> c = RolloutController::Start(options_, kT0);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->initial().action, Action::kStart);
  EXPECT_EQ(c->initial().to, "feature-flags");
  EXPECT_TRUE(c->initial().sets_stage());
  EXPECT_THAT(c->initial().reason, HasSubstr("plan feature-flags,cache-10,cache-50, stage 1/3"));
  EXPECT_EQ(c->state().target_stage, "feature-flags");
  EXPECT_EQ(c->state().last_good, "rollback");
  EXPECT_EQ(c->state().status, "running");
}

TEST_F(ControllerTest, AdvancesOncePerHoldWhileGatesHold) {
  RolloutController c = *RolloutController::Start(options_, kT0);
  // Cache off at feature-flags: the cache gate is n/a and counts as holding.
  std::vector<Decision> d;
  for (int t = 1; t < 10; ++t) d.push_back(c.Observe(At(t, 10)));
  for (const Decision& x : d) EXPECT_EQ(x.action, Action::kHold) << x.reason;
  EXPECT_THAT(d.back().reason, HasSubstr("held 9s/10s"));
  EXPECT_THAT(d.back().reason, HasSubstr("cache_hit_rate_percent n/a"));
  Decision adv = c.Observe(At(10, 12.5));
  ASSERT_EQ(adv.action, Action::kAdvance) << adv.reason;
  EXPECT_EQ(adv.from, "feature-flags");
  EXPECT_EQ(adv.to, "cache-10");
  EXPECT_TRUE(adv.sets_stage());
  EXPECT_FALSE(adv.finished());
  EXPECT_THAT(adv.reason, HasSubstr("p95_latency_ms 12.5<50"));
  EXPECT_EQ(c.state().index, 1);
  EXPECT_EQ(c.state().last_good, "feature-flags");
  EXPECT_EQ(c.state().entered_at, kT0 + absl::Seconds(10));
  // The hold restarts at the new stage.
  for (const Decision& x : Good(c, 11, 19)) EXPECT_EQ(x.action, Action::kHold) << x.reason;
  Decision adv2 = c.Observe(At(20, 10, 0, 45));
  EXPECT_EQ(adv2.action, Action::kAdvance);
  EXPECT_EQ(adv2.to, "cache-50");
  // The plan's last stage must hold too; then the rollout is complete.
  for (const Decision& x : Good(c, 21, 29)) EXPECT_EQ(x.action, Action::kHold);
  Decision done = c.Observe(At(30, 10, 0, 45));
  EXPECT_EQ(done.action, Action::kComplete);
  EXPECT_TRUE(done.finished());
  EXPECT_FALSE(done.sets_stage());
  EXPECT_EQ(c.state().status, "completed");
  EXPECT_EQ(c.Observe(At(31, 10)).action, Action::kStop);
  std::vector<std::string> actions;
  for (const HistoryEntry& h : c.state().history) actions.push_back(h.action);
  EXPECT_THAT(actions, ElementsAre("start", "advance", "advance", "complete"));
}

TEST_F(ControllerTest, RollsBackWhenAGateFailsForAWholeWindow) {
  RolloutController c = *RolloutController::Start(options_, kT0);
  Good(c, 1, 10);  // -> cache-10
  ASSERT_EQ(c.state().target_stage, "cache-10");
  // p95 fails at 11, 12, 13: the streak spans 2 s < 3 s window: still holding.
  EXPECT_EQ(c.Observe(At(11, 80, 0, 50)).action, Action::kHold);
  EXPECT_EQ(c.Observe(At(12, 80, 0, 50)).action, Action::kHold);
  Decision hold = c.Observe(At(13, 80, 0, 50));
  EXPECT_EQ(hold.action, Action::kHold);
  EXPECT_THAT(hold.reason, HasSubstr("p95_latency_ms 80 !<50"));
  Decision rb = c.Observe(At(14, 90, 0, 50));
  ASSERT_EQ(rb.action, Action::kRollback) << rb.reason;
  EXPECT_EQ(rb.from, "cache-10");
  EXPECT_EQ(rb.to, "feature-flags");
  EXPECT_TRUE(rb.sets_stage());
  EXPECT_TRUE(rb.finished());
  EXPECT_THAT(rb.reason, HasSubstr("p95_latency_ms<50 failed in every sample for 3s (window 3s)"));
  EXPECT_THAT(rb.reason, HasSubstr("p95_latency_ms 90 !<50"));
  EXPECT_EQ(c.state().status, "rolled_back");
  EXPECT_EQ(c.state().target_stage, "feature-flags");
  EXPECT_EQ(c.Observe(At(15, 10)).action, Action::kStop);
}

TEST_F(ControllerTest, BeforeTheFirstAdvanceRollsBackToTheRollbackStage) {
  RolloutController c = *RolloutController::Start(options_, kT0);
  for (int t = 1; t <= 3; ++t) EXPECT_EQ(c.Observe(At(t, 10, 5)).action, Action::kHold);
  Decision rb = c.Observe(At(4, 10, 5));
  ASSERT_EQ(rb.action, Action::kRollback);
  EXPECT_EQ(rb.from, "feature-flags");
  EXPECT_EQ(rb.to, "rollback");
  EXPECT_THAT(rb.reason, HasSubstr("error_rate_percent<1 failed"));
}

TEST_F(ControllerTest, FlappingGateDelaysTheAdvanceButDoesNotRollBack) {
  RolloutController c = *RolloutController::Start(options_, kT0);
  for (int t = 1; t <= 12; ++t) {
    const double p95 = t % 2 == 0 ? 80 : 10;  // fails every other sample
    Decision d = c.Observe(At(t, p95));
    EXPECT_EQ(d.action, Action::kHold) << t << ": " << d.reason;
  }
  // Held 12 s > 10 s, but the gates held only since 13: advance once the window is clean.
  EXPECT_EQ(c.Observe(At(13, 10)).action, Action::kHold);
  EXPECT_EQ(c.Observe(At(14, 10)).action, Action::kHold);
  Decision waiting = c.Observe(At(15, 10));
  EXPECT_EQ(waiting.action, Action::kHold);
  EXPECT_THAT(waiting.reason, HasSubstr("gates held for 2s of the 3s window"));
  EXPECT_EQ(c.Observe(At(16, 10)).action, Action::kAdvance);
}

TEST_F(ControllerTest, DifferentGatesFailingInTurnDoNotAddUp) {
  RolloutController c = *RolloutController::Start(options_, kT0);
  for (int t = 1; t <= 8; ++t) {
    Decision d = t % 2 == 0 ? c.Observe(At(t, 80, 0)) : c.Observe(At(t, 10, 5));
    EXPECT_EQ(d.action, Action::kHold) << t << ": " << d.reason;
  }
}

TEST_F(ControllerTest, NoDataBreaksEveryStreak) {
  RolloutController c = *RolloutController::Start(options_, kT0);
  EXPECT_EQ(c.Observe(At(1, 80)).action, Action::kHold);
  EXPECT_EQ(c.Observe(At(2, 80)).action, Action::kHold);
  MetricSample gap;
  gap.time = kT0 + absl::Seconds(3);
  gap.no_data = "no requests in the server's 300 s stats window";
  Decision d = c.Observe(gap);
  EXPECT_EQ(d.action, Action::kHold);
  EXPECT_THAT(d.reason, HasSubstr("no data: no requests"));
  // The failing streak starts again after the gap: 4..6 spans 2 s, 4..7 spans 3 s.
  EXPECT_EQ(c.Observe(At(4, 80)).action, Action::kHold);
  EXPECT_EQ(c.Observe(At(5, 80)).action, Action::kHold);
  EXPECT_EQ(c.Observe(At(6, 80)).action, Action::kHold);
  EXPECT_EQ(c.Observe(At(7, 80)).action, Action::kRollback);
}

TEST_F(ControllerTest, NoDataAtTheEndOfTheHoldBlocksTheAdvance) {
  RolloutController c = *RolloutController::Start(options_, kT0);
  Good(c, 1, 9);
  MetricSample gap;
  gap.time = kT0 + absl::Seconds(10);
  gap.no_data = "GET /health: connection refused";
  EXPECT_EQ(c.Observe(gap).action, Action::kHold);
  for (int t = 11; t <= 13; ++t) EXPECT_EQ(c.Observe(At(t, 10)).action, Action::kHold);
  EXPECT_EQ(c.Observe(At(14, 10)).action, Action::kAdvance);
}

TEST_F(ControllerTest, AStageChangedByHandStopsTheRollout) {
  RolloutController c = *RolloutController::Start(options_, kT0);
  MetricSample s = At(1, 10);
  s.stage = "full";
  Decision d = c.Observe(s);
  EXPECT_EQ(d.action, Action::kStop);
  EXPECT_TRUE(d.finished());
  EXPECT_FALSE(d.sets_stage());
  EXPECT_THAT(d.reason, HasSubstr("the server's stage is full, not feature-flags"));
  s.stage = "feature-flags";  // the expected stage is fine
  s.time += absl::Seconds(1);
  EXPECT_EQ(c.Observe(s).action, Action::kHold);
}

TEST_F(ControllerTest, ResumesWhereItWas) {
  RolloutController c = *RolloutController::Start(options_, kT0);
  Good(c, 1, 10);  // -> cache-10 at 10 s
  for (int t = 11; t <= 14; ++t) c.Observe(At(t, 10, 0, 50));
  const RolloutState saved = c.state();

  // A restarted rerankctl 2 s later: same stage, entered at 10 s, hold keeps counting.
  absl::StatusOr<RolloutController> r = RolloutController::Resume(
      options_, *StateFromJson(StateToJson(saved)), kT0 + absl::Seconds(16));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->initial().action, Action::kResume);
  EXPECT_EQ(r->initial().to, "cache-10");
  EXPECT_TRUE(r->initial().sets_stage());
  EXPECT_THAT(r->initial().reason, HasSubstr("stage 2/3 cache-10"));
  EXPECT_THAT(r->initial().reason, HasSubstr("held 6s of 10s"));
  // The window starts afresh: 17, 18, 19 then 20 (held 10 s, window 3 s clean).
  for (int t = 17; t <= 19; ++t) EXPECT_EQ(r->Observe(At(t, 10, 0, 50)).action, Action::kHold);
  Decision adv = r->Observe(At(20, 10, 0, 50));
  EXPECT_EQ(adv.action, Action::kAdvance);
  EXPECT_EQ(adv.from, "cache-10");
  EXPECT_EQ(adv.to, "cache-50");
}

TEST_F(ControllerTest, ResumeRefusesADifferentPlan) {
  RolloutController c = *RolloutController::Start(options_, kT0);
  RolloutOptions other = options_;
  other.plan = {"feature-flags", "cache-10", "cache-100"};
  absl::StatusOr<RolloutController> r = RolloutController::Resume(other, c.state(), kT0);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status()));
  EXPECT_THAT(r.status().message(),
              HasSubstr("the saved rollout has plan feature-flags,cache-10,cache-50, not "
                        "feature-flags,cache-10,cache-100"));
  EXPECT_THAT(r.status().message(), HasSubstr("--reset"));
}

TEST_F(ControllerTest, ResumingAFinishedRolloutStops) {
  RolloutController c = *RolloutController::Start(options_, kT0);
  for (int t = 1; t <= 4; ++t) c.Observe(At(t, 90));
  ASSERT_EQ(c.state().status, "rolled_back");
  absl::StatusOr<RolloutController> r = RolloutController::Resume(options_, c.state(), kT0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->initial().action, Action::kStop);
  EXPECT_FALSE(r->initial().sets_stage());
  EXPECT_THAT(r->initial().reason, HasSubstr("already rolled back; pass --reset"));
}

TEST_F(ControllerTest, FormatDecisionNamesActionStagesAndReason) {
  Decision d;
  d.action = Action::kAdvance;
  d.from = "cache-10";
  d.to = "cache-50";
  d.reason = "held 24h";
  EXPECT_EQ(FormatDecision(d, kT0),
            "2023-11-14T22:13:20.000Z advance cache-10 -> cache-50: held 24h");
  d.action = Action::kHold;
  d.from = d.to = "cache-10";
  EXPECT_EQ(FormatDecision(d, kT0), "2023-11-14T22:13:20.000Z hold cache-10: held 24h");
}

// ---- state file ----

TEST(StateTest, RoundTripsThroughJsonAndTheFile) {
  RolloutState s;
  s.plan = {"feature-flags", "cache-10"};
  s.index = 1;
  s.entered_at = kT0 + absl::Milliseconds(1500);
  s.last_good = "feature-flags";
  s.status = "running";
  s.target_stage = "cache-10";
  s.history.push_back({kT0, "advance", "feature-flags", "cache-10", "held 1s"});
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("rollout_state_", getpid());
  fs::create_directories(dir);
  const std::string path = (dir / "rollout-state.json").string();
  EXPECT_FALSE(LoadStateFile(path)->has_value());
  ASSERT_TRUE(SaveStateFile(path, s).ok());
  absl::StatusOr<std::optional<RolloutState>> loaded = LoadStateFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  const RolloutState& l = **loaded;
  EXPECT_EQ(l.plan, s.plan);
  EXPECT_EQ(l.index, 1);
  EXPECT_EQ(l.entered_at, s.entered_at);
  EXPECT_EQ(l.last_good, "feature-flags");
  EXPECT_EQ(l.target_stage, "cache-10");
  ASSERT_EQ(l.history.size(), 1u);
  EXPECT_EQ(l.history[0].reason, "held 1s");
  EXPECT_THAT(testing::ReadFile(path), HasSubstr("\"stage\": \"cache-10\""));
  // No temp file is left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  testing::WriteFile(path, "{\"version\": 1, \"plan\": [\"cache-10\"], \"index\": 3}");
  EXPECT_THAT(LoadStateFile(path), StatusHas("index: expected 0..0, got 3"));
  fs::remove_all(dir);
}

TEST(StateTest, RejectsBadFieldsNamingThem) {
  EXPECT_THAT(StateFromJson("[]"), StatusHas("not a JSON object"));
  EXPECT_THAT(StateFromJson(R"({"version": 7})"), StatusHas("version: expected 1, got 7"));
  EXPECT_THAT(StateFromJson(R"({"version": 1, "plan": ["cache-10", "cache-7"]})"),
              StatusHas("plan: unknown stage 'cache-7'"));
  EXPECT_THAT(StateFromJson(R"({"version": 1, "plan": ["cache-10"], "index": 0,
                                "entered_at": "yesterday"})"),
              StatusHas("entered_at: expected an RFC 3339 time"));
  EXPECT_THAT(StateFromJson(R"({"version": 1, "plan": ["cache-10"], "index": 0,
                                "entered_at": "2024-01-01T00:00:00Z", "last_good": "nope"})"),
              StatusHas("last_good: expected a stage name"));
  EXPECT_THAT(StateFromJson(R"({"version": 1, "plan": ["cache-10"], "index": 0,
                                "entered_at": "2024-01-01T00:00:00Z", "last_good": "rollback",
                                "target_stage": "cache-10", "status": "paused"})"),
              StatusHas("status: expected running, completed or rolled_back"));
}

// ---- readings ----

admin::v1::Health HealthWith(uint32_t requests, bool cache_enabled) {
  admin::v1::Health h;
  h.set_ready(true);
  h.set_status("healthy");
  h.mutable_reranker()->set_stage("cache-10");
  admin::v1::Stats* s = h.mutable_reranker()->mutable_stats();
  s->set_requests_in_window(requests);
  s->set_window_seconds(300);
  s->set_p95_latency_ms(12.5);
  s->set_p99_latency_ms(20);
  s->set_avg_latency_ms(8);
  s->set_error_rate_percent(0.5);
  s->set_cache_hit_rate_percent(40);
  s->set_target_latency_met_rate_percent(99);
  s->set_cache_enabled(cache_enabled);
  return h;
}

TEST(SampleFromHealthTest, ReadsTheWindowedFigures) {
  MetricSample s = SampleFromHealth(HealthWith(10, true), 200, kT0);
  EXPECT_TRUE(s.no_data.empty());
  EXPECT_EQ(s.stage, "cache-10");
  EXPECT_EQ(s.time, kT0);
  EXPECT_EQ(s.values.at("p95_latency_ms"), 12.5);
  EXPECT_EQ(s.values.at("p99_latency_ms"), 20);
  EXPECT_EQ(s.values.at("avg_latency_ms"), 8);
  EXPECT_EQ(s.values.at("error_rate_percent"), 0.5);
  EXPECT_EQ(s.values.at("cache_hit_rate_percent"), 40);
  EXPECT_EQ(s.values.at("target_latency_met_rate_percent"), 99);
  EXPECT_EQ(s.values.count("rate_limited_percent"), 0u);
}

TEST(SampleFromHealthTest, CacheOffIsNotApplicableAndNoTrafficIsNoData) {
  EXPECT_EQ(
      SampleFromHealth(HealthWith(10, false), 200, kT0).values.count("cache_hit_rate_percent"), 0u);
  EXPECT_THAT(SampleFromHealth(HealthWith(0, true), 200, kT0).no_data,
              HasSubstr("no requests in the server's 300 s stats window"));
  admin::v1::Health not_ready = HealthWith(10, true);
  not_ready.set_ready(false);
  not_ready.set_status("unhealthy");
  EXPECT_THAT(SampleFromHealth(not_ready, 503, kT0).no_data,
              HasSubstr("server not ready (GET /health: HTTP 503, status 'unhealthy')"));
}

TEST(PrometheusTest, QueriesTheWorstSeriesOfTheRecordingRule) {
  std::vector<Gate> gates = *ParseGates("p95_latency_ms<50,cache_hit_rate_percent>30");
  EXPECT_EQ(PrometheusQuery(gates[0], ""),
            "max(job:rerank_request_duration_seconds:p95_5m{}) * 1000");
  EXPECT_EQ(PrometheusQuery(gates[1], "job=\"rerankd\""),
            "min(job:rerank_cache_hit_ratio:rate5m{job=\"rerankd\"}) * 100");
  EXPECT_EQ(PrometheusTrafficQuery(""), "sum(job:rerank_requests:rate5m{})");
}

TEST(PrometheusTest, ParsesInstantQueryAnswers) {
  EXPECT_EQ(**ParsePrometheusValue(
                R"({"status":"success","data":{"resultType":"vector",
                    "result":[{"metric":{},"value":[1700000000.1,"12.5"]}]}})"),
            12.5);
  EXPECT_FALSE(
      ParsePrometheusValue(R"({"status":"success","data":{"resultType":"vector","result":[]}})")
          ->has_value());
  EXPECT_FALSE(ParsePrometheusValue(R"({"status":"success","data":{"resultType":"vector",
                   "result":[{"metric":{},"value":[1700000000.1,"NaN"]}]}})")
                   ->has_value());
  EXPECT_THAT(ParsePrometheusValue(R"({"status":"error","error":"parse error at char 3"})"),
              StatusHas("Prometheus query failed: parse error at char 3"));
  EXPECT_THAT(ParsePrometheusValue("<html>"), StatusHas("not a JSON object"));
  EXPECT_THAT(ParsePrometheusValue(R"({"status":"success","data":{"resultType":"matrix"}})"),
              StatusHas("resultType"));
}

}  // namespace
}  // namespace rerank::ctl
