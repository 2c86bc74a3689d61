// A deterministic, torch-free Scorer for batcher/engine/service tests.
//
// Score of a row = (number of document tokens, segment 1, that also occur among the query
// tokens, segment 0) - 0.001 * (document length): a lexical-overlap "model" whose ranking is easy
// to predict in tests. It records every batch it sees and can be gated (blocked until Release())
// to make queueing, batching across requests, cancellation and deadlines deterministic.
#ifndef RERANK_TESTS_TESTING_FAKE_SCORER_H_
#define RERANK_TESTS_TESTING_FAKE_SCORER_H_

#include <memory>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/scorer.h"

namespace rerank::testing {

// Shared between the test and every FakeScorer replica it hands out.
class FakeScorerControl {
 public:
  struct Call {
    int64_t rows;
    int64_t seq_len;
  };
  void Gate() {
    absl::MutexLock l(&mu_);
    gated_ = true;
  }
  void Release() {
    absl::MutexLock l(&mu_);
    gated_ = false;
  }
  void FailNext(absl::Status s) {
    absl::MutexLock l(&mu_);
    fail_next_ = std::move(s);
  }
  // Fails the `n`-th Score() call (1-based, counted as started(); warmup calls count too).
  void FailCall(int n, absl::Status s) {
    absl::MutexLock l(&mu_);
    fail_call_ = n;
    fail_call_status_ = std::move(s);
  }
  // Blocks until `n` Score() calls have started in total (a gated call counts once it is
  // waiting; warmup calls count too: use started() + k).
  void WaitForCalls(int n) {
    struct Arg {
      FakeScorerControl* self;
      int n;
    } arg{this, n};
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->self->started_ >= a->n; }, &arg));
  }
  // Score() calls started so far (including gated ones and any warmup).
  int started() {
    absl::MutexLock l(&mu_);
    return started_;
  }
  // What FakeScorer::PaddingFree() answers (a model that packs its real tokens).
  void SetPaddingFree(bool v) {
    absl::MutexLock l(&mu_);
    padding_free_ = v;
  }
  std::vector<Call> calls() {
    absl::MutexLock l(&mu_);
    return calls_;
  }
  int64_t rows_scored() {
    absl::MutexLock l(&mu_);
    int64_t n = 0;
    for (const Call& c : calls_) n += c.rows;
    return n;
  }
  ScorerFactory Factory();

  static float ScoreRow(const int64_t* ids, const int64_t* mask, const int64_t* types,
                        int64_t len) {
    std::set<int64_t> query;
    for (int64_t t = 1; t < len; ++t) {
      if (mask[t] && types[t] == 0 && ids[t] != 102) query.insert(ids[t]);
    }
    float overlap = 0;
    int64_t doc_len = 0;
    for (int64_t t = 0; t < len; ++t) {
      if (mask[t] && types[t] == 1 && ids[t] != 102) {
        ++doc_len;
        if (query.count(ids[t])) overlap += 1;
      }
    }
    return overlap - 0.001f * static_cast<float>(doc_len);
  }

 private:
  friend class FakeScorer;
  absl::Mutex mu_;
  bool gated_ ABSL_GUARDED_BY(mu_) = false;
  int started_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status fail_next_ ABSL_GUARDED_BY(mu_);
  int fail_call_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status fail_call_status_ ABSL_GUARDED_BY(mu_);
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  bool padding_free_ ABSL_GUARDED_BY(mu_) = false;
};

class FakeScorer final : public Scorer {
 public:
  explicit FakeScorer(FakeScorerControl* control) : control_(control) {}
  absl::StatusOr<std::vector<float>> Score(const ScoreBatch& b) override {
    {
      absl::MutexLock l(&control_->mu_);
      const int call = ++control_->started_;
      control_->mu_.Await(absl::Condition(
          +[](FakeScorerControl* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) { return !c->gated_; },
          control_));
      control_->calls_.push_back({b.rows, b.seq_len});
      if (call == control_->fail_call_) return control_->fail_call_status_;
      if (!control_->fail_next_.ok()) {
        absl::Status s = std::move(control_->fail_next_);
        control_->fail_next_ = absl::OkStatus();
        return s;
      }
    }
    std::vector<float> out(b.rows);
    for (int64_t r = 0; r < b.rows; ++r) {
      const int64_t off = r * b.seq_len;
      out[r] = FakeScorerControl::ScoreRow(&b.input_ids[off], &b.attention_mask[off],
                                           &b.token_type_ids[off], b.seq_len);
    }
    return out;
  }
  bool PaddingFree() const override {
    absl::MutexLock l(&control_->mu_);
    return control_->padding_free_;
  }

 private:
  FakeScorerControl* control_;
};

inline ScorerFactory FakeScorerControl::Factory() {
  return [this]() -> absl::StatusOr<std::unique_ptr<Scorer>> {
    return std::unique_ptr<Scorer>(new FakeScorer(this));
  };
}

}  // namespace rerank::testing

#endif  // RERANK_TESTS_TESTING_FAKE_SCORER_H_
