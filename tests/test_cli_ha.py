"""The command line with an HA control plane (cluster_api_vip): add-node of a control-plane node, what plan shows it
touches (as Ansible resolves the playbooks' hosts), and the refusals that keep the single control plane's path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, ha_inventory

from kubestrap import inventory, phases, plan

CPS = {"k8s-cp": "192.168.1.10", "k8s-cp2": "192.168.1.8", "k8s-cp3": "192.168.1.9"}
WORKERS = {"k8s-worker1": "192.168.1.11"}
NODE_PHASES = ("preflight", "artifacts", "node_prep", "containerd", "kube_binaries")


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)  # fmt: skip


def _inventory(dest: Path, vip: str | None = "192.168.1.5", control_planes: int = 3) -> Path:
    return ha_inventory(dest, dict(list(CPS.items())[:control_planes]), WORKERS, cluster_api_vip=vip)


def test_add_node_of_a_control_plane_touches_it_the_earlier_control_planes_lb_and_the_token_step(tmp_path: Path):
    inv = inventory.load(_inventory(tmp_path / "ha"))
    hosts = plan.phase_hosts(phases.of("add-node"), inv, {"kubestrap_node_scope": "k8s-cp2"})
    for phase in NODE_PHASES:
        assert hosts[phase] == ["k8s-cp2"], (phase, hosts[phase])
    # the join phase: keepalived/haproxy on the first control plane (its lists grow) and the new one, the token and
    # certificate upload on the first; the third control plane (listed after it, not joined yet) and the workers: no
    assert hosts["join"] == ["k8s-cp", "k8s-cp2"], hosts["join"]
    third = plan.phase_hosts(phases.of("add-node"), inv, {"kubestrap_node_scope": "k8s-cp3"})
    assert third["join"] == ["k8s-cp", "k8s-cp2", "k8s-cp3"], third["join"]
    assert all(third[phase] == ["k8s-cp3"] for phase in NODE_PHASES)


def test_add_node_of_a_worker_in_an_ha_cluster_touches_no_other_control_plane(tmp_path: Path):
    inv = inventory.load(_inventory(tmp_path / "ha"))
    hosts = plan.phase_hosts(phases.of("add-node"), inv, {"kubestrap_node_scope": "k8s-worker1"})
    assert all(hosts[phase] == ["k8s-worker1"] for phase in NODE_PHASES)
    assert hosts["join"] == ["k8s-worker1", "k8s-cp"]  # the worker's token on the first control plane only


def test_up_joins_the_other_control_planes_and_runs_the_floating_address_on_all(tmp_path: Path):
    inv = inventory.load(_inventory(tmp_path / "ha"))
    hosts = plan.phase_hosts(phases.of("up"), inv, {})
    assert hosts["control_plane"] == ["k8s-cp", "k8s-cp2", "k8s-cp3"]  # api_lb on each, init on the first
    assert hosts["join"] == ["k8s-cp2", "k8s-cp3", "k8s-worker1", "k8s-cp"]  # pending search, then the token step


def test_plan_add_node_shows_the_control_planes_it_touches(tmp_path: Path):
    inv = _inventory(tmp_path / "ha")
    proc = run("plan", "-i", str(inv), "--add-node", "k8s-cp2", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    join = next(p for p in data["phases"] if p["name"] == "join")
    assert join["hosts"] == ["k8s-cp", "k8s-cp2"]


def test_add_node_of_the_first_control_plane_is_refused_naming_up(tmp_path: Path):
    inv = _inventory(tmp_path / "ha")
    for command in (["add-node", "k8s-cp"], ["plan", "--add-node", "k8s-cp"]):
        proc = run(*command, "-i", str(inv))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "k8s-cp is the first node of k8s_control_plane: `bootstrap.py up` initialises it" in proc.stderr


def test_add_node_of_a_control_plane_without_a_vip_is_refused_before_any_host(tmp_path: Path):
    """One control plane, no cluster_api_vip, a second one listed (an even count is refused by check first, so the
    inventory lists three): check refuses the missing VIP; with the VIP check passes and add-node is allowed."""
    inv = _inventory(tmp_path / "novip", vip=None)
    proc = run("add-node", "k8s-cp2", "-i", str(inv))
    assert proc.returncode == 2 and "cluster_api_vip: must be set with 3 control-plane nodes" in proc.stderr, proc.stderr


def test_add_node_refusal_message_for_a_control_plane_without_vip(tmp_path: Path):
    """The refusal itself (an inventory `check` accepts: one control plane and no VIP cannot list a second one, so
    the message is reached through the CLI function with an inventory whose VIP is empty)."""
    from kubestrap import cli
    from kubestrap.exits import UserError
    inv = inventory.load(_inventory(tmp_path / "novip", vip=None))
    try:
        cli._require_joinable(inv, "k8s-cp2")
    except UserError as exc:
        message = str(exc)
    else:
        raise AssertionError("a control plane without cluster_api_vip was accepted")
    assert "no floating API address" in message and "cluster_api_vip" in message and "before the first `up`" in message
    cli._require_joinable(inv, "k8s-worker1")  # workers join as before
