// Fuzz target: the feature-flags codec (common/flags_codec.h) in every format it reads: the
// flags file (YAML), the admin API's JSON patch, and single-flag text with overrides (the
// environment variables).
//
// Input: byte 0 picks the format (0: YAML file, 1: JSON patch, 2: overrides); the rest is the
// document, or for overrides "key=value" lines (key a FlagFields() key or "stage").
//
// Properties checked beyond "no crash, no sanitizer report":
//  - errors are INVALID_ARGUMENT with a message;
//  - whatever parses is valid (ValidateFlags) and round-trips: FlagsToYaml -> ParseFlagsYaml
//    gives the same flags (and metadata, when it is clean UTF-8 without control characters),
//    FlagsToJson -> FlagsFromJson the same flags.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/feature_flags.h"
#include "common/flags_codec.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace rerank {
namespace {

void CheckError(const absl::Status& s) {
  if (s.ok()) return;
  FUZZ_CHECK(absl::IsInvalidArgument(s), "unexpected error %s", s.ToString().c_str());
  FUZZ_CHECK(!s.message().empty(), "error without a message");
}

bool Clean(const std::string& s) {
  if (FindInvalidUtf8(s) != std::string::npos) return false;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

void CheckRoundTrip(const FeatureFlags& flags, const FlagsMetadata& metadata) {
  CheckError(ValidateFlags(flags));
  FUZZ_CHECK(ValidateFlags(flags).ok(), "parsed flags do not validate");
  const std::string yaml = FlagsToYaml(flags, metadata);
  FlagsMetadata metadata2;
  absl::StatusOr<FeatureFlags> again = ParseFlagsYaml(yaml, "flags.yaml", &metadata2);
  FUZZ_CHECK(again.ok(), "FlagsToYaml output does not parse: %s\n%s",
             again.status().ToString().c_str(), yaml.c_str());
  FUZZ_CHECK(*again == flags, "flags do not round-trip through YAML:\n%s", yaml.c_str());
  if (Clean(metadata.updated_by) && Clean(metadata.updated_at)) {
    FUZZ_CHECK(metadata2 == metadata, "metadata does not round-trip through YAML:\n%s",
               yaml.c_str());
  }
  absl::StatusOr<FeatureFlags> from_json = FlagsFromJson(FlagsToJson(flags));
  FUZZ_CHECK(from_json.ok(), "FlagsToJson output does not parse: %s",
             from_json.status().ToString().c_str());
  FUZZ_CHECK(*from_json == flags, "flags do not round-trip through JSON");
}

}  // namespace
}  // namespace rerank

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rerank;
  fuzz::InputReader in(data, size);
  const uint8_t mode = in.Byte() % 3;
  const std::string_view text = in.Rest();
  if (mode == 0) {
    FlagsMetadata metadata;
    absl::StatusOr<FeatureFlags> flags = ParseFlagsYaml(text, "flags.yaml", &metadata);
    CheckError(flags.status());
    if (flags.ok()) CheckRoundTrip(*flags, metadata);
  } else if (mode == 1) {
    const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded()) return 0;  // the admin API answers 400 before the codec
    FeatureFlags base;
    absl::StatusOr<FeatureFlags> flags = FlagsFromJson(json, base);
    CheckError(flags.status());
    if (flags.ok()) CheckRoundTrip(*flags, FlagsMetadata{});
  } else {
    std::vector<FlagOverride> overrides;
    FeatureFlags single;
    for (std::string_view line : fuzz::Split(text, '\n')) {
      const size_t eq = line.find('=');
      if (eq == std::string_view::npos) continue;
      const std::string key(line.substr(0, eq));
      const std::string value(line.substr(eq + 1));
      overrides.push_back(FlagOverride{"$FUZZ", key, value});
      CheckError(SetFlagFromText(key, value, "$FUZZ", &single));
    }
    absl::StatusOr<FeatureFlags> flags = ApplyFlagOverrides(overrides, FeatureFlags{}, "flags");
    CheckError(flags.status());
    if (flags.ok()) CheckRoundTrip(*flags, FlagsMetadata{});
  }
  return 0;
}
