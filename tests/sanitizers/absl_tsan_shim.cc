// ThreadSanitizer builds only (RERANK_SANITIZE=thread): teaches TSAN about absl::Mutex.
//
// Why: Debian's libabsl_synchronization.so is not built with -fsanitize=thread, so the
// ABSL_TSAN_MUTEX_* annotations inside absl::Mutex are compiled out and TSAN sees no
// happens-before edge at any Lock()/Unlock(): every ABSL_GUARDED_BY field looks racy (78 of 285
// tests failed on exactly that). Rebuilding abseil, gRPC and protobuf instrumented is not possible
// here, so this file does what the annotations would have done: it defines the out-of-line
// absl::Mutex / CondVar / Notification entry points in the executable (which takes precedence over
// the shared library, also for calls made from inside gRPC), tells TSAN about the lock operation
// with the __tsan_mutex_* interface, and forwards to the real function found with
// dlsym(RTLD_NEXT). The work inside the real function is ignored by TSAN (it is uninstrumented
// anyway), exactly as in abseil's own annotated build. Races in our code stay fully visible.
//
// Linked into every executable of the TSAN build by the top-level CMakeLists.txt.
#ifndef __SANITIZE_THREAD__
#error "absl_tsan_shim.cc is only for -fsanitize=thread builds"
#endif

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

#define RERANK_STR2(x) #x
#define RERANK_STR(x) RERANK_STR2(x)

// "_ZN4absl<len><inline namespace>" + suffix: the mangled name in the real library.
std::string Mangled(const char* prefix, const char* suffix) {
  const char* ns = RERANK_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  return std::string(prefix) + "4absl" + std::to_string(std::strlen(ns)) + ns + suffix;
}

void* Real(const char* prefix, const char* suffix) {
  const std::string name = Mangled(prefix, suffix);
  void* fn = dlsym(RTLD_NEXT, name.c_str());
  if (fn == nullptr) {
    std::fprintf(stderr, "absl_tsan_shim: %s not found in the real abseil\n", name.c_str());
    std::abort();
  }
  return fn;
}

// Resolves once per entry point; the static local is thread-safe (and uninstrumented libc++abi
// guard code is fine for TSAN).
#define REAL(type, prefix, suffix) \
  static const auto real = reinterpret_cast<type>(Real(prefix, suffix))

constexpr unsigned kRead = __tsan_mutex_read_lock;

// The real functions call each other through the PLT too (AwaitWithTimeout calls
// AwaitWithDeadline, Notify calls Lock, ...), which lands back in this file: only the outermost
// call on a thread annotates.
thread_local int nesting = 0;
class Outermost {
 public:
  Outermost() : outer_(nesting++ == 0) {}
  ~Outermost() { --nesting; }
  Outermost(const Outermost&) = delete;
  Outermost& operator=(const Outermost&) = delete;
  explicit operator bool() const { return outer_; }

 private:
  const bool outer_;
};

// Waiting releases the mutex and reacquires it before returning.
void AnnotateWaitBegin(void* mu, unsigned flags) {
  __tsan_mutex_pre_unlock(mu, flags);
  __tsan_mutex_post_unlock(mu, flags);
  __tsan_mutex_pre_lock(mu, flags);
}
void AnnotateWaitEnd(void* mu, unsigned flags) { __tsan_mutex_post_lock(mu, flags, 0); }

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

Mutex::~Mutex() {
  REAL(void (*)(Mutex*), "_ZN", "5MutexD2Ev");
  const Outermost outer;
  if (outer) __tsan_mutex_destroy(this, 0);
  real(this);
}

void Mutex::Lock() {
  REAL(void (*)(Mutex*), "_ZN", "5Mutex4LockEv");
  const Outermost outer;
  if (outer) __tsan_mutex_pre_lock(this, 0);
  real(this);
  if (outer) __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::Unlock() {
  REAL(void (*)(Mutex*), "_ZN", "5Mutex6UnlockEv");
  const Outermost outer;
  if (outer) __tsan_mutex_pre_unlock(this, 0);
  real(this);
  if (outer) __tsan_mutex_post_unlock(this, 0);
}

bool Mutex::TryLock() {
  REAL(bool (*)(Mutex*), "_ZN", "5Mutex7TryLockEv");
  const Outermost outer;
  if (outer) __tsan_mutex_pre_lock(this, __tsan_mutex_try_lock);
  const bool locked = real(this);
  if (outer)
    __tsan_mutex_post_lock(this,
                           __tsan_mutex_try_lock | (locked ? 0 : __tsan_mutex_try_lock_failed), 0);
  return locked;
}

void Mutex::ReaderLock() {
  REAL(void (*)(Mutex*), "_ZN", "5Mutex10ReaderLockEv");
  const Outermost outer;
  if (outer) __tsan_mutex_pre_lock(this, kRead);
  real(this);
  if (outer) __tsan_mutex_post_lock(this, kRead, 0);
}

void Mutex::ReaderUnlock() {
  REAL(void (*)(Mutex*), "_ZN", "5Mutex12ReaderUnlockEv");
  const Outermost outer;
  if (outer) __tsan_mutex_pre_unlock(this, kRead);
  real(this);
  if (outer) __tsan_mutex_post_unlock(this, kRead);
}

bool Mutex::ReaderTryLock() {
  REAL(bool (*)(Mutex*), "_ZN", "5Mutex13ReaderTryLockEv");
  const Outermost outer;
  if (outer) __tsan_mutex_pre_lock(this, __tsan_mutex_try_read_lock);
  const bool locked = real(this);
  if (outer)
    __tsan_mutex_post_lock(
        this, locked ? __tsan_mutex_try_read_lock : __tsan_mutex_try_read_lock_failed, 0);
  return locked;
}

void Mutex::LockWhen(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&), "_ZN", "5Mutex8LockWhenERKNS0_9ConditionE");
  const Outermost outer;
  if (outer) __tsan_mutex_pre_lock(this, 0);
  real(this, cond);
  if (outer) __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&), "_ZN", "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  const Outermost outer;
  if (outer) __tsan_mutex_pre_lock(this, kRead);
  real(this, cond);
  if (outer) __tsan_mutex_post_lock(this, kRead, 0);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  REAL(bool (*)(Mutex*, const Condition&, Duration), "_ZN",
       "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const Outermost outer;
  if (outer) __tsan_mutex_pre_lock(this, 0);
  const bool met = real(this, cond, timeout);
  if (outer) __tsan_mutex_post_lock(this, 0, 0);  // held either way
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  REAL(bool (*)(Mutex*, const Condition&, Time), "_ZN",
       "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const Outermost outer;
  if (outer) __tsan_mutex_pre_lock(this, 0);
  const bool met = real(this, cond, deadline);
  if (outer) __tsan_mutex_post_lock(this, 0, 0);
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  REAL(bool (*)(Mutex*, const Condition&, Duration), "_ZN",
       "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const Outermost outer;
  if (outer) __tsan_mutex_pre_lock(this, kRead);
  const bool met = real(this, cond, timeout);
  if (outer) __tsan_mutex_post_lock(this, kRead, 0);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  REAL(bool (*)(Mutex*, const Condition&, Time), "_ZN",
       "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const Outermost outer;
  if (outer) __tsan_mutex_pre_lock(this, kRead);
  const bool met = real(this, cond, deadline);
  if (outer) __tsan_mutex_post_lock(this, kRead, 0);
  return met;
}

// Await* are called with the mutex held (writer or reader; TSAN only needs the release/acquire,
// so both are modelled as a writer wait, which is what our code does).
void Mutex::Await(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&), "_ZN", "5Mutex5AwaitERKNS0_9ConditionE");
  const Outermost outer;
  if (outer) AnnotateWaitBegin(this, 0);
  real(this, cond);
  if (outer) AnnotateWaitEnd(this, 0);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  REAL(bool (*)(Mutex*, const Condition&, Duration), "_ZN",
       "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const Outermost outer;
  if (outer) AnnotateWaitBegin(this, 0);
  const bool met = real(this, cond, timeout);
  if (outer) AnnotateWaitEnd(this, 0);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  REAL(bool (*)(Mutex*, const Condition&, Time), "_ZN",
       "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const Outermost outer;
  if (outer) AnnotateWaitBegin(this, 0);
  const bool met = real(this, cond, deadline);
  if (outer) AnnotateWaitEnd(this, 0);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  REAL(void (*)(CondVar*, Mutex*), "_ZN", "7CondVar4WaitEPNS0_5MutexE");
  const Outermost outer;
  if (outer) AnnotateWaitBegin(mu, 0);
  real(this, mu);
  if (outer) AnnotateWaitEnd(mu, 0);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  REAL(bool (*)(CondVar*, Mutex*, Duration), "_ZN",
       "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  const Outermost outer;
  if (outer) AnnotateWaitBegin(mu, 0);
  const bool timed_out = real(this, mu, timeout);
  if (outer) AnnotateWaitEnd(mu, 0);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  REAL(bool (*)(CondVar*, Mutex*, Time), "_ZN",
       "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  const Outermost outer;
  if (outer) AnnotateWaitBegin(mu, 0);
  const bool timed_out = real(this, mu, deadline);
  if (outer) AnnotateWaitEnd(mu, 0);
  return timed_out;
}

// Notification: Notify() publishes with a release on the object; every way of observing it
// (the waits, and HasBeenNotified() through HasBeenNotifiedInternal) acquires.
void Notification::Notify() {
  REAL(void (*)(Notification*), "_ZN", "12Notification6NotifyEv");
  const Outermost outer;
  if (outer) __tsan_release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  REAL(void (*)(const Notification*), "_ZNK", "12Notification19WaitForNotificationEv");
  const Outermost outer;
  real(this);
  if (outer) __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  REAL(bool (*)(const Notification*, Duration), "_ZNK",
       "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const Outermost outer;
  const bool notified = real(this, timeout);
  if (outer && notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  REAL(bool (*)(const Notification*, Time), "_ZNK",
       "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const Outermost outer;
  const bool notified = real(this, deadline);
  if (outer && notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
