#include "tools/rerankctl_eval.h"

#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <set>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "rerank/admin/v1/admin.pb.h"
#include "rerank/v1/reranker.grpc.pb.h"
#include "tools/rerankctl_format.h"
#include "tools/rerankctl_http.h"

namespace rerank::ctl {

namespace {

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;

constexpr int kMaxConcurrency = 64;
constexpr int kMaxDepth = 1000;  // rerankd's default rerank.max_documents
constexpr absl::Duration kMaxHint = absl::Seconds(60);
constexpr int kUnavailableRetries = 3;

}  // namespace

const char kEvalUsage[] =
    "Usage: rerankctl eval --data DIR --run RUN [--target HOST:PORT] [--depth 100]\n"
    "                      [--queries N] [--no-rerank] [--relevance-level 1] [--json]\n"
    "                      [--out RERANKED_RUN] [--concurrency 8] [--client-id ID]\n"
    "\n"
    "Relevance evaluation on your own data: sends each query's top --depth documents of the TREC\n"
    "run RUN to rerankd (Reranker/Rerank on --target, --concurrency calls at once, a progress\n"
    "bar when stderr is a terminal), writes the reranked TREC run, and prints nDCG@10, MRR@10\n"
    "and Recall@100 of the input and reranked runs side by side, with the change.\n"
    "\n"
    "  --data DIR             a BEIR folder: corpus.jsonl, queries.jsonl or queries.test.jsonl,\n"
    "                         qrels/test.tsv or qrels.test.tsv (required)\n"
    "  --run RUN              the TREC run to rerank: \"qid Q0 docid rank score tag\" (required)\n"
    "  --depth N              documents reranked per query, the run's best first (default 100,\n"
    "                         at most 1000); the reranked run holds only these\n"
    "  --queries N            only the first N evaluated queries, in run order\n"
    "  --no-rerank            evaluate RUN alone; needs no server (nor corpus/queries files)\n"
    "  --relevance-level L    a judgement >= L is relevant for MRR and recall (default 1)\n"
    "  --json                 print exactly one line: {\"input\": {\"ndcg@10\": x, \"mrr@10\": x,\n"
    "                         \"recall@100\": x, \"queries\": n}, \"reranked\": {...}}\n"
    "  --out RERANKED_RUN     where to write the reranked run (default: RUN's name with\n"
    "                         .reranked before its extension, in the current directory)\n"
    "  --concurrency N        rerank calls in flight (default 8, at most 64)\n"
    "  --client-id ID         client id sent with each call: the server's rate limit bucket\n"
    "                         (default rerankctl-eval)\n"
    "\n"
    "Metrics as trec_eval computes them: nDCG's gain is the judgement's grade, discounted by\n"
    "log2(rank + 1), over the ideal DCG of all the query's judged documents; runs are ranked by\n"
    "score, ties by document id in descending string order. Averages are over the run's queries\n"
    "that have a relevant judgement; the others are skipped (not reranked either).\n"
    "Calls that are rate limited or find the queue full (RESOURCE_EXHAUSTED) are retried after\n"
    "the server's hint, UNAVAILABLE ones (a connection the server closed) up to 3 times; each\n"
    "call has --timeout seconds (default here 60). /health on --admin tells whether the model\n"
    "is a random demo model, whose reranked figures mean nothing.\n"
    "Exit status: 0 done, 1 the server failed or is unreachable, 2 a usage or input error (the\n"
    "message names the file and line).\n";

const std::vector<FlagSpec>& EvalFlags() {
  static const auto* const flags = new std::vector<FlagSpec>{
      {"data", FlagKind::kValue},        {"run", FlagKind::kValue},
      {"depth", FlagKind::kValue},       {"queries", FlagKind::kValue},
      {"no-rerank", FlagKind::kBool},    {"relevance-level", FlagKind::kValue},
      {"json", FlagKind::kBool},         {"out", FlagKind::kValue},
      {"concurrency", FlagKind::kValue}, {"client-id", FlagKind::kValue},
  };
  return *flags;
}

std::optional<absl::Duration> RetryDelay(const ScoreAnswer& answer, int attempt) {
  const int shift = std::clamp(attempt - 1, 0, 10);
  const absl::Duration backoff =
      std::min(absl::Milliseconds(100) * (int64_t{1} << shift), absl::Seconds(5));
  // UNAVAILABLE is transient when the server ends a connection (max_connection_age's GOAWAY, a
  // rolling restart): a rerank is idempotent, so retry it a few times; a server that stays
  // unreachable still fails the run within a second.
  if (answer.status.code() == absl::StatusCode::kUnavailable) {
    return attempt <= kUnavailableRetries ? std::optional<absl::Duration>(backoff) : std::nullopt;
  }
  if (answer.status.code() != absl::StatusCode::kResourceExhausted) return std::nullopt;
  if (answer.retry_after > absl::ZeroDuration()) return std::min(answer.retry_after, kMaxHint);
  return backoff;
}

absl::StatusOr<RerankAllResult> RerankAll(const std::vector<RerankJob>& jobs, const Scorer& scorer,
                                          const RerankAllOptions& options) {
  if (options.concurrency < 1 || options.concurrency > kMaxConcurrency) {
    return absl::InvalidArgumentError(
        absl::StrCat("--concurrency: must be 1..", kMaxConcurrency, ", got ", options.concurrency));
  }
  if (options.max_retry_wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("max_retry_wait: must not be negative");
  }
  if (options.progress_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("progress_interval: must be positive");
  }
  struct Shared {
    absl::Mutex mu;
    size_t next ABSL_GUARDED_BY(mu) = 0;
    int64_t done ABSL_GUARDED_BY(mu) = 0;
    int64_t retries ABSL_GUARDED_BY(mu) = 0;
    int running ABSL_GUARDED_BY(mu) = 0;
    absl::Status error ABSL_GUARDED_BY(mu);  // the first final failure: stop
  } shared;
  RerankAllResult result;
  result.answers.resize(jobs.size());  // slot i is written only by the worker that took job i

  auto stopped = [&shared]() ABSL_SHARED_LOCKS_REQUIRED(shared.mu) { return !shared.error.ok(); };
  auto wait = [&](absl::Duration d) {
    if (options.sleep) {
      options.sleep(d);
      return;
    }
    absl::MutexLock lock(&shared.mu);
    shared.mu.AwaitWithTimeout(absl::Condition(&stopped), d);
  };
  auto fail = [&shared](const absl::Status& s) {
    absl::MutexLock lock(&shared.mu);
    if (shared.error.ok()) shared.error = s;
  };
  auto worker = [&]() {
    pthread_setname_np(pthread_self(), "rerankctl-eval");
    while (true) {
      size_t j = 0;
      {
        absl::MutexLock lock(&shared.mu);
        if (stopped() || shared.next >= jobs.size()) break;
        j = shared.next++;
      }
      const RerankJob& job = jobs[j];
      ScoreAnswer answer;
      absl::Duration waited = absl::ZeroDuration();
      bool abandoned = false;
      for (int attempt = 1;; ++attempt) {
        answer = scorer(job);
        if (answer.status.ok()) break;
        const std::optional<absl::Duration> delay = RetryDelay(answer, attempt);
        if (!delay.has_value() || waited + *delay > options.max_retry_wait) break;
        {
          absl::MutexLock lock(&shared.mu);
          ++shared.retries;
        }
        wait(*delay);
        waited += *delay;
        absl::MutexLock lock(&shared.mu);
        if (stopped()) {
          abandoned = true;
          break;
        }
      }
      if (abandoned) break;
      const std::string prefix = absl::StrCat("query '", job.query_id, "': ");
      if (!answer.status.ok()) {
        fail(absl::Status(answer.status.code(), absl::StrCat(prefix, answer.status.message())));
        break;
      }
      if (answer.scores.size() != job.doc_ids.size()) {
        fail(absl::DataLossError(absl::StrCat(prefix, "the server answered ", answer.scores.size(),
                                              " scores for ", job.doc_ids.size(), " documents")));
        break;
      }
      if (!answer.reranked) {
        fail(absl::FailedPreconditionError(absl::StrCat(
            prefix,
            "the server passed the documents through unscored (reranked: false): its reranker "
            "is disabled; enable it (e.g. `rerankctl stage full`) and run eval again")));
        break;
      }
      result.answers[j] = std::move(answer);
      absl::MutexLock lock(&shared.mu);
      ++shared.done;
    }
    absl::MutexLock lock(&shared.mu);
    --shared.running;
  };

  const int threads =
      static_cast<int>(std::min<size_t>(static_cast<size_t>(options.concurrency), jobs.size()));
  {
    absl::MutexLock lock(&shared.mu);
    shared.running = threads;
  }
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int i = 0; i < threads; ++i) pool.emplace_back(worker);
  auto all_exited = [&shared]()
                        ABSL_SHARED_LOCKS_REQUIRED(shared.mu) { return shared.running == 0; };
  while (true) {
    int64_t done = 0, retries = 0;
    bool finished = false;
    {
      absl::MutexLock lock(&shared.mu);
      finished =
          shared.mu.AwaitWithTimeout(absl::Condition(&all_exited), options.progress_interval);
      done = shared.done;
      retries = shared.retries;
    }
    if (options.progress) options.progress(done, static_cast<int64_t>(jobs.size()), retries);
    if (finished) break;
  }
  for (std::thread& t : pool) t.join();
  absl::MutexLock lock(&shared.mu);
  if (!shared.error.ok()) return shared.error;
  result.retries = shared.retries;
  return result;
}

Scorer MakeGrpcScorer(const GrpcScorerOptions& options) {
  std::shared_ptr<rerank::v1::Reranker::Stub> stub = rerank::v1::Reranker::NewStub(
      grpc::CreateChannel(options.target, grpc::InsecureChannelCredentials()));
  return [stub, options](const RerankJob& job) {
    rerank::v1::RerankRequest request;
    request.set_query(job.query);
    request.set_top_n(static_cast<uint32_t>(job.doc_ids.size()));
    request.set_client_id(options.client_id);
    for (size_t i = 0; i < job.doc_ids.size(); ++i) {
      rerank::v1::Document* d = request.add_documents();
      d->set_id(job.doc_ids[i]);
      d->set_text(*job.doc_texts[i]);
    }
    grpc::ClientContext context;  // the stub is thread-safe; a context is per call
    context.set_deadline(absl::ToChronoTime(absl::Now() + options.deadline));
    rerank::v1::RerankResponse response;
    const grpc::Status status = stub->Rerank(&context, request, &response);
    ScoreAnswer answer;
    if (!status.ok()) {
      const auto code = static_cast<absl::StatusCode>(status.error_code());
      answer.status = absl::Status(code, absl::StrCat("Rerank on ", options.target,
                                                      " failed: ", absl::StatusCodeToString(code),
                                                      ": ", status.error_message()));
      const auto& trailers = context.GetServerTrailingMetadata();
      if (auto it = trailers.find("retry-after-ms"); it != trailers.end()) {
        int64_t ms = 0;
        if (absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms) &&
            ms > 0) {
          answer.retry_after = absl::Milliseconds(ms);
        }
      }
      return answer;
    }
    answer.reranked = response.reranked();
    answer.model_name = response.model_name();
    answer.model_version = response.model_version();
    const size_t n = job.doc_ids.size();
    std::vector<bool> seen(n, false);
    answer.scores.assign(n, 0.0);
    for (const rerank::v1::RerankResult& r : response.results()) {
      if (r.index() >= n || seen[r.index()]) {
        answer.status = absl::DataLossError(absl::StrCat("Rerank on ", options.target,
                                                         " answered an invalid or repeated index ",
                                                         r.index(), " for ", n, " documents"));
        return answer;
      }
      seen[r.index()] = true;
      answer.scores[r.index()] = r.score();
    }
    if (static_cast<size_t>(response.results_size()) != n) {
      answer.status = absl::DataLossError(absl::StrCat("Rerank on ", options.target, " answered ",
                                                       response.results_size(), " results for ", n,
                                                       " documents (top_n ", n, ")"));
    }
    return answer;
  };
}

std::string FormatEvalTable(const EvalMetrics& input, const EvalMetrics* reranked) {
  std::string out = reranked == nullptr ? absl::StrFormat("%-12s %8s\n", "metric", "input")
                                        : absl::StrFormat("%-12s %8s %9s %8s\n", "metric", "input",
                                                          "reranked", "change");
  auto row = [&](const char* name, double a, std::optional<double> b) {
    if (!b.has_value()) {
      absl::StrAppendFormat(&out, "%-12s %8.4f\n", name, a);
    } else {
      absl::StrAppendFormat(&out, "%-12s %8.4f %9.4f %+8.4f\n", name, a, *b, *b - a);
    }
  };
  auto of = [reranked](double EvalMetrics::*field) -> std::optional<double> {
    if (reranked == nullptr) return std::nullopt;
    return reranked->*field;
  };
  row("nDCG@10", input.ndcg_at_10, of(&EvalMetrics::ndcg_at_10));
  row("MRR@10", input.mrr_at_10, of(&EvalMetrics::mrr_at_10));
  row("Recall@100", input.recall_at_100, of(&EvalMetrics::recall_at_100));
  if (reranked == nullptr) {
    absl::StrAppendFormat(&out, "%-12s %8d\n", "queries", input.queries);
  } else {
    absl::StrAppendFormat(&out, "%-12s %8d %9d\n", "queries", input.queries, reranked->queries);
  }
  return out;
}

std::string FormatEvalJson(const EvalMetrics& input, const EvalMetrics* reranked) {
  auto figures = [](const EvalMetrics& m) {
    nlohmann::ordered_json j;
    j["ndcg@10"] = m.ndcg_at_10;
    j["mrr@10"] = m.mrr_at_10;
    j["recall@100"] = m.recall_at_100;
    j["queries"] = m.queries;
    return j;
  };
  nlohmann::ordered_json doc;
  doc["input"] = figures(input);
  if (reranked != nullptr) doc["reranked"] = figures(*reranked);
  return doc.dump();
}

namespace {

namespace fs = std::filesystem;

int UsageError(const std::string& message) {
  std::cerr << "rerankctl: " << message << "\n\n" << kEvalUsage;
  return kUsage;
}

int InputError(const absl::Status& s) {
  std::cerr << "rerankctl: eval: " << s.message() << "\n";
  return kUsage;
}

int Fail(const std::string& message) {
  std::cerr << "rerankctl: eval: " << message << "\n";
  return kFailed;
}

// An integer flag in [lo, hi], or a usage message naming it.
absl::StatusOr<int64_t> IntFlag(const ParsedArgs& args, const char* name, int64_t fallback,
                                int64_t lo, int64_t hi) {
  if (!args.Has(name)) return fallback;
  int64_t v = 0;
  if (!absl::SimpleAtoi(args.Get(name), &v) || v < lo || v > hi) {
    const std::string range = hi == std::numeric_limits<int64_t>::max()
                                  ? absl::StrCat(">= ", lo)
                                  : absl::StrCat("in ", lo, "..", hi);
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": must be an integer ", range, ", got '", args.Get(name), "'"));
  }
  return v;
}

// RUN's file name with ".reranked" before its extension, in the current directory.
std::string DefaultOutPath(const std::string& run) {
  const fs::path p(run);
  return (p.stem().string() + ".reranked" + p.extension().string());
}

bool SameFile(const std::string& a, const std::string& b) {
  std::error_code ec1, ec2;
  const fs::path ca = fs::weakly_canonical(a, ec1);
  const fs::path cb = fs::weakly_canonical(b, ec2);
  return !ec1 && !ec2 && ca == cb;
}

// What /health on the admin plane says about the model; error when it cannot be read.
absl::StatusOr<admin::v1::Model> ModelFromHealth(const std::string& admin_url) {
  AdminHttpClient::Options o;
  o.base_url = admin_url;
  o.timeout = absl::Seconds(5);
  absl::StatusOr<std::unique_ptr<AdminHttpClient>> client = AdminHttpClient::Create(o);
  if (!client.ok()) return client.status();
  absl::StatusOr<HttpResponse> r = (*client)->Get("/health");
  if (!r.ok()) return r.status();
  if (r->status != 200 && r->status != 503) {
    return absl::UnavailableError(DescribeHttpError(r->status, r->body));
  }
  admin::v1::Health health;
  if (absl::Status s = ParseAnswer(r->body, &health, "/health"); !s.ok()) return s;
  return health.model();
}

// Draws "[#####.....] done/total queries  q/s  ETA" on stderr, in place.
class ProgressBar {
 public:
  explicit ProgressBar(absl::Time start) : start_(start) {}
  void Draw(int64_t done, int64_t total, int64_t retries) {
    constexpr int kWidth = 30;
    const int filled = total > 0 ? static_cast<int>(kWidth * done / total) : kWidth;
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start_);
    const double rate = seconds > 0 ? done / seconds : 0;
    std::string line = absl::StrFormat("\r[%s%s] %d/%d queries  %.1f q/s", std::string(filled, '#'),
                                       std::string(kWidth - filled, '.'), done, total, rate);
    if (rate > 0 && done < total) {
      absl::StrAppendFormat(&line, "  ETA %.0fs", (total - done) / rate);
    }
    if (retries > 0) absl::StrAppendFormat(&line, "  %d retries (rate limited)", retries);
    std::cerr << line << "\033[K" << std::flush;
  }
  void Clear() { std::cerr << "\r\033[K" << std::flush; }

 private:
  const absl::Time start_;
};

}  // namespace

int RunEval(const ParsedArgs& args, const EvalEndpoints& endpoints) {
  if (!args.positionals.empty()) {
    return UsageError(absl::StrCat("eval: unexpected argument '", args.positionals[0], "'"));
  }
  if (!args.Has("data") || args.Get("data").empty()) return UsageError("--data: required");
  if (!args.Has("run") || args.Get("run").empty()) return UsageError("--run: required");
  const bool rerank = !args.bools.count("no-rerank");
  const bool as_json = args.bools.count("json") > 0;
  absl::StatusOr<int64_t> depth = IntFlag(args, "depth", 100, 1, kMaxDepth);
  if (!depth.ok()) return UsageError(std::string(depth.status().message()));
  absl::StatusOr<int64_t> max_queries = IntFlag(
      args, "queries", std::numeric_limits<int64_t>::max(), 1, std::numeric_limits<int64_t>::max());
  if (!max_queries.ok()) return UsageError(std::string(max_queries.status().message()));
  absl::StatusOr<int64_t> level = IntFlag(args, "relevance-level", 1, 0, 1000000);
  if (!level.ok()) return UsageError(std::string(level.status().message()));
  absl::StatusOr<int64_t> concurrency = IntFlag(args, "concurrency", 8, 1, kMaxConcurrency);
  if (!concurrency.ok()) return UsageError(std::string(concurrency.status().message()));
  const std::string client_id = args.Get("client-id", "rerankctl-eval");
  if (client_id.empty() || client_id.size() > 128) {
    return UsageError("--client-id: must be 1..128 bytes");
  }
  const std::string run_path = args.Get("run");
  std::string out_path = args.Get("out");
  if (!rerank) {
    for (const char* flag : {"out", "depth", "concurrency", "client-id"}) {
      if (args.Has(flag)) {
        return UsageError(absl::StrCat("--", flag, ": nothing to rerank with --no-rerank"));
      }
    }
  } else {
    if (args.Has("out") && out_path.empty()) return UsageError("--out: must not be empty");
    if (out_path.empty()) out_path = DefaultOutPath(run_path);
    if (SameFile(out_path, run_path)) {
      return UsageError(absl::StrCat("--out: '", out_path, "' is the input run --run"));
    }
  }

  // ---- inputs ----
  absl::StatusOr<BeirFiles> files = FindBeirFiles(args.Get("data"), rerank);
  if (!files.ok()) return InputError(files.status());
  absl::StatusOr<Qrels> qrels = ReadQrels(files->qrels);
  if (!qrels.ok()) return InputError(qrels.status());
  absl::StatusOr<TrecRun> run = ReadTrecRun(run_path);
  if (!run.ok()) return InputError(run.status());
  if (run->query_order.empty()) {
    return InputError(absl::InvalidArgumentError(absl::StrCat(run_path, ": no run lines")));
  }
  const int relevance_level = static_cast<int>(*level);

  // The evaluated queries: the run's with a relevant judgement, the first --queries of them.
  TrecRun input;
  int64_t unjudged = 0, beyond_limit = 0;
  for (const std::string& q : run->query_order) {
    if (!HasRelevant(*qrels, q, relevance_level)) {
      ++unjudged;
      continue;
    }
    if (static_cast<int64_t>(input.query_order.size()) >= *max_queries) {
      ++beyond_limit;
      continue;
    }
    input.query_order.push_back(q);
    input.entries[q] = run->entries.at(q);
    input.first_line[q] = run->first_line.at(q);
  }
  if (input.query_order.empty()) {
    return InputError(absl::InvalidArgumentError(
        absl::StrCat("no query of ", run_path, " has a judgement >= ", relevance_level, " in ",
                     files->qrels, " (a run and qrels of different datasets?)")));
  }
  const EvalMetrics input_metrics = Evaluate(input, *qrels, relevance_level);
  std::string header =
      absl::StrCat("evaluating ", input.query_order.size(), " queries of ", run_path, " against ",
                   files->qrels, " (relevant: grade >= ", relevance_level, ")");
  if (unjudged > 0) {
    absl::StrAppend(&header, "; ", unjudged, " run queries without a relevant judgement skipped");
  }
  if (beyond_limit > 0) {
    absl::StrAppend(&header, "; ", beyond_limit, " more left out by --queries ", *max_queries);
  }
  absl::StrAppend(&header, "\n");

  if (!rerank) {
    if (as_json) {
      std::cout << FormatEvalJson(input_metrics, nullptr) << std::endl;
    } else {
      std::cout << header << "\n" << FormatEvalTable(input_metrics, nullptr) << std::flush;
    }
    return kOk;
  }

  // ---- texts of the queries and of their top --depth documents ----
  std::vector<RerankJob> jobs;
  std::set<std::string> wanted_queries, wanted_docs;
  for (const std::string& q : input.query_order) {
    std::vector<RunEntry> ranking = input.entries.at(q);
    SortTrecOrder(&ranking);
    if (static_cast<int64_t>(ranking.size()) > *depth) ranking.resize(*depth);
    RerankJob job;
    job.query_id = q;
    for (const RunEntry& e : ranking) {
      job.doc_ids.push_back(e.doc_id);
      wanted_docs.insert(e.doc_id);
    }
    wanted_queries.insert(q);
    jobs.push_back(std::move(job));
  }
  absl::StatusOr<std::map<std::string, std::string>> queries =
      ReadBeirTexts(files->queries, wanted_queries);
  if (!queries.ok()) return InputError(queries.status());
  absl::StatusOr<std::map<std::string, std::string>> corpus =
      ReadBeirTexts(files->corpus, wanted_docs);
  if (!corpus.ok()) return InputError(corpus.status());
  for (RerankJob& job : jobs) {
    auto q = queries->find(job.query_id);
    if (q == queries->end()) {
      return InputError(absl::InvalidArgumentError(
          absl::StrCat(run_path, ":", input.first_line.at(job.query_id), ": query '", job.query_id,
                       "' is not in ", files->queries)));
    }
    job.query = q->second;
    for (const std::string& id : job.doc_ids) {
      auto d = corpus->find(id);
      if (d == corpus->end()) {
        int64_t line = 0;
        for (const RunEntry& e : input.entries.at(job.query_id)) {
          if (e.doc_id == id) line = e.line;
        }
        return InputError(absl::InvalidArgumentError(
            absl::StrCat(run_path, ":", line, ": document '", id, "' (query '", job.query_id,
                         "') is not in ", files->corpus)));
      }
      job.doc_texts.push_back(&d->second);
    }
  }

  // ---- rerank ----
  // Whether the served model is a random demo model (only /health says).
  absl::StatusOr<admin::v1::Model> model = ModelFromHealth(endpoints.admin);
  if (!model.ok()) {
    std::cerr << "rerankctl: eval: note: cannot tell whether the model is a random demo model ("
              << endpoints.admin << "/health: " << model.status().message() << ")\n";
  }
  GrpcScorerOptions scorer_options;
  scorer_options.target = endpoints.target;
  scorer_options.deadline = endpoints.timeout.value_or(absl::Seconds(60));
  scorer_options.client_id = client_id;
  RerankAllOptions options;
  options.concurrency = static_cast<int>(*concurrency);
  const absl::Time start = absl::Now();
  ProgressBar bar(start);
  const bool tty = isatty(STDERR_FILENO) == 1;
  if (tty) options.progress = [&bar](int64_t d, int64_t t, int64_t r) { bar.Draw(d, t, r); };
  absl::StatusOr<RerankAllResult> reranked =
      RerankAll(jobs, MakeGrpcScorer(scorer_options), options);
  if (tty) bar.Clear();
  if (!reranked.ok()) {
    std::string message(reranked.status().message());
    if (absl::IsDeadlineExceeded(reranked.status())) {
      absl::StrAppend(&message, "\n(each call has ", absl::FormatDuration(scorer_options.deadline),
                      ": on a slow server give more with --timeout SECONDS, or send less at once "
                      "with a smaller --depth or --concurrency)");
    }
    return Fail(message);
  }
  const absl::Duration took = absl::Now() - start;

  // ---- the reranked run: written, then evaluated as written ----
  TrecRun out;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const RerankJob& job = jobs[i];
    out.query_order.push_back(job.query_id);
    std::vector<RunEntry>& entries = out.entries[job.query_id];
    for (size_t k = 0; k < job.doc_ids.size(); ++k) {
      entries.push_back({job.doc_ids[k], reranked->answers[i].scores[k]});
    }
  }
  if (absl::Status s = WriteFileAtomically(out_path, FormatTrecRun(out, "rerankd")); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  absl::StatusOr<TrecRun> written = ReadTrecRun(out_path);
  if (!written.ok()) return Fail(std::string(written.status().message()));
  const EvalMetrics reranked_metrics = Evaluate(*written, *qrels, relevance_level);

  const ScoreAnswer& any = reranked->answers.front();
  std::string warning;
  if (model.ok() && model->demo()) {
    warning = absl::StrCat("model '", model->name(),
                           "' has random demo weights (model.yaml demo: true): the reranked "
                           "figures are meaningless. Serve a real cross-encoder (tools/README.md, "
                           "export_model.py) to measure relevance.");
  }
  if (as_json) {
    std::cout << FormatEvalJson(input_metrics, &reranked_metrics) << std::endl;
    if (!warning.empty()) std::cerr << "rerankctl: eval: WARNING: " << warning << "\n";
    return kOk;
  }
  std::cout << header
            << absl::StrFormat(
                   "reranked the top %d documents of each with %s (version %s) on "
                   "%s: %d calls, %d retried, %.1f s\n",
                   *depth, any.model_name, any.model_version, endpoints.target, jobs.size(),
                   reranked->retries, absl::ToDoubleSeconds(took))
            << "wrote the reranked run to " << out_path << "\n\n"
            << FormatEvalTable(input_metrics, &reranked_metrics);
  if (*depth < 100) {
    std::cout << "(the reranked run holds the top " << *depth
              << " documents of each query: its Recall@100 counts only those)\n";
  }
  if (!warning.empty()) std::cout << "\nWARNING: " << warning << "\n";
  std::cout << std::flush;
  return kOk;
}

}  // namespace rerank::ctl
