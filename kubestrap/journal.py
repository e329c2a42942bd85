"""The run journal: `.runs/<timestamp>-<command>/`, private to the user, secrets redacted.

Layout:
  events.jsonl        every Ansible event, redacted, one JSON object a line
  summary.json        command, result, per-phase and per-host timings and ok/changed/failed counts
  phases/NN-<phase>/  ansible-runner's private data dir and artifacts for that phase
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from kubestrap import paths
from kubestrap.redact import Redactor


class Journal:
    def __init__(self, command: str, redactor: Redactor, base: Path | None = None) -> None:
        base = base or paths.runs_dir()
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o700)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = base / f"{stamp}-{command}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = base / f"{stamp}-{command}-{suffix}"
        path.mkdir(mode=0o700)
        self.path = path
        self.redactor = redactor
        self._events = (path / "events.jsonl").open("a", encoding="utf-8")
        os.chmod(path / "events.jsonl", 0o600)
        latest = base / "latest"
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(path.name)

    def phase_dir(self, index: int, phase: str) -> Path:
        directory = self.path / "phases" / f"{index:02d}-{phase}"
        directory.mkdir(parents=True, mode=0o700, exist_ok=True)
        return directory

    def event(self, phase: str, event: dict[str, Any]) -> None:
        record = {"phase": phase, **self.redactor.obj(event)}
        self._events.write(json.dumps(record, default=str) + "\n")
        self._events.flush()

    def write_summary(self, summary: dict[str, Any]) -> Path:
        target = self.path / "summary.json"
        target.write_text(json.dumps(self.redactor.obj(summary), indent=2, default=str) + "\n", encoding="utf-8")
        os.chmod(target, 0o600)
        return target

    def close(self) -> None:
        """Flush, then redact everything ansible-runner wrote into the journal on its own."""
        self._events.close()
        self.redactor.sweep(self.path)
        for root, dirs, files in os.walk(self.path):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)
            for name in files:
                full = os.path.join(root, name)
                if not os.path.islink(full):
                    os.chmod(full, 0o600)
