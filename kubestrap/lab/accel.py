"""Pick the accelerator: KVM only if a guest really boots with it here, else TCG.

The probe boots the image's kernel under KVM with no root disk and waits a few seconds for the
kernel's first console line. The answer is cached per host boot (``/proc/sys/kernel/random/boot_id``).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from kubestrap.lab import hostdeps, paths
from kubestrap.lab.image import Image

ENV = "KUBESTRAP_LAB_ACCEL"
PROBE_SECONDS = 15.0
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return "unknown"


def cache_file() -> Path:
    return paths.cache_root() / "accel.json"


def cached(boot_id: str, path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("boot_id") == boot_id and data.get("accel") in ("kvm", "tcg"):
        return str(data["accel"])
    return None


def kvm_boots(image: Image, timeout: float = PROBE_SECONDS) -> bool:
    """Boot the kernel under KVM; True if it prints its banner within ``timeout`` seconds."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory(prefix="kubestrap-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        argv = [
            hostdeps.program("qemu-system-x86_64"),
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-kernel",
            str(image.kernel),
            "-append",
            "console=ttyS0 panic=-1",
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            f"file:{console}",
            "-no-reboot",
            "-nodefaults",
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if console.exists() and b"Linux version" in console.read_bytes():
                    return True
                if proc.poll() is not None:
                    return console.exists() and b"Linux version" in console.read_bytes()
                time.sleep(0.2)
            return False
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def choose(image: Image) -> str:
    """``kvm`` or ``tcg`` (``KUBESTRAP_LAB_ACCEL`` overrides the probe)."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in ("kvm", "tcg"):
        return forced
    boot_id = _boot_id()
    path = cache_file()
    answer = cached(boot_id, path)
    if answer is None:
        answer = "kvm" if kvm_boots(image) else "tcg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"boot_id": boot_id, "accel": answer}) + "\n")
    return answer
