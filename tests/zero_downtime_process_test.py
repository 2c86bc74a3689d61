#!/usr/bin/python3
"""Zero downtime with the real rerankd binary (tiny test model, fp32) and a Python gRPC client
generated from the published proto:

- SIGTERM: /ready turns 503 and grpc.health.v1 NOT_SERVING at once while Rerank calls keep
  succeeding through server.drain_grace_ms; requests in flight when the listener closes finish;
  the audit log holds the `shutdown` event; the process exits 0.
- Rolling restart: two instances behind one client-side round_robin channel
  (`ipv4:127.0.0.1:P1,127.0.0.1:P2`, the static form of a `dns:///` headless-Service target),
  continuous traffic from several threads; one instance gets SIGTERM and is started again on the
  same port; not one request fails, and both instances (the restarted one included) serve.

Environment (ctest sets them): RERANK_BUILD_DIR, RERANKD.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rerankctl_testlib as lib  # noqa: E402

MODEL = os.path.join(lib.BUILD_DIR, "testdata", "tiny_model")
TOKEN = "zero-downtime-process-test-token"
QUERY = "how many people live in berlin"
DOCS = ["Berlin has about 3.7 million inhabitants.", "Bananas are yellow.",
        "Paris is the capital of France.", "The population of Berlin grew in the 1990s."]


def generate_stubs(out_dir):
    from grpc_tools import protoc
    rc = protoc.main(["protoc", "-I" + os.path.join(lib.SOURCE_DIR, "proto"),
                      "--python_out=" + out_dir, "--grpc_python_out=" + out_dir,
                      os.path.join(lib.SOURCE_DIR, "proto", "rerank", "v1", "reranker.proto")])
    if rc != 0:
        raise RuntimeError("protoc failed")
    sys.path.insert(0, out_dir)


def http_get(port, path):
    """(status, parsed JSON body or text); (None, error) when nothing answers."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            body = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        status = e.code
    except OSError as e:
        return None, str(e)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


class Instance:
    """One rerankd process with its own config, audit log and ports."""

    def __init__(self, root, name, grpc_port, grace_ms, drain_ms=10000):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.grpc_port = grpc_port
        self.http_port = lib.free_port()
        self.audit = os.path.join(self.dir, "audit.jsonl")
        self.config = os.path.join(self.dir, "rerankd.yaml")
        with open(self.config, "w") as f:
            f.write("\n".join([
                "server:",
                "  listen: 127.0.0.1:%d" % grpc_port,
                '  http_listen: ""',
                "  drain_grace_ms: %d" % grace_ms,
                "  drain_timeout_ms: %d" % drain_ms,
                "model:",
                "  dir: %s" % MODEL,
                "  precision: fp32",
                "execution:",
                "  workers: 1",
                "  intra_op_threads: 1",
                # The four heavy requests of the SIGTERM test come from one client (this host):
                # 1,200 pairs, over the default per-client share of the queue (1,024).
                "  max_client_queue_pairs: 4096",
                "admin:",
                "  http_listen: 127.0.0.1:%d" % self.http_port,
                '  grpc_listen: ""',
                "  token: %s" % TOKEN,
                "audit:",
                "  path: %s" % self.audit,
                "flags:",
                "  path: %s" % os.path.join(self.dir, "flags.yaml"),
                "  initial:",
                "    rate_limit: {enabled: false}",
                ""]))
        self.proc = None
        self.log = None

    def start(self):
        self.log = open(os.path.join(self.dir, "rerankd.log"), "ab")
        self.proc = subprocess.Popen([lib.RERANKD, "--config", self.config], env=lib.clean_env(),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("rerankd exited %d:\n%s" % (self.proc.returncode,
                                                                  self.logs()))
            status, _ = http_get(self.http_port, "/ready")
            if status == 200:
                return
            time.sleep(0.1)
        raise AssertionError("rerankd not ready in 90 s:\n" + self.logs())

    def logs(self):
        with open(os.path.join(self.dir, "rerankd.log"), "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def sigterm(self):
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout=60):
        rc = self.proc.wait(timeout=timeout)
        self.log.close()
        return rc

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.log is not None and not self.log.closed:
            self.log.close()

    def reranks(self):
        """Data-plane requests this process has answered (from /health)."""
        status, body = http_get(self.http_port, "/health")
        if status is None:
            return 0
        return int(body["reranker"]["stats"]["total_reranks"])

    def audit_events(self, event_type):
        with open(self.audit) as f:
            events = [json.loads(line) for line in f if line.strip()]
        return [e for e in events if e["event_type"] == event_type]


def health_status(grpc, port, service=""):
    """grpc.health.v1.Health/Check: 1 SERVING, 2 NOT_SERVING (raw protobuf, no stubs needed)."""
    def encode(s):
        b = s.encode()
        return b"\x0a" + bytes([len(b)]) + b if b else b""

    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=encode,
                               response_deserializer=lambda b: b)
        resp = check(service, timeout=5)
    return resp[1] if len(resp) == 2 and resp[0] == 0x08 else 0


class Traffic:
    """Continuous Rerank calls from `threads` threads on one channel; every outcome counted."""

    def __init__(self, stub, pb, threads=4):
        self.stub, self.pb = stub, pb
        self.ok = 0
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        import grpc
        req = self.pb.RerankRequest(query=QUERY, documents=[self.pb.Document(text=d) for d in DOCS])
        while not self.stopping.is_set():
            try:
                resp = self.stub.Rerank(req, timeout=10)
                assert len(resp.results) > 0
                with self.lock:
                    self.ok += 1
            except grpc.RpcError as e:
                with self.lock:
                    self.errors.append("%s: %s" % (e.code(), e.details()))

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join()


class ZeroDowntimeProcessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        generate_stubs(cls.tmp.name)
        import grpc
        from rerank.v1 import reranker_pb2, reranker_pb2_grpc
        cls.grpc, cls.pb, cls.pb_grpc = grpc, reranker_pb2, reranker_pb2_grpc

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        self.instances = []

    def tearDown(self):
        for i in self.instances:
            i.stop()

    def instance(self, name, grace_ms, port=None, drain_ms=10000):
        i = Instance(self.tmp.name, name, port or lib.free_port(), grace_ms, drain_ms)
        self.instances.append(i)
        i.start()
        return i

    def request(self, docs=DOCS):
        return self.pb.RerankRequest(query=QUERY, documents=[self.pb.Document(text=d) for d in docs])

    def test_sigterm_keeps_serving_through_the_drain_window_then_exits_cleanly(self):
        grace_ms = 2500
        # A generous drain timeout: the process exits as soon as the in-flight calls finish, and
        # sanitizer builds run them about 10x slower.
        inst = self.instance("sigterm", grace_ms, drain_ms=120000)
        channel = self.grpc.insecure_channel("127.0.0.1:%d" % inst.grpc_port)
        stub = self.pb_grpc.RerankerStub(channel)
        self.assertTrue(stub.Rerank(self.request(), timeout=30).results)
        self.assertEqual(health_status(self.grpc, inst.grpc_port), 1)

        t0 = time.time()
        inst.sigterm()
        status = None
        while time.time() - t0 < 2:
            status, body = http_get(inst.http_port, "/ready")
            if status == 503:
                break
            time.sleep(0.01)
        self.assertEqual(status, 503, "readiness did not turn false at once")
        self.assertIn("draining", body["reason"])
        self.assertEqual(health_status(self.grpc, inst.grpc_port), 2)
        self.assertEqual(health_status(self.grpc, inst.grpc_port, "rerank.v1.Reranker"), 2)
        served = 0
        while time.time() - t0 < grace_ms / 1000.0 - 1.2:
            resp = stub.Rerank(self.request(), timeout=10)  # raises if the window is not honoured
            self.assertEqual(len(resp.results), len(DOCS))
            served += 1
        self.assertGreater(served, 0)
        # Heavy requests sent just before the window closes are in flight when the listener
        # shuts: they must finish, not be dropped.
        big_docs = [("Berlin population inhabitants statistics census district %d " % i) * 30
                    for i in range(600)]
        results, lock = [], threading.Lock()

        def heavy():
            try:
                r = stub.Rerank(self.request(big_docs), timeout=140)
                outcome = ("ok", len(r.results), time.time() - t0)
            except self.grpc.RpcError as e:
                outcome = ("error", "%s: %s" % (e.code(), e.details()), time.time() - t0)
            with lock:
                results.append(outcome)

        # 0.8 s of margin: a call that reaches the server only as the listener closes is
        # cancelled by gRPC itself (clients are expected to have left by then); a slow build
        # (sanitizers) needs the margin, and 600 documents keep the calls in flight past it.
        while time.time() - t0 < grace_ms / 1000.0 - 0.8:
            time.sleep(0.01)
        heavies = [threading.Thread(target=heavy) for _ in range(4)]
        for h in heavies:
            h.start()
        for h in heavies:
            h.join()
        rc = inst.wait(timeout=150)
        channel.close()
        self.assertEqual(rc, 0, inst.logs())
        self.assertEqual([r[0] for r in results], ["ok"] * 4, results)
        print("heavy requests finished at %s s after SIGTERM (window %.1f s)"
              % ([round(r[2], 2) for r in results], grace_ms / 1000.0))
        shutdown = inst.audit_events("shutdown")
        self.assertEqual(len(shutdown), 1, "audit log not flushed")
        self.assertTrue(shutdown[0]["drained"])
        self.assertEqual(shutdown[0]["drain_grace_ms"], grace_ms)

    def test_rolling_restart_behind_client_side_round_robin_loses_no_request(self):
        a = self.instance("a", grace_ms=1500)
        b = self.instance("b", grace_ms=1500)
        channel = self.grpc.insecure_channel(
            "ipv4:127.0.0.1:%d,127.0.0.1:%d" % (a.grpc_port, b.grpc_port),
            options=[
                ("grpc.service_config", json.dumps({
                    "loadBalancingConfig": [{"round_robin": {}}],
                    # Client-side health checking (docs/OPERATIONS.md): a NOT_SERVING instance
                    # (draining) gets no new calls; the drain window gives the client time to see
                    # it before the listener closes. Without it a call racing the close can be
                    # CANCELLED by gRPC itself.
                    "healthCheckConfig": {"serviceName": "rerank.v1.Reranker"},
                })),
                # Come back to the restarted instance quickly (default backoff starts at 1 s).
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ])
        stub = self.pb_grpc.RerankerStub(channel)
        traffic = Traffic(stub, self.pb, threads=4)
        served = {}
        try:
            time.sleep(1.5)
            for inst in (a, b):
                self.assertGreater(inst.reranks(), 0, "round robin never reached " + inst.dir)
            # Restart each instance in turn, on its own port, under traffic.
            for name, inst in (("a", a), ("b", b)):
                served[name] = inst.reranks()
                inst.sigterm()
                self.assertEqual(inst.wait(timeout=60), 0, inst.logs())
                self.assertEqual(len(inst.audit_events("shutdown")), 1)
                restarted = Instance(self.tmp.name, name + "2", inst.grpc_port, grace_ms=1500)
                self.instances.append(restarted)
                restarted.start()
                deadline = time.time() + 30
                while restarted.reranks() == 0 and time.time() < deadline:
                    time.sleep(0.2)
                self.assertGreater(restarted.reranks(), 0, "the restarted %s got no traffic" % name)
                served[name + "2"] = restarted.reranks()
            time.sleep(0.5)
        finally:
            traffic.stop()
            channel.close()
        self.assertEqual(traffic.errors, [], "requests failed during the rolling restart")
        self.assertGreater(traffic.ok, 100)
        print("rolling restart: %d requests, 0 failed; served per instance: %s"
              % (traffic.ok, served))


if __name__ == "__main__":
    unittest.main(verbosity=2)
