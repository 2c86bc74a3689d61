#include "common/config.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/flags_codec.h"
#include "common/json_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace rerank {
namespace {

// One settable leaf of the config, addressed by its dotted YAML key.
using FieldPtr = std::variant<std::string*, uint32_t*, uint64_t*, bool*>;

// The config's own keys. flags.initial is not here: it is a flags document, read by the flags
// codec (common/flags_codec.h) with the flags file's keys and rules.
constexpr char kFlagsInitial[] = "flags.initial";

std::map<std::string, FieldPtr> FieldTable(Config* c) {
  return {
      {"server.listen", &c->server.listen},
      {"server.max_message_bytes", &c->server.max_message_bytes},
      {"server.drain_grace_ms", &c->server.drain_grace_ms},
      {"server.drain_timeout_ms", &c->server.drain_timeout_ms},
      {"server.max_concurrent_streams", &c->server.max_concurrent_streams},
      {"server.memory_quota_mb", &c->server.memory_quota_mb},
      {"server.keepalive_min_ping_interval_ms", &c->server.keepalive_min_ping_interval_ms},
      {"server.keepalive_permit_without_calls", &c->server.keepalive_permit_without_calls},
      {"server.keepalive_time_ms", &c->server.keepalive_time_ms},
      {"server.keepalive_timeout_ms", &c->server.keepalive_timeout_ms},
      {"server.max_connection_age_ms", &c->server.max_connection_age_ms},
      {"server.max_connection_age_grace_ms", &c->server.max_connection_age_grace_ms},
      {"server.max_request_ms", &c->server.max_request_ms},
      {"server.http_listen", &c->server.http_listen},
      {"server.http_strict_model", &c->server.http_strict_model},
      {"server.http_model_aliases", &c->server.http_model_aliases},
      {"server.http_bearer_tokens_file", &c->server.http_bearer_tokens_file},
      {"server.http_max_body_bytes", &c->server.http_max_body_bytes},
      {"server.http_io_threads", &c->server.http_io_threads},
      {"server.http_max_connections", &c->server.http_max_connections},
      {"server.http_request_timeout_ms", &c->server.http_request_timeout_ms},
      {"model.dir", &c->model.dir},
      {"model.precision", &c->model.precision},
      {"model.max_length", &c->model.max_length},
      {"model.score_activation", &c->model.score_activation},
      {"model.warmup", &c->model.warmup},
      {"model.watch_interval_ms", &c->model.watch_interval_ms},
      {"execution.workers", &c->execution.workers},
      {"execution.intra_op_threads", &c->execution.intra_op_threads},
      {"execution.max_batch_pairs", &c->execution.max_batch_pairs},
      {"execution.max_batch_tokens", &c->execution.max_batch_tokens},
      {"execution.max_queue_delay_us", &c->execution.max_queue_delay_us},
      {"execution.max_queue_pairs", &c->execution.max_queue_pairs},
      {"execution.max_client_queue_pairs", &c->execution.max_client_queue_pairs},
      {"execution.fair_quantum_tokens", &c->execution.fair_quantum_tokens},
      {"execution.client_weights", &c->execution.client_weights},
      {"rerank.default_top_n", &c->rerank.default_top_n},
      {"rerank.max_documents", &c->rerank.max_documents},
      {"rerank.max_query_bytes", &c->rerank.max_query_bytes},
      {"rerank.max_document_bytes", &c->rerank.max_document_bytes},
      {"rerank.max_batch_requests", &c->rerank.max_batch_requests},
      {"rerank.max_request_bytes", &c->rerank.max_request_bytes},
      {"rerank.long_document_mode", &c->rerank.long_document_mode},
      {"rerank.max_chunks_per_doc", &c->rerank.max_chunks_per_doc},
      {"rerank.chunk_overlap_tokens", &c->rerank.chunk_overlap_tokens},
      {"rerank.target_latency_ms", &c->rerank.target_latency_ms},
      {"rerank.max_id_bytes", &c->rerank.max_id_bytes},
      {"rate_limit.identity", &c->rate_limit.identity},
      {"rate_limit.pairs_per_minute", &c->rate_limit.pairs_per_minute},
      {"cache.max_bytes", &c->cache.max_bytes},
      {"cache.rollout_key", &c->cache.rollout_key},
      {"audit.path", &c->audit.path},
      {"audit.queue_capacity", &c->audit.queue_capacity},
      {"audit.queue_max_bytes", &c->audit.queue_max_bytes},
      {"audit.max_file_mb", &c->audit.max_file_mb},
      {"audit.compress_rotated", &c->audit.compress_rotated},
      {"audit.retention_days", &c->audit.retention_days},
      {"audit.max_total_mb", &c->audit.max_total_mb},
      {"audit.include_query_text", &c->audit.include_query_text},
      {"flags.path", &c->flags.path},
      {"flags.poll_interval_ms", &c->flags.poll_interval_ms},
      {"admin.http_listen", &c->admin.http_listen},
      {"admin.grpc_listen", &c->admin.grpc_listen},
      {"admin.token", &c->admin.token},
      {"admin.token_file", &c->admin.token_file},
      {"admin.stats_window_seconds", &c->admin.stats_window_seconds},
      {"admin.metrics_max_clients", &c->admin.metrics_max_clients},
      {"logging.level", &c->logging.level},
      {"testing.inject_latency_ms", &c->testing.inject_latency_ms},
      {"testing.inject_latency_from_stage", &c->testing.inject_latency_from_stage},
  };
}

// Sets one field from its textual value (YAML scalar or environment variable).
absl::Status SetField(const std::string& key, const FieldPtr& field, const std::string& text) {
  struct Visitor {
    const std::string& key;
    const std::string& text;
    absl::Status operator()(std::string* s) const {
      *s = text;
      return absl::OkStatus();
    }
    absl::Status operator()(uint32_t* v) const {
      uint32_t parsed;
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &parsed)) {
        return absl::InvalidArgumentError(
            absl::StrCat(key, ": expected a non-negative integer, got '", text, "'"));
      }
      *v = parsed;
      return absl::OkStatus();
    }
    absl::Status operator()(uint64_t* v) const {
      uint64_t parsed;
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &parsed)) {
        return absl::InvalidArgumentError(
            absl::StrCat(key, ": expected a non-negative integer, got '", text, "'"));
      }
      *v = parsed;
      return absl::OkStatus();
    }
    absl::Status operator()(bool* b) const {
      // true/false only, as in the flags (common/flags_codec.h): one boolean rule per file.
      std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
      if (t == "true") {
        *b = true;
      } else if (t == "false") {
        *b = false;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(key, ": expected a boolean (true/false), got '", text, "'"));
      }
      return absl::OkStatus();
    }
  };
  return std::visit(Visitor{key, text}, field);
}

absl::Status Walk(const YAML::Node& node, const std::string& prefix,
                  const std::map<std::string, FieldPtr>& table, FeatureFlags* initial_flags) {
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix.empty() ? "config" : prefix, ": expected a mapping"));
  }
  for (const auto& kv : node) {
    const std::string name = kv.first.as<std::string>();
    const std::string key = prefix.empty() ? name : absl::StrCat(prefix, ".", name);
    if (key == kFlagsInitial) {
      if (kv.second.IsNull()) continue;
      RETURN_IF_ERROR(ApplyFlagsYaml(kv.second, kFlagsInitial, FlagsMetadataKeys::kReject,
                                     initial_flags, /*metadata=*/nullptr));
      continue;
    }
    auto it = table.find(key);
    if (it != table.end()) {
      if (!kv.second.IsScalar()) {
        return absl::InvalidArgumentError(absl::StrCat(key, ": expected a scalar value"));
      }
      RETURN_IF_ERROR(SetField(key, it->second, kv.second.Scalar()));
      continue;
    }
    // Not a leaf: it must be the prefix of some leaf, i.e. a known section.
    bool is_section = false;
    const std::string section_prefix = key + ".";
    for (const auto& [leaf, unused] : table) {
      if (leaf.rfind(section_prefix, 0) == 0) {
        is_section = true;
        break;
      }
    }
    if (!is_section) return absl::InvalidArgumentError(absl::StrCat(key, ": unknown key"));
    if (kv.second.IsNull()) continue;
    RETURN_IF_ERROR(Walk(kv.second, key, table, initial_flags));
  }
  return absl::OkStatus();
}

// Environment variable -> config key. These are the deployment guide's variables. A key under
// flags.initial is set by the flags codec (SetFlagFromText), with the flags' rules.
const std::vector<std::pair<const char*, const char*>>& EnvTable() {
  static const auto* table = new std::vector<std::pair<const char*, const char*>>{
      {"ENABLE_RERANKER", "flags.initial.reranker.enabled"},
      {"RERANKER_CACHE_ENABLED", "flags.initial.cache.enabled"},
      {"RERANKER_CACHE_TRAFFIC_PERCENT", "flags.initial.cache.traffic_percent"},
      {"RERANKER_CACHE_SIZE", "flags.initial.cache.max_entries"},
      {"RERANKER_BATCH_ENABLED", "flags.initial.batch.enabled"},
      {"RERANKER_AUDIT_ENABLED", "flags.initial.audit.enabled"},
      {"RERANKER_RATE_LIMIT_ENABLED", "flags.initial.rate_limit.enabled"},
      {"RERANKER_RATE_LIMIT_PER_MINUTE", "flags.initial.rate_limit.per_minute"},
      {"RERANKER_STAGE", "flags.initial.stage"},
      {"RERANKER_FLAGS_FILE", "flags.path"},
      {"RERANKER_AUDIT_LOG", "audit.path"},
      {"RERANKER_MODEL_DIR", "model.dir"},
      {"RERANKER_PRECISION", "model.precision"},
      {"RERANKER_MAX_LENGTH", "model.max_length"},
      {"RERANKER_SCORE_ACTIVATION", "model.score_activation"},
      {"RERANKER_GRPC_LISTEN", "server.listen"},
      {"RERANKER_API_HTTP_LISTEN", "server.http_listen"},
      {"RERANKER_HTTP_LISTEN", "admin.http_listen"},
      {"RERANKER_ADMIN_GRPC_LISTEN", "admin.grpc_listen"},
      {"RERANKER_ADMIN_TOKEN", "admin.token"},
      {"RERANKER_ADMIN_TOKEN_FILE", "admin.token_file"},
      {"RERANKER_TARGET_LATENCY_MS", "rerank.target_latency_ms"},
      {"RERANKER_WORKERS", "execution.workers"},
      {"RERANKER_INTRA_OP_THREADS", "execution.intra_op_threads"},
      {"RERANKER_LOG_LEVEL", "logging.level"},
  };
  return *table;
}

// Flattens a JSON tree into dotted keys; scalars as JSON text.
void FlattenJson(const nlohmann::json& j, const std::string& prefix,
                 std::map<std::string, std::string>* out) {
  if (!j.is_object()) {
    (*out)[prefix] = DumpJson(j);
    return;
  }
  for (const auto& item : j.items()) {
    FlattenJson(item.value(), absl::StrCat(prefix, ".", item.key()), out);
  }
}

absl::Status OneOf(const std::string& key, const std::string& value,
                   const std::set<std::string>& allowed) {
  if (allowed.count(value)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(key, ": must be one of ", absl::StrJoin(allowed, "|"), ", got '", value, "'"));
}

absl::Status Within(const std::string& key, uint64_t value, uint64_t min, uint64_t max) {
  if (value >= min && value <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(key, ": must be ", min, "..", max, ", got ", value));
}

absl::Status AtLeast(const std::string& key, uint64_t value, uint64_t min) {
  if (value >= min) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(key, ": must be >= ", min, ", got ", value));
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

absl::StatusOr<Config> ParseConfigYaml(const std::string& yaml_text) {
  Config config;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: invalid YAML: ", e.what()));
  }
  if (root.IsNull()) return config;
  auto table = FieldTable(&config);
  try {
    RETURN_IF_ERROR(Walk(root, "", table, &config.flags.initial));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", e.what()));
  }
  return config;
}

absl::Status ApplyEnvOverrides(const EnvLookup& env, Config* config) {
  auto table = FieldTable(config);
  const std::string flags_prefix = absl::StrCat(kFlagsInitial, ".");
  config->flag_env_overrides.clear();
  for (const auto& [var, key] : EnvTable()) {
    std::optional<std::string> value = env(var);
    if (!value.has_value()) continue;
    if (absl::StartsWith(key, flags_prefix)) {
      config->flag_env_overrides.push_back(FlagOverride{
          absl::StrCat("$", var), std::string(key).substr(flags_prefix.size()), *value});
    } else {
      const std::string display_key = absl::StrCat(key, " (from $", var, ")");
      RETURN_IF_ERROR(SetField(display_key, table.at(key), *value));
    }
  }
  // The same rules FlagStore applies over an existing flags file (a stage, then single flags).
  ASSIGN_OR_RETURN(config->flags.initial, ApplyFlagOverrides(config->flag_env_overrides,
                                                             config->flags.initial, kFlagsInitial));
  return absl::OkStatus();
}

std::vector<std::string> ParseModelAliases(const std::string& text) {
  std::vector<std::string> out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (!item.empty()) out.emplace_back(item);
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> ParseBearerTokens(const std::string& text) {
  constexpr char kKey[] = "server.http_bearer_tokens_file";
  constexpr size_t kMinTokenBytes = 16, kMaxClientBytes = 128;
  std::map<std::string, std::string> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (parts.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(kKey, ": line ", line_no, ": expected \"<token> <client_id>\""));
    }
    if (parts[0].size() < kMinTokenBytes) {
      return absl::InvalidArgumentError(absl::StrCat(kKey, ": line ", line_no,
                                                     ": token must be at least ", kMinTokenBytes,
                                                     " bytes, got ", parts[0].size()));
    }
    const bool printable =
        std::all_of(parts[1].begin(), parts[1].end(), [](char c) { return c > 0x20 && c <= 0x7e; });
    if (parts[1].size() > kMaxClientBytes || !printable) {
      return absl::InvalidArgumentError(absl::StrCat(kKey, ": line ", line_no,
                                                     ": client id must be 1..", kMaxClientBytes,
                                                     " bytes of printable ASCII"));
    }
    if (!out.emplace(std::string(parts[0]), std::string(parts[1])).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(kKey, ": line ", line_no, ": token listed twice"));
    }
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> LoadBearerTokens(const std::string& path) {
  if (path.empty()) return std::map<std::string, std::string>{};
  std::ifstream in(path);
  if (!in) {
    return absl::UnavailableError(
        absl::StrCat("server.http_bearer_tokens_file: cannot read '", path, "'"));
  }
  std::stringstream text;
  text << in.rdbuf();
  return ParseBearerTokens(text.str());
}

std::string AdminTokenFile(const Config& config) {
  if (!config.admin.token_file.empty()) return config.admin.token_file;
  const std::filesystem::path dir = std::filesystem::path(config.flags.path).parent_path();
  return (dir / "admin.token").string();
}

absl::StatusOr<std::map<std::string, uint32_t>> ParseClientWeights(const std::string& text) {
  constexpr char kKey[] = "execution.client_weights";
  constexpr uint32_t kMaxWeight = 1000;
  std::map<std::string, uint32_t> out;
  if (absl::StripAsciiWhitespace(text).empty()) return out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    const size_t eq = item.rfind('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(kKey, ": expected client=weight, got '", item, "'"));
    }
    const std::string client(absl::StripAsciiWhitespace(item.substr(0, eq)));
    const absl::string_view weight_text = absl::StripAsciiWhitespace(item.substr(eq + 1));
    uint32_t weight = 0;
    if (client.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(kKey, ": empty client in '", item, "'"));
    }
    if (!absl::SimpleAtoi(weight_text, &weight) || weight < 1 || weight > kMaxWeight) {
      return absl::InvalidArgumentError(absl::StrCat(kKey, ": weight of '", client,
                                                     "' must be an integer 1..", kMaxWeight,
                                                     ", got '", weight_text, "'"));
    }
    if (!out.emplace(client, weight).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(kKey, ": client '", client, "' is listed twice"));
    }
  }
  return out;
}

absl::Status ValidateConfig(const Config& c, unsigned cores) {
  std::vector<absl::Status> checks = {
      OneOf("model.precision", c.model.precision, {"fp32", "bf16"}),
      OneOf("model.score_activation", c.model.score_activation, {"raw", "sigmoid"}),
      OneOf("rerank.long_document_mode", c.rerank.long_document_mode, {"truncate", "chunk_max"}),
      OneOf("logging.level", c.logging.level, {"trace", "debug", "info", "warn", "error"}),
      OneOf("rate_limit.identity", c.rate_limit.identity, {"client_id", "peer"}),
      OneOf("cache.rollout_key", c.cache.rollout_key, {"query", "client"}),
      Within("server.max_message_bytes", c.server.max_message_bytes, 1024, kMaxMessageBytes),
      AtLeast("server.max_concurrent_streams", c.server.max_concurrent_streams, 1),
      AtLeast("server.memory_quota_mb", c.server.memory_quota_mb, 16),
      AtLeast("server.keepalive_time_ms", c.server.keepalive_time_ms, 1000),
      AtLeast("server.keepalive_timeout_ms", c.server.keepalive_timeout_ms, 100),
      Within("rerank.max_id_bytes", c.rerank.max_id_bytes, 1, 4096),
      Within("rate_limit.pairs_per_minute", c.rate_limit.pairs_per_minute, 0,
             kMaxRateLimitPerMinute),
      AtLeast("audit.queue_max_bytes", c.audit.queue_max_bytes, 64 << 10),
      AtLeast("model.max_length", c.model.max_length, 8),
      AtLeast("execution.workers", c.execution.workers, 1),
      AtLeast("execution.intra_op_threads", c.execution.intra_op_threads, 1),
      AtLeast("execution.max_batch_pairs", c.execution.max_batch_pairs, 1),
      AtLeast("execution.max_batch_tokens", c.execution.max_batch_tokens, c.model.max_length),
      AtLeast("execution.max_queue_pairs", c.execution.max_queue_pairs, 1),
      AtLeast("execution.fair_quantum_tokens", c.execution.fair_quantum_tokens, 1),
      ParseClientWeights(c.execution.client_weights).status(),
      AtLeast("rerank.default_top_n", c.rerank.default_top_n, 1),
      AtLeast("rerank.max_documents", c.rerank.max_documents, 1),
      AtLeast("rerank.max_query_bytes", c.rerank.max_query_bytes, 1),
      AtLeast("rerank.max_document_bytes", c.rerank.max_document_bytes, 1),
      AtLeast("rerank.max_batch_requests", c.rerank.max_batch_requests, 1),
      AtLeast("rerank.max_chunks_per_doc", c.rerank.max_chunks_per_doc, 1),
      AtLeast("cache.max_bytes", c.cache.max_bytes, 1024),
      AtLeast("audit.queue_capacity", c.audit.queue_capacity, 1),
      AtLeast("audit.max_file_mb", c.audit.max_file_mb, 1),
      AtLeast("flags.poll_interval_ms", c.flags.poll_interval_ms, 10),
      AtLeast("admin.stats_window_seconds", c.admin.stats_window_seconds, 1),
  };
  for (const auto& s : checks) RETURN_IF_ERROR(s);
  RETURN_IF_ERROR(
      Within("server.http_max_body_bytes", c.server.http_max_body_bytes, 1024, kMaxMessageBytes));
  RETURN_IF_ERROR(Within("server.http_io_threads", c.server.http_io_threads, 1, 64));
  RETURN_IF_ERROR(Within("server.http_max_connections", c.server.http_max_connections, 1, 1000000));
  RETURN_IF_ERROR(AtLeast("server.http_request_timeout_ms", c.server.http_request_timeout_ms, 1));
  if (c.server.http_strict_model && c.server.http_listen.empty()) {
    return absl::InvalidArgumentError(
        "server.http_strict_model: needs the HTTP data plane (server.http_listen is empty)");
  }
  if (c.server.listen.empty())
    return absl::InvalidArgumentError("server.listen: must not be empty");
  if (c.model.dir.empty()) return absl::InvalidArgumentError("model.dir: must not be empty");
  if (c.model.watch_interval_ms != 0 && c.model.watch_interval_ms < 100) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.watch_interval_ms: must be 0 (off) or >= 100, got ", c.model.watch_interval_ms));
  }
  // gRPC enforces a 1 s floor on connection age anyway; a smaller value is a typo (seconds?).
  if (c.server.max_connection_age_ms != 0 && c.server.max_connection_age_ms < 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("server.max_connection_age_ms: must be 0 (off) or >= 1000, got ",
                     c.server.max_connection_age_ms));
  }
  if (c.server.max_request_ms > 3600 * 1000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server.max_request_ms: must be <= 3600000 (one hour), got ", c.server.max_request_ms));
  }
  // Both windows are spent inside the orchestrator's grace period; an hour is clearly a typo.
  constexpr uint32_t kMaxDrainMs = 3600 * 1000;
  if (c.server.drain_grace_ms > kMaxDrainMs || c.server.drain_timeout_ms > kMaxDrainMs) {
    return absl::InvalidArgumentError(absl::StrCat(
        c.server.drain_grace_ms > kMaxDrainMs ? "server.drain_grace_ms" : "server.drain_timeout_ms",
        ": must be <= ", kMaxDrainMs, " (one hour)"));
  }
  if (!c.admin.token.empty() && c.admin.token.size() < kMinAdminTokenBytes) {
    // The length only, never the token itself: config errors end up in logs.
    return absl::InvalidArgumentError(absl::StrCat("admin.token: must be at least ",
                                                   kMinAdminTokenBytes, " bytes, got ",
                                                   c.admin.token.size()));
  }
  if (c.testing.inject_latency_ms > kMaxInjectLatencyMs) {
    return absl::InvalidArgumentError(absl::StrCat("testing.inject_latency_ms: must be 0..",
                                                   kMaxInjectLatencyMs, ", got ",
                                                   c.testing.inject_latency_ms));
  }
  if (const std::string& from = c.testing.inject_latency_from_stage; !from.empty()) {
    const std::vector<std::string>& rollout = RolloutStageNames();
    if (std::find(rollout.begin(), rollout.end(), from) == rollout.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("testing.inject_latency_from_stage: must be empty or a rollout stage (",
                       absl::StrJoin(rollout, ", "), "), got '", from, "'"));
    }
  }
  if (uint64_t{c.server.memory_quota_mb} << 20 < c.server.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server.memory_quota_mb: must hold at least one message of server.max_message_bytes (",
        c.server.max_message_bytes, " bytes), got ", c.server.memory_quota_mb, " MiB"));
  }
  if (c.audit.max_total_mb != 0 && c.audit.max_total_mb < c.audit.max_file_mb) {
    return absl::InvalidArgumentError(
        absl::StrCat("audit.max_total_mb: must be 0 (no cap) or >= audit.max_file_mb (",
                     c.audit.max_file_mb, "), got ", c.audit.max_total_mb));
  }
  if (c.rerank.chunk_overlap_tokens >= c.model.max_length / 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("rerank.chunk_overlap_tokens: must be < model.max_length / 2 (",
                     c.model.max_length / 2, "), got ", c.rerank.chunk_overlap_tokens));
  }
  if (absl::Status s = ValidateFlags(c.flags.initial); !s.ok()) {
    // ValidateFlags names the flags key ("cache.traffic_percent: ..."); name the config key.
    return absl::InvalidArgumentError(absl::StrCat(kFlagsInitial, ".", s.message()));
  }
  const uint64_t threads = uint64_t{c.execution.workers} * c.execution.intra_op_threads;
  if (cores > 0 && threads > cores) {
    return absl::InvalidArgumentError(absl::StrCat(
        "execution.workers: workers (", c.execution.workers, ") x execution.intra_op_threads (",
        c.execution.intra_op_threads, ") = ", threads, " exceeds the ", cores,
        " cores of this machine; oversubscribed torch threads thrash"));
  }
  return absl::OkStatus();
}

std::map<std::string, std::string> FlattenConfig(const Config& config) {
  struct Text {
    std::string operator()(std::string* s) const { return DumpJson(nlohmann::json(*s)); }
    std::string operator()(uint32_t* v) const { return absl::StrCat(*v); }
    std::string operator()(uint64_t* v) const { return absl::StrCat(*v); }
    std::string operator()(bool* b) const { return *b ? "true" : "false"; }
  };
  Config copy = config;  // FieldTable hands out mutable pointers
  std::map<std::string, std::string> out;
  for (const auto& [key, field] : FieldTable(&copy)) out[key] = std::visit(Text{}, field);
  FlattenJson(FlagsToJson(config.flags.initial), kFlagsInitial, &out);
  return out;
}

absl::StatusOr<Config> LoadConfig(const std::string& path, const EnvLookup& env) {
  Config config;
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) return absl::NotFoundError(absl::StrCat("config file not found: ", path));
    std::stringstream ss;
    ss << in.rdbuf();
    absl::StatusOr<Config> parsed = ParseConfigYaml(ss.str());
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
    }
    config = *std::move(parsed);
  }
  RETURN_IF_ERROR(ApplyEnvOverrides(env, &config));
  RETURN_IF_ERROR(ValidateConfig(config, /*cores=*/0));
  return config;
}

}  // namespace rerank
