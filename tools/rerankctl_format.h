// Pure presentation helpers for rerankctl: they turn the admin contract's messages
// (proto/rerank/admin/v1/admin.proto, parsed from the HTTP API's JSON) into the lines operators
// read. No I/O, no clock: callers pass the time in, so every format is unit-tested. An empty
// string field prints as "-".
#ifndef RERANK_TOOLS_RERANKCTL_FORMAT_H_
#define RERANK_TOOLS_RERANKCTL_FORMAT_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "rerank/admin/v1/admin.pb.h"

namespace rerank::ctl {

// Parses an admin HTTP answer into its contract message (common/proto_json.h), ignoring keys this
// rerankctl does not know, so a newer server's additions do not break it; a mistyped field is an
// InvalidArgument naming its path, prefixed with `what` (e.g. "GET /health").
absl::Status ParseAnswer(absl::string_view json, google::protobuf::Message* message,
                         absl::string_view what);

// The flags that are set, as ("cache.enabled", "true") pairs sorted by name; "stage" is left out
// (callers show it apart). Walks the message by reflection, so a flag added to the contract shows
// up without a change here.
std::vector<std::pair<std::string, std::string>> FlattenFlags(const admin::v1::Flags& flags);

// `rerankctl stage` output from the GET /flags answer before the change and the POST /flags answer
// after it: "stage: A -> B (by X at T)" then every effective flag, changed ones marked with their
// old value.
std::string FormatStageChange(const admin::v1::FlagsView& before,
                              const admin::v1::FlagsView& after);

// `rerankctl status` summary from /health (either status code) and GET /flags (nullptr when that
// call failed).
std::string FormatStatus(const admin::v1::Health& health, const admin::v1::FlagsView* flags,
                         std::string_view admin_url);

// `rerankctl reload` output: whether an external edit was applied, the stage in force, and the
// flags file's error if any.
std::string FormatReload(const admin::v1::ReloadResponse& reload);

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
std::string FormatMonitorLine(const admin::v1::Health& health, absl::Time now,
                              const std::optional<MonitorSample>& previous, absl::TimeZone tz);
// The sample to remember for the next line.
MonitorSample SampleOf(const admin::v1::Health& health, absl::Time now);
// A monitor line for a failed poll (server unreachable, bad answer), aligned with the others.
std::string FormatMonitorError(absl::Time now, absl::TimeZone tz, std::string_view error);

// `text` on one line (newlines and tabs as spaces), cut to at most `max_bytes` bytes without
// splitting a UTF-8 sequence, with "..." when cut.
std::string Snippet(std::string_view text, size_t max_bytes);

}  // namespace rerank::ctl

#endif  // RERANK_TOOLS_RERANKCTL_FORMAT_H_
