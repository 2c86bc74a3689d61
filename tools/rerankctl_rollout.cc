#include "tools/rerankctl_rollout.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/config.h"
#include "common/feature_flags.h"
#include "nlohmann/json.hpp"

namespace rerank::ctl {
namespace {

using nlohmann::json;

constexpr char kRunning[] = "running";
constexpr char kCompleted[] = "completed";
constexpr char kRolledBack[] = "rolled_back";
// Where a rollback goes before the first advance (common/feature_flags.cc StageNames()).
constexpr char kRollbackStage[] = "rollback";

std::string Num(double v) { return absl::StrFormat("%.4g", v); }

std::vector<std::string> MetricNames(bool with_prometheus) {
  std::vector<std::string> names;
  for (const GateMetric& m : GateMetrics()) {
    if (with_prometheus ? !m.prometheus.empty() : !m.health.empty()) names.push_back(m.name);
  }
  return names;
}

std::string TimeText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

absl::StatusOr<absl::Time> ParseTime(const json& j, const std::string& field) {
  absl::Time t;
  std::string err;
  if (!j.is_string() ||
      !absl::ParseTime(absl::RFC3339_full, j.get<std::string>(), absl::UTCTimeZone(), &t, &err)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected an RFC 3339 time, got ", j.dump()));
  }
  return t;
}

}  // namespace

// ---- Gates ----

const std::vector<GateMetric>& GateMetrics() {
  static const auto* const metrics = new std::vector<GateMetric>{
      {"p95_latency_ms", "p95_latency_ms", "job:rerank_request_duration_seconds:p95_5m", 1000,
       "95th percentile latency, ms"},
      {"p99_latency_ms", "p99_latency_ms", "job:rerank_request_duration_seconds:p99_5m", 1000,
       "99th percentile latency, ms"},
      {"avg_latency_ms", "avg_latency_ms", "job:rerank_request_duration_seconds:avg5m", 1000,
       "average latency, ms"},
      {"error_rate_percent", "error_rate_percent", "job:rerank_error_ratio:rate5m", 100,
       "failed requests (not rate-limited), %"},
      {"cache_hit_rate_percent", "cache_hit_rate_percent", "job:rerank_cache_hit_ratio:rate5m", 100,
       "cache hits per lookup, % (n/a while the cache is off)"},
      {"target_latency_met_rate_percent", "target_latency_met_rate_percent",
       "job:rerank_target_met_ratio:rate5m", 100,
       "successful requests within rerank.target_latency_ms, %"},
      {"rate_limited_percent", "", "job:rerank_rate_limited_ratio:rate5m", 100,
       "requests denied by the rate limiter, % (Prometheus only)"},
  };
  return *metrics;
}

const GateMetric* FindGateMetric(const std::string& name) {
  for (const GateMetric& m : GateMetrics()) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

bool Gate::Holds(double value) const {
  if (op == "<") return value < threshold;
  if (op == "<=") return value <= threshold;
  if (op == ">") return value > threshold;
  return value >= threshold;
}

std::string Gate::ToString() const { return absl::StrCat(metric, op, Num(threshold)); }

absl::StatusOr<std::vector<Gate>> ParseGates(const std::string& spec) {
  std::vector<Gate> gates;
  for (absl::string_view raw : absl::StrSplit(spec, ',')) {
    const std::string item(absl::StripAsciiWhitespace(raw));
    if (item.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--gate: empty gate in '", spec, "'; expected METRIC<VALUE,... e.g. p95_latency_ms<50"));
    }
    const size_t at = item.find_first_of("<>=!");
    if (at == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--gate: '", item,
                       "' has no operator; expected METRIC OP VALUE with OP one of < <= > >="));
    }
    Gate g;
    g.metric = std::string(absl::StripAsciiWhitespace(item.substr(0, at)));
    const size_t value_at = item.find_first_not_of("<>=!", at);
    g.op = item.substr(at, value_at == std::string::npos ? std::string::npos : value_at - at);
    const std::string value(absl::StripAsciiWhitespace(
        value_at == std::string::npos ? absl::string_view()
                                      : absl::string_view(item).substr(value_at)));
    if (FindGateMetric(g.metric) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--gate: unknown metric '", g.metric, "' in '", item,
                       "'; known: ", absl::StrJoin(MetricNames(/*with_prometheus=*/true), ", ")));
    }
    if (g.op != "<" && g.op != "<=" && g.op != ">" && g.op != ">=") {
      return absl::InvalidArgumentError(absl::StrCat("--gate: unknown operator '", g.op, "' in '",
                                                     item, "'; use one of < <= > >="));
    }
    if (!absl::SimpleAtod(value, &g.threshold) || !std::isfinite(g.threshold)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--gate: '", item, "': threshold must be a number, got '", value, "'"));
    }
    for (const Gate& other : gates) {
      if (other.metric == g.metric && other.op == g.op) {
        return absl::InvalidArgumentError(
            absl::StrCat("--gate: '", g.metric, g.op, "' is given twice"));
      }
    }
    gates.push_back(std::move(g));
  }
  return gates;
}

absl::StatusOr<std::vector<std::string>> ParsePlan(const std::string& spec) {
  const std::vector<std::string>& order = RolloutStageNames();
  std::vector<std::string> plan;
  ptrdiff_t previous = -1;
  for (absl::string_view raw : absl::StrSplit(spec, ',')) {
    const std::string stage(absl::StripAsciiWhitespace(raw));
    if (stage.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--plan: empty stage in '", spec, "'; expected e.g. ", absl::StrJoin(order, ",")));
    }
    auto it = std::find(order.begin(), order.end(), stage);
    if (it == order.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--plan: unknown stage '", stage,
                       "'; rollout stages, in order: ", absl::StrJoin(order, ", ")));
    }
    const ptrdiff_t at = it - order.begin();
    if (at <= previous) {
      return absl::InvalidArgumentError(
          absl::StrCat("--plan: '", stage, "' ", at == previous ? "is repeated" : "comes after '",
                       at == previous ? "" : absl::StrCat(order[previous], "' in rollout order"),
                       "; stages must follow the rollout order: ", absl::StrJoin(order, ", ")));
    }
    previous = at;
    plan.push_back(stage);
  }
  return plan;
}

absl::StatusOr<absl::Duration> ParsePositiveDuration(const std::string& flag,
                                                     const std::string& text) {
  absl::Duration d;
  if (!absl::ParseDuration(std::string(absl::StripAsciiWhitespace(text)), &d) ||
      d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": expected a positive duration like 24h, 30m, 10s or 0.5s, got '", text, "'"));
  }
  return d;
}

std::string DurationText(absl::Duration d) {
  // Milliseconds are noise beyond a minute, and sub-millisecond digits always are.
  return absl::FormatDuration(
      absl::Trunc(d, d < absl::Minutes(1) ? absl::Milliseconds(1) : absl::Seconds(1)));
}

// ---- Samples ----

MetricSample SampleFromHealth(const admin::v1::Health& health, long http_status, absl::Time time) {
  MetricSample s;
  s.time = time;
  s.stage = health.reranker().stage();
  const admin::v1::Stats& st = health.reranker().stats();
  if (http_status != 200 || !health.ready()) {
    s.no_data = absl::StrCat("server not ready (GET /health: HTTP ", http_status, ", status '",
                             health.status(), "')");
    return s;
  }
  if (st.requests_in_window() == 0) {
    s.no_data =
        absl::StrCat("no requests in the server's ", st.window_seconds(), " s stats window");
    return s;
  }
  s.values["p95_latency_ms"] = st.p95_latency_ms();
  s.values["p99_latency_ms"] = st.p99_latency_ms();
  s.values["avg_latency_ms"] = st.avg_latency_ms();
  s.values["error_rate_percent"] = st.error_rate_percent();
  s.values["target_latency_met_rate_percent"] = st.target_latency_met_rate_percent();
  if (st.cache_enabled()) s.values["cache_hit_rate_percent"] = st.cache_hit_rate_percent();
  return s;
}

absl::Status ValidateGateSources(const std::vector<Gate>& gates, bool with_prometheus) {
  for (const Gate& g : gates) {
    const GateMetric* m = FindGateMetric(g.metric);
    if (m == nullptr) return absl::InvalidArgumentError("--gate: unknown metric " + g.metric);
    if (with_prometheus ? m->prometheus.empty() : m->health.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--gate: ", g.metric, " is not available ",
          with_prometheus ? "from Prometheus" : "from GET /health (use --prometheus URL)",
          "; available: ", absl::StrJoin(MetricNames(with_prometheus), ", ")));
    }
  }
  return absl::OkStatus();
}

std::string PrometheusQuery(const Gate& gate, const std::string& selector) {
  const GateMetric* m = FindGateMetric(gate.metric);
  const bool upper_bound = gate.op == "<" || gate.op == "<=";
  return absl::StrCat(upper_bound ? "max" : "min", "(", m->prometheus, "{", selector, "}) * ",
                      Num(m->prometheus_scale));
}

std::string PrometheusTrafficQuery(const std::string& selector) {
  return absl::StrCat("sum(job:rerank_requests:rate5m{", selector, "})");
}

absl::StatusOr<std::optional<double>> ParsePrometheusValue(const std::string& body) {
  const json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError("Prometheus answer is not a JSON object");
  }
  if (j.value("status", "") != "success") {
    return absl::FailedPreconditionError(
        absl::StrCat("Prometheus query failed: ", j.value("error", j.dump().substr(0, 200))));
  }
  const json* result = nullptr;
  if (auto data = j.find("data"); data != j.end() && data->is_object()) {
    if (data->value("resultType", "") != "vector") {
      return absl::DataLossError("Prometheus answer: expected data.resultType \"vector\"");
    }
    if (auto r = data->find("result"); r != data->end() && r->is_array()) result = &*r;
  }
  if (result == nullptr) return absl::DataLossError("Prometheus answer: no data.result array");
  if (result->empty()) return std::optional<double>();
  if (result->size() != 1) {
    return absl::DataLossError(
        absl::StrCat("Prometheus answer: expected one series (the query "
                     "aggregates), got ",
                     result->size()));
  }
  const json& value = (*result)[0].value("value", json());
  double v = 0;
  if (!value.is_array() || value.size() != 2 || !value[1].is_string() ||
      !absl::SimpleAtod(value[1].get<std::string>(), &v)) {
    return absl::DataLossError("Prometheus answer: malformed value " + value.dump());
  }
  if (std::isnan(v)) return std::optional<double>();
  return std::optional<double>(v);
}

// ---- State ----

std::string StateToJson(const RolloutState& s) {
  json history = json::array();
  for (const HistoryEntry& h : s.history) {
    history.push_back({{"time", TimeText(h.time)},
                       {"action", h.action},
                       {"from", h.from},
                       {"to", h.to},
                       {"reason", h.reason}});
  }
  json j = {{"version", RolloutState::kVersion},
            {"plan", s.plan},
            {"index", s.index},
            {"stage", s.plan.empty() ? "" : s.plan[s.index]},
            {"entered_at", TimeText(s.entered_at)},
            {"last_good", s.last_good},
            {"status", s.status},
            {"target_stage", s.target_stage},
            {"history", history}};
  return j.dump(2) + "\n";
}

absl::StatusOr<RolloutState> StateFromJson(const std::string& text) {
  const json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("not a JSON object");
  }
  auto field = [&j](const char* name) -> const json& {
    static const json* const kNull = new json();
    auto it = j.find(name);
    return it == j.end() ? *kNull : *it;
  };
  if (field("version") != RolloutState::kVersion) {
    return absl::InvalidArgumentError(absl::StrCat("version: expected ", RolloutState::kVersion,
                                                   ", got ", field("version").dump()));
  }
  RolloutState s;
  const json& plan = field("plan");
  if (!plan.is_array() || plan.empty()) {
    return absl::InvalidArgumentError("plan: expected a non-empty array of stages");
  }
  std::vector<std::string> names;
  for (const json& p : plan) {
    if (!p.is_string()) return absl::InvalidArgumentError("plan: expected stage names");
    names.push_back(p.get<std::string>());
  }
  absl::StatusOr<std::vector<std::string>> parsed = ParsePlan(absl::StrJoin(names, ","));
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("plan: ", absl::StripPrefix(parsed.status().message(), "--plan: ")));
  }
  s.plan = *parsed;
  const json& index = field("index");
  if (!index.is_number_integer() || index.get<int64_t>() < 0 ||
      index.get<int64_t>() >= static_cast<int64_t>(s.plan.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("index: expected 0..", s.plan.size() - 1, ", got ", index.dump()));
  }
  s.index = index.get<int>();
  absl::StatusOr<absl::Time> entered = ParseTime(field("entered_at"), "entered_at");
  if (!entered.ok()) return entered.status();
  s.entered_at = *entered;
  const std::vector<std::string>& stages = StageNames();
  for (const char* name : {"last_good", "target_stage"}) {
    const json& v = field(name);
    if (!v.is_string() ||
        std::find(stages.begin(), stages.end(), v.get<std::string>()) == stages.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": expected a stage name, got ", v.dump()));
    }
  }
  s.last_good = field("last_good").get<std::string>();
  s.target_stage = field("target_stage").get<std::string>();
  const json& status = field("status");
  if (status != kRunning && status != kCompleted && status != kRolledBack) {
    return absl::InvalidArgumentError(
        absl::StrCat("status: expected running, completed or rolled_back, got ", status.dump()));
  }
  s.status = status.get<std::string>();
  const json& history = field("history");
  if (!history.is_null()) {
    if (!history.is_array()) return absl::InvalidArgumentError("history: expected an array");
    for (const json& h : history) {
      if (!h.is_object()) return absl::InvalidArgumentError("history: expected objects");
      HistoryEntry e;
      absl::StatusOr<absl::Time> t = ParseTime(h.value("time", json()), "history.time");
      if (!t.ok()) return t.status();
      e.time = *t;
      e.action = h.value("action", "");
      e.from = h.value("from", "");
      e.to = h.value("to", "");
      e.reason = h.value("reason", "");
      s.history.push_back(std::move(e));
    }
  }
  return s;
}

absl::Status SaveStateFile(const std::string& path, const RolloutState& state) {
  static std::atomic<uint64_t> counter{0};
  const std::filesystem::path target(path);
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid(), ".", counter.fetch_add(1));
  const std::string content = StateToJson(state);
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("--state: cannot create ", tmp, ": ", std::strerror(errno)));
  }
  size_t done = 0;
  bool ok = true;
  while (ok && done < content.size()) {
    const ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  ok = ok && fsync(fd) == 0;
  const int saved = errno;
  ok = close(fd) == 0 && ok;
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = ok ? errno : saved;
    unlink(tmp.c_str());
    return absl::UnavailableError(
        absl::StrCat("--state: cannot write ", path, ": ", std::strerror(err)));
  }
  const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);  // best effort: the content itself is already durable
    close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<RolloutState>> LoadStateFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::optional<RolloutState>();
  std::ifstream in(path);
  if (!in) return absl::UnavailableError(absl::StrCat("--state: cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  absl::StatusOr<RolloutState> state = StateFromJson(ss.str());
  if (!state.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--state: ", path, ": ",
                                                   state.status().message(),
                                                   " (fix or remove the file, or pass --reset)"));
  }
  return std::optional<RolloutState>(*std::move(state));
}

absl::StatusOr<std::string> DefaultStatePath(
    const std::string& config_path,
    const std::function<std::optional<std::string>(const std::string&)>& env) {
  absl::StatusOr<Config> config = LoadConfig(config_path, env);
  if (!config.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--state: no default, the configuration does not load (",
                     config.status().message(), "); pass --state FILE"));
  }
  const std::filesystem::path dir = std::filesystem::path(config->flags.path).parent_path();
  return (dir / "rollout-state.json").string();
}

// ---- Controller ----

absl::Status ValidateRolloutOptions(const RolloutOptions& o) {
  if (o.plan.empty()) return absl::InvalidArgumentError("--plan: required");
  if (o.gates.empty()) return absl::InvalidArgumentError("--gate: at least one gate is required");
  for (auto [flag, d] : {std::pair<const char*, absl::Duration>{"--hold", o.hold},
                         {"--interval", o.interval},
                         {"--window", o.window}}) {
    if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(flag, ": must be a positive duration"));
    }
  }
  if (o.interval > o.hold) {
    return absl::InvalidArgumentError(absl::StrCat("--interval: must be <= --hold (",
                                                   DurationText(o.hold), "), got ",
                                                   DurationText(o.interval)));
  }
  return absl::OkStatus();
}

bool Decision::sets_stage() const {
  return action == Action::kStart || action == Action::kResume || action == Action::kAdvance ||
         action == Action::kRollback;
}

bool Decision::finished() const {
  return action == Action::kComplete || action == Action::kRollback || action == Action::kStop;
}

const char* ActionName(Decision::Action action) {
  switch (action) {
    case Decision::Action::kStart:
      return "start";
    case Decision::Action::kResume:
      return "resume";
    case Decision::Action::kHold:
      return "hold";
    case Decision::Action::kAdvance:
      return "advance";
    case Decision::Action::kRollback:
      return "rollback";
    case Decision::Action::kComplete:
      return "complete";
    case Decision::Action::kStop:
      return "stop";
  }
  return "?";
}

std::string FormatDecision(const Decision& d, absl::Time time) {
  const std::string stages = d.from == d.to ? d.to : absl::StrCat(d.from, " -> ", d.to);
  return absl::StrCat(TimeText(time), " ", ActionName(d.action), " ", stages, ": ", d.reason);
}

absl::StatusOr<RolloutController> RolloutController::Start(RolloutOptions options, absl::Time now) {
  if (absl::Status s = ValidateRolloutOptions(options); !s.ok()) return s;
  RolloutState state;
  state.plan = options.plan;
  state.index = 0;
  state.entered_at = now;
  state.last_good = kRollbackStage;
  state.status = kRunning;
  state.target_stage = options.plan[0];
  RolloutController c(std::move(options), std::move(state));
  c.initial_.action = Decision::Action::kStart;
  c.initial_.from = c.initial_.to = c.state_.target_stage;
  std::vector<std::string> gates;
  for (const Gate& g : c.options_.gates) gates.push_back(g.ToString());
  c.initial_.reason =
      absl::StrCat("plan ", absl::StrJoin(c.options_.plan, ","), ", stage 1/",
                   c.options_.plan.size(), ", hold ", DurationText(c.options_.hold), ", window ",
                   DurationText(c.options_.window), ", gates ", absl::StrJoin(gates, ","));
  c.Record(c.initial_, now);
  return c;
}

absl::StatusOr<RolloutController> RolloutController::Resume(RolloutOptions options,
                                                            RolloutState state, absl::Time now) {
  if (absl::Status s = ValidateRolloutOptions(options); !s.ok()) return s;
  if (state.plan != options.plan) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the saved rollout has plan ", absl::StrJoin(state.plan, ","), ", not ",
        absl::StrJoin(options.plan, ","), "; rerun with that plan, or pass --reset to start over"));
  }
  RolloutController c(std::move(options), std::move(state));
  Decision& d = c.initial_;
  d.from = d.to = c.state_.target_stage;
  if (c.finished()) {
    d.action = Decision::Action::kStop;
    d.reason = absl::StrCat("the saved rollout already ",
                            c.state_.status == kCompleted ? "completed" : "rolled back",
                            "; pass --reset to start a new one");
    return c;
  }
  d.action = Decision::Action::kResume;
  d.reason = absl::StrCat(
      "stage ", c.state_.index + 1, "/", c.state_.plan.size(), " ", c.state_.plan[c.state_.index],
      ", entered ", TimeText(c.state_.entered_at), " (held ",
      DurationText(std::max(now - c.state_.entered_at, absl::ZeroDuration())), " of ",
      DurationText(c.options_.hold), "), last good ", c.state_.last_good);
  c.Record(d, now);
  return c;
}

void RolloutController::Record(const Decision& d, absl::Time time) {
  state_.history.push_back({time, ActionName(d.action), d.from, d.to, d.reason});
  if (state_.history.size() > RolloutState::kMaxHistory) {
    state_.history.erase(state_.history.begin(), state_.history.end() - RolloutState::kMaxHistory);
  }
}

void RolloutController::ResetStreaks() {
  pass_since_.reset();
  fail_since_.clear();
}

std::string RolloutController::Figures(const MetricSample& sample) const {
  std::vector<std::string> parts;
  for (const Gate& g : options_.gates) {
    auto it = sample.values.find(g.metric);
    if (it == sample.values.end()) {
      parts.push_back(absl::StrCat(g.metric, " n/a"));
    } else {
      parts.push_back(absl::StrCat(g.metric, " ", Num(it->second), g.Holds(it->second) ? "" : " !",
                                   g.op, Num(g.threshold)));
    }
  }
  return absl::StrJoin(parts, ", ");
}

Decision RolloutController::Observe(const MetricSample& sample) {
  Decision d;
  d.from = d.to = state_.target_stage;
  if (finished()) {
    d.action = Decision::Action::kStop;
    d.reason = absl::StrCat("the rollout is ", state_.status);
    return d;
  }
  const absl::Time now = sample.time;
  const std::string& stage = state_.plan[state_.index];
  if (!sample.stage.empty() && sample.stage != state_.target_stage) {
    d.action = Decision::Action::kStop;
    d.reason = absl::StrCat("the server's stage is ", sample.stage, ", not ", state_.target_stage,
                            ": changed outside the rollout; stopping without touching it "
                            "(rerun to re-apply ",
                            state_.target_stage, ", or --reset)");
    Record(d, now);
    return d;
  }
  const absl::Duration held = std::max(now - state_.entered_at, absl::ZeroDuration());
  const std::string held_text =
      absl::StrCat("held ", DurationText(held), "/", DurationText(options_.hold));

  if (!sample.no_data.empty()) {
    ResetStreaks();
    d.action = Decision::Action::kHold;
    d.reason = absl::StrCat(held_text, "; no data: ", sample.no_data);
    return d;
  }

  // Per gate: pass, fail or n/a; streaks of consecutive failures, and of all-holding samples.
  bool all_hold = true;
  for (size_t i = 0; i < options_.gates.size(); ++i) {
    const Gate& g = options_.gates[i];
    auto it = sample.values.find(g.metric);
    const bool fails = it != sample.values.end() && !g.Holds(it->second);
    if (fails) {
      all_hold = false;
      fail_since_.emplace(i, now);  // keeps the streak's first failing time
    } else {
      fail_since_.erase(i);
    }
  }
  if (all_hold) {
    if (!pass_since_.has_value()) pass_since_ = now;
  } else {
    pass_since_.reset();
  }

  // A gate that failed in every sample of the last window: roll back.
  for (const auto& [i, since] : fail_since_) {
    if (now - since < options_.window) continue;
    const Gate& g = options_.gates[i];
    d.action = Decision::Action::kRollback;
    d.from = stage;
    d.to = state_.last_good;
    d.reason = absl::StrCat(g.ToString(), " failed in every sample for ", DurationText(now - since),
                            " (window ", DurationText(options_.window), "): ", Figures(sample));
    state_.status = kRolledBack;
    state_.target_stage = state_.last_good;
    ResetStreaks();
    Record(d, now);
    return d;
  }

  const bool held_enough = held >= options_.hold;
  const bool window_clean = pass_since_.has_value() && now - *pass_since_ >= options_.window;
  if (held_enough && window_clean) {
    const std::string why = absl::StrCat(held_text, ", gates held for ",
                                         DurationText(now - *pass_since_), ": ", Figures(sample));
    if (state_.index + 1 < static_cast<int>(state_.plan.size())) {
      d.action = Decision::Action::kAdvance;
      d.from = stage;
      d.to = state_.plan[state_.index + 1];
      d.reason = why;
      state_.last_good = stage;
      ++state_.index;
      state_.entered_at = now;
      state_.target_stage = d.to;
      ResetStreaks();
    } else {
      d.action = Decision::Action::kComplete;
      d.reason = absl::StrCat("last stage of the plan ", why);
      state_.status = kCompleted;
    }
    Record(d, now);
    return d;
  }

  d.action = Decision::Action::kHold;
  std::string waiting;
  if (!all_hold) {
    waiting = "a gate fails";
  } else if (!window_clean) {
    waiting = absl::StrCat("gates held for ", DurationText(now - *pass_since_), " of the ",
                           DurationText(options_.window), " window");
  } else {
    waiting = "gates hold";
  }
  d.reason = absl::StrCat(held_text, ", ", waiting, ": ", Figures(sample));
  return d;
}

}  // namespace rerank::ctl
