"""What setting names exist and what type each must have.

The documented defaults in group_vars/all/ and the roles' meta/argument_specs.yml are the schema:
nothing is declared twice.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    }
)  # fmt: skip

# Per-host variables of this project.
HOST_VARIABLES = frozenset({"node_ip"})

_SPEC_TYPES = {"bool": bool, "int": int, "str": str, "list": list, "dict": dict, "float": float, "path": str}


@dataclass(frozen=True)
class SettingSpec:
    name: str
    kind: type | None  # None: any type
    default: Any
    origin: str  # where the setting is documented


def _python_type(value: Any) -> type | None:
    for kind in (bool, int, float, str, list, dict):
        if isinstance(value, kind):
            return kind
    return None


def role_specs(roles_dir: Path = paths.ROLES_DIR) -> dict[str, SettingSpec]:
    specs: dict[str, SettingSpec] = {}
    for spec_file in sorted(roles_dir.glob("*/meta/argument_specs.yml")):
        try:
            data = yamlfile.load(spec_file) or {}
        except yamlfile.YamlError:
            continue  # the linters report broken role files; validation of inventories goes on
        for entry in (data.get("argument_specs") or {}).values():
            for name, option in ((entry or {}).get("options") or {}).items():
                kind = _SPEC_TYPES.get(str((option or {}).get("type", "str")))
                specs[name] = SettingSpec(name, kind, (option or {}).get("default"), paths.display(spec_file))
    return specs


def known_settings(defaults: dict[str, Any], roles_dir: Path = paths.ROLES_DIR) -> dict[str, SettingSpec]:
    """Every setting name an inventory may use, with the type it must have."""
    specs = role_specs(roles_dir)
    for name, value in defaults.items():
        specs[name] = SettingSpec(name, _python_type(value), value, "group_vars/all")
    for name in ANSIBLE_VARIABLES | HOST_VARIABLES:
        specs.setdefault(name, SettingSpec(name, None, None, "ansible"))
    return specs
