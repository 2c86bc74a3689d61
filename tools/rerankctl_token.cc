#include "tools/rerankctl_token.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace rerank::ctl {
namespace {

std::optional<std::string> NonEmptyEnv(const EnvLookup& env, const char* name) {
  std::optional<std::string> v = env(name);
  if (v.has_value() && v->empty()) return std::nullopt;
  return v;
}

// Reads `path` with a size bound; the file may be replaced concurrently by rerankd (rename), which
// is fine: the open descriptor keeps one version.
absl::StatusOr<std::string> ReadBounded(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat("'", path, "' does not exist"));
    return absl::FailedPreconditionError(
        absl::StrCat("'", path, "' cannot be read: ", std::strerror(err)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat("'", path, "' is not a regular file"));
  }
  std::string content;
  char buf[1024];
  while (content.size() <= kMaxTokenFileBytes) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat("'", path, "' cannot be read: ", std::strerror(err)));
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (content.size() > kMaxTokenFileBytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "'", path, "' is larger than ", kMaxTokenFileBytes, " bytes: not an admin token file"));
  }
  return content;
}

}  // namespace

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> content = ReadBounded(path);
  if (!content.ok()) return content.status();
  const std::string token(absl::StripAsciiWhitespace(*content));
  if (token.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("'", path, "' is empty"));
  }
  for (const char c : token) {
    const unsigned char u = static_cast<unsigned char>(c);
    // The token travels in an HTTP header: printable, no spaces. Say what is wrong, never what
    // the token is.
    if (u <= 0x20 || u == 0x7f) {
      return absl::FailedPreconditionError(
          absl::StrCat("'", path,
                       "' is not an admin token file: the token must be one word of printable "
                       "characters"));
    }
  }
  return token;
}

absl::StatusOr<AdminToken> ResolveAdminToken(const TokenSources& s) {
  if (s.token_file.has_value()) {
    if (s.token_file->empty()) return absl::InvalidArgumentError("--token-file: must not be empty");
    absl::StatusOr<std::string> token = ReadTokenFile(*s.token_file);
    if (!token.ok()) {
      return absl::Status(token.status().code(),
                          absl::StrCat("--token-file: ", token.status().message()));
    }
    return AdminToken{*std::move(token), absl::StrCat("--token-file ", *s.token_file)};
  }
  if (s.token.has_value()) {
    if (s.token->empty()) return absl::InvalidArgumentError("--token: must not be empty");
    return AdminToken{*s.token, "--token"};
  }
  if (std::optional<std::string> t = NonEmptyEnv(s.env, "RERANKER_ADMIN_TOKEN"); t.has_value()) {
    return AdminToken{*t, "$RERANKER_ADMIN_TOKEN"};
  }
  const absl::StatusOr<Config> config = LoadConfig(s.config_path, s.env);
  if (!config.ok() && !s.config_path.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot find the admin token: --config ", s.config_path, ": ", config.status().message()));
  }
  // A configured token is the one rerankd uses (it generates none then).
  if (config.ok() && !config->admin.token.empty()) {
    return AdminToken{config->admin.token, absl::StrCat("admin.token in ", s.config_path)};
  }
  if (std::optional<std::string> f = NonEmptyEnv(s.env, "RERANKER_ADMIN_TOKEN_FILE");
      f.has_value()) {
    absl::StatusOr<std::string> token = ReadTokenFile(*f);
    if (!token.ok()) {
      return absl::Status(token.status().code(),
                          absl::StrCat("$RERANKER_ADMIN_TOKEN_FILE: ", token.status().message()));
    }
    return AdminToken{*std::move(token), absl::StrCat("$RERANKER_ADMIN_TOKEN_FILE ", *f)};
  }
  if (!config.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot find the admin token: the configuration (built-in defaults + environment) does "
        "not load, so the default token file is unknown: ",
        config.status().message(), "; pass --token-file PATH"));
  }
  const std::string path = AdminTokenFile(*config);
  absl::StatusOr<std::string> token = ReadTokenFile(path);
  if (token.ok()) return AdminToken{*std::move(token), absl::StrCat("the token file ", path)};
  if (absl::IsNotFound(token.status())) {
    std::string where;
    std::error_code ec;
    if (std::filesystem::path(path).is_relative()) {
      // rerankd resolves it against its own working directory: say which one was assumed.
      where = absl::StrCat(" (relative to the current directory ",
                           std::filesystem::current_path(ec).string(),
                           "; run where rerankd runs, or pass --token-file)");
    }
    return AdminToken{
        "", absl::StrCat("no token: the default token file ", path, " does not exist", where)};
  }
  return absl::Status(token.status().code(),
                      absl::StrCat("admin token file: ", token.status().message()));
}

}  // namespace rerank::ctl
