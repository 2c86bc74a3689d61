// Dynamic batching across concurrent requests, run by a pool of worker threads that each own a
// Scorer (a model replica).
//
// A request submits one ScoringJob: its client, token rows, deadline, cancellation probe and a
// completion callback. Each client has its own queue; a worker builds a batch by deficit round
// robin over the clients with queued rows, in token units: on its turn a client's deficit grows by
// fair_quantum_tokens x its weight and it takes rows while their lengths fit in the deficit, so
// every backlogged client gets a share of the model proportional to its weight. A client that had
// nothing queued gets its first turn before the backlogged ones (FQ-CoDel's "new flows"), so a
// light client's request waits for about the batch in flight, not for another client's backlog. A
// batch holds at most max_batch_pairs rows and max_batch_tokens real tokens (bounding how long a
// worker is busy, which is what a newly arrived request waits for). Identical rows in a batch are
// scored once; the batch is sorted by length and split into micro-batches that are each padded only
// to their own longest row (never to max_length), choosing the split that minimises padded tokens
// plus a per-forward overhead. Jobs that were cancelled or whose deadline passed are dropped before
// inference: none of their remaining rows reaches the model (counted in BatchReport's
// dropped_*_pairs and OnJobDropped).
//
// Faults: a forward that fails, or a Scorer that throws (std::exception or anything else), fails
// the jobs with rows in that micro-batch (INTERNAL for a throw); the worker keeps serving later
// batches.
//
// Completion: a job is done as soon as the forward holding its last row has run, not when its
// whole batch has. The rows of clients whose queue the batch empties (a light client's request,
// typically) are planned as their own micro-batches and run first, so such a job completes after
// its own forwards instead of waiting behind a backlogged client's rows in the same batch; this
// costs at most one extra forward, and only when a batch holds both kinds of rows.
//
// Admission: the queue is bounded in rows overall (max_queue_pairs) and per client
// (max_client_queue_pairs); Submit() fails at once with RESOURCE_EXHAUSTED carrying a retry hint
// (kQueueRetryAfterPayload). Beyond its cap only that client is turned away. A job larger than
// the per-client cap is still admitted when its client has nothing queued, so every valid request
// can run (alone); the overall bound always holds.
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
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
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
// max_tokens padded tokens. With padding_free (Scorer::PaddingFree: the model computes on real
// tokens only) a micro-batch costs its real tokens, so the plan has the fewest forwards the two
// limits allow. Exposed so the benchmark's raw-model baseline runs the exact same batches the
// server runs.
std::vector<MicroBatch> PlanMicroBatches(const std::vector<int64_t>& lengths, int max_rows,
                                         int64_t max_tokens, int64_t forward_overhead_tokens,
                                         bool padding_free = false);

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
    // Rows one client may have queued; 0: no per-client cap (max_queue_pairs still applies).
    int max_client_queue_pairs = 1024;
    // Deficit round robin quantum: tokens a weight-1 client may take per turn. About one long
    // row, so turns alternate quickly; any value >= 1 is fair.
    int64_t fair_quantum_tokens = 512;
    // Per-client weights (>= 1); a client not listed has weight 1. A weight-3 client gets three
    // times the tokens of a weight-1 client while both have rows queued.
    absl::flat_hash_map<std::string, int> client_weights;
  };
  // Starts the workers; each calls `factory` on its own thread. Fails (and joins everything) if
  // any replica fails to load. `clock` (deadlines, waits) and `observer` are not owned, may be
  // null for observer, and must outlive the Batcher.
  static absl::StatusOr<std::unique_ptr<Batcher>> Create(const Options& options,
                                                         ScorerFactory factory, Clock* clock,
                                                         BatcherObserver* observer);
  ~Batcher();  // Stop()

  // Queues a job. RESOURCE_EXHAUSTED (with a retry hint) when its rows do not fit in the queue
  // or in its client's share, UNAVAILABLE when draining/stopped, INVALID_ARGUMENT for an empty
  // job. On error `done` is NOT called.
  absl::Status Submit(std::shared_ptr<ScoringJob> job) override;
  // The same checks as Submit for a job of `min_rows` rows, without queueing anything.
  absl::Status CheckAdmission(const std::string& client, int min_rows) const override;

  // Stops accepting jobs and waits up to `timeout` for queued and running work to finish.
  // Returns true if everything finished.
  bool Drain(absl::Duration timeout);
  // Fails queued jobs with UNAVAILABLE, waits for running batches, joins the workers.
  void Stop();

  int queued_rows() const override;
  int busy_workers() const override;
  // Rows `client` has queued (0 for an unknown client).
  int queued_rows(const std::string& client) const;
  const Options& options() const { return options_; }

 private:
  enum class DropReason { kNone, kCancelled, kDeadline };
  struct JobState;
  struct Item {
    std::shared_ptr<JobState> job;
    int row;
    int64_t tokens;  // the row's length: its cost in the fair share
    // Its client has nothing left queued after this batch: its micro-batches run first.
    bool drains_client = false;
  };
  // One client's queue and its place in the round robin. Exists only while it has rows queued,
  // so the map is bounded by max_queue_pairs whatever the number of client keys.
  struct ClientQueue {
    std::string name;
    int weight = 1;
    std::deque<Item> items;
    int64_t deficit = 0;   // tokens it may still take in its current turn
    bool in_turn = false;  // its turn started (quantum added) and is not over yet
    bool is_new = false;   // in new_ring_: it had nothing queued and has not had a turn yet
  };

  Batcher(const Options& options, ScorerFactory factory, Clock* clock, BatcherObserver* observer);
  void WorkerLoop(int index);
  // Takes the next batch off the queue (blocking). Returns false when stopping.
  bool TakeBatch(std::vector<Item>* batch, absl::Time* oldest_enqueue);
  void RunBatch(Scorer& scorer, std::vector<Item>& batch, absl::Time oldest_enqueue);
  // Calls the job's `done` unless it already finished; returns whether this call finished it.
  static bool FinishJob(const std::shared_ptr<JobState>& job,
                        absl::StatusOr<std::vector<float>> result);
  // Whether `rows` more rows from `client` fit; RESOURCE_EXHAUSTED with a retry hint if not.
  absl::Status AdmitLocked(const std::string& client, int rows) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A suggested wait (ms) for `rows` queued rows to be scored at a `share` of the model.
  int64_t RetryAfterMsLocked(int rows, double share) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int WeightOf(const std::string& client) const;

  const Options options_;
  ScorerFactory factory_;
  Clock* const clock_;
  BatcherObserver* const observer_;

  mutable absl::Mutex mu_;
  absl::node_hash_map<std::string, ClientQueue> clients_ ABSL_GUARDED_BY(mu_);
  std::deque<ClientQueue*> new_ring_ ABSL_GUARDED_BY(mu_);  // sparse clients: served first
  std::deque<ClientQueue*> ring_ ABSL_GUARDED_BY(mu_);      // backlogged clients, in turn order
  int queued_ ABSL_GUARDED_BY(mu_) = 0;                     // rows over all clients
  int64_t active_weight_ ABSL_GUARDED_BY(mu_) = 0;          // sum of the weights in ring_
  double seconds_per_row_ ABSL_GUARDED_BY(mu_) = 0;  // moving average over batches; 0: none yet
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  int started_ ABSL_GUARDED_BY(mu_) = 0;           // workers that finished loading
  absl::Status start_error_ ABSL_GUARDED_BY(mu_);  // first replica load failure
  std::vector<std::thread> threads_;
};

}  // namespace rerank

#endif  // RERANK_SERVER_BATCHER_H_
