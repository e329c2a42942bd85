"""Command line: bootstrap.py / kubestrap.

COMMANDS (at the end) is the one table of commands: each name, its help and options, and the
function that runs it; the lab and artifacts commands are imported explicitly and add their own
subcommands. kubestrap/exits.py maps what ends a command to its exit code. Every command that
touches hosts validates the inventory first and refuses bad input (exit 2) before any host is
contacted.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from kubestrap import (
    artifacts_cli,
    backups,
    collections_check,
    exits,
    hostkeys,
    inventory_choice,
    lock,
    paths,
    phase_state,
    phases,
    plan,
    runner,
    upgrade,
    validate,
)
from kubestrap import inventory as inv_mod
from kubestrap.exits import UserError
from kubestrap.journal import Journal
from kubestrap.lab import cli as lab_cli
from kubestrap.progress import ProgressView, elapsed
from kubestrap.redact import Redactor
from kubestrap.tables import print_table

EXIT_OK, EXIT_FAILED, EXIT_INPUT = exits.OK, exits.FAILED, exits.INPUT


def _console() -> Console:
    # soft_wrap: messages are never broken into lines, so a command to copy or a host name to grep
    # stays whole in CI logs and pipes (a terminal wraps long lines itself)
    return Console(stderr=True, highlight=False, soft_wrap=True)


# --- shared steps ---------------------------------------------------------------------------
def load_valid_inventory(path: Path) -> inv_mod.Inventory:
    """The inventory at *path*, read and checked in one pass; its problems are the user's (exit 2)."""
    try:
        return validate.load(path)
    except validate.Invalid as exc:
        raise UserError(str(exc)) from None


def _inventory(args: argparse.Namespace, touching: str | None) -> inv_mod.Inventory:
    """The valid inventory the command works on; *touching* names a command that contacts hosts (it
    needs -i or $KUBESTRAP_INVENTORY), None an offline one (it may read the example)."""
    try:
        choice = inventory_choice.choose(args.inventory, touching or args.command, touching is not None)
    except inventory_choice.NoInventory as exc:
        raise UserError(str(exc)) from None
    args.inventory, args.inventory_explicit = choice.path, choice.explicit
    if not choice.explicit:
        _console().print(f"no -i or {inventory_choice.ENV}: reading the example inventory "
                         f"{paths.display(choice.path)}", markup=False)
    return load_valid_inventory(choice.path)


def _phase_selection(all_phases: list[phases.Phase], args: argparse.Namespace) -> list[phases.Phase]:
    try:
        return phases.select(all_phases, getattr(args, "from_phase", None), getattr(args, "phase", None))
    except phases.PhaseError as exc:
        raise UserError(str(exc)) from None


def _print_plan(console: Console, selected: list[phases.Phase], hosts: dict[str, list[str]],
                inv: inv_mod.Inventory) -> None:
    columns = [*inv.group_hosts(inv_mod.CLUSTER_GROUP)]
    if any(plan.CONTROLLER in h for h in hosts.values()):
        columns = [plan.CONTROLLER, *columns]
    table = Table(title="plan: phases x hosts", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("phase")
    for col in columns:
        table.add_column("controller" if col == plan.CONTROLLER else escape(col), justify="center")
    for i, phase in enumerate(selected, start=1):
        marks = ["x" if col in hosts.get(phase.name, []) else "." for col in columns]
        table.add_row(str(i), Text(phase.name), *marks)
    print_table(console, table)


def _again(args: argparse.Namespace, *words: str) -> str:
    """The command line that repeats this one, naming the inventory when it is not the default."""
    parts = ["bootstrap.py", words[0]]
    if args.inventory is not None and getattr(args, "inventory_explicit", True):
        parts += ["-i", shlex.quote(paths.display(Path(args.inventory)))]
    return " ".join([*parts, *words[1:]])


def _execute(command: str, resume: str, selected: list[phases.Phase], inv: inv_mod.Inventory,
             args: argparse.Namespace, extravars: dict[str, Any]) -> tuple[int, runner.RunResult | None]:
    """Run *selected* under the cluster's lock with a journal; the exit code and what the run did
    (None when it could not start a phase for want of a directory)."""
    absent = collections_check.missing()
    if absent:
        raise UserError(collections_check.advice(absent))
    console = _console()
    cluster = str(inv.value("cluster_name", "cluster"))
    # the secrets directory the playbooks really write to (the inventory may move it)
    secrets = paths.effective_secrets_dir(cluster, inv.value("kubestrap_secrets_dir"))
    try:  # one host-touching run per cluster at a time, held to the end; a journal that can be written
        held = lock.acquire(cluster, resume)
        try:
            journal = Journal(command, Redactor.for_secrets_dir(secrets))
        except BaseException:
            held.release()
            raise
    except (lock.LockHeld, paths.StorageError, ValueError) as exc:
        raise UserError(str(exc)) from None
    with held:
        try:
            hosts = plan.phase_hosts(selected, inv, extravars)
            narrow = None
            if command in ("up", "add-node"):
                _print_plan(console, selected, hosts, inv)  # what will run where, before any host is touched
                recorded = phase_state.inputs(selected, inv.path, extravars)
                full = getattr(args, "full", False)
                steps = {} if full else {phase_state.STEP_INPUTS_VAR: phase_state.step_inputs(inv.path, extravars)}
                extravars = {**extravars, phase_state.INPUTS_VAR: recorded, **steps}
                narrow = _narrow(recorded, hosts, full)
            view = ProgressView(console, len(selected), args.verbose)
            opts = runner.RunOptions(inv.path, extravars, None, args.verbose, forks=max(20, len(inv.hosts)))
            outcomes, seconds = runner.run_phases(command, selected, hosts, opts, journal, view, narrow)
        except paths.StorageError as exc:  # mid-run: a phase could not get its directory
            journal.close()
            console.print(escape(str(exc)))
            return EXIT_FAILED, None
        except BaseException:
            journal.close()  # redacts what ansible-runner wrote
            raise
        result = runner.RunResult(command, inv.path, outcomes, seconds, journal=journal.path,
                                  redact=journal.redactor.obj)  # what is printed and returned is redacted
        stopped = result.stopped
        resumable = command in ("up", "add-node")
        if stopped and stopped.interrupted:
            failure: str | None = runner.interrupted_message(stopped, resume, journal, resumable)
        else:
            failure = runner.failure_message(stopped, resume, journal, resumable) if stopped else None
        journal.redactor.refresh()  # like the journal, with the secrets the run wrote
        result.failure = journal.redactor.text(failure) if failure else None
        failure = result.failure
        journal.write_summary(result.as_dict())
        journal.close()
    if stopped and stopped.interrupted:
        console.print(f"[red]INTERRUPTED[/] after {elapsed(seconds)}: {escape(failure or '')}")
        code = exits.INTERRUPTED
    elif failure:
        console.print(f"[red]FAILED[/] after {elapsed(seconds)}\n{escape(failure)}")
        code = EXIT_FAILED
    else:
        console.print(f"[green]Finished[/] {command} in {elapsed(seconds)}; journal: {escape(paths.display(journal.path))}")
        code = EXIT_OK
    if journal.problem:  # the run went on; its journal is incomplete
        console.print(escape(journal.problem))
        code = code or EXIT_FAILED
    return code, result


def _narrow(recorded: dict[str, str], hosts: dict[str, list[str]], full: bool) -> runner.Narrow | None:
    """Skip a recorded phase on the nodes whose record (checked in preflight) says it has no work."""
    if full:
        return None

    def narrow(phase: phases.Phase, outcomes: list[runner.PhaseOutcome]) -> tuple[list[str], dict[str, list[str]]] | None:
        probe: dict[str, dict[str, Any]] = {}
        for outcome in outcomes:
            probe.update(outcome.tracker.phase_work)
        if phase.name not in recorded or not probe:
            return None
        planned = hosts.get(phase.name, [])
        nodes = [h for h in planned if h != plan.CONTROLLER]
        busy, reasons = phase_state.work(probe, phase.name, nodes)
        if not busy:
            return [], {}
        return [h for h in planned if h == plan.CONTROLLER or h in busy], reasons

    return narrow


def _emit_json(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, default=str))


def _run_json(result: runner.RunResult | None, **extra: Any) -> dict[str, Any]:
    """The JSON of a run (empty when none started) with the command's own *extra* keys."""
    return {**(result.as_dict() if result else {}), **extra}


# --- commands -------------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    inv = _inventory(args, "check --hosts" if args.hosts else None)
    console = _console()
    hosts = inv.group_hosts(inv_mod.CLUSTER_GROUP)
    if not args.hosts:
        console.print(f"[green]inventory {escape(paths.display(args.inventory))} is valid[/]: "
                      f"{_count(len(inv.control_plane), 'control-plane node')}, {_count(len(inv.workers), 'worker')}")
        _emit_json(args, {"inventory": paths.display(args.inventory), "valid": True, "hosts": hosts})
        return EXIT_OK
    selected = phases.checks(phases.of("up"))
    _host_keys("check", selected, inv, args, {})
    code, result = _execute("check", _again(args, "check", "--hosts"), selected, inv, args, {})
    if result:
        _print_preflight(console, result.stats("kubestrap_preflight"))
    _emit_json(args, _run_json(result))
    return code


def _host_keys(command: str, selected: list[phases.Phase], inv: inv_mod.Inventory, args: argparse.Namespace,
               extravars: dict[str, Any]) -> None:
    """Before any host is touched: refuse changed SSH host keys; record (and show) new ones where the
    command may make first contact (check --hosts, up, add-node unless strict), else refuse them."""
    if not hostkeys.targets(inv, inv.hosts):
        return  # no host reached over SSH with checking on (the lab, local connections)
    touched = {h for names in plan.phase_hosts(selected, inv, extravars).values() for h in names}
    reason: str | None = None
    if command in ("up", "add-node"):
        if args.no_new_host_keys:
            reason = "new keys are not accepted (--no-new-host-keys)"
        elif hostkeys.strict_from_env():
            reason = f"new keys are not accepted ({hostkeys.STRICT_ENV} is set)"
    elif command != "check":
        reason = f"{command} works on a cluster whose keys are already known, so it records none"
    try:
        lines = hostkeys.first_contact(inv, [h for h in inv.hosts if h in touched], reason,
                                       _again(args, "check", "--hosts"))
    except hostkeys.HostKeyError as exc:
        raise UserError(str(exc)) from None
    for line in lines:
        _console().print(line, markup=False)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _print_preflight(console: Console, data: dict[str, Any]) -> None:
    """The preflight results (host -> check -> ok, detail) as a table."""
    if not data:
        return
    checks = sorted({c for host in data.values() for c in host})
    table = Table(title="host preflight", title_justify="left")
    table.add_column("host")
    for check in checks:
        table.add_column(escape(check))
    for host, results in sorted(data.items()):
        cells = []
        for check in checks:
            r = results.get(check, {})
            ok = r.get("ok")
            mark = "[green]ok[/]" if ok else ("[red]FAIL[/]" if ok is False else "-")
            cells.append(f"{mark} {escape(str(r.get('detail', '')))}".strip())
        table.add_row(Text(host), *cells)
    print_table(console, table)


def cmd_plan(args: argparse.Namespace) -> int:
    if args.upgrade:
        if args.add_node or args.hosts or args.command_for != "up" or args.from_phase or args.phase:
            raise UserError("plan --upgrade shows the upgrade's order from the versions the cluster runs; --add-node, "
                            "--hosts, --for, --from-phase and --phase go with plan of up only")
        return _plan_upgrade(args, _inventory(args, "plan --upgrade"))
    if args.batch_size is not None:
        raise UserError("--batch-size goes with plan --upgrade (the workers upgraded at the same time)")
    inv = _inventory(args, "plan --hosts" if args.hosts else None)
    if args.command_for != "up":
        if args.add_node or args.hosts:
            raise UserError(f"plan --for {args.command_for} lists the hosts that command runs on; --add-node and "
                            "--hosts go with plan of up only")
        declared, extravars = phases.of(args.command_for), {}
    elif args.add_node:
        _require_node(inv, args.add_node, _again(args, "plan", "--add-node", args.add_node))
        _require_joinable(inv, args.add_node)
        declared, extravars = phases.of("add-node"), {"kubestrap_node_scope": args.add_node}
    else:
        declared, extravars = phases.of("up"), {}
    selected = _phase_selection(declared, args)
    hosts = plan.phase_hosts(selected, inv, extravars)
    if args.hosts:
        return _plan_work(args, inv, declared, selected, hosts, extravars)
    if args.json:
        _emit_json(args, {"phases": [{"name": p.name, "hosts": hosts[p.name]} for p in selected]})
    else:
        _print_plan(Console(highlight=False, soft_wrap=True), selected, hosts, inv)
    return EXIT_OK


def _plan_work(args: argparse.Namespace, inv: inv_mod.Inventory, declared: list[phases.Phase],
               selected: list[phases.Phase], hosts: dict[str, list[str]], extravars: dict[str, Any]) -> int:
    """plan --hosts: run the read-only preflight (it reads each node's phase records) and show, per phase
    and host, whether the phase has work there and why."""
    probe_phase = phases.checks(declared)
    if not probe_phase:
        raise UserError(f"plan --hosts needs a phase tagged {phases.CHECK_TAG!r}, which reads the nodes' records")
    recorded = phase_state.inputs(selected, inv.path, extravars)
    words = ["plan", "--hosts", *(["--add-node", args.add_node] if args.add_node else [])]
    _host_keys("plan", probe_phase, inv, args, extravars)
    code, result = _execute("plan", _again(args, *words), probe_phase, inv, args,
                            {**extravars, phase_state.INPUTS_VAR: recorded})
    if code != EXIT_OK or result is None:
        _emit_json(args, _run_json(result))
        return code
    records = result.records(probe_phase[0].name)
    cells = phase_state.cells(selected, hosts, recorded, records)
    console = Console(highlight=False, soft_wrap=True)
    columns = [h for h in inv.group_hosts(inv_mod.CLUSTER_GROUP) if any(h in row for row in cells.values())]
    table = Table(title="plan: work per phase x host (read from the nodes)", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("phase")
    for col in columns:
        table.add_column(escape(col))
    for i, phase in enumerate(selected, start=1):
        row = cells[phase.name]
        table.add_row(str(i), Text(phase.name), *[Text(phase_state.cell_text(row.get(col))) for col in columns])
    print_table(console, table)
    _emit_json(args, {"phases": [{"name": p.name, "hosts": cells[p.name]} for p in selected],
                      "journal": paths.display(result.journal) if result.journal else None})
    return EXIT_OK


# --- upgrade ----------------------------------------------------------------------------------
def _batch_size(args: argparse.Namespace) -> int:
    size = 1 if args.batch_size is None else int(args.batch_size)
    if size < 1:
        raise UserError(f"--batch-size {size}: workers are upgraded in batches of at least 1 node")
    return size


def _read_versions(args: argparse.Namespace, inv: inv_mod.Inventory, words: list[str]) -> tuple[int, dict[str, Any]]:
    """The running versions, read-only on the first control plane (playbooks/upgrade_versions.yml): the exit code
    of that run and what it reported (kubestrap/upgrade.py report())."""
    selected = phases.of("upgrade-versions")
    _host_keys("plan", selected, inv, args, {})
    code, result = _execute("plan", _again(args, *words), selected, inv, args, {})
    return code, (result.stats("kubestrap_upgrade_versions") if result else {})


def upgrade_plan(inv: inv_mod.Inventory, cluster: dict[str, Any], batch_size: int) -> upgrade.Plan:
    """The policy's plan for the versions *cluster* reports (no host contacted); its refusal is the user's (exit 2)."""
    try:
        return upgrade.plan_cluster(cluster, inv.control_plane, inv.workers, inv.value("kubestrap_artifacts") or {},
                                    batch_size)
    except upgrade.Refused as exc:
        raise UserError(f"upgrade refused, nothing was changed: {exc}") from None


_UPGRADE_WORK = {
    (upgrade.APPLY, upgrade.CONTROL_PLANE): "kubeadm upgrade apply; drain; kubelet + kubectl; restart; uncordon",
    (upgrade.NODE, upgrade.CONTROL_PLANE): "kubeadm upgrade node; drain; kubelet + kubectl; restart; uncordon",
    (upgrade.NODE, upgrade.WORKER): "kubeadm upgrade node; drain; kubelet; restart; uncordon",
    (upgrade.RUNTIME, upgrade.CONTROL_PLANE): "drain; containerd + runc; restart containerd, kubelet; uncordon",
    (upgrade.RUNTIME, upgrade.WORKER): "drain; containerd + runc; restart containerd, kubelet; uncordon",
}


def _upgrade_work(step: upgrade.Step) -> str:
    """What a step does on its nodes; a kubelet step that also replaces containerd says so (in the drained window)."""
    work = _UPGRADE_WORK[(step.action, step.role)]
    if step.action == upgrade.RUNTIME or not step.runtime_nodes:
        return work
    on = "" if len(step.runtime_nodes) == len(step.nodes) else f" on {', '.join(step.runtime_nodes)}"
    return work.replace("; drain;", f"; drain; containerd + runc{on};")


def _upgrade_versions(step: upgrade.Step) -> str:
    """from -> to of a step: the kubelets', then containerd's when the step replaces it."""
    kubelets = f"{', '.join(step.versions_from)} -> {step.version_to}"
    containerd = f"containerd {', '.join(step.runtime_from)} -> {step.runtime_to}" if step.runtime_nodes else ""
    if step.action == upgrade.RUNTIME:
        return containerd
    return f"{kubelets}; {containerd}" if containerd else kubelets


def print_upgrade_plan(console: Console, plan: upgrade.Plan) -> None:
    """The plan as a table (step, nodes, action, from -> to), the nodes already at the target and the notes."""
    if plan.nothing_to_do:
        runtime = f", containerd {plan.runtime}" if plan.runtime else ""
        console.print(f"upgrade: nothing to do, the API server and every node run {plan.target}{runtime}", markup=False)
    else:
        runtime = f", containerd -> {plan.runtime}" if any(step.runtime_nodes for step in plan.steps) else ""
        table = Table(title=escape(f"upgrade: API server {plan.apiserver} -> {plan.target}{runtime}"),
                      title_justify="left")
        for col in ("step", "node(s)", "action", "from -> to"):
            table.add_column(col)
        for step in plan.steps:
            table.add_row(str(step.number), Text(", ".join(step.nodes)), Text(_upgrade_work(step)),
                          Text(_upgrade_versions(step)))
        print_table(console, table)
        if plan.current:
            runtime = f" with containerd {plan.runtime}" if plan.runtime else ""
            console.print(f"already at {plan.target}{runtime} (not touched): {', '.join(plan.current)}", markup=False)
    for note in plan.notes:
        console.print(f"note: {note}", markup=False)


def _plan_upgrade(args: argparse.Namespace, inv: inv_mod.Inventory) -> int:
    size = _batch_size(args)
    words = ["plan", "--upgrade", *(["--batch-size", str(size)] if args.batch_size is not None else [])]
    code, cluster = _read_versions(args, inv, words)
    if code != EXIT_OK:
        return code
    plan_ = upgrade_plan(inv, cluster, size)
    if args.json:
        _emit_json(args, {"upgrade": plan_.as_dict()})
    else:
        print_upgrade_plan(Console(highlight=False, soft_wrap=True), plan_)
    return EXIT_OK


def cmd_upgrade(args: argparse.Namespace) -> int:
    inv = _inventory(args, "upgrade")
    size = _batch_size(args)
    try:
        upgrade.pinned_target(inv.value("kubestrap_artifacts") or {})
    except upgrade.Refused as exc:
        raise UserError(str(exc)) from None
    _require_confirmation(args, "upgrade", " (`bootstrap.py plan --upgrade` shows the order first)")
    words = ["--batch-size", str(size)] if args.batch_size is not None else []
    code, cluster = _read_versions(args, inv, ["plan", "--upgrade", *words])
    if code != EXIT_OK:
        return code
    plan_ = upgrade_plan(inv, cluster, size)
    print_upgrade_plan(_console(), plan_)
    if plan_.nothing_to_do:
        _emit_json(args, {"upgrade": plan_.as_dict()})
        return EXIT_OK
    cluster_name = str(inv.value("cluster_name"))
    runtime = f" (containerd {plan_.runtime})" if any(step.runtime_nodes for step in plan_.steps) else ""
    question = (f"Upgrade cluster {cluster_name} to {plan_.target}{runtime} in this order? Nodes are drained one batch "
                "at a time.")
    if not args.yes and not _confirmed_by_name("upgrade", cluster_name, question):
        return EXIT_OK
    extravars = {"kube_upgrade_batch_size": size}
    selected = phases.of("upgrade")
    _host_keys("upgrade", selected, inv, args, extravars)
    code, result = _execute("upgrade", _again(args, "upgrade", *words, "--yes"), selected, inv, args, extravars)
    done = result.stats("kubestrap_upgrade") if result else {}
    if code == EXIT_OK and not args.json:
        _console().print(f"upgraded to {plan_.target}: {', '.join(plan_.pending)}; a re-run changes nothing",
                         markup=False)
    _emit_json(args, _run_json(result, upgrade=done or plan_.as_dict()))
    return code


def cmd_up(args: argparse.Namespace) -> int:
    inv = _inventory(args, "up")
    selected = _phase_selection(phases.of("up"), args)
    _host_keys("up", selected, inv, args, {})
    code, result = _execute("up", _again(args, "up"), selected, inv, args, {})
    verified = result.stats("kubestrap_verify") if result else {}
    if code == EXIT_OK and verified and not args.json:
        _print_cluster(inv, verified)
    _emit_json(args, _run_json(result))
    return code


def _print_cluster(inv: inv_mod.Inventory, verified: dict[str, Any]) -> None:
    """After an `up` that verified the cluster: its nodes as verify saw them, and how to reach it."""
    console = Console(highlight=False, soft_wrap=True)
    _print_nodes(console, inv, _status_rows(inv, {"nodes": verified.get("nodes") or [], "bootstrapped": True}))
    cluster = str(inv.value("cluster_name"))
    kubeconfig = paths.effective_secrets_dir(cluster, inv.value("kubestrap_secrets_dir")) / "admin.conf"
    console.print(f"kubeconfig: {escape(paths.display(kubeconfig))} (0600): "
                  f"kubectl --kubeconfig {escape(paths.display(kubeconfig))} get nodes")


def _print_nodes(console: Console, inv: inv_mod.Inventory, nodes: list[dict[str, str]]) -> None:
    table = Table(title=escape(f"cluster {inv.value('cluster_name')}"), title_justify="left")
    for col in ("node", "role", "node IP", "kubelet", "ready"):
        table.add_column(col)
    for row in nodes:
        table.add_row(*(Text(row[k]) for k in ("name", "role", "node_ip", "kubelet", "ready")))
    print_table(console, table)


def _require_node(inv: inv_mod.Inventory, name: str, again: str) -> None:
    """Refuse a node the inventory lacks, saying how to add it and the command (*again*) to run then."""
    if name not in inv.group_hosts(inv_mod.CLUSTER_GROUP):
        raise UserError(
            f"{name} is not in {paths.display(inv.hosts_file)}; add it under {inv_mod.WORKERS_GROUP} with "
            f"ansible_host and node_ip, e.g.\n      {name}:\n        ansible_host: <ssh address>\n"
            f"        node_ip: <address on {inv.value('cluster_node_network')}>\nthen run `{again}` again."
        )


def _require_known_node(inv: inv_mod.Inventory, name: str) -> None:
    """Refuse a node the inventory lacks, listing the ones it has (for commands on existing nodes)."""
    known = inv.group_hosts(inv_mod.CLUSTER_GROUP)
    if name not in known:
        raise UserError(f"{name} is not in {paths.display(inv.hosts_file)}; its nodes are: {', '.join(known)}")


def _require_joinable(inv: inv_mod.Inventory, name: str) -> None:
    """add-node joins a worker, or (HA control plane, cluster_api_vip set) a control-plane node other than the first,
    which `up` initialises; a control plane is set up behind the floating address, which a cluster without one lacks."""
    if name in inv.workers:
        return
    cps = inv.control_plane
    if name == cps[0]:
        raise UserError(f"{name} is the first node of {inv_mod.CONTROL_PLANE_GROUP}: `bootstrap.py up` initialises "
                        "it; add-node joins the other nodes")
    if not inv.value("cluster_api_vip"):
        raise UserError(f"{name} is in {inv_mod.CONTROL_PLANE_GROUP}, but the cluster has no floating API address: "
                        "control-plane nodes join behind cluster_api_vip (README, \"HA control plane\"); set it in "
                        f"{paths.display(inv.path / 'group_vars' / 'k8s_cluster.yml')} before the first `up`")


def cmd_add_node(args: argparse.Namespace) -> int:
    inv = _inventory(args, "add-node")
    _require_node(inv, args.name, _again(args, "add-node", args.name))
    _require_joinable(inv, args.name)
    selected = _phase_selection(phases.of("add-node"), args)
    _host_keys("add-node", selected, inv, args, {"kubestrap_node_scope": args.name})
    code, result = _execute("add-node", _again(args, "add-node", args.name), selected, inv, args,
                            {"kubestrap_node_scope": args.name})
    _emit_json(args, _run_json(result))
    return code


def cmd_status(args: argparse.Namespace) -> int:
    inv = _inventory(args, "status")
    selected = phases.of("status")
    _host_keys("status", selected, inv, args, {})
    code, result = _execute("status", _again(args, "status"), selected, inv, args, {})
    status = result.stats("kubestrap_status") if result else {}
    nodes = _status_rows(inv, status)
    addons = _status_addons(status)
    if not args.json:
        _print_nodes(Console(highlight=False), inv, nodes)
        if addons:
            table = Table(title="add-ons (helm releases)", title_justify="left")
            for col in ("release", "namespace", "chart", "status", "workloads in namespace"):
                table.add_column(col)
            for rel in addons:
                table.add_row(*(Text(str(rel.get(k, ""))) for k in ("name", "namespace", "chart", "status")),
                              Text(str(rel.get("workloads", "-"))))
            print_table(Console(highlight=False), table)
    certs = _cert_rows(inv, result.stats("kubestrap_certs") if result else {})
    if certs and not args.json:
        _print_certs(Console(highlight=False), certs)
    _emit_json(args, _run_json(result, nodes=nodes, addons=addons, certificates=certs))
    return code


def _cert_rows(inv: inv_mod.Inventory, reported: dict[str, Any]) -> list[dict[str, Any]]:
    """Per control-plane node: the certificate soonest to expire, its days left, and every kubeadm-managed
    certificate with fewer than certs_expiry_warn_days left (the playbook's filter decided: `under`)."""
    rows = []
    for name in inv.control_plane:
        expiry = reported.get(name)
        if not isinstance(expiry, dict):
            continue
        soonest = expiry.get("soonest") or {}
        rows.append({"node": name, "soonest": soonest.get("name", "-"), "expires": soonest.get("expires", "-"),
                     "days": soonest.get("days"), "warn": list(expiry.get("under") or []),
                     "missing": list(expiry.get("missing") or [])})
    return rows


def _print_certs(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="control-plane certificates (kubeadm certs check-expiration)", title_justify="left")
    for col in ("node", "expires first", "on", "days left", "warning"):
        table.add_column(col)
    for row in rows:
        warning = (f"renew soon: {', '.join(row['warn'])} (bootstrap.py certs renew)" if row["warn"] else "ok")
        table.add_row(Text(row["node"]), Text(str(row["soonest"])), Text(str(row["expires"])),
                      Text(str(row["days"] if row["days"] is not None else "-")),
                      Text(warning, style="red" if row["warn"] else ""))
    print_table(console, table)


def _status_addons(status: dict[str, Any]) -> list[dict[str, str]]:
    """Helm releases of the status playbook's report (kubestrap_status) with the readiness of the
    workloads in their namespace ("R/T ready")."""
    readiness = status.get("workloads") or {}
    return [{**rel, "workloads": readiness.get(rel.get("namespace", ""), "no workloads")}
            for rel in status.get("addons") or []]


def _status_rows(inv: inv_mod.Inventory, status: dict[str, Any]) -> list[dict[str, str]]:
    """One row per node: the inventory's nodes, then those only the cluster knows."""
    live = {str(n[0]): (str(n[1]), str(n[2])) for n in status.get("nodes", [])}
    rows = []
    names = inv.group_hosts(inv_mod.CLUSTER_GROUP)
    for name in [*names, *sorted(set(live) - set(names))]:
        role = "control-plane" if name in inv.control_plane else ("worker" if name in inv.workers else "not in inventory")
        kubelet, ready = live.get(name, ("-", "not joined" if status.get("bootstrapped") else "not bootstrapped"))
        ip = str(inv_mod.host_value(inv, name, "node_ip")[0]) if name in inv.hosts else "-"
        rows.append({"name": name, "role": role, "node_ip": ip, "kubelet": kubelet,
                     "ready": {"True": "Ready", "False": "NotReady"}.get(ready, ready)})
    return rows


def cmd_reset(args: argparse.Namespace) -> int:
    inv = _inventory(args, "reset")
    if args.node:
        _require_known_node(inv, args.node)
    if args.gone and not args.node:
        raise UserError("--gone removes one dead worker: name it with --node NAME")
    if args.gone and args.node not in inv.workers:
        raise UserError(f"{args.node} is a control-plane node: --gone removes workers only")
    if args.node and args.node in inv.control_plane:
        # kubeadm reset would take its etcd member out and every later run would still look for it (the first
        # one runs the cluster steps): not something to find out on a live control plane
        raise UserError(f"{args.node} is a control-plane node: `reset --node` resets workers only (removing a "
                        "control plane from a running cluster is not supported). To take the whole cluster down: "
                        f"`{_again(args, 'reset', '--yes')}`")
    target, cluster = args.node or "every node", str(inv.value("cluster_name"))
    _require_confirmation(args, "reset")
    question = (f"Delete the Node {target} from cluster {cluster} without contacting the machine?" if args.gone
                else f"Reset {target} of cluster {cluster}? This wipes Kubernetes from it.")
    if not args.yes and not _confirmed_by_name("reset", cluster, question):
        return EXIT_OK
    extravars: dict[str, Any] = {"kubestrap_node_scope": args.node} if args.node else {}
    if args.gone:
        extravars["kubestrap_reset_gone"] = True
    selected = phases.of("reset")
    words = ["--node", args.node, *(["--gone"] if args.gone else [])] if args.node else []
    _host_keys("reset", selected, inv, args, extravars)
    code, result = _execute("reset", _again(args, "reset", *words, "--yes"), selected, inv, args, extravars)
    hint = _reset_hint(args, result.unreachable() if result else [])
    if hint:
        _console().print(hint, markup=False)
    _emit_json(args, _run_json(result, **({"hint": hint} if hint else {})))
    return code


def cmd_backup(args: argparse.Namespace) -> int:
    inv = _inventory(args, "backup")
    extravars: dict[str, Any] = {}
    if args.dest is not None:
        dest = args.dest.expanduser().resolve()
        if dest.exists() and not dest.is_dir():
            raise UserError(f"--dest {paths.display(dest)} is not a directory: name a directory for the archives")
        extravars["etcd_backup_dir"] = str(dest)
    selected = phases.of("backup")
    words = ["--dest", shlex.quote(str(args.dest))] if args.dest is not None else []
    _host_keys("backup", selected, inv, args, extravars)
    code, result = _execute("backup", _again(args, "backup", *words), selected, inv, args, extravars)
    made = result.stats("kubestrap_backup") if result else {}
    if code == EXIT_OK and made and not args.json:
        _console().print(f"backup: {paths.display(Path(str(made.get('archive'))))} (0600; etcd revision "
                         f"{made.get('revision')}, {made.get('keys')} keys, {made.get('size')} bytes; "
                         f"{made.get('removed')} older archive(s) removed by etcd_backup_keep)", markup=False)
    _emit_json(args, _run_json(result, backup=made))
    return code


def cmd_restore(args: argparse.Namespace) -> int:
    inv = _inventory(args, "restore")
    if len(inv.control_plane) > 1:
        raise UserError(f"{paths.display(inv.hosts_file)} has {len(inv.control_plane)} control-plane nodes: restore "
                        "handles one (restoring etcd of several members at once is not supported yet); nothing was touched")
    snapshot = args.snapshot.expanduser().resolve()
    try:
        backups.check(snapshot)
    except backups.BadSnapshot as exc:
        raise UserError(str(exc)) from None
    cluster = str(inv.value("cluster_name"))
    _require_confirmation(args, "restore")
    question = (f"Restore cluster {cluster} from {paths.display(snapshot)}? The control plane stops, and everything "
                "written since the snapshot is lost.")
    if not args.yes and not _confirmed_by_name("restore", cluster, question):
        return EXIT_OK
    extravars = {"etcd_restore_snapshot": str(snapshot)}
    selected = phases.of("restore")
    _host_keys("restore", selected, inv, args, extravars)
    code, result = _execute("restore", _again(args, "restore", shlex.quote(str(snapshot)), "--yes"), selected, inv,
                            args, extravars)
    done = result.stats("kubestrap_restore") if result else {}
    if code == EXIT_OK and done and not args.json:
        _console().print(f"restored etcd revision {done.get('revision')} ({done.get('keys')} keys) on {done.get('node')}; "
                         f"the API server answers and lists {done.get('nodes')} node(s); the old data directory is "
                         f"kept there as {done.get('old_data_dir')}", markup=False)
    _emit_json(args, _run_json(result, restore=done))
    return code


def cmd_certs(args: argparse.Namespace) -> int:
    inv = _inventory(args, "certs renew")
    selected = phases.of("certs-renew")
    _host_keys("certs", selected, inv, args, {})
    code, result = _execute("certs-renew", _again(args, "certs", "renew"), selected, inv, args, {})
    certs = _cert_rows(inv, result.stats("kubestrap_certs") if result else {})
    if certs and not args.json:
        _print_certs(Console(highlight=False), certs)
    _emit_json(args, _run_json(result, certificates=certs))
    return code


def _require_confirmation(args: argparse.Namespace, command: str, hint: str = "") -> None:
    """Refuse, before anything is read from the hosts, a destructive command that has no --yes and no terminal."""
    if not args.yes and not sys.stdin.isatty():
        raise UserError(f"{command} needs confirmation: run it in a terminal, or pass --yes{hint}")


def _confirmed_by_name(command: str, cluster: str, question: str) -> bool:
    """Ask *question* on the terminal; only the cluster's own name goes on (a reflexive 'yes' or Enter cancels)."""
    sys.stderr.write(f"{question} Type the cluster name {cluster} to go on: ")
    sys.stderr.flush()
    if sys.stdin.readline().strip() == cluster:
        return True
    _console().print(f"{command} cancelled; nothing was touched", markup=False)
    return False


def _reset_hint(args: argparse.Namespace, unreachable: list[str]) -> str | None:
    """What to do about the nodes a reset could not reach (*unreachable*: a dead machine)."""
    if args.gone or not unreachable:
        return None
    if args.node:
        if args.node not in unreachable:
            return None
        return (f"If {args.node} is dead or gone for good, `{_again(args, 'reset', '--node', args.node, '--gone', '--yes')}` "
                "deletes its Node object without contacting it; if it comes back later, reset it before reusing it.")
    names = ", ".join(unreachable)
    return (f"{names} could not be reached and still hold what kubestrap installed; the other nodes were reset. "
            f"When they are back, run `{_again(args, 'reset', '--yes')}` again (nodes already reset report no "
            "change); a machine gone for good only needs to leave the inventory.")


# --- parser ---------------------------------------------------------------------------------
_OFFLINE_INVENTORY = {
    "check": "without either, check reads the example inventories/homelab: offline it contacts no host, so trying "
             "the tool on the example is harmless; --hosts contacts hosts and needs one",
    "plan": "without either, plan reads the example inventories/homelab: it contacts no host, so trying the tool on "
            "the example is harmless; --hosts and --upgrade contact hosts and need one",
}


def _inventory_options(command: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        where = _OFFLINE_INVENTORY.get(command, "required: this command contacts hosts, so it never falls back "
                                                "to the example inventories/homelab")
        parser.add_argument("-i", "--inventory", type=Path, default=None,
                            help=f"inventory directory holding hosts.yml, or set {inventory_choice.ENV}; {where}")
        parser.add_argument("-v", "--verbose", action="count", default=0,
                            help="pass verbosity to Ansible and show its output (-vvv for more)")
        parser.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")

    return add


def _node_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="inventory name of the node to add")


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true",
                        help="run every phase on every host, even where the node's record says the phase is "
                             "applied and unchanged (by default such phases are skipped there)")
    parser.add_argument("--no-new-host-keys", action="store_true",
                        help="refuse hosts whose SSH host key is not recorded yet instead of trusting it on first "
                             f"contact (or set {hostkeys.STRICT_ENV}=1); `check --hosts` shows and records keys")


def _phase_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-phase", metavar="PHASE", help="resume: start at this phase")
    parser.add_argument("--phase", action="append", metavar="PHASE", help="run only this phase (repeatable)")


# the day-2 commands `plan --for` shows (their declarations in phases.DECLARATIONS)
DAY2_PLANS = ("backup", "restore", "certs-renew")


def _plan_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--add-node", metavar="NAME", help="plan an add-node run instead of up")
    parser.add_argument("--for", dest="command_for", choices=["up", *DAY2_PLANS], default="up",
                        help="plan this command instead of up: the hosts each of its phases runs on")
    parser.add_argument("--hosts", action="store_true",
                        help="also ask the nodes (read-only, over SSH): which phases have work on which host and why")


def _plan_upgrade_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upgrade", action="store_true",
                        help="read the running versions from the cluster (read-only) and show the order `upgrade` "
                             "would take to the pinned versions (Kubernetes, containerd), or why it is refused")
    _batch_option(parser)


def _batch_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, metavar="N", default=None,
                        help="workers upgraded at the same time (default 1); each is drained first, and the upgrade "
                             "stops at the first batch with a node that does not come back")


def _upgrade_options(parser: argparse.ArgumentParser) -> None:
    _batch_option(parser)
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _check_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hosts", action="store_true",
                        help="also run host preflight over SSH (read-only); first shows each host's SSH key "
                             "fingerprint and records keys not known yet (trust on first use)")


def _reset_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--node", metavar="NAME", help="reset only this node")
    parser.add_argument("--gone", action="store_true",
                        help="with --node: the worker is dead; delete its Node object without contacting it")


def _backup_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dest", type=Path, metavar="DIR",
                        help="controller directory for the archive (0700; default etcd_backup_dir, the cluster's "
                             "secrets directory's backups/)")


def _restore_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("snapshot", type=Path, metavar="SNAPSHOT",
                        help="an archive `backup` wrote (or an etcd snapshot file)")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _certs_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["renew"],
                        help="renew: kubeadm certs renew all on each control-plane node, static pods restarted one "
                             "at a time, the admin kubeconfig refreshed")


Register = Callable[[argparse._SubParsersAction], None]


def _command(name: str, text: str, func: Callable[[argparse.Namespace], int],
             *options: Callable[[argparse.ArgumentParser], None]) -> Register:
    """A command of this module: its subparser with the common options, then *options*, in order."""
    def register(sub: argparse._SubParsersAction) -> None:
        parser = sub.add_parser(name, help=text, description=text)
        for add in (_inventory_options(name), *options):
            add(parser)
        parser.set_defaults(func=func)

    return register


# The command table: every command of bootstrap.py, in the order --help lists them. The lab and
# artifacts modules are imported at the top of this file (an import that fails stops the CLI with the
# error instead of dropping the command) and register their own subcommands.
COMMANDS: dict[str, Register] = {
    "up": _command("up", "bring every node and the platform to the declared state", cmd_up,
                   _run_options, _phase_options),
    "add-node": _command("add-node", "join a node that is already in the inventory (a worker, or a control plane behind "
                                     "cluster_api_vip), touching no other node but for the first control plane's token "
                                     "step and, for a control plane, the earlier control planes' keepalived/haproxy",
                         cmd_add_node, _node_name, _run_options, _phase_options),
    "check": _command("check", "validate the inventory offline; --hosts also runs host preflight", cmd_check,
                      _check_options),
    "plan": _command("plan", "print the phases x hosts that `up` (or `--add-node NAME`) would run; --upgrade: the "
                     "upgrade's order", cmd_plan, _phase_options, _plan_options, _plan_upgrade_options),
    "status": _command("status", "show nodes, add-on health and the control plane's certificate expiry", cmd_status),
    "reset": _command("reset", "drain and reset nodes, removing what the bootstrapper installed", cmd_reset,
                      _reset_options),
    "backup": _command("backup", "save an etcd snapshot with the encryption key and PKI to the controller (0600)",
                       cmd_backup, _backup_options),
    "restore": _command("restore", "restore etcd from a backup on the one control-plane node (stops the control "
                        "plane)", cmd_restore, _restore_options),
    "upgrade": _command("upgrade", "upgrade the cluster to the pinned Kubernetes and containerd versions: first control "
                        "plane, other control planes, then workers in batches, each drained", cmd_upgrade,
                        _upgrade_options),
    "certs": _command("certs", "certificates of the control plane: `certs renew` renews them", cmd_certs,
                      _certs_options),
    "lab": lab_cli.register,
    "artifacts": artifacts_cli.register,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bootstrap.py",
        description="Bootstrap and run a bare-metal Kubernetes cluster (kubeadm, containerd, Cilium and a platform).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS.values():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return exits.run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
