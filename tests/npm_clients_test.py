#!/usr/bin/python3
"""Real clients against the real rerankd binary's HTTP data plane: the Cohere TypeScript SDK
(`cohere-ai`: CohereClientV2 and the v1 CohereClient), LangChain JS's CohereRerank
(`@langchain/cohere`), a TEI call with Node's fetch (tests/npm_clients/clients.mjs), and the
README's `curl` examples, extracted from README.md between the http-examples markers so the test
runs exactly what the README shows.

The npm packages are pinned by tests/npm_clients/package.json + package-lock.json and installed
with `npm ci --ignore-scripts` into BUILD_DIR/npm-clients (outside the source tree), once per lock
file: reruns reuse the install. Node and npm come from Debian (deploy/install_deps.sh); the
registry must be reachable on the first run. Nothing is skipped: a missing node or npm fails.

Usage: npm_clients_test.py BUILD_DIR   (ctest passes it)
"""
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
MODEL = os.path.join(BUILD, "testdata", "tiny_model")
PACKAGE_DIR = os.path.join(ROOT, "tests", "npm_clients")
INSTALL_DIR = os.path.join(BUILD, "npm-clients")
README_HOST = "localhost:8080"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_npm_clients():
    """`npm ci` into INSTALL_DIR unless the same lock file is already installed there."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise AssertionError(f"{tool} not found: run deploy/install_deps.sh (Debian nodejs, npm)")
    with open(os.path.join(PACKAGE_DIR, "package-lock.json"), "rb") as f:
        lock = f.read()
    stamp_path = os.path.join(INSTALL_DIR, ".installed-lock-sha256")
    digest = hashlib.sha256(lock).hexdigest()
    if os.path.exists(stamp_path) and open(stamp_path).read() == digest and \
            os.path.isdir(os.path.join(INSTALL_DIR, "node_modules")):
        return
    os.makedirs(INSTALL_DIR, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(PACKAGE_DIR, name), os.path.join(INSTALL_DIR, name))
    subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=INSTALL_DIR,
                   check=True, timeout=600)
    with open(stamp_path, "w") as f:
        f.write(digest)


def readme_examples():
    """The curl commands between the README's http-examples markers, one per line."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    m = re.search(r"<!-- http-examples:begin -->(.*?)<!-- http-examples:end -->", text, re.S)
    if m is None:
        raise AssertionError("README.md: no http-examples markers")
    return [line.strip() for line in m.group(1).splitlines() if line.strip().startswith("curl ")]


class NpmClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        install_npm_clients()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.port = free_port()
        cls.base = f"http://127.0.0.1:{cls.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKER_")}
        env.update(RERANKER_MODEL_DIR=MODEL, RERANKER_PRECISION="fp32",
                   RERANKER_GRPC_LISTEN=f"127.0.0.1:{free_port()}",
                   RERANKER_API_HTTP_LISTEN=f"127.0.0.1:{cls.port}",
                   RERANKER_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
                   RERANKER_ADMIN_GRPC_LISTEN="",
                   RERANKER_RATE_LIMIT_ENABLED="false",
                   RERANKER_FLAGS_FILE=os.path.join(cls.tmp.name, "flags.yaml"),
                   RERANKER_AUDIT_LOG=os.path.join(cls.tmp.name, "audit.jsonl"),
                   RERANKER_WORKERS="1", RERANKER_INTRA_OP_THREADS="1", OPENBLAS_NUM_THREADS="1")
        cls.log = open(os.path.join(cls.tmp.name, "rerankd.log"), "w+")
        cls.proc = subprocess.Popen([os.path.join(BUILD, "app", "rerankd")], env=env,
                                    stdout=cls.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(cls.base + "/openapi.json", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if cls.proc.poll() is not None or time.time() > deadline:
                cls.log.seek(0)
                raise AssertionError("rerankd's HTTP API did not come up:\n" + cls.log.read())
            time.sleep(0.1)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        rc = cls.proc.wait(timeout=30)
        cls.log.seek(0)
        log = cls.log.read()
        cls.log.close()
        cls.tmp.cleanup()
        if rc != 0:
            raise AssertionError(f"rerankd exited {rc} on SIGTERM:\n{log}")

    def test_cohere_sdk_langchain_and_tei_fetch(self):
        env = dict(os.environ, NODE_PATH=os.path.join(INSTALL_DIR, "node_modules"))
        # The script runs from the install folder so that its imports resolve there.
        script = os.path.join(INSTALL_DIR, "clients.mjs")
        shutil.copy(os.path.join(PACKAGE_DIR, "clients.mjs"), script)
        out = subprocess.run(["node", script, self.base], env=env, capture_output=True,
                             text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        self.assertTrue(summary["ok"])
        self.assertEqual(len(summary["checks"]), 4, summary)

    def test_readme_curl_examples(self):
        examples = readme_examples()
        self.assertEqual(len(examples), 3)
        for example in examples:
            self.assertIn(README_HOST, example)
            command = example.replace(README_HOST, f"127.0.0.1:{self.port}")
            # -w appends the status on its own line; the example's output is what precedes it.
            args = shlex.split(command) + ["-w", "\n%{http_code}"]
            out = subprocess.run(args, capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            body, _, status = out.stdout.rpartition("\n")
            self.assertEqual(status, "200", f"{example}\n-> {out.stdout}")
            answer = json.loads(body)
            results = answer if isinstance(answer, list) else answer["results"]
            self.assertGreater(len(results), 0, example)
            for r in results:
                self.assertIn("index", r)
                # Every example asks for the texts back.
                text = r["text"] if isinstance(answer, list) else r["document"]["text"]
                self.assertTrue(text, example)
            scores = [r["score"] if isinstance(answer, list) else r["relevance_score"]
                      for r in results]
            self.assertEqual(scores, sorted(scores, reverse=True), example)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
