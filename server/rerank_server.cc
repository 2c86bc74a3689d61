#include "server/rerank_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "prometheus/registry.h"
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
  start_time_ = clock_->Now();

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

  if (absl::Status s = InitObservability(overrides); !s.ok()) return s;

  ScorerFactory factory = overrides.scorer_factory;
  if (!factory) {
    // OpenBLAS's pool is process-wide: intra_op_threads with one worker, 1 with several.
    const int threads = static_cast<int>(c.execution.intra_op_threads);
    InitTorchRuntime(threads, c.execution.workers == 1 ? threads : 1);
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
      Batcher::Create(bo, std::move(factory), clock_, batcher_observers_.get());
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
  deps.observer = request_observers_.get();
  deps.model = model_;
  absl::StatusOr<std::unique_ptr<RerankEngine>> engine = RerankEngine::Create(eo, std::move(deps));
  if (!engine.ok()) return engine.status();
  engine_ = *std::move(engine);

  if (absl::Status s = StartAdmin(); !s.ok()) return s;
  if (overrides.on_admin_listening) overrides.on_admin_listening(admin_http_port_, admin_grpc_port_);

  if (c.model.warmup) {
    if (absl::Status s = Warmup(); !s.ok()) return s;
  }

  service_ = std::make_unique<RerankService>(engine_.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // A port already in use is an error, not silently shared with another process.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
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

absl::Status RerankServer::InitObservability(const Overrides& overrides) {
  const Config& c = config_;
  registry_ = std::make_shared<prometheus::Registry>();
  absl::StatusOr<std::unique_ptr<ServiceMetrics>> metrics =
      ServiceMetrics::Create(ServiceMetrics::Options(), registry_.get());
  if (!metrics.ok()) return metrics.status();
  metrics_ = *std::move(metrics);
  metrics_->SetModelInfo(model_.name, model_.version, c.model.precision);

  LiveStats::Options lo;
  lo.window = absl::Seconds(c.admin.stats_window_seconds);
  lo.target_latency = absl::Milliseconds(c.rerank.target_latency_ms);
  absl::StatusOr<std::unique_ptr<LiveStats>> stats = LiveStats::Create(lo, clock_);
  if (!stats.ok()) return stats.status();
  live_stats_ = *std::move(stats);

  request_observers_ = std::make_unique<CompositeRequestObserver>(
      std::vector<RequestObserver*>{metrics_.get(), live_stats_.get(), overrides.observer});
  batcher_observers_ = std::make_unique<CompositeBatcherObserver>(
      std::vector<BatcherObserver*>{metrics_.get(), overrides.batcher_observer});
  return absl::OkStatus();
}

Readiness RerankServer::readiness() const {
  if (shut_down_.load()) return {false, "draining: the server is shutting down"};
  if (!ready_.load()) return {false, "warming up: the model is loading or warming up"};
  return {true, ""};
}

absl::Status RerankServer::StartAdmin() {
  const Config& c = config_;
  ServiceMetrics::Sources sources;
  sources.cache = cache_.get();
  sources.rate_limiter = rate_limiter_.get();
  sources.audit = audit_.get();
  sources.flags = flags_.get();
  sources.batcher = batcher_.get();
  sources.ready = [this] { return readiness().ready; };
  sources.clock = clock_;
  sources.start = start_time_;
  metrics_->SetSources(std::move(sources));

  AdminCore::Options ao;
  ao.token = c.admin.token;
  AdminCore::Deps ad;
  ad.flags = flags_.get();
  ad.audit = audit_.get();
  ad.stats = live_stats_.get();
  ad.cache = cache_.get();
  ad.metrics = metrics_.get();
  ad.clock = clock_;
  ad.start = start_time_;
  ad.model_name = model_.name;
  ad.model_version = model_.version;
  ad.precision = c.model.precision;
  ad.demo_model = model_.demo;
  ad.readiness = [this] { return readiness(); };
  absl::StatusOr<std::unique_ptr<AdminCore>> core = AdminCore::Create(std::move(ao), std::move(ad));
  if (!core.ok()) return core.status();
  admin_core_ = *std::move(core);

  if (!c.admin.http_listen.empty()) {
    AdminHttpServer::Options ho;
    ho.listen = c.admin.http_listen;
    absl::StatusOr<std::unique_ptr<AdminHttpServer>> http =
        AdminHttpServer::Start(ho, admin_core_.get());
    if (!http.ok()) return http.status();
    admin_http_ = *std::move(http);
    admin_http_port_ = admin_http_->port();
  }
  if (!c.admin.grpc_listen.empty()) {
    AdminGrpcServer::Options go;
    go.listen = c.admin.grpc_listen;
    absl::StatusOr<std::unique_ptr<AdminGrpcServer>> grpc =
        AdminGrpcServer::Start(go, admin_core_.get());
    if (!grpc.ok()) return grpc.status();
    admin_grpc_ = *std::move(grpc);
    admin_grpc_port_ = admin_grpc_->port();
  }
  spdlog::info("admin plane: HTTP {} (port {}), gRPC rerank.admin.v1.Admin {} (port {})",
               c.admin.http_listen.empty() ? "disabled" : c.admin.http_listen, admin_http_port_,
               c.admin.grpc_listen.empty() ? "disabled" : c.admin.grpc_listen, admin_grpc_port_);
  if (c.admin.token.empty()) {
    spdlog::warn("admin.token is not configured: state-changing admin calls (POST /flags, "
                 "POST /reload, SetStage, SetFlags, Reload) are refused");
  }
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
  // Admin servers last: /live, /ready ("draining") and /metrics answer throughout the drain.
  if (admin_grpc_ != nullptr) admin_grpc_->Stop();
  if (admin_http_ != nullptr) admin_http_->Stop();
}

}  // namespace rerank
