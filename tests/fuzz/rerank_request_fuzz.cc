// Fuzz target: a RerankRequest or RerankBatchRequest as the gRPC server receives it (protobuf
// bytes), through RerankEngine's whole request path: id checks, rate limit, validation, flags
// (pass-through, overfetch, cache rollout), tokenizing with the real MiniLM vocab, truncation or
// chunking, scoring (tests/testing/fake_scoring_queue.h, auto-scored by lexical overlap: no
// model, no threads) and response assembly.
//
// Input: byte 0 selects the engine's options and flags (bits below), the rest is the serialized
// request. Each request runs twice on one engine (the second time through the cache when on).
//
// Properties checked beyond "no crash, no sanitizer report":
//  - `done` runs exactly once, before Rerank returns (the fake queue scores inline);
//  - an error is INVALID_ARGUMENT, RESOURCE_EXHAUSTED or FAILED_PRECONDITION with a message;
//  - results: indices in range and distinct, ids/texts echo the request (texts only with
//    return_documents), finite scores sorted descending when reranked, at most the documents;
//  - the second run answers the same results as the first.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "common/feature_flags.h"
#include "common/rate_limiter.h"
#include "common/score_cache.h"
#include "google/protobuf/stubs/logging.h"
#include "rerank/v1/reranker.pb.h"
#include "server/rerank_engine.h"
#include "server/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/testing/fake_audit_sink.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_scoring_queue.h"

namespace rerank {
namespace {

enum Bits : uint8_t {
  kRerankerOff = 1 << 0,
  kCache = 1 << 1,
  kOverfetch = 1 << 2,
  kChunkByDefault = 1 << 3,
  kSigmoidByDefault = 1 << 4,
  kBatch = 1 << 5,     // the bytes are a RerankBatchRequest
  kBatchOff = 1 << 6,  // flags' batch.enabled off (sub-requests scored one by one)
  kPeerIdentity = 1 << 7,
};

const WordPieceTokenizer& Tokenizer() {
  static const WordPieceTokenizer* const kTokenizer = [] {
    WordPieceTokenizer::Options o;
    o.vocab_path = fuzz::SourcePath("third_party/ms-marco-MiniLM-L-6-v2/vocab.txt");
    o.match_special_tokens = false;  // as rerankd configures it for request text
    auto tok = WordPieceTokenizer::Create(o);
    FUZZ_CHECK(tok.ok(), "%s", tok.status().ToString().c_str());
    return tok->release();
  }();
  return *kTokenizer;
}

void CheckStatus(const absl::Status& s) {
  if (s.ok()) return;
  FUZZ_CHECK(
      absl::IsInvalidArgument(s) || absl::IsResourceExhausted(s) || absl::IsFailedPrecondition(s),
      "unexpected error %s", s.ToString().c_str());
  FUZZ_CHECK(!s.message().empty(), "error without a message");
}

void CheckResponse(const v1::RerankRequest& req, const v1::RerankResponse& resp) {
  FUZZ_CHECK(resp.results_size() <= req.documents_size(), "%d results for %d documents",
             resp.results_size(), req.documents_size());
  std::set<uint32_t> seen;
  for (int i = 0; i < resp.results_size(); ++i) {
    const v1::RerankResult& r = resp.results(i);
    FUZZ_CHECK(r.index() < static_cast<uint32_t>(req.documents_size()), "index %u", r.index());
    FUZZ_CHECK(seen.insert(r.index()).second, "index %u twice", r.index());
    const v1::Document& d = req.documents(static_cast<int>(r.index()));
    FUZZ_CHECK(r.id() == d.id(), "result %d: id does not echo the document's", i);
    FUZZ_CHECK(r.text() == (req.return_documents() ? d.text() : std::string()), "result %d: text",
               i);
    FUZZ_CHECK(std::isfinite(r.score()), "result %d: score %f", i, r.score());
    if (resp.reranked() && i > 0) {
      FUZZ_CHECK(resp.results(i - 1).score() >= r.score(), "results not sorted at %d", i);
    }
  }
}

bool SameResults(const v1::RerankResponse& a, const v1::RerankResponse& b) {
  if (a.results_size() != b.results_size() || a.reranked() != b.reranked()) return false;
  for (int i = 0; i < a.results_size(); ++i) {
    if (a.results(i).SerializeAsString() != b.results(i).SerializeAsString()) return false;
  }
  return true;
}
// Runs one engine call twice (the second must give the same answer): `start(done)` issues it;
// each run must finish exactly once with an allowed status, and `check(resp, first)` sees every
// OK response, with the first run's response on the second run (null on the first).
template <typename Resp, typename Start, typename Check>
void RunTwice(Start start, Check check) {
  Resp first;
  for (int run = 0; run < 2; ++run) {
    int calls = 0;
    absl::Status status;
    Resp resp;
    start([&](absl::Status s, Resp r) {
      ++calls;
      status = std::move(s);
      resp = std::move(r);
    });
    FUZZ_CHECK(calls == 1, "done ran %d times", calls);
    CheckStatus(status);
    if (!status.ok()) return;
    check(resp, run == 0 ? nullptr : &first);
    if (run == 0) first = std::move(resp);
  }
}

void Fuzz(uint8_t bits, const uint8_t* data, size_t size) {
  const bool batch = (bits & kBatch) != 0;
  v1::RerankRequest single;
  v1::RerankBatchRequest multi;
  if (!(batch ? multi.ParseFromArray(data, static_cast<int>(size))
              : single.ParseFromArray(data, static_cast<int>(size)))) {
    return;  // gRPC rejects what does not parse before the engine sees it
  }

  // Small limits, so that inputs reach every bound.
  RerankEngine::Options options;
  options.default_top_n = 3;
  options.max_documents = 8;
  options.max_query_bytes = 256;
  options.max_document_bytes = 1024;
  options.max_batch_requests = 3;
  options.max_request_bytes = 4096;
  options.max_length = 24;
  options.chunk_long_documents = (bits & kChunkByDefault) != 0;
  options.max_chunks_per_doc = 3;
  options.chunk_overlap_tokens = 4;
  options.sigmoid_by_default = (bits & kSigmoidByDefault) != 0;
  options.include_query_text_in_audit = true;
  options.max_id_bytes = 16;
  options.identity = (bits & kPeerIdentity) != 0 ? RerankEngine::Options::Identity::kPeer
                                                 : RerankEngine::Options::Identity::kClientId;

  FeatureFlags flags;
  flags.reranker_enabled = (bits & kRerankerOff) == 0;
  flags.cache_enabled = (bits & kCache) != 0;
  flags.cache_traffic_percent = 100;
  flags.overfetch_enabled = (bits & kOverfetch) != 0;
  flags.overfetch_candidates = 4;
  flags.overfetch_top_n = 2;
  flags.batch_enabled = (bits & kBatchOff) == 0;
  flags.rate_limit_enabled = true;
  flags.rate_limit_per_minute = 100;
  StaticFlagSource flag_source(flags);

  testing::FakeClock clock;
  testing::FakeAuditSink audit;
  testing::FakeScoringQueue queue;
  queue.SetAutoScore(&testing::FakeScoringQueue::LexicalOverlap);
  ScoreCache::Options cache_options;
  cache_options.max_entries = 64;
  auto cache = ScoreCache::Create(cache_options);
  FUZZ_CHECK(cache.ok(), "%s", cache.status().ToString().c_str());
  auto limiter = RateLimiter::Create(RateLimiter::Options(), &clock);
  FUZZ_CHECK(limiter.ok(), "%s", limiter.status().ToString().c_str());

  RerankEngine::Deps deps;
  deps.tokenizer = &Tokenizer();
  deps.queue = &queue;
  deps.flags = &flag_source;
  deps.clock = &clock;
  deps.audit = &audit;
  deps.cache = cache->get();
  deps.rate_limiter = limiter->get();
  deps.model.name = "fuzz";
  deps.model.version = "v1";
  deps.model.max_length = 512;
  auto engine = RerankEngine::Create(options, std::move(deps));
  FUZZ_CHECK(engine.ok(), "%s", engine.status().ToString().c_str());

  CallInfo call;
  call.metadata_client_id = "fuzz-client";
  call.peer_ip = "192.0.2.1";
  if (!batch) {
    RunTwice<v1::RerankResponse>(
        [&](auto done) { (*engine)->Rerank(single, call, std::move(done)); },
        [&](const v1::RerankResponse& resp, const v1::RerankResponse* first) {
          CheckResponse(single, resp);
          if (first != nullptr) {
            FUZZ_CHECK(SameResults(*first, resp), "second run differs:\n%s\nvs\n%s",
                       first->DebugString().c_str(), resp.DebugString().c_str());
          }
        });
    return;
  }
  RunTwice<v1::RerankBatchResponse>(
      [&](auto done) { (*engine)->RerankBatch(multi, call, std::move(done)); },
      [&](const v1::RerankBatchResponse& resp, const v1::RerankBatchResponse* first) {
        FUZZ_CHECK(resp.responses_size() == multi.requests_size(), "%d responses for %d requests",
                   resp.responses_size(), multi.requests_size());
        for (int i = 0; i < resp.responses_size(); ++i) {
          CheckResponse(multi.requests(i), resp.responses(i));
          if (first != nullptr) {
            FUZZ_CHECK(SameResults(first->responses(i), resp.responses(i)),
                       "second run differs at %d", i);
          }
        }
      });
}

}  // namespace
}  // namespace rerank

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Unparseable strings (invalid UTF-8) would make protobuf log an error per input.
  static const bool kQuiet = [] {
    google::protobuf::SetLogHandler(
        [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
    return true;
  }();
  (void)kQuiet;
  if (size == 0) return 0;
  rerank::Fuzz(data[0], data + 1, size - 1);
  return 0;
}
