// The admin plane on real components (FlagStore, AuditLog, ScoreCache, LiveStats on a fake
// clock, ServiceMetrics) behind the real admin HTTP server (over loopback HTTP) and the real admin
// gRPC server (over a real channel); no data plane. The full server is in admin_server_test.cc.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "admin/admin_core.h"
#include "admin/admin_service.h"
#include "admin/http_server.h"
#include "admin/live_stats.h"
#include "admin/service_metrics.h"
#include "common/audit_log.h"
#include "common/config.h"
#include "common/flag_store.h"
#include "common/proto_json.h"
#include "common/score_cache.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "rerank/admin/v1/admin.grpc.pb.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/files.h"
#include "tests/testing/http_client.h"
#include "tests/testing/prometheus_text.h"

namespace rerank {
namespace {

using testing::ReadFile;

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;
using testing::FakeClock;
using testing::HttpGet;
using testing::HttpPost;
using testing::HttpRequest;
using testing::HttpResult;

std::vector<json> ReadAudit(const fs::path& p) {
  std::vector<json> events;
  std::istringstream lines(ReadFile(p));
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) events.push_back(json::parse(line));
  }
  return events;
}

// True when the kernel's socket tables list a listening socket on port `port` bound to
// 127.0.0.1 (IPv4, or IPv4-mapped in tcp6) and none bound to another address.
bool ListensOnLoopbackOnly(int port) {
  bool loopback = false, other = false;
  const std::string port_hex = absl::StrFormat(":%04X", port);
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::istringstream lines(ReadFile(table));
    for (std::string line; std::getline(lines, line);) {
      std::istringstream f(line);
      std::string sl, local, remote, state;
      f >> sl >> local >> remote >> state;
      if (state != "0A" || local.size() < 6 || local.substr(local.size() - 5) != port_hex) continue;
      const std::string addr = local.substr(0, local.size() - 5);
      (addr == "0100007F" || addr == "0000000000000000FFFF00000100007F" ? loopback : other) = true;
    }
  }
  return loopback && !other;
}

RequestReport Report(absl::StatusCode code, double latency_ms, int lookups = 0, int hits = 0) {
  RequestReport r;
  r.rpc = "Rerank";
  r.code = code;
  r.latency = absl::Microseconds(static_cast<int64_t>(latency_ms * 1000));
  r.cache_lookups = lookups;
  r.cache_hits = hits;
  r.reranked = code == absl::StatusCode::kOk;
  return r;
}

class AdminPlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("admin_plane_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    AuditLog::Options ao;
    ao.path = (dir_ / "audit.jsonl").string();
    auto audit = AuditLog::Create(ao, &clock_);
    ASSERT_TRUE(audit.ok()) << audit.status();
    audit_ = *std::move(audit);
    FlagStore::Options fo;
    fo.path = (dir_ / "flags.yaml").string();
    fo.poll_interval = absl::ZeroDuration();  // reloads only through the API
    auto flags = FlagStore::Create(fo, &clock_, audit_.get());
    ASSERT_TRUE(flags.ok()) << flags.status();
    flags_ = *std::move(flags);
    auto cache = ScoreCache::Create(ScoreCache::Options{});
    ASSERT_TRUE(cache.ok());
    cache_ = *std::move(cache);
    LiveStats::Options lo;
    lo.window = absl::Seconds(60);
    lo.target_latency = absl::Milliseconds(50);
    auto stats = LiveStats::Create(lo, &clock_);
    ASSERT_TRUE(stats.ok());
    stats_ = *std::move(stats);
    auto metrics = ServiceMetrics::Create(ServiceMetrics::Options(), &registry_);
    ASSERT_TRUE(metrics.ok());
    metrics_ = *std::move(metrics);
    ServiceMetrics::Sources s;
    s.cache = cache_.get();
    s.flags = flags_.get();
    s.audit = audit_.get();
    s.ready = [this] { return ready_.load(); };
    metrics_->SetSources(s);
    StartAdmin("secret");
  }

  void TearDown() override {
    StopAdmin();
    flags_.reset();
    audit_.reset();
    fs::remove_all(dir_);
  }

  void StartAdmin(const std::string& token) {
    StopAdmin();
    AdminCore::Options co;
    co.token = token;
    AdminCore::Deps d;
    d.flags = flags_.get();
    d.audit = audit_.get();
    d.stats = stats_.get();
    d.cache = cache_.get();
    d.metrics = metrics_.get();
    d.clock = &clock_;
    d.start = clock_.Now();
    d.model_name = "tiny_model";
    d.model_version = "abc123";
    d.precision = "fp32";
    d.demo_model = true;
    d.readiness = [this] {
      return ready_.load() ? Readiness{true, ""} : Readiness{false, "warming up"};
    };
    auto core = AdminCore::Create(co, d);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = *std::move(core);
    AdminHttpServer::Options ho;
    ho.listen = "127.0.0.1:0";
    auto http = AdminHttpServer::Start(ho, core_.get());
    ASSERT_TRUE(http.ok()) << http.status();
    http_ = *std::move(http);
    AdminGrpcServer::Options go;
    go.listen = "127.0.0.1:0";
    auto grpc_server = AdminGrpcServer::Start(go, core_.get());
    ASSERT_TRUE(grpc_server.ok()) << grpc_server.status();
    grpc_ = *std::move(grpc_server);
    stub_ = admin::v1::Admin::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", grpc_->port()),
                                                          grpc::InsecureChannelCredentials()));
  }

  void StopAdmin() {
    stub_.reset();
    grpc_.reset();
    http_.reset();
    core_.reset();
  }

  int port() const { return http_->port(); }

  HttpResult Get(const std::string& path) {
    absl::StatusOr<HttpResult> r = HttpGet(port(), path);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HttpResult{};
  }
  HttpResult Post(const std::string& path, const std::string& body,
                  std::vector<std::pair<std::string, std::string>> headers = {
                      {"Authorization", "Bearer secret"}}) {
    absl::StatusOr<HttpResult> r = HttpPost(port(), path, body, headers);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HttpResult{};
  }
  static json Body(const HttpResult& r) {
    json j = json::parse(r.body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.body;
    return j;
  }
  std::vector<json> AuditEvents(const std::string& type) {
    audit_->Flush();
    std::vector<json> out;
    for (json& e : ReadAudit(dir_ / "audit.jsonl")) {
      if (e["event_type"] == type) out.push_back(std::move(e));
    }
    return out;
  }

  fs::path dir_;
  FakeClock clock_{absl::FromUnixSeconds(1'700'000'000)};
  std::atomic<bool> ready_{true};
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<FlagStore> flags_;
  std::unique_ptr<ScoreCache> cache_;
  std::unique_ptr<LiveStats> stats_;
  prometheus::Registry registry_;
  std::unique_ptr<ServiceMetrics> metrics_;
  std::unique_ptr<AdminCore> core_;
  std::unique_ptr<AdminHttpServer> http_;
  std::unique_ptr<AdminGrpcServer> grpc_;
  std::unique_ptr<admin::v1::Admin::Stub> stub_;
};

TEST_F(AdminPlaneTest, LiveReadyAndRouting) {
  HttpResult r = Get("/live");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(Body(r), json({{"live", true}}));

  r = Get("/ready");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), json({{"ready", true}, {"reason", ""}}));
  ready_ = false;
  r = Get("/ready");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(Body(r), json({{"ready", false}, {"reason", "warming up"}}));
  r = Get("/health");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(Body(r)["status"], "unhealthy");
  EXPECT_EQ(Body(r)["ready"], false);
  EXPECT_EQ(Get("/live").status, 200);  // liveness does not depend on readiness

  r = Get("/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_THAT(Body(r)["error"].get<std::string>(), HasSubstr("/nope"));
  r = Get("/health/extra");
  EXPECT_EQ(r.status, 404);

  r = Post("/health", "{}");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET");
  EXPECT_TRUE(Body(r).contains("error"));
  r = Get("/reload");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "POST");
  absl::StatusOr<HttpResult> del = HttpRequest(port(), "DELETE", "/flags");
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->status, 405);
  EXPECT_EQ(del->header("allow"), "GET, POST");

  r = Get("/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.header("content-type"), HasSubstr("text/plain"));
  EXPECT_THAT(r.body, HasSubstr("rerank_ready 0"));
}

TEST_F(AdminPlaneTest, HealthShapeAndSlidingWindowOnFakeClock) {
  // t0: 19 fast successes and 1 failure (5% errors: not above the threshold), with cache use.
  for (int i = 0; i < 19; ++i) stats_->OnRequest(Report(absl::StatusCode::kOk, 10 + i, 4, 1));
  stats_->OnRequest(Report(absl::StatusCode::kInternal, 1));
  clock_.Advance(absl::Seconds(30));
  HttpResult r = Get("/health");
  ASSERT_EQ(r.status, 200);
  json h = Body(r);
  EXPECT_EQ(h["status"], "healthy");
  EXPECT_EQ(h["ready"], true);
  EXPECT_EQ(h["uptime_seconds"], 30);
  EXPECT_EQ(
      h["model"],
      json({{"name", "tiny_model"}, {"version", "abc123"}, {"precision", "fp32"}, {"demo", true}}));
  EXPECT_EQ(h["reranker"]["enabled"], true);
  EXPECT_EQ(h["reranker"]["stage"], "feature-flags");
  EXPECT_EQ(h["flags"], FlagsToJson(*flags_->Current()));
  const json& s = h["reranker"]["stats"];
  EXPECT_EQ(s["total_reranks"], 20);
  EXPECT_EQ(s["requests_in_window"], 20);
  EXPECT_EQ(s["window_seconds"], 60);
  EXPECT_EQ(s["target_latency_ms"], 50);
  EXPECT_DOUBLE_EQ(s["avg_latency_ms"].get<double>(), 19.0);  // mean of 10..28
  EXPECT_DOUBLE_EQ(s["p95_latency_ms"].get<double>(), 28);    // ceil(0.95*19) = 19th
  EXPECT_DOUBLE_EQ(s["p99_latency_ms"].get<double>(), 28);
  EXPECT_DOUBLE_EQ(s["cache_hit_rate_percent"].get<double>(), 25);
  EXPECT_DOUBLE_EQ(s["target_latency_met_rate_percent"].get<double>(), 100);
  EXPECT_DOUBLE_EQ(s["error_rate_percent"].get<double>(), 5);
  EXPECT_EQ(s["cache_enabled"], false);
  EXPECT_EQ(s["cache_size"], 0);
  EXPECT_EQ(s["cache_max_size"], 1000);

  // t0+30s: two more failures -> 3/22 errors in the window: degraded (still 200: ready).
  stats_->OnRequest(Report(absl::StatusCode::kInternal, 1));
  stats_->OnRequest(Report(absl::StatusCode::kUnavailable, 1));
  r = Get("/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Body(r)["status"], "degraded");

  // t0+60s: the first 20 requests left the window; only the two failures remain.
  clock_.Advance(absl::Seconds(30));
  h = Body(Get("/health"));
  EXPECT_EQ(h["reranker"]["stats"]["total_reranks"], 22);
  EXPECT_EQ(h["reranker"]["stats"]["requests_in_window"], 2);
  EXPECT_DOUBLE_EQ(h["reranker"]["stats"]["error_rate_percent"].get<double>(), 100);
  EXPECT_DOUBLE_EQ(h["reranker"]["stats"]["p99_latency_ms"].get<double>(), 0);
  EXPECT_EQ(h["status"], "degraded");

  // t0+90s: empty window, healthy again; the total keeps counting.
  clock_.Advance(absl::Seconds(30));
  h = Body(Get("/health"));
  EXPECT_EQ(h["status"], "healthy");
  EXPECT_EQ(h["reranker"]["stats"]["total_reranks"], 22);
  EXPECT_EQ(h["reranker"]["stats"]["requests_in_window"], 0);
  EXPECT_EQ(h["uptime_seconds"], 90);
}

TEST_F(AdminPlaneTest, StateChangingCallsNeedTheToken) {
  const std::string body = R"({"stage": "cache-10", "actor": "alice"})";
  HttpResult r = Post("/flags", body, {});
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.header("www-authenticate"), "Bearer");
  EXPECT_THAT(Body(r)["error"].get<std::string>(), HasSubstr("missing admin token"));
  r = Post("/flags", body, {{"Authorization", "Bearer wrong"}});
  EXPECT_EQ(r.status, 401);
  EXPECT_THAT(Body(r)["error"].get<std::string>(), HasSubstr("invalid admin token"));
  r = Post("/flags", body, {{"X-Admin-Token", "secre"}});
  EXPECT_EQ(r.status, 401);
  r = Post("/flags", body, {{"Authorization", "Basic c2VjcmV0"}});
  EXPECT_EQ(r.status, 401);
  r = Post("/reload", "{}", {});
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(flags_->Current()->stage, "feature-flags");  // nothing changed

  r = Post("/flags", body, {{"X-Admin-Token", "secret"}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(flags_->Current()->stage, "cache-10");
  r = Post("/flags", R"({"stage": "cache-50"})", {{"authorization", "bearer secret"}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(flags_->Current()->stage, "cache-50");

  // Reads need no token.
  EXPECT_EQ(Get("/flags").status, 200);
  EXPECT_EQ(Get("/health").status, 200);
  EXPECT_EQ(Get("/metrics").status, 200);
}

TEST_F(AdminPlaneTest, NoTokenConfiguredRefusesStateChanges) {
  StartAdmin("");
  HttpResult r = Post("/flags", R"({"stage": "cache-10"})");  // even with a token
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(Body(r)["error"], kTokenNotConfigured);
  EXPECT_EQ(Post("/reload", "", {}).status, 403);
  EXPECT_EQ(Get("/flags").status, 200);

  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer secret");
  admin::v1::SetStageRequest req;
  req.set_stage("cache-10");
  admin::v1::FlagsView resp;
  grpc::Status s = stub_->SetStage(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(), kTokenNotConfigured);
  EXPECT_EQ(flags_->Current()->stage, "feature-flags");
}

TEST_F(AdminPlaneTest, GetAndPostFlags) {
  json g = Body(Get("/flags"));
  EXPECT_EQ(g["stage"], "feature-flags");
  EXPECT_EQ(g["flags"], FlagsToJson(*flags_->Current()));
  EXPECT_EQ(g["stages"], json(StageNames()));
  EXPECT_TRUE(g["updated_by"].is_string());
  EXPECT_TRUE(g["updated_at"].is_string());

  clock_.Advance(absl::Seconds(1));
  HttpResult r = Post("/flags", R"({"stage": "cache-100", "actor": "alice"})");
  ASSERT_EQ(r.status, 200) << r.body;
  json p = Body(r);
  EXPECT_EQ(p["stage"], "cache-100");
  EXPECT_EQ(p["updated_by"], "alice");
  EXPECT_EQ(p["updated_at"], AuditLog::FormatTimestamp(clock_.Now()));
  EXPECT_EQ(p["flags"]["cache"]["traffic_percent"], 100);
  EXPECT_EQ(p, Body(Get("/flags")));  // POST returns what GET then shows
  // The file is the source of truth.
  absl::StatusOr<FeatureFlags> on_disk = ParseFlagsYaml(ReadFile(dir_ / "flags.yaml"));
  ASSERT_TRUE(on_disk.ok());
  EXPECT_EQ(on_disk->stage, "cache-100");

  // A patch of a value the stage prescribes makes the stage "custom".
  r = Post("/flags", R"({"flags": {"cache": {"traffic_percent": 30}}, "actor": "bob"})");
  ASSERT_EQ(r.status, 200) << r.body;
  p = Body(r);
  EXPECT_EQ(p["stage"], "custom");
  EXPECT_EQ(p["flags"]["cache"]["traffic_percent"], 30);
  EXPECT_EQ(p["flags"]["cache"]["enabled"], true);  // untouched keys keep their values
  EXPECT_EQ(p["updated_by"], "bob");
  // A value no stage governs keeps the stage's name.
  ASSERT_EQ(Post("/flags", R"({"stage": "cache-50"})").status, 200);
  r = Post("/flags", R"({"flags": {"rate_limit": {"per_minute": 7}}})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["stage"], "cache-50");
  EXPECT_EQ(flags_->Current()->rate_limit_per_minute, 7u);
  EXPECT_EQ(Body(r)["updated_by"], "admin-http");  // default actor

  // Audited by the FlagStore, with the actor.
  std::vector<json> changes = AuditEvents("flag_change");
  ASSERT_GE(changes.size(), 4u);
  EXPECT_EQ(changes[0]["actor"], "alice");
  EXPECT_EQ(changes[0]["stage"], "cache-100");
  EXPECT_EQ(changes[1]["actor"], "bob");
}

TEST_F(AdminPlaneTest, BadFlagRequestsAre400NamingTheKey) {
  struct Case {
    std::string body;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"{not json", "invalid JSON"},
           {"[1, 2]", "JSON object"},
           {R"({"stage": "cache-75"})", "stage"},
           {R"({"stage": "custom"})", "stage"},
           {R"({"stage": 10})", "stage: must be a string"},
           {R"({"flags": {"cache": {"traffic_percent": 150}}})", "cache.traffic_percent"},
           {R"({"flags": {"cache": {"colour": 1}}})", "cache.colour"},
           {R"({"flags": {"cache": {"enabled": "yes"}}})", "cache.enabled"},
           {R"({"flags": 5})", "flags: must be an object"},
           {R"({"flags": {"cache": {"traffic_percent": -1}}})", "cache.traffic_percent"},
           {R"({"flags": {"cache": {"traffic_percent": 1.5}}})", "cache.traffic_percent"},
           {R"({"stage": "full", "flags": {}})", "exactly one"},
           {R"({})", "exactly one"},
           {R"({"stage": "full", "colour": "red"})", "colour"},
           {R"({"stage": "full", "actor": 5})", "actor"},
           {R"({"stage": "full", "actor": ""})", "actor"},
           {R"({"stage": "full", "actor": "a\nb"})", "actor"},
           {absl::StrCat(R"({"stage": "full", "actor": ")", std::string(129, 'x'), R"("})"),
            "actor"},
       }) {
    HttpResult r = Post("/flags", c.body);
    EXPECT_EQ(r.status, 400) << c.body << " -> " << r.body;
    EXPECT_THAT(Body(r)["error"].get<std::string>(), HasSubstr(c.message)) << c.body;
  }
  EXPECT_EQ(flags_->Current()->stage, "feature-flags");
  EXPECT_TRUE(AuditEvents("flag_change").empty());
}

TEST_F(AdminPlaneTest, OversizedBodyIs413) {
  HttpResult r = Post("/flags", std::string(100 * 1024, ' '));
  EXPECT_EQ(r.status, 413);
}

TEST_F(AdminPlaneTest, ReloadAppliesExternalEditsAndIsAudited) {
  absl::StatusOr<FeatureFlags> full = ApplyStage("full", FeatureFlags{});
  ASSERT_TRUE(full.ok());
  {
    std::ofstream out(dir_ / "flags.yaml", std::ios::trunc);
    out << FlagsToYaml(*full, FlagsMetadata{"editor", "2024-01-01T00:00:00.000Z"});
  }
  HttpResult r = Post("/reload", R"({"actor": "carol"})");
  ASSERT_EQ(r.status, 200) << r.body;
  json j = Body(r);
  EXPECT_EQ(j["reloaded"], true);
  EXPECT_EQ(j["flags"], FlagsToJson(*full));
  EXPECT_EQ(j["error"], "");
  EXPECT_EQ(flags_->Current()->stage, "full");

  r = Post("/reload", "");  // nothing new
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["reloaded"], false);

  {
    std::ofstream out(dir_ / "flags.yaml", std::ios::trunc);
    out << "cache: {traffic_percent: 999}\n";
  }
  r = Post("/reload", "");
  ASSERT_EQ(r.status, 200) << r.body;
  j = Body(r);
  EXPECT_EQ(j["reloaded"], false);
  EXPECT_THAT(j["error"].get<std::string>(), HasSubstr("cache.traffic_percent"));
  EXPECT_EQ(flags_->Current()->stage, "full");  // last good flags stay

  std::vector<json> reloads = AuditEvents("config_reload");
  ASSERT_EQ(reloads.size(), 3u);
  EXPECT_EQ(reloads[0]["actor"], "carol");
  EXPECT_EQ(reloads[0]["reloaded"], true);
  EXPECT_EQ(reloads[0]["source"], "admin-http");
  EXPECT_EQ(reloads[1]["reloaded"], false);
  EXPECT_TRUE(reloads[1]["error"].is_null());
  EXPECT_THAT(reloads[2]["error"].get<std::string>(), HasSubstr("cache.traffic_percent"));
  // The external edit itself is a flag_change by "file" (FlagStore).
  std::vector<json> changes = AuditEvents("flag_change");
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0]["actor"], "file");
}

TEST_F(AdminPlaneTest, MetricsAgreeWithHealth) {
  ASSERT_TRUE(flags_->SetStage("cache-100", "test").ok());
  cache_->Insert("m", "q", "d1", 1);
  cache_->Lookup("m", "q", "d1");
  cache_->Lookup("m", "q", "d2");
  stats_->OnRequest(Report(absl::StatusCode::kOk, 5, 2, 1));
  metrics_->OnRequest(Report(absl::StatusCode::kOk, 5, 2, 1));
  json h = Body(Get("/health"));
  absl::StatusOr<testing::PromText> m = testing::PromText::Parse(Get("/metrics").body);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->Value("rerank_cache_entries"), h["reranker"]["stats"]["cache_size"].get<double>());
  EXPECT_EQ(m->Value("rerank_cache_hits_total"), 1);
  EXPECT_EQ(m->Value("rerank_cache_misses_total"), 1);
  EXPECT_EQ(m->Sum("rerank_requests_total"), h["reranker"]["stats"]["total_reranks"].get<double>());
  EXPECT_EQ(m->Value("rerank_stage_info", {{"stage", h["reranker"]["stage"]}}), 1);
  EXPECT_EQ(m->Value("rerank_cache_traffic_percent"), 100);
}

TEST_F(AdminPlaneTest, GrpcAdminApi) {
  {  // Reads need no token.
    grpc::ClientContext ctx;
    admin::v1::FlagsView resp;
    ASSERT_TRUE(stub_->GetFlags(&ctx, admin::v1::GetFlagsRequest(), &resp).ok());
    EXPECT_EQ(resp.stage(), "feature-flags");
    EXPECT_EQ(json::parse(MessageToJson(resp.flags())), FlagsToJson(*flags_->Current()));
    EXPECT_EQ(resp.stages_size(), static_cast<int>(StageNames().size()));
  }
  admin::v1::SetStageRequest set;
  set.set_stage("cache-50");
  set.set_actor("dave");
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"", ""}, {"authorization", "Bearer nope"}, {"x-admin-token", "nope"}}) {
    grpc::ClientContext ctx;
    if (!key.empty()) ctx.AddMetadata(key, value);
    admin::v1::FlagsView resp;
    grpc::Status s = stub_->SetStage(&ctx, set, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << key;
  }
  EXPECT_EQ(flags_->Current()->stage, "feature-flags");
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer secret");
    admin::v1::FlagsView resp;
    grpc::Status s = stub_->SetStage(&ctx, set, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.stage(), "cache-50");
    EXPECT_EQ(resp.updated_by(), "dave");
    EXPECT_EQ(flags_->Current()->stage, "cache-50");
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-admin-token", "secret");
    admin::v1::SetStageRequest bad;
    bad.set_stage("cache-75");
    admin::v1::FlagsView resp;
    grpc::Status s = stub_->SetStage(&ctx, bad, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("stage"));
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-admin-token", "secret");
    admin::v1::SetFlagsRequest patch;
    patch.mutable_flags()->mutable_batch()->set_enabled(false);
    admin::v1::FlagsView resp;
    grpc::Status s = stub_->SetFlags(&ctx, patch, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_FALSE(resp.flags().batch().enabled());
    EXPECT_EQ(resp.flags().cache().max_entries(), flags_->Current()->cache_max_entries);
    EXPECT_EQ(resp.updated_by(), "admin-grpc");
    EXPECT_FALSE(flags_->Current()->batch_enabled);
  }
  for (const uint32_t percent : {101u, 150u}) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-admin-token", "secret");
    admin::v1::SetFlagsRequest patch;
    patch.mutable_flags()->mutable_cache()->set_traffic_percent(percent);
    admin::v1::FlagsView resp;
    grpc::Status s = stub_->SetFlags(&ctx, patch, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << percent;
    EXPECT_THAT(s.error_message(), HasSubstr("cache.traffic_percent")) << percent;
  }
  {
    grpc::ClientContext ctx;
    admin::v1::ReloadResponse resp;
    EXPECT_EQ(stub_->Reload(&ctx, admin::v1::ReloadRequest(), &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer secret");
    admin::v1::ReloadRequest req;
    req.set_actor("erin");
    admin::v1::ReloadResponse resp;
    ASSERT_TRUE(stub_->Reload(&ctx, req, &resp).ok());
    EXPECT_FALSE(resp.reloaded());
    EXPECT_EQ(json::parse(MessageToJson(resp.flags())), FlagsToJson(*flags_->Current()));
    std::vector<json> reloads = AuditEvents("config_reload");
    ASSERT_EQ(reloads.size(), 1u);
    EXPECT_EQ(reloads[0]["actor"], "erin");
    EXPECT_EQ(reloads[0]["source"], "admin-grpc");
  }
  {
    stats_->OnRequest(Report(absl::StatusCode::kOk, 12, 3, 3));
    stats_->OnRequest(Report(absl::StatusCode::kInternal, 1));
    grpc::ClientContext ctx;
    admin::v1::Health resp;
    ASSERT_TRUE(stub_->GetStats(&ctx, admin::v1::GetStatsRequest(), &resp).ok());
    json h = json::parse(MessageToJson(resp));
    EXPECT_EQ(h, Body(Get("/health")));  // same document as the HTTP API (fake clock: stable)
    EXPECT_TRUE(resp.ready());
    EXPECT_EQ(resp.status(), "degraded");
    EXPECT_EQ(resp.reranker().stage(), "cache-50");  // batch.enabled: not governed by cache-50
    const admin::v1::Stats& st = resp.reranker().stats();
    EXPECT_EQ(st.total_reranks(), 2);
    EXPECT_EQ(st.requests_in_window(), 2u);
    EXPECT_DOUBLE_EQ(st.error_rate_percent(), 50);
    EXPECT_DOUBLE_EQ(st.cache_hit_rate_percent(), 100);
    EXPECT_DOUBLE_EQ(st.p99_latency_ms(), 12);
    EXPECT_EQ(st.window_seconds(), 60u);
    EXPECT_EQ(h["reranker"]["stats"]["total_reranks"], 2);  // a JSON number, not a string
  }
}

TEST_F(AdminPlaneTest, ListenersDefaultToLoopback) {
  EXPECT_EQ(AdminHttpServer::Options().listen, "127.0.0.1:8000");
  EXPECT_EQ(AdminGrpcServer::Options().listen, "127.0.0.1:50052");
  EXPECT_EQ(Config().admin.http_listen, "127.0.0.1:8000");
  EXPECT_EQ(Config().admin.grpc_listen, "127.0.0.1:50052");
  absl::StatusOr<Config> parsed = ParseConfigYaml("");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->admin.http_listen, "127.0.0.1:8000");
  EXPECT_EQ(parsed->admin.grpc_listen, "127.0.0.1:50052");
  // What a loopback address actually binds (the default's host, port 0 here).
  EXPECT_TRUE(ListensOnLoopbackOnly(http_->port()));
  EXPECT_TRUE(ListensOnLoopbackOnly(grpc_->port()));
}

TEST_F(AdminPlaneTest, BadListenAddressNamesTheConfigKey) {
  AdminHttpServer::Options ho;
  for (const char* bad : {"127.0.0.1:99999", "127.0.0.1", "127.0.0.1:http"}) {
    ho.listen = bad;
    absl::StatusOr<std::unique_ptr<AdminHttpServer>> http = AdminHttpServer::Start(ho, core_.get());
    EXPECT_EQ(http.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(http.status().message(), HasSubstr("admin.http_listen")) << bad;
  }
  ho.listen = absl::StrCat("127.0.0.1:", http_->port());  // taken
  absl::StatusOr<std::unique_ptr<AdminHttpServer>> http = AdminHttpServer::Start(ho, core_.get());
  EXPECT_EQ(http.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(http.status().message(), HasSubstr("admin.http_listen"));
  ho.listen = "no-such-host.invalid:0";
  EXPECT_THAT(AdminHttpServer::Start(ho, core_.get()).status().message(),
              HasSubstr("admin.http_listen"));
  AdminGrpcServer::Options go;
  go.listen = absl::StrCat("127.0.0.1:", grpc_->port());  // taken
  absl::StatusOr<std::unique_ptr<AdminGrpcServer>> g = AdminGrpcServer::Start(go, core_.get());
  EXPECT_THAT(g.status().message(), HasSubstr("admin.grpc_listen"));
}

// One raw exchange on a socket, for what the test client does not do on its own.
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConnection() { ::close(fd_); }
  bool connected() const { return connected_; }
  void Send(const std::string& data) { ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL); }
  // Reads until `marker` has arrived (or EOF / timeout); returns everything read so far.
  std::string ReadUntil(const std::string& marker) {
    char buf[4096];
    while (received_.find(marker) == std::string::npos) {
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) break;
      received_.append(buf, static_cast<size_t>(n));
    }
    return received_;
  }
  std::string ReadAll() { return ReadUntil(std::string(1, '\0') + "never"); }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string received_;
};

TEST_F(AdminPlaneTest, HttpTransportEdgeCases) {
  {  // curl's "Expect: 100-continue": the body is sent only after the interim response.
    RawConnection c(port());
    ASSERT_TRUE(c.connected());
    const std::string body = R"({"stage": "cache-10"})";
    c.Send(absl::StrCat("POST /flags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n",
                        "Content-Length: ", body.size(),
                        "\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"));
    EXPECT_THAT(c.ReadUntil("\r\n\r\n"), ::testing::StartsWith("HTTP/1.1 100 Continue\r\n\r\n"));
    c.Send(body);
    EXPECT_THAT(c.ReadAll(), HasSubstr("HTTP/1.1 200 OK"));
    EXPECT_EQ(flags_->Current()->stage, "cache-10");
  }
  {  // Chunked request bodies are de-chunked (the body limit applies to the decoded body).
    RawConnection c(port());
    c.Send(
        "POST /flags HTTP/1.1\r\nAuthorization: Bearer secret\r\nConnection: close\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
        "b\r\n{\"stage\": \"\r\n9\r\ncache-50\"\r\n1\r\n}\r\n0\r\n\r\n");
    EXPECT_THAT(c.ReadAll(), ::testing::StartsWith("HTTP/1.1 200 "));
    EXPECT_EQ(flags_->Current()->stage, "cache-50");
  }
  {  // Garbage.
    RawConnection c(port());
    c.Send("HELLO\r\n\r\n");
    EXPECT_THAT(c.ReadAll(), ::testing::StartsWith("HTTP/1.1 400 "));
  }
  {  // Oversized headers.
    RawConnection c(port());
    c.Send("GET /live HTTP/1.1\r\nX-Big: " + std::string(32 * 1024, 'a') + "\r\n\r\n");
    EXPECT_THAT(c.ReadAll(), ::testing::StartsWith("HTTP/1.1 431 "));
  }
  // A query string does not change the route.
  EXPECT_EQ(Get("/live?verbose=1").status, 200);
}

TEST_F(AdminPlaneTest, StopDoesNotWaitForIdleClients) {
  StopAdmin();
  AdminCore::Deps d;
  d.flags = flags_.get();
  d.audit = audit_.get();
  d.stats = stats_.get();
  d.clock = &clock_;
  d.readiness = [] { return Readiness{true, ""}; };
  auto core = AdminCore::Create(AdminCore::Options(), d);
  ASSERT_TRUE(core.ok());
  AdminHttpServer::Options ho;
  ho.listen = "127.0.0.1:0";
  ho.threads = 2;
  ho.request_timeout_ms = 600'000;  // the partial request could stay open for 10 minutes
  auto http = AdminHttpServer::Start(ho, core->get());
  ASSERT_TRUE(http.ok()) << http.status();
  RawConnection idle((*http)->port());
  ASSERT_TRUE(idle.connected());
  idle.Send("GET /li");  // a partial request
  // Connections are accepted in order, so once a later request has been served, the server
  // holds `idle`, waiting for the rest of its request.
  absl::StatusOr<HttpResult> served = HttpGet((*http)->port(), "/live");
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(served->status, 200);
  const absl::Time start = absl::Now();
  (*http)->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(60));
  EXPECT_EQ(HttpGet((*http)->port(), "/live").status().code(), absl::StatusCode::kUnavailable);
}

TEST(ConstantTimeEqualsTest, ComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secre"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secretsecret"));  // cycling must not match
  EXPECT_FALSE(ConstantTimeEquals("secret", ""));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
}

TEST(AdminTokenFromHeadersTest, BearerThenXAdminToken) {
  EXPECT_EQ(AdminTokenFromHeaders("Bearer abc", std::nullopt), "abc");
  EXPECT_EQ(AdminTokenFromHeaders("bearer  abc ", std::nullopt), "abc");
  EXPECT_EQ(AdminTokenFromHeaders("Basic abc", "xyz"), "xyz");
  EXPECT_EQ(AdminTokenFromHeaders(std::nullopt, "xyz"), "xyz");
  EXPECT_EQ(AdminTokenFromHeaders("Bearer ", std::nullopt), std::nullopt);
  EXPECT_EQ(AdminTokenFromHeaders(std::nullopt, ""), std::nullopt);
}

}  // namespace
}  // namespace rerank
