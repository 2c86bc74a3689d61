#include "tools/rerankctl_check.h"

#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "nlohmann/json.hpp"
#include "rerank/admin/v1/admin.pb.h"
#include "tools/rerankctl_format.h"

namespace rerank::ctl {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

CheckResult Pass(std::string name, std::string detail) {
  return {std::move(name), true, std::move(detail)};
}
CheckResult Fail(std::string name, std::string detail) {
  return {std::move(name), false, std::move(detail)};
}

CheckResult CheckModelFiles(const std::string& dir) {
  const char* kName = "model files";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Fail(kName, absl::StrCat(dir, " is not a directory"));
  std::vector<std::string> missing;
  for (const char* file : {"model.pt", "vocab.txt", "model.yaml"}) {
    const fs::path p = fs::path(dir) / file;
    if (!fs::is_regular_file(p, ec) || access(p.c_str(), R_OK) != 0) {
      missing.push_back(file);
    } else if (fs::file_size(p, ec) == 0) {
      missing.push_back(absl::StrCat(file, " (empty)"));
    }
  }
  if (!missing.empty()) {
    return Fail(kName,
                absl::StrCat(dir, ": missing or unreadable: ", absl::StrJoin(missing, ", ")));
  }
  return Pass(kName, absl::StrCat(dir, " has model.pt, vocab.txt, model.yaml"));
}

// The server creates missing parent directories and replaces files by rename, so what matters is
// that the nearest existing ancestor directory is writable (and the file, if any, readable).
CheckResult CheckWritableDir(const std::string& name, const std::string& key,
                             const std::string& file) {
  std::error_code ec;
  fs::path dir = fs::path(file).parent_path();
  if (dir.empty()) dir = ".";
  fs::path existing = dir;
  while (!fs::exists(existing, ec) && existing.has_parent_path() &&
         existing.parent_path() != existing) {
    existing = existing.parent_path();
  }
  if (!fs::is_directory(existing, ec)) {
    return Fail(name, absl::StrCat(key, "=", file, ": ", existing.string(), " is not a directory"));
  }
  if (access(existing.c_str(), W_OK | X_OK) != 0) {
    return Fail(name, absl::StrCat(key, "=", file, ": directory ", existing.string(),
                                   " is not writable by this user"));
  }
  if (fs::exists(file, ec) && access(file.c_str(), R_OK) != 0) {
    return Fail(name, absl::StrCat(key, "=", file, ": file exists but is not readable"));
  }
  if (existing != dir) {
    return Pass(
        name, absl::StrCat(dir.string(), " will be created (", existing.string(), " is writable)"));
  }
  return Pass(name, absl::StrCat(dir.string(), " is writable"));
}

// The remote checks that cannot run without a /health answer: `why` is why there is none.
std::vector<CheckResult> AddUnknownRemote(const std::string& why,
                                          std::vector<CheckResult>* results) {
  results->push_back(Fail("health", why));
  results->push_back(Fail("reranker enabled", "unknown: no /health answer"));
  results->push_back(Fail("stats available", "unknown: no /health answer"));
  return std::move(*results);
}

}  // namespace

std::vector<CheckResult> RunPreDeploymentChecks(const CheckOptions& options,
                                                const HttpGetter& get) {
  std::vector<CheckResult> results;
  std::error_code ec;
  if (!options.config_path.empty()) {
    if (fs::is_regular_file(options.config_path, ec) &&
        access(options.config_path.c_str(), R_OK) == 0) {
      results.push_back(Pass("config file", options.config_path));
    } else {
      results.push_back(Fail(
          "config file", absl::StrCat(options.config_path, " does not exist or is not readable")));
    }
  }
  absl::StatusOr<Config> config = LoadConfig(options.config_path, options.env);
  absl::Status valid = config.ok() ? ValidateConfig(*config, options.cores) : config.status();
  if (config.ok()) {
    results.push_back(CheckModelFiles(config->model.dir));
    results.push_back(CheckWritableDir("flags file directory", "flags.path", config->flags.path));
    results.push_back(CheckWritableDir("audit log directory", "audit.path", config->audit.path));
  } else {
    for (const char* name : {"model files", "flags file directory", "audit log directory"}) {
      results.push_back(Fail(name, "unknown: the configuration could not be loaded"));
    }
  }
  const std::string source =
      options.config_path.empty() ? "built-in defaults + environment" : options.config_path;
  results.push_back(valid.ok() ? Pass("config valid", absl::StrCat(source, " loads and validates"))
                               : Fail("config valid", std::string(valid.message())));

  // Remote checks, all from one GET /health.
  absl::StatusOr<HttpResponse> health = get("/health");
  if (!health.ok()) return AddUnknownRemote(std::string(health.status().message()), &results);
  admin::v1::Health h;
  if (health->status != 200 && health->status != 503) {
    // Not a /health answer (a proxy's error page, an error body): say what came back.
    return AddUnknownRemote(
        absl::StrCat("GET /health failed: ", DescribeHttpError(health->status, health->body)),
        &results);
  }
  if (absl::Status s = ParseAnswer(health->body, &h, "body"); !s.ok()) {
    return AddUnknownRemote(absl::StrCat("GET /health answered HTTP ", health->status,
                                         " with a body that does not match the admin contract (",
                                         s.message(), "): ", Snippet(health->body, 120)),
                            &results);
  }
  if (health->status == 200 && h.status() == "healthy") {
    results.push_back(Pass("health", "GET /health -> 200, status healthy"));
  } else {
    std::string why = absl::StrCat("GET /health -> ", health->status, ", status ",
                                   h.status().empty() ? "?" : h.status());
    if (health->status != 200) {
      // /ready says why the server is not ready (loading, warming up, draining).
      absl::StatusOr<HttpResponse> ready = get("/ready");
      admin::v1::Readiness r;
      if (ready.ok() && ParseAnswer(ready->body, &r, "GET /ready").ok() && !r.reason().empty()) {
        absl::StrAppend(&why, " (not ready: ", r.reason(), ")");
      }
    } else if (h.status() == "degraded") {
      absl::StrAppend(&why, " (error rate above 5% in the stats window)");
    }
    results.push_back(Fail("health", why));
  }
  if (h.reranker().enabled()) {
    results.push_back(Pass("reranker enabled", ".reranker.enabled is true"));
  } else {
    const std::string& stage = h.reranker().stage();
    results.push_back(Fail("reranker enabled", absl::StrCat(".reranker.enabled is false (stage ",
                                                            stage.empty() ? "?" : stage,
                                                            "): requests pass through unranked")));
  }
  // The message parsed, so every field present has the contract's type; a field the server left
  // out would read as 0 / false, which is why presence is checked on the JSON itself.
  const json raw = json::parse(health->body, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> problems = StatsProblems(raw);
  if (problems.empty()) {
    results.push_back(Pass("stats available", absl::StrCat("all ", StatsFieldNames().size(),
                                                           " .reranker.stats fields present")));
  } else {
    results.push_back(Fail("stats available", absl::StrJoin(problems, ", ")));
  }
  return results;
}

std::vector<std::string> StatsFieldNames() {
  const google::protobuf::Descriptor* d = admin::v1::Stats::descriptor();
  std::vector<std::string> names;
  names.reserve(d->field_count());
  for (int i = 0; i < d->field_count(); ++i) names.push_back(d->field(i)->name());
  return names;
}

std::vector<std::string> StatsProblems(const json& health) {
  const json* stats = nullptr;
  if (health.is_object()) {
    auto reranker = health.find("reranker");
    if (reranker != health.end() && reranker->is_object()) {
      auto it = reranker->find("stats");
      if (it != reranker->end() && !it->is_null()) stats = &*it;
    }
  }
  if (stats == nullptr) return {".reranker.stats is missing"};
  if (!stats->is_object()) return {".reranker.stats is not an object"};
  std::vector<std::string> missing;
  const google::protobuf::Descriptor* d = admin::v1::Stats::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    // The API renders proto field names; the lowerCamelCase JSON name is accepted as well, as
    // the parser does. A null counts as absent (the parser leaves the field unset).
    auto it = stats->find(f->name());
    if (it == stats->end() || it->is_null()) it = stats->find(f->json_name());
    if (it == stats->end() || it->is_null())
      missing.push_back(absl::StrCat(f->name(), " (missing)"));
  }
  return missing;
}

std::string FormatCheckResults(const std::vector<CheckResult>& results) {
  std::string out;
  size_t failed = 0;
  for (const CheckResult& r : results) {
    absl::StrAppend(&out, r.ok ? "✅ " : "❌ ", r.name, ": ", r.detail, "\n");
    if (!r.ok) ++failed;
  }
  if (failed == 0) {
    absl::StrAppend(&out, "all ", results.size(), " checks passed\n");
  } else {
    absl::StrAppend(&out, failed, " of ", results.size(), " checks failed\n");
  }
  return out;
}

bool AllPassed(const std::vector<CheckResult>& results) {
  for (const CheckResult& r : results) {
    if (!r.ok) return false;
  }
  return true;
}

}  // namespace rerank::ctl
