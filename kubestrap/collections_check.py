"""Are the Ansible collections the roles use installed? Say how to get them if not."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kubestrap import paths, yamlfile


def required() -> list[str]:
    data = yamlfile.load(paths.REPO_ROOT / "requirements.yml") or {}
    return [str(c["name"]) for c in data.get("collections", [])]


def _search_roots() -> list[Path]:
    roots = [Path(p) for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(":") if p]
    roots += [Path.home() / ".ansible" / "collections", Path("/usr/share/ansible/collections")]
    roots += [Path(p) for p in sys.path if p]
    return roots


def missing() -> list[str]:
    roots = _search_roots()
    absent = []
    for name in required():
        namespace, collection = name.split(".", 1)
        if not any((root / "ansible_collections" / namespace / collection).is_dir() for root in roots):
            absent.append(name)
    return absent


def advice(absent: list[str]) -> str:
    return (f"missing Ansible collections: {', '.join(absent)}. Install them with "
            "`pip install -e .` (the `ansible` package carries them) or "
            "`ansible-galaxy collection install -r requirements.yml` where Ansible Galaxy is reachable.")
