// rerankctl: the operator's command line for a running rerankd (see docs/OPERATIONS.md).
//
//   rerankctl [--admin URL] [--target HOST:PORT] [--token-file PATH | --token T] [--config PATH]
//             [--timeout S] <command> ...
//
// Commands talk to the admin HTTP plane (stage, reload, status, monitor, check), parsing its
// answers into the admin contract's messages (proto/rerank/admin/v1/admin.proto), or to the
// data-plane gRPC Reranker (rerank). Exit status: 0 success, 1 the operation failed (server error,
// unreachable, a failed check), 2 usage error.
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/proto_json.h"
#include "nlohmann/json.hpp"
#include "rerank/admin/v1/admin.pb.h"
#include "rerank/v1/reranker.grpc.pb.h"
#include "tools/rerankctl_args.h"
#include "tools/rerankctl_check.h"
#include "tools/rerankctl_eval.h"
#include "tools/rerankctl_format.h"
#include "tools/rerankctl_http.h"
#include "tools/rerankctl_rollout.h"
#include "tools/rerankctl_token.h"

namespace rerank::ctl {
namespace {

using nlohmann::json;

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;

constexpr char kDefaultAdmin[] = "http://127.0.0.1:8000";
constexpr char kDefaultTarget[] = "127.0.0.1:50051";

constexpr char kMainUsage[] =
    "Usage: rerankctl [global flags] <command> [flags] [args]\n"
    "\n"
    "Operate a running rerankd through its admin HTTP plane and data-plane gRPC API.\n"
    "\n"
    "Commands:\n"
    "  stage <name>   switch the rollout stage (feature-flags, cache-10, cache-50, cache-100,\n"
    "                 full, rollback, disabled) and print the effective flags\n"
    "  reload         re-read the flags file now (after editing it by hand)\n"
    "  status         one-screen summary of /health and /flags (--json: the contract's JSON)\n"
    "  monitor [S]    a live line of key stats every S seconds (default 5) until Ctrl-C\n"
    "  check          pre-deployment validation: files, config, health, reranker, stats\n"
    "  rerank         rerank documents for a query over gRPC and print the ranking\n"
    "  rollout        guarded progressive rollout: advance stage by stage while gates hold,\n"
    "                 roll back when one fails for a whole window; resumable\n"
    "  eval           relevance on your data: rerank a TREC run of a BEIR dataset and compare\n"
    "                 nDCG@10, MRR@10 and Recall@100 before and after\n"
    "\n"
    "Global flags (also accepted after the command):\n"
    "  --admin URL        admin HTTP base URL (env RERANKER_ADMIN_URL; default "
    "http://127.0.0.1:8000)\n"
    "  --target H:P       data-plane gRPC address (env RERANKER_GRPC_TARGET; default "
    "127.0.0.1:50051)\n"
    "  --token-file PATH  read the admin token (for stage, reload) from PATH\n"
    "  --token TOKEN      the admin token itself (visible in `ps`: prefer --token-file)\n"
    "  --config PATH      rerankd's YAML config: where to find its token (and what check checks)\n"
    "  --timeout SECONDS  per-call timeout (default 10)\n"
    "  --help             help; `rerankctl <command> --help` for a command's flags\n"
    "\n"
    "Admin token, first found: --token-file, --token, env RERANKER_ADMIN_TOKEN, admin.token in\n"
    "--config, env RERANKER_ADMIN_TOKEN_FILE, then the file a rerankd with no admin.token writes\n"
    "its generated token to: admin.token_file, default admin.token next to flags.path (from\n"
    "--config and the RERANKER_* environment, as rerankd reads them; data/admin.token by default,\n"
    "relative to the current directory as rerankd's paths are to its own). The token is sent only\n"
    "with state-changing calls and never printed.\n"
    "\n"
    "Exit status: 0 success, 1 the operation or a check failed, 2 usage error.\n";

constexpr char kStageUsage[] =
    "Usage: rerankctl stage <name> [--actor NAME]\n"
    "\n"
    "POSTs {\"stage\": name, \"actor\": NAME} to /flags (needs the admin token), then prints\n"
    "`stage: OLD -> NEW` and every effective flag, changed ones with their old value.\n"
    "Stages, in rollout order: feature-flags, cache-10, cache-50, cache-100, full; then rollback\n"
    "(plain reranker, optional features off) and disabled (reranker off: pass-through).\n"
    "The server validates the name; an unknown one fails with the list of valid stages.\n"
    "\n"
    "  --actor NAME   recorded as updated_by and in the audit log (default: $USER, else "
    "rerankctl)\n";

constexpr char kReloadUsage[] =
    "Usage: rerankctl reload [--actor NAME]\n"
    "\n"
    "POSTs {\"actor\": NAME} to /reload (needs the admin token): rerankd re-reads its flags file\n"
    "now instead of at its next poll, and records a config_reload audit event. Prints whether the\n"
    "file had changed and the stage in force; exit 1 when the file does not load (its error is\n"
    "printed; the last good flags stay in force).\n"
    "\n"
    "  --actor NAME   recorded in the audit log (default: $USER, else rerankctl)\n";

constexpr char kStatusUsage[] =
    "Usage: rerankctl status [--json]\n"
    "\n"
    "GET /health and GET /flags; prints readiness, model, stage, reranker on/off, cache and the\n"
    "key stats. Exit 1 when the server is unreachable or not ready.\n"
    "\n"
    "  --json   print {\"health\": <GET /health>, \"flags\": <GET /flags>} instead, each as the\n"
    "           contract's message in protobuf's JSON mapping (flags null when GET /flags "
    "failed)\n";

constexpr char kMonitorUsage[] =
    "Usage: rerankctl monitor [SECONDS] [--count K]\n"
    "\n"
    "Prints a header, then one line of key stats from GET /health every SECONDS (default 5,\n"
    "fractions allowed): time, stage, total reranks, req/s since the previous line, avg/p95/p99\n"
    "latency (ms), cache hit %, error %, target latency met % (windowed stats). A failed poll\n"
    "prints an ERROR line and monitoring goes on. Stops on Ctrl-C (exit 0).\n"
    "\n"
    "  --count K   stop after K lines\n";

constexpr char kCheckUsage[] =
    "Usage: rerankctl check [--config PATH]\n"
    "\n"
    "Pre-deployment validation, one ✅/❌ line per check; exit 1 if any fails:\n"
    "  config file present (with --config); model files (model.pt, vocab.txt, model.yaml in\n"
    "  model.dir); flags file and audit log directories writable; config valid (the file plus\n"
    "  RERANKER_* environment, validated as rerankd does); health OK (GET /health 200, status\n"
    "  healthy); reranker enabled; stats available (every .reranker.stats field).\n"
    "Relative paths resolve against the current directory: run it where rerankd runs.\n"
    "\n"
    "  --config PATH   rerankd's YAML config (default: built-in defaults + environment)\n";

constexpr char kRerankUsage[] =
    "Usage: rerankctl rerank --query Q (--doc TEXT ... | --docs-file FILE) [--top-n N] [--json]\n"
    "\n"
    "Calls rerank.v1.Reranker/Rerank on --target and prints rank, score, index, id and a text\n"
    "snippet, best first.\n"
    "\n"
    "  --query Q          the query (required)\n"
    "  --doc TEXT         a candidate document; repeat for more\n"
    "  --docs-file FILE   one document per line (empty lines skipped); a line \"ID<TAB>TEXT\"\n"
    "                     sets the document id; may be combined with --doc (those come first)\n"
    "  --top-n N          results to return (default 0: the server's default, 5)\n"
    "  --activation A     raw | sigmoid (default: the server's model.score_activation)\n"
    "  --client-id ID     client id for rate limiting and cache bucketing (default rerankctl)\n"
    "  --json             print the response as JSON\n";

constexpr char kRolloutUsage[] =
    "Usage: rerankctl rollout --plan STAGE,... --gate METRIC<OP>VALUE,... [--hold D]\n"
    "                         [--interval D] [--window D] [--state FILE] [--reset]\n"
    "                         [--prometheus URL [--prometheus-selector LABELS]] [--actor NAME]\n"
    "\n"
    "Moves rerankd through the plan's stages, one per --hold, while every gate holds; rolls back\n"
    "to the last good stage (the one it advanced from; before the first advance the 'rollback'\n"
    "stage) and stops when a gate fails in every sample of a whole --window. Every --interval it\n"
    "reads the figures (GET /health, or Prometheus with --prometheus) and prints one line: hold,\n"
    "advance, rollback, complete or stop, with the figures it decided on. Stage changes go\n"
    "through POST /flags with the actor and that line as the reason, so the server's audit log\n"
    "records each decision (flag_change .reason). Progress is saved in --state after every\n"
    "decision; run the same command again after an interruption and it resumes where it was\n"
    "(time in the current stage keeps counting; the samples of the window start afresh).\n"
    "\n"
    "  --plan STAGES        comma-separated rollout stages in rollout order, e.g.\n"
    "                       feature-flags,cache-10,cache-50,cache-100,full (required)\n"
    "  --gate GATES         comma-separated METRIC OP VALUE, OP one of < <= > >=; repeatable\n"
    "                       (required). METRIC: p95_latency_ms, p99_latency_ms, avg_latency_ms,\n"
    "                       error_rate_percent, cache_hit_rate_percent (n/a while the cache is\n"
    "                       off), target_latency_met_rate_percent, rate_limited_percent\n"
    "                       (--prometheus only)\n"
    "  --hold D             time at each stage before advancing (default 24h); D like 24h, 30m,\n"
    "                       10s, 0.5s, 1h30m\n"
    "  --interval D         time between samples (default 1m; at most --hold)\n"
    "  --window D           a gate must fail for this long, every sample, to roll back; the\n"
    "                       gates must hold this long before an advance (default 5m)\n"
    "  --state FILE         progress file (default rollout-state.json beside the flags file)\n"
    "  --reset              discard a saved rollout and start the plan from its first stage\n"
    "  --prometheus URL     read the figures from Prometheus's recording rules\n"
    "                       (deploy/prometheus/rules) instead of /health\n"
    "  --prometheus-selector LABELS  label matchers for those series, e.g. 'job=\"rerankd\"'\n"
    "  --actor NAME         recorded as updated_by and in the audit log (default\n"
    "                       rerankctl-rollout)\n"
    "\n"
    "/health figures are over the server's admin.stats_window_seconds (default 300 s), so keep\n"
    "--hold well above it. A sample with no data (server unreachable or not ready, no requests\n"
    "in the stats window) neither passes nor fails: it restarts both windows.\n"
    "Exit status: 0 the plan completed; 1 rolled back, stopped (the stage was changed by hand,\n"
    "Ctrl-C) or a call failed; 2 usage error.\n";

const std::map<std::string, std::vector<FlagSpec>>& CommandFlags() {
  static const auto* const flags = new std::map<std::string, std::vector<FlagSpec>>{
      {"stage", {{"actor", FlagKind::kValue}}},
      {"reload", {{"actor", FlagKind::kValue}}},
      {"status", {{"json", FlagKind::kBool}}},
      {"monitor", {{"count", FlagKind::kValue}}},
      {"check", {}},  // --config is global
      {"rerank",
       {{"query", FlagKind::kValue},
        {"doc", FlagKind::kRepeated},
        {"docs-file", FlagKind::kValue},
        {"top-n", FlagKind::kValue},
        {"activation", FlagKind::kValue},
        {"client-id", FlagKind::kValue},
        {"json", FlagKind::kBool}}},
      {"rollout",
       {{"plan", FlagKind::kValue},
        {"gate", FlagKind::kRepeated},
        {"hold", FlagKind::kValue},
        {"interval", FlagKind::kValue},
        {"window", FlagKind::kValue},
        {"state", FlagKind::kValue},
        {"reset", FlagKind::kBool},
        {"prometheus", FlagKind::kValue},
        {"prometheus-selector", FlagKind::kValue},
        {"actor", FlagKind::kValue}}},
      {"eval", EvalFlags()},
  };
  return *flags;
}

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

int UsageError(const std::string& message, const char* usage) {
  std::cerr << "rerankctl: " << message << "\n\n" << usage;
  return kUsage;
}

int Fail(const std::string& message) {
  std::cerr << "rerankctl: " << message << "\n";
  return kFailed;
}

// Settings shared by every command, from flags then environment then defaults.
struct Globals {
  std::string admin;
  std::string target;
  TokenSources token;  // resolved only by the commands that send it (ResolveAdminToken)
  std::string config_path;
  absl::Duration timeout;
};

absl::StatusOr<Globals> ReadGlobals(const ParsedArgs& args) {
  Globals g;
  g.admin = args.Get("admin", EnvOr("RERANKER_ADMIN_URL", kDefaultAdmin));
  g.target = args.Get("target", EnvOr("RERANKER_GRPC_TARGET", kDefaultTarget));
  g.config_path = args.Get("config");
  if (args.Has("config") && g.config_path.empty()) {
    return absl::InvalidArgumentError("--config: must not be empty");
  }
  if (args.Has("token-file")) g.token.token_file = args.Get("token-file");
  if (args.Has("token")) g.token.token = args.Get("token");
  g.token.config_path = g.config_path;
  g.token.env = ProcessEnv();
  double seconds = 10;
  if (args.Has("timeout") && (!absl::SimpleAtod(args.Get("timeout"), &seconds) || !(seconds > 0) ||
                              !std::isfinite(seconds))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--timeout: must be a positive number of seconds, got '", args.Get("timeout"), "'"));
  }
  g.timeout = absl::Seconds(seconds);
  return g;
}

absl::StatusOr<std::unique_ptr<AdminHttpClient>> MakeClient(const Globals& g,
                                                            const std::string& token = "") {
  AdminHttpClient::Options options;
  options.base_url = g.admin;
  options.token = token;
  options.timeout = g.timeout;
  absl::StatusOr<std::unique_ptr<AdminHttpClient>> client = AdminHttpClient::Create(options);
  if (!client.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--admin: ", client.status().message()));
  }
  return client;
}

// GET (body == nullptr) or POST `path` and parse the answer into `out` when its status is one of
// `ok_codes`; any other status is an error explaining the server's answer (DescribeHttpError).
// Returns the HTTP status.
absl::StatusOr<long> Call(AdminHttpClient& client, const std::string& method,
                          const std::string& path, const std::string* body,
                          std::initializer_list<long> ok_codes, google::protobuf::Message* out) {
  absl::StatusOr<HttpResponse> r = body == nullptr ? client.Get(path) : client.Post(path, *body);
  if (!r.ok()) return r.status();
  if (std::find(ok_codes.begin(), ok_codes.end(), r->status) == ok_codes.end()) {
    return absl::FailedPreconditionError(DescribeHttpError(r->status, r->body));
  }
  if (absl::Status s = ParseAnswer(r->body, out, "answer"); !s.ok()) {
    return absl::DataLossError(absl::StrCat(method, " ", client.base_url(), path, ": HTTP ",
                                            r->status,
                                            " with a body that does not match the admin contract (",
                                            s.message(), "): ", Snippet(r->body, 120)));
  }
  return r->status;
}

std::string Dump(const json& j) { return j.dump(2, ' ', false, json::error_handler_t::replace); }

// The admin token for a state-changing call; on failure prints the error and sets *rc.
std::optional<AdminToken> TokenOrFail(const Globals& g, const char* usage, int* rc) {
  absl::StatusOr<AdminToken> token = ResolveAdminToken(g.token);
  if (token.ok()) return *std::move(token);
  *rc = absl::IsInvalidArgument(token.status())
            ? UsageError(std::string(token.status().message()), usage)
            : Fail(std::string(token.status().message()));
  return std::nullopt;
}

// A refused state-changing call: the server's answer, and for 401 which token was sent.
std::string Refused(const absl::Status& s, const AdminToken& token) {
  std::string out(s.message());
  if (absl::StartsWith(out, "HTTP 401")) absl::StrAppend(&out, "\nadmin token: ", token.source);
  return out;
}

// ---- stage ----

int Stage(const ParsedArgs& args, const Globals& g) {
  if (args.positionals.size() != 1) {
    return UsageError("stage: expected exactly one stage name", kStageUsage);
  }
  const std::string stage = args.positionals[0];
  const std::string actor = args.Get("actor", EnvOr("USER", "rerankctl"));
  int rc = kOk;
  std::optional<AdminToken> token = TokenOrFail(g, kStageUsage, &rc);
  if (!token.has_value()) return rc;
  absl::StatusOr<std::unique_ptr<AdminHttpClient>> client = MakeClient(g, token->token);
  if (!client.ok()) return UsageError(std::string(client.status().message()), kStageUsage);

  admin::v1::FlagsView before;
  if (absl::StatusOr<long> s = Call(**client, "GET", "/flags", nullptr, {200}, &before); !s.ok()) {
    return Fail(absl::IsFailedPrecondition(s.status())
                    ? absl::StrCat("GET /flags failed: ", s.status().message())
                    : std::string(s.status().message()));
  }
  admin::v1::UpdateFlagsRequest request;
  request.set_stage(stage);
  request.set_actor(actor);
  const std::string body = MessageToJson(request);
  admin::v1::FlagsView after;
  if (absl::StatusOr<long> s = Call(**client, "POST", "/flags", &body, {200}, &after); !s.ok()) {
    return Fail(
        absl::IsFailedPrecondition(s.status())
            ? absl::StrCat("stage '", stage, "' was not applied: ", Refused(s.status(), *token))
            : std::string(s.status().message()));
  }
  std::cout << FormatStageChange(before, after) << std::flush;
  return kOk;
}

// ---- reload ----

int Reload(const ParsedArgs& args, const Globals& g) {
  if (!args.positionals.empty()) return UsageError("reload: takes no arguments", kReloadUsage);
  int rc = kOk;
  std::optional<AdminToken> token = TokenOrFail(g, kReloadUsage, &rc);
  if (!token.has_value()) return rc;
  absl::StatusOr<std::unique_ptr<AdminHttpClient>> client = MakeClient(g, token->token);
  if (!client.ok()) return UsageError(std::string(client.status().message()), kReloadUsage);
  admin::v1::ReloadRequest request;
  request.set_actor(args.Get("actor", EnvOr("USER", "rerankctl")));
  const std::string body = MessageToJson(request);
  admin::v1::ReloadResponse reload;
  if (absl::StatusOr<long> s = Call(**client, "POST", "/reload", &body, {200}, &reload); !s.ok()) {
    return Fail(absl::IsFailedPrecondition(s.status())
                    ? absl::StrCat("reload failed: ", Refused(s.status(), *token))
                    : std::string(s.status().message()));
  }
  std::cout << FormatReload(reload) << std::flush;
  return reload.error().empty() ? kOk : kFailed;
}

// ---- status ----

int Status(const ParsedArgs& args, const Globals& g) {
  if (!args.positionals.empty()) return UsageError("status: takes no arguments", kStatusUsage);
  absl::StatusOr<std::unique_ptr<AdminHttpClient>> client = MakeClient(g);
  if (!client.ok()) return UsageError(std::string(client.status().message()), kStatusUsage);
  admin::v1::Health health;
  // 503 is /health's answer for a server that is not ready: still a Health report.
  absl::StatusOr<long> health_status =
      Call(**client, "GET", "/health", nullptr, {200, 503}, &health);
  if (!health_status.ok()) {
    return Fail(absl::IsFailedPrecondition(health_status.status())
                    ? absl::StrCat("GET /health failed: ", health_status.status().message())
                    : std::string(health_status.status().message()));
  }
  admin::v1::FlagsView flags;
  absl::StatusOr<long> flags_status = Call(**client, "GET", "/flags", nullptr, {200}, &flags);
  const admin::v1::FlagsView* flags_or_null = flags_status.ok() ? &flags : nullptr;
  if (args.bools.count("json")) {
    json doc = {{"health", json::parse(MessageToJson(health))},
                {"flags", flags_or_null != nullptr ? json::parse(MessageToJson(flags)) : json()}};
    std::cout << Dump(doc) << "\n";
  } else {
    std::cout << FormatStatus(health, flags_or_null, (*client)->base_url());
  }
  if (!flags_status.ok()) {
    std::cerr << "rerankctl: warning: GET /flags: " << flags_status.status().message() << "\n";
  }
  std::cout << std::flush;
  return *health_status == 200 && health.ready() ? kOk : kFailed;
}

// ---- monitor ----

// Waits up to `d` for SIGINT/SIGTERM (blocked by Monitor, so they stay pending until taken here).
// Returns true when one arrived: time to stop.
bool WaitForStopSignal(absl::Duration d) {
  if (d <= absl::ZeroDuration()) d = absl::ZeroDuration();
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  const absl::Time deadline = absl::Now() + d;
  while (true) {
    const timespec ts = absl::ToTimespec(std::max(deadline - absl::Now(), absl::ZeroDuration()));
    const int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig > 0) return true;
    if (errno == EAGAIN) return false;  // timed out
    // EINTR (another signal): keep waiting for the rest of the interval.
  }
}

int Monitor(const ParsedArgs& args, const Globals& g, Clock* clock) {
  if (args.positionals.size() > 1)
    return UsageError("monitor: at most one argument", kMonitorUsage);
  double seconds = 5;
  if (!args.positionals.empty() && (!absl::SimpleAtod(args.positionals[0], &seconds) ||
                                    !(seconds > 0) || !std::isfinite(seconds))) {
    return UsageError(
        absl::StrCat("monitor: SECONDS must be a positive number, got '", args.positionals[0], "'"),
        kMonitorUsage);
  }
  int64_t count = -1;
  if (args.Has("count") && (!absl::SimpleAtoi(args.Get("count"), &count) || count < 1)) {
    return UsageError(
        absl::StrCat("--count: must be a positive integer, got '", args.Get("count"), "'"),
        kMonitorUsage);
  }
  // Block SIGINT/SIGTERM before the HTTP client can start a thread (libcurl's threaded resolver),
  // so they stay pending until WaitForStopSignal takes them: Ctrl-C ends the loop cleanly.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  absl::StatusOr<std::unique_ptr<AdminHttpClient>> client = MakeClient(g);
  if (!client.ok()) return UsageError(std::string(client.status().message()), kMonitorUsage);
  const absl::Duration interval = absl::Seconds(seconds);
  const absl::TimeZone tz = absl::LocalTimeZone();
  std::cout << "monitoring " << (*client)->base_url() << " every " << seconds
            << " s (Ctrl-C to stop); latency/cache/error/target columns are over the server's "
               "stats window\n"
            << MonitorHeader() << std::endl;
  std::optional<MonitorSample> previous;
  for (int64_t lines = 0; count < 0 || lines < count; ++lines) {
    const absl::Time started = clock->Now();
    admin::v1::Health health;
    absl::StatusOr<long> status = Call(**client, "GET", "/health", nullptr, {200, 503}, &health);
    const absl::Time now = clock->Now();
    if (!status.ok()) {
      std::string error(status.status().message());
      if (absl::IsFailedPrecondition(status.status())) error = "GET /health: " + error;
      std::cout << FormatMonitorError(now, tz, Snippet(error, 300)) << std::endl;
    } else {
      std::cout << FormatMonitorLine(health, now, previous, tz) << std::endl;
      previous = SampleOf(health, now);
    }
    if (count >= 0 && lines + 1 >= count) break;
    if (WaitForStopSignal(interval - (clock->Now() - started))) break;
  }
  return kOk;
}

// ---- check ----

int Check(const ParsedArgs& args, const Globals& g) {
  if (!args.positionals.empty()) return UsageError("check: takes no arguments", kCheckUsage);
  absl::StatusOr<std::unique_ptr<AdminHttpClient>> client = MakeClient(g);
  if (!client.ok()) return UsageError(std::string(client.status().message()), kCheckUsage);
  CheckOptions options;
  options.config_path = g.config_path;
  options.env = ProcessEnv();
  options.cores = std::thread::hardware_concurrency();
  std::cout << "pre-deployment checks (admin " << (*client)->base_url() << ", config "
            << (options.config_path.empty() ? "built-in defaults + environment"
                                            : options.config_path)
            << ")\n";
  std::vector<CheckResult> results = RunPreDeploymentChecks(
      options, [&client](std::string_view path) { return (*client)->Get(path); });
  std::cout << FormatCheckResults(results) << std::flush;
  return AllPassed(results) ? kOk : kFailed;
}

// ---- rerank ----

const char* GrpcCodeName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < static_cast<int>(std::size(kNames)) ? kNames[i] : "UNKNOWN_CODE";
}

struct Doc {
  std::string id;
  std::string text;
};

absl::StatusOr<std::vector<Doc>> ReadDocs(const ParsedArgs& args) {
  std::vector<Doc> docs;
  for (const std::string& text : args.GetAll("doc")) docs.push_back({"", text});
  if (args.Has("docs-file")) {
    const std::string path = args.Get("docs-file");
    std::ifstream in(path);
    if (!in) return absl::NotFoundError(absl::StrCat("--docs-file: cannot read '", path, "'"));
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      if (size_t tab = line.find('\t'); tab != std::string::npos) {
        docs.push_back({line.substr(0, tab), line.substr(tab + 1)});
      } else {
        docs.push_back({"", line});
      }
    }
  }
  return docs;
}

int Rerank(const ParsedArgs& args, const Globals& g) {
  if (!args.positionals.empty()) {
    return UsageError(absl::StrCat("rerank: unexpected argument '", args.positionals[0],
                                   "' (documents go in --doc)"),
                      kRerankUsage);
  }
  if (!args.Has("query")) return UsageError("rerank: --query is required", kRerankUsage);
  absl::StatusOr<std::vector<Doc>> docs = ReadDocs(args);
  if (!docs.ok()) return UsageError(std::string(docs.status().message()), kRerankUsage);
  if (docs->empty())
    return UsageError("rerank: give at least one --doc or a --docs-file", kRerankUsage);
  uint32_t top_n = 0;
  if (args.Has("top-n") && !absl::SimpleAtoi(args.Get("top-n"), &top_n)) {
    return UsageError(
        absl::StrCat("--top-n: must be a non-negative integer, got '", args.Get("top-n"), "'"),
        kRerankUsage);
  }
  rerank::v1::RerankRequest request;
  request.set_query(args.Get("query"));
  request.set_top_n(top_n);
  request.set_client_id(args.Get("client-id", "rerankctl"));
  const std::string activation = args.Get("activation");
  if (activation == "raw") {
    request.set_score_activation(rerank::v1::SCORE_ACTIVATION_RAW);
  } else if (activation == "sigmoid") {
    request.set_score_activation(rerank::v1::SCORE_ACTIVATION_SIGMOID);
  } else if (!activation.empty()) {
    return UsageError(absl::StrCat("--activation: must be raw or sigmoid, got '", activation, "'"),
                      kRerankUsage);
  }
  for (const Doc& d : *docs) {
    rerank::v1::Document* doc = request.add_documents();
    doc->set_id(d.id);
    doc->set_text(d.text);
  }

  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(g.target, grpc::InsecureChannelCredentials());
  std::unique_ptr<rerank::v1::Reranker::Stub> stub = rerank::v1::Reranker::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + g.timeout));
  rerank::v1::RerankResponse response;
  const grpc::Status status = stub->Rerank(&context, request, &response);
  if (!status.ok()) {
    return Fail(absl::StrCat("Rerank on ", g.target, " failed: ", GrpcCodeName(status.error_code()),
                             ": ", status.error_message()));
  }
  // Text comes from the request (the response carries it only with return_documents).
  auto text_of = [&docs](uint32_t index) -> std::string {
    return index < docs->size() ? (*docs)[index].text : std::string();
  };
  if (args.bools.count("json")) {
    json results = json::array();
    for (int i = 0; i < response.results_size(); ++i) {
      const rerank::v1::RerankResult& r = response.results(i);
      results.push_back({{"rank", i + 1},
                         {"score", r.score()},
                         {"index", r.index()},
                         {"id", r.id()},
                         {"text", text_of(r.index())}});
    }
    std::cout << Dump(json{{"model_name", response.model_name()},
                           {"model_version", response.model_version()},
                           {"reranked", response.reranked()},
                           {"request_id", response.request_id()},
                           {"cache_hits", response.cache_hits()},
                           {"results", results}})
              << std::endl;
    return kOk;
  }
  std::cout << "model " << response.model_name() << " (version " << response.model_version()
            << "), reranked: "
            << (response.reranked() ? "yes" : "NO (reranker disabled: original order)")
            << ", cache hits: " << response.cache_hits()
            << ", request_id: " << response.request_id() << "\n";
  std::cout << absl::StrFormat("%4s  %10s  %5s  %-12s  %s\n", "RANK", "SCORE", "INDEX", "ID",
                               "TEXT");
  for (int i = 0; i < response.results_size(); ++i) {
    const rerank::v1::RerankResult& r = response.results(i);
    std::cout << absl::StrFormat("%4d  %10.4f  %5d  %-12s  %s\n", i + 1, r.score(), r.index(),
                                 r.id().empty() ? "-" : Snippet(r.id(), 12),
                                 Snippet(text_of(r.index()), 60));
  }
  std::cout << std::flush;
  return kOk;
}

// ---- rollout ----

// The admin plane's bound on a change's reason (admin/admin_core.h kMaxReasonBytes).
constexpr size_t kMaxReasonBytes = 1024;

// Reads one MetricSample: GET /health, or Prometheus's recording rules plus GET /flags (for the
// stage the server is at).
class RolloutMetrics {
 public:
  RolloutMetrics(AdminHttpClient* admin, AdminHttpClient* prometheus, std::string selector,
                 std::vector<Gate> gates)
      : admin_(admin),
        prometheus_(prometheus),
        selector_(std::move(selector)),
        gates_(std::move(gates)) {}

  MetricSample Read(absl::Time now) {
    if (prometheus_ == nullptr) {
      admin::v1::Health health;
      absl::StatusOr<long> status = Call(*admin_, "GET", "/health", nullptr, {200, 503}, &health);
      if (!status.ok()) {
        MetricSample s;
        s.time = now;
        s.no_data = Snippet(absl::StrCat("GET /health: ", status.status().message()), 300);
        return s;
      }
      return SampleFromHealth(health, *status, now);
    }
    MetricSample s;
    s.time = now;
    admin::v1::FlagsView flags;
    if (absl::StatusOr<long> st = Call(*admin_, "GET", "/flags", nullptr, {200}, &flags);
        !st.ok()) {
      s.no_data = Snippet(absl::StrCat("GET /flags: ", st.status().message()), 300);
      return s;
    }
    s.stage = flags.stage();
    absl::StatusOr<std::optional<double>> traffic = Query(PrometheusTrafficQuery(selector_));
    if (!traffic.ok()) {
      s.no_data = Snippet(std::string(traffic.status().message()), 300);
      return s;
    }
    if (!traffic->has_value() || **traffic <= 0) {
      s.no_data = "no requests (Prometheus: " + PrometheusTrafficQuery(selector_) + ")";
      return s;
    }
    for (const Gate& g : gates_) {
      absl::StatusOr<std::optional<double>> v = Query(PrometheusQuery(g, selector_));
      if (!v.ok()) {
        s.values.clear();
        s.no_data = Snippet(std::string(v.status().message()), 300);
        return s;
      }
      if (v->has_value()) s.values[g.metric] = **v;  // absent (NaN, no series): n/a
    }
    return s;
  }

 private:
  absl::StatusOr<std::optional<double>> Query(const std::string& promql) {
    char* escaped = curl_easy_escape(nullptr, promql.c_str(), static_cast<int>(promql.size()));
    if (escaped == nullptr) return absl::InternalError("cannot URL-encode a query");
    const std::string path = absl::StrCat("/api/v1/query?query=", escaped);
    curl_free(escaped);
    absl::StatusOr<HttpResponse> r = prometheus_->Get(path);
    if (!r.ok()) return r.status();
    if (r->status != 200) {
      return absl::FailedPreconditionError(
          absl::StrCat("Prometheus ", promql, ": HTTP ", r->status, ": ", Snippet(r->body, 200)));
    }
    absl::StatusOr<std::optional<double>> v = ParsePrometheusValue(r->body);
    if (!v.ok()) {
      return absl::Status(v.status().code(), absl::StrCat(promql, ": ", v.status().message()));
    }
    return v;
  }

  AdminHttpClient* const admin_;
  AdminHttpClient* const prometheus_;  // null: /health
  const std::string selector_;
  const std::vector<Gate> gates_;
};

int Rollout(const ParsedArgs& args, const Globals& g, Clock* clock) {
  if (!args.positionals.empty()) return UsageError("rollout: takes no arguments", kRolloutUsage);
  auto usage = [](const absl::Status& s) {
    return UsageError(std::string(s.message()), kRolloutUsage);
  };
  RolloutOptions options;
  if (!args.Has("plan")) return UsageError("--plan: required", kRolloutUsage);
  absl::StatusOr<std::vector<std::string>> plan = ParsePlan(args.Get("plan"));
  if (!plan.ok()) return usage(plan.status());
  options.plan = *plan;
  if (args.GetAll("gate").empty()) return UsageError("--gate: required", kRolloutUsage);
  for (const std::string& spec : args.GetAll("gate")) {
    absl::StatusOr<std::vector<Gate>> gates = ParseGates(spec);
    if (!gates.ok()) return usage(gates.status());
    options.gates.insert(options.gates.end(), gates->begin(), gates->end());
  }
  for (auto [flag, out] : {std::pair<const char*, absl::Duration*>{"hold", &options.hold},
                           {"interval", &options.interval},
                           {"window", &options.window}}) {
    if (!args.Has(flag)) continue;
    absl::StatusOr<absl::Duration> d =
        ParsePositiveDuration(absl::StrCat("--", flag), args.Get(flag));
    if (!d.ok()) return usage(d.status());
    *out = *d;
  }
  if (absl::Status s = ValidateRolloutOptions(options); !s.ok()) return usage(s);
  const bool with_prometheus = args.Has("prometheus");
  if (absl::Status s = ValidateGateSources(options.gates, with_prometheus); !s.ok()) {
    return usage(s);
  }
  if (args.Has("prometheus-selector") && !with_prometheus) {
    return UsageError("--prometheus-selector: only with --prometheus", kRolloutUsage);
  }
  const std::string actor = args.Get("actor", "rerankctl-rollout");
  if (actor.empty() || actor.size() > 128) {
    return UsageError("--actor: must be 1..128 bytes", kRolloutUsage);
  }
  std::string state_path = args.Get("state");
  if (args.Has("state") && state_path.empty()) {
    return UsageError("--state: must not be empty", kRolloutUsage);
  }
  if (state_path.empty()) {
    absl::StatusOr<std::string> p = DefaultStatePath(g.config_path, ProcessEnv());
    if (!p.ok()) return usage(p.status());
    state_path = *p;
  }
  int rc = kOk;
  std::optional<AdminToken> token = TokenOrFail(g, kRolloutUsage, &rc);
  if (!token.has_value()) return rc;

  // Block SIGINT/SIGTERM before libcurl may start a thread: they stay pending until the wait
  // between samples takes them, so an interruption never lands between saving and applying.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<AdminHttpClient>> admin = MakeClient(g, token->token);
  if (!admin.ok()) return usage(admin.status());
  std::unique_ptr<AdminHttpClient> prometheus;
  if (with_prometheus) {
    AdminHttpClient::Options po;
    po.base_url = args.Get("prometheus");
    po.timeout = g.timeout;  // no token: never sent to Prometheus
    absl::StatusOr<std::unique_ptr<AdminHttpClient>> p = AdminHttpClient::Create(po);
    if (!p.ok()) {
      return UsageError(absl::StrCat("--prometheus: ", p.status().message()), kRolloutUsage);
    }
    prometheus = *std::move(p);
  }
  RolloutMetrics metrics(admin->get(), prometheus.get(), args.Get("prometheus-selector"),
                         options.gates);

  absl::StatusOr<std::optional<RolloutState>> saved = LoadStateFile(state_path);
  if (!saved.ok() && !args.bools.count("reset")) {
    return absl::IsInvalidArgument(saved.status()) ? usage(saved.status())
                                                   : Fail(std::string(saved.status().message()));
  }
  const absl::Time start = clock->Now();
  absl::StatusOr<RolloutController> controller = absl::UnknownError("unset");
  if (args.bools.count("reset") || !saved.ok() || !saved->has_value()) {
    if (args.bools.count("reset") && (!saved.ok() || saved->has_value())) {
      std::cout << "reset: discarding the saved rollout in " << state_path << "\n";
    }
    controller = RolloutController::Start(options, start);
  } else {
    controller = RolloutController::Resume(options, **saved, start);
  }
  if (!controller.ok()) {
    return absl::IsFailedPrecondition(controller.status())
               ? UsageError(absl::StrCat("--plan: ", controller.status().message()), kRolloutUsage)
               : usage(controller.status());
  }
  std::cout << "rollout of " << (*admin)->base_url() << ", figures from "
            << (with_prometheus ? args.Get("prometheus") : std::string("GET /health")) << ", state "
            << state_path << std::endl;

  // Saves the state, then prints the decision, then applies the decision's stage: a crash in
  // between leaves a state that a resume re-applies (setting the stage in force again changes
  // nothing and audits nothing), and a printed decision is always already saved.
  auto act = [&](const Decision& d, absl::Time time) -> int {
    if (d.action != Decision::Action::kHold) {
      if (absl::Status s = SaveStateFile(state_path, controller->state()); !s.ok()) {
        std::cout << FormatDecision(d, time) << std::endl;
        return Fail(std::string(s.message()));
      }
    }
    std::cout << FormatDecision(d, time) << std::endl;
    if (d.action == Decision::Action::kHold) return kOk;
    if (d.action == Decision::Action::kStop) return kFailed;
    if (!d.sets_stage()) return kOk;
    admin::v1::UpdateFlagsRequest request;
    request.set_stage(d.to);
    request.set_actor(actor);
    const std::string stages = d.from == d.to ? d.to : absl::StrCat(d.from, " -> ", d.to);
    std::string reason =
        absl::StrCat("rerankctl rollout: ", ActionName(d.action), " ", stages, ": ", d.reason);
    if (reason.size() > kMaxReasonBytes) reason = reason.substr(0, kMaxReasonBytes - 3) + "...";
    request.set_reason(reason);
    const std::string body = MessageToJson(request);
    admin::v1::FlagsView after;
    if (absl::StatusOr<long> s = Call(**admin, "POST", "/flags", &body, {200}, &after); !s.ok()) {
      return Fail(absl::StrCat(
          "stage '", d.to, "' was not applied: ",
          absl::IsFailedPrecondition(s.status()) ? Refused(s.status(), *token)
                                                 : std::string(s.status().message()),
          "\nthe rollout state is saved in ", state_path, "; run the same command again to retry"));
    }
    return kOk;
  };

  const Decision& initial = controller->initial();
  if (initial.action == Decision::Action::kStop) {
    std::cout << FormatDecision(initial, start) << std::endl;
    return controller->state().status == "completed" ? kOk : kFailed;
  }
  if (int r = act(initial, start); r != kOk) return r;
  absl::Time next = start + options.interval;
  while (true) {
    if (WaitForStopSignal(next - clock->Now())) {
      std::cout << "interrupted: the rollout state is saved in " << state_path
                << "; run the same command again to resume" << std::endl;
      return kFailed;
    }
    // Keep the cadence; after a stall (a slow call) sample now rather than catch up.
    next = std::max(next + options.interval, clock->Now());
    const MetricSample sample = metrics.Read(clock->Now());
    const Decision d = controller->Observe(sample);
    if (int r = act(d, sample.time); r != kOk) return r;
    if (d.finished()) return d.action == Decision::Action::kComplete ? kOk : kFailed;
  }
}

int Main(int argc, char** argv) {
  std::vector<std::string> raw(argv + 1, argv + argc);
  absl::StatusOr<ParsedArgs> args = ParseArgs(raw, CommandFlags());
  const std::map<std::string, const char*> usages = {
      {"stage", kStageUsage},     {"reload", kReloadUsage}, {"status", kStatusUsage},
      {"monitor", kMonitorUsage}, {"check", kCheckUsage},   {"rerank", kRerankUsage},
      {"rollout", kRolloutUsage}, {"eval", kEvalUsage},
  };
  if (!args.ok()) {
    // Show the command's usage when the command is known, else the main usage.
    const char* usage = kMainUsage;
    for (const auto& [name, text] : usages) {
      for (const std::string& a : raw) {
        if (a == name) usage = text;
      }
    }
    return UsageError(std::string(args.status().message()), usage);
  }
  if (args->command.empty() || args->command == "help") {
    if (args->help || args->command == "help") {
      std::cout << kMainUsage;
      return kOk;
    }
    return UsageError("missing command", kMainUsage);
  }
  auto usage = usages.find(args->command);
  if (usage == usages.end())
    return UsageError(absl::StrCat("unknown command '", args->command, "'"), kMainUsage);
  if (args->help) {
    std::cout << usage->second;
    return kOk;
  }
  absl::StatusOr<Globals> globals = ReadGlobals(*args);
  if (!globals.ok()) return UsageError(std::string(globals.status().message()), usage->second);
  if (args->command == "stage") return Stage(*args, *globals);
  if (args->command == "reload") return Reload(*args, *globals);
  if (args->command == "status") return Status(*args, *globals);
  if (args->command == "monitor") return Monitor(*args, *globals, RealClock::Get());
  if (args->command == "check") return Check(*args, *globals);
  if (args->command == "rollout") return Rollout(*args, *globals, RealClock::Get());
  if (args->command == "eval") {
    EvalEndpoints endpoints{globals->target, globals->admin, std::nullopt};
    if (args->Has("timeout")) endpoints.timeout = globals->timeout;
    return RunEval(*args, endpoints);
  }
  return Rerank(*args, *globals);
}

}  // namespace
}  // namespace rerank::ctl

int main(int argc, char** argv) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const int rc = rerank::ctl::Main(argc, argv);
  curl_global_cleanup();
  return rc;
}
