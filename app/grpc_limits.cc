#include "app/grpc_limits.h"

#include <grpcpp/resource_quota.h>
#include <sys/resource.h>

#include <algorithm>
#include <climits>
#include <cstdint>

namespace rerank {
namespace {

int ClampInt(uint64_t v) { return static_cast<int>(std::min<uint64_t>(v, INT_MAX)); }

}  // namespace

std::map<std::string, int> GrpcServerLimitArgs(const ServerConfig& c) {
  std::map<std::string, int> args = {
      {GRPC_ARG_MAX_CONCURRENT_STREAMS, ClampInt(c.max_concurrent_streams)},
      // Keepalive enforcement: pings more frequent than this (without data) are strikes; after
      // GRPC_ARG_HTTP2_MAX_PING_STRIKES of them the connection gets GOAWAY(too_many_pings).
      {GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
       ClampInt(c.keepalive_min_ping_interval_ms)},
      {GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2},
      {GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, c.keepalive_permit_without_calls ? 1 : 0},
      {GRPC_ARG_KEEPALIVE_TIME_MS, ClampInt(c.keepalive_time_ms)},
      {GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ClampInt(c.keepalive_timeout_ms)},
  };
  if (c.max_connection_age_ms > 0) {
    args[GRPC_ARG_MAX_CONNECTION_AGE_MS] = ClampInt(c.max_connection_age_ms);
    args[GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS] = ClampInt(c.max_connection_age_grace_ms);
  }
  return args;
}

void ApplyGrpcServerLimits(const ServerConfig& c, grpc::ServerBuilder* builder) {
  builder->SetMaxReceiveMessageSize(ClampInt(c.max_message_bytes));
  for (const auto& [name, value] : GrpcServerLimitArgs(c)) {
    builder->AddChannelArgument(name, value);
  }
  grpc::ResourceQuota quota("rerankd-data-plane");
  quota.Resize(static_cast<size_t>(c.memory_quota_mb) << 20);
  builder->SetResourceQuota(quota);
}

uint64_t RaiseFileDescriptorLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return raised.rlim_cur;
  }
  return lim.rlim_cur;
}

}  // namespace rerank
