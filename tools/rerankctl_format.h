// Pure presentation helpers for rerankctl: they turn the admin API's JSON (see docs/OPERATIONS.md)
// into the lines operators read. No I/O, no clock: callers pass the time in, so every format is
// unit-tested. None of them throws: a missing or mistyped JSON field prints as "-".
#ifndef RERANK_TOOLS_RERANKCTL_FORMAT_H_
#define RERANK_TOOLS_RERANKCTL_FORMAT_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace rerank::ctl {

// One field of /health's .reranker.stats, as the admin API contract defines it.
struct StatsField {
  std::string name;
  bool is_bool = false;  // else a JSON number
};
// Every field of the contract's .reranker.stats, in contract order.
const std::vector<StatsField>& StatsFields();
// What is wrong with health.reranker.stats: one entry per missing or mistyped field, e.g.
// "p95_latency_ms (missing)", "cache_enabled (expected bool, got string)"; or a single entry when
// the object itself is absent. Empty when everything the contract promises is there.
std::vector<std::string> StatsProblems(const nlohmann::json& health);

// A nested flags object ({"stage": .., "cache": {"enabled": true, ..}, ..}) as ("cache.enabled",
// "true") pairs, sections in the object's order; "stage" is left out (callers show it apart).
std::vector<std::pair<std::string, std::string>> FlattenFlags(const nlohmann::json& flags);

// `rerankctl stage` output from the GET /flags response before the change and the POST /flags
// response after it: "stage: A -> B (by X at T)" then every effective flag, changed ones marked
// with their old value.
std::string FormatStageChange(const nlohmann::json& before, const nlohmann::json& after);

// `rerankctl status` summary from /health (either status code) and GET /flags (may be null when
// that call failed).
std::string FormatStatus(const nlohmann::json& health, const nlohmann::json& flags,
                         std::string_view admin_url);

// Explains a non-2xx admin answer: the server's {"error": ...} (or the raw body) plus what to do
// for 401 (wrong/missing token) and 403 (no token configured on the server).
std::string DescribeHttpError(long status, const std::string& body);

// One /health reading, kept to compute the request rate between two monitor lines.
struct MonitorSample {
  absl::Time at;
  double total_reranks = 0;
};
// Column header for FormatMonitorLine.
std::string MonitorHeader();
// One monitor line: local time (in `tz`), stage, total reranks, req/s since `previous` ("-" for
// the first line or when the counter went backwards, i.e. the server restarted), avg/p95/p99 ms,
// cache hit %, error %, target-met %.
std::string FormatMonitorLine(const nlohmann::json& health, absl::Time now,
                              const std::optional<MonitorSample>& previous, absl::TimeZone tz);
// The sample to remember for the next line; nullopt when health has no numeric total_reranks.
std::optional<MonitorSample> SampleOf(const nlohmann::json& health, absl::Time now);
// A monitor line for a failed poll (server unreachable, bad answer), aligned with the others.
std::string FormatMonitorError(absl::Time now, absl::TimeZone tz, std::string_view error);

// `text` on one line (newlines and tabs as spaces), cut to at most `max_bytes` bytes without
// splitting a UTF-8 sequence, with "..." when cut.
std::string Snippet(std::string_view text, size_t max_bytes);

}  // namespace rerank::ctl

#endif  // RERANK_TOOLS_RERANKCTL_FORMAT_H_
