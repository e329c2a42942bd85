"""One precedence model: inventory.cluster_settings, the artifacts command's overrides and check's
placement verdicts all come from inventory.precedence, and they agree with Ansible itself
(ansible-inventory --playbook-dir, the real merge of the same layered inventory)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE_BIN

from kubestrap import artifacts_cli, inventory, validate

# Each key is set in some of the layers below; the value names the layer, so the winner is visible.
# The defaults (playbook-level group_vars/all) set every cluster-level setting.
DEFAULTS = {"kubestrap_artifacts_base_url": "defaults", "kubestrap_charts_repo_base_url": "defaults",
            "cluster_api_controller_url": "defaults", "cluster_dns_domain": "defaults"}  # fmt: skip
FILE_ALL = {"kubestrap_artifacts_base_url": "file-all", "extra_a": "file-all", "extra_b": "file-all"}
FILE_CLUSTER = {"kubestrap_charts_repo_base_url": "file-cluster", "cluster_dns_domain": "file-cluster",
                "extra_b": "file-cluster", "extra_c": "file-cluster"}  # fmt: skip
GV_ALL = {"cluster_api_controller_url": "gv-all", "extra_a": "gv-all", "extra_c": "gv-all"}
GV_CLUSTER = {"cluster_dns_domain": "gv-cluster"}
GV_WORKERS = {"extra_d": "gv-workers"}  # applies to workers only, not to the whole cluster
KEYS = sorted({*DEFAULTS, *FILE_ALL, *FILE_CLUSTER, *GV_ALL, *GV_CLUSTER})


def _layered(tmp: Path) -> tuple[Path, Path]:
    """An inventory with every group-level place set, and a playbook directory whose group_vars/all
    holds the documented defaults (as playbooks/group_vars does in the repository)."""
    inv = tmp / "inv"
    (inv / "group_vars").mkdir(parents=True)
    hosts = {"all": {"vars": FILE_ALL, "children": {inventory.CLUSTER_GROUP: {"vars": FILE_CLUSTER, "children": {
        inventory.CONTROL_PLANE_GROUP: {"hosts": {"cp1": {"node_ip": "192.168.1.10"}}},
        inventory.WORKERS_GROUP: {"hosts": {"w1": {"node_ip": "192.168.1.11"}}}}}}}}  # fmt: skip
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inv / "group_vars" / "all.yml").write_text(yaml.safe_dump(GV_ALL))
    (inv / "group_vars" / f"{inventory.CLUSTER_GROUP}.yml").write_text(yaml.safe_dump(GV_CLUSTER))
    (inv / "group_vars" / f"{inventory.WORKERS_GROUP}.yml").write_text(yaml.safe_dump(GV_WORKERS))
    playbooks = tmp / "playbooks"
    (playbooks / "group_vars" / "all").mkdir(parents=True)
    (playbooks / "group_vars" / "all" / "settings.yml").write_text(yaml.safe_dump(DEFAULTS))
    return inv, playbooks


def _ansible_sees(inv: Path, playbooks: Path, host: str, tmp: Path) -> dict:
    proc = subprocess.run(
        [str(ANSIBLE_BIN / "ansible-inventory"), "-i", str(inv / "hosts.yml"), "--playbook-dir", str(playbooks),
         "--host", host],
        capture_output=True, text=True, check=True, timeout=120, cwd=tmp,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp), "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp")},
    )  # fmt: skip
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def layered(tmp_path_factory) -> tuple[inventory.Inventory, dict]:
    tmp = tmp_path_factory.mktemp("layered")
    inv_dir, playbooks = _layered(tmp)
    inv = inventory.load(inv_dir, defaults_dir=playbooks / "group_vars" / "all")
    return inv, _ansible_sees(inv_dir, playbooks, "cp1", tmp)


def test_the_fixture_exercises_every_pair_of_places(layered):
    _, ansible = layered
    winners = {ansible[key] for key in KEYS}
    assert winners == {"defaults", "gv-all", "file-cluster", "gv-cluster"}, winners


def test_cluster_settings_are_what_ansible_sees_on_a_cluster_node(layered):
    inv, ansible = layered
    mine = {key: value for key, (value, _) in inv.cluster_settings().items()}
    assert {key: mine.get(key) for key in KEYS} == {key: ansible.get(key) for key in KEYS}
    assert "extra_d" not in mine  # workers only


def test_artifacts_overrides_are_the_inventory_values_that_win(layered, monkeypatch: pytest.MonkeyPatch):
    inv, ansible = layered
    monkeypatch.setattr(artifacts_cli, "_OVERRIDABLE", tuple(KEYS))
    expected = {key: ansible[key] for key in KEYS if ansible[key] != "defaults"}
    assert artifacts_cli.overrides_of(inv) == expected


def test_check_calls_ignored_exactly_the_cluster_settings_ansible_does_not_use(layered):
    inv, ansible = layered
    problems = validate.check(inv)
    ignored = {(Path(p.source).name, p.key) for p in problems if p.message.startswith("ignored by Ansible")}
    expected = set()
    for layer in inv.layers:
        if layer.scope in ("inventory-file", "group_vars"):
            for key, value in layer.values.items():
                if key in DEFAULTS and ansible[key] != value:
                    expected.add((layer.source.name, key))
    assert expected and ignored == expected


def test_a_child_group_outranks_its_parent_and_other_groups_do_not_apply():
    layer = inventory.VarLayer(Path("x"), "group_vars", inventory.WORKERS_GROUP, {})
    assert inventory.precedence(layer) is None
    groups = (inventory.CLUSTER_GROUP, inventory.WORKERS_GROUP)
    parent = inventory.VarLayer(Path("y"), "group_vars", inventory.CLUSTER_GROUP, {})
    assert inventory.precedence(parent, groups) < inventory.precedence(layer, groups)
