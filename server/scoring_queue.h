// The seam between the request logic (RerankEngine) and the execution of forwards (Batcher): the
// engine submits one ScoringJob per request and is called back with its scores. Tests give the
// engine a fake queue (tests/testing/fake_scoring_queue.h) to check validation, flags, cache,
// pass-through and chunking without threads, a model or gRPC.
//
// Fairness: every job names its client (the caller's client key). The queue serves clients fairly
// (the Batcher: deficit round robin over per-client queues, in tokens) and caps how many pairs one
// client may have queued, so one client's large request never starves the others.
#ifndef RERANK_SERVER_SCORING_QUEUE_H_
#define RERANK_SERVER_SCORING_QUEUE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/tokenizer.h"

namespace rerank {

struct ScoringJob {
  std::string client;                            // fair-share key; "" is a client like any other
  std::vector<Encoding> rows;                    // at least one row, each non-empty
  absl::Time deadline = absl::InfiniteFuture();  // dropped (DEADLINE_EXCEEDED) if passed first
  std::function<bool()> is_cancelled;            // optional; dropped (CANCELLED) if true first
  // Exactly once: one score per row, in row order, or the error that stopped the job.
  std::function<void(absl::StatusOr<std::vector<float>>)> done;
  // Set by the queue before it calls `done` (zero if it does not measure it): how long the job
  // waited from Submit until the first batch holding its rows started.
  absl::Duration queue_wait;
};

// Thread-safe.
class ScoringQueue {
 public:
  virtual ~ScoringQueue() = default;
  // Queues a job. On success `done` will be called exactly once (on some thread); on error it is
  // NOT called: RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE when draining or stopped,
  // INVALID_ARGUMENT for an empty job.
  virtual absl::Status Submit(std::shared_ptr<ScoringJob> job) = 0;

  // Admission before work: whether a job of at least `min_rows` rows from `client` could be
  // queued now, so a request is turned away before it is tokenized. Non-binding (Submit decides);
  // same errors as Submit. A queue without limits admits everything.
  virtual absl::Status CheckAdmission(const std::string& client, int min_rows) const {
    (void)client;
    (void)min_rows;
    return absl::OkStatus();
  }
};

// RESOURCE_EXHAUSTED from a queue (full, or the client over its share) carries this payload: a
// suggested retry delay in whole milliseconds, as decimal text. The gRPC service sends it as
// "retry-after-ms" trailing metadata, like the rate limiter's kRetryAfterPayload; it has its own
// key so that queue rejections are not counted as rate limiting.
inline constexpr char kQueueRetryAfterPayload[] = "rerank.queue_retry_after_ms";

}  // namespace rerank

#endif  // RERANK_SERVER_SCORING_QUEUE_H_
