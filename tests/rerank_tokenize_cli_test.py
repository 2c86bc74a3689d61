#!/usr/bin/env python3
"""End-to-end test of the rerank-tokenize CLI.

Pipes every (query, document) of tokenizer-golden/scifact_and_edge_cases.jsonl through the binary,
once per max_length, and requires the exact golden ids; then checks error handling (bad lines are
reported with their line number and field, output stays aligned, exit status 1) and usage errors.
The vocab (third_party/) and the gzipped golden file (tests/testdata/) are in the repository; a
missing one fails the test with its path.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys

FAILURES = []


def check(cond, message):
    if not cond:
        FAILURES.append(message)
        print("FAIL: " + message, file=sys.stderr)


def run(binary, args, stdin_bytes):
    return subprocess.run([binary] + args, input=stdin_bytes, capture_output=True, timeout=120)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--vocab", required=True, help="vendored MiniLM vocab.txt")
    parser.add_argument("--golden", required=True, help="scifact_and_edge_cases.jsonl.gz")
    opts = parser.parse_args()
    vocab, golden = opts.vocab, opts.golden
    missing_files = [p for p in (vocab, golden) if not os.path.isfile(p)]
    if missing_files:
        print("FAIL: missing vendored file(s): " + ", ".join(missing_files), file=sys.stderr)
        return 1

    with gzip.open(golden, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    by_length = {}
    for row in rows:
        by_length.setdefault(row["max_length"], []).append(row)

    # 1. Golden parity through the CLI.
    matched = 0
    for max_length, group in sorted(by_length.items()):
        stdin = "".join(json.dumps({"query": r["query"], "document": r["document"]}) + "\n"
                        for r in group).encode("utf-8")
        proc = run(opts.binary, ["--vocab", vocab, "--max-length", str(max_length)], stdin)
        check(proc.returncode == 0, "max_length %d: exit %d, stderr %r" %
              (max_length, proc.returncode, proc.stderr[:500]))
        out = proc.stdout.decode("utf-8").splitlines()
        check(len(out) == len(group),
              "max_length %d: %d output lines for %d inputs" % (max_length, len(out), len(group)))
        for i, (r, line) in enumerate(zip(group, out)):
            got = json.loads(line)
            if got == {"input_ids": r["input_ids"], "token_type_ids": r["token_type_ids"]}:
                matched += 1
            else:
                check(False, "max_length %d line %d differs: got %s want %s" %
                      (max_length, i + 1, line[:200], r["input_ids"][:30]))
    print("golden via CLI: %d/%d lines match exactly" % (matched, len(rows)))
    check(matched == len(rows) == 1830, "golden via CLI: %d/%d" % (matched, len(rows)))

    # 2. Bad lines: reported with line number and field; output stays aligned; exit status 1.
    good = json.dumps({"query": "How many people live in Berlin?",
                       "document": "Berlin is well known for its museums."}).encode()
    lines = [
        good,                                                      # 1
        b'{"query": "x", "document": ',                            # 2 bad JSON
        b'{"query": "x"}',                                         # 3 missing document
        b'{"query": 5, "document": "y"}',                          # 4 query not a string
        b'{"query": "ok", "document": "bad \xff\xfe byte"}',       # 5 invalid UTF-8
        b'["query", "document"]',                                  # 6 not an object
        b'{"query": "a", "document": "\\ud800"}',                  # 7 lone surrogate escape
        good,                                                      # 8
    ]
    proc = run(opts.binary, ["--vocab", vocab, "--max-length", "32"], b"\n".join(lines) + b"\n")
    stderr = proc.stderr.decode("utf-8", "replace")
    out = proc.stdout.decode("utf-8").splitlines()
    check(proc.returncode == 1, "bad lines: exit %d, want 1" % proc.returncode)
    check(len(out) == len(lines), "bad lines: %d output lines, want %d" % (len(out), len(lines)))
    if len(out) == len(lines):
        parsed = [json.loads(o) for o in out]
        check("input_ids" in parsed[0] and parsed[0] == parsed[7], "good lines around bad ones")
        check(parsed[0]["input_ids"][:2] == [101, 2129], "good line ids: %s" % parsed[0])
        for n in range(2, 8):
            check(set(parsed[n - 1]) == {"error"} and ("line %d:" % n) in parsed[n - 1]["error"],
                  "line %d: want an error object naming the line, got %s" % (n, out[n - 1]))
    for expected in ['line 2: invalid JSON',
                     'line 3: field "document": missing',
                     'line 4: field "query": expected a string',
                     'line 5: field "document": invalid UTF-8 at byte offset 33',
                     'line 6: expected a JSON object',
                     'line 7: invalid JSON']:
        check(expected in stderr, "stderr lacks %r:\n%s" % (expected, stderr))
    check("line 1:" not in stderr and "line 8:" not in stderr, "good lines reported as errors")

    # 3. Usage.
    proc = run(opts.binary, ["--help"], b"")
    check(proc.returncode == 0 and b"Usage: rerank-tokenize" in proc.stdout, "--help")
    proc = run(opts.binary, ["--max-length", "32"], b"")
    check(proc.returncode == 2 and b"--vocab is required" in proc.stderr, "missing --vocab")
    proc = run(opts.binary, ["--vocab", vocab, "--max-length", "2"], b"")
    check(proc.returncode == 2 and b"--max-length" in proc.stderr, "--max-length 2")
    missing = os.path.join(os.path.dirname(os.path.abspath(vocab)), "no/such/vocab.txt")
    proc = run(opts.binary, ["--vocab=" + missing], b"")
    check(proc.returncode == 2 and missing.encode() in proc.stderr, "missing vocab file")

    if FAILURES:
        print("%d failure(s)" % len(FAILURES), file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
