// The one reader and writer of feature flags as documents. Every place flags are read from text
// goes through ApplyFlagsDocument's rules, and every place they are written goes through one
// serializer, both driven by the FlagFields() table (common/feature_flags.h):
//  - the flags file (YAML): ParseFlagsYaml / FlagsToYaml;
//  - the admin API (JSON): FlagsFromJson (a patch) / FlagsToJson;
//  - rerankd's config: the `flags.initial` section (ApplyFlagsYaml) and the environment variables
//    that override single flags (SetFlagFromText).
//
// Document schema (every key optional):
//   stage: full                      # a StageNames() entry or "custom"
//   reranker:   {enabled: true}
//   cache:      {enabled: true, traffic_percent: 100, max_entries: 1000}
//   batch:      {enabled: true}
//   audit:      {enabled: true}
//   overfetch:  {enabled: true, candidates: 20, top_n: 5}
//   rate_limit: {enabled: true, per_minute: 100}
//   updated_by: "alice"              # flags file only: metadata, written by FlagStore
//   updated_at: "2024-05-01T12:00:00.000Z"
//
// Rules, the same in every format: an unknown or duplicate key, a section that is not a map, a
// wrong type or an out-of-range integer is InvalidArgument naming the full key, e.g.
// "cache.traffic_percent: must be 0..100, got 150". Booleans are true or false only (in YAML and
// environment variables case-insensitively; yes/no/on/off/1/0 are errors). Integers are plain
// non-negative decimals (YAML: unquoted, no sign, no leading zero: YAML 1.1 reads 010 as octal).
// Strings (stage) must be strings: a quoted YAML scalar, or a plain one that is not a boolean or
// a number.
#ifndef RERANK_COMMON_FLAGS_CODEC_H_
#define RERANK_COMMON_FLAGS_CODEC_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/feature_flags.h"
#include "nlohmann/json.hpp"

namespace YAML {
class Node;
}  // namespace YAML

namespace rerank {

// Who last changed the flags file, and when (RFC 3339 UTC). Not part of FeatureFlags:
// informational.
struct FlagsMetadata {
  std::string updated_by;
  std::string updated_at;
  bool operator==(const FlagsMetadata& o) const {
    return updated_by == o.updated_by && updated_at == o.updated_at;
  }
};

// What a document's updated_by/updated_at keys mean where it is read.
enum class FlagsMetadataKeys {
  kRead,    // the flags file: strings (or null = ""), stored into *metadata
  kIgnore,  // the admin JSON patch: tolerated so a GET response can be sent back as is
  kReject,  // config's flags.initial: unknown keys
};

// Applies the document `node` (a YAML map) on top of *flags: keys present overwrite, keys absent
// keep *flags' value. Error keys are prefixed with `key_prefix` + "." when it is not empty (e.g.
// "flags.initial.cache.enabled: ..."). Does not run ValidateFlags (a caller may apply more
// changes first). `metadata` may be null unless keys == kRead. On error *flags may be partly
// updated.
absl::Status ApplyFlagsYaml(const YAML::Node& node, std::string_view key_prefix,
                            FlagsMetadataKeys keys, FeatureFlags* flags, FlagsMetadata* metadata);
// The same for a JSON object.
absl::Status ApplyFlagsJson(const nlohmann::json& json, std::string_view key_prefix,
                            FlagsMetadataKeys keys, FeatureFlags* flags, FlagsMetadata* metadata);
// Sets the single field `key` ("cache.enabled") from `text` read like a plain YAML scalar
// (surrounding whitespace ignored; a string field takes the text as is). For environment
// variables. Errors name `display_key`.
absl::Status SetFlagFromText(std::string_view key, std::string_view text,
                             std::string_view display_key, FeatureFlags* flags);

// One flag set from outside the flags file (an environment variable such as ENABLE_RERANKER).
struct FlagOverride {
  std::string source;  // where it came from, for errors and logs: "$ENABLE_RERANKER"
  std::string key;     // a FlagFields() key ("reranker.enabled"), or "stage" for a named stage
  std::string text;    // the value as written (SetFlagFromText rules)
  bool operator==(const FlagOverride& o) const {
    return source == o.source && key == o.key && text == o.text;
  }
};

// Applies `overrides` on top of `base`: a "stage" override first (ApplyStage: the named stage's
// effect), then every other key, so a single variable wins over the stage it is combined with.
// When the result is not what its stage says (e.g. ENABLE_RERANKER=false under `full`), stage
// becomes "custom", as for an admin patch. Validates; errors name `key_prefix` + key and the
// source, e.g. "flags.initial.reranker.enabled (from $ENABLE_RERANKER): must be true or false".
absl::StatusOr<FeatureFlags> ApplyFlagOverrides(const std::vector<FlagOverride>& overrides,
                                                const FeatureFlags& base,
                                                std::string_view key_prefix = "");

// Parses a flags file on top of FeatureFlags{} and validates (ValidateFlags). Errors are
// InvalidArgument prefixed with "<source>: ". `metadata` (optional) receives updated_by/at.
absl::StatusOr<FeatureFlags> ParseFlagsYaml(std::string_view text,
                                            std::string_view source = "flags.yaml",
                                            FlagsMetadata* metadata = nullptr);
// The whole schema (every key, with a header comment); ParseFlagsYaml(FlagsToYaml(f, m)) == f
// and gives back m (control characters and invalid UTF-8 in strings are replaced).
std::string FlagsToYaml(const FeatureFlags& flags, const FlagsMetadata& metadata = {});

// The same shape as the file, without metadata, for the admin API.
nlohmann::json FlagsToJson(const FeatureFlags& flags);
// A JSON object patch on top of `base`, then ValidateFlags. updated_by/updated_at are ignored.
absl::StatusOr<FeatureFlags> FlagsFromJson(const nlohmann::json& json,
                                           const FeatureFlags& base = FeatureFlags{});

// Keys ("stage", "cache.enabled", ...) whose values differ between a and b, in FlagFields() order.
std::vector<std::string> ChangedFlagKeys(const FeatureFlags& a, const FeatureFlags& b);

}  // namespace rerank

#endif  // RERANK_COMMON_FLAGS_CODEC_H_
