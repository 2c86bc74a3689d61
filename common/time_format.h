// Timestamps as written in the audit log, the flags file (updated_at) and the admin API.
#ifndef RERANK_COMMON_TIME_FORMAT_H_
#define RERANK_COMMON_TIME_FORMAT_H_

#include <string>

#include "absl/time/time.h"

namespace rerank {

// RFC 3339 in UTC with milliseconds, e.g. "2024-05-01T12:00:00.123Z" (always 3 fraction digits,
// so the strings sort like the times they name).
inline std::string FormatRfc3339Millis(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

}  // namespace rerank

#endif  // RERANK_COMMON_TIME_FORMAT_H_
