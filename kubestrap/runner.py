"""Drive ansible-runner one phase at a time, streaming events to the view and the journal."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from kubestrap import hostkeys, paths
from kubestrap.interrupt import MARKER_VAR, Interrupt, reap
from kubestrap.journal import Journal
from kubestrap.phases import Phase
from kubestrap.progress import ProgressView
from kubestrap.tracker import PhaseTracker


@dataclass
class RunOptions:
    inventory: Path
    extravars: dict[str, Any] = field(default_factory=dict)
    limit: str | None = None
    verbosity: int = 0
    forks: int = 20


@dataclass
class PhaseOutcome:
    phase: Phase
    tracker: PhaseTracker
    seconds: float
    status: str  # successful / failed / canceled / timeout / interrupted
    rc: int
    detail: str = ""
    running: dict[str, str] = field(default_factory=dict)  # host -> task, when interrupted
    # planned hosts the phase did not run on (their records hold), and why it ran on the others
    no_work: list[str] = field(default_factory=list)
    work: dict[str, list[str]] = field(default_factory=dict)

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"

    @property
    def ok(self) -> bool:
        return self.status == "successful" and not self.tracker.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.phase.name,
            "playbook": paths.display(self.phase.playbook),
            "status": "ok" if self.ok else ("interrupted" if self.interrupted else "failed"),
            "seconds": round(self.seconds, 2),
            "tasks": self.tracker.tasks_started,
            "totals": self.tracker.totals(),
            "hosts": {h: s.as_dict() for h, s in sorted(self.tracker.hosts.items())},
            "stats": self.tracker.stats_data,
            **({"no_work": self.no_work, "work": self.work} if self.no_work or self.work else {}),
            **({"records": self.tracker.phase_work} if self.tracker.phase_work else {}),
        }


def failure_message(outcome: PhaseOutcome, resume_command: str, journal: Journal, resumable: bool = True) -> str:
    """One actionable paragraph: which host, which phase, what happened, what to do next.

    resume_command is the command line to run again; commands with phases (resumable) get
    `--from-phase PHASE` appended, single-phase commands (check, status, reset) are repeated as given.
    """
    phase = outcome.phase.name
    where = paths.display(journal.path)
    again = f"{resume_command} --from-phase {phase}" if resumable else resume_command
    if not outcome.tracker.failures:
        return (f"phase {phase} stopped ({outcome.status}, ansible exit code {outcome.rc}) before any host "
                f"reported a failure: {outcome.detail or 'no output'}. See {where}/phases for ansible-runner's output. "
                f"Next: fix it, then `{again}`.")
    lines = []
    for f in outcome.tracker.failures:
        if f.unreachable:
            lines.append(f"host {f.host} unreachable in phase {phase} (task '{f.task}'): {_sentence(f.message)} "
                         f"Check that the host is up, ansible_host/ansible_port/ansible_user are right and "
                         f"SSH with your key works.")
        else:
            lines.append(f"host {f.host} failed in phase {phase}, task '{f.task}': {f.message}")
    lines.append(f"Next: fix the cause, then `{again}`. "
                 f"Journal: {where}/events.jsonl")
    return "\n".join(lines)


def _sentence(text: str) -> str:
    """text ending in one full stop: Ansible's unreachable message ends in "over ssh: " followed by
    SSH's own words, which are empty when the connection just dropped."""
    text = text.rstrip(" :;,")
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _runner_tail(data_dir: Path, lines: int = 5) -> str:
    """Last lines ansible-runner captured, for failures that produced no host result."""
    outputs = sorted(data_dir.glob("artifacts/*/stdout"))
    if not outputs:
        return ""
    text = outputs[-1].read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


_FINISHED = {"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"}


def run_phase(index: int, phase: Phase, hosts: list[str], opts: RunOptions, journal: Journal,
              view: ProgressView, stop: Interrupt | None = None) -> PhaseOutcome:
    stop = stop or Interrupt()
    tracker = PhaseTracker(phase.name)
    view.phase_started(index, tracker, [h for h in hosts if h != "localhost"])
    data_dir = journal.phase_dir(index, phase.name)
    running: dict[str, str] = {}  # host -> task it is running now
    scrubbed = False

    def on_event(event: dict[str, Any]) -> bool:
        nonlocal scrubbed
        if not scrubbed:  # ansible-runner has written the command it started: drop the environment at once
            scrubbed = True
            journal.finish_phase(data_dir)
        tracker.feed(event)
        _follow(running, event)
        journal.event(phase.name, event)
        view.event(event)
        return False  # the journal keeps its own redacted copy; runner keeps none

    marker = stop.new_marker()
    env = {
        "ANSIBLE_CONFIG": str(paths.ANSIBLE_CFG),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        MARKER_VAR: marker,  # every process of this phase inherits it: nothing escapes a Ctrl-C
        **hostkeys.ansible_env(opts.inventory),  # SSH host keys checked (ansible-runner turns it off unless told)
    }
    started = time.monotonic()
    try:
        result = ansible_runner.run(
            private_data_dir=str(data_dir),
            project_dir=str(paths.REPO_ROOT),
            playbook=str(phase.playbook),
            inventory=str(opts.inventory.resolve()),
            extravars=opts.extravars or None,
            limit=opts.limit,
            verbosity=opts.verbosity or None,
            forks=max(opts.forks, len(hosts)),
            envvars=env,
            quiet=True,
            event_handler=on_event,
            cancel_callback=stop.canceller(marker),
            # fact_cache: ansible-runner joins it to the artifact dir; an absolute path puts it in
            # the runs' shared 0700 `facts/`, so facts are gathered once, not once per phase.
            # pexpect_timeout: how often the cancel callback is asked while Ansible is silent.
            settings={"suppress_ansible_output": True, "pexpect_timeout": 1,
                      "fact_cache": str(journal.fact_cache().resolve())},
        )
    except OSError as exc:  # ansible-runner could not write its artifacts (full disk, read-only)
        reap(marker)
        raise paths.storage_error(data_dir, exc) from None
    except BaseException:
        reap(marker)
        raise
    if stop.requested:
        reap(marker)
    journal.finish_phase(data_dir)
    seconds = time.monotonic() - started
    status = "interrupted" if stop.requested and str(result.status) != "successful" else str(result.status)
    outcome = PhaseOutcome(phase, tracker, seconds, status, int(result.rc or 0), running=running)
    if not tracker.failures and outcome.status not in ("successful", "interrupted"):
        outcome.detail = journal.redactor.text(_runner_tail(data_dir))
    view.phase_finished(tracker, seconds)
    return outcome


def _follow(running: dict[str, str], event: dict[str, Any]) -> None:
    """Keep *running* (host -> task) current: a host runs a task from its start to its result."""
    data = event.get("event_data") or {}
    host = data.get("host")
    if not host:
        return
    if event.get("event") == "runner_on_start":
        running[host] = data.get("task", "")
    elif event.get("event") in _FINISHED:
        running.pop(host, None)


# Given the phase about to start and the outcomes so far: the hosts with work and the reasons per host,
# or None to run the phase on every planned host.
Narrow = Callable[[Phase, list[PhaseOutcome]], tuple[list[str], dict[str, list[str]]] | None]


def run_phases(command: str, phases: list[Phase], hosts: dict[str, list[str]], opts: RunOptions,
               journal: Journal, view: ProgressView, narrow: Narrow | None = None) -> tuple[list[PhaseOutcome], float]:
    """Run *phases* in order; stop at the first that fails or at Ctrl-C (SIGINT) / SIGTERM.

    *narrow* may take hosts out of a phase whose work is already done there: the phase runs with
    `--limit` on the others, or not at all when none is left."""
    os.environ["ANSIBLE_CONFIG"] = str(paths.ANSIBLE_CFG)
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        # ansible-runner starts ansible-playbook by name: use the one installed beside this Python.
        os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    started = time.monotonic()
    outcomes: list[PhaseOutcome] = []
    with Interrupt(notify=lambda text: view.console.print(text, markup=False)) as stop:
        for index, phase in enumerate(phases, start=1):
            if stop.requested:  # between two phases: the next one never starts
                outcomes.append(PhaseOutcome(phase, PhaseTracker(phase.name), 0.0, "interrupted", 0))
                break
            planned = hosts.get(phase.name, [])
            narrowed = narrow(phase, outcomes) if narrow else None
            phase_hosts, phase_opts, work = planned, opts, {}
            if narrowed is not None:
                phase_hosts, work = narrowed
                if not phase_hosts:
                    view.phase_without_work(index, phase.name, planned)
                    outcomes.append(PhaseOutcome(phase, PhaseTracker(phase.name), 0.0, "successful", 0,
                                                 no_work=list(planned)))
                    continue
                phase_opts = dataclasses.replace(opts, limit=",".join(phase_hosts))
            try:
                outcome = run_phase(index, phase, phase_hosts, phase_opts, journal, view, stop)
            except paths.StorageError as exc:  # no directory for the phase: it cannot start
                journal.report(str(exc))
                outcome = PhaseOutcome(phase, PhaseTracker(phase.name), 0.0, "failed", 0, detail=str(exc))
            if narrowed is not None:
                outcome.no_work = [h for h in planned if h not in phase_hosts]
                outcome.work = work
            outcomes.append(outcome)
            if not outcome.ok:
                break
    return outcomes, time.monotonic() - started


def interrupted_message(outcome: PhaseOutcome, resume_command: str, journal: Journal, resumable: bool = True) -> str:
    """One line: where the run was interrupted, that nothing of it runs on, and how to resume."""
    phase = outcome.phase.name
    again = f"{resume_command} --from-phase {phase}" if resumable else resume_command
    if outcome.running:
        doing = "; ".join(f"{host} (task '{task}')" for host, task in sorted(outcome.running.items()))
        where = f"in phase {phase} while running on {doing}"
    else:
        where = f"in phase {phase}"
    return (f"interrupted {where}; no Ansible process of the run is left. "
            f"Resume with `{again}`. Journal: {paths.display(journal.path)}")


def _unchanged(value: Any) -> Any:
    return value


@dataclass
class RunResult:
    """What a command's run did, typed for the CLI; `as_dict` is its JSON (the journal's summary.json,
    --json). *redact* is applied to everything that leaves it (reported data, the JSON)."""

    command: str
    inventory: Path
    outcomes: list[PhaseOutcome]
    seconds: float
    failure: str | None = None
    journal: Path | None = None
    redact: Callable[[Any], Any] = _unchanged

    @property
    def stopped(self) -> PhaseOutcome | None:
        """The phase the run stopped at (failed or interrupted), None when every phase passed."""
        return next((o for o in self.outcomes if not o.ok), None)

    @property
    def interrupted(self) -> bool:
        return any(o.interrupted for o in self.outcomes)

    def stats(self, key: str) -> dict[str, Any]:
        """What the phases' playbooks reported under *key* (set_stats): the last phase's that did."""
        data: dict[str, Any] = {}
        for outcome in self.outcomes:
            data = outcome.tracker.stats_data.get(key) or data
        return dict(self.redact(data))

    def records(self, phase: str) -> dict[str, Any]:
        """The node records (phase -> state, per host) that *phase* read, empty when it did not run."""
        work = next((o.tracker.phase_work for o in self.outcomes if o.phase.name == phase), {})
        return dict(self.redact(work))

    def host_totals(self) -> dict[str, dict[str, Any]]:
        """Per host: ok/changed/failed/unreachable/skipped counts and seconds over every phase."""
        per_host: dict[str, dict[str, Any]] = {}
        for outcome in self.outcomes:
            for host, state in outcome.tracker.hosts.items():
                agg = per_host.setdefault(host, {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0,
                                                 "skipped": 0, "seconds": 0.0})
                for key, value in state.as_dict().items():
                    if key in agg:
                        agg[key] = round(agg[key] + value, 2)
        return per_host

    def unreachable(self) -> list[str]:
        return [host for host, counts in self.host_totals().items() if counts["unreachable"]]

    def as_dict(self) -> dict[str, Any]:
        stopped = next((o for o in self.outcomes if o.interrupted), None)
        data: dict[str, Any] = {
            "command": self.command,
            "inventory": paths.display(self.inventory),
            "result": "interrupted" if stopped else ("failed" if self.failure else "ok"),
            "failure": self.failure,
            "seconds": round(self.seconds, 2),
            "phases": [o.as_dict() for o in self.outcomes],
            "hosts": self.host_totals(),
        }
        if stopped:
            data["interrupted"] = {"phase": stopped.phase.name, "running": dict(sorted(stopped.running.items()))}
        data = self.redact(data)
        if self.journal is not None:
            data["journal"] = paths.display(self.journal)
        return data
