// Command-line parsing for rerankctl: `rerankctl [global flags] <command> [flags] [args]`.
// Flags may appear before or after the command; each command declares the flags it accepts, so a
// typo is a usage error (exit 2) rather than a silently ignored option. Pure; thread-compatible.
#ifndef RERANK_TOOLS_RERANKCTL_ARGS_H_
#define RERANK_TOOLS_RERANKCTL_ARGS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rerank::ctl {

enum class FlagKind {
  kBool,      // --json (no value)
  kValue,     // --top-n 3 or --top-n=3; the last one wins
  kRepeated,  // --doc A --doc B; every value kept in order
};

struct FlagSpec {
  std::string name;  // without the leading "--"
  FlagKind kind = FlagKind::kValue;
};

struct ParsedArgs {
  std::string command;                   // first positional; empty when none was given
  std::vector<std::string> positionals;  // the positionals after the command
  std::map<std::string, std::vector<std::string>> values;  // kValue / kRepeated flags
  std::map<std::string, bool> bools;                       // kBool flags that were given
  bool help = false;                                       // --help / -h anywhere

  bool Has(const std::string& name) const;
  // Last value of a kValue flag, or `fallback` when absent.
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  const std::vector<std::string>& GetAll(const std::string& name) const;
};

// Flags accepted by every command: --admin, --target, --token, --token-file, --config, --timeout.
const std::vector<FlagSpec>& GlobalFlags();

// Parses argv[1..] in two steps: the command is the first non-flag argument (global flags may come
// before it), then the remaining arguments are parsed against GlobalFlags() + command_flags.
// `command_flags` maps a command name to its own flags; an unknown command is not an error here
// (the caller prints usage), but an unknown flag is: InvalidArgument naming it. "--" ends flags.
absl::StatusOr<ParsedArgs> ParseArgs(
    const std::vector<std::string>& args,
    const std::map<std::string, std::vector<FlagSpec>>& command_flags);

}  // namespace rerank::ctl

#endif  // RERANK_TOOLS_RERANKCTL_ARGS_H_
