// rerankd's whole configuration: one YAML file (every key optional, defaults below), then
// environment overrides (the deployment guide's variables), then validation. The example file
// deploy/rerankd.example.yaml documents every key with its default; a test keeps the two in sync.
//
// Precedence: built-in defaults < YAML file < environment variables. Validation errors name the
// YAML key (e.g. "execution.workers: must be >= 1, got 0").
#ifndef RERANK_COMMON_CONFIG_H_
#define RERANK_COMMON_CONFIG_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/feature_flags.h"
#include "common/flags_codec.h"

namespace rerank {

struct ServerConfig {
  std::string listen = "0.0.0.0:50051";    // data-plane gRPC (Reranker, health, reflection)
  uint32_t max_message_bytes = 64u << 20;  // gRPC max receive size; 1 KiB..1 GiB
  // SIGTERM, step 1: /ready turns 503 and grpc.health.v1 NOT_SERVING at once, but the data port
  // keeps accepting and serving for this long, so load balancers (kube endpoints, client-side
  // health checks) move traffic away before the listener closes. 0: no window (local runs).
  uint32_t drain_grace_ms = 0;
  // SIGTERM, step 2: the listener closes (GOAWAY) and in-flight requests finish for up to this
  // long; whatever is still running then is cancelled.
  uint32_t drain_timeout_ms = 10000;
  // Bounds on what clients can make the gRPC server hold (app/grpc_limits.h).
  uint32_t max_concurrent_streams = 100;  // in-flight RPCs per connection
  uint32_t memory_quota_mb = 2048;  // gRPC resource quota: memory for all connections' buffers
  // Keepalive enforcement: a client pinging more often than this is sent GOAWAY
  // (too_many_pings); clients should set keepalive_time_ms >= this.
  uint32_t keepalive_min_ping_interval_ms = 10000;
  bool keepalive_permit_without_calls = false;  // pings without an RPC in flight count as abuse
  uint32_t keepalive_time_ms = 60000;           // server pings an idle connection this often
  uint32_t keepalive_timeout_ms = 20000;        // and closes it when no ack comes back in time
  // Connections are closed (GOAWAY) after this long, so clients re-resolve and spread over new
  // replicas behind a Kubernetes Service; in-flight RPCs get the grace period. 0: never.
  uint32_t max_connection_age_ms = 300000;
  uint32_t max_connection_age_grace_ms = 120000;
  // A gRPC call's deadline is at most this far ahead, also when the client sets none: a queued
  // call then ends DEADLINE_EXCEEDED (no inference spent on it) instead of waiting without bound.
  // Keep it <= max_connection_age_grace_ms so that a connection's GOAWAY never cuts an admitted
  // call. 0: no cap (the client's deadline only).
  uint32_t max_request_ms = 120000;
  // The HTTP data plane (server/http_rerank_service.h: Cohere, Jina and TEI rerank routes) on the
  // same engine. "" turns it off.
  std::string http_listen = "0.0.0.0:8080";
  // false: any `model` name is served by the loaded model. true: only its name and the aliases
  // below; other names get 404.
  bool http_strict_model = false;
  std::string http_model_aliases;  // comma-separated names accepted with http_strict_model
  // A file of "<token> <client_id>" lines ('#' comments): when set, every HTTP rerank call needs
  // `Authorization: Bearer <token>` and is identified as that client. "" = no authentication.
  // A file, not a key, so tokens never appear in config dumps or logs.
  std::string http_bearer_tokens_file;
  uint32_t http_max_body_bytes = 16u << 20;  // larger bodies get 413; 1 KiB..1 GiB
  uint32_t http_io_threads = 2;              // threads parsing requests; 1..64
  uint32_t http_max_connections = 1024;      // open connections; beyond it 503
  uint32_t http_request_timeout_ms = 30000;  // from a request's first byte to its answer; 408
};

// Upper bound for server.max_message_bytes (gRPC takes an int; beyond it the value would wrap).
inline constexpr uint32_t kMaxMessageBytes = 1u << 30;

struct ModelConfig {
  std::string dir = "models/demo-minilm-l6";  // model.pt + vocab.txt + model.yaml
  std::string precision = "bf16";             // fp32 | bf16 (bf16: oneDNN AVX-512 BF16 GEMMs)
  uint32_t max_length = 512;                  // tokens per pair; capped by model.yaml's max_length
  std::string score_activation = "raw";       // raw | sigmoid (default when a request says nothing)
  bool warmup = true;                         // run forwards before reporting ready
  // How often model.dir's files (model.pt, vocab.txt, model.yaml: mtime + size) are checked;
  // a change hot-reloads the model (like POST /model/reload). 0: never (reload on demand only).
  uint32_t watch_interval_ms = 0;
};

struct ExecutionConfig {
  uint32_t workers = 1;                // model replicas, one thread each
  uint32_t intra_op_threads = 2;       // torch threads per worker; workers*this <= cores
  uint32_t max_batch_pairs = 64;       // rows per forward
  uint32_t max_batch_tokens = 8192;    // padded tokens (rows * longest row) per forward
  uint32_t max_queue_delay_us = 1000;  // wait this long for more requests to join a batch
  uint32_t max_queue_pairs = 4096;     // bounded queue; beyond it RESOURCE_EXHAUSTED
  // Fair scheduling between clients (server/batcher.h): per-client queues served by deficit
  // round robin in tokens.
  uint32_t max_client_queue_pairs = 1024;  // pairs one client may have queued; 0 = no cap
  uint32_t fair_quantum_tokens = 512;      // tokens a weight-1 client takes per turn
  // "client=weight,client=weight" (weights >= 1; unlisted clients weigh 1), e.g.
  // "search-api=4,batch-jobs=1". See ParseClientWeights.
  std::string client_weights;
};

struct RerankConfig {
  uint32_t default_top_n = 5;     // used when a request's top_n is 0
  uint32_t max_documents = 1000;  // per request
  uint32_t max_query_bytes = 8192;
  uint32_t max_document_bytes = 65536;  // per document text
  uint32_t max_batch_requests = 64;     // sub-requests per RerankBatch
  // Query + document text per RPC (bounds the tokenizing done on a gRPC thread); 0 = no limit.
  uint32_t max_request_bytes = 8u << 20;
  std::string long_document_mode = "truncate";  // truncate | chunk_max
  uint32_t max_chunks_per_doc = 4;     // chunk_max: score = max over at most this many windows
  uint32_t chunk_overlap_tokens = 32;  // chunk_max: tokens shared by consecutive windows
  uint32_t target_latency_ms = 50;     // /health target_latency_met_rate_percent
  // client_id, x-client-id metadata and request_id: at most this many bytes of printable ASCII,
  // checked before rate limiting, audit and cache (INVALID_ARGUMENT naming the field). 1..4096.
  uint32_t max_id_bytes = 128;
};

// The rate limit's rate and on/off switch are flags (rate_limit.enabled, rate_limit.per_minute);
// these are deployment decisions.
struct RateLimitConfig {
  // Whose bucket a request takes: client_id (the id the request carries, else the x-client-id
  // metadata, else the peer IP; trusted as sent: ids are not authenticated unless mTLS or an
  // authenticating gateway sits in front) | peer (the peer IP; the request's id is ignored).
  std::string identity = "client_id";
  // Also limit query-document pairs per client per minute (a RerankBatch costs all its pairs);
  // 0: no pair limit. Applies while the rate_limit.enabled flag is on.
  uint32_t pairs_per_minute = 0;
};

struct CacheConfig {
  // The entry bound is a flag (flags cache.max_entries; seeded by flags.initial), not config.
  uint64_t max_bytes = 64ull << 20;  // LRU bound on key bytes + overhead
  // What cache.traffic_percent is a percentage of: query (of traffic, sticky per query text: a
  // repeated query is consistently cached or not) | client (of client keys, sticky per client).
  std::string rollout_key = "query";
};

struct AuditConfig {
  std::string path = "data/reranker_audit.jsonl";
  uint32_t queue_capacity = 10000;  // events buffered; beyond it events are dropped and counted
  uint64_t queue_max_bytes = 64ull << 20;  // and at most this many bytes of them (>= 64 KiB)
  uint32_t max_file_mb = 100;              // rotate above this size
  bool compress_rotated = true;            // gzip rotated files (<name>.jsonl.gz)
  uint32_t retention_days = 90;            // delete rotated files older than this (0: keep)
  // Delete the oldest rotated files while the active and rotated files together exceed this
  // (0: no cap). >= audit.max_file_mb.
  uint32_t max_total_mb = 10240;
  bool include_query_text = false;  // otherwise only a query hash is logged
};

struct FlagsConfig {
  std::string path = "data/flags.yaml";  // source of truth once it exists
  uint32_t poll_interval_ms = 1000;      // how often the file is checked for external edits
  // Written to `path` when it does not exist. In YAML a flags document with the flags file's
  // keys and rules (common/flags_codec.h), e.g. `initial: {cache: {enabled: true}}`.
  FeatureFlags initial;
};

struct AdminConfig {
  std::string http_listen = "127.0.0.1:8000";   // /health /live /ready /metrics /flags
  std::string grpc_listen = "127.0.0.1:50052";  // rerank.admin.v1.Admin
  std::string token;                            // required for state-changing calls (>= 16 bytes)
  // With no token configured, one is generated at every startup and written here (mode 0600),
  // so local operators (rerankctl, deploy scripts) can stage. "": admin.token next to the flags
  // file (AdminTokenFile()).
  std::string token_file;
  uint32_t stats_window_seconds = 300;  // sliding window for /health percentiles
  // rerank_client_requests_total keeps a series for at most this many distinct clients (the
  // first seen); later ones count under client="_other". Bounds the cardinality that callers
  // control. 0 turns the per-client series off.
  uint32_t metrics_max_clients = 32;
};

// A configured admin token shorter than this is rejected at startup.
inline constexpr size_t kMinAdminTokenBytes = 16;

struct LoggingConfig {
  std::string level = "info";  // trace | debug | info | warn | error
};

// Fault injection for tests and rollout drills only (e.g. proving that `rerankctl rollout` rolls
// back on a latency regression). Off by default; never set it in production.
struct TestingConfig {
  // Added to every model forward (a slower model, on the batcher worker; request handlers never
  // wait). 0: off. At most kMaxInjectLatencyMs.
  uint32_t inject_latency_ms = 0;
  // Empty: the delay applies at every stage. Otherwise a rollout stage (feature-flags, cache-10,
  // cache-50, cache-100, full): the delay applies only while the flags' stage is that one or a
  // later one in rollout order (never at rollback, disabled or custom). Read per forward, so a
  // stage change turns it on or off at once.
  std::string inject_latency_from_stage;
};

inline constexpr uint32_t kMaxInjectLatencyMs = 60000;

struct Config {
  ServerConfig server;
  ModelConfig model;
  ExecutionConfig execution;
  RerankConfig rerank;
  RateLimitConfig rate_limit;
  CacheConfig cache;
  AuditConfig audit;
  FlagsConfig flags;
  AdminConfig admin;
  LoggingConfig logging;
  TestingConfig testing;
  // Not a YAML key: the flag environment variables that were set (ENABLE_RERANKER, ...,
  // RERANKER_STAGE), filled by ApplyEnvOverrides. They are in flags.initial too, and FlagStore
  // also applies them over an existing flags file at startup (writing and auditing the change).
  std::vector<FlagOverride> flag_env_overrides;
};

// Reads an environment variable; injectable for tests. Returns nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup ProcessEnv();

// Parses YAML text on top of the defaults. Unknown keys and wrong types are errors naming the key.
absl::StatusOr<Config> ParseConfigYaml(const std::string& yaml_text);
// Every key ParseConfigYaml accepts ("server.listen", ..., "flags.initial.cache.enabled"), each
// with its value in `config` as YAML-compatible text (strings JSON-quoted). Keeps the documented
// example honest (tests compare its key set and values with FlattenConfig(Config{})).
std::map<std::string, std::string> FlattenConfig(const Config& config);
// Reads `path` (empty: defaults only), applies env overrides, validates.
absl::StatusOr<Config> LoadConfig(const std::string& path, const EnvLookup& env);
// Applies the documented environment variables (see deploy/rerankd.example.yaml).
absl::Status ApplyEnvOverrides(const EnvLookup& env, Config* config);
// Where a generated admin token is written: admin.token_file, else "admin.token" in the
// directory of flags.path.
std::string AdminTokenFile(const Config& config);
// Parses execution.client_weights ("a=4,b=2"; whitespace around items ignored; "" = none).
// INVALID_ARGUMENT naming execution.client_weights for a malformed item, an empty client, a
// weight outside 1..1000 or a client listed twice.
absl::StatusOr<std::map<std::string, uint32_t>> ParseClientWeights(const std::string& text);
// Parses server.http_model_aliases ("a, b"; empty items ignored).
std::vector<std::string> ParseModelAliases(const std::string& text);
// Parses the content of server.http_bearer_tokens_file: token -> client id, one "<token>
// <client_id>" per line, blank lines and '#' comments ignored. INVALID_ARGUMENT naming the key and
// the line (never the token) for a malformed line, a token under 16 bytes, a client id that is not
// 1..128 bytes of printable ASCII, or a token listed twice.
absl::StatusOr<std::map<std::string, std::string>> ParseBearerTokens(const std::string& text);
// Reads and parses server.http_bearer_tokens_file ("" = no tokens: an empty map). UNAVAILABLE
// naming the key when it cannot be read.
absl::StatusOr<std::map<std::string, std::string>> LoadBearerTokens(const std::string& path);
// Checks ranges and enums; `cores` is the machine's core count for the threads check (0: skip).
absl::Status ValidateConfig(const Config& config, unsigned cores);

}  // namespace rerank

#endif  // RERANK_COMMON_CONFIG_H_
