// Where rerankctl finds the admin token for state-changing calls (POST /flags, POST /reload).
//
// Order, first found wins: --token-file PATH, --token T, $RERANKER_ADMIN_TOKEN, the config's
// admin.token (rerankd uses that one when it is set), $RERANKER_ADMIN_TOKEN_FILE, then the file
// rerankd writes its generated token to when none is configured: AdminTokenFile(config), with
// config = LoadConfig(--config or "", environment) -- the derivation rerankd itself uses, so the
// same config and environment name the same file (relative paths resolve against the current
// directory, as rerankd resolves them against its own). A file named explicitly (--token-file,
// $RERANKER_ADMIN_TOKEN_FILE) must exist; the default file may be absent (then no token is sent
// and the server answers 401). A file that exists but is unreadable, empty or not a token is an
// error naming the file. The token itself never appears in a message. Pure but for the file
// reads; thread-compatible.
#ifndef RERANK_TOOLS_RERANKCTL_TOKEN_H_
#define RERANK_TOOLS_RERANKCTL_TOKEN_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/config.h"

namespace rerank::ctl {

struct TokenSources {
  std::optional<std::string> token_file;  // --token-file
  std::optional<std::string> token;       // --token
  std::string config_path;                // --config; empty: built-in defaults + environment
  EnvLookup env;                          // required (ProcessEnv() in production)
};

struct AdminToken {
  std::string token;   // empty: none found, send none
  std::string source;  // where it came from, for messages, e.g. "--token-file /x/admin.token"
};

// InvalidArgument for an empty --token / --token-file value; NotFound / FailedPrecondition naming
// the file for an explicit file that is missing, and for any token file that is unreadable, empty,
// larger than kMaxTokenFileBytes or holds whitespace/control characters inside the token;
// FailedPrecondition when the default file is needed but the configuration does not load.
absl::StatusOr<AdminToken> ResolveAdminToken(const TokenSources& sources);

// A token file is one line; anything bigger is not one.
inline constexpr size_t kMaxTokenFileBytes = 4096;

// The token in `path` (surrounding whitespace, such as the trailing newline rerankd writes, is
// dropped). NotFound when the file does not exist; other errors as above. Messages name `path`.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace rerank::ctl

#endif  // RERANK_TOOLS_RERANKCTL_TOKEN_H_
