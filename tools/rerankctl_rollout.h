// `rerankctl rollout`: a guarded progressive rollout. The pure part lives here: parsing the plan,
// the gates and durations, the persisted state, and RolloutController, the state machine that
// turns a metric sample into a decision (hold, advance, roll back, complete, stop). It does no
// I/O and reads no clock: the caller passes each sample's time, so tests drive it with a fake
// clock and fake samples (tests/rerankctl_rollout_test.cc); rerankctl.cc does the HTTP, the
// sleeping, the state file and the printing.
//
// Semantics (docs/OPERATIONS.md, "Guarded rollout"):
//  - A sample is one reading of the figures. It has "no data" when the server cannot be read, is
//    not ready, or had no requests in its stats window; a gate whose figure does not apply (the
//    cache hit rate while the cache is off) is "n/a" and counts as holding.
//  - A gate fails for a whole evaluation window when every sample of the last `window` failed it:
//    its consecutive failing samples span at least `window` (one sample when window <= interval).
//    Then the controller rolls back to the last good stage and stops. A "no data" sample breaks
//    every streak: missing evidence is neither a pass nor a failure.
//  - It advances when the stage has been held for `hold` and every gate has held (or been n/a) in
//    every sample of the last `window`; from the plan's last stage that completes the rollout.
//  - The last good stage is the stage the rollout advanced from; before the first advance it is
//    the named stage "rollback" (the plain reranker, optional features off).
//  - A sample whose stage is not the one the rollout set means someone changed it by hand: the
//    controller stops without touching it.
//
// Thread-compatible.
#ifndef RERANK_TOOLS_RERANKCTL_ROLLOUT_H_
#define RERANK_TOOLS_RERANKCTL_ROLLOUT_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rerank/admin/v1/admin.pb.h"

namespace rerank::ctl {

// ---- Gates ----

// A metric a gate may test. Each has a /health source (a field of admin.v1.Stats) and/or a
// Prometheus recording rule (deploy/prometheus/rules/rerankd-recording.rules.yml) and a scale
// from the rule's unit to the gate's (seconds -> ms: 1000, ratio -> percent: 100).
struct GateMetric {
  std::string name;        // e.g. "p95_latency_ms"
  std::string health;      // the admin.v1.Stats field; "" = not in /health
  std::string prometheus;  // the recording rule; "" = not in Prometheus
  double prometheus_scale = 1;
  std::string description;
};

// The fixed set, in documentation order: p95_latency_ms, p99_latency_ms, avg_latency_ms,
// error_rate_percent, cache_hit_rate_percent, target_latency_met_rate_percent,
// rate_limited_percent (Prometheus only).
const std::vector<GateMetric>& GateMetrics();
const GateMetric* FindGateMetric(const std::string& name);

struct Gate {
  std::string metric;
  std::string op;  // "<", "<=", ">", ">="
  double threshold = 0;

  bool Holds(double value) const;
  std::string ToString() const;  // "p95_latency_ms<50"
};

// "p95_latency_ms<50,error_rate_percent<0.1": at least one gate, comma separated, no duplicate
// metric+op. InvalidArgument naming the bad item: an unknown metric (listing the known ones), a
// missing/unknown operator, a threshold that is not a finite number.
absl::StatusOr<std::vector<Gate>> ParseGates(const std::string& spec);

// "feature-flags,cache-10,...": rollout stages (RolloutStageNames()), at least one, each once, in
// rollout order. InvalidArgument naming the bad item.
absl::StatusOr<std::vector<std::string>> ParsePlan(const std::string& spec);

// "24h", "30m", "10s", "0.5s", "500ms", "1h30m": a positive, finite duration. InvalidArgument
// naming `flag` otherwise.
absl::StatusOr<absl::Duration> ParsePositiveDuration(const std::string& flag,
                                                     const std::string& text);

// "24h", "1m30s", "1.5s", "250ms": to the millisecond below a minute, else to the second.
std::string DurationText(absl::Duration d);

// ---- Samples ----

struct MetricSample {
  absl::Time time;
  // Empty when usable; else why there is no data (the sample then counts as neither pass nor
  // failure).
  std::string no_data;
  // The stage the server reports; "" when unknown (not checked).
  std::string stage;
  // Metric name -> value, for the metrics that apply; a gate's metric absent here is "n/a".
  std::map<std::string, double> values;
};

// A sample from GET /health (answered with `http_status`): no data when not ready or when no
// request completed in the stats window; cache_hit_rate_percent applies only while the cache is
// enabled. Metrics /health does not report are absent (ValidateGateSources rejects them first).
MetricSample SampleFromHealth(const admin::v1::Health& health, long http_status, absl::Time time);

// InvalidArgument naming each gate whose metric the source cannot provide (with_prometheus:
// Prometheus, else /health).
absl::Status ValidateGateSources(const std::vector<Gate>& gates, bool with_prometheus);

// The PromQL for `gate` (the worst series: max for "<"/"<=", min for ">"/">="), with the label
// matchers in `selector` ("" or e.g. `job="rerankd"`) added to the recording rule.
std::string PrometheusQuery(const Gate& gate, const std::string& selector);
// The request rate query used to tell "no traffic" from figures: sum of
// job:rerank_requests:rate5m{selector}.
std::string PrometheusTrafficQuery(const std::string& selector);
// The value of an instant-query answer (/api/v1/query JSON): nullopt for an empty vector or NaN
// (no data); an error for a failed query or a malformed answer.
absl::StatusOr<std::optional<double>> ParsePrometheusValue(const std::string& body);

// ---- State ----

struct HistoryEntry {
  absl::Time time;
  std::string action;  // start, resume, advance, rollback, complete, stop
  std::string from;
  std::string to;
  std::string reason;
};

struct RolloutState {
  static constexpr int kVersion = 1;
  static constexpr size_t kMaxHistory = 200;  // oldest entries are dropped beyond this

  std::vector<std::string> plan;
  int index = 0;             // the plan stage in force (or rolled back from)
  absl::Time entered_at;     // when plan[index] was entered
  std::string last_good;     // where a rollback goes
  std::string status;        // running | completed | rolled_back
  std::string target_stage;  // the stage the server must be at
  std::vector<HistoryEntry> history;
};

std::string StateToJson(const RolloutState& state);
// InvalidArgument naming the bad field (what the state file holds is checked like input).
absl::StatusOr<RolloutState> StateFromJson(const std::string& text);

// Writes the state to `path` atomically (temp file in the same directory, fsync, rename, fsync
// the directory): a crash leaves the old state or the new one, never a mix.
absl::Status SaveStateFile(const std::string& path, const RolloutState& state);
// nullopt when `path` does not exist; an error naming the file when it cannot be read or parsed.
absl::StatusOr<std::optional<RolloutState>> LoadStateFile(const std::string& path);
// The default --state: rollout-state.json in the directory of rerankd's flags file (flags.path
// from `config_path` and the RERANKER_* environment, as rerankd reads them).
absl::StatusOr<std::string> DefaultStatePath(
    const std::string& config_path,
    const std::function<std::optional<std::string>(const std::string&)>& env);

// ---- Controller ----

struct RolloutOptions {
  std::vector<std::string> plan;
  std::vector<Gate> gates;
  absl::Duration hold = absl::Hours(24);
  absl::Duration interval = absl::Minutes(1);  // how often the caller samples; <= hold
  absl::Duration window = absl::Minutes(5);
};

// InvalidArgument naming the flag: empty plan or gates, non-positive durations, interval > hold.
absl::Status ValidateRolloutOptions(const RolloutOptions& options);

struct Decision {
  enum class Action { kStart, kResume, kHold, kAdvance, kRollback, kComplete, kStop };
  Action action = Action::kHold;
  std::string from;  // the stage before
  std::string to;    // the stage after (== from when unchanged)
  std::string reason;
  // The caller must set the server to `to` (start, resume: idempotent; advance, rollback).
  bool sets_stage() const;
  // The rollout is over (complete, rollback, stop).
  bool finished() const;
};

const char* ActionName(Decision::Action action);
// "2024-05-01T12:00:00Z advance cache-10 -> cache-50: <reason>"
std::string FormatDecision(const Decision& d, absl::Time time);

class RolloutController {
 public:
  // A new rollout at plan[0], entered at `now`; the decision is kStart.
  static absl::StatusOr<RolloutController> Start(RolloutOptions options, absl::Time now);
  // Continues `state` (a saved run). FailedPrecondition when its plan differs from options.plan
  // ("use --reset"); the decision is kResume (kStop when the saved run had already finished).
  static absl::StatusOr<RolloutController> Resume(RolloutOptions options, RolloutState state,
                                                  absl::Time now);

  // The decision made by Start/Resume.
  const Decision& initial() const { return initial_; }

  // Feeds one sample (times must not go backwards) and returns the decision; the state is
  // updated in memory (the caller persists it before acting on the decision). After a finished
  // decision every call returns kStop.
  Decision Observe(const MetricSample& sample);

  const RolloutState& state() const { return state_; }
  bool finished() const { return state_.status != "running"; }

 private:
  RolloutController(RolloutOptions options, RolloutState state)
      : options_(std::move(options)), state_(std::move(state)) {}
  void Record(const Decision& d, absl::Time time);
  void ResetStreaks();
  std::string Figures(const MetricSample& sample) const;

  RolloutOptions options_;
  RolloutState state_;
  Decision initial_;
  std::optional<absl::Time> pass_since_;     // all gates held since
  std::map<size_t, absl::Time> fail_since_;  // gate index -> failing since
};

}  // namespace rerank::ctl

#endif  // RERANK_TOOLS_RERANKCTL_ROLLOUT_H_
