#include "common/http/http_router.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace rerank {

HttpRouter::HttpRouter(HttpErrorRenderer render_error)
    : render_error_(render_error ? std::move(render_error) : JsonErrorResponse) {}

absl::Status HttpRouter::Add(const std::string& method, const std::string& path,
                             HttpHandler handler) {
  const std::string route = absl::StrCat("route '", method, " ", path, "'");
  if (method.empty()) return absl::InvalidArgumentError(absl::StrCat(route, ": empty method"));
  if (path.empty() || path[0] != '/' || path.find('?') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(route, ": path must start with '/' and hold no query"));
  }
  if (!handler) return absl::InvalidArgumentError(absl::StrCat(route, ": null handler"));
  std::vector<std::pair<std::string, HttpHandler>>& methods = routes_[path];
  for (const auto& [m, h] : methods) {
    if (m == method) return absl::InvalidArgumentError(absl::StrCat(route, ": added twice"));
  }
  methods.emplace_back(method, std::move(handler));
  return absl::OkStatus();
}

void HttpRouter::Handle(HttpRequest request, HttpResponder responder) const {
  auto it = routes_.find(request.path);
  if (it == routes_.end()) {
    responder.Respond(render_error_(404, absl::StrCat("no such endpoint: ", request.path)));
    return;
  }
  std::vector<std::string> allowed;
  for (const auto& [method, handler] : it->second) {
    if (method == request.method) {
      handler(std::move(request), std::move(responder));
      return;
    }
    allowed.push_back(method);
  }
  HttpResponse r =
      render_error_(405, absl::StrCat("method ", request.method, " not allowed on ", request.path,
                                      "; use ", absl::StrJoin(allowed, " or ")));
  r.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
  responder.Respond(std::move(r));
}

HttpHandler HttpRouter::AsHandler() const {
  auto router = std::make_shared<const HttpRouter>(*this);
  return [router](HttpRequest request, HttpResponder responder) {
    router->Handle(std::move(request), std::move(responder));
  };
}

}  // namespace rerank
