// The batcher under faults (issue 8 section 5): a dropped job's rows are never scored and are
// counted per pair and per reason, across every batch that holds them; the deadline wins over
// cancellation (gRPC cancels a call whose deadline passed); a Scorer that throws fails only the
// jobs of that forward, with INTERNAL, and the worker keeps serving.
#include <algorithm>
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/batcher.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fault_scorer.h"

namespace rerank {
namespace {

using testing::FakeClock;
using testing::FaultScorerControl;
using ::testing::HasSubstr;

Encoding RowOfLength(int len, int64_t fill) {
  Encoding e;
  e.input_ids = {101, 1000, 102};
  e.token_type_ids = {0, 0, 0};
  for (int i = 0; i < std::max(1, len - 4); ++i) {
    e.input_ids.push_back(fill + i);  // distinct rows: no de-duplication
    e.token_type_ids.push_back(1);
  }
  e.input_ids.push_back(102);
  e.token_type_ids.push_back(1);
  return e;
}

struct Result {
  absl::Notification done;
  absl::StatusOr<std::vector<float>> value;
};

std::shared_ptr<ScoringJob> MakeJob(const std::string& client, int rows, int64_t fill,
                                    Result* result) {
  auto job = std::make_shared<ScoringJob>();
  job->client = client;
  for (int i = 0; i < rows; ++i) job->rows.push_back(RowOfLength(10, fill + 100 * i));
  job->done = [result](absl::StatusOr<std::vector<float>> v) {
    ASSERT_FALSE(result->done.HasBeenNotified()) << "done called twice";
    result->value = std::move(v);
    result->done.Notify();
  };
  return job;
}

class RecordingObserver final : public BatcherObserver {
 public:
  void OnBatch(const BatchReport& r) override {
    absl::MutexLock l(&mu_);
    cancelled_pairs_ += r.dropped_cancelled_pairs;
    deadline_pairs_ += r.dropped_deadline_pairs;
    ++batches_;
  }
  void OnJobDropped(absl::StatusCode code) override {
    absl::MutexLock l(&mu_);
    codes_.push_back(code);
  }
  int cancelled_pairs() {
    absl::MutexLock l(&mu_);
    return cancelled_pairs_;
  }
  int deadline_pairs() {
    absl::MutexLock l(&mu_);
    return deadline_pairs_;
  }
  std::vector<absl::StatusCode> codes() {
    absl::MutexLock l(&mu_);
    return codes_;
  }
  int batches() {
    absl::MutexLock l(&mu_);
    return batches_;
  }

 private:
  absl::Mutex mu_;
  int cancelled_pairs_ ABSL_GUARDED_BY(mu_) = 0;
  int deadline_pairs_ ABSL_GUARDED_BY(mu_) = 0;
  int batches_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<absl::StatusCode> codes_ ABSL_GUARDED_BY(mu_);
};

class OverloadBatcherTest : public ::testing::Test {
 protected:
  std::unique_ptr<Batcher> Make(Batcher::Options o) {
    o.max_queue_delay = absl::ZeroDuration();
    auto b = Batcher::Create(o, scorer_.Factory(), &clock_, &observer_);
    EXPECT_TRUE(b.ok()) << b.status();
    return *std::move(b);
  }
  FakeClock clock_;
  FaultScorerControl scorer_;
  RecordingObserver observer_;
};

TEST_F(OverloadBatcherTest, ACancelledJobSpanningManyBatchesHasNoneOfItsRowsScored) {
  Batcher::Options o;
  o.max_batch_pairs = 3;  // the 10-row job spans four batches
  auto b = Make(o);
  scorer_.Close();
  Result busy, big;
  ASSERT_TRUE(b->Submit(MakeJob("busy", 1, 5000, &busy)).ok());
  scorer_.WaitBlocked();
  std::atomic<bool> cancel{false};
  auto job = MakeJob("big", 10, 7000, &big);
  job->is_cancelled = [&cancel] { return cancel.load(); };
  ASSERT_TRUE(b->Submit(job).ok());
  cancel = true;
  scorer_.Open();
  busy.done.WaitForNotification();
  big.done.WaitForNotification();
  EXPECT_EQ(big.value.status().code(), absl::StatusCode::kCancelled);
  // Wait until the queue is empty and the last batch reported.
  for (int i = 0; i < 2000 && (b->queued_rows() > 0 || b->busy_workers() > 0); ++i) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_TRUE(b->Drain(absl::Seconds(10)));
  EXPECT_EQ(scorer_.rows(), 1) << "only busy's row reached the model";
  EXPECT_EQ(observer_.cancelled_pairs(), 10) << "every row of the job, in every batch";
  EXPECT_EQ(observer_.deadline_pairs(), 0);
  EXPECT_THAT(observer_.codes(), ::testing::ElementsAre(absl::StatusCode::kCancelled))
      << "the job is counted once";
}

TEST_F(OverloadBatcherTest, AnExpiredJobThatIsAlsoCancelledCountsAsDeadline) {
  auto b = Make({});
  scorer_.Close();
  Result busy, late;
  ASSERT_TRUE(b->Submit(MakeJob("busy", 1, 5000, &busy)).ok());
  scorer_.WaitBlocked();
  auto job = MakeJob("late", 2, 7000, &late);
  job->deadline = clock_.Now() + absl::Seconds(1);
  job->is_cancelled = [] { return true; };  // as gRPC does once the deadline passed
  ASSERT_TRUE(b->Submit(job).ok());
  clock_.Advance(absl::Seconds(2));
  scorer_.Open();
  late.done.WaitForNotification();
  EXPECT_EQ(late.value.status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(b->Drain(absl::Seconds(10)));
  EXPECT_EQ(observer_.deadline_pairs(), 2);
  EXPECT_EQ(observer_.cancelled_pairs(), 0);
}

TEST_F(OverloadBatcherTest, AScorerThatThrowsFailsItsJobsWithInternalAndTheWorkerGoesOn) {
  Batcher::Options o;
  o.workers = 2;
  auto b = Make(o);
  scorer_.ThrowOnForward(1);
  Result first;
  ASSERT_TRUE(b->Submit(MakeJob("a", 2, 5000, &first)).ok());
  first.done.WaitForNotification();
  EXPECT_EQ(first.value.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(first.value.status().message(), HasSubstr("model forward threw"));
  EXPECT_THAT(first.value.status().message(), HasSubstr("injected model fault"));
  std::vector<std::unique_ptr<Result>> later;
  for (int i = 0; i < 20; ++i) {
    later.push_back(std::make_unique<Result>());
    ASSERT_TRUE(
        b->Submit(MakeJob(absl::StrCat("c", i % 3), 3, 9000 + 1000 * i, later.back().get())).ok());
  }
  for (auto& r : later) {
    r->done.WaitForNotification();
    EXPECT_TRUE(r->value.ok()) << r->value.status();
  }
  EXPECT_EQ(scorer_.thrown(), 1);
  // The drop is reported just after the job's callback ran; joining the workers orders it.
  b->Stop();
  EXPECT_THAT(observer_.codes(), ::testing::ElementsAre(absl::StatusCode::kInternal));
}

TEST(OverloadBatcherCreateTest, AReplicaFactoryThatThrowsIsALoadErrorNotACrash) {
  FakeClock clock;
  ScorerFactory factory = []() -> absl::StatusOr<std::unique_ptr<Scorer>> {
    throw std::runtime_error("cannot map model.pt");
  };
  auto b = Batcher::Create({}, factory, &clock, nullptr);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(b.status().message(), HasSubstr("cannot map model.pt"));
}

}  // namespace
}  // namespace rerank
