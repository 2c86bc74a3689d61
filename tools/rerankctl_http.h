// A small blocking HTTP/1.1 client (libcurl) for rerankd's admin plane (see docs/OPERATIONS.md and
// the admin API contract: GET /health, GET/POST /flags, ...).
//
// Thread-compatible: one AdminHttpClient per thread. The caller must have called
// curl_global_init() once before any thread uses this (rerankctl's main does).
#ifndef RERANK_TOOLS_RERANKCTL_HTTP_H_
#define RERANK_TOOLS_RERANKCTL_HTTP_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rerank::ctl {

struct HttpResponse {
  long status = 0;   // HTTP status code
  std::string body;  // response body as received
};

class AdminHttpClient {
 public:
  struct Options {
    // Admin listener, "http://host:port" (a trailing "/" is ignored). https works if libcurl has
    // it.
    std::string base_url = "http://127.0.0.1:8000";
    // Sent with POST requests only (the state-changing calls) as "Authorization: Bearer <token>";
    // empty: no header, and the server answers 401 or 403.
    std::string token;
    absl::Duration timeout = absl::Seconds(10);  // whole request, connect included; > 0
  };

  // InvalidArgument naming the field for an empty/non-http base_url or a non-positive timeout.
  static absl::StatusOr<std::unique_ptr<AdminHttpClient>> Create(Options options);
  ~AdminHttpClient();
  AdminHttpClient(const AdminHttpClient&) = delete;
  AdminHttpClient& operator=(const AdminHttpClient&) = delete;

  // Any HTTP status is a successful result (the caller interprets 4xx/5xx bodies); only transport
  // failures (refused, timeout, bad URL) are errors: Unavailable with libcurl's message and the
  // URL.
  absl::StatusOr<HttpResponse> Get(std::string_view path);
  absl::StatusOr<HttpResponse> Post(std::string_view path, const std::string& json_body);

  const std::string& base_url() const { return options_.base_url; }

 private:
  explicit AdminHttpClient(Options options) : options_(std::move(options)) {}
  absl::StatusOr<HttpResponse> Perform(std::string_view path, const std::string* post_body);

  Options options_;
  void* curl_ = nullptr;  // CURL*, owned; reused so keep-alive connections are reused
};

}  // namespace rerank::ctl

#endif  // RERANK_TOOLS_RERANKCTL_HTTP_H_
