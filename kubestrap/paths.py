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

RUNS_KEEP_DEFAULT = 30
RUNS_DIR_ADVICE = "set KUBESTRAP_RUNS_DIR to a writable directory with free space"


class StorageError(Exception):
    """The runs directory (journal, lock, fact cache) cannot be created or written; one line."""


def storage_error(path: Path, exc: OSError) -> StorageError:
    """The one-line message for an OSError on *path*: which path, why, and what to do."""
    where = Path(exc.filename) if isinstance(exc.filename, str) else path
    return StorageError(f"cannot write {display(where)}: {exc.strerror or exc}; {RUNS_DIR_ADVICE}")


def runs_dir() -> Path:
    """Run journals: `.runs/` in the repository, or $KUBESTRAP_RUNS_DIR."""
    return Path(os.environ.get("KUBESTRAP_RUNS_DIR", REPO_ROOT / ".runs"))


def private_dir(path: Path) -> Path:
    """Create *path* (and its parents) if needed and make it 0700; StorageError when that fails."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.stat().st_mode & 0o777 != 0o700:
            os.chmod(path, 0o700)
    except OSError as exc:
        raise storage_error(path, exc) from None
    return path


def runs_keep() -> int:
    """How many run journals to keep ($KUBESTRAP_RUNS_KEEP, default 30; 0 keeps every run)."""
    raw = os.environ.get("KUBESTRAP_RUNS_KEEP", "").strip()
    if not raw:
        return RUNS_KEEP_DEFAULT
    if not raw.isdigit():
        raise ValueError(f"KUBESTRAP_RUNS_KEEP must be the number of run journals to keep (0 keeps all), not {raw!r}")
    return int(raw)


def secrets_dir(cluster_name: str) -> Path:
    """Generated secrets of a cluster (0700 directory, 0600 files)."""
    base = Path(os.environ.get("KUBESTRAP_SECRETS_DIR") or REPO_ROOT / ".secrets")
    return base / cluster_name


def effective_secrets_dir(cluster_name: str, configured: object) -> Path:
    """The secrets directory the playbooks write to: the inventory's `kubestrap_secrets_dir` when it
    is a plain path (relative to the repository, where ansible-playbook runs), else the default."""
    if not isinstance(configured, str) or not configured.strip() or "{{" in configured or "{%" in configured:
        return secrets_dir(cluster_name)
    path = Path(configured.strip()).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def display(path: Path) -> str:
    """A path as a person wants to read it: relative to the current directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
