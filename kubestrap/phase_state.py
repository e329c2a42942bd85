"""Which phases have work on which host: the controller side of the per-node phase records.

A node-local phase playbook that ends with a `kubestrap_phase_state` record task (see
playbooks/library/kubestrap_phase_state.py) leaves on each node a record of what it applied: the hash
of its inputs and what the node looked like afterwards (files, units, sysctls, packages). The preflight
phase checks every record in one module call per host; a phase whose inputs are unchanged and whose
observed state still holds has no work on that host and is not run there. Any difference (new
versions or settings, a hand-edited file, a stopped service, a deleted binary) runs the phase again,
which repairs it.

The inputs hash covers everything a phase's result can depend on that lives on the controller:
kubestrap's own playbooks, roles and settings, the inventory directory and the run's extra variables
(the add-node scope excepted). It is deliberately coarse: a change anywhere re-runs the phase.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from kubestrap import paths, yamlfile
from kubestrap.phases import Phase

MODULE = "kubestrap_phase_state"
INPUTS_VAR = "kubestrap_phase_inputs"
# The same hash for records kept inside a phase that cannot be skipped as a whole (a cluster-level phase
# such as control_plane keeps one for its node-local files: roles/kubeadm_init); absent under `--full`.
STEP_INPUTS_VAR = "kubestrap_step_inputs"
# extra variables that choose where a run goes, not what it applies
_SCOPE_VARS = {"kubestrap_node_scope", INPUTS_VAR, STEP_INPUTS_VAR}
_SOURCES = ("ansible.cfg", "requirements.yml", "playbooks", "roles", "group_vars")
_SKIPPED_PARTS = {"__pycache__", ".pytest_cache"}


def recorded(phase: Phase) -> bool:
    """Whether *phase*'s playbook records what it applied (a task of the record module in `record` mode)."""
    try:
        plays = yamlfile.load_own(phase.playbook) or []
    except (OSError, yamlfile.YamlError):
        return False
    for play in plays if isinstance(plays, list) else []:
        for section in ("pre_tasks", "tasks", "post_tasks"):
            for task in (play.get(section) or []) if isinstance(play, dict) else []:
                args = task.get(MODULE) if isinstance(task, dict) else None
                if isinstance(args, dict) and args.get("mode") == "record":
                    return True
    return False


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and not _SKIPPED_PARTS & set(p.parts) and p.suffix != ".pyc")


def _digest_tree(digest: Any, label: str, root: Path) -> None:
    for path in _files(root):
        digest.update(f"{label}/{path.relative_to(root) if root.is_dir() else path.name}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())


def _base(inventory: Path, extravars: dict[str, Any]) -> Any:
    base = hashlib.sha256()
    for name in _SOURCES:
        _digest_tree(base, name, paths.REPO_ROOT / name)
    _digest_tree(base, "inventory", inventory.resolve())
    applied = {k: v for k, v in sorted(extravars.items()) if k not in _SCOPE_VARS}
    base.update(json.dumps(applied, sort_keys=True, default=str).encode())
    return base


def step_inputs(inventory: Path, extravars: dict[str, Any]) -> str:
    """The inputs hash for the records kept inside phases (STEP_INPUTS_VAR)."""
    digest = _base(inventory, extravars)
    digest.update(b"\0steps")
    return digest.hexdigest()


def inputs(selected: list[Phase], inventory: Path, extravars: dict[str, Any]) -> dict[str, str]:
    """phase name -> hash of its inputs, for the recorded phases among *selected*."""
    base = _base(inventory, extravars)
    result = {}
    for phase in selected:
        if recorded(phase):
            digest = base.copy()
            digest.update(f"\0phase:{phase.name}".encode())
            result[phase.name] = digest.hexdigest()
    return result


def work(probe: dict[str, dict[str, Any]], phase: str, planned: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Hosts of *planned* on which *phase* has work, and the reasons per host.

    *probe* maps host -> the check's `phases` result. A host the probe did not answer for (it was not
    probed, or the record is unknown) keeps the phase: only a positive "no work" skips it.
    """
    hosts: list[str] = []
    reasons: dict[str, list[str]] = {}
    for host in planned:
        entry = (probe.get(host) or {}).get(phase)
        if isinstance(entry, dict) and entry.get("work") is False:
            continue
        hosts.append(host)
        reasons[host] = list(entry.get("reasons") or []) if isinstance(entry, dict) else ["not checked"]
    return hosts, reasons


def cells(selected: list[Phase], hosts: dict[str, list[str]], recorded: dict[str, str],
          records: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """phase -> host -> {"state": ..., "reasons": [...]} for `plan --hosts`.

    state: "no change" (the record holds), "would change" (with the check's reasons), "runs" (a phase
    without records: it runs and decides on the node), or "unknown" (the node gave no answer)."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for phase in selected:
        row: dict[str, dict[str, Any]] = {}
        for host in hosts.get(phase.name, []):
            if phase.name not in recorded:
                row[host] = {"state": "runs", "reasons": []}
                continue
            entry = (records.get(host) or {}).get(phase.name)
            if not isinstance(entry, dict):
                row[host] = {"state": "unknown", "reasons": ["no answer from the node"]}
            elif entry.get("work") is False:
                row[host] = {"state": "no change", "reasons": []}
            else:
                row[host] = {"state": "would change", "reasons": list(entry.get("reasons") or [])}
        table[phase.name] = row
    return table


def cell_text(cell: dict[str, Any] | None) -> str:
    if not cell:
        return "."
    if cell["state"] == "would change" and cell["reasons"]:
        first = cell["reasons"][0]
        more = f" (+{len(cell['reasons']) - 1})" if len(cell["reasons"]) > 1 else ""
        return f"would change: {first}{more}"
    return str(cell["state"])
