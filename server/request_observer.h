// Hooks through which the data plane reports each finished request, so the admin plane (live
// /health stats, Prometheus metrics) can observe it without the data plane knowing about either.
#ifndef RERANK_SERVER_REQUEST_OBSERVER_H_
#define RERANK_SERVER_REQUEST_OBSERVER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace rerank {

struct RequestReport {
  std::string rpc;              // "Rerank" | "RerankBatch"
  absl::StatusCode code = absl::StatusCode::kOk;
  absl::Duration latency;       // from the RPC's start to its response
  int queries = 0;              // 1 for Rerank, sub-requests for RerankBatch
  int documents = 0;            // candidates considered
  int pairs_scored = 0;         // rows sent to the model (after cache hits, chunks counted)
  int cache_lookups = 0;
  int cache_hits = 0;
  bool reranked = false;        // false for pass-through (reranker disabled) and errors
  bool rate_limited = false;
};

// Thread-safe; called on gRPC or worker threads, outside engine locks. Must not block.
class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  virtual void OnRequest(const RequestReport& report) = 0;
};

}  // namespace rerank

#endif  // RERANK_SERVER_REQUEST_OBSERVER_H_
