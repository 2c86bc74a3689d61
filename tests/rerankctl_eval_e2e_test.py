#!/usr/bin/python3
"""End to end: `rerankctl eval` on the BEIR fixture (tests/testdata/eval) against a real rerankd
subprocess serving the tiny random test model: the JSON line, the reranked TREC run it writes
(every evaluated query, --depth respected, scores as the server gives them), the demo-model
warning, the progress bar on a terminal, and exit status 2 for bad input, 1 for a failing server.

The input figures are the fixture's hand-computed ones (tests/testdata/eval/README.md); the
reranked figures are recomputed here, independently, from the run file eval wrote.
"""
import json
import math
import os
import pty
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rerankctl_e2e_test import RerankdProcess  # noqa: E402
from rerankctl_testlib import (RERANKCTL, SOURCE_DIR, clean_env, describe,  # noqa: E402
                               free_port, rerankctl)

TOKEN = "eval-e2e-secret-token"
FIXTURE = os.path.join(SOURCE_DIR, "tests", "testdata", "eval")
FIXTURE_RUN = os.path.join(FIXTURE, "fixture.run")

# Hand-computed (README.md there): q1, q2 and q5 are evaluated at relevance level 1.
IDCG_211 = 2 + 1 / math.log2(3) + 1 / math.log2(4)
Q1_NDCG = (1 / math.log2(4) + 2 / math.log2(5)) / IDCG_211
Q5_NDCG = (1 + 2 / math.log2(3)) / IDCG_211
EXPECTED_INPUT = {"ndcg@10": (Q1_NDCG + 0 + Q5_NDCG) / 3, "mrr@10": (1 / 3 + 0 + 1) / 3,
                  "recall@100": (2 / 3 + 1 + 2 / 3) / 3, "queries": 3}


def read_qrels():
    qrels = {}
    with open(os.path.join(FIXTURE, "qrels", "test.tsv")) as f:
        for i, line in enumerate(f):
            q, d, g = line.split()
            if i == 0:
                continue  # header
            qrels.setdefault(q, {})[d] = int(g)
    return qrels


def read_run(path):
    """{qid: [(docid, rank, score, tag)]} in file order, asserting each line is valid TREC."""
    run, order = {}, []
    with open(path) as f:
        for line in f:
            fields = line.split()
            assert len(fields) == 6 and fields[1] == "Q0", line
            q, _, d, rank, score, tag = fields
            if q not in run:
                order.append(q)
            run.setdefault(q, []).append((d, int(rank), float(score), tag))
    return run, order


def trec_sorted(entries):
    """(docid, score) pairs ranked as trec_eval: score descending, ties by docid descending."""
    ranked = sorted(entries, key=lambda e: e[0], reverse=True)
    return sorted(ranked, key=lambda e: -e[1])


def metrics(run, qrels, level=1):
    """nDCG@10, MRR@10, Recall@100 averaged over the run's queries with a relevant judgement."""
    sums, n = {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}, 0
    for q, entries in run.items():
        judged = qrels.get(q, {})
        relevant = {d for d, g in judged.items() if g >= level}
        if not relevant:
            continue
        ranked = [d for d, _ in trec_sorted([(e[0], e[2]) for e in entries])]
        dcg = sum(max(judged.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
        ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        sums["ndcg@10"] += dcg / idcg if idcg else 0
        sums["mrr@10"] += next((1 / (i + 1) for i, d in enumerate(ranked[:10]) if d in relevant), 0)
        sums["recall@100"] += len(relevant & set(ranked[:100])) / len(relevant)
        n += 1
    return {k: v / n for k, v in sums.items()}, n


def corpus_texts():
    texts = {}
    with open(os.path.join(FIXTURE, "corpus.jsonl")) as f:
        for line in f:
            o = json.loads(line)
            title, text = o.get("title") or "", o["text"]
            texts[o["_id"]] = " ".join(t for t in (title, text) if t)
    return texts


class RerankctlEvalE2ETest(RerankdProcess, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_rerankd(admin_token=TOKEN)
        cls.env = clean_env(RERANKER_ADMIN_URL=cls.admin, RERANKER_GRPC_TARGET=cls.target,
                            RERANKER_ADMIN_TOKEN=TOKEN)
        cls.work = tempfile.mkdtemp(prefix="rerankctl_eval_e2e_")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)
        super().tearDownClass()

    def assertFigures(self, got, expected):
        self.assertEqual(set(got), {"ndcg@10", "mrr@10", "recall@100", "queries"}, got)
        self.assertEqual(got["queries"], expected["queries"])
        for k in ("ndcg@10", "mrr@10", "recall@100"):
            self.assertAlmostEqual(got[k], expected[k], places=9, msg=k)

    def eval(self, *args, env=None, **kw):
        return rerankctl("eval", "--data", FIXTURE, "--run", FIXTURE_RUN, *args,
                         env=env or self.env, **kw)

    # ---- steps (in name order; the last one disables the reranker) ----

    def test_01_no_rerank_needs_no_server(self):
        env = clean_env(RERANKER_GRPC_TARGET="127.0.0.1:%d" % free_port(),
                        RERANKER_ADMIN_URL="http://127.0.0.1:%d" % free_port())
        p = self.eval("--no-rerank", "--json", env=env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertEqual(p.stdout.count("\n"), 1, describe(p))
        doc = json.loads(p.stdout)
        self.assertEqual(list(doc), ["input"])
        self.assertFigures(doc["input"], EXPECTED_INPUT)
        p = self.eval("--no-rerank", env=env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("nDCG@10        0.3857\n", p.stdout)
        self.assertIn("MRR@10         0.4444\n", p.stdout)
        self.assertIn("Recall@100     0.7778\n", p.stdout)
        self.assertIn("2 run queries without a relevant judgement skipped\n", p.stdout)
        p = self.eval("--no-rerank", "--queries", "1", env=env)
        self.assertIn("evaluating 1 queries of ", p.stdout)
        self.assertIn("skipped; 2 more left out by --queries 1\n", p.stdout)
        # --relevance-level and --queries change which queries count.
        p = self.eval("--no-rerank", "--json", "--relevance-level", "2", env=env)
        self.assertEqual(p.returncode, 0, describe(p))
        doc = json.loads(p.stdout)["input"]
        self.assertEqual(doc["queries"], 2)
        self.assertAlmostEqual(doc["mrr@10"], (0.25 + 0.5) / 2, places=9)
        p = self.eval("--no-rerank", "--json", "--queries", "2", env=env)
        self.assertEqual(p.returncode, 0, describe(p))
        doc = json.loads(p.stdout)["input"]
        self.assertEqual(doc["queries"], 2)  # q1 and q2, the first two evaluated in run order
        self.assertAlmostEqual(doc["ndcg@10"], Q1_NDCG / 2, places=9)

    def test_02_rerank_json_and_the_written_run(self):
        out = os.path.join(self.work, "reranked.run")
        p = self.eval("--depth", "3", "--json", "--out", out)
        self.assertEqual(p.returncode, 0, describe(p) + self.server_log())
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 1, describe(p))
        doc = json.loads(lines[0])
        self.assertEqual(list(doc), ["input", "reranked"])
        self.assertFigures(doc["input"], EXPECTED_INPUT)
        # The demo warning goes to stderr with --json (stdout is the one line).
        self.assertIn("WARNING: model 'tiny_model' has random demo weights", p.stderr)
        self.assertIn("meaningless", p.stderr)
        self.assertNotIn("\r", p.stderr)  # no progress bar: stderr is not a terminal

        run, order = read_run(out)
        self.assertEqual(order, ["q1", "q2", "q5"])  # q3 (grade 0 only), q6 (unjudged) skipped
        input_run, _ = read_run(FIXTURE_RUN)
        for q in order:
            entries = run[q]
            top3 = [d for d, _ in trec_sorted([(e[0], e[2]) for e in input_run[q]])][:3]
            self.assertEqual(sorted(e[0] for e in entries), sorted(top3), q)
            self.assertEqual([e[1] for e in entries], list(range(1, len(entries) + 1)))
            self.assertEqual({e[3] for e in entries}, {"rerankd"})
            scores = [e[2] for e in entries]
            self.assertEqual(scores, sorted(scores, reverse=True), q)
            # The file is in trec_eval order: re-sorting it changes nothing.
            self.assertEqual([e[0] for e in entries],
                             [d for d, _ in trec_sorted([(e[0], e[2]) for e in entries])])
        figures, n = metrics(run, read_qrels())
        figures["queries"] = n
        self.assertFigures(doc["reranked"], figures)

        # The scores are the server's for "title text": the same call through `rerankctl rerank`.
        queries = {}
        with open(os.path.join(FIXTURE, "queries.test.jsonl")) as f:
            for line in f:
                o = json.loads(line)
                queries[o["_id"]] = o["text"]
        texts = corpus_texts()
        docs_file = os.path.join(self.work, "q1_docs.txt")
        with open(docs_file, "w") as f:
            for d, _, _, _ in run["q1"]:
                f.write("%s\t%s\n" % (d, texts[d]))
        p = rerankctl("rerank", "--query", queries["q1"], "--docs-file", docs_file, "--json",
                      "--top-n", "3", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        direct = {r["id"]: r["score"] for r in json.loads(p.stdout)["results"]}
        for d, _, score, _ in run["q1"]:
            self.assertAlmostEqual(score, direct[d], delta=1e-6 * max(1, abs(score)), msg=d)

    def test_03_text_report_default_out_and_warning(self):
        cwd = os.path.join(self.work, "cwd")
        os.makedirs(cwd, exist_ok=True)
        p = subprocess.run([RERANKCTL, "eval", "--data", FIXTURE, "--run", FIXTURE_RUN],
                           env=self.env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 0, describe(p))
        out = os.path.join(cwd, "fixture.reranked.run")  # RUN's name, in the current directory
        self.assertTrue(os.path.isfile(out), describe(p))
        self.assertIn("wrote the reranked run to fixture.reranked.run", p.stdout)
        self.assertIn("reranked the top 100 documents of each with tiny_model (version ",
                      p.stdout)
        self.assertIn("metric          input  reranked   change\n", p.stdout)
        self.assertIn("nDCG@10        0.3857", p.stdout)
        self.assertIn("\nWARNING: model 'tiny_model' has random demo weights", p.stdout)
        run, order = read_run(out)
        self.assertEqual(order, ["q1", "q2", "q5"])
        self.assertEqual([len(run[q]) for q in order], [5, 12, 3])  # every document: depth 100
        # Recall@100 over the whole candidate lists is the input's: reranking only reorders.
        self.assertIn("Recall@100     0.7778    0.7778  +0.0000\n", p.stdout)

    def test_04_progress_bar_on_a_terminal(self):
        master, slave = pty.openpty()
        chunks = []

        def drain():  # read while it runs: a full pty buffer would block the writer
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    return
                if not chunk:
                    return
                chunks.append(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
        try:
            p = subprocess.run([RERANKCTL, "eval", "--data", FIXTURE, "--run", FIXTURE_RUN,
                                "--json", "--out", os.path.join(self.work, "tty.run")],
                               env=self.env, stdout=subprocess.PIPE, stderr=slave, timeout=120)
        finally:
            os.close(slave)
            reader.join(timeout=30)
            os.close(master)
        seen = b"".join(chunks)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn(b"3/3 queries", seen)
        self.assertIn(b"\r[", seen)
        self.assertEqual(len(p.stdout.splitlines()), 1)  # stdout stays the one JSON line

    def test_05_bad_input_exits_2_naming_file_and_line(self):
        bad_run = os.path.join(self.work, "bad.run")
        with open(bad_run, "w") as f:
            f.write("q1 Q0 d1 1 2.0 x\nq1 Q0 d2 2 1.0\n")
        p = rerankctl("eval", "--data", FIXTURE, "--run", bad_run, env=self.env)
        self.assertEqual(p.returncode, 2, describe(p))
        self.assertIn(bad_run + ":2: expected 6 fields", p.stderr)
        missing_doc = os.path.join(self.work, "missing_doc.run")
        with open(missing_doc, "w") as f:
            f.write("q1 Q0 d1 1 2.0 x\nq1 Q0 nosuchdoc 2 1.0 x\n")
        p = rerankctl("eval", "--data", FIXTURE, "--run", missing_doc, env=self.env)
        self.assertEqual(p.returncode, 2, describe(p))
        self.assertIn(missing_doc + ":2: document 'nosuchdoc' (query 'q1') is not in ", p.stderr)
        self.assertIn("corpus.jsonl", p.stderr)
        data = os.path.join(self.work, "data")
        shutil.copytree(FIXTURE, data, dirs_exist_ok=True)
        with open(os.path.join(data, "queries.test.jsonl"), "a") as f:
            f.write("{\"_id\": \"q9\", \"text\": \"unterminated\n")
        p = rerankctl("eval", "--data", data, "--run", FIXTURE_RUN, env=self.env)
        self.assertEqual(p.returncode, 2, describe(p))
        self.assertIn(os.path.join(data, "queries.test.jsonl") + ":7: not valid JSON", p.stderr)
        data2 = os.path.join(self.work, "data2")
        shutil.copytree(FIXTURE, data2, dirs_exist_ok=True)
        with open(os.path.join(data2, "qrels", "test.tsv"), "a") as f:
            f.write("q9\td1\t1\n")
        run_q9 = os.path.join(self.work, "q9.run")
        with open(run_q9, "w") as f:
            f.write("q1 Q0 d1 1 2.0 x\nq9 Q0 d1 1 2.0 x\n")
        p = rerankctl("eval", "--data", data2, "--run", run_q9, env=self.env)
        self.assertEqual(p.returncode, 2, describe(p))
        self.assertIn("%s:2: query 'q9' is not in %s" % (
            run_q9, os.path.join(data2, "queries.test.jsonl")), p.stderr)
        for args, message in [
                (["--bogus"], "unknown flag '--bogus' for 'eval'"),
                (["--depth", "0"], "--depth: must be an integer in 1..1000, got '0'"),
                (["--depth", "1001"], "--depth: must be an integer in 1..1000"),
                (["--queries", "x"], "--queries: must be an integer >= 1, got 'x'"),
                (["--concurrency", "65"], "--concurrency: must be an integer in 1..64"),
                (["--no-rerank", "--out", "x.run"], "--out: nothing to rerank with --no-rerank"),
                (["--out", FIXTURE_RUN], "is the input run"),
                (["extra"], "eval: unexpected argument 'extra'")]:
            p = self.eval(*args)
            self.assertEqual(p.returncode, 2, describe(p))
            self.assertIn(message, p.stderr)
        p = rerankctl("eval", "--run", FIXTURE_RUN, env=self.env)
        self.assertEqual(p.returncode, 2, describe(p))
        self.assertIn("--data: required", p.stderr)
        p = rerankctl("eval", "--data", self.work, "--run", FIXTURE_RUN, env=self.env)
        self.assertEqual(p.returncode, 2, describe(p))
        self.assertIn(os.path.join(self.work, "qrels/test.tsv"), p.stderr)
        p = rerankctl("eval", "--data", FIXTURE, "--run", os.path.join(self.work, "nope.run"),
                      env=self.env)
        self.assertEqual(p.returncode, 2, describe(p))
        self.assertIn("cannot read '%s'" % os.path.join(self.work, "nope.run"), p.stderr)

    def test_06_unreachable_server_exits_1(self):
        env = clean_env(RERANKER_GRPC_TARGET="127.0.0.1:%d" % free_port(),
                        RERANKER_ADMIN_URL="http://127.0.0.1:%d" % free_port())
        p = self.eval("--out", os.path.join(self.work, "x.run"), "--timeout", "5", env=env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("UNAVAILABLE", p.stderr)
        self.assertIn("cannot tell whether the model is a random demo model", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.work, "x.run")))

    def test_07_disabled_reranker_exits_1(self):
        p = rerankctl("stage", "disabled", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        p = self.eval("--out", os.path.join(self.work, "disabled.run"))
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("reranked: false", p.stderr)
        self.assertIn("reranker is disabled", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
