"""A cluster of the kubeadm / kubelet / kube-apiserver contract doubles (tests/doubles/kubeadm) on this
machine, for tests that drive it with REAL kubectl 1.36 (Debian's build, from the test artifact mirror):
tests/test_doubles.py, tests/test_apiserver_double.py and the add-on tests (the session-scoped
`control_plane` fixture of tests/conftest.py).

A "node" is a temporary root directory (KUBESTRAP_DOUBLE_ROOT); the configs are the ones kubestrap's
roles render. systemd is not available here: `kubeadm` restarts the kubelet with `systemctl`, so each
node gets a test-side stand-in for systemctl (below) that starts the kubelet double with exactly the
command line of roles/kube_binaries/templates/10-kubeadm.conf.j2 (its Environment=, EnvironmentFile= and
ExecStart= lines), so a flag the drop-in passes and the real kubelet would refuse fails here too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import yaml
from fixtures.artifact_mirror import root_dir as mirror_root
from helpers import ROOT, render_configs

DOUBLES = ROOT / "tests" / "doubles"
DROPIN = ROOT / "roles" / "kube_binaries" / "templates" / "10-kubeadm.conf.j2"

# A stand-in for systemd's systemctl (systemd 252, Debian 12) for ONE unit, kubelet.service, as
# kubestrap installs it. Supports what kubeadm calls (daemon-reload, restart, stop) plus start and
# is-active; anything else fails like systemctl does for an unknown unit or verb.
SYSTEMCTL = r'''#!/usr/bin/env python3
"""Test stand-in for systemctl (systemd 252) managing kubelet.service from the kubeadm drop-in."""
import os, re, shlex, signal, subprocess, sys, time
ROOT = os.environ["KUBESTRAP_DOUBLE_ROOT"]
DROPIN = os.environ["KUBESTRAP_TEST_DROPIN"]
BIN = os.environ["KUBESTRAP_TEST_BIN"]
PIDFILE = ROOT + "/run/kubelet.pid"

def running():
    try:
        pid = int(open(PIDFILE).read())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None

def stop():
    pid = running()
    if pid:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.killpg(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
    if os.path.exists(PIDFILE):
        os.unlink(PIDFILE)

def env_file(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = shlex.split(value)[0] if value else ""
    return out

def command():
    text = open(DROPIN).read().replace("{{ kube_binaries_bin_dir }}", BIN)
    env, execs = {}, []
    for line in text.splitlines():
        if line.startswith("Environment="):
            key, value = shlex.split(line[len("Environment="):])[0].split("=", 1)
            env[key] = value
        elif line.startswith("EnvironmentFile="):
            path = line[len("EnvironmentFile="):]
            optional = path.startswith("-")
            path = path.lstrip("-")
            if os.path.exists(ROOT + path):
                env.update(env_file(ROOT + path))
            elif not optional:
                sys.exit(f"Failed to load environment files: {path}")
        elif line.startswith("ExecStart="):
            execs = [line[len("ExecStart="):]] if line[len("ExecStart="):] else []
    argv = []
    for word in execs[-1].split():
        if word.startswith("$"):
            argv.extend(env.get(word[1:], "").split())
        else:
            argv.append(word)
    return argv

def start():
    if running():
        return
    log = open(ROOT + "/var/log/kubelet.log", "ab")
    proc = subprocess.Popen(command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    open(PIDFILE, "w").write(str(proc.pid))

args = sys.argv[1:]
with open(ROOT + "/var/log/systemctl.calls", "a") as calls:
    calls.write(" ".join(args) + "\n")
if args == ["daemon-reload"]:
    sys.exit(0)
if len(args) != 2 or args[1] not in ("kubelet", "kubelet.service"):
    sys.exit(f"Unit {args[-1] if args else ''} not found (test stand-in manages kubelet.service only)")
verb = args[0]
if verb == "restart":
    stop(); start()
elif verb == "start":
    start()
elif verb == "stop":
    stop()
elif verb == "is-active":
    print("active" if running() else "inactive")
    sys.exit(0 if running() else 3)
else:
    sys.exit(f"Unknown command verb {verb}.")
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class CRISocket:
    """A unix socket at the containerd path that accepts connections (what the doubles probe)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # a unix socket path is limited to 107 bytes and pytest's tmp paths under xdist exceed it:
        # bind through the directory's /proc/self/fd link, which keeps the name short
        dir_fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
        try:
            self.sock.bind(f"/proc/self/fd/{dir_fd}/{path.name}")
        finally:
            os.close(dir_fd)
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class Node:
    """A node as a temporary root directory for the doubles."""

    def __init__(self, base: Path, name: str) -> None:
        self.name = name
        self.root = base / name
        self.bin = self.root / "usr" / "local" / "bin"
        self.bin.mkdir(parents=True)
        for program in ("kubeadm", "kubelet"):
            (self.bin / program).symlink_to(DOUBLES / program)
        systemctl = self.bin / "systemctl"
        systemctl.write_text(SYSTEMCTL)
        systemctl.chmod(0o755)
        for sub in ("proc/sys/net/ipv4", "var/log", "run", "etc", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "proc/sys/net/ipv4/ip_forward").write_text("1\n")
        (self.root / "proc/swaps").write_text("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
        (self.root / "etc/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
        self.cri = CRISocket(self.root / "run/containerd/containerd.sock")

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBESTRAP_DOUBLE_ROOT": str(self.root),
            "KUBESTRAP_TEST_DROPIN": str(DROPIN),
            "KUBESTRAP_TEST_BIN": str(self.bin),
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "HOME": str(self.root / "home"),
        }

    def path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def kubeadm(self, *args: str, stdin: str = "", timeout: float = 400) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "kubeadm"), *args], capture_output=True, text=True, env=self.env(),
                              input=stdin, timeout=timeout)  # fmt: skip

    def kubelet_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.path("/run/kubelet.pid").read_text())
            os.kill(pid, 0)
            return pid
        return None

    def logs(self) -> str:
        out = []
        for log in [self.path("/var/log/kubelet.log"), *self.root.glob("var/log/pods/*/*/0.log")]:
            if log.exists():
                out.append(f"--- {log.relative_to(self.root)}\n{log.read_text()[-4000:]}")
        return "\n".join(out)

    def stop(self) -> None:
        """The kubelet (and the static control plane it runs) stopped as systemd would, then the CRI socket closed."""
        if self.kubelet_pid():
            subprocess.run([str(self.bin / "systemctl"), "stop", "kubelet"], capture_output=True, env=self.env(), timeout=30)
        self.cri.close()


def find_kubectl() -> str:
    """Real kubectl 1.36: $KUBESTRAP_TEST_KUBECTL, the test mirror's Debian build, or one on PATH."""
    candidates = [os.environ.get("KUBESTRAP_TEST_KUBECTL", "")]
    mirror = mirror_root()
    candidates += sorted(str(p) for p in mirror.glob("apt/trees/kubectl_1.36*/usr/bin/kubectl"))
    candidates += [shutil.which("kubectl") or ""]
    for candidate in filter(None, candidates):
        done = subprocess.run([candidate, "version", "--client"], capture_output=True, text=True, check=False)
        if re.search(r"Client Version: v1\.36\.", done.stdout):
            return candidate
    from fixtures.artifact_mirror import build

    mirror_build = build()[0]
    found = sorted(mirror_build.www.rglob("kubectl"))
    assert found, "the test artifact mirror has no kubectl"
    return str(found[0])


def render(tmp: Path, port: int) -> dict[str, list]:
    """The role templates rendered for a cluster on 127.0.0.1:<port> (homelab inventory)."""
    return render_configs(tmp, "-e", "node_ip=127.0.0.1", "-e", "cluster_api_endpoint=127.0.0.1",
                          "-e", f"cluster_api_port={port}")


def dump(docs: list) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


class Cluster:
    """A control-plane node (and the workers tests add) of the doubles, configured as kubestrap renders it."""

    def __init__(self, base: Path, kubectl: str) -> None:
        self.base = base
        self.kubectl_bin = kubectl
        self.port = free_port()
        self.files = render(base / "render", self.port)
        self.cp = Node(base, "k8s-cp")
        self.workers: list[Node] = []
        self.healthz = free_port()
        docs = self.files["k8s-cp-kubeadm-config.yaml"]
        # test-only deviation: the kubelet health port must not clash between the "nodes" sharing this machine
        next(d for d in docs if d["kind"] == "KubeletConfiguration")["healthzPort"] = self.healthz
        self.config_path = self.cp.path("/etc/kubernetes/kubestrap/kubeadm-config.yaml")
        self.config_path.parent.mkdir(parents=True)
        self.config_path.write_text(dump(docs))
        for name, dest in (("k8s-cp-encryption-config.yaml", "/etc/kubernetes/encryption/config.yaml"),
                           ("k8s-cp-audit-policy.yaml", "/etc/kubernetes/audit/policy.yaml"),
                           ("k8s-cp-admission-config.yaml", "/etc/kubernetes/admission/config.yaml")):  # fmt: skip
            self.cp.path(dest).parent.mkdir(parents=True, exist_ok=True)
            self.cp.path(dest).write_text(dump(self.files[name]))
        self.init = None

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig `kubeadm init` wrote."""
        return self.cp.path("/etc/kubernetes/admin.conf")

    @property
    def home(self) -> str:
        """$HOME for kubectl (its discovery cache) and the programs the tests run against this cluster."""
        return str(self.base / "kubectl-home")

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": self.home}, input=stdin,
        )  # fmt: skip
        if check:
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stdout}{done.stderr}\n{self.cp.logs()}"
        return done

    def nodes(self) -> dict[str, dict]:
        return {n["metadata"]["name"]: n for n in json.loads(self.kubectl("get", "nodes", "-o", "json").stdout)["items"]}

    def join_config(self, node: Node, token: str, ca_hash: str, healthz: int) -> Path:
        docs = self.files[f"{node.name}-kubeadm-join.yaml"]
        join = docs[0]
        join["discovery"]["bootstrapToken"]["token"] = token
        join["discovery"]["bootstrapToken"]["caCertHashes"] = [ca_hash]
        join["timeouts"]["discovery"] = "10s"
        patches = node.path("/etc/kubernetes/kubestrap/patches")
        patches.mkdir(parents=True, exist_ok=True)
        (patches / "kubeletconfiguration+merge.yaml").write_text(f"healthzPort: {healthz}\n")
        join["patches"] = {"directory": "/etc/kubernetes/kubestrap/patches"}
        path = node.path("/etc/kubernetes/kubestrap/kubeadm-join.yaml")
        path.write_text(dump(docs))
        return path

    def stop(self) -> None:
        for node in [self.cp, *self.workers]:
            node.stop()



@contextlib.contextmanager
def started(base: Path, kubectl: str | None = None) -> Iterator[Cluster]:
    """A control plane brought up by `kubeadm init` with the rendered config; kubelet and API server stop on exit."""
    cluster = Cluster(base, kubectl or find_kubectl())
    try:
        cluster.init = cluster.cp.kubeadm("init", "--config", "/etc/kubernetes/kubestrap/kubeadm-config.yaml")
        assert cluster.init.returncode == 0, cluster.init.stdout + cluster.init.stderr + cluster.cp.logs()
        yield cluster
    finally:
        cluster.stop()
