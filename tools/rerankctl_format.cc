#include "tools/rerankctl_format.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/proto_json.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"

namespace rerank::ctl {
namespace {

using admin::v1::Flags;
using admin::v1::FlagsView;
using admin::v1::Health;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

std::string Fixed(double v, int decimals) {
  if (!std::isfinite(v)) return "-";
  return absl::StrFormat("%.*f", decimals, v);
}

std::string Integer(double v) {
  if (!std::isfinite(v)) return "-";
  return absl::StrFormat("%.0f", v);
}

std::string Duration(uint32_t seconds) {
  int64_t s = seconds;
  const int64_t d = s / 86400, h = (s / 3600) % 24, m = (s / 60) % 60;
  s %= 60;
  if (d > 0) return absl::StrFormat("%dd %dh %dm", d, h, m);
  if (h > 0) return absl::StrFormat("%dh %dm %ds", h, m, s);
  if (m > 0) return absl::StrFormat("%dm %ds", m, s);
  return absl::StrFormat("%ds", s);
}

// One singular scalar field as the JSON API shows it ("true", "10", "cache-10").
std::string ScalarText(const Message& m, const FieldDescriptor* f) {
  const Reflection* r = m.GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(m, f) ? "true" : "false";
    case FieldDescriptor::CPPTYPE_INT32:
      return absl::StrCat(r->GetInt32(m, f));
    case FieldDescriptor::CPPTYPE_INT64:
      return absl::StrCat(r->GetInt64(m, f));
    case FieldDescriptor::CPPTYPE_UINT32:
      return absl::StrCat(r->GetUInt32(m, f));
    case FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat(r->GetUInt64(m, f));
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return absl::StrCat(r->GetDouble(m, f));
    case FieldDescriptor::CPPTYPE_FLOAT:
      return absl::StrCat(r->GetFloat(m, f));
    case FieldDescriptor::CPPTYPE_STRING:
      return r->GetString(m, f);
    case FieldDescriptor::CPPTYPE_ENUM:
      return r->GetEnum(m, f)->name();
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return "?";
}

// Appends the set fields of `m` under `prefix` ("cache" -> "cache.enabled"), nested messages
// flattened with dots.
void Flatten(const Message& m, const std::string& prefix,
             std::vector<std::pair<std::string, std::string>>* out) {
  const Reflection* r = m.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(m, &fields);  // the fields that are set (presence), in field-number order
  for (const FieldDescriptor* f : fields) {
    const std::string name = prefix.empty() ? f->name() : absl::StrCat(prefix, ".", f->name());
    if (f->is_repeated()) continue;  // Flags has none; a list is no single flag value
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      Flatten(r->GetMessage(m, f), name, out);
    } else {
      out->emplace_back(name, ScalarText(m, f));
    }
  }
}

constexpr char kMonitorFormat[] = "%-8s  %-13s %9s %7s %8s %8s %8s %10s %7s %11s";

}  // namespace

absl::Status ParseAnswer(absl::string_view json, Message* message, absl::string_view what) {
  JsonParseOptions options;
  options.ignore_unknown_fields = true;
  absl::Status s = JsonToMessage(json, message, what, options);
  if (s.ok() || absl::StartsWith(s.message(), what)) return s;
  // Field errors name the field's path alone; say which answer it was in.
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

std::vector<std::pair<std::string, std::string>> FlattenFlags(const Flags& flags) {
  Flags without_stage = flags;
  without_stage.clear_stage();
  std::vector<std::pair<std::string, std::string>> out;
  Flatten(without_stage, "", &out);
  std::sort(out.begin(), out.end());
  return out;
}

std::string FormatStageChange(const FlagsView& before, const FlagsView& after) {
  std::string out = absl::StrCat("stage: ", before.stage().empty() ? "?" : before.stage(), " -> ",
                                 after.stage().empty() ? "?" : after.stage());
  const std::string& by = after.updated_by();
  const std::string& at = after.updated_at();
  if (!by.empty() || !at.empty()) {
    absl::StrAppend(&out, " (by ", by.empty() ? "?" : by, at.empty() ? "" : " at ", at, ")");
  }
  absl::StrAppend(&out, "\neffective flags:\n");
  if (!after.has_flags()) {
    absl::StrAppend(&out, "  (the server's answer has no \"flags\" object)\n");
    return out;
  }
  const std::vector<std::pair<std::string, std::string>> old_flat = FlattenFlags(before.flags());
  for (const auto& [key, value] : FlattenFlags(after.flags())) {
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

std::string FormatStatus(const Health& health, const FlagsView* flags, std::string_view admin_url) {
  std::string out;
  absl::StrAppend(&out, "rerankd at ", std::string(admin_url), ": ", OrDash(health.status()), ", ",
                  health.ready() ? "ready" : "NOT READY", ", up ",
                  Duration(health.uptime_seconds()), "\n");
  const admin::v1::Model& m = health.model();
  std::string model =
      absl::StrCat(OrDash(m.name()), " version ", OrDash(m.version()), ", ", OrDash(m.precision()));
  if (m.demo()) absl::StrAppend(&model, " (DEMO model: random weights, scores are meaningless)");
  absl::StrAppend(&out, "model:    ", model, "\n");

  std::string stage = OrDash(
      flags != nullptr && !flags->stage().empty() ? flags->stage() : health.reranker().stage());
  if (flags != nullptr) {
    const std::string& by = flags->updated_by();
    const std::string& at = flags->updated_at();
    if (!by.empty() || !at.empty()) {
      absl::StrAppend(&stage, " (set by ", by.empty() ? "?" : by, at.empty() ? "" : " at ", at,
                      ")");
    }
  }
  absl::StrAppend(&out, "stage:    ", stage, "\n");
  absl::StrAppend(&out,
                  "reranker: ", health.reranker().enabled() ? "enabled" : "DISABLED (pass-through)",
                  "\n");

  const admin::v1::Stats& s = health.reranker().stats();
  std::string traffic = "-";
  if (flags != nullptr && flags->flags().cache().has_traffic_percent()) {
    traffic = absl::StrCat(flags->flags().cache().traffic_percent());
  } else if (health.flags().cache().has_traffic_percent()) {
    traffic = absl::StrCat(health.flags().cache().traffic_percent());
  }
  std::string cache;
  if (!s.cache_enabled()) {
    cache = "disabled";
  } else {
    cache = absl::StrCat("enabled for ", traffic, "% of traffic, ", s.cache_size(), "/",
                         s.cache_max_size(), " entries, hit rate ",
                         Fixed(s.cache_hit_rate_percent(), 1), "%");
  }
  absl::StrAppend(&out, "cache:    ", cache, "\n");
  absl::StrAppend(&out, "traffic:  ", Integer(s.total_reranks()), " reranks since start; ",
                  s.requests_in_window(), " requests in the last ", s.window_seconds(), " s\n");
  absl::StrAppend(&out, "latency:  avg ", Fixed(s.avg_latency_ms(), 2), " ms, p95 ",
                  Fixed(s.p95_latency_ms(), 2), " ms, p99 ", Fixed(s.p99_latency_ms(), 2),
                  " ms; target ", s.target_latency_ms(), " ms met by ",
                  Fixed(s.target_latency_met_rate_percent(), 1), "%\n");
  absl::StrAppend(&out, "errors:   ", Fixed(s.error_rate_percent(), 1),
                  "% of requests in the window\n");
  return out;
}

std::string FormatReload(const admin::v1::ReloadResponse& reload) {
  const std::string stage = reload.flags().stage().empty() ? "?" : reload.flags().stage();
  std::string out =
      reload.reloaded()
          ? absl::StrCat("reloaded: the flags file had changed; applied (stage ", stage, ")\n")
          : absl::StrCat("reloaded: the flags file is unchanged (stage ", stage, ")\n");
  if (!reload.error().empty()) {
    absl::StrAppend(&out, "flags file error: ", reload.error(),
                    "\nthe last good flags stay in force; fix the file and reload again\n");
  }
  return out;
}

std::string DescribeHttpError(long status, const std::string& body) {
  std::string message;
  admin::v1::Error error;
  if (ParseAnswer(body, &error, "error body").ok() && !error.error().empty()) {
    message = error.error();
  } else {
    message = Snippet(body, 200);
  }
  std::string out = absl::StrCat("HTTP ", status, ": ", message);
  if (status == 401) {
    absl::StrAppend(&out,
                    "\nhint: the admin token is missing or wrong; pass --token-file PATH (a "
                    "server with no admin.token configured writes a generated one to its "
                    "admin.token_file, default admin.token next to the flags file, e.g. "
                    "data/admin.token) or --token TOKEN, or set RERANKER_ADMIN_TOKEN");
  } else if (status == 403) {
    absl::StrAppend(&out,
                    "\nhint: the server has no admin.token configured, so state-changing "
                    "calls are disabled; set admin.token in its config (or "
                    "RERANKER_ADMIN_TOKEN in its environment) and restart it");
  }
  return out;
}

std::string MonitorHeader() {
  return absl::StrFormat(kMonitorFormat, "TIME", "STAGE", "RERANKS", "REQ/S", "AVG_MS", "P95_MS",
                         "P99_MS", "CACHE_HIT%", "ERROR%", "TARGET_MET%");
}

MonitorSample SampleOf(const Health& health, absl::Time now) {
  return MonitorSample{now, health.reranker().stats().total_reranks()};
}

std::string FormatMonitorLine(const Health& health, absl::Time now,
                              const std::optional<MonitorSample>& previous, absl::TimeZone tz) {
  const admin::v1::Stats& s = health.reranker().stats();
  const double total = s.total_reranks();
  std::string rate = "-";
  if (previous.has_value() && total >= previous->total_reranks) {
    const double seconds = absl::ToDoubleSeconds(now - previous->at);
    if (seconds > 0) rate = absl::StrFormat("%.1f", (total - previous->total_reranks) / seconds);
  }
  std::string stage = OrDash(health.reranker().stage());
  if (!health.reranker().enabled()) stage = absl::StrCat(stage, "(off)");
  return absl::StrFormat(kMonitorFormat, absl::FormatTime("%H:%M:%S", now, tz), stage,
                         Integer(total), rate, Fixed(s.avg_latency_ms(), 2),
                         Fixed(s.p95_latency_ms(), 2), Fixed(s.p99_latency_ms(), 2),
                         Fixed(s.cache_hit_rate_percent(), 1), Fixed(s.error_rate_percent(), 1),
                         Fixed(s.target_latency_met_rate_percent(), 1));
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
