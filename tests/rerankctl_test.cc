// Unit tests of rerankctl's parsing, formatting and pre-deployment checks (no server: /health
// answers come from a lambda). The end-to-end behaviour against a real rerankd is covered by
// tests/rerankctl_e2e_test.py.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tools/rerankctl_args.h"
#include "tools/rerankctl_check.h"
#include "tools/rerankctl_format.h"
#include "tools/rerankctl_http.h"

namespace rerank::ctl {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// A /health body with every field of the admin API contract.
json HealthyBody() {
  return json::parse(R"({
    "status": "healthy", "ready": true, "uptime_seconds": 3725,
    "model": {"name": "tiny_model", "version": "8237fa5cb3d9", "precision": "fp32", "demo": true},
    "reranker": {"enabled": true, "stage": "cache-10",
      "stats": {"total_reranks": 120, "avg_latency_ms": 3.25, "p95_latency_ms": 7.5,
                "p99_latency_ms": 9.125, "cache_hit_rate_percent": 12.5,
                "target_latency_met_rate_percent": 99.0, "cache_enabled": true, "cache_size": 7,
                "cache_max_size": 1000, "target_latency_ms": 50, "error_rate_percent": 0.5,
                "window_seconds": 300, "requests_in_window": 40}},
    "flags": {"stage": "cache-10", "cache": {"enabled": true, "traffic_percent": 10}}
  })");
}

json FlagsBody(const std::string& stage, bool cache_enabled, int percent) {
  return json{{"stage", stage},
              {"updated_by", "alice"},
              {"updated_at", "2024-05-01T12:00:00.000Z"},
              {"stages", {"feature-flags", "cache-10"}},
              {"flags",
               {{"stage", stage},
                {"reranker", {{"enabled", true}}},
                {"cache", {{"enabled", cache_enabled}, {"traffic_percent", percent}}}}}};
}

const std::map<std::string, std::vector<FlagSpec>>& TestCommands() {
  static const auto* const commands = new std::map<std::string, std::vector<FlagSpec>>{
      {"rerank", {{"doc", FlagKind::kRepeated}, {"top-n", FlagKind::kValue}, {"json", FlagKind::kBool}}},
      {"stage", {{"actor", FlagKind::kValue}}},
  };
  return *commands;
}

// ---- args ----

TEST(RerankctlArgsTest, GlobalFlagsBeforeAndAfterTheCommand) {
  absl::StatusOr<ParsedArgs> a = ParseArgs(
      {"--admin", "http://h:1", "stage", "cache-10", "--token=t", "--actor", "bob"}, TestCommands());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->command, "stage");
  EXPECT_THAT(a->positionals, ElementsAre("cache-10"));
  EXPECT_EQ(a->Get("admin"), "http://h:1");
  EXPECT_EQ(a->Get("token"), "t");
  EXPECT_EQ(a->Get("actor"), "bob");
  EXPECT_EQ(a->Get("target", "fallback"), "fallback");
  EXPECT_FALSE(a->help);
}

TEST(RerankctlArgsTest, RepeatedValueAndBoolFlags) {
  absl::StatusOr<ParsedArgs> a =
      ParseArgs({"rerank", "--doc", "a b", "--top-n", "2", "--doc=c", "--json", "--top-n", "3"},
                TestCommands());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT(a->GetAll("doc"), ElementsAre("a b", "c"));
  EXPECT_EQ(a->Get("top-n"), "3");  // the last one wins
  EXPECT_TRUE(a->bools.count("json"));
  EXPECT_THAT(a->GetAll("missing"), IsEmpty());
}

TEST(RerankctlArgsTest, UnknownFlagIsAnErrorNamingIt) {
  absl::StatusOr<ParsedArgs> a = ParseArgs({"stage", "full", "--acter", "x"}, TestCommands());
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("--acter"));
  // A command's flag is not accepted by another command.
  EXPECT_FALSE(ParseArgs({"stage", "full", "--json"}, TestCommands()).ok());
  EXPECT_FALSE(ParseArgs({"rerank", "--top-n"}, TestCommands()).ok());       // missing value
  EXPECT_FALSE(ParseArgs({"rerank", "--json=yes"}, TestCommands()).ok());    // bool with a value
}

TEST(RerankctlArgsTest, HelpAndDoubleDash) {
  absl::StatusOr<ParsedArgs> a = ParseArgs({"--help"}, TestCommands());
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->help);
  EXPECT_EQ(a->command, "");
  a = ParseArgs({"rerank", "--", "--doc"}, TestCommands());
  ASSERT_TRUE(a.ok());
  EXPECT_THAT(a->positionals, ElementsAre("--doc"));
  a = ParseArgs({"unknown-cmd", "x"}, TestCommands());
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->command, "unknown-cmd");
}

// ---- format ----

TEST(RerankctlStatsTest, CompleteStatsHaveNoProblems) {
  EXPECT_THAT(StatsProblems(HealthyBody()), IsEmpty());
  EXPECT_EQ(StatsFields().size(), 13u);
}

TEST(RerankctlStatsTest, NamesMissingAndMistypedFields) {
  json h = HealthyBody();
  h["reranker"]["stats"].erase("p95_latency_ms");
  h["reranker"]["stats"]["cache_enabled"] = "yes";
  h["reranker"]["stats"]["total_reranks"] = nullptr;
  EXPECT_THAT(StatsProblems(h), ElementsAre("total_reranks (expected number, got null)",
                                            "p95_latency_ms (missing)",
                                            "cache_enabled (expected bool, got string)"));
  h["reranker"].erase("stats");
  EXPECT_THAT(StatsProblems(h), ElementsAre(".reranker.stats is missing"));
  EXPECT_THAT(StatsProblems(json::array()), ElementsAre(".reranker.stats is missing"));
}

TEST(RerankctlFormatTest, FlattenFlagsSkipsStageAndKeepsOrder) {
  auto flat = FlattenFlags(FlagsBody("cache-10", true, 10)["flags"]);
  ASSERT_EQ(flat.size(), 3u);
  EXPECT_EQ(flat[0], std::make_pair(std::string("cache.enabled"), std::string("true")));
  EXPECT_EQ(flat[1], std::make_pair(std::string("cache.traffic_percent"), std::string("10")));
  EXPECT_EQ(flat[2], std::make_pair(std::string("reranker.enabled"), std::string("true")));
}

TEST(RerankctlFormatTest, StageChangeShowsOldAndNewAndMarksChangedFlags) {
  const std::string out =
      FormatStageChange(FlagsBody("feature-flags", false, 0), FlagsBody("cache-50", true, 50));
  EXPECT_THAT(out, HasSubstr("stage: feature-flags -> cache-50 (by alice at 2024-05-01T12:00:00.000Z)"));
  EXPECT_THAT(out, HasSubstr("cache.traffic_percent    50     (was 0)"));
  EXPECT_THAT(out, HasSubstr("cache.enabled            true   (was false)"));
  // Unchanged flags are listed without a "was".
  EXPECT_THAT(out, HasSubstr("  reranker.enabled         true\n"));
}

TEST(RerankctlFormatTest, StatusSummary) {
  const std::string out = FormatStatus(HealthyBody(), FlagsBody("cache-10", true, 10), "http://h:8000");
  EXPECT_THAT(out, HasSubstr("rerankd at http://h:8000: healthy, ready, up 1h 2m 5s"));
  EXPECT_THAT(out, HasSubstr("tiny_model version 8237fa5cb3d9, fp32 (DEMO model"));
  EXPECT_THAT(out, HasSubstr("stage:    cache-10 (set by alice at 2024-05-01T12:00:00.000Z)"));
  EXPECT_THAT(out, HasSubstr("reranker: enabled"));
  EXPECT_THAT(out, HasSubstr("cache:    enabled for 10% of traffic, 7/1000 entries, hit rate 12.5%"));
  EXPECT_THAT(out, HasSubstr("120 reranks since start; 40 requests in the last 300 s"));
  EXPECT_THAT(out, HasSubstr("avg 3.25 ms, p95 7.50 ms, p99 9.12 ms; target 50 ms met by 99.0%"));
  EXPECT_THAT(out, HasSubstr("errors:   0.5%"));
}

TEST(RerankctlFormatTest, StatusSummaryOfAnUnreadyDisabledServerWithoutFlags) {
  json h = HealthyBody();
  h["ready"] = false;
  h["status"] = "unhealthy";
  h["reranker"]["enabled"] = false;
  h["reranker"]["stage"] = "disabled";
  h["reranker"]["stats"]["cache_enabled"] = false;
  h["reranker"]["stats"].erase("avg_latency_ms");
  const std::string out = FormatStatus(h, json(nullptr), "http://h:8000");
  EXPECT_THAT(out, HasSubstr("unhealthy, NOT READY"));
  EXPECT_THAT(out, HasSubstr("stage:    disabled\n"));  // from /health when /flags is missing
  EXPECT_THAT(out, HasSubstr("reranker: DISABLED"));
  EXPECT_THAT(out, HasSubstr("cache:    disabled"));
  EXPECT_THAT(out, HasSubstr("avg - ms"));
}

TEST(RerankctlFormatTest, HttpErrorsExplainTokens) {
  EXPECT_THAT(DescribeHttpError(400, R"({"error": "unknown stage 'x'; valid stages: a, b"})"),
              AllOf(HasSubstr("HTTP 400: unknown stage 'x'; valid stages: a, b"), Not(HasSubstr("hint"))));
  EXPECT_THAT(DescribeHttpError(401, R"({"error": "bad token"})"),
              AllOf(HasSubstr("HTTP 401: bad token"), HasSubstr("--token"),
                    HasSubstr("RERANKER_ADMIN_TOKEN")));
  EXPECT_THAT(DescribeHttpError(403, R"({"error": "admin.token is not configured"})"),
              AllOf(HasSubstr("HTTP 403"), HasSubstr("no admin.token configured")));
  EXPECT_THAT(DescribeHttpError(502, "<html>bad gateway</html>"),
              HasSubstr("HTTP 502: <html>bad gateway</html>"));
}

TEST(RerankctlMonitorTest, RateBetweenLinesUsesTheGivenTimes) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);  // 22:13:20 UTC
  json h = HealthyBody();
  const std::string first = FormatMonitorLine(h, t0, std::nullopt, utc);
  EXPECT_THAT(first, HasSubstr("22:13:20"));
  EXPECT_THAT(first, HasSubstr("cache-10"));
  std::optional<MonitorSample> sample = SampleOf(h, t0);
  ASSERT_TRUE(sample.has_value());
  EXPECT_EQ(sample->total_reranks, 120);

  h["reranker"]["stats"]["total_reranks"] = 145;  // +25 in 5 s = 5.0 req/s
  const std::string second = FormatMonitorLine(h, t0 + absl::Seconds(5), sample, utc);
  EXPECT_EQ(second, absl::StrFormat("%-8s  %-13s %9s %7s %8s %8s %8s %10s %7s %11s", "22:13:25",
                                    "cache-10", "145", "5.0", "3.25", "7.50", "9.12", "12.5",
                                    "0.5", "99.0"));
  // The header has the same columns.
  EXPECT_THAT(MonitorHeader(), AllOf(HasSubstr("REQ/S"), HasSubstr("P99_MS"), HasSubstr("TARGET_MET%")));
  // The counter went backwards (restart): no rate rather than a negative one.
  h["reranker"]["stats"]["total_reranks"] = 3;
  EXPECT_THAT(FormatMonitorLine(h, t0 + absl::Seconds(10), sample, utc),
              testing::StartsWith(absl::StrFormat("%-8s  %-13s %9s %7s", "22:13:30", "cache-10", "3", "-")));
  EXPECT_FALSE(SampleOf(json::object(), t0).has_value());
  EXPECT_EQ(FormatMonitorError(t0, utc, "refused"), "22:13:20  ERROR refused");
}

TEST(RerankctlFormatTest, SnippetIsOneLineAndUtf8Safe) {
  EXPECT_EQ(Snippet("a\tb\nc", 10), "a b c");
  EXPECT_EQ(Snippet("abcdefghij", 8), "abcde...");
  // "é" is 2 bytes; a cut inside it backs off to its start.
  EXPECT_EQ(Snippet("abcdé", 6), "abcdé");  // fits exactly (6 bytes)
  EXPECT_EQ(Snippet("aaéaaaaa", 6), "aa...");  // byte 3 is the middle of "é"
  EXPECT_EQ(Snippet("aébcdefgh", 6), "aé...");
}

// ---- check ----

class RerankctlCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/rerankctl_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    model_dir_ = dir_ / "model";
    fs::create_directories(model_dir_);
    for (const char* f : {"model.pt", "vocab.txt", "model.yaml"}) Write(model_dir_ / f, "x\n");
    config_ = dir_ / "rerankd.yaml";
    Write(config_, absl::StrCat("model:\n  dir: ", model_dir_.string(), "\nflags:\n  path: ",
                                (dir_ / "data" / "flags.yaml").string(), "\naudit:\n  path: ",
                                (dir_ / "audit.jsonl").string(), "\n"));
    options_.config_path = config_.string();
    options_.env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  }
  void TearDown() override { fs::remove_all(dir_); }

  static void Write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

  // Serves `health` (status `code`) for /health and a reason for /ready.
  HttpGetter Serve(long code, json health) {
    return [code, health](std::string_view path) -> absl::StatusOr<HttpResponse> {
      if (path == "/health") return HttpResponse{code, health.dump()};
      if (path == "/ready") return HttpResponse{503, R"({"ready": false, "reason": "warming up"})"};
      return HttpResponse{404, "{}"};
    };
  }

  static std::string Line(const std::vector<CheckResult>& results, const std::string& name) {
    for (const CheckResult& r : results) {
      if (r.name == name) return absl::StrCat(r.ok ? "ok: " : "FAIL: ", r.detail);
    }
    return "(no such check)";
  }

  fs::path dir_, model_dir_, config_;
  CheckOptions options_;
};

TEST_F(RerankctlCheckTest, AllPassAgainstAHealthyServer) {
  std::vector<CheckResult> r = RunPreDeploymentChecks(options_, Serve(200, HealthyBody()));
  EXPECT_TRUE(AllPassed(r)) << FormatCheckResults(r);
  std::vector<std::string> names;
  for (const CheckResult& c : r) names.push_back(c.name);
  EXPECT_THAT(names, ElementsAre("config file", "model files", "flags file directory",
                                 "audit log directory", "config valid", "health",
                                 "reranker enabled", "stats available"));
  EXPECT_THAT(Line(r, "flags file directory"), HasSubstr("will be created"));
  const std::string text = FormatCheckResults(r);
  EXPECT_THAT(text, HasSubstr("✅ model files: "));
  EXPECT_THAT(text, Not(HasSubstr("❌")));
  EXPECT_THAT(text, HasSubstr("all 8 checks passed"));
}

TEST_F(RerankctlCheckTest, MissingModelFileAndUnwritableDirFail) {
  fs::remove(model_dir_ / "vocab.txt");
  std::vector<CheckResult> r = RunPreDeploymentChecks(options_, Serve(200, HealthyBody()));
  EXPECT_FALSE(AllPassed(r));
  EXPECT_THAT(Line(r, "model files"), AllOf(HasSubstr("FAIL"), HasSubstr("vocab.txt"),
                                            Not(HasSubstr("model.pt"))));
  if (geteuid() != 0) {  // root can write anywhere
    fs::create_directories(dir_ / "data");
    fs::permissions(dir_ / "data", fs::perms::owner_read | fs::perms::owner_exec);
    r = RunPreDeploymentChecks(options_, Serve(200, HealthyBody()));
    EXPECT_THAT(Line(r, "flags file directory"), AllOf(HasSubstr("FAIL"), HasSubstr("not writable")));
    fs::permissions(dir_ / "data", fs::perms::owner_all);
  }
}

TEST_F(RerankctlCheckTest, InvalidOrMissingConfigFails) {
  Write(config_, "execution:\n  workers: 0\n");
  std::vector<CheckResult> r = RunPreDeploymentChecks(options_, Serve(200, HealthyBody()));
  EXPECT_THAT(Line(r, "config valid"), AllOf(HasSubstr("FAIL"), HasSubstr("execution.workers")));
  options_.config_path = (dir_ / "nope.yaml").string();
  r = RunPreDeploymentChecks(options_, Serve(200, HealthyBody()));
  EXPECT_THAT(Line(r, "config file"), AllOf(HasSubstr("FAIL"), HasSubstr("nope.yaml")));
  EXPECT_THAT(Line(r, "model files"), HasSubstr("FAIL: unknown"));
}

TEST_F(RerankctlCheckTest, EnvironmentOverridesAreApplied) {
  options_.env = [this](const std::string& name) -> std::optional<std::string> {
    if (name == "RERANKER_MODEL_DIR") return (dir_ / "elsewhere").string();
    return std::nullopt;
  };
  std::vector<CheckResult> r = RunPreDeploymentChecks(options_, Serve(200, HealthyBody()));
  EXPECT_THAT(Line(r, "model files"), AllOf(HasSubstr("FAIL"), HasSubstr("elsewhere")));
}

TEST_F(RerankctlCheckTest, UnreachableServerFailsEveryRemoteCheck) {
  HttpGetter down = [](std::string_view) -> absl::StatusOr<HttpResponse> {
    return absl::UnavailableError("GET http://127.0.0.1:1/health: Connection refused");
  };
  std::vector<CheckResult> r = RunPreDeploymentChecks(options_, down);
  EXPECT_THAT(Line(r, "health"), AllOf(HasSubstr("FAIL"), HasSubstr("Connection refused")));
  EXPECT_THAT(Line(r, "reranker enabled"), HasSubstr("FAIL"));
  EXPECT_THAT(Line(r, "stats available"), HasSubstr("FAIL"));
  EXPECT_THAT(Line(r, "model files"), HasSubstr("ok"));  // local checks still run
  EXPECT_THAT(FormatCheckResults(r), HasSubstr("3 of 8 checks failed"));
}

TEST_F(RerankctlCheckTest, NotReadyDegradedDisabledAndIncompleteStatsFail) {
  json h = HealthyBody();
  h["ready"] = false;
  h["status"] = "unhealthy";
  std::vector<CheckResult> r = RunPreDeploymentChecks(options_, Serve(503, h));
  EXPECT_THAT(Line(r, "health"), AllOf(HasSubstr("503"), HasSubstr("not ready: warming up")));

  h = HealthyBody();
  h["status"] = "degraded";
  h["reranker"]["enabled"] = false;
  h["reranker"]["stage"] = "disabled";
  h["reranker"]["stats"].erase("window_seconds");
  r = RunPreDeploymentChecks(options_, Serve(200, h));
  EXPECT_THAT(Line(r, "health"), AllOf(HasSubstr("FAIL"), HasSubstr("degraded")));
  EXPECT_THAT(Line(r, "reranker enabled"), AllOf(HasSubstr("FAIL"), HasSubstr("stage disabled")));
  EXPECT_THAT(Line(r, "stats available"), AllOf(HasSubstr("FAIL"), HasSubstr("window_seconds (missing)")));

  r = RunPreDeploymentChecks(options_, [](std::string_view) -> absl::StatusOr<HttpResponse> {
    return HttpResponse{200, "not json"};
  });
  EXPECT_THAT(Line(r, "health"), AllOf(HasSubstr("FAIL"), HasSubstr("not a JSON object")));
}

// ---- http client ----

TEST(RerankctlHttpTest, ValidatesOptionsAndReportsTransportErrors) {
  AdminHttpClient::Options o;
  o.base_url = "127.0.0.1:8000";
  EXPECT_THAT(std::string(AdminHttpClient::Create(o).status().message()), HasSubstr("base_url"));
  o.base_url = "http://127.0.0.1:1/";
  o.timeout = absl::ZeroDuration();
  EXPECT_THAT(std::string(AdminHttpClient::Create(o).status().message()), HasSubstr("timeout"));
  o.timeout = absl::Seconds(5);
  absl::StatusOr<std::unique_ptr<AdminHttpClient>> c = AdminHttpClient::Create(o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->base_url(), "http://127.0.0.1:1");  // trailing slash dropped
  absl::StatusOr<HttpResponse> r = (*c)->Get("/health");  // port 1: nothing listens there
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("http://127.0.0.1:1/health"));
}

}  // namespace
}  // namespace rerank::ctl
