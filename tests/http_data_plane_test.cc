// The HTTP data plane end to end over real loopback sockets: a RerankServer on port 0 with the
// fake (lexical-overlap) scorer and the real tokenizer, batcher, engine, flags, rate limiter and
// audit log; requests in the Cohere v2, Cohere v1 / Jina and TEI dialects, their error shapes,
// the limits, bearer tokens, strict model names, draining, headers, metrics labels and the
// OpenAPI document.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "app/rerank_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer.h"
#include "tests/testing/fake_scorer.h"
#include "tests/testing/http_client.h"
#include "tests/testing/test_dirs.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;
using testing::HttpResult;

// Records the RequestReports the engine emits (the metrics' source).
class Reports final : public RequestObserver {
 public:
  void OnRequest(const RequestReport& r) override {
    absl::MutexLock lock(&mu_);
    rpcs_.push_back(r.rpc);
  }
  std::vector<std::string> rpcs() {
    absl::MutexLock lock(&mu_);
    return rpcs_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> rpcs_ ABSL_GUARDED_BY(mu_);
};

float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

class HttpDataPlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("http_data_plane_test");
    config_.model.dir = testing::TinyModelDir();
    config_.server.listen = "127.0.0.1:0";
    config_.server.http_listen = "127.0.0.1:0";
    config_.admin.http_listen = "";
    config_.admin.grpc_listen = "";
    config_.audit.path = (dir_ / "audit.jsonl").string();
    config_.flags.path = (dir_ / "flags.yaml").string();
    config_.flags.initial.rate_limit_enabled = false;
    config_.rerank.max_documents = 50;
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }
  void Start() {
    RerankServer::Options o;
    o.scorer_factory = scorer_.Factory();
    o.observer = &reports_;
    o.config = config_;
    auto s = RerankServer::BuildAndStart(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    if (!config_.server.http_listen.empty()) {
      ASSERT_GT(server_->http_port(), 0);
    }
  }
  HttpResult Post(const std::string& path, const std::string& body,
                  std::vector<std::pair<std::string, std::string>> headers = {}) {
    headers.emplace_back("Content-Type", "application/json");
    auto r = testing::HttpRequest(server_->http_port(), "POST", path, headers, body);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HttpResult{};
  }
  static json Parse(const HttpResult& r) {
    json j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << r.body;
    return j;
  }
  static std::vector<int> Indices(const json& results) {
    std::vector<int> out;
    for (const json& r : results) out.push_back(r["index"].get<int>());
    return out;
  }
  std::vector<json> AuditEvents() {
    server_->Shutdown();
    std::vector<json> events;
    std::ifstream in(config_.audit.path);
    std::string line;
    while (std::getline(in, line)) events.push_back(json::parse(line));
    return events;
  }

  fs::path dir_;
  Config config_;
  testing::FakeScorerControl scorer_;
  Reports reports_;
  std::unique_ptr<RerankServer> server_;
};

// Overlap with the query "how many people live in berlin" (the fake scorer's logit is the
// overlap minus 0.001 per document token): 0 (-0.004), 4 (3.996), 0 (-0.001), 3 (2.996).
const char kQuery[] = "how many people live in berlin";
const json kDocs = {"the weather is nice", "people live in berlin", "cats",
                    "berlin has many people"};

TEST_F(HttpDataPlaneTest, CohereV2RanksAllDocumentsWithSigmoidScores) {
  Start();
  // Strings and {text} objects mix; null options are unset; unknown keys are ignored.
  json body = {{"model", "rerank-v3.5"},
               {"query", kQuery},
               {"documents",
                {"the weather is nice",
                 {{"text", "people live in berlin"}},
                 "cats",
                 {{"text", "berlin has many people"}, {"title", "x"}}}},
               {"top_n", nullptr},
               {"max_tokens_per_doc", nullptr},
               {"return_documents", nullptr},
               {"rank_fields", {"text"}}};
  HttpResult r = Post("/v2/rerank", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json j = Parse(r);
  EXPECT_THAT(Indices(j["results"]), ElementsAre(1, 3, 2, 0));  // every document: top_n null
  float previous = 2.0f;
  for (const json& res : j["results"]) {
    const float s = res["relevance_score"].get<float>();
    EXPECT_GT(s, 0.0f);
    EXPECT_LT(s, 1.0f);
    EXPECT_LE(s, previous);
    previous = s;
    EXPECT_FALSE(res.contains("document")) << "return_documents defaults to false";
  }
  // "people live in berlin": overlap 4, 4 word pieces.
  EXPECT_NEAR(j["results"][0]["relevance_score"].get<float>(), Sigmoid(4 - 0.004f), 1e-5);
  EXPECT_EQ(j["meta"]["api_version"]["version"], "2");
  EXPECT_EQ(j["meta"]["billed_units"]["search_units"], 1);
  EXPECT_EQ(j["id"], r.header("x-request-id"));
  for (const char* h :
       {"x-tokenization-time", "x-queue-time", "x-inference-time", "x-total-time"}) {
    double ms = -1;
    EXPECT_TRUE(absl::SimpleAtod(r.header(h), &ms)) << h << ": " << r.header(h);
    EXPECT_GE(ms, 0) << h;
  }
  EXPECT_THAT(reports_.rpcs(), ElementsAre("/v2/rerank"));  // metrics' rpc label is the route
}

TEST_F(HttpDataPlaneTest, CohereV2TopNAndReturnDocuments) {
  Start();
  json body = {{"query", kQuery}, {"documents", kDocs}, {"top_n", 2}, {"return_documents", true}};
  HttpResult r = Post("/v2/rerank", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json j = Parse(r);
  ASSERT_THAT(Indices(j["results"]), ElementsAre(1, 3));
  EXPECT_EQ(j["results"][0]["document"]["text"], "people live in berlin");
  EXPECT_EQ(j["results"][1]["document"]["text"], "berlin has many people");
}

TEST_F(HttpDataPlaneTest, CohereV1AndJinaShape) {
  Start();
  json body = {{"model", "jina-reranker-v2-base-multilingual"},
               {"query", kQuery},
               {"documents", kDocs},
               {"top_n", 3}};
  HttpResult r = Post("/v1/rerank", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json j = Parse(r);
  EXPECT_THAT(Indices(j["results"]), ElementsAre(1, 3, 2));
  EXPECT_FALSE(j["results"][0].contains("document"));  // default false on /v1 too
  EXPECT_EQ(j["model"], "tiny_model") << "the model that answered";
  EXPECT_GT(j["usage"]["total_tokens"].get<int>(), 0);
  EXPECT_EQ(j["meta"]["api_version"]["version"], "1");
  // Jina's clients send return_documents explicitly; the value is honoured.
  body["return_documents"] = true;
  j = Parse(Post("/v1/rerank", body.dump()));
  EXPECT_EQ(j["results"][0]["document"]["text"], "people live in berlin");
  // POST /rerank with documents is the same shape.
  j = Parse(Post("/rerank", body.dump()));
  EXPECT_THAT(Indices(j["results"]), ElementsAre(1, 3, 2));
  EXPECT_EQ(j["results"][0]["document"]["text"], "people live in berlin");
  EXPECT_TRUE(j.contains("usage"));
}

TEST_F(HttpDataPlaneTest, TeiBareArrayRawScoresAndText) {
  Start();
  json body = {{"query", kQuery}, {"texts", kDocs}};
  HttpResult r = Post("/rerank", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json j = Parse(r);
  ASSERT_TRUE(j.is_array()) << r.body;
  EXPECT_THAT(Indices(j), ElementsAre(1, 3, 2, 0));  // every text, sorted by score
  EXPECT_NEAR(j[0]["score"].get<float>(), Sigmoid(4 - 0.004f), 1e-5);
  EXPECT_FALSE(j[0].contains("text"));
  body["raw_scores"] = true;
  body["return_text"] = true;
  j = Parse(Post("/rerank", body.dump()));
  EXPECT_NEAR(j[0]["score"].get<float>(), 4 - 0.004f, 1e-5);  // the logit
  EXPECT_NEAR(j[3]["score"].get<float>(), 0 - 0.004f, 1e-5);  // "the weather is nice": < 0
  EXPECT_EQ(j[0]["text"], "people live in berlin");
}

TEST_F(HttpDataPlaneTest, MaxTokensPerDocCutsEachDocument) {
  Start();
  // Cut to 2 word pieces "alpha beta" loses the overlap "people berlin".
  json body = {{"query", kQuery},
               {"documents", {"alpha beta people berlin", "people"}},
               {"max_tokens_per_doc", 2}};
  json j = Parse(Post("/v2/rerank", body.dump()));
  ASSERT_THAT(Indices(j["results"]), ElementsAre(1, 0)) << j.dump();
  EXPECT_NEAR(j["results"][1]["relevance_score"].get<float>(), Sigmoid(0 - 0.002f), 1e-5);
  body.erase("max_tokens_per_doc");
  j = Parse(Post("/v2/rerank", body.dump()));
  EXPECT_THAT(Indices(j["results"]), ElementsAre(0, 1));
  EXPECT_NEAR(j["results"][0]["relevance_score"].get<float>(), Sigmoid(2 - 0.004f), 1e-5);
}

TEST_F(HttpDataPlaneTest, TeiTruncationDirectionAndTruncateFalse) {
  config_.model.max_length = 16;  // 13 tokens for query + document
  config_.rerank.chunk_overlap_tokens = 2;
  Start();
  std::string filler;
  for (int i = 0; i < 20; ++i) absl::StrAppend(&filler, "cat ");
  const std::string doc = filler + "berlin";
  json body = {{"query", "berlin"}, {"texts", {doc}}, {"raw_scores", true}};
  json right = Parse(Post("/rerank", body.dump()));
  body["truncation_direction"] = "Left";
  json left = Parse(Post("/rerank", body.dump()));
  // Right truncation keeps the first 12 document tokens (cats only); left keeps "berlin".
  EXPECT_NEAR(right[0]["score"].get<float>(), 0 - 0.012f, 1e-5) << right.dump();
  EXPECT_NEAR(left[0]["score"].get<float>(), 1 - 0.012f, 1e-5) << left.dump();
  body["truncate"] = false;
  HttpResult r = Post("/rerank", body.dump());
  EXPECT_EQ(r.status, 422) << r.body;
  json e = Parse(r);
  EXPECT_EQ(e["error_type"], "Validation");
  EXPECT_THAT(e["error"].get<std::string>(), HasSubstr("texts[0]"));
  EXPECT_THAT(e["error"].get<std::string>(), HasSubstr("max_length"));
  body["truncation_direction"] = "middle";
  body.erase("truncate");
  r = Post("/rerank", body.dump());
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_THAT(Parse(r)["error"].get<std::string>(), HasSubstr("truncation_direction"));
}

TEST_F(HttpDataPlaneTest, ErrorShapesPerDialect) {
  Start();
  struct Case {
    std::string path, body;
    int status;
    std::string field;  // in the message
  };
  const std::vector<Case> cohere = {
      {"/v2/rerank", "{\"query\": ", 400, "invalid JSON"},
      {"/v2/rerank", "[1, 2]", 400, "JSON object"},
      {"/v2/rerank", R"({"query": "q", "documents": ["a"], "top_n": "three"})", 400, "top_n"},
      {"/v2/rerank", R"({"query": "q", "documents": ["a"], "top_n": 0})", 400, "top_n"},
      {"/v2/rerank", R"({"query": "q", "documents": ["a", 7]})", 400, "documents[1]"},
      {"/v2/rerank", R"({"query": "q", "documents": [{"title": "a"}]})", 400, "documents[0]"},
      {"/v2/rerank", R"({"query": "  ", "documents": ["a"]})", 400, "query"},
      {"/v2/rerank", R"({"query": "q", "documents": []})", 400, "documents"},
      {"/v1/rerank", R"({"query": 5, "documents": ["a"]})", 400, "query"},
      {"/v1/rerank", R"({"query": "q", "texts": ["a"]})", 400, "texts"},
      {"/v1/rerank", R"({"query": "q", "documents": ["a"], "return_documents": "yes"})", 400,
       "return_documents"},
  };
  for (const Case& c : cohere) {
    HttpResult r = Post(c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.body;
    json j = Parse(r);
    ASSERT_TRUE(j.contains("message")) << r.body;
    EXPECT_FALSE(j.contains("error")) << r.body;
    EXPECT_THAT(j["message"].get<std::string>(), HasSubstr(c.field)) << c.body;
    EXPECT_FALSE(r.header("x-request-id").empty());
  }
  const std::vector<Case> tei = {
      {"/rerank", R"({"query": "q", "texts": )", 400, "invalid JSON"},
      {"/rerank", R"({"query": "q", "texts": "a"})", 422, "texts"},
      {"/rerank", R"({"query": "q", "texts": ["a"], "raw_scores": 1})", 422, "raw_scores"},
      {"/rerank", R"({"query": "", "texts": ["a"]})", 422, "query"},
  };
  for (const Case& c : tei) {
    HttpResult r = Post(c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.body;
    json j = Parse(r);
    ASSERT_TRUE(j.contains("error")) << r.body;
    EXPECT_EQ(j["error_type"], "Validation") << r.body;
    EXPECT_THAT(j["error"].get<std::string>(), HasSubstr(c.field)) << c.body;
  }
}

TEST_F(HttpDataPlaneTest, OversizedBodyIs413InBothShapes) {
  config_.server.http_max_body_bytes = 2048;
  Start();
  json body = {{"query", "q"}, {"documents", {std::string(4096, 'a')}}};
  HttpResult r = Post("/v2/rerank", body.dump());
  EXPECT_EQ(r.status, 413) << r.body;
  json j = Parse(r);
  EXPECT_TRUE(j.contains("message")) << r.body;
  EXPECT_TRUE(j.contains("error")) << r.body;
  EXPECT_EQ(j["error_type"], "Validation");
}

TEST_F(HttpDataPlaneTest, BearerTokensAuthenticateAndIdentifyClients) {
  const std::string token = "s3cret-token-for-team-a";
  const fs::path tokens = dir_ / "tokens.txt";
  std::ofstream(tokens) << "# token client\n" << token << " team-a\n";
  config_.server.http_bearer_tokens_file = tokens.string();
  Start();
  const std::string body = json{{"query", kQuery}, {"documents", kDocs}}.dump();
  HttpResult r = Post("/v2/rerank", body);
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_EQ(r.header("www-authenticate"), "Bearer");
  EXPECT_THAT(Parse(r)["message"].get<std::string>(), HasSubstr("Authorization"));
  r = Post("/v2/rerank", body, {{"Authorization", "Bearer wrong-token-xxxxxxxx"}});
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_THAT(r.body, Not(HasSubstr("wrong-token")));
  r = Post("/rerank", json{{"query", "q"}, {"texts", {"a"}}}.dump(), {{"Authorization", "x"}});
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_EQ(Parse(r)["error_type"], "Unauthorized");
  r = Post("/v2/rerank", body,
           {{"Authorization", "bearer " + token}, {"x-client-id", "pretending-to-be-b"}});
  EXPECT_EQ(r.status, 200) << r.body;
  std::vector<json> events = AuditEvents();
  int reranks = 0;
  for (const json& e : events) {
    EXPECT_THAT(e.dump(), Not(HasSubstr(token))) << "tokens are never audited";
    if (e.value("event_type", "") != "rerank") continue;
    ++reranks;
    EXPECT_EQ(e["client_id"], "team-a") << e.dump();
    EXPECT_EQ(e["rpc"], "/v2/rerank");
  }
  EXPECT_EQ(reranks, 1);
}

TEST_F(HttpDataPlaneTest, RateLimitedIs429WithRetryAfter) {
  config_.flags.initial.rate_limit_enabled = true;
  config_.flags.initial.rate_limit_per_minute = 1;
  Start();
  const std::string body = json{{"query", kQuery}, {"documents", kDocs}}.dump();
  ASSERT_EQ(Post("/v2/rerank", body).status, 200);
  HttpResult r = Post("/v2/rerank", body);
  ASSERT_EQ(r.status, 429) << r.body;
  int retry = 0;
  EXPECT_TRUE(absl::SimpleAtoi(r.header("retry-after"), &retry)) << r.header("retry-after");
  EXPECT_GE(retry, 1);
  EXPECT_LE(retry, 60);
  EXPECT_THAT(Parse(r)["message"].get<std::string>(), HasSubstr("rate limit"));
  r = Post("/rerank", json{{"query", kQuery}, {"texts", kDocs}}.dump());
  ASSERT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(Parse(r)["error_type"], "Overloaded");
  EXPECT_FALSE(r.header("retry-after").empty());
}

TEST_F(HttpDataPlaneTest, StrictModelAnswers404ForUnknownNames) {
  config_.server.http_strict_model = true;
  config_.server.http_model_aliases = "rerank-v3.5, jina-reranker-v2";
  Start();
  auto body = [](const std::string& model) {
    return json{{"model", model}, {"query", kQuery}, {"documents", kDocs}}.dump();
  };
  EXPECT_EQ(Post("/v2/rerank", body("rerank-v3.5")).status, 200);
  EXPECT_EQ(Post("/v1/rerank", body("jina-reranker-v2")).status, 200);
  EXPECT_EQ(Post("/v2/rerank", body("tiny_model")).status, 200);  // its own name
  HttpResult r = Post("/v2/rerank", body("gpt-4"));
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_THAT(Parse(r)["message"].get<std::string>(), HasSubstr("tiny_model"));
  EXPECT_THAT(Parse(r)["message"].get<std::string>(), HasSubstr("gpt-4"));
}

TEST_F(HttpDataPlaneTest, DrainingIs503) {
  config_.server.drain_grace_ms = 3000;
  Start();
  const std::string body = json{{"query", kQuery}, {"documents", kDocs}}.dump();
  ASSERT_EQ(Post("/v2/rerank", body).status, 200);
  std::thread stopper([this] { server_->Shutdown(); });
  HttpResult r;
  for (int i = 0; i < 100; ++i) {
    r = Post("/v2/rerank", body);
    if (r.status == 503) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_THAT(Parse(r)["message"].get<std::string>(), HasSubstr("draining"));
  r = Post("/rerank", json{{"query", kQuery}, {"texts", kDocs}}.dump());
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(Parse(r)["error_type"], "Unhealthy");
  stopper.join();
}

TEST_F(HttpDataPlaneTest, RequestIdIsEchoedWhenValidElseGenerated) {
  Start();
  const std::string body = json{{"query", kQuery}, {"documents", kDocs}}.dump();
  HttpResult r = Post("/v2/rerank", body, {{"x-request-id", "trace-42"}});
  EXPECT_EQ(r.header("x-request-id"), "trace-42");
  EXPECT_EQ(Parse(r)["id"], "trace-42");
  r = Post("/v2/rerank", body, {{"x-request-id", std::string(500, 'a')}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(r.header("x-request-id").empty());
  EXPECT_NE(r.header("x-request-id"), std::string(500, 'a'));
  // Errors carry one too.
  r = Post("/v2/rerank", "{", {{"x-request-id", "bad-json-1"}});
  EXPECT_EQ(r.header("x-request-id"), "bad-json-1");
}

TEST_F(HttpDataPlaneTest, OpenApiDocumentListsEveryServedRoute) {
  Start();
  auto r = testing::HttpGet(server_->http_port(), "/openapi.json");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->status, 200);
  json doc = Parse(*r);
  EXPECT_EQ(doc["openapi"].get<std::string>().substr(0, 2), "3.");
  const std::vector<std::pair<std::string, std::string>> served = {{"post", "/v2/rerank"},
                                                                   {"post", "/v1/rerank"},
                                                                   {"post", "/rerank"},
                                                                   {"get", "/openapi.json"}};
  for (const auto& [method, path] : served) {
    EXPECT_TRUE(doc["paths"].contains(path) && doc["paths"][path].contains(method))
        << method << " " << path;
    // And the server does serve it (not 404/405).
    auto probe = testing::HttpRequest(server_->http_port(), method == "post" ? "POST" : "GET", path,
                                      {}, method == "post" ? "{}" : "");
    ASSERT_TRUE(probe.ok());
    EXPECT_NE(probe->status, 404) << path;
    EXPECT_NE(probe->status, 405) << path;
  }
  EXPECT_EQ(doc["paths"].size(), served.size()) << "a documented route nobody serves";
  auto missing = testing::HttpGet(server_->http_port(), "/v3/rerank");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->status, 404);
}

TEST_F(HttpDataPlaneTest, DisabledWhenListenIsEmpty) {
  config_.server.http_listen = "";
  Start();
  EXPECT_EQ(server_->http_port(), 0);
}

TEST(HttpTruncationTest, EncodePairKeepsTheEndWithLeftTruncation) {
  WordPieceTokenizer::Options o;
  o.vocab_path = testing::TinyModelDir() + "/vocab.txt";
  auto tok = WordPieceTokenizer::Create(o);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::vector<int32_t> query = {10, 11};
  const std::vector<int32_t> doc = {20, 21, 22, 23, 24, 25};
  // Budget 8 - 3 = 5: query 2, document 3.
  Encoding right = (*tok)->EncodePair(query, doc, 8);
  Encoding left = (*tok)->EncodePair(query, doc, 8, /*truncate_left=*/true);
  const int64_t cls = (*tok)->cls_id(), sep = (*tok)->sep_id();
  EXPECT_THAT(right.input_ids, ElementsAre(cls, 10, 11, sep, 20, 21, 22, sep));
  EXPECT_THAT(left.input_ids, ElementsAre(cls, 10, 11, sep, 23, 24, 25, sep));
  EXPECT_EQ(left.token_type_ids, right.token_type_ids);
}

}  // namespace
}  // namespace rerank
