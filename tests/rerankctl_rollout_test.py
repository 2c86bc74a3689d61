#!/usr/bin/python3
"""`rerankctl rollout` end to end: a real rerankd (tiny test model) with the TEST-ONLY latency fault
(testing.inject_latency_ms, firing from stage cache-50 on), traffic from background threads, and
a short plan (--hold 3s --interval 0.5s --window 1s):

  feature-flags -> cache-10 -> cache-50 (the fault fires: p95 fails for a whole window)
  -> rollback to cache-10, exit 1

checked in rerankctl's stdout, the server's audit log (flag_change events with the rollout's
actor and reason), /health's final stage and the state file. Then a restart: rerankctl killed
mid-plan resumes from the saved stage. Plus usage errors, --prometheus against a fake
Prometheus, and `deploy_reranker.sh auto --dry-run`.

The hold at cache-50 (3 s) is longer than the time the fault needs to show in the server's 2 s
stats window (about 1 s), so the rollback, not an advance, is what must happen there.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rerankctl_testlib import (RERANKCTL, clean_env, describe, rerankctl,  # noqa: E402
                               script)

import rerankctl_e2e_test as e2e  # noqa: E402  (RerankdProcess, http)

TOKEN = "rollout-e2e-token-0123"
GATES = "p95_latency_ms<250,error_rate_percent<1"
FAULT_MS = 500
TIMING = ["--hold", "3s", "--interval", "0.5s", "--window", "1s"]


class Traffic:
    """Background threads calling `rerankctl rerank` with unique queries (cache misses, so every
    request runs a forward) and a few client ids, until stopped."""

    def __init__(self, target, threads=2):
        self.target = target
        self.stop_event = threading.Event()
        self.failures = []
        self.count = 0
        self.threads = [threading.Thread(target=self.loop, args=(i,), daemon=True)
                        for i in range(threads)]

    def loop(self, n):
        i = 0
        while not self.stop_event.is_set():
            i += 1
            p = subprocess.run(
                [RERANKCTL, "--target", self.target, "rerank", "--query",
                 "traffic %d-%d %f" % (n, i, time.time()), "--doc", "Berlin is in Germany.",
                 "--doc", "Paris is in France.", "--client-id", "traffic-%d" % (i % 8)],
                env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                timeout=30)
            self.count += 1
            if p.returncode != 0:
                self.failures.append(p.stderr)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=60)


class Rollout:
    """A running `rerankctl rollout`, its stdout collected line by line."""

    def __init__(self, args, env):
        self.proc = subprocess.Popen([RERANKCTL, *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, pattern, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if re.search(pattern, line):
                    return line
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError("no line matching %r; output so far:\n%s\nstderr:\n%s" % (
            pattern, "\n".join(self.lines), self.stderr_if_done()))

    def stderr_if_done(self):
        return self.proc.stderr.read() if self.proc.poll() is not None else "(running)"

    def wait(self, timeout=120):
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc, "\n".join(self.lines), err


class RolloutE2ETest(e2e.RerankdProcess, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_rerankd(
            TOKEN,
            # Many requests per client: no rate limiting in the way.
            flags_extra=["  initial: {rate_limit: {per_minute: 1000000}}"],
            # A short stats window, so /health's figures follow a stage change within ~1 s.
            admin_extra=["  stats_window_seconds: 2"],
            extra=["testing:", "  inject_latency_ms: %d" % FAULT_MS,
                   "  inject_latency_from_stage: cache-50"])

    def env(self):
        return clean_env(RERANKER_ADMIN_TOKEN=TOKEN)

    def common(self):
        return ["--admin", self.admin]

    def stage(self):
        status, body = e2e.http("GET", self.admin + "/health")
        self.assertEqual(status, 200, body)
        return body["reranker"]["stage"]

    def set_stage(self, stage):
        status, body = e2e.http("POST", self.admin + "/flags", {"stage": stage, "actor": "test"},
                                token=TOKEN)
        self.assertEqual(status, 200, body)

    def test_1_advances_then_rolls_back_on_the_latency_fault(self):
        state = os.path.join(self.tmp, "rollout-1.json")
        self.set_stage("feature-flags")
        with Traffic(self.target) as traffic:
            r = Rollout(["rollout", *self.common(), "--plan", "feature-flags,cache-10,cache-50",
                         "--gate", GATES, *TIMING, "--state", state], self.env())
            rc, out, err = r.wait(timeout=120)
        self.assertEqual(traffic.failures, [], "traffic failed")
        self.assertEqual(rc, 1, "rc=%d\n%s\n%s" % (rc, out, err))
        # One line per decision, in order.
        actions = [m.group(1) for m in re.finditer(r"^\S+Z (\w+) ", out, re.M)]
        self.assertEqual(actions[0], "start", out)
        self.assertEqual([a for a in actions if a != "hold"],
                         ["start", "advance", "advance", "rollback"], out)
        self.assertRegex(out, r"advance feature-flags -> cache-10: held 3\.?\d*s/3s, gates held "
                              r"for [\d.]+s: p95_latency_ms [\d.e+-]+<250, error_rate_percent")
        self.assertRegex(out, r"advance cache-10 -> cache-50: ")
        self.assertRegex(out, r"hold cache-50: .*p95_latency_ms [\d.]+ !<250")
        rollback = re.search(r"^.* rollback cache-50 -> cache-10: (.*)$", out, re.M)
        self.assertIsNotNone(rollback, out)
        self.assertRegex(rollback.group(1), r"^p95_latency_ms<250 failed in every sample for "
                                            r"[\d.]+s \(window 1s\): p95_latency_ms (\d+)")
        p95 = float(re.search(r"p95_latency_ms ([\d.]+) !<250", rollback.group(1)).group(1))
        self.assertGreaterEqual(p95, FAULT_MS)
        # The server is back at the last good stage, and the state file says so.
        self.assertEqual(self.stage(), "cache-10")
        with open(state) as f:
            saved = json.load(f)
        self.assertEqual(saved["status"], "rolled_back")
        self.assertEqual(saved["target_stage"], "cache-10")
        self.assertEqual(saved["last_good"], "cache-10")
        self.assertEqual([h["action"] for h in saved["history"]],
                         ["start", "advance", "advance", "rollback"])
        # The server's audit trail has each stage change with the rollout's actor and reason.
        events = self.audit_events(
            "flag_change", lambda e: e.get("actor") == "rerankctl-rollout" and
            "rollback" in e.get("reason", ""))
        self.assertEqual(len(events), 1)
        changes = [e for e in self.all_audit_events("flag_change")
                   if e.get("actor") == "rerankctl-rollout"]
        self.assertEqual([(e["old"]["stage"], e["new"]["stage"]) for e in changes],
                         [("feature-flags", "cache-10"), ("cache-10", "cache-50"),
                          ("cache-50", "cache-10")])
        self.assertRegex(changes[0]["reason"],
                         r"^rerankctl rollout: advance feature-flags -> cache-10: held .*"
                         r"p95_latency_ms [\d.e+-]+<250")
        self.assertRegex(changes[2]["reason"],
                         r"^rerankctl rollout: rollback cache-50 -> cache-10: p95_latency_ms<250 "
                         r"failed in every sample")
        # A finished rollout is not started again by accident.
        again = rerankctl("rollout", *self.common(), "--plan", "feature-flags,cache-10,cache-50",
                          "--gate", GATES, *TIMING, "--state", state, env=self.env())
        self.assertEqual(again.returncode, 1, describe(again))
        self.assertIn("already rolled back; pass --reset", again.stdout)
        self.assertEqual(self.stage(), "cache-10")

    def all_audit_events(self, event_type):
        with open(self.audit_path) as f:
            events = [json.loads(line) for line in f if line.strip()]
        return [e for e in events if e.get("event_type") == event_type]

    def wait_for_fast_window(self):
        """Waits until the server's stats window no longer holds test 1's slow requests (those
        would fail the p95 gate at the first stage of the next rollout)."""
        deadline = time.monotonic() + 30
        while True:
            stats = e2e.http("GET", self.admin + "/health")[1]["reranker"]["stats"]
            if stats["requests_in_window"] == 0 or stats["p95_latency_ms"] < FAULT_MS / 4:
                return
            self.assertLess(time.monotonic(), deadline, stats)
            time.sleep(0.2)

    def test_2_resumes_after_a_restart(self):
        state = os.path.join(self.tmp, "rollout-2.json")
        self.set_stage("cache-10")
        self.wait_for_fast_window()
        args = ["rollout", *self.common(), "--plan", "feature-flags,cache-10", "--gate", GATES,
                *TIMING, "--state", state]
        with Traffic(self.target):
            first = Rollout(args, self.env())
            first.wait_for_line(r" advance feature-flags -> cache-10: ")
            first.proc.kill()  # mid-plan, no chance to clean up
            first.wait()
            with open(state) as f:
                saved = json.load(f)
            self.assertEqual((saved["status"], saved["index"], saved["stage"]),
                             ("running", 1, "cache-10"))
            self.assertEqual(self.stage(), "cache-10")

            # A different plan is refused; the saved one is untouched.
            other = rerankctl("rollout", *self.common(), "--plan", "feature-flags,cache-100",
                              "--gate", GATES, *TIMING, "--state", state, env=self.env())
            self.assertEqual(other.returncode, 2, describe(other))
            self.assertIn("the saved rollout has plan feature-flags,cache-10, not "
                          "feature-flags,cache-100", other.stderr)

            second = Rollout(args, self.env())
            rc, out, err = second.wait(timeout=120)
        self.assertEqual(rc, 0, "rc=%d\n%s\n%s" % (rc, out, err))
        actions = [m.group(1) for m in re.finditer(r"^\S+Z (\w+) ", out, re.M)]
        self.assertEqual([a for a in actions if a != "hold"], ["resume", "complete"], out)
        self.assertRegex(out, r"resume cache-10: stage 2/2 cache-10, entered \S+ \(held "
                              r"[\d.]+m?s of 3s\), last good feature-flags")
        self.assertNotIn("advance", out)
        self.assertEqual(self.stage(), "cache-10")
        with open(state) as f:
            saved = json.load(f)
        self.assertEqual(saved["status"], "completed")
        self.assertEqual([h["action"] for h in saved["history"]],
                         ["start", "advance", "resume", "complete"])

    def test_3_prometheus_mode(self):
        """Figures from a fake Prometheus (its recording rules' answers), stages on the real
        server."""
        queries = []

        class Prom(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["query"][0]
                queries.append(q)
                # The recording rules' units (seconds, ratios), scaled as the query says.
                v = 0.012 if "p95" in q else 0.0 if "error" in q else 25.0
                scale = re.search(r"\* (\d+)$", q)
                v = str(v * float(scale.group(1)) if scale else v)
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
                    {"metric": {}, "value": [time.time(), v]}]}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Prom)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            self.set_stage("feature-flags")
            state = os.path.join(self.tmp, "rollout-3.json")
            p = rerankctl("rollout", *self.common(), "--plan", "feature-flags,cache-10",
                          "--gate", GATES, "--hold", "1s", "--interval", "0.25s", "--window",
                          "0.5s", "--state", state, "--prometheus",
                          "http://127.0.0.1:%d" % server.server_address[1],
                          "--prometheus-selector", 'job="rerankd"', env=self.env(), timeout=60)
        finally:
            server.shutdown()
            server.server_close()
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("advance feature-flags -> cache-10", p.stdout)
        self.assertRegex(p.stdout, r"p95_latency_ms 12<250, error_rate_percent 0<1")
        self.assertIn('max(job:rerank_request_duration_seconds:p95_5m{job="rerankd"}) * 1000',
                      queries)
        self.assertIn('max(job:rerank_error_ratio:rate5m{job="rerankd"}) * 100', queries)
        self.assertIn('sum(job:rerank_requests:rate5m{job="rerankd"})', queries)
        self.assertEqual(self.stage(), "cache-10")


class RolloutUsageTest(unittest.TestCase):
    """Bad input is refused before anything is touched (exit 2, the bad item named)."""

    def run_rollout(self, *args):
        return rerankctl("rollout", "--admin", "http://127.0.0.1:9", "--token", "x" * 16,
                         "--state", "/nonexistent/rollout.json", *args)

    def test_bad_items_are_named(self):
        cases = [
            (["--plan", "feature-flags,cache-20", "--gate", GATES], "unknown stage 'cache-20'"),
            (["--plan", "cache-50,cache-10", "--gate", GATES],
             "'cache-10' comes after 'cache-50'"),
            (["--plan", "cache-10", "--gate", "p95_latency<50"], "unknown metric 'p95_latency'"),
            (["--plan", "cache-10", "--gate", "p95_latency_ms=50"], "unknown operator '='"),
            (["--plan", "cache-10", "--gate", "p95_latency_ms<fast"],
             "threshold must be a number, got 'fast'"),
            (["--plan", "cache-10", "--gate", "rate_limited_percent<5"],
             "rate_limited_percent is not available from GET /health"),
            (["--plan", "cache-10", "--gate", GATES, "--hold", "1d"], "--hold: expected a "
                                                                      "positive duration"),
            (["--plan", "cache-10", "--gate", GATES, "--hold", "1s", "--interval", "2s"],
             "--interval: must be <= --hold"),
            (["--gate", GATES], "--plan: required"),
            (["--plan", "cache-10"], "--gate: required"),
        ]
        for args, message in cases:
            p = self.run_rollout(*args)
            self.assertEqual(p.returncode, 2, describe(p))
            self.assertIn(message, p.stderr, args)
            self.assertIn("Usage: rerankctl rollout", p.stderr)

    def test_deploy_auto_builds_the_guides_command(self):
        p = script("deploy_reranker.sh", "auto", "--dry-run", "--admin", "http://10.0.0.5:8000",
                   "--state", "rel/state.json", env=clean_env(RERANKCTL=RERANKCTL),
                   cwd=tempfile.gettempdir())
        self.assertEqual(p.returncode, 0, describe(p))
        line = p.stdout.strip()
        self.assertIn(" rollout --plan feature-flags\\,cache-10\\,cache-50\\,cache-100\\,full "
                      "--hold 24h --gate p95_latency_ms\\<50\\,error_rate_percent\\<0.1\\,"
                      "cache_hit_rate_percent\\>30 --admin http://10.0.0.5:8000 --state " +
                      os.path.join(tempfile.gettempdir(), "rel/state.json"), line)
        self.assertTrue(line.startswith("cd "), line)
        # The printed command is what runs: its words parse as rerankctl's arguments.
        help_run = script("deploy_reranker.sh", "--help")
        self.assertIn("auto [--dry-run]", help_run.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
