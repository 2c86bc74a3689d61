// Unit tests of rerankctl's parsing, formatting, admin token lookup and pre-deployment checks (no
// server: /health answers come from a lambda). The end-to-end behaviour against a real rerankd is
// covered by tests/rerankctl_e2e_test.py.
#include <unistd.h>

#include <algorithm>
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
#include "rerank/admin/v1/admin.pb.h"
#include "tools/rerankctl_args.h"
#include "tools/rerankctl_check.h"
#include "tools/rerankctl_format.h"
#include "tools/rerankctl_http.h"
#include "tools/rerankctl_token.h"

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

// `body` parsed into its contract message, as rerankctl parses the server's answers.
template <typename M>
M Parse(const json& body) {
  M m;
  const absl::Status s = ParseAnswer(body.dump(), &m, "test body");
  EXPECT_TRUE(s.ok()) << s;
  return m;
}

admin::v1::Health Healthy() { return Parse<admin::v1::Health>(HealthyBody()); }

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
      {"rerank",
       {{"doc", FlagKind::kRepeated}, {"top-n", FlagKind::kValue}, {"json", FlagKind::kBool}}},
      {"stage", {{"actor", FlagKind::kValue}}},
  };
  return *commands;
}

admin::v1::FlagsView FlagsView(const std::string& stage, bool cache_enabled, int percent) {
  return Parse<admin::v1::FlagsView>(FlagsBody(stage, cache_enabled, percent));
}

// ---- args ----

TEST(RerankctlArgsTest, GlobalFlagsBeforeAndAfterTheCommand) {
  absl::StatusOr<ParsedArgs> a =
      ParseArgs({"--admin", "http://h:1", "stage", "cache-10", "--token=t", "--actor", "bob"},
                TestCommands());
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
  EXPECT_FALSE(ParseArgs({"rerank", "--top-n"}, TestCommands()).ok());     // missing value
  EXPECT_FALSE(ParseArgs({"rerank", "--json=yes"}, TestCommands()).ok());  // bool with a value
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

TEST(RerankctlStatsTest, FieldListIsTheContractsStatsMessage) {
  // Every key the server renders in .reranker.stats, and only those: the list comes from the
  // Stats descriptor, so a field added to admin.proto is checked without a change in rerankctl.
  const json health = HealthyBody();
  std::vector<std::string> keys;
  for (const auto& [key, value] : health["reranker"]["stats"].items()) keys.push_back(key);
  std::vector<std::string> names = StatsFieldNames();
  EXPECT_EQ(names.size(), static_cast<size_t>(admin::v1::Stats::descriptor()->field_count()));
  EXPECT_EQ(names.front(), "total_reranks");  // declaration order
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, keys);
  EXPECT_THAT(StatsProblems(HealthyBody()), IsEmpty());
}

TEST(RerankctlStatsTest, NamesMissingFields) {
  json h = HealthyBody();
  h["reranker"]["stats"].erase("p95_latency_ms");
  h["reranker"]["stats"]["total_reranks"] = nullptr;  // null reads as absent
  h["reranker"]["stats"].erase("cache_size");
  h["reranker"]["stats"]["cacheSize"] = 3;         // the lowerCamelCase JSON name counts
  h["reranker"]["stats"]["new_server_field"] = 1;  // unknown keys are ignored
  EXPECT_THAT(StatsProblems(h), ElementsAre("total_reranks (missing)", "p95_latency_ms (missing)"));
  h["reranker"]["stats"] = json::array();
  EXPECT_THAT(StatsProblems(h), ElementsAre(".reranker.stats is not an object"));
  h["reranker"].erase("stats");
  EXPECT_THAT(StatsProblems(h), ElementsAre(".reranker.stats is missing"));
  EXPECT_THAT(StatsProblems(json::array()), ElementsAre(".reranker.stats is missing"));
}

TEST(RerankctlParseTest, AnswersParseIntoTheContractIgnoringUnknownKeys) {
  json h = HealthyBody();
  h["added_by_a_newer_server"] = {{"x", 1}};
  h["reranker"]["stats"]["p999_latency_ms"] = 12.5;
  admin::v1::Health health;
  ASSERT_TRUE(ParseAnswer(h.dump(), &health, "GET /health").ok());
  EXPECT_EQ(health.reranker().stats().cache_max_size(), 1000u);
  EXPECT_DOUBLE_EQ(health.reranker().stats().p99_latency_ms(), 9.125);
  // A mistyped field is an error naming its path and the answer.
  h["reranker"]["stats"]["cache_enabled"] = "yes";
  const absl::Status s = ParseAnswer(h.dump(), &health, "GET /health");
  EXPECT_THAT(std::string(s.message()),
              AllOf(HasSubstr("GET /health: "), HasSubstr("reranker.stats.cache_enabled")));
  EXPECT_THAT(std::string(ParseAnswer("not json", &health, "GET /health").message()),
              HasSubstr("GET /health: invalid JSON"));
}

TEST(RerankctlFormatTest, FlattenFlagsSkipsStageAndSortsByName) {
  auto flat = FlattenFlags(FlagsView("cache-10", true, 10).flags());
  ASSERT_EQ(flat.size(), 3u);
  EXPECT_EQ(flat[0], std::make_pair(std::string("cache.enabled"), std::string("true")));
  EXPECT_EQ(flat[1], std::make_pair(std::string("cache.traffic_percent"), std::string("10")));
  EXPECT_EQ(flat[2], std::make_pair(std::string("reranker.enabled"), std::string("true")));
  // Every flag of the contract, by reflection (absent fields are not listed).
  admin::v1::Flags all;
  all.set_stage("full");
  all.mutable_overfetch()->set_top_n(5);
  all.mutable_rate_limit()->set_per_minute(0);  // set to its default: still listed
  all.mutable_audit()->set_enabled(false);
  EXPECT_THAT(FlattenFlags(all),
              ElementsAre(std::make_pair(std::string("audit.enabled"), std::string("false")),
                          std::make_pair(std::string("overfetch.top_n"), std::string("5")),
                          std::make_pair(std::string("rate_limit.per_minute"), std::string("0"))));
}

TEST(RerankctlFormatTest, StageChangeShowsOldAndNewAndMarksChangedFlags) {
  const std::string out =
      FormatStageChange(FlagsView("feature-flags", false, 0), FlagsView("cache-50", true, 50));
  EXPECT_THAT(out,
              HasSubstr("stage: feature-flags -> cache-50 (by alice at 2024-05-01T12:00:00.000Z)"));
  EXPECT_THAT(out, HasSubstr("cache.traffic_percent    50     (was 0)"));
  EXPECT_THAT(out, HasSubstr("cache.enabled            true   (was false)"));
  // Unchanged flags are listed without a "was".
  EXPECT_THAT(out, HasSubstr("  reranker.enabled         true\n"));
  EXPECT_THAT(FormatStageChange(FlagsView("a", true, 1), admin::v1::FlagsView()),
              AllOf(HasSubstr("stage: a -> ?"), HasSubstr("no \"flags\" object")));
}

TEST(RerankctlFormatTest, StatusSummary) {
  const admin::v1::FlagsView flags = FlagsView("cache-10", true, 10);
  const std::string out = FormatStatus(Healthy(), &flags, "http://h:8000");
  EXPECT_THAT(out, HasSubstr("rerankd at http://h:8000: healthy, ready, up 1h 2m 5s"));
  EXPECT_THAT(out, HasSubstr("tiny_model version 8237fa5cb3d9, fp32 (DEMO model"));
  EXPECT_THAT(out, HasSubstr("stage:    cache-10 (set by alice at 2024-05-01T12:00:00.000Z)"));
  EXPECT_THAT(out, HasSubstr("reranker: enabled"));
  EXPECT_THAT(out,
              HasSubstr("cache:    enabled for 10% of traffic, 7/1000 entries, hit rate 12.5%"));
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
  h["model"].erase("version");
  const std::string out = FormatStatus(Parse<admin::v1::Health>(h), nullptr, "http://h:8000");
  EXPECT_THAT(out, HasSubstr("unhealthy, NOT READY"));
  EXPECT_THAT(out, HasSubstr("stage:    disabled\n"));  // from /health when /flags is missing
  EXPECT_THAT(out, HasSubstr("reranker: DISABLED"));
  EXPECT_THAT(out, HasSubstr("cache:    disabled"));
  EXPECT_THAT(out, HasSubstr("tiny_model version -, fp32"));
  // The traffic percentage comes from /health's flags when /flags is missing.
  h["reranker"]["stats"]["cache_enabled"] = true;
  EXPECT_THAT(FormatStatus(Parse<admin::v1::Health>(h), nullptr, "http://h:8000"),
              HasSubstr("cache:    enabled for 10% of traffic"));
}

TEST(RerankctlFormatTest, Reload) {
  admin::v1::ReloadResponse r = Parse<admin::v1::ReloadResponse>(
      json{{"reloaded", true}, {"flags", {{"stage", "disabled"}}}, {"error", ""}});
  EXPECT_EQ(FormatReload(r), "reloaded: the flags file had changed; applied (stage disabled)\n");
  r = Parse<admin::v1::ReloadResponse>(
      json{{"reloaded", false}, {"flags", {{"stage", "full"}}}, {"error", "stage: unknown 'x'"}});
  EXPECT_THAT(FormatReload(r), AllOf(HasSubstr("unchanged (stage full)"),
                                     HasSubstr("flags file error: stage: unknown 'x'"),
                                     HasSubstr("last good flags stay in force")));
}

TEST(RerankctlFormatTest, HttpErrorsExplainTokens) {
  EXPECT_THAT(
      DescribeHttpError(400, R"({"error": "unknown stage 'x'; valid stages: a, b"})"),
      AllOf(HasSubstr("HTTP 400: unknown stage 'x'; valid stages: a, b"), Not(HasSubstr("hint"))));
  EXPECT_THAT(
      DescribeHttpError(401, R"({"error": "bad token"})"),
      AllOf(HasSubstr("HTTP 401: bad token"), HasSubstr("--token-file"), HasSubstr("--token"),
            HasSubstr("RERANKER_ADMIN_TOKEN"), HasSubstr("data/admin.token")));
  EXPECT_THAT(DescribeHttpError(403, R"({"error": "admin.token is not configured"})"),
              AllOf(HasSubstr("HTTP 403"), HasSubstr("no admin.token configured")));
  EXPECT_THAT(DescribeHttpError(502, "<html>bad gateway</html>"),
              HasSubstr("HTTP 502: <html>bad gateway</html>"));
  EXPECT_THAT(DescribeHttpError(500, R"({"error": 7})"), HasSubstr(R"(HTTP 500: {"error": 7})"));
}

TEST(RerankctlMonitorTest, RateBetweenLinesUsesTheGivenTimes) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);  // 22:13:20 UTC
  json h = HealthyBody();
  const std::string first = FormatMonitorLine(Parse<admin::v1::Health>(h), t0, std::nullopt, utc);
  EXPECT_THAT(first, HasSubstr("22:13:20"));
  EXPECT_THAT(first, HasSubstr("cache-10"));
  const MonitorSample sample = SampleOf(Parse<admin::v1::Health>(h), t0);
  EXPECT_EQ(sample.total_reranks, 120);

  h["reranker"]["stats"]["total_reranks"] = 145;  // +25 in 5 s = 5.0 req/s
  const std::string second =
      FormatMonitorLine(Parse<admin::v1::Health>(h), t0 + absl::Seconds(5), sample, utc);
  EXPECT_EQ(second,
            absl::StrFormat("%-8s  %-13s %9s %7s %8s %8s %8s %10s %7s %11s", "22:13:25", "cache-10",
                            "145", "5.0", "3.25", "7.50", "9.12", "12.5", "0.5", "99.0"));
  // The header has the same columns.
  EXPECT_THAT(MonitorHeader(),
              AllOf(HasSubstr("REQ/S"), HasSubstr("P99_MS"), HasSubstr("TARGET_MET%")));
  // The counter went backwards (restart): no rate rather than a negative one.
  h["reranker"]["stats"]["total_reranks"] = 3;
  h["reranker"]["enabled"] = false;
  EXPECT_THAT(FormatMonitorLine(Parse<admin::v1::Health>(h), t0 + absl::Seconds(10), sample, utc),
              ::testing::StartsWith(
                  absl::StrFormat("%-8s  %-13s %9s %7s", "22:13:30", "cache-10(off)", "3", "-")));
  EXPECT_EQ(FormatMonitorError(t0, utc, "refused"), "22:13:20  ERROR refused");
}

TEST(RerankctlFormatTest, SnippetIsOneLineAndUtf8Safe) {
  EXPECT_EQ(Snippet("a\tb\nc", 10), "a b c");
  EXPECT_EQ(Snippet("abcdefghij", 8), "abcde...");
  // "é" is 2 bytes; a cut inside it backs off to its start.
  EXPECT_EQ(Snippet("abcdé", 6), "abcdé");     // fits exactly (6 bytes)
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
    Write(config_, absl::StrCat("model:\n  dir: ", model_dir_.string(),
                                "\nflags:\n  path: ", (dir_ / "data" / "flags.yaml").string(),
                                "\naudit:\n  path: ", (dir_ / "audit.jsonl").string(), "\n"));
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
  EXPECT_THAT(Line(r, "model files"),
              AllOf(HasSubstr("FAIL"), HasSubstr("vocab.txt"), Not(HasSubstr("model.pt"))));
  if (geteuid() != 0) {  // root can write anywhere
    fs::create_directories(dir_ / "data");
    fs::permissions(dir_ / "data", fs::perms::owner_read | fs::perms::owner_exec);
    r = RunPreDeploymentChecks(options_, Serve(200, HealthyBody()));
    EXPECT_THAT(Line(r, "flags file directory"),
                AllOf(HasSubstr("FAIL"), HasSubstr("not writable")));
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
  EXPECT_THAT(Line(r, "stats available"),
              AllOf(HasSubstr("FAIL"), HasSubstr("window_seconds (missing)")));

  r = RunPreDeploymentChecks(options_, [](std::string_view) -> absl::StatusOr<HttpResponse> {
    return HttpResponse{200, "not json"};
  });
  EXPECT_THAT(Line(r, "health"),
              AllOf(HasSubstr("FAIL"), HasSubstr("does not match the admin contract"),
                    HasSubstr("invalid JSON"), HasSubstr("not json")));
  EXPECT_THAT(Line(r, "stats available"), HasSubstr("FAIL: unknown"));
}

TEST_F(RerankctlCheckTest, AnswerOutsideTheContractFailsNamingTheField) {
  json h = HealthyBody();
  h["reranker"]["stats"]["cache_enabled"] = "yes";
  std::vector<CheckResult> r = RunPreDeploymentChecks(options_, Serve(200, h));
  EXPECT_THAT(Line(r, "health"), AllOf(HasSubstr("FAIL"), HasSubstr("reranker.stats.cache_enabled"),
                                       HasSubstr("\"yes\"")));
  EXPECT_THAT(Line(r, "reranker enabled"), HasSubstr("FAIL: unknown"));
  // An error status that is not /health's own (200/503) is explained, not parsed as a Health.
  r = RunPreDeploymentChecks(options_, [](std::string_view) -> absl::StatusOr<HttpResponse> {
    return HttpResponse{500, R"({"error": "internal"})"};
  });
  EXPECT_THAT(Line(r, "health"), AllOf(HasSubstr("FAIL"), HasSubstr("HTTP 500: internal")));
  // Keys a newer server adds do not fail anything.
  h = HealthyBody();
  h["reranker"]["stats"]["p999_latency_ms"] = 1.5;
  h["build"] = "abc";
  r = RunPreDeploymentChecks(options_, Serve(200, h));
  EXPECT_TRUE(AllPassed(r)) << FormatCheckResults(r);
}

// ---- admin token ----

class RerankctlTokenTest : public ::testing::Test {
 protected:
  static constexpr char kToken[] = "0123456789abcdef0123456789abcdef";

  void SetUp() override {
    char tmpl[] = "/tmp/rerankctl_token_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "data");
    sources_.env = [this](const std::string& name) -> std::optional<std::string> {
      auto it = env_.find(name);
      if (it == env_.end()) return std::nullopt;
      return it->second;
    };
    // rerankd's flags file, hence its generated token file, in the temp dir.
    env_["RERANKER_FLAGS_FILE"] = (dir_ / "data" / "flags.yaml").string();
  }
  void TearDown() override {
    fs::permissions(dir_, fs::perms::owner_all);
    fs::remove_all(dir_);
  }

  std::string Write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  std::string Message() {
    absl::StatusOr<AdminToken> t = ResolveAdminToken(sources_);
    EXPECT_FALSE(t.ok());
    return std::string(t.status().message());
  }

  fs::path dir_;
  std::map<std::string, std::string> env_;
  TokenSources sources_;
};

TEST_F(RerankctlTokenTest, TheDefaultFileIsWhereRerankdWritesIt) {
  // Absent: no token, and the source says which file was looked for.
  absl::StatusOr<AdminToken> t = ResolveAdminToken(sources_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->token, "");
  const std::string path = (dir_ / "data" / "admin.token").string();
  EXPECT_THAT(t->source, AllOf(HasSubstr(path), HasSubstr("does not exist")));
  // rerankd's format: the token and a newline.
  Write("data/admin.token", absl::StrCat(kToken, "\n"));
  t = ResolveAdminToken(sources_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->token, kToken);
  EXPECT_THAT(t->source, HasSubstr(path));
  EXPECT_THAT(t->source, Not(HasSubstr(kToken)));
  // admin.token_file (here from the environment, as rerankd reads it) moves it.
  env_["RERANKER_ADMIN_TOKEN_FILE"] = Write("elsewhere.token", "other-token-0123456789\n");
  t = ResolveAdminToken(sources_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->token, "other-token-0123456789");
  // The same derivation from a config file.
  env_.erase("RERANKER_ADMIN_TOKEN_FILE");
  env_.erase("RERANKER_FLAGS_FILE");
  sources_.config_path =
      Write("rerankd.yaml", absl::StrCat("flags:\n  path: ", dir_.string(), "/cfg/flags.yaml\n"));
  fs::create_directories(dir_ / "cfg");
  Write("cfg/admin.token", "from-config-dir-0123456\n");
  t = ResolveAdminToken(sources_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->token, "from-config-dir-0123456");
}

TEST_F(RerankctlTokenTest, PrecedenceFlagsThenEnvThenConfigThenFiles) {
  Write("data/admin.token", "default-file-token-0123\n");
  env_["RERANKER_ADMIN_TOKEN_FILE"] = Write("env.token", "env-file-token-0123456\n");
  sources_.config_path = Write("rerankd.yaml", "admin:\n  token: config-token-0123456789\n");
  env_["RERANKER_ADMIN_TOKEN"] = "env-token-0123456789";
  sources_.token = "flag-token-0123456789";
  sources_.token_file = Write("flag.token", "flag-file-token-01234\n");
  std::vector<std::string> seen;
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<AdminToken> t = ResolveAdminToken(sources_);
    ASSERT_TRUE(t.ok()) << t.status();
    seen.push_back(absl::StrCat(t->token, " <- ", t->source));
    if (i == 0) sources_.token_file.reset();
    if (i == 1) sources_.token.reset();
    if (i == 2) env_.erase("RERANKER_ADMIN_TOKEN");
    if (i == 3) sources_.config_path.clear();
    if (i == 4) env_.erase("RERANKER_ADMIN_TOKEN_FILE");
  }
  EXPECT_THAT(seen, ElementsAre(HasSubstr("flag-file-token-01234 <- --token-file "),
                                "flag-token-0123456789 <- --token",
                                "env-token-0123456789 <- $RERANKER_ADMIN_TOKEN",
                                HasSubstr("config-token-0123456789 <- admin.token in "),
                                HasSubstr("env-file-token-0123456 <- $RERANKER_ADMIN_TOKEN_FILE "),
                                HasSubstr("default-file-token-0123 <- the token file ")));
  // An empty environment variable counts as unset.
  env_["RERANKER_ADMIN_TOKEN"] = "";
  absl::StatusOr<AdminToken> t = ResolveAdminToken(sources_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->token, "default-file-token-0123");
}

TEST_F(RerankctlTokenTest, BadFilesAreErrorsNamingTheFile) {
  sources_.token_file = (dir_ / "missing.token").string();
  EXPECT_THAT(Message(), AllOf(HasSubstr("--token-file: "), HasSubstr("missing.token"),
                               HasSubstr("does not exist")));
  sources_.token_file = Write("empty.token", " \n");
  EXPECT_THAT(Message(), AllOf(HasSubstr("empty.token"), HasSubstr("is empty")));
  sources_.token_file = Write("two-words.token", "secret-part-one secret-part-two\n");
  EXPECT_THAT(Message(), AllOf(HasSubstr("two-words.token"), HasSubstr("one word"),
                               Not(HasSubstr("secret-part"))));
  sources_.token_file = Write("huge.token", std::string(kMaxTokenFileBytes + 1, 'x'));
  EXPECT_THAT(Message(), AllOf(HasSubstr("huge.token"), HasSubstr("larger than")));
  sources_.token_file = dir_.string();
  EXPECT_THAT(Message(), AllOf(HasSubstr(dir_.string()), HasSubstr("not a regular file")));
  if (geteuid() != 0) {  // root reads anything
    sources_.token_file = Write("locked.token", "locked-token-0123456789\n");
    fs::permissions(*sources_.token_file, fs::perms::none);
    EXPECT_THAT(Message(), AllOf(HasSubstr("locked.token"), HasSubstr("cannot be read")));
  }
  sources_.token_file = "";
  EXPECT_THAT(Message(), HasSubstr("--token-file: must not be empty"));
  sources_.token_file.reset();
  sources_.token = "";
  EXPECT_THAT(Message(), HasSubstr("--token: must not be empty"));
  sources_.token.reset();

  // A named file must exist; the default one may be absent (checked above), but not be a bad file.
  env_["RERANKER_ADMIN_TOKEN_FILE"] = (dir_ / "gone.token").string();
  EXPECT_THAT(Message(), AllOf(HasSubstr("$RERANKER_ADMIN_TOKEN_FILE"), HasSubstr("gone.token")));
  env_.erase("RERANKER_ADMIN_TOKEN_FILE");
  Write("data/admin.token", "");
  EXPECT_THAT(Message(), AllOf(HasSubstr("data/admin.token"), HasSubstr("is empty")));
  // The default file needs the configuration that names it.
  sources_.config_path = (dir_ / "nope.yaml").string();
  EXPECT_THAT(Message(), AllOf(HasSubstr("--config"), HasSubstr("nope.yaml")));
  sources_.config_path.clear();
  env_["RERANKER_WORKERS"] = "zero";
  EXPECT_THAT(Message(), AllOf(HasSubstr("RERANKER_WORKERS"), HasSubstr("--token-file")));
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
  EXPECT_EQ((*c)->base_url(), "http://127.0.0.1:1");      // trailing slash dropped
  absl::StatusOr<HttpResponse> r = (*c)->Get("/health");  // port 1: nothing listens there
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("http://127.0.0.1:1/health"));
}

}  // namespace
}  // namespace rerank::ctl
