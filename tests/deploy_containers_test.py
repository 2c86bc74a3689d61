#!/usr/bin/python3
"""The container files, checked without a Docker engine (none runs here):
  - docker-compose.yml validates with Debian's `docker-compose config` (and a broken copy does
    not), with the services, mounts and volumes the monitoring stack needs;
  - .env.example lists exactly the environment variables common/config.cc reads, each at its
    built-in default (deploy/rerankd.example.yaml, which config_test keeps equal to the code);
  - the Dockerfile: bookworm, multi-stage, non-root, HEALTHCHECK on /ready at the admin port it
    opens, the model directory and data/ as volumes, and a runtime package list that covers the
    shared libraries the built rerankd and rerankctl actually link;
  - fly.toml parses (tomllib) and agrees with the Dockerfile (health check, volume, ports).
What is not checked: that `docker build` succeeds and the containers run (no engine).

Needs docker-compose (deploy/install_test_tools.sh); the package check needs the built binaries.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rerankctl_testlib import RERANKCTL, RERANKD, SOURCE_DIR  # noqa: E402

# Libraries every Debian image has (libc6, the GCC runtime).
BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}


def env_table():
    """(variable, config key) pairs of common/config.cc's EnvTable()."""
    with open(os.path.join(SOURCE_DIR, "common", "config.cc")) as f:
        src = f.read()
    body = re.search(r"EnvTable\(\) \{(.*?)\n\}", src, re.S).group(1)
    pairs = re.findall(r'\{"([A-Z0-9_]+)",\s*"([a-z0-9_.]+)"\}', body)
    assert pairs, "no EnvTable entries found in common/config.cc"
    return pairs


def example_default(key):
    """The documented default of a config key (deploy/rerankd.example.yaml), as env text."""
    with open(os.path.join(SOURCE_DIR, "deploy", "rerankd.example.yaml")) as f:
        value = yaml.safe_load(f)
    for part in key.split("."):
        value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_env_file(path):
    """{variable: (value, active)} of `VAR=value` lines and commented `# VAR=value` lines."""
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(\S*)\s*$", line)
            if m:
                assert m.group(2) not in out, "%s listed twice" % m.group(2)
                out[m.group(2)] = (m.group(3), m.group(1) is None)
    return out


def dockerfile_stages():
    """[(from_line, name, [(instruction, args)])] with continuation lines joined."""
    with open(os.path.join(SOURCE_DIR, "Dockerfile")) as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            stages.append((m.group(1), m.group(2), []))
        else:
            stages[-1][2].append((instr, args.strip()))
    return stages


def final_stage_args(instr):
    """Arguments of every `instr` instruction of the Dockerfile's last stage."""
    return [a for i, a in dockerfile_stages()[-1][2] if i == instr]


def packages_of(binary):
    """Debian packages that own the shared libraries `binary` links directly (DT_NEEDED)."""
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]",
                        subprocess.run(["readelf", "-d", binary], capture_output=True, text=True,
                                       check=True).stdout)
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    resolved = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
    # The dynamic loader is listed by its path alone ("/lib64/ld-linux-x86-64.so.2 (0x...)"); it
    # is NEEDED when a library linked in (e.g. libgomp for the fused ops) uses its TLS symbols.
    for path in re.findall(r"^\s*(/\S+) \(0x", ldd, re.M):
        resolved.setdefault(os.path.basename(path), path)
    packages = set()
    for lib in needed:
        path = os.path.realpath(resolved[lib])
        # Merged /usr: the package may have registered either spelling.
        candidates = [path, path[4:] if path.startswith("/usr/") else "/usr" + path]
        for p in candidates:
            r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
            if r.returncode == 0:
                packages.add(r.stdout.split(":")[0])
                break
        else:
            raise AssertionError("no package owns %s (%s)" % (lib, path))
    return packages


class ComposeTest(unittest.TestCase):
    def compose_config(self, compose_text=None):
        """`docker-compose config` in a scratch project dir: the real files, .env from
        .env.example. Returns (rc, output)."""
        exe = shutil.which("docker-compose")
        if exe is None:
            raise AssertionError("docker-compose not installed: run deploy/install_test_tools.sh")
        with tempfile.TemporaryDirectory() as d:
            for name in ("Dockerfile", "deploy"):
                os.symlink(os.path.join(SOURCE_DIR, name), os.path.join(d, name))
            shutil.copy(os.path.join(SOURCE_DIR, ".env.example"), os.path.join(d, ".env"))
            if compose_text is None:
                os.symlink(os.path.join(SOURCE_DIR, "docker-compose.yml"),
                           os.path.join(d, "docker-compose.yml"))
            else:
                with open(os.path.join(d, "docker-compose.yml"), "w") as f:
                    f.write(compose_text)
            p = subprocess.run([exe, "config"], cwd=d, capture_output=True, text=True,
                               timeout=120)
            return p.returncode, p.stdout + p.stderr

    def test_compose_config_validates(self):
        rc, out = self.compose_config()
        self.assertEqual(rc, 0, out)
        config = yaml.safe_load(out)
        services = config["services"]
        self.assertEqual(set(services), {"rerankd", "prometheus", "alertmanager", "grafana"})
        rerankd = services["rerankd"]
        # env_file applied: the .env values reach the container.
        self.assertEqual(rerankd["environment"]["RERANKER_PRECISION"], "bf16")
        # Flag variables are commented out: a set one would be forced over the flags file.
        self.assertNotIn("RERANKER_RATE_LIMIT_PER_MINUTE", rerankd["environment"])
        self.assertNotIn("RERANKER_HTTP_LISTEN", rerankd["environment"])  # the image's 0.0.0.0
        def mounts(service):
            """{target: source}; docker-compose 1.x prints short "source:target:mode" strings."""
            out = {}
            for v in services[service]["volumes"]:
                if isinstance(v, str):
                    source, target = v.split(":")[:2]
                    out[target] = source
                else:
                    out[v["target"]] = v.get("source", "")
            return out
        self.assertEqual(mounts("rerankd").get("/srv/rerankd/data"), "rerankd-data")
        self.assertEqual(mounts("rerankd").get("/srv/rerankd/models"), "rerankd-models")
        self.assertEqual(rerankd["build"]["dockerfile"], "Dockerfile")
        self.assertTrue(mounts("prometheus")["/etc/prometheus"].endswith("deploy/prometheus"))
        self.assertTrue(mounts("alertmanager")["/etc/alertmanager"].endswith("deploy/alertmanager"))
        g = mounts("grafana")
        self.assertTrue(g["/etc/grafana/provisioning"].endswith("deploy/grafana/provisioning"))
        self.assertTrue(g["/var/lib/grafana/dashboards"].endswith("deploy/grafana/dashboards"))
        # Prometheus scrapes the compose service by name at the admin port the image opens.
        with open(os.path.join(SOURCE_DIR, "deploy", "prometheus", "prometheus.yml")) as f:
            prom = yaml.safe_load(f)
        self.assertEqual(prom["scrape_configs"][0]["static_configs"][0]["targets"], ["rerankd:8000"])
        self.assertEqual(prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"],
                         ["alertmanager:9093"])

    def test_compose_config_rejects_a_broken_file(self):
        with open(os.path.join(SOURCE_DIR, "docker-compose.yml")) as f:
            text = f.read()
        broken = text.replace("    stop_grace_period: 30s\n", "    stop_grace_period: [30]\n")
        self.assertNotEqual(broken, text)
        rc, out = self.compose_config(broken)
        self.assertNotEqual(rc, 0, out)


class EnvExampleTest(unittest.TestCase):
    def test_lists_every_variable_config_reads_at_its_default(self):
        table = env_table()
        listed = parse_env_file(os.path.join(SOURCE_DIR, ".env.example"))
        self.assertEqual(set(listed), {var for var, _ in table})
        for var, key in table:
            self.assertEqual(listed[var][0], example_default(key), "%s (%s)" % (var, key))
        # Commented out: the admin listen addresses (left to the image) and every flag variable
        # (a set one is forced over the flags file at each start, so none is set by default).
        flag_vars = {var for var, key in table if key.startswith("flags.initial.")}
        self.assertEqual({v for v, (_, active) in listed.items() if not active},
                         {"RERANKER_HTTP_LISTEN", "RERANKER_ADMIN_GRPC_LISTEN"} | flag_vars)


class DockerfileTest(unittest.TestCase):
    def setUp(self):
        self.stages = dockerfile_stages()
        self.final = self.stages[-1][2]

    def args(self, instr):
        return final_stage_args(instr)

    def env(self):
        env = {}
        for a in self.args("ENV"):
            env.update(dict(re.findall(r"(\w+)=(\S+)", a)))
        return env

    def test_bookworm_multi_stage_non_root(self):
        self.assertGreaterEqual(len(self.stages), 2)
        for image, _, _ in self.stages:
            self.assertRegex(image, r"^debian:bookworm(-slim)?$")
        names = {name for _, name, _ in self.stages if name}
        for instr, a in self.final:
            m = re.search(r"--from=(\S+)", a)
            if instr == "COPY" and m:
                self.assertIn(m.group(1), names)
        user = self.args("USER")
        self.assertTrue(user, "the final stage must set USER")
        self.assertNotIn(user[-1].split(":")[0], ("root", "0"))

    def test_healthcheck_on_ready_at_the_admin_port(self):
        env = self.env()
        port = env["RERANKER_HTTP_LISTEN"].rsplit(":", 1)[1]
        self.assertEqual(env["RERANKER_HTTP_LISTEN"].rsplit(":", 1)[0], "0.0.0.0")
        hc = self.args("HEALTHCHECK")
        self.assertEqual(len(hc), 1)
        self.assertIn("http://127.0.0.1:%s/ready" % port, hc[0])
        self.assertRegex(hc[0], r"--start-period=\d+")
        exposed = " ".join(self.args("EXPOSE")).split()
        for var in ("RERANKER_GRPC_LISTEN", "RERANKER_HTTP_LISTEN", "RERANKER_ADMIN_GRPC_LISTEN"):
            self.assertIn(env[var].rsplit(":", 1)[1], exposed, var)

    def test_model_and_data_are_volumes_where_the_defaults_point(self):
        workdir = self.args("WORKDIR")[-1]
        volumes = re.findall(r'"([^"]+)"', self.args("VOLUME")[0])
        # The built-in defaults are relative to the working directory.
        self.assertIn(os.path.join(workdir, os.path.dirname(example_default("audit.path"))), volumes)
        self.assertIn(os.path.join(workdir, os.path.dirname(example_default("flags.path"))), volumes)
        self.assertIn(os.path.join(workdir, os.path.dirname(example_default("model.dir"))), volumes)

    def test_runtime_packages_cover_the_linked_libraries(self):
        runtime = set()
        for a in self.args("RUN"):
            m = re.search(r"apt-get install (.*?)(&&|$)", a)
            if m:
                runtime |= {w for w in m.group(1).split() if not w.startswith("-")}
        for binary in (RERANKD, RERANKCTL):
            self.assertTrue(os.path.isfile(binary), "%s not built" % binary)
            missing = packages_of(binary) - runtime - BASE_PACKAGES
            self.assertFalse(missing, "%s links libraries from %s, not installed by the "
                             "Dockerfile's runtime stage" % (os.path.basename(binary), missing))


class FlyTomlTest(unittest.TestCase):
    def test_fly_toml_matches_the_image(self):
        with open(os.path.join(SOURCE_DIR, "fly.toml"), "rb") as f:
            fly = tomllib.load(f)
        self.assertTrue(fly["app"])
        self.assertTrue(os.path.isfile(os.path.join(SOURCE_DIR, fly["build"]["dockerfile"])))
        known = {var for var, _ in env_table()}
        self.assertLessEqual(set(fly["env"]), known)
        grpc_port = int(fly["env"]["RERANKER_GRPC_LISTEN"].rsplit(":", 1)[1])
        http_port = int(fly["env"]["RERANKER_HTTP_LISTEN"].rsplit(":", 1)[1])
        self.assertEqual([s["internal_port"] for s in fly["services"]], [grpc_port])
        self.assertTrue(any("tls" in p.get("handlers", []) and
                            p.get("tls_options", {}).get("alpn") == ["h2"]
                            for p in fly["services"][0]["ports"]), "gRPC needs TLS with ALPN h2")
        ready = [c for c in fly["checks"].values() if c["type"] == "http" and c["path"] == "/ready"]
        self.assertEqual(len(ready), 1)
        self.assertEqual(ready[0]["port"], http_port)
        self.assertEqual(fly["metrics"], {"port": http_port, "path": "/metrics"})
        volumes = re.findall(r'"([^"]+)"', final_stage_args("VOLUME")[0])
        self.assertEqual([m["destination"] for m in fly["mounts"]],
                         [v for v in volumes if v.endswith("/data")])
        # Longer than the drain window (server.drain_timeout_ms).
        self.assertEqual(fly["kill_signal"], "SIGTERM")
        self.assertGreater(fly["kill_timeout"] * 1000,
                           int(example_default("server.drain_timeout_ms")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
