#include "tools/rerankctl_format.h"

#include <cmath>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/json_util.h"

namespace rerank::ctl {
namespace {

using nlohmann::json;

// Walks `path` through nested objects; nullptr when any step is missing or not an object.
const json* Find(const json& j, std::initializer_list<const char*> path) {
  const json* cur = &j;
  for (const char* key : path) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(key);
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return cur;
}

std::optional<double> Number(const json& j, std::initializer_list<const char*> path) {
  const json* v = Find(j, path);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  return v->get<double>();
}

std::optional<bool> Bool(const json& j, std::initializer_list<const char*> path) {
  const json* v = Find(j, path);
  if (v == nullptr || !v->is_boolean()) return std::nullopt;
  return v->get<bool>();
}

std::string String(const json& j, std::initializer_list<const char*> path,
                   const std::string& fallback = "-") {
  const json* v = Find(j, path);
  if (v == nullptr || !v->is_string()) return fallback;
  return v->get<std::string>();
}

std::string Fixed(std::optional<double> v, int decimals) {
  if (!v.has_value() || !std::isfinite(*v)) return "-";
  return absl::StrFormat("%.*f", decimals, *v);
}

std::string Integer(std::optional<double> v) {
  if (!v.has_value() || !std::isfinite(*v)) return "-";
  return absl::StrFormat("%.0f", *v);
}

std::string Scalar(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  return DumpJson(v);
}

std::string Duration(std::optional<double> seconds) {
  if (!seconds.has_value() || !std::isfinite(*seconds) || *seconds < 0) return "-";
  int64_t s = static_cast<int64_t>(*seconds);
  const int64_t d = s / 86400, h = (s / 3600) % 24, m = (s / 60) % 60;
  s %= 60;
  if (d > 0) return absl::StrFormat("%dd %dh %dm", d, h, m);
  if (h > 0) return absl::StrFormat("%dh %dm %ds", h, m, s);
  if (m > 0) return absl::StrFormat("%dm %ds", m, s);
  return absl::StrFormat("%ds", s);
}

const char* TypeName(const json& v) {
  if (v.is_boolean()) return "bool";
  if (v.is_number()) return "number";
  if (v.is_string()) return "string";
  if (v.is_null()) return "null";
  if (v.is_array()) return "array";
  return "object";
}

constexpr char kMonitorFormat[] = "%-8s  %-13s %9s %7s %8s %8s %8s %10s %7s %11s";

}  // namespace

const std::vector<StatsField>& StatsFields() {
  static const auto* const fields = new std::vector<StatsField>{
      {"total_reranks", false},
      {"avg_latency_ms", false},
      {"p95_latency_ms", false},
      {"p99_latency_ms", false},
      {"cache_hit_rate_percent", false},
      {"target_latency_met_rate_percent", false},
      {"cache_enabled", true},
      {"cache_size", false},
      {"cache_max_size", false},
      {"target_latency_ms", false},
      {"error_rate_percent", false},
      {"window_seconds", false},
      {"requests_in_window", false},
  };
  return *fields;
}

std::vector<std::string> StatsProblems(const json& health) {
  const json* stats = Find(health, {"reranker", "stats"});
  if (stats == nullptr) return {".reranker.stats is missing"};
  if (!stats->is_object()) return {absl::StrCat(".reranker.stats is a ", TypeName(*stats), ", not an object")};
  std::vector<std::string> problems;
  for (const StatsField& f : StatsFields()) {
    auto it = stats->find(f.name);
    if (it == stats->end()) {
      problems.push_back(absl::StrCat(f.name, " (missing)"));
    } else if (f.is_bool ? !it->is_boolean() : !it->is_number()) {
      problems.push_back(absl::StrCat(f.name, " (expected ", f.is_bool ? "bool" : "number", ", got ",
                                      TypeName(*it), ")"));
    }
  }
  return problems;
}

std::vector<std::pair<std::string, std::string>> FlattenFlags(const json& flags) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!flags.is_object()) return out;
  for (const auto& [section, value] : flags.items()) {
    if (section == "stage") continue;
    if (value.is_object()) {
      for (const auto& [key, leaf] : value.items()) {
        out.emplace_back(absl::StrCat(section, ".", key), Scalar(leaf));
      }
    } else {
      out.emplace_back(section, Scalar(value));
    }
  }
  return out;
}

std::string FormatStageChange(const json& before, const json& after) {
  std::string out = absl::StrCat("stage: ", String(before, {"stage"}, "?"), " -> ",
                                 String(after, {"stage"}, "?"));
  const std::string by = String(after, {"updated_by"}, "");
  const std::string at = String(after, {"updated_at"}, "");
  if (!by.empty() || !at.empty()) {
    absl::StrAppend(&out, " (by ", by.empty() ? "?" : by, at.empty() ? "" : " at ", at, ")");
  }
  absl::StrAppend(&out, "\neffective flags:\n");
  const json* old_flags = Find(before, {"flags"});
  std::vector<std::pair<std::string, std::string>> old_flat;
  if (old_flags != nullptr) old_flat = FlattenFlags(*old_flags);
  const json* new_flags = Find(after, {"flags"});
  if (new_flags == nullptr) {
    absl::StrAppend(&out, "  (the server's answer has no \"flags\" object)\n");
    return out;
  }
  for (const auto& [key, value] : FlattenFlags(*new_flags)) {
    std::string line = absl::StrFormat("  %-24s %s", key, value);
    for (const auto& [old_key, old_value] : old_flat) {
      if (old_key == key && old_value != value) {
        line = absl::StrFormat("  %-24s %-6s (was %s)", key, value, old_value);
      }
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string FormatStatus(const json& health, const json& flags, std::string_view admin_url) {
  std::string out;
  const std::optional<bool> ready = Bool(health, {"ready"});
  absl::StrAppend(&out, "rerankd at ", std::string(admin_url), ": ", String(health, {"status"}), ", ",
                  !ready.has_value() ? "ready=?" : (*ready ? "ready" : "NOT READY"), ", up ",
                  Duration(Number(health, {"uptime_seconds"})), "\n");
  std::string model = absl::StrCat(String(health, {"model", "name"}), " version ",
                                   String(health, {"model", "version"}), ", ",
                                   String(health, {"model", "precision"}));
  if (Bool(health, {"model", "demo"}).value_or(false)) {
    absl::StrAppend(&model, " (DEMO model: random weights, scores are meaningless)");
  }
  absl::StrAppend(&out, "model:    ", model, "\n");

  std::string stage = String(flags, {"stage"}, String(health, {"reranker", "stage"}));
  const std::string by = String(flags, {"updated_by"}, "");
  const std::string at = String(flags, {"updated_at"}, "");
  if (!by.empty() || !at.empty()) {
    absl::StrAppend(&stage, " (set by ", by.empty() ? "?" : by, at.empty() ? "" : " at ", at, ")");
  }
  absl::StrAppend(&out, "stage:    ", stage, "\n");
  const std::optional<bool> enabled = Bool(health, {"reranker", "enabled"});
  absl::StrAppend(&out, "reranker: ",
                  !enabled.has_value() ? "-" : (*enabled ? "enabled" : "DISABLED (pass-through)"),
                  "\n");

  const json* stats = Find(health, {"reranker", "stats"});
  const json empty = json::object();
  const json& s = stats != nullptr ? *stats : empty;
  std::optional<double> traffic = Number(flags, {"flags", "cache", "traffic_percent"});
  if (!traffic.has_value()) traffic = Number(health, {"flags", "cache", "traffic_percent"});
  const std::optional<bool> cache_on = Bool(s, {"cache_enabled"});
  std::string cache;
  if (cache_on.has_value() && !*cache_on) {
    cache = "disabled";
  } else {
    cache = absl::StrCat(cache_on.has_value() ? "enabled" : "-", " for ", Integer(traffic),
                         "% of traffic, ", Integer(Number(s, {"cache_size"})), "/",
                         Integer(Number(s, {"cache_max_size"})), " entries, hit rate ",
                         Fixed(Number(s, {"cache_hit_rate_percent"}), 1), "%");
  }
  absl::StrAppend(&out, "cache:    ", cache, "\n");
  absl::StrAppend(&out, "traffic:  ", Integer(Number(s, {"total_reranks"})),
                  " reranks since start; ", Integer(Number(s, {"requests_in_window"})),
                  " requests in the last ", Integer(Number(s, {"window_seconds"})), " s\n");
  absl::StrAppend(&out, "latency:  avg ", Fixed(Number(s, {"avg_latency_ms"}), 2), " ms, p95 ",
                  Fixed(Number(s, {"p95_latency_ms"}), 2), " ms, p99 ",
                  Fixed(Number(s, {"p99_latency_ms"}), 2), " ms; target ",
                  Integer(Number(s, {"target_latency_ms"})), " ms met by ",
                  Fixed(Number(s, {"target_latency_met_rate_percent"}), 1), "%\n");
  absl::StrAppend(&out, "errors:   ", Fixed(Number(s, {"error_rate_percent"}), 1),
                  "% of requests in the window\n");
  return out;
}

std::string DescribeHttpError(long status, const std::string& body) {
  std::string message;
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (const json* e = Find(parsed, {"error"}); e != nullptr && e->is_string()) {
    message = e->get<std::string>();
  } else {
    message = Snippet(body, 200);
  }
  std::string out = absl::StrCat("HTTP ", status, ": ", message);
  if (status == 401) {
    absl::StrAppend(&out, "\nhint: the admin token is missing or wrong; pass --token TOKEN or set "
                          "RERANKER_ADMIN_TOKEN to the server's admin.token");
  } else if (status == 403) {
    absl::StrAppend(&out, "\nhint: the server has no admin.token configured, so state-changing "
                          "calls are disabled; set admin.token in its config (or "
                          "RERANKER_ADMIN_TOKEN in its environment) and restart it");
  }
  return out;
}

std::string MonitorHeader() {
  return absl::StrFormat(kMonitorFormat, "TIME", "STAGE", "RERANKS", "REQ/S", "AVG_MS", "P95_MS",
                         "P99_MS", "CACHE_HIT%", "ERROR%", "TARGET_MET%");
}

std::optional<MonitorSample> SampleOf(const json& health, absl::Time now) {
  std::optional<double> total = Number(health, {"reranker", "stats", "total_reranks"});
  if (!total.has_value()) return std::nullopt;
  return MonitorSample{now, *total};
}

std::string FormatMonitorLine(const json& health, absl::Time now,
                              const std::optional<MonitorSample>& previous, absl::TimeZone tz) {
  const std::optional<double> total = Number(health, {"reranker", "stats", "total_reranks"});
  std::string rate = "-";
  if (previous.has_value() && total.has_value() && *total >= previous->total_reranks) {
    const double seconds = absl::ToDoubleSeconds(now - previous->at);
    if (seconds > 0) rate = absl::StrFormat("%.1f", (*total - previous->total_reranks) / seconds);
  }
  std::string stage = String(health, {"reranker", "stage"});
  if (Bool(health, {"reranker", "enabled"}) == std::optional<bool>(false)) {
    stage = absl::StrCat(stage, "(off)");
  }
  auto stat = [&health](const char* name) { return Number(health, {"reranker", "stats", name}); };
  return absl::StrFormat(kMonitorFormat, absl::FormatTime("%H:%M:%S", now, tz), stage,
                         Integer(total), rate, Fixed(stat("avg_latency_ms"), 2),
                         Fixed(stat("p95_latency_ms"), 2), Fixed(stat("p99_latency_ms"), 2),
                         Fixed(stat("cache_hit_rate_percent"), 1),
                         Fixed(stat("error_rate_percent"), 1),
                         Fixed(stat("target_latency_met_rate_percent"), 1));
}

std::string FormatMonitorError(absl::Time now, absl::TimeZone tz, std::string_view error) {
  return absl::StrCat(absl::FormatTime("%H:%M:%S", now, tz), "  ERROR ", std::string(error));
}

std::string Snippet(std::string_view text, size_t max_bytes) {
  std::string one_line(text);
  for (char& c : one_line) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  if (one_line.size() <= max_bytes) return one_line;
  size_t cut = max_bytes >= 3 ? max_bytes - 3 : 0;
  // Back off to the start of a UTF-8 sequence (continuation bytes are 10xxxxxx).
  while (cut > 0 && (static_cast<unsigned char>(one_line[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(one_line.substr(0, cut), "...");
}

}  // namespace rerank::ctl
