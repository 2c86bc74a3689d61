// Fuzz target: rerankd's configuration as LoadConfig reads it (common/config.h): YAML text on top
// of the defaults, then environment overrides, then validation; plus execution.client_weights.
//
// Input: "YAML \x1e environment \x1e client_weights", the environment as NAME=value lines (the
// documented variables; any other name reads as unset).
//
// Properties checked beyond "no crash, no sanitizer report":
//  - errors are INVALID_ARGUMENT with a message;
//  - a config that parses round-trips: the YAML rebuilt from FlattenConfig (every key, the
//    documented example's form) parses again to the same FlattenConfig;
//  - client weights that parse are within 1..1000 and name non-empty clients.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/config.h"
#include "server/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace rerank {
namespace {

void CheckError(const absl::Status& s) {
  if (s.ok()) return;
  FUZZ_CHECK(absl::IsInvalidArgument(s), "unexpected error %s", s.ToString().c_str());
  FUZZ_CHECK(!s.message().empty(), "error without a message");
}

// Nested YAML from dotted keys ("a.b.c" -> a: {b: {c: value}}), values as FlattenConfig wrote
// them (YAML-compatible scalars).
struct Tree {
  std::string value;
  std::map<std::string, Tree> children;
};
void Emit(const Tree& t, const std::string& indent, std::string* out) {
  for (const auto& [key, child] : t.children) {
    if (child.children.empty()) {
      *out += indent + key + ": " + child.value + "\n";
    } else {
      *out += indent + key + ":\n";
      Emit(child, indent + "  ", out);
    }
  }
}
std::string ToYaml(const std::map<std::string, std::string>& flat) {
  Tree root;
  for (const auto& [key, value] : flat) {
    Tree* t = &root;
    for (std::string_view part : fuzz::Split(key, '.')) t = &t->children[std::string(part)];
    t->value = value;
  }
  std::string out;
  Emit(root, "", &out);
  return out;
}

}  // namespace
}  // namespace rerank

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rerank;
  fuzz::InputReader in(data, size);
  const std::string yaml(in.Until('\x1e'));
  std::map<std::string, std::string> env;
  for (std::string_view line : fuzz::Split(in.Until('\x1e'), '\n')) {
    const size_t eq = line.find('=');
    if (eq != std::string_view::npos) {
      env[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
    }
  }
  const std::string weights(in.Rest());

  absl::StatusOr<Config> parsed = ParseConfigYaml(yaml);
  CheckError(parsed.status());
  if (parsed.ok()) {
    const std::map<std::string, std::string> flat = FlattenConfig(*parsed);
    const std::string rebuilt = ToYaml(flat);
    absl::StatusOr<Config> again = ParseConfigYaml(rebuilt);
    FUZZ_CHECK(again.ok(), "FlattenConfig's YAML does not parse: %s\n%s",
               again.status().ToString().c_str(), rebuilt.c_str());
    // Strings with invalid UTF-8 come back with U+FFFD (FlattenConfig writes JSON); compare
    // the second generation, which is stable.
    const std::map<std::string, std::string> flat2 = FlattenConfig(*again);
    if (FindInvalidUtf8(yaml) == std::string::npos) {
      FUZZ_CHECK(flat2 == flat, "config does not round-trip through FlattenConfig:\n%s",
                 rebuilt.c_str());
    }
    CheckError(ValidateConfig(*parsed, /*cores=*/0));
    Config with_env = *parsed;
    const EnvLookup lookup = [&env](const std::string& name) -> std::optional<std::string> {
      auto it = env.find(name);
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    if (absl::Status s = ApplyEnvOverrides(lookup, &with_env); !s.ok()) {
      CheckError(s);
    } else {
      CheckError(ValidateConfig(with_env, /*cores=*/0));
    }
  }

  absl::StatusOr<std::map<std::string, uint32_t>> w = ParseClientWeights(weights);
  CheckError(w.status());
  if (w.ok()) {
    for (const auto& [client, weight] : *w) {
      FUZZ_CHECK(!client.empty() && weight >= 1 && weight <= 1000, "weight %u for '%s'", weight,
                 client.c_str());
    }
  }
  return 0;
}
