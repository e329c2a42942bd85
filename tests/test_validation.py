"""Offline validation: the homelab inventory passes; each broken inventory fails with its own line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CORPUS, ROOT, build_case, build_defaults

from kubestrap import validate

CASES = sorted(p for p in (CORPUS / "broken").iterdir() if p.is_dir())
# Cases that change the documented defaults need the loader pointed at their copy; the CLI has no
# such switch, so the CLI test samples the others.
CLI_CASES = [c for c in CASES if not (c / "defaults").is_dir()]


def test_corpus_is_large_enough():
    assert len(CASES) >= 80


def test_homelab_inventory_is_valid():
    assert list(validate.check_path(ROOT / "inventories" / "homelab")) == []


def test_base_inventory_is_valid():
    assert list(validate.check_path(CORPUS / "base")) == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_inventory_gives_its_one_line(case: Path, tmp_path: Path):
    inv = build_case(case, tmp_path / case.name)
    defaults = build_defaults(case, tmp_path / "defaults")
    expected = (case / "EXPECT").read_text().strip()
    lines = list(validate.check_path(inv, defaults_dir=defaults))
    assert len(lines) == 1, f"expected exactly one problem, got: {lines}"
    assert expected in lines[0]


def _fake_ssh(tmp_path: Path) -> dict[str, str]:
    """A PATH where `ssh` and `scp` record that they were called: they must never be."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    marker = tmp_path / "ssh-called"
    for tool in ("ssh", "scp", "sftp"):
        script = bindir / tool
        script.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {marker}\nexit 255\n")
        script.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    return env


@pytest.mark.parametrize("case", CLI_CASES[:: max(1, len(CLI_CASES) // 8)], ids=lambda c: c.name)
def test_cli_check_exits_2_with_one_line_and_no_ssh(case: Path, tmp_path: Path):
    inv = build_case(case, tmp_path / case.name)
    env = _fake_ssh(tmp_path)
    for command in (["check"], ["up"], ["add-node", "k8s-worker1"], ["plan"]):
        proc = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), *command, "-i", str(inv)],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, (command, proc.stderr)
        assert (case / "EXPECT").read_text().strip() in lines[0]
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "ssh-called").exists()
