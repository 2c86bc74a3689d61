// `rerankctl eval`: reranks a TREC run's top documents through rerankd's data plane and compares
// nDCG@10, MRR@10 and Recall@100 of the input and reranked runs (see rerankctl_eval_data.h for
// the files and the metrics, docs/OPERATIONS.md "Relevance evaluation" for the workflow).
#ifndef RERANK_TOOLS_RERANKCTL_EVAL_H_
#define RERANK_TOOLS_RERANKCTL_EVAL_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tools/rerankctl_args.h"
#include "tools/rerankctl_eval_data.h"

namespace rerank::ctl {

// One query to rerank: its text and the top documents of the input run, in trec_eval order.
struct RerankJob {
  std::string query_id;
  std::string query;
  std::vector<std::string> doc_ids;
  std::vector<const std::string*> doc_texts;  // parallel to doc_ids; not owned, outlive the job
};

// What one rerank call answered.
struct ScoreAnswer {
  absl::Status status;  // OK, or the call's failure (the gRPC code as the absl code)
  // With RESOURCE_EXHAUSTED: the server's retry hint ("retry-after-ms"); zero when it sent none.
  absl::Duration retry_after = absl::ZeroDuration();
  std::vector<double> scores;  // when OK: one per job document, in the job's order
  bool reranked = true;        // false: the server passed the documents through unscored
  std::string model_name;
  std::string model_version;
};

// Scores one job; called from several threads at once.
using Scorer = std::function<ScoreAnswer(const RerankJob&)>;

// The wait before retrying a call that failed with `answer` on its `attempt`-th try (from 1), or
// nullopt when it must not be retried. Only RESOURCE_EXHAUSTED (rate limited, queue full) is
// retried: after the server's hint when it gave one (capped at 60 s), else after an exponential
// backoff from 100 ms (capped at 5 s).
std::optional<absl::Duration> RetryDelay(const ScoreAnswer& answer, int attempt);

struct RerankAllOptions {
  int concurrency = 8;  // calls in flight at once, 1..64
  // Longest total wait on retries for one query before its RESOURCE_EXHAUSTED is final.
  absl::Duration max_retry_wait = absl::Minutes(5);
  // Waits between retries; empty: a real wait that ends early when another query failed. Tests
  // pass a recorder.
  std::function<void(absl::Duration)> sleep;
  // Called on the calling thread about every progress_interval and once at the end, with the
  // number of jobs done (answered), the total and the retries so far. Optional.
  std::function<void(int64_t done, int64_t total, int64_t retries)> progress;
  absl::Duration progress_interval = absl::Milliseconds(200);
};

struct RerankAllResult {
  std::vector<ScoreAnswer> answers;  // parallel to the jobs, all OK
  int64_t retries = 0;               // retried calls, all jobs together
};

// Scores every job with `scorer` on `concurrency` owned, named threads, retrying as RetryDelay
// says. The first final failure stops the others from starting new jobs and is returned as
// "query 'ID': <the call's error>"; an OK answer with the wrong number of scores is DataLoss, one
// that was not reranked (the server passes documents through when its reranker is disabled)
// FailedPrecondition. InvalidArgument for bad options.
absl::StatusOr<RerankAllResult> RerankAll(const std::vector<RerankJob>& jobs, const Scorer& scorer,
                                          const RerankAllOptions& options);

// A Scorer calling rerank.v1.Reranker/Rerank on `target` (insecure channel), one call per job,
// all of the job's documents with top_n = their number, under a per-call `deadline`.
struct GrpcScorerOptions {
  std::string target;
  absl::Duration deadline = absl::Seconds(60);
  std::string client_id = "rerankctl-eval";
};
Scorer MakeGrpcScorer(const GrpcScorerOptions& options);

// The comparison table: a row per metric with the input figure, and with `reranked` the reranked
// figure and the change; then the number of queries.
std::string FormatEvalTable(const EvalMetrics& input, const EvalMetrics* reranked);

// One line of JSON: {"input": {"ndcg@10": x, "mrr@10": x, "recall@100": x, "queries": n},
// "reranked": {...}}, "reranked" only when given.
std::string FormatEvalJson(const EvalMetrics& input, const EvalMetrics* reranked);

// The command: flags, usage, and the run itself.
const std::vector<FlagSpec>& EvalFlags();
extern const char kEvalUsage[];

struct EvalEndpoints {
  std::string target;  // data-plane gRPC address (global --target)
  std::string admin;   // admin HTTP base URL (global --admin): /health says if the model is a demo
  std::optional<absl::Duration> timeout;  // global --timeout when given: the per-call deadline
};

// Runs `rerankctl eval` and returns its exit status: 0 done, 1 the server failed or could not be
// reached, 2 usage or input error (the message names the flag, or the file and line).
int RunEval(const ParsedArgs& args, const EvalEndpoints& endpoints);

}  // namespace rerank::ctl

#endif  // RERANK_TOOLS_RERANKCTL_EVAL_H_
