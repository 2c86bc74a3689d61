#include "server/rerank_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "spdlog/spdlog.h"
#include "server/torch_scorer.h"

namespace rerank {

absl::StatusOr<std::unique_ptr<RerankServer>> RerankServer::Create(const Config& config) {
  return Create(config, Overrides());
}

absl::StatusOr<std::unique_ptr<RerankServer>> RerankServer::Create(const Config& config,
                                                                   Overrides overrides) {
  std::unique_ptr<RerankServer> server(new RerankServer(config));
  absl::Status s = server->Init(std::move(overrides));
  if (!s.ok()) {
    server->Shutdown();
    return s;
  }
  return server;
}

RerankServer::~RerankServer() { Shutdown(); }

absl::Status RerankServer::Init(Overrides overrides) {
  const Config& c = config_;
  clock_ = overrides.clock != nullptr ? overrides.clock : RealClock::Get();

  absl::StatusOr<ModelInfo> model = LoadModelInfo(c.model.dir);
  if (!model.ok()) return model.status();
  model_ = *model;
  const uint32_t max_length = std::min(c.model.max_length, model_.max_length);
  if (model_.demo) {
    spdlog::warn(
        "model '{}' in {} has RANDOM demo weights: its scores are meaningless. Export a real "
        "checkpoint with: /usr/bin/python3 tools/export_model.py --checkpoint <hf_dir> --out "
        "<model_dir>, then set model.dir (or RERANKER_MODEL_DIR).",
        model_.name, model_.dir);
  }

  WordPieceTokenizer::Options tok;
  tok.vocab_path = model_.vocab_path();
  tok.lowercase = model_.lowercase;
  absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> tokenizer = WordPieceTokenizer::Create(tok);
  if (!tokenizer.ok()) return tokenizer.status();
  tokenizer_ = *std::move(tokenizer);

  AuditLog::Options audit_opts;
  audit_opts.path = c.audit.path;
  audit_opts.queue_capacity = c.audit.queue_capacity;
  audit_opts.max_file_bytes = uint64_t{c.audit.max_file_mb} << 20;
  audit_opts.retention_days = c.audit.retention_days;
  audit_opts.include_query_text = c.audit.include_query_text;
  absl::StatusOr<std::unique_ptr<AuditLog>> audit = AuditLog::Create(audit_opts, clock_);
  if (!audit.ok()) return audit.status();
  audit_ = *std::move(audit);

  FlagStore::Options flag_opts;
  flag_opts.path = c.flags.path;
  flag_opts.poll_interval = absl::Milliseconds(c.flags.poll_interval_ms);
  flag_opts.initial = c.flags.initial;
  absl::StatusOr<std::unique_ptr<FlagStore>> flags = FlagStore::Create(flag_opts, clock_, audit_.get());
  if (!flags.ok()) return flags.status();
  flags_ = *std::move(flags);

  ScoreCache::Options cache_opts;
  cache_opts.max_entries = flags_->Current()->cache_max_entries;
  cache_opts.max_bytes = c.cache.max_bytes;
  absl::StatusOr<std::unique_ptr<ScoreCache>> cache = ScoreCache::Create(cache_opts);
  if (!cache.ok()) return cache.status();
  cache_ = *std::move(cache);
  flags_->AddListener([cache = cache_.get()](const FeatureFlags& f) {
    cache->SetMaxEntries(f.cache_max_entries);
  });

  RateLimiter::Options rl_opts;
  rl_opts.requests_per_minute = flags_->Current()->rate_limit_per_minute;
  absl::StatusOr<std::unique_ptr<RateLimiter>> rl = RateLimiter::Create(rl_opts, clock_);
  if (!rl.ok()) return rl.status();
  rate_limiter_ = *std::move(rl);

  ScorerFactory factory = overrides.scorer_factory;
  if (!factory) {
    InitTorchRuntime(static_cast<int>(c.execution.intra_op_threads));
    TorchScorer::Options so;
    so.model_path = model_.model_path();
    so.precision = c.model.precision;
    so.intra_op_threads = static_cast<int>(c.execution.intra_op_threads);
    factory = [so]() -> absl::StatusOr<std::unique_ptr<Scorer>> {
      absl::StatusOr<std::unique_ptr<TorchScorer>> s = TorchScorer::Create(so);
      if (!s.ok()) return s.status();
      return std::unique_ptr<Scorer>(*std::move(s));
    };
  }
  Batcher::Options bo;
  bo.workers = static_cast<int>(c.execution.workers);
  bo.max_batch_pairs = static_cast<int>(c.execution.max_batch_pairs);
  bo.max_batch_tokens = c.execution.max_batch_tokens;
  bo.max_queue_delay = absl::Microseconds(c.execution.max_queue_delay_us);
  bo.max_queue_pairs = static_cast<int>(c.execution.max_queue_pairs);
  bo.pad_id = tokenizer_->pad_id();
  absl::StatusOr<std::unique_ptr<Batcher>> batcher =
      Batcher::Create(bo, std::move(factory), clock_, overrides.batcher_observer);
  if (!batcher.ok()) return batcher.status();
  batcher_ = *std::move(batcher);
  spdlog::info("model '{}' version {} loaded: {} worker(s) x {} thread(s), precision {}",
               model_.name, model_.version, c.execution.workers, c.execution.intra_op_threads,
               c.model.precision);

  RerankEngine::Options eo;
  eo.default_top_n = c.rerank.default_top_n;
  eo.max_documents = c.rerank.max_documents;
  eo.max_query_bytes = c.rerank.max_query_bytes;
  eo.max_document_bytes = c.rerank.max_document_bytes;
  eo.max_batch_requests = c.rerank.max_batch_requests;
  eo.max_length = max_length;
  eo.chunk_long_documents = c.rerank.long_document_mode == "chunk_max";
  eo.max_chunks_per_doc = c.rerank.max_chunks_per_doc;
  eo.chunk_overlap_tokens = c.rerank.chunk_overlap_tokens;
  eo.sigmoid_by_default = c.model.score_activation == "sigmoid";
  eo.include_query_text_in_audit = c.audit.include_query_text;
  RerankEngine::Deps deps;
  deps.tokenizer = tokenizer_.get();
  deps.batcher = batcher_.get();
  deps.flags = flags_.get();
  deps.clock = clock_;
  deps.audit = audit_.get();
  deps.cache = cache_.get();
  deps.rate_limiter = rate_limiter_.get();
  deps.observer = overrides.observer;
  deps.model = model_;
  absl::StatusOr<std::unique_ptr<RerankEngine>> engine = RerankEngine::Create(eo, std::move(deps));
  if (!engine.ok()) return engine.status();
  engine_ = *std::move(engine);

  if (c.model.warmup) {
    if (absl::Status s = Warmup(); !s.ok()) return s;
  }

  service_ = std::make_unique<RerankService>(engine_.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(c.server.listen, grpc::InsecureServerCredentials(), &data_port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(c.server.max_message_bytes));
  builder.RegisterService(service_.get());
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || data_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("server.listen: cannot listen on '", c.server.listen, "'"));
  }
  grpc_server_->GetHealthCheckService()->SetServingStatus(true);
  grpc_server_->GetHealthCheckService()->SetServingStatus("rerank.v1.Reranker", true);
  ready_.store(true);
  audit_->Record("startup", {{"model_name", model_.name},
                             {"model_version", model_.version},
                             {"demo_model", model_.demo},
                             {"listen", c.server.listen},
                             {"port", data_port_},
                             {"stage", flags_->Current()->stage}});
  spdlog::info("rerankd serving rerank.v1.Reranker on port {}", data_port_);
  return absl::OkStatus();
}

absl::Status RerankServer::Warmup() {
  // A few forwards of different shapes so the first real request does not pay for oneDNN
  // kernel creation and allocator growth.
  const int64_t max_len = std::min<int64_t>(engine_->options().max_length, 256);
  for (int64_t len : {int64_t{16}, max_len / 2, max_len}) {
    auto job = std::make_shared<ScoringJob>();
    const int rows = std::min(8, static_cast<int>(config_.execution.max_queue_pairs));
    for (int r = 0; r < rows; ++r) {
      Encoding e;
      e.input_ids.assign(len, tokenizer_->unk_id());
      e.input_ids.front() = tokenizer_->cls_id();
      e.input_ids.back() = tokenizer_->sep_id();
      e.input_ids[r % (len - 1)] = r + 1000 < static_cast<int64_t>(tokenizer_->vocab_size()) ? r + 1000 : 1;
      e.token_type_ids.assign(len, 0);
      job->rows.push_back(std::move(e));
    }
    absl::Notification done;
    absl::Status result;
    job->done = [&](absl::StatusOr<std::vector<float>> s) {
      result = s.status();
      done.Notify();
    };
    if (absl::Status s = batcher_->Submit(job); !s.ok()) return s;
    done.WaitForNotification();
    if (!result.ok()) {
      return absl::Status(result.code(), absl::StrCat("model warmup failed: ", result.message()));
    }
  }
  return absl::OkStatus();
}

void RerankServer::Shutdown() {
  if (shut_down_.exchange(true)) return;
  ready_.store(false);
  const absl::Duration drain = absl::Milliseconds(config_.server.drain_timeout_ms);
  if (grpc_server_ != nullptr) {
    grpc_server_->GetHealthCheckService()->SetServingStatus(false);
  }
  bool drained = true;
  if (batcher_ != nullptr) drained = batcher_->Drain(drain);
  if (grpc_server_ != nullptr) {
    grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }
  if (batcher_ != nullptr) batcher_->Stop();
  if (flags_ != nullptr) flags_->Stop();
  if (audit_ != nullptr) {
    audit_->Record("shutdown", {{"drained", drained}});
    audit_->Shutdown();
  }
  if (grpc_server_ != nullptr) grpc_server_->Wait();
}

}  // namespace rerank
