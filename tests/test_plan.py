"""plan.phase_hosts asks Ansible itself, through `ansible-playbook --list-hosts` (no Ansible internals in
kubestrap), which hosts each phase's plays run on; the hosts come back in inventory order, play after play."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from kubestrap import exits, inventory, phases, plan

LISTING = """
playbook: /x/one.yml

  play #1 (k8s_workers): First\tTAGS: []
    pattern: ['k8s_workers']
    hosts (2):
      w2
      w1

  play #2 (localhost): Second\tTAGS: []
    pattern: ['localhost']
    hosts (1):
      localhost

playbook: /x/two.yml

  play #1 (kubestrap_join_pending): Nobody yet\tTAGS: []
    pattern: ['kubestrap_join_pending']
    hosts (0):

  play #2 (k8s_control_plane[0]): Token\tTAGS: []
    pattern: ['k8s_control_plane[0]']
    hosts (1):
      cp
"""


def test_the_listing_is_read_per_playbook_and_play():
    assert plan.parse_list_hosts(LISTING) == [[["w2", "w1"], ["localhost"]], [[], ["cp"]]]


def test_hosts_follow_the_inventory_order_play_after_play():
    assert plan._in_order([["w2", "w1"], ["localhost"], ["cp", "w1"]], ["cp", "w1", "w2"]) == ["w1", "w2", "localhost", "cp"]


def _inventory(tmp: Path, workers: list[str]) -> inventory.Inventory:
    hosts = {"all": {"children": {"k8s_cluster": {"children": {
        "k8s_control_plane": {"hosts": {"cp": {"ansible_connection": "local"}}},
        "k8s_workers": {"hosts": {name: {"ansible_connection": "local"} for name in workers}}}}}}}  # fmt: skip
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    return inventory.load(tmp)


def test_ansible_resolves_templated_patterns_and_the_order_is_the_inventorys(tmp_path: Path):
    inv = _inventory(tmp_path / "inv", ["zeta", "alpha", "mid"])
    up = plan.phase_hosts(phases.of("up"), inv, {})
    assert up["preflight"] == ["cp", "zeta", "alpha", "mid"]
    assert up["control_plane"] == ["cp"]  # k8s_control_plane[0]
    scoped = plan.phase_hosts(phases.of("add-node"), inv, {"kubestrap_node_scope": "alpha"})
    assert scoped["preflight"] == ["alpha"] and scoped["join"] == ["alpha", "cp"]


def test_a_playbook_ansible_cannot_read_is_one_error_line_not_a_traceback(tmp_path: Path):
    broken = tmp_path / "broken.yml"
    broken.write_text("- hosts: all\n  tasks: [{name: x, no.such.module: {}}]\n")
    inv = _inventory(tmp_path / "inv", ["w1"])
    with pytest.raises(exits.UserError, match="ansible-playbook --list-hosts"):
        plan.phase_hosts([phases.Phase("broken", broken, "broken")], inv, {})


def test_no_ansible_internals_in_kubestrap():
    sources = [p for p in (ROOT / "kubestrap").rglob("*.py")]
    assert [str(p) for p in sources if "from ansible." in p.read_text() or "import ansible." in p.read_text()] == []


def test_a_relative_inventory_path_is_the_callers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _inventory(tmp_path / "inv", ["w1"])
    monkeypatch.chdir(tmp_path)
    inv = inventory.load(Path("inv"))
    assert plan.phase_hosts(phases.of("status"), inv, {}) == {"status": ["cp"]}


def test_ansible_is_asked_once_per_loaded_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls = []
    real = plan._list_hosts
    monkeypatch.setattr(plan, "_list_hosts", lambda *args: calls.append(args) or real(*args))
    inv = _inventory(tmp_path / "inv", ["w1"])
    first = plan.phase_hosts(phases.of("status"), inv, {})
    first["status"].append("changed by the caller")
    assert plan.phase_hosts(phases.of("status"), inv, {}) == {"status": ["cp"]} and len(calls) == 1
    again = _inventory(tmp_path / "inv", ["w1", "w2"])  # the inventory edited and loaded again: asked again
    assert plan.phase_hosts(phases.of("up"), again, {})["preflight"] == ["cp", "w1", "w2"] and len(calls) == 2
