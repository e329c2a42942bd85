#!/usr/bin/env python3
"""Benchmark (not a test): wall time of `up` on fresh lab VMs, of the idempotent second `up` and
of `add-node`, per phase, with task counts and the number of hosts add-node touched.

Uses the same lab and local artifact mirror as tests/e2e. Figures go to bench/results/cluster.json.
    .venv/bin/python bench/cluster_bench.py [--label NAME]
    .venv/bin/python bench/cluster_bench.py --from-runs DIR [--label NAME]
The second form boots nothing: it reads the run journals an e2e run left in DIR (its
KUBESTRAP_RUNS_DIR: one <timestamp>-<command>/summary.json per run) and writes the same figures
for the up, up, add-node sequence found there to bench/results/cluster-<NAME>.json, with each run's
slowest tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
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


def slowest_tasks(events: Path, count: int = 15) -> list[dict]:
    """The run's slowest tasks by wall time (task start to the next task start or the end of its
    playbook), with phase and role: where the next speed-up is."""
    spans: list[dict] = []
    current: dict | None = None
    for line in events.read_text().splitlines():
        event = json.loads(line)
        kind = event.get("event")
        if kind not in ("playbook_on_task_start", "playbook_on_stats", "playbook_on_play_start"):
            continue
        at = datetime.fromisoformat(event["created"]).timestamp()
        if current is not None:
            current["seconds"] = round(at - current.pop("at"), 1)
            spans.append(current)
            current = None
        if kind == "playbook_on_task_start":
            data = event.get("event_data", {})
            current = {"phase": event.get("phase"), "role": data.get("role", ""), "task": data.get("task", ""), "at": at}
    return sorted(spans, key=lambda s: -s["seconds"])[:count]


# Actions Ansible runs on the controller: no module start on the node.
_CONTROLLER_ACTIONS = {
    "ansible.builtin.set_fact",
    "ansible.builtin.assert",
    "ansible.builtin.debug",
    "ansible.builtin.fail",
    "ansible.builtin.validate_argument_spec",
    "ansible.builtin.include_tasks",
    "ansible.builtin.include_role",
    "ansible.builtin.import_tasks",
    "ansible.builtin.meta",
    "set_fact",
    "assert",
    "debug",
    "fail",
    "validate_argument_spec",
    "meta",
    "include_tasks",
    "include_role",
}


def module_runs(events: Path) -> dict[str, int]:
    """Module starts per node in one run (a loop counts its items; delegated and controller-side tasks
    count for no node): the per-task cost that dominates on slow nodes."""
    runs: dict[tuple[str, str], int] = {}
    items: dict[tuple[str, str], int] = {}
    for line in events.read_text().splitlines():
        event = json.loads(line)
        data = event.get("event_data") or {}
        host, action = data.get("host"), data.get("task_action", "")
        if not host or host == "localhost" or action in _CONTROLLER_ACTIONS:
            continue
        res = data.get("res") if isinstance(data.get("res"), dict) else {}
        if res.get("_ansible_delegated_vars") or data.get("delegate_to"):
            continue
        key = (host, data.get("task_uuid", ""))
        kind = event.get("event")
        if kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            runs[key] = 1
        elif kind in ("runner_item_on_ok", "runner_item_on_failed"):
            items[key] = items.get(key, 0) + 1
    per_host: dict[str, int] = {}
    for key in set(runs) | set(items):
        per_host[key[0]] = per_host.get(key[0], 0) + max(runs.get(key, 0), items.get(key, 0))
    return dict(sorted(per_host.items()))


def from_runs(runs: Path) -> dict:
    """Figures of the first up, the second up and the first add-node journaled under runs."""
    summaries = []
    for path in sorted(runs.glob("*/summary.json")):
        summaries.append({**json.loads(path.read_text()), "_events": path.parent / "events.jsonl"})
    ups = [s for s in summaries if s.get("command") == "up"]
    adds = [s for s in summaries if s.get("command") == "add-node"]
    results: dict = {
        "source": str(runs),
        "commit": _commit(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "loadavg_when_written": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    for key, summary in (("up_fresh", ups[0] if ups else None), ("up_again", ups[1] if len(ups) > 1 else None),
                         ("up_after_drift", ups[2] if len(ups) > 2 else None),
                         ("add_node", adds[0] if adds else None)):  # fmt: skip
        if summary is not None:
            results[key] = _figures(summary)
            results[key]["result"] = summary.get("result")
            results[key]["no_work"] = {p["name"]: p["no_work"] for p in summary.get("phases", []) if p.get("no_work")}
            if summary["_events"].exists():
                results[key]["module_runs_per_host"] = module_runs(summary["_events"])
                results[key]["slowest_tasks"] = slowest_tasks(summary["_events"])
    if "add_node" in results:
        results["add_node"]["number_of_hosts_touched"] = len(results["add_node"]["hosts_touched"])
    # every later run (the extended scenarios: a second add-node, reset --node, a bad join, --gone, a full reset,
    # the up that lost a worker, the up that converges after it), in order
    picked = {id(s) for s in (*ups[:3], *adds[:1])}
    results["later_runs"] = [
        {"run": s["_events"].parent.name, "command": s.get("command"), "result": s.get("result"),
         "seconds": s.get("seconds"), "failure": (s.get("failure") or "")[:300] or None,
         "hosts_touched": _figures(s).get("hosts_touched")}
        for s in summaries if id(s) not in picked
    ]  # fmt: skip
    fresh = (results.get("up_fresh") or {}).get("seconds")
    if fresh:
        results["ratios"] = {
            f"{key}/up_fresh": round(results[key]["seconds"] / fresh, 3) for key in ("up_again", "add_node") if key in results
        }
    return results


def _commit() -> str:
    proc = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument(
        "--from-runs", type=Path, metavar="DIR", help="read the run journals an e2e run left in DIR instead of booting the lab"
    )
    parser.add_argument(
        "--label",
        default=None,
        help="results go to bench/results/cluster-LABEL.json (default: e2e with --from-runs, else cluster.json)",
    )
    args = parser.parse_args(argv)
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    if args.from_runs is not None:
        if not args.from_runs.is_dir():
            parser.error(f"{args.from_runs} is not a directory of run journals")
        out = results_dir / f"cluster-{args.label or 'e2e'}.json"
        out.write_text(json.dumps(from_runs(args.from_runs), indent=2) + "\n")
        print(out)
        return 0
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": _commit(), "cpus": os.cpu_count()}
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
    results["loadavg_when_written"] = [round(x, 2) for x in os.getloadavg()]
    out = results_dir / (f"cluster-{args.label}.json" if args.label else "cluster.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
