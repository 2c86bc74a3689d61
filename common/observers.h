// The small interfaces that cross planes. The data plane (server/) reports what it does through
// RequestObserver and BatcherObserver and exposes its load through QueueStats; the admin plane
// (admin/: metrics, live /health stats) implements or reads them; the composition root (app/)
// connects the two. Neither plane includes the other: both include only this header, which pulls
// in nothing heavier than absl's Status and Time.
#ifndef RERANK_COMMON_OBSERVERS_H_
#define RERANK_COMMON_OBSERVERS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace rerank {

// One finished data-plane request.
struct RequestReport {
  std::string rpc;     // "Rerank" | "RerankBatch", or an HTTP route ("/v2/rerank", ...)
  std::string client;  // the rate-limit key: the validated client id, else the peer
  absl::StatusCode code = absl::StatusCode::kOk;
  absl::Duration latency;  // from the RPC's start to its response
  int queries = 0;         // 1 for Rerank, sub-requests for RerankBatch
  int documents = 0;       // candidates considered
  int pairs_scored = 0;    // rows sent to the model (after cache hits, chunks counted)
  int cache_lookups = 0;
  int cache_hits = 0;
  bool reranked = false;  // false for pass-through (reranker disabled) and errors
  bool rate_limited = false;
};

// Whether a finished request is a failure of the service (what error rates and the error alert
// count): INTERNAL, UNAVAILABLE, UNKNOWN, DATA_LOSS, UNIMPLEMENTED, ABORTED, DEADLINE_EXCEEDED
// (the server did not answer within the caller's deadline, e.g. the job expired in the queue) and
// RESOURCE_EXHAUSTED from a full queue. Not: OK, the client's own mistakes (INVALID_ARGUMENT,
// FAILED_PRECONDITION, OUT_OF_RANGE, NOT_FOUND, ...), CANCELLED (the client gave up) and
// rate-limited requests (policy working; counted separately).
inline bool IsServerFailure(const RequestReport& r) {
  switch (r.code) {
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDeadlineExceeded:
      return true;
    case absl::StatusCode::kResourceExhausted:
      return !r.rate_limited;
    default:
      return false;
  }
}

// Thread-safe; called on gRPC or worker threads, outside engine locks. Must not block.
class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  virtual void OnRequest(const RequestReport& report) = 0;
};

// What one batcher worker iteration did. Reported on the worker thread, outside locks.
struct BatchReport {
  int rows = 0;             // rows taken from the queue
  int unique_rows = 0;      // after de-duplication
  int forwards = 0;         // micro-batches run
  int64_t real_tokens = 0;  // sum of row lengths (unique rows)
  // Tokens the model computed on: sum over micro-batches of rows x longest row, or of the real
  // tokens for a padding-free scorer (Scorer::PaddingFree).
  int64_t padded_tokens = 0;
  absl::Duration queue_wait;  // oldest row's wait between Submit and the batch start
  absl::Duration inference;   // time in Scorer::Score
  bool ok = true;
  // Rows taken but never sent to the model because their request was cancelled by the client
  // or its deadline had passed (included in `rows`, not in `unique_rows`).
  int dropped_cancelled_pairs = 0;
  int dropped_deadline_pairs = 0;
};

// Thread-safe; called on batcher worker threads. Must not block.
class BatcherObserver {
 public:
  virtual ~BatcherObserver() = default;
  virtual void OnBatch(const BatchReport& report) = 0;
  // A job dropped before inference (CANCELLED, DEADLINE_EXCEEDED) or failed (the forward's
  // error, INTERNAL for a model that threw). Once per job.
  virtual void OnJobDropped(absl::StatusCode code) = 0;
};

// The scoring queue's load, read at scrape time. Thread-safe, cheap.
class QueueStats {
 public:
  virtual ~QueueStats() = default;
  virtual int queued_rows() const = 0;
  virtual int busy_workers() const = 0;
};

// What /ready reports.
struct Readiness {
  bool ready = false;
  std::string reason;  // why not ready; empty when ready
};

// Fan-out observers: the data plane takes one observer of each kind; these forward each report to
// several (metrics, live stats, a test's own), in the given order. The list is fixed at
// construction (null entries skipped), so calls take no lock. Targets are not owned.
class CompositeRequestObserver final : public RequestObserver {
 public:
  explicit CompositeRequestObserver(std::vector<RequestObserver*> observers) {
    for (RequestObserver* o : observers) {
      if (o != nullptr) observers_.push_back(o);
    }
  }
  void OnRequest(const RequestReport& report) override {
    for (RequestObserver* o : observers_) o->OnRequest(report);
  }
  size_t size() const { return observers_.size(); }

 private:
  std::vector<RequestObserver*> observers_;
};

class CompositeBatcherObserver final : public BatcherObserver {
 public:
  explicit CompositeBatcherObserver(std::vector<BatcherObserver*> observers) {
    for (BatcherObserver* o : observers) {
      if (o != nullptr) observers_.push_back(o);
    }
  }
  void OnBatch(const BatchReport& report) override {
    for (BatcherObserver* o : observers_) o->OnBatch(report);
  }
  void OnJobDropped(absl::StatusCode code) override {
    for (BatcherObserver* o : observers_) o->OnJobDropped(code);
  }
  size_t size() const { return observers_.size(); }

 private:
  std::vector<BatcherObserver*> observers_;
};

}  // namespace rerank

#endif  // RERANK_COMMON_OBSERVERS_H_
