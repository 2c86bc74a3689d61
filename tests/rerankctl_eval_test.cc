// Unit tests of `rerankctl eval`'s pieces: the BEIR/TREC readers, the trec_eval metrics (a
// hand-computed graded example, tests/testdata/eval), the run writer, and the concurrent rerank
// driver with a fake scorer. The binary against a real rerankd: tests/rerankctl_eval_e2e_test.py.
#include "tools/rerankctl_eval.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/files.h"
#include "tools/rerankctl_eval_data.h"

namespace rerank::ctl {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// The fixture, relative to the source directory (ctest's working directory).
constexpr char kFixture[] = "tests/testdata/eval";

// Hand-computed figures of the fixture (tests/testdata/eval/README.md explains each).
// q1 ranks d3 (5.0, grade 0), d9 (4.0, unjudged; the tie with d2 goes to the larger id "d9"),
// d2 (4.0, grade 1), d1 (3.0, grade 2), d12. Judged grades 2, 1, 1 (and a 0).
const double kQ1Dcg = 1 / std::log2(4.0) + 2 / std::log2(5.0);
const double kIdcg211 = 2 / std::log2(2.0) + 1 / std::log2(3.0) + 1 / std::log2(4.0);
const double kQ1Ndcg = kQ1Dcg / kIdcg211;
// q5 ranks d9 (-2.5, grade 1: "d9" > "d10" as strings), d10 (-2.5, grade 2), d5; d11 (grade 1)
// is not retrieved.
const double kQ5Ndcg = (1 / std::log2(2.0) + 2 / std::log2(3.0)) / kIdcg211;
// q2's only relevant document is at rank 12: nothing within 10, recall 1.

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/rerankctl_eval_test_XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(const std::string& name, const std::string& contents) const {
    const fs::path p = fs::path(path_) / name;
    fs::create_directories(p.parent_path());
    rerank::testing::WriteFile(p, contents);
    return p.string();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string FixturePath(const std::string& name) { return (fs::path(kFixture) / name).string(); }

TEST(RerankctlEvalQueryTest, HandComputedGradedExample) {
  // Given in file order, not rank order: EvaluateQuery ranks as trec_eval does.
  const std::vector<RunEntry> run = {
      {"d2", 4.0}, {"d3", 5.0}, {"d9", 4.0}, {"d1", 3.0}, {"d12", 1.0}};
  const std::map<std::string, int> judged = {{"d1", 2}, {"d2", 1}, {"d3", 0}, {"d4", 1}};
  QueryMetrics m = EvaluateQuery(run, judged, 1);
  EXPECT_NEAR(m.ndcg_at_10, kQ1Ndcg, 1e-12);
  EXPECT_NEAR(m.ndcg_at_10, 0.4348079, 1e-7);
  EXPECT_DOUBLE_EQ(m.mrr_at_10, 1.0 / 3);  // d2, rank 3
  EXPECT_DOUBLE_EQ(m.recall_at_100, 2.0 / 3);
  // Level 2: only d1 (rank 4) is relevant; nDCG does not depend on the level.
  m = EvaluateQuery(run, judged, 2);
  EXPECT_NEAR(m.ndcg_at_10, kQ1Ndcg, 1e-12);
  EXPECT_DOUBLE_EQ(m.mrr_at_10, 0.25);
  EXPECT_DOUBLE_EQ(m.recall_at_100, 1.0);
  // Level 0: every judged document is relevant (d3 at rank 1), never an unjudged one.
  m = EvaluateQuery(run, judged, 0);
  EXPECT_DOUBLE_EQ(m.mrr_at_10, 1.0);
  EXPECT_DOUBLE_EQ(m.recall_at_100, 3.0 / 4);
  m = EvaluateQuery({{"x", 1.0}, {"y", 0.5}}, {{"d1", 0}}, 0);
  EXPECT_DOUBLE_EQ(m.mrr_at_10, 0);
  EXPECT_DOUBLE_EQ(m.recall_at_100, 0);
}

TEST(RerankctlEvalQueryTest, CutoffsAtTenAndHundred) {
  std::vector<RunEntry> run;
  for (int i = 0; i < 150; ++i) run.push_back({absl::StrCat("n", 1000 + i), 1000.0 - i});
  run[10].doc_id = "rel10";    // rank 11: outside @10
  run[99].doc_id = "rel99";    // rank 100: inside @100
  run[100].doc_id = "rel100";  // rank 101: outside @100
  const std::map<std::string, int> judged = {{"rel10", 3}, {"rel99", 1}, {"rel100", 1}};
  const QueryMetrics m = EvaluateQuery(run, judged, 1);
  EXPECT_DOUBLE_EQ(m.ndcg_at_10, 0);
  EXPECT_DOUBLE_EQ(m.mrr_at_10, 0);
  EXPECT_DOUBLE_EQ(m.recall_at_100, 2.0 / 3);
  // Negative grades gain nothing (and are not relevant at level 1).
  const QueryMetrics neg = EvaluateQuery({{"a", 2.0}, {"b", 1.0}}, {{"a", -1}, {"b", 1}}, 1);
  EXPECT_DOUBLE_EQ(neg.ndcg_at_10, (1 / std::log2(3.0)) / 1.0);
  EXPECT_DOUBLE_EQ(neg.mrr_at_10, 0.5);
}

TEST(RerankctlEvalSortTrecOrderTest, ScoreDescendingThenDocIdDescendingAsStrings) {
  std::vector<RunEntry> run = {{"d10", 1.0}, {"d2", 1.0}, {"d9", 1.0}, {"a", 3.0}, {"z", -1}};
  SortTrecOrder(&run);
  std::vector<std::string> ids;
  for (const RunEntry& e : run) ids.push_back(e.doc_id);
  EXPECT_THAT(ids, ElementsAre("a", "d9", "d2", "d10", "z"));
}

TEST(RerankctlEvalFixtureTest, FixtureHandComputedFigures) {
  absl::StatusOr<BeirFiles> files = FindBeirFiles(kFixture, true);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(files->qrels, FixturePath("qrels/test.tsv"));
  EXPECT_EQ(files->queries, FixturePath("queries.test.jsonl"));
  EXPECT_EQ(files->corpus, FixturePath("corpus.jsonl"));
  absl::StatusOr<Qrels> qrels = ReadQrels(files->qrels);
  ASSERT_TRUE(qrels.ok()) << qrels.status();
  absl::StatusOr<TrecRun> run = ReadTrecRun(FixturePath("fixture.run"));
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_THAT(run->query_order, ElementsAre("q1", "q2", "q3", "q5", "q6"));

  // Level 1: q1, q2, q5 (q3 has only a grade 0, q4 is not in the run, q6 has no judgements).
  EvalMetrics m = Evaluate(*run, *qrels, 1);
  EXPECT_EQ(m.queries, 3);
  EXPECT_NEAR(m.ndcg_at_10, (kQ1Ndcg + 0 + kQ5Ndcg) / 3, 1e-12);
  EXPECT_NEAR(m.ndcg_at_10, 0.3857441, 1e-7);
  EXPECT_NEAR(m.mrr_at_10, (1.0 / 3 + 0 + 1) / 3, 1e-12);
  EXPECT_NEAR(m.recall_at_100, (2.0 / 3 + 1 + 2.0 / 3) / 3, 1e-12);
  // Level 2: q1 (d1 at rank 4) and q5 (d10 at rank 2); q2 has no grade-2 judgement.
  m = Evaluate(*run, *qrels, 2);
  EXPECT_EQ(m.queries, 2);
  EXPECT_NEAR(m.ndcg_at_10, (kQ1Ndcg + kQ5Ndcg) / 2, 1e-12);
  EXPECT_NEAR(m.mrr_at_10, (0.25 + 0.5) / 2, 1e-12);
  EXPECT_NEAR(m.recall_at_100, 1.0, 1e-12);
  // Level 0: q3 joins (its grade-0 d7 is "relevant" at rank 1; its ideal DCG is 0).
  m = Evaluate(*run, *qrels, 0);
  EXPECT_EQ(m.queries, 4);
  EXPECT_NEAR(m.ndcg_at_10, (kQ1Ndcg + 0 + 0 + kQ5Ndcg) / 4, 1e-12);
  EXPECT_NEAR(m.mrr_at_10, (1 + 0 + 1 + 1) / 4.0, 1e-12);
  EXPECT_NEAR(m.recall_at_100, (3.0 / 4 + 1 + 1 + 2.0 / 3) / 4, 1e-12);
  // No evaluable query: all zero.
  m = Evaluate(*run, *qrels, 3);
  EXPECT_EQ(m.queries, 0);
  EXPECT_EQ(m.ndcg_at_10, 0);
}

TEST(RerankctlEvalFindBeirFilesTest, AlternativeNamesAndMissingFiles) {
  TempDir dir;
  absl::StatusOr<BeirFiles> f = FindBeirFiles(dir.path(), false);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr(dir.path() + "/qrels/test.tsv"));
  EXPECT_THAT(f.status().message(), HasSubstr(dir.path() + "/qrels.test.tsv"));
  dir.File("qrels.test.tsv", "q1\td1\t1\n");
  f = FindBeirFiles(dir.path(), false);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->qrels, dir.path() + "/qrels.test.tsv");
  EXPECT_EQ(f->corpus, "");  // not needed without reranking
  f = FindBeirFiles(dir.path(), true);
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(f.status().message(), HasSubstr("corpus.jsonl"));
  dir.File("corpus.jsonl", "");
  dir.File("queries.test.jsonl", "");
  f = FindBeirFiles(dir.path(), true);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->queries, dir.path() + "/queries.test.jsonl");
  dir.File("queries.jsonl", "");
  dir.File("qrels/test.tsv", "");
  f = FindBeirFiles(dir.path(), true);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->queries, dir.path() + "/queries.jsonl");
  EXPECT_EQ(f->qrels, dir.path() + "/qrels/test.tsv");
  EXPECT_EQ(FindBeirFiles(dir.path() + "/nope", false).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(RerankctlEvalReadQrelsTest, BeirAndTrecFormats) {
  TempDir dir;
  absl::StatusOr<Qrels> q =
      ReadQrels(dir.File("a.tsv", "query-id\tcorpus-id\tscore\r\nq1\td1\t2\r\n\nq1 d2 0\n"));
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_THAT(q->at("q1"), ElementsAre(Pair("d1", 2), Pair("d2", 0)));
  q = ReadQrels(dir.File("b.qrels", "q1 0 d1 1\nq2 0 d3 -1\n"));
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->at("q2").at("d3"), -1);
}

TEST(RerankctlEvalReadQrelsTest, MalformedLinesNameFileAndLine) {
  TempDir dir;
  struct Case {
    std::string contents;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {"q1\td1\t1\nq1\td2\n", ":2: expected 3 fields"},
           {"q1\td1\t1\nq1\td2\thigh\n", ":2: grade 'high' is not an integer"},
           {"q1\td1\t1\nquery-id\tcorpus-id\tscore\n", ":2: grade 'score' is not an integer"},
           {"q1\td1\t1\n\nq1\td1\t2\n",
            ":3: document 'd1' judged twice for query 'q1' (first "
            "at line 1)"},
       }) {
    const std::string path = dir.File("q.tsv", c.contents);
    absl::StatusOr<Qrels> q = ReadQrels(path);
    ASSERT_FALSE(q.ok()) << c.contents;
    EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(q.status().message(), HasSubstr(path + c.error));
  }
  absl::StatusOr<Qrels> q = ReadQrels(dir.path() + "/missing.tsv");
  EXPECT_EQ(q.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(q.status().message(), HasSubstr(dir.path() + "/missing.tsv"));
}

TEST(RerankctlEvalReadTrecRunTest, MalformedLinesNameFileAndLine) {
  TempDir dir;
  struct Case {
    std::string contents;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {"q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0\n", ":2: expected 6 fields"},
           {"q1 Q0 d1 1 2.0 t\nq1 Q0 d2 x 1.0 t\n", ":2: rank 'x' is not an integer"},
           {"q1 Q0 d1 1 high t\n", ":1: score 'high' is not a finite number"},
           {"q1 Q0 d1 1 nan t\n", ":1: score 'nan' is not a finite number"},
           {"q1 Q0 d1 1 inf t\n", ":1: score 'inf' is not a finite number"},
           {"q1 Q0 d1 1 2 t\nq2 Q0 d1 1 2 t\nq1 Q0 d1 3 1 t\n",
            ":3: document 'd1' listed twice for query 'q1' (first at line 1)"},
       }) {
    const std::string path = dir.File("r.run", c.contents);
    absl::StatusOr<TrecRun> r = ReadTrecRun(path);
    ASSERT_FALSE(r.ok()) << c.contents;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(path + c.error));
  }
  // A line longer than the limit is an error, not an allocation.
  EvalLimits limits;
  limits.max_line_bytes = 64;
  const std::string path =
      dir.File("long.run", "q1 Q0 d1 1 2 t\nq1 Q0 " + std::string(100, 'x') + " 2 1 t\n");
  absl::StatusOr<TrecRun> r = ReadTrecRun(path, limits);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(path + ":2: line longer than 64 bytes"));
  limits = EvalLimits();
  limits.max_entries = 2;
  r = ReadTrecRun(dir.File("many.run", "q Q0 a 1 3 t\nq Q0 b 2 2 t\nq Q0 c 3 1 t\n"), limits);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(":3: more than 2 run lines"));
}

TEST(RerankctlEvalReadBeirTextsTest, KeepsWantedIdsJoinsTitleAndText) {
  TempDir dir;
  const std::string path =
      dir.File("corpus.jsonl",
               "{\"_id\": \"a\", \"title\": \"T\", \"text\": \"body\"}\n"
               "{\"_id\": 7, \"text\": \"seven\"}\n"
               "\n"
               "{\"_id\": \"b\", \"title\": \"\", \"text\": \"just text\", \"metadata\": {}}\n"
               "{\"_id\": \"c\", \"title\": \"only title\", \"text\": \"\"}\n"
               "{\"_id\": \"unwanted\", \"title\": null, \"text\": \"x\"}\n");
  absl::StatusOr<std::map<std::string, std::string>> t =
      ReadBeirTexts(path, {"a", "7", "b", "c", "absent"});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*t, ElementsAre(Pair("7", "seven"), Pair("a", "T body"), Pair("b", "just text"),
                              Pair("c", "only title")));
}

TEST(RerankctlEvalReadBeirTextsTest, MalformedLinesNameFileAndLine) {
  TempDir dir;
  struct Case {
    std::string contents;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {"{\"_id\": \"a\", \"text\": \"x\"}\n{\"_id\": \"b\", \"text\": \"x\"\n",
            ":2: not valid JSON"},
           {"[1, 2]\n", ":1: not a JSON object"},
           {"{\"text\": \"x\"}\n", ":1: missing \"_id\""},
           {"{\"_id\": 1.5, \"text\": \"x\"}\n", ":1: \"_id\" must be a string or an integer"},
           {"{\"_id\": \"a\", \"text\": 3}\n", ":1: \"text\" must be a string"},
           {"{\"_id\": \"a\", \"title\": \"x\"}\n", ":1: missing \"text\""},
           {"{\"_id\": \"a\", \"text\": \"x\"}\n{\"_id\": \"a\", \"text\": \"y\"}\n",
            ":2: \"_id\" 'a' appears twice (first at line 1)"},
       }) {
    const std::string path = dir.File("c.jsonl", c.contents);
    absl::StatusOr<std::map<std::string, std::string>> t = ReadBeirTexts(path, {"a"});
    ASSERT_FALSE(t.ok()) << c.contents;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(t.status().message(), HasSubstr(path + c.error));
  }
}

TEST(RerankctlEvalFormatTrecRunTest, RanksInTrecOrderAndScoresRoundTrip) {
  TrecRun run;
  run.query_order = {"qb", "qa"};
  const float f1 = 0.123456789f, f2 = -3.3333333f;
  run.entries["qb"] = {{"d10", f1}, {"d9", f1}, {"d1", f2}};
  run.entries["qa"] = {{"x", 1e-8f}};
  const std::string text = FormatTrecRun(run, "rerankd");
  EXPECT_EQ(text, absl::StrCat("qb Q0 d9 1 ", absl::StrFormat("%.9g", f1), " rerankd\n",
                               "qb Q0 d10 2 ", absl::StrFormat("%.9g", f1), " rerankd\n",
                               "qb Q0 d1 3 ", absl::StrFormat("%.9g", f2), " rerankd\n",
                               "qa Q0 x 1 ", absl::StrFormat("%.9g", 1e-8f), " rerankd\n"));
  TempDir dir;
  const std::string path = dir.path() + "/out.run";
  ASSERT_TRUE(WriteFileAtomically(path, text).ok());
  absl::StatusOr<TrecRun> back = ReadTrecRun(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_THAT(back->query_order, ElementsAre("qb", "qa"));
  ASSERT_EQ(back->entries["qb"].size(), 3u);
  EXPECT_EQ(static_cast<float>(back->entries["qb"][0].score), f1);  // the float survives
  EXPECT_EQ(static_cast<float>(back->entries["qb"][2].score), f2);
  EXPECT_EQ(FormatTrecRun(*back, "rerankd"), text);
  absl::Status s = WriteFileAtomically(dir.path() + "/no/such/dir/out.run", text);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr(dir.path() + "/no/such/dir/out.run"));
}

TEST(RerankctlEvalFormatEvalTest, JsonIsOneLineWithTheContractKeys) {
  EvalMetrics in{0.5, 0.25, 0.75, 3};
  EvalMetrics out{0.625, 0.5, 0.75, 3};
  const std::string line = FormatEvalJson(in, &out);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line,
            "{\"input\":{\"ndcg@10\":0.5,\"mrr@10\":0.25,\"recall@100\":0.75,\"queries\":3},"
            "\"reranked\":{\"ndcg@10\":0.625,\"mrr@10\":0.5,\"recall@100\":0.75,\"queries\":3}}");
  EXPECT_EQ(FormatEvalJson(in, nullptr),
            "{\"input\":{\"ndcg@10\":0.5,\"mrr@10\":0.25,\"recall@100\":0.75,\"queries\":3}}");
  const std::string table = FormatEvalTable(in, &out);
  EXPECT_THAT(table, HasSubstr("nDCG@10        0.5000    0.6250  +0.1250\n"));
  EXPECT_THAT(table, HasSubstr("Recall@100     0.7500    0.7500  +0.0000\n"));
  EXPECT_THAT(table, HasSubstr("queries             3         3\n"));
  EXPECT_THAT(FormatEvalTable(out, &in), HasSubstr("MRR@10         0.5000    0.2500  -0.2500\n"));
  EXPECT_EQ(FormatEvalTable(in, nullptr),
            "metric          input\nnDCG@10        0.5000\nMRR@10         0.2500\n"
            "Recall@100     0.7500\nqueries             3\n");
}

// ---- the concurrent driver ----

std::vector<RerankJob> Jobs(int n, int docs) {
  static const std::string* const kText = new std::string("text");
  std::vector<RerankJob> jobs;
  for (int i = 0; i < n; ++i) {
    RerankJob j;
    j.query_id = absl::StrCat("q", i);
    j.query = absl::StrCat("query ", i);
    for (int d = 0; d < docs; ++d) {
      j.doc_ids.push_back(absl::StrCat("d", d));
      j.doc_texts.push_back(kText);
    }
    jobs.push_back(std::move(j));
  }
  return jobs;
}

ScoreAnswer Scores(const RerankJob& job) {
  ScoreAnswer a;
  for (size_t d = 0; d < job.doc_ids.size(); ++d) {
    a.scores.push_back(static_cast<double>(job.query.size() * 10 + d));
  }
  a.model_name = "fake";
  return a;
}

ScoreAnswer Error(absl::StatusCode code, absl::Duration retry_after = absl::ZeroDuration()) {
  ScoreAnswer a;
  a.status = absl::Status(code, "fake failure");
  a.retry_after = retry_after;
  return a;
}

TEST(RerankctlEvalRerankAllTest, RunsConcurrencyCallsAtOnceAndKeepsJobOrder) {
  const std::vector<RerankJob> jobs = Jobs(20, 3);
  absl::Mutex mu;
  int in_flight = 0, max_in_flight = 0;
  bool reached_three = false;
  std::atomic<int> calls{0};
  Scorer scorer = [&](const RerankJob& job) {
    ++calls;
    {
      absl::MutexLock l(&mu);
      max_in_flight = std::max(max_in_flight, ++in_flight);
      // The first calls wait (bounded) until three run at once: a serial driver never gets there.
      if (in_flight == 3) reached_three = true;
      mu.AwaitWithTimeout(absl::Condition(&reached_three), absl::Seconds(10));
      --in_flight;
    }
    return Scores(job);
  };
  RerankAllOptions options;
  options.concurrency = 3;
  std::vector<int64_t> progress;
  options.progress = [&progress](int64_t done, int64_t total, int64_t retries) {
    EXPECT_EQ(total, 20);
    EXPECT_EQ(retries, 0);
    progress.push_back(done);
  };
  absl::StatusOr<RerankAllResult> r = RerankAll(jobs, scorer, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(reached_three);
  EXPECT_EQ(max_in_flight, 3);
  EXPECT_EQ(calls.load(), 20);
  ASSERT_EQ(r->answers.size(), 20u);
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(r->answers[i].scores, Scores(jobs[i]).scores) << i;
  }
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), 20);  // the last report is the final count
  EXPECT_EQ(r->retries, 0);
}

TEST(RerankctlEvalRerankAllTest, RetriesResourceExhaustedAfterTheServersHint) {
  const std::vector<RerankJob> jobs = Jobs(2, 2);
  absl::Mutex mu;
  std::map<std::string, int> attempts;
  Scorer scorer = [&](const RerankJob& job) {
    int n;
    {
      absl::MutexLock l(&mu);
      n = ++attempts[job.query_id];
    }
    if (job.query_id == "q1" && n <= 2) {
      return Error(absl::StatusCode::kResourceExhausted, absl::Milliseconds(250));
    }
    if (job.query_id == "q0" && n <= 2) return Error(absl::StatusCode::kResourceExhausted);
    return Scores(job);
  };
  std::vector<absl::Duration> slept;
  RerankAllOptions options;
  options.concurrency = 1;
  options.sleep = [&slept](absl::Duration d) { slept.push_back(d); };
  absl::StatusOr<RerankAllResult> r = RerankAll(jobs, scorer, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->retries, 4);
  // q0 has no hint: exponential backoff; q1 waits what the server said.
  EXPECT_THAT(slept, ElementsAre(absl::Milliseconds(100), absl::Milliseconds(200),
                                 absl::Milliseconds(250), absl::Milliseconds(250)));
  EXPECT_EQ(r->answers[1].scores, Scores(jobs[1]).scores);
}

TEST(RerankctlEvalRerankAllTest, RetryWaitIsBounded) {
  Scorer scorer = [](const RerankJob&) {
    return Error(absl::StatusCode::kResourceExhausted, absl::Milliseconds(600));
  };
  std::vector<absl::Duration> slept;
  RerankAllOptions options;
  options.max_retry_wait = absl::Seconds(1);
  options.sleep = [&slept](absl::Duration d) { slept.push_back(d); };
  options.concurrency = 1;
  absl::StatusOr<RerankAllResult> r = RerankAll(Jobs(1, 1), scorer, options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(r.status().message(), "query 'q0': fake failure");
  EXPECT_THAT(slept, ElementsAre(absl::Milliseconds(600)));  // a second wait would pass 1 s
}

TEST(RerankctlEvalRerankAllTest, FirstFailureStopsNewCalls) {
  std::atomic<int> calls{0};
  Scorer scorer = [&calls](const RerankJob& job) {
    ++calls;
    if (job.query_id == "q2") return Error(absl::StatusCode::kInternal);
    return Scores(job);
  };
  RerankAllOptions options;
  options.concurrency = 1;
  options.sleep = [](absl::Duration) { ADD_FAILURE() << "INTERNAL is not retried"; };
  absl::StatusOr<RerankAllResult> r = RerankAll(Jobs(10, 2), scorer, options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(r.status().message(), "query 'q2': fake failure");
  EXPECT_EQ(calls.load(), 3);
}

TEST(RerankctlEvalRerankAllTest, UnavailableIsRetriedAFewTimes) {
  // Two UNAVAILABLE answers (a GOAWAY'd connection), then the call goes through.
  std::atomic<int> calls{0};
  Scorer flaky = [&calls](const RerankJob& job) {
    if (++calls <= 2) return Error(absl::StatusCode::kUnavailable);
    return Scores(job);
  };
  std::vector<absl::Duration> slept;
  RerankAllOptions options;
  options.concurrency = 1;
  options.sleep = [&slept](absl::Duration d) { slept.push_back(d); };
  absl::StatusOr<RerankAllResult> r = RerankAll(Jobs(2, 2), flaky, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->retries, 2);
  EXPECT_THAT(slept, ElementsAre(absl::Milliseconds(100), absl::Milliseconds(200)));
  // A server that stays unreachable fails the run after 3 retries.
  Scorer down = [](const RerankJob&) { return Error(absl::StatusCode::kUnavailable); };
  slept.clear();
  r = RerankAll(Jobs(2, 2), down, options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(slept.size(), 3u);
}

TEST(RerankctlEvalRerankAllTest, BadAnswersAndOptions) {
  Scorer short_answer = [](const RerankJob& job) {
    ScoreAnswer a = Scores(job);
    a.scores.pop_back();
    return a;
  };
  absl::StatusOr<RerankAllResult> r = RerankAll(Jobs(1, 3), short_answer, {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("answered 2 scores for 3 documents"));
  Scorer passthrough = [](const RerankJob& job) {
    ScoreAnswer a = Scores(job);
    a.reranked = false;
    return a;
  };
  r = RerankAll(Jobs(1, 3), passthrough, {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("reranker is disabled"));
  RerankAllOptions bad;
  bad.concurrency = 0;
  EXPECT_EQ(RerankAll(Jobs(1, 1), Scores, bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.concurrency = 65;
  EXPECT_EQ(RerankAll(Jobs(1, 1), Scores, bad).status().code(), absl::StatusCode::kInvalidArgument);
  // No jobs: nothing to do, no thread.
  r = RerankAll({}, Scores, {});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->answers.empty());
}

TEST(RerankctlEvalRetryDelayTest, ResourceExhaustedWithCappedHintOrBackoff) {
  EXPECT_EQ(RetryDelay(Error(absl::StatusCode::kDeadlineExceeded), 1), std::nullopt);
  EXPECT_EQ(RetryDelay(Error(absl::StatusCode::kResourceExhausted, absl::Minutes(5)), 1),
            absl::Seconds(60));
  EXPECT_EQ(RetryDelay(Error(absl::StatusCode::kResourceExhausted), 1), absl::Milliseconds(100));
  EXPECT_EQ(RetryDelay(Error(absl::StatusCode::kResourceExhausted), 3), absl::Milliseconds(400));
  EXPECT_EQ(RetryDelay(Error(absl::StatusCode::kResourceExhausted), 30), absl::Seconds(5));
}

// A connection the server ended (max_connection_age's GOAWAY) fails a call with UNAVAILABLE: a
// few quick retries, then the run fails (an unreachable server is not waited for).
TEST(RerankctlEvalRetryDelayTest, UnavailableRetriedThreeTimesOtherErrorsNot) {
  EXPECT_EQ(RetryDelay(Error(absl::StatusCode::kUnavailable), 1), absl::Milliseconds(100));
  EXPECT_EQ(RetryDelay(Error(absl::StatusCode::kUnavailable), 3), absl::Milliseconds(400));
  EXPECT_EQ(RetryDelay(Error(absl::StatusCode::kUnavailable), 4), std::nullopt);
  EXPECT_EQ(RetryDelay(Error(absl::StatusCode::kDeadlineExceeded), 1), std::nullopt);
  EXPECT_EQ(RetryDelay(Error(absl::StatusCode::kInvalidArgument), 1), std::nullopt);
}

}  // namespace
}  // namespace rerank::ctl
