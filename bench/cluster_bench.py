#!/usr/bin/env python3
"""Benchmark (not a test): wall time of `up` on fresh lab VMs, of the idempotent second `up` and
of `add-node`, per phase, with task counts and the number of hosts add-node touched.

Uses the same lab and local artifact mirror as tests/e2e. Figures go to bench/results/cluster.json.
    .venv/bin/python bench/cluster_bench.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from e2e_support import NEW_NODE, start_cluster  # noqa: E402


class _Factory:
    """Minimal stand-in for pytest's tmp_path_factory."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def mktemp(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.base))
        return path


def _figures(summary: dict) -> dict:
    return {
        "seconds": summary.get("seconds"),
        "phases": {p["name"]: {"seconds": p["seconds"], "tasks": p["tasks"]} for p in summary.get("phases", [])},
        "tasks": sum(p["tasks"] for p in summary.get("phases", [])),
        "hosts_touched": sorted(summary.get("hosts", {})),
        "hosts_changed": sorted(h for h, c in summary.get("hosts", {}).items() if c["changed"]),
    }


def main() -> int:
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory() as tmp:
        gen = start_cluster(_Factory(Path(tmp)))
        cluster = next(gen)
        try:
            t0 = time.monotonic()
            results["up_fresh"] = _figures(cluster.cli("up")[1])
            results["up_fresh"]["wall_seconds"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
            results["up_again"] = _figures(cluster.cli("up")[1])
            results["up_again"]["wall_seconds"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
            results["add_node"] = _figures(cluster.cli("add-node", NEW_NODE, inventory=cluster.full)[1])
            results["add_node"]["wall_seconds"] = round(time.monotonic() - t0, 1)
            results["add_node"]["number_of_hosts_touched"] = len(results["add_node"]["hosts_touched"])
        finally:
            for _ in gen:
                pass
    out = ROOT / "bench" / "results" / "cluster.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
