// `rerankctl check`: the deployment guide's pre-deployment validation. Each check yields one
// ✅/❌ line that says what was checked and, when it fails, why.
//
// Local checks read the same configuration the server would (LoadConfig: the YAML file, then the
// RERANKER_* environment variables, then ValidateConfig) and resolve relative paths against the
// current directory, so run it from the server's working directory. Remote checks read the admin
// plane's GET /health through an injected getter (tests pass a lambda). Thread-compatible.
#ifndef RERANK_TOOLS_RERANKCTL_CHECK_H_
#define RERANK_TOOLS_RERANKCTL_CHECK_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "nlohmann/json.hpp"
#include "tools/rerankctl_http.h"

namespace rerank::ctl {

struct CheckResult {
  std::string name;  // what was checked, e.g. "model files"
  bool ok = false;
  std::string detail;  // what was found (ok) or why it failed
};

struct CheckOptions {
  // Empty: built-in defaults + environment, like `rerankd` without --config.
  std::string config_path;
  EnvLookup env;       // environment overrides; required (ProcessEnv() in production)
  unsigned cores = 0;  // for ValidateConfig's thread check; 0 skips it
};

// GET `path` on the admin plane.
using HttpGetter = std::function<absl::StatusOr<HttpResponse>(std::string_view path)>;

// Runs every check, in order: config file present (only with a config_path), model files
// (model.pt, vocab.txt, model.yaml in model.dir), flags file directory writable, audit log
// directory writable, config valid, health OK (GET /health is 200 with status "healthy"),
// reranker enabled (.reranker.enabled), stats available (every field of the contract's Stats
// message present in .reranker.stats). The /health answer is parsed into admin.v1.Health; one
// that does not match the contract fails "health" naming the field. A check that cannot run
// because an earlier one failed fails too, saying so.
std::vector<CheckResult> RunPreDeploymentChecks(const CheckOptions& options, const HttpGetter& get);

// "✅ name: detail" / "❌ name: detail" lines, then a one-line verdict.
std::string FormatCheckResults(const std::vector<CheckResult>& results);

bool AllPassed(const std::vector<CheckResult>& results);

// The fields of the contract's admin.v1.Stats (/health's .reranker.stats), in declaration order,
// from the message descriptor: the contract is the one list.
std::vector<std::string> StatsFieldNames();
// What is missing from a /health answer's .reranker.stats: "p95_latency_ms (missing)" per field
// of StatsFieldNames() absent (or null) in the JSON object, or one entry when the object itself is
// missing. Empty when everything the contract promises is there. Types are not checked here:
// parsing the answer into admin.v1.Health does that.
std::vector<std::string> StatsProblems(const nlohmann::json& health);

}  // namespace rerank::ctl

#endif  // RERANK_TOOLS_RERANKCTL_CHECK_H_
