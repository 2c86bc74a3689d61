// Issue 8 (identity, limits, the deployment guide's semantics) end to end over a real gRPC channel:
// a RerankServer on port 0 with the fake scorer, the real tokenizer, batcher, engine, rate
// limiters, flags file, cache and audit log. Each test is one measured problem turned around:
//  - an oversized or unprintable client_id / x-client-id / request_id is INVALID_ARGUMENT naming
//    the field, and nothing of it reaches the rate limiter, the audit file or the cache;
//  - requests without an id share one bucket per peer IP, whatever connection they come on;
//  - RerankBatch is served in the rollback stage; ENABLE_RERANKER=false + restart wins over the
//    flags file; cache-10/cache-50 are shares of traffic even with a single client.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "app/grpc_limits.h"
#include "app/rerank_server.h"
#include "common/config.h"
#include "common/rollout.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "rerank/v1/reranker.grpc.pb.h"
#include "server/rerank_service.h"
#include "tests/testing/fake_scorer.h"
#include "tests/testing/files.h"
#include "tests/testing/rerank_calls.h"
#include "tests/testing/rerank_server_peer.h"
#include "tests/testing/test_dirs.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

using testing::TinyModelDir;

using testing::ReadFile;

class IdentityServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("identity_service_test");
    config_.model.dir = TinyModelDir();
    config_.model.warmup = false;
    config_.server.listen = "127.0.0.1:0";
    config_.server.http_listen = "";
    config_.admin.http_listen = "";
    config_.admin.grpc_listen = "";
    config_.audit.path = (dir_ / "audit.jsonl").string();
    config_.flags.path = (dir_ / "flags.yaml").string();
    config_.flags.poll_interval_ms = 50;
    config_.execution.max_queue_delay_us = 0;
    config_.flags.initial.rate_limit_enabled = true;
    config_.flags.initial.rate_limit_per_minute = 1000;
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }
  void Start() {
    RerankServer::Options o;
    o.scorer_factory = scorer_.Factory();
    o.config = config_;
    auto s = RerankServer::BuildAndStart(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    stub_ = NewStub();
  }
  // A stub on a channel of its own: its own TCP connection, so its own client port.
  std::unique_ptr<v1::Reranker::Stub> NewStub() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxSendMessageSize(-1);
    return v1::Reranker::NewStub(
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->data_port()),
                                  grpc::InsecureChannelCredentials(), args));
  }
  RerankServerTestPeer peer() { return RerankServerTestPeer(server_.get()); }
  static v1::RerankRequest Req(const std::string& q, const std::vector<std::string>& docs) {
    return testing::RerankReq("", q, docs);
  }
  grpc::Status Call(v1::Reranker::Stub* stub, const v1::RerankRequest& req,
                    const std::string& metadata_id = "") {
    grpc::ClientContext ctx;
    if (!metadata_id.empty()) ctx.AddMetadata("x-client-id", metadata_id);
    v1::RerankResponse resp;
    return stub->Rerank(&ctx, req, &resp);
  }
  grpc::Status Call(const v1::RerankRequest& req) { return Call(stub_.get(), req); }
  std::vector<nlohmann::json> AuditEvents(const std::string& type) {
    peer().audit()->Flush();
    std::vector<nlohmann::json> out;
    std::ifstream in(config_.audit.path);
    std::string line;
    while (std::getline(in, line)) {
      nlohmann::json j = nlohmann::json::parse(line);
      if (j["event_type"] == type) out.push_back(j);
    }
    return out;
  }

  fs::path dir_;
  Config config_;
  testing::FakeScorerControl scorer_;
  std::unique_ptr<RerankServer> server_;
  std::unique_ptr<v1::Reranker::Stub> stub_;
};

// Measured: three requests with a 30 MB client_id and no documents grew RSS by 330 MB (the
// limiter kept the ids) and wrote a 30 MB audit line. Now: INVALID_ARGUMENT naming client_id,
// checked first, and the limiter, the audit file and the cache never see the id.
TEST_F(IdentityServiceTest, OversizedClientIdIsRejectedBeforeLimiterAuditAndCache) {
  config_.flags.initial = *ApplyStage("cache-100", config_.flags.initial);
  Start();
  const std::string huge(8 << 20, 'x');  // 8 MiB: the same path as 30 MB, faster to send
  for (int i = 0; i < 3; ++i) {
    v1::RerankRequest req = Req("berlin", {});
    req.set_client_id(huge);
    grpc::Status s = Call(req);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("client_id: 8388608 bytes exceeds the limit of 128 "
                                             "(rerank.max_id_bytes)"));
  }
  // Measured: a 1 MiB client_id with one document was answered OK and cached.
  const std::string mib(1 << 20, 'y');
  v1::RerankRequest one = Req("berlin", {"berlin"});
  one.set_client_id(mib);
  EXPECT_EQ(Call(one).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // The same on the x-client-id metadata (gRPC itself caps metadata at 8 KiB) and request_id.
  EXPECT_THAT(Call(stub_.get(), Req("berlin", {"berlin"}), std::string(200, 'm')).error_message(),
              HasSubstr("x-client-id (metadata): 200 bytes exceeds the limit of 128"));
  v1::RerankRequest rid = Req("berlin", {"berlin"});
  rid.set_request_id(std::string(129, 'r'));
  EXPECT_THAT(Call(rid).error_message(), HasSubstr("request_id: 129 bytes exceeds the limit"));

  EXPECT_EQ(peer().rate_limiter()->ClientCount(), 0u) << "no bucket for a rejected id";
  EXPECT_EQ(peer().cache()->GetStats().size, 0u);
  EXPECT_EQ(peer().cache()->GetStats().misses, 0u) << "no lookup either";
  EXPECT_EQ(scorer_.rows_scored(), 0);
  const std::vector<nlohmann::json> events = AuditEvents("rerank");
  ASSERT_EQ(events.size(), 6u) << "each rejection is audited, without the id";
  for (const auto& e : events) {
    EXPECT_FALSE(e["success"].get<bool>());
    EXPECT_EQ(e["client_id"], "127.0.0.1") << "the peer, never the rejected id";
    EXPECT_LT(e["request_id"].get<std::string>().size(), 129u);
  }
  const std::string file = ReadFile(config_.audit.path);
  EXPECT_LT(file.size(), 16u * 1024) << "no oversized line";
  EXPECT_THAT(file, Not(HasSubstr(std::string(129, 'x'))));
  EXPECT_THAT(file, Not(HasSubstr(std::string(129, 'y'))));
}

TEST_F(IdentityServiceTest, UnprintableIdsAreRejectedNamingTheField) {
  Start();
  v1::RerankRequest req = Req("berlin", {"berlin"});
  req.set_client_id("team\nsearch");
  grpc::Status s = Call(req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("client_id: must be printable ASCII (0x20..0x7e), got byte 0x0a at "
                        "offset 4"));
  req.set_client_id("caf\xc3\xa9");  // non-ASCII UTF-8 too: ids are plain ASCII tokens
  EXPECT_EQ(Call(req).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  req.set_client_id(std::string(128, 'k'));  // exactly the limit: fine
  EXPECT_TRUE(Call(req).ok());

  v1::RerankBatchRequest batch;
  *batch.add_requests() = Req("berlin", {"berlin"});
  *batch.add_requests() = Req("paris", {"paris"});
  batch.mutable_requests(1)->set_request_id(std::string(300, 'z'));
  v1::RerankBatchResponse resp;
  grpc::ClientContext ctx;
  s = stub_->RerankBatch(&ctx, batch, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("requests[1].request_id: 300 bytes exceeds"));
  EXPECT_EQ(peer().rate_limiter()->ClientCount(), 1u) << "only the valid 128-byte id";
}

// Measured: without an id the key was ipv4:IP:PORT, a fresh bucket per connection. Now the peer
// IP: new connections share the bucket.
TEST_F(IdentityServiceTest, RequestsWithoutIdShareOneBucketPerPeerIpAcrossConnections) {
  config_.flags.initial.rate_limit_per_minute = 2;
  Start();
  EXPECT_TRUE(Call(NewStub().get(), Req("berlin", {"berlin"})).ok());
  EXPECT_TRUE(Call(NewStub().get(), Req("berlin", {"berlin"})).ok());
  grpc::Status third = Call(NewStub().get(), Req("berlin", {"berlin"}));
  EXPECT_EQ(third.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(third.error_message(), HasSubstr("for client '127.0.0.1'"));
  EXPECT_EQ(peer().rate_limiter()->ClientCount(), 1u);
  // An id still gets its own bucket (rate_limit.identity: client_id, the default).
  v1::RerankRequest alice = Req("berlin", {"berlin"});
  alice.set_client_id("alice");
  EXPECT_TRUE(Call(alice).ok());
  EXPECT_TRUE(Call(stub_.get(), Req("berlin", {"berlin"}), "bob").ok());
  EXPECT_EQ(peer().rate_limiter()->ClientCount(), 3u);
  for (const auto& e : AuditEvents("rerank")) {
    const std::string id = e["client_id"];
    EXPECT_TRUE(id == "127.0.0.1" || id == "alice" || id == "bob") << id;
  }
}

TEST_F(IdentityServiceTest, PeerIdentityIgnoresWhatTheRequestSays) {
  config_.rate_limit.identity = "peer";
  config_.flags.initial.rate_limit_per_minute = 2;
  Start();
  for (const std::string id : {"alice", "bob"}) {
    v1::RerankRequest req = Req("berlin", {"berlin"});
    req.set_client_id(id);
    EXPECT_TRUE(Call(req).ok()) << id;
  }
  v1::RerankRequest carol = Req("berlin", {"berlin"});
  carol.set_client_id("carol");
  grpc::Status s = Call(carol);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << "a new id is no new bucket";
  EXPECT_THAT(s.error_message(), HasSubstr("client '127.0.0.1'"));
  EXPECT_EQ(peer().rate_limiter()->ClientCount(), 1u);
  // Ids are still validated: a bad one is an error, not silently ignored.
  carol.set_client_id(std::string(500, 'c'));
  EXPECT_EQ(Call(carol).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// rate_limit.pairs_per_minute: a RerankBatch costs its pairs, not one request.
TEST_F(IdentityServiceTest, PairLimitChargesEveryPairOfABatch) {
  config_.rate_limit.pairs_per_minute = 10;
  Start();
  ASSERT_NE(peer().pair_limiter(), nullptr);
  v1::RerankRequest six = Req("berlin", {"a", "b", "c", "d", "e", "f"});
  six.set_client_id("team");
  EXPECT_TRUE(Call(six).ok());  // 6 of 10
  v1::RerankBatchRequest batch;
  batch.set_client_id("team");
  *batch.add_requests() = Req("berlin", {"a", "b", "c"});
  *batch.add_requests() = Req("paris", {"d", "e"});
  v1::RerankBatchResponse resp;
  grpc::ClientContext ctx;
  grpc::Status s = stub_->RerankBatch(&ctx, batch, &resp);  // 5 more: 11 > 10
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("rate limit of 10 pairs/minute exceeded"));
  EXPECT_NE(ctx.GetServerTrailingMetadata().find("retry-after-ms"),
            ctx.GetServerTrailingMetadata().end());
  v1::RerankRequest eleven = Req("berlin", std::vector<std::string>(11, "x"));
  eleven.set_client_id("other");
  s = Call(eleven);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "can never fit in the bucket";
  EXPECT_THAT(s.error_message(), HasSubstr("documents: 11 query-document pairs exceeds"));
  const auto violations = AuditEvents("rate_limit_violation");
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_EQ(violations[0]["limit_pairs_per_minute"], 10);
}

// Measured: in the rollback stage RerankBatch answered FAILED_PRECONDITION. Now it is served,
// its sub-requests scored one by one (no cross-request batching), with the same results.
TEST_F(IdentityServiceTest, RollbackStageServesRerankBatchWithoutCrossRequestBatching) {
  Start();
  v1::RerankBatchRequest batch;
  *batch.add_requests() = Req("people live in berlin", {"berlin", "people in berlin", "cats"});
  *batch.add_requests() = Req("nice weather", {"cats", "the weather is nice"});
  auto run = [&](v1::RerankBatchResponse* resp) {
    grpc::ClientContext ctx;
    return stub_->RerankBatch(&ctx, batch, resp);
  };
  v1::RerankBatchResponse batched, rollback;
  int before = scorer_.started();
  ASSERT_TRUE(run(&batched).ok());
  EXPECT_EQ(scorer_.started() - before, 1) << "batch.enabled: one forward for both";
  ASSERT_TRUE(peer().flags()->SetStage("rollback", "test").ok());
  before = scorer_.started();
  grpc::Status s = run(&rollback);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(scorer_.started() - before, 2) << "one forward per sub-request";
  ASSERT_EQ(rollback.responses_size(), 2);
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(rollback.responses(i).results_size(), batched.responses(i).results_size());
    for (int k = 0; k < rollback.responses(i).results_size(); ++k) {
      EXPECT_EQ(rollback.responses(i).results(k).index(), batched.responses(i).results(k).index());
      EXPECT_FLOAT_EQ(rollback.responses(i).results(k).score(),
                      batched.responses(i).results(k).score());
    }
  }
}

// Measured: ENABLE_RERANKER=false and a restart left the reranker on (the variable only seeded
// the flags file once). Now it applies over the file, is written to it and audited.
TEST_F(IdentityServiceTest, EnableRerankerFalseAndARestartTurnsTheRerankerOff) {
  Start();  // first start: writes flags.yaml with the reranker on
  v1::RerankResponse resp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Rerank(&ctx, Req("berlin", {"cats", "berlin"}), &resp).ok());
    EXPECT_TRUE(resp.reranked());
  }
  server_->Shutdown();
  server_.reset();

  std::map<std::string, std::string> env = {{"ENABLE_RERANKER", "false"}};
  absl::StatusOr<Config> loaded =
      LoadConfig("", [&](const std::string& name) -> std::optional<std::string> {
        auto it = env.find(name);
        return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
      });
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Config restarted = *loaded;
  restarted.model = config_.model;
  restarted.server = config_.server;
  restarted.admin = config_.admin;
  restarted.audit = config_.audit;
  restarted.flags.path = config_.flags.path;
  restarted.execution.max_queue_delay_us = 0;
  config_ = restarted;
  Start();
  EXPECT_FALSE(peer().flags()->Current()->reranker_enabled);
  EXPECT_EQ(peer().flags()->Current()->stage, "custom");
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Rerank(&ctx, Req("berlin", {"cats", "berlin"}), &resp).ok());
    EXPECT_FALSE(resp.reranked()) << "pass-through: the full rollback";
  }
  auto from_file = ParseFlagsYaml(ReadFile(config_.flags.path));
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_FALSE(from_file->reranker_enabled) << "written to the flags file";
  const auto changes = AuditEvents("flag_change");
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0]["actor"], "environment");
  EXPECT_EQ(changes[0]["changed"], nlohmann::json::array({"stage", "reranker.enabled"}));
}

// Measured: cache-10 / cache-50 were 10% / 50% of clients, so a single backend (one client id)
// got 0% or 100%. Now (cache.rollout_key: query, the default) they are shares of traffic, sticky
// per query.
TEST_F(IdentityServiceTest, CacheStagesAreSharesOfTrafficForASingleClient) {
  config_.flags.initial.cache_max_entries = 100000;
  config_.flags.initial.rate_limit_enabled = false;
  Start();
  for (const auto& [stage, percent] :
       std::vector<std::pair<std::string, int>>{{"cache-10", 10}, {"cache-50", 50}}) {
    FeatureFlags f = *ApplyStage(stage, *peer().flags()->Current());
    ASSERT_TRUE(peer().flags()->Set(f, "test").ok());
    peer().cache()->Clear();
    constexpr int kQueries = 2000;
    constexpr int kPerBatch = 64;
    int cached = 0;
    for (int round = 0; round < 2; ++round) {
      for (int first = 0; first < kQueries; first += kPerBatch) {
        v1::RerankBatchRequest batch;
        batch.set_client_id("the-only-backend");
        for (int q = first; q < std::min(kQueries, first + kPerBatch); ++q) {
          *batch.add_requests() = Req(absl::StrCat("query number ", q), {"berlin"});
        }
        v1::RerankBatchResponse resp;
        grpc::ClientContext ctx;
        ASSERT_TRUE(stub_->RerankBatch(&ctx, batch, &resp).ok());
        for (int k = 0; k < resp.responses_size(); ++k) {
          const bool hit = resp.responses(k).cache_hits() == 1;
          if (round == 1) {
            cached += hit;
            // Sticky: the repeated query is cached exactly when its hash is in the rollout.
            EXPECT_EQ(hit, InRollout(absl::StrCat("query number ", first + k), percent));
          }
        }
      }
    }
    EXPECT_NEAR(100.0 * cached / kQueries, percent, 3.0) << stage;
  }
}

TEST(GrpcLimitsConfigTest, ServerLimitsMapToChannelArgumentsAndAreBounded) {
  ServerConfig s;
  std::map<std::string, int> args = GrpcServerLimitArgs(s);
  EXPECT_EQ(args[GRPC_ARG_MAX_CONCURRENT_STREAMS], 100);
  EXPECT_EQ(args[GRPC_ARG_MAX_CONNECTION_AGE_MS], 300000);
  EXPECT_EQ(args[GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS], 120000);
  EXPECT_EQ(args[GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS], 10000);
  EXPECT_EQ(args[GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS], 0);
  s.max_connection_age_ms = 0;
  EXPECT_EQ(GrpcServerLimitArgs(s).count(GRPC_ARG_MAX_CONNECTION_AGE_MS), 0u) << "0 = never";

  Config c;
  c.server.max_message_bytes = 3'000'000'000u;  // was cast to a negative int: unlimited
  EXPECT_THAT(std::string(ValidateConfig(c, 0).message()),
              HasSubstr("server.max_message_bytes: must be 1024..1073741824, got 3000000000"));
  c = Config();
  EXPECT_EQ(c.server.max_request_ms, 120000u);
  EXPECT_LE(c.server.max_request_ms, c.server.max_connection_age_grace_ms)
      << "a connection's GOAWAY would cut admitted calls";
  c.server.max_request_ms = 3'600'001;
  EXPECT_THAT(std::string(ValidateConfig(c, 0).message()),
              HasSubstr("server.max_request_ms: must be <= 3600000"));
  c = Config();
  c.server.memory_quota_mb = 32;  // smaller than one 64 MiB message
  EXPECT_THAT(std::string(ValidateConfig(c, 0).message()), HasSubstr("server.memory_quota_mb"));
  c = Config();
  c.rate_limit.identity = "header";
  EXPECT_THAT(std::string(ValidateConfig(c, 0).message()),
              HasSubstr("rate_limit.identity: must be one of client_id|peer, got 'header'"));
  c = Config();
  c.cache.rollout_key = "user";
  EXPECT_THAT(std::string(ValidateConfig(c, 0).message()), HasSubstr("cache.rollout_key"));
  c = Config();
  c.rerank.max_id_bytes = 0;
  EXPECT_THAT(std::string(ValidateConfig(c, 0).message()),
              HasSubstr("rerank.max_id_bytes: must be 1..4096, got 0"));
  c = Config();
  c.audit.max_total_mb = 50;  // below one file
  EXPECT_THAT(std::string(ValidateConfig(c, 0).message()), HasSubstr("audit.max_total_mb"));
  EXPECT_EQ(Config().audit.retention_days, 90u) << "the deployment guide's retention";
}

TEST(GrpcLimitsConfigTest, PeerIpDropsThePort) {
  EXPECT_EQ(PeerIp("ipv4:10.1.2.3:5678"), "10.1.2.3");
  EXPECT_EQ(PeerIp("ipv6:[::1]:5678"), "::1");
  EXPECT_EQ(PeerIp("ipv6:%5B2001:db8::7%5D:443"), "2001:db8::7");
  EXPECT_EQ(PeerIp("unix:/tmp/sock"), "unix:/tmp/sock");
}

}  // namespace
}  // namespace rerank
