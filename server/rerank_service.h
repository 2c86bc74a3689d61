// gRPC adapter for rerank.v1.Reranker on the callback API: handlers never block; they hand the
// request to the RerankEngine and return a reactor that the engine's completion finishes exactly
// once (also on cancel, deadline and queue-full). This is where the data plane's absl::Status
// becomes grpc::Status (common/grpc_status.h). The data port serves only this service, health and
// reflection: no admin calls.
#ifndef RERANK_SERVER_RERANK_SERVICE_H_
#define RERANK_SERVER_RERANK_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "rerank/v1/reranker.grpc.pb.h"
#include "server/rerank_engine.h"

namespace rerank {

class RerankService final : public v1::Reranker::CallbackService {
 public:
  // `engine` is not owned and must outlive the service (and the grpc::Server serving it). Each
  // call's deadline is the client's, capped at `max_request_time` from its start (infinite: no
  // cap), so a call without a deadline cannot stay queued without bound.
  explicit RerankService(RerankEngine* engine,
                         absl::Duration max_request_time = absl::InfiniteDuration())
      : engine_(engine), max_request_time_(max_request_time) {}

  grpc::ServerUnaryReactor* Rerank(grpc::CallbackServerContext* context,
                                   const v1::RerankRequest* request,
                                   v1::RerankResponse* response) override;
  grpc::ServerUnaryReactor* RerankBatch(grpc::CallbackServerContext* context,
                                        const v1::RerankBatchRequest* request,
                                        v1::RerankBatchResponse* response) override;

 private:
  RerankEngine* const engine_;
  const absl::Duration max_request_time_;
};

// The peer's IP address without the port, from grpc::ServerContext::peer():
// "ipv4:10.1.2.3:5678" -> "10.1.2.3", "ipv6:[::1]:5678" -> "::1"; other forms (unix:...) whole.
// Requests without a client id are keyed by it, so every connection from one host shares a
// rate-limit bucket (the port would give each new connection a fresh one).
std::string PeerIp(absl::string_view peer);

}  // namespace rerank

#endif  // RERANK_SERVER_RERANK_SERVICE_H_
