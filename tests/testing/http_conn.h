// A raw HTTP/1.x test connection to 127.0.0.1:port, for what tests/testing/http_client.h does not
// do: several requests on one connection, pipelining, partial or trickled requests, watching the
// server close. Blocking sockets with a receive timeout; responses need a Content-Length (every
// response of common/http has one). Not thread-safe; tests only.
#ifndef RERANK_TESTS_TESTING_HTTP_CONN_H_
#define RERANK_TESTS_TESTING_HTTP_CONN_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rerank::testing {

struct RawResponse {
  std::string status_line;  // "HTTP/1.1 200 OK"
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

class HttpConn {
 public:
  explicit HttpConn(int port, absl::Duration recv_timeout = absl::Seconds(10)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    SetRecvTimeout(recv_timeout);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~HttpConn() { Close(); }
  HttpConn(const HttpConn&) = delete;
  HttpConn& operator=(const HttpConn&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void SetRecvTimeout(absl::Duration d) {
    timeval tv = absl::ToTimeval(d);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }

  // Sends all of `data`; false when the connection is broken.
  bool Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads until `marker` arrived; false on EOF / error / timeout. What was read stays buffered.
  bool ReadUntil(std::string_view marker) {
    while (buf_.find(marker) == std::string::npos) {
      if (!Fill()) return false;
    }
    return true;
  }

  // Consumes and returns the first `n` buffered bytes (after ReadUntil).
  std::string Take(size_t n) {
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }

  // Reads one complete response; nullopt on EOF, error, timeout or a response it cannot parse.
  std::optional<RawResponse> Read() {
    if (!ReadUntil("\r\n\r\n")) return std::nullopt;
    const size_t head_end = buf_.find("\r\n\r\n");
    RawResponse r;
    std::vector<absl::string_view> lines =
        absl::StrSplit(absl::string_view(buf_).substr(0, head_end), "\r\n");
    r.status_line = std::string(lines[0]);
    std::vector<absl::string_view> parts = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
    if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &r.status)) return std::nullopt;
    size_t length = 0;
    for (size_t i = 1; i < lines.size(); ++i) {
      const size_t colon = lines[i].find(':');
      if (colon == absl::string_view::npos) return std::nullopt;
      r.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
          std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    }
    if (r.status >= 200 && !absl::SimpleAtoi(r.header("content-length"), &length)) {
      return std::nullopt;
    }
    while (buf_.size() < head_end + 4 + length) {
      if (!Fill()) return std::nullopt;
    }
    r.body = buf_.substr(head_end + 4, length);
    buf_.erase(0, head_end + 4 + length);
    return r;
  }

  // True when the server closes the connection (EOF or reset) within `timeout`, discarding any
  // bytes that arrive first; false when it stays open.
  bool WaitClosed(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    char tmp[4096];
    while (true) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return false;
      const ssize_t n = ::recv(fd_, tmp, sizeof(tmp), MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
    }
  }

  // True when the server has neither sent anything nor closed (a non-blocking peek).
  bool OpenAndSilent() {
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, MSG_DONTWAIT | MSG_PEEK);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && buf_.empty();
  }

 private:
  bool Fill() {
    char tmp[8192];
    while (true) {
      const ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      buf_.append(tmp, static_cast<size_t>(n));
      return true;
    }
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

}  // namespace rerank::testing

#endif  // RERANK_TESTS_TESTING_HTTP_CONN_H_
