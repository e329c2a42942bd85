"""Each role's defaults/main.yml and meta/argument_specs.yml agree: the same variables, the same
default values; the settings role's spec and group_vars/all/*.yml name the same settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import DEFAULTS, ROOT

from kubestrap import schema, spec_check

ROLES = sorted(p.parent.parent for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))
# `{{ setting | default(V) }}`: a default read from a cluster setting; its spec documents V
_FALLBACK = re.compile(r"^\{\{\s*[\w.]+\s*\|\s*default\((?P<value>.*)\)\s*\}\}$", re.S)


def _options(role: Path) -> dict[str, dict[str, Any]]:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    return {name: option or {} for entry in specs.values() for name, option in ((entry or {}).get("options") or {}).items()}


def _defaults(role: Path) -> dict[str, Any]:
    path = role / "defaults" / "main.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _agrees(value: Any, documented: Any) -> bool:
    if value == documented:
        return True
    fallback = _FALLBACK.match(value) if isinstance(value, str) else None
    return bool(fallback) and yaml.safe_load(fallback.group("value")) == documented


@pytest.mark.parametrize("role", [r for r in ROLES if r.name != schema.SETTINGS_ROLE], ids=lambda r: r.name)
def test_defaults_and_argument_specs_agree(role: Path):
    options, defaults = _options(role), _defaults(role)
    assert sorted(set(defaults) - set(options)) == [], "defaults without a spec"
    assert sorted(set(options) - set(defaults)) == [], "specs without a default in defaults/main.yml"
    for name, option in options.items():
        if "default" in option:
            assert _agrees(defaults[name], option["default"]), (name, defaults[name], option["default"])
        if not spec_check.is_template(defaults[name]):
            spec = schema.parse_option(name, option, str(role))
            assert list(spec_check.check(name, defaults[name], spec)) == [], name


def test_every_cluster_setting_has_its_documented_value_in_group_vars_all():
    settings = set(_options(ROOT / "roles" / schema.SETTINGS_ROLE))
    documented = {key for path in DEFAULTS.glob("*.yml") for key in (yaml.safe_load(path.read_text()) or {})}
    assert settings == documented


def test_one_architecture_map():
    """kubestrap_arch_map (group_vars/all/cluster.yml) is the one map of machine names to release names: every
    role's *_arch_map defaults to it, and no role or plugin writes the map again."""
    maps = {(role.name, name): value for role in ROLES for name, value in _defaults(role).items()
            if name.endswith("_arch_map")}  # fmt: skip
    assert {role for role, _ in maps} == {"artifacts", "containerd", "kube_binaries", "preflight"}
    assert set(maps.values()) == {"{{ kubestrap_arch_map }}"}
    documented = yaml.safe_load((DEFAULTS / "cluster.yml").read_text())["kubestrap_arch_map"]
    assert documented == {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
    copies = [str(p) for p in (ROOT / "roles").rglob("*") if p.is_file() and p.suffix in (".py", ".yml", ".j2")
              and re.search(r"[\"']?aarch64[\"']?\s*:\s*[\"']?arm64", p.read_text())]  # fmt: skip
    assert copies == []


def _role_includes(node: Any) -> list[dict[str, Any]]:
    """Every include_role/import_role with a tasks_from, anywhere in a parsed tasks file or playbook."""
    if isinstance(node, list):
        return [found for item in node for found in _role_includes(item)]
    if not isinstance(node, dict):
        return []
    found = [node[key] for key in ("ansible.builtin.include_role", "ansible.builtin.import_role")
             if isinstance(node.get(key), dict) and "tasks_from" in node[key]]  # fmt: skip
    return found + [item for value in node.values() for item in _role_includes(value)]


def test_every_entry_point_another_file_uses_has_an_argument_spec():
    """A role entered through tasks_from gets its variables checked at that entry as well (Ansible validates an
    entry point's argument spec when it has one)."""
    files = [*(ROOT / "roles").rglob("tasks/*.yml"), *(ROOT / "playbooks").glob("*.yml")]
    uses = {(include["name"], include["tasks_from"].removesuffix(".yml"), path.relative_to(ROOT).as_posix())
            for path in files for include in _role_includes(yaml.safe_load(path.read_text()))}  # fmt: skip
    assert len(uses) >= 15
    missing = []
    for role, entry, where in sorted(uses):
        specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        if entry not in specs:
            missing.append(f"{where}: {role} {entry}")
    assert missing == []
