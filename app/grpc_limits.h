// The data plane's gRPC server limits from server.* config: message size, concurrent streams per
// connection, a memory quota for all connections, keepalive enforcement and a maximum connection
// age (GOAWAY after it, so clients re-resolve and new replicas behind a Kubernetes Service get
// traffic). Kept apart from rerank_server.cc so the mapping can be tested on its own.
#ifndef RERANK_APP_GRPC_LIMITS_H_
#define RERANK_APP_GRPC_LIMITS_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <string>

#include "common/config.h"

namespace rerank {

// The integer channel arguments ApplyGrpcServerLimits sets (GRPC_ARG_* name -> value). Values
// are within int range: ValidateConfig bounds server.max_message_bytes.
std::map<std::string, int> GrpcServerLimitArgs(const ServerConfig& config);

// Sets GrpcServerLimitArgs(), the max receive size and a grpc::ResourceQuota of
// server.memory_quota_mb on `builder`. `config` must have passed ValidateConfig.
void ApplyGrpcServerLimits(const ServerConfig& config, grpc::ServerBuilder* builder);

}  // namespace rerank

#endif  // RERANK_APP_GRPC_LIMITS_H_
