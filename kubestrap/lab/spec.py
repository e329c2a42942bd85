"""What a lab should look like: its VMs (names, roles, node IPs, sizes) and where its state lives."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubestrap.groups import CONTROL_PLANE_GROUP, WORKERS_GROUP
from kubestrap.lab import alloc
from kubestrap.lab.errors import LabError

HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DEFAULT_MEMORY_MIB = 2048
DEFAULT_TIMEOUT = 900.0


@dataclass(frozen=True)
class VMSpec:
    name: str
    role: str = ""  # "control_plane", "worker" or "" (not a cluster node)
    node_ip: str | None = None
    cpus: int = 2
    memory_mib: int = DEFAULT_MEMORY_MIB
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabSpec:
    name: str
    state_dir: Path
    vms: tuple[VMSpec, ...]
    network: str = alloc.DEFAULT_NETWORK
    inventory: Path | None = None
    timeout: float = DEFAULT_TIMEOUT


def default_vms(
    name: str, workers: int, cp_cpus: int = 2, worker_cpus: int = 1, memory_mib: int = DEFAULT_MEMORY_MIB
) -> tuple[VMSpec, ...]:
    """``<name>-cp`` plus ``<name>-worker1..N``."""
    if workers < 0:
        raise LabError(f"--workers must be 0 or more, not {workers}")
    vms = [VMSpec(f"{name}-cp", "control_plane", cpus=cp_cpus, memory_mib=memory_mib)]
    vms += [VMSpec(f"{name}-worker{i}", "worker", cpus=worker_cpus, memory_mib=memory_mib) for i in range(1, workers + 1)]
    return tuple(vms)


# a lab VM's role -> its inventory group
ROLE_GROUPS = {"control_plane": CONTROL_PLANE_GROUP, "worker": WORKERS_GROUP}


def role_from_groups(groups: list[str] | tuple[str, ...]) -> str:
    return next((role for role, group in ROLE_GROUPS.items() if group in groups), "")


def _int(value: Any, what: str) -> int:
    try:
        number = int(str(value).lower().removesuffix("m").removesuffix("mib"))
    except ValueError:
        raise LabError(f"{what} must be a whole number, not {value!r}") from None
    if number <= 0:
        raise LabError(f"{what} must be positive, not {value!r}")
    return number


def vms_from_json(data: dict[str, Any]) -> tuple[VMSpec, ...]:
    """VMs from a spec document: ``{"vms": [{"name", "node_ip"?, "cpus"?, "memory"?, "groups"?}]}``."""
    entries = data.get("vms")
    if not isinstance(entries, list) or not entries:
        raise LabError("the lab spec needs a non-empty list 'vms'")
    vms: list[VMSpec] = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("name"):
            raise LabError(f"every VM of the lab spec needs a name: {entry!r}")
        groups = tuple(str(g) for g in entry.get("groups") or ())
        vms.append(
            VMSpec(
                name=str(entry["name"]),
                role=str(entry.get("role") or role_from_groups(groups)),
                node_ip=str(entry["node_ip"]) if entry.get("node_ip") else None,
                cpus=_int(entry.get("cpus", 2), f"cpus of {entry['name']}"),
                memory_mib=_int(entry.get("memory", DEFAULT_MEMORY_MIB), f"memory of {entry['name']}"),
                groups=groups,
            )
        )
    return tuple(vms)


def load_spec_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise LabError(f"cannot read the lab spec {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise LabError(f"the lab spec {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise LabError(f"the lab spec {path} must be a JSON object")
    return data


def validate(spec: LabSpec) -> None:
    names = [vm.name for vm in spec.vms]
    for name in names:
        if not HOSTNAME.match(name):
            raise LabError(
                f"VM name {name!r} is not a valid hostname (lowercase letters, digits and '-', "
                "starting and ending with a letter or digit)"
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise LabError(f"VM names must be unique; repeated: {', '.join(duplicates)}")


def assign_node_ips(spec: LabSpec) -> dict[str, str]:
    """Explicit node IPs are kept; the others get the lowest free addresses from .10 up."""
    explicit = {vm.name: vm.node_ip for vm in spec.vms if vm.node_ip}
    for ip in explicit.values():
        alloc.check_node_ip(spec.network, str(ip))
    taken = [ip for ip in explicit.values() if ip]
    repeated = sorted({ip for ip in taken if taken.count(ip) > 1})
    if repeated:
        raise LabError(f"node_ip must be unique; repeated: {', '.join(repeated)}")
    pool = iter(ip for ip in alloc.node_ips(spec.network, 200) if ip not in taken)
    result: dict[str, str] = {}
    for vm in spec.vms:
        result[vm.name] = vm.node_ip or next(pool)
    return result
