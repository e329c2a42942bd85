"""Load a YAML inventory and every variable file around it, remembering where each key came from.

Ansible's precedence decides what a play sees; this module keeps the layers apart so validation can
name the exact file and key of a problem, and spot settings placed where Ansible would ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubestrap import paths, yamlfile

CLUSTER_GROUP = "k8s_cluster"
CONTROL_PLANE_GROUP = "k8s_control_plane"
WORKERS_GROUP = "k8s_workers"
_GROUP_KEYS = {"hosts", "vars", "children"}


class InventoryError(Exception):
    """The inventory cannot be read at all; the message says which file and why."""


@dataclass(frozen=True)
class VarLayer:
    """Variables from one place. `scope` is one of: defaults, inventory-file, group_vars, host_vars."""

    source: Path
    scope: str
    target: str  # group or host name the layer applies to
    values: dict[str, Any]


@dataclass
class Host:
    name: str
    source: Path
    vars: dict[str, Any] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)


@dataclass
class Inventory:
    path: Path
    hosts_file: Path
    hosts: dict[str, Host]
    children: dict[str, set[str]]
    direct_hosts: dict[str, set[str]]
    layers: list[VarLayer]

    def group_hosts(self, group: str) -> list[str]:
        """All hosts of *group* and its descendants, in inventory order."""
        found: list[str] = []
        seen_groups: set[str] = set()

        def walk(name: str) -> None:
            if name in seen_groups:
                return
            seen_groups.add(name)
            for host in self.direct_hosts.get(name, set()):
                if host not in found:
                    found.append(host)
            for child in sorted(self.children.get(name, set())):
                walk(child)

        walk(group)
        order = list(self.hosts)
        return sorted(found, key=order.index)

    @property
    def control_plane(self) -> list[str]:
        return self.group_hosts(CONTROL_PLANE_GROUP)

    @property
    def workers(self) -> list[str]:
        return self.group_hosts(WORKERS_GROUP)

    def defaults(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for layer in self.layers:
            if layer.scope == "defaults":
                merged.update(layer.values)
        return merged

    def cluster_settings(self) -> dict[str, tuple[Any, Path]]:
        """Effective cluster-level values: documented defaults overridden by the inventory's
        group_vars for k8s_cluster (the place that wins over playbook-level group_vars/all)."""
        result: dict[str, tuple[Any, Path]] = {}
        for layer in self.layers:
            if layer.scope == "defaults" or (layer.scope == "group_vars" and layer.target == CLUSTER_GROUP):
                for key, value in layer.values.items():
                    result[key] = (value, layer.source)
        return result

    def value(self, key: str, default: Any = None) -> Any:
        return self.cluster_settings().get(key, (default, None))[0]


def _vars_files(directory: Path, name: str) -> list[Path]:
    """group_vars/<name>.yml, <name>.yaml, <name>.json or every *.yml inside group_vars/<name>/."""
    files = [directory / f"{name}{ext}" for ext in (".yml", ".yaml", ".json", "")]
    found = [f for f in files if f.is_file()]
    folder = directory / name
    if folder.is_dir():
        found += sorted(p for p in folder.iterdir() if p.suffix in (".yml", ".yaml", ".json") and p.is_file())
    return found


def _load_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yamlfile.load(path)
    except yamlfile.YamlError as exc:
        raise InventoryError(str(exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InventoryError(f"{paths.display(path)}: expected a mapping of variable names to values")
    return data


def load_defaults(defaults_dir: Path = paths.DEFAULTS_DIR) -> list[VarLayer]:
    layers = []
    for path in sorted(defaults_dir.glob("*.yml")):
        layers.append(VarLayer(path, "defaults", "all", _load_mapping(path)))
    return layers


def _find_hosts_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for name in ("hosts.yml", "hosts.yaml", "inventory.yml", "inventory.yaml"):
            if (path / name).is_file():
                return path / name
        if (path / "hosts").is_file() or (path / "hosts.ini").is_file():
            raise InventoryError(
                f"{paths.display(path)}: INI inventories are not supported; write hosts.yml "
                "(see inventories/homelab/hosts.yml)"
            )
        raise InventoryError(f"{paths.display(path)}: no hosts.yml in this directory")
    raise InventoryError(f"{paths.display(path)}: no such inventory (give a directory holding hosts.yml)")


def load(path: Path, defaults_dir: Path = paths.DEFAULTS_DIR) -> Inventory:
    """Load the inventory at *path* (a directory with hosts.yml, or the file itself)."""
    hosts_file = _find_hosts_file(path)
    base = hosts_file.parent
    data = _load_mapping(hosts_file)
    inv = Inventory(path, hosts_file, {}, {}, {}, load_defaults(defaults_dir))
    file_layers: list[VarLayer] = []

    def parse_group(name: str, body: Any, trail: list[str]) -> None:
        where = f"{paths.display(hosts_file)}: {'.'.join([*trail, name])}"
        if name in trail:
            raise InventoryError(f"{where}: group contains itself")
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise InventoryError(f"{where}: expected a mapping with hosts, vars or children")
        unknown = set(body) - _GROUP_KEYS
        if unknown:
            raise InventoryError(f"{where}: unknown key {sorted(unknown)[0]!r} (a group holds hosts, vars, children)")
        inv.children.setdefault(name, set())
        inv.direct_hosts.setdefault(name, set())
        if body.get("vars"):
            if not isinstance(body["vars"], dict):
                raise InventoryError(f"{where}.vars: expected a mapping")
            file_layers.append(VarLayer(hosts_file, "inventory-file", name, body["vars"]))
        hosts = body.get("hosts") or {}
        if not isinstance(hosts, dict):
            raise InventoryError(f"{where}.hosts: expected a mapping of host names to their variables")
        for host_name, host_vars in hosts.items():
            host_name = str(host_name)
            if host_vars is not None and not isinstance(host_vars, dict):
                raise InventoryError(f"{where}.hosts.{host_name}: expected a mapping of variables")
            host = inv.hosts.setdefault(host_name, Host(host_name, hosts_file))
            host.vars.update(host_vars or {})
            host.groups.add(name)
            inv.direct_hosts[name].add(host_name)
        children = body.get("children") or {}
        if not isinstance(children, dict):
            raise InventoryError(f"{where}.children: expected a mapping of group names")
        for child, child_body in children.items():
            inv.children[name].add(str(child))
            parse_group(str(child), child_body, [*trail, name])

    for top, body in data.items():
        parse_group(str(top), body, [])

    # Give every host the transitive set of its groups.
    for group in list(inv.children):
        for host in inv.group_hosts(group):
            inv.hosts[host].groups.add(group)

    inv.layers.extend([*file_layers, *_dir_layers(base / "group_vars"), *_dir_layers(base / "host_vars")])
    return inv


def _dir_layers(directory: Path) -> list[VarLayer]:
    """Layers of group_vars/ or host_vars/: one per file, named by group or host."""
    if not directory.is_dir():
        return []
    scope = directory.name
    names = sorted({p.stem if p.is_file() else p.name for p in directory.iterdir()})
    return [VarLayer(f, scope, name, _load_mapping(f)) for name in names for f in _vars_files(directory, name)]


def host_value(inv: Inventory, host: str, key: str) -> tuple[Any, Path | None]:
    """A host-level variable (hosts.yml entry or host_vars file)."""
    value: Any = None
    source: Path | None = None
    if key in inv.hosts[host].vars:
        value, source = inv.hosts[host].vars[key], inv.hosts[host].source
    for layer in inv.layers:
        if layer.scope == "host_vars" and layer.target == host and key in layer.values:
            value, source = layer.values[key], layer.source
    return value, source
