#!/usr/bin/python3
"""rerankctl and the deploy/*.sh scripts against a fake admin HTTP server that serves the admin API
contract's JSON. It pins the client side deterministically (error codes, token handling, missing
stats fields, request bodies) without a model; tests/rerankctl_e2e_test.py runs the same commands
against a real rerankd.
"""
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rerankctl_testlib import (RERANKCTL, STAGES, clean_env, describe,  # noqa: E402
                              free_port, rerankctl, script)

BASE_FLAGS = {
    "stage": "feature-flags",
    "reranker": {"enabled": True},
    "cache": {"enabled": False, "traffic_percent": 0, "max_entries": 1000},
    "batch": {"enabled": True},
    "audit": {"enabled": True},
    "overfetch": {"enabled": False, "candidates": 20, "top_n": 5},
    "rate_limit": {"enabled": True, "per_minute": 100},
}


def apply_stage(flags, name):
    """The stage table of common/feature_flags.cc, enough for the fake."""
    f = copy.deepcopy(flags)
    percent = {"feature-flags": 0, "cache-10": 10, "cache-50": 50, "cache-100": 100,
               "full": 100, "rollback": 0}
    if name in percent:
        f["reranker"]["enabled"] = True
        f["cache"]["enabled"] = percent[name] > 0
        f["cache"]["traffic_percent"] = percent[name]
    if name == "full":
        f["overfetch"]["enabled"] = True
    elif name == "rollback":
        f["batch"]["enabled"] = False
        f["overfetch"]["enabled"] = False
    elif name == "disabled":
        f["reranker"]["enabled"] = False
    f["stage"] = name
    return f


class FakeAdmin:
    """A threaded HTTP server implementing GET /health /ready /flags and POST /flags."""

    def __init__(self, token="fake-admin-token-0123"):
        self.token = token
        self.lock = threading.Lock()
        self.flags = copy.deepcopy(BASE_FLAGS)
        self.updated_by = "file"
        self.updated_at = "2024-05-01T12:00:00.000Z"
        self.total = 100
        self.ready = True
        self.drop_stats_field = None
        self.posts = []  # (headers dict, parsed body)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send_json(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                with fake.lock:
                    if self.path == "/health":
                        fake.total += 10  # 10 reranks between two polls
                        self.send_json(200 if fake.ready else 503, fake.health())
                    elif self.path == "/ready":
                        self.send_json(200 if fake.ready else 503,
                                       {"ready": fake.ready, "reason": "model warming up"})
                    elif self.path == "/flags":
                        self.send_json(200, fake.flags_body())
                    else:
                        self.send_json(404, {"error": "not found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with fake.lock:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        self.send_json(400, {"error": "body is not JSON"})
                        return
                    fake.posts.append((dict(self.headers), body))
                    if self.path != "/flags":
                        self.send_json(404, {"error": "not found"})
                    elif not fake.token:
                        self.send_json(403, {"error": "admin.token is not configured; "
                                                      "state-changing admin calls are disabled"})
                    elif self.headers.get("Authorization") != "Bearer " + fake.token:
                        self.send_json(401, {"error": "missing or wrong admin token"})
                    elif body.get("stage") not in STAGES:
                        self.send_json(400, {"error": "unknown stage '%s'; valid stages: %s" %
                                                      (body.get("stage"), ", ".join(STAGES))})
                    else:
                        fake.flags = apply_stage(fake.flags, body["stage"])
                        fake.updated_by = body.get("actor", "")
                        fake.updated_at = "2024-05-02T08:00:00.000Z"
                        self.send_json(200, fake.flags_body())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-admin",
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def flags_body(self):
        return {"flags": self.flags, "stage": self.flags["stage"], "updated_by": self.updated_by,
                "updated_at": self.updated_at, "stages": STAGES}

    def health(self):
        stats = {"total_reranks": self.total, "avg_latency_ms": 4.5, "p95_latency_ms": 9.25,
                 "p99_latency_ms": 12.0, "cache_hit_rate_percent": 25.0,
                 "target_latency_met_rate_percent": 98.5,
                 "cache_enabled": self.flags["cache"]["enabled"], "cache_size": 3,
                 "cache_max_size": 1000, "target_latency_ms": 50, "error_rate_percent": 1.5,
                 "window_seconds": 300, "requests_in_window": 40}
        if self.drop_stats_field:
            del stats[self.drop_stats_field]
        return {"status": "healthy" if self.ready else "unhealthy", "ready": self.ready,
                "uptime_seconds": 65,
                "model": {"name": "fake_model", "version": "0123456789ab", "precision": "fp32",
                          "demo": False},
                "reranker": {"enabled": self.flags["reranker"]["enabled"],
                             "stage": self.flags["stage"], "stats": stats},
                "flags": self.flags}


class RerankctlFakeAdminTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeAdmin()
        self.tmp = tempfile.mkdtemp(prefix="rerankctl_fake_")
        self.env = clean_env(RERANKER_ADMIN_URL=self.fake.url, RERANKER_ADMIN_TOKEN="fake-admin-token-0123")

    def tearDown(self):
        self.fake.stop()
        shutil.rmtree(self.tmp)

    # ---- stage ----

    def test_stage_prints_transition_and_sends_token_and_actor(self):
        p = rerankctl("stage", "cache-50", "--actor", "alice", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("stage: feature-flags -> cache-50 (by alice at 2024-05-02T08:00:00.000Z)",
                      p.stdout)
        self.assertRegex(p.stdout, r"cache\.traffic_percent\s+50\s+\(was 0\)")
        self.assertRegex(p.stdout, r"cache\.enabled\s+true\s+\(was false\)")
        self.assertEqual(self.fake.flags["stage"], "cache-50")
        headers, body = self.fake.posts[-1]
        self.assertEqual(body, {"stage": "cache-50", "actor": "alice"})
        self.assertEqual(headers.get("Authorization"), "Bearer fake-admin-token-0123")

    def test_stage_token_flag_overrides_env_and_wrong_token_fails(self):
        p = rerankctl("stage", "full", "--token", "wrong", env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("HTTP 401", p.stderr)
        self.assertIn("--token", p.stderr)
        self.assertEqual(self.fake.flags["stage"], "feature-flags")
        env = clean_env(RERANKER_ADMIN_URL=self.fake.url)  # no token at all
        p = rerankctl("stage", "full", env=env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("HTTP 401", p.stderr)
        self.assertNotIn("Authorization", self.fake.posts[-1][0])

    def test_stage_on_server_without_token_explains_403(self):
        self.fake.token = ""
        p = rerankctl("stage", "full", env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("HTTP 403", p.stderr)
        self.assertIn("admin.token", p.stderr)

    def test_unknown_stage_lists_valid_ones(self):
        p = rerankctl("stage", "cache-99", env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("unknown stage 'cache-99'; valid stages: feature-flags, cache-10", p.stderr)
        p = rerankctl("stage", env=self.env)
        self.assertEqual(p.returncode, 2, describe(p))

    # ---- status ----

    def test_status_summary_and_json(self):
        p = rerankctl("status", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("rerankd at %s: healthy, ready, up 1m 5s" % self.fake.url, p.stdout)
        self.assertIn("stage:    feature-flags (set by file at 2024-05-01T12:00:00.000Z)", p.stdout)
        self.assertIn("reranker: enabled", p.stdout)
        self.assertIn("cache:    disabled", p.stdout)
        self.assertIn("avg 4.50 ms, p95 9.25 ms, p99 12.00 ms; target 50 ms met by 98.5%",
                      p.stdout)
        p = rerankctl("status", "--json", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        doc = json.loads(p.stdout)
        self.assertEqual(doc["flags"]["stages"], STAGES)
        self.assertIn("p99_latency_ms", doc["health"]["reranker"]["stats"])

    def test_status_not_ready_exits_1_and_unreachable_fails(self):
        self.fake.ready = False
        p = rerankctl("status", env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("unhealthy, NOT READY", p.stdout)
        p = rerankctl("status", "--admin", "http://127.0.0.1:%d" % free_port(), env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("GET http://127.0.0.1:", p.stderr)

    # ---- monitor ----

    def test_monitor_count_prints_header_and_lines_with_rates(self):
        p = rerankctl("monitor", "0.2", "--count", "3", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 5, describe(p))  # banner, header, 3 lines
        self.assertIn("TIME", lines[1])
        self.assertIn("REQ/S", lines[1])
        first, second = lines[2].split(), lines[3].split()
        self.assertRegex(first[0], r"^\d\d:\d\d:\d\d$")
        self.assertEqual(first[1], "feature-flags")
        self.assertEqual(first[3], "-")  # no rate on the first line
        self.assertEqual(int(second[2]) - int(first[2]), 10)
        rate = float(second[3])  # 10 reranks in ~0.2 s
        self.assertGreater(rate, 2)
        self.assertLess(rate, 100)
        self.assertEqual(second[4:], ["4.50", "9.25", "12.00", "25.0", "1.5", "98.5"])

    def test_monitor_keeps_going_when_the_server_is_down(self):
        port = free_port()
        p = rerankctl("monitor", "0.1", "--count", "2", "--admin", "http://127.0.0.1:%d" % port,
                      env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertEqual(len(re.findall(r"ERROR GET http://127.0.0.1:%d/health" % port, p.stdout)),
                         2, describe(p))

    def test_monitor_stops_cleanly_on_sigint(self):
        proc = subprocess.Popen([RERANKCTL, "monitor", "0.2"], env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            lines = [proc.stdout.readline() for _ in range(3)]  # banner, header, first line
            self.assertIn("feature-flags", lines[2])
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 0, err)

    def test_monitor_rejects_bad_interval(self):
        for bad in (["monitor", "0"], ["monitor", "abc"], ["monitor", "1", "--count", "0"]):
            p = rerankctl(*bad, env=self.env)
            self.assertEqual(p.returncode, 2, describe(p))

    # ---- check ----

    def make_config(self):
        model = os.path.join(self.tmp, "model")
        os.makedirs(model)
        for f in ("model.pt", "vocab.txt", "model.yaml"):
            with open(os.path.join(model, f), "w") as out:
                out.write("x\n")
        config = os.path.join(self.tmp, "rerankd.yaml")
        with open(config, "w") as out:
            out.write("model:\n  dir: %s\nflags:\n  path: %s/data/flags.yaml\n"
                      "audit:\n  path: %s/data/audit.jsonl\n" % (model, self.tmp, self.tmp))
        return config, model

    def test_check_all_pass_then_missing_stats_field_and_model_file(self):
        config, model = self.make_config()
        p = rerankctl("check", "--config", config, env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertEqual(p.stdout.count("✅"), 8, describe(p))
        self.assertNotIn("❌", p.stdout)
        self.fake.drop_stats_field = "requests_in_window"
        os.remove(os.path.join(model, "model.yaml"))
        p = script("check_deployment.sh", "--config", config, env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("❌ stats available: requests_in_window (missing)", p.stdout)
        self.assertRegex(p.stdout, r"❌ model files: .*model\.yaml")
        self.assertIn("2 of 8 checks failed", p.stdout)

    # ---- scripts ----

    def test_deploy_script_sets_stage_then_prints_status(self):
        p = script("deploy_reranker.sh", "cache-10", "--actor", "bob", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("stage: feature-flags -> cache-10 (by bob", p.stdout)
        self.assertIn("cache:    enabled for 10% of traffic", p.stdout)
        self.assertLess(p.stdout.index("== rerankctl stage"), p.stdout.index("== rerankctl status"))
        p = script("deploy_reranker.sh", "rollback", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("stage: cache-10 -> rollback", p.stdout)
        self.assertFalse(self.fake.flags["batch"]["enabled"])

    def test_deploy_script_validates_before_calling_and_propagates_failure(self):
        posts = len(self.fake.posts)
        p = script("deploy_reranker.sh", "cache-99", env=self.env)
        self.assertEqual(p.returncode, 2, describe(p))
        self.assertIn("valid stages: feature-flags cache-10", p.stderr)
        self.assertEqual(len(self.fake.posts), posts)  # nothing was sent
        p = script("deploy_reranker.sh", "full", "--token", "wrong", env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("HTTP 401", p.stderr)
        self.assertNotIn("== rerankctl status", p.stdout)  # set -e stops after the failure

    def test_monitor_script(self):
        p = script("monitor_reranker.sh", "0.1", "--count", "2", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertEqual(len(p.stdout.splitlines()), 4, describe(p))

    def test_scripts_help_and_missing_binary(self):
        for name in ("deploy_reranker.sh", "monitor_reranker.sh", "check_deployment.sh"):
            p = script(name, "--help", env=self.env)
            self.assertEqual(p.returncode, 0, describe(p))
            self.assertIn("Usage:", p.stdout)
        env = dict(self.env, RERANKCTL=os.path.join(self.tmp, "no-such-binary"))
        p = script("check_deployment.sh", env=env)
        self.assertNotEqual(p.returncode, 0, describe(p))
        self.assertIn("not an executable", p.stderr)

    # ---- usage ----

    def test_usage_and_help(self):
        p = rerankctl("frobnicate", env=self.env)
        self.assertEqual(p.returncode, 2, describe(p))
        self.assertIn("unknown command 'frobnicate'", p.stderr)
        self.assertIn("Usage: rerankctl", p.stderr)
        p = rerankctl(env=self.env)
        self.assertEqual(p.returncode, 2, describe(p))
        for cmd in ("stage", "status", "monitor", "check", "rerank"):
            p = rerankctl(cmd, "--help", env=self.env)
            self.assertEqual(p.returncode, 0, describe(p))
            self.assertIn("Usage: rerankctl " + cmd, p.stdout)
        p = rerankctl("status", "--bogus", env=self.env)
        self.assertEqual(p.returncode, 2, describe(p))
        self.assertIn("unknown flag '--bogus' for 'status'", p.stderr)
        p = rerankctl("--help", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))


if __name__ == "__main__":
    unittest.main(verbosity=2)
