#include "common/config.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <variant>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "yaml-cpp/yaml.h"

namespace rerank {
namespace {

// One settable leaf of the config, addressed by its dotted YAML key.
using FieldPtr = std::variant<std::string*, uint32_t*, uint64_t*, bool*>;

std::map<std::string, FieldPtr> FieldTable(Config* c) {
  FeatureFlags* f = &c->flags.initial;
  return {
      {"server.listen", &c->server.listen},
      {"server.max_message_bytes", &c->server.max_message_bytes},
      {"server.drain_timeout_ms", &c->server.drain_timeout_ms},
      {"model.dir", &c->model.dir},
      {"model.precision", &c->model.precision},
      {"model.max_length", &c->model.max_length},
      {"model.score_activation", &c->model.score_activation},
      {"model.warmup", &c->model.warmup},
      {"execution.workers", &c->execution.workers},
      {"execution.intra_op_threads", &c->execution.intra_op_threads},
      {"execution.max_batch_pairs", &c->execution.max_batch_pairs},
      {"execution.max_batch_tokens", &c->execution.max_batch_tokens},
      {"execution.max_queue_delay_us", &c->execution.max_queue_delay_us},
      {"execution.max_queue_pairs", &c->execution.max_queue_pairs},
      {"rerank.default_top_n", &c->rerank.default_top_n},
      {"rerank.max_documents", &c->rerank.max_documents},
      {"rerank.max_query_bytes", &c->rerank.max_query_bytes},
      {"rerank.max_document_bytes", &c->rerank.max_document_bytes},
      {"rerank.max_batch_requests", &c->rerank.max_batch_requests},
      {"rerank.long_document_mode", &c->rerank.long_document_mode},
      {"rerank.max_chunks_per_doc", &c->rerank.max_chunks_per_doc},
      {"rerank.chunk_overlap_tokens", &c->rerank.chunk_overlap_tokens},
      {"rerank.target_latency_ms", &c->rerank.target_latency_ms},
      {"cache.max_entries", &c->cache.max_entries},
      {"cache.max_bytes", &c->cache.max_bytes},
      {"audit.path", &c->audit.path},
      {"audit.queue_capacity", &c->audit.queue_capacity},
      {"audit.max_file_mb", &c->audit.max_file_mb},
      {"audit.retention_days", &c->audit.retention_days},
      {"audit.include_query_text", &c->audit.include_query_text},
      {"flags.path", &c->flags.path},
      {"flags.poll_interval_ms", &c->flags.poll_interval_ms},
      {"flags.initial.stage", &f->stage},
      {"flags.initial.reranker_enabled", &f->reranker_enabled},
      {"flags.initial.cache_enabled", &f->cache_enabled},
      {"flags.initial.cache_traffic_percent", &f->cache_traffic_percent},
      {"flags.initial.cache_max_entries", &f->cache_max_entries},
      {"flags.initial.batch_enabled", &f->batch_enabled},
      {"flags.initial.audit_enabled", &f->audit_enabled},
      {"flags.initial.overfetch_enabled", &f->overfetch_enabled},
      {"flags.initial.overfetch_candidates", &f->overfetch_candidates},
      {"flags.initial.overfetch_top_n", &f->overfetch_top_n},
      {"flags.initial.rate_limit_enabled", &f->rate_limit_enabled},
      {"flags.initial.rate_limit_per_minute", &f->rate_limit_per_minute},
      {"admin.http_listen", &c->admin.http_listen},
      {"admin.grpc_listen", &c->admin.grpc_listen},
      {"admin.token", &c->admin.token},
      {"admin.token_file", &c->admin.token_file},
      {"admin.stats_window_seconds", &c->admin.stats_window_seconds},
      {"logging.level", &c->logging.level},
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
      std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
      if (t == "true" || t == "1" || t == "yes" || t == "on") {
        *b = true;
      } else if (t == "false" || t == "0" || t == "no" || t == "off") {
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
                  const std::map<std::string, FieldPtr>& table) {
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix.empty() ? "config" : prefix, ": expected a mapping"));
  }
  for (const auto& kv : node) {
    const std::string name = kv.first.as<std::string>();
    const std::string key = prefix.empty() ? name : absl::StrCat(prefix, ".", name);
    auto it = table.find(key);
    if (it != table.end()) {
      if (!kv.second.IsScalar()) {
        return absl::InvalidArgumentError(absl::StrCat(key, ": expected a scalar value"));
      }
      if (absl::Status s = SetField(key, it->second, kv.second.Scalar()); !s.ok()) return s;
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
    if (absl::Status s = Walk(kv.second, key, table); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Environment variable -> config key. These are the deployment guide's variables.
const std::vector<std::pair<const char*, const char*>>& EnvTable() {
  static const auto* table = new std::vector<std::pair<const char*, const char*>>{
      {"ENABLE_RERANKER", "flags.initial.reranker_enabled"},
      {"RERANKER_CACHE_ENABLED", "flags.initial.cache_enabled"},
      {"RERANKER_CACHE_TRAFFIC_PERCENT", "flags.initial.cache_traffic_percent"},
      {"RERANKER_CACHE_SIZE", "flags.initial.cache_max_entries"},
      {"RERANKER_BATCH_ENABLED", "flags.initial.batch_enabled"},
      {"RERANKER_AUDIT_ENABLED", "flags.initial.audit_enabled"},
      {"RERANKER_RATE_LIMIT_ENABLED", "flags.initial.rate_limit_enabled"},
      {"RERANKER_RATE_LIMIT_PER_MINUTE", "flags.initial.rate_limit_per_minute"},
      {"RERANKER_STAGE", "flags.initial.stage"},
      {"RERANKER_FLAGS_FILE", "flags.path"},
      {"RERANKER_AUDIT_LOG", "audit.path"},
      {"RERANKER_MODEL_DIR", "model.dir"},
      {"RERANKER_PRECISION", "model.precision"},
      {"RERANKER_MAX_LENGTH", "model.max_length"},
      {"RERANKER_SCORE_ACTIVATION", "model.score_activation"},
      {"RERANKER_GRPC_LISTEN", "server.listen"},
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

absl::Status OneOf(const std::string& key, const std::string& value,
                   const std::set<std::string>& allowed) {
  if (allowed.count(value)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(key, ": must be one of ",
                                                 absl::StrJoin(allowed, "|"), ", got '", value,
                                                 "'"));
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
    if (absl::Status s = Walk(root, "", table); !s.ok()) return s;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", e.what()));
  }
  return config;
}

absl::Status ApplyEnvOverrides(const EnvLookup& env, Config* config) {
  auto table = FieldTable(config);
  for (const auto& [var, key] : EnvTable()) {
    std::optional<std::string> value = env(var);
    if (!value.has_value()) continue;
    absl::Status s = SetField(absl::StrCat(key, " (from $", var, ")"), table.at(key), *value);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string AdminTokenFile(const Config& config) {
  if (!config.admin.token_file.empty()) return config.admin.token_file;
  const std::filesystem::path dir = std::filesystem::path(config.flags.path).parent_path();
  return (dir / "admin.token").string();
}

absl::Status ValidateConfig(const Config& c, unsigned cores) {
  std::vector<absl::Status> checks = {
      OneOf("model.precision", c.model.precision, {"fp32", "bf16"}),
      OneOf("model.score_activation", c.model.score_activation, {"raw", "sigmoid"}),
      OneOf("rerank.long_document_mode", c.rerank.long_document_mode, {"truncate", "chunk_max"}),
      OneOf("logging.level", c.logging.level, {"trace", "debug", "info", "warn", "error"}),
      AtLeast("model.max_length", c.model.max_length, 8),
      AtLeast("execution.workers", c.execution.workers, 1),
      AtLeast("execution.intra_op_threads", c.execution.intra_op_threads, 1),
      AtLeast("execution.max_batch_pairs", c.execution.max_batch_pairs, 1),
      AtLeast("execution.max_batch_tokens", c.execution.max_batch_tokens, c.model.max_length),
      AtLeast("execution.max_queue_pairs", c.execution.max_queue_pairs, 1),
      AtLeast("rerank.default_top_n", c.rerank.default_top_n, 1),
      AtLeast("rerank.max_documents", c.rerank.max_documents, 1),
      AtLeast("rerank.max_query_bytes", c.rerank.max_query_bytes, 1),
      AtLeast("rerank.max_document_bytes", c.rerank.max_document_bytes, 1),
      AtLeast("rerank.max_batch_requests", c.rerank.max_batch_requests, 1),
      AtLeast("rerank.max_chunks_per_doc", c.rerank.max_chunks_per_doc, 1),
      AtLeast("cache.max_entries", c.cache.max_entries, 1),
      AtLeast("cache.max_bytes", c.cache.max_bytes, 1024),
      AtLeast("audit.queue_capacity", c.audit.queue_capacity, 1),
      AtLeast("audit.max_file_mb", c.audit.max_file_mb, 1),
      AtLeast("flags.poll_interval_ms", c.flags.poll_interval_ms, 10),
      AtLeast("flags.initial.rate_limit_per_minute", c.flags.initial.rate_limit_per_minute, 1),
      AtLeast("admin.stats_window_seconds", c.admin.stats_window_seconds, 1),
  };
  for (const auto& s : checks) {
    if (!s.ok()) return s;
  }
  if (c.server.listen.empty()) return absl::InvalidArgumentError("server.listen: must not be empty");
  if (c.model.dir.empty()) return absl::InvalidArgumentError("model.dir: must not be empty");
  if (!c.admin.token.empty() && c.admin.token.size() < kMinAdminTokenBytes) {
    // The length only, never the token itself: config errors end up in logs.
    return absl::InvalidArgumentError(absl::StrCat("admin.token: must be at least ",
                                                   kMinAdminTokenBytes, " bytes, got ",
                                                   c.admin.token.size()));
  }
  if (c.rerank.chunk_overlap_tokens >= c.model.max_length / 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rerank.chunk_overlap_tokens: must be < model.max_length / 2 (", c.model.max_length / 2,
        "), got ", c.rerank.chunk_overlap_tokens));
  }
  if (c.flags.initial.cache_traffic_percent > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("flags.initial.cache_traffic_percent: must be 0..100, got ",
                     c.flags.initial.cache_traffic_percent));
  }
  if (c.flags.initial.overfetch_top_n > c.flags.initial.overfetch_candidates) {
    return absl::InvalidArgumentError(
        "flags.initial.overfetch_top_n: must be <= flags.initial.overfetch_candidates");
  }
  if (absl::Status s = ValidateFlags(c.flags.initial); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("flags.initial: ", s.message()));
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
  if (absl::Status s = ApplyEnvOverrides(env, &config); !s.ok()) return s;
  // RERANKER_STAGE applies a named stage's effect on top of the other initial flags.
  if (std::optional<std::string> stage = env("RERANKER_STAGE"); stage.has_value()) {
    absl::StatusOr<FeatureFlags> staged = ApplyStage(*stage, config.flags.initial);
    if (!staged.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("flags.initial.stage (from $RERANKER_STAGE): ", staged.status().message()));
    }
    config.flags.initial = *staged;
  }
  if (absl::Status s = ValidateConfig(config, /*cores=*/0); !s.ok()) return s;
  return config;
}

}  // namespace rerank
