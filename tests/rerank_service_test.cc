// The data plane end to end over a real gRPC channel: a RerankServer on port 0 with the fake
// (lexical-overlap) scorer, the real tokenizer/vocab, batcher, engine, flags, cache and audit log.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "app/rerank_server.h"
#include "common/rollout.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "rerank/v1/reranker.grpc.pb.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_scorer.h"
#include "tests/testing/rerank_calls.h"
#include "tests/testing/rerank_server_peer.h"
#include "tests/testing/test_dirs.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using testing::TinyModelDir;

class RerankServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("rerank_service_test");
    config_.model.dir = TinyModelDir();
    config_.server.listen = "127.0.0.1:0";
    config_.server.http_listen = "";
    config_.admin.http_listen = "";  // admin plane not under test here
    config_.admin.grpc_listen = "";
    config_.audit.path = (dir_ / "audit.jsonl").string();
    config_.flags.path = (dir_ / "flags.yaml").string();
    config_.flags.poll_interval_ms = 50;
    config_.flags.initial.rate_limit_enabled = false;
    config_.rerank.max_documents = 50;
    config_.rerank.max_document_bytes = 4096;
    config_.rerank.max_query_bytes = 256;
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }
  void Start(Clock* clock = nullptr, bool real_model = false) {
    RerankServer::Options o;
    if (!real_model) o.scorer_factory = scorer_.Factory();
    o.clock = clock;
    o.config = config_;
    auto s = RerankServer::BuildAndStart(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->data_port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Reranker::NewStub(channel_);
  }
  grpc::Status Call(const v1::RerankRequest& req, v1::RerankResponse* resp,
                    absl::Duration deadline = absl::Seconds(30)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    return stub_->Rerank(&ctx, req, resp);
  }
  static v1::RerankRequest Req(const std::string& q, const std::vector<std::string>& docs) {
    return testing::RerankReq("", q, docs);
  }
  static std::vector<uint32_t> Indices(const v1::RerankResponse& r) {
    std::vector<uint32_t> out;
    for (const auto& x : r.results()) out.push_back(x.index());
    return out;
  }
  std::vector<nlohmann::json> AuditEvents() {
    server_->Shutdown();
    std::vector<nlohmann::json> events;
    std::ifstream in(config_.audit.path);
    std::string line;
    while (std::getline(in, line)) events.push_back(nlohmann::json::parse(line));
    return events;
  }

  fs::path dir_;
  Config config_;
  testing::FakeScorerControl scorer_;
  std::unique_ptr<RerankServer> server_;
  RerankServerTestPeer peer() { return RerankServerTestPeer(server_.get()); }
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Reranker::Stub> stub_;
};

const std::vector<std::string> kDocs = {
    "berlin has many people",  // overlap 3
    "the weather is nice",     // 0
    "people live in berlin",   // 4
    "cats",                    // 0, shortest
    "many people",             // 2
    "the weather is nice",     // 0, same text as 1: tie broken by index
    "in",                      // 1
};

TEST_F(RerankServiceTest, RanksByScoreTiesByIndexAndCutsToTopN) {
  Start();
  v1::RerankResponse resp;
  auto req = Req("how many people live in berlin", kDocs);
  req.set_request_id("req-1");
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_THAT(Indices(resp), ElementsAre(2, 0, 4, 6, 3)) << "default top_n is 5";
  EXPECT_TRUE(resp.reranked());
  EXPECT_EQ(resp.request_id(), "req-1");
  EXPECT_EQ(resp.model_name(), "tiny_model");
  EXPECT_FALSE(resp.model_version().empty());
  EXPECT_EQ(resp.results(0).id(), "d2");
  EXPECT_NEAR(resp.results(0).score(), 4 - 0.004, 1e-5);
  EXPECT_TRUE(resp.results(0).text().empty()) << "text only with return_documents";
  for (int i = 1; i < resp.results_size(); ++i) {
    EXPECT_GE(resp.results(i - 1).score(), resp.results(i).score());
  }

  req.set_top_n(100);  // more than there are documents: all of them
  req.set_return_documents(true);
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_THAT(Indices(resp), ElementsAre(2, 0, 4, 6, 3, 1, 5));
  EXPECT_EQ(resp.results(0).text(), kDocs[2]);
  req.set_top_n(2);
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_THAT(Indices(resp), ElementsAre(2, 0));
}

TEST_F(RerankServiceTest, DuplicateIdsAreAllowedAndResultsCarryIndices) {
  Start();
  auto req = Req("berlin", {"berlin", "paris", "berlin berlin"});
  for (auto& d : *req.mutable_documents()) d.set_id("same");
  req.set_top_n(3);
  v1::RerankResponse resp;
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_THAT(Indices(resp), ElementsAre(2, 0, 1));
  for (const auto& r : resp.results()) EXPECT_EQ(r.id(), "same");
}

TEST_F(RerankServiceTest, BadInputsAreInvalidArgumentNamingTheField) {
  Start();
  struct Case {
    std::string name;
    v1::RerankRequest req;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({"empty query", Req("", {"a"}), "query: must not be empty"});
  cases.push_back({"blank query", Req(" \t\n", {"a"}), "query: must not be empty"});
  cases.push_back({"no documents", Req("q", {}), "documents: must contain at least one document"});
  cases.push_back({"too many documents", Req("q", std::vector<std::string>(51, "x")),
                   "documents: 51 documents exceeds the limit of 50 (rerank.max_documents)"});
  cases.push_back({"document too long", Req("q", {"ok", std::string(4097, 'a')}),
                   "documents[1].text: 4097 bytes exceeds the limit of 4096"});
  cases.push_back({"query too long", Req(std::string(257, 'q'), {"a"}),
                   "query: 257 bytes exceeds the limit of 256"});
  cases.push_back({"invalid utf-8 text", Req("q", {"fine", "bad \xC3\x28 byte"}),
                   "documents[1].text: invalid UTF-8 at byte 4"});
  cases.push_back({"invalid utf-8 query", Req("caf\xE9", {"a"}), "query: invalid UTF-8 at byte 3"});
  auto bad_id = Req("q", {"a"});
  bad_id.mutable_documents(0)->set_id("\xFF");
  cases.push_back({"invalid utf-8 id", bad_id, "documents[0].id: invalid UTF-8 at byte 0"});
  auto bad_enum = Req("q", {"a"});
  bad_enum.set_score_activation(static_cast<v1::ScoreActivation>(7));
  cases.push_back({"unknown enum", bad_enum, "score_activation: unknown value 7"});
  for (const Case& c : cases) {
    v1::RerankResponse resp;
    grpc::Status s = Call(c.req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_THAT(s.error_message(), HasSubstr(c.field)) << c.name;
  }
  EXPECT_EQ(scorer_.rows_scored(), 24) << "only warmup rows reached the model";
  // Every failed request is audited with success=false and the error.
  auto events = AuditEvents();
  int failures = 0;
  for (const auto& e : events) {
    if (e["event_type"] == "rerank") {
      EXPECT_FALSE(e["success"].get<bool>());
      EXPECT_THAT(e["error"].get<std::string>(), HasSubstr("INVALID_ARGUMENT"));
      ++failures;
    }
  }
  EXPECT_EQ(failures, static_cast<int>(cases.size()));
}

TEST_F(RerankServiceTest, RerankBatchScoresAllQueriesAndNamesTheBadSubRequest) {
  Start();
  v1::RerankBatchRequest batch;
  *batch.add_requests() = Req("how many people live in berlin", kDocs);
  *batch.add_requests() = Req("nice weather", {"cats", "the weather is nice", "nice"});
  batch.mutable_requests(1)->set_top_n(2);
  v1::RerankBatchResponse resp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->RerankBatch(&ctx, batch, &resp).ok());
  }
  ASSERT_EQ(resp.responses_size(), 2);
  EXPECT_THAT(Indices(resp.responses(0)), ElementsAre(2, 0, 4, 6, 3));
  EXPECT_THAT(Indices(resp.responses(1)), ElementsAre(1, 2));

  batch.mutable_requests(1)->mutable_documents(0)->set_text("\xC0\x80");
  grpc::ClientContext ctx;
  grpc::Status s = stub_->RerankBatch(&ctx, batch, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("requests[1].documents[0].text: invalid UTF-8"));
}

TEST_F(RerankServiceTest, DisabledRerankerPassesOriginalOrderThrough) {
  Start();
  ASSERT_TRUE(peer().flags()->SetStage("disabled", "test").ok());
  const int64_t before = scorer_.rows_scored();
  v1::RerankResponse resp;
  ASSERT_TRUE(Call(Req("how many people live in berlin", kDocs), &resp).ok());
  EXPECT_FALSE(resp.reranked());
  EXPECT_THAT(Indices(resp), ElementsAre(0, 1, 2, 3, 4));
  EXPECT_EQ(scorer_.rows_scored(), before) << "no inference when disabled";
  ASSERT_TRUE(peer().flags()->SetStage("feature-flags", "test").ok());
  ASSERT_TRUE(Call(Req("how many people live in berlin", kDocs), &resp).ok());
  EXPECT_TRUE(resp.reranked()) << "re-enabled on the very next request";
  EXPECT_THAT(Indices(resp), ElementsAre(2, 0, 4, 6, 3));
}

TEST_F(RerankServiceTest, LongDocumentsTruncateOrChunkMax) {
  Start();
  std::string filler;
  const char* words[] = {"the ", "a ", "of "};  // period 3: no two windows are identical
  for (int i = 0; i < 300; ++i) filler += words[i % 3];
  // The only matching token sits past max_length (tiny model: 128): truncation cannot see it.
  auto req = Req("berlin", {filler + "berlin", "paris"});
  v1::RerankResponse resp;
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_LT(resp.results(0).score(), 0.5);
  const int64_t before = scorer_.rows_scored();
  req.set_long_document_mode(v1::LONG_DOCUMENT_MODE_CHUNK_MAX);
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_EQ(resp.results(0).index(), 0u);
  EXPECT_GT(resp.results(0).score(), 0.5) << "max over chunks finds it";
  // 301 doc tokens in windows of 128 - 3 - 1 = 124 tokens starting 92 apart (overlap 32):
  // 3 windows, plus the short document.
  EXPECT_EQ(scorer_.rows_scored() - before, 3 + 1);
}

TEST_F(RerankServiceTest, SigmoidActivation) {
  Start();
  auto req = Req("people live in berlin", {"people live in berlin", "cats"});
  v1::RerankResponse raw, sig;
  ASSERT_TRUE(Call(req, &raw).ok());
  req.set_score_activation(v1::SCORE_ACTIVATION_SIGMOID);
  ASSERT_TRUE(Call(req, &sig).ok());
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(raw.results(i).index(), sig.results(i).index());
    EXPECT_NEAR(sig.results(i).score(), 1 / (1 + std::exp(-raw.results(i).score())), 1e-6);
  }
}

TEST_F(RerankServiceTest, FullQueueIsResourceExhaustedAndDeadlinesDropQueuedWork) {
  config_.execution.max_queue_pairs = 5;
  config_.execution.max_queue_delay_us = 0;
  Start();
  scorer_.Gate();
  // Whatever happens below, never leave the worker blocked (TearDown joins it).
  struct Ungate {
    testing::FakeScorerControl* c;
    ~Ungate() { c->Release(); }
  } ungate{&scorer_};
  const int64_t warm_rows = scorer_.rows_scored();
  const int warm_calls = scorer_.started();
  // A occupies the worker (gated); B waits in the queue until its deadline passes.
  absl::Notification a_done, b_done;
  grpc::ClientContext a_ctx, b_ctx;
  v1::RerankResponse a_resp, b_resp;
  grpc::Status a_status, b_status;
  auto a_req = Req("q", {"one", "two", "three"});
  stub_->async()->Rerank(&a_ctx, &a_req, &a_resp, [&](grpc::Status s) {
    a_status = s;
    a_done.Notify();
  });
  scorer_.WaitForCalls(warm_calls + 1);
  auto b_req = Req("q", {"four", "five", "six"});
  b_ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  stub_->async()->Rerank(&b_ctx, &b_req, &b_resp, [&](grpc::Status s) {
    b_status = s;
    b_done.Notify();
  });
  // Once B is queued, C does not fit (3 queued + 3 > 5).
  for (int i = 0; i < 1000 && peer().batcher()->queued_rows() < 3; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(peer().batcher()->queued_rows(), 3);
  v1::RerankResponse c_resp;
  grpc::Status c = Call(Req("q", {"seven", "eight", "nine"}), &c_resp);
  EXPECT_EQ(c.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(c.error_message(), HasSubstr("queue is full"));
  b_done.WaitForNotification();
  EXPECT_EQ(b_status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The server's copy of the deadline was computed on arrival, a little after the client's:
  // give it time to pass (or the cancellation to arrive) before the worker looks at B.
  absl::SleepFor(absl::Milliseconds(300));
  scorer_.Release();
  a_done.WaitForNotification();
  EXPECT_TRUE(a_status.ok());
  // B expired while queued: the worker dropped it instead of scoring it.
  for (int i = 0; i < 1000 && peer().batcher()->queued_rows() > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(peer().batcher()->queued_rows(), 0);
  EXPECT_EQ(scorer_.rows_scored() - warm_rows, 3);
}

TEST_F(RerankServiceTest, ClientIdFromMetadataAndAuditTrail) {
  Start();
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-client-id", "team-search");
  v1::RerankResponse resp;
  auto req = Req("berlin", {"berlin", "paris"});
  req.set_request_id("abc");
  ASSERT_TRUE(stub_->Rerank(&ctx, req, &resp).ok());
  auto req2 = Req("paris", {"berlin"});
  req2.set_client_id("explicit");
  ASSERT_TRUE(Call(req2, &resp).ok());
  EXPECT_EQ(resp.request_id().size(), 16u) << "generated when empty";
  auto events = AuditEvents();
  std::vector<nlohmann::json> reranks;
  bool startup = false, shutdown = false;
  for (const auto& e : events) {
    ASSERT_TRUE(e.contains("timestamp"));
    if (e["event_type"] == "rerank") reranks.push_back(e);
    startup |= e["event_type"] == "startup";
    shutdown |= e["event_type"] == "shutdown";
  }
  EXPECT_TRUE(startup);
  EXPECT_TRUE(shutdown);
  ASSERT_EQ(reranks.size(), 2u);
  EXPECT_EQ(reranks[0]["client_id"], "team-search");
  EXPECT_EQ(reranks[0]["request_id"], "abc");
  EXPECT_EQ(reranks[0]["num_documents"], 2);
  EXPECT_EQ(reranks[0]["top_n"], 5);
  EXPECT_TRUE(reranks[0]["success"].get<bool>());
  EXPECT_TRUE(reranks[0]["error"].is_null());
  EXPECT_FALSE(reranks[0].contains("query")) << "raw query text only if configured";
  EXPECT_EQ(reranks[0]["query_hash"].get<std::string>().size(), 16u);
  EXPECT_EQ(reranks[1]["client_id"], "explicit");
}

TEST_F(RerankServiceTest, RateLimitIsExactUnderAFakeClock) {
  testing::FakeClock clock;
  config_.flags.initial.rate_limit_enabled = true;
  config_.flags.initial.rate_limit_per_minute = 5;
  Start(&clock);
  auto call_as = [&](const std::string& client, grpc::ClientContext* ctx) {
    auto req = Req("berlin", {"berlin"});
    req.set_client_id(client);
    v1::RerankResponse resp;
    return stub_->Rerank(ctx, req, &resp);
  };
  for (int i = 0; i < 5; ++i) {
    grpc::ClientContext ctx;
    ASSERT_TRUE(call_as("alice", &ctx).ok()) << "request " << i;
  }
  grpc::ClientContext denied;
  grpc::Status s = call_as("alice", &denied);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(),
              HasSubstr("rate limit of 5 requests/minute exceeded for client 'alice'"));
  auto trailer = denied.GetServerTrailingMetadata().find("retry-after-ms");
  ASSERT_NE(trailer, denied.GetServerTrailingMetadata().end());
  EXPECT_EQ(std::string(trailer->second.data(), trailer->second.size()), "12000") << "60 s / 5";
  {
    grpc::ClientContext other;
    EXPECT_TRUE(call_as("bob", &other).ok()) << "buckets are per client";
  }
  clock.Advance(absl::Milliseconds(11999));
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(call_as("alice", &ctx).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  clock.Advance(absl::Milliseconds(1));
  {
    grpc::ClientContext ctx;
    EXPECT_TRUE(call_as("alice", &ctx).ok()) << "exactly one token after 12 s";
  }
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(call_as("alice", &ctx).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  auto events = AuditEvents();
  int violations = 0;
  for (const auto& e : events) {
    if (e["event_type"] != "rate_limit_violation") continue;
    ++violations;
    EXPECT_EQ(e["client_id"], "alice");
    EXPECT_EQ(e["limit_per_minute"], 5);
    EXPECT_EQ(e["request_id"].get<std::string>().size(), 16u);
  }
  EXPECT_EQ(violations, 3);
}

// With cache.rollout_key = client the cache rollout is sticky per client: over 10,000 client
// ids, the share of clients whose repeated request is served from the cache is within 2 points of
// the stage's percentage.
TEST_F(RerankServiceTest, CacheRolloutIsStickyWithinTwoPercentOverTenThousandClients) {
  config_.execution.max_queue_delay_us = 0;
  config_.cache.rollout_key = "client";
  config_.flags.initial.cache_max_entries = 100000;
  Start();
  for (const auto& [stage, percent] :
       std::vector<std::pair<std::string, int>>{{"cache-10", 10}, {"cache-50", 50}}) {
    ASSERT_TRUE(peer().flags()->SetStage(stage, "test").ok());
    FeatureFlags f = *peer().flags()->Current();
    f.cache_max_entries = 100000;
    f.stage = stage;
    ASSERT_TRUE(peer().flags()->Set(f, "test").ok());
    peer().cache()->Clear();
    constexpr int kClients = 10000;
    constexpr int kPerBatch = 64;
    std::vector<int> hits_per_client(kClients, 0);
    for (int round = 0; round < 2; ++round) {
      for (int first = 0; first < kClients; first += kPerBatch) {
        v1::RerankBatchRequest batch;
        for (int c = first; c < std::min(kClients, first + kPerBatch); ++c) {
          auto* sub = batch.add_requests();
          *sub = Req("berlin", {absl::StrCat("doc of client ", c)});
          sub->set_client_id(absl::StrCat("client-", c));
        }
        v1::RerankBatchResponse resp;
        grpc::ClientContext ctx;
        ASSERT_TRUE(stub_->RerankBatch(&ctx, batch, &resp).ok());
        for (int k = 0; k < resp.responses_size(); ++k) {
          if (round == 1) hits_per_client[first + k] = resp.responses(k).cache_hits();
          if (round == 0) {
            EXPECT_EQ(resp.responses(k).cache_hits(), 0u);
          }
        }
      }
    }
    int cached = 0;
    for (int h : hits_per_client) cached += h;
    EXPECT_NEAR(100.0 * cached / kClients, percent, 2.0) << stage;
    for (int c = 0; c < kClients; c += 997) {  // and the same clients every time
      EXPECT_EQ(hits_per_client[c] == 1, InRollout(absl::StrCat("client-", c), percent));
    }
  }
}

// With the real TorchScript model: a request whose candidates overlap an earlier one is served
// partly from the cache, and every score equals what the model gives without the cache.
TEST_F(RerankServiceTest, CachePartialHitsScoreIdenticallyToUncachedWithTheRealModel) {
  config_.model.precision = "fp32";
  config_.execution.intra_op_threads = 1;
  auto staged = ApplyStage("cache-100", config_.flags.initial);
  ASSERT_TRUE(staged.ok());
  config_.flags.initial = *staged;
  Start(nullptr, /*real_model=*/true);
  const std::string q = "how many people live in berlin";
  const std::string a = "berlin is well known for its museums", b = "berlin has 3.5 million people",
                    c = "paris is in france", d = "a quiet village", e = "people live in cities";
  auto by_text = [](const v1::RerankResponse& r) {
    std::map<std::string, float> m;
    for (const auto& x : r.results()) m[x.text()] = x.score();
    return m;
  };
  auto first = Req(q, {a, b, c});
  first.set_top_n(10);
  first.set_return_documents(true);
  v1::RerankResponse r1, r2, r3;
  ASSERT_TRUE(Call(first, &r1).ok());
  EXPECT_EQ(r1.cache_hits(), 0u);
  auto second = Req(q, {b, d, c, e});
  second.set_top_n(10);
  second.set_return_documents(true);
  ASSERT_TRUE(Call(second, &r2).ok());
  EXPECT_EQ(r2.cache_hits(), 2u) << "b and c were cached by the first request";
  auto s1 = by_text(r1), s2 = by_text(r2);
  EXPECT_EQ(s2[b], s1[b]);
  EXPECT_EQ(s2[c], s1[c]);
  // The same request without the cache: the model scores all four documents again.
  ASSERT_TRUE(peer().flags()->SetStage("feature-flags", "test").ok());
  ASSERT_TRUE(Call(second, &r3).ok());
  EXPECT_EQ(r3.cache_hits(), 0u);
  auto s3 = by_text(r3);
  ASSERT_EQ(s3.size(), 4u);
  for (const auto& [text, score] : s3) EXPECT_NEAR(s2[text], score, 1e-5) << text;
  EXPECT_EQ(Indices(r2), Indices(r3));
  EXPECT_NE(s3[b], s3[d]) << "the real model tells documents apart";
  EXPECT_EQ(peer().cache()->GetStats().hits, 2u);
}

TEST_F(RerankServiceTest, StandardHealthServiceReportsServing) {
  Start();
  grpc::GenericStub generic(channel_);
  // grpc.health.v1.HealthCheckRequest{service: ""} is the empty message.
  grpc::ByteBuffer request, response;
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  grpc::ClientContext ctx;
  absl::Notification done;
  grpc::Status status;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      status = s;
                      done.Notify();
                    });
  done.WaitForNotification();
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (auto& s : slices) bytes += std::string(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2)) << "status: SERVING";
}

}  // namespace
}  // namespace rerank
