// The engine's part in fair scheduling, through a fake ScoringQueue: jobs carry the RPC's client
// key, admission is asked before the documents are tokenized (with the number of uncached
// candidates), a refusal stops the request before Submit with its retry hint intact, and the
// per-RPC text budget (rerank.max_request_bytes) bounds the tokenizing done on the calling thread.
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/rerank_engine.h"
#include "tests/testing/fake_audit_sink.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_scoring_queue.h"
#include "tests/testing/files.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using testing::FakeScoringQueue;
using ::testing::HasSubstr;

constexpr char kVocab[] =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"
    "how\nmany\npeople\nlive\nin\nberlin\ncats\n";

class Reports final : public RequestObserver {
 public:
  void OnRequest(const RequestReport& r) override {
    absl::MutexLock lock(&mu_);
    reports_.push_back(r);
  }
  RequestReport last() const {
    absl::MutexLock lock(&mu_);
    return reports_.back();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<RequestReport> reports_ ABSL_GUARDED_BY(mu_);
};

class FairEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("fair_engine_test_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    testing::WriteFile(dir_ / "vocab.txt", kVocab);
    WordPieceTokenizer::Options to;
    to.vocab_path = (dir_ / "vocab.txt").string();
    auto tok = WordPieceTokenizer::Create(to);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = *std::move(tok);
    auto cache = ScoreCache::Create(ScoreCache::Options());
    ASSERT_TRUE(cache.ok()) << cache.status();
    cache_ = *std::move(cache);
    options_.max_length = 32;
    flags_.rate_limit_enabled = false;
    flags_.cache_enabled = false;
  }
  void TearDown() override {
    engine_.reset();
    fs::remove_all(dir_);
  }
  void Build() {
    flag_source_ = std::make_unique<StaticFlagSource>(flags_);
    RerankEngine::Deps deps;
    deps.tokenizer = tokenizer_.get();
    deps.queue = &queue_;
    deps.flags = flag_source_.get();
    deps.clock = &clock_;
    deps.audit = &audit_;
    deps.cache = cache_.get();
    deps.observer = &reports_;
    deps.model.name = "tiny";
    deps.model.version = "v1";
    auto engine = RerankEngine::Create(options_, std::move(deps));
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
  }
  absl::Status Rerank(const v1::RerankRequest& req, const std::string& client) {
    absl::Status out = absl::UnknownError("done not called");
    CallInfo call;
    call.metadata_client_id = client;
    engine_->Rerank(req, call, [&out](absl::Status s, v1::RerankResponse) { out = s; });
    return out;
  }
  absl::Status RerankBatch(const v1::RerankBatchRequest& req, const std::string& client) {
    absl::Status out = absl::UnknownError("done not called");
    CallInfo call;
    call.metadata_client_id = client;
    engine_->RerankBatch(req, call, [&out](absl::Status s, v1::RerankBatchResponse) { out = s; });
    return out;
  }
  static v1::RerankRequest Req(const std::string& q, const std::vector<std::string>& docs) {
    v1::RerankRequest r;
    r.set_query(q);
    for (const std::string& d : docs) r.add_documents()->set_text(d);
    return r;
  }

  fs::path dir_;
  testing::FakeClock clock_;
  testing::FakeAuditSink audit_;
  FakeScoringQueue queue_;
  Reports reports_;
  std::unique_ptr<WordPieceTokenizer> tokenizer_;
  std::unique_ptr<ScoreCache> cache_;
  RerankEngine::Options options_;
  FeatureFlags flags_;
  std::unique_ptr<StaticFlagSource> flag_source_;
  std::unique_ptr<RerankEngine> engine_;
};

TEST_F(FairEngineTest, JobsCarryTheCallersClientAndAdmissionCountsItsRows) {
  Build();
  queue_.SetAutoScore(FakeScoringQueue::LexicalOverlap);
  ASSERT_TRUE(Rerank(Req("berlin", {"berlin", "cats", "people"}), "team-a").ok());
  ASSERT_EQ(queue_.num_jobs(), 1u);
  EXPECT_EQ(queue_.job(0).client, "team-a");
  auto calls = queue_.admission_calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].client, "team-a");
  EXPECT_EQ(calls[0].min_rows, 3);

  // A RerankBatch is one job of the RPC's client (a sub-request's client_id keys only its cache
  // rollout); admission counts the rows planned so far plus the next sub-request's candidates.
  v1::RerankBatchRequest batch;
  *batch.add_requests() = Req("berlin", {"berlin", "cats"});
  *batch.add_requests() = Req("cats", {"cats"});
  batch.mutable_requests(1)->set_client_id("someone-else");
  ASSERT_TRUE(RerankBatch(batch, "team-b").ok());
  ASSERT_EQ(queue_.num_jobs(), 2u);
  EXPECT_EQ(queue_.job(1).client, "team-b");
  calls = queue_.admission_calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[1].client, "team-b");
  EXPECT_EQ(calls[1].min_rows, 2);
  EXPECT_EQ(calls[2].client, "team-b");
  EXPECT_EQ(calls[2].min_rows, 3);
}

TEST_F(FairEngineTest, RefusedAdmissionStopsBeforeSubmitAndKeepsTheRetryHint) {
  Build();
  absl::Status refused = absl::ResourceExhaustedError(
      "client 'team-a' has 900 pairs queued; ... (execution.max_client_queue_pairs)");
  refused.SetPayload(kQueueRetryAfterPayload, absl::Cord("250"));
  queue_.RejectAdmissionWith(refused);
  absl::Status s = Rerank(Req("berlin", {"berlin", "cats"}), "team-a");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("execution.max_client_queue_pairs"));
  auto hint = s.GetPayload(kQueueRetryAfterPayload);
  ASSERT_TRUE(hint.has_value());
  EXPECT_EQ(std::string(*hint), "250");
  EXPECT_EQ(queue_.submit_calls(), 0);
  EXPECT_FALSE(reports_.last().rate_limited) << "a busy queue is not rate limiting";
}

TEST_F(FairEngineTest, CachedCandidatesNeedNoRoom) {
  flags_.cache_enabled = true;
  flags_.cache_traffic_percent = 100;
  Build();
  queue_.SetAutoScore(FakeScoringQueue::LexicalOverlap);
  ASSERT_TRUE(Rerank(Req("berlin", {"berlin", "cats"}), "a").ok());
  // Both cached now: no admission needed, even when the queue refuses everything.
  queue_.RejectAdmissionWith(absl::ResourceExhaustedError("queue is full"));
  EXPECT_TRUE(Rerank(Req("berlin", {"berlin", "cats"}), "a").ok());
  queue_.RejectAdmissionWith(absl::OkStatus());
  ASSERT_TRUE(Rerank(Req("berlin", {"berlin", "cats", "people"}), "a").ok());
  auto calls = queue_.admission_calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].min_rows, 1) << "only the uncached candidate";
}

TEST_F(FairEngineTest, TextPerRpcIsBounded) {
  options_.max_request_bytes = 20;
  Build();
  queue_.SetAutoScore(FakeScoringQueue::LexicalOverlap);
  // 6 + 6 + 4 + 4 = 20 bytes: at the limit.
  EXPECT_TRUE(Rerank(Req("berlin", {"berlin", "cats", "cats"}), "a").ok());
  absl::Status s = Rerank(Req("berlin", {"berlin", "cats", "cats", "cats"}), "a");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "documents: 24 bytes of query and document text exceeds the limit of 20 "
            "(rerank.max_request_bytes)");
  v1::RerankBatchRequest batch;
  *batch.add_requests() = Req("berlin", {"berlin"});
  *batch.add_requests() = Req("cats", {"cats", "people"});
  s = RerankBatch(batch, "a");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("requests: 26 bytes of query and document text"));
  EXPECT_EQ(queue_.admission_calls().size(), 1u) << "refused before any planning";
  EXPECT_EQ(queue_.submit_calls(), 1);
}

}  // namespace
}  // namespace rerank
