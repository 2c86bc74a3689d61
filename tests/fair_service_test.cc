// Fair scheduling end to end over a real gRPC channel (issue 8: "one client's 300-document
// chunk_max request made another client's one-document request wait 16-73 s"): a RerankServer on
// port 0 with the tiny model's vocab and a stepped fake scorer, so that the test decides when each
// forward may run and the interleaving is deterministic.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "app/rerank_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rerank/v1/reranker.grpc.pb.h"
#include "tests/testing/fake_scorer.h"
#include "tests/testing/rerank_calls.h"
#include "tests/testing/rerank_server_peer.h"
#include "tests/testing/test_dirs.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using testing::TinyModelDir;

// Score() calls wait until the test allows them (Allow(n) lets n more through; Open() lets all
// through). Scores are the fake lexical-overlap ones.
class StepScorerControl {
 public:
  void Allow(int n) {
    absl::MutexLock l(&mu_);
    allowed_ += n;
  }
  void Open() {
    absl::MutexLock l(&mu_);
    open_ = true;
  }
  void Close() {
    absl::MutexLock l(&mu_);
    open_ = false;
    allowed_ = passed_;
  }
  // Blocks until `n` calls in total have passed (returned or are returning).
  void WaitPassed(int n) {
    std::pair<StepScorerControl*, int> arg(this, n);
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](std::pair<StepScorerControl*, int>* a)
             ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->first->passed_ >= a->second; },
        &arg));
  }
  // Blocks until a call is waiting at the gate.
  void WaitBlocked() {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](StepScorerControl* c) ABSL_NO_THREAD_SAFETY_ANALYSIS { return c->waiting_ > 0; },
        this));
  }
  int passed() {
    absl::MutexLock l(&mu_);
    return passed_;
  }
  int waiting() {
    absl::MutexLock l(&mu_);
    return waiting_;
  }
  ScorerFactory Factory() {
    return [this]() -> absl::StatusOr<std::unique_ptr<Scorer>> {
      return std::unique_ptr<Scorer>(new StepScorer(this));
    };
  }

 private:
  class StepScorer final : public Scorer {
   public:
    explicit StepScorer(StepScorerControl* c) : c_(c) {}
    absl::StatusOr<std::vector<float>> Score(const ScoreBatch& b) override {
      {
        absl::MutexLock l(&c_->mu_);
        ++c_->waiting_;
        c_->mu_.Await(absl::Condition(
            +[](StepScorerControl* c)
                 ABSL_NO_THREAD_SAFETY_ANALYSIS { return c->open_ || c->allowed_ > c->passed_; },
            c_));
        --c_->waiting_;
        ++c_->passed_;
      }
      std::vector<float> out(b.rows);
      for (int64_t r = 0; r < b.rows; ++r) {
        const int64_t off = r * b.seq_len;
        out[r] = testing::FakeScorerControl::ScoreRow(&b.input_ids[off], &b.attention_mask[off],
                                                      &b.token_type_ids[off], b.seq_len);
      }
      return out;
    }

   private:
    StepScorerControl* c_;
  };

  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;  // open during warmup
  int allowed_ ABSL_GUARDED_BY(mu_) = 0;
  int passed_ ABSL_GUARDED_BY(mu_) = 0;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

// Records, per client, how many forwards had passed when its request finished on the server.
class CompletionObserver final : public RequestObserver {
 public:
  explicit CompletionObserver(StepScorerControl* scorer) : scorer_(scorer) {}
  void OnRequest(const RequestReport& r) override {
    const int passed = scorer_->passed();
    absl::MutexLock l(&mu_);
    passed_at_completion_.emplace(r.client, passed);
  }
  int Passed(const std::string& client) {
    absl::MutexLock l(&mu_);
    auto it = passed_at_completion_.find(client);
    return it == passed_at_completion_.end() ? -1 : it->second;
  }

 private:
  StepScorerControl* const scorer_;
  absl::Mutex mu_;
  std::map<std::string, int> passed_at_completion_ ABSL_GUARDED_BY(mu_);
};

using testing::AsyncCall;

class FairServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("fair_service_test");
    config_.model.dir = TinyModelDir();
    config_.server.listen = "127.0.0.1:0";
    config_.server.http_listen = "";
    config_.admin.http_listen = "";
    config_.admin.grpc_listen = "";
    config_.audit.path = (dir_ / "audit.jsonl").string();
    config_.flags.path = (dir_ / "flags.yaml").string();
    config_.flags.initial.rate_limit_enabled = false;
    config_.rerank.max_documents = 300;
    config_.rerank.max_document_bytes = 65536;
    config_.execution.max_queue_delay_us = 0;
  }
  void TearDown() override {
    scorer_.Open();  // never leave a worker blocked: Shutdown joins it
    server_.reset();
    fs::remove_all(dir_);
  }
  void Start() {
    RerankServer::Options o;
    o.scorer_factory = scorer_.Factory();
    o.observer = &completed_;
    o.config = config_;
    auto s = RerankServer::BuildAndStart(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->data_port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Reranker::NewStub(channel_);
    scorer_.Close();  // warmup is over: from now on the test steps every forward
  }
  Batcher* batcher() { return RerankServerTestPeer(server_.get()).batcher(); }
  void Send(AsyncCall* call) { testing::SendAsync(stub_.get(), call); }
  // Waits (real time, bounded) until `pred` holds.
  template <typename Pred>
  bool Eventually(Pred pred) {
    for (int i = 0; i < 2000; ++i) {
      if (pred()) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return pred();
  }
  static v1::RerankRequest Req(const std::string& client, const std::string& query,
                               const std::vector<std::string>& docs) {
    return testing::RerankReq(client, query, docs);
  }
  // `n` distinct long documents (~`words` words each).
  static std::vector<std::string> LongDocs(int n, int words) {
    const std::vector<std::string> vocab = {"berlin", "people", "river", "city",   "history",
                                            "music",  "winter", "train", "market", "garden"};
    std::vector<std::string> docs;
    for (int i = 0; i < n; ++i) {
      std::string text = absl::StrCat("document ", i);
      for (int w = 0; w < words; ++w) absl::StrAppend(&text, " ", vocab[(i * 7 + w * 3) % 10]);
      docs.push_back(std::move(text));
    }
    return docs;
  }

  fs::path dir_;
  Config config_;
  StepScorerControl scorer_;
  CompletionObserver completed_{&scorer_};
  std::unique_ptr<RerankServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Reranker::Stub> stub_;
};

TEST_F(FairServiceTest, LightClientsOneDocumentRequestOvertakesAHeavyClientsBacklog) {
  config_.execution.max_batch_pairs = 8;
  Start();
  // The heavy request: 300 distinct long documents in chunk_max (tiny model: 128 tokens
  // per pair, so several windows per document).
  AsyncCall heavy;
  heavy.req = Req("heavy", "berlin river history", LongDocs(300, 300));
  heavy.req.set_long_document_mode(v1::LONG_DOCUMENT_MODE_CHUNK_MAX);
  const int before = scorer_.passed();
  Send(&heavy);
  scorer_.WaitBlocked();  // the worker holds heavy's first batch; the rest is queued
  const int heavy_queued = batcher()->queued_rows("heavy");
  ASSERT_GE(heavy_queued, 600) << "300 documents x several windows";

  AsyncCall light;
  light.req = Req("light", "berlin people", {"people live in berlin"});
  Send(&light);
  ASSERT_TRUE(Eventually([&] { return batcher()->queued_rows("light") == 1; }));

  // Step the model one forward at a time until the server has answered the light request
  // (the observer sees it finish; each step waits until the worker is blocked again, so every
  // batch that ended has called back).
  int steps = 0;
  while (completed_.Passed("light") < 0 && steps < 1000) {
    scorer_.Allow(1);
    scorer_.WaitPassed(before + ++steps);
    ASSERT_TRUE(
        Eventually([&] { return scorer_.waiting() > 0 || completed_.Passed("light") >= 0; }));
  }
  ASSERT_GE(completed_.Passed("light"), 0);
  light.done.WaitForNotification();
  ASSERT_TRUE(light.done.HasBeenNotified());
  ASSERT_TRUE(light.status.ok()) << light.status.error_message();
  ASSERT_EQ(light.resp.results_size(), 1);
  // Light went into the batch after the one in flight: a handful of forwards (each batch of 8
  // rows may be split by length), while a FIFO queue would first have run all of heavy's
  // ~100 batches. Heavy is still waiting with nearly all of its rows queued.
  EXPECT_LE(completed_.Passed("light") - before, 6);
  EXPECT_FALSE(heavy.done.HasBeenNotified());
  EXPECT_GE(batcher()->queued_rows("heavy"), heavy_queued - 6 * 8);

  scorer_.Open();
  heavy.done.WaitForNotification();
  ASSERT_TRUE(heavy.status.ok()) << heavy.status.error_message();
  EXPECT_EQ(heavy.resp.results_size(), 5);
}

TEST_F(FairServiceTest, ClientOverItsShareGetsResourceExhaustedWithRetryAfterOthersDoNot) {
  config_.execution.max_batch_pairs = 2;
  config_.execution.max_client_queue_pairs = 10;
  Start();
  AsyncCall first;
  first.req = Req("greedy", "berlin", LongDocs(8, 5));
  Send(&first);
  scorer_.WaitBlocked();  // 2 rows in the worker, 6 queued
  ASSERT_EQ(batcher()->queued_rows("greedy"), 6);

  // 6 + 5 > 10: refused at once, with a retry hint in the trailing metadata.
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  v1::RerankResponse resp;
  grpc::Status over = stub_->Rerank(&ctx, Req("greedy", "berlin", LongDocs(5, 6)), &resp);
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(over.error_message(), HasSubstr("client 'greedy' has 6 pairs queued"));
  EXPECT_THAT(over.error_message(), HasSubstr("execution.max_client_queue_pairs"));
  const auto& trailers = ctx.GetServerTrailingMetadata();
  auto it = trailers.find("retry-after-ms");
  ASSERT_NE(it, trailers.end());
  int64_t retry_ms = 0;
  EXPECT_TRUE(absl::SimpleAtoi(std::string(it->second.data(), it->second.size()), &retry_ms));
  EXPECT_GT(retry_ms, 0);

  // Another client is not affected.
  AsyncCall other;
  other.req = Req("polite", "berlin", LongDocs(5, 6));
  Send(&other);
  ASSERT_TRUE(Eventually([&] { return batcher()->queued_rows("polite") == 5; }));
  scorer_.Open();
  first.done.WaitForNotification();
  other.done.WaitForNotification();
  EXPECT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_TRUE(other.status.ok()) << other.status.error_message();
}

}  // namespace
}  // namespace rerank
