from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "inventories"


def build_case(case_dir: Path, dest: Path) -> Path:
    """Copy the base inventory into *dest* and lay the case's files over it."""
    shutil.copytree(CORPUS / "base", dest)
    for path in case_dir.rglob("*"):
        if path.is_dir() or path.name == "EXPECT":
            continue
        target = dest / path.relative_to(case_dir)
        if path.read_text() == "__delete__\n":
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    return dest


@pytest.fixture
def repo_root() -> Path:
    return ROOT
