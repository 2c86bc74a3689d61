// AuditSink that appends one JSON object per line (JSON Lines) to a file, from a background thread.
//
// Record() only takes a timestamp and enqueues (a queue bounded in events and in bytes): it never
// waits for I/O, and when the queue is full it drops the event and counts it (dropped()), so a
// slow disk can never stall requests nor large events exhaust memory. The writer thread
// ("audit-writer") formats queued events and appends them with one write(2) per batch of complete
// lines to an O_APPEND descriptor, so readers and crashes never see a torn line in the middle of
// the file. If the process died mid-write, the partial last line is cut off when the file is next
// opened, so every line of the file always parses.
//
// Line format: {"timestamp":"2024-05-01T12:00:00.123Z","event_type":"rerank",<fields...>}.
// `timestamp` is RFC 3339 UTC with milliseconds, taken from the injected Clock at Record() time.
//
// Rotation: when appending would push the file past max_file_bytes it is renamed to
// <stem>-<yyyymmddTHHMMSS UTC>-<seq><ext>, e.g. reranker_audit-20240501T120000-0000.jsonl (seq,
// zero-padded to 4 digits, makes names unique and sorted within a second) and a new file is
// started; with compress_rotated the rotated file is then gzip-compressed by the writer thread
// into <name>.gz (written as <name>.gz.tmp, fsynced, renamed; then the plain file is removed, so a
// crash leaves one complete copy). At startup, after each rotation and hourly: rotated files
// (plain or .gz) whose name timestamp is older than retention_days (by the injected clock) are
// deleted, then the oldest rotated files while the active and rotated files together exceed
// max_total_bytes; plain rotated files left by a crash are compressed.
//
// Thread-safe. Shutdown() (also run by the destructor) drains the queue, fsyncs and joins the
// writer; events recorded afterwards are dropped and counted.
#ifndef RERANK_COMMON_AUDIT_LOG_H_
#define RERANK_COMMON_AUDIT_LOG_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/audit_sink.h"
#include "common/clock.h"
#include "nlohmann/json.hpp"

namespace rerank {

class AuditLog final : public AuditSink {
 public:
  struct Options {
    // The active file; parent directories are created.
    std::string path = "data/reranker_audit.jsonl";
    // Events waiting for the writer; beyond this Record() drops. Must be >= 1.
    size_t queue_capacity = 10000;
    // And their size (estimated from the fields' JSON, ~ the line length); beyond it Record()
    // drops. Must be >= 1.
    uint64_t queue_max_bytes = 64ull << 20;
    // Rotate before the active file would exceed this size. Must be >= 1. (A single line larger
    // than this is still written, alone in its file.)
    uint64_t max_file_bytes = 100ull << 20;
    // gzip rotated files.
    bool compress_rotated = true;
    // Rotated files older than this many days are deleted. 0 keeps them forever. Must be >= 0.
    int retention_days = 90;
    // The oldest rotated files are deleted while the rotated ones plus a full active file
    // (max_file_bytes) exceed this many bytes on disk, so all audit files together stay below it.
    // 0: no cap.
    uint64_t max_total_bytes = 0;
    // Not used by the log itself: whether callers should put raw query text into events (privacy
    // setting carried here so there is one audit configuration).
    bool include_query_text = false;
    // The writer fdatasyncs at most this often while busy (by the injected clock), and wakes at
    // least this often (real time) when idle. Must be > 0.
    absl::Duration flush_interval = absl::Seconds(1);
  };

  // Creates the parent directories, opens (and repairs) the file, runs retention and starts the
  // writer. InvalidArgument naming a bad option; the I/O error if the file cannot be opened.
  // `clock` is not owned and must outlive the log.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Create(Options options, Clock* clock);

  ~AuditLog() override;
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // AuditSink. Keys `timestamp` and `event_type` in `fields` are replaced by the log's own;
  // a non-object `fields` is stored under "data".
  void Record(const std::string& event_type, nlohmann::json fields) override;

  // Blocks until every event recorded before the call has been written (or failed). Must not be
  // called while the writer is paused for testing.
  void Flush();

  // Drains the queue, fsyncs, closes and joins the writer. Idempotent.
  void Shutdown();

  uint64_t written() const;  // events appended to the file
  uint64_t dropped() const;  // events refused: queue full or after Shutdown()
  uint64_t failed() const;   // events lost to I/O errors (logged)
  uint64_t rotations() const;
  uint64_t deleted_files() const;  // rotated files deleted by retention (age or total size)
  // Bytes cut off the end of the file at open because its last line was incomplete.
  uint64_t repaired_bytes() const { return repaired_bytes_.load(); }
  const Options& options() const { return options_; }

  // Test hook: while paused the writer takes nothing from the queue, so a test can fill it
  // deterministically. Shutdown() still drains.
  void SetWriterPausedForTesting(bool paused);

  // One line, without the trailing newline. Never throws (invalid UTF-8 is replaced).
  static std::string FormatLine(absl::Time timestamp, const std::string& event_type,
                                nlohmann::json fields);
  // "2024-05-01T12:00:00.123Z": FormatRfc3339Millis (common/time_format.h), kept as the name
  // the tests use for "the audit log's timestamp format".
  static std::string FormatTimestamp(absl::Time t);
  // A cheap upper estimate of the bytes `fields` takes in a line (strings, keys, numbers), used
  // for the queue's byte bound without formatting on the caller's thread.
  static uint64_t EstimateBytes(const nlohmann::json& fields);

 private:
  struct Pending {
    absl::Time timestamp;
    std::string event_type;
    nlohmann::json fields;
    uint64_t bytes = 0;  // estimated line size
  };

  AuditLog(Options options, Clock* clock);

  // Writer-thread-only state and helpers (no lock needed: only the writer touches them after
  // Create() returns).
  absl::Status OpenActiveFile();
  void WriterLoop();
  void WriteBatch(std::deque<Pending>& batch);
  // Appends `chunk` (`lines` complete lines); returns false and counts failures on error.
  bool WriteChunk(const std::string& chunk, uint64_t lines);
  void Rotate();
  // Compresses leftovers, then deletes by age and by total size (see the header comment).
  void EnforceRetention();
  // gzip `path` into `path`.gz; removes `path` on success. Writer thread (or Create).
  absl::Status Compress(const std::string& path);
  void SyncIfDue(bool force);
  bool WriterShouldWake() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  Clock* const clock_;
  std::string dir_;   // parent directory of path ("." if none)
  std::string stem_;  // file name without extension
  std::string ext_;   // extension including the dot, may be empty

  int fd_ = -1;                // writer only
  uint64_t file_size_ = 0;     // writer only
  bool dirty_ = false;         // writer only: written since the last fdatasync
  absl::Time last_sync_;       // writer only
  absl::Time next_retention_;  // writer only
  std::atomic<uint64_t> repaired_bytes_{0};

  mutable absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // estimated size of queue_
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t accepted_ ABSL_GUARDED_BY(mu_) = 0;   // events enqueued, ever
  uint64_t processed_ ABSL_GUARDED_BY(mu_) = 0;  // events written or failed, ever
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t rotations_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t deleted_files_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex shutdown_mu_;  // serializes Shutdown() callers
  std::thread writer_;
};

}  // namespace rerank

#endif  // RERANK_COMMON_AUDIT_LOG_H_
