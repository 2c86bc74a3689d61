#!/usr/bin/python3
"""deploy/prometheus and deploy/alertmanager with Debian's own tools: `promtool check config`,
`promtool check rules`, the promtool unit tests (`promtool test rules`), `amtool check-config`;
and the alert contract: the guide's alerts exist, each has a severity, a summary, a description
and a runbook_url whose anchor is a section of docs/OPERATIONS.md, and the unit tests show each one
firing and quiet (before its `for:` where it has one, and with no traffic at all).

Needs prometheus and prometheus-alertmanager (deploy/install_test_tools.sh).
"""
import os
import re
import shutil
import subprocess
import sys
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rerankctl_testlib import SOURCE_DIR  # noqa: E402

PROM_DIR = os.path.join(SOURCE_DIR, "deploy", "prometheus")
ALERTS = os.path.join(PROM_DIR, "rules", "rerankd-alerts.rules.yml")
RECORDING = os.path.join(PROM_DIR, "rules", "rerankd-recording.rules.yml")
UNIT_TESTS = os.path.join(PROM_DIR, "tests", "rerankd-alerts.test.yml")
OPERATIONS = os.path.join(SOURCE_DIR, "docs", "OPERATIONS.md")

# The deployment guide's alerts and the additions.
EXPECTED_ALERTS = {
    "RerankHighLatency", "RerankHighP95Latency", "RerankHighP99Latency", "RerankLowCacheHitRate",
    "RerankHighErrorRate", "RerankRateLimitSpike", "RerankInstanceDown", "RerankNotReady",
    "RerankAuditEventsDropped", "RerankFlagsFileInvalid",
}


def tool(name):
    path = shutil.which(name)
    if path is None:
        raise AssertionError("%s not installed: run deploy/install_test_tools.sh" % name)
    return path


def run(*args):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=120, cwd=SOURCE_DIR)
    return p.returncode, p.stdout


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def github_anchors(markdown_path):
    """The anchors GitHub generates for a Markdown file's headings."""
    anchors = set()
    with open(markdown_path) as f:
        for line in f:
            m = re.match(r"#{1,6}\s+(.*?)\s*$", line)
            if m:
                slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
                anchors.add(slug)
    return anchors


def duration_minutes(text):
    m = re.fullmatch(r"(\d+)([smh])", text)
    assert m, text
    return int(m.group(1)) * {"s": 1 / 60, "m": 1, "h": 60}[m.group(2)]


class PrometheusFilesTest(unittest.TestCase):
    def test_promtool_check_config_and_rules(self):
        rc, out = run(tool("promtool"), "check", "config", "deploy/prometheus/prometheus.yml")
        self.assertEqual(rc, 0, out)
        self.assertIn("2 rule files found", out)  # the rule_files glob finds both files
        rc, out = run(tool("promtool"), "check", "rules", RECORDING, ALERTS)
        self.assertEqual(rc, 0, out)

    def test_promtool_unit_tests(self):
        rc, out = run(tool("promtool"), "test", "rules", UNIT_TESTS)
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS", out)

    def test_amtool_check_config(self):
        rc, out = run(tool("amtool"), "check-config", "deploy/alertmanager/alertmanager.yml")
        self.assertEqual(rc, 0, out)

    def test_every_alert_has_severity_summary_description_and_runbook(self):
        anchors = github_anchors(OPERATIONS)
        alerts = [r for g in load(ALERTS)["groups"] for r in g["rules"]]
        self.assertEqual({a["alert"] for a in alerts}, EXPECTED_ALERTS)
        for a in alerts:
            name = a["alert"]
            self.assertIn(a["labels"].get("severity"), ("critical", "warning"), name)
            for key in ("summary", "description", "runbook_url"):
                self.assertTrue(a["annotations"].get(key, "").strip(), "%s: no %s" % (name, key))
            path, _, anchor = a["annotations"]["runbook_url"].partition("#")
            self.assertEqual(path, "docs/OPERATIONS.md", name)
            self.assertIn(anchor, anchors, "%s: no section #%s in docs/OPERATIONS.md" % (name, anchor))

    def test_guide_thresholds(self):
        alerts = {r["alert"]: r for g in load(ALERTS)["groups"] for r in g["rules"]}
        for name, expr, for_ in [
                ("RerankHighLatency", "job:rerank_request_duration_seconds:avg5m > 0.05", "5m"),
                ("RerankLowCacheHitRate", "job:rerank_cache_hit_ratio:rate5m < 0.2", "10m"),
                ("RerankHighErrorRate", "job:rerank_error_ratio:rate5m > 0.01", "5m"),
                ("RerankRateLimitSpike", "job:rerank_rate_limited_ratio:rate5m > 0.05", "5m"),
                ("RerankHighP95Latency", "job:rerank_request_duration_seconds:p95_5m > 0.05", "5m"),
                ("RerankHighP99Latency", "job:rerank_request_duration_seconds:p99_5m > 0.1", "5m")]:
            self.assertEqual(alerts[name]["expr"].strip(), expr, name)
            self.assertEqual(alerts[name]["for"], for_, name)

    def test_unit_tests_show_each_alert_firing_and_quiet(self):
        alerts = {r["alert"]: r for g in load(ALERTS)["groups"] for r in g["rules"]}
        tests = load(UNIT_TESTS)["tests"]
        firing, quiet_before = {}, {}
        for t in tests:
            for case in t.get("alert_rule_test", []):
                minutes = duration_minutes(case["eval_time"])
                name = case["alertname"]
                self.assertIn(name, alerts, "unit test of an unknown alert")
                if case.get("exp_alerts"):
                    firing.setdefault(name, []).append((t["name"], minutes))
                else:
                    quiet_before.setdefault(name, []).append((t["name"], minutes))
        for name, rule in alerts.items():
            self.assertIn(name, firing, "%s is never shown firing" % name)
            self.assertIn(name, quiet_before, "%s is never shown quiet" % name)
            if duration_minutes(rule.get("for", "0m")) > 0:
                # Quiet in the same scenario, earlier than it fires: the `for:` at work.
                self.assertTrue(any(q_test == f_test and q_min < f_min
                                    for f_test, f_min in firing[name]
                                    for q_test, q_min in quiet_before[name]),
                                "%s: no case quiet before its for: elapsed" % name)
        idle = [t for t in tests if t["name"].startswith("no traffic")]
        self.assertEqual(len(idle), 1)
        self.assertEqual({c["alertname"] for c in idle[0]["alert_rule_test"]
                          if not c.get("exp_alerts")}, set(alerts))


if __name__ == "__main__":
    unittest.main(verbosity=2)
