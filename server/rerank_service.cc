#include "server/rerank_service.h"

#include <chrono>

#include "absl/strings/cord.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"

namespace rerank {
namespace {

CallInfo MakeCallInfo(grpc::CallbackServerContext* context, const std::string& client_id) {
  CallInfo call;
  call.client_key = ClientKey(*context, client_id);
  const auto deadline = context->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    call.deadline = absl::FromChrono(deadline);
  }
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

std::string ClientKey(const grpc::CallbackServerContext& context, const std::string& client_id) {
  if (!client_id.empty()) return client_id;
  const auto& md = context.client_metadata();
  if (auto it = md.find("x-client-id"); it != md.end() && it->second.size() > 0) {
    return std::string(it->second.data(), it->second.size());
  }
  return context.peer();
}

grpc::ServerUnaryReactor* RerankService::Rerank(grpc::CallbackServerContext* context,
                                                const v1::RerankRequest* request,
                                                v1::RerankResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  engine_->Rerank(*request, MakeCallInfo(context, request->client_id()),
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
      *request, MakeCallInfo(context, request->client_id()),
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
