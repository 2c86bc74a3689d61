#include "common/audit_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "common/json_util.h"
#include "common/status_macros.h"
#include "common/time_format.h"
#include "spdlog/spdlog.h"
#include "zlib.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;

// Upper bound of one write(2): large enough to batch thousands of events, small enough that a
// regular-file write is never split by the kernel in practice.
constexpr size_t kMaxChunkBytes = 1 << 20;
constexpr absl::Duration kRetentionCheckPeriod = absl::Hours(1);
constexpr char kRotatedTimeFormat[] = "%Y%m%dT%H%M%S";

std::string ErrnoMessage(int err) { return std::strerror(err); }

// Parses exactly "yyyymmddTHHMMSS" (UTC). absl::ParseTime's %Y is greedy, hence by hand.
bool ParseRotatedTime(absl::string_view s, absl::Time* out) {
  if (s.size() != 15 || s[8] != 'T') return false;
  auto num = [&](size_t pos, size_t len, int* v) {
    *v = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (!absl::ascii_isdigit(s[i])) return false;
      *v = *v * 10 + (s[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, se;
  if (!num(0, 4, &y) || !num(4, 2, &mo) || !num(6, 2, &d) || !num(9, 2, &h) || !num(11, 2, &mi) ||
      !num(13, 2, &se)) {
    return false;
  }
  const absl::CivilSecond cs(y, mo, d, h, mi, se);
  // CivilSecond normalizes out-of-range fields (month 13); reject those names.
  if (cs.year() != y || cs.month() != mo || cs.day() != d || cs.hour() != h || cs.minute() != mi ||
      cs.second() != se) {
    return false;
  }
  *out = absl::FromCivil(cs, absl::UTCTimeZone());
  return true;
}

// Cuts a partial last line (no trailing '\n') off the file. Returns the bytes removed.
absl::StatusOr<uint64_t> RepairTornTail(int fd, const std::string& path) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return absl::InternalError(absl::StrCat("fstat ", path, ": ", ErrnoMessage(errno)));
  }
  const off_t size = st.st_size;
  if (size == 0) return 0;
  char last = 0;
  if (pread(fd, &last, 1, size - 1) != 1) {
    return absl::InternalError(absl::StrCat("read ", path, ": ", ErrnoMessage(errno)));
  }
  if (last == '\n') return 0;
  // Scan backwards for the last newline.
  std::vector<char> buf(64 * 1024);
  off_t end = size;
  off_t keep = 0;  // new size: just past the last '\n', or 0 if there is none
  while (end > 0) {
    const off_t start = std::max<off_t>(0, end - static_cast<off_t>(buf.size()));
    const size_t len = static_cast<size_t>(end - start);
    if (pread(fd, buf.data(), len, start) != static_cast<ssize_t>(len)) {
      return absl::InternalError(absl::StrCat("read ", path, ": ", ErrnoMessage(errno)));
    }
    const char* nl = static_cast<const char*>(memrchr(buf.data(), '\n', len));
    if (nl != nullptr) {
      keep = start + (nl - buf.data()) + 1;
      break;
    }
    end = start;
  }
  if (ftruncate(fd, keep) != 0) {
    return absl::InternalError(absl::StrCat("truncate ", path, ": ", ErrnoMessage(errno)));
  }
  return static_cast<uint64_t>(size - keep);
}

}  // namespace

std::string AuditLog::FormatTimestamp(absl::Time t) { return FormatRfc3339Millis(t); }

uint64_t AuditLog::EstimateBytes(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::object: {
      uint64_t n = 2;
      for (const auto& item : j.items()) n += item.key().size() + 4 + EstimateBytes(item.value());
      return n;
    }
    case nlohmann::json::value_t::array: {
      uint64_t n = 2;
      for (const auto& v : j) n += 1 + EstimateBytes(v);
      return n;
    }
    case nlohmann::json::value_t::string:
      // Escapes (\u00XX for control bytes) may add some; the 64-byte allowance per event helps.
      return j.get_ref<const std::string&>().size() + 2;
    default:
      return 24;  // numbers, booleans, null
  }
}

std::string AuditLog::FormatLine(absl::Time timestamp, const std::string& event_type,
                                 nlohmann::json fields) {
  // Built by hand so that timestamp and event_type come first (nlohmann::json sorts keys).
  std::string line = absl::StrCat("{\"timestamp\":\"", FormatRfc3339Millis(timestamp),
                                  "\",\"event_type\":", DumpJson(nlohmann::json(event_type)));
  try {
    if (fields.is_object()) {
      fields.erase("timestamp");
      fields.erase("event_type");
      const std::string body = DumpJson(fields);
      if (body.size() > 2) {  // not "{}"
        line += ',';
        line.append(body, 1, std::string::npos);  // drop '{', keep '}'
        return line;
      }
    } else if (!fields.is_null()) {
      absl::StrAppend(&line, ",\"data\":", DumpJson(fields));
    }
  } catch (const std::exception& e) {
    // Should not happen with the replace handler; keep the line valid anyway.
    absl::StrAppend(&line, ",\"format_error\":", DumpJson(nlohmann::json(std::string(e.what()))));
  }
  line += '}';
  return line;
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Create(Options options, Clock* clock) {
  if (options.path.empty()) return absl::InvalidArgumentError("AuditLog: path must not be empty");
  if (options.queue_capacity < 1) {
    return absl::InvalidArgumentError("AuditLog: queue_capacity must be >= 1, got 0");
  }
  if (options.queue_max_bytes < 1) {
    return absl::InvalidArgumentError("AuditLog: queue_max_bytes must be >= 1, got 0");
  }
  if (options.max_file_bytes < 1) {
    return absl::InvalidArgumentError("AuditLog: max_file_bytes must be >= 1, got 0");
  }
  if (options.retention_days < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("AuditLog: retention_days must be >= 0, got ", options.retention_days));
  }
  if (options.flush_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("AuditLog: flush_interval must be > 0, got ",
                                                   absl::FormatDuration(options.flush_interval)));
  }
  if (clock == nullptr) return absl::InvalidArgumentError("AuditLog: clock must not be null");
  const fs::path path(options.path);
  if (!path.has_filename()) {
    return absl::InvalidArgumentError(
        absl::StrCat("AuditLog: path must name a file, got '", options.path, "'"));
  }

  std::unique_ptr<AuditLog> log(new AuditLog(std::move(options), clock));
  RETURN_IF_ERROR(log->OpenActiveFile());
  log->EnforceRetention();
  log->last_sync_ = clock->Now();
  log->next_retention_ = log->last_sync_ + kRetentionCheckPeriod;
  log->writer_ = std::thread([raw = log.get()] { raw->WriterLoop(); });
  return log;
}

AuditLog::AuditLog(Options options, Clock* clock) : options_(std::move(options)), clock_(clock) {
  const fs::path path(options_.path);
  dir_ = path.has_parent_path() ? path.parent_path().string() : ".";
  stem_ = path.stem().string();
  ext_ = path.extension().string();
}

AuditLog::~AuditLog() { Shutdown(); }

absl::Status AuditLog::OpenActiveFile() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("AuditLog: cannot create directory ", dir_, ": ", ec.message()));
  }
  // O_RDWR for the torn-tail repair; O_APPEND makes every write land at the end atomically.
  const int fd = open(options_.path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("AuditLog: cannot open ", options_.path, ": ", ErrnoMessage(errno)));
  }
  absl::StatusOr<uint64_t> repaired = RepairTornTail(fd, options_.path);
  if (!repaired.ok()) {
    close(fd);
    return repaired.status();
  }
  if (*repaired > 0) {
    repaired_bytes_.fetch_add(*repaired);
    spdlog::warn("audit log {}: removed a torn last line ({} bytes) left by an interrupted write",
                 options_.path, *repaired);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(
        absl::StrCat("AuditLog: fstat ", options_.path, ": ", ErrnoMessage(err)));
  }
  fd_ = fd;
  file_size_ = static_cast<uint64_t>(st.st_size);
  return absl::OkStatus();
}

void AuditLog::Record(const std::string& event_type, nlohmann::json fields) {
  // Outside the lock: O(size of the event).
  const uint64_t bytes = 64 + event_type.size() + EstimateBytes(fields);
  absl::MutexLock lock(&mu_);
  if (stopping_ || queue_.size() >= options_.queue_capacity ||
      queued_bytes_ + bytes > options_.queue_max_bytes) {
    ++dropped_;
    return;
  }
  // Timestamp under the lock so that file order matches timestamp order.
  queue_.push_back(Pending{clock_->Now(), event_type, std::move(fields), bytes});
  queued_bytes_ += bytes;
  ++accepted_;
}

bool AuditLog::WriterShouldWake() const { return stopping_ || (!queue_.empty() && !paused_); }

void AuditLog::WriterLoop() {
  pthread_setname_np(pthread_self(), "audit-writer");
  while (true) {
    std::deque<Pending> batch;
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(this, &AuditLog::WriterShouldWake),
                           options_.flush_interval);
      stopping = stopping_;
      if (!paused_ || stopping_) {
        batch.swap(queue_);
        queued_bytes_ = 0;
      }
    }
    if (!batch.empty()) WriteBatch(batch);
    if (stopping && batch.empty()) break;  // nothing can be enqueued once stopping_ is set
    SyncIfDue(/*force=*/false);
    const absl::Time now = clock_->Now();
    if (now >= next_retention_) {
      EnforceRetention();
      next_retention_ = now + kRetentionCheckPeriod;
    }
  }
  SyncIfDue(/*force=*/true);
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
}

void AuditLog::WriteBatch(std::deque<Pending>& batch) {
  std::string chunk;
  uint64_t chunk_lines = 0;
  for (Pending& p : batch) {
    std::string line = FormatLine(p.timestamp, p.event_type, std::move(p.fields));
    line += '\n';
    const uint64_t pending_size = file_size_ + chunk.size();
    if (pending_size > 0 && pending_size + line.size() > options_.max_file_bytes) {
      if (!chunk.empty()) WriteChunk(chunk, chunk_lines);
      chunk.clear();
      chunk_lines = 0;
      if (file_size_ > 0) Rotate();
    }
    chunk += line;
    ++chunk_lines;
    if (chunk.size() >= kMaxChunkBytes) {
      WriteChunk(chunk, chunk_lines);
      chunk.clear();
      chunk_lines = 0;
    }
  }
  if (!chunk.empty()) WriteChunk(chunk, chunk_lines);
  absl::MutexLock lock(&mu_);
  processed_ += batch.size();
}

bool AuditLog::WriteChunk(const std::string& chunk, uint64_t lines) {
  int err = 0;
  size_t done = 0;
  if (fd_ < 0) {
    // Reopening failed after a rotation; try again rather than failing forever.
    if (absl::Status s = OpenActiveFile(); !s.ok()) spdlog::error("audit log: {}", s.ToString());
  }
  if (fd_ < 0) {
    err = EBADF;
  } else {
    while (done < chunk.size()) {
      const ssize_t n = write(fd_, chunk.data() + done, chunk.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        err = errno;
        break;
      }
      done += static_cast<size_t>(n);
    }
  }
  if (err == 0) {
    file_size_ += chunk.size();
    dirty_ = true;
    absl::MutexLock lock(&mu_);
    written_ += lines;
    return true;
  }
  // Undo a partial append so the next write does not continue a torn line.
  if (done > 0 && fd_ >= 0 && ftruncate(fd_, static_cast<off_t>(file_size_)) != 0) {
    spdlog::error("audit log {}: cannot truncate a partial write: {}", options_.path,
                  ErrnoMessage(errno));
  }
  spdlog::error("audit log {}: write failed, {} events lost: {}", options_.path, lines,
                ErrnoMessage(err));
  absl::MutexLock lock(&mu_);
  failed_ += lines;
  return false;
}

void AuditLog::Rotate() {
  SyncIfDue(/*force=*/true);
  const absl::Time now = clock_->Now();
  const std::string ts = absl::FormatTime(kRotatedTimeFormat, now, absl::UTCTimeZone());
  std::string target;
  for (int seq = 0;; ++seq) {
    // Zero-padded so that name order is rotation order within a second too.
    target =
        (fs::path(dir_) / absl::StrCat(stem_, "-", ts, "-", absl::Dec(seq, absl::kZeroPad4), ext_))
            .string();
    std::error_code ec;
    if (!fs::exists(target, ec)) break;
  }
  if (rename(options_.path.c_str(), target.c_str()) != 0) {
    // Keep appending to the oversized file rather than losing events.
    spdlog::error("audit log {}: rotation to {} failed: {}", options_.path, target,
                  ErrnoMessage(errno));
    return;
  }
  close(fd_);
  fd_ = -1;
  file_size_ = 0;
  if (absl::Status s = OpenActiveFile(); !s.ok()) {
    spdlog::error("audit log: {}", s.ToString());  // events are counted as failed until it works
  }
  {
    absl::MutexLock lock(&mu_);
    ++rotations_;
  }
  EnforceRetention();
}

absl::Status AuditLog::Compress(const std::string& path) {
  const std::string gz_path = path + ".gz";
  const std::string tmp = gz_path + ".tmp";
  const int in = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", ErrnoMessage(errno)));
  const int out = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (out < 0) {
    const int err = errno;
    close(in);
    return absl::InternalError(absl::StrCat("create ", tmp, ": ", ErrnoMessage(err)));
  }
  // gzclose closes the descriptor it was given: hand it a duplicate, fsync `out` afterwards.
  gzFile gz = gzdopen(dup(out), "wb6");
  std::string error;
  if (gz == nullptr) error = "gzdopen failed";
  std::vector<char> buf(1 << 20);
  while (error.empty()) {
    const ssize_t n = read(in, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      error = absl::StrCat("read ", path, ": ", ErrnoMessage(errno));
    } else if (n == 0) {
      break;
    } else if (gzwrite(gz, buf.data(), static_cast<unsigned>(n)) != n) {
      int zerr = 0;
      error = absl::StrCat("gzwrite ", tmp, ": ", gzerror(gz, &zerr));
    }
  }
  if (gz != nullptr && gzclose(gz) != Z_OK && error.empty()) error = "gzclose failed";
  if (error.empty() && fsync(out) != 0)
    error = absl::StrCat("fsync ", tmp, ": ", ErrnoMessage(errno));
  close(out);
  close(in);
  if (error.empty() && rename(tmp.c_str(), gz_path.c_str()) != 0) {
    error = absl::StrCat("rename to ", gz_path, ": ", ErrnoMessage(errno));
  }
  if (!error.empty()) {
    unlink(tmp.c_str());
    return absl::InternalError(error);
  }
  unlink(path.c_str());  // the compressed copy is complete and durable
  return absl::OkStatus();
}

void AuditLog::EnforceRetention() {
  struct Rotated {
    std::string name;  // sorts in rotation order (timestamp, then sequence number)
    absl::Time ts;
    bool compressed;
  };
  const std::string prefix = stem_ + "-";
  const std::string gz_ext = ext_ + ".gz";
  std::vector<Rotated> rotated;
  std::error_code ec;
  fs::directory_iterator it(dir_, ec);
  if (ec) {
    spdlog::warn("audit log: cannot list {}: {}", dir_, ec.message());
    return;
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    // Exactly <stem>-<yyyymmddTHHMMSS>-<digits><ext>[.gz]; anything else is not ours.
    if (!absl::StartsWith(name, prefix)) continue;
    if (absl::EndsWith(name, gz_ext + ".tmp")) {
      std::error_code tmp_ec;  // an interrupted compression; the plain file is still there
      fs::remove(it->path(), tmp_ec);
      continue;
    }
    const bool compressed = absl::EndsWith(name, gz_ext);
    if (!compressed && !absl::EndsWith(name, ext_)) continue;
    absl::string_view middle(name);
    middle.remove_prefix(prefix.size());
    middle.remove_suffix(compressed ? gz_ext.size() : ext_.size());
    constexpr size_t kTsLen = 15;  // yyyymmddTHHMMSS
    if (middle.size() < kTsLen + 2 || middle[kTsLen] != '-') continue;
    const absl::string_view seq = middle.substr(kTsLen + 1);
    if (!std::all_of(seq.begin(), seq.end(), [](char c) { return absl::ascii_isdigit(c); })) {
      continue;
    }
    absl::Time ts;
    if (!ParseRotatedTime(middle.substr(0, kTsLen), &ts)) continue;
    rotated.push_back(Rotated{name, ts, compressed});
  }
  std::sort(rotated.begin(), rotated.end(),
            [](const Rotated& a, const Rotated& b) { return a.name < b.name; });
  auto path_of = [this](const std::string& name) { return (fs::path(dir_) / name).string(); };
  auto remove = [&](const Rotated& r, const char* why) {
    std::error_code rm_ec;
    if (fs::remove(path_of(r.name), rm_ec)) {
      spdlog::info("audit log: deleted {} ({})", path_of(r.name), why);
      absl::MutexLock lock(&mu_);
      ++deleted_files_;
    } else if (rm_ec) {
      spdlog::warn("audit log: cannot delete {}: {}", path_of(r.name), rm_ec.message());
    }
  };
  std::vector<Rotated> kept;
  const absl::Time cutoff = clock_->Now() - absl::Hours(24) * options_.retention_days;
  for (Rotated& r : rotated) {
    if (options_.retention_days > 0 && r.ts < cutoff) {
      remove(r, "older than audit.retention_days");
      continue;
    }
    if (options_.compress_rotated && !r.compressed) {
      // A plain file whose .gz also exists was compressed but not yet unlinked: drop the plain.
      std::error_code gz_ec;
      if (fs::exists(path_of(r.name + ".gz"), gz_ec)) {
        fs::remove(path_of(r.name), gz_ec);
        continue;
      }
      if (absl::Status s = Compress(path_of(r.name)); s.ok()) {
        r.name += ".gz";
        r.compressed = true;
      } else {
        spdlog::warn("audit log: cannot compress {}: {}", path_of(r.name), s.ToString());
      }
    }
    kept.push_back(std::move(r));
  }
  if (options_.max_total_bytes == 0) return;
  // Room for the active file to grow to its full size, so the total stays under the cap between
  // checks too.
  uint64_t total = std::max<uint64_t>(file_size_, options_.max_file_bytes);
  std::vector<uint64_t> sizes;
  for (const Rotated& r : kept) {
    std::error_code size_ec;
    const uintmax_t size = fs::file_size(path_of(r.name), size_ec);
    sizes.push_back(size_ec ? 0 : static_cast<uint64_t>(size));
    total += sizes.back();
  }
  for (size_t i = 0; i < kept.size() && total > options_.max_total_bytes; ++i) {
    remove(kept[i], "audit files over audit.max_total_mb");
    total -= sizes[i];
  }
}

void AuditLog::SyncIfDue(bool force) {
  if (fd_ < 0 || !dirty_) return;
  const absl::Time now = clock_->Now();
  if (!force && now - last_sync_ < options_.flush_interval) return;
  if (fdatasync(fd_) != 0) {
    spdlog::warn("audit log {}: fdatasync failed: {}", options_.path, ErrnoMessage(errno));
  }
  dirty_ = false;
  last_sync_ = now;
}

void AuditLog::Flush() {
  absl::MutexLock lock(&mu_);
  const uint64_t target = accepted_;
  // Terminates even across Shutdown(): the writer processes every accepted event before exiting.
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return processed_ >= target; };
  mu_.Await(absl::Condition(&done));
}

void AuditLog::Shutdown() {
  absl::MutexLock shutdown_lock(&shutdown_mu_);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
}

void AuditLog::SetWriterPausedForTesting(bool paused) {
  absl::MutexLock lock(&mu_);
  paused_ = paused;
}

uint64_t AuditLog::written() const {
  absl::MutexLock lock(&mu_);
  return written_;
}
uint64_t AuditLog::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}
uint64_t AuditLog::failed() const {
  absl::MutexLock lock(&mu_);
  return failed_;
}
uint64_t AuditLog::rotations() const {
  absl::MutexLock lock(&mu_);
  return rotations_;
}
uint64_t AuditLog::deleted_files() const {
  absl::MutexLock lock(&mu_);
  return deleted_files_;
}

}  // namespace rerank
