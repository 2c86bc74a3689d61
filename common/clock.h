// Injectable time source. Production code takes a `Clock*` (not owned, must outlive its users)
// so that time-based logic (token buckets, TTLs, batching delays, rotation) is tested with
// tests/testing/fake_clock.h instead of sleeps.
#ifndef RERANK_COMMON_CLOCK_H_
#define RERANK_COMMON_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rerank {

// Thread-safe: implementations may be called from any thread.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
};

// The wall clock. Stateless; RealClock::Get() returns a process-wide instance that is safe to
// share (it has no state, so this is not a mutable singleton).
class RealClock final : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  static RealClock* Get() {
    static RealClock* clock = new RealClock();
    return clock;
  }
};

}  // namespace rerank

#endif  // RERANK_COMMON_CLOCK_H_
