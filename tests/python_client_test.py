#!/usr/bin/python3
"""End to end as a Python user sees rerankd: stubs generated from the published
proto/rerank/v1/reranker.proto with Debian's python3-grpcio/grpc-tools, the real `rerankd`
binary (fp32 here so the check is exact), and an independent scorer: the same TorchScript model
run from Python on the ids printed by `rerank-tokenize`. The server's top-5 must be exactly the
5 best documents by that independent score, in order.

Usage: python_client_test.py BUILD_DIR   (ctest passes it)
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
MODEL = os.path.join(BUILD, "testdata", "tiny_model")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate_stubs(out_dir):
    from grpc_tools import protoc
    rc = protoc.main(["protoc", f"-I{os.path.join(ROOT, 'proto')}", f"--python_out={out_dir}",
                      f"--grpc_python_out={out_dir}",
                      os.path.join(ROOT, "proto", "rerank", "v1", "reranker.proto")])
    if rc != 0:
        raise RuntimeError("protoc failed")
    sys.path.insert(0, out_dir)


DOCS = [
    "Berlin had a population of 3,520,031 registered inhabitants.",
    "Berlin is well known for its museums.",
    "Paris is the capital of France.",
    "The population of Berlin grew in the 1990s.",
    "How many people live in Berlin? About 3.7 million.",
    "Bananas are yellow.",
    "Germany's capital Berlin has many inhabitants.",
    "A quiet village with few people.",
]
QUERY = "How many people live in Berlin?"


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        generate_stubs(cls.tmp.name)
        cls.port = free_port()
        env = dict(os.environ,
                   RERANKER_MODEL_DIR=MODEL, RERANKER_PRECISION="fp32",
                   RERANKER_GRPC_LISTEN=f"127.0.0.1:{cls.port}", RERANKER_API_HTTP_LISTEN="",
                   RERANKER_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
                   RERANKER_ADMIN_GRPC_LISTEN=f"127.0.0.1:{free_port()}",
                   RERANKER_FLAGS_FILE=os.path.join(cls.tmp.name, "flags.yaml"),
                   RERANKER_AUDIT_LOG=os.path.join(cls.tmp.name, "audit.jsonl"),
                   RERANKER_WORKERS="1", RERANKER_INTRA_OP_THREADS="1", OPENBLAS_NUM_THREADS="1")
        cls.log = open(os.path.join(cls.tmp.name, "rerankd.log"), "w+")
        cls.proc = subprocess.Popen([os.path.join(BUILD, "app", "rerankd")], env=env,
                                    stdout=cls.log, stderr=subprocess.STDOUT)
        import grpc
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{cls.port}")
        grpc.channel_ready_future(cls.channel).result(timeout=60)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.proc.terminate()
        rc = cls.proc.wait(timeout=30)
        cls.log.seek(0)
        log = cls.log.read()
        cls.tmp.cleanup()
        if rc != 0:
            raise AssertionError(f"rerankd exited {rc} on SIGTERM:\n{log}")

    def independent_scores(self):
        """Scores of (QUERY, doc) from Python torch on rerank-tokenize's ids, one pair at a time."""
        import torch
        lines = "".join(json.dumps({"query": QUERY, "document": d}) + "\n" for d in DOCS)
        out = subprocess.run([os.path.join(BUILD, "tools", "rerank-tokenize"), "--vocab",
                              os.path.join(MODEL, "vocab.txt"), "--max-length", "128"],
                             input=lines, capture_output=True, text=True, check=True).stdout
        # The model calls the fused ops (torch.ops.rerank.*): register them in this process.
        torch.ops.load_library(os.path.join(BUILD, "server", "fused_ops",
                                            "librerank_fused_ops.so"))
        model = torch.jit.load(os.path.join(MODEL, "model.pt")).eval()
        scores = []
        with torch.no_grad():
            for line in out.splitlines():
                enc = json.loads(line)
                ids = torch.tensor([enc["input_ids"]])
                types = torch.tensor([enc["token_type_ids"]])
                scores.append(float(model(ids, torch.ones_like(ids), types)[0]))
        return scores

    def test_rerank_returns_correctly_ordered_top5(self):
        from rerank.v1 import reranker_pb2 as pb
        from rerank.v1 import reranker_pb2_grpc as pb_grpc
        stub = pb_grpc.RerankerStub(self.channel)
        req = pb.RerankRequest(query=QUERY, client_id="python-test",
                               documents=[pb.Document(id=f"doc{i}", text=t) for i, t in enumerate(DOCS)])
        resp = stub.Rerank(req, timeout=30)
        self.assertTrue(resp.reranked)
        self.assertEqual(len(resp.results), 5)
        expected = self.independent_scores()
        want = sorted(range(len(DOCS)), key=lambda i: (-expected[i], i))[:5]
        self.assertEqual([r.index for r in resp.results], want)
        for r in resp.results:
            self.assertEqual(r.id, f"doc{r.index}")
            self.assertAlmostEqual(r.score, expected[r.index], delta=1e-4)
        print("top-5:", [(r.index, round(r.score, 4)) for r in resp.results])

    def test_bad_input_is_invalid_argument_naming_the_field(self):
        import grpc
        from rerank.v1 import reranker_pb2 as pb
        from rerank.v1 import reranker_pb2_grpc as pb_grpc
        stub = pb_grpc.RerankerStub(self.channel)
        with self.assertRaises(grpc.RpcError) as ctx:
            stub.Rerank(pb.RerankRequest(query="q"), timeout=30)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("documents", ctx.exception.details())


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]], verbosity=2)
