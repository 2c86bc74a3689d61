// The admin gRPC API, rerank.admin.v1.Admin (proto/rerank/admin/v1/admin.proto), on its own
// grpc::Server bound to admin.grpc_listen: the data-plane port never serves it.
//
// AdminService is a callback-API adapter over AdminCore. A flag change writes and fsyncs the
// flags file, and GetStats sorts the latency window, so handlers do not run on gRPC's callback
// threads (which the data plane's handlers use too): each call is queued to the server's own
// worker thread ("admin-grpc"), which runs it and finishes the reactor.
//
// ReloadModel is the exception: a model load takes seconds, so it is not queued to that worker
// (it would hold up GetStats); AdminCore::ReloadModel runs it on the reload thread, which
// finishes the reactor.
//
// Token: metadata `authorization: Bearer <t>` or `x-admin-token: <t>` for SetStage, SetFlags,
// Reload and ReloadModel (see AdminCore::Authorize); the status codes are the ones documented in
// admin.proto.
//
// Thread-safe. `core` is not owned and must outlive the server.
#ifndef RERANK_ADMIN_ADMIN_SERVICE_H_
#define RERANK_ADMIN_ADMIN_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "admin/admin_core.h"
#include "rerank/admin/v1/admin.grpc.pb.h"

namespace rerank {

class AdminService final : public admin::v1::Admin::CallbackService {
 public:
  // Runs `task` off the gRPC threads; returns false (task not run) when stopped.
  using Executor = std::function<bool(std::function<void()> task)>;
  // `core` not owned. `executor` runs each call's work.
  AdminService(AdminCore* core, Executor executor) : core_(core), executor_(std::move(executor)) {}

  grpc::ServerUnaryReactor* GetFlags(grpc::CallbackServerContext* context,
                                     const admin::v1::GetFlagsRequest* request,
                                     admin::v1::FlagsView* response) override;
  grpc::ServerUnaryReactor* SetStage(grpc::CallbackServerContext* context,
                                     const admin::v1::SetStageRequest* request,
                                     admin::v1::FlagsView* response) override;
  grpc::ServerUnaryReactor* SetFlags(grpc::CallbackServerContext* context,
                                     const admin::v1::SetFlagsRequest* request,
                                     admin::v1::FlagsView* response) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context,
                                     const admin::v1::GetStatsRequest* request,
                                     admin::v1::Health* response) override;
  grpc::ServerUnaryReactor* Reload(grpc::CallbackServerContext* context,
                                   const admin::v1::ReloadRequest* request,
                                   admin::v1::ReloadResponse* response) override;
  grpc::ServerUnaryReactor* ReloadModel(grpc::CallbackServerContext* context,
                                        const admin::v1::ReloadModelRequest* request,
                                        admin::v1::ReloadModelResponse* response) override;

 private:
  // Queues `work` (which returns the call's status) and finishes the reactor with its result;
  // with `needs_token`, checks the metadata token first.
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context, bool needs_token,
                                std::function<absl::Status()> work);

  AdminCore* const core_;
  const Executor executor_;
};

class AdminGrpcServer {
 public:
  struct Options {
    // host:port to bind (admin.grpc_listen). Loopback by default; port 0 picks a free port.
    std::string listen = "127.0.0.1:50052";
  };

  // Binds and starts serving. UNAVAILABLE naming admin.grpc_listen when it cannot bind.
  static absl::StatusOr<std::unique_ptr<AdminGrpcServer>> Start(const Options& options,
                                                                AdminCore* core);
  ~AdminGrpcServer();  // Stop()
  AdminGrpcServer(const AdminGrpcServer&) = delete;
  AdminGrpcServer& operator=(const AdminGrpcServer&) = delete;

  int port() const { return port_; }
  // Finishes in-flight calls (up to 1 s, then cancels them), stops the listener and joins the
  // worker. Idempotent; not from a handler.
  void Stop();

 private:
  explicit AdminGrpcServer(AdminCore* core);
  bool Post(std::function<void()> task);
  void WorkerLoop();

  AdminService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex stop_mu_;  // serializes Stop() callers
  std::thread worker_;
};

}  // namespace rerank

#endif  // RERANK_ADMIN_ADMIN_SERVICE_H_
