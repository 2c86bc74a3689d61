#include "app/rerank_server.h"

#include <fcntl.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "app/rerank_server_impl.h"
#include "common/status_macros.h"
#include "prometheus/registry.h"
#include "server/latency_fault.h"
#include "server/torch_scorer.h"
#include "spdlog/spdlog.h"

namespace rerank {
namespace {

// 32 random bytes, hex: the admin token generated when none is configured.
std::string RandomToken() {
  std::random_device rd;  // /dev/urandom
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  for (int i = 0; i < 32; ++i) {
    const unsigned byte = rd() & 0xff;
    token.push_back(kHex[byte >> 4]);
    token.push_back(kHex[byte & 0xf]);
  }
  return token;
}

// Writes `token` to `path` readable by the owner alone (0600), replacing the file atomically.
absl::Status WriteTokenFile(const std::string& path, const std::string& token) {
  const std::filesystem::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  const std::string tmp = absl::StrCat(path, ".tmp");
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("admin.token_file: cannot create '", tmp, "': ", std::strerror(errno)));
  }
  const std::string content = token + "\n";
  const bool ok =
      ::fchmod(fd, 0600) == 0 &&
      ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) &&
      ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = ok ? errno : saved;
    ::unlink(tmp.c_str());
    return absl::UnavailableError(
        absl::StrCat("admin.token_file: cannot write '", path, "': ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<RerankServer>> RerankServer::BuildAndStart(Options options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status s = impl->Build(); !s.ok()) {
    impl->Shutdown();
    return s;
  }
  return std::unique_ptr<RerankServer>(new RerankServer(std::move(impl)));
}

RerankServer::RerankServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RerankServer::~RerankServer() { Shutdown(); }
void RerankServer::Shutdown() { impl_->Shutdown(); }
void RerankServer::Wait() { impl_->stopped.WaitForNotification(); }
int RerankServer::data_port() const { return impl_->data_port; }
int RerankServer::admin_http_port() const { return impl_->admin_http_port; }
int RerankServer::admin_grpc_port() const { return impl_->admin_grpc_port; }

absl::Status RerankServer::Impl::Build() {
  clock = options.clock != nullptr ? options.clock : RealClock::Get();
  start_time = clock->Now();
  RETURN_IF_ERROR(LoadModel());
  RETURN_IF_ERROR(InitAudit());
  RETURN_IF_ERROR(InitFlags());
  RETURN_IF_ERROR(InitCacheAndRateLimiter());
  RETURN_IF_ERROR(InitObservability());
  RETURN_IF_ERROR(InitBatcher());
  RETURN_IF_ERROR(InitEngine());
  RETURN_IF_ERROR(StartAdmin());
  if (options.on_admin_listening) options.on_admin_listening(admin_http_port, admin_grpc_port);
  if (config.model.warmup) RETURN_IF_ERROR(Warmup());
  return StartDataPlane();
}

absl::Status RerankServer::Impl::LoadModel() {
  ASSIGN_OR_RETURN(model, LoadModelInfo(config.model.dir));
  if (model.demo) {
    spdlog::warn(
        "model '{}' in {} has RANDOM demo weights: its scores are meaningless. Export a real "
        "checkpoint with: /usr/bin/python3 tools/export_model.py --checkpoint <hf_dir> --out "
        "<model_dir>, then set model.dir (or RERANKER_MODEL_DIR).",
        model.name, model.dir);
  }
  WordPieceTokenizer::Options tok;
  tok.vocab_path = model.vocab_path();
  tok.lowercase = model.lowercase;
  ASSIGN_OR_RETURN(tokenizer, WordPieceTokenizer::Create(tok));
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::InitAudit() {
  AuditLog::Options o;
  o.path = config.audit.path;
  o.queue_capacity = config.audit.queue_capacity;
  o.max_file_bytes = uint64_t{config.audit.max_file_mb} << 20;
  o.retention_days = config.audit.retention_days;
  o.include_query_text = config.audit.include_query_text;
  ASSIGN_OR_RETURN(audit, AuditLog::Create(o, clock));
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::InitFlags() {
  FlagStore::Options o;
  o.path = config.flags.path;
  o.poll_interval = absl::Milliseconds(config.flags.poll_interval_ms);
  o.initial = config.flags.initial;
  ASSIGN_OR_RETURN(flags, FlagStore::Create(o, clock, audit.get()));
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::InitCacheAndRateLimiter() {
  ScoreCache::Options co;
  co.max_entries = flags->Current()->cache_max_entries;
  co.max_bytes = config.cache.max_bytes;
  ASSIGN_OR_RETURN(cache, ScoreCache::Create(co));
  flags->AddListener(
      [c = cache.get()](const FeatureFlags& f) { c->SetMaxEntries(f.cache_max_entries); });
  RateLimiter::Options ro;
  ro.requests_per_minute = flags->Current()->rate_limit_per_minute;
  ASSIGN_OR_RETURN(rate_limiter, RateLimiter::Create(ro, clock));
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::InitObservability() {
  registry = std::make_shared<prometheus::Registry>();
  ServiceMetrics::Options mo;
  mo.target_latency = absl::Milliseconds(config.rerank.target_latency_ms);
  mo.max_client_series = static_cast<int>(config.admin.metrics_max_clients);
  ASSIGN_OR_RETURN(metrics, ServiceMetrics::Create(mo, registry.get()));
  metrics->SetModelInfo(model.name, model.version, config.model.precision);
  LiveStats::Options lo;
  lo.window = absl::Seconds(config.admin.stats_window_seconds);
  lo.target_latency = absl::Milliseconds(config.rerank.target_latency_ms);
  ASSIGN_OR_RETURN(live_stats, LiveStats::Create(lo, clock));
  request_observers = std::make_unique<CompositeRequestObserver>(
      std::vector<RequestObserver*>{metrics.get(), live_stats.get(), options.observer});
  batcher_observers = std::make_unique<CompositeBatcherObserver>(
      std::vector<BatcherObserver*>{metrics.get(), options.batcher_observer});
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::InitBatcher() {
  const ExecutionConfig& e = config.execution;
  ScorerFactory factory = options.scorer_factory;
  if (!factory) {
    // OpenBLAS's pool is process-wide: intra_op_threads with one worker, 1 with several.
    const int threads = static_cast<int>(e.intra_op_threads);
    InitTorchRuntime(threads, e.workers == 1 ? threads : 1);
    TorchScorer::Options so;
    so.model_path = model.model_path();
    so.precision = config.model.precision;
    so.intra_op_threads = threads;
    factory = [so]() -> absl::StatusOr<std::unique_ptr<Scorer>> {
      ASSIGN_OR_RETURN(std::unique_ptr<TorchScorer> scorer, TorchScorer::Create(so));
      return std::unique_ptr<Scorer>(std::move(scorer));
    };
  }
  if (const TestingConfig& t = config.testing; t.inject_latency_ms > 0) {
    LatencyFaultOptions lo;
    lo.delay = absl::Milliseconds(t.inject_latency_ms);
    lo.from_stage = t.inject_latency_from_stage;
    ASSIGN_OR_RETURN(factory, WithLatencyFault(std::move(factory), std::move(lo), flags.get()));
    spdlog::warn("TEST-ONLY latency fault on: +{} ms per model forward {}", t.inject_latency_ms,
                 t.inject_latency_from_stage.empty()
                     ? std::string("at every stage")
                     : absl::StrCat("from stage ", t.inject_latency_from_stage, " on"));
  }
  Batcher::Options bo;
  bo.workers = static_cast<int>(e.workers);
  bo.max_batch_pairs = static_cast<int>(e.max_batch_pairs);
  bo.max_batch_tokens = e.max_batch_tokens;
  bo.max_queue_delay = absl::Microseconds(e.max_queue_delay_us);
  bo.max_queue_pairs = static_cast<int>(e.max_queue_pairs);
  bo.max_client_queue_pairs = static_cast<int>(e.max_client_queue_pairs);
  bo.fair_quantum_tokens = e.fair_quantum_tokens;
  ASSIGN_OR_RETURN(const auto weights, ParseClientWeights(e.client_weights));
  for (const auto& [client, weight] : weights) bo.client_weights[client] = static_cast<int>(weight);
  bo.pad_id = tokenizer->pad_id();
  ASSIGN_OR_RETURN(batcher,
                   Batcher::Create(bo, std::move(factory), clock, batcher_observers.get()));
  spdlog::info("model '{}' version {} loaded: {} worker(s) x {} thread(s), precision {}",
               model.name, model.version, e.workers, e.intra_op_threads, config.model.precision);
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::InitEngine() {
  const RerankConfig& r = config.rerank;
  RerankEngine::Options eo;
  eo.default_top_n = r.default_top_n;
  eo.max_documents = r.max_documents;
  eo.max_query_bytes = r.max_query_bytes;
  eo.max_document_bytes = r.max_document_bytes;
  eo.max_batch_requests = r.max_batch_requests;
  eo.max_request_bytes = r.max_request_bytes;
  eo.max_length = std::min(config.model.max_length, model.max_length);
  eo.chunk_long_documents = r.long_document_mode == "chunk_max";
  eo.max_chunks_per_doc = r.max_chunks_per_doc;
  eo.chunk_overlap_tokens = r.chunk_overlap_tokens;
  eo.sigmoid_by_default = config.model.score_activation == "sigmoid";
  eo.include_query_text_in_audit = config.audit.include_query_text;
  RerankEngine::Deps deps;
  deps.tokenizer = tokenizer.get();
  deps.queue = batcher.get();
  deps.flags = flags.get();
  deps.clock = clock;
  deps.audit = audit.get();
  deps.cache = cache.get();
  deps.rate_limiter = rate_limiter.get();
  deps.observer = request_observers.get();
  deps.model = model;
  ASSIGN_OR_RETURN(engine, RerankEngine::Create(eo, std::move(deps)));
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::ResolveAdminToken() {
  const AdminConfig& a = config.admin;
  if (!a.token.empty()) {
    admin_token = a.token;
    return absl::OkStatus();
  }
  // No token configured: generate one for local operators (rerankctl and the deploy scripts read
  // this file); remote callers still need it. The path is logged, never the token.
  const std::string path = AdminTokenFile(config);
  admin_token = RandomToken();
  RETURN_IF_ERROR(WriteTokenFile(path, admin_token));
  spdlog::info("admin.token not configured: generated one into {} (mode 0600)", path);
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::StartAdmin() {
  ServiceMetrics::Sources sources;
  sources.cache = cache.get();
  sources.rate_limiter = rate_limiter.get();
  sources.audit = audit.get();
  sources.flags = flags.get();
  sources.queue = batcher.get();
  sources.ready = [this] { return GetReadiness().ready; };
  sources.clock = clock;
  sources.start = start_time;
  metrics->SetSources(std::move(sources));

  RETURN_IF_ERROR(ResolveAdminToken());
  AdminCore::Options ao;
  ao.token = admin_token;
  AdminCore::Deps ad;
  ad.flags = flags.get();
  ad.audit = audit.get();
  ad.stats = live_stats.get();
  ad.cache = cache.get();
  ad.metrics = metrics.get();
  ad.clock = clock;
  ad.start = start_time;
  ad.model_name = model.name;
  ad.model_version = model.version;
  ad.precision = config.model.precision;
  ad.demo_model = model.demo;
  ad.readiness = [this] { return GetReadiness(); };
  ASSIGN_OR_RETURN(admin_core, AdminCore::Create(std::move(ao), std::move(ad)));

  const AdminConfig& a = config.admin;
  if (!a.http_listen.empty()) {
    AdminHttpServer::Options ho;
    ho.listen = a.http_listen;
    ASSIGN_OR_RETURN(admin_http, AdminHttpServer::Start(ho, admin_core.get()));
    admin_http_port = admin_http->port();
  }
  if (!a.grpc_listen.empty()) {
    AdminGrpcServer::Options go;
    go.listen = a.grpc_listen;
    ASSIGN_OR_RETURN(admin_grpc, AdminGrpcServer::Start(go, admin_core.get()));
    admin_grpc_port = admin_grpc->port();
  }
  spdlog::info("admin plane: HTTP {} (port {}), gRPC rerank.admin.v1.Admin {} (port {})",
               a.http_listen.empty() ? "disabled" : a.http_listen, admin_http_port,
               a.grpc_listen.empty() ? "disabled" : a.grpc_listen, admin_grpc_port);
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::Warmup() {
  // A few forwards of different shapes so the first real request does not pay for oneDNN
  // kernel creation and allocator growth.
  const int64_t max_len = std::min<int64_t>(engine->options().max_length, 256);
  for (int64_t len : {int64_t{16}, max_len / 2, max_len}) {
    auto job = std::make_shared<ScoringJob>();
    const int rows = std::min(8, static_cast<int>(config.execution.max_queue_pairs));
    for (int r = 0; r < rows; ++r) {
      Encoding e;
      e.input_ids.assign(len, tokenizer->unk_id());
      e.input_ids.front() = tokenizer->cls_id();
      e.input_ids.back() = tokenizer->sep_id();
      e.input_ids[r % (len - 1)] =
          r + 1000 < static_cast<int64_t>(tokenizer->vocab_size()) ? r + 1000 : 1;
      e.token_type_ids.assign(len, 0);
      job->rows.push_back(std::move(e));
    }
    absl::Notification done;
    absl::Status result;
    job->done = [&](absl::StatusOr<std::vector<float>> s) {
      result = s.status();
      done.Notify();
    };
    RETURN_IF_ERROR(batcher->Submit(job));
    done.WaitForNotification();
    if (!result.ok()) {
      return absl::Status(result.code(), absl::StrCat("model warmup failed: ", result.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::StartDataPlane() {
  const ServerConfig& s = config.server;
  service = std::make_unique<RerankService>(engine.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // A port already in use is an error, not silently shared with another process.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(s.listen, grpc::InsecureServerCredentials(), &data_port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(s.max_message_bytes));
  builder.RegisterService(service.get());
  grpc_server = builder.BuildAndStart();
  if (grpc_server == nullptr || data_port == 0) {
    return absl::UnavailableError(absl::StrCat("server.listen: cannot listen on '", s.listen, "'"));
  }
  grpc_server->GetHealthCheckService()->SetServingStatus(true);
  grpc_server->GetHealthCheckService()->SetServingStatus("rerank.v1.Reranker", true);
  ready.store(true);
  audit->Record("startup", {{"model_name", model.name},
                            {"model_version", model.version},
                            {"demo_model", model.demo},
                            {"listen", s.listen},
                            {"port", data_port},
                            {"stage", flags->Current()->stage}});
  spdlog::info("rerankd serving rerank.v1.Reranker on port {}", data_port);
  return absl::OkStatus();
}

Readiness RerankServer::Impl::GetReadiness() const {
  if (shut_down.load()) return {false, "draining: the server is shutting down"};
  if (!ready.load()) return {false, "warming up: the model is loading or warming up"};
  return {true, ""};
}

void RerankServer::Impl::Shutdown() {
  if (shut_down.exchange(true)) {
    stopped.WaitForNotification();
    return;
  }
  ready.store(false);
  const absl::Duration drain = absl::Milliseconds(config.server.drain_timeout_ms);
  if (grpc_server != nullptr) grpc_server->GetHealthCheckService()->SetServingStatus(false);
  bool drained = true;
  if (batcher != nullptr) drained = batcher->Drain(drain);
  if (grpc_server != nullptr) {
    grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }
  if (batcher != nullptr) batcher->Stop();
  if (flags != nullptr) flags->Stop();
  if (audit != nullptr) {
    audit->Record("shutdown", {{"drained", drained}});
    audit->Shutdown();
  }
  if (grpc_server != nullptr) grpc_server->Wait();
  // Admin servers last: /live, /ready ("draining") and /metrics answer throughout the drain.
  if (admin_grpc != nullptr) admin_grpc->Stop();
  if (admin_http != nullptr) admin_http->Stop();
  stopped.Notify();
}

}  // namespace rerank
