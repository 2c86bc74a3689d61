// Where audit events go. The data plane and the flag store record events through this interface;
// common/audit_log.h implements it with a background JSON-lines writer, tests use
// tests/testing/fake_audit_sink.h.
#ifndef RERANK_COMMON_AUDIT_SINK_H_
#define RERANK_COMMON_AUDIT_SINK_H_

#include <string>

#include "nlohmann/json.hpp"

namespace rerank {

// Thread-safe. Record() never blocks the caller on I/O: an implementation that cannot keep up
// drops the event and counts it.
class AuditSink {
 public:
  virtual ~AuditSink() = default;
  // `event_type` is one of: rerank, rate_limit_violation, flag_change, config_reload, startup,
  // shutdown. `fields` is a JSON object with the event's own fields; the sink adds `timestamp`
  // (RFC 3339 UTC, from its clock) and `event_type`.
  virtual void Record(const std::string& event_type, nlohmann::json fields) = 0;
};

// Discards everything (audit disabled).
class NullAuditSink final : public AuditSink {
 public:
  void Record(const std::string&, nlohmann::json) override {}
};

}  // namespace rerank

#endif  // RERANK_COMMON_AUDIT_SINK_H_
