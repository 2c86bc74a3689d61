#include "server/rerank_engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/hash.h"
#include "common/rollout.h"
#include "common/status_macros.h"

namespace rerank {
namespace {

std::string NewRequestId() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%016x", rng());
}

// Stable (across processes) 64-bit FNV-1a, for the audit trail's query hash.
std::string QueryHash(std::string_view q) { return absl::StrFormat("%016x", Fnv1a64(q)); }

float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// INVALID_ARGUMENT naming the field: "<prefix><field>: <message>".
absl::Status FieldError(absl::string_view prefix, absl::string_view field,
                        absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(prefix, field, ": ", message));
}

// The text a request makes the engine tokenize: its query and its documents.
size_t RequestTextBytes(const v1::RerankRequest& req) {
  size_t bytes = req.query().size();
  for (const v1::Document& d : req.documents()) bytes += d.text().size();
  return bytes;
}

}  // namespace

struct RerankEngine::SubPlan {
  const v1::RerankRequest* request = nullptr;  // outlives the call (see header)
  std::string request_id;
  std::string queue_client;  // whose share of the scoring queue the rows use: the RPC's client
  uint32_t top_n = 0;
  bool sigmoid = false;
  bool reranked = true;  // false: pass-through
  bool chunk = false;    // long documents: chunk_max (true) or truncate
  bool use_cache = false;
  std::string cache_namespace;
  struct Doc {
    int index = 0;       // into request->documents()
    int first_row = -1;  // into the run's rows; -1 when cached
    int num_rows = 0;
    bool cached = false;
    float raw_score = 0.0f;
  };
  std::vector<Doc> docs;  // the candidates considered (overfetch may cut the list)
  int cache_lookups = 0;
  int cache_hits = 0;
  int rows = 0;
  uint64_t tokens = 0;                 // sum of the rows' lengths
  const ActiveModel* model = nullptr;  // the run's (RunState::model keeps it alive)
};

struct RerankEngine::RunState {
  std::string rpc;
  CallInfo call;
  // The validated client key; until the ids are checked, the peer IP (never an unchecked id).
  std::string client_key;
  absl::Time start;
  std::shared_ptr<const FeatureFlags> flags;
  std::shared_ptr<const ActiveModel> model;  // taken once at the start, used to the end
  std::string batch_request_id;              // RerankBatch only
  std::vector<SubPlan> plans;
  std::vector<Encoding> rows;
  // Row ranges [begin, end) submitted as separate jobs, in order: one for all rows, or one per
  // sub-request when cross-request batching is off. `scores` collects every row's score.
  std::vector<std::pair<size_t, size_t>> segments;
  std::vector<float> scores;
  // Timings (v1::RerankTimings): planning on the calling thread, then per submitted segment.
  absl::Duration tokenization;
  absl::Duration queue;
  absl::Duration inference;
  std::vector<v1::RerankResponse> responses;
  RerankDone rerank_done;
  BatchDone batch_done;
};

RerankEngine::RerankEngine(const Options& options, Deps deps)
    : options_(options), deps_(std::move(deps)) {}

uint32_t RerankEngine::MaxLengthFor(const ModelInfo& model) const {
  return std::min(options_.max_length, model.max_length);
}

absl::Status RerankEngine::SetModel(std::shared_ptr<const ServingModel> model) {
  if (model == nullptr || model->tokenizer == nullptr || model->queue == nullptr) {
    return absl::InvalidArgumentError("RerankEngine::SetModel: tokenizer and queue are required");
  }
  if (MaxLengthFor(model->info) < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(model->info.dir, "/model.yaml: max_length: must be >= 8"));
  }
  auto active = std::make_shared<ActiveModel>();
  active->max_length = MaxLengthFor(model->info);
  // The model version is part of every cache key: a new model never serves the old one's scores.
  active->cache_namespace = absl::StrCat(model->info.version, "|L", active->max_length);
  active->serving = std::move(model);
  absl::MutexLock lock(&model_mu_);
  model_ = std::move(active);
  return absl::OkStatus();
}

std::shared_ptr<const RerankEngine::ActiveModel> RerankEngine::CurrentModel() const {
  absl::MutexLock lock(&model_mu_);
  return model_;
}

std::shared_ptr<const ServingModel> RerankEngine::serving_model() const {
  return CurrentModel()->serving;
}

ModelInfo RerankEngine::model() const { return CurrentModel()->serving->info; }

absl::StatusOr<std::unique_ptr<RerankEngine>> RerankEngine::Create(const Options& options,
                                                                   Deps deps) {
  if (deps.tokenizer == nullptr || deps.queue == nullptr || deps.flags == nullptr ||
      deps.clock == nullptr || deps.audit == nullptr) {
    return absl::InvalidArgumentError(
        "RerankEngine: tokenizer, queue, flags, clock and audit are required");
  }
  if (options.default_top_n < 1)
    return absl::InvalidArgumentError("rerank.default_top_n: must be >= 1");
  if (options.max_documents < 1)
    return absl::InvalidArgumentError("rerank.max_documents: must be >= 1");
  if (options.max_length < 8) return absl::InvalidArgumentError("model.max_length: must be >= 8");
  if (options.max_chunks_per_doc < 1) {
    return absl::InvalidArgumentError("rerank.max_chunks_per_doc: must be >= 1");
  }
  if (options.max_id_bytes < 1 || options.max_id_bytes > kMaxIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("rerank.max_id_bytes: must be 1..", kMaxIdBytes,
                                                   ", got ", options.max_id_bytes));
  }
  // The initial model is borrowed (Deps): non-owning handles.
  auto initial = std::make_shared<ServingModel>();
  initial->info = deps.model;
  initial->tokenizer = std::shared_ptr<const WordPieceTokenizer>(deps.tokenizer, [](auto*) {});
  initial->queue = std::shared_ptr<ScoringQueue>(deps.queue, [](auto*) {});
  std::unique_ptr<RerankEngine> engine(new RerankEngine(options, std::move(deps)));
  RETURN_IF_ERROR(engine->SetModel(std::move(initial)));
  return engine;
}

absl::Status RerankEngine::CheckId(std::string_view id, const std::string& field) const {
  if (id.size() > options_.max_id_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", id.size(), " bytes exceeds the limit of ", options_.max_id_bytes,
                     " (rerank.max_id_bytes)"));
  }
  for (size_t i = 0; i < id.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(id[i]);
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: must be printable ASCII (0x20..0x7e), got byte 0x%02x at offset %d", field, c, i));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RerankEngine::ResolveClientKey(const std::string& client_id,
                                                           const CallInfo& call) const {
  RETURN_IF_ERROR(CheckId(call.metadata_client_id, "x-client-id (metadata)"));
  if (!call.authenticated_client_id.empty()) {
    RETURN_IF_ERROR(CheckId(call.authenticated_client_id, "authenticated client id"));
    return call.authenticated_client_id;
  }
  if (options_.identity == Options::Identity::kClientId) {
    if (!client_id.empty()) return client_id;
    if (!call.metadata_client_id.empty()) return call.metadata_client_id;
  }
  return call.peer_ip;
}

absl::Status RerankEngine::RateLimited(RateLimiter::Decision d, const std::string& client_key,
                                       const std::string& request_id, const std::string& what,
                                       uint32_t limit) const {
  const int64_t retry_ms = std::max<int64_t>(
      1, absl::ToInt64Milliseconds(absl::Ceil(d.retry_after, absl::Milliseconds(1))));
  nlohmann::json ev = {
      {"client_id", client_key}, {"request_id", request_id}, {"retry_after_ms", retry_ms}};
  ev[what == "requests" ? "limit_per_minute" : "limit_pairs_per_minute"] = limit;
  deps_.audit->Record("rate_limit_violation", std::move(ev));
  absl::Status s = absl::ResourceExhaustedError(
      absl::StrFormat("rate limit of %d %s/minute exceeded for client '%s'; retry after %.3fs",
                      limit, what, client_key, retry_ms / 1000.0));
  s.SetPayload(kRetryAfterPayload, absl::Cord(absl::StrCat(retry_ms)));
  return s;
}

absl::Status RerankEngine::CheckRateLimit(const std::string& client_key, const FeatureFlags& flags,
                                          const std::string& request_id) const {
  if (deps_.rate_limiter == nullptr || !flags.rate_limit_enabled) return absl::OkStatus();
  deps_.rate_limiter->SetRequestsPerMinute(flags.rate_limit_per_minute).IgnoreError();
  RateLimiter::Decision d = deps_.rate_limiter->Allow(client_key);
  if (d.allowed) return absl::OkStatus();
  return RateLimited(d, client_key, request_id, "requests", flags.rate_limit_per_minute);
}

absl::Status RerankEngine::CheckPairLimit(const RunState& state, const std::string& field) const {
  if (deps_.pair_limiter == nullptr || !state.flags->rate_limit_enabled) return absl::OkStatus();
  uint64_t pairs = 0;
  for (const SubPlan& p : state.plans) {
    if (p.reranked) pairs += p.docs.size();
  }
  if (pairs == 0) return absl::OkStatus();
  const uint32_t limit = deps_.pair_limiter->GetStats().burst;
  if (pairs > limit) {
    // More than a full bucket: waiting would never help.
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", pairs, " query-document pairs exceeds the per-client limit of ",
                     limit, " pairs per minute (rate_limit.pairs_per_minute); split the request"));
  }
  const std::string& request_id =
      state.batch_request_id.empty() ? state.plans[0].request_id : state.batch_request_id;
  RateLimiter::Decision d =
      deps_.pair_limiter->Allow(state.client_key, static_cast<uint32_t>(pairs));
  if (d.allowed) return absl::OkStatus();
  return RateLimited(d, state.client_key, request_id, "pairs", limit);
}

absl::Status RerankEngine::CheckRequestBytes(size_t bytes, const std::string& field) const {
  if (options_.max_request_bytes == 0 || bytes <= options_.max_request_bytes) {
    return absl::OkStatus();
  }
  return FieldError("", field,
                    absl::StrCat(bytes, " bytes of query and document text exceeds the limit of ",
                                 options_.max_request_bytes, " (rerank.max_request_bytes)"));
}

absl::Status RerankEngine::Plan(const v1::RerankRequest& req, const std::string& prefix,
                                const std::string& rollout_client, const FeatureFlags& flags,
                                std::vector<Encoding>* rows, SubPlan* plan) const {
  plan->request = &req;
  if (plan->request_id.empty()) {
    plan->request_id = req.request_id().empty() ? NewRequestId() : req.request_id();
  }
  RETURN_IF_ERROR(ValidateRequest(req, prefix));
  ResolveOptions(req, flags, plan);
  if (!plan->reranked) return absl::OkStatus();  // pass-through: original order, cut to top_n
  ASSIGN_OR_RETURN(const std::vector<int32_t> query_ids,
                   TokenizeQuery(req, prefix, *plan->model->serving->tokenizer));
  ResolveScoring(req, rollout_client, flags, plan);
  if (plan->use_cache) LookupCache(req, plan);
  // Admission before work: every uncached candidate is at least one row (chunking may add more),
  // so a full queue or a client over its share is turned away before its documents are
  // tokenized. Submit() still has the last word.
  int uncached = 0;
  for (const SubPlan::Doc& d : plan->docs) uncached += d.cached ? 0 : 1;
  if (uncached > 0) {
    RETURN_IF_ERROR(plan->model->serving->queue->CheckAdmission(
        plan->queue_client, static_cast<int>(rows->size()) + uncached));
  }
  return EncodeDocuments(req, prefix, query_ids, rows, plan);
}

// Documented in README "Bad input"; every message starts with the field's name.
absl::Status RerankEngine::ValidateRequest(const v1::RerankRequest& req,
                                           const std::string& prefix) const {
  auto bad = [&](const std::string& field, const std::string& msg) {
    return FieldError(prefix, field, msg);
  };
  if (req.query().size() > options_.max_query_bytes) {
    return bad("query", absl::StrCat(req.query().size(), " bytes exceeds the limit of ",
                                     options_.max_query_bytes, " (rerank.max_query_bytes)"));
  }
  if (size_t off = FindInvalidUtf8(req.query()); off != std::string_view::npos) {
    return bad("query", absl::StrCat("invalid UTF-8 at byte ", off));
  }
  if (absl::StripAsciiWhitespace(req.query()).empty()) return bad("query", "must not be empty");
  const int n = req.documents_size();
  if (n == 0) return bad("documents", "must contain at least one document");
  if (static_cast<uint32_t>(n) > options_.max_documents) {
    return bad("documents", absl::StrCat(n, " documents exceeds the limit of ",
                                         options_.max_documents, " (rerank.max_documents)"));
  }
  for (int i = 0; i < n; ++i) {
    const std::string& text = req.documents(i).text();
    if (text.size() > options_.max_document_bytes) {
      return bad(absl::StrCat("documents[", i, "].text"),
                 absl::StrCat(text.size(), " bytes exceeds the limit of ",
                              options_.max_document_bytes, " (rerank.max_document_bytes)"));
    }
    if (size_t off = FindInvalidUtf8(text); off != std::string_view::npos) {
      return bad(absl::StrCat("documents[", i, "].text"),
                 absl::StrCat("invalid UTF-8 at byte ", off));
    }
    if (size_t off = FindInvalidUtf8(req.documents(i).id()); off != std::string_view::npos) {
      return bad(absl::StrCat("documents[", i, "].id"),
                 absl::StrCat("invalid UTF-8 at byte ", off));
    }
  }
  if (!v1::ScoreActivation_IsValid(req.score_activation())) {
    return bad("score_activation", absl::StrCat("unknown value ", req.score_activation()));
  }
  if (!v1::LongDocumentMode_IsValid(req.long_document_mode())) {
    return bad("long_document_mode", absl::StrCat("unknown value ", req.long_document_mode()));
  }
  if (!v1::TruncationDirection_IsValid(req.truncation_direction())) {
    return bad("truncation_direction", absl::StrCat("unknown value ", req.truncation_direction()));
  }
  return absl::OkStatus();
}

void RerankEngine::ResolveOptions(const v1::RerankRequest& req, const FeatureFlags& flags,
                                  SubPlan* plan) const {
  const int n = req.documents_size();
  int considered = n;
  uint32_t default_top_n = options_.default_top_n;
  if (flags.overfetch_enabled) {
    considered = std::min<int>(n, static_cast<int>(flags.overfetch_candidates));
    default_top_n = flags.overfetch_top_n;
  }
  plan->top_n = req.top_n() == 0 ? default_top_n : req.top_n();
  plan->sigmoid = req.score_activation() == v1::SCORE_ACTIVATION_UNSPECIFIED
                      ? options_.sigmoid_by_default
                      : req.score_activation() == v1::SCORE_ACTIVATION_SIGMOID;
  plan->docs.resize(considered);
  for (int i = 0; i < considered; ++i) plan->docs[i].index = i;
  plan->reranked = flags.reranker_enabled;
}

absl::StatusOr<std::vector<int32_t>> RerankEngine::TokenizeQuery(
    const v1::RerankRequest& req, const std::string& prefix,
    const WordPieceTokenizer& tokenizer) const {
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Tokenize(req.query());
  if (!ids.ok()) return FieldError(prefix, "query", ids.status().message());
  if (ids->empty()) {
    return FieldError(prefix, "query", "has no tokens (only whitespace or control characters)");
  }
  return ids;
}

void RerankEngine::ResolveScoring(const v1::RerankRequest& req, const std::string& rollout_client,
                                  const FeatureFlags& flags, SubPlan* plan) const {
  plan->chunk = req.long_document_mode() == v1::LONG_DOCUMENT_MODE_UNSPECIFIED
                    ? options_.chunk_long_documents
                    : req.long_document_mode() == v1::LONG_DOCUMENT_MODE_CHUNK_MAX;
  // Chunked and truncated scores of the same pair differ, so they never share cache entries.
  const std::string& ns = plan->model->cache_namespace;
  plan->cache_namespace = plan->chunk ? absl::StrCat(ns, "|chunk", options_.max_chunks_per_doc, "o",
                                                     options_.chunk_overlap_tokens)
                                      : absl::StrCat(ns, "|trunc");
  // Per-document cuts and the truncation side change the scored text, hence the score.
  if (req.max_tokens_per_doc() > 0) {
    absl::StrAppend(&plan->cache_namespace, "|m", req.max_tokens_per_doc());
  }
  if (req.truncation_direction() == v1::TRUNCATION_DIRECTION_LEFT) {
    absl::StrAppend(&plan->cache_namespace, "|left");
  }
  const std::string& rollout_key =
      options_.cache_rollout_key == Options::RolloutKey::kQuery ? req.query() : rollout_client;
  plan->use_cache = deps_.cache != nullptr && flags.cache_enabled &&
                    InRollout(rollout_key, flags.cache_traffic_percent);
}

void RerankEngine::LookupCache(const v1::RerankRequest& req, SubPlan* plan) const {
  const size_t considered = plan->docs.size();
  std::vector<std::string_view> texts(considered);
  for (size_t i = 0; i < considered; ++i) texts[i] = req.documents(plan->docs[i].index).text();
  std::vector<std::optional<float>> hits =
      deps_.cache->LookupBatch(plan->cache_namespace, req.query(), texts);
  plan->cache_lookups = static_cast<int>(considered);
  for (size_t i = 0; i < considered; ++i) {
    if (hits[i].has_value()) {
      plan->docs[i].cached = true;
      plan->docs[i].raw_score = *hits[i];
      ++plan->cache_hits;
    }
  }
}

absl::Status RerankEngine::EncodeDocuments(const v1::RerankRequest& req, const std::string& prefix,
                                           const std::vector<int32_t>& query_ids,
                                           std::vector<Encoding>* rows, SubPlan* plan) const {
  const WordPieceTokenizer& tokenizer = *plan->model->serving->tokenizer;
  const int max_length = static_cast<int>(plan->model->max_length);
  const bool left = req.truncation_direction() == v1::TRUNCATION_DIRECTION_LEFT;
  const size_t max_doc_tokens = req.max_tokens_per_doc();
  for (SubPlan::Doc& doc : plan->docs) {
    if (doc.cached) continue;
    absl::StatusOr<std::vector<int32_t>> doc_ids =
        tokenizer.Tokenize(req.documents(doc.index).text());
    if (!doc_ids.ok()) {
      return FieldError(prefix, absl::StrCat("documents[", doc.index, "].text"),
                        doc_ids.status().message());
    }
    // max_tokens_per_doc cuts the document alone, before pairing (as Cohere does).
    if (max_doc_tokens > 0 && doc_ids->size() > max_doc_tokens) {
      if (left) {
        doc_ids->erase(doc_ids->begin(),
                       doc_ids->end() - static_cast<std::ptrdiff_t>(max_doc_tokens));
      } else {
        doc_ids->resize(max_doc_tokens);
      }
    }
    if (req.reject_truncation() &&
        query_ids.size() + doc_ids->size() + 3 > static_cast<size_t>(max_length)) {
      return FieldError(
          prefix, absl::StrCat("documents[", doc.index, "].text"),
          absl::StrCat("the query and this document are ", query_ids.size() + doc_ids->size() + 3,
                       " tokens, more than the model's max_length of ", max_length,
                       ", and truncation is off"));
    }
    doc.first_row = static_cast<int>(rows->size());
    if (plan->chunk) {
      std::vector<Encoding> chunks = tokenizer.EncodePairChunks(
          query_ids, *doc_ids, max_length, static_cast<int>(options_.chunk_overlap_tokens),
          static_cast<int>(options_.max_chunks_per_doc));
      doc.num_rows = static_cast<int>(chunks.size());
      for (Encoding& e : chunks) rows->push_back(std::move(e));
    } else {
      rows->push_back(tokenizer.EncodePair(query_ids, *doc_ids, max_length, left));
      doc.num_rows = 1;
    }
    for (int k = 0; k < doc.num_rows; ++k) {
      plan->tokens += (*rows)[rows->size() - 1 - k].input_ids.size();
    }
    plan->rows += doc.num_rows;
  }
  return absl::OkStatus();
}

v1::RerankResponse RerankEngine::Assemble(const SubPlan& plan,
                                          const std::vector<float>& row_scores) {
  v1::RerankResponse resp;
  resp.set_model_name(plan.model->serving->info.name);
  resp.set_model_version(plan.model->serving->info.version);
  resp.set_request_id(plan.request_id);
  resp.set_reranked(plan.reranked);
  resp.set_cache_hits(static_cast<uint32_t>(plan.cache_hits));
  const v1::RerankRequest& req = *plan.request;
  const size_t n = plan.docs.size();
  std::vector<float> scores(n, 0.0f);
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  if (plan.reranked) {
    for (size_t i = 0; i < n; ++i) {
      const SubPlan::Doc& d = plan.docs[i];
      float s = d.raw_score;
      if (!d.cached) {
        s = row_scores[d.first_row];
        for (int k = 1; k < d.num_rows; ++k) s = std::max(s, row_scores[d.first_row + k]);
      }
      scores[i] = plan.sigmoid ? Sigmoid(s) : s;
    }
    // Score descending, ties by original index ascending (stable_sort keeps index order).
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return scores[a] > scores[b]; });
  }
  const size_t k = std::min<size_t>(plan.top_n, n);
  for (size_t r = 0; r < k; ++r) {
    const SubPlan::Doc& d = plan.docs[order[r]];
    v1::RerankResult* out = resp.add_results();
    out->set_index(static_cast<uint32_t>(d.index));
    out->set_id(req.documents(d.index).id());
    out->set_score(scores[order[r]]);
    if (req.return_documents()) out->set_text(req.documents(d.index).text());
  }
  return resp;
}

void RerankEngine::Rerank(const v1::RerankRequest& request, const CallInfo& call, RerankDone done) {
  auto state = std::make_shared<RunState>();
  state->rpc = call.rpc_label.empty() ? "Rerank" : call.rpc_label;
  state->call = call;
  state->client_key = call.peer_ip;
  state->start = deps_.clock->Now();
  state->flags = deps_.flags->Current();
  state->model = CurrentModel();
  state->rerank_done = std::move(done);
  state->plans.resize(1);
  SubPlan& plan = state->plans[0];
  plan.request = &request;
  plan.model = state->model.get();
  plan.request_id = NewRequestId();
  // The ids first: nothing below (limiter, audit, cache, error messages) may see a bad one.
  absl::Status ids = CheckId(request.client_id(), "client_id");
  if (ids.ok()) ids = CheckId(request.request_id(), "request_id");
  absl::StatusOr<std::string> key =
      ids.ok() ? ResolveClientKey(request.client_id(), call) : absl::StatusOr<std::string>(ids);
  if (!key.ok()) return Complete(*state, key.status());
  state->client_key = *std::move(key);
  if (!request.request_id().empty()) plan.request_id = request.request_id();
  plan.queue_client = state->client_key;
  if (absl::Status s = CheckRateLimit(state->client_key, *state->flags, plan.request_id); !s.ok()) {
    return Complete(*state, s);
  }
  if (absl::Status s = CheckRequestBytes(RequestTextBytes(request), "documents"); !s.ok()) {
    return Complete(*state, s);
  }
  if (absl::Status s = Plan(request, "", state->client_key, *state->flags, &state->rows, &plan);
      !s.ok()) {
    return Complete(*state, s);
  }
  state->tokenization = deps_.clock->Now() - state->start;
  if (absl::Status s = CheckPairLimit(*state, "documents"); !s.ok()) return Complete(*state, s);
  state->segments.push_back({0, state->rows.size()});
  Run(std::move(state));
}

void RerankEngine::RerankBatch(const v1::RerankBatchRequest& request, const CallInfo& call,
                               BatchDone done) {
  auto state = std::make_shared<RunState>();
  state->rpc = call.rpc_label.empty() ? "RerankBatch" : call.rpc_label;
  state->call = call;
  state->client_key = call.peer_ip;
  state->start = deps_.clock->Now();
  state->flags = deps_.flags->Current();
  state->model = CurrentModel();
  state->batch_done = std::move(done);
  state->batch_request_id = NewRequestId();
  absl::Status ids = CheckId(request.client_id(), "client_id");
  if (ids.ok()) ids = CheckId(request.request_id(), "request_id");
  absl::StatusOr<std::string> key =
      ids.ok() ? ResolveClientKey(request.client_id(), call) : absl::StatusOr<std::string>(ids);
  if (!key.ok()) return Complete(*state, key.status());
  if (request.requests_size() == 0) {
    return Complete(*state,
                    absl::InvalidArgumentError("requests: must contain at least one request"));
  }
  if (static_cast<uint32_t>(request.requests_size()) > options_.max_batch_requests) {
    return Complete(*state,
                    absl::InvalidArgumentError(absl::StrCat(
                        "requests: ", request.requests_size(), " requests exceeds the limit of ",
                        options_.max_batch_requests, " (rerank.max_batch_requests)")));
  }
  for (int i = 0; i < request.requests_size(); ++i) {
    const v1::RerankRequest& sub = request.requests(i);
    const std::string prefix = absl::StrCat("requests[", i, "].");
    if (absl::Status s = CheckId(sub.client_id(), prefix + "client_id"); !s.ok()) {
      return Complete(*state, s);
    }
    if (absl::Status s = CheckId(sub.request_id(), prefix + "request_id"); !s.ok()) {
      return Complete(*state, s);
    }
  }
  state->client_key = *std::move(key);
  if (!request.request_id().empty()) state->batch_request_id = request.request_id();
  if (absl::Status s = CheckRateLimit(state->client_key, *state->flags, state->batch_request_id);
      !s.ok()) {
    return Complete(*state, s);
  }
  size_t text_bytes = 0;
  for (const v1::RerankRequest& sub : request.requests()) text_bytes += RequestTextBytes(sub);
  if (absl::Status s = CheckRequestBytes(text_bytes, "requests"); !s.ok()) {
    return Complete(*state, s);
  }
  const bool by_peer = options_.identity == Options::Identity::kPeer;
  state->plans.resize(request.requests_size());
  for (SubPlan& p : state->plans) p.model = state->model.get();
  for (int i = 0; i < request.requests_size(); ++i) {
    const v1::RerankRequest& sub = request.requests(i);
    state->plans[i].queue_client = state->client_key;
    // A sub-request's own client_id only picks its cache rollout (rate limiting is per RPC).
    const std::string& key =
        by_peer || sub.client_id().empty() ? state->client_key : sub.client_id();
    const size_t first_row = state->rows.size();
    absl::Status s = Plan(sub, absl::StrCat("requests[", i, "]."), key, *state->flags, &state->rows,
                          &state->plans[i]);
    if (!s.ok()) {
      state->plans.resize(i + 1);
      return Complete(*state, s);
    }
    // batch.enabled off (rollback): no cross-request batching, one job per sub-request.
    if (!state->flags->batch_enabled && state->rows.size() > first_row) {
      state->segments.push_back({first_row, state->rows.size()});
    }
  }
  state->tokenization = deps_.clock->Now() - state->start;
  if (absl::Status s = CheckPairLimit(*state, "requests"); !s.ok()) return Complete(*state, s);
  if (state->flags->batch_enabled) state->segments.push_back({0, state->rows.size()});
  Run(std::move(state));
}

void RerankEngine::Run(std::shared_ptr<RunState> state) {
  if (state->rows.empty()) return Finish(*state);  // pass-through, or every pair cached
  state->scores.assign(state->rows.size(), 0.0f);
  SubmitSegment(std::move(state), 0);
}

void RerankEngine::SubmitSegment(std::shared_ptr<RunState> state, size_t segment) {
  const auto [begin, end] = state->segments[segment];
  auto job = std::make_shared<ScoringJob>();
  job->client = state->client_key;  // the fair-share key
  job->rows.assign(std::make_move_iterator(state->rows.begin() + begin),
                   std::make_move_iterator(state->rows.begin() + end));
  job->deadline = state->call.deadline;
  job->is_cancelled = state->call.is_cancelled;
  const absl::Time submitted_at = deps_.clock->Now();
  // The queue keeps the job alive while it calls `done` (a shared_ptr here would be a cycle).
  ScoringJob* raw_job = job.get();
  job->done = [this, state, segment, begin = begin, submitted_at,
               raw_job](absl::StatusOr<std::vector<float>> scores) {
    const absl::Duration total = deps_.clock->Now() - submitted_at;
    const absl::Duration queued = std::min(raw_job->queue_wait, total);
    state->queue += queued;
    state->inference += total - queued;
    if (!scores.ok()) return Complete(*state, scores.status());
    std::copy(scores->begin(), scores->end(), state->scores.begin() + begin);
    if (segment + 1 < state->segments.size()) return SubmitSegment(state, segment + 1);
    Finish(*state);
  };
  absl::Status submitted = state->model->serving->queue->Submit(job);
  if (!submitted.ok()) Complete(*state, submitted);  // `done` is not called on a failed Submit
}

void RerankEngine::Finish(RunState& state) {
  for (const SubPlan& p : state.plans) {
    if (p.use_cache && deps_.cache != nullptr) {
      for (const SubPlan::Doc& d : p.docs) {
        if (d.cached || d.num_rows == 0) continue;
        float s = state.scores[d.first_row];
        for (int k = 1; k < d.num_rows; ++k) s = std::max(s, state.scores[d.first_row + k]);
        deps_.cache->Insert(p.cache_namespace, p.request->query(),
                            p.request->documents(d.index).text(), s);
      }
    }
    state.responses.push_back(Assemble(p, state.scores));
    v1::RerankTimings* t = state.responses.back().mutable_timings();
    t->set_tokenization_ms(absl::ToDoubleMilliseconds(state.tokenization));
    t->set_queue_ms(absl::ToDoubleMilliseconds(state.queue));
    t->set_inference_ms(absl::ToDoubleMilliseconds(state.inference));
    t->set_tokens(p.tokens);
  }
  Complete(state, absl::OkStatus());
}

void RerankEngine::Complete(RunState& state, absl::Status status) {
  const absl::Duration latency = deps_.clock->Now() - state.start;
  const double latency_ms = absl::ToDoubleMilliseconds(latency);
  RequestReport report;
  report.rpc = state.rpc;
  report.client = state.client_key;
  report.code = status.code();
  report.latency = latency;
  report.queries = static_cast<int>(state.plans.size());
  report.rate_limited = status.code() == absl::StatusCode::kResourceExhausted &&
                        status.GetPayload(kRetryAfterPayload).has_value();
  for (const SubPlan& p : state.plans) {
    report.documents += static_cast<int>(p.docs.size());
    report.pairs_scored += p.rows;
    report.cache_lookups += p.cache_lookups;
    report.cache_hits += p.cache_hits;
  }
  report.reranked = status.ok() && !state.plans.empty() && state.plans[0].reranked;
  if (state.flags->audit_enabled && !report.rate_limited) {
    // One `rerank` event per (sub-)request; an RPC rejected before planning logs one event.
    const size_t events = std::max<size_t>(1, state.plans.size());
    for (size_t i = 0; i < events; ++i) {
      nlohmann::json ev;
      const SubPlan* p = i < state.plans.size() ? &state.plans[i] : nullptr;
      ev["request_id"] =
          p != nullptr && !p->request_id.empty() ? p->request_id : state.batch_request_id;
      ev["client_id"] = state.client_key;
      ev["rpc"] = state.rpc;
      if (!state.batch_request_id.empty()) ev["batch_request_id"] = state.batch_request_id;
      if (p != nullptr && p->request != nullptr) {
        ev["query_hash"] = QueryHash(p->request->query());
        // Bounded: an oversized query (rejected) is never copied into the audit log.
        if (options_.include_query_text_in_audit &&
            p->request->query().size() <= options_.max_query_bytes) {
          ev["query"] = p->request->query();
        }
        ev["num_documents"] = p->request->documents_size();
        ev["top_n"] = p->top_n;
        ev["cache_hits"] = p->cache_hits;
        ev["reranked"] = status.ok() && p->reranked;
      }
      ev["latency_ms"] = latency_ms;
      ev["success"] = status.ok();
      ev["error"] = status.ok()
                        ? nlohmann::json(nullptr)
                        : nlohmann::json(absl::StrCat(absl::StatusCodeToString(status.code()), ": ",
                                                      status.message()));
      ev["model_version"] = state.model->serving->info.version;
      deps_.audit->Record("rerank", std::move(ev));
    }
  }
  if (deps_.observer != nullptr) deps_.observer->OnRequest(report);
  if (state.rerank_done) {
    v1::RerankResponse resp;
    if (status.ok() && !state.responses.empty()) resp = std::move(state.responses[0]);
    auto done = std::move(state.rerank_done);
    done(std::move(status), std::move(resp));
  } else if (state.batch_done) {
    v1::RerankBatchResponse resp;
    if (status.ok()) {
      for (auto& r : state.responses) *resp.add_responses() = std::move(r);
    }
    auto done = std::move(state.batch_done);
    done(std::move(status), std::move(resp));
  }
}

}  // namespace rerank
