// The seam between the request logic (RerankEngine) and the execution of forwards (Batcher): the
// engine submits one ScoringJob per request and is called back with its scores. Tests give the
// engine a fake queue (tests/testing/fake_scoring_queue.h) to check validation, flags, cache,
// pass-through and chunking without threads, a model or gRPC.
#ifndef RERANK_SERVER_SCORING_QUEUE_H_
#define RERANK_SERVER_SCORING_QUEUE_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/tokenizer.h"

namespace rerank {

struct ScoringJob {
  std::vector<Encoding> rows;                    // at least one row, each non-empty
  absl::Time deadline = absl::InfiniteFuture();  // dropped (DEADLINE_EXCEEDED) if passed first
  std::function<bool()> is_cancelled;            // optional; dropped (CANCELLED) if true first
  // Exactly once: one score per row, in row order, or the error that stopped the job.
  std::function<void(absl::StatusOr<std::vector<float>>)> done;
};

// Thread-safe.
class ScoringQueue {
 public:
  virtual ~ScoringQueue() = default;
  // Queues a job. On success `done` will be called exactly once (on some thread); on error it is
  // NOT called: RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE when draining or stopped,
  // INVALID_ARGUMENT for an empty job.
  virtual absl::Status Submit(std::shared_ptr<ScoringJob> job) = 0;
};

}  // namespace rerank

#endif  // RERANK_SERVER_SCORING_QUEUE_H_
