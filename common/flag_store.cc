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
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"
#include "yaml-cpp/yaml.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// One table drives YAML parsing, JSON parsing, both serializers and the change diff, so the
// formats cannot drift apart.
struct Field {
  const char* section;
  const char* key;
  bool FeatureFlags::*bool_member;  // exactly one of the two is set
  uint32_t FeatureFlags::*uint_member;
};

const std::vector<Field>& Fields() {
  static const auto* fields = new std::vector<Field>{
      {"reranker", "enabled", &FeatureFlags::reranker_enabled, nullptr},
      {"cache", "enabled", &FeatureFlags::cache_enabled, nullptr},
      {"cache", "traffic_percent", nullptr, &FeatureFlags::cache_traffic_percent},
      {"cache", "max_entries", nullptr, &FeatureFlags::cache_max_entries},
      {"batch", "enabled", &FeatureFlags::batch_enabled, nullptr},
      {"audit", "enabled", &FeatureFlags::audit_enabled, nullptr},
      {"overfetch", "enabled", &FeatureFlags::overfetch_enabled, nullptr},
      {"overfetch", "candidates", nullptr, &FeatureFlags::overfetch_candidates},
      {"overfetch", "top_n", nullptr, &FeatureFlags::overfetch_top_n},
      {"rate_limit", "enabled", &FeatureFlags::rate_limit_enabled, nullptr},
      {"rate_limit", "per_minute", nullptr, &FeatureFlags::rate_limit_per_minute},
  };
  return *fields;
}

// Sections in file order.
const std::vector<std::string>& Sections() {
  static const auto* sections = [] {
    auto* v = new std::vector<std::string>();
    for (const Field& f : Fields()) {
      if (v->empty() || v->back() != f.section) v->push_back(f.section);
    }
    return v;
  }();
  return *sections;
}

const Field* FindField(absl::string_view section, absl::string_view key) {
  for (const Field& f : Fields()) {
    if (section == f.section && key == f.key) return &f;
  }
  return nullptr;
}

bool IsSection(absl::string_view name) {
  for (const std::string& s : Sections()) {
    if (name == s) return true;
  }
  return false;
}

absl::Status KeyError(const std::string& key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(key, ": ", what));
}

// Strict decimal: digits only, no sign, no leading zeros (YAML 1.1 reads 010 as octal 8).
absl::Status ParseUint32(const std::string& key, const std::string& text, uint32_t* out) {
  const bool digits = !text.empty() && std::all_of(text.begin(), text.end(),
                                                   [](char c) { return absl::ascii_isdigit(c); });
  uint64_t v = 0;
  if (!digits || (text.size() > 1 && text[0] == '0') || !absl::SimpleAtoi(text, &v)) {
    return KeyError(key, absl::StrCat("must be a non-negative decimal integer, got '", text, "'"));
  }
  if (v > UINT32_MAX) return KeyError(key, absl::StrCat("out of range, got ", text));
  *out = static_cast<uint32_t>(v);
  return absl::OkStatus();
}

// Replaces bytes that are not valid UTF-8 and control characters, so metadata written into the
// file always parses back.
std::string SanitizeText(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xE  ? 3
                 : (c >> 3) == 0x1E ? 4
                                    : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    }
    if (!ok) {
      out += '?';
      ++i;
    } else if (len == 1 && (c < 0x20 || c == 0x7F)) {
      out += ' ';
      ++i;
    } else {
      out.append(s.data() + i, len);
      i += len;
    }
  }
  return out;
}

// ---- YAML ----

absl::Status YamlScalarString(const std::string& key, const YAML::Node& node, std::string* out) {
  if (node.IsNull()) {
    out->clear();
    return absl::OkStatus();
  }
  if (!node.IsScalar()) return KeyError(key, "must be a string");
  *out = node.Scalar();
  return absl::OkStatus();
}

absl::Status YamlField(const std::string& key, const Field& field, const YAML::Node& node,
                       FeatureFlags* flags) {
  // A quoted scalar ("true", '10') has tag "!": a string, not a boolean/number.
  const bool plain = node.IsScalar() && node.Tag() != "!";
  if (field.bool_member != nullptr) {
    const std::string v = plain ? absl::AsciiStrToLower(node.Scalar()) : "";
    if (v != "true" && v != "false") {
      return KeyError(key, absl::StrCat("must be true or false, got ",
                                        node.IsScalar() ? absl::StrCat("'", node.Scalar(), "'")
                                                        : std::string("a non-scalar")));
    }
    flags->*field.bool_member = v == "true";
    return absl::OkStatus();
  }
  if (!plain) {
    return KeyError(key, node.IsScalar() ? absl::StrCat("must be an unquoted integer, got '",
                                                        node.Scalar(), "'")
                                         : std::string("must be an integer"));
  }
  return ParseUint32(key, node.Scalar(), &(flags->*field.uint_member));
}

absl::Status ParseYamlRoot(const YAML::Node& root, FeatureFlags* flags, FlagsMetadata* meta) {
  if (root.IsNull()) return absl::InvalidArgumentError("file is empty");
  if (!root.IsMap()) return absl::InvalidArgumentError("top level must be a map");
  std::set<std::string> seen;
  for (const auto& top : root) {
    if (!top.first.IsScalar()) return absl::InvalidArgumentError("keys must be strings");
    const std::string name = top.first.Scalar();
    if (!seen.insert(name).second) return KeyError(name, "duplicate key");
    const YAML::Node& value = top.second;
    if (name == "stage") {
      if (!value.IsScalar()) return KeyError(name, "must be a string");
      flags->stage = value.Scalar();
    } else if (name == "updated_by") {
      if (absl::Status s = YamlScalarString(name, value, &meta->updated_by); !s.ok()) return s;
    } else if (name == "updated_at") {
      if (absl::Status s = YamlScalarString(name, value, &meta->updated_at); !s.ok()) return s;
    } else if (IsSection(name)) {
      if (!value.IsMap()) return KeyError(name, "must be a map");
      std::set<std::string> seen_keys;
      for (const auto& kv : value) {
        if (!kv.first.IsScalar()) return KeyError(name, "keys must be strings");
        const std::string key = absl::StrCat(name, ".", kv.first.Scalar());
        if (!seen_keys.insert(key).second) return KeyError(key, "duplicate key");
        const Field* field = FindField(name, kv.first.Scalar());
        if (field == nullptr) return KeyError(key, "unknown key");
        if (absl::Status s = YamlField(key, *field, kv.second, flags); !s.ok()) return s;
      }
    } else {
      return KeyError(name, "unknown key");
    }
  }
  return absl::OkStatus();
}

// ---- JSON ----

absl::Status JsonField(const std::string& key, const Field& field, const json& value,
                       FeatureFlags* flags) {
  if (field.bool_member != nullptr) {
    if (!value.is_boolean()) {
      return KeyError(key, absl::StrCat("must be true or false, got ", value.dump()));
    }
    flags->*field.bool_member = value.get<bool>();
    return absl::OkStatus();
  }
  if (value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0)) {
    const uint64_t v = value.get<uint64_t>();
    if (v > UINT32_MAX) return KeyError(key, absl::StrCat("out of range, got ", v));
    flags->*field.uint_member = static_cast<uint32_t>(v);
    return absl::OkStatus();
  }
  return KeyError(key, absl::StrCat("must be a non-negative integer, got ",
                                    value.dump(-1, ' ', false, json::error_handler_t::replace)));
}

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

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

}  // namespace

absl::StatusOr<FeatureFlags> ParseFlagsYaml(std::string_view text, std::string_view source,
                                            FlagsMetadata* metadata) {
  FeatureFlags flags;
  FlagsMetadata meta;
  absl::Status status;
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    status = ParseYamlRoot(root, &flags, &meta);
  } catch (const YAML::Exception& e) {
    status = absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", e.what()));
  }
  if (status.ok()) status = ValidateFlags(flags);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(absl::string_view(source.data(), source.size()), ": ", status.message()));
  }
  if (metadata != nullptr) *metadata = std::move(meta);
  return flags;
}

std::string FlagsToYaml(const FeatureFlags& flags, const FlagsMetadata& metadata) {
  YAML::Emitter out;
  out << YAML::Comment(
      "rerankd feature flags. Written by the admin API (FlagStore); hand edits are picked up "
      "within the poll interval. Stages: feature-flags, cache-10, cache-50, cache-100, full, "
      "rollback, disabled; or custom.");
  out << YAML::BeginMap;
  out << YAML::Key << "stage" << YAML::Value << YAML::DoubleQuoted << SanitizeText(flags.stage);
  for (const std::string& section : Sections()) {
    out << YAML::Key << section << YAML::Value << YAML::BeginMap;
    for (const Field& f : Fields()) {
      if (section != f.section) continue;
      out << YAML::Key << f.key << YAML::Value;
      if (f.bool_member != nullptr) {
        out << flags.*f.bool_member;
      } else {
        out << flags.*f.uint_member;
      }
    }
    out << YAML::EndMap;
  }
  out << YAML::Key << "updated_by" << YAML::Value << YAML::DoubleQuoted
      << SanitizeText(metadata.updated_by);
  out << YAML::Key << "updated_at" << YAML::Value << YAML::DoubleQuoted
      << SanitizeText(metadata.updated_at);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

nlohmann::json FlagsToJson(const FeatureFlags& flags) {
  json j = json::object();
  j["stage"] = flags.stage;
  for (const Field& f : Fields()) {
    if (f.bool_member != nullptr) {
      j[f.section][f.key] = flags.*f.bool_member;
    } else {
      j[f.section][f.key] = flags.*f.uint_member;
    }
  }
  return j;
}

absl::StatusOr<FeatureFlags> FlagsFromJson(const nlohmann::json& j, const FeatureFlags& base) {
  FeatureFlags flags = base;
  if (!j.is_object()) return absl::InvalidArgumentError("flags: must be a JSON object");
  for (const auto& [name, value] : j.items()) {
    if (name == "stage") {
      if (!value.is_string()) return KeyError(name, "must be a string");
      flags.stage = value.get<std::string>();
    } else if (name == "updated_by" || name == "updated_at") {
      // Server-maintained metadata: tolerated so a GET response can be sent back as is.
    } else if (IsSection(name)) {
      if (!value.is_object()) return KeyError(name, "must be an object");
      for (const auto& [key_name, key_value] : value.items()) {
        const std::string key = absl::StrCat(name, ".", key_name);
        const Field* field = FindField(name, key_name);
        if (field == nullptr) return KeyError(key, "unknown key");
        if (absl::Status s = JsonField(key, *field, key_value, &flags); !s.ok()) return s;
      }
    } else {
      return KeyError(name, "unknown key");
    }
  }
  if (absl::Status s = ValidateFlags(flags); !s.ok()) return s;
  return flags;
}

std::vector<std::string> ChangedFlagKeys(const FeatureFlags& a, const FeatureFlags& b) {
  std::vector<std::string> changed;
  if (a.stage != b.stage) changed.push_back("stage");
  for (const Field& f : Fields()) {
    const bool differs = f.bool_member != nullptr ? a.*f.bool_member != b.*f.bool_member
                                                  : a.*f.uint_member != b.*f.uint_member;
    if (differs) changed.push_back(absl::StrCat(f.section, ".", f.key));
  }
  return changed;
}

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
  if (absl::Status s = store->Load(); !s.ok()) return s;
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
  absl::StatusOr<std::optional<std::string>> content = ReadFileIfExists(options_.path);
  if (!content.ok()) return content.status();
  if (!content->has_value()) {
    FlagsMetadata meta{"initial", Rfc3339(clock_->Now())};
    const std::string text = FlagsToYaml(options_.initial, meta);
    if (absl::Status s = WriteFileAtomically(options_.path, text); !s.ok()) return s;
    spdlog::info("flags: {} did not exist; wrote the initial flags (stage {})", options_.path,
                 options_.initial.stage);
    last_seen_content_ = text;
    absl::MutexLock lock(&mu_);
    current_ = std::make_shared<const FeatureFlags>(options_.initial);
    metadata_ = std::move(meta);
    return absl::OkStatus();
  }
  FlagsMetadata meta;
  absl::StatusOr<FeatureFlags> flags = ParseFlagsYaml(**content, options_.path, &meta);
  if (!flags.ok()) return flags.status();
  last_seen_content_ = std::move(**content);
  spdlog::info("flags: loaded {} (stage {})", options_.path, flags->stage);
  absl::MutexLock lock(&mu_);
  current_ = std::make_shared<const FeatureFlags>(*std::move(flags));
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
                                    bool write_file, FlagsMetadata metadata) {
  const std::shared_ptr<const FeatureFlags> old = Current();
  if (write_file) {
    const std::string text = FlagsToYaml(flags, metadata);
    if (absl::Status s = WriteFileAtomically(options_.path, text); !s.ok()) return s;
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
    audit_->Record("flag_change", json{{"old", FlagsToJson(*old)},
                                       {"new", FlagsToJson(*next)},
                                       {"actor", actor},
                                       {"stage", next->stage},
                                       {"changed", changed}});
  }
  for (const auto& listener : listeners) (*listener)(*next);
  return absl::OkStatus();
}

absl::Status FlagStore::Set(const FeatureFlags& flags, const std::string& actor) {
  if (absl::Status s = ValidateFlags(flags); !s.ok()) return s;
  absl::MutexLock update_lock(&update_mu_);
  if (*Current() == flags) return absl::OkStatus();
  return ApplyLocked(flags, actor, /*write_file=*/true,
                     FlagsMetadata{actor, Rfc3339(clock_->Now())});
}

absl::Status FlagStore::SetStage(std::string_view stage, const std::string& actor) {
  absl::MutexLock update_lock(&update_mu_);
  absl::StatusOr<FeatureFlags> flags = ApplyStage(stage, *Current());
  if (!flags.ok()) return flags.status();
  if (absl::Status s = ValidateFlags(*flags); !s.ok()) return s;
  if (*Current() == *flags) return absl::OkStatus();
  return ApplyLocked(*flags, actor, /*write_file=*/true,
                     FlagsMetadata{actor, Rfc3339(clock_->Now())});
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
  if (absl::Status s = ApplyLocked(*flags, "file", /*write_file=*/false, std::move(meta));
      !s.ok()) {
    return s;
  }
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
