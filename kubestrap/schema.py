"""What setting names exist and what each may hold: the declared specs, never the defaults.

Cluster-level settings are declared in roles/settings/meta/argument_specs.yml (their documented
values live in group_vars/all/*.yml), role variables in each role's meta/argument_specs.yml.
Besides Ansible's keys (type, elements, choices, options), a description may bound a value with
"At least N." or "From N to M." (a list: its number of items): Ansible's argument spec has no key
for bounds, and ansible-lint's schema refuses unknown keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubestrap import paths, yamlfile

# Connection and behaviour variables of Ansible itself that inventories legitimately set.
ANSIBLE_VARIABLES = frozenset(
    {
        "ansible_host", "ansible_port", "ansible_user", "ansible_connection", "ansible_password",
        "ansible_ssh_private_key_file", "ansible_private_key_file", "ansible_ssh_common_args",
        "ansible_ssh_extra_args", "ansible_ssh_pipelining", "ansible_ssh_executable",
        "ansible_become", "ansible_become_method", "ansible_become_user", "ansible_become_password",
        "ansible_become_flags", "ansible_python_interpreter", "ansible_shell_type",
        "ansible_ssh_host", "ansible_ssh_port", "ansible_ssh_user", "ansible_timeout",
        "ansible_host_key_checking", "ansible_ssh_host_key_checking",
    }
)  # fmt: skip

# Per-host variables of this project.
HOST_VARIABLES = frozenset({"node_ip"})

# Settings that once had a second name (issue #20: one name per setting). The old name is refused,
# naming the one to write instead; nothing reads the old names any more.
RENAMED = {
    "metallb_pool_addresses": "metallb_address_pool",
    "istio_gateway_replica_count": "istio_gateway_replicas",
    "monitoring_loki_retention_hours": "loki_retention_hours",
    "istio_peer_authentication_mode": "istio_mtls_mode",
    "argocd_app_of_apps_repo_url": "argocd_app_of_apps_repo",
    "longhorn_replicas": "longhorn_replica_count",
}

SETTINGS_ROLE = "settings"
SETTINGS_SPEC = f"roles/{SETTINGS_ROLE}/meta/argument_specs.yml"

_SPEC_TYPES: dict[str, type | None] = {"bool": bool, "int": int, "str": str, "list": list, "dict": dict,
                                       "float": float, "path": str, "raw": None}  # fmt: skip
_AT_LEAST = re.compile(r"\bAt least (-?\d+)\b")
_FROM_TO = re.compile(r"\bFrom (-?\d+) to (-?\d+)\b")


@dataclass(frozen=True)
class SettingSpec:
    name: str
    kind: type | None  # None: any type
    origin: str  # the spec file declaring it
    elements: type | None = None  # lists: the type of each item
    choices: tuple[Any, ...] = ()  # scalars: allowed values; lists: allowed items
    minimum: int | None = None  # ints: smallest value; lists: fewest items
    maximum: int | None = None
    options: dict[str, SettingSpec] | None = field(default=None, hash=False)  # dicts: a closed set of names
    cluster_level: bool = False  # declared in roles/settings: one value for the whole cluster


def _description(option: dict[str, Any]) -> str:
    text = option.get("description") or ""
    return " ".join(text) if isinstance(text, list) else str(text)


def _bounds(description: str) -> tuple[int | None, int | None]:
    between = _FROM_TO.search(description)
    if between:
        return int(between.group(1)), int(between.group(2))
    least = _AT_LEAST.search(description)
    return (int(least.group(1)), None) if least else (None, None)


def parse_option(name: str, option: Any, origin: str, cluster_level: bool = False) -> SettingSpec:
    """One option of an argument spec (Ansible's keys plus the bounds convention)."""
    option = option if isinstance(option, dict) else {}
    minimum, maximum = _bounds(_description(option))
    subs = option.get("options")
    return SettingSpec(
        name=name,
        kind=_SPEC_TYPES.get(str(option.get("type", "str"))),
        origin=origin,
        elements=_SPEC_TYPES.get(str(option["elements"])) if "elements" in option else None,
        choices=tuple(option.get("choices") or ()) if isinstance(option.get("choices"), list) else (),
        minimum=minimum,
        maximum=maximum,
        options={str(k): parse_option(str(k), v, origin) for k, v in subs.items()} if isinstance(subs, dict) else None,
        cluster_level=cluster_level,
    )


def role_specs(roles_dir: Path = paths.ROLES_DIR) -> dict[str, SettingSpec]:
    specs: dict[str, SettingSpec] = {}
    for spec_file in sorted(roles_dir.glob("*/meta/argument_specs.yml")):
        cluster_level = spec_file.parent.parent.name == SETTINGS_ROLE
        try:
            data = yamlfile.load_own(spec_file) or {}
        except yamlfile.YamlError:
            continue  # the linters report broken role files; validation of inventories goes on
        for entry in (data.get("argument_specs") or {}).values():
            for name, option in ((entry or {}).get("options") or {}).items():
                specs[str(name)] = parse_option(str(name), option, paths.display(spec_file), cluster_level)
    return specs


def known_settings(roles_dir: Path = paths.ROLES_DIR) -> dict[str, SettingSpec]:
    """Every setting name an inventory (or group_vars/all) may use, with what it may hold."""
    specs = role_specs(roles_dir)
    for name in ANSIBLE_VARIABLES | HOST_VARIABLES:
        specs.setdefault(name, SettingSpec(name, None, "ansible"))
    return specs
