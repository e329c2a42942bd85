"""Where the lab keeps its files: the image cache and the per-lab state directory."""

from __future__ import annotations

import os
from pathlib import Path

from kubestrap.paths import REPO_ROOT


def cache_root() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/kubestrap``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubestrap"


def images_dir() -> Path:
    return cache_root() / "images"


def default_state_dir(name: str) -> Path:
    """State of the lab ``name``: ``.lab/<name>/`` in the repository root (gitignored)."""
    return REPO_ROOT / ".lab" / name


def default_inventory_path(name: str, state_dir: Path) -> Path:
    """The default lab writes ``inventories/lab/hosts.yml``; other labs keep theirs in their state dir."""
    if name == "lab":
        return REPO_ROOT / "inventories" / "lab" / "hosts.yml"
    return state_dir / "hosts.yml"
