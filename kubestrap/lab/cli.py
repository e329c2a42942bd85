"""``lab`` subcommand: ``up``, ``down`` and ``status`` of the VM lab."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kubestrap.lab import alloc, artifacts_source, lab, paths
from kubestrap.lab.errors import LabError
from kubestrap.lab.spec import DEFAULT_MEMORY_MIB, DEFAULT_TIMEOUT, LabSpec, default_vms, load_spec_file, vms_from_json
from kubestrap.tables import print_table

_err = Console(stderr=True, highlight=False)


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir).resolve() if args.state_dir else paths.default_state_dir(args.name)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="lab", help="lab name (default: lab); state in .lab/<name>/")
    p.add_argument("--state-dir", help="keep the lab state here instead of .lab/<name>/")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``lab`` subcommand (with ``up``, ``down``, ``status``) to a parent CLI."""
    lab_p = subparsers.add_parser("lab", help="local VM lab (qemu) to try kubestrap on real Debian VMs")
    # errors (LabError) and their exit code: kubestrap/exits.py, which runs every command
    lab_p.set_defaults(func=_usage(lab_p), interrupted="interrupted; run `lab down` to clean up what was started")
    sub = lab_p.add_subparsers(dest="lab_command", metavar="{up,down,status}")

    up_p = sub.add_parser("up", help="build/reuse the image, boot the lab VMs, write inventories/lab/hosts.yml")
    _common(up_p)
    up_p.add_argument("--workers", type=int, default=3, help="number of worker VMs (default: 3)")
    up_p.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MIB, help="MiB of RAM per VM (default: 2048)")
    up_p.add_argument("--cp-cpus", type=int, default=2, help="vCPUs of the control-plane VM (default: 2)")
    up_p.add_argument("--worker-cpus", type=int, default=1, help="vCPUs per worker VM (default: 1)")
    up_p.add_argument("--network", default=alloc.DEFAULT_NETWORK, help="node network (default: 10.77.0.0/24)")
    up_p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for SSH (default: 900)")
    up_p.add_argument("--spec", help="JSON file listing the VMs (used by molecule); replaces --workers")
    up_p.add_argument("--no-inventory", action="store_true", help="do not write an Ansible inventory")
    up_p.add_argument(
        "--artifacts",
        choices=artifacts_source.CHOICES,
        default="auto",
        help="where the cluster's artifacts come from: the internet, or the local mirror of programs built from their "
        "Go modules (written to the inventory's group_vars/k8s_cluster/local-mirror.yml); auto (default): the local "
        "mirror when a release host does not answer",
    )
    up_p.add_argument("--json", action="store_true", help="print the lab status as JSON")
    up_p.set_defaults(func=cmd_up)

    down_p = sub.add_parser("down", help="stop the lab's VMs and switch, remove overlays")
    _common(down_p)
    down_p.set_defaults(func=cmd_down)

    status_p = sub.add_parser("status", help="show the lab's VMs")
    _common(status_p)
    status_p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status_p.set_defaults(func=cmd_status)


def _usage(parser: argparse.ArgumentParser) -> Any:
    def show(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def _log(message: str) -> None:
    # soft wrap: a path in a log line is never broken across lines (copy-paste keeps working)
    _err.print(message, markup=False, soft_wrap=True)


def _spec(args: argparse.Namespace) -> LabSpec:
    state_dir = _state_dir(args)
    for flag in ("workers", "memory", "cp_cpus", "worker_cpus"):
        if getattr(args, flag) < (0 if flag == "workers" else 1):
            raise LabError(f"--{flag.replace('_', '-')} is out of range: {getattr(args, flag)}")
    network = args.network
    if args.spec:
        data = load_spec_file(Path(args.spec))
        vms = vms_from_json(data)
        network = str(data.get("network") or network)
    else:
        vms = default_vms(args.name, args.workers, args.cp_cpus, args.worker_cpus, args.memory)
    alloc.node_ips(network, 0)  # validates the network
    inv = None if args.no_inventory else paths.default_inventory_path(args.name, state_dir)
    return LabSpec(args.name, state_dir, vms, network, inv, args.timeout)


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    spec = _spec(args)
    if spec.inventory is not None:
        artifacts_source.apply(args.artifacts, spec.inventory, _log)
    result = lab.up(spec, _log)
    info = lab.status(_state_dir(args), probe_ssh=False)
    for row in info["vms"]:
        row["ssh"] = row["name"] in result.ssh_seconds
    info["started"] = result.started
    info["ssh_seconds"] = {name: round(sec, 1) for name, sec in result.ssh_seconds.items()}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_table(info)
        what = f"started {', '.join(result.started)}" if result.started else "nothing to change, all VMs were up"
        if result.state.inventory:
            what += f"; inventory {result.state.inventory}" + (" written" if result.inventory_changed else "")
        _err.print(f"{what}. Finished in {time.monotonic() - started:.0f}s", markup=False)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    started = time.monotonic()
    stopped = lab.down(_state_dir(args), _log)
    if stopped:
        _err.print(f"stopped {', '.join(stopped)}. Finished in {time.monotonic() - started:.0f}s", markup=False)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    info = lab.status(_state_dir(args))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    if not info["exists"]:
        _err.print(f"no lab in {info['state_dir']} (start one with `lab up`)", markup=False)
        return 0
    _print_table(info)
    return 0


_STATES = {
    (True, True): "[green]ready[/]",
    (True, False): "[yellow]booting[/]",
    (False, True): "[red]stopped[/]",
    (False, False): "[red]stopped[/]",
}


def _print_table(info: dict[str, Any]) -> None:
    table = Table(title=f"lab {info.get('name')} ({info.get('accel')}, {info.get('network')})")
    for column in ("VM", "role", "node_ip", "ssh", "api", "pid", "state"):
        table.add_column(column)
    for row in info["vms"]:
        state_text = _STATES[(row["running"], row["ssh"])]
        table.add_row(
            row["name"],
            row["role"] or "-",
            row["node_ip"],
            f"127.0.0.1:{row['ssh_port']}",
            f"127.0.0.1:{row['api_port']}" if row.get("api_port") else "-",
            str(row["pid"]) if row["running"] else "-",
            state_text,
        )
    print_table(Console(), table)  # whole in a pipe too: no 127.0.0.1… ports
    _err.print(f"ssh: ssh -i {info['private_key']} -p <port> root@127.0.0.1", markup=False)
