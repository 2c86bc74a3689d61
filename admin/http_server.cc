#include "admin/http_server.h"

#include <exception>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace rerank {
namespace {

using json = nlohmann::json;

std::string Dump(const json& j) {
  // Replace invalid UTF-8 rather than throw (messages may quote request data).
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

AdminHttpResponse Json(int status, const json& body) {
  AdminHttpResponse r;
  r.status = status;
  r.body = Dump(body);
  return r;
}

AdminHttpResponse Error(int status, absl::string_view message) {
  return Json(status, json{{"error", std::string(message)}});
}

int HttpStatusFor(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    default:
      return 500;
  }
}

AdminHttpResponse FromStatus(const absl::Status& s) { return Error(HttpStatusFor(s), s.message()); }

std::optional<std::string> Header(const AdminHttpRequest& req, const std::string& name) {
  auto it = req.headers.find(name);
  if (it == req.headers.end()) return std::nullopt;
  return it->second;
}

// Parses the body as a JSON object; nullopt + *error on failure. An empty body is {}.
std::optional<json> ParseObject(const std::string& body, AdminHttpResponse* error) {
  if (absl::StripAsciiWhitespace(body).empty()) return json::object();
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    *error = Error(400, "request body: invalid JSON");
    return std::nullopt;
  }
  if (!j.is_object()) {
    *error = Error(400, "request body: must be a JSON object");
    return std::nullopt;
  }
  return j;
}

// "actor" from the body (a string), else `fallback`.
std::optional<std::string> Actor(const json& body, const std::string& fallback,
                                 AdminHttpResponse* error) {
  auto it = body.find("actor");
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_string()) {
    *error = Error(400, "actor: must be a string");
    return std::nullopt;
  }
  if (absl::Status s = ValidateActor(it->get<std::string>()); !s.ok()) {
    *error = FromStatus(s);
    return std::nullopt;
  }
  return it->get<std::string>();
}

AdminHttpResponse PostFlags(AdminCore& core, const AdminHttpRequest& req) {
  AdminHttpResponse err;
  std::optional<json> body = ParseObject(req.body, &err);
  if (!body) return err;
  for (const auto& [key, value] : body->items()) {
    if (key != "stage" && key != "flags" && key != "actor") {
      return Error(400, absl::StrCat(key, ": unknown key (expected stage or flags, and actor)"));
    }
  }
  std::optional<std::string> actor = Actor(*body, "admin-http", &err);
  if (!actor) return err;
  const bool has_stage = body->contains("stage");
  const bool has_flags = body->contains("flags");
  if (has_stage == has_flags) {
    return Error(400, "request body: give exactly one of \"stage\" or \"flags\"");
  }
  absl::StatusOr<json> result;
  if (has_stage) {
    const json& stage = (*body)["stage"];
    if (!stage.is_string()) return Error(400, "stage: must be a string");
    result = core.SetStage(stage.get<std::string>(), *actor);
  } else {
    const json& patch = (*body)["flags"];
    if (!patch.is_object()) return Error(400, "flags: must be a JSON object");
    result = core.PatchFlags(patch, *actor);
  }
  if (!result.ok()) return FromStatus(result.status());
  return Json(200, *result);
}

AdminHttpResponse PostReload(AdminCore& core, const AdminHttpRequest& req) {
  AdminHttpResponse err;
  std::optional<json> body = ParseObject(req.body, &err);
  if (!body) return err;
  std::optional<std::string> actor = Actor(*body, "admin-http", &err);
  if (!actor) return err;
  AdminCore::ReloadResult r = core.Reload(*actor, "admin-http");
  json out = {{"reloaded", r.reloaded}, {"flags", r.flags}};
  if (!r.error.ok()) out["error"] = std::string(r.error.message());
  return Json(200, out);
}

struct Route {
  const char* path;
  const char* method;
  bool needs_token;
  AdminHttpResponse (*handler)(AdminCore&, const AdminHttpRequest&);
};

const Route kRoutes[] = {
    {"/health", "GET", false,
     [](AdminCore& core, const AdminHttpRequest&) {
       HealthReport h = core.Health();
       return Json(h.readiness.ready ? 200 : 503, h.ToJson());
     }},
    {"/live", "GET", false,
     [](AdminCore&, const AdminHttpRequest&) { return Json(200, json{{"live", true}}); }},
    {"/ready", "GET", false,
     [](AdminCore& core, const AdminHttpRequest&) {
       Readiness r = core.GetReadiness();
       if (r.ready) return Json(200, json{{"ready", true}});
       return Json(503, json{{"ready", false}, {"reason", r.reason}});
     }},
    {"/metrics", "GET", false,
     [](AdminCore& core, const AdminHttpRequest&) {
       AdminHttpResponse r;
       r.content_type = "text/plain; version=0.0.4; charset=utf-8";
       r.body = core.MetricsText();
       return r;
     }},
    {"/flags", "GET", false,
     [](AdminCore& core, const AdminHttpRequest&) { return Json(200, core.FlagsView()); }},
    {"/flags", "POST", true, PostFlags},
    {"/reload", "POST", true, PostReload},
};

}  // namespace

AdminHttpResponse HandleAdminHttp(AdminCore& core, const AdminHttpRequest& req) {
  try {
    std::vector<std::string> allowed;
    for (const Route& route : kRoutes) {
      if (req.path != route.path) continue;
      if (req.method != route.method) {
        allowed.push_back(route.method);
        continue;
      }
      if (route.needs_token) {
        absl::Status auth = core.Authorize(
            AdminTokenFromHeaders(Header(req, "authorization"), Header(req, "x-admin-token")));
        if (!auth.ok()) {
          AdminHttpResponse r = FromStatus(auth);
          if (r.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
          return r;
        }
      }
      return route.handler(core, req);
    }
    if (!allowed.empty()) {
      AdminHttpResponse r = Error(
          405, absl::StrCat("method ", req.method, " not allowed on ", req.path, "; use ",
                            absl::StrJoin(allowed, " or ")));
      r.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
      return r;
    }
    return Error(404, absl::StrCat("no such endpoint: ", req.path,
                                   " (try /health, /live, /ready, /metrics, /flags, /reload)"));
  } catch (const std::exception& e) {
    // json type errors and the like: an adapter boundary, never let them escape.
    return Error(500, absl::StrCat("internal error: ", e.what()));
  }
}

// ---- Transport ----

absl::StatusOr<std::unique_ptr<AdminHttpServer>> AdminHttpServer::Start(const Options& options,
                                                                        AdminCore* core) {
  if (core == nullptr) return absl::InvalidArgumentError("AdminHttpServer: core must not be null");
  if (options.max_body_bytes < 1) {
    return absl::InvalidArgumentError("AdminHttpServer: max_body_bytes must be >= 1");
  }
  HttpServer::Options o;
  o.listen = options.listen;
  o.listen_key = "admin.http_listen";
  o.name = "admin-http";
  o.io_threads = options.threads;
  o.max_connections = options.max_connections;
  o.max_header_bytes = options.max_header_bytes;
  o.max_body_bytes = options.max_body_bytes;
  o.request_timeout_ms = options.request_timeout_ms;
  o.idle_timeout_ms = options.idle_timeout_ms;
  // Every handler is a bounded, non-blocking call into the core: run it on the I/O thread.
  absl::StatusOr<std::unique_ptr<HttpServer>> http =
      HttpServer::Start(std::move(o), SyncHttpHandler([core](const HttpRequest& request) {
                          AdminHttpResponse r = HandleAdminHttp(*core, request);
                          r.headers.emplace_back("Cache-Control", "no-store");
                          return r;
                        }));
  if (!http.ok()) return http.status();
  return std::unique_ptr<AdminHttpServer>(new AdminHttpServer(*std::move(http)));
}

}  // namespace rerank
