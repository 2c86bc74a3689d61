#include "tools/rerankctl_args.h"

#include <optional>

#include "absl/strings/str_cat.h"

namespace rerank::ctl {
namespace {

std::optional<FlagSpec> Find(const std::vector<FlagSpec>& specs, const std::string& name) {
  for (const FlagSpec& s : specs) {
    if (s.name == name) return s;
  }
  return std::nullopt;
}

}  // namespace

bool ParsedArgs::Has(const std::string& name) const {
  return values.count(name) > 0 || bools.count(name) > 0;
}

std::string ParsedArgs::Get(const std::string& name, const std::string& fallback) const {
  auto it = values.find(name);
  if (it == values.end() || it->second.empty()) return fallback;
  return it->second.back();
}

const std::vector<std::string>& ParsedArgs::GetAll(const std::string& name) const {
  static const std::vector<std::string>* const kEmpty = new std::vector<std::string>();
  auto it = values.find(name);
  return it == values.end() ? *kEmpty : it->second;
}

const std::vector<FlagSpec>& GlobalFlags() {
  static const auto* const flags = new std::vector<FlagSpec>{
      {"admin", FlagKind::kValue},      {"target", FlagKind::kValue}, {"token", FlagKind::kValue},
      {"token-file", FlagKind::kValue}, {"config", FlagKind::kValue}, {"timeout", FlagKind::kValue},
  };
  return *flags;
}

absl::StatusOr<ParsedArgs> ParseArgs(
    const std::vector<std::string>& args,
    const std::map<std::string, std::vector<FlagSpec>>& command_flags) {
  ParsedArgs out;
  // Pass 1: find the command, the first argument that is neither a flag nor a global flag's value.
  std::optional<size_t> command_at;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a.rfind("-", 0) != 0 || a == "-") {
      command_at = i;
      break;
    }
    // A global value flag written as "--admin URL" consumes the next argument.
    if (a.rfind("--", 0) == 0 && a.find('=') == std::string::npos) {
      std::optional<FlagSpec> g = Find(GlobalFlags(), a.substr(2));
      if (g.has_value() && g->kind != FlagKind::kBool) ++i;
    }
  }
  std::vector<FlagSpec> specs = GlobalFlags();
  if (command_at.has_value()) {
    out.command = args[*command_at];
    auto it = command_flags.find(out.command);
    if (it != command_flags.end()) specs.insert(specs.end(), it->second.begin(), it->second.end());
  }
  // Pass 2: every other argument, against the global + command flags.
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (command_at.has_value() && i == *command_at) continue;
    const std::string& a = args[i];
    if (flags_done || a.rfind("-", 0) != 0 || a == "-") {
      out.positionals.push_back(a);
      continue;
    }
    if (a == "--") {
      flags_done = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      out.help = true;
      continue;
    }
    if (a.rfind("--", 0) != 0)
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", a, "'"));
    std::string name = a.substr(2);
    std::optional<std::string> inline_value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    std::optional<FlagSpec> spec = Find(specs, name);
    if (!spec.has_value()) {
      return absl::InvalidArgumentError(
          out.command.empty()
              ? absl::StrCat("unknown flag '--", name, "'")
              : absl::StrCat("unknown flag '--", name, "' for '", out.command, "'"));
    }
    if (spec->kind == FlagKind::kBool) {
      if (inline_value.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
      }
      out.bools[name] = true;
      continue;
    }
    std::string value;
    if (inline_value.has_value()) {
      value = *inline_value;
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
    }
    std::vector<std::string>& slot = out.values[name];
    if (spec->kind == FlagKind::kValue) slot.clear();
    slot.push_back(std::move(value));
  }
  return out;
}

}  // namespace rerank::ctl
