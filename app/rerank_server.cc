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
#include "app/grpc_limits.h"
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
int RerankServer::http_port() const { return impl_->http_port; }
int RerankServer::admin_http_port() const { return impl_->admin_http_port; }
int RerankServer::admin_grpc_port() const { return impl_->admin_grpc_port; }

absl::Status RerankServer::Impl::Build() {
  clock = options.clock != nullptr ? options.clock : RealClock::Get();
  start_time = clock->Now();
  RETURN_IF_ERROR(InitAudit());
  RETURN_IF_ERROR(InitFlags());
  RETURN_IF_ERROR(InitCacheAndRateLimiter());
  RETURN_IF_ERROR(InitObservability());
  RETURN_IF_ERROR(InitModel());
  RETURN_IF_ERROR(InitEngine());
  RETURN_IF_ERROR(StartAdmin());
  if (options.on_admin_listening) options.on_admin_listening(admin_http_port, admin_grpc_port);
  if (config.model.warmup) RETURN_IF_ERROR(models->WarmupCurrent());
  RETURN_IF_ERROR(StartDataPlane());
  // Reloads (admin calls, the model.dir poller) only once the first model serves.
  models->Start([this](const std::shared_ptr<const ServingModel>& m) { return SwapModel(m); });
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::InitAudit() {
  AuditLog::Options o;
  o.path = config.audit.path;
  o.queue_capacity = config.audit.queue_capacity;
  o.queue_max_bytes = config.audit.queue_max_bytes;
  o.max_file_bytes = uint64_t{config.audit.max_file_mb} << 20;
  o.compress_rotated = config.audit.compress_rotated;
  o.retention_days = static_cast<int>(config.audit.retention_days);
  o.max_total_bytes = uint64_t{config.audit.max_total_mb} << 20;
  o.include_query_text = config.audit.include_query_text;
  ASSIGN_OR_RETURN(audit, AuditLog::Create(o, clock));
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::InitFlags() {
  FlagStore::Options o;
  o.path = config.flags.path;
  o.poll_interval = absl::Milliseconds(config.flags.poll_interval_ms);
  o.initial = config.flags.initial;
  o.overrides = config.flag_env_overrides;  // ENABLE_RERANKER=false + restart wins over the file
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
  if (config.rate_limit.pairs_per_minute > 0) {
    RateLimiter::Options po;
    po.requests_per_minute = config.rate_limit.pairs_per_minute;
    ASSIGN_OR_RETURN(pair_limiter, RateLimiter::Create(po, clock));
  }
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::InitObservability() {
  registry = std::make_shared<prometheus::Registry>();
  ServiceMetrics::Options mo;
  mo.target_latency = absl::Milliseconds(config.rerank.target_latency_ms);
  mo.max_client_series = static_cast<int>(config.admin.metrics_max_clients);
  ASSIGN_OR_RETURN(metrics, ServiceMetrics::Create(mo, registry.get()));
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

absl::Status RerankServer::Impl::InitModel() {
  ModelManager::Options mo;
  mo.model = config.model;
  mo.execution = config.execution;
  mo.retire_timeout = absl::Milliseconds(config.server.drain_timeout_ms);
  ModelManager::Deps md;
  md.clock = clock;
  md.audit = audit.get();
  md.batcher_observer = batcher_observers.get();
  md.scorer_factory = options.scorer_factory;
  if (const TestingConfig& t = config.testing; t.inject_latency_ms > 0) {
    LatencyFaultOptions lo;
    lo.delay = absl::Milliseconds(t.inject_latency_ms);
    lo.from_stage = t.inject_latency_from_stage;
    const FlagSource* source = flags.get();
    md.wrap_scorer_factory = [lo, source](ScorerFactory inner) {
      return WithLatencyFault(std::move(inner), lo, source);
    };
    spdlog::warn("TEST-ONLY latency fault on: +{} ms per model forward {}", t.inject_latency_ms,
                 t.inject_latency_from_stage.empty()
                     ? std::string("at every stage")
                     : absl::StrCat("from stage ", t.inject_latency_from_stage, " on"));
  }
  ASSIGN_OR_RETURN(models, ModelManager::Create(std::move(mo), std::move(md)));
  const ModelIdentity m = models->CurrentModel();
  metrics->SetModelInfo(m.name, m.version, m.precision);
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::SwapModel(const std::shared_ptr<const ServingModel>& m) {
  RETURN_IF_ERROR(engine->SetModel(m));
  metrics->SetModelInfo(m->info.name, m->info.version, config.model.precision);
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
  eo.max_length = config.model.max_length;  // the engine caps it per model
  eo.chunk_long_documents = r.long_document_mode == "chunk_max";
  eo.max_chunks_per_doc = r.max_chunks_per_doc;
  eo.chunk_overlap_tokens = r.chunk_overlap_tokens;
  eo.sigmoid_by_default = config.model.score_activation == "sigmoid";
  eo.include_query_text_in_audit = config.audit.include_query_text;
  eo.max_id_bytes = r.max_id_bytes;
  eo.identity = config.rate_limit.identity == "peer" ? RerankEngine::Options::Identity::kPeer
                                                     : RerankEngine::Options::Identity::kClientId;
  eo.cache_rollout_key = config.cache.rollout_key == "client"
                             ? RerankEngine::Options::RolloutKey::kClient
                             : RerankEngine::Options::RolloutKey::kQuery;
  const std::shared_ptr<const ServingModel> initial = models->current();
  RerankEngine::Deps deps;
  deps.tokenizer = initial->tokenizer.get();
  deps.queue = initial->queue.get();
  deps.flags = flags.get();
  deps.clock = clock;
  deps.audit = audit.get();
  deps.cache = cache.get();
  deps.rate_limiter = rate_limiter.get();
  deps.pair_limiter = pair_limiter.get();
  deps.observer = request_observers.get();
  deps.model = initial->info;
  ASSIGN_OR_RETURN(engine, RerankEngine::Create(eo, std::move(deps)));
  // The owning handles of the same bundle, so it stays alive across a swap for its requests.
  return engine->SetModel(initial);
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
  sources.queue = models.get();
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
  ad.precision = config.model.precision;
  ad.model_control = models.get();  // /health's model; POST /model/reload, ReloadModel
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

absl::Status RerankServer::Impl::StartDataPlane() {
  const ServerConfig& s = config.server;
  service = std::make_unique<RerankService>(
      engine.get(),
      s.max_request_ms == 0 ? absl::InfiniteDuration() : absl::Milliseconds(s.max_request_ms));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // A port already in use is an error, not silently shared with another process.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(s.listen, grpc::InsecureServerCredentials(), &data_port);
  // Message size, streams, memory quota, keepalive enforcement and max connection age (GOAWAY
  // after that age: clients reconnect, re-resolve dns:/// and spread onto new replicas).
  ApplyGrpcServerLimits(s, &builder);
  builder.RegisterService(service.get());
  grpc_server = builder.BuildAndStart();
  if (grpc_server == nullptr || data_port == 0) {
    return absl::UnavailableError(absl::StrCat("server.listen: cannot listen on '", s.listen, "'"));
  }
  grpc_server->GetHealthCheckService()->SetServingStatus(true);
  grpc_server->GetHealthCheckService()->SetServingStatus("rerank.v1.Reranker", true);
  RETURN_IF_ERROR(StartHttpDataPlane());
  ready.store(true);
  const ModelIdentity model = models->CurrentModel();
  audit->Record("startup", {{"model_name", model.name},
                            {"model_version", model.version},
                            {"demo_model", model.demo},
                            {"listen", s.listen},
                            {"port", data_port},
                            {"stage", flags->Current()->stage}});
  spdlog::info("rerankd serving rerank.v1.Reranker on port {}", data_port);
  return absl::OkStatus();
}

absl::Status RerankServer::Impl::StartHttpDataPlane() {
  const ServerConfig& s = config.server;
  if (s.http_listen.empty()) return absl::OkStatus();
  HttpRerankService::Options so;
  so.strict_model = s.http_strict_model;
  for (std::string& alias : ParseModelAliases(s.http_model_aliases)) {
    so.model_aliases.insert(std::move(alias));
  }
  ASSIGN_OR_RETURN(so.bearer_tokens, LoadBearerTokens(s.http_bearer_tokens_file));
  const size_t tokens = so.bearer_tokens.size();  // logged as a count, never the tokens
  so.request_timeout = absl::Milliseconds(s.http_request_timeout_ms);
  so.max_request_id_bytes = config.rerank.max_id_bytes;
  HttpRerankService::Deps sd;
  sd.engine = engine.get();
  sd.readiness = [this] { return GetReadiness(); };
  ASSIGN_OR_RETURN(http_service, HttpRerankService::Create(std::move(so), std::move(sd)));
  HttpRouter router(HttpRerankService::RenderServerError);
  RETURN_IF_ERROR(http_service->Register(&router));
  HttpServer::Options ho;
  ho.listen = s.http_listen;
  ho.listen_key = "server.http_listen";
  ho.name = "http-api";
  ho.io_threads = static_cast<int>(s.http_io_threads);
  ho.max_connections = static_cast<int>(s.http_max_connections);
  ho.max_body_bytes = s.http_max_body_bytes;
  ho.request_timeout_ms = static_cast<int>(s.http_request_timeout_ms);
  ho.stop_timeout_ms = static_cast<int>(s.drain_timeout_ms);
  ho.render_error = HttpRerankService::RenderServerError;
  ASSIGN_OR_RETURN(http_server, HttpServer::Start(std::move(ho), router.AsHandler()));
  http_port = http_server->port();
  spdlog::info(
      "rerankd serving the HTTP rerank API (POST /v2/rerank, /v1/rerank, /rerank) on port {} "
      "({})",
      http_port,
      tokens == 0 ? std::string("no authentication")
                  : absl::StrCat(tokens, " bearer tokens from server.http_bearer_tokens_file"));
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
  // 1. Not ready at once: /ready 503 "draining", grpc.health.v1 NOT_SERVING (every service), so
  //    load balancers and health-checking clients stop sending new work here.
  ready.store(false);
  if (grpc_server != nullptr) grpc_server->GetHealthCheckService()->SetServingStatus(false);
  // 2. The drain window: the data port keeps accepting and serving while traffic moves away.
  const absl::Duration grace = absl::Milliseconds(config.server.drain_grace_ms);
  if (grpc_server != nullptr && grace > absl::ZeroDuration()) {
    spdlog::info("draining: not ready; still serving for server.drain_grace_ms ({} ms)",
                 config.server.drain_grace_ms);
    absl::SleepFor(grace);
  }
  // 3. Stop accepting (GOAWAY) and let in-flight requests finish, the model's workers running,
  //    up to server.drain_timeout_ms; what is left then is cancelled.
  bool drained = true;
  // The HTTP routes answer 503 "draining" from step 1 on; requests already queued finish here
  // (up to server.drain_timeout_ms), before the model's workers stop.
  if (http_server != nullptr) http_server->Stop();
  if (grpc_server != nullptr) {
    const auto deadline = std::chrono::system_clock::now() +
                          std::chrono::milliseconds(config.server.drain_timeout_ms);
    grpc_server->Shutdown(deadline);
    drained = std::chrono::system_clock::now() < deadline;
  }
  // 4. No more reloads; stop the workers (queued leftovers fail UNAVAILABLE).
  if (models != nullptr) models->Stop();
  if (flags != nullptr) flags->Stop();
  // 5. Flush the audit log.
  if (audit != nullptr) {
    audit->Record("shutdown", {{"drained", drained},
                               {"drain_grace_ms", config.server.drain_grace_ms},
                               {"drain_timeout_ms", config.server.drain_timeout_ms}});
    audit->Shutdown();
  }
  if (grpc_server != nullptr) grpc_server->Wait();
  // Admin servers last: /live, /ready ("draining") and /metrics answer throughout the drain.
  if (admin_grpc != nullptr) admin_grpc->Stop();
  if (admin_http != nullptr) admin_http->Stop();
  stopped.Notify();
}

}  // namespace rerank
