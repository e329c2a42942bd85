from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# Ansible's programs: the ones installed beside this Python (the virtualenv's), whatever PATH says
ANSIBLE_BIN = Path(sys.executable).parent
ANSIBLE = str(ANSIBLE_BIN / "ansible")
ANSIBLE_PLAYBOOK = str(ANSIBLE_BIN / "ansible-playbook")
# What a run of the roles needs when it does not read the repository's ansible.cfg
ROLE_PATHS = {"ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_FILTER_PLUGINS": str(ROOT / "filter_plugins")}
CORPUS = Path(__file__).resolve().parent / "inventories"
DEFAULTS = ROOT / "group_vars" / "all"
# kubestrap_arch_map (group_vars/all/cluster.yml), for plays that run a role outside playbooks/ (no group_vars/all)
CLUSTER = yaml.safe_load((DEFAULTS / "cluster.yml").read_text())
ARCH_MAP = CLUSTER["kubestrap_arch_map"]


def with_cluster_defaults(value: str) -> str:
    """A role default that names a cluster setting (`{{ kubestrap_node_state_dir }}/manifest`) with the value
    group_vars/all/cluster.yml gives it: for tests that pass a role's defaults to a plugin directly."""
    return re.sub(r"\{\{\s*(kubestrap_\w+)\s*\}\}", lambda m: str(CLUSTER[m.group(1)]), value)
T = TypeVar("T")

# Directives a corpus file may hold instead of its content (see tests/README.md):
#   __delete__              the file is removed from the copy
#   __symlink__ TARGET      the file becomes a symbolic link to TARGET (relative or absolute)
#   __repeat__ COUNT        the lines after this first one, repeated COUNT times (huge files
#                           without storing them)
_DELETE = b"__delete__\n"
_SYMLINK = b"__symlink__ "
_REPEAT = b"__repeat__ "


def _lay_over(source_dir: Path, dest: Path, skip: tuple[str, ...] = ()) -> None:
    """Write every file of *source_dir* (bytes as they are, or a directive) into *dest*."""
    for path in sorted(source_dir.rglob("*")):
        rel = path.relative_to(source_dir)
        if path.is_dir() or rel.parts[0] in skip:
            continue
        target = dest / rel
        data = path.read_bytes()
        if data == _DELETE:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        if data.startswith(_SYMLINK):
            os.symlink(data[len(_SYMLINK):].decode().strip(), target)
        elif data.startswith(_REPEAT):
            first, _, body = data.partition(b"\n")
            target.write_bytes(body * int(first[len(_REPEAT):]))
        else:
            target.write_bytes(data)


def build_case(case_dir: Path, dest: Path) -> Path:
    """Copy the base inventory into *dest* and lay the case's files over it (its `defaults/`
    folder is not part of the inventory: see build_defaults)."""
    shutil.copytree(CORPUS / "base", dest)
    _lay_over(case_dir, dest, skip=("EXPECT", "defaults"))
    return dest


def build_defaults(case_dir: Path, dest: Path) -> Path:
    """The documented defaults (group_vars/all/*.yml) with the case's `defaults/` files laid over."""
    shutil.copytree(DEFAULTS, dest)
    if (case_dir / "defaults").is_dir():
        _lay_over(case_dir / "defaults", dest)
    return dest


@pytest.fixture
def repo_root() -> Path:
    return ROOT


# A stand-in for systemctl (systemd 252) for tests that run roles on this machine: it keeps each unit's
# active/enabled state in a JSON file, logging its calls.
FAKE_SYSTEMCTL = r"""#!/usr/bin/python3
import json, os, sys
path = os.environ["KUBESTRAP_TEST_SYSTEMD_STATE"]
state = json.load(open(path)) if os.path.exists(path) else {}
args = [a for a in sys.argv[1:] if a != "-l"]
open(path + ".log", "a").write(" ".join(args) + "\n")
verb, unit = args[0], (args[1] if len(args) > 1 else "")
u = state.setdefault(unit, {"active": False, "enabled": False})
rc = 0
if verb == "show":
    print(f"LoadState=loaded\nActiveState={'active' if u['active'] else 'inactive'}\nSubState=waiting")
elif verb == "is-enabled":
    print("enabled" if u["enabled"] else "disabled")
    rc = 0 if u["enabled"] else 1
elif verb in ("start", "restart", "stop", "enable", "disable"):
    u.update({"start": {"active": True}, "restart": {"active": True}, "stop": {"active": False},
              "enable": {"enabled": True}, "disable": {"enabled": False}}[verb])
elif verb != "daemon-reload":
    sys.exit(f"Unknown command verb {verb}.")
json.dump(state, open(path, "w"))
sys.exit(rc)
"""


def fake_systemctl(directory: Path) -> Path:
    """Write FAKE_SYSTEMCTL as directory/systemctl (put directory first on PATH and set
    KUBESTRAP_TEST_SYSTEMD_STATE to a JSON file); returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "systemctl").write_text(FAKE_SYSTEMCTL)
    (directory / "systemctl").chmod(0o755)
    return directory


def wait_until(check: Callable[[], T], timeout: float = 60, interval: float = 0.5) -> T:
    """Call *check* until it returns something true or *timeout* seconds pass; its last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def render_configs(dest: Path, *extra: str, inventory: Path | None = None,
                   playbook: str = "render_cluster_configs.yml") -> dict[str, list]:
    """The files tests/playbooks/<playbook> renders with the roles' own templates (kubeadm, encryption, audit,
    ...) into *dest* for every host of *inventory* (default: the homelab example), extra -e arguments passed on;
    returns file name -> its YAML documents."""
    dest.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inventory or ROOT / "inventories" / "homelab"),
         str(ROOT / "tests" / "playbooks" / playbook), "-e", f"render_dir={dest}", "-e", "ansible_connection=local",
         "-e", f"ansible_python_interpreter={sys.executable}", *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {p.name: list(yaml.safe_load_all(p.read_text())) for p in sorted(dest.iterdir()) if p.suffix in (".yaml", ".yml")}


def ha_inventory(dest: Path, control_planes: dict[str, str], workers: dict[str, str], **settings: object) -> Path:
    """An inventory at *dest*: the corpus's base settings without cluster_api_endpoint, updated with *settings* (a
    None value drops the setting), and the given control-plane and worker nodes (name -> node IP)."""
    hosts = {"all": {"children": {"k8s_cluster": {"children": {
        "k8s_control_plane": {"hosts": {n: {"ansible_host": ip, "node_ip": ip} for n, ip in control_planes.items()}},
        "k8s_workers": {"hosts": {n: {"ansible_host": ip, "node_ip": ip} for n, ip in workers.items()}}}}}}}  # fmt: skip
    (dest / "group_vars").mkdir(parents=True)
    (dest / "hosts.yml").write_text(yaml.safe_dump(hosts))
    base = yaml.safe_load((CORPUS / "base" / "group_vars" / "k8s_cluster.yml").read_text())
    base.pop("cluster_api_endpoint")
    merged = {key: value for key, value in {**base, **settings}.items() if value is not None}
    (dest / "group_vars" / "k8s_cluster.yml").write_text(yaml.safe_dump(merged))
    return dest
