#!/usr/bin/python3
"""rerankctl and the deploy/*.sh scripts against a fake admin HTTP server that answers in the admin
contract's shape (proto/rerank/admin/v1/admin.proto rendered with protobuf's JSON mapping: every
field present, figures as JSON numbers). It pins the client side deterministically (error codes,
token lookup, missing stats fields, fields a newer server adds, request bodies) without a model;
tests/rerankctl_e2e_test.py runs the same commands against a real rerankd.
"""
import copy
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rerankctl_testlib import (RERANKCTL, SOURCE_DIR, STAGES, clean_env,  # noqa: E402
                              describe, free_port, rerankctl, script)

TOKEN = "fake-admin-token-0123"

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
    """A threaded HTTP server implementing GET /health /ready /flags and POST /flags /reload."""

    def __init__(self, token=TOKEN):
        self.token = token
        self.lock = threading.Lock()
        self.flags = copy.deepcopy(BASE_FLAGS)
        self.updated_by = "file"
        self.updated_at = "2024-05-01T12:00:00.000Z"
        self.total = 100
        self.ready = True
        self.drop_stats_field = None
        self.health_extra = {}  # merged into /health's top level (a newer server's fields)
        self.stats_override = {}  # merged into .reranker.stats (e.g. a mistyped figure)
        self.reload_error = ""
        self.posts = []  # (path, headers dict, parsed body)
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
                                       {"ready": fake.ready,
                                        "reason": "" if fake.ready else "model warming up"})
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
                    fake.posts.append((self.path, dict(self.headers), body))
                    # The real server parses bodies strictly into the contract's request messages.
                    allowed = {"/flags": {"stage", "flags", "actor"}, "/reload": {"actor"}}
                    if self.path not in allowed:
                        self.send_json(404, {"error": "not found"})
                    elif not fake.token:
                        self.send_json(403, {"error": "admin.token is not configured; "
                                                      "state-changing admin calls are disabled"})
                    elif self.headers.get("Authorization") != "Bearer " + fake.token:
                        self.send_json(401, {"error": "missing or wrong admin token"})
                    elif not isinstance(body, dict) or set(body) - allowed[self.path]:
                        self.send_json(400, {"error": "request body: unknown key"})
                    elif self.path == "/reload":
                        self.send_json(200, {"reloaded": not fake.reload_error,
                                             "flags": fake.flags, "error": fake.reload_error})
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
        stats.update(self.stats_override)
        if self.drop_stats_field:
            del stats[self.drop_stats_field]
        health = {"status": "healthy" if self.ready else "unhealthy", "ready": self.ready,
                  "uptime_seconds": 65,
                  "model": {"name": "fake_model", "version": "0123456789ab", "precision": "fp32",
                            "demo": False},
                  "reranker": {"enabled": self.flags["reranker"]["enabled"],
                               "stage": self.flags["stage"], "stats": stats},
                  "flags": self.flags}
        health.update(self.health_extra)
        return health


class RerankctlFakeAdminTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeAdmin()
        self.tmp = tempfile.mkdtemp(prefix="rerankctl_fake_")
        # rerankd's flags file, and so the default admin token file (data/admin.token next to it),
        # in the temp dir: hermetic, whatever data/ the repository holds.
        self.token_file = os.path.join(self.tmp, "data", "admin.token")
        self.no_token_env = clean_env(RERANKER_ADMIN_URL=self.fake.url,
                                      RERANKER_FLAGS_FILE=os.path.join(self.tmp, "data",
                                                                       "flags.yaml"))
        self.env = dict(self.no_token_env, RERANKER_ADMIN_TOKEN=TOKEN)

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
        path, headers, body = self.fake.posts[-1]
        self.assertEqual(body, {"stage": "cache-50", "actor": "alice"})
        self.assertEqual(headers.get("Authorization"), "Bearer " + TOKEN)
        self.assertNotIn(TOKEN, p.stdout + p.stderr)

    def test_stage_token_flag_overrides_env_and_wrong_token_fails(self):
        p = rerankctl("stage", "full", "--token", "wrong", env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("HTTP 401", p.stderr)
        self.assertIn("--token", p.stderr)
        self.assertIn("admin token: --token", p.stderr)  # which token was sent, not the token
        self.assertNotIn("wrong", p.stderr.replace("missing or wrong", ""))
        self.assertEqual(self.fake.flags["stage"], "feature-flags")
        p = rerankctl("stage", "full", env=self.no_token_env)  # no token anywhere
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("HTTP 401", p.stderr)
        self.assertIn("--token-file", p.stderr)  # the hint
        self.assertIn("admin token: no token: the default token file %s does not exist"
                      % self.token_file, p.stderr)
        self.assertNotIn("Authorization", self.fake.posts[-1][1])

    # ---- admin token sources ----

    def write_token(self, path, text):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path

    def test_token_from_the_default_file_rerankd_generates(self):
        self.write_token(self.token_file, TOKEN + "\n")
        p = rerankctl("stage", "cache-10", env=self.no_token_env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertEqual(self.fake.posts[-1][1].get("Authorization"), "Bearer " + TOKEN)
        self.assertNotIn(TOKEN, p.stdout + p.stderr)
        # The same file found through a config file naming the flags file, as rerankd finds it.
        config = os.path.join(self.tmp, "rerankd.yaml")
        with open(config, "w") as f:
            f.write("flags:\n  path: %s/data/flags.yaml\n" % self.tmp)
        env = clean_env(RERANKER_ADMIN_URL=self.fake.url)
        p = rerankctl("stage", "cache-50", "--config", config, env=env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertEqual(self.fake.flags["stage"], "cache-50")

    def test_token_file_flag_wins_and_bad_files_are_named(self):
        good = self.write_token(os.path.join(self.tmp, "my.token"), TOKEN + "\n")
        env = dict(self.no_token_env, RERANKER_ADMIN_TOKEN="env-token-that-is-wrong")
        p = rerankctl("stage", "full", "--token-file", good, env=env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertEqual(self.fake.posts[-1][1].get("Authorization"), "Bearer " + TOKEN)
        posts = len(self.fake.posts)
        missing = os.path.join(self.tmp, "nope.token")
        p = rerankctl("stage", "full", "--token-file", missing, env=env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("--token-file: '%s' does not exist" % missing, p.stderr)
        empty = self.write_token(os.path.join(self.tmp, "empty.token"), "\n")
        p = rerankctl("stage", "full", "--token-file", empty, env=env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("'%s' is empty" % empty, p.stderr)
        # The default file too: present but empty is an error, not a silent "no token".
        self.write_token(self.token_file, "")
        p = rerankctl("stage", "full", env=self.no_token_env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn(self.token_file, p.stderr)
        p = rerankctl("stage", "full", "--token-file=", env=env)
        self.assertEqual(p.returncode, 2, describe(p))
        self.assertEqual(len(self.fake.posts), posts)  # nothing was sent
        p = rerankctl("--help", env=env)
        self.assertIn("--token-file PATH", p.stdout)

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

    def test_reload(self):
        p = rerankctl("reload", "--actor", "carol", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("reloaded: the flags file had changed; applied (stage feature-flags)",
                      p.stdout)
        self.assertEqual(self.fake.posts[-1][0], "/reload")
        self.assertEqual(self.fake.posts[-1][2], {"actor": "carol"})
        self.fake.reload_error = "data/flags.yaml: stage: unknown stage 'x'"
        p = rerankctl("reload", env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("flags file error: data/flags.yaml: stage: unknown stage 'x'", p.stdout)
        p = rerankctl("reload", "--token", "wrong-token-0123456", env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("reload failed: HTTP 401", p.stderr)

    def test_newer_server_fields_are_ignored_and_mistyped_ones_named(self):
        self.fake.health_extra = {"build": {"commit": "abc"}, "replicas": 3}
        self.fake.stats_override = {"p999_latency_ms": 20.5}
        p = rerankctl("status", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("avg 4.50 ms", p.stdout)
        p = rerankctl("monitor", "0.1", "--count", "1", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertNotIn("  ERROR ", p.stdout)
        self.fake.stats_override = {"cache_size": "three"}
        p = rerankctl("status", env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("does not match the admin contract", p.stderr)
        self.assertIn("reranker.stats.cache_size", p.stderr)

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
        self.assertEqual(doc["health"]["reranker"]["stats"]["p99_latency_ms"], 12.0)
        self.assertEqual(doc["health"]["reranker"]["stats"]["cache_max_size"], 1000)

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

    def test_deploy_script_token_file_relative_to_the_callers_directory(self):
        self.write_token(os.path.join(self.tmp, "ops", "my.token"), TOKEN + "\n")
        p = script("deploy_reranker.sh", "cache-100", "--token-file", "ops/my.token",
                   env=self.no_token_env, cwd=self.tmp)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertEqual(self.fake.flags["stage"], "cache-100")

    def test_deploy_script_finds_the_token_in_rerankd_workdir(self):
        # rerankd's flags file given relative to its working directory, as in its environment:
        # the script runs rerankctl there, so the generated token file is found.
        workdir = os.path.join(self.tmp, "srv")
        self.write_token(os.path.join(workdir, "state", "admin.token"), TOKEN + "\n")
        env = dict(self.no_token_env, RERANKER_FLAGS_FILE="state/flags.yaml",
                   RERANKD_WORKDIR=workdir)
        p = script("deploy_reranker.sh", "cache-50", env=env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertEqual(self.fake.flags["stage"], "cache-50")
        p = script("deploy_reranker.sh", "cache-50",
                   env=dict(env, RERANKD_WORKDIR=os.path.join(self.tmp, "nope")))
        self.assertEqual(p.returncode, 2, describe(p))
        self.assertIn("RERANKD_WORKDIR", p.stderr)

    def test_scripts_run_rerankctl_in_the_repository_root_with_absolute_paths(self):
        # A stand-in rerankctl that prints where it runs and what it got.
        fake_ctl = os.path.join(self.tmp, "bin", "fake-rerankctl")
        os.makedirs(os.path.dirname(fake_ctl))
        with open(fake_ctl, "w") as f:
            f.write('#!/bin/sh\necho "cwd=$PWD"\nfor a in "$@"; do echo "arg=$a"; done\n')
        os.chmod(fake_ctl, os.stat(fake_ctl).st_mode | stat.S_IXUSR)
        env = dict(self.env, RERANKCTL="bin/fake-rerankctl")  # relative to the caller too
        for name, args in (("check_deployment.sh", []), ("monitor_reranker.sh", ["1"]),
                           ("deploy_reranker.sh", ["cache-10"])):
            p = script(name, *args, "--config", "conf/r.yaml", "--token-file=t.token",
                       "--admin", "http://h:1", env=env, cwd=self.tmp)
            self.assertEqual(p.returncode, 0, describe(p))
            cwd = re.search(r"^cwd=(.*)$", p.stdout, re.M).group(1)
            self.assertEqual(os.path.realpath(cwd), os.path.realpath(SOURCE_DIR), name)
            self.assertIn("arg=%s/conf/r.yaml\n" % self.tmp, p.stdout, name)
            self.assertIn("arg=--token-file=%s/t.token\n" % self.tmp, p.stdout, name)
            self.assertIn("arg=http://h:1\n", p.stdout, name)

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
