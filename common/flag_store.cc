#include "common/flag_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/time_format.h"
#include "spdlog/spdlog.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- files ----

absl::StatusOr<std::optional<std::string>> ReadFileIfExists(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  std::string content;
  char buf[8192];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      close(fd);
      return absl::InternalError(absl::StrCat("cannot read ", path, ": ", std::strerror(err)));
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return std::optional<std::string>(std::move(content));
}

absl::Status WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Temp file in the same directory (rename is atomic only within a filesystem), fsync, rename,
// fsync the directory so the rename itself survives a crash.
absl::Status WriteFileAtomically(const std::string& path, const std::string& content) {
  static std::atomic<uint64_t> counter{0};
  const fs::path target(path);
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid(), ".", counter.fetch_add(1));
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create ", tmp, ": ", std::strerror(errno)));
  }
  absl::Status s = WriteAll(fd, content);
  if (s.ok() && fsync(fd) != 0) s = absl::InternalError(std::strerror(errno));
  if (close(fd) != 0 && s.ok()) s = absl::InternalError(std::strerror(errno));
  if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    s = absl::InternalError(absl::StrCat("rename to ", path, ": ", std::strerror(errno)));
  }
  if (!s.ok()) {
    unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot write ", path, ": ", s.message()));
  }
  const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);  // best effort: the file content itself is already durable
    close(dfd);
  }
  return absl::OkStatus();
}

}  // namespace

// ---- FlagStore ----

absl::StatusOr<std::unique_ptr<FlagStore>> FlagStore::Create(Options options, Clock* clock,
                                                             AuditSink* audit) {
  if (options.path.empty()) return absl::InvalidArgumentError("FlagStore: path must not be empty");
  if (options.poll_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("FlagStore: poll_interval must be >= 0, got ",
                                                   absl::FormatDuration(options.poll_interval)));
  }
  if (clock == nullptr) return absl::InvalidArgumentError("FlagStore: clock must not be null");
  if (absl::Status s = ValidateFlags(options.initial); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("FlagStore: initial.", s.message()));
  }
  std::unique_ptr<FlagStore> store(new FlagStore(std::move(options), clock, audit));
  RETURN_IF_ERROR(store->Load());
  if (!store->options_.overrides.empty()) {
    std::vector<std::string> shown;
    for (const FlagOverride& o : store->options_.overrides) {
      shown.push_back(absl::StrCat(o.source, "=", o.text));
    }
    ASSIGN_OR_RETURN(const FeatureFlags overridden,
                     ApplyFlagOverrides(store->options_.overrides, *store->Current()));
    const bool changes = overridden != *store->Current();
    spdlog::info("flags: {} over {}: {}", absl::StrJoin(shown, " "), store->options_.path,
                 changes ? "applied and written to the file" : "the file already agrees");
    RETURN_IF_ERROR(store->Set(overridden, store->options_.overrides_actor));
  }
  if (store->options_.poll_interval > absl::ZeroDuration()) {
    store->watcher_ = std::thread([raw = store.get()] { raw->WatchLoop(); });
  }
  return store;
}

FlagStore::FlagStore(Options options, Clock* clock, AuditSink* audit)
    : options_(std::move(options)), clock_(clock), audit_(audit) {}

FlagStore::~FlagStore() { Stop(); }

absl::Status FlagStore::Load() {
  const fs::path path(options_.path);
  if (path.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("FlagStore: cannot create directory ",
                                              path.parent_path().string(), ": ", ec.message()));
    }
  }
  absl::MutexLock update_lock(&update_mu_);
  ASSIGN_OR_RETURN(std::optional<std::string> content, ReadFileIfExists(options_.path));
  if (!content.has_value()) {
    FlagsMetadata meta{"initial", FormatRfc3339Millis(clock_->Now())};
    const std::string text = FlagsToYaml(options_.initial, meta);
    RETURN_IF_ERROR(WriteFileAtomically(options_.path, text));
    spdlog::info("flags: {} did not exist; wrote the initial flags (stage {})", options_.path,
                 options_.initial.stage);
    last_seen_content_ = text;
    absl::MutexLock lock(&mu_);
    current_ = std::make_shared<const FeatureFlags>(options_.initial);
    metadata_ = std::move(meta);
    return absl::OkStatus();
  }
  FlagsMetadata meta;
  ASSIGN_OR_RETURN(FeatureFlags flags, ParseFlagsYaml(*content, options_.path, &meta));
  last_seen_content_ = std::move(content);
  spdlog::info("flags: loaded {} (stage {})", options_.path, flags.stage);
  absl::MutexLock lock(&mu_);
  current_ = std::make_shared<const FeatureFlags>(std::move(flags));
  metadata_ = std::move(meta);
  return absl::OkStatus();
}

std::shared_ptr<const FeatureFlags> FlagStore::Current() const {
  absl::ReaderMutexLock lock(&mu_);
  return current_;
}

FlagsMetadata FlagStore::metadata() const {
  absl::ReaderMutexLock lock(&mu_);
  return metadata_;
}

absl::Status FlagStore::last_error() const {
  absl::ReaderMutexLock lock(&mu_);
  return last_error_;
}

void FlagStore::SetLastError(absl::Status status) {
  absl::MutexLock lock(&mu_);
  last_error_ = std::move(status);
}

void FlagStore::AddListener(Listener listener) {
  absl::MutexLock lock(&mu_);
  listeners_.push_back(std::make_shared<Listener>(std::move(listener)));
}

absl::Status FlagStore::ApplyLocked(const FeatureFlags& flags, const std::string& actor,
                                    bool write_file, FlagsMetadata metadata,
                                    const std::string& reason) {
  const std::shared_ptr<const FeatureFlags> old = Current();
  if (write_file) {
    const std::string text = FlagsToYaml(flags, metadata);
    RETURN_IF_ERROR(WriteFileAtomically(options_.path, text));
    last_seen_content_ = text;  // our own write is not an external edit
  }
  auto next = std::make_shared<const FeatureFlags>(flags);
  std::vector<std::shared_ptr<Listener>> listeners;
  {
    absl::MutexLock lock(&mu_);
    current_ = next;
    metadata_ = std::move(metadata);
    last_error_ = absl::OkStatus();
    listeners = listeners_;
  }
  const std::vector<std::string> changed = ChangedFlagKeys(*old, *next);
  spdlog::info("flags: {} changed by {}: stage {} -> {} ({} keys)", options_.path, actor,
               old->stage, next->stage, changed.size());
  if (audit_ != nullptr) {
    json ev{{"old", FlagsToJson(*old)},
            {"new", FlagsToJson(*next)},
            {"actor", actor},
            {"stage", next->stage},
            {"changed", changed}};
    if (!reason.empty()) ev["reason"] = reason;
    audit_->Record("flag_change", std::move(ev));
  }
  for (const auto& listener : listeners) (*listener)(*next);
  return absl::OkStatus();
}

absl::Status FlagStore::Set(const FeatureFlags& flags, const std::string& actor,
                            const std::string& reason) {
  RETURN_IF_ERROR(ValidateFlags(flags));
  absl::MutexLock update_lock(&update_mu_);
  if (*Current() == flags) return absl::OkStatus();
  return ApplyLocked(flags, actor, /*write_file=*/true,
                     FlagsMetadata{actor, FormatRfc3339Millis(clock_->Now())}, reason);
}

absl::Status FlagStore::SetStage(std::string_view stage, const std::string& actor,
                                 const std::string& reason) {
  absl::MutexLock update_lock(&update_mu_);
  ASSIGN_OR_RETURN(const FeatureFlags flags, ApplyStage(stage, *Current()));
  RETURN_IF_ERROR(ValidateFlags(flags));
  if (*Current() == flags) return absl::OkStatus();
  return ApplyLocked(flags, actor, /*write_file=*/true,
                     FlagsMetadata{actor, FormatRfc3339Millis(clock_->Now())}, reason);
}

absl::StatusOr<bool> FlagStore::CheckNow() {
  absl::MutexLock update_lock(&update_mu_);
  absl::StatusOr<std::optional<std::string>> content = ReadFileIfExists(options_.path);
  if (!content.ok()) {
    SetLastError(content.status());
    return content.status();
  }
  if (*content == last_seen_content_) {
    // Unchanged since the last poll: report the standing error, if any, without logging again.
    absl::Status standing = last_error();
    if (!standing.ok()) return standing;
    return false;
  }
  last_seen_content_ = *content;
  if (!content->has_value()) {
    absl::Status s = absl::NotFoundError(
        absl::StrCat(options_.path, ": file is missing; keeping the last good flags"));
    spdlog::error("flags: {}", std::string(s.message()));
    SetLastError(s);
    return s;
  }
  FlagsMetadata meta;
  absl::StatusOr<FeatureFlags> flags = ParseFlagsYaml(**content, options_.path, &meta);
  if (!flags.ok()) {
    spdlog::error("flags: ignoring bad edit, keeping the last good flags: {}",
                  std::string(flags.status().message()));
    SetLastError(flags.status());
    return flags.status();
  }
  if (*Current() == *flags) {
    absl::MutexLock lock(&mu_);
    metadata_ = std::move(meta);
    last_error_ = absl::OkStatus();
    return false;
  }
  RETURN_IF_ERROR(ApplyLocked(*flags, "file", /*write_file=*/false, std::move(meta)));
  return true;
}

void FlagStore::WatchLoop() {
  pthread_setname_np(pthread_self(), "flag-watcher");
  while (true) {
    {
      absl::MutexLock lock(&stop_mu_);
      if (stop_mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.poll_interval)) return;
    }
    CheckNow().IgnoreError();  // logged and kept in last_error()
  }
}

void FlagStore::Stop() {
  absl::MutexLock join_lock(&join_mu_);
  {
    absl::MutexLock lock(&stop_mu_);
    stopping_ = true;
  }
  if (watcher_.joinable()) watcher_.join();
}

}  // namespace rerank
