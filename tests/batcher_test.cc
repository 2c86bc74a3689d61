#include "server/batcher.h"

#include <atomic>
#include <memory>
#include <numeric>
#include <set>
#include <tuple>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_scorer.h"

namespace rerank {
namespace {

using ::testing::ElementsAre;
using testing::FakeClock;
using testing::FakeScorerControl;

// [CLS] q... [SEP] d... [SEP] with the given query/doc token ids.
Encoding Row(std::vector<int64_t> q, std::vector<int64_t> d) {
  Encoding e;
  e.input_ids.push_back(101);
  e.token_type_ids.push_back(0);
  for (int64_t t : q) e.input_ids.push_back(t), e.token_type_ids.push_back(0);
  e.input_ids.push_back(102);
  e.token_type_ids.push_back(0);
  for (int64_t t : d) e.input_ids.push_back(t), e.token_type_ids.push_back(1);
  e.input_ids.push_back(102);
  e.token_type_ids.push_back(1);
  return e;
}

Encoding RowOfLength(int len, int64_t fill = 2000) {
  return Row({1000}, std::vector<int64_t>(std::max(1, len - 4), fill));
}

// Collects a job's result; waits for it.
struct Result {
  absl::Notification done;
  absl::StatusOr<std::vector<float>> value;
};

std::shared_ptr<ScoringJob> MakeJob(std::vector<Encoding> rows, Result* result) {
  auto job = std::make_shared<ScoringJob>();
  job->rows = std::move(rows);
  job->done = [result](absl::StatusOr<std::vector<float>> v) {
    ASSERT_FALSE(result->done.HasBeenNotified()) << "done called twice";
    result->value = std::move(v);
    result->done.Notify();
  };
  return job;
}

class BatcherTest : public ::testing::Test {
 protected:
  std::unique_ptr<Batcher> Make(Batcher::Options o = {}) {
    auto b = Batcher::Create(o, control_.Factory(), &clock_, nullptr);
    EXPECT_TRUE(b.ok()) << b.status();
    return *std::move(b);
  }
  FakeClock clock_;
  FakeScorerControl control_;
};

TEST(PlanMicroBatchesTest, CoversEveryRowOnceSortedAndCapped) {
  std::vector<int64_t> lengths = {50, 10, 500, 12, 480, 11, 52, 490};
  auto plan = PlanMicroBatches(lengths, /*max_rows=*/3, /*max_tokens=*/100000, /*overhead=*/64);
  std::multiset<int> seen;
  int64_t prev_max = 0;
  for (const MicroBatch& mb : plan) {
    EXPECT_LE(mb.rows.size(), 3u);
    int64_t longest = 0;
    for (int r : mb.rows) {
      seen.insert(r);
      longest = std::max(longest, lengths[r]);
      EXPECT_GE(lengths[r], prev_max) << "micro-batches are in length order";
    }
    EXPECT_EQ(mb.seq_len, longest) << "padded to its own longest row";
    prev_max = longest;
  }
  EXPECT_EQ(seen.size(), lengths.size());
  EXPECT_EQ(std::set<int>(seen.begin(), seen.end()).size(), lengths.size());
}

TEST(PlanMicroBatchesTest, SeparatesShortFromLongRows) {
  // 10 rows of 10 tokens and 10 of 500: one padded batch costs 20*500 = 10000 tokens, two
  // batches cost 100 + 5000 + 2 * overhead.
  std::vector<int64_t> lengths;
  for (int i = 0; i < 10; ++i) lengths.push_back(10), lengths.push_back(500);
  auto plan = PlanMicroBatches(lengths, 64, 100000, 128);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].seq_len, 10);
  EXPECT_EQ(plan[1].seq_len, 500);
  // Similar lengths stay together in one forward.
  auto same = PlanMicroBatches({100, 101, 102, 103}, 64, 100000, 128);
  ASSERT_EQ(same.size(), 1u);
  EXPECT_EQ(same[0].seq_len, 103);
}

TEST(PlanMicroBatchesTest, RespectsTokenCap) {
  std::vector<int64_t> lengths(10, 100);
  auto plan = PlanMicroBatches(lengths, 64, /*max_tokens=*/300, /*overhead=*/1);
  for (const MicroBatch& mb : plan) EXPECT_LE(mb.rows.size() * mb.seq_len, 300u);
  EXPECT_EQ(plan.size(), 4u);
}

TEST(PlanMicroBatchesTest, PaddingFreeModelGetsTheFewestForwardsWithinTheCaps) {
  // 10 rows of 10 tokens and 10 of 500: split in two when padding costs, one forward when the
  // model computes on real tokens only.
  std::vector<int64_t> lengths;
  for (int i = 0; i < 10; ++i) lengths.push_back(10), lengths.push_back(500);
  EXPECT_EQ(PlanMicroBatches(lengths, 64, 100000, 128, /*padding_free=*/false).size(), 2u);
  auto plan = PlanMicroBatches(lengths, 64, 100000, 128, /*padding_free=*/true);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].rows.size(), 20u);
  EXPECT_EQ(plan[0].seq_len, 500);
  // The row and padded-token caps still bound every forward.
  for (const MicroBatch& mb : PlanMicroBatches(lengths, 6, 100000, 128, true)) {
    EXPECT_LE(mb.rows.size(), 6u);
  }
  plan = PlanMicroBatches(lengths, 64, /*max_tokens=*/2000, 128, true);
  for (const MicroBatch& mb : plan) EXPECT_LE(mb.rows.size() * mb.seq_len, 2000u);
  // 10 short rows fit one forward, 500-token rows at most 4 per forward: 1 + 3.
  EXPECT_EQ(plan.size(), 4u);
}

TEST(BuildScoreBatchTest, PadsWithMaskZero) {
  Encoding a = Row({5}, {6});     // 5 tokens
  Encoding b = Row({5}, {6, 7});  // 6 tokens
  ScoreBatch sb = BuildScoreBatch({&a, &b}, 6, 0);
  EXPECT_EQ(sb.rows, 2);
  EXPECT_EQ(sb.seq_len, 6);
  EXPECT_THAT(sb.input_ids, ElementsAre(101, 5, 102, 6, 102, 0, 101, 5, 102, 6, 7, 102));
  EXPECT_THAT(sb.attention_mask, ElementsAre(1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1));
  EXPECT_THAT(sb.token_type_ids, ElementsAre(0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1));
}

TEST_F(BatcherTest, ScoresRowsInOrderAndPadsToLongestNotMaxLength) {
  auto b = Make();
  Result r;
  ASSERT_TRUE(
      b->Submit(MakeJob({Row({7, 8}, {7, 9}), Row({7, 8}, {7, 8}), Row({7, 8}, {9})}, &r)).ok());
  r.done.WaitForNotification();
  ASSERT_TRUE(r.value.ok()) << r.value.status();
  ASSERT_EQ(r.value->size(), 3u);
  EXPECT_FLOAT_EQ((*r.value)[0], 1 - 0.002f);
  EXPECT_FLOAT_EQ((*r.value)[1], 2 - 0.002f);
  EXPECT_FLOAT_EQ((*r.value)[2], 0 - 0.001f);
  for (const auto& call : control_.calls()) EXPECT_LE(call.seq_len, 8);
}

TEST_F(BatcherTest, BatchesAcrossConcurrentRequests) {
  Batcher::Options o;
  o.max_queue_delay = absl::ZeroDuration();
  auto b = Make(o);
  control_.Gate();
  Result first, second, third;
  ASSERT_TRUE(b->Submit(MakeJob({RowOfLength(20)}, &first)).ok());
  control_.WaitForCalls(1);  // the worker is busy with `first`
  ASSERT_TRUE(b->Submit(MakeJob({RowOfLength(30, 1), RowOfLength(30, 2)}, &second)).ok());
  ASSERT_TRUE(
      b->Submit(MakeJob({RowOfLength(31, 3), RowOfLength(29, 4), RowOfLength(30, 5)}, &third))
          .ok());
  control_.Release();
  first.done.WaitForNotification();
  second.done.WaitForNotification();
  third.done.WaitForNotification();
  auto calls = control_.calls();
  ASSERT_EQ(calls.size(), 2u) << "second and third ran in one forward";
  EXPECT_EQ(calls[1].rows, 5);
  EXPECT_EQ(calls[1].seq_len, 31);
}

// Counts what the batcher reports.
class RecordingObserver : public BatcherObserver {
 public:
  void OnBatch(const BatchReport& r) override {
    absl::MutexLock l(&mu_);
    real_ += r.real_tokens;
    padded_ += r.padded_tokens;
    forwards_ += r.forwards;
  }
  void OnJobDropped(absl::StatusCode) override {}
  std::tuple<int64_t, int64_t, int> Totals() {
    absl::MutexLock l(&mu_);
    return {real_, padded_, forwards_};
  }

 private:
  absl::Mutex mu_;
  int64_t real_ ABSL_GUARDED_BY(mu_) = 0, padded_ ABSL_GUARDED_BY(mu_) = 0;
  int forwards_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(BatcherTest, PaddingFreeScorerRunsMixedLengthsInOneForward) {
  for (bool padding_free : {false, true}) {
    SCOPED_TRACE(padding_free ? "padding-free" : "padded");
    FakeScorerControl control;
    control.SetPaddingFree(padding_free);
    RecordingObserver observer;
    Batcher::Options o;
    o.max_queue_delay = absl::ZeroDuration();
    auto b = Batcher::Create(o, control.Factory(), &clock_, &observer);
    ASSERT_TRUE(b.ok()) << b.status();
    Result r;
    ASSERT_TRUE((*b)->Submit(MakeJob({RowOfLength(10, 1), RowOfLength(400, 2), RowOfLength(10, 3),
                                      RowOfLength(400, 4)},
                                     &r))
                    .ok());
    r.done.WaitForNotification();
    ASSERT_TRUE(r.value.ok()) << r.value.status();
    // Scores do not depend on the plan.
    EXPECT_FLOAT_EQ((*r.value)[0], -0.001f * 6);
    EXPECT_FLOAT_EQ((*r.value)[1], -0.001f * 396);
    (*b)->Stop();
    const auto [real, padded, forwards] = observer.Totals();
    EXPECT_EQ(real, 820);
    if (padding_free) {
      EXPECT_EQ(control.calls().size(), 1u);
      EXPECT_EQ(forwards, 1);
      EXPECT_EQ(padded, real) << "a padding-free model computes on real tokens only";
    } else {
      EXPECT_EQ(control.calls().size(), 2u) << "short and long rows in separate forwards";
      EXPECT_EQ(forwards, 2);
      EXPECT_EQ(padded, 820);
    }
  }
}

TEST_F(BatcherTest, DuplicateRowsScoredOnce) {
  auto b = Make();
  Result r;
  ASSERT_TRUE(
      b->Submit(MakeJob({Row({7}, {7}), Row({7}, {8}), Row({7}, {7}), Row({7}, {7})}, &r)).ok());
  r.done.WaitForNotification();
  ASSERT_TRUE(r.value.ok());
  EXPECT_EQ(control_.rows_scored(), 2);
  EXPECT_EQ((*r.value)[0], (*r.value)[2]);
  EXPECT_EQ((*r.value)[0], (*r.value)[3]);
  EXPECT_NE((*r.value)[0], (*r.value)[1]);
}

TEST_F(BatcherTest, QueueFullIsResourceExhaustedAtOnce) {
  Batcher::Options o;
  o.max_queue_pairs = 4;
  auto b = Make(o);
  control_.Gate();
  Result busy, queued;
  ASSERT_TRUE(b->Submit(MakeJob({RowOfLength(10)}, &busy)).ok());
  control_.WaitForCalls(1);
  ASSERT_TRUE(
      b->Submit(MakeJob({RowOfLength(10), RowOfLength(11), RowOfLength(12)}, &queued)).ok());
  Result rejected;
  absl::Status s = b->Submit(MakeJob({RowOfLength(10), RowOfLength(10)}, &rejected));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_FALSE(rejected.done.HasBeenNotified()) << "done is not called on a failed Submit";
  EXPECT_EQ(b->queued_rows(), 3);
  control_.Release();
  queued.done.WaitForNotification();
  EXPECT_TRUE(queued.value.ok());
}

TEST_F(BatcherTest, CancelledAndExpiredJobsAreDroppedBeforeInference) {
  Batcher::Options o;
  o.max_queue_delay = absl::ZeroDuration();
  auto b = Make(o);
  control_.Gate();
  Result busy, cancelled, expired, live;
  ASSERT_TRUE(b->Submit(MakeJob({RowOfLength(10)}, &busy)).ok());
  control_.WaitForCalls(1);
  std::atomic<bool> cancel{false};
  auto c = MakeJob({RowOfLength(40), RowOfLength(41)}, &cancelled);
  c->is_cancelled = [&cancel] { return cancel.load(); };
  auto e = MakeJob({RowOfLength(50)}, &expired);
  e->deadline = clock_.Now() + absl::Seconds(1);
  ASSERT_TRUE(b->Submit(c).ok());
  ASSERT_TRUE(b->Submit(e).ok());
  ASSERT_TRUE(b->Submit(MakeJob({RowOfLength(12)}, &live)).ok());
  cancel = true;
  clock_.Advance(absl::Seconds(2));
  control_.Release();
  cancelled.done.WaitForNotification();
  expired.done.WaitForNotification();
  live.done.WaitForNotification();
  EXPECT_EQ(cancelled.value.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(expired.value.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(live.value.ok());
  EXPECT_EQ(control_.rows_scored(), 2) << "only `busy` and `live` reached the model";
}

TEST_F(BatcherTest, ScorerErrorFailsTheJob) {
  auto b = Make();
  control_.FailNext(absl::InternalError("boom"));
  Result r;
  ASSERT_TRUE(b->Submit(MakeJob({RowOfLength(10)}, &r)).ok());
  r.done.WaitForNotification();
  EXPECT_EQ(r.value.status().code(), absl::StatusCode::kInternal);
  Result ok;
  ASSERT_TRUE(b->Submit(MakeJob({RowOfLength(10)}, &ok)).ok());
  ok.done.WaitForNotification();
  EXPECT_TRUE(ok.value.ok()) << "the worker keeps serving after an error";
}

// Drain stops intake at once but lets queued work run to completion (Stop, below, is what fails
// queued jobs).
TEST_F(BatcherTest, DrainRejectsNewWorkAndFinishesQueuedJobs) {
  auto b = Make();
  control_.Gate();
  Result busy, queued;
  ASSERT_TRUE(b->Submit(MakeJob({RowOfLength(10)}, &busy)).ok());
  control_.WaitForCalls(1);
  ASSERT_TRUE(b->Submit(MakeJob({RowOfLength(20)}, &queued)).ok());
  EXPECT_FALSE(b->Drain(absl::Milliseconds(20))) << "work is stuck behind the gate";
  EXPECT_FALSE(queued.done.HasBeenNotified()) << "a timed-out Drain does not fail queued work";
  Result late;
  EXPECT_EQ(b->Submit(MakeJob({RowOfLength(10)}, &late)).code(), absl::StatusCode::kUnavailable);
  control_.Release();
  EXPECT_TRUE(b->Drain(absl::Seconds(10)));
  ASSERT_TRUE(busy.done.HasBeenNotified());
  ASSERT_TRUE(queued.done.HasBeenNotified()) << "Drain returned true with work still queued";
  EXPECT_TRUE(busy.value.ok()) << busy.value.status();
  EXPECT_TRUE(queued.value.ok()) << queued.value.status();
  EXPECT_EQ(control_.rows_scored(), 2) << "the rejected job never reached the model";
  EXPECT_FALSE(late.done.HasBeenNotified()) << "done is not called on a failed Submit";
  b->Stop();
}

TEST_F(BatcherTest, StopFailsQueuedJobsWithUnavailable) {
  auto b = Make();
  control_.Gate();
  Result busy, queued;
  ASSERT_TRUE(b->Submit(MakeJob({RowOfLength(10)}, &busy)).ok());
  control_.WaitForCalls(1);
  ASSERT_TRUE(b->Submit(MakeJob({RowOfLength(20)}, &queued)).ok());
  std::thread releaser([&] {
    queued.done.WaitForNotification();
    control_.Release();
  });
  b->Stop();
  releaser.join();
  EXPECT_EQ(queued.value.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(busy.done.HasBeenNotified());
}

TEST_F(BatcherTest, FactoryFailureFailsCreate) {
  auto b = Batcher::Create(
      {},
      []() -> absl::StatusOr<std::unique_ptr<Scorer>> {
        return absl::NotFoundError("model.pt missing");
      },
      &clock_, nullptr);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(BatcherTest, ManyConcurrentJobsAllCompleteExactlyOnce) {
  Batcher::Options o;
  o.workers = 2;
  auto b = Make(o);
  constexpr int kJobs = 200;
  std::vector<Result> results(kJobs);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int j = t; j < kJobs; j += 4) {
        std::vector<Encoding> rows;
        for (int k = 0; k < 1 + j % 5; ++k)
          rows.push_back(Row({7, 8}, {static_cast<int64_t>(7 + (k % 2))}));
        ASSERT_TRUE(b->Submit(MakeJob(std::move(rows), &results[j])).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int j = 0; j < kJobs; ++j) {
    results[j].done.WaitForNotification();
    ASSERT_TRUE(results[j].value.ok());
    ASSERT_EQ(results[j].value->size(), static_cast<size_t>(1 + j % 5));
    for (size_t k = 0; k < results[j].value->size(); ++k) {
      EXPECT_FLOAT_EQ((*results[j].value)[k], 1 - 0.001f);
    }
  }
}

}  // namespace
}  // namespace rerank
