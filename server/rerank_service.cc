#include "server/rerank_service.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"

namespace rerank {
namespace {

// gRPC's own limit on metadata (8 KiB by default) bounds the copy; the engine validates it.
CallInfo MakeCallInfo(grpc::CallbackServerContext* context, absl::Duration max_request_time) {
  CallInfo call;
  const auto& md = context->client_metadata();
  if (auto it = md.find("x-client-id"); it != md.end()) {
    call.metadata_client_id.assign(it->second.data(), it->second.size());
  }
  call.peer_ip = PeerIp(context->peer());
  const auto deadline = context->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    call.deadline = absl::FromChrono(deadline);
  }
  // gRPC deadlines are wall-clock times, so the cap is too.
  call.deadline = std::min(call.deadline, absl::Now() + max_request_time);
  call.is_cancelled = [context] { return context->IsCancelled(); };
  return call;
}

// Rate limiting and a full queue (or a client over its share of it) both carry a retry hint.
void AddRetryHint(grpc::CallbackServerContext* context, const absl::Status& status) {
  auto retry = status.GetPayload(kRetryAfterPayload);
  if (!retry.has_value()) retry = status.GetPayload(kQueueRetryAfterPayload);
  if (retry.has_value()) context->AddTrailingMetadata("retry-after-ms", std::string(*retry));
}

}  // namespace

std::string PeerIp(absl::string_view peer) {
  // gRPC URIs: "ipv4:10.1.2.3:5678", "ipv6:[::1]:5678" (maybe %-encoded), "unix:/path".
  absl::string_view rest = peer;
  if (absl::ConsumePrefix(&rest, "ipv4:")) {
    const size_t colon = rest.rfind(':');
    return std::string(colon == absl::string_view::npos ? rest : rest.substr(0, colon));
  }
  if (absl::ConsumePrefix(&rest, "ipv6:")) {
    if (absl::ConsumePrefix(&rest, "%5B") || absl::ConsumePrefix(&rest, "[")) {
      size_t close = rest.find(']');
      if (close == absl::string_view::npos) close = rest.find("%5D");
      return std::string(rest.substr(0, close));
    }
    return std::string(rest);
  }
  return std::string(peer);  // unix sockets and the like: the whole address
}

grpc::ServerUnaryReactor* RerankService::Rerank(grpc::CallbackServerContext* context,
                                                const v1::RerankRequest* request,
                                                v1::RerankResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  engine_->Rerank(*request, MakeCallInfo(context, max_request_time_),
                  [context, reactor, response](absl::Status status, v1::RerankResponse result) {
                    if (status.ok()) {
                      *response = std::move(result);
                    } else {
                      AddRetryHint(context, status);
                    }
                    reactor->Finish(ToGrpcStatus(status));
                  });
  return reactor;
}

grpc::ServerUnaryReactor* RerankService::RerankBatch(grpc::CallbackServerContext* context,
                                                     const v1::RerankBatchRequest* request,
                                                     v1::RerankBatchResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  engine_->RerankBatch(
      *request, MakeCallInfo(context, max_request_time_),
      [context, reactor, response](absl::Status status, v1::RerankBatchResponse result) {
        if (status.ok()) {
          *response = std::move(result);
        } else {
          AddRetryHint(context, status);
        }
        reactor->Finish(ToGrpcStatus(status));
      });
  return reactor;
}

}  // namespace rerank
