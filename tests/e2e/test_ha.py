"""End-to-end, HA control plane (extended; not in CI's run): a lab of three control-plane VMs and one worker. `up`
with the first control plane and the worker behind the floating address (cluster_api_vip: keepalived + haproxy from
Debian's packages), then `add-node` of the second and the third control plane, one at a time (1 -> 3 on a running
cluster, each touching only the new node, the earlier control planes' keepalived/haproxy and the first one's token
and certificate step); `kubectl get nodes` through the VIP; then the control plane holding the VIP is stopped and the
API stays reachable through the VIP (kubectl on a surviving control plane, /healthz from the worker). The lab also
switches the etcd backup timer on and runs it once on the first control plane.

Lab concessions to two host cores under TCG (four VMs put the first control plane at a load average of 21-27 during
a join, the HA lab's runs 1-5): the VMs a command does not need are frozen (SIGSTOP of their qemu) while it runs and
let go on after it (during `up` the second and third control plane, during each add-node the worker and the control
planes still to come); and etcd runs with a longer heartbeat and election timeout (ETCD_TIMING) and the API server
with longer etcd health checks (API_SERVER_ETCD_CHECKS), both through kubeadm_init_extra_args as a user on slow
hardware would set them.

The VIP lives on the lab's VM switch, which the controller cannot reach (it reaches the VMs through forwarded
ports): every check through the VIP runs on a VM over SSH. Its own lab (`e2e-ha`), so it never shares VMs with
tests/e2e/test_cluster.py. The VMs' apt reads the local repository of node_prep's packages plus haproxy and
keepalived (tests/fixtures/node_apt_repo.py, its own cache entry). Each test builds on the ones before it (`-x`
stops at the first failure instead of growing the cluster from a failed step). Run:
    KUBESTRAP_TEST_PROGRAMS=upstream .venv/bin/pytest -x -q -p no:cacheprovider -m extended tests/e2e/test_ha.py
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import ADDONS, APT_SOURCE, ROOT, Cluster, _inventory
from fixtures import artifact_mirror, node_apt_repo

pytestmark = pytest.mark.extended

LAB = "e2e-ha"
CP, CP2, CP3 = f"{LAB}-cp", f"{LAB}-cp2", f"{LAB}-cp3"
WORKER = f"{LAB}-worker1"
CONTROL_PLANES = [CP, CP2, CP3]
# a free address of the lab's node network (10.77.0.0/24: the VMs get .10 up, MetalLB's pool is .200-.220)
VIP = "10.77.0.250"
LB_PORT = 8443  # cluster_api_lb_port's default: haproxy on every control plane, so on the VIP
# three control planes under TCG on two cores: a command gets longer than on the 1 cp + 1 worker lab
CLI_TIMEOUT = 6 * 3600
# after the VIP holder stops: keepalived moves the address within seconds, etcd (two of three members) elects a
# leader and the API servers answer again; under TCG this takes minutes
FAILOVER_SECONDS = 600
HA_PACKAGES = ["haproxy", "keepalived"]  # roles/api_lb/defaults/main.yml api_lb_packages
# etcd's heartbeat interval and election timeout (ms; etcd's defaults: 100 and 1000) for members emulated on shared
# cores, where a reply waits seconds for its guest to be scheduled: late heartbeats make a follower call an election,
# a pause of every write, while the second member catches up (kubeadm's join waits on it). etcd's tuning guide: the
# heartbeat about the members' round-trip time, the election timeout ten times that.
ETCD_TIMING = {"heartbeat-interval": "1000", "election-timeout": "10000"}
# ... and the API server's own etcd checks (in /healthz, /livez and /readyz; 2 s by default), which haproxy's health
# check reads: with two emulated members etcd answered in 1.5-4 s, every API server said 500 and haproxy took them all
# out, so the floating address answered no one (HA lab run 6, after the second control plane had joined)
API_SERVER_ETCD_CHECKS = {"etcd-healthcheck-timeout": "15s", "etcd-readycheck-timeout": "15s"}


class HACluster(Cluster):
    """tests/e2e/e2e_support.Cluster for the HA lab: `main` lists the first control plane and the worker, `full`
    every VM (the three control planes)."""

    def write_inventories(self) -> None:
        lab_hosts = ROOT / ".lab" / LAB / "hosts.yml"
        _inventory(self.main, lab_hosts, self.overrides, {CP2, CP3})
        _inventory(self.full, lab_hosts, self.overrides, set())

    def cli(self, *args: str, inventory: Path | None = None, timeout: int = CLI_TIMEOUT,
            check: bool = True) -> tuple[int, dict[str, Any], str]:
        return super().cli(*args, inventory=inventory, timeout=timeout, check=check)

    def lab(self, *args: str) -> dict[str, Any]:
        choice = ["--artifacts", "local"] if args[:1] == ("up",) else []
        proc = subprocess.run([sys.executable, "-m", "kubestrap.lab", *args, *choice, "--name", LAB],
                              capture_output=True, text=True, cwd=ROOT, timeout=3600)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
        return json.loads(proc.stdout) if "--json" in args else {}

    def kill_vm(self, name: str) -> None:
        os.kill(self.pids()[name], signal.SIGKILL)

    def pids(self) -> dict[str, int]:
        return {vm["name"]: int(vm["pid"]) for vm in self.lab("status", "--json")["vms"] if vm["pid"]}

    @contextlib.contextmanager
    def paused(self, names: list[str]) -> Iterator[None]:
        """The VMs *names* frozen (their qemu stopped with SIGSTOP) for the block, then let go on again: under TCG
        the two host cores then go to the VMs the block needs (see the module's docstring)."""
        pids = self.pids()
        stopped: list[int] = []
        try:
            for name in names:
                os.kill(pids[name], signal.SIGSTOP)
                stopped.append(pids[name])
            yield
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            for name in names[: len(stopped)]:
                self.set_clock(name)

    def set_clock(self, name: str) -> None:
        """The guest's clock set to the controller's after a freeze: the guest's clocksource may have wrapped while
        its qemu stood still (under TCG Linux often runs on acpi_pm or hpet, 24/32-bit counters), and a node whose
        clock lags would take the certificates the cluster issues now for not yet valid. The offset found is logged."""
        for _ in range(10):
            before = self.ssh(name, "date", "+%s.%N", timeout=120)
            if before.returncode == 0:
                offset = float(before.stdout) - time.time()
                done = self.ssh(name, "date", "-u", "-s", f"@{time.time():.3f}", timeout=120)
                assert done.returncode == 0, f"{name}: {done.stderr}"
                self.log.append({"thawed": name, "clock_offset_seconds": round(offset, 1)})
                return
            time.sleep(10)
        raise AssertionError(f"{name}: no SSH answer after its thaw: {before.stderr[-1000:]}")

    def holder(self, candidates: list[str]) -> list[str]:
        """The control planes among *candidates* that hold the VIP now (keepalived added it to their interface)."""
        found = []
        for name in candidates:
            done = self.ssh(name, "ip", "-o", "-4", "addr", "show", timeout=60)
            if done.returncode == 0 and f" {VIP}/" in done.stdout:
                found.append(name)
        return found

    def kubectl_via_vip(self, node: str, *argv: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
        """Real kubectl on a control plane with the admin kubeconfig kubeadm wrote there (its server: the VIP)."""
        return self.ssh(node, "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf",
                        "--server", f"https://{VIP}:{LB_PORT}", "--request-timeout=30s", *argv, timeout=timeout)  # fmt: skip


def _spec(path: Path) -> Path:
    """Three control-plane VMs (2 vCPUs each, preflight's minimum for a control plane) and one worker."""
    vms = [{"name": name, "role": "control_plane", "cpus": 2, "memory": 2048} for name in CONTROL_PLANES]
    vms.append({"name": WORKER, "role": "worker", "cpus": 1, "memory": 2048})
    path.write_text(json.dumps({"vms": vms}))
    return path


def _point_apt_at_local_repo(c: HACluster, stack: contextlib.ExitStack) -> None:
    """As e2e_support's, with haproxy and keepalived in the repository (a separate cache entry: the package list is
    part of its key, so the non-HA e2e's repository stays as it is)."""
    status = c.ssh(CP, "cat", "/var/lib/dpkg/status")
    sources = c.ssh(CP, "cat", "/etc/apt/sources.list")
    route = c.ssh(CP, "ip", "route", "show", "default")
    assert status.returncode == sources.returncode == route.returncode == 0, status.stderr + sources.stderr + route.stderr
    gateway = route.stdout.split()[2]
    packages = sorted({*node_apt_repo.node_prep_packages(), *HA_PACKAGES})
    port = stack.enter_context(node_apt_repo.served(node_apt_repo.build(status.stdout, sources.stdout, packages)))
    line = node_apt_repo.sources_line(gateway, port).strip()
    for name in [*CONTROL_PLANES, WORKER]:
        done = c.ssh(name, f"rm -f /etc/apt/sources.list.d/* && echo '{line}' > /etc/apt/sources.list")
        assert done.returncode == 0, f"{name}: {done.stderr}"


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    if ADDONS:
        raise RuntimeError("KUBESTRAP_E2E_ADDONS=on cannot run (see tests/e2e/e2e_support.py); unset it")
    work = tmp_path_factory.mktemp("e2e-ha")
    made = artifact_mirror.build(log=lambda message: print(f"e2e-ha: {message}", file=sys.stderr))
    env = dict(os.environ, KUBESTRAP_RUNS_DIR=str(work / "runs"), KUBESTRAP_SECRETS_DIR=str(work / "secrets"),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # fmt: skip
    c = HACluster(work, work / "one-control-plane", work / "three-control-planes", env, made.image_tar)
    try:
        c.lab("up", "--spec", str(_spec(work / "lab-spec.json")))
        c.overrides = yaml.safe_load((ROOT / ".lab" / LAB / "group_vars" / "k8s_cluster" / "local-mirror.yml").read_text())
        # the floating address as controlPlaneEndpoint from day one (the lab's own settings name the first control
        # plane's node_ip as cluster_api_endpoint: with a VIP it is left empty, so the endpoint is the VIP)
        c.overrides.update({"cluster_api_vip": VIP, "cluster_api_endpoint": "", "etcd_backup_timer": True,
                            "api_lb_backend_check_timeout": "20s"})  # longer than the API server's etcd check
        # etcd's raft timing for emulated members (see the module's docstring), beside the lab's other extra args
        lab = yaml.safe_load((ROOT / "inventories" / "lab" / "group_vars" / "k8s_cluster" / "lab.yml").read_text())
        c.overrides["kubeadm_init_extra_args"] = {**lab["kubeadm_init_extra_args"], "etcd": ETCD_TIMING,
                                                  "apiServer": API_SERVER_ETCD_CHECKS}  # fmt: skip
        c.write_inventories()
        with contextlib.ExitStack() as stack:
            if APT_SOURCE == "local":
                _point_apt_at_local_repo(c, stack)
            yield c
    finally:
        (work / "e2e-log.json").write_text(json.dumps(c.log, indent=2))
        c.lab("down")


def _eventually(what: str, probe: Callable[[], tuple[bool, str]], seconds: int = 600, every: int = 10) -> None:
    """Bounded wait for *probe* (ok, detail); fails naming *what* was awaited and the last detail."""
    deadline = time.monotonic() + seconds
    while True:
        ok, detail = probe()
        if ok:
            return
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s; last: {detail[-2000:]}"
        time.sleep(every)


def test_check_accepts_both_inventories(ha: HACluster):
    for inventory in (ha.main, ha.full):
        done = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), "check", "-i", str(inventory)],
                              capture_output=True, text=True, env=ha.env, cwd=ROOT, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_up_with_one_control_plane_behind_the_vip(ha: HACluster):
    with ha.paused([CP2, CP3]):  # not in this inventory yet
        _, summary, _ = ha.cli("up", inventory=ha.main)
    assert summary["result"] == "ok"
    assert ha.holder([CP]) == [CP]  # the only control plane holds the VIP
    for unit in ("haproxy", "keepalived"):
        done = ha.ssh(CP, "systemctl", "is-active", unit)
        assert done.stdout.strip() == "active", (unit, done.stdout, done.stderr)
    admin = ha.ssh(CP, "grep", "server:", "/etc/kubernetes/admin.conf")
    assert f"server: https://{VIP}:{LB_PORT}" in admin.stdout, admin.stdout
    nodes = ha.kubectl_via_vip(CP, "get", "nodes", "-o", "name")
    assert nodes.returncode == 0 and set(nodes.stdout.split()) == {f"node/{CP}", f"node/{WORKER}"}, nodes.stdout + nodes.stderr
    # the worker joined through the VIP
    kubelet = ha.ssh(WORKER, "grep", "server:", "/etc/kubernetes/kubelet.conf")
    assert f"https://{VIP}:{LB_PORT}" in kubelet.stdout, kubelet.stdout


def test_the_backup_timer_keeps_a_snapshot_on_the_first_control_plane(ha: HACluster):
    """etcd_backup_timer (on in this lab): `up` installed the timer; its service, started now instead of at the
    schedule, leaves one 0600 archive with the snapshot, the encryption configuration and the PKI in a 0700 dir."""
    timer = ha.ssh(CP, "systemctl", "is-active", "kubestrap-etcd-backup.timer")
    assert timer.stdout.strip() == "active", timer.stdout + timer.stderr
    ran = ha.ssh(CP, "systemctl", "start", "kubestrap-etcd-backup.service", timeout=900)  # oneshot: waits for it
    assert ran.returncode == 0, ran.stderr + ha.ssh(CP, "journalctl", "-u", "kubestrap-etcd-backup", "-n", "30").stdout
    modes = ha.ssh(CP, "sh", "-c", "'stat -c \"%a %n\" /var/backups/kubestrap /var/backups/kubestrap/*'")
    lines = modes.stdout.split("\n")
    assert lines[0] == "700 /var/backups/kubestrap", modes.stdout + modes.stderr
    archives = [line.split(" ", 1) for line in lines[1:] if line]
    assert len(archives) == 1 and archives[0][0] == "600", modes.stdout
    assert re.fullmatch(r"/var/backups/kubestrap/.+-etcd-\d{8}T\d{6}Z\.tar\.gz", archives[0][1]), archives
    listed = ha.ssh(CP, "tar", "-tzf", archives[0][1])
    assert {"etcd/snapshot.db", "encryption/config.yaml", "pki/ca.crt", "pki/etcd/ca.key"} <= set(listed.stdout.split()), (
        listed.stdout[-2000:] + listed.stderr)
    assert ha.ssh(WORKER, "systemctl", "cat", "kubestrap-etcd-backup.timer").returncode != 0  # on no other node


@pytest.mark.parametrize("new", [CP2, CP3])
def test_add_node_grows_the_control_plane_one_at_a_time(ha: HACluster, new: str):
    # the worker and the control planes still to come are frozen during the join (a lab concession, see the
    # module's docstring); the join cannot reach them then, so it also shows that it does not need them
    frozen = [WORKER, *CONTROL_PLANES[CONTROL_PLANES.index(new) + 1:]]
    with ha.paused(frozen):
        _, summary, _ = ha.cli("add-node", new, inventory=ha.full)
    assert summary["result"] == "ok"
    earlier = CONTROL_PLANES[: CONTROL_PLANES.index(new)]
    touched = set(summary["hosts"])
    # the new node, the earlier control planes' keepalived/haproxy (and the first one's token and certificate step);
    # not the worker, not a control plane listed after it
    assert touched <= {new, *earlier}, touched
    assert WORKER not in touched
    for phase in summary["phases"]:
        if phase["name"] != "join":
            assert set(phase["hosts"]) <= {new}, phase
    # joined as a control plane, behind the VIP, with the uploaded certificates gone again and no token left
    nodes = ha.kubectl_via_vip(CP, "get", "nodes", "-l", "node-role.kubernetes.io/control-plane", "-o", "name")
    assert set(nodes.stdout.split()) == {f"node/{n}" for n in [*earlier, new]}, nodes.stdout + nodes.stderr

    def etcd_members() -> tuple[bool, str]:  # the static pods' mirror pods appear once each kubelet reports them
        etcd = ha.kubectl_via_vip(CP, "-n", "kube-system", "get", "pods", "-l", "component=etcd", "-o", "name")
        return len(etcd.stdout.split()) == len(earlier) + 1, etcd.stdout + etcd.stderr
    _eventually(f"an etcd pod on each of {[*earlier, new]}", etcd_members)
    secret = ha.kubectl_via_vip(CP, "-n", "kube-system", "get", "secret", "kubeadm-certs", "-o", "name")
    assert secret.returncode != 0 and "NotFound" in secret.stderr, secret.stdout + secret.stderr
    tokens = ha.kubectl_via_vip(CP, "-n", "kube-system", "get", "secrets", "--field-selector",
                                "type=bootstrap.kubernetes.io/token", "-o", "name")  # fmt: skip
    assert tokens.returncode == 0 and tokens.stdout.strip() == "", tokens.stdout
    gone = ha.ssh(new, "sh", "-c", "'ls /etc/kubernetes/kubestrap/kubeadm-join.yaml 2>&1'")
    assert "No such file" in gone.stdout + gone.stderr
    admin = ha.ssh(new, "grep", "server:", "/etc/kubernetes/admin.conf")  # kubeadm wrote it, naming the VIP
    assert f"server: https://{VIP}:{LB_PORT}" in admin.stdout, admin.stdout
    # every control plane's haproxy now forwards to the new one too
    for name in [*earlier, new]:
        # one word per argument: ssh hands the remote shell one line, so a pattern with spaces is quoted for it
        config = ha.ssh(name, "grep", "-c", "'check verify none'", "/etc/haproxy/haproxy.cfg")
        assert config.stdout.strip() == "3", (name, config.stdout)  # the inventory's three control planes
    # the run journal holds no certificate key (kubeadm prints it as a flag, a config field or after "certificate key:")
    run = sorted(Path(ha.env["KUBESTRAP_RUNS_DIR"]).glob("*-add-node"))[-1]
    journal = "\n".join(p.read_text(errors="replace") for p in run.rglob("*") if p.is_file())
    leak = re.search(r"(certificate-key[ =]|certificateKey: ?\"?|certificate key:(\\n|\s)*)[0-9a-f]{64}", journal, re.I)
    assert leak is None, leak.group(0)[:40] if leak else ""


def test_kubectl_through_the_vip_sees_three_ready_control_planes(ha: HACluster):
    def ready() -> tuple[bool, str]:
        nodes = ha.kubectl_via_vip(CP2, "get", "nodes", "-o", "json")
        if nodes.returncode != 0:
            return False, nodes.stderr
        items = json.loads(nodes.stdout)["items"]
        names = {n["metadata"]["name"] for n in items
                 if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])}  # fmt: skip
        return names >= {*CONTROL_PLANES, WORKER}, f"Ready: {sorted(names)}"
    _eventually("every node Ready, read through the VIP from a joined control plane", ready, 900, 15)


def test_the_api_stays_reachable_through_the_vip_with_its_holder_stopped(ha: HACluster):
    holders = ha.holder(CONTROL_PLANES)
    assert holders == [CP], holders  # the first control plane has the highest priority
    ha.kill_vm(CP)
    survivors = [CP2, CP3]
    deadline = time.monotonic() + FAILOVER_SECONDS
    moved: list[str] = []
    while time.monotonic() < deadline:
        moved = ha.holder(survivors)
        nodes = ha.kubectl_via_vip(CP2, "get", "nodes", "-o", "name") if moved else None
        if nodes is not None and nodes.returncode == 0:
            break
        time.sleep(10)
    assert len(moved) == 1, f"the VIP is on {moved} after {FAILOVER_SECONDS} s"
    assert nodes is not None and nodes.returncode == 0, nodes.stderr if nodes else "no holder"
    assert {f"node/{n}" for n in [*CONTROL_PLANES, WORKER]} <= set(nodes.stdout.split())
    # kubectl from the other survivor and a plain HTTPS /healthz from the worker, both through the VIP
    other = ha.kubectl_via_vip(CP3, "get", "--raw", "/readyz")
    assert other.returncode == 0 and other.stdout.strip() == "ok", other.stdout + other.stderr
    probe = (f"import ssl, urllib.request; print(urllib.request.urlopen('https://{VIP}:{LB_PORT}/healthz', timeout=20, "
             "context=ssl._create_unverified_context()).read().decode())")  # fmt: skip
    healthz = ha.ssh(WORKER, "python3", "-c", f'"{probe}"')
    assert healthz.returncode == 0 and healthz.stdout.strip() == "ok", healthz.stdout + healthz.stderr
    # and the cluster still writes (etcd has a quorum of two): a ConfigMap created and read back
    made = ha.kubectl_via_vip(CP3, "-n", "default", "create", "configmap", "kubestrap-ha-probe", "--from-literal=a=b")
    assert made.returncode == 0, made.stderr
    read = ha.kubectl_via_vip(CP2, "-n", "default", "get", "configmap", "kubestrap-ha-probe", "-o", "jsonpath={.data.a}")
    assert read.stdout == "b", read.stdout + read.stderr
