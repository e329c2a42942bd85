"""Where things live: the repository root and the directories the tool writes to."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULTS_DIR = REPO_ROOT / "group_vars" / "all"
PLAYBOOKS_DIR = REPO_ROOT / "playbooks"
ROLES_DIR = REPO_ROOT / "roles"
ANSIBLE_CFG = REPO_ROOT / "ansible.cfg"
DEFAULT_INVENTORY = REPO_ROOT / "inventories" / "homelab"


def runs_dir() -> Path:
    """Run journals: `.runs/` in the repository, or $KUBESTRAP_RUNS_DIR."""
    return Path(os.environ.get("KUBESTRAP_RUNS_DIR", REPO_ROOT / ".runs"))


def secrets_dir(cluster_name: str) -> Path:
    """Generated secrets of a cluster (0700 directory, 0600 files)."""
    base = Path(os.environ.get("KUBESTRAP_SECRETS_DIR", REPO_ROOT / ".secrets"))
    return base / cluster_name


def display(path: Path) -> str:
    """A path as a person wants to read it: relative to the current directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
