// Fair scheduling in the Batcher (server/batcher.h): per-client queues drained by deficit round
// robin in tokens, per-client weights, the per-client cap with its retry hint, admission checks
// and the token bound on a batch. A gated fake scorer makes the interleavings deterministic.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/batcher.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_scorer.h"

namespace rerank {
namespace {

using testing::FakeClock;
using testing::FakeScorerControl;
using ::testing::HasSubstr;

// A row of exactly `len` tokens: [CLS] q [SEP] d... [SEP].
Encoding RowOfLength(int len, int64_t fill = 2000) {
  Encoding e;
  e.input_ids = {101, 1000, 102};
  e.token_type_ids = {0, 0, 0};
  while (static_cast<int>(e.input_ids.size()) < len - 1) {
    e.input_ids.push_back(fill);
    e.token_type_ids.push_back(1);
  }
  e.input_ids.push_back(102);
  e.token_type_ids.push_back(1);
  return e;
}

// `n` distinct rows (no de-duplication between them) of `len` tokens.
std::vector<Encoding> Rows(int n, int len, int64_t first_fill) {
  std::vector<Encoding> rows;
  for (int i = 0; i < n; ++i) rows.push_back(RowOfLength(len, first_fill + i));
  return rows;
}

// A job's outcome plus a snapshot taken inside `done` (on the worker thread).
struct Result {
  absl::Notification done;
  absl::StatusOr<std::vector<float>> value;
  int score_calls_at_done = -1;
  int other_queued_at_done = -1;
};

class FairBatcherTest : public ::testing::Test {
 protected:
  std::unique_ptr<Batcher> Make(Batcher::Options o) {
    o.max_queue_delay = absl::ZeroDuration();
    auto b = Batcher::Create(o, control_.Factory(), &clock_, nullptr);
    EXPECT_TRUE(b.ok()) << b.status();
    return *std::move(b);
  }
  // A job from `client`; when done, records the scorer's call count and how many rows
  // `watch` (another client) still has queued.
  std::shared_ptr<ScoringJob> Job(const std::string& client, std::vector<Encoding> rows,
                                  Result* result, const std::string& watch = "") {
    auto job = std::make_shared<ScoringJob>();
    job->client = client;
    job->rows = std::move(rows);
    job->done = [this, result, watch](absl::StatusOr<std::vector<float>> v) {
      result->score_calls_at_done = control_.started();
      if (!watch.empty()) result->other_queued_at_done = batcher_->queued_rows(watch);
      result->value = std::move(v);
      result->done.Notify();
    };
    return job;
  }
  // Blocks the single worker on a one-row job from client "blocker" (gated scorer).
  void OccupyWorker(Result* r) {
    control_.Gate();
    ASSERT_TRUE(batcher_->Submit(Job("blocker", Rows(1, 8, 9000), r)).ok());
    control_.WaitForCalls(1);
  }

  FakeClock clock_;
  FakeScorerControl control_;
  std::unique_ptr<Batcher> batcher_;
};

TEST_F(FairBatcherTest, OneRowRequestIsServedInTheNextBatchNotAfterAnotherClientsBacklog) {
  Batcher::Options o;
  o.max_batch_pairs = 4;
  o.max_batch_tokens = 1 << 20;
  o.fair_quantum_tokens = 64;  // one heavy row per turn
  batcher_ = Make(o);
  control_.Gate();
  Result heavy, light;
  ASSERT_TRUE(batcher_->Submit(Job("heavy", Rows(40, 64, 3000), &heavy)).ok());
  control_.WaitForCalls(1);  // the worker holds heavy's first batch (4 rows)
  ASSERT_TRUE(batcher_->Submit(Job("light", Rows(1, 16, 7000), &light, "heavy")).ok());
  EXPECT_EQ(batcher_->queued_rows(), 36 + 1);
  EXPECT_EQ(batcher_->queued_rows("light"), 1);
  control_.Release();
  light.done.WaitForNotification();
  heavy.done.WaitForNotification();
  ASSERT_TRUE(light.value.ok()) << light.value.status();
  ASSERT_TRUE(heavy.value.ok()) << heavy.value.status();
  // Light was in the batch right after the one in flight: two forwards, not ten (FIFO would
  // have run all 40 heavy rows first), and heavy still had most of its rows queued.
  EXPECT_EQ(light.score_calls_at_done, 2);
  EXPECT_GE(light.other_queued_at_done, 30);
  EXPECT_EQ(control_.rows_scored(), 41);
}

TEST_F(FairBatcherTest, ASparseClientsFirstTurnComesBeforeTheBackloggedClients) {
  Batcher::Options o;
  o.max_batch_pairs = 4;
  o.max_batch_tokens = 1 << 20;
  o.fair_quantum_tokens = 64;  // one heavy row per turn; the light request fits in one turn
  batcher_ = Make(o);
  control_.Gate();
  Result h1, h2, light;
  ASSERT_TRUE(batcher_->Submit(Job("h1", Rows(40, 64, 1000), &h1)).ok());
  control_.WaitForCalls(1);  // batch 1: four of h1's rows
  ASSERT_TRUE(batcher_->Submit(Job("h2", Rows(40, 64, 2000), &h2)).ok());
  ASSERT_TRUE(batcher_->Submit(Job("light", Rows(3, 16, 7000), &light, "h1")).ok());
  control_.Release();
  light.done.WaitForNotification();
  // Batch 2 is h2's first turn (1 row) and light's (3 rows); h1, which stayed backlogged, waits.
  // Round robin without the sparse-client turn would have given h1 a row in batch 2 and again
  // in batch 3, which light would have needed for its last row.
  EXPECT_EQ(light.other_queued_at_done, 36);
  h1.done.WaitForNotification();
  h2.done.WaitForNotification();
}

// Job completion per forward: batch 2 below holds seven of a backlogged heavy client's 64-token
// rows and a light client's one row of `light_len` tokens, planned as two micro-batches (one
// would pad the heavy rows far past their length, or the light row is planned on its own).
class FairCompletionTest : public FairBatcherTest {
 protected:
  // Batch 1: eight heavy rows (two turns of 256 tokens), the worker blocks in its forward.
  // Batch 2: light's first turn (its whole job) and seven more heavy rows (max_batch_pairs 8).
  // Returns when both jobs are done.
  void Run(int light_len, Result* heavy, Result* light) {
    Batcher::Options o;
    o.max_batch_pairs = 8;
    o.max_batch_tokens = 1 << 20;
    o.fair_quantum_tokens = 256;  // four heavy rows per turn; light's row fits in one turn
    batcher_ = Make(o);
    control_.Gate();
    ASSERT_TRUE(batcher_->Submit(Job("heavy", Rows(40, 64, 3000), heavy)).ok());
    control_.WaitForCalls(1);
    ASSERT_TRUE(batcher_->Submit(Job("light", Rows(1, light_len, 7000), light, "heavy")).ok());
    control_.Release();
    light->done.WaitForNotification();
    heavy->done.WaitForNotification();
    ASSERT_TRUE(light->value.ok()) << light->value.status();
    ASSERT_TRUE(heavy->value.ok()) << heavy->value.status();
    ASSERT_EQ(light->value->size(), 1u);
    EXPECT_EQ(heavy->value->size(), 40u);
    EXPECT_EQ(control_.rows_scored(), 41);
    // Batch 2 really was split: its forwards are (1 x light_len) and (7 x 64), in some order.
    const std::vector<FakeScorerControl::Call> calls = control_.calls();
    ASSERT_GE(calls.size(), 3u);
    std::vector<std::pair<int64_t, int64_t>> batch2 = {{calls[1].rows, calls[1].seq_len},
                                                       {calls[2].rows, calls[2].seq_len}};
    EXPECT_THAT(batch2,
                ::testing::UnorderedElementsAre(std::make_pair(int64_t{1}, int64_t{light_len}),
                                                std::make_pair(int64_t{7}, int64_t{64})));
  }
};

TEST_F(FairCompletionTest, AJobIsDoneAfterTheForwardHoldingItsLastRowNotAfterItsWholeBatch) {
  // Light's row is the shortest, so length order already puts its forward first; it must not
  // wait for the heavy forward behind it (the old batcher completed jobs after the whole batch:
  // 3 forwards started by then).
  Result heavy, light;
  Run(16, &heavy, &light);
  EXPECT_EQ(light.score_calls_at_done, 2);
  EXPECT_EQ(light.other_queued_at_done, 40 - 8 - 7);
}

TEST_F(FairCompletionTest, ADrainedClientsRowsRunBeforeTheBackloggedClientsInTheSameBatch) {
  // Light's row is longer than heavy's: in length order its forward would run second. Its
  // client has nothing else queued while heavy stays backlogged, so its forward goes first.
  Result heavy, light;
  Run(200, &heavy, &light);
  EXPECT_EQ(light.score_calls_at_done, 2);
  const std::vector<FakeScorerControl::Call> calls = control_.calls();
  EXPECT_EQ(calls[1].rows, 1);
  EXPECT_EQ(calls[1].seq_len, 200);
}

TEST_F(FairCompletionTest, AFailedForwardFailsOnlyTheJobsItHeldAndAtOnce) {
  // Batch 2's first forward (light's) fails: light fails right then, and heavy's forward behind
  // it still runs, so heavy's job succeeds.
  control_.FailCall(2, absl::InternalError("forward failed"));
  Result heavy, light;
  Batcher::Options o;
  o.max_batch_pairs = 8;
  o.max_batch_tokens = 1 << 20;
  o.fair_quantum_tokens = 256;
  batcher_ = Make(o);
  control_.Gate();
  ASSERT_TRUE(batcher_->Submit(Job("heavy", Rows(40, 64, 3000), &heavy)).ok());
  control_.WaitForCalls(1);
  ASSERT_TRUE(batcher_->Submit(Job("light", Rows(1, 200, 7000), &light, "heavy")).ok());
  control_.Release();
  light.done.WaitForNotification();
  heavy.done.WaitForNotification();
  EXPECT_EQ(light.value.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(light.score_calls_at_done, 2);
  ASSERT_TRUE(heavy.value.ok()) << heavy.value.status();
  EXPECT_EQ(heavy.value->size(), 40u);
}

TEST_F(FairBatcherTest, BackloggedClientsShareTheModelByWeight) {
  Batcher::Options o;
  o.max_batch_pairs = 8;
  o.max_batch_tokens = 1 << 20;
  o.fair_quantum_tokens = 100;  // one row of 100 tokens per turn at weight 1
  o.client_weights = {{"gold", 3}};
  batcher_ = Make(o);
  Result blocker, gold, plain;
  OccupyWorker(&blocker);
  ASSERT_TRUE(batcher_->Submit(Job("gold", Rows(40, 100, 1000), &gold, "plain")).ok());
  ASSERT_TRUE(batcher_->Submit(Job("plain", Rows(40, 100, 5000), &plain, "gold")).ok());
  control_.Release();
  gold.done.WaitForNotification();
  plain.done.WaitForNotification();
  ASSERT_TRUE(gold.value.ok() && plain.value.ok());
  // Turns go gold x3, plain x1: when gold's 40th row is scored plain has had ~13-16 of its
  // 40 (the batch holding gold's last row may carry a few of plain's). Equal weights would
  // leave plain with at most one batch (8 rows) to go.
  EXPECT_GE(gold.other_queued_at_done, 24);
  EXPECT_LE(gold.other_queued_at_done, 27);
  EXPECT_EQ(plain.other_queued_at_done, 0);
}

TEST_F(FairBatcherTest, EqualWeightsAlternate) {
  Batcher::Options o;
  o.max_batch_pairs = 8;
  o.max_batch_tokens = 1 << 20;
  o.fair_quantum_tokens = 100;
  batcher_ = Make(o);
  Result blocker, a, b;
  OccupyWorker(&blocker);
  ASSERT_TRUE(batcher_->Submit(Job("a", Rows(40, 100, 1000), &a, "b")).ok());
  ASSERT_TRUE(batcher_->Submit(Job("b", Rows(40, 100, 5000), &b, "a")).ok());
  control_.Release();
  a.done.WaitForNotification();
  b.done.WaitForNotification();
  // a's last row and b's last row are one turn apart: both finish in the last batch.
  EXPECT_LE(a.other_queued_at_done, 1);
}

TEST_F(FairBatcherTest, ClientOverItsCapAloneIsTurnedAwayWithARetryHint) {
  Batcher::Options o;
  o.max_queue_pairs = 100;
  o.max_client_queue_pairs = 5;
  batcher_ = Make(o);
  Result blocker, a1, b1, c1;
  OccupyWorker(&blocker);
  ASSERT_TRUE(batcher_->Submit(Job("a", Rows(3, 10, 100), &a1)).ok());
  // a's next 3 rows would make 6 > 5: only a is refused, before and at Submit.
  Result unused;
  absl::Status over = batcher_->Submit(Job("a", Rows(3, 10, 200), &unused));
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.message(), HasSubstr("client 'a' has 3 pairs queued"));
  EXPECT_THAT(over.message(), HasSubstr("execution.max_client_queue_pairs"));
  auto hint = over.GetPayload(kQueueRetryAfterPayload);
  ASSERT_TRUE(hint.has_value());
  int64_t retry_ms = 0;
  ASSERT_TRUE(absl::SimpleAtoi(std::string(*hint), &retry_ms)) << *hint;
  EXPECT_GE(retry_ms, 10);
  EXPECT_EQ(batcher_->CheckAdmission("a", 3).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(batcher_->CheckAdmission("a", 2).ok());
  EXPECT_TRUE(batcher_->CheckAdmission("b", 5).ok());
  ASSERT_TRUE(batcher_->Submit(Job("b", Rows(3, 10, 300), &b1)).ok());
  // A job over the cap on its own still runs when its client has nothing queued.
  ASSERT_TRUE(batcher_->Submit(Job("c", Rows(8, 10, 400), &c1)).ok());
  EXPECT_EQ(batcher_->CheckAdmission("c", 1).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(batcher_->queued_rows(), 3 + 3 + 8);
  control_.Release();
  for (Result* r : {&blocker, &a1, &b1, &c1}) {
    r->done.WaitForNotification();
    EXPECT_TRUE(r->value.ok()) << r->value.status();
  }
  // Once a's rows are scored, a is admitted again.
  EXPECT_TRUE(batcher_->CheckAdmission("a", 5).ok());
}

TEST_F(FairBatcherTest, FullQueueCarriesARetryHintAndDrainingIsUnavailable) {
  Batcher::Options o;
  o.max_queue_pairs = 4;
  o.max_client_queue_pairs = 0;  // no per-client cap
  batcher_ = Make(o);
  Result blocker, a, unused;
  OccupyWorker(&blocker);
  ASSERT_TRUE(batcher_->Submit(Job("a", Rows(4, 10, 100), &a)).ok());
  absl::Status full = batcher_->Submit(Job("b", Rows(1, 10, 200), &unused));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.message(), HasSubstr("queue is full"));
  EXPECT_TRUE(full.GetPayload(kQueueRetryAfterPayload).has_value());
  EXPECT_EQ(batcher_->CheckAdmission("b", 1).code(), absl::StatusCode::kResourceExhausted);
  control_.Release();
  a.done.WaitForNotification();
  EXPECT_TRUE(batcher_->Drain(absl::Seconds(10)));
  EXPECT_EQ(batcher_->CheckAdmission("b", 1).code(), absl::StatusCode::kUnavailable);
}

TEST_F(FairBatcherTest, RetryHintFollowsTheMeasuredRowTime) {
  // A scorer that takes 10 ms of (fake) time per row.
  FakeClock clock;
  struct SlowScorer final : public Scorer {
    FakeClock* clock;
    absl::StatusOr<std::vector<float>> Score(const ScoreBatch& b) override {
      clock->Advance(absl::Milliseconds(10) * b.rows);
      return std::vector<float>(b.rows, 0.0f);
    }
  };
  Batcher::Options o;
  o.max_queue_delay = absl::ZeroDuration();
  o.max_queue_pairs = 1000;
  o.max_client_queue_pairs = 10;
  auto made = Batcher::Create(
      o,
      [&clock]() -> absl::StatusOr<std::unique_ptr<Scorer>> {
        auto s = std::make_unique<SlowScorer>();
        s->clock = &clock;
        return std::unique_ptr<Scorer>(std::move(s));
      },
      &clock, nullptr);
  ASSERT_TRUE(made.ok()) << made.status();
  std::unique_ptr<Batcher> b = *std::move(made);
  // Measure: one job of 4 rows (40 ms, 10 ms per row).
  absl::Notification first_done;
  auto first = std::make_shared<ScoringJob>();
  first->client = "a";
  first->rows = Rows(4, 10, 100);
  first->done = [&](absl::StatusOr<std::vector<float>>) { first_done.Notify(); };
  ASSERT_TRUE(b->Submit(first).ok());
  first_done.WaitForNotification();
  // The worker records the measurement just after `done`; until then the hint is a default.
  // Admission queues nothing: ask for 1010 rows, 10 more than the queue holds.
  int64_t retry_ms = 0;
  for (int i = 0; i < 400 && retry_ms != 100; ++i) {
    absl::Status s = b->CheckAdmission("a", 1010);
    ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
    auto hint = s.GetPayload(kQueueRetryAfterPayload);
    ASSERT_TRUE(hint.has_value());
    ASSERT_TRUE(absl::SimpleAtoi(std::string(*hint), &retry_ms)) << *hint;
    if (retry_ms != 100) absl::SleepFor(absl::Milliseconds(5));
  }
  // 10 rows x 10 ms on one worker.
  EXPECT_EQ(retry_ms, 100);
}

TEST_F(FairBatcherTest, BatchIsBoundedInTokens) {
  struct Recorder final : public BatcherObserver {
    absl::Mutex mu;
    std::vector<BatchReport> reports ABSL_GUARDED_BY(mu);
    void OnBatch(const BatchReport& r) override {
      absl::MutexLock l(&mu);
      reports.push_back(r);
    }
    void OnJobDropped(absl::StatusCode) override {}
  } recorder;
  Batcher::Options o;
  o.max_queue_delay = absl::ZeroDuration();
  o.max_batch_pairs = 64;
  o.max_batch_tokens = 100;
  auto made = Batcher::Create(o, control_.Factory(), &clock_, &recorder);
  ASSERT_TRUE(made.ok());
  batcher_ = *std::move(made);
  control_.Gate();
  Result a;
  ASSERT_TRUE(batcher_->Submit(Job("a", Rows(10, 40, 100), &a)).ok());
  control_.Release();
  a.done.WaitForNotification();
  ASSERT_TRUE(a.value.ok());
  batcher_->Stop();
  absl::MutexLock l(&recorder.mu);
  int rows = 0;
  for (const BatchReport& r : recorder.reports) {
    EXPECT_LE(r.real_tokens, 100);  // two 40-token rows; a third would make 120
    EXPECT_LE(r.rows, 2);
    rows += r.rows;
  }
  EXPECT_EQ(rows, 10);
}

TEST_F(FairBatcherTest, CreateValidatesTheFairnessOptions) {
  Batcher::Options o;
  o.fair_quantum_tokens = 0;
  EXPECT_THAT(Batcher::Create(o, control_.Factory(), &clock_, nullptr).status().message(),
              HasSubstr("execution.fair_quantum_tokens"));
  o = Batcher::Options();
  o.max_client_queue_pairs = -1;
  EXPECT_THAT(Batcher::Create(o, control_.Factory(), &clock_, nullptr).status().message(),
              HasSubstr("execution.max_client_queue_pairs"));
  o = Batcher::Options();
  o.client_weights = {{"x", 0}};
  EXPECT_THAT(Batcher::Create(o, control_.Factory(), &clock_, nullptr).status().message(),
              HasSubstr("execution.client_weights: weight of 'x' must be >= 1"));
}

TEST_F(FairBatcherTest, StopFailsEveryClientsQueuedJobs) {
  Batcher::Options o;
  batcher_ = Make(o);
  Result blocker, a, b;
  OccupyWorker(&blocker);
  ASSERT_TRUE(batcher_->Submit(Job("a", Rows(2, 10, 100), &a)).ok());
  ASSERT_TRUE(batcher_->Submit(Job("b", Rows(2, 10, 200), &b)).ok());
  std::thread stopper([&] { batcher_->Stop(); });
  a.done.WaitForNotification();
  b.done.WaitForNotification();
  EXPECT_EQ(a.value.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(b.value.status().code(), absl::StatusCode::kUnavailable);
  control_.Release();
  stopper.join();
  blocker.done.WaitForNotification();
  EXPECT_EQ(batcher_->queued_rows(), 0);
}

}  // namespace
}  // namespace rerank
