// Exact method + path routing for HttpServer handlers: an unknown path is a 404, a known path with
// another method a 405 with an "Allow" header listing the methods it has (in the order added).
// No patterns, no prefix matches: the APIs on this layer have fixed paths, and exact matching
// cannot route a request somewhere surprising. The query string plays no part (HttpRequest::path
// has none).
//
// Build it (Add) before serving, then hand AsHandler() to the server; a router is not
// thread-safe while it is being built, and Handle() is thread-safe on a router nobody modifies.
#ifndef RERANK_COMMON_HTTP_HTTP_ROUTER_H_
#define RERANK_COMMON_HTTP_HTTP_ROUTER_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/http/http_types.h"

namespace rerank {

class HttpRouter {
 public:
  // 404 and 405 are rendered by `render_error` (the server's dialect, normally).
  explicit HttpRouter(HttpErrorRenderer render_error = JsonErrorResponse);

  // Routes `method` requests for `path` to `handler`. InvalidArgument (naming the route) for an
  // empty method, a path that does not start with '/' or holds a '?', a null handler, or a
  // method + path added before.
  absl::Status Add(const std::string& method, const std::string& path, HttpHandler handler);

  // Dispatches one request (see the file comment).
  void Handle(HttpRequest request, HttpResponder responder) const;

  // A handler that dispatches on a copy of this router, for HttpServer::Start.
  HttpHandler AsHandler() const;

 private:
  HttpErrorRenderer render_error_;
  // path -> (method, handler) in the order added.
  std::map<std::string, std::vector<std::pair<std::string, HttpHandler>>> routes_;
};

}  // namespace rerank

#endif  // RERANK_COMMON_HTTP_HTTP_ROUTER_H_
