// A ScoringQueue for RerankEngine unit tests: no threads, no model. It records every submitted
// job; the test then completes a job with chosen scores or an error (Complete / Fail), or lets
// the queue score every job as it arrives with a deterministic function of each row's token ids
// (SetAutoScore). It can also be told to reject Submit (RESOURCE_EXHAUSTED like a full queue,
// UNAVAILABLE like a draining one), in which case the job is not recorded and `done` is never
// called, as the ScoringQueue contract says.
//
// Thread-safe. `done` always runs outside the lock: inline in Submit (auto-score) or on the
// thread that calls Complete / Fail.
#ifndef RERANK_TESTS_TESTING_FAKE_SCORING_QUEUE_H_
#define RERANK_TESTS_TESTING_FAKE_SCORING_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/scoring_queue.h"
#include "server/tokenizer.h"

namespace rerank::testing {

class FakeScoringQueue final : public ScoringQueue {
 public:
  using ScoreFn = std::function<float(const Encoding& row)>;

  // A lexical-overlap "model" over one row "[CLS] query [SEP] doc [SEP]" (segments from
  // token_type_ids, so no special ids need to be known): the number of document tokens that also
  // occur in the query, minus 0.001 per document token. Easy to predict in tests.
  static float LexicalOverlap(const Encoding& row) {
    std::vector<int64_t> query, doc;
    for (size_t t = 0; t < row.input_ids.size(); ++t) {
      (row.token_type_ids[t] == 0 ? query : doc).push_back(row.input_ids[t]);
    }
    // Drop [CLS] and the query's [SEP]; drop the document's [SEP].
    std::set<int64_t> q(query.size() > 2 ? query.begin() + 1 : query.end(),
                        query.size() > 2 ? query.end() - 1 : query.end());
    if (!doc.empty()) doc.pop_back();
    float overlap = 0;
    for (int64_t id : doc) overlap += q.count(id) ? 1.0f : 0.0f;
    return overlap - 0.001f * static_cast<float>(doc.size());
  }

  absl::Status Submit(std::shared_ptr<ScoringJob> job) override {
    ScoreFn auto_score;
    {
      absl::MutexLock lock(&mu_);
      ++submit_calls_;
      if (!reject_.ok()) return reject_;
      if (job == nullptr || job->rows.empty()) {
        return absl::InvalidArgumentError("FakeScoringQueue: empty job");
      }
      jobs_.push_back(Recorded{job, /*finished=*/false});
      auto_score = auto_score_;
      if (auto_score) jobs_.back().finished = true;
    }
    if (auto_score) {
      std::vector<float> scores;
      for (const Encoding& row : job->rows) scores.push_back(auto_score(row));
      job->done(std::move(scores));
    }
    return absl::OkStatus();
  }

  // Admission (ScoringQueue::CheckAdmission): records each call; answers the status set by
  // RejectAdmissionWith (OK by default).
  struct AdmissionCall {
    std::string client;
    int min_rows;
  };
  absl::Status CheckAdmission(const std::string& client, int min_rows) const override {
    absl::MutexLock lock(&mu_);
    admission_calls_.push_back(AdmissionCall{client, min_rows});
    return admission_reject_;
  }
  void RejectAdmissionWith(absl::Status status) {
    absl::MutexLock lock(&mu_);
    admission_reject_ = std::move(status);
  }
  std::vector<AdmissionCall> admission_calls() const {
    absl::MutexLock lock(&mu_);
    return admission_calls_;
  }

  // Every later Submit fails with `status` (OK lets jobs in again).
  void RejectWith(absl::Status status) {
    absl::MutexLock lock(&mu_);
    reject_ = std::move(status);
  }

  // Later jobs are completed inside Submit with fn(row) per row; an empty fn turns this off.
  void SetAutoScore(ScoreFn fn) {
    absl::MutexLock lock(&mu_);
    auto_score_ = std::move(fn);
  }

  // Completes recorded job `i` with these scores (one per row, not checked: a test may pass a
  // wrong count on purpose). Fails the test process if the job does not exist or is finished.
  void Complete(size_t i, std::vector<float> scores) { Finish(i, std::move(scores)); }
  // Completes recorded job `i` with fn(row) per row.
  void CompleteWith(size_t i, const ScoreFn& fn) {
    std::vector<float> scores;
    for (const Encoding& row : job(i).rows) scores.push_back(fn(row));
    Finish(i, std::move(scores));
  }
  // Completes recorded job `i` with an error.
  void Fail(size_t i, absl::Status status) { Finish(i, std::move(status)); }

  // Submit calls so far, accepted or not.
  int submit_calls() const {
    absl::MutexLock lock(&mu_);
    return submit_calls_;
  }
  // Jobs accepted so far.
  size_t num_jobs() const {
    absl::MutexLock lock(&mu_);
    return jobs_.size();
  }
  // Accepted jobs not completed yet.
  size_t num_pending() const {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const Recorded& r : jobs_) n += r.finished ? 0 : 1;
    return n;
  }
  // Accepted job `i` (in Submit order). Aborts if out of range.
  const ScoringJob& job(size_t i) const {
    absl::MutexLock lock(&mu_);
    return *jobs_.at(i).job;
  }
  // The input ids of every row of job `i`.
  std::vector<std::vector<int64_t>> rows(size_t i) const {
    std::vector<std::vector<int64_t>> out;
    for (const Encoding& e : job(i).rows) out.push_back(e.input_ids);
    return out;
  }

 private:
  struct Recorded {
    std::shared_ptr<ScoringJob> job;
    bool finished = false;
  };

  void Finish(size_t i, absl::StatusOr<std::vector<float>> result) {
    std::shared_ptr<ScoringJob> job;
    {
      absl::MutexLock lock(&mu_);
      Recorded& r = jobs_.at(i);
      if (r.finished) {
        // The contract is "exactly once"; a test that finishes twice is itself wrong.
        std::fprintf(stderr, "FakeScoringQueue: job %zu finished twice\n", i);
        std::abort();
      }
      r.finished = true;
      job = r.job;
    }
    // Like the real queue, a finished job keeps no callback: `done` holds the request's state,
    // which may hold the model that owns this queue (a cycle that would leak).
    std::function<void(absl::StatusOr<std::vector<float>>)> done = std::move(job->done);
    job->done = nullptr;
    done(std::move(result));
  }

  mutable absl::Mutex mu_;
  std::vector<Recorded> jobs_ ABSL_GUARDED_BY(mu_);
  absl::Status reject_ ABSL_GUARDED_BY(mu_);
  absl::Status admission_reject_ ABSL_GUARDED_BY(mu_);
  mutable std::vector<AdmissionCall> admission_calls_ ABSL_GUARDED_BY(mu_);
  ScoreFn auto_score_ ABSL_GUARDED_BY(mu_);
  int submit_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace rerank::testing

#endif  // RERANK_TESTS_TESTING_FAKE_SCORING_QUEUE_H_
