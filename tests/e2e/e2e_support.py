"""End-to-end support: a lab of one control plane, N workers and one more worker that add-node
joins later, the local artifact mirror, and inventories for the cluster with and without that node.

The VMs run what `lab up` gives a machine without the release hosts: the lab's local artifact mirror
(kubestrap/lab/mirror.py: kubeadm, kubelet, the control plane as static pods from preloaded images, containerd,
runc, CNI plugins, all built from their Go modules by kubestrap/lab/sources/build.py) with the settings `lab up`
writes for it (Cilium and every add-on off: their images cannot be had here; KUBESTRAP_E2E_ADDONS=on is refused,
see ADDONS below), CoreDNS and kube-proxy on the lab's own bridge CNI.

N is KUBESTRAP_E2E_WORKERS (default 1); 3 gives the reference layout (1 control plane + 3 workers,
plus the 5th VM for add-node). CI runs N=1, no extended scenarios, to fit its 60-minute budget on two
cores under TCG (scripts/test); `scripts/test --full` runs the reference layout with the extended scenarios."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fixtures import artifact_mirror, node_apt_repo  # noqa: E402

from kubestrap.lab import mirror as lab_mirror  # noqa: E402

LAB = "e2e"
CP = f"{LAB}-cp"
WORKER_COUNT = int(os.environ.get("KUBESTRAP_E2E_WORKERS", "1"))
# The add-ons on the VMs: only "off" (the default) runs. With real helm on the nodes, every add-on needs its chart
# repository and its images, and neither can be had here; the add-on phase is tested by pytest instead
# (tests/addons/test_addons_phase.py: every add-on with real helm against a real API server, fixture charts).
ADDONS = os.environ.get("KUBESTRAP_E2E_ADDONS", "off") != "off"
WORKERS = [f"{LAB}-worker{i}" for i in range(1, WORKER_COUNT + 1)]
NEW_NODE = f"{LAB}-worker{WORKER_COUNT + 1}"
# Bound of one bootstrap.py command (a hang guard, not a speed assertion). TCG VMs share two cores,
# so each node gets a smaller share as the lab grows while there is more work: a fresh `up` grew
# about with the square of the node count (measured: 1 cp + 1 worker 1093 s; 1 cp + 3 workers
# 5302 s, 2026-12-02). 50 min for N=1, 200 min for the reference layout.
CLI_TIMEOUT = 750 * (WORKER_COUNT + 1) ** 2
# Where the VMs' apt finds Debian packages: "local" (default) a small repository of what node_prep installs,
# standing for a site's own mirror (tests/fixtures/node_apt_repo.py: Debian's full index costs each VM
# minutes under TCG); "debian" the Debian archive the lab image was built from.
APT_SOURCE = os.environ.get("KUBESTRAP_E2E_APT", "local")


@dataclass
class Cluster:
    work: Path
    main: Path  # inventory without NEW_NODE
    full: Path  # inventory with NEW_NODE
    env: dict[str, str]
    image_tar: Path  # the mirror's busybox OCI image, for `ctr images import` on a node
    overrides: dict[str, Any] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    name: str = LAB  # the lab's name (its VMs are <name>-cp, <name>-worker<i>)
    spare: tuple[str, ...] = (NEW_NODE,)  # VMs of the lab left out of the main inventory (add-node joins them)

    @property
    def kubelet_version(self) -> str:
        """The kubelet version the nodes report: the mirror's kubelet (upstream: the version built)."""
        return "v" + str(self.overrides["kubestrap_artifacts"]["kubelet"]["version"])

    def kubectl(self, *argv: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
        """Real kubectl on the controller with the fetched admin kubeconfig (through the lab's forwarded API port)."""
        kubeconfig = Path(self.env["KUBESTRAP_SECRETS_DIR"]) / "lab" / "admin.conf"
        return subprocess.run([kubectl_binary(), "--kubeconfig", str(kubeconfig), *argv], capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip

    def write_inventories(self) -> None:
        """(Re)write both inventories from the lab's current hosts.yml (a restarted VM may have new ports)."""
        lab_hosts = ROOT / ".lab" / self.name / "hosts.yml"
        _inventory(self.main, lab_hosts, self.overrides, set(self.spare))
        _inventory(self.full, lab_hosts, self.overrides, set())

    def _ssh_base(self, host: str, tool: str) -> list[str]:
        hosts = yaml.safe_load((self.full / "hosts.yml").read_text())["all"]["children"]["k8s_cluster"]["children"]
        hv = next(group["hosts"][host] for group in hosts.values() if host in group["hosts"])
        port_flag = "-p" if tool == "ssh" else "-P"
        return [
            tool,
            "-q",
            "-i",
            hv["ansible_ssh_private_key_file"],
            port_flag,
            str(hv["ansible_port"]),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
        ]

    def ssh(self, host: str, *argv: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        """Run argv as root on a lab node (real SSH, like Ansible)."""
        return subprocess.run(
            [*self._ssh_base(host, "ssh"), "root@127.0.0.1", "--", *argv], capture_output=True, text=True, timeout=timeout
        )

    def copy_to(self, host: str, src: Path, dest: str) -> None:
        proc = subprocess.run(
            [*self._ssh_base(host, "scp"), str(src), f"root@127.0.0.1:{dest}"], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr

    def cli(
        self, *args: str, inventory: Path | None = None, timeout: int = CLI_TIMEOUT, check: bool = True
    ) -> tuple[int, dict[str, Any], str]:
        """Run bootstrap.py COMMAND -i INV --json; return (exit code, summary, stderr)."""
        command = [sys.executable, str(ROOT / "bootstrap.py"), *args, "-i", str(inventory or self.main), "--json"]
        proc = subprocess.run(command, capture_output=True, text=True, env=self.env, cwd=ROOT, timeout=timeout)
        try:
            summary = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except json.JSONDecodeError:
            summary = {"raw": proc.stdout}
        self.log.append({"args": args, "rc": proc.returncode, "seconds": summary.get("seconds")})
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
        return proc.returncode, summary, proc.stderr

    def lab(self, *args: str) -> dict[str, Any]:
        # the local mirror, as `lab up` chooses it on a machine without the release hosts (asked, not probed)
        choice = ["--artifacts", "local"] if args[:1] == ("up",) else []
        proc = subprocess.run(
            [sys.executable, "-m", "kubestrap.lab", *args, *choice, "--name", self.name],
            capture_output=True, text=True, cwd=ROOT, timeout=1800,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
        return json.loads(proc.stdout) if "--json" in args else {}

    def kill_vm(self, name: str) -> None:
        vms = {vm["name"]: vm for vm in self.lab("status", "--json")["vms"]}
        os.kill(int(vms[name]["pid"]), signal.SIGKILL)


def kubectl_binary() -> str:
    """The kubectl built from k8s.io/kubernetes (kubestrap/lab/sources/build.py), the version the mirror serves."""
    from k8s_real import upstream_dir

    return str(upstream_dir("kubernetes") / "kubectl")


def _inventory(path: Path, lab_hosts: Path, overrides: dict[str, Any], drop: set[str]) -> Path:
    hosts = yaml.safe_load(lab_hosts.read_text())
    groups = hosts["all"]["children"]["k8s_cluster"]["children"]
    for group in groups.values():
        for name in drop:
            group["hosts"].pop(name, None)
    (path / "group_vars").mkdir(parents=True, exist_ok=True)
    (path / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    settings = yaml.safe_load((ROOT / "inventories" / "lab" / "group_vars" / "k8s_cluster" / "lab.yml").read_text())
    settings.update(overrides)
    (path / "group_vars" / "k8s_cluster.yml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def _point_apt_at_local_repo(c: Cluster, stack: contextlib.ExitStack, vms: list[str]) -> None:
    """Every VM's apt reads only the local repository (built for the VMs' own dpkg status and sources)."""
    status = c.ssh(vms[0], "cat", "/var/lib/dpkg/status")
    sources = c.ssh(vms[0], "cat", "/etc/apt/sources.list")
    route = c.ssh(vms[0], "ip", "route", "show", "default")
    assert status.returncode == sources.returncode == route.returncode == 0, status.stderr + sources.stderr + route.stderr
    gateway = route.stdout.split()[2]  # "default via 10.0.2.2 dev ...": the controller, seen from the VM
    port = stack.enter_context(node_apt_repo.served(node_apt_repo.build(status.stdout, sources.stdout)))
    line = node_apt_repo.sources_line(gateway, port).strip()
    for name in vms:
        done = c.ssh(name, f"rm -f /etc/apt/sources.list.d/* && echo '{line}' > /etc/apt/sources.list")
        assert done.returncode == 0, f"{name}: {done.stderr}"


def keep_runs(runs: Path, name: str, keep: str | None = None) -> Path | None:
    """Copy the lab's run journals (events, per-phase timings, summaries; secrets already redacted) to
    KUBESTRAP_E2E_KEEP_RUNS/<name>, outside pytest's basetemp, which pytest removes: scripts/test keeps CI's there,
    outside the clone, for `bench/cluster_bench.py --from-runs`. The lock and the fact cache are left out."""
    target = os.environ.get("KUBESTRAP_E2E_KEEP_RUNS", "") if keep is None else keep
    if not target or not runs.is_dir():
        return None
    dest = Path(target) / name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(runs, dest, ignore=shutil.ignore_patterns("locks", "facts", "latest"), symlinks=True)
    return dest


def start_cluster(tmp_path_factory: Any, name: str = LAB, workers: int = WORKER_COUNT, spare: bool = True,
                  kubernetes: str = "pin") -> Any:
    """A lab *name* of one control plane and *workers* workers (plus one more VM for add-node when *spare*) and
    the inventories for it; *kubernetes* "previous" forms the cluster at the minor before the pin (the mirror's
    previous variant, kubestrap/lab/mirror.py), for the upgrade test."""
    if ADDONS:
        raise RuntimeError(
            "KUBESTRAP_E2E_ADDONS=on cannot run: the VMs run real helm, and the add-ons' chart repositories and "
            "images cannot be had here (the lab is offline). The add-on phase is covered by pytest "
            "(tests/addons/test_addons_phase.py: every add-on with real helm against a real API server and fixture "
            "charts). Unset KUBESTRAP_E2E_ADDONS (or set it to off)."
        )
    work = tmp_path_factory.mktemp(name)
    made = artifact_mirror.build(log=lambda message: print(f"{name}: {message}", file=sys.stderr))
    env = dict(
        os.environ,
        KUBESTRAP_RUNS_DIR=str(work / "runs"),
        KUBESTRAP_SECRETS_DIR=str(work / "secrets"),
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    vms = [f"{name}-cp", *(f"{name}-worker{i}" for i in range(1, workers + 1 + int(spare)))]
    c = Cluster(work, work / "main", work / "full", env, made.image_tar, name=name, spare=tuple(vms[workers + 1:]))
    c.lab("up", "--workers", str(len(vms) - 1))
    # the settings `lab up --artifacts local` wrote beside the lab's inventory, as a user's `up` reads them
    c.overrides = yaml.safe_load((ROOT / ".lab" / name / "group_vars" / "k8s_cluster" / "local-mirror.yml").read_text())
    assert c.overrides["kubestrap_artifacts_base_url"] == made.mirror.base_url
    if kubernetes != "pin":
        previous, _ = lab_mirror.build(lambda message: print(f"{name}: {message}", file=sys.stderr), previous=True)
        c.overrides = previous.settings(kubernetes=kubernetes)
    c.write_inventories()
    try:
        with contextlib.ExitStack() as stack:
            if APT_SOURCE == "local":
                _point_apt_at_local_repo(c, stack, vms)
            yield c
    finally:
        keep_runs(work / "runs", name)
    (work / "e2e-log.json").write_text(json.dumps(c.log, indent=2))
    c.lab("down")
