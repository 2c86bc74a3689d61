// In-memory AuditSink for tests: keeps every recorded event, in order. Thread-safe.
#ifndef RERANK_TESTS_TESTING_FAKE_AUDIT_SINK_H_
#define RERANK_TESTS_TESTING_FAKE_AUDIT_SINK_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/audit_sink.h"
#include "nlohmann/json.hpp"

namespace rerank::testing {

class FakeAuditSink final : public AuditSink {
 public:
  struct Event {
    std::string event_type;
    nlohmann::json fields;
  };

  void Record(const std::string& event_type, nlohmann::json fields) override {
    absl::MutexLock lock(&mu_);
    events_.push_back(Event{event_type, std::move(fields)});
  }

  // A copy of everything recorded so far.
  std::vector<Event> events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }

  std::vector<Event> EventsOfType(const std::string& event_type) const {
    absl::MutexLock lock(&mu_);
    std::vector<Event> out;
    for (const Event& e : events_) {
      if (e.event_type == event_type) out.push_back(e);
    }
    return out;
  }

  size_t size() const {
    absl::MutexLock lock(&mu_);
    return events_.size();
  }

  void Clear() {
    absl::MutexLock lock(&mu_);
    events_.clear();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rerank::testing

#endif  // RERANK_TESTS_TESTING_FAKE_AUDIT_SINK_H_
