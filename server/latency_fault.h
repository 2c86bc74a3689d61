// TEST-ONLY fault injection (config `testing.inject_latency_ms` /
// `testing.inject_latency_from_stage`, off by default): a Scorer decorator that makes every model
// forward slower, so a rollout drill or an end-to-end test can show `rerankctl rollout` rolling
// back on a latency regression.
//
// The delay is spent on the batcher worker that runs the forward, as a slower model would spend
// it; request handlers never wait (they return after queueing). The stage condition is read from
// the FlagSource at every forward, so a stage change switches the fault on or off at once: with
// from_stage "cache-50", advancing to cache-50 slows the service and rolling back to cache-10
// heals it, deterministically.
#ifndef RERANK_SERVER_LATENCY_FAULT_H_
#define RERANK_SERVER_LATENCY_FAULT_H_

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/feature_flags.h"
#include "server/scorer.h"

namespace rerank {

struct LatencyFaultOptions {
  absl::Duration delay;    // added before every forward; must be > 0
  std::string from_stage;  // "" = every stage; else a RolloutStageNames() entry
  // How the delay is spent; tests pass a recorder. Default: absl::SleepFor.
  std::function<void(absl::Duration)> sleep;
};

// True when a fault configured with `from_stage` applies under flags stage `stage`: always for an
// empty from_stage; else when `stage` is from_stage or a later rollout stage (never at rollback,
// disabled or custom).
bool LatencyFaultApplies(std::string_view from_stage, std::string_view stage);

// `inner` with every Scorer it makes wrapped in the fault. `flags` is not owned and must outlive
// the scorers. InvalidArgument naming the testing.* key for a non-positive delay or an unknown
// from_stage, or a null flags/inner.
absl::StatusOr<ScorerFactory> WithLatencyFault(ScorerFactory inner, LatencyFaultOptions options,
                                               const FlagSource* flags);

}  // namespace rerank

#endif  // RERANK_SERVER_LATENCY_FAULT_H_
