// Tokenizer throughput on the benchmark workload (bench/scifact_20docs.jsonl: 300 requests, each a
// SciFact query with its BM25 top-20 passages). One iteration = one request: tokenize the query
// once and each of the 20 passages, and build the 20 [CLS] q [SEP] d [SEP] rows at max_length 512,
// i.e. the tokenizer's whole share of serving a request.
//
//   tokenizer_bench [--benchmark_min_time=2]
// The vocab is the vendored one (third_party/); the workload is optional large data read from
// $RERANK_SHARED_DIR (default: the CMake RERANK_SHARED_DIR, ../shared).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "server/tokenizer.h"

namespace rerank {
namespace {

struct Request {
  std::string query;
  std::vector<std::string> documents;
};

std::string SharedDir() {
  const char* env = std::getenv("RERANK_SHARED_DIR");
  return env != nullptr && *env != '\0' ? env : RERANK_DEFAULT_SHARED_DIR;
}

struct Workload {
  std::unique_ptr<WordPieceTokenizer> tokenizer;
  std::vector<Request> requests;
  std::string error;
};

const Workload& GetWorkload() {
  static const Workload* workload = [] {
    auto* w = new Workload();
    WordPieceTokenizer::Options options;
    options.vocab_path = std::string(RERANK_MINILM_DIR) + "/vocab.txt";
    auto tok = WordPieceTokenizer::Create(options);
    if (!tok.ok()) {
      w->error = std::string(tok.status().message());
      return w;
    }
    w->tokenizer = *std::move(tok);
    const std::string path = SharedDir() + "/data/bench/scifact_20docs.jsonl";
    std::ifstream in(path);
    std::string line;
    try {
      while (std::getline(in, line)) {
        nlohmann::json j = nlohmann::json::parse(line);
        Request r;
        r.query = j.at("query").get<std::string>();
        for (const auto& d : j.at("documents"))
          r.documents.push_back(d.at("text").get<std::string>());
        w->requests.push_back(std::move(r));
      }
    } catch (const std::exception& e) {
      w->error = path + ": " + e.what();
    }
    if (w->requests.empty() && w->error.empty()) w->error = "no requests in " + path;
    return w;
  }();
  return *workload;
}

void BM_TokenizeRequest(benchmark::State& state) {
  const Workload& w = GetWorkload();
  if (!w.error.empty()) {
    state.SkipWithError(w.error.c_str());
    return;
  }
  const int max_length = static_cast<int>(state.range(0));
  size_t next = 0;
  int64_t pairs = 0;
  int64_t tokens = 0;
  int64_t bytes = 0;
  for (auto _ : state) {
    const Request& r = w.requests[next];
    next = (next + 1) % w.requests.size();
    auto query = w.tokenizer->Tokenize(r.query);
    bytes += r.query.size();
    for (const std::string& doc : r.documents) {
      auto ids = w.tokenizer->Tokenize(doc);
      Encoding enc = w.tokenizer->EncodePair(*query, *ids, max_length);
      benchmark::DoNotOptimize(enc.input_ids.data());
      tokens += static_cast<int64_t>(enc.input_ids.size());
      bytes += doc.size();
      ++pairs;
    }
  }
  state.SetItemsProcessed(state.iterations());  // requests
  state.SetBytesProcessed(bytes);
  state.counters["pairs/s"] =
      benchmark::Counter(static_cast<double>(pairs), benchmark::Counter::kIsRate);
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_TokenizeRequest)->Arg(512)->Unit(benchmark::kMicrosecond);

// Normalisation + WordPiece alone on every passage of the workload (no pair building).
void BM_TokenizePassage(benchmark::State& state) {
  const Workload& w = GetWorkload();
  if (!w.error.empty()) {
    state.SkipWithError(w.error.c_str());
    return;
  }
  std::vector<const std::string*> passages;
  for (const Request& r : w.requests) {
    for (const std::string& d : r.documents) passages.push_back(&d);
  }
  size_t next = 0;
  int64_t tokens = 0;
  for (auto _ : state) {
    auto ids = w.tokenizer->Tokenize(*passages[next]);
    next = (next + 1) % passages.size();
    benchmark::DoNotOptimize(ids->data());
    tokens += static_cast<int64_t>(ids->size());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_TokenizePassage)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace rerank

BENCHMARK_MAIN();
