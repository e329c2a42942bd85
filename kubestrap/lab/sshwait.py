"""Wait, bounded, until VMs answer SSH; on timeout name the VM, what was awaited and its console log."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kubestrap.lab import hostdeps
from kubestrap.lab.errors import LabError

SSH_OPTIONS = (
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "IdentitiesOnly=yes",
)


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    console_log: Path
    alive: Callable[[], bool]


def ssh_argv(port: int, key: Path, user: str = "root", command: str = "true") -> list[str]:
    return [hostdeps.program("ssh"), *SSH_OPTIONS, "-i", str(key), "-p", str(port), f"{user}@127.0.0.1", command]


def answers(port: int, key: Path, timeout: float = 15.0) -> bool:
    """One SSH attempt (key login and a no-op command)."""
    try:
        proc = subprocess.run(ssh_argv(port, key), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def wait_one(target: Target, key: Path, deadline: float, interval: float = 2.0) -> float:
    """Poll until ``target`` answers SSH; returns seconds waited. LabError on death or timeout."""
    started = time.monotonic()
    while True:
        if not target.alive():
            raise LabError(
                f"VM {target.name} stopped while waiting for SSH on 127.0.0.1:{target.port}; "
                f"see its console log {target.console_log}"
            )
        if answers(target.port, key):
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise LabError(
                f"VM {target.name} did not answer SSH on 127.0.0.1:{target.port} within "
                f"{deadline - started:.0f}s; see its console log {target.console_log}"
            )
        time.sleep(interval)


def wait_all(targets: list[Target], key: Path, timeout: float, log: Callable[[str], None]) -> dict[str, float]:
    """Wait for every target in parallel; returns seconds to SSH-ready per VM."""
    if not targets:
        return {}
    deadline = time.monotonic() + timeout
    log(f"waiting up to {timeout:.0f}s for SSH on {', '.join(t.name for t in targets)}")
    results: dict[str, float] = {}
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        futures = {t.name: pool.submit(wait_one, t, key, deadline) for t in targets}
        errors: list[str] = []
        for name, fut in futures.items():
            try:
                results[name] = fut.result()
                log(f"  {name} answers SSH after {results[name]:.0f}s")
            except LabError as exc:
                errors.append(str(exc))
    if errors:
        raise LabError("; ".join(errors))
    return results
