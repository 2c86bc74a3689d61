// Dynamic batching across concurrent requests, run by a pool of worker threads that each own a
// Scorer (a model replica).
//
// A request submits one ScoringJob: its token rows, deadline, cancellation probe and a
// completion callback. Rows from all queued jobs are taken FIFO into a batch capped by
// max_batch_pairs and max_batch_tokens (padded); identical rows in a batch are scored once; the
// batch is sorted by length and split into micro-batches that are each padded only to their own
// longest row (never to max_length), choosing the split that minimises padded tokens plus a
// per-forward overhead. Jobs that were cancelled or whose deadline passed are dropped before
// inference. The queue is bounded in rows: Submit() fails at once with RESOURCE_EXHAUSTED.
//
// Thread-safety: all public methods are thread-safe. A job's `done` is called exactly once, on a
// worker thread (or in Stop()/the destructor for jobs still queued), never under a lock.
#ifndef RERANK_SERVER_BATCHER_H_
#define RERANK_SERVER_BATCHER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/observers.h"
#include "server/scorer.h"
#include "server/scoring_queue.h"
#include "server/tokenizer.h"

namespace rerank {

// A micro-batch plan: `rows` holds indices into the row set passed to PlanMicroBatches.
struct MicroBatch {
  std::vector<int> rows;
  int64_t seq_len = 0;
};

// Sorts rows by length and splits them into micro-batches minimising
// sum(rows x longest) + forwards x forward_overhead_tokens, each at most max_rows rows and
// max_tokens padded tokens. Exposed so the benchmark's raw-model baseline runs the exact same
// batches the server runs.
std::vector<MicroBatch> PlanMicroBatches(const std::vector<int64_t>& lengths, int max_rows,
                                         int64_t max_tokens, int64_t forward_overhead_tokens);

// Pads rows (by pointer) into one ScoreBatch of width seq_len.
ScoreBatch BuildScoreBatch(const std::vector<const Encoding*>& rows, int64_t seq_len,
                           int64_t pad_id);

class Batcher final : public ScoringQueue, public QueueStats {
 public:
  struct Options {
    int workers = 1;                                         // model replicas / worker threads
    int max_batch_pairs = 64;                                // rows taken per iteration
    int64_t max_batch_tokens = 8192;                         // padded tokens per micro-batch
    absl::Duration max_queue_delay = absl::Milliseconds(1);  // wait for more rows to join
    int max_queue_pairs = 4096;                              // bounded queue, in rows
    int64_t forward_overhead_tokens = 128;  // fixed cost of a forward, in token units
    int64_t pad_id = 0;                     // [PAD]
  };
  // Starts the workers; each calls `factory` on its own thread. Fails (and joins everything) if
  // any replica fails to load. `clock` (deadlines, waits) and `observer` are not owned, may be
  // null for observer, and must outlive the Batcher.
  static absl::StatusOr<std::unique_ptr<Batcher>> Create(const Options& options,
                                                         ScorerFactory factory, Clock* clock,
                                                         BatcherObserver* observer);
  ~Batcher();  // Stop()

  // Queues a job. RESOURCE_EXHAUSTED when its rows do not fit in the queue, UNAVAILABLE when
  // draining/stopped, INVALID_ARGUMENT for an empty job. On error `done` is NOT called.
  absl::Status Submit(std::shared_ptr<ScoringJob> job) override;

  // Stops accepting jobs and waits up to `timeout` for queued and running work to finish.
  // Returns true if everything finished.
  bool Drain(absl::Duration timeout);
  // Fails queued jobs with UNAVAILABLE, waits for running batches, joins the workers.
  void Stop();

  int queued_rows() const override;
  int busy_workers() const override;
  const Options& options() const { return options_; }

 private:
  struct JobState;
  struct Item {
    std::shared_ptr<JobState> job;
    int row;
  };

  Batcher(const Options& options, ScorerFactory factory, Clock* clock, BatcherObserver* observer);
  void WorkerLoop(int index);
  // Takes the next batch off the queue (blocking). Returns false when stopping.
  bool TakeBatch(std::vector<Item>* batch, absl::Time* oldest_enqueue);
  void RunBatch(Scorer& scorer, std::vector<Item>& batch, absl::Time oldest_enqueue);
  static void FinishJob(const std::shared_ptr<JobState>& job,
                        absl::StatusOr<std::vector<float>> result);

  const Options options_;
  ScorerFactory factory_;
  Clock* const clock_;
  BatcherObserver* const observer_;

  mutable absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  int started_ ABSL_GUARDED_BY(mu_) = 0;           // workers that finished loading
  absl::Status start_error_ ABSL_GUARDED_BY(mu_);  // first replica load failure
  std::vector<std::thread> threads_;
};

}  // namespace rerank

#endif  // RERANK_SERVER_BATCHER_H_
