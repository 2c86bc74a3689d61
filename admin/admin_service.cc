#include "admin/admin_service.h"

#include <pthread.h>

#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace rerank {
namespace {

std::optional<std::string> Metadata(const grpc::CallbackServerContext& context,
                                    const std::string& key) {
  const auto& md = context.client_metadata();
  auto it = md.find(key);
  if (it == md.end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

// The request's actor when present (validated later, so an explicit "" is an error).
template <typename Request>
std::string ActorOr(const Request& request) {
  return request.has_actor() ? request.actor() : "admin-grpc";
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::Run(grpc::CallbackServerContext* context, bool needs_token,
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
  if (!queued)
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "admin server is stopping"));
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::GetFlags(grpc::CallbackServerContext* context,
                                                 const admin::v1::GetFlagsRequest*,
                                                 admin::v1::FlagsView* response) {
  return Run(context, /*needs_token=*/false, [this, response] {
    *response = core_->FlagsView();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::SetStage(grpc::CallbackServerContext* context,
                                                 const admin::v1::SetStageRequest* request,
                                                 admin::v1::FlagsView* response) {
  return Run(context, /*needs_token=*/true, [this, request, response]() -> absl::Status {
    ASSIGN_OR_RETURN(*response,
                     core_->SetStage(request->stage(), ActorOr(*request), request->reason()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::SetFlags(grpc::CallbackServerContext* context,
                                                 const admin::v1::SetFlagsRequest* request,
                                                 admin::v1::FlagsView* response) {
  return Run(context, /*needs_token=*/true, [this, request, response]() -> absl::Status {
    ASSIGN_OR_RETURN(*response,
                     core_->PatchFlags(request->flags(), ActorOr(*request), request->reason()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::GetStats(grpc::CallbackServerContext* context,
                                                 const admin::v1::GetStatsRequest*,
                                                 admin::v1::Health* response) {
  return Run(context, /*needs_token=*/false, [this, response] {
    *response = core_->Health();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::Reload(grpc::CallbackServerContext* context,
                                               const admin::v1::ReloadRequest* request,
                                               admin::v1::ReloadResponse* response) {
  return Run(context, /*needs_token=*/true, [this, request, response]() -> absl::Status {
    RETURN_IF_ERROR(ValidateActor(ActorOr(*request)));
    *response = core_->Reload(ActorOr(*request), "admin-grpc");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::ReloadModel(grpc::CallbackServerContext* context,
                                                    const admin::v1::ReloadModelRequest* request,
                                                    admin::v1::ReloadModelResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status s = core_->Authorize(AdminTokenFromHeaders(Metadata(*context, "authorization"),
                                                          Metadata(*context, "x-admin-token")));
  if (s.ok()) s = ValidateActor(ActorOr(*request));
  if (!s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  core_->ReloadModel(*request, ActorOr(*request), "admin-grpc",
                     [reactor, response](absl::StatusOr<admin::v1::ReloadModelResponse> r) {
                       if (r.ok()) *response = *std::move(r);
                       reactor->Finish(ToGrpcStatus(r.status()));
                     });
  return reactor;
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
          +[](AdminGrpcServer* s)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return s->stopping_ || !s->tasks_.empty(); },
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
