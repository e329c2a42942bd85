"""Which hosts each phase touches, resolved with Ansible's own inventory and pattern logic."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kubestrap import paths
from kubestrap.phases import Phase

CONTROLLER = "localhost"


def _manager(inventory: Path) -> Any:
    os.environ.setdefault("ANSIBLE_CONFIG", str(paths.ANSIBLE_CFG))
    # groups made at run time (e.g. kubestrap_join_pending) do not exist yet: no warning for them
    os.environ.setdefault("ANSIBLE_HOST_PATTERN_MISMATCH", "ignore")
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    return InventoryManager(loader=DataLoader(), sources=[str(inventory)])


def phase_hosts(phases: list[Phase], inventory: Path, extravars: dict[str, Any]) -> dict[str, list[str]]:
    """Map phase name -> hosts its plays run on (`localhost` is the controller)."""
    manager = _manager(inventory)
    result: dict[str, list[str]] = {}
    for phase in phases:
        hosts: list[str] = []
        for pattern in phase.host_patterns(extravars):
            for host in manager.get_hosts(pattern=pattern):
                if host.name not in hosts:
                    hosts.append(host.name)
            if pattern in ("localhost", "127.0.0.1") and CONTROLLER not in hosts:
                hosts.append(CONTROLLER)
        result[phase.name] = hosts
    return result
