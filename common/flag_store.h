// The feature-flags file (YAML) as the source of truth, served as a FlagSource.
//
// The file's schema and its strict parsing rules are common/flags_codec.h's (ParseFlagsYaml,
// FlagsToYaml; included here, with FlagsToJson/FlagsFromJson/ChangedFlagKeys for the admin API).
// A bad file is an error naming the file and the key, e.g.
// "data/flags.yaml: cache.traffic_percent: must be 0..100, got 150".
//
// FlagStore loads the file at Create() (writing Options::initial there if it does not exist) and
// keeps it in sync both ways:
//  - Set()/SetStage() validate, write the file atomically (temp file in the same directory, fsync,
//    rename, fsync the directory: a crash leaves the old or the new file, never a mix), swap the
//    snapshot, record a `flag_change` audit event and notify listeners;
//  - a watcher thread ("flag-watcher") re-reads the file every poll_interval and applies external
//    edits (a Kubernetes ConfigMap update, another process, an operator's editor) the same way,
//    with actor "file". It compares the full content (a few hundred bytes) rather than mtime,
//    which is too coarse and is not what changes when a ConfigMap swaps its symlink. A bad edit is
//    logged once, kept in last_error(), and the last good flags stay in force.
//
// Thread-safe. Current() is a shared_ptr copy under a reader lock. Changes (from Set, SetStage,
// CheckNow or the watcher) are serialized, so listeners see them in order; listeners run on the
// changing thread after the new snapshot is visible, outside the snapshot lock, and must not call
// Set/SetStage/CheckNow/Stop (that would deadlock).
#ifndef RERANK_COMMON_FLAG_STORE_H_
#define RERANK_COMMON_FLAG_STORE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/audit_sink.h"
#include "common/clock.h"
#include "common/feature_flags.h"
#include "common/flags_codec.h"

namespace rerank {

class FlagStore final : public FlagSource {
 public:
  struct Options {
    // The flags file; parent directories are created.
    std::string path = "data/flags.yaml";
    // How often the watcher re-reads the file. Zero: no watcher thread (call CheckNow() yourself;
    // tests). Must be >= 0.
    absl::Duration poll_interval = absl::Seconds(1);
    // Used, and written to `path`, when the file does not exist. Must pass ValidateFlags.
    FeatureFlags initial;
    // Applied at Create() over the loaded file (ApplyFlagOverrides: e.g. the flag environment
    // variables, so `ENABLE_RERANKER=false` + restart takes effect even when the file says
    // otherwise). A change is written to the file, audited as a flag_change by `overrides_actor`
    // and logged; a bad override fails Create().
    std::vector<FlagOverride> overrides;
    std::string overrides_actor = "environment";
  };

  using Listener = std::function<void(const FeatureFlags&)>;

  // Loads (or creates) the file and starts the watcher. An existing file that does not parse is
  // an error here (there are no last good flags to fall back on). `clock` (updated_at) and
  // `audit` (flag_change events; may be null = not audited) are not owned and must outlive this.
  static absl::StatusOr<std::unique_ptr<FlagStore>> Create(Options options, Clock* clock,
                                                           AuditSink* audit);

  ~FlagStore() override;  // Stop()
  FlagStore(const FlagStore&) = delete;
  FlagStore& operator=(const FlagStore&) = delete;

  // FlagSource.
  std::shared_ptr<const FeatureFlags> Current() const override;

  FlagsMetadata metadata() const;
  const std::string& path() const { return options_.path; }

  // Validates `flags` and makes them current (file, snapshot, audit, listeners). Setting the
  // current flags again is a no-op (nothing written or audited). On a write error nothing changes.
  // A non-empty `reason` is recorded in the flag_change audit event (the caller bounds it).
  absl::Status Set(const FeatureFlags& flags, const std::string& actor,
                   const std::string& reason = "");
  // ApplyStage(stage, Current()) then Set, atomically with respect to other changes.
  absl::Status SetStage(std::string_view stage, const std::string& actor,
                        const std::string& reason = "");

  // One synchronous poll of the file: true if an external edit was applied, false if the
  // content is unchanged (or parses to the current flags); the parse/read error otherwise (the
  // last good flags stay, last_error() is set).
  absl::StatusOr<bool> CheckNow();

  // OK, or the error of the last poll that saw a new, bad file content (or a missing file).
  // Cleared by the next good content or by Set().
  absl::Status last_error() const;

  // `listener` is called with the new flags after every change (not with the current ones).
  void AddListener(Listener listener);

  // Stops and joins the watcher. Idempotent; Set/CheckNow keep working.
  void Stop();

 private:
  FlagStore(Options options, Clock* clock, AuditSink* audit);

  absl::Status Load();
  // Writes (if write_file), swaps, audits, notifies. Requires update_mu_.
  absl::Status ApplyLocked(const FeatureFlags& flags, const std::string& actor, bool write_file,
                           FlagsMetadata metadata, const std::string& reason = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(update_mu_);
  void SetLastError(absl::Status status);
  void WatchLoop();

  const Options options_;
  Clock* const clock_;
  AuditSink* const audit_;

  // Serializes changes and owns the watcher's view of the file. Taken before mu_.
  absl::Mutex update_mu_;
  // What the file held at the last read or write; nullopt = missing.
  std::optional<std::string> last_seen_content_ ABSL_GUARDED_BY(update_mu_);

  mutable absl::Mutex mu_;
  std::shared_ptr<const FeatureFlags> current_ ABSL_GUARDED_BY(mu_);
  FlagsMetadata metadata_ ABSL_GUARDED_BY(mu_);
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Listener>> listeners_ ABSL_GUARDED_BY(mu_);

  absl::Mutex stop_mu_;
  bool stopping_ ABSL_GUARDED_BY(stop_mu_) = false;
  absl::Mutex join_mu_;  // serializes Stop() callers
  std::thread watcher_;
};

}  // namespace rerank

#endif  // RERANK_COMMON_FLAG_STORE_H_
