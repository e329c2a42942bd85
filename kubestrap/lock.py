"""One host-touching run per cluster: an flock on `<runs dir>/locks/<cluster>.lock` (0600).

The file records who holds it (pid, command, start time) so a second run can say so. The flock, not
the file, is the lock: a file left by a run that died is simply taken over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from pathlib import Path

from kubestrap import paths


class LockHeld(Exception):
    """Another run holds the cluster's lock; the message names it (one line)."""


class ClusterLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None

    def __enter__(self) -> ClusterLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(cluster: str, base: Path | None = None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", cluster) or "cluster"
    return (base or paths.runs_dir()) / "locks" / f"{safe}.lock"


def acquire(cluster: str, command: str, base: Path | None = None) -> ClusterLock:
    """Take the lock of *cluster* for *command* (the command line to show), or raise LockHeld at once."""
    path = lock_path(cluster, base)
    paths.private_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise paths.storage_error(path, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise LockHeld(f"another kubestrap run holds the lock of cluster {cluster}: {holder}; wait for it or stop it") from None
    except OSError as exc:
        os.close(fd)
        raise paths.storage_error(path, exc) from None
    record = {"pid": os.getpid(), "command": command,
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    try:
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise paths.storage_error(path, exc) from None
    return ClusterLock(path, fd)


def _holder(fd: int) -> str:
    """Who holds the lock, from its file; the holder writes it right after taking the flock."""
    record: dict[str, object] = {}
    for _ in range(10):
        try:
            data = os.pread(fd, 4096, 0)
            record = json.loads(data) if data.strip() else {}
        except (OSError, ValueError):
            record = {}
        if record:
            break
        time.sleep(0.05)
    pid = record.get("pid", "unknown")
    command = record.get("command", "unknown command")
    started = record.get("started", "at an unknown time")
    return f"pid {pid}, `{command}`, started {started}"
