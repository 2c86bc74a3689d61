#!/usr/bin/python3
"""helm/rerankd rendered by Helm's template engine (tests/helm/render: Go text/template + Sprig +
the values schema, built by the `helm_renderer` fixture) with the default values and with the
multi-replica example (ci/multi-replica-values.yaml), the output parsed as Kubernetes objects and
checked: named ports and the probes that use them, ConfigMap mounts and the files rerankd reads
from them, selectors that match the Pod labels, the drain window against the grace period,
CPU against workers x threads, the Secret, the Prometheus Operator objects built from the very
files of deploy/, and no empty required fields. The rendered rerankd.yaml must pass
`rerankd --check-config`; bad values must be refused naming the field.

Not checked here (no cluster, no helm binary): Kubernetes' own OpenAPI validation of the
objects, admission, and the behaviour of a real rollout.
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rerankctl_testlib import BUILD_DIR, RERANKD, SOURCE_DIR, clean_env  # noqa: E402

CHART = os.path.join(SOURCE_DIR, "helm", "rerankd")
MULTI = os.path.join(CHART, "ci", "multi-replica-values.yaml")
RENDER = os.environ.get("HELM_RENDER", os.path.join(BUILD_DIR, "tests", "helm-render"))
# Fields that may legitimately be empty strings.
EMPTY_ALLOWED = {("Secret", "data.token"), ("Deployment", "spec.template.spec.containers[0].readinessProbe.grpc.service")}


def render(*args, expect_ok=True):
    p = subprocess.run([RENDER, *args, CHART], capture_output=True, text=True, timeout=60)
    if not expect_ok:
        return p
    if p.returncode != 0:
        raise AssertionError("helm-render %s failed:\n%s" % (" ".join(args), p.stderr))
    docs = [d for d in yaml.safe_load_all(p.stdout) if d is not None]
    return docs


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, suffix=None):
    found = [d for d in by_kind(docs, kind) if suffix is None or d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, "%d %s%s objects" % (len(found), kind, " *" + suffix if suffix else "")
    return found[0]


def walk(value, path=""):
    """(path, leaf) for every leaf of a parsed document."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, "%s.%s" % (path, k) if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, "%s[%d]" % (path, i))
    else:
        yield path, value


def subset(small, big):
    return all(big.get(k) == v for k, v in small.items())


def rule_groups():
    groups = []
    for name in ("rerankd-recording.rules.yml", "rerankd-alerts.rules.yml"):
        with open(os.path.join(SOURCE_DIR, "deploy", "prometheus", "rules", name)) as f:
            groups += yaml.safe_load(f)["groups"]
    return groups


class ChartChecks:
    """Checks shared by every values scenario; `self.docs` is the rendered chart."""
    values_args = ()

    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(RENDER):
            raise AssertionError("%s not built (fixture helm_renderer: tests/helm/build.sh)" % RENDER)
        cls.docs = render(*cls.values_args)

    def deployment(self):
        return one(self.docs, "Deployment")

    def container(self):
        containers = self.deployment()["spec"]["template"]["spec"]["containers"]
        self.assertEqual(len(containers), 1)
        return containers[0]

    def config(self):
        cm = one(self.docs, "ConfigMap", "-config")
        return yaml.safe_load(cm["data"]["rerankd.yaml"])

    def test_objects_are_well_formed_without_empty_fields(self):
        names = set()
        for d in self.docs:
            for key in ("apiVersion", "kind"):
                self.assertTrue(d.get(key), d)
            name = d["metadata"]["name"]
            self.assertRegex(name, r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
            self.assertNotIn((d["kind"], name), names, "duplicate object")
            names.add((d["kind"], name))
            for path, leaf in walk(d):
                self.assertIsNotNone(leaf, "%s %s: %s is empty (null)" % (d["kind"], name, path))
                if leaf == "":
                    self.assertIn((d["kind"], path), EMPTY_ALLOWED, "%s %s: %s is \"\"" % (d["kind"], name, path))
            for k, v in d["metadata"].get("labels", {}).items():
                self.assertIsInstance(v, str, "label %s must be a string" % k)
                self.assertLessEqual(len(v), 63)

    def test_selectors_match_pod_labels(self):
        dep = self.deployment()
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(dep["spec"]["selector"]["matchLabels"])
        self.assertTrue(subset(dep["spec"]["selector"]["matchLabels"], pod_labels))
        services = by_kind(self.docs, "Service")
        self.assertEqual(len(services), 2)
        for svc in services:
            self.assertTrue(svc["spec"]["selector"])
            self.assertTrue(subset(svc["spec"]["selector"], pod_labels), svc["metadata"]["name"])
        pdb = one(self.docs, "PodDisruptionBudget")
        self.assertTrue(subset(pdb["spec"]["selector"]["matchLabels"], pod_labels))
        for hpa in by_kind(self.docs, "HorizontalPodAutoscaler"):
            ref = hpa["spec"]["scaleTargetRef"]
            self.assertEqual((ref["apiVersion"], ref["kind"], ref["name"]),
                             ("apps/v1", "Deployment", dep["metadata"]["name"]))
            self.assertGreaterEqual(hpa["spec"]["minReplicas"], 2)
            self.assertGreaterEqual(hpa["spec"]["maxReplicas"], hpa["spec"]["minReplicas"])
            self.assertNotIn("replicas", dep["spec"], "the HPA owns the replica count")

    def test_named_ports_and_the_services_that_use_them(self):
        c = self.container()
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(set(ports), {"grpc", "api", "http", "admin"})
        config = self.config()
        self.assertEqual(config["server"]["listen"], "0.0.0.0:%d" % ports["grpc"])
        self.assertEqual(config["server"]["http_listen"], "0.0.0.0:%d" % ports["api"])
        self.assertEqual(config["admin"]["http_listen"], "0.0.0.0:%d" % ports["http"])
        self.assertEqual(config["admin"]["grpc_listen"], "0.0.0.0:%d" % ports["admin"])
        main = [s for s in by_kind(self.docs, "Service") if s["spec"].get("clusterIP") != "None"]
        headless = [s for s in by_kind(self.docs, "Service") if s["spec"].get("clusterIP") == "None"]
        self.assertEqual((len(main), len(headless)), (1, 1))
        self.assertEqual({p["name"]: p["targetPort"] for p in main[0]["spec"]["ports"]},
                         {"grpc": "grpc", "api": "api", "http": "http", "admin": "admin"})
        self.assertEqual([p["targetPort"] for p in headless[0]["spec"]["ports"]], ["grpc"])
        self.assertFalse(headless[0]["spec"]["publishNotReadyAddresses"])

    def test_probes(self):
        c = self.container()
        names = {p["name"] for p in c["ports"]}
        live = c["livenessProbe"]["httpGet"]
        self.assertEqual((live["path"], live["port"]), ("/live", "http"))
        ready = c["readinessProbe"]
        if "grpc" in ready:
            # Native gRPC probe: a numeric port, the data port.
            grpc_port = [p["containerPort"] for p in c["ports"] if p["name"] == "grpc"][0]
            self.assertEqual(ready["grpc"]["port"], grpc_port)
        else:
            self.assertEqual((ready["httpGet"]["path"], ready["httpGet"]["port"]), ("/ready", "http"))
        startup = c["startupProbe"]
        self.assertEqual(startup["httpGet"]["path"], "/ready")
        self.assertIn(startup["httpGet"]["port"], names)
        # Model loading gets at least a few minutes before liveness may restart the Pod.
        self.assertGreaterEqual(startup["periodSeconds"] * startup["failureThreshold"], 180)

    def test_rolling_update_and_drain(self):
        dep = self.deployment()
        self.assertEqual(dep["spec"]["strategy"]["type"], "RollingUpdate")
        self.assertEqual(dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0)
        command = self.container()["lifecycle"]["preStop"]["exec"]["command"]
        self.assertEqual(command[0], "sleep")
        server = self.config()["server"]
        drain_s = (server["drain_grace_ms"] + server["drain_timeout_ms"]) / 1000
        self.assertGreater(server["drain_grace_ms"], 0, "not ready but still serving on SIGTERM")
        self.assertGreater(dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
                           int(command[1]) + drain_s)
        # Long-lived dns:/// clients re-resolve and reach new replicas.
        self.assertGreater(server["max_connection_age_ms"], 0)

    def test_resources_match_workers_times_threads(self):
        execution = self.config()["execution"]
        cores = execution["workers"] * execution["intra_op_threads"]
        r = self.container()["resources"]
        self.assertEqual(r["requests"]["cpu"], str(cores))
        self.assertEqual(r["limits"]["cpu"], str(cores))
        self.assertTrue(r["requests"]["memory"] and r["limits"]["memory"])

    def test_config_and_flags_come_from_mounted_configmaps(self):
        spec = self.deployment()["spec"]["template"]["spec"]
        c = self.container()
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        for m in c["volumeMounts"]:
            self.assertIn(m["name"], volumes)
        configmaps = {d["metadata"]["name"]: d for d in by_kind(self.docs, "ConfigMap")}

        def file_in_configmap(path):
            """The ConfigMap and key that serve `path` through a (subPath-free) mount."""
            for mount_path, m in mounts.items():
                if os.path.dirname(path) == mount_path:
                    vol = volumes[m["name"]]
                    self.assertIn("configMap", vol, path)
                    self.assertNotIn("subPath", m, "a subPath mount never sees ConfigMap updates")
                    cm = configmaps[vol["configMap"]["name"]]
                    self.assertIn(os.path.basename(path), cm["data"])
                    self.assertTrue(m.get("readOnly"))
                    return cm, os.path.basename(path)
            self.fail("%s is not under any mount" % path)
        args = c["args"]
        config_path = args[args.index("--config") + 1]
        cm, key = file_in_configmap(config_path)
        config = yaml.safe_load(cm["data"][key])
        flags_cm, flags_key = file_in_configmap(config["flags"]["path"])
        flags = yaml.safe_load(flags_cm["data"][flags_key])
        self.assertEqual(flags["stage"], self.expected_stage)
        # The audit log and a generated admin token go to the writable data volume.
        data_mount = os.path.dirname(config["audit"]["path"])
        self.assertIn(data_mount, mounts)
        self.assertIn("emptyDir", volumes[mounts[data_mount]["name"]])
        self.assertFalse(mounts[data_mount].get("readOnly"))
        self.assertEqual(os.path.dirname(config["admin"]["token_file"]), data_mount)
        # A config change restarts the Pods; a flags change must not.
        annotations = self.deployment()["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(annotations["checksum/config"],
                         hashlib.sha256(cm["data"][key].rstrip("\n").encode()).hexdigest())
        self.assertFalse([a for a in annotations if "flags" in a])

    def test_rendered_config_passes_rerankd_check_config(self):
        self.assertTrue(os.path.isfile(RERANKD), "%s not built" % RERANKD)
        env = clean_env()
        execution = self.config()["execution"]
        if execution["workers"] * execution["intra_op_threads"] > os.cpu_count():
            # rerankd checks workers x threads against this machine's cores, not the node's.
            env.update(RERANKER_WORKERS="1", RERANKER_INTRA_OP_THREADS="1")
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(one(self.docs, "ConfigMap", "-config")["data"]["rerankd.yaml"])
            f.flush()
            p = subprocess.run([RERANKD, "--config", f.name, "--check-config"], capture_output=True,
                               text=True, env=env, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_admin_token_from_a_secret(self):
        env = {e["name"]: e for e in self.container()["env"]}
        ref = env["RERANKER_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
        self.assertEqual(ref["key"], "token")
        self.assertEqual(ref["name"], self.expected_secret)
        secrets = {s["metadata"]["name"]: s for s in by_kind(self.docs, "Secret")}
        if self.expected_secret_rendered:
            self.assertIn("token", secrets[ref["name"]]["data"])
        else:
            self.assertNotIn(ref["name"], secrets)

    def test_pod_runs_as_non_root(self):
        spec = self.deployment()["spec"]["template"]["spec"]
        self.assertTrue(spec["securityContext"]["runAsNonRoot"])
        self.assertNotEqual(spec["securityContext"]["runAsUser"], 0)
        self.assertFalse(self.container()["securityContext"]["allowPrivilegeEscalation"])


class DefaultValuesTest(ChartChecks, unittest.TestCase):
    expected_stage = "feature-flags"
    expected_secret = "rerankd-admin-token"
    expected_secret_rendered = True

    def test_objects(self):
        kinds = sorted(d["kind"] for d in self.docs)
        self.assertEqual(kinds, sorted(["ConfigMap", "ConfigMap", "Secret", "Deployment", "Service",
                                        "Service", "HorizontalPodAutoscaler",
                                        "PodDisruptionBudget"]))
        secret = one(self.docs, "Secret")
        # Empty: each Pod generates its own token into admin.token_file.
        self.assertEqual(base64.b64decode(secret["data"]["token"]), b"")

    def test_without_autoscaling_the_deployment_sets_replicas(self):
        docs = render("--set", "autoscaling.enabled=false", "--set", "replicaCount=3")
        self.assertEqual(one(docs, "Deployment")["spec"]["replicas"], 3)
        self.assertFalse(by_kind(docs, "HorizontalPodAutoscaler"))

    def test_a_stage_change_touches_only_the_flags_configmap(self):
        staged = render("--set", "rollout.stage=cache-10")
        before = {(d["kind"], d["metadata"]["name"]): d for d in self.docs}
        after = {(d["kind"], d["metadata"]["name"]): d for d in staged}
        self.assertEqual(set(before), set(after))
        changed = sorted(k for k in before if before[k] != after[k])
        self.assertEqual(changed, [("ConfigMap", "rerankd-flags")])
        flags = yaml.safe_load(after[("ConfigMap", "rerankd-flags")]["data"]["flags.yaml"])
        self.assertEqual((flags["stage"], flags["cache"]["enabled"], flags["cache"]["traffic_percent"]),
                         ("cache-10", True, 10))

    def test_bad_values_are_refused_naming_the_field(self):
        for args, field in [
                (["--set", "rollout.stage=cache-20"], "rollout.stage"),
                (["--set", "ports.grpc=70000"], "ports.grpc"),
                (["--set", "execution.workers=0"], "execution.workers"),
                (["--set", "flags.cache.trafficPercent=150"], "flags.cache.trafficPercent"),
                (["--set", "rollout.stag=full"], "rollout"),  # a typo: unknown key
                (["--set", "probes.readiness.type=tcp"], "probes.readiness.type"),
                (["--set", "terminationGracePeriodSeconds=12"], "terminationGracePeriodSeconds"),
                (["--set", "flags.overfetch.topN=30"], "flags.overfetch.topN"),
                (["--set", "adminToken.token=short"], "adminToken.token")]:
            p = render(*args, expect_ok=False)
            self.assertNotEqual(p.returncode, 0, args)
            self.assertIn(field, p.stderr, args)

    def test_optional_monitoring_objects_are_off_by_default(self):
        for kind in ("ServiceMonitor", "PrometheusRule"):
            self.assertFalse(by_kind(self.docs, kind))


class MultiReplicaValuesTest(ChartChecks, unittest.TestCase):
    values_args = ("--name", "search-rerank", "-f", MULTI)
    expected_stage = "cache-10"
    expected_secret = "search-rerank-admin"
    expected_secret_rendered = False

    def test_objects(self):
        kinds = sorted(d["kind"] for d in self.docs)
        self.assertEqual(kinds, sorted(["ConfigMap", "ConfigMap", "ConfigMap", "Deployment",
                                        "Service", "Service", "HorizontalPodAutoscaler",
                                        "PodDisruptionBudget", "ServiceMonitor",
                                        "PrometheusRule"]))

    def test_hpa_scales_on_cpu_and_queue_depth(self):
        hpa = one(self.docs, "HorizontalPodAutoscaler")
        metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
        self.assertEqual(metrics["Resource"]["resource"]["name"], "cpu")
        self.assertEqual(metrics["Pods"]["pods"]["metric"]["name"], "rerank_queue_pairs")
        self.assertEqual(hpa["spec"]["minReplicas"], 3)

    def test_model_from_the_volume_claim(self):
        spec = self.deployment()["spec"]["template"]["spec"]
        claim = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
        self.assertEqual(len(claim), 1)
        mount = [m for m in self.container()["volumeMounts"] if m["name"] == claim[0]["name"]][0]
        self.assertTrue(mount["readOnly"])
        self.assertTrue(self.config()["model"]["dir"].startswith(mount["mountPath"] + "/"))
        # User config keys merge under the chart's.
        self.assertEqual(self.config()["rerank"]["max_documents"], 500)

    def test_service_monitor_scrapes_the_admin_port_of_the_main_service(self):
        sm = one(self.docs, "ServiceMonitor")
        endpoint = sm["spec"]["endpoints"][0]
        self.assertEqual(endpoint["path"], "/metrics")
        main, headless = sorted(by_kind(self.docs, "Service"),
                                key=lambda s: s["spec"].get("clusterIP") == "None")
        self.assertIn(endpoint["port"], [p["name"] for p in main["spec"]["ports"]])
        selector = sm["spec"]["selector"]

        def selects(svc):
            labels = svc["metadata"]["labels"]
            return subset(selector["matchLabels"], labels) and all(
                e["key"] not in labels for e in selector["matchExpressions"]
                if e["operator"] == "DoesNotExist")
        self.assertTrue(selects(main))
        self.assertFalse(selects(headless), "the headless Service would duplicate every target")
        # The alert rules select up{job="rerankd"}.
        self.assertIn({"action": "replace", "targetLabel": "job", "replacement": "rerankd"},
                      endpoint["relabelings"])

    def test_prometheus_rule_and_dashboard_are_the_files_of_deploy(self):
        # One source: the chart's files/ are links to deploy/.
        for rel, target in [
                ("files/prometheus/rerankd-recording.rules.yml", "deploy/prometheus/rules/rerankd-recording.rules.yml"),
                ("files/prometheus/rerankd-alerts.rules.yml", "deploy/prometheus/rules/rerankd-alerts.rules.yml"),
                ("files/grafana/rerankd.json", "deploy/grafana/dashboards/rerankd.json")]:
            self.assertTrue(os.path.islink(os.path.join(CHART, rel)), rel)
            self.assertEqual(os.path.realpath(os.path.join(CHART, rel)),
                             os.path.realpath(os.path.join(SOURCE_DIR, target)))
        self.assertEqual(one(self.docs, "PrometheusRule")["spec"]["groups"], rule_groups())
        dashboard = one(self.docs, "ConfigMap", "-dashboard")
        with open(os.path.join(SOURCE_DIR, "deploy", "grafana", "dashboards", "rerankd.json")) as f:
            self.assertEqual(dashboard["data"]["rerankd.json"], f.read().rstrip("\n"))
        json.loads(dashboard["data"]["rerankd.json"])
        self.assertEqual(dashboard["metadata"]["labels"]["grafana_dashboard"], "1")


if __name__ == "__main__":
    unittest.main(verbosity=2)
