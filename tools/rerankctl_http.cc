#include "tools/rerankctl_http.h"

#include <curl/curl.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace rerank::ctl {
namespace {

size_t AppendBody(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AdminHttpClient>> AdminHttpClient::Create(Options options) {
  while (!options.base_url.empty() && options.base_url.back() == '/') options.base_url.pop_back();
  if (options.base_url.empty()) return absl::InvalidArgumentError("base_url: must not be empty");
  if (!absl::StartsWith(options.base_url, "http://") &&
      !absl::StartsWith(options.base_url, "https://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "base_url: must start with http:// or https://, got '", options.base_url, "'"));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("timeout: must be > 0, got ", absl::FormatDuration(options.timeout)));
  }
  std::unique_ptr<AdminHttpClient> client(new AdminHttpClient(std::move(options)));
  client->curl_ = curl_easy_init();
  if (client->curl_ == nullptr) return absl::InternalError("curl_easy_init failed");
  return client;
}

AdminHttpClient::~AdminHttpClient() {
  if (curl_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

absl::StatusOr<HttpResponse> AdminHttpClient::Get(std::string_view path) {
  return Perform(path, nullptr);
}

absl::StatusOr<HttpResponse> AdminHttpClient::Post(std::string_view path,
                                                   const std::string& json_body) {
  return Perform(path, &json_body);
}

absl::StatusOr<HttpResponse> AdminHttpClient::Perform(std::string_view path,
                                                      const std::string* post_body) {
  CURL* curl = static_cast<CURL*>(curl_);
  curl_easy_reset(curl);
  const std::string url = absl::StrCat(options_.base_url, std::string(path));
  HttpResponse response;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Accept: application/json");
  std::string auth;
  if (post_body != nullptr) {
    headers = curl_slist_append(headers, "Content-Type: application/json");
    if (!options_.token.empty()) {
      auth = absl::StrCat("Authorization: Bearer ", options_.token);
      headers = curl_slist_append(headers, auth.c_str());
    }
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post_body->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(post_body->size()));
  }
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options_.timeout)));
  // Signals (the timeout alarm) must not be used: rerankctl blocks SIGINT for its own waits.
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  // An admin endpoint is a fixed host; proxies from the environment would only get in the way.
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  const CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat(post_body != nullptr ? "POST " : "GET ", url, ": ",
                                               error[0] != '\0' ? error : curl_easy_strerror(rc)));
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

}  // namespace rerank::ctl
