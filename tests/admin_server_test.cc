// The admin plane wired into a full RerankServer (fake scorer, tiny test model for the tokenizer
// and model info), over real loopback HTTP and real gRPC channels: /health shape and agreement
// with /metrics, every stage transition taking effect on the data plane, auth, flags surviving a
// restart, readiness during warmup and drain.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "app/rerank_server.h"
#include "common/rollout.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rerank/admin/v1/admin.grpc.pb.h"
#include "rerank/v1/reranker.grpc.pb.h"
#include "tests/testing/fake_scorer.h"
#include "tests/testing/files.h"
#include "tests/testing/http_client.h"
#include "tests/testing/prometheus_text.h"
#include "tests/testing/rerank_server_peer.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;
using testing::FakeScorerControl;
using testing::HttpGet;
using testing::HttpPost;
using testing::HttpResult;
using testing::PromText;
using testing::ReadFile;

const std::vector<std::string> kDocs = {
    "berlin is the capital of germany",       "bananas are yellow and sweet",
    "paris is the capital of france",         "the weather in france is mild",
    "capital of france paris france capital",
};

class CountingObserver final : public RequestObserver {
 public:
  void OnRequest(const RequestReport&) override { count.fetch_add(1); }
  std::atomic<int> count{0};
};

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // $RERANK_BUILD_DIR (rerank_add_test), else the build tree this binary was configured in.
    const char* build = std::getenv("RERANK_BUILD_DIR");
    model_dir_ =
        fs::path(build != nullptr ? build : RERANK_TEST_BUILD_DIR) / "testdata" / "tiny_model";
    ASSERT_TRUE(fs::exists(model_dir_ / "model.yaml")) << "build target test_models first";
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("admin_server_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    Stop();
    fs::remove_all(dir_);
  }

  Config MakeConfig() const {
    Config c;
    c.server.listen = "127.0.0.1:0";
    c.server.http_listen = "";
    c.model.dir = model_dir_.string();
    c.model.precision = "fp32";
    c.model.warmup = true;
    c.execution.workers = 1;
    c.execution.intra_op_threads = 1;
    c.audit.path = (dir_ / "audit.jsonl").string();
    c.flags.path = (dir_ / "flags.yaml").string();
    c.flags.poll_interval_ms = 0;
    c.flags.initial.rate_limit_per_minute = 100000;
    c.admin.http_listen = "127.0.0.1:0";
    c.admin.grpc_listen = "127.0.0.1:0";
    c.admin.token = "secret";
    return c;
  }

  void Start(const Config& config, RerankServer::Options overrides = {}) {
    if (!overrides.scorer_factory) overrides.scorer_factory = control_.Factory();
    if (overrides.observer == nullptr) overrides.observer = &observer_;
    overrides.config = config;
    auto server = RerankServer::BuildAndStart(std::move(overrides));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    Connect();
  }
  void Connect() {
    data_ = v1::Reranker::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->data_port()), grpc::InsecureChannelCredentials()));
    if (server_->admin_grpc_port() != 0) {
      admin_ = admin::v1::Admin::NewStub(
          grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->admin_grpc_port()),
                              grpc::InsecureChannelCredentials()));
    }
  }
  void Stop() {
    data_.reset();
    admin_.reset();
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
  }

  HttpResult Get(const std::string& path) {
    absl::StatusOr<HttpResult> r = HttpGet(server_->admin_http_port(), path);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HttpResult{};
  }
  HttpResult Post(const std::string& path, const std::string& body,
                  std::vector<std::pair<std::string, std::string>> headers = {
                      {"Authorization", "Bearer secret"}}) {
    absl::StatusOr<HttpResult> r = HttpPost(server_->admin_http_port(), path, body, headers);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HttpResult{};
  }
  static json Body(const HttpResult& r) {
    json j = json::parse(r.body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.body;
    return j;
  }
  PromText Metrics() {
    absl::StatusOr<PromText> p = PromText::Parse(Get("/metrics").body);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *std::move(p) : PromText();
  }
  void SetStage(const std::string& stage) {
    HttpResult r = Post("/flags", json{{"stage", stage}, {"actor", "test"}}.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_EQ(Body(r)["stage"], stage);
  }

  static v1::RerankRequest Request(const std::string& query, const std::vector<std::string>& docs,
                                   uint32_t top_n = 0, const std::string& client = "") {
    v1::RerankRequest req;
    req.set_query(query);
    for (size_t i = 0; i < docs.size(); ++i) {
      v1::Document* d = req.add_documents();
      d->set_id(absl::StrCat("d", i));
      d->set_text(docs[i]);
    }
    req.set_top_n(top_n);
    req.set_client_id(client);
    return req;
  }
  grpc::Status Rerank(const v1::RerankRequest& req, v1::RerankResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return data_->Rerank(&ctx, req, resp);
  }
  v1::RerankResponse RerankOk(const v1::RerankRequest& req) {
    v1::RerankResponse resp;
    grpc::Status s = Rerank(req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }
  std::vector<std::pair<std::string, float>> Ranking(const v1::RerankResponse& r) {
    std::vector<std::pair<std::string, float>> out;
    for (const v1::RerankResult& x : r.results()) out.emplace_back(x.id(), x.score());
    return out;
  }

  fs::path model_dir_;
  fs::path dir_;
  FakeScorerControl control_;
  CountingObserver observer_;
  std::unique_ptr<RerankServer> server_;
  RerankServerTestPeer peer() { return RerankServerTestPeer(server_.get()); }
  std::unique_ptr<v1::Reranker::Stub> data_;
  std::unique_ptr<admin::v1::Admin::Stub> admin_;
};

TEST_F(AdminServerTest, HealthHasTheContractShape) {
  Start(MakeConfig());
  EXPECT_NE(server_->admin_http_port(), 0);
  EXPECT_NE(server_->admin_grpc_port(), 0);
  EXPECT_NE(server_->admin_http_port(), server_->data_port());
  HttpResult r = Get("/health");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/json");
  json h = Body(r);
  EXPECT_EQ(h["status"], "healthy");
  EXPECT_EQ(h["ready"], true);
  EXPECT_TRUE(h["uptime_seconds"].is_number_integer());
  ASSERT_TRUE(h["model"].is_object());
  EXPECT_EQ(h["model"]["name"], peer().model().name);
  EXPECT_EQ(h["model"]["version"], peer().model().version);
  EXPECT_EQ(h["model"]["precision"], "fp32");
  EXPECT_EQ(h["model"]["demo"], true);  // the tiny test model has random weights
  EXPECT_EQ(h["reranker"]["enabled"], true);
  EXPECT_EQ(h["reranker"]["stage"], "feature-flags");
  EXPECT_EQ(h["flags"], FlagsToJson(*peer().flags()->Current()));
  const json& s = h["reranker"]["stats"];
  const std::vector<std::string> integers = {"total_reranks",  "cache_size",
                                             "cache_max_size", "target_latency_ms",
                                             "window_seconds", "requests_in_window"};
  const std::vector<std::string> numbers = {"avg_latency_ms",
                                            "p95_latency_ms",
                                            "p99_latency_ms",
                                            "cache_hit_rate_percent",
                                            "target_latency_met_rate_percent",
                                            "error_rate_percent"};
  EXPECT_EQ(s.size(), integers.size() + numbers.size() + 1);  // + cache_enabled: nothing else
  for (const std::string& k : integers) {
    ASSERT_TRUE(s.contains(k)) << k;
    EXPECT_TRUE(s[k].is_number_integer()) << k << " = " << s[k];
  }
  for (const std::string& k : numbers) {
    ASSERT_TRUE(s.contains(k)) << k;
    EXPECT_TRUE(s[k].is_number()) << k;
  }
  EXPECT_TRUE(s["cache_enabled"].is_boolean());
  EXPECT_EQ(s["window_seconds"], 300);
  EXPECT_EQ(s["target_latency_ms"], 50);
  EXPECT_EQ(s["total_reranks"], 0);  // warmup is not a request

  EXPECT_EQ(Get("/live").status, 200);
  EXPECT_EQ(Body(Get("/ready")), json({{"ready", true}, {"reason", ""}}));
  EXPECT_TRUE(peer().readiness().ready);
}

TEST_F(AdminServerTest, HealthAgreesWithMetrics) {
  Start(MakeConfig());
  SetStage("cache-100");
  const v1::RerankRequest a = Request("capital of france", kDocs);
  const v1::RerankRequest b = Request("yellow bananas", {kDocs[0], kDocs[1], kDocs[3]});
  EXPECT_EQ(RerankOk(a).cache_hits(), 0u);
  EXPECT_EQ(RerankOk(a).cache_hits(), 5u);
  EXPECT_EQ(RerankOk(b).cache_hits(), 0u);
  v1::RerankResponse ignored;
  EXPECT_EQ(Rerank(Request("   ", kDocs), &ignored).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  {
    v1::RerankBatchRequest batch;
    *batch.add_requests() = a;
    *batch.add_requests() = b;
    v1::RerankBatchResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(data_->RerankBatch(&ctx, batch, &resp).ok());
    EXPECT_EQ(resp.responses(0).cache_hits() + resp.responses(1).cache_hits(), 8u);
  }
  peer().audit()->Flush();

  json h = Body(Get("/health"));
  PromText m = Metrics();
  const json& s = h["reranker"]["stats"];
  // Request counts.
  EXPECT_EQ(s["total_reranks"], 5);
  EXPECT_EQ(s["requests_in_window"], 5);
  EXPECT_EQ(m.Sum("rerank_requests_total"), s["total_reranks"].get<double>());
  EXPECT_EQ(observer_.count.load(), 5);  // Overrides.observer still sees every request
  EXPECT_EQ(
      m.Value("rerank_requests_total", {{"rpc", "Rerank"}, {"outcome", "ok"}, {"code", "OK"}}), 3);
  EXPECT_EQ(
      m.Value("rerank_requests_total", {{"rpc", "RerankBatch"}, {"outcome", "ok"}, {"code", "OK"}}),
      1);
  EXPECT_EQ(m.Value("rerank_requests_total",
                    {{"rpc", "Rerank"}, {"outcome", "client_error"}, {"code", "INVALID_ARGUMENT"}}),
            1);
  EXPECT_EQ(m.Value("rerank_request_duration_seconds_count", {{"rpc", "Rerank"}}), 4);
  // The invalid request is the client's mistake, not a failure of the service: 0% errors.
  EXPECT_DOUBLE_EQ(s["error_rate_percent"].get<double>(), 0);
  EXPECT_EQ(h["status"], "healthy");
  // Cache: 13 hits (5 + 8), 8 misses (5 + 3), 8 entries.
  const ScoreCache::Stats cs = peer().cache()->GetStats();
  EXPECT_EQ(cs.hits, 13u);
  EXPECT_EQ(cs.misses, 8u);
  EXPECT_EQ(m.Value("rerank_cache_hits_total"), 13);
  EXPECT_EQ(m.Value("rerank_cache_misses_total"), 8);
  EXPECT_EQ(m.Value("rerank_cache_entries"), s["cache_size"].get<double>());
  EXPECT_EQ(s["cache_size"], 8);
  EXPECT_EQ(m.Value("rerank_cache_max_entries"), s["cache_max_size"].get<double>());
  EXPECT_EQ(s["cache_enabled"], true);
  const double hits = *m.Value("rerank_cache_hits_total");
  const double misses = *m.Value("rerank_cache_misses_total");
  EXPECT_NEAR(s["cache_hit_rate_percent"].get<double>(), 100 * hits / (hits + misses), 1e-9);
  // Model rows: 5 + 3 pairs went to the model (the rest were cached).
  EXPECT_EQ(m.Value("rerank_pairs_scored_total"), 8);
  // Flags, readiness, model, audit.
  EXPECT_EQ(m.Value("rerank_stage_info", {{"stage", "cache-100"}}), 1);
  EXPECT_EQ(m.Sum("rerank_stage_info"), 1);
  EXPECT_EQ(m.Value("rerank_reranker_enabled"), 1);
  EXPECT_EQ(m.Value("rerank_cache_traffic_percent"), 100);
  EXPECT_EQ(m.Value("rerank_ready"), 1);
  EXPECT_EQ(m.Value("rerank_model_info", {{"name", peer().model().name},
                                          {"version", peer().model().version},
                                          {"precision", "fp32"}}),
            1);
  EXPECT_EQ(m.Value("rerank_audit_written_total"), peer().audit()->written());
  EXPECT_GE(*m.Value("rerank_audit_written_total"), 7);  // startup, flag_change, 6 rerank events
  EXPECT_EQ(m.Value("rerank_queue_pairs"), 0);
  EXPECT_GE(*m.Value("rerank_batch_pairs_count"), 1);  // warmup + requests went through batches
}

TEST_F(AdminServerTest, EveryStageTakesEffectOnTheNextRequest) {
  Start(MakeConfig());
  const int n = static_cast<int>(kDocs.size());
  // Queries inside / outside a percentage rollout (cache.rollout_key = query: sticky hash
  // buckets of the query text).
  auto query_in = [](const std::string& base, uint32_t percent, bool inside) {
    for (int i = 0;; ++i) {
      std::string q = absl::StrCat(base, " ", i);
      if (InRollout(q, percent) == inside) return q;
    }
  };
  for (const std::string& stage : StageNames()) {
    SCOPED_TRACE(stage);
    SetStage(stage);
    json h = Body(Get("/health"));
    EXPECT_EQ(h["reranker"]["stage"], stage);
    EXPECT_EQ(h["reranker"]["enabled"], stage != "disabled");
    const std::string query = absl::StrCat("capital of france ", stage);  // fresh cache keys

    if (stage == "feature-flags") {
      v1::RerankResponse first = RerankOk(Request(query, kDocs));
      v1::RerankResponse second = RerankOk(Request(query, kDocs));
      EXPECT_TRUE(first.reranked());
      EXPECT_EQ(first.cache_hits(), 0u);
      EXPECT_EQ(second.cache_hits(), 0u);
      EXPECT_EQ(first.results(0).id(), "d4");  // most overlap with the query
      EXPECT_EQ(Ranking(first), Ranking(second));
    } else if (stage == "cache-10" || stage == "cache-50") {
      const uint32_t percent = stage == "cache-10" ? 10 : 50;
      const std::string in = query_in(query, percent, true);
      const std::string out = query_in(query, percent, false);
      RerankOk(Request(in, kDocs, 0, "client-a"));
      EXPECT_EQ(RerankOk(Request(in, kDocs, 0, "client-b")).cache_hits(), static_cast<uint32_t>(n));
      RerankOk(Request(out, kDocs, 0, "client-a"));
      EXPECT_EQ(RerankOk(Request(out, kDocs, 0, "client-a")).cache_hits(), 0u);
    } else if (stage == "cache-100") {
      v1::RerankResponse uncached = RerankOk(Request(query, kDocs, 5, "anyone"));
      v1::RerankResponse cached = RerankOk(Request(query, kDocs, 5, "someone-else"));
      EXPECT_EQ(uncached.cache_hits(), 0u);
      EXPECT_EQ(cached.cache_hits(), static_cast<uint32_t>(n));
      EXPECT_TRUE(cached.reranked());
      EXPECT_EQ(Ranking(cached), Ranking(uncached));  // identical ids, order and scores
    } else if (stage == "full") {
      std::vector<std::string> many;
      for (int i = 0; i < 25; ++i) many.push_back(absl::StrCat(kDocs[i % n], " item", i));
      v1::RerankResponse first = RerankOk(Request(query, many));
      ASSERT_EQ(first.results_size(), 5);  // overfetch.top_n
      for (const v1::RerankResult& r : first.results()) EXPECT_LT(r.index(), 20u);  // candidates
      EXPECT_EQ(RerankOk(Request(query, many)).cache_hits(), 20u);
    } else if (stage == "rollback") {
      v1::RerankBatchRequest batch;
      *batch.add_requests() = Request(query, kDocs);
      v1::RerankBatchResponse resp;
      grpc::ClientContext ctx;
      grpc::Status s = data_->RerankBatch(&ctx, batch, &resp);
      // batch.enabled off only turns cross-request batching off: callers are still served.
      ASSERT_TRUE(s.ok()) << s.error_message();
      ASSERT_EQ(resp.responses_size(), 1);
      EXPECT_TRUE(resp.responses(0).reranked());
      RerankOk(Request(query, kDocs));
      v1::RerankResponse again = RerankOk(Request(query, kDocs));
      EXPECT_TRUE(again.reranked());
      EXPECT_EQ(again.cache_hits(), 0u);  // cache off
      EXPECT_EQ(h["reranker"]["stats"]["cache_enabled"], false);
    } else if (stage == "disabled") {
      v1::RerankResponse r = RerankOk(Request(query, kDocs, 3));
      EXPECT_FALSE(r.reranked());
      ASSERT_EQ(r.results_size(), 3);
      for (int i = 0; i < 3; ++i) EXPECT_EQ(r.results(i).index(), static_cast<uint32_t>(i));
      EXPECT_EQ(r.cache_hits(), 0u);
      PromText m = Metrics();
      EXPECT_EQ(m.Value("rerank_requests_total",
                        {{"rpc", "Rerank"}, {"outcome", "passthrough"}, {"code", "OK"}}),
                1);
      EXPECT_EQ(m.Value("rerank_reranker_enabled"), 0);
    } else {
      ADD_FAILURE() << "stage without a check: " << stage;
    }
  }
  // And back through the admin gRPC API: the reranker is on again for the next request.
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer secret");
  admin::v1::SetStageRequest req;
  req.set_stage("feature-flags");
  admin::v1::FlagsView resp;
  ASSERT_TRUE(admin_->SetStage(&ctx, req, &resp).ok());
  EXPECT_TRUE(RerankOk(Request("capital of france", kDocs)).reranked());
}

TEST_F(AdminServerTest, AuthAndTheDataPortServesNoAdminCalls) {
  Start(MakeConfig());
  const std::string body = R"({"stage": "cache-10"})";
  EXPECT_EQ(Post("/flags", body, {}).status, 401);
  EXPECT_EQ(Post("/flags", body, {{"Authorization", "Bearer wrong"}}).status, 401);
  EXPECT_EQ(Post("/reload", "{}", {}).status, 401);
  EXPECT_EQ(Get("/flags").status, 200);
  EXPECT_EQ(Get("/health").status, 200);
  EXPECT_EQ(Get("/metrics").status, 200);
  EXPECT_EQ(peer().flags()->Current()->stage, "feature-flags");

  admin::v1::SetStageRequest req;
  req.set_stage("cache-10");
  admin::v1::FlagsView resp;
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(admin_->SetStage(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer wrong");
    EXPECT_EQ(admin_->SetStage(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(peer().flags()->Current()->stage, "feature-flags");
  {
    // The admin service on the data port: not there, even with the right token.
    auto on_data_port = admin::v1::Admin::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->data_port()), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer secret");
    EXPECT_EQ(on_data_port->SetStage(&ctx, req, &resp).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
    grpc::ClientContext ctx2;
    admin::v1::Health stats;
    EXPECT_EQ(on_data_port->GetStats(&ctx2, admin::v1::GetStatsRequest(), &stats).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  EXPECT_EQ(peer().flags()->Current()->stage, "feature-flags");
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-admin-token", "secret");
    ASSERT_TRUE(admin_->SetStage(&ctx, req, &resp).ok());
    EXPECT_EQ(peer().flags()->Current()->stage, "cache-10");
  }
  Stop();

  // No token configured: one is generated into a 0600 file next to the flags file. Callers
  // without it are still refused; whoever can read the file (local operators) can stage.
  Config c = MakeConfig();
  c.admin.token = "";
  Start(c);
  const fs::path token_path = dir_ / "admin.token";
  ASSERT_TRUE(fs::exists(token_path));
  EXPECT_EQ(fs::status(token_path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  std::string token = ReadFile(token_path.string());
  ASSERT_FALSE(token.empty());
  ASSERT_EQ(token.back(), '\n');
  token.pop_back();
  EXPECT_EQ(token.size(), 64u);
  EXPECT_EQ(token, peer().admin_token());
  HttpResult r = Post("/flags", body, {});
  EXPECT_EQ(r.status, 401) << r.body;
  r = Post("/flags", body, {{"Authorization", "Bearer secret"}});
  EXPECT_EQ(r.status, 401) << r.body;
  r = Post("/flags", R"({"stage": "cache-50", "actor": "local"})",
           {{"Authorization", "Bearer " + token}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(peer().flags()->Current()->stage, "cache-50");
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer secret");
  EXPECT_EQ(admin_->SetStage(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  Stop();

  // A restart generates a fresh token: the old one stops working.
  Start(c);
  EXPECT_NE(ReadFile(token_path.string()), token + "\n");
  r = Post("/flags", body, {{"Authorization", "Bearer " + token}});
  EXPECT_EQ(r.status, 401) << r.body;
}

TEST_F(AdminServerTest, FlagsSurviveARestart) {
  Start(MakeConfig());
  HttpResult r = Post("/flags", R"({"stage": "cache-50", "actor": "alice"})");
  ASSERT_EQ(r.status, 200) << r.body;
  r = Post("/flags", R"({"flags": {"cache": {"max_entries": 77}}, "actor": "alice"})");
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(Post("/reload", R"({"actor": "bob"})").status, 200);
  const json before = Body(Get("/flags"));
  EXPECT_EQ(peer().cache()->GetStats().max_entries, 77u);  // listener applied the flag
  Stop();

  Start(MakeConfig());  // same flags path
  const json after = Body(Get("/flags"));
  EXPECT_EQ(after, before);
  EXPECT_EQ(after["stage"], "cache-50");
  EXPECT_EQ(after["updated_by"], "alice");
  EXPECT_EQ(peer().flags()->Current()->stage, "cache-50");
  EXPECT_EQ(Body(Get("/health"))["reranker"]["stage"], "cache-50");
  EXPECT_EQ(peer().cache()->GetStats().max_entries, 77u);
  Stop();

  // The audit trail has both lives: flag changes, the reload, startups and shutdowns.
  std::multiset<std::string> types;
  std::ifstream in(dir_ / "audit.jsonl");
  for (std::string line; std::getline(in, line);) {
    json e = json::parse(line);
    types.insert(e["event_type"].get<std::string>());
    if (e["event_type"] == "config_reload") {
      EXPECT_EQ(e["actor"], "bob");
      EXPECT_EQ(e["source"], "admin-http");
    }
  }
  EXPECT_EQ(types.count("startup"), 2u);
  EXPECT_EQ(types.count("shutdown"), 2u);
  EXPECT_EQ(types.count("flag_change"), 2u);
  EXPECT_EQ(types.count("config_reload"), 1u);
}

TEST_F(AdminServerTest, NotReadyWhileWarmingUpAndOnceDrainBegins) {
  control_.Gate();  // warmup blocks in the scorer
  absl::Notification listening;
  std::atomic<int> http_port{0};
  RerankServer::Options o;
  o.on_admin_listening = [&](int http, int) {
    http_port = http;
    listening.Notify();
  };
  absl::StatusOr<std::unique_ptr<RerankServer>> created;
  std::thread creator([&] {
    o.scorer_factory = control_.Factory();
    o.config = MakeConfig();
    created = RerankServer::BuildAndStart(o);
  });
  listening.WaitForNotification();
  control_.WaitForCalls(1);  // warmup is running
  {
    absl::StatusOr<HttpResult> r = HttpGet(http_port, "/ready");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 503);
    EXPECT_THAT(Body(*r)["reason"].get<std::string>(), HasSubstr("warming up"));
    r = HttpGet(http_port, "/live");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, 200);
    r = HttpGet(http_port, "/health");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, 503);
    EXPECT_EQ(Body(*r)["status"], "unhealthy");
    EXPECT_EQ(Body(*r)["ready"], false);
  }
  control_.Release();
  creator.join();
  ASSERT_TRUE(created.ok()) << created.status();
  server_ = *std::move(created);
  Connect();
  EXPECT_EQ(Get("/ready").status, 200);
  EXPECT_EQ(Get("/health").status, 200);

  // Drain: a request is in flight (gated in the scorer) when Shutdown() begins.
  const int calls_before = static_cast<int>(control_.calls().size());
  control_.Gate();
  grpc::Status in_flight_status;
  v1::RerankResponse in_flight_resp;
  std::thread client(
      [&] { in_flight_status = Rerank(Request("capital of france", kDocs), &in_flight_resp); });
  control_.WaitForCalls(calls_before + 1);
  std::thread stopper([&] { server_->Shutdown(); });
  // Shutdown() flips readiness first, then waits for the gated request: poll until it shows.
  HttpResult ready;
  for (int i = 0; i < 1000; ++i) {
    ready = Get("/ready");
    if (ready.status != 200) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(ready.status, 503);
  EXPECT_THAT(Body(ready)["reason"].get<std::string>(), HasSubstr("draining"));
  EXPECT_FALSE(peer().readiness().ready);
  EXPECT_EQ(Get("/live").status, 200);  // the admin plane stays up during the drain
  EXPECT_EQ(Get("/health").status, 503);
  EXPECT_EQ(Metrics().Value("rerank_ready"), 0);
  const int port = server_->admin_http_port();
  control_.Release();
  client.join();
  stopper.join();
  EXPECT_TRUE(in_flight_status.ok()) << in_flight_status.error_message();  // drained, not dropped
  EXPECT_EQ(in_flight_resp.results_size(), 5);
  // Admin servers stop last: now they are gone.
  EXPECT_EQ(HttpGet(port, "/live").status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(AdminServerTest, EmptyListenAddressDisablesAnAdminServer) {
  Config c = MakeConfig();
  c.admin.http_listen = "";
  Start(c);
  EXPECT_EQ(server_->admin_http_port(), 0);
  ASSERT_NE(server_->admin_grpc_port(), 0);
  grpc::ClientContext ctx;
  admin::v1::Health stats;
  ASSERT_TRUE(admin_->GetStats(&ctx, admin::v1::GetStatsRequest(), &stats).ok());
  EXPECT_TRUE(stats.ready());
  EXPECT_EQ(stats.status(), "healthy");
  EXPECT_TRUE(RerankOk(Request("capital of france", kDocs)).reranked());
  Stop();

  c = MakeConfig();
  c.admin.grpc_listen = "";
  Start(c);
  EXPECT_EQ(server_->admin_grpc_port(), 0);
  EXPECT_EQ(Get("/live").status, 200);
}

}  // namespace
}  // namespace rerank
