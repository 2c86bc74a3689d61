"""Helpers shared by the rerankctl driver tests: locating binaries and scripts, running them."""
import os
import socket
import subprocess

SOURCE_DIR = os.environ.get(
    "RERANK_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("RERANK_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
RERANKCTL = os.environ.get("RERANKCTL", os.path.join(BUILD_DIR, "tools", "rerankctl"))
RERANKD = os.environ.get("RERANKD", os.path.join(BUILD_DIR, "app", "rerankd"))
DEPLOY_DIR = os.path.join(SOURCE_DIR, "deploy")

# The rollout stages, in order (common/feature_flags.cc StageNames()).
STAGES = ["feature-flags", "cache-10", "cache-50", "cache-100", "full", "rollback", "disabled"]


def clean_env(**extra):
    """The test's environment without RERANKER_* variables (they would change what rerankctl and
    rerankd read), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANKER_")}
    env["RERANKCTL"] = RERANKCTL
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(args, env=None, timeout=60, cwd=None):
    """Runs a command; returns CompletedProcess with text stdout/stderr."""
    return subprocess.run(args, env=env if env is not None else clean_env(), cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


def rerankctl(*args, env=None, timeout=60):
    return run([RERANKCTL, *args], env=env, timeout=timeout)


def script(name, *args, env=None, timeout=60, cwd=None):
    return run(["bash", os.path.join(DEPLOY_DIR, name), *args], env=env, timeout=timeout, cwd=cwd)


def free_port():
    """A port that was free a moment ago (bind to 0, read it, close). A subprocess server cannot
    report a port-0 bind back to the test, so this is the usual compromise; the tiny race with
    other processes is acceptable on a test machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def describe(proc):
    return "rc=%d\n--- stdout\n%s--- stderr\n%s" % (proc.returncode, proc.stdout, proc.stderr)
