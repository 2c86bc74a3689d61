#include "common/feature_flags.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace rerank {
namespace {

auto Tie(const FeatureFlags& f) {
  return std::tie(f.stage, f.reranker_enabled, f.cache_enabled, f.cache_traffic_percent,
                  f.cache_max_entries, f.batch_enabled, f.audit_enabled, f.overfetch_enabled,
                  f.overfetch_candidates, f.overfetch_top_n, f.rate_limit_enabled,
                  f.rate_limit_per_minute);
}

FlagField StringField(const char* key, std::string FeatureFlags::*member) {
  FlagField f{key, FlagField::Type::kString};
  f.string_member = member;
  return f;
}

FlagField BoolField(const char* key, bool FeatureFlags::*member) {
  FlagField f{key, FlagField::Type::kBool};
  f.bool_member = member;
  return f;
}

FlagField UintField(const char* key, uint32_t FeatureFlags::*member, uint32_t min, uint32_t max) {
  FlagField f{key, FlagField::Type::kUint32};
  f.uint_member = member;
  f.min = min;
  f.max = max;
  return f;
}

}  // namespace

const std::vector<FlagField>& FlagFields() {
  using F = FeatureFlags;
  static const auto* fields = new std::vector<FlagField>{
      StringField("stage", &F::stage),
      BoolField("reranker.enabled", &F::reranker_enabled),
      BoolField("cache.enabled", &F::cache_enabled),
      UintField("cache.traffic_percent", &F::cache_traffic_percent, 0, 100),
      UintField("cache.max_entries", &F::cache_max_entries, 1, kMaxCacheEntries),
      BoolField("batch.enabled", &F::batch_enabled),
      BoolField("audit.enabled", &F::audit_enabled),
      BoolField("overfetch.enabled", &F::overfetch_enabled),
      UintField("overfetch.candidates", &F::overfetch_candidates, 1, kMaxOverfetchCandidates),
      // Also <= overfetch.candidates (checked by ValidateFlags, across fields).
      UintField("overfetch.top_n", &F::overfetch_top_n, 1, kMaxOverfetchCandidates),
      BoolField("rate_limit.enabled", &F::rate_limit_enabled),
      UintField("rate_limit.per_minute", &F::rate_limit_per_minute, 1, kMaxRateLimitPerMinute),
  };
  return *fields;
}

const FlagField* FindFlagField(std::string_view key) {
  for (const FlagField& f : FlagFields()) {
    if (key == f.key) return &f;
  }
  return nullptr;
}

bool FeatureFlags::operator==(const FeatureFlags& o) const { return Tie(*this) == Tie(o); }

const std::vector<std::string>& StageNames() {
  static const auto* names = new std::vector<std::string>{
      "feature-flags", "cache-10", "cache-50", "cache-100", "full", "rollback", "disabled"};
  return *names;
}

const std::vector<std::string>& RolloutStageNames() {
  static const auto* names = new std::vector<std::string>(
      StageNames().begin(), std::find(StageNames().begin(), StageNames().end(), "rollback"));
  return *names;
}

absl::StatusOr<FeatureFlags> ApplyStage(std::string_view name, const FeatureFlags& base) {
  FeatureFlags f = base;
  auto cache_for = [&f](uint32_t percent) {
    f.reranker_enabled = true;
    f.cache_enabled = percent > 0;
    f.cache_traffic_percent = percent;
  };
  if (name == "feature-flags") {
    cache_for(0);
  } else if (name == "cache-10") {
    cache_for(10);
  } else if (name == "cache-50") {
    cache_for(50);
  } else if (name == "cache-100") {
    cache_for(100);
  } else if (name == "full") {
    cache_for(100);
    f.cache_max_entries = 1000;
    f.batch_enabled = true;
    f.audit_enabled = true;
    f.overfetch_enabled = true;
    f.overfetch_candidates = 20;
    f.overfetch_top_n = 5;
  } else if (name == "rollback") {
    // Back to the plain reranker: every optional feature off, the model itself stays on.
    cache_for(0);
    f.batch_enabled = false;
    f.overfetch_enabled = false;
  } else if (name == "disabled") {
    f.reranker_enabled = false;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown stage '", absl::string_view(name.data(), name.size()),
                     "'; valid stages: ", absl::StrJoin(StageNames(), ", ")));
  }
  f.stage = std::string(name);
  return f;
}

absl::Status ValidateFlags(const FeatureFlags& f) {
  bool known_stage = f.stage == kCustomStage;
  for (const std::string& s : StageNames()) known_stage = known_stage || f.stage == s;
  if (!known_stage) {
    return absl::InvalidArgumentError(absl::StrCat("stage: must be one of ",
                                                   absl::StrJoin(StageNames(), ", "), ", ",
                                                   kCustomStage, "; got '", f.stage, "'"));
  }
  for (const FlagField& field : FlagFields()) {
    if (field.type != FlagField::Type::kUint32) continue;
    const uint32_t value = f.*field.uint_member;
    if (value < field.min || value > field.max) {
      return absl::InvalidArgumentError(
          absl::StrCat(field.key, ": must be ", field.min, "..", field.max, ", got ", value));
    }
  }
  if (f.overfetch_top_n > f.overfetch_candidates) {
    return absl::InvalidArgumentError(
        absl::StrCat("overfetch.top_n: must be 1..overfetch.candidates (", f.overfetch_candidates,
                     "), got ", f.overfetch_top_n));
  }
  return absl::OkStatus();
}

}  // namespace rerank
