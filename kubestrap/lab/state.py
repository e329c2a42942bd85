"""The lab state file (``<state dir>/state.json``): what was started, with which identities."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubestrap.lab.errors import LabError
from kubestrap.lab.procs import ProcRecord

STATE_FILE = "state.json"


@dataclass
class VMState:
    name: str
    role: str
    node_ip: str
    cpus: int
    memory_mib: int
    ssh_port: int
    uplink_mac: str
    node_mac: str
    uuid: str
    machine_id: str
    groups: list[str] = field(default_factory=list)
    process: ProcRecord | None = None
    api_port: int = 0  # control planes: 127.0.0.1 port forwarded to the VM's 6443 (0 = none)


@dataclass
class LabState:
    name: str
    network: str
    accel: str = "tcg"
    switch: ProcRecord | None = None
    inventory: str | None = None
    vms: list[VMState] = field(default_factory=list)

    def vm(self, name: str) -> VMState | None:
        return next((v for v in self.vms if v.name == name), None)


def _proc(data: Any) -> ProcRecord | None:
    return ProcRecord(**data) if isinstance(data, dict) else None


def to_dict(state: LabState) -> dict[str, Any]:
    return asdict(state)


def from_dict(data: dict[str, Any]) -> LabState:
    vms = [VMState(**{**v, "process": _proc(v.get("process"))}) for v in data.get("vms", [])]
    return LabState(
        name=data["name"],
        network=data["network"],
        accel=data.get("accel", "tcg"),
        switch=_proc(data.get("switch")),
        inventory=data.get("inventory"),
        vms=vms,
    )


def load(state_dir: Path) -> LabState | None:
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        return from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"lab state {path} is unreadable ({exc}); stop its VMs by hand and delete it") from None


def save(state_dir: Path, state: LabState) -> None:
    """Write atomically (temp file then rename)."""
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(to_dict(state), indent=2) + "\n")
    os.replace(tmp, path)


def remove(state_dir: Path) -> None:
    (state_dir / STATE_FILE).unlink(missing_ok=True)
