#include "server/http_rerank_service.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/http/http_status.h"
#include "common/proto_json.h"
#include "common/status_macros.h"
#include "rerank/v1/http_api.pb.h"
#include "server/scoring_queue.h"

namespace rerank {
namespace {

namespace hp = ::rerank::v1::http;
using Dialect = HttpRerankService::Dialect;

constexpr char kBodyWhat[] = "body";  // names the document in JSON errors: "body: invalid JSON"

HttpResponse Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

// TEI's error_type for an HTTP status.
const char* TeiErrorType(int status) {
  switch (status) {
    case 401:
      return "Unauthorized";
    case 404:
      return "NotFound";
    case 429:
      return "Overloaded";
    case 503:
      return "Unhealthy";
    default:
      return status >= 500 ? "Backend" : "Validation";
  }
}

HttpResponse ErrorResponse(Dialect dialect, int status, absl::string_view message) {
  if (dialect == Dialect::kTei) {
    hp::TeiError e;
    e.set_error(std::string(message));
    e.set_error_type(TeiErrorType(status));
    return Json(status, MessageToJson(e));
  }
  hp::CohereError e;
  e.set_message(std::string(message));
  return Json(status, MessageToJson(e));
}

// Rate limits and a full queue carry a retry hint in milliseconds; Retry-After takes whole
// seconds (at least 1).
void AddRetryAfter(const absl::Status& status, HttpResponse* r) {
  auto retry = status.GetPayload(kRetryAfterPayload);
  if (!retry.has_value()) retry = status.GetPayload(kQueueRetryAfterPayload);
  int64_t ms = 1000;
  if (retry.has_value()) (void)absl::SimpleAtoi(std::string(*retry), &ms);
  r->headers.emplace_back("Retry-After", absl::StrCat(std::max<int64_t>(1, (ms + 999) / 1000)));
}

// The engine names a TEI text "documents[i].text"; TEI's clients know it as "texts[i]".
std::string TeiFieldNames(absl::string_view message) {
  if (!absl::StartsWith(message, "documents[")) return std::string(message);
  const size_t close = message.find(']');
  if (close == absl::string_view::npos) return std::string(message);
  absl::string_view rest = message.substr(close + 1);
  absl::ConsumePrefix(&rest, ".text");
  return absl::StrCat("texts", message.substr(9, close - 9 + 1), rest);
}

HttpResponse StatusResponse(Dialect dialect, const absl::Status& status) {
  int code = HttpStatusFromStatus(status);
  // TEI answers a well-formed request with invalid values 422 (axum's and TEI's validation).
  if (dialect == Dialect::kTei && code == 400) code = 422;
  HttpResponse r = ErrorResponse(
      dialect, code,
      dialect == Dialect::kTei ? TeiFieldNames(status.message()) : std::string(status.message()));
  if (code == 429) AddRetryAfter(status, &r);
  return r;
}

std::string NewRequestId() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%016x", rng());
}

bool ValidRequestId(std::string_view id, size_t max_bytes) {
  if (id.empty() || id.size() > max_bytes) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

// Constant-time comparison, so response timing does not reveal how much of a token matched.
bool SameToken(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string Millis(absl::Duration d) {
  return absl::StrFormat("%.3f", absl::ToDoubleMilliseconds(d));
}

// The body's documents (strings or {"text": string}) into the engine's request.
absl::Status CopyDocuments(const hp::RerankBody& body, v1::RerankRequest* out) {
  for (int i = 0; i < body.documents_size(); ++i) {
    const google::protobuf::Value& v = body.documents(i);
    const std::string* text = nullptr;
    if (v.kind_case() == google::protobuf::Value::kStringValue) {
      text = &v.string_value();
    } else if (v.kind_case() == google::protobuf::Value::kStructValue) {
      const auto* t =
          static_cast<const google::protobuf::Value*>(StructField(v.struct_value(), "text"));
      if (t != nullptr && t->kind_case() == google::protobuf::Value::kStringValue) {
        text = &t->string_value();
      }
    }
    if (text == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("documents[", i, "]: must be a string or an object with a string \"text\""));
    }
    out->add_documents()->set_text(*text);
  }
  return absl::OkStatus();
}

// The engine's request for `body` in `dialect`, or INVALID_ARGUMENT naming the field.
absl::StatusOr<v1::RerankRequest> ToEngineRequest(Dialect dialect, const hp::RerankBody& body) {
  v1::RerankRequest req;
  req.set_query(body.query());
  if (dialect == Dialect::kTei) {
    if (body.texts_size() == 0) {
      return absl::InvalidArgumentError("texts: must contain at least one text");
    }
    for (const std::string& t : body.texts()) req.add_documents()->set_text(t);
    req.set_top_n(static_cast<uint32_t>(body.texts_size()));  // TEI returns every text
    req.set_return_documents(body.has_return_text() && body.return_text());
    req.set_score_activation(body.has_raw_scores() && body.raw_scores()
                                 ? v1::SCORE_ACTIVATION_RAW
                                 : v1::SCORE_ACTIVATION_SIGMOID);
    // Missing or null: truncate (as TEI with --auto-truncate); false: a too-long pair is an error.
    req.set_reject_truncation(body.has_truncate() && !body.truncate());
    const std::string dir = absl::AsciiStrToLower(body.truncation_direction());
    if (dir == "left") {
      req.set_truncation_direction(v1::TRUNCATION_DIRECTION_LEFT);
    } else if (dir.empty() || dir == "right") {
      req.set_truncation_direction(v1::TRUNCATION_DIRECTION_RIGHT);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("truncation_direction: must be \"left\" or \"right\", got \"",
                       body.truncation_direction().substr(0, 32), "\""));
    }
    if (body.documents_size() > 0) {
      return absl::InvalidArgumentError("documents: send either texts (TEI) or documents");
    }
    return req;
  }
  if (body.texts_size() > 0) {
    return absl::InvalidArgumentError(
        "texts: not part of this API; send documents (the TEI shape is served at POST /rerank)");
  }
  if (body.documents_size() == 0) {
    return absl::InvalidArgumentError("documents: must contain at least one document");
  }
  if (body.has_top_n() && body.top_n() == 0) {
    return absl::InvalidArgumentError("top_n: must be >= 1 (omit it for every document)");
  }
  RETURN_IF_ERROR(CopyDocuments(body, &req));
  // Missing or null top_n: every document, in ranked order.
  req.set_top_n(body.has_top_n() ? body.top_n() : static_cast<uint32_t>(body.documents_size()));
  req.set_return_documents(body.has_return_documents() && body.return_documents());
  req.set_score_activation(v1::SCORE_ACTIVATION_SIGMOID);  // relevance_score is in [0, 1]
  if (body.has_max_tokens_per_doc()) {
    if (body.max_tokens_per_doc() == 0) {
      return absl::InvalidArgumentError("max_tokens_per_doc: must be >= 1");
    }
    req.set_max_tokens_per_doc(body.max_tokens_per_doc());
  }
  return req;
}

std::string RenderCohere(Dialect dialect, const v1::RerankResponse& resp, bool return_documents) {
  auto fill = [&](google::protobuf::RepeatedPtrField<hp::CohereResult>* results,
                  hp::CohereMeta* meta, const char* version) {
    for (const v1::RerankResult& r : resp.results()) {
      hp::CohereResult* c = results->Add();
      c->set_index(r.index());
      c->set_relevance_score(r.score());
      if (return_documents) c->mutable_document()->set_text(r.text());
    }
    meta->mutable_api_version()->set_version(version);
    meta->mutable_billed_units()->set_search_units(1);
  };
  if (dialect == Dialect::kCohereV2) {
    hp::CohereV2Response out;
    out.set_id(resp.request_id());
    fill(out.mutable_results(), out.mutable_meta(), "2");
    return MessageToJson(out);
  }
  hp::CohereV1Response out;
  out.set_id(resp.request_id());
  out.set_model(resp.model_name());
  out.mutable_usage()->set_total_tokens(static_cast<uint32_t>(
      std::min<uint64_t>(resp.timings().tokens(), std::numeric_limits<uint32_t>::max())));
  fill(out.mutable_results(), out.mutable_meta(), "1");
  return MessageToJson(out);
}

// TEI answers a bare array; each element is one message in the JSON mapping.
std::string RenderTei(const v1::RerankResponse& resp, bool return_text) {
  std::string out = "[";
  hp::TeiResult t;
  for (const v1::RerankResult& r : resp.results()) {
    t.Clear();
    t.set_index(r.index());
    t.set_score(r.score());
    if (return_text) t.set_text(r.text());
    if (out.size() > 1) out.push_back(',');
    out += MessageToJson(t);
  }
  out.push_back(']');
  return out;
}

}  // namespace

HttpRerankService::HttpRerankService(Options options, Deps deps)
    : options_(std::move(options)), deps_(std::move(deps)) {}

absl::StatusOr<std::unique_ptr<HttpRerankService>> HttpRerankService::Create(Options options,
                                                                             Deps deps) {
  if (deps.engine == nullptr || !deps.readiness) {
    return absl::InvalidArgumentError("HttpRerankService: engine and readiness are required");
  }
  if (options.request_timeout < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError("HttpRerankService: request_timeout must be >= 1 ms");
  }
  for (const auto& [token, client] : options.bearer_tokens) {
    if (token.empty() || client.empty()) {
      // Never the token itself in a message.
      return absl::InvalidArgumentError("server.http_bearer_tokens_file: empty token or client id");
    }
  }
  return std::unique_ptr<HttpRerankService>(
      new HttpRerankService(std::move(options), std::move(deps)));
}

HttpResponse HttpRerankService::RenderServerError(int status, std::string_view message) {
  hp::CohereError cohere;
  cohere.set_message(std::string(message));
  hp::TeiError tei;
  tei.set_error(std::string(message));
  tei.set_error_type(TeiErrorType(status));
  // {"message": m} + {"error": m, "error_type": t}: both dialects find their key.
  std::string body = MessageToJson(cohere);
  const std::string tei_json = MessageToJson(tei);
  if (body.size() >= 2 && tei_json.size() > 2) {
    body.pop_back();
    body += "," + tei_json.substr(1);
  }
  return Json(status, std::move(body));
}

absl::Status HttpRerankService::Register(HttpRouter* router) {
  for (const char* route : {"/v2/rerank", "/v1/rerank", "/rerank"}) {
    RETURN_IF_ERROR(router->Add(
        "POST", route, [this, r = std::string(route)](HttpRequest req, HttpResponder resp) {
          HandleRerank(r, std::move(req), std::move(resp));
        }));
  }
  return router->Add("GET", "/openapi.json", SyncHttpHandler([](const HttpRequest&) {
                       return Json(200, std::string(OpenApiJson()));
                     }));
}

void HttpRerankService::HandleRerank(const std::string& route, HttpRequest request,
                                     HttpResponder responder) {
  const absl::Time arrival = absl::Now();
  Dialect dialect = route == "/v2/rerank"   ? Dialect::kCohereV2
                    : route == "/v1/rerank" ? Dialect::kCohereV1
                                            : Dialect::kTei;
  // The request id first, so that every answer (errors too) carries one.
  std::string request_id;
  if (auto h = request.header("x-request-id");
      h.has_value() && ValidRequestId(*h, options_.max_request_id_bytes)) {
    request_id = *h;
  } else {
    request_id = NewRequestId();
  }
  auto answer = [&](HttpResponse r) {
    r.headers.emplace_back("x-request-id", request_id);
    responder.Respond(std::move(r));
  };

  hp::RerankBody body;
  JsonParseOptions parse_options;
  parse_options.ignore_unknown_fields = true;  // SDKs send extras (rank_fields, ...)
  absl::Status parsed = JsonToMessage(request.body, &body, kBodyWhat, parse_options);
  if (route == "/rerank") {
    // Decided by the body: `texts` is TEI, `documents` the Cohere/Jina shape.
    const bool tei = parsed.ok() ? body.texts_size() > 0 || body.documents_size() == 0
                                 : absl::StrContains(request.body, "\"texts\"");
    dialect = tei ? Dialect::kTei : Dialect::kCohereV1;
  }
  if (const Readiness ready = deps_.readiness(); !ready.ready) {
    return answer(ErrorResponse(dialect, 503, ready.reason));
  }
  CallInfo call;
  if (!options_.bearer_tokens.empty()) {
    const std::string auth = request.header("authorization").value_or("");
    constexpr absl::string_view kScheme = "bearer ";
    const bool bearer =
        auth.size() > kScheme.size() &&
        absl::EqualsIgnoreCase(absl::string_view(auth).substr(0, kScheme.size()), kScheme);
    const std::string token =
        bearer ? std::string(absl::StripAsciiWhitespace(auth.substr(kScheme.size()))) : "";
    for (const auto& [known, client] : options_.bearer_tokens) {
      if (SameToken(token, known)) call.authenticated_client_id = client;
    }
    if (call.authenticated_client_id.empty()) {
      HttpResponse r = ErrorResponse(
          dialect, 401,
          bearer ? "invalid bearer token" : "missing Authorization: Bearer <token> header");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return answer(std::move(r));
    }
  }
  if (!parsed.ok()) {
    // Not JSON at all: 400 in every dialect; a wrong type in valid JSON: 422 for TEI.
    const bool syntax = absl::StartsWith(parsed.message(), kBodyWhat);
    if (syntax) return answer(ErrorResponse(dialect, 400, parsed.message()));
    return answer(StatusResponse(dialect, parsed));
  }
  if (dialect != Dialect::kTei && options_.strict_model) {
    const std::string served = deps_.engine->model().name;
    if (body.model() != served && options_.model_aliases.count(body.model()) == 0) {
      return answer(ErrorResponse(dialect, 404,
                                  absl::StrCat("model '", body.model().substr(0, 128),
                                               "' not found; this server serves '", served, "'")));
    }
  }
  absl::StatusOr<v1::RerankRequest> engine_request = ToEngineRequest(dialect, body);
  if (!engine_request.ok()) return answer(StatusResponse(dialect, engine_request.status()));
  // The engine reads the request until it calls `done`, which owns it.
  auto req = std::make_shared<v1::RerankRequest>(*std::move(engine_request));
  req->set_request_id(request_id);
  call.peer_ip = request.peer;
  call.metadata_client_id = request.header("x-client-id").value_or("");
  call.deadline = arrival + options_.request_timeout;
  call.rpc_label = route;
  const bool return_documents = req->return_documents();
  // std::function needs a copyable callable: the responder travels in a shared_ptr.
  auto shared_responder = std::make_shared<HttpResponder>(std::move(responder));
  deps_.engine->Rerank(
      *req, call,
      [req, shared_responder, dialect, return_documents, arrival](absl::Status status,
                                                                  v1::RerankResponse resp) {
        HttpResponse r;
        if (!status.ok()) {
          r = StatusResponse(dialect, status);
        } else {
          r = Json(200, dialect == Dialect::kTei ? RenderTei(resp, return_documents)
                                                 : RenderCohere(dialect, resp, return_documents));
          const v1::RerankTimings& t = resp.timings();
          r.headers.emplace_back("x-tokenization-time",
                                 Millis(absl::Milliseconds(t.tokenization_ms())));
          r.headers.emplace_back("x-queue-time", Millis(absl::Milliseconds(t.queue_ms())));
          r.headers.emplace_back("x-inference-time", Millis(absl::Milliseconds(t.inference_ms())));
          r.headers.emplace_back("x-total-time", Millis(absl::Now() - arrival));
        }
        r.headers.emplace_back("x-request-id", req->request_id());
        shared_responder->Respond(std::move(r));
      });
}

}  // namespace rerank
