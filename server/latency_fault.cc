#include "server/latency_fault.h"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace rerank {
namespace {

class LatencyFaultScorer final : public Scorer {
 public:
  LatencyFaultScorer(std::unique_ptr<Scorer> inner, const LatencyFaultOptions& options,
                     const FlagSource* flags)
      : inner_(std::move(inner)), options_(options), flags_(flags) {}

  absl::StatusOr<std::vector<float>> Score(const ScoreBatch& batch) override {
    if (LatencyFaultApplies(options_.from_stage, flags_->Current()->stage)) {
      options_.sleep(options_.delay);
    }
    return inner_->Score(batch);
  }

 private:
  const std::unique_ptr<Scorer> inner_;
  const LatencyFaultOptions options_;
  const FlagSource* const flags_;
};

}  // namespace

bool LatencyFaultApplies(std::string_view from_stage, std::string_view stage) {
  if (from_stage.empty()) return true;
  const std::vector<std::string>& order = RolloutStageNames();
  auto from = std::find(order.begin(), order.end(), from_stage);
  auto now = std::find(order.begin(), order.end(), stage);
  return from != order.end() && now != order.end() && now >= from;
}

absl::StatusOr<ScorerFactory> WithLatencyFault(ScorerFactory inner, LatencyFaultOptions options,
                                               const FlagSource* flags) {
  if (!inner || flags == nullptr) {
    return absl::InvalidArgumentError("WithLatencyFault: inner factory and flags are required");
  }
  if (options.delay <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("testing.inject_latency_ms: must be > 0, got ",
                                                   absl::ToDoubleMilliseconds(options.delay)));
  }
  const std::vector<std::string>& order = RolloutStageNames();
  if (!options.from_stage.empty() &&
      std::find(order.begin(), order.end(), options.from_stage) == order.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("testing.inject_latency_from_stage: must be empty or one of ",
                     absl::StrJoin(order, ", "), ", got '", options.from_stage, "'"));
  }
  if (!options.sleep) options.sleep = [](absl::Duration d) { absl::SleepFor(d); };
  return ScorerFactory([inner = std::move(inner), options = std::move(options),
                        flags]() -> absl::StatusOr<std::unique_ptr<Scorer>> {
    absl::StatusOr<std::unique_ptr<Scorer>> scorer = inner();
    if (!scorer.ok()) return scorer.status();
    return std::unique_ptr<Scorer>(
        std::make_unique<LatencyFaultScorer>(*std::move(scorer), options, flags));
  });
}

}  // namespace rerank
