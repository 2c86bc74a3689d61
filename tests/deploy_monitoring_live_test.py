#!/usr/bin/python3
"""The monitoring stack proven against live processes: a real `rerankd` (tiny test model) and a
real Prometheus (Debian's, on a free loopback port with temporary storage) that scrapes rerankd's
admin GET /metrics with the project's scrape config and rules (deploy/prometheus/).

Traffic: several well-behaved clients (the same query, so the score cache hits), two greedy
clients over their rate limit, invalid requests (empty query, INVALID_ARGUMENT) and RerankBatch
calls. Then, through Prometheus' HTTP API:
  - every recording and alert rule of deploy/prometheus/rules is loaded and evaluates with
    health "ok";
  - every PromQL query of every panel of deploy/grafana/dashboards/rerankd.json (Grafana's
    variables replaced) returns data with a finite value, and so do the dashboard's variables;
  - the figures match the traffic that was sent (request total, errors, rate-limited share,
    cache hits).
Static checks of the dashboard and its provisioning files run first, without servers.

Needs prometheus (deploy/install_test_tools.sh) and the build targets rerankd and test_models.
"""
import glob
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rerankctl_testlib import BUILD_DIR, RERANKD, SOURCE_DIR, clean_env, free_port  # noqa: E402

PROM_DIR = os.path.join(SOURCE_DIR, "deploy", "prometheus")
GRAFANA_DIR = os.path.join(SOURCE_DIR, "deploy", "grafana")
DASHBOARD = os.path.join(GRAFANA_DIR, "dashboards", "rerankd.json")
# Grafana's variables as this test resolves them: one job, all instances, a rate window that
# covers the traffic (Grafana computes $__rate_interval from the scrape interval and the range).
VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h",
             "job": "rerankd", "instance": ".*"}
RATE_LIMIT_PER_MINUTE = 10


def substitute(expr):
    """Grafana's $var and ${var} replaced by VARIABLES; any variable left is an error."""
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in VARIABLES:
            raise KeyError("unknown Grafana variable $%s in %r" % (name, expr))
        return VARIABLES[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def dashboard_panels(dash):
    """Every panel, rows' nested panels included."""
    for p in dash["panels"]:
        yield p
        for q in p.get("panels", []):
            yield q


def http_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def rule_files():
    """The rule files the project's prometheus.yml loads (its globs, relative to its directory)."""
    with open(os.path.join(PROM_DIR, "prometheus.yml")) as f:
        config = yaml.safe_load(f)
    files = []
    for pattern in config["rule_files"]:
        files += sorted(glob.glob(os.path.join(PROM_DIR, pattern)))
    return config, files


class DashboardFilesTest(unittest.TestCase):
    """The dashboard and provisioning files on their own."""

    def setUp(self):
        with open(DASHBOARD) as f:
            self.dash = json.load(f)

    def test_dashboard_is_current_classic_json_with_datasource_by_uid(self):
        with open(os.path.join(GRAFANA_DIR, "provisioning", "datasources", "prometheus.yml")) as f:
            datasources = yaml.safe_load(f)["datasources"]
        uids = {d["uid"] for d in datasources if d["type"] == "prometheus"}
        self.assertGreaterEqual(self.dash["schemaVersion"], 36)  # Grafana 9+ panel model
        self.assertEqual(self.dash["uid"], "rerankd")
        ids = [p["id"] for p in dashboard_panels(self.dash)]
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        for p in dashboard_panels(self.dash):
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            if p["type"] == "row":
                continue
            self.assertTrue(p.get("targets"), "panel %r has no query" % p["title"])
            for ds in [p["datasource"]] + [t["datasource"] for t in p["targets"]]:
                self.assertEqual(ds["type"], "prometheus", p["title"])
                self.assertIn(ds["uid"], uids, "panel %r: datasource uid not provisioned" % p["title"])
        for v in self.dash["templating"]["list"]:
            self.assertIn(v["datasource"]["uid"], uids, v["name"])

    def test_dashboard_has_the_guides_panels(self):
        exprs = " ".join(t["expr"] for p in dashboard_panels(self.dash) for t in p.get("targets", []))
        for needed in ["job:rerank_request_duration_seconds:avg5m",
                       "job:rerank_request_duration_seconds:p95_5m",
                       "job:rerank_request_duration_seconds:p99_5m",
                       "rerank_target_latency_seconds",
                       "job:rerank_cache_hit_ratio:rate5m", "rerank_cache_entries",
                       "rerank_cache_max_entries", "rerank_cache_hits_total",
                       "rerank_cache_misses_total", "job:rerank_target_met_ratio:rate5m",
                       "job:rerank_error_ratio:rate5m", 'outcome="rate_limited"',
                       "rerank_rate_limited_total", "rerank_batch_pairs_bucket",
                       "rerank_batch_padded_tokens_total", "rerank_queue_wait_seconds_bucket",
                       "rerank_inference_duration_seconds_bucket", "rerank_stage_info",
                       "rerank_model_info", "rerank_client_requests_total"]:
            self.assertIn(needed, exprs)

    def test_provisioning_points_at_the_dashboard_directory(self):
        with open(os.path.join(GRAFANA_DIR, "provisioning", "dashboards", "rerankd.yml")) as f:
            providers = yaml.safe_load(f)["providers"]
        self.assertEqual([p["options"]["path"] for p in providers], ["/var/lib/grafana/dashboards"])
        with open(os.path.join(SOURCE_DIR, "docker-compose.yml")) as f:
            compose = yaml.safe_load(f)
        volumes = compose["services"]["grafana"]["volumes"]
        self.assertTrue(any(v.startswith("./deploy/grafana/dashboards:/var/lib/grafana/dashboards")
                            for v in volumes), volumes)


class MonitoringLiveTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        model_dir = os.path.join(BUILD_DIR, "testdata", "tiny_model")
        if not os.path.isfile(os.path.join(model_dir, "model.yaml")):
            raise AssertionError("no tiny model at %s (build target test_models)" % model_dir)
        cls.prometheus_bin = shutil.which("prometheus")
        if cls.prometheus_bin is None:
            raise AssertionError("prometheus not installed: run deploy/install_test_tools.sh")
        cls.tmp = tempfile.mkdtemp(prefix="monitoring_live_")
        cls.procs = []
        try:
            cls.start_rerankd(model_dir)
            cls.start_prometheus()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start_rerankd(cls, model_dir):
        cls.grpc_port, cls.http_port = free_port(), free_port()
        config = os.path.join(cls.tmp, "rerankd.yaml")
        with open(config, "w") as f:
            yaml.safe_dump({
                "server": {"listen": "127.0.0.1:%d" % cls.grpc_port, "http_listen": "", "drain_timeout_ms": 1000},
                "model": {"dir": model_dir, "precision": "fp32"},
                # A small queue: a request of more pairs than this is refused at once
                # (RESOURCE_EXHAUSTED, queue full), a failure of the service the error ratio
                # counts.
                "execution": {"workers": 1, "intra_op_threads": 1, "max_queue_pairs": 8},
                "audit": {"path": os.path.join(cls.tmp, "data", "audit.jsonl")},
                "flags": {"path": os.path.join(cls.tmp, "data", "flags.yaml"),
                          "initial": {"cache": {"enabled": True, "traffic_percent": 100},
                                      "rate_limit": {"per_minute": RATE_LIMIT_PER_MINUTE}}},
                "admin": {"http_listen": "127.0.0.1:%d" % cls.http_port,
                          "grpc_listen": "127.0.0.1:%d" % free_port()},
            }, f)
        cls.rerankd_log = os.path.join(cls.tmp, "rerankd.log")
        cls.procs.append(cls.spawn([RERANKD, "--config", config], cls.rerankd_log,
                                   clean_env(OPENBLAS_NUM_THREADS=1)))
        cls.wait_for("rerankd /ready", "http://127.0.0.1:%d/ready" % cls.http_port,
                     cls.procs[-1], cls.rerankd_log)

    @classmethod
    def start_prometheus(cls):
        project, files = rule_files()
        scrape = dict(project["scrape_configs"][0])
        scrape["static_configs"] = [{"targets": ["127.0.0.1:%d" % cls.http_port]}]
        cls.job = scrape["job_name"]
        config = {
            # Short intervals so that a test of a minute sees many scrapes and evaluations.
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": files,
            "scrape_configs": [scrape],
        }
        cls.rule_file_paths = files
        path = os.path.join(cls.tmp, "prometheus.yml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        cls.prom_port = free_port()
        cls.prom = "http://127.0.0.1:%d" % cls.prom_port
        cls.prom_log = os.path.join(cls.tmp, "prometheus.log")
        cls.procs.append(cls.spawn(
            [cls.prometheus_bin, "--config.file=" + path,
             "--storage.tsdb.path=" + os.path.join(cls.tmp, "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % cls.prom_port],
            cls.prom_log, clean_env()))
        cls.wait_for("prometheus /-/ready", cls.prom + "/-/ready", cls.procs[-1], cls.prom_log)

    @staticmethod
    def spawn(args, log_path, env):
        log = open(log_path, "w")
        try:
            return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    cwd=os.path.dirname(log_path))
        finally:
            log.close()

    @staticmethod
    def tail(path):
        with open(path, errors="replace") as f:
            return f.read()[-3000:]

    @classmethod
    def wait_for(cls, what, url, proc, log_path, timeout=90):
        # A startup wait (model load, TSDB open), not timing logic.
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError("%s: exited %d\n%s" % (what, proc.returncode, cls.tail(log_path)))
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("%s: not ready after %d s\n%s" % (what, timeout, cls.tail(log_path)))
            time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        for p in reversed(getattr(cls, "procs", [])):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def query(self, promql):
        url = self.prom + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            body = http_json(url)
        except urllib.error.HTTPError as e:
            self.fail("query %r: HTTP %d %s" % (promql, e.code, e.read()[:500]))
        self.assertEqual(body["status"], "success", body)
        return body["data"]["result"]

    def scalar(self, promql):
        result = self.query(promql)
        self.assertEqual(len(result), 1, "%s -> %s" % (promql, result))
        return float(result[0]["value"][1])

    def wait_until(self, what, check, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                self.fail("%s: not within %d s\nprometheus log:\n%s" % (what, timeout, self.tail(self.prom_log)))
            time.sleep(0.5)

    def drive_traffic(self):
        """Sends the traffic and returns the expected request counts by outcome."""
        import grpc
        from grpc_tools import protoc
        stubs = os.path.join(self.tmp, "stubs")
        os.makedirs(stubs)
        rc = protoc.main(["protoc", "-I" + os.path.join(SOURCE_DIR, "proto"),
                          "--python_out=" + stubs, "--grpc_python_out=" + stubs,
                          os.path.join(SOURCE_DIR, "proto", "rerank", "v1", "reranker.proto")])
        self.assertEqual(rc, 0, "protoc failed")
        sys.path.insert(0, stubs)
        from rerank.v1 import reranker_pb2 as pb
        from rerank.v1 import reranker_pb2_grpc as pb_grpc

        docs = [pb.Document(id="d%d" % i, text=t) for i, t in enumerate([
            "Berlin had a population of 3,520,031 registered inhabitants.",
            "Berlin is well known for its museums.", "The Eiffel Tower is in Paris.",
            "Bananas are yellow."])]
        counts = {"ok": 0, "rate_limited": 0, "client_error": 0, "error": 0}
        with grpc.insecure_channel("127.0.0.1:%d" % self.grpc_port) as channel:
            stub = pb_grpc.RerankerStub(channel)

            def call(fn, request, *expect):
                try:
                    fn(request, timeout=30)
                    got = "ok"
                except grpc.RpcError as e:
                    got = {grpc.StatusCode.RESOURCE_EXHAUSTED: "rate_limited",
                           grpc.StatusCode.INVALID_ARGUMENT: "client_error"}.get(e.code(), repr(e))
                    if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue is full" in e.details():
                        got = "error"
                self.assertIn(got, expect)
                counts[got] += 1
                return got

            # Spread over several seconds (several scrapes). Per round: 4 polite clients, one
            # request each, well under their limit, all with the same query (so 3 of the 4 are
            # cache hits); two greedy clients, 5 requests each (a burst of
            # RATE_LIMIT_PER_MINUTE passes, then a token every 60/RATE_LIMIT_PER_MINUTE s, so
            # most are denied); an invalid request (empty query: a client error); one of 12
            # pairs, more than the queue holds (a server-side failure); a RerankBatch.
            greedy = {c: {"ok": 0, "rate_limited": 0} for c in ("greedy-a", "greedy-b")}
            rounds = 8
            for rnd in range(rounds):
                for c in range(4):
                    call(stub.Rerank, pb.RerankRequest(
                        query="population of Berlin, round %d" % rnd, documents=docs,
                        client_id="polite-%d" % c), "ok")
                for client, got in greedy.items():
                    for _ in range(5):
                        got[call(stub.Rerank, pb.RerankRequest(query="greedy", documents=docs,
                                                               client_id=client),
                                 "ok", "rate_limited")] += 1
                call(stub.Rerank, pb.RerankRequest(query="  ", documents=docs,
                                                   client_id="broken"), "client_error")
                call(stub.Rerank, pb.RerankRequest(query="overload %d" % rnd, documents=docs * 3,
                                                   client_id="big"), "error")
                call(stub.RerankBatch, pb.RerankBatchRequest(
                    client_id="batcher", requests=[pb.RerankRequest(query="museums", documents=docs),
                                                   pb.RerankRequest(query="Paris", documents=docs)]),
                     "ok")
                time.sleep(0.5)
        for client, got in greedy.items():
            self.assertGreaterEqual(got["ok"], RATE_LIMIT_PER_MINUTE, client)
            self.assertGreaterEqual(got["rate_limited"], rounds * 5 - RATE_LIMIT_PER_MINUTE - 10,
                                    client)
        self.greedy_counts = greedy
        return counts

    def test_dashboard_and_rules_against_live_prometheus(self):
        self.wait_until("rerankd scraped", lambda: self.query('up{job="%s"} == 1' % self.job))
        counts = self.drive_traffic()
        total = sum(counts.values())
        # The last scrape after the traffic has every request (counters are exact).
        self.wait_until("all %d requests scraped" % total,
                        lambda: self.query('sum(rerank_requests_total{job="%s"}) == %d' % (self.job, total)))
        for outcome, n in counts.items():
            self.assertEqual(self.scalar('sum(rerank_requests_total{outcome="%s"})' % outcome), n, outcome)

        # Every rule of the project's files is loaded and evaluates without error.
        expected = set()
        for path in self.rule_file_paths:
            with open(path) as f:
                for g in yaml.safe_load(f)["groups"]:
                    expected |= {r.get("record") or r.get("alert") for r in g["rules"]}

        def rules_evaluated():
            groups = http_json(self.prom + "/api/v1/rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            if any(r["health"] == "unknown" for r in rules):
                return None  # not evaluated yet
            return rules
        rules = self.wait_until("every rule evaluated", rules_evaluated)
        self.assertEqual({r["name"] for r in rules}, expected)
        for r in rules:
            self.assertEqual(r["health"], "ok", "%s: %s" % (r["name"], r.get("lastError")))
        # Wait for the recording rules to have evaluated after the last scrape.
        self.wait_until("recorded error ratio", lambda: self.query(
            'job:rerank_error_ratio:rate5m{job="%s"} > 0' % self.job))

        # Every panel query returns data with a finite value.
        with open(DASHBOARD) as f:
            dash = json.load(f)
        checked = 0
        for panel in dashboard_panels(dash):
            for target in panel.get("targets", []):
                promql = substitute(target["expr"])
                result = self.query(promql)
                self.assertTrue(result, "panel %r query %r returned no data" % (panel["title"], promql))
                values = [float(s["value"][1]) for s in result]
                self.assertTrue(any(math.isfinite(v) for v in values),
                                "panel %r query %r: %s" % (panel["title"], promql, values))
                checked += 1
        self.assertGreaterEqual(checked, 30)
        # The dashboard's variables resolve (label_values(metric, label)).
        for var in dash["templating"]["list"]:
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
            self.assertTrue(m, var["query"])
            url = "%s/api/v1/label/%s/values?%s" % (self.prom, m.group(2), urllib.parse.urlencode(
                {"match[]": substitute(m.group(1))}))
            self.assertTrue(http_json(url)["data"], var["name"])

        # The figures follow the traffic.
        r = 'job="%s"' % self.job
        error_ratio = self.scalar("job:rerank_error_ratio:rate5m{%s}" % r)
        limited_ratio = self.scalar("job:rerank_rate_limited_ratio:rate5m{%s}" % r)
        # Not exact: rate() extrapolates to the window's edges, and a series that appears
        # mid-window (the first error, the first denial) loses its first increments. Within 50%
        # still tells the two apart (about 6% errors against about 45% denials) and from 0.
        for name, got, want in (("error", error_ratio, counts["error"] / total),
                                ("rate-limited", limited_ratio, counts["rate_limited"] / total)):
            self.assertTrue(0.5 * want <= got <= 1.5 * want,
                            "%s ratio %.4f, sent %.4f" % (name, got, want))
        self.assertGreater(self.scalar("job:rerank_cache_hit_ratio:rate5m{%s}" % r), 0)
        met = self.scalar("job:rerank_target_met_ratio:rate5m{%s}" % r)
        self.assertTrue(0 <= met <= 1, met)
        self.assertEqual(self.scalar("sum(rerank_rate_limited_total{%s})" % r), counts["rate_limited"])
        # Per-client series: the greedy clients' denials are theirs, and every request has a client.
        self.assertEqual(self.scalar("sum(rerank_client_requests_total{%s})" % r), total)
        for client in ("greedy-a", "greedy-b"):
            self.assertEqual(self.scalar('sum(rerank_client_requests_total{%s, client="%s", '
                                         'outcome="rate_limited"})' % (r, client)),
                             self.greedy_counts[client]["rate_limited"], client)
        self.assertEqual(self.scalar('max by (stage) (rerank_stage_info{%s}) == 1' % r), 1)
        self.assertEqual(self.query('rerank_stage_info{%s} == 1' % r)[0]["metric"]["stage"],
                         "feature-flags")
        model = self.query("rerank_model_info{%s}" % r)[0]["metric"]
        self.assertEqual(model["name"], "tiny_model")
        self.assertEqual(self.scalar("max(rerank_target_latency_seconds{%s})" % r), 0.05)


if __name__ == "__main__":
    unittest.main(verbosity=2)
