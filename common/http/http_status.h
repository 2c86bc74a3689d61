// absl::Status -> HTTP status code, for the HTTP edges: errors are absl::Status everywhere else
// and are converted once, where a response is rendered (as common/grpc_status.h does for gRPC).
#ifndef RERANK_COMMON_HTTP_HTTP_STATUS_H_
#define RERANK_COMMON_HTTP_HTTP_STATUS_H_

#include "absl/status/status.h"

namespace rerank {

// 400 for the caller's mistakes, 401/403/404/409 as named, 429 when a rate limit or a full queue
// turned the request away, 503 when the service cannot take it (draining, stopped), 504 when it
// could not answer within the deadline, 500 for the rest.
inline int HttpStatusFromStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

}  // namespace rerank

#endif  // RERANK_COMMON_HTTP_HTTP_STATUS_H_
