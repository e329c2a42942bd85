"""Load a YAML inventory and every variable file around it, remembering where each key came from.

Ansible's precedence decides what a play sees; this module keeps the layers apart so validation can
name the exact file and key of a problem, and spot settings placed where Ansible would ignore them.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubestrap import paths, yamlfile

# the group names, re-exported: kubestrap/groups.py is their one place
from kubestrap.groups import CLUSTER_GROUP as CLUSTER_GROUP
from kubestrap.groups import CONTROL_PLANE_GROUP as CONTROL_PLANE_GROUP
from kubestrap.groups import WORKERS_GROUP as WORKERS_GROUP

# What Ansible skips when it reads a directory as an inventory (hidden names, these folders, these
# endings: ansible-core's INVENTORY_IGNORE_EXTS default); every other file is an inventory source.
_NOT_SOURCES = {"group_vars", "host_vars", "vars_plugins"}
_IGNORED_ENDINGS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry")
_VARS_ENDINGS = (".yml", ".yaml", ".json")

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
        seen_hosts: set[str] = set()
        seen_groups: set[str] = set()

        def walk(name: str) -> None:
            if name in seen_groups:
                return
            seen_groups.add(name)
            for host in self.direct_hosts.get(name, set()):
                if host not in seen_hosts:
                    seen_hosts.add(host)
                    found.append(host)
            for child in sorted(self.children.get(name, set())):
                walk(child)

        walk(group)
        order = {name: index for index, name in enumerate(self.hosts)}
        return sorted(found, key=order.__getitem__)

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
        """Effective cluster-level values (what every node of k8s_cluster sees) and the file each
        comes from, in Ansible's order (see precedence())."""
        return {key: (value, layer.source) for key, (value, layer) in effective(self.layers).items()}

    def value(self, key: str, default: Any = None) -> Any:
        return self.cluster_settings().get(key, (default, None))[0]


# Ansible's order of the group-level variables (its default VARIABLE_PRECEDENCE: all_inventory,
# groups_inventory, all_plugins_inventory, all_plugins_play, groups_plugins_inventory): later wins.
# Inventory-file `vars:` of any group lose to the inventory's group_vars/all, which loses to the
# playbook-level group_vars/all (our documented defaults), which loses to the inventory's group_vars/<group>.
_STAGE = {("inventory-file", "all"): 0, ("inventory-file", "group"): 1, ("group_vars", "all"): 2,
          ("defaults", "all"): 3, ("group_vars", "group"): 4}  # fmt: skip
DEFAULTS_RANK = (_STAGE[("defaults", "all")], 0)  # the documented defaults' place in that order


def precedence(layer: VarLayer, groups: tuple[str, ...] = (CLUSTER_GROUP,)) -> tuple[int, int] | None:
    """Where Ansible ranks *layer* for a host in *groups* (outermost first; `all` implied); None when
    the layer does not apply to such a host (host vars, other groups). The one precedence model of
    kubestrap: cluster settings, validation's placement check and the artifacts command use it."""
    if layer.scope == "defaults":
        return DEFAULTS_RANK
    if layer.scope not in ("inventory-file", "group_vars"):
        return None
    if layer.target == "all":
        return _STAGE[(layer.scope, "all")], 0
    if layer.target in groups:
        return _STAGE[(layer.scope, "group")], 1 + groups.index(layer.target)
    return None


def effective(layers: list[VarLayer], groups: tuple[str, ...] = (CLUSTER_GROUP,)) -> dict[str, tuple[Any, VarLayer]]:
    """Every group-level variable a host in *groups* sees, with the layer its value comes from."""
    ranked = [(rank, index, layer) for index, layer in enumerate(layers)
              if (rank := precedence(layer, groups)) is not None]
    result: dict[str, tuple[Any, VarLayer]] = {}
    for _, _, layer in sorted(ranked, key=lambda item: (item[0], item[1])):  # in a rank, file order
        for key, value in layer.values.items():
            result[str(key)] = (value, layer)
    return result


def _show(path: Path) -> str:
    """paths.display without resolving the last component (it may be a symlink loop)."""
    return str(Path(paths.display(path.parent)) / path.name)


def _usable(path: Path) -> bool:
    """True for a regular file or directory; an InventoryError for what Ansible would trip over
    or silently skip (a symlink loop, a link to nothing, a device or pipe, an unreadable entry)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        where = _show(path)
        if exc.errno == errno.ELOOP:
            raise InventoryError(f"{where}: symbolic link loop; point the link at a real file or remove it") from None
        if os.path.islink(path):
            raise InventoryError(f"{where}: symbolic link to a missing file ({os.readlink(path)}); "
                                 "fix or remove the link") from None
        raise InventoryError(f"{where}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return True
    raise InventoryError(f"{_show(path)}: neither a file nor a directory; remove it")


def _present(path: Path) -> bool:
    return os.path.lexists(path) and _usable(path)


def _list_dir(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except OSError as exc:
        raise InventoryError(f"{paths.display(directory)}: cannot read this directory: "
                             f"{exc.strerror or exc}") from None


def _vars_files(directory: Path, name: str) -> list[Path]:
    """What Ansible reads for *name*: the first of group_vars/<name> (a folder: every vars file in it, or a file),
    <name>.yml, <name>.yaml, <name>.json, and only that one. A second one would be silently ignored by Ansible:
    refused, naming both."""
    candidates = [p for p in (directory / f"{name}{ext}" for ext in ("", *_VARS_ENDINGS)) if _present(p)]
    if len(candidates) > 1:
        ignored = ", ".join(paths.display(p) for p in candidates[1:])
        raise InventoryError(
            f"{ignored}: Ansible ignores this because {paths.display(candidates[0])} exists (it reads only the first "
            f"of {name}/, {name}.yml, {name}.yaml, {name}.json): merge the two into one"
        )
    if not candidates:
        return []
    return _folder_vars_files(candidates[0]) if candidates[0].is_dir() else [candidates[0]]


def _folder_vars_files(folder: Path) -> list[Path]:
    """Ansible reads a vars folder recursively: every file without an extension or with a vars
    extension, skipping hidden names and backups (~)."""
    found: list[Path] = []
    for entry in _list_dir(folder):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        _usable(entry)
        if entry.is_dir() and not entry.suffix:
            found += _folder_vars_files(entry)
        elif entry.is_file() and entry.suffix in ("", *_VARS_ENDINGS):
            found.append(entry)
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
    """The documented defaults: every vars file of the playbook-level group_vars/all/."""
    return [VarLayer(path, "defaults", "all", _load_mapping(path)) for path in _folder_vars_files(defaults_dir)]


def _find_hosts_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for name in ("hosts.yml", "hosts.yaml", "inventory.yml", "inventory.yaml"):
            candidate = path / name
            if _present(candidate) and candidate.is_file():
                return candidate
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
    if path.is_dir():
        _refuse_other_sources(path, hosts_file, data)
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
    entries = [p for p in _list_dir(directory) if not p.name.startswith(".")]
    names = sorted({p.stem if p.suffix in _VARS_ENDINGS and not p.is_dir() else p.name
                    for p in entries if _usable(p)})
    return [VarLayer(f, scope, name, _load_mapping(f)) for name in names for f in _vars_files(directory, name)]


def _sources(directory: Path) -> list[Path]:
    """Every file Ansible reads as an inventory source when given *directory* (it recurses)."""
    found: list[Path] = []
    for entry in _list_dir(directory):
        name = entry.name
        if name.startswith(".") or name in _NOT_SOURCES or name.endswith(_IGNORED_ENDINGS):
            continue
        _usable(entry)
        found += _sources(entry) if entry.is_dir() else [entry]
    return found


def _refuse_other_sources(directory: Path, hosts_file: Path, hosts_data: dict[str, Any]) -> None:
    """Ansible loads every file of the inventory directory; `check` validates hosts.yml only, so a
    second source would bring hosts and variables nobody checked."""
    for source in _sources(directory):
        if source.resolve() == hosts_file.resolve():
            continue
        where = paths.display(source)
        again = _hosts_also_in(source, hosts_data)
        if again:
            raise InventoryError(f"{where}: defines {again} again (already in {hosts_file.name}); keep every host "
                                 f"in {hosts_file.name} only and move this file out of the inventory directory")
        raise InventoryError(f"{where}: Ansible also loads this file as an inventory source, but `check` reads "
                             f"only {hosts_file.name}; move its hosts into {hosts_file.name} and the file out of "
                             "the inventory directory")


def _hosts_also_in(source: Path, hosts_data: dict[str, Any]) -> str | None:
    """The first host *source* (when it is YAML) defines that hosts.yml defines too."""
    if source.suffix not in _VARS_ENDINGS:
        return None
    try:
        other = yamlfile.load(source)
    except yamlfile.YamlError:
        return None
    known = _host_names(hosts_data)
    return next((h for h in _host_names(other) if h in known), None)


def _host_names(data: Any) -> list[str]:
    names: list[str] = []
    stack = [data]
    while stack:
        body = stack.pop()
        if not isinstance(body, dict):
            continue
        for key, value in body.items():
            if key == "hosts" and isinstance(value, dict):
                names += [str(h) for h in value]
            elif isinstance(value, dict):
                stack.append(value)
    return sorted(names)


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
