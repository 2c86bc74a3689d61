// RerankEngine unit tests through a fake ScoringQueue: no threads, model or gRPC. The real
// tokenizer (over a vocab this test writes), flags snapshot, score cache, rate limiter (fake
// clock) and an in-memory audit sink; the test decides every score.
#include "server/rerank_engine.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_audit_sink.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_scoring_queue.h"
#include "tests/testing/files.h"
#include "tests/testing/rerank_calls.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using testing::FakeScoringQueue;
using ::testing::FloatEq;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using ::testing::StartsWith;

// Ids are line numbers: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, then the words from 5 on.
constexpr char kVocab[] =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"
    "how\nmany\npeople\nlive\nin\nberlin\n"       // 5..10
    "has\nthe\nweather\nis\nnice\ncats\nword\n";  // 11..17
constexpr int64_t kCls = 2, kSep = 3, kHow = 5, kMany = 6, kPeople = 7, kLive = 8, kIn = 9,
                  kBerlin = 10, kCats = 16, kWord = 17;

// One RequestObserver report per finished request.
class RecordingObserver final : public RequestObserver {
 public:
  void OnRequest(const RequestReport& r) override {
    absl::MutexLock lock(&mu_);
    reports_.push_back(r);
  }
  std::vector<RequestReport> reports() const {
    absl::MutexLock lock(&mu_);
    return reports_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<RequestReport> reports_ ABSL_GUARDED_BY(mu_);
};

// What a `done` callback saw; `calls` counts invocations (the contract is exactly one).
template <typename Response>
struct Outcome {
  int calls = 0;
  absl::Status status = absl::UnknownError("done not called");
  Response response;
};

class RerankEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("rerank_engine_test_", getpid(), "_",
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
    auto limiter = RateLimiter::Create(RateLimiter::Options(), &clock_);
    ASSERT_TRUE(limiter.ok()) << limiter.status();
    rate_limiter_ = *std::move(limiter);

    options_.default_top_n = 3;
    options_.max_documents = 10;
    options_.max_query_bytes = 64;
    options_.max_document_bytes = 256;
    options_.max_batch_requests = 2;
    options_.max_length = 32;
    options_.max_chunks_per_doc = 4;
    options_.chunk_overlap_tokens = 2;
    flags_.rate_limit_enabled = false;  // enabled by the rate-limit tests only
    flags_.cache_enabled = false;
  }
  void TearDown() override {
    engine_.reset();
    fs::remove_all(dir_);
  }

  // (Re)builds the engine over the current options_ and flags_ (StaticFlagSource: a snapshot).
  void Build() {
    flag_source_ = std::make_unique<StaticFlagSource>(flags_);
    RerankEngine::Deps deps;
    deps.tokenizer = tokenizer_.get();
    deps.queue = &queue_;
    deps.flags = flag_source_.get();
    deps.clock = &clock_;
    deps.audit = &audit_;
    deps.cache = cache_.get();
    deps.rate_limiter = rate_limiter_.get();
    deps.observer = &observer_;
    deps.model.name = "tiny";
    deps.model.version = "v1";
    auto engine = RerankEngine::Create(options_, std::move(deps));
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
  }

  // Starts a Rerank; the returned outcome fills in when `done` runs (maybe later, when the test
  // completes the queued job). `req` must outlive the call.
  std::shared_ptr<Outcome<v1::RerankResponse>> Start(const v1::RerankRequest& req,
                                                     const std::string& client = "client-a") {
    auto out = std::make_shared<Outcome<v1::RerankResponse>>();
    CallInfo call;
    call.metadata_client_id = client;
    engine_->Rerank(req, call, [out](absl::Status s, v1::RerankResponse r) {
      ++out->calls;
      out->status = std::move(s);
      out->response = std::move(r);
    });
    return out;
  }
  std::shared_ptr<Outcome<v1::RerankBatchResponse>> StartBatch(
      const v1::RerankBatchRequest& req, const std::string& client = "client-a") {
    auto out = std::make_shared<Outcome<v1::RerankBatchResponse>>();
    CallInfo call;
    call.metadata_client_id = client;
    engine_->RerankBatch(req, call, [out](absl::Status s, v1::RerankBatchResponse r) {
      ++out->calls;
      out->status = std::move(s);
      out->response = std::move(r);
    });
    return out;
  }

  static v1::RerankRequest Req(const std::string& q, const std::vector<std::string>& docs,
                               uint32_t top_n = 0) {
    v1::RerankRequest r = testing::RerankReq("", q, docs);
    r.set_top_n(top_n);
    return r;
  }
  static std::vector<uint32_t> Indices(const v1::RerankResponse& r) {
    std::vector<uint32_t> out;
    for (const auto& x : r.results()) out.push_back(x.index());
    return out;
  }
  static std::vector<float> Scores(const v1::RerankResponse& r) {
    std::vector<float> out;
    for (const auto& x : r.results()) out.push_back(x.score());
    return out;
  }

  fs::path dir_;
  testing::FakeClock clock_;
  testing::FakeAuditSink audit_;
  FakeScoringQueue queue_;
  RecordingObserver observer_;
  std::unique_ptr<WordPieceTokenizer> tokenizer_;
  std::unique_ptr<ScoreCache> cache_;
  std::unique_ptr<RateLimiter> rate_limiter_;
  RerankEngine::Options options_;
  FeatureFlags flags_;
  std::unique_ptr<StaticFlagSource> flag_source_;
  std::unique_ptr<RerankEngine> engine_;
};

const std::vector<std::string> kDocs = {
    "berlin", "the weather", "people", "cats", "nice", "in",
};

TEST_F(RerankEngineTest, SubmitsOneRowPerPairAndRanksByScoreTiesByIndex) {
  Build();
  v1::RerankRequest req = Req("how many people live in berlin", kDocs, /*top_n=*/4);
  req.set_request_id("req-1");
  auto out = Start(req);
  EXPECT_EQ(out->calls, 0) << "done waits for the scores";
  ASSERT_EQ(queue_.num_jobs(), 1u);
  EXPECT_THAT(queue_.rows(0), SizeIs(6));
  EXPECT_THAT(queue_.rows(0)[0],
              ElementsAre(kCls, kHow, kMany, kPeople, kLive, kIn, kBerlin, kSep, kBerlin, kSep));
  EXPECT_THAT(queue_.job(0).rows[0].token_type_ids, ElementsAre(0, 0, 0, 0, 0, 0, 0, 0, 1, 1));
  EXPECT_THAT(queue_.rows(0)[2],
              ElementsAre(kCls, kHow, kMany, kPeople, kLive, kIn, kBerlin, kSep, kPeople, kSep));

  queue_.Complete(0, {1.0f, 3.0f, 2.0f, 3.0f, 0.5f, 2.0f});
  ASSERT_EQ(out->calls, 1);
  ASSERT_TRUE(out->status.ok()) << out->status;
  const v1::RerankResponse& resp = out->response;
  EXPECT_THAT(Indices(resp), ElementsAre(1, 3, 2, 5)) << "score desc, ties by index, top_n 4";
  EXPECT_THAT(Scores(resp), ElementsAre(3.0f, 3.0f, 2.0f, 2.0f));
  EXPECT_EQ(resp.results(0).id(), "d1");
  EXPECT_EQ(resp.results(3).id(), "d5");
  EXPECT_TRUE(resp.results(0).text().empty()) << "text only with return_documents";
  EXPECT_TRUE(resp.reranked());
  EXPECT_EQ(resp.request_id(), "req-1");
  EXPECT_EQ(resp.model_name(), "tiny");
  EXPECT_EQ(resp.model_version(), "v1");
  EXPECT_EQ(resp.cache_hits(), 0u);

  std::vector<RequestReport> reports = observer_.reports();
  ASSERT_THAT(reports, SizeIs(1));
  EXPECT_EQ(reports[0].rpc, "Rerank");
  EXPECT_EQ(reports[0].code, absl::StatusCode::kOk);
  EXPECT_EQ(reports[0].documents, 6);
  EXPECT_EQ(reports[0].pairs_scored, 6);
  EXPECT_TRUE(reports[0].reranked);
  auto events = audit_.EventsOfType("rerank");
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].fields["request_id"], "req-1");
  EXPECT_EQ(events[0].fields["client_id"], "client-a");
  EXPECT_EQ(events[0].fields["success"], true);
  EXPECT_EQ(events[0].fields["top_n"], 4);
}

TEST_F(RerankEngineTest, PassesCallDeadlineAndCancellationToTheJob) {
  Build();
  v1::RerankRequest req = Req("berlin", {"berlin"});
  bool cancelled = false;
  CallInfo call;
  call.metadata_client_id = "c";
  call.deadline = absl::FromUnixSeconds(1700000123);
  call.is_cancelled = [&cancelled] { return cancelled; };
  int calls = 0;
  engine_->Rerank(req, call, [&](absl::Status, v1::RerankResponse) { ++calls; });
  ASSERT_EQ(queue_.num_jobs(), 1u);
  EXPECT_EQ(queue_.job(0).deadline, absl::FromUnixSeconds(1700000123));
  ASSERT_TRUE(queue_.job(0).is_cancelled);
  EXPECT_FALSE(queue_.job(0).is_cancelled());
  cancelled = true;
  EXPECT_TRUE(queue_.job(0).is_cancelled());
  queue_.Fail(0, absl::CancelledError("call cancelled"));
  EXPECT_EQ(calls, 1);
}

TEST_F(RerankEngineTest, AutoScoredLexicalOverlapRanking) {
  queue_.SetAutoScore(&FakeScoringQueue::LexicalOverlap);
  Build();
  auto req = Req("how many people live in berlin",
                 {"berlin has many people", "the weather is nice", "people live in berlin", "cats"},
                 /*top_n=*/10);
  auto out = Start(req);
  ASSERT_EQ(out->calls, 1) << "the fake completed the job inside Submit";
  ASSERT_TRUE(out->status.ok()) << out->status;
  EXPECT_THAT(Indices(out->response), ElementsAre(2, 0, 3, 1)) << "top_n > n returns all";
  EXPECT_THAT(Scores(out->response), ElementsAre(FloatEq(4 - 0.004f), FloatEq(3 - 0.004f),
                                                 FloatEq(-0.001f), FloatEq(-0.004f)));
}

TEST_F(RerankEngineTest, ReturnDocumentsAndSigmoidActivation) {
  Build();
  auto req = Req("berlin", {"berlin", "cats"}, /*top_n=*/2);
  req.set_return_documents(true);
  req.set_score_activation(v1::SCORE_ACTIVATION_SIGMOID);
  auto out = Start(req);
  ASSERT_EQ(queue_.num_jobs(), 1u);
  queue_.Complete(0, {-1.0f, 2.0f});
  ASSERT_TRUE(out->status.ok()) << out->status;
  EXPECT_THAT(Indices(out->response), ElementsAre(1, 0));
  EXPECT_THAT(Scores(out->response), ElementsAre(FloatEq(1.0f / (1.0f + std::exp(-2.0f))),
                                                 FloatEq(1.0f / (1.0f + std::exp(1.0f)))));
  EXPECT_EQ(out->response.results(0).text(), "cats");
  EXPECT_EQ(out->response.results(1).text(), "berlin");
}

TEST_F(RerankEngineTest, TopNZeroMeansTheConfiguredDefault) {
  queue_.SetAutoScore(&FakeScoringQueue::LexicalOverlap);
  Build();
  auto req = Req("berlin", kDocs, /*top_n=*/0);
  auto out = Start(req);
  ASSERT_TRUE(out->status.ok()) << out->status;
  EXPECT_THAT(Indices(out->response), ElementsAre(0, 2, 3)) << "default_top_n = 3; ties by index";
  auto big = Req("berlin", kDocs, /*top_n=*/1000);
  out = Start(big);
  ASSERT_TRUE(out->status.ok()) << out->status;
  EXPECT_THAT(Indices(out->response), SizeIs(kDocs.size()));
}

// --- validation: every bad input names its field; nothing is submitted ---

struct BadCase {
  std::string name;
  std::function<void(v1::RerankRequest*)> mutate;
  std::string message;  // the whole message, field first
};

std::vector<BadCase> BadCases() {
  return {
      {"empty query", [](v1::RerankRequest* r) { r->set_query(" \t\n"); },
       "query: must not be empty"},
      {"query without tokens", [](v1::RerankRequest* r) { r->set_query("\x01\x02"); },
       "query: has no tokens (only whitespace or control characters)"},
      {"no documents", [](v1::RerankRequest* r) { r->clear_documents(); },
       "documents: must contain at least one document"},
      {"too many documents",
       [](v1::RerankRequest* r) {
         while (r->documents_size() < 11) r->add_documents()->set_text("cats");
       },
       "documents: 11 documents exceeds the limit of 10 (rerank.max_documents)"},
      {"oversize query", [](v1::RerankRequest* r) { r->set_query(std::string(65, 'a')); },
       "query: 65 bytes exceeds the limit of 64 (rerank.max_query_bytes)"},
      {"oversize document",
       [](v1::RerankRequest* r) { r->mutable_documents(1)->set_text(std::string(257, 'a')); },
       "documents[1].text: 257 bytes exceeds the limit of 256 (rerank.max_document_bytes)"},
      {"invalid UTF-8 query", [](v1::RerankRequest* r) { r->set_query("ber\xff"); },
       "query: invalid UTF-8 at byte 3"},
      {"invalid UTF-8 text",
       [](v1::RerankRequest* r) { r->mutable_documents(2)->set_text("a\xc3"); },
       "documents[2].text: invalid UTF-8 at byte 1"},
      {"invalid UTF-8 id", [](v1::RerankRequest* r) { r->mutable_documents(0)->set_id("\x80"); },
       "documents[0].id: invalid UTF-8 at byte 0"},
      {"unknown activation",
       [](v1::RerankRequest* r) { r->set_score_activation(static_cast<v1::ScoreActivation>(7)); },
       "score_activation: unknown value 7"},
      {"unknown long-document mode",
       [](v1::RerankRequest* r) {
         r->set_long_document_mode(static_cast<v1::LongDocumentMode>(9));
       },
       "long_document_mode: unknown value 9"},
  };
}

TEST_F(RerankEngineTest, InvalidRequestsNameTheField) {
  Build();
  for (const BadCase& c : BadCases()) {
    SCOPED_TRACE(c.name);
    v1::RerankRequest req = Req("berlin", {"berlin", "cats", "people"});
    c.mutate(&req);
    auto out = Start(req);
    EXPECT_EQ(out->calls, 1);
    EXPECT_EQ(out->status.code(), absl::StatusCode::kInvalidArgument) << out->status;
    EXPECT_EQ(out->status.message(), c.message);
    EXPECT_EQ(out->response.results_size(), 0);
  }
  EXPECT_EQ(queue_.submit_calls(), 0);
  auto events = audit_.EventsOfType("rerank");
  ASSERT_THAT(events, SizeIs(BadCases().size()));
  EXPECT_EQ(events[0].fields["success"], false);
  EXPECT_EQ(events[0].fields["error"], "INVALID_ARGUMENT: query: must not be empty");
}

TEST_F(RerankEngineTest, BatchSubRequestErrorsArePrefixed) {
  Build();
  for (const BadCase& c : BadCases()) {
    SCOPED_TRACE(c.name);
    v1::RerankBatchRequest batch;
    *batch.add_requests() = Req("berlin", {"berlin"});
    v1::RerankRequest* bad = batch.add_requests();
    *bad = Req("berlin", {"berlin", "cats", "people"});
    c.mutate(bad);
    auto out = StartBatch(batch);
    EXPECT_EQ(out->calls, 1);
    EXPECT_EQ(out->status.code(), absl::StatusCode::kInvalidArgument) << out->status;
    EXPECT_EQ(out->status.message(), absl::StrCat("requests[1].", c.message));
    EXPECT_EQ(out->response.responses_size(), 0);
  }
  EXPECT_EQ(queue_.submit_calls(), 0);
}

TEST_F(RerankEngineTest, BatchEnvelopeValidationAndFlag) {
  Build();
  v1::RerankBatchRequest empty;
  auto out = StartBatch(empty);
  EXPECT_EQ(out->status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out->status.message(), "requests: must contain at least one request");

  v1::RerankBatchRequest three;
  for (int i = 0; i < 3; ++i) *three.add_requests() = Req("berlin", {"berlin"});
  out = StartBatch(three);
  EXPECT_EQ(out->status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out->status.message(),
            "requests: 3 requests exceeds the limit of 2 (rerank.max_batch_requests)");
}

// batch.enabled off (the rollback stage) is not a refusal: RerankBatch is still served, each
// sub-request as its own job, the next submitted only when the previous one is scored, so no
// forward mixes two of them.
TEST_F(RerankEngineTest, BatchWithBatchingDisabledScoresSubRequestsOneAfterAnother) {
  flags_.batch_enabled = false;
  Build();
  v1::RerankBatchRequest batch;
  *batch.add_requests() = Req("berlin", {"cats", "berlin"}, 2);
  *batch.add_requests() = Req("people", {"people", "nice", "in"}, 1);
  auto out = StartBatch(batch);
  ASSERT_EQ(queue_.num_jobs(), 1u) << "only the first sub-request is queued";
  EXPECT_THAT(queue_.rows(0), SizeIs(2));
  queue_.Complete(0, {0.1f, 0.9f});
  EXPECT_EQ(out->calls, 0);
  ASSERT_EQ(queue_.num_jobs(), 2u);
  EXPECT_THAT(queue_.rows(1), SizeIs(3));
  EXPECT_THAT(queue_.rows(1)[0], ElementsAre(kCls, kPeople, kSep, kPeople, kSep));
  queue_.Complete(1, {0.2f, 0.3f, 0.7f});
  ASSERT_EQ(out->calls, 1);
  ASSERT_TRUE(out->status.ok()) << out->status;
  ASSERT_EQ(out->response.responses_size(), 2);
  EXPECT_EQ(out->response.responses(0).results(0).index(), 1u);
  EXPECT_FLOAT_EQ(out->response.responses(0).results(0).score(), 0.9f);
  EXPECT_EQ(out->response.responses(1).results(0).index(), 2u);
  EXPECT_FLOAT_EQ(out->response.responses(1).results(0).score(), 0.7f);

  // A failure of a later job fails the RPC, once.
  out = StartBatch(batch);
  ASSERT_EQ(queue_.num_jobs(), 3u);
  queue_.Complete(2, {0.1f, 0.9f});
  ASSERT_EQ(queue_.num_jobs(), 4u);
  queue_.Fail(3, absl::UnavailableError("draining"));
  EXPECT_EQ(out->calls, 1);
  EXPECT_EQ(out->status.code(), absl::StatusCode::kUnavailable);
}

TEST_F(RerankEngineTest, BatchScoresAllSubRequestsInOneJob) {
  Build();
  v1::RerankBatchRequest batch;
  batch.set_request_id("batch-1");
  *batch.add_requests() = Req("berlin", {"cats", "berlin"}, 2);
  *batch.add_requests() = Req("people", {"people", "nice", "in"}, 1);
  auto out = StartBatch(batch);
  ASSERT_EQ(queue_.num_jobs(), 1u);
  ASSERT_THAT(queue_.rows(0), SizeIs(5)) << "2 + 3 rows, in sub-request order";
  EXPECT_THAT(queue_.rows(0)[1], ElementsAre(kCls, kBerlin, kSep, kBerlin, kSep));
  EXPECT_THAT(queue_.rows(0)[2], ElementsAre(kCls, kPeople, kSep, kPeople, kSep));
  EXPECT_EQ(out->calls, 0);
  queue_.Complete(0, {0.1f, 0.9f, 0.2f, 0.3f, 0.7f});
  ASSERT_EQ(out->calls, 1);
  ASSERT_TRUE(out->status.ok()) << out->status;
  ASSERT_EQ(out->response.responses_size(), 2);
  EXPECT_THAT(Indices(out->response.responses(0)), ElementsAre(1, 0));
  EXPECT_THAT(Scores(out->response.responses(0)), ElementsAre(0.9f, 0.1f));
  EXPECT_THAT(Indices(out->response.responses(1)), ElementsAre(2));
  EXPECT_THAT(Scores(out->response.responses(1)), ElementsAre(0.7f));
  auto events = audit_.EventsOfType("rerank");
  ASSERT_THAT(events, SizeIs(2)) << "one event per sub-request";
  EXPECT_EQ(events[1].fields["batch_request_id"], "batch-1");
  EXPECT_EQ(events[1].fields["rpc"], "RerankBatch");
}

// --- feature flags ---

TEST_F(RerankEngineTest, RerankerDisabledPassesTheOriginalOrderThrough) {
  flags_.reranker_enabled = false;
  Build();
  auto req = Req("how many people live in berlin", kDocs, /*top_n=*/4);
  auto out = Start(req);
  ASSERT_EQ(out->calls, 1) << "answered at once";
  ASSERT_TRUE(out->status.ok()) << out->status;
  EXPECT_EQ(queue_.submit_calls(), 0);
  EXPECT_FALSE(out->response.reranked());
  EXPECT_THAT(Indices(out->response), ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(Scores(out->response), ElementsAre(0.0f, 0.0f, 0.0f, 0.0f));
  EXPECT_EQ(out->response.results(2).id(), "d2");
  ASSERT_THAT(observer_.reports(), SizeIs(1));
  EXPECT_FALSE(observer_.reports()[0].reranked);
  EXPECT_EQ(observer_.reports()[0].pairs_scored, 0);
  auto events = audit_.EventsOfType("rerank");
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].fields["reranked"], false);
  EXPECT_EQ(events[0].fields["success"], true);
}

TEST_F(RerankEngineTest, OverfetchScoresOnlyTheFirstCandidates) {
  flags_.overfetch_enabled = true;
  flags_.overfetch_candidates = 4;
  flags_.overfetch_top_n = 2;
  Build();
  auto req = Req("berlin", kDocs);  // top_n 0: the overfetch default
  auto out = Start(req);
  ASSERT_EQ(queue_.num_jobs(), 1u);
  ASSERT_THAT(queue_.rows(0), SizeIs(4)) << "only the first overfetch_candidates are scored";
  EXPECT_THAT(queue_.rows(0)[3], ElementsAre(kCls, kBerlin, kSep, kCats, kSep));
  queue_.Complete(0, {0.1f, 0.4f, 0.3f, 0.2f});
  ASSERT_TRUE(out->status.ok()) << out->status;
  EXPECT_THAT(Indices(out->response), ElementsAre(1, 2)) << "overfetch top_n = 2";

  auto all = Req("berlin", kDocs, /*top_n=*/10);
  out = Start(all);
  ASSERT_EQ(queue_.num_jobs(), 2u);
  queue_.Complete(1, {0.1f, 0.4f, 0.3f, 0.2f});
  ASSERT_TRUE(out->status.ok()) << out->status;
  EXPECT_THAT(Indices(out->response), ElementsAre(1, 2, 3, 0))
      << "documents past the candidates are never returned";
  EXPECT_EQ(observer_.reports().back().documents, 4);
}

// --- score cache ---

TEST_F(RerankEngineTest, IdenticalRequestIsServedFromTheCache) {
  flags_.cache_enabled = true;
  flags_.cache_traffic_percent = 100;
  queue_.SetAutoScore(&FakeScoringQueue::LexicalOverlap);
  Build();
  auto req = Req("how many people live in berlin",
                 {"berlin has many people", "cats", "people live in berlin"}, 3);
  auto first = Start(req);
  ASSERT_TRUE(first->status.ok()) << first->status;
  EXPECT_EQ(queue_.num_jobs(), 1u);
  EXPECT_EQ(first->response.cache_hits(), 0u);

  auto second = Start(req);
  ASSERT_EQ(second->calls, 1);
  ASSERT_TRUE(second->status.ok()) << second->status;
  EXPECT_EQ(queue_.submit_calls(), 1) << "all pairs cached: nothing submitted";
  EXPECT_EQ(second->response.cache_hits(), 3u);
  EXPECT_THAT(Indices(second->response), ElementsAreArray(Indices(first->response)));
  EXPECT_THAT(Scores(second->response), ElementsAreArray(Scores(first->response)));
  EXPECT_THAT(Indices(second->response), ElementsAre(2, 0, 1));
  EXPECT_EQ(observer_.reports().back().cache_hits, 3);
  EXPECT_EQ(observer_.reports().back().pairs_scored, 0);
}

TEST_F(RerankEngineTest, PartialCacheHitSubmitsOnlyTheMisses) {
  flags_.cache_enabled = true;
  flags_.cache_traffic_percent = 100;
  Build();
  auto req = Req("berlin", {"berlin", "cats"}, 5);
  auto first = Start(req);
  queue_.Complete(0, {5.0f, 1.0f});
  ASSERT_TRUE(first->status.ok()) << first->status;

  auto overlapping = Req("berlin", {"cats", "people", "berlin"}, 5);
  auto second = Start(overlapping);
  ASSERT_EQ(queue_.num_jobs(), 2u);
  ASSERT_THAT(queue_.rows(1), SizeIs(1)) << "only the uncached document";
  EXPECT_THAT(queue_.rows(1)[0], ElementsAre(kCls, kBerlin, kSep, kPeople, kSep));
  EXPECT_EQ(second->calls, 0);
  queue_.Complete(1, {3.0f});
  ASSERT_EQ(second->calls, 1);
  ASSERT_TRUE(second->status.ok()) << second->status;
  EXPECT_EQ(second->response.cache_hits(), 2u);
  EXPECT_THAT(Indices(second->response), ElementsAre(2, 1, 0));
  EXPECT_THAT(Scores(second->response), ElementsAre(5.0f, 3.0f, 1.0f)) << "cached scores reused";
  EXPECT_EQ(observer_.reports().back().cache_lookups, 3);
  EXPECT_EQ(observer_.reports().back().pairs_scored, 1);
  EXPECT_EQ(cache_->GetStats().size, 3u) << "the new score was inserted";
}

TEST_F(RerankEngineTest, CacheRolloutPercentDecidesWhoUsesTheCache) {
  flags_.cache_enabled = true;
  flags_.cache_traffic_percent = 0;
  queue_.SetAutoScore(&FakeScoringQueue::LexicalOverlap);
  Build();
  auto req = Req("berlin", {"berlin", "cats"});
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Start(req)->status.ok());
  EXPECT_EQ(queue_.submit_calls(), 2) << "0%: every request is scored";
  EXPECT_EQ(cache_->GetStats().size, 0u) << "and nothing is stored";

  flags_.cache_traffic_percent = 100;
  Build();
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Start(req)->status.ok());
  EXPECT_EQ(queue_.submit_calls(), 3) << "100%: the second request is a full hit";
  EXPECT_EQ(cache_->GetStats().size, 2u);

  flags_.cache_enabled = false;  // the master switch wins over the percentage
  Build();
  ASSERT_TRUE(Start(req)->status.ok());
  EXPECT_EQ(queue_.submit_calls(), 4);
}

TEST_F(RerankEngineTest, FailedScoringIsNotCached) {
  flags_.cache_enabled = true;
  flags_.cache_traffic_percent = 100;
  Build();
  auto req = Req("berlin", {"berlin"});
  auto out = Start(req);
  queue_.Fail(0, absl::DeadlineExceededError("request deadline passed while queued"));
  ASSERT_EQ(out->calls, 1);
  EXPECT_EQ(out->status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(out->status.message(), "request deadline passed while queued");
  EXPECT_EQ(out->response.results_size(), 0);
  EXPECT_EQ(cache_->GetStats().size, 0u);
  Start(req);
  EXPECT_EQ(queue_.num_jobs(), 2u) << "the failed pair is scored again";
}

// --- rate limiting ---

TEST_F(RerankEngineTest, RateLimitedRequestCarriesRetryAfter) {
  flags_.rate_limit_enabled = true;
  flags_.rate_limit_per_minute = 2;  // one token every 30 s
  queue_.SetAutoScore(&FakeScoringQueue::LexicalOverlap);
  Build();
  auto req = Req("berlin", {"berlin"});
  ASSERT_TRUE(Start(req, "c1")->status.ok());
  ASSERT_TRUE(Start(req, "c1")->status.ok());
  auto limited = Start(req, "c1");
  ASSERT_EQ(limited->calls, 1);
  EXPECT_EQ(limited->status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(limited->status.message(),
            "rate limit of 2 requests/minute exceeded for client 'c1'; retry after 30.000s");
  auto payload = limited->status.GetPayload(kRetryAfterPayload);
  ASSERT_TRUE(payload.has_value());
  EXPECT_EQ(std::string(*payload), "30000");
  EXPECT_EQ(queue_.submit_calls(), 2) << "a limited request is not scored";
  EXPECT_TRUE(observer_.reports().back().rate_limited);

  auto violations = audit_.EventsOfType("rate_limit_violation");
  ASSERT_THAT(violations, SizeIs(1));
  EXPECT_EQ(violations[0].fields["client_id"], "c1");
  EXPECT_EQ(violations[0].fields["retry_after_ms"], 30000);
  EXPECT_THAT(audit_.EventsOfType("rerank"), SizeIs(2)) << "no rerank event when limited";

  EXPECT_TRUE(Start(req, "c2")->status.ok()) << "buckets are per client";
  clock_.Advance(absl::Seconds(10));
  auto later = Start(req, "c1");
  ASSERT_EQ(later->status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(std::string(*later->status.GetPayload(kRetryAfterPayload)), "20000");
  clock_.Advance(absl::Seconds(20));
  EXPECT_TRUE(Start(req, "c1")->status.ok()) << "one token refilled after 30 s";
}

TEST_F(RerankEngineTest, RateLimitOffLetsEverythingThrough) {
  flags_.rate_limit_enabled = false;
  flags_.rate_limit_per_minute = 1;
  queue_.SetAutoScore(&FakeScoringQueue::LexicalOverlap);
  Build();
  auto req = Req("berlin", {"berlin"});
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(Start(req, "c1")->status.ok());
  EXPECT_EQ(queue_.submit_calls(), 5);
}

// --- long documents ---

// "word" x n, then "berlin": the match sits past the first window.
std::string LongDoc(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) absl::StrAppend(&s, "word ");
  return s + "berlin";
}

TEST_F(RerankEngineTest, ChunkMaxScoresEveryWindowAndKeepsTheMax) {
  options_.max_length = 16;  // with a 1-token query: 12 document tokens per window
  Build();
  auto req = Req("berlin", {"cats", LongDoc(29)}, 2);  // the long doc has 30 tokens
  req.set_long_document_mode(v1::LONG_DOCUMENT_MODE_CHUNK_MAX);
  auto out = Start(req);
  ASSERT_EQ(queue_.num_jobs(), 1u);
  std::vector<std::vector<int64_t>> rows = queue_.rows(0);
  // Windows of 12 tokens starting 10 apart (overlap 2): [0,12) [10,22) [20,30).
  ASSERT_THAT(rows, SizeIs(4)) << "1 row for the short document, 3 windows for the long one";
  std::vector<int64_t> full_window = {kCls, kBerlin, kSep};
  for (int i = 0; i < 12; ++i) full_window.push_back(kWord);
  full_window.push_back(kSep);
  EXPECT_THAT(rows[1], ElementsAreArray(full_window));
  EXPECT_THAT(rows[2], ElementsAreArray(full_window));
  std::vector<int64_t> last_window = {kCls, kBerlin, kSep};
  for (int i = 0; i < 9; ++i) last_window.push_back(kWord);
  last_window.push_back(kBerlin);
  last_window.push_back(kSep);
  EXPECT_THAT(rows[3], ElementsAreArray(last_window)) << "the last window ends with the match";
  queue_.Complete(0, {0.5f, 0.1f, 0.3f, 0.9f});
  ASSERT_TRUE(out->status.ok()) << out->status;
  EXPECT_THAT(Indices(out->response), ElementsAre(1, 0));
  EXPECT_THAT(Scores(out->response), ElementsAre(0.9f, 0.5f)) << "max over the windows";
  EXPECT_EQ(observer_.reports().back().pairs_scored, 4);
}

TEST_F(RerankEngineTest, ChunksAreCappedAtMaxChunksPerDoc) {
  options_.max_length = 16;
  options_.max_chunks_per_doc = 2;
  Build();
  auto req = Req("berlin", {LongDoc(49)}, 1);  // 50 tokens: 5 windows uncapped
  req.set_long_document_mode(v1::LONG_DOCUMENT_MODE_CHUNK_MAX);
  auto out = Start(req);
  ASSERT_EQ(queue_.num_jobs(), 1u) << out->status;
  EXPECT_THAT(queue_.rows(0), SizeIs(2));
  queue_.Complete(0, {0.25f, 0.5f});
  ASSERT_TRUE(out->status.ok()) << out->status;
  EXPECT_THAT(Scores(out->response), ElementsAre(0.5f));
}

TEST_F(RerankEngineTest, TruncateKeepsTheFirstTokens) {
  options_.max_length = 16;
  Build();
  auto req = Req("berlin", {"cats", LongDoc(29)}, 2);
  req.set_long_document_mode(v1::LONG_DOCUMENT_MODE_TRUNCATE);
  auto out = Start(req);
  ASSERT_EQ(queue_.num_jobs(), 1u);
  std::vector<std::vector<int64_t>> rows = queue_.rows(0);
  ASSERT_THAT(rows, SizeIs(2)) << "one row per document";
  ASSERT_THAT(rows[1], SizeIs(16)) << "cut to max_length";
  EXPECT_EQ(rows[1][3], kWord);
  EXPECT_EQ(rows[1][14], kWord) << "the match at the end was cut";
  EXPECT_EQ(rows[1][15], kSep);
  queue_.Complete(0, {0.5f, 0.1f});
  ASSERT_TRUE(out->status.ok()) << out->status;
  EXPECT_THAT(Indices(out->response), ElementsAre(0, 1));
}

TEST_F(RerankEngineTest, LongDocumentModeDefaultsFromOptions) {
  options_.max_length = 16;
  options_.chunk_long_documents = true;
  Build();
  auto req = Req("berlin", {LongDoc(29)}, 1);  // UNSPECIFIED: the configured default
  Start(req);
  ASSERT_EQ(queue_.num_jobs(), 1u);
  EXPECT_THAT(queue_.rows(0), SizeIs(3));

  options_.chunk_long_documents = false;
  Build();
  Start(req);
  ASSERT_EQ(queue_.num_jobs(), 2u);
  EXPECT_THAT(queue_.rows(1), SizeIs(1));
}

TEST_F(RerankEngineTest, ChunkAndTruncateScoresAreCachedApart) {
  options_.max_length = 16;
  flags_.cache_enabled = true;
  flags_.cache_traffic_percent = 100;
  queue_.SetAutoScore(&FakeScoringQueue::LexicalOverlap);
  Build();
  auto req = Req("berlin", {LongDoc(29)}, 1);
  req.set_long_document_mode(v1::LONG_DOCUMENT_MODE_TRUNCATE);
  auto truncated = Start(req);
  req.set_long_document_mode(v1::LONG_DOCUMENT_MODE_CHUNK_MAX);
  auto chunked = Start(req);
  EXPECT_EQ(queue_.submit_calls(), 2) << "a truncate score must not answer a chunk_max request";
  ASSERT_TRUE(truncated->status.ok());
  ASSERT_TRUE(chunked->status.ok());
  EXPECT_THAT(Scores(truncated->response), ElementsAre(FloatEq(-0.012f)));
  EXPECT_THAT(Scores(chunked->response), ElementsAre(FloatEq(1 - 0.010f)));
}

// --- the queue's answers ---

TEST_F(RerankEngineTest, QueueRejectionIsPropagated) {
  Build();
  auto req = Req("berlin", {"berlin", "cats"});
  queue_.RejectWith(absl::ResourceExhaustedError("scoring queue is full; retry with backoff"));
  auto full = Start(req);
  ASSERT_EQ(full->calls, 1);
  EXPECT_EQ(full->status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(full->status.message(), "scoring queue is full; retry with backoff");
  EXPECT_FALSE(full->status.GetPayload(kRetryAfterPayload).has_value());
  EXPECT_FALSE(observer_.reports().back().rate_limited) << "a full queue is not a rate limit";

  queue_.RejectWith(absl::UnavailableError("server is draining"));
  auto draining = Start(req);
  ASSERT_EQ(draining->calls, 1);
  EXPECT_EQ(draining->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(queue_.submit_calls(), 2);
  EXPECT_EQ(queue_.num_jobs(), 0u);
  auto events = audit_.EventsOfType("rerank");
  ASSERT_THAT(events, SizeIs(2));
  EXPECT_EQ(events[1].fields["success"], false);
  EXPECT_EQ(events[1].fields["error"], "UNAVAILABLE: server is draining");
}

TEST_F(RerankEngineTest, QueueErrorIsPropagatedOnce) {
  Build();
  v1::RerankBatchRequest batch;
  *batch.add_requests() = Req("berlin", {"berlin"});
  *batch.add_requests() = Req("cats", {"cats"});
  auto out = StartBatch(batch);
  ASSERT_EQ(queue_.num_jobs(), 1u);
  queue_.Fail(0, absl::InternalError("inference failed: boom"));
  ASSERT_EQ(out->calls, 1);
  EXPECT_EQ(out->status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(out->status.message(), "inference failed: boom");
  EXPECT_EQ(out->response.responses_size(), 0);
  EXPECT_EQ(observer_.reports().back().code, absl::StatusCode::kInternal);
  EXPECT_FALSE(observer_.reports().back().reranked);
}

TEST_F(RerankEngineTest, CreateRequiresItsDependencies) {
  RerankEngine::Deps deps;
  deps.tokenizer = tokenizer_.get();
  auto engine = RerankEngine::Create(options_, deps);
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
  StaticFlagSource flags{FeatureFlags()};
  deps.queue = &queue_;
  deps.flags = &flags;
  deps.clock = &clock_;
  deps.audit = &audit_;
  EXPECT_TRUE(RerankEngine::Create(options_, deps).ok()) << "cache, limiter, observer optional";
  RerankEngine::Options bad = options_;
  bad.max_chunks_per_doc = 0;
  EXPECT_THAT(std::string(RerankEngine::Create(bad, deps).status().message()),
              StartsWith("rerank.max_chunks_per_doc"));
}

}  // namespace
}  // namespace rerank
