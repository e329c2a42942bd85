"""The lab's private userspace switch (vde_switch): VM-to-VM traffic never touches host networks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from kubestrap.lab import hostdeps, procs
from kubestrap.lab.errors import LabError


def sock_dir(state_dir: Path) -> Path:
    return state_dir / "switch"


def start(state_dir: Path) -> procs.ProcRecord:
    sock = sock_dir(state_dir)
    pidfile = state_dir / "switch.pid"
    shutil.rmtree(sock, ignore_errors=True)
    pidfile.unlink(missing_ok=True)
    cmd = [hostdeps.program("vde_switch"), "-d", "-s", str(sock), "-p", str(pidfile), "-m", "0700"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"vde_switch failed to start ({' '.join(cmd)}): {proc.stderr.strip()}")
    pid = procs.read_pidfile(pidfile, timeout=10)
    rec = procs.record(pid, str(sock)) if pid else None
    if rec is None:
        raise LabError(f"vde_switch did not stay up (no live pid in {pidfile} after 10 s)")
    return rec


def remove(state_dir: Path) -> None:
    shutil.rmtree(sock_dir(state_dir), ignore_errors=True)
    (state_dir / "switch.pid").unlink(missing_ok=True)
