#include "admin/admin_service.h"

#include <pthread.h>

#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace rerank {
namespace {

using json = nlohmann::json;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::optional<std::string> Metadata(const grpc::CallbackServerContext& context,
                                    const std::string& key) {
  const auto& md = context.client_metadata();
  auto it = md.find(key);
  if (it == md.end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

std::string ActorOr(const std::string& actor) { return actor.empty() ? "admin-grpc" : actor; }

void FillFlags(const json& view, admin::v1::FlagsResponse* out) {
  out->set_flags_json(Dump(view["flags"]));
  out->set_stage(view["stage"].get<std::string>());
  out->set_updated_by(view["updated_by"].get<std::string>());
  out->set_updated_at(view["updated_at"].get<std::string>());
  for (const json& s : view["stages"]) out->add_stages(s.get<std::string>());
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::Run(grpc::CallbackServerContext* context,
                                            bool needs_token,
                                            std::function<absl::Status()> work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (needs_token) {
    absl::Status auth = core_->Authorize(AdminTokenFromHeaders(
        Metadata(*context, "authorization"), Metadata(*context, "x-admin-token")));
    if (!auth.ok()) {
      reactor->Finish(ToGrpcStatus(auth));
      return reactor;
    }
  }
  const bool queued = executor_([reactor, work = std::move(work)] {
    absl::Status s;
    try {
      s = work();
    } catch (const std::exception& e) {  // json access on unexpected shapes: adapter boundary
      s = absl::InternalError(absl::StrCat("internal error: ", e.what()));
    }
    reactor->Finish(ToGrpcStatus(s));
  });
  if (!queued) reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "admin server is stopping"));
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::GetFlags(grpc::CallbackServerContext* context,
                                                 const admin::v1::GetFlagsRequest*,
                                                 admin::v1::FlagsResponse* response) {
  return Run(context, /*needs_token=*/false, [this, response] {
    FillFlags(core_->FlagsView(), response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::SetStage(grpc::CallbackServerContext* context,
                                                 const admin::v1::SetStageRequest* request,
                                                 admin::v1::FlagsResponse* response) {
  return Run(context, /*needs_token=*/true, [this, request, response]() -> absl::Status {
    absl::StatusOr<json> view = core_->SetStage(request->stage(), ActorOr(request->actor()));
    if (!view.ok()) return view.status();
    FillFlags(*view, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::SetFlags(grpc::CallbackServerContext* context,
                                                 const admin::v1::SetFlagsRequest* request,
                                                 admin::v1::FlagsResponse* response) {
  return Run(context, /*needs_token=*/true, [this, request, response]() -> absl::Status {
    json patch = json::parse(request->flags_json(), nullptr, /*allow_exceptions=*/false);
    if (patch.is_discarded()) return absl::InvalidArgumentError("flags_json: invalid JSON");
    if (!patch.is_object()) return absl::InvalidArgumentError("flags_json: must be a JSON object");
    absl::StatusOr<json> view = core_->PatchFlags(patch, ActorOr(request->actor()));
    if (!view.ok()) return view.status();
    FillFlags(*view, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::GetStats(grpc::CallbackServerContext* context,
                                                 const admin::v1::GetStatsRequest*,
                                                 admin::v1::GetStatsResponse* response) {
  return Run(context, /*needs_token=*/false, [this, response] {
    const HealthReport h = core_->Health();
    response->set_health_json(Dump(h.ToJson()));
    response->set_ready(h.readiness.ready);
    response->set_not_ready_reason(h.readiness.reason);
    response->set_status(h.status);
    response->set_stage(h.flags.stage);
    response->set_reranker_enabled(h.flags.reranker_enabled);
    response->set_total_reranks(h.stats.total_requests);
    response->set_avg_latency_ms(h.stats.avg_latency_ms);
    response->set_p95_latency_ms(h.stats.p95_latency_ms);
    response->set_p99_latency_ms(h.stats.p99_latency_ms);
    response->set_cache_hit_rate_percent(h.stats.cache_hit_rate_percent);
    response->set_target_latency_met_rate_percent(h.stats.target_latency_met_rate_percent);
    response->set_error_rate_percent(h.stats.error_rate_percent);
    response->set_requests_in_window(h.stats.requests_in_window);
    response->set_window_seconds(static_cast<uint32_t>(h.stats.window_seconds));
    response->set_cache_size(h.cache_size);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::Reload(grpc::CallbackServerContext* context,
                                               const admin::v1::ReloadRequest* request,
                                               admin::v1::ReloadResponse* response) {
  return Run(context, /*needs_token=*/true, [this, request, response]() -> absl::Status {
    if (absl::Status s = ValidateActor(ActorOr(request->actor())); !s.ok()) return s;
    AdminCore::ReloadResult r = core_->Reload(ActorOr(request->actor()), "admin-grpc");
    response->set_reloaded(r.reloaded);
    response->set_flags_json(Dump(r.flags));
    if (!r.error.ok()) response->set_error(std::string(r.error.message()));
    return absl::OkStatus();
  });
}

// ---- AdminGrpcServer ----

AdminGrpcServer::AdminGrpcServer(AdminCore* core)
    : service_(core, [this](std::function<void()> task) { return Post(std::move(task)); }) {
  worker_ = std::thread([this] { WorkerLoop(); });
}

absl::StatusOr<std::unique_ptr<AdminGrpcServer>> AdminGrpcServer::Start(const Options& options,
                                                                        AdminCore* core) {
  if (core == nullptr) return absl::InvalidArgumentError("AdminGrpcServer: core must not be null");
  if (options.listen.empty()) {
    return absl::InvalidArgumentError("admin.grpc_listen: must not be empty");
  }
  std::unique_ptr<AdminGrpcServer> server(new AdminGrpcServer(core));
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default, so a second process could bind the same admin port and
  // silently take half of the admin calls. A busy port must be an error instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(&server->service_);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    server->Stop();
    return absl::UnavailableError(
        absl::StrCat("admin.grpc_listen: cannot listen on '", options.listen, "'"));
  }
  return server;
}

AdminGrpcServer::~AdminGrpcServer() { Stop(); }

bool AdminGrpcServer::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  tasks_.push_back(std::move(task));
  return true;
}

void AdminGrpcServer::WorkerLoop() {
  pthread_setname_np(pthread_self(), "admin-grpc");
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](AdminGrpcServer* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return s->stopping_ || !s->tasks_.empty();
          },
          this));
      if (tasks_.empty()) return;  // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void AdminGrpcServer::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  if (server_ != nullptr) {
    // The worker keeps running meanwhile, so queued calls are finished, not abandoned.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_->Wait();
    server_.reset();
  }
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (worker_.joinable()) worker_.join();
}

}  // namespace rerank
