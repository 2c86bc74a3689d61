// The data plane's logic, independent of gRPC: checks the caller's identity (client_id,
// x-client-id, request_id: bounded printable ASCII, before anything else sees them), rate-limits,
// validates the request, applies the feature-flag snapshot (pass-through, overfetch, cache
// rollout), tokenizes, serves cached pairs, submits the rest to the ScoringQueue (the Batcher) and
// assembles the ranked response. The gRPC
// service (server/rerank_service.h) is a thin adapter over it, so other front ends (an HTTP route)
// can reuse it unchanged.
//
// The model is swappable (hot reload): SetModel() installs a new ServingModel bundle atomically.
// Each request takes the bundle in force when it starts and uses it (tokenizer, queue, version,
// cache namespace) to its end, so a swap never mixes two models within one response.
//
// Thread-safe. Never blocks: a call returns after queueing work; `done` runs exactly once, either
// on the calling thread (errors, pass-through, all-cached) or on a batcher worker.
#ifndef RERANK_SERVER_RERANK_ENGINE_H_
#define RERANK_SERVER_RERANK_ENGINE_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
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

// Per-call facts the transport knows. The engine, not the transport, validates the id and decides
// the client key (see RerankEngine::Options::identity).
struct CallInfo {
  // The `x-client-id` metadata as sent ("" when absent). Untrusted: validated like client_id.
  std::string metadata_client_id;
  // The peer's IP address without the port ("" when unknown, e.g. in-process): the client key of
  // a request without an id, so all connections from one host share one rate-limit bucket.
  std::string peer_ip;
  absl::Time deadline = absl::InfiniteFuture();
  std::function<bool()> is_cancelled;  // optional
  // A client id the transport authenticated (an HTTP bearer token's): the client key whatever
  // Options::identity says and whatever the request carries. "" when none.
  std::string authenticated_client_id;
  // What metrics and the audit log call the call ("rpc" label): "" means the RPC's own name
  // ("Rerank", "RerankBatch"); the HTTP routes pass their path ("/v2/rerank").
  std::string rpc_label;
};

// One loaded model as the engine uses it; immutable once built. Shared by every request that
// started on it: whoever owns the queue keeps it running until the last of them has finished.
struct ServingModel {
  ModelInfo info;
  std::shared_ptr<const WordPieceTokenizer> tokenizer;
  std::shared_ptr<ScoringQueue> queue;  // the model's replicas (a Batcher)
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
    uint32_t max_length = 512;          // tokens per pair; further capped by each model's own
    bool chunk_long_documents = false;  // default long-document mode: false = truncate
    uint32_t max_chunks_per_doc = 4;
    uint32_t chunk_overlap_tokens = 32;
    bool sigmoid_by_default = false;  // default score activation
    bool include_query_text_in_audit = false;
    // client_id, x-client-id and request_id: at most this many bytes of printable ASCII
    // (0x20..0x7e), checked before rate limiting, audit and cache see them. 1..kMaxIdBytes.
    uint32_t max_id_bytes = 128;
    // Whose bucket a request takes and what `client_id` the audit records. kClientId: the id the
    // request carries (client_id, else x-client-id, else the peer IP), trusted as sent: client ids
    // are not authenticated unless mTLS or an authenticating gateway sits in front. kPeer: the
    // peer IP only; whatever the request says is ignored for limiting and rollout.
    enum class Identity { kClientId, kPeer };
    Identity identity = Identity::kClientId;
    // What the sticky cache rollout (cache.traffic_percent) hashes. kQuery: the query text, so the
    // percentage is a share of traffic even with one client, and a repeated query is consistently
    // cached or not. kClient: the client key (a share of clients).
    enum class RolloutKey { kQuery, kClient };
    RolloutKey cache_rollout_key = RolloutKey::kQuery;
  };
  // Upper bound for Options::max_id_bytes.
  static constexpr uint32_t kMaxIdBytes = 4096;
  // Everything the engine uses and does not own; each must outlive the engine. cache,
  // rate_limiter and observer may be null (feature absent). tokenizer, queue and model are the
  // initial model (not owned; they must outlive the engine); SetModel() replaces them.
  struct Deps {
    const WordPieceTokenizer* tokenizer = nullptr;
    ScoringQueue* queue = nullptr;
    const FlagSource* flags = nullptr;
    Clock* clock = nullptr;
    AuditSink* audit = nullptr;
    ScoreCache* cache = nullptr;
    RateLimiter* rate_limiter = nullptr;  // requests per minute per client (flags decide the rate)
    // Optional: query-document pairs per minute per client (rate_limit.pairs_per_minute; its rate
    // is fixed at creation). A Rerank costs its candidates, a RerankBatch those of every
    // sub-request; charged when the flags' rate_limit.enabled is on, after validation.
    RateLimiter* pair_limiter = nullptr;
    RequestObserver* observer = nullptr;
    ModelInfo model;
  };

  static absl::StatusOr<std::unique_ptr<RerankEngine>> Create(const Options& options, Deps deps);

  using RerankDone = std::function<void(absl::Status, v1::RerankResponse)>;
  using BatchDone = std::function<void(absl::Status, v1::RerankBatchResponse)>;
  void Rerank(const v1::RerankRequest& request, const CallInfo& call, RerankDone done);
  // With the flags' batch.enabled off (the `rollback` stage) a RerankBatch is still served: its
  // sub-requests are scored one after another, each as its own job, without cross-request
  // batching.
  void RerankBatch(const v1::RerankBatchRequest& request, const CallInfo& call, BatchDone done);

  // Swaps in a new model for requests that start from now on. InvalidArgument when the bundle
  // lacks a tokenizer or queue.
  absl::Status SetModel(std::shared_ptr<const ServingModel> model);
  // The model in force now (a copy of its info).
  ModelInfo model() const;
  // The bundle in force now.
  std::shared_ptr<const ServingModel> serving_model() const;
  // Tokens per pair for `model`: Options::max_length capped by the model's own limit.
  uint32_t MaxLengthFor(const ModelInfo& model) const;
  const Options& options() const { return options_; }

 private:
  struct SubPlan;
  struct RunState;
  // A ServingModel with what the engine derives from it once per swap.
  struct ActiveModel {
    std::shared_ptr<const ServingModel> serving;
    uint32_t max_length = 0;
    std::string cache_namespace;  // model version + scoring settings: part of every cache key
  };
  std::shared_ptr<const ActiveModel> CurrentModel() const;
  RerankEngine(const Options& options, Deps deps);

  // Validates and tokenizes one request; adds its rows to `rows`. Field names in errors are
  // prefixed with `prefix` ("" or "requests[3]."). Runs the steps below in order.
  absl::Status Plan(const v1::RerankRequest& request, const std::string& prefix,
                    const std::string& rollout_client, const FeatureFlags& flags,
                    std::vector<Encoding>* rows, SubPlan* plan) const;
  // 1. Sizes, UTF-8 and enum values against Options; INVALID_ARGUMENT naming the field.
  absl::Status ValidateRequest(const v1::RerankRequest& request, const std::string& prefix) const;
  // 2. From the flags snapshot: candidates considered (overfetch), top_n, activation, and
  //    whether to rerank at all (false: pass-through, nothing more to plan).
  void ResolveOptions(const v1::RerankRequest& request, const FeatureFlags& flags,
                      SubPlan* plan) const;
  // 3. The query's word pieces; INVALID_ARGUMENT when it has none.
  absl::StatusOr<std::vector<int32_t>> TokenizeQuery(const v1::RerankRequest& request,
                                                     const std::string& prefix,
                                                     const WordPieceTokenizer& tokenizer) const;
  // 4. Long-document mode, cache namespace and whether this request (its query, or its client)
  //    is in the cache rollout.
  void ResolveScoring(const v1::RerankRequest& request, const std::string& rollout_client,
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
  // INVALID_ARGUMENT naming `field` unless `id` is at most max_id_bytes of printable ASCII. The
  // message never quotes the id.
  absl::Status CheckId(std::string_view id, const std::string& field) const;
  // Checks every id the call carries (request or batch) and returns the client key.
  absl::StatusOr<std::string> ResolveClientKey(const std::string& client_id,
                                               const CallInfo& call) const;
  void Run(std::shared_ptr<RunState> state);
  // Submits the state's row segment `segment` (all rows, or one sub-request's when batching is
  // off); the next one is submitted when it completes.
  void SubmitSegment(std::shared_ptr<RunState> state, size_t segment);
  void Finish(RunState& state);
  void Complete(RunState& state, absl::Status status);
  absl::Status CheckRateLimit(const std::string& client_key, const FeatureFlags& flags,
                              const std::string& request_id) const;
  // Charges the planned pairs to deps_.pair_limiter; `field` names the request's list in errors.
  absl::Status CheckPairLimit(const RunState& state, const std::string& field) const;
  absl::Status RateLimited(RateLimiter::Decision d, const std::string& client_key,
                           const std::string& request_id, const std::string& what,
                           uint32_t limit) const;
  // INVALID_ARGUMENT naming `field` when `bytes` of text exceed options_.max_request_bytes.
  absl::Status CheckRequestBytes(size_t bytes, const std::string& field) const;

  const Options options_;
  const Deps deps_;
  mutable absl::Mutex model_mu_;
  std::shared_ptr<const ActiveModel> model_ ABSL_GUARDED_BY(model_mu_);
};

// RESOURCE_EXHAUSTED from the rate limiter carries this payload: the retry delay in whole
// milliseconds, as decimal text (the gRPC service sends it as "retry-after-ms" metadata).
inline constexpr char kRetryAfterPayload[] = "rerank.retry_after_ms";

}  // namespace rerank

#endif  // RERANK_SERVER_RERANK_ENGINE_H_
