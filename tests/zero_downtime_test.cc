// Zero downtime, in process over real sockets (gRPC and admin HTTP on port 0):
//  - the SIGTERM path's drain window: not ready and NOT_SERVING at once, yet the data port keeps
//    serving; an in-flight request finishes; the audit log records the shutdown;
//  - hot model reload under continuous traffic with two real TorchScript models (tiny_model and
//    tiny_model_b): no request fails, each response comes wholly from one model, responses switch
//    to the new model's scores (the cache namespace follows the version), /health and
//    rerank_model_info show the new version;
//  - a broken model directory is rejected with a clear error and the old model keeps serving;
//  - the model.dir poller reloads when the directory's files are replaced.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "app/rerank_server.h"
#include "common/config.h"
#include "common/score_cache.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "rerank/admin/v1/admin.grpc.pb.h"
#include "rerank/v1/reranker.grpc.pb.h"
#include "server/rerank_engine.h"
#include "tests/testing/fake_audit_sink.h"
#include "tests/testing/fake_scorer.h"
#include "tests/testing/fake_scoring_queue.h"
#include "tests/testing/http_client.h"
#include "tests/testing/prometheus_text.h"
#include "tests/testing/rerank_server_peer.h"
#include "tests/testing/test_dirs.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::FakeScorerControl;
using ::testing::HasSubstr;
using testing::HttpGet;
using testing::HttpPost;
using testing::HttpResult;
using ::testing::Not;

constexpr char kToken[] = "zero-downtime-test-token";

using testing::BuildDir;
std::string ModelA() { return BuildDir() + "/testdata/tiny_model"; }
std::string ModelB() { return BuildDir() + "/testdata/tiny_model_b"; }

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void CopyModel(const std::string& from, const fs::path& to) {
  fs::create_directories(to);
  for (const char* f : {"model.pt", "vocab.txt", "model.yaml"}) {
    fs::copy_file(fs::path(from) / f, to / f, fs::copy_options::overwrite_existing);
  }
}

std::string VersionOf(const std::string& dir) {
  const std::string yaml = ReadFile(fs::path(dir) / "model.yaml");
  const size_t at = yaml.find("version:");
  if (at == std::string::npos) return "";
  std::string v = yaml.substr(at + 8, yaml.find('\n', at) - at - 8);
  v.erase(0, v.find_first_not_of(" '\""));
  v.erase(v.find_last_not_of(" '\"") + 1);
  return v;
}

v1::RerankRequest Request() {
  v1::RerankRequest req;
  req.set_query("how many people live in berlin");
  for (const char* d :
       {"Berlin has about 3.7 million inhabitants.", "Bananas are yellow.",
        "Paris is the capital of France.", "The population of Berlin grew in the 1990s.",
        "A quiet village with few people.", "Germany's capital Berlin has many inhabitants."}) {
    req.add_documents()->set_text(d);
  }
  req.set_top_n(6);
  return req;
}

// Scores by document index: one response's fingerprint of the model that produced it.
std::map<uint32_t, float> Scores(const v1::RerankResponse& r) {
  std::map<uint32_t, float> s;
  for (const auto& res : r.results()) s[res.index()] = res.score();
  return s;
}

class ZeroDowntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("zero_downtime_test_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    servers_.clear();
    fs::remove_all(dir_);
  }

  Config MakeConfig(const std::string& model_dir) {
    Config c;
    c.model.dir = model_dir;
    c.model.precision = "fp32";  // exact, comparable scores
    c.execution.workers = 1;
    c.execution.intra_op_threads = 1;
    c.server.listen = "127.0.0.1:0";
    c.server.http_listen = "";
    c.admin.http_listen = "127.0.0.1:0";
    c.admin.grpc_listen = "127.0.0.1:0";
    c.admin.token = kToken;
    const fs::path d = dir_ / absl::StrCat("server", servers_.size());
    c.audit.path = (d / "audit.jsonl").string();
    c.flags.path = (d / "flags.yaml").string();
    c.flags.initial.rate_limit_enabled = false;
    // The cache on for every client: a reload must not serve the old model's cached scores.
    c.flags.initial.cache_enabled = true;
    c.flags.initial.cache_traffic_percent = 100;
    return c;
  }
  RerankServer* Start(const Config& c, ScorerFactory factory = nullptr) {
    RerankServer::Options o;
    o.config = c;
    o.scorer_factory = std::move(factory);
    auto s = RerankServer::BuildAndStart(o);
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return nullptr;
    servers_.push_back(*std::move(s));
    return servers_.back().get();
  }
  static std::unique_ptr<v1::Reranker::Stub> Stub(RerankServer* s) {
    return v1::Reranker::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", s->data_port()),
                                                     grpc::InsecureChannelCredentials()));
  }
  static grpc::Status Call(v1::Reranker::Stub& stub, v1::RerankResponse* resp,
                           const v1::RerankRequest& req = Request()) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return stub.Rerank(&ctx, req, resp);
  }
  static HttpResult Post(RerankServer* s, const std::string& path, const json& body,
                         bool with_token = true) {
    std::vector<std::pair<std::string, std::string>> h;
    if (with_token) h.emplace_back("Authorization", absl::StrCat("Bearer ", kToken));
    absl::StatusOr<HttpResult> r = HttpPost(s->admin_http_port(), path, body.dump(), h);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HttpResult{};
  }
  static HttpResult Get(int port, const std::string& path) {
    absl::StatusOr<HttpResult> r = HttpGet(port, path);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HttpResult{};
  }
  static json Body(const HttpResult& r) { return json::parse(r.body, nullptr, false); }
  // grpc.health.v1.Health/Check for `service`: 1 SERVING, 2 NOT_SERVING; -1 on an RPC error.
  static int HealthStatus(int port, const std::string& service) {
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    grpc::GenericStub generic(channel);
    std::string req;
    if (!service.empty()) {
      req.push_back('\x0a');  // field 1, length-delimited
      req.push_back(static_cast<char>(service.size()));
      req += service;
    }
    grpc::Slice slice(req);
    grpc::ByteBuffer request(&slice, 1), response;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    absl::Notification done;
    grpc::Status status;
    generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                      &response, [&](grpc::Status s) {
                        status = s;
                        done.Notify();
                      });
    done.WaitForNotification();
    if (!status.ok()) return -1;
    std::vector<grpc::Slice> slices;
    if (!response.Dump(&slices).ok()) return -1;
    std::string bytes;
    for (auto& s : slices) bytes += std::string(reinterpret_cast<const char*>(s.begin()), s.size());
    if (bytes.size() == 2 && bytes[0] == '\x08') return bytes[1];
    return bytes.empty() ? 0 : -1;  // UNKNOWN (0) is the empty message
  }
  static std::vector<json> AuditEvents(const std::string& path, const std::string& type) {
    std::vector<json> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      json e = json::parse(line, nullptr, false);
      if (!e.is_discarded() && e["event_type"] == type) out.push_back(e);
    }
    return out;
  }

  fs::path dir_;
  std::vector<std::unique_ptr<RerankServer>> servers_;
};

// Continuous traffic from a few client threads; every response recorded.
class Traffic {
 public:
  Traffic(RerankServer* server, int threads) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, server] {
        auto stub = ZeroDowntimeTestStub(server);
        while (!stop_.load()) {
          v1::RerankResponse resp;
          grpc::ClientContext ctx;
          ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
          grpc::Status s = stub->Rerank(&ctx, Request(), &resp);
          absl::MutexLock lock(&mu_);
          if (s.ok()) {
            responses_.push_back(std::move(resp));
          } else {
            errors_.push_back(absl::StrCat(s.error_code(), ": ", s.error_message()));
          }
        }
      });
    }
  }
  ~Traffic() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  // Waits until at least `n` more responses have arrived (or 60 s).
  void WaitForMore(size_t n) {
    size_t start;
    {
      absl::MutexLock lock(&mu_);
      start = responses_.size() + errors_.size();
    }
    std::pair<Traffic*, size_t> arg(this, start + n);
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](std::pair<Traffic*, size_t>* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                               return a->first->responses_.size() + a->first->errors_.size() >=
                                      a->second;
                             },
                             &arg),
                         absl::Seconds(60));
  }
  std::vector<v1::RerankResponse> responses() {
    absl::MutexLock lock(&mu_);
    return responses_;
  }
  std::vector<std::string> errors() {
    absl::MutexLock lock(&mu_);
    return errors_;
  }

 private:
  static std::unique_ptr<v1::Reranker::Stub> ZeroDowntimeTestStub(RerankServer* s) {
    return v1::Reranker::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", s->data_port()),
                                                     grpc::InsecureChannelCredentials()));
  }
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::vector<v1::RerankResponse> responses_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> errors_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

TEST_F(ZeroDowntimeTest, DrainWindowKeepsServingWhileNotReadyThenFinishesInFlightWork) {
  FakeScorerControl control;
  Config c = MakeConfig(ModelA());
  c.server.drain_grace_ms = 3000;
  c.server.drain_timeout_ms = 20000;
  c.model.warmup = false;
  c.flags.initial.cache_enabled = false;  // every call reaches the (gated) scorer
  RerankServer* server = Start(c, control.Factory());
  ASSERT_NE(server, nullptr);
  const int data_port = server->data_port();
  const int http_port = server->admin_http_port();
  auto stub = Stub(server);
  v1::RerankResponse resp;
  ASSERT_TRUE(Call(*stub, &resp).ok());
  EXPECT_EQ(HealthStatus(data_port, ""), 1);
  EXPECT_EQ(HealthStatus(data_port, "rerank.v1.Reranker"), 1);

  const absl::Time shutdown_start = absl::Now();
  std::thread stopper([server] { server->Shutdown(); });
  HttpResult ready;
  for (int i = 0; i < 400; ++i) {
    ready = Get(http_port, "/ready");
    if (ready.status != 200) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  // Inside the window: not ready, NOT_SERVING, and still serving.
  EXPECT_EQ(ready.status, 503);
  EXPECT_THAT(Body(ready)["reason"].get<std::string>(), HasSubstr("draining"));
  EXPECT_EQ(HealthStatus(data_port, ""), 2);
  EXPECT_EQ(HealthStatus(data_port, "rerank.v1.Reranker"), 2);
  auto fresh = Stub(server);  // a new connection is accepted too
  for (int i = 0; i < 5; ++i) {
    v1::RerankResponse r;
    grpc::Status s = Call(i % 2 ? *stub : *fresh, &r);
    EXPECT_TRUE(s.ok()) << "during the drain window: " << s.error_message();
    EXPECT_EQ(r.results_size(), 6);
  }
  // A slow request starts inside the window and is still running when the window closes.
  const int calls = static_cast<int>(control.calls().size());
  control.Gate();
  grpc::Status slow_status;
  v1::RerankResponse slow;
  std::thread slow_client([&] { slow_status = Call(*stub, &slow); });
  control.WaitForCalls(calls + 1);
  ASSERT_LT(absl::Now() - shutdown_start, absl::Milliseconds(3000)) << "test too slow";
  absl::SleepFor(absl::Milliseconds(3000) - (absl::Now() - shutdown_start) +
                 absl::Milliseconds(500));
  // The window is over: the listener is closed, and the slow request is still being served.
  v1::RerankResponse late;
  grpc::Status late_status = Call(*Stub(server), &late);
  EXPECT_EQ(late_status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Get(http_port, "/live").status, 200) << "the admin plane answers throughout";
  control.Release();
  slow_client.join();
  stopper.join();
  EXPECT_TRUE(slow_status.ok()) << "in-flight request dropped: " << slow_status.error_message();
  EXPECT_EQ(slow.results_size(), 6);
  const std::vector<json> shutdown = AuditEvents(c.audit.path, "shutdown");
  ASSERT_EQ(shutdown.size(), 1u) << "the audit log is flushed before exit";
  EXPECT_EQ(shutdown[0]["drained"], true);
  EXPECT_EQ(shutdown[0]["drain_grace_ms"], 3000);
}

TEST_F(ZeroDowntimeTest, HotReloadUnderTrafficSwapsModelsWithoutAFailedRequest) {
  const std::string version_a = VersionOf(ModelA());
  const std::string version_b = VersionOf(ModelB());
  ASSERT_FALSE(version_a.empty());
  ASSERT_NE(version_a, version_b) << "the two test models must differ";
  // Reference scores of each model, from a server that only ever ran it.
  std::map<std::string, std::map<uint32_t, float>> reference;
  for (const std::string& dir : {ModelA(), ModelB()}) {
    RerankServer* ref = Start(MakeConfig(dir));
    ASSERT_NE(ref, nullptr);
    v1::RerankResponse r;
    ASSERT_TRUE(Call(*Stub(ref), &r).ok());
    reference[r.model_version()] = Scores(r);
  }
  ASSERT_EQ(reference.size(), 2u);
  ASSERT_NE(reference[version_a], reference[version_b]) << "the models score differently";

  Config c = MakeConfig(ModelA());
  RerankServer* server = Start(c);
  ASSERT_NE(server, nullptr);
  RerankServerTestPeer peer(server);
  EXPECT_EQ(peer.model().version, version_a);
  Traffic traffic(server, 3);
  traffic.WaitForMore(20);  // the cache is warm with model A's scores

  HttpResult r = Post(server, "/model/reload", {{"dir", ModelB()}, {"actor", "ops"}});
  ASSERT_EQ(r.status, 200) << r.body;
  json body = Body(r);
  EXPECT_EQ(body["model"]["version"], version_b);
  EXPECT_EQ(body["model"]["name"], "tiny_model_b");
  EXPECT_EQ(body["previous"]["version"], version_a);
  EXPECT_EQ(body["dir"], ModelB());
  traffic.WaitForMore(20);
  traffic.Stop();

  EXPECT_THAT(traffic.errors(), ::testing::IsEmpty()) << "requests failed during the swap";
  std::map<std::string, int> by_version;
  for (const v1::RerankResponse& resp : traffic.responses()) {
    ++by_version[resp.model_version()];
    // Pinned: every response is wholly one model's (a mixed or stale-cache response differs).
    ASSERT_TRUE(reference.count(resp.model_version())) << resp.model_version();
    EXPECT_EQ(Scores(resp), reference[resp.model_version()]) << resp.model_version();
  }
  EXPECT_GE(by_version[version_a], 20);
  EXPECT_GE(by_version[version_b], 20);

  // The new version everywhere: a fresh response, /health, the gRPC admin, the metric.
  v1::RerankResponse after;
  ASSERT_TRUE(Call(*Stub(server), &after).ok());
  EXPECT_EQ(after.model_version(), version_b);
  EXPECT_EQ(after.model_name(), "tiny_model_b");
  json health = Body(Get(server->admin_http_port(), "/health"));
  EXPECT_EQ(health["model"]["version"], version_b);
  EXPECT_EQ(health["model"]["name"], "tiny_model_b");
  EXPECT_EQ(peer.model().version, version_b);
  absl::StatusOr<testing::PromText> metrics =
      testing::PromText::Parse(Get(server->admin_http_port(), "/metrics").body);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->Value("rerank_model_info", {{"version", version_b}}), 1);
  EXPECT_EQ(metrics->Sum("rerank_model_info"), 1) << "the old model's series is removed";

  // The same through the gRPC admin API: back to A, by the same rules.
  auto admin = admin::v1::Admin::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", server->admin_grpc_port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-admin-token", kToken);
  admin::v1::ReloadModelRequest req;
  req.set_dir(ModelA());
  admin::v1::ReloadModelResponse resp;
  grpc::Status s = admin->ReloadModel(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.model().version(), version_a);
  EXPECT_EQ(resp.previous().version(), version_b);
  ASSERT_TRUE(Call(*Stub(server), &after).ok());
  EXPECT_EQ(after.model_version(), version_a);
  EXPECT_EQ(Scores(after), reference[version_a]);

  server->Shutdown();
  const std::vector<json> reloads = AuditEvents(c.audit.path, "model_reload");
  ASSERT_EQ(reloads.size(), 2u);
  EXPECT_EQ(reloads[0]["success"], true);
  EXPECT_EQ(reloads[0]["actor"], "ops");
  EXPECT_EQ(reloads[0]["source"], "admin-http");
  EXPECT_EQ(reloads[0]["model_version"], version_b);
  EXPECT_EQ(reloads[0]["previous_version"], version_a);
  EXPECT_EQ(reloads[1]["source"], "admin-grpc");
}

TEST_F(ZeroDowntimeTest, BrokenModelIsRejectedAndTheOldOneKeepsServing) {
  const std::string version_a = VersionOf(ModelA());
  const fs::path broken = dir_ / "broken";
  CopyModel(ModelA(), broken);
  std::ofstream(broken / "model.pt", std::ios::trunc) << "this is not a TorchScript archive";
  const fs::path incomplete = dir_ / "incomplete";
  CopyModel(ModelA(), incomplete);
  fs::remove(incomplete / "vocab.txt");

  Config c = MakeConfig(ModelA());
  RerankServer* server = Start(c);
  ASSERT_NE(server, nullptr);
  Traffic traffic(server, 2);

  HttpResult r = Post(server, "/model/reload", {{"dir", broken.string()}});
  EXPECT_EQ(r.status, 400) << r.body;
  std::string error = Body(r)["error"];
  EXPECT_THAT(error, HasSubstr((broken / "model.pt").string()));
  EXPECT_THAT(error, HasSubstr("cannot load TorchScript"));
  EXPECT_THAT(error, HasSubstr(absl::StrCat("still serving 'tiny_model' version ", version_a)));

  r = Post(server, "/model/reload", {{"dir", incomplete.string()}});
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_THAT(Body(r)["error"].get<std::string>(), HasSubstr("vocab.txt not found"));

  // Token and input checks come first.
  EXPECT_EQ(Post(server, "/model/reload", {{"dir", ModelB()}}, /*with_token=*/false).status, 401);
  r = Post(server, "/model/reload", {{"dir", ModelB()}, {"actor", ""}});
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(Body(r)["error"].get<std::string>(), HasSubstr("actor"));
  r = Post(server, "/model/reload", {{"directory", ModelB()}});
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(Body(r)["error"].get<std::string>(), HasSubstr("directory"));
  EXPECT_EQ(Get(server->admin_http_port(), "/model/reload").status, 405);

  auto admin = admin::v1::Admin::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", server->admin_grpc_port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-admin-token", kToken);
  admin::v1::ReloadModelRequest req;
  req.set_dir(broken.string());
  admin::v1::ReloadModelResponse resp;
  grpc::Status s = admin->ReloadModel(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("cannot load TorchScript"));

  traffic.WaitForMore(10);
  traffic.Stop();
  EXPECT_THAT(traffic.errors(), ::testing::IsEmpty());
  for (const auto& resp : traffic.responses()) EXPECT_EQ(resp.model_version(), version_a);
  json health = Body(Get(server->admin_http_port(), "/health"));
  EXPECT_EQ(health["model"]["version"], version_a);
  EXPECT_EQ(health["status"], "healthy");

  server->Shutdown();
  const std::vector<json> reloads = AuditEvents(c.audit.path, "model_reload");
  ASSERT_EQ(reloads.size(), 3u);
  for (const json& e : reloads) {
    EXPECT_EQ(e["success"], false);
    EXPECT_THAT(e["error"].get<std::string>(), HasSubstr("rejected"));
  }
}

TEST_F(ZeroDowntimeTest, ChangedModelFilesAreReloadedByThePoller) {
  const std::string version_a = VersionOf(ModelA());
  const std::string version_b = VersionOf(ModelB());
  const fs::path live = dir_ / "live_model";
  CopyModel(ModelA(), live);
  Config c = MakeConfig(live.string());
  c.model.watch_interval_ms = 100;
  RerankServer* server = Start(c);
  ASSERT_NE(server, nullptr);
  Traffic traffic(server, 2);
  traffic.WaitForMore(10);

  // First a broken model.pt: rejected once (not retried in a loop), A keeps serving.
  std::ofstream(live / "model.pt", std::ios::trunc) << "garbage";
  for (int i = 0; i < 200 && AuditEvents(c.audit.path, "model_reload").empty(); ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  // model_reload events reach the file asynchronously; give the writer a moment.
  absl::SleepFor(absl::Milliseconds(600));
  std::vector<json> reloads = AuditEvents(c.audit.path, "model_reload");
  ASSERT_EQ(reloads.size(), 1u);
  EXPECT_EQ(reloads[0]["success"], false);
  EXPECT_EQ(reloads[0]["source"], "file-watch");
  EXPECT_EQ(Body(Get(server->admin_http_port(), "/health"))["model"]["version"], version_a);

  // Then model B's files: swapped in.
  CopyModel(ModelB(), live);
  std::string seen;
  for (int i = 0; i < 600 && seen != version_b; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    seen = Body(Get(server->admin_http_port(), "/health"))["model"]["version"];
  }
  EXPECT_EQ(seen, version_b);
  traffic.WaitForMore(10);
  traffic.Stop();
  EXPECT_THAT(traffic.errors(), ::testing::IsEmpty());
  EXPECT_EQ(traffic.responses().back().model_version(), version_b);
}

// A reload while another runs is refused at once (ABORTED, HTTP 409); the first completes.
TEST_F(ZeroDowntimeTest, OneReloadAtATime) {
  FakeScorerControl control;
  Config c = MakeConfig(ModelA());
  RerankServer* server = Start(c, control.Factory());
  ASSERT_NE(server, nullptr);
  const int calls = static_cast<int>(control.calls().size());
  control.Gate();  // the new model's warmup blocks in the scorer
  HttpResult first;
  std::thread reloader([&] { first = Post(server, "/model/reload", {{"dir", ModelB()}}); });
  control.WaitForCalls(calls + 1);
  HttpResult second = Post(server, "/model/reload", {{"dir", ModelA()}});
  EXPECT_EQ(second.status, 409) << second.body;
  EXPECT_THAT(Body(second)["error"].get<std::string>(), HasSubstr("already running"));
  EXPECT_EQ(Get(server->admin_http_port(), "/health").status, 200) << "admin stays responsive";
  control.Release();
  reloader.join();
  EXPECT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(Body(first)["model"]["version"], VersionOf(ModelB()));
}

// The engine alone: a request is pinned to the model bundle in force when it started, even when
// it completes after a swap, and the cache namespace follows the model version.
TEST(RerankEngineSwapTest, RequestsKeepTheModelTheyStartedWith) {
  WordPieceTokenizer::Options to;
  to.vocab_path = ModelA() + "/vocab.txt";
  auto tokenizer = WordPieceTokenizer::Create(to);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::shared_ptr<const WordPieceTokenizer> tok(std::move(*tokenizer));
  auto queue_a = std::make_shared<testing::FakeScoringQueue>();
  auto queue_b = std::make_shared<testing::FakeScoringQueue>();
  FeatureFlags flags;
  flags.rate_limit_enabled = false;
  flags.cache_enabled = true;
  flags.cache_traffic_percent = 100;
  StaticFlagSource flag_source(flags);
  testing::FakeAuditSink audit;
  auto cache = ScoreCache::Create(ScoreCache::Options());
  ASSERT_TRUE(cache.ok());
  RerankEngine::Deps deps;
  deps.tokenizer = tok.get();
  deps.queue = queue_a.get();
  deps.flags = &flag_source;
  deps.clock = RealClock::Get();
  deps.audit = &audit;
  deps.cache = cache->get();
  deps.model.name = "a";
  deps.model.version = "va";
  RerankEngine::Options options;
  options.max_length = 64;
  auto engine = RerankEngine::Create(options, std::move(deps));
  ASSERT_TRUE(engine.ok()) << engine.status();

  v1::RerankRequest req;
  req.set_query("berlin");
  req.add_documents()->set_text("berlin is big");
  req.add_documents()->set_text("bananas");
  struct Outcome {
    absl::Status status;
    v1::RerankResponse response;
  };
  auto start = [&](Outcome* out) {
    (*engine)->Rerank(req, CallInfo{}, [out](absl::Status s, v1::RerankResponse r) {
      out->status = s;
      out->response = std::move(r);
    });
  };
  Outcome on_a;
  start(&on_a);  // queued on A, not completed yet
  ASSERT_EQ(queue_a->num_jobs(), 1u);

  auto b = std::make_shared<ServingModel>();
  b->info.name = "b";
  b->info.version = "vb";
  b->info.max_length = 32;  // caps the engine's 64
  b->tokenizer = tok;
  b->queue = queue_b;
  ASSERT_TRUE((*engine)->SetModel(b).ok());
  EXPECT_EQ((*engine)->model().version, "vb");
  EXPECT_EQ((*engine)->MaxLengthFor(b->info), 32u);
  Outcome on_b;
  start(&on_b);
  ASSERT_EQ(queue_b->num_jobs(), 1u) << "a request after the swap goes to the new model";
  EXPECT_EQ(queue_a->num_jobs(), 1u);
  queue_b->Complete(0, {5.0f, 6.0f});
  queue_a->Complete(0, {1.0f, 2.0f});  // the old model answers after the swap
  ASSERT_TRUE(on_a.status.ok()) << on_a.status;
  EXPECT_EQ(on_a.response.model_version(), "va");
  EXPECT_EQ(on_a.response.results(0).score(), 2.0f);
  ASSERT_TRUE(on_b.status.ok()) << on_b.status;
  EXPECT_EQ(on_b.response.model_version(), "vb");
  EXPECT_EQ(on_b.response.results(0).score(), 6.0f);

  // Both models' scores are cached, each under its own version: no cross-model hits.
  Outcome cached;
  start(&cached);
  EXPECT_EQ(queue_b->num_jobs(), 1u) << "served from B's cache entries";
  EXPECT_EQ(cached.response.cache_hits(), 2u);
  EXPECT_EQ(cached.response.results(0).score(), 6.0f);
  ASSERT_TRUE((*engine)->SetModel(std::make_shared<ServingModel>()).code() ==
              absl::StatusCode::kInvalidArgument);
  std::vector<std::string> versions;
  for (const auto& e : audit.events()) {
    if (e.event_type == "rerank") versions.push_back(e.fields["model_version"]);
  }
  EXPECT_THAT(versions, ::testing::ElementsAre("vb", "va", "vb"));
}

TEST(ZeroDowntimeConfigTest, NewKeysParseAndValidate) {
  auto c = ParseConfigYaml(
      "server: {drain_grace_ms: 5000, max_connection_age_ms: 300000, "
      "max_connection_age_grace_ms: 2000}\nmodel: {watch_interval_ms: 1000}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server.drain_grace_ms, 5000u);
  EXPECT_EQ(c->server.max_connection_age_ms, 300000u);
  EXPECT_EQ(c->server.max_connection_age_grace_ms, 2000u);
  EXPECT_EQ(c->model.watch_interval_ms, 1000u);
  EXPECT_TRUE(ValidateConfig(*c, 0).ok());
  Config bad = *c;
  bad.model.watch_interval_ms = 10;
  EXPECT_THAT(std::string(ValidateConfig(bad, 0).message()),
              HasSubstr("model.watch_interval_ms: must be 0 (off) or >= 100, got 10"));
  bad = *c;
  bad.server.max_connection_age_ms = 30;
  EXPECT_THAT(std::string(ValidateConfig(bad, 0).message()),
              HasSubstr("server.max_connection_age_ms: must be 0 (off) or >= 1000"));
  bad = *c;
  bad.server.drain_grace_ms = 4000000;
  EXPECT_THAT(std::string(ValidateConfig(bad, 0).message()),
              HasSubstr("server.drain_grace_ms: must be <= 3600000"));
  // Defaults: no window (local runs; Helm and compose set one), connections aged out after
  // 5 min (clients re-resolve), no poller.
  EXPECT_EQ(Config().server.drain_grace_ms, 0u);
  EXPECT_EQ(Config().server.max_connection_age_ms, 300000u);
  EXPECT_EQ(Config().model.watch_interval_ms, 0u);
}

}  // namespace
}  // namespace rerank
