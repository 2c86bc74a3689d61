// Relevance evaluation data for `rerankctl eval`: a BEIR folder (corpus, queries, qrels), TREC run
// files, and the trec_eval-compatible metrics nDCG@10, MRR@10 and Recall@100.
//
// Every reader bounds what it keeps (line length, entries) and reports a malformed line as
// InvalidArgument "FILE:LINE: what is wrong"; a missing or unreadable file is NotFound naming it.
// Pure functions over files and values; thread-compatible.
#ifndef RERANK_TOOLS_RERANKCTL_EVAL_DATA_H_
#define RERANK_TOOLS_RERANKCTL_EVAL_DATA_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rerank::ctl {

// Limits on untrusted input files.
struct EvalLimits {
  size_t max_line_bytes = 16 << 20;      // one JSONL/TSV/TREC line (a long corpus document)
  int64_t max_entries = 50'000'000;      // run lines or qrels lines kept in memory
  size_t max_document_bytes = 16 << 20;  // title + text of one corpus document
};

// The files of a BEIR dataset folder.
struct BeirFiles {
  std::string corpus;   // DIR/corpus.jsonl
  std::string queries;  // DIR/queries.jsonl, else DIR/queries.test.jsonl
  std::string qrels;    // DIR/qrels/test.tsv, else DIR/qrels.test.tsv
};

// Finds the dataset's files in `dir`. The qrels are always required; the corpus and queries only
// when `need_texts` (reranking sends texts; evaluating a run alone does not). NotFound naming
// every name tried when one is missing.
absl::StatusOr<BeirFiles> FindBeirFiles(const std::string& dir, bool need_texts);

// Relevance judgements: query id -> document id -> grade (an integer; may be 0 or negative).
using Qrels = std::map<std::string, std::map<std::string, int>>;

// Reads BEIR qrels ("query-id<TAB>corpus-id<TAB>score", with or without that header line) or TREC
// qrels ("qid iter docid grade"); fields are separated by tabs or spaces, empty lines skipped. A
// (query, document) pair judged twice is an error.
absl::StatusOr<Qrels> ReadQrels(const std::string& path, const EvalLimits& limits = {});

struct RunEntry {
  std::string doc_id;
  double score = 0;
  int64_t line = 0;  // its line in the run file (for messages); 0 when not read from a file
};

// A TREC run: per query, its retrieved documents in file order.
struct TrecRun {
  std::vector<std::string> query_order;  // queries by first appearance in the file
  std::map<std::string, std::vector<RunEntry>> entries;
  std::map<std::string, int64_t> first_line;  // query id -> its first line in the file
};

// Reads a TREC run: lines "qid Q0 docid rank score tag" (6 whitespace-separated fields; the rank
// is an integer that trec_eval ignores, the score a finite number). A document listed twice for
// the same query is an error, as in trec_eval.
absl::StatusOr<TrecRun> ReadTrecRun(const std::string& path, const EvalLimits& limits = {});

// Reads a BEIR JSONL file of {"_id": ..., "text": ..., ["title": ...]} objects (an _id may be a
// string or an integer) and keeps the entries whose id is in `wanted`, as "title text" (title
// and text joined by a space when both are non-empty, as BEIR's rerankers do). Lines of other ids
// are checked for well-formedness but not kept, so a large corpus costs only what is wanted. An
// id in `wanted` that appears twice is an error.
absl::StatusOr<std::map<std::string, std::string>> ReadBeirTexts(
    const std::string& path, const std::set<std::string>& wanted, const EvalLimits& limits = {});

// Sorts a query's run entries as trec_eval ranks them: by score descending, ties by document id
// in descending string (byte) order (trec_eval's comp_sim_docno). The input order is ignored.
void SortTrecOrder(std::vector<RunEntry>* entries);

struct QueryMetrics {
  double ndcg_at_10 = 0;
  double mrr_at_10 = 0;
  double recall_at_100 = 0;
};

// One query's metrics, as trec_eval computes ndcg_cut_10, recall_100 and (cut at 10) recip_rank:
// nDCG's gain is the grade itself (grades <= 0 gain nothing), discounted by log2(rank + 1), over
// the ideal DCG@10 of all the query's judged documents; a document is relevant for MRR and
// recall when its grade >= `relevance_level`. `ranking` is in any order (sorted here, as
// SortTrecOrder). With no relevant judgement, recall is 0.
QueryMetrics EvaluateQuery(std::vector<RunEntry> ranking, const std::map<std::string, int>& judged,
                           int relevance_level);

// Whether a query counts in the averages: it has at least one judgement >= relevance_level.
bool HasRelevant(const Qrels& qrels, const std::string& query_id, int relevance_level);

struct EvalMetrics {
  double ndcg_at_10 = 0;
  double mrr_at_10 = 0;
  double recall_at_100 = 0;
  int64_t queries = 0;  // the queries averaged over
};

// Means over the run's queries that have a relevant judgement (HasRelevant); other run queries
// and judged queries absent from the run are ignored (trec_eval without -c). All zero when none.
EvalMetrics Evaluate(const TrecRun& run, const Qrels& qrels, int relevance_level);

// The TREC run text for `run` with every query's entries in SortTrecOrder order, ranks from 1,
// scores printed with 9 significant digits (a float's scores survive a round trip, so the file
// ranks exactly as the scores did) and `tag` in the last column.
std::string FormatTrecRun(const TrecRun& run, const std::string& tag);

// Writes `contents` to `path` through a temporary file and a rename, so a reader never sees half
// a run. Internal error naming the path on failure.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);

}  // namespace rerank::ctl

#endif  // RERANK_TOOLS_RERANKCTL_EVAL_DATA_H_
