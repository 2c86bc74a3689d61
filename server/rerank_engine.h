// The data plane's logic, independent of gRPC: validates a request, applies the feature-flag
// snapshot (pass-through, overfetch, cache rollout), rate-limits, tokenizes, serves cached pairs,
// submits the rest to the ScoringQueue (the Batcher) and assembles the ranked response. The gRPC
// service (server/rerank_service.h) is a thin adapter over it, so other front ends (an HTTP route)
// can reuse it unchanged.
//
// Thread-safe. Never blocks: a call returns after queueing work; `done` runs exactly once, either
// on the calling thread (errors, pass-through, all-cached) or on a batcher worker.
#ifndef RERANK_SERVER_RERANK_ENGINE_H_
#define RERANK_SERVER_RERANK_ENGINE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/audit_sink.h"
#include "common/clock.h"
#include "common/feature_flags.h"
#include "common/observers.h"
#include "common/rate_limiter.h"
#include "common/score_cache.h"
#include "rerank/v1/reranker.pb.h"
#include "server/model_info.h"
#include "server/scoring_queue.h"
#include "server/tokenizer.h"

namespace rerank {

// Per-call facts the transport knows.
struct CallInfo {
  std::string client_key;  // client_id, else x-client-id, else peer
  absl::Time deadline = absl::InfiniteFuture();
  std::function<bool()> is_cancelled;  // optional
};

class RerankEngine {
 public:
  struct Options {
    uint32_t default_top_n = 5;     // top_n = 0
    uint32_t max_documents = 1000;  // per request
    uint32_t max_query_bytes = 8192;
    uint32_t max_document_bytes = 65536;
    uint32_t max_batch_requests = 64;  // sub-requests per RerankBatch
    // Query + document text per RPC (all sub-requests of a RerankBatch). Tokenizing runs on the
    // calling (gRPC) thread, so this bounds how long one request holds it. 0: no limit.
    uint64_t max_request_bytes = 8u << 20;
    uint32_t max_length = 512;          // tokens per pair (already capped by the model's)
    bool chunk_long_documents = false;  // default long-document mode: false = truncate
    uint32_t max_chunks_per_doc = 4;
    uint32_t chunk_overlap_tokens = 32;
    bool sigmoid_by_default = false;  // default score activation
    bool include_query_text_in_audit = false;
  };
  // Everything the engine uses and does not own; each must outlive the engine. cache,
  // rate_limiter and observer may be null (feature absent).
  struct Deps {
    const WordPieceTokenizer* tokenizer = nullptr;
    ScoringQueue* queue = nullptr;
    const FlagSource* flags = nullptr;
    Clock* clock = nullptr;
    AuditSink* audit = nullptr;
    ScoreCache* cache = nullptr;
    RateLimiter* rate_limiter = nullptr;
    RequestObserver* observer = nullptr;
    ModelInfo model;
  };

  static absl::StatusOr<std::unique_ptr<RerankEngine>> Create(const Options& options, Deps deps);

  using RerankDone = std::function<void(absl::Status, v1::RerankResponse)>;
  using BatchDone = std::function<void(absl::Status, v1::RerankBatchResponse)>;
  void Rerank(const v1::RerankRequest& request, const CallInfo& call, RerankDone done);
  void RerankBatch(const v1::RerankBatchRequest& request, const CallInfo& call, BatchDone done);

  const ModelInfo& model() const { return deps_.model; }
  const Options& options() const { return options_; }

 private:
  struct SubPlan;
  struct RunState;
  RerankEngine(const Options& options, Deps deps);

  // Validates and tokenizes one request; adds its rows to `rows`. Field names in errors are
  // prefixed with `prefix` ("" or "requests[3]."). Runs the steps below in order.
  absl::Status Plan(const v1::RerankRequest& request, const std::string& prefix,
                    const std::string& client_key, const FeatureFlags& flags,
                    std::vector<Encoding>* rows, SubPlan* plan) const;
  // 1. Sizes, UTF-8 and enum values against Options; INVALID_ARGUMENT naming the field.
  absl::Status ValidateRequest(const v1::RerankRequest& request, const std::string& prefix) const;
  // 2. From the flags snapshot: candidates considered (overfetch), top_n, activation, and
  //    whether to rerank at all (false: pass-through, nothing more to plan).
  void ResolveOptions(const v1::RerankRequest& request, const FeatureFlags& flags,
                      SubPlan* plan) const;
  // 3. The query's word pieces; INVALID_ARGUMENT when it has none.
  absl::StatusOr<std::vector<int32_t>> TokenizeQuery(const v1::RerankRequest& request,
                                                     const std::string& prefix) const;
  // 4. Long-document mode, cache namespace and whether this client is in the cache rollout.
  void ResolveScoring(const v1::RerankRequest& request, const std::string& client_key,
                      const FeatureFlags& flags, SubPlan* plan) const;
  // 5. Marks cached candidates with their scores (only when plan->use_cache).
  void LookupCache(const v1::RerankRequest& request, SubPlan* plan) const;
  //    Then admission: ScoringQueue::CheckAdmission for the uncached candidates, before they are
  //    tokenized (RESOURCE_EXHAUSTED with a retry hint when the client is over its share).
  // 6. One row per uncached candidate (truncate) or one per window (chunk_max), appended to rows.
  absl::Status EncodeDocuments(const v1::RerankRequest& request, const std::string& prefix,
                               const std::vector<int32_t>& query_ids, std::vector<Encoding>* rows,
                               SubPlan* plan) const;
  static v1::RerankResponse Assemble(const SubPlan& plan, const std::vector<float>& row_scores);
  void Run(std::shared_ptr<RunState> state);
  void Complete(RunState& state, absl::Status status);
  absl::Status CheckRateLimit(const std::string& client_key, const FeatureFlags& flags,
                              const std::string& request_id) const;
  // INVALID_ARGUMENT naming `field` when `bytes` of text exceed options_.max_request_bytes.
  absl::Status CheckRequestBytes(size_t bytes, const std::string& field) const;

  const Options options_;
  const Deps deps_;
  std::string cache_namespace_;  // model version + scoring settings: part of every cache key
};

// RESOURCE_EXHAUSTED from the rate limiter carries this payload: the retry delay in whole
// milliseconds, as decimal text (the gRPC service sends it as "retry-after-ms" metadata).
inline constexpr char kRetryAfterPayload[] = "rerank.retry_after_ms";

}  // namespace rerank

#endif  // RERANK_SERVER_RERANK_ENGINE_H_
