// Feature flags that drive a staged rollout of the reranker, and the source that serves them.
// The flags file (YAML) is the source of truth; see common/flag_store.h for the implementation that
// watches it. The data plane reads one immutable snapshot per request, so a change (or a rollback)
// takes effect on the next request and never half-way through one.
#ifndef RERANK_COMMON_FEATURE_FLAGS_H_
#define RERANK_COMMON_FEATURE_FLAGS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rerank {

struct FeatureFlags {
  std::string stage = "feature-flags";  // last named stage applied, or "custom"
  bool reranker_enabled = true;         // false: pass the original order through, cut to top_n
  bool cache_enabled = false;           // score cache on at all
  uint32_t cache_traffic_percent = 0;   // 0..100, sticky per client (10,000 buckets)
  uint32_t cache_max_entries = 1000;    // LRU bound on entries
  bool batch_enabled = true;            // RerankBatch RPC allowed
  bool audit_enabled = true;            // write audit events
  bool overfetch_enabled =
      false;  // rerank the first `overfetch_candidates`, return top `overfetch_top_n`
  uint32_t overfetch_candidates = 20;
  uint32_t overfetch_top_n = 5;
  bool rate_limit_enabled = true;
  uint32_t rate_limit_per_minute = 100;  // per client token bucket

  bool operator==(const FeatureFlags& o) const;
  bool operator!=(const FeatureFlags& o) const { return !(*this == o); }
};

// The named stages of the deployment guide, in rollout order:
// feature-flags, cache-10, cache-50, cache-100, full, rollback; then `disabled` (reranker off:
// the full rollback, pass-through of the original order).
const std::vector<std::string>& StageNames();
// The progressive part of StageNames(), in order: feature-flags .. full (a prefix of StageNames();
// rollback and disabled are exits, not steps). `rerankctl rollout` plans are drawn from these.
const std::vector<std::string>& RolloutStageNames();

// Applies stage `name` on top of `base` (fields a stage does not mention keep base's value).
// InvalidArgument naming the stage (and listing valid ones) when unknown.
absl::StatusOr<FeatureFlags> ApplyStage(std::string_view name, const FeatureFlags& base);

// `stage` of flags that were edited field by field rather than set from a named stage.
inline constexpr char kCustomStage[] = "custom";

// Upper bounds enforced by ValidateFlags.
inline constexpr uint32_t kMaxCacheEntries = 10'000'000;
inline constexpr uint32_t kMaxOverfetchCandidates = 1000;
inline constexpr uint32_t kMaxRateLimitPerMinute = 100'000'000;

// One entry per field of FeatureFlags: its key in the flags file / admin JSON (a dotted path,
// "cache.traffic_percent" = `cache: {traffic_percent: ...}`), its type, the member it maps to and,
// for integers, its range. This table is the flags schema: the codec (common/flags_codec.h:
// flags file, admin JSON, config's flags.initial), ValidateFlags and ChangedFlagKeys all walk it.
struct FlagField {
  enum class Type { kString, kBool, kUint32 };
  const char* key;
  Type type;
  // Exactly the one matching `type` is set.
  std::string FeatureFlags::*string_member = nullptr;
  bool FeatureFlags::*bool_member = nullptr;
  uint32_t FeatureFlags::*uint_member = nullptr;
  // kUint32 only: the inclusive range ValidateFlags (and every parser) enforces.
  uint32_t min = 0;
  uint32_t max = 0;
};

// Every field, in file order (stage first, then the sections).
const std::vector<FlagField>& FlagFields();
// The entry for `key` ("cache.enabled"), or nullptr.
const FlagField* FindFlagField(std::string_view key);

// Checks every field; InvalidArgument naming the flags-file key of the first bad one, e.g.
// "cache.traffic_percent: must be 0..100, got 150". `stage` must be a StageNames() entry or
// kCustomStage; integers must be within their FlagFields() range; and
// overfetch_top_n <= overfetch_candidates.
absl::Status ValidateFlags(const FeatureFlags& flags);

// Read side of the flags, injected into the data plane. Thread-safe.
class FlagSource {
 public:
  virtual ~FlagSource() = default;
  // Never null. Cheap (a shared_ptr copy); call once per request and use that snapshot.
  virtual std::shared_ptr<const FeatureFlags> Current() const = 0;
};

// A FlagSource that always returns the same flags (tests, or a fixed deployment).
class StaticFlagSource final : public FlagSource {
 public:
  explicit StaticFlagSource(FeatureFlags flags)
      : flags_(std::make_shared<const FeatureFlags>(std::move(flags))) {}
  std::shared_ptr<const FeatureFlags> Current() const override { return flags_; }

 private:
  std::shared_ptr<const FeatureFlags> flags_;
};

}  // namespace rerank

#endif  // RERANK_COMMON_FEATURE_FLAGS_H_
