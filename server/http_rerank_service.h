// The HTTP data plane: a second thin adapter over RerankEngine (besides the gRPC RerankService)
// that speaks the rerank dialects RAG frameworks use, so rerankd drops into them unchanged:
//   POST /v2/rerank  Cohere v2: {model, query, documents, top_n?, max_tokens_per_doc?,
//                    return_documents?} -> {id, results: [{index, relevance_score, document?}],
//                    meta}
//   POST /v1/rerank  Cohere v1 and Jina: the same request -> {id, model, results, usage, meta}
//   POST /rerank     with `texts`: TEI {query, texts, truncate?, truncation_direction?,
//                    raw_scores?, return_text?} -> a bare array [{index, score, text?}];
//                    with `documents`: the /v1/rerank shape
//   GET /openapi.json  the OpenAPI 3 document of these routes
// Bodies are proto messages (proto/rerank/v1/http_api.proto) parsed and rendered with protobuf's
// JSON mapping; unknown keys are ignored and null means unset. relevance_score is the sigmoid of
// the model's logit; TEI's raw_scores returns the logit. return_documents defaults to false on
// every route (as Cohere; Jina's clients send it explicitly). A missing or null top_n returns
// every document.
//
// Errors are in each dialect's shape: Cohere/Jina {"message"}, TEI {"error", "error_type"};
// 400 invalid (TEI: 422 for a well-formed body with invalid values), 401 bad bearer token, 404
// unknown model (strict mode), 429 with Retry-After, 503 not ready or draining.
// Every response carries x-request-id (the client's when it sent a valid one) and, when scored,
// TEI-style timings in milliseconds: x-tokenization-time, x-queue-time, x-inference-time,
// x-total-time.
//
// Threads: handlers run on the HTTP server's I/O threads and only parse, check and queue; the
// engine answers on a batcher worker (or inline for errors and cache hits), where the response is
// rendered and handed to the responder. Never blocks. Thread-safe.
#ifndef RERANK_SERVER_HTTP_RERANK_SERVICE_H_
#define RERANK_SERVER_HTTP_RERANK_SERVICE_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/http/http_router.h"
#include "common/http/http_types.h"
#include "common/observers.h"
#include "server/rerank_engine.h"

namespace rerank {

class HttpRerankService {
 public:
  struct Options {
    // false: any `model` name is served by the loaded model (the response says which). true:
    // only the served model's own name and `model_aliases`; others get 404 naming the model.
    bool strict_model = false;
    std::set<std::string> model_aliases;
    // Bearer token -> client id. Empty: no authentication (an Authorization header is ignored;
    // the Cohere SDK always sends one). Otherwise every rerank call needs a listed token, and its
    // client id is the caller's identity for rate limiting, fair share and audit. Tokens are
    // never logged, audited or echoed.
    std::map<std::string, std::string> bearer_tokens;
    // Jobs still queued this long after the request arrived are dropped (DEADLINE_EXCEEDED): the
    // HTTP server has answered 408 by then. Normally the server's request timeout. >= 1 ms.
    absl::Duration request_timeout = absl::Seconds(10);
    // x-request-id longer than this (or not printable ASCII) is replaced by a generated id.
    size_t max_request_id_bytes = 128;
  };
  struct Deps {
    RerankEngine* engine = nullptr;        // required; outlives the service
    std::function<Readiness()> readiness;  // required: 503 with its reason when not ready
  };

  // InvalidArgument for a missing dependency or a bad option (naming it).
  static absl::StatusOr<std::unique_ptr<HttpRerankService>> Create(Options options, Deps deps);

  // Adds the routes above to `router`. The service must outlive the router's handlers.
  absl::Status Register(HttpRouter* router);

  // For HttpServer::Options::render_error (errors the server itself answers: 413 body too large,
  // 400 malformed HTTP, 404, 405, 408, 503 over the connection cap): it cannot know the dialect,
  // so the body holds both shapes, {"message", "error", "error_type"}.
  static HttpResponse RenderServerError(int status, std::string_view message);

  // The OpenAPI 3 document served at /openapi.json (embedded at build time).
  static std::string_view OpenApiJson();

  enum class Dialect { kCohereV2, kCohereV1, kTei };

 private:
  HttpRerankService(Options options, Deps deps);
  void HandleRerank(const std::string& route, HttpRequest request, HttpResponder responder);

  const Options options_;
  const Deps deps_;
};

}  // namespace rerank

#endif  // RERANK_SERVER_HTTP_RERANK_SERVICE_H_
