"""Processes the lab started, recorded by PID and verified before any signal is sent.

A record holds the PID, the process start time (from /proc/PID/stat) and a marker string that
must appear in its command line. A PID reused by another program fails both checks.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcRecord:
    pid: int
    start_time: int
    marker: str


def start_time(pid: int, proc: Path = PROC) -> int | None:
    """Start time (clock ticks since boot) of ``pid``, or None if there is no such process."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 overall
    except (IndexError, ValueError):
        return None


def cmdline(pid: int, proc: Path = PROC) -> list[str]:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_ours(record: ProcRecord, proc: Path = PROC) -> bool:
    """True if ``record.pid`` is still the very process we started."""
    if record.pid <= 1:
        return False
    if start_time(record.pid, proc) != record.start_time:
        return False
    return any(record.marker in arg for arg in cmdline(record.pid, proc))


def is_zombie(pid: int, proc: Path = PROC) -> bool:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].startswith("Z")


def record(pid: int, marker: str, proc: Path = PROC) -> ProcRecord | None:
    """Record a freshly started process; None if it is already gone."""
    started = start_time(pid, proc)
    if started is None:
        return None
    return ProcRecord(pid, started, marker)


def read_pidfile(path: Path, timeout: float) -> int | None:
    """Poll for a pidfile written by a daemonizing program; None if it did not appear in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = path.read_text().strip()
            if text:
                return int(text)
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def stop(rec: ProcRecord, timeout: float = 15.0) -> bool:
    """SIGTERM (then SIGKILL after ``timeout``) a process we started. False if it was not ours."""
    if not is_ours(rec):
        return False
    os.kill(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_ours(rec) or is_zombie(rec.pid):
            return True
        time.sleep(0.1)
    if is_ours(rec):
        os.kill(rec.pid, signal.SIGKILL)
    return True
