"""The upgrade's filters (roles/kube_upgrade, playbooks/upgrade.yml and upgrade_versions.yml), on kubestrap/upgrade.py,
the one place of the upgrade policy, so `bootstrap.py upgrade` and plain `ansible-playbook playbooks/upgrade.yml`
plan and refuse alike. A top-level plugin directory (ansible.cfg: filter_plugins).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from kubestrap import upgrade  # noqa: E402


def upgrade_report(version_doc: dict[str, Any], nodes_doc: dict[str, Any]) -> dict[str, Any]:
    """`kubectl version -o json` and `kubectl get nodes -o json` reduced to what the policy reads."""
    return upgrade.report(version_doc, nodes_doc)


def upgrade_plan(cluster: dict[str, Any], control_plane: list[str], workers: list[str], artifacts: dict[str, Any],
                 batch_size: int = 1) -> dict[str, Any]:
    """The ordered plan (Plan.as_dict()); a refusal of the policy fails the task with its message."""
    try:
        return upgrade.plan_cluster(cluster, list(control_plane), list(workers), artifacts, int(batch_size)).as_dict()
    except upgrade.Refused as exc:
        raise AnsibleFilterError(f"upgrade refused: {exc}") from None


def node_at(node_doc: dict[str, Any], target: str, runtime: str = "") -> bool:
    """A Node (`kubectl get node NAME -o json`) Ready with its kubelet at *target* and, given *runtime* (the plan's
    pinned containerd), its containerd at that version."""
    return upgrade.node_at(node_doc, str(target), str(runtime or "") or None)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kubestrap_upgrade_report": upgrade_report, "kubestrap_upgrade_plan": upgrade_plan,
                "kubestrap_upgrade_node_at": node_at}
