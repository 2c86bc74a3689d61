#include "admin/http_server.h"

#include <exception>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "common/http/http_status.h"
#include "common/proto_json.h"
#include "common/status_macros.h"

namespace rerank {
namespace {

AdminHttpResponse Json(int status, const google::protobuf::Message& body) {
  AdminHttpResponse r;
  r.status = status;
  r.body = MessageToJson(body);
  return r;
}

AdminHttpResponse Error(int status, absl::string_view message) {
  admin::v1::Error e;
  e.set_error(std::string(message));
  return Json(status, e);
}

// The one absl::Status -> HTTP conversion (common/http/http_status.h), shared with the data plane.
AdminHttpResponse FromStatus(const absl::Status& s) {
  return Error(HttpStatusFromStatus(s), s.message());
}

std::optional<std::string> Header(const AdminHttpRequest& req, const std::string& name) {
  auto it = req.headers.find(name);
  if (it == req.headers.end()) return std::nullopt;
  return it->second;
}

// Parses the body into `message` (strict: unknown keys and wrong types are errors naming the
// field). An empty body is an empty message.
std::optional<AdminHttpResponse> ParseBody(const std::string& body,
                                           google::protobuf::Message* message) {
  if (absl::StripAsciiWhitespace(body).empty()) {
    message->Clear();
    return std::nullopt;
  }
  absl::Status s = JsonToMessage(body, message, "request body");
  if (!s.ok()) return FromStatus(s);
  return std::nullopt;
}

// The request's actor when present (even empty: that is an error), else `fallback`; validated.
template <typename Request>
absl::StatusOr<std::string> Actor(const Request& request, const std::string& fallback) {
  const std::string a = request.has_actor() ? request.actor() : fallback;
  RETURN_IF_ERROR(ValidateActor(a));
  return a;
}

AdminHttpResponse PostFlags(AdminCore& core, const AdminHttpRequest& req) {
  admin::v1::UpdateFlagsRequest update;
  if (std::optional<AdminHttpResponse> err = ParseBody(req.body, &update)) return *err;
  absl::StatusOr<std::string> actor = Actor(update, "admin-http");
  if (!actor.ok()) return FromStatus(actor.status());
  const bool has_stage = !update.stage().empty();
  if (has_stage == update.has_flags()) {
    return Error(400, "request body: give exactly one of \"stage\" or \"flags\"");
  }
  absl::StatusOr<admin::v1::FlagsView> result =
      has_stage ? core.SetStage(update.stage(), *actor, update.reason())
                : core.PatchFlags(update.flags(), *actor, update.reason());
  if (!result.ok()) return FromStatus(result.status());
  return Json(200, *result);
}

AdminHttpResponse PostReload(AdminCore& core, const AdminHttpRequest& req) {
  admin::v1::ReloadRequest reload;
  if (std::optional<AdminHttpResponse> err = ParseBody(req.body, &reload)) return *err;
  absl::StatusOr<std::string> actor = Actor(reload, "admin-http");
  if (!actor.ok()) return FromStatus(actor.status());
  return Json(200, core.Reload(*actor, "admin-http"));
}

using Respond = std::function<void(AdminHttpResponse)>;

// POST /model/reload: answers from the reload thread once the new model serves (or failed).
void PostModelReload(AdminCore& core, const AdminHttpRequest& req, Respond respond) {
  admin::v1::ReloadModelRequest reload;
  if (std::optional<AdminHttpResponse> err = ParseBody(req.body, &reload)) return respond(*err);
  absl::StatusOr<std::string> actor = Actor(reload, "admin-http");
  if (!actor.ok()) return respond(FromStatus(actor.status()));
  core.ReloadModel(
      reload, *actor, "admin-http",
      [respond = std::move(respond)](absl::StatusOr<admin::v1::ReloadModelResponse> r) {
        respond(r.ok() ? Json(200, *r) : FromStatus(r.status()));
      });
}

struct Route {
  const char* path;
  const char* method;
  bool needs_token;
  // Exactly one of: answers inline, or answers through `respond` (maybe later, another thread).
  AdminHttpResponse (*handler)(AdminCore&, const AdminHttpRequest&);
  void (*async_handler)(AdminCore&, const AdminHttpRequest&, Respond) = nullptr;
};

const Route kRoutes[] = {
    {"/health", "GET", false,
     [](AdminCore& core, const AdminHttpRequest&) {
       const admin::v1::Health h = core.Health();
       return Json(h.ready() ? 200 : 503, h);
     }},
    {"/live", "GET", false,
     [](AdminCore&, const AdminHttpRequest&) {
       admin::v1::Liveness live;
       live.set_live(true);
       return Json(200, live);
     }},
    {"/ready", "GET", false,
     [](AdminCore& core, const AdminHttpRequest&) {
       const Readiness r = core.GetReadiness();
       admin::v1::Readiness body;
       body.set_ready(r.ready);
       body.set_reason(r.reason);
       return Json(r.ready ? 200 : 503, body);
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
    {"/model/reload", "POST", true, nullptr, PostModelReload},
};

}  // namespace

void RouteAdminHttp(AdminCore& core, const AdminHttpRequest& req,
                    std::function<void(AdminHttpResponse)> respond) {
  AdminHttpResponse r;
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
          r = FromStatus(auth);
          if (r.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
          return respond(std::move(r));
        }
      }
      if (route.async_handler != nullptr) return route.async_handler(core, req, std::move(respond));
      return respond(route.handler(core, req));
    }
    if (!allowed.empty()) {
      r = Error(405, absl::StrCat("method ", req.method, " not allowed on ", req.path, "; use ",
                                  absl::StrJoin(allowed, " or ")));
      r.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
      return respond(std::move(r));
    }
    r = Error(404, absl::StrCat("no such endpoint: ", req.path,
                                " (try /health, /live, /ready, /metrics, /flags, /reload, "
                                "/model/reload)"));
  } catch (const std::exception& e) {
    // json type errors and the like: an adapter boundary, never let them escape.
    r = Error(500, absl::StrCat("internal error: ", e.what()));
  }
  if (respond) respond(std::move(r));
}

AdminHttpResponse HandleAdminHttp(AdminCore& core, const AdminHttpRequest& req) {
  // The answer may come from another thread (POST /model/reload): wait for it.
  struct Answer {
    absl::Notification done;
    AdminHttpResponse response;
  };
  auto answer = std::make_shared<Answer>();
  RouteAdminHttp(core, req, [answer](AdminHttpResponse r) {
    answer->response = std::move(r);
    answer->done.Notify();
  });
  answer->done.WaitForNotification();
  return std::move(answer->response);
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
  // Every route but POST /model/reload is a bounded, non-blocking call into the core, answered
  // on the I/O thread; a model reload answers later from the reload thread.
  absl::StatusOr<std::unique_ptr<HttpServer>> http =
      HttpServer::Start(std::move(o), [core](HttpRequest request, HttpResponder responder) {
        auto shared = std::make_shared<HttpResponder>(std::move(responder));
        RouteAdminHttp(*core, request, [shared](AdminHttpResponse r) {
          r.headers.emplace_back("Cache-Control", "no-store");
          shared->Respond(std::move(r));
        });
      });
  if (!http.ok()) return http.status();
  return std::unique_ptr<AdminHttpServer>(new AdminHttpServer(*std::move(http)));
}

}  // namespace rerank
