// rerankctl: the operator's command line for a running rerankd (see docs/OPERATIONS.md).
//
//   rerankctl [--admin URL] [--target HOST:PORT] [--token T] [--timeout S] <command> ...
//
// Commands talk to the admin HTTP plane (stage, status, monitor, check) or to the data-plane gRPC
// Reranker (rerank). Exit status: 0 success, 1 the operation failed (server error, unreachable,
// a failed check), 2 usage error.
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
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/json_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "rerank/v1/reranker.grpc.pb.h"
#include "tools/rerankctl_args.h"
#include "tools/rerankctl_check.h"
#include "tools/rerankctl_format.h"
#include "tools/rerankctl_http.h"

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
    "  status         one-screen summary of /health and /flags (--json: raw JSON)\n"
    "  monitor [S]    a live line of key stats every S seconds (default 5) until Ctrl-C\n"
    "  check          pre-deployment validation: files, config, health, reranker, stats\n"
    "  rerank         rerank documents for a query over gRPC and print the ranking\n"
    "\n"
    "Global flags (also accepted after the command):\n"
    "  --admin URL        admin HTTP base URL (env RERANKER_ADMIN_URL; default " "http://127.0.0.1:8000)\n"
    "  --target H:P       data-plane gRPC address (env RERANKER_GRPC_TARGET; default 127.0.0.1:50051)\n"
    "  --token TOKEN      admin token for state-changing calls (env RERANKER_ADMIN_TOKEN)\n"
    "  --timeout SECONDS  per-call timeout (default 10)\n"
    "  --help             help; `rerankctl <command> --help` for a command's flags\n"
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
    "  --actor NAME   recorded as updated_by and in the audit log (default: $USER, else rerankctl)\n";

constexpr char kStatusUsage[] =
    "Usage: rerankctl status [--json]\n"
    "\n"
    "GET /health and GET /flags; prints readiness, model, stage, reranker on/off, cache and the\n"
    "key stats. Exit 1 when the server is unreachable or not ready.\n"
    "\n"
    "  --json   print {\"health\": <GET /health>, \"flags\": <GET /flags>} instead\n";

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

const std::map<std::string, std::vector<FlagSpec>>& CommandFlags() {
  static const auto* const flags = new std::map<std::string, std::vector<FlagSpec>>{
      {"stage", {{"actor", FlagKind::kValue}}},
      {"status", {{"json", FlagKind::kBool}}},
      {"monitor", {{"count", FlagKind::kValue}}},
      {"check", {{"config", FlagKind::kValue}}},
      {"rerank",
       {{"query", FlagKind::kValue},
        {"doc", FlagKind::kRepeated},
        {"docs-file", FlagKind::kValue},
        {"top-n", FlagKind::kValue},
        {"activation", FlagKind::kValue},
        {"client-id", FlagKind::kValue},
        {"json", FlagKind::kBool}}},
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
  std::string token;
  absl::Duration timeout;
};

absl::StatusOr<Globals> ReadGlobals(const ParsedArgs& args) {
  Globals g;
  g.admin = args.Get("admin", EnvOr("RERANKER_ADMIN_URL", kDefaultAdmin));
  g.target = args.Get("target", EnvOr("RERANKER_GRPC_TARGET", kDefaultTarget));
  g.token = args.Get("token", EnvOr("RERANKER_ADMIN_TOKEN", ""));
  double seconds = 10;
  if (args.Has("timeout") &&
      (!absl::SimpleAtod(args.Get("timeout"), &seconds) || !(seconds > 0) || !std::isfinite(seconds))) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout: must be a positive number of seconds, got '", args.Get("timeout"), "'"));
  }
  g.timeout = absl::Seconds(seconds);
  return g;
}

absl::StatusOr<std::unique_ptr<AdminHttpClient>> MakeClient(const Globals& g) {
  AdminHttpClient::Options options;
  options.base_url = g.admin;
  options.token = g.token;
  options.timeout = g.timeout;
  absl::StatusOr<std::unique_ptr<AdminHttpClient>> client = AdminHttpClient::Create(options);
  if (!client.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--admin: ", client.status().message()));
  }
  return client;
}

struct JsonResponse {
  long status = 0;
  json body;
};

// GET/POST and parse the body as a JSON object; any HTTP status is returned to the caller.
absl::StatusOr<JsonResponse> CallJson(AdminHttpClient& client, const std::string& method,
                                      const std::string& path, const json* body = nullptr) {
  ASSIGN_OR_RETURN(const HttpResponse r,
                   body == nullptr ? client.Get(path) : client.Post(path, body->dump()));
  JsonResponse out;
  out.status = r.status;
  out.body = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (out.body.is_discarded() || !out.body.is_object()) {
    if (r.status >= 400) {
      return absl::FailedPreconditionError(
          absl::StrCat(method, " ", path, " failed: ", DescribeHttpError(r.status, r.body)));
    }
    return absl::DataLossError(absl::StrCat(method, " ", client.base_url(), path, ": HTTP ",
                                            r.status, " with a body that is not a JSON object: ",
                                            Snippet(r.body, 120)));
  }
  return out;
}

// ---- stage ----

int Stage(const ParsedArgs& args, const Globals& g) {
  if (args.positionals.size() != 1) {
    return UsageError("stage: expected exactly one stage name", kStageUsage);
  }
  const std::string stage = args.positionals[0];
  const std::string actor = args.Get("actor", EnvOr("USER", "rerankctl"));
  absl::StatusOr<std::unique_ptr<AdminHttpClient>> client = MakeClient(g);
  if (!client.ok()) return UsageError(std::string(client.status().message()), kStageUsage);

  absl::StatusOr<JsonResponse> before = CallJson(**client, "GET", "/flags");
  if (!before.ok()) return Fail(std::string(before.status().message()));
  if (before->status != 200) {
    return Fail(absl::StrCat("GET /flags failed: ", DescribeHttpError(before->status, before->body.dump())));
  }
  const json request = {{"stage", stage}, {"actor", actor}};
  absl::StatusOr<JsonResponse> after = CallJson(**client, "POST", "/flags", &request);
  if (!after.ok()) return Fail(std::string(after.status().message()));
  if (after->status != 200) {
    return Fail(absl::StrCat("stage '", stage, "' was not applied: ",
                             DescribeHttpError(after->status, after->body.dump())));
  }
  std::cout << FormatStageChange(before->body, after->body) << std::flush;
  return kOk;
}

// ---- status ----

int Status(const ParsedArgs& args, const Globals& g) {
  if (!args.positionals.empty()) return UsageError("status: takes no arguments", kStatusUsage);
  absl::StatusOr<std::unique_ptr<AdminHttpClient>> client = MakeClient(g);
  if (!client.ok()) return UsageError(std::string(client.status().message()), kStatusUsage);
  absl::StatusOr<JsonResponse> health = CallJson(**client, "GET", "/health");
  if (!health.ok()) return Fail(std::string(health.status().message()));
  absl::StatusOr<JsonResponse> flags = CallJson(**client, "GET", "/flags");
  json flags_body = flags.ok() && flags->status == 200 ? flags->body : json(nullptr);
  if (args.bools.count("json")) {
    std::cout << DumpJson(json{{"health", health->body}, {"flags", flags_body}}, /*indent=*/2)
              << "\n";
  } else {
    std::cout << FormatStatus(health->body, flags_body, (*client)->base_url());
  }
  if (!flags.ok()) {
    std::cerr << "rerankctl: warning: " << flags.status().message() << "\n";
  } else if (flags->status != 200) {
    std::cerr << "rerankctl: warning: GET /flags: " << DescribeHttpError(flags->status, flags->body.dump())
              << "\n";
  }
  std::cout << std::flush;
  const bool ready = health->body.contains("ready") && health->body["ready"] == true;
  return health->status == 200 && ready ? kOk : kFailed;
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
  if (args.positionals.size() > 1) return UsageError("monitor: at most one argument", kMonitorUsage);
  double seconds = 5;
  if (!args.positionals.empty() &&
      (!absl::SimpleAtod(args.positionals[0], &seconds) || !(seconds > 0) || !std::isfinite(seconds))) {
    return UsageError(absl::StrCat("monitor: SECONDS must be a positive number, got '",
                                   args.positionals[0], "'"),
                      kMonitorUsage);
  }
  int64_t count = -1;
  if (args.Has("count") && (!absl::SimpleAtoi(args.Get("count"), &count) || count < 1)) {
    return UsageError(absl::StrCat("--count: must be a positive integer, got '", args.Get("count"), "'"),
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
    absl::StatusOr<JsonResponse> health = CallJson(**client, "GET", "/health");
    const absl::Time now = clock->Now();
    if (!health.ok()) {
      std::cout << FormatMonitorError(now, tz, std::string(health.status().message())) << std::endl;
    } else {
      std::cout << FormatMonitorLine(health->body, now, previous, tz) << std::endl;
      if (std::optional<MonitorSample> s = SampleOf(health->body, now); s.has_value()) previous = s;
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
  options.config_path = args.Get("config");
  options.env = ProcessEnv();
  options.cores = std::thread::hardware_concurrency();
  std::cout << "pre-deployment checks (admin " << (*client)->base_url() << ", config "
            << (options.config_path.empty() ? "built-in defaults + environment" : options.config_path)
            << ")\n";
  std::vector<CheckResult> results = RunPreDeploymentChecks(
      options, [&client](std::string_view path) { return (*client)->Get(path); });
  std::cout << FormatCheckResults(results) << std::flush;
  return AllPassed(results) ? kOk : kFailed;
}

// ---- rerank ----

const char* GrpcCodeName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
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
  if (docs->empty()) return UsageError("rerank: give at least one --doc or a --docs-file", kRerankUsage);
  uint32_t top_n = 0;
  if (args.Has("top-n") && !absl::SimpleAtoi(args.Get("top-n"), &top_n)) {
    return UsageError(absl::StrCat("--top-n: must be a non-negative integer, got '",
                                   args.Get("top-n"), "'"),
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
    std::cout << DumpJson(json{{"model_name", response.model_name()},
                               {"model_version", response.model_version()},
                               {"reranked", response.reranked()},
                               {"request_id", response.request_id()},
                               {"cache_hits", response.cache_hits()},
                               {"results", results}},
                          /*indent=*/2)
              << std::endl;
    return kOk;
  }
  std::cout << "model " << response.model_name() << " (version " << response.model_version()
            << "), reranked: " << (response.reranked() ? "yes" : "NO (reranker disabled: original order)")
            << ", cache hits: " << response.cache_hits() << ", request_id: " << response.request_id()
            << "\n";
  std::cout << absl::StrFormat("%4s  %10s  %5s  %-12s  %s\n", "RANK", "SCORE", "INDEX", "ID", "TEXT");
  for (int i = 0; i < response.results_size(); ++i) {
    const rerank::v1::RerankResult& r = response.results(i);
    std::cout << absl::StrFormat("%4d  %10.4f  %5d  %-12s  %s\n", i + 1, r.score(), r.index(),
                                 r.id().empty() ? "-" : Snippet(r.id(), 12),
                                 Snippet(text_of(r.index()), 60));
  }
  std::cout << std::flush;
  return kOk;
}

int Main(int argc, char** argv) {
  std::vector<std::string> raw(argv + 1, argv + argc);
  absl::StatusOr<ParsedArgs> args = ParseArgs(raw, CommandFlags());
  const std::map<std::string, const char*> usages = {
      {"stage", kStageUsage},     {"status", kStatusUsage}, {"monitor", kMonitorUsage},
      {"check", kCheckUsage},     {"rerank", kRerankUsage},
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
  if (usage == usages.end()) return UsageError(absl::StrCat("unknown command '", args->command, "'"), kMainUsage);
  if (args->help) {
    std::cout << usage->second;
    return kOk;
  }
  absl::StatusOr<Globals> globals = ReadGlobals(*args);
  if (!globals.ok()) return UsageError(std::string(globals.status().message()), usage->second);
  if (args->command == "stage") return Stage(*args, *globals);
  if (args->command == "status") return Status(*args, *globals);
  if (args->command == "monitor") return Monitor(*args, *globals, RealClock::Get());
  if (args->command == "check") return Check(*args, *globals);
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
