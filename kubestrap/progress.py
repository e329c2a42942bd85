"""Live progress on the terminal: phase, per-host state, current task, counts, elapsed time.

On a terminal it is a rich live table; elsewhere (CI logs, pipes) one plain line per step.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from kubestrap.tracker import PhaseTracker

_STYLE = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red"}


def elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


class ProgressView:
    def __init__(self, console: Console, total_phases: int, verbosity: int = 0) -> None:
        self.console = console
        self.total = total_phases
        self.verbosity = verbosity
        self.started = time.monotonic()
        self.live: Live | None = None
        self.tracker: PhaseTracker | None = None
        self.index = 0
        self._last_task = ""

    # --- lifecycle --------------------------------------------------------------------------
    def phase_started(self, index: int, tracker: PhaseTracker, hosts: list[str]) -> None:
        self.index, self.tracker = index, tracker
        for host in hosts:
            tracker.host(host)
        if self.console.is_terminal and self.verbosity == 0:
            self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
            self.live.start()
        else:
            names = escape(", ".join(hosts) or "controller")
            self.console.print(f"[bold]== phase {index}/{self.total}: {escape(tracker.phase)}[/] ({names})")

    def event(self, event: dict[str, Any]) -> None:
        tracker = self.tracker
        if tracker is None:
            return
        if self.live is not None:
            self.live.update(self._render())
            return
        if self.verbosity and event.get("stdout"):
            self.console.print(Text(str(event["stdout"])))
        elif tracker.task and tracker.task != self._last_task:
            self._last_task = tracker.task
            self.console.print(f"  {escape(f'[{tracker.phase}]')} {escape(tracker.task)}  "
                               f"({elapsed(time.monotonic() - self.started)})")

    def phase_finished(self, tracker: PhaseTracker, seconds: float) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        t = tracker.totals()
        state = "[red]failed[/]" if (t["failed"] or t["unreachable"]) else "[green]done[/]"
        self.console.print(
            f"{state} phase {self.index}/{self.total} [bold]{escape(tracker.phase)}[/] in {elapsed(seconds)}: "
            f"ok={t['ok']} changed={t['changed']} failed={t['failed']} unreachable={t['unreachable']}"
        )

    def phase_without_work(self, index: int, phase: str, hosts: list[str]) -> None:
        """A phase every planned host's record says is applied and still holds: it does not run."""
        names = escape(", ".join(hosts))
        self.console.print(f"[green]done[/] phase {index}/{self.total} [bold]{escape(phase)}[/]: no work "
                           f"(applied and unchanged on {names})")

    # --- rendering ----------------------------------------------------------------------------
    def _render(self) -> Group:
        assert self.tracker is not None
        tr = self.tracker
        head = Text.assemble(
            (f"phase {self.index}/{self.total}: {tr.phase}", "bold"),
            f"  task: {tr.task or '-'}  elapsed {elapsed(time.monotonic() - self.started)}",
        )
        table = Table(box=None, pad_edge=False)
        for col in ("host", "state", "ok", "changed", "failed", "task"):
            table.add_column(col)
        for name, h in sorted(tr.hosts.items()):
            status = h.status if (h.ok or h.failed or h.unreachable) else "waiting"
            table.add_row(Text(name), Text(status, style=_STYLE.get(status, "dim")), str(h.ok), str(h.changed),
                          str(h.failed + h.unreachable), Text(h.task[:60]))
        return Group(head, table)
