"""Benchmark of the VM lab (not a test): image build cold and cached, SSH-ready time, RSS per VM.

Writes ``bench/results/lab.json``. Run as root from the repository root:
``.venv/bin/python bench/lab_bench.py [--skip-cold]``. The cold build goes to a temporary cache
directory, so the shared image cache is neither used nor disturbed by it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubestrap.lab import image, lab  # noqa: E402
from kubestrap.lab.recipe import default_recipe  # noqa: E402
from kubestrap.lab.spec import LabSpec, default_vms  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def time_image(skip_cold: bool) -> dict[str, Any]:
    recipe = default_recipe()
    result: dict[str, Any] = {"recipe": recipe.digest(), "mirror": recipe.mirror}
    if not skip_cold:
        with tempfile.TemporaryDirectory(prefix="kubestrap-bench-images-", dir="/var/tmp") as tmp:
            started = time.monotonic()
            image.ensure_image(recipe, log, root=Path(tmp))
            result["cold_build_seconds"] = round(time.monotonic() - started, 1)
    image.ensure_image(recipe, log)  # make sure the shared cache holds it
    started = time.monotonic()
    image.ensure_image(recipe, log)
    result["cached_seconds"] = round(time.monotonic() - started, 3)
    return result


def time_lab(workers: int) -> dict[str, Any]:
    state_dir = Path(tempfile.mkdtemp(prefix=f"kubestrap-bench-lab{workers}-", dir="/var/tmp"))
    spec = LabSpec("bench", state_dir, default_vms("bench", workers), inventory=None)
    started = time.monotonic()
    try:
        result = lab.up(spec, log)
        total = time.monotonic() - started
        rss = {v.name: rss_mib(v.process.pid) if v.process else None for v in result.state.vms}
        return {
            "vms": len(spec.vms),
            "accel": result.state.accel,
            "up_seconds_total": round(total, 1),
            "ssh_ready_seconds": {k: round(v, 1) for k, v in result.ssh_seconds.items()},
            "rss_mib_per_vm_at_ssh_ready": rss,
            "memory_mib_per_vm_configured": spec.vms[0].memory_mib,
        }
    finally:
        lab.down(state_dir, log)
        shutil.rmtree(state_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-cold", action="store_true", help="do not time a cold image build")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "lab.json"))
    args = parser.parse_args()
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=False)
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "qemu": qemu.stdout.splitlines()[0] if qemu.stdout else None,
            "loadavg_at_start": os.getloadavg(),
        },
    }
    report["image"] = time_image(args.skip_cold)
    report["one_vm"] = time_lab(0)
    report["four_vms"] = time_lab(3)
    report["host"]["loadavg_at_end"] = os.getloadavg()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
