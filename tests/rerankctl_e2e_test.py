#!/usr/bin/python3
"""End to end: a real rerankd subprocess (tiny test model, admin plane on free ports) driven by
rerankctl and the deploy/*.sh scripts, checking that what they print is what the server did
(GET /flags, /health, the flags file, the audit log).

RerankctlE2ETest runs a server with an admin token configured. Its steps share one server and run
in name order (test_01_..., test_02_...): later steps depend on the state earlier ones leave
(stages, errors in the stats window), and the last one stops the server to check `rerankctl check`
against a stopped server. RerankctlGeneratedTokenE2ETest runs one with no admin token configured,
as `make run` does: the deployment guide's rollout must work with no token flag on that host.
"""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rerankctl_testlib import (BUILD_DIR, RERANKD, STAGES, clean_env,  # noqa: E402
                               describe, free_port, rerankctl, script)

TOKEN = "e2e-secret-token"  # the 16-byte minimum
DOCS = ["Berlin had a population of 3,520,031 registered inhabitants.",
        "Berlin is well known for its museums.",
        "The Eiffel Tower is in Paris."]


def http(method, url, body=None, token=None):
    """(status, parsed JSON body) of one admin call; HTTP errors are results, not exceptions."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class RerankdProcess:
    """Class-level setup shared by the test classes: writes a config into a temp dir and starts
    rerankd on it (cwd: the temp dir), waiting for readiness."""

    @classmethod
    def start_rerankd(cls, admin_token, flags_extra=(), admin_extra=(), extra=()):
        """`flags_extra`/`admin_extra`: more lines of those sections; `extra`: more sections."""
        model_dir = os.path.join(BUILD_DIR, "testdata", "tiny_model")
        if not os.path.isfile(os.path.join(model_dir, "model.yaml")):
            raise AssertionError("no tiny model at %s (build target test_models)" % model_dir)
        cls.tmp = tempfile.mkdtemp(prefix="rerankctl_e2e_")
        cls.grpc_port, cls.http_port, cls.admin_grpc_port = free_port(), free_port(), free_port()
        cls.data = os.path.join(cls.tmp, "data")
        cls.flags_path = os.path.join(cls.data, "flags.yaml")
        cls.audit_path = os.path.join(cls.data, "reranker_audit.jsonl")
        cls.config = os.path.join(cls.tmp, "rerankd.yaml")
        with open(cls.config, "w") as f:
            f.write("\n".join([
                "server:", "  listen: 127.0.0.1:%d" % cls.grpc_port, '  http_listen: ""', "  drain_timeout_ms: 2000",
                "model:", "  dir: %s" % model_dir, "  precision: fp32",
                "execution:", "  workers: 1", "  intra_op_threads: 1",
                "audit:", "  path: %s" % cls.audit_path,
                "flags:", "  path: %s" % cls.flags_path, "  poll_interval_ms: 200", *flags_extra,
                "admin:", "  http_listen: 127.0.0.1:%d" % cls.http_port,
                "  grpc_listen: 127.0.0.1:%d" % cls.admin_grpc_port, *admin_extra] +
                (["  token: %s" % admin_token] if admin_token else []) + [*extra, ""]))
        cls.admin = "http://127.0.0.1:%d" % cls.http_port
        cls.target = "127.0.0.1:%d" % cls.grpc_port
        cls.log_path = os.path.join(cls.tmp, "rerankd.log")
        cls.log = open(cls.log_path, "w")
        cls.proc = subprocess.Popen([RERANKD, "--config", cls.config], cwd=cls.tmp,
                                    env=clean_env(OPENBLAS_NUM_THREADS=1), stdout=cls.log,
                                    stderr=subprocess.STDOUT)
        # Wait for readiness (model load + warmup); this is a startup wait, not timing logic.
        deadline = time.monotonic() + 120
        while True:
            if cls.proc.poll() is not None:
                log = cls.server_log()
                cls.tearDownClass()
                raise AssertionError("rerankd exited with %d:\n%s" % (cls.proc.returncode, log))
            try:
                if http("GET", cls.admin + "/ready")[0] == 200:
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                log = cls.server_log()
                cls.tearDownClass()
                raise AssertionError("rerankd not ready after 120 s:\n" + log)
            time.sleep(0.2)

    @classmethod
    def server_log(cls):
        cls.log.flush()
        with open(cls.log_path) as f:
            return f.read()[-4000:]

    @classmethod
    def stop_server(cls):
        if cls.proc.poll() is None:
            cls.proc.send_signal(signal.SIGTERM)
            try:
                cls.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait()

    @classmethod
    def tearDownClass(cls):
        cls.stop_server()
        cls.log.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def audit_events(self, event_type, where=lambda e: True):
        """Audit events of `event_type` matching `where`; waits up to 10 s for a first one, since
        the audit writer appends in the background."""
        deadline = time.monotonic() + 10
        while True:
            events = []
            if os.path.exists(self.audit_path):
                with open(self.audit_path) as f:
                    events = [json.loads(line) for line in f if line.strip()]
            found = [e for e in events if e.get("event_type") == event_type and where(e)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


class RerankctlE2ETest(RerankdProcess, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_rerankd(admin_token=TOKEN)
        cls.env = clean_env(RERANKER_ADMIN_URL=cls.admin, RERANKER_GRPC_TARGET=cls.target,
                            RERANKER_ADMIN_TOKEN=TOKEN)

    def flags(self):
        status, body = http("GET", self.admin + "/flags")
        self.assertEqual(status, 200, body)
        return body

    # ---- steps ----

    def test_01_check_passes_on_a_healthy_server(self):
        p = script("check_deployment.sh", "--config", self.config, env=self.env)
        self.assertEqual(p.returncode, 0, describe(p) + self.server_log())
        self.assertEqual(p.stdout.count("✅"), 8, describe(p))
        self.assertNotIn("❌", p.stdout)
        for name in ("config file", "model files", "flags file directory", "config valid",
                     "health", "reranker enabled", "stats available"):
            self.assertIn("✅ " + name + ":", p.stdout)

    def test_02_status(self):
        p = rerankctl("status", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("rerankd at %s: healthy, ready" % self.admin, p.stdout)
        self.assertIn("model:    tiny_model version ", p.stdout)
        self.assertIn("stage:    feature-flags", p.stdout)
        self.assertIn("reranker: enabled", p.stdout)
        p = rerankctl("status", "--json", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        doc = json.loads(p.stdout)
        self.assertEqual(doc["health"]["reranker"]["stage"], "feature-flags")
        self.assertEqual(doc["flags"]["stage"], "feature-flags")
        # The deploy script's stage list is the server's.
        self.assertEqual(doc["flags"]["stages"], STAGES)

    def test_03_rerank_prints_three_ranked_docs(self):
        args = ["rerank", "--query", "How many people live in Berlin?"]
        for d in DOCS:
            args += ["--doc", d]
        p = rerankctl(*args, env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("model tiny_model (version ", p.stdout)
        self.assertIn("reranked: yes", p.stdout)
        rows = [line.split(None, 4) for line in p.stdout.splitlines()
                if re.match(r"^\s+\d+\s+-?\d+\.\d+\s+\d+\s", line)]
        self.assertEqual([int(r[0]) for r in rows], [1, 2, 3], describe(p))
        scores = [float(r[1]) for r in rows]
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertEqual(sorted(int(r[2]) for r in rows), [0, 1, 2])
        for r in rows:  # the snippet is the text of the document at that index
            self.assertEqual(r[4], DOCS[int(r[2])])
        # --json and --docs-file give the same ranking.
        docs_file = os.path.join(self.tmp, "docs.txt")
        with open(docs_file, "w") as f:
            f.write("d0\t%s\n\nd1\t%s\n%s\n" % tuple(DOCS))
        p = rerankctl("rerank", "--query", "How many people live in Berlin?", "--docs-file",
                      docs_file, "--json", "--top-n", "2", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        doc = json.loads(p.stdout)
        self.assertEqual([r["index"] for r in doc["results"]], [int(r[2]) for r in rows[:2]])
        self.assertEqual([r["id"] for r in doc["results"]],
                         [["d0", "d1", ""][int(r[2])] for r in rows[:2]])
        self.assertTrue(doc["reranked"])

    def test_04_stage_transitions_take_effect(self):
        expected = {  # stage -> (reranker.enabled, cache.enabled, cache.traffic_percent)
            "cache-10": (True, True, 10), "cache-50": (True, True, 50),
            "cache-100": (True, True, 100), "full": (True, True, 100),
            "rollback": (True, False, 0), "disabled": (False, False, 0),
            "feature-flags": (True, False, 0),
        }
        previous = self.flags()["stage"]
        for stage, (enabled, cache, percent) in expected.items():
            p = script("deploy_reranker.sh", stage, "--actor", "e2e-" + stage, env=self.env)
            self.assertEqual(p.returncode, 0, describe(p))
            self.assertIn("stage: %s -> %s (by e2e-%s at " % (previous, stage, stage), p.stdout)
            self.assertRegex(p.stdout, r"cache\.traffic_percent\s+%d\b" % percent)
            self.assertIn("stage:    %s (set by e2e-%s" % (stage, stage), p.stdout)  # status
            f = self.flags()
            self.assertEqual(f["stage"], stage)
            self.assertEqual(f["updated_by"], "e2e-" + stage)
            self.assertEqual(f["flags"]["reranker"]["enabled"], enabled)
            self.assertEqual(f["flags"]["cache"]["enabled"], cache)
            self.assertEqual(f["flags"]["cache"]["traffic_percent"], percent)
            with open(self.flags_path) as fh:
                self.assertRegex(fh.read(), r"(?m)^stage: \"?%s\"?$" % re.escape(stage))
            self.assertEqual(http("GET", self.admin + "/health")[1]["reranker"]["enabled"], enabled)
            if stage == "disabled":
                p = rerankctl("rerank", "--query", "q", "--doc", "a", "--doc", "b", env=self.env)
                self.assertEqual(p.returncode, 0, describe(p))
                self.assertIn("reranked: NO", p.stdout)
            previous = stage
        changes = self.audit_events("flag_change")
        self.assertGreaterEqual(len(changes), len(expected))

    def test_05_wrong_token_and_unknown_stage_fail(self):
        before = self.flags()
        p = rerankctl("stage", "full", "--token", "not-the-token", env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("HTTP 401", p.stderr)
        # No token: a configured admin.token means rerankd generated no token file either.
        env = clean_env(RERANKER_ADMIN_URL=self.admin, RERANKER_FLAGS_FILE=self.flags_path)
        p = script("deploy_reranker.sh", "full", env=env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("HTTP 401", p.stderr)
        self.assertIn("does not exist", p.stderr)
        p = rerankctl("stage", "cache-75", env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("HTTP 400", p.stderr)
        self.assertIn("full", p.stderr)  # lists the valid stages
        after = self.flags()
        self.assertEqual(after["stage"], before["stage"])
        self.assertEqual(after["updated_at"], before["updated_at"])

    def test_06_monitor_prints_lines(self):
        p = script("monitor_reranker.sh", "0.2", "--count", "2", env=self.env)
        self.assertEqual(p.returncode, 0, describe(p))
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 4, describe(p))  # banner, header, 2 lines
        self.assertIn("REQ/S", lines[1])
        for line in lines[2:]:
            cols = line.split()
            self.assertRegex(cols[0], r"^\d\d:\d\d:\d\d$")
            self.assertEqual(cols[1], self.flags()["stage"])
            self.assertGreaterEqual(int(cols[2]), 3)  # the reranks of the steps above
        self.assertEqual(lines[2].split()[3], "-")
        self.assertRegex(lines[3].split()[3], r"^\d+\.\d$")

    def test_07_rate_limit_violation_is_audited(self):
        # Lower the per-client limit with a flags patch, exceed it, and find the audit events the
        # operations guide greps for.
        status, body = http("POST", self.admin + "/flags",
                            {"flags": {"rate_limit": {"enabled": True, "per_minute": 1}},
                             "actor": "e2e"}, token=TOKEN)
        self.assertEqual(status, 200, body)
        try:
            codes = []
            for _ in range(3):
                p = rerankctl("rerank", "--query", "q", "--doc", "a", "--client-id", "greedy",
                              env=self.env)
                codes.append(p.returncode)
            self.assertIn(1, codes)
            self.assertIn("RESOURCE_EXHAUSTED", p.stderr)
            violations = self.audit_events("rate_limit_violation")
            self.assertTrue(violations)
            self.assertEqual(violations[-1]["client_id"], "greedy")
        finally:
            status, body = http("POST", self.admin + "/flags",
                                {"flags": {"rate_limit": {"per_minute": 100}}, "actor": "e2e"},
                                token=TOKEN)
            self.assertEqual(status, 200, body)

    def test_08_failed_request_is_audited(self):
        p = rerankctl("rerank", "--query", "   ", "--doc", "a", env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("INVALID_ARGUMENT", p.stderr)
        failed = self.audit_events("rerank", lambda e: e.get("success") is False)
        self.assertTrue(failed)
        self.assertIn("INVALID_ARGUMENT", failed[-1]["error"])

    def test_99_check_fails_against_stopped_server(self):
        self.stop_server()
        p = script("check_deployment.sh", "--config", self.config, env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))
        self.assertIn("❌ health:", p.stdout)
        self.assertIn("❌ reranker enabled:", p.stdout)
        self.assertIn("❌ stats available:", p.stdout)
        self.assertIn("✅ model files:", p.stdout)  # local checks still pass
        self.assertIn("3 of 8 checks failed", p.stdout)
        p = rerankctl("status", env=self.env)
        self.assertEqual(p.returncode, 1, describe(p))


class RerankctlGeneratedTokenE2ETest(RerankdProcess, unittest.TestCase):
    """rerankd with no admin token configured generates one into data/admin.token next to its
    flags file; the deploy scripts, given the config or environment that locates that flags file
    (as an operator on the host has them), find it without any token flag."""

    @classmethod
    def setUpClass(cls):
        cls.start_rerankd(admin_token=None)
        cls.token_file = os.path.join(cls.data, "admin.token")

    def stage(self):
        status, body = http("GET", self.admin + "/health")
        self.assertEqual(status, 200, body)
        return body["reranker"]["stage"]

    def test_1_generated_token_file_is_private(self):
        st = os.stat(self.token_file)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        with open(self.token_file) as f:
            self.assertRegex(f.read(), r"^[0-9a-f]{64}\n$")
        self.assertIn(self.token_file, self.server_log())  # the path is logged...
        with open(self.token_file) as f:
            self.assertNotIn(f.read().strip(), self.server_log())  # ...never the token

    def test_2_deploy_with_the_servers_config_and_no_token_flag(self):
        with open(self.token_file) as f:
            token = f.read().strip()
        env = clean_env(RERANKER_ADMIN_URL=self.admin)  # no RERANKER_ADMIN_TOKEN
        p = script("deploy_reranker.sh", "cache-10", "--config", self.config, env=env)
        self.assertEqual(p.returncode, 0, describe(p) + self.server_log())
        self.assertIn("stage: feature-flags -> cache-10", p.stdout)
        self.assertIn("stage:    cache-10", p.stdout)  # the status part
        self.assertNotIn(token, p.stdout + p.stderr)
        self.assertEqual(self.stage(), "cache-10")

    def test_3_deploy_with_the_servers_environment(self):
        # RERANKER_FLAGS_FILE as rerankd's environment would have it: absolute, or relative to
        # rerankd's working directory (RERANKD_WORKDIR; `make run`'s is the repository root).
        for env, stage in ((clean_env(RERANKER_ADMIN_URL=self.admin,
                                      RERANKER_FLAGS_FILE=self.flags_path), "cache-50"),
                           (clean_env(RERANKER_ADMIN_URL=self.admin,
                                      RERANKER_FLAGS_FILE="data/flags.yaml",
                                      RERANKD_WORKDIR=self.tmp), "cache-100")):
            p = script("deploy_reranker.sh", stage, env=env)
            self.assertEqual(p.returncode, 0, describe(p))
            self.assertEqual(self.stage(), stage)

    def test_4_callers_without_the_token_are_still_refused(self):
        before = self.stage()
        for token in (None, "not-the-generated-token"):
            status, body = http("POST", self.admin + "/flags", {"stage": "full"}, token=token)
            self.assertEqual(status, 401, body)
        status, body = http("POST", self.admin + "/reload", {}, token=None)
        self.assertEqual(status, 401, body)
        self.assertEqual(self.stage(), before)

    def test_5_token_file_flag_and_reload(self):
        env = clean_env(RERANKER_ADMIN_URL=self.admin)
        p = rerankctl("reload", "--token-file", self.token_file, "--actor", "e2e", env=env)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("reloaded: the flags file is unchanged (stage %s)" % self.stage(), p.stdout)
        reloads = self.audit_events("config_reload", lambda e: e.get("actor") == "e2e")
        self.assertTrue(reloads)


if __name__ == "__main__":
    unittest.main(verbosity=2)
