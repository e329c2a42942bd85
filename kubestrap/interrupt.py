"""Ctrl-C (SIGINT) or SIGTERM during a run: stop Ansible cleanly and leave none of its processes behind.

The first signal asks ansible-playbook to stop (SIGINT, as a terminal would: it ends its workers
and prints "User interrupted execution"); after a bounded grace, or at a second signal, ansible-runner
kills it. Ansible's per-host workers run in sessions of their own, so whatever is left of the run is
then found by the marker every process of the run inherits in its environment (and by descent) and
killed. Linux (/proc) only; elsewhere ansible-runner's kill of ansible-playbook is all there is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

MARKER_VAR = "KUBESTRAP_RUN_MARKER"
GRACE_SECONDS = 10.0
_PROC = Path("/proc")


class Interrupt:
    """Installed around a run: counts SIGINT/SIGTERM instead of raising KeyboardInterrupt mid-run."""

    def __init__(self, grace: float = GRACE_SECONDS, notify: Callable[[str], None] | None = None) -> None:
        self.grace = grace
        self.signals = 0
        self._notify = notify
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay as they are
                break
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1

    @property
    def requested(self) -> bool:
        return self.signals > 0

    @staticmethod
    def new_marker() -> str:
        return uuid.uuid4().hex

    def canceller(self, marker: str) -> Callable[[], bool]:
        """ansible-runner's cancel_callback for the phase whose processes carry *marker*: True
        (runner kills ansible-playbook's process group) once the grace is over or at a second signal."""
        asked: float | None = None

        def cancel() -> bool:
            nonlocal asked
            if not self.signals:
                return False
            if asked is None:
                asked = time.monotonic()
                if self._notify:
                    self._notify(f"stopping: waiting up to {self.grace:.0f} s for Ansible to stop "
                                 "(Ctrl-C again to kill it now)")
                for pid in run_processes(marker, children_of=os.getpid()):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGINT)
            return self.signals > 1 or time.monotonic() - asked > self.grace

        return cancel


def reap(marker: str, timeout: float = 5.0) -> list[int]:
    """Kill every process left of the run marked *marker* and their descendants; wait until they are
    gone (bounded by *timeout*). Returns the pids that were killed."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        pids = run_processes(marker)
        if not pids or time.monotonic() > deadline:
            return killed
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            if pid not in killed:
                killed.append(pid)
        time.sleep(0.1)


def run_processes(marker: str, children_of: int | None = None) -> list[int]:
    """Live processes whose environment carries *marker*, plus their descendants (a process that
    dropped its environment, e.g. under sudo, still descends from a marked one). With *children_of*,
    only the marked direct children of that pid (ansible-playbook itself)."""
    if not _PROC.is_dir():
        return []
    needle = f"{MARKER_VAR}={marker}".encode()
    parents: dict[int, int] = {}
    marked: set[int] = set()
    me = os.getpid()
    for entry in os.listdir(_PROC):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        stat = _stat(pid)
        if stat is None or stat[0] == "Z":
            continue
        parents[pid] = stat[1]
        if needle in _environ(pid).split(b"\0"):
            marked.add(pid)
    if children_of is not None:
        return sorted(pid for pid in marked if parents.get(pid) == children_of)
    found = set(marked)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return sorted(found)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of *pid*, or None when it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return (fields[0], int(fields[1])) if len(fields) > 1 else None


def _environ(pid: int) -> bytes:
    try:
        return (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return b""
