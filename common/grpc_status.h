// absl::Status -> grpc::Status, for the gRPC edges (data plane service, admin service). Errors are
// absl::Status everywhere else and are converted exactly once, where a reactor finishes.
// The canonical codes are the same in both libraries (OK = 0 ... UNAUTHENTICATED = 16), so the
// code carries over unchanged; the message is copied; payloads are not (a service that needs one,
// such as retry-after, turns it into trailing metadata itself).
#ifndef RERANK_COMMON_GRPC_STATUS_H_
#define RERANK_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"

namespace rerank {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace rerank

#endif  // RERANK_COMMON_GRPC_STATUS_H_
