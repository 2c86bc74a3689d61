// A tiny blocking HTTP/1.1 client over plain sockets, for tests of the admin HTTP server (no extra
// dependencies). One request per connection ("Connection: close"); reads until the server
// closes or Content-Length bytes arrived. Not for production: no TLS, no chunked bodies, no
// redirects. Thread-safe (no shared state).
#ifndef RERANK_TESTS_TESTING_HTTP_CLIENT_H_
#define RERANK_TESTS_TESTING_HTTP_CLIENT_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace rerank::testing {

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// Sends `method path` to 127.0.0.1:port with `headers` and `body`; UNAVAILABLE when it cannot
// connect, DEADLINE_EXCEEDED after `timeout_s` without an answer.
inline absl::StatusOr<HttpResult> HttpRequest(
    int port, const std::string& method, const std::string& path,
    const std::vector<std::pair<std::string, std::string>>& headers = {},
    const std::string& body = "", int timeout_s = 10) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval tv{timeout_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect 127.0.0.1:", port, ": ", std::strerror(errno)));
  }
  std::string req = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: 127.0.0.1:", port,
                                 "\r\nConnection: close\r\n");
  for (const auto& [name, value] : headers) absl::StrAppend(&req, name, ": ", value, "\r\n");
  if (!body.empty() || method == "POST")
    absl::StrAppend(&req, "Content-Length: ", body.size(), "\r\n");
  absl::StrAppend(&req, "\r\n", body);
  for (size_t sent = 0; sent < req.size();) {
    const ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[8192];
  size_t header_end = std::string::npos;
  size_t content_length = std::string::npos;
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return absl::DeadlineExceededError(absl::StrCat(method, " ", path, ": no answer"));
      }
      return absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno)));
    }
    if (n == 0) break;
    raw.append(buf, static_cast<size_t>(n));
    if (header_end == std::string::npos) {
      header_end = raw.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        // Content-Length, if any, lets us stop without waiting for the close.
        for (absl::string_view line :
             absl::StrSplit(absl::string_view(raw).substr(0, header_end), "\r\n")) {
          const size_t colon = line.find(':');
          if (colon == absl::string_view::npos) continue;
          if (absl::AsciiStrToLower(line.substr(0, colon)) == "content-length") {
            size_t v = 0;
            if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)), &v))
              content_length = v;
          }
        }
      }
    }
    if (header_end != std::string::npos && content_length != std::string::npos &&
        raw.size() >= header_end + 4 + content_length) {
      break;
    }
  }
  if (header_end == std::string::npos) {
    header_end = raw.find("\r\n\r\n");
    if (header_end == std::string::npos) {
      return absl::DataLossError(absl::StrCat("incomplete HTTP response: '", raw, "'"));
    }
  }
  HttpResult result;
  std::vector<absl::string_view> lines =
      absl::StrSplit(absl::string_view(raw).substr(0, header_end), "\r\n");
  // Status line: HTTP/1.1 200 OK
  std::vector<absl::string_view> status_parts = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  if (status_parts.size() < 2 || !absl::SimpleAtoi(status_parts[1], &result.status)) {
    return absl::DataLossError(absl::StrCat("bad status line: '", lines[0], "'"));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos) continue;
    result.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  result.body = raw.substr(header_end + 4);
  if (content_length != std::string::npos && result.body.size() > content_length) {
    result.body.resize(content_length);
  }
  return result;
}

inline absl::StatusOr<HttpResult> HttpGet(int port, const std::string& path) {
  return HttpRequest(port, "GET", path);
}

inline absl::StatusOr<HttpResult> HttpPost(
    int port, const std::string& path, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  std::vector<std::pair<std::string, std::string>> h = headers;
  h.emplace_back("Content-Type", "application/json");
  return HttpRequest(port, "POST", path, h, body);
}

}  // namespace rerank::testing

#endif  // RERANK_TESTS_TESTING_HTTP_CLIENT_H_
