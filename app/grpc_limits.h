// The data plane's gRPC server limits from server.* config: message size, concurrent streams per
// connection, a memory quota for all connections, keepalive enforcement and a maximum connection
// age (GOAWAY after it, so clients re-resolve and new replicas behind a Kubernetes Service get
// traffic). Kept apart from rerank_server.cc so the mapping can be tested on its own.
//
// Connections: there is no cap on the number of client connections. An idle connection costs one
// file descriptor and a few KiB of buffers (10,000 idle connections: bench/RESULTS.md), so the
// process's RLIMIT_NOFILE is the limit; RaiseFileDescriptorLimit() lifts its soft limit to the
// hard one at startup (a soft limit of 1024 would refuse connections beyond ~1000). Idle
// connections are not closed for idleness: keepalive pings only detect dead peers, and
// server.max_connection_age_ms (when > 0) sends GOAWAY so that clients reconnect, which an idle
// client does on its next call.
#ifndef RERANK_APP_GRPC_LIMITS_H_
#define RERANK_APP_GRPC_LIMITS_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
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

// Raises the soft RLIMIT_NOFILE to the hard limit. Returns the new soft limit (the old one when it
// cannot be changed).
uint64_t RaiseFileDescriptorLimit();

}  // namespace rerank

#endif  // RERANK_APP_GRPC_LIMITS_H_
