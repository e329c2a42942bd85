"""The run journal: `.runs/<timestamp>-<command>/`, private to the user, secrets redacted.

Layout:
  events.jsonl        every Ansible event, redacted, one JSON object a line
  summary.json        command, result, per-phase and per-host timings and ok/changed/failed counts
  phases/NN-<phase>/  ansible-runner's private data dir and artifacts for that phase; the environment
                      ansible-runner records in `artifacts/*/command` is cut to ANSIBLE_*, KUBESTRAP_*
                      and PATH
Beside the runs: `facts/`, the fact cache every phase and every run shares (the same directory plain
ansible-playbook uses through ansible.cfg; entries expire after fact_caching_timeout), so a host's
facts are gathered once, not once per phase.

Every directory is 0700 and every file 0600. Only the newest $KUBESTRAP_RUNS_KEEP runs are kept
(default 30, 0 keeps all). A journal that cannot be written (full disk, read-only checkout) does not
stop the run: `problem` holds the one-line message, which the command prints at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from kubestrap import paths
from kubestrap.redact import Redactor

RUN_NAME = re.compile(r"^\d{8}T\d{6}Z-")
_KEPT_ENV_PREFIXES = ("ANSIBLE_", "KUBESTRAP_")
_KEPT_ENV_NAMES = {"PATH"}


class Journal:
    def __init__(self, command: str, redactor: Redactor, base: Path | None = None) -> None:
        """Create the run's directory; StorageError (one line) when it cannot be created."""
        base = base or paths.runs_dir()
        keep = paths.runs_keep()
        paths.private_dir(base)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = base / f"{stamp}-{command}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = base / f"{stamp}-{command}-{suffix}"
        try:
            path.mkdir(mode=0o700)
            self._events: int | None = os.open(path / "events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise paths.storage_error(path, exc) from None
        self.path = path
        self.base = base
        self.redactor = redactor
        self.problem: str | None = None
        latest = base / "latest"
        try:
            if latest.is_symlink() or latest.exists():
                latest.unlink()
            latest.symlink_to(path.name)
        except OSError as exc:
            self._failed(latest, exc)
        prune(base, keep, current=path)

    def _failed(self, path: Path, exc: OSError) -> None:
        self.report(str(paths.storage_error(path, exc)))

    def report(self, message: str) -> None:
        """Remember the first write failure; the run goes on, the command reports it at the end."""
        if self.problem is None:
            self.problem = message

    def phase_dir(self, index: int, phase: str) -> Path:
        """The phase's private data dir for ansible-runner (0700)."""
        directory = self.path / "phases" / f"{index:02d}-{phase}"
        for private in (self.path / "phases", directory):
            paths.private_dir(private)
        return directory

    def fact_cache(self) -> Path:
        """The fact cache all phases and runs share, `<runs>/facts`: 0700, and its files, which Ansible
        writes 0644, made 0600 (finish_phase)."""
        directory = self.base / "facts"
        paths.private_dir(directory)
        return directory

    def event(self, phase: str, event: dict[str, Any]) -> None:
        if self._events is None:
            return
        self.redactor.refresh()
        record = {"phase": phase, **self.redactor.obj(event)}
        try:
            _write_all(self._events, (json.dumps(record, default=str) + "\n").encode())
        except OSError as exc:
            self._failed(self.path / "events.jsonl", exc)
            self._close_events()

    def finish_phase(self, directory: Path) -> None:
        """What stays of a phase: ansible-runner's record of the command without the controller's
        environment, every directory 0700 and every file 0600 (the shared fact cache included)."""
        try:
            self.scrub_environment(directory)
            _private_tree(directory)
            facts = self.base / "facts"
            if facts.is_dir():
                _private_tree(facts)
        except OSError as exc:
            self._failed(directory, exc)

    def scrub_environment(self, directory: Path) -> None:
        """Cut the environment ansible-runner records in artifacts/*/command to what explains a run."""
        for record in directory.glob("artifacts/*/command"):
            data = json.loads(record.read_text(encoding="utf-8"))
            env = data.get("env")
            if not isinstance(env, dict):
                continue
            kept = {k: self.redactor.text(str(v)) for k, v in env.items()
                    if k in _KEPT_ENV_NAMES or k.startswith(_KEPT_ENV_PREFIXES)}
            if kept != env:
                data["env"] = kept
                _write_private(record, json.dumps(data, indent=1) + "\n")

    def write_summary(self, summary: dict[str, Any]) -> Path:
        target = self.path / "summary.json"
        try:
            _write_private(target, json.dumps(self.redactor.obj(summary), indent=2, default=str) + "\n")
        except OSError as exc:
            self._failed(target, exc)
        return target

    def close(self) -> None:
        """Flush, then redact everything ansible-runner wrote into the journal on its own."""
        self._close_events()
        try:
            self.redactor.refresh()
            for phase in self.path.glob("phases/*"):
                self.scrub_environment(phase)
            self.redactor.sweep(self.path)
            _private_tree(self.path)
        except OSError as exc:
            self._failed(self.path, exc)

    def _close_events(self) -> None:
        if self._events is not None:
            with contextlib.suppress(OSError):
                os.close(self._events)
            self._events = None


def prune(base: Path, keep: int, current: Path) -> list[Path]:
    """Delete all but the newest *keep* run journals under *base* (0 keeps all). Only directories
    named like a run are candidates; *current*, `facts/` and `locks/` never are. Best effort."""
    if keep <= 0:
        return []
    try:
        runs = sorted(p for p in base.iterdir() if RUN_NAME.match(p.name) and p.is_dir() and not p.is_symlink())
    except OSError:
        return []
    old = [p for p in runs if p != current][: max(0, len(runs) - keep)]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_private(path: Path, text: str) -> None:
    """Replace *path* with *text*, mode 0600 from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        _write_all(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def _private_tree(root: Path) -> None:
    _chmod(str(root), 0o700)
    for top, dirs, files in os.walk(root):
        for name in dirs:
            full = os.path.join(top, name)
            if not os.path.islink(full):
                _chmod(full, 0o700)
        for name in files:
            full = os.path.join(top, name)
            if not os.path.islink(full):
                _chmod(full, 0o600)


def _chmod(path: str, mode: int) -> None:
    """Set *mode* unless the file has it; a file gone meanwhile needs none (ansible-runner renames its partial event
    files while the tree is walked: seen as a false "cannot write" at a Ctrl-C under load)."""
    try:
        if os.stat(path).st_mode & 0o777 != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
