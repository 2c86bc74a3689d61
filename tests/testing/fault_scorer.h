// A torch-free Scorer for overload and fault tests (tests/overload_*_test.cc): it scores like
// FakeScorer (lexical overlap) and can be slowed (a real sleep per forward, as a slower model),
// gated (forwards wait until Open()), made to THROW on chosen forwards (a model that throws instead
// of returning a status), and it counts every row it is sent, and the rows that hold a watched
// token, so a test can prove that some request's pairs never reached the model.
//
// Thread-safe: one control is shared by every replica (worker) it hands out.
#ifndef RERANK_TESTS_TESTING_FAULT_SCORER_H_
#define RERANK_TESTS_TESTING_FAULT_SCORER_H_

#include <cstdint>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/scorer.h"
#include "tests/testing/fake_scorer.h"

namespace rerank::testing {

class FaultScorerControl {
 public:
  // Every forward sleeps this long first (real time).
  void SetDelay(absl::Duration d) {
    absl::MutexLock l(&mu_);
    delay_ = d;
  }
  // Forwards wait at the gate until Open(). Open by default (model warmup runs through).
  void Close() {
    absl::MutexLock l(&mu_);
    open_ = false;
  }
  void Open() {
    absl::MutexLock l(&mu_);
    open_ = true;
  }
  // Blocks until a forward is waiting at the closed gate.
  void WaitBlocked() {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](FaultScorerControl* c) ABSL_NO_THREAD_SAFETY_ANALYSIS { return c->waiting_ > 0; },
        this));
  }
  // Forward number `n` (1-based, over all replicas, counted from now on) throws
  // std::runtime_error instead of returning.
  void ThrowOnForward(int n) {
    absl::MutexLock l(&mu_);
    throw_on_.insert(forwards_ + n);
  }
  // Counts the rows sent to the model that contain token `id` (e.g. a word only one request's
  // documents hold).
  void Watch(int64_t id) {
    absl::MutexLock l(&mu_);
    watched_.insert(id);
  }
  int64_t rows() {
    absl::MutexLock l(&mu_);
    return rows_;
  }
  int64_t watched_rows() {
    absl::MutexLock l(&mu_);
    return watched_rows_;
  }
  int forwards() {
    absl::MutexLock l(&mu_);
    return forwards_;
  }
  int thrown() {
    absl::MutexLock l(&mu_);
    return thrown_;
  }

  ScorerFactory Factory() {
    return [this]() -> absl::StatusOr<std::unique_ptr<Scorer>> {
      return std::unique_ptr<Scorer>(new FaultScorer(this));
    };
  }

 private:
  class FaultScorer final : public Scorer {
   public:
    explicit FaultScorer(FaultScorerControl* c) : c_(c) {}
    absl::StatusOr<std::vector<float>> Score(const ScoreBatch& b) override {
      absl::Duration delay;
      bool do_throw = false;
      int forward = 0;
      {
        absl::MutexLock l(&c_->mu_);
        ++c_->waiting_;
        c_->mu_.Await(absl::Condition(
            +[](FaultScorerControl* c) ABSL_NO_THREAD_SAFETY_ANALYSIS { return c->open_; }, c_));
        --c_->waiting_;
        forward = ++c_->forwards_;
        c_->rows_ += b.rows;
        for (int64_t r = 0; r < b.rows; ++r) {
          for (int64_t t = 0; t < b.seq_len; ++t) {
            const int64_t i = r * b.seq_len + t;
            if (b.attention_mask[i] && c_->watched_.count(b.input_ids[i])) {
              ++c_->watched_rows_;
              break;
            }
          }
        }
        do_throw = c_->throw_on_.erase(forward) > 0;
        if (do_throw) ++c_->thrown_;
        delay = c_->delay_;
      }
      if (delay > absl::ZeroDuration()) absl::SleepFor(delay);
      if (do_throw) {
        throw std::runtime_error(absl::StrCat("injected model fault in forward ", forward));
      }
      std::vector<float> out(b.rows);
      for (int64_t r = 0; r < b.rows; ++r) {
        const int64_t off = r * b.seq_len;
        out[r] = FakeScorerControl::ScoreRow(&b.input_ids[off], &b.attention_mask[off],
                                             &b.token_type_ids[off], b.seq_len);
      }
      return out;
    }

   private:
    FaultScorerControl* const c_;
  };

  absl::Mutex mu_;
  absl::Duration delay_ ABSL_GUARDED_BY(mu_);
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  int forwards_ ABSL_GUARDED_BY(mu_) = 0;
  int thrown_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rows_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t watched_rows_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<int> throw_on_ ABSL_GUARDED_BY(mu_);
  std::set<int64_t> watched_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rerank::testing

#endif  // RERANK_TESTS_TESTING_FAULT_SCORER_H_
