#!/usr/bin/python3
"""deploy/backup_audit.sh on a temporary directory: the active audit file (ending in a torn
line, as while rerankd appends) and its rotated files go into a dated .tar.gz with complete lines
only; unrelated files stay out; archives dated more than 90 days ago are deleted and younger
ones (and files that are not this script's archives) are kept; a second run the same second
gets its own archive; bad input fails with a message.
"""
import datetime
import gzip
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rerankctl_testlib import DEPLOY_DIR, clean_env  # noqa: E402

SCRIPT = os.path.join(DEPLOY_DIR, "backup_audit.sh")


def line(i, event="rerank"):
    return json.dumps({"timestamp": "2024-05-01T12:00:%02d.000Z" % i, "event_type": event}) + "\n"


class BackupAuditTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.data = os.path.join(self.tmp.name, "data")
        self.dest = os.path.join(self.tmp.name, "backups")
        os.makedirs(self.data)
        os.makedirs(self.dest)
        self.complete = line(1) + line(2, "flag_change") + line(3)
        self.write("reranker_audit.jsonl", self.complete + '{"timestamp":"2024-05-01T12:0')
        self.rotated = {"reranker_audit-20240501T120000-0000.jsonl": line(4) * 3,
                        "reranker_audit-20240502T080000-0001.jsonl": line(5)}
        for name, text in self.rotated.items():
            self.write(name, text)
        # rerankd gzips rotated files (audit.compress_rotated); a compression in progress
        # leaves a .gz.tmp, which is not a backup candidate.
        self.rotated_gz = {"reranker_audit-20240503T000000-0002.jsonl.gz": line(6) + line(7)}
        for name, text in self.rotated_gz.items():
            with gzip.open(os.path.join(self.data, name), "wt") as f:
                f.write(text)
        self.write("reranker_audit-20240503T000000-0003.jsonl.gz.tmp", "partial")
        self.write("flags.yaml", "stage: full\n")                  # not audit: left out
        self.write("reranker_audit.jsonl.swp", "editor junk\n")   # not rotated naming: left out
        today = datetime.datetime.now(datetime.timezone.utc).date()
        self.old = {}
        for days in (100, 91, 90, 30):
            name = "reranker_audit-backup-%s-020000.tar.gz" % (
                today - datetime.timedelta(days=days)).strftime("%Y%m%d")
            self.old[days] = name
            with open(os.path.join(self.dest, name), "wb") as f:
                f.write(b"old")
        with open(os.path.join(self.dest, "notes-20000101.tar.gz"), "wb") as f:
            f.write(b"someone else's")

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, text):
        with open(os.path.join(self.data, name), "w") as f:
            f.write(text)

    def run_script(self, *args):
        return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True,
                              env=clean_env(), cwd=self.tmp.name, timeout=60)

    def archives(self):
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
        return sorted(f for f in os.listdir(self.dest)
                      if f.startswith("reranker_audit-backup-" + today) and f.endswith(".tar.gz"))

    def test_backs_up_current_and_rotated_files_and_applies_retention(self):
        p = self.run_script("--audit-log", "data/reranker_audit.jsonl", "--dest", "backups")
        self.assertEqual(p.returncode, 0, p.stderr)
        new = self.archives()
        self.assertEqual(len(new), 1, os.listdir(self.dest))
        self.assertRegex(new[0], r"^reranker_audit-backup-\d{8}-\d{6}\.tar\.gz$")
        with tarfile.open(os.path.join(self.dest, new[0])) as tar:
            names = sorted(tar.getnames())
            contents = {n: tar.extractfile(n).read() for n in names}
        for n in names:
            raw = contents[n]
            contents[n] = (gzip.decompress(raw) if n.endswith(".gz") else raw).decode()
        self.assertEqual(names, sorted(["reranker_audit.jsonl", *self.rotated, *self.rotated_gz]))
        for name, text in self.rotated_gz.items():
            self.assertEqual(contents[name], text)
        self.assertEqual(contents["reranker_audit.jsonl"], self.complete)  # torn line cut
        for name, text in self.rotated.items():
            self.assertEqual(contents[name], text)
        for text in contents.values():
            for l in text.splitlines():
                json.loads(l)
        # The originals are untouched (rerankd keeps appending to the active file).
        with open(os.path.join(self.data, "reranker_audit.jsonl")) as f:
            self.assertTrue(f.read().endswith('{"timestamp":"2024-05-01T12:0'))
        # Retention: more than 90 days old is deleted; 90 days and younger, and files that are
        # not this script's archives, are kept.
        left = set(os.listdir(self.dest))
        self.assertNotIn(self.old[100], left)
        self.assertNotIn(self.old[91], left)
        self.assertIn(self.old[90], left)
        self.assertIn(self.old[30], left)
        self.assertIn("notes-20000101.tar.gz", left)
        self.assertFalse([f for f in left if f.startswith(".")], "staging left behind")
        self.assertIn("deleted 2 backup(s)", p.stdout)

        # A second run (the same second or not) gets its own archive.
        p = self.run_script("--audit-log", "data/reranker_audit.jsonl", "--dest", "backups")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(self.archives()), 2)

    def test_defaults_follow_the_environment_and_keep_days(self):
        env = clean_env(RERANKER_AUDIT_LOG=os.path.join(self.data, "reranker_audit.jsonl"),
                        AUDIT_BACKUP_DIR=self.dest)
        p = subprocess.run(["bash", SCRIPT, "--keep-days", "95"], capture_output=True, text=True,
                           env=env, cwd=self.tmp.name, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(self.archives()), 1)
        left = set(os.listdir(self.dest))
        self.assertNotIn(self.old[100], left)
        self.assertIn(self.old[91], left)

    def test_errors(self):
        p = self.run_script("--audit-log", "nowhere/reranker_audit.jsonl", "--dest", "backups")
        self.assertEqual(p.returncode, 1)
        self.assertIn("nowhere", p.stderr)
        os.makedirs(os.path.join(self.tmp.name, "empty"))
        p = self.run_script("--audit-log", "empty/reranker_audit.jsonl", "--dest", "backups")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no audit files", p.stderr)
        p = self.run_script("--keep-days", "ninety")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--keep-days", p.stderr)
        p = self.run_script("--frobnicate")
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown argument", p.stderr)
        self.assertEqual(self.archives(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
