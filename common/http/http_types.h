// The vocabulary of the HTTP layer (common/http/): a request as a handler sees it, the response
// it gives, the one-shot responder it answers through, and the handler type itself. No Boost
// here: code that only routes or handles requests does not compile Asio.
//
// Handlers are asynchronous: the server calls `handler(request, responder)` on one of its I/O
// threads, and the handler answers through the responder then or later, from any thread. A
// handler must not block its I/O thread for long (other connections share it): do bounded work
// inline (SyncHttpHandler), hand anything slower to your own executor and answer from there.
#ifndef RERANK_COMMON_HTTP_HTTP_TYPES_H_
#define RERANK_COMMON_HTTP_HTTP_TYPES_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rerank {

// One complete request (the body has been read, de-chunked and bounded by the server's limits).
struct HttpRequest {
  std::string method;  // as sent, case-sensitive: "GET", "POST", ...
  std::string path;    // the request target before any '?' ("/v1/rerank"); not percent-decoded
  std::string query;   // the target after '?', without it; empty when none; not decoded
  // Header names in lower case; a repeated header's values are joined with ", " (RFC 9110 5.3).
  std::map<std::string, std::string> headers;
  std::string body;
  std::string peer;  // the client's IP address ("127.0.0.1", "::1")
  int version = 11;  // 10 for HTTP/1.0, 11 for HTTP/1.1

  // The value of header `lower_case_name`, or nullopt when absent.
  std::optional<std::string> header(const std::string& lower_case_name) const;
};

struct HttpResponse {
  int status = 200;  // 200..599; anything else is answered as a 500
  // Sent as Content-Type unless empty. JSON is the default: both APIs on this layer speak it.
  std::string content_type = "application/json";
  std::string body;
  // Extra headers, in order. The server owns framing: Content-Length, Transfer-Encoding and
  // Connection given here are dropped (and logged), as are names or values with CR or LF.
  std::vector<std::pair<std::string, std::string>> headers;
};

// Renders an error the server or router produces itself (400, 404, 405, 408, 413, 431, 500, 503)
// in the API's dialect. `message` is plain text meant for the client.
using HttpErrorRenderer = std::function<HttpResponse(int status, std::string_view message)>;

// The default dialect: application/json {"error": message}. Invalid UTF-8 in `message` (which may
// quote request data) is replaced, never thrown on.
HttpResponse JsonErrorResponse(int status, std::string_view message);

// The receiving end of an HttpResponder, implemented by the server (and by tests).
class HttpResponseSlot {
 public:
  virtual ~HttpResponseSlot() = default;
  // Called exactly once, from whatever thread answered: the response, or nullopt when the
  // responder was destroyed without answering. Must not block.
  virtual void Deliver(std::optional<HttpResponse> response) = 0;

 private:
  friend class HttpResponder;
  std::atomic<bool> answered_{false};
};

// Answers one request, exactly once. Move-only. Respond() may be called from any thread, also
// concurrently with itself (the first call wins); moving and destroying are not thread-safe
// with respect to other calls on the same object, as usual. Destroying a responder that has not
// answered answers 500 for it, so a handler that forgets (or throws) never hangs a client.
//
// A response that arrives after the request's deadline (the client already got 408) or after
// its connection closed is dropped; Respond() still returns true: the answer was accepted.
class HttpResponder {
 public:
  HttpResponder() = default;  // answers nothing; Respond() returns false
  explicit HttpResponder(std::shared_ptr<HttpResponseSlot> slot) : slot_(std::move(slot)) {}
  HttpResponder(HttpResponder&& other) noexcept = default;
  HttpResponder& operator=(HttpResponder&& other) noexcept;  // an unanswered target answers 500
  HttpResponder(const HttpResponder&) = delete;
  HttpResponder& operator=(const HttpResponder&) = delete;
  ~HttpResponder();

  // Sends `response`. False when this responder already answered (or is empty / moved from).
  bool Respond(HttpResponse response);
  // True once Respond() has been called (by anyone) or the responder is empty.
  bool answered() const;

 private:
  std::shared_ptr<HttpResponseSlot> slot_;
};

// The handler contract: see the file comment. Called concurrently for different connections.
using HttpHandler = std::function<void(HttpRequest request, HttpResponder responder)>;

// Adapts a synchronous function to an HttpHandler: it runs on the I/O thread and its return value
// is the answer. For bounded, non-blocking work only. An exception it throws is logged and
// answered as a 500 in the server's error dialect.
HttpHandler SyncHttpHandler(std::function<HttpResponse(const HttpRequest&)> fn);

}  // namespace rerank

#endif  // RERANK_COMMON_HTTP_HTTP_TYPES_H_
