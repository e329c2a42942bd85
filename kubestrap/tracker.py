"""Turn ansible-runner events into per-host counts, timings, the current task and the first failure."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_COUNTED = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


@dataclass
class HostState:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    task: str = ""
    first_seen: float | None = None
    last_seen: float | None = None

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "changed" if self.changed else "ok"

    @property
    def seconds(self) -> float:
        if self.first_seen is None or self.last_seen is None:
            return 0.0
        return round(self.last_seen - self.first_seen, 2)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "changed": self.changed, "failed": self.failed, "unreachable": self.unreachable,
                "skipped": self.skipped, "seconds": self.seconds, "status": self.status}


@dataclass
class Failure:
    host: str
    task: str
    message: str
    unreachable: bool


@dataclass
class PhaseTracker:
    phase: str
    hosts: dict[str, HostState] = field(default_factory=dict)
    task: str = ""
    play: str = ""
    tasks_started: int = 0
    failures: list[Failure] = field(default_factory=list)
    # failures a block's rescue handled (Ansible counts them as "rescued", not as failures), known from the stats
    rescued: list[Failure] = field(default_factory=list)
    stats_data: dict[str, Any] = field(default_factory=dict)
    # host -> {phase: {"work": bool, "reasons": [...]}}, from the kubestrap_phase_state check
    phase_work: dict[str, dict[str, Any]] = field(default_factory=dict)

    def host(self, name: str) -> HostState:
        return self.hosts.setdefault(name, HostState())

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        stamp = _timestamp(event.get("created"))
        if kind == "playbook_on_play_start":
            self.play = data.get("play", "")
        elif kind == "playbook_on_task_start":
            self.task = data.get("task", "")
            self.tasks_started += 1
        elif kind == "runner_on_start" and data.get("host"):
            state = self.host(data["host"])
            state.task = data.get("task", "")
            _touch(state, stamp)
        elif kind in _COUNTED and data.get("host"):
            self._result(kind, data, stamp)
        elif kind == "playbook_on_stats":
            self.stats_data = data.get("artifact_data") or {}
            # Ansible's own per-host count is authoritative: a no_log result reaches us censored,
            # without its "changed" flag (the join token step, for one).
            for name, count in (data.get("changed") or {}).items():
                state = self.host(name)
                state.changed = max(state.changed, int(count))
            if isinstance(data.get("failures"), dict):
                self._drop_rescued(data["failures"])

    def _drop_rescued(self, failed: dict[str, Any]) -> None:
        """A failed task whose block's rescue ran is reported like any failure as it happens, but Ansible does not
        count it as one (the play goes on, the playbook succeeds): its per-host failure count says how many of the
        host's failures stand, the last ones (a failure that stands ends the host's play)."""
        for name in dict.fromkeys(f.host for f in self.failures if not f.unreachable):  # in the order they failed
            mine = [f for f in self.failures if f.host == name and not f.unreachable]
            stands = int(failed.get(name, 0) or 0)
            gone = mine[: max(len(mine) - stands, 0)]
            if not gone:
                continue
            self.failures = [f for f in self.failures if not any(f is g for g in gone)]
            self.rescued.extend(gone)
            state = self.host(name)
            state.failed -= len(gone)
            state.ok += len(gone)

    def _result(self, kind: str, data: dict[str, Any], stamp: float | None) -> None:
        state = self.host(data["host"])
        _touch(state, stamp)
        res = data.get("res") or {}
        if kind == "runner_on_failed" and data.get("ignore_errors"):
            state.ok += 1
            return
        setattr(state, _COUNTED[kind], getattr(state, _COUNTED[kind]) + 1)
        if kind == "runner_on_ok" and res.get("changed"):
            state.changed += 1
        if kind == "runner_on_ok" and data.get("task_action") in _PHASE_STATE and isinstance(res.get("phases"), dict):
            self.phase_work[data["host"]] = res["phases"]
        if kind in ("runner_on_failed", "runner_on_unreachable"):
            self.failures.append(Failure(data["host"], data.get("task", ""), _message(res),
                                         kind == "runner_on_unreachable"))

    def totals(self) -> dict[str, int]:
        keys = ("ok", "changed", "failed", "unreachable", "skipped")
        return {k: sum(getattr(h, k) for h in self.hosts.values()) for k in keys}


_PHASE_STATE = {"kubestrap_phase_state"}


def _touch(state: HostState, stamp: float | None) -> None:
    if stamp is None:
        return
    state.first_seen = stamp if state.first_seen is None else min(state.first_seen, stamp)
    state.last_seen = stamp if state.last_seen is None else max(state.last_seen, stamp)


def _timestamp(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


# Ansible's own words when a command fails; the reason is in the program's output.
_GENERIC = ("non-zero return code", "MODULE FAILURE")
_ERROR_LINE = re.compile(r"\b(error|failed|fatal|refused|denied|invalid)\b", re.IGNORECASE)


# Ansible's summary of a loop task; the reason is in the item that failed.
_LOOP_SUMMARIES = ("All items completed", "One or more items failed")


def _message(res: dict[str, Any]) -> str:
    if res.get("censored"):
        return "output hidden by no_log (the task handles a secret); re-run with -vvv on a test cluster"
    msg = str(res.get("msg") or "").strip()
    items = res.get("results")
    if msg.startswith(_LOOP_SUMMARIES) and isinstance(items, list):
        bad = [i for i in items if isinstance(i, dict) and (i.get("failed") or i.get("unreachable"))]
        if bad:
            label = bad[0].get("_ansible_item_label", bad[0].get("item"))
            why = _message(bad[0])
            return f"{why} (item {label})" if isinstance(label, str | int) and not bad[0].get("censored") else why
    if msg and not msg.startswith(_GENERIC):
        return shorten(msg, 600)
    detail = _program_output(res)
    if msg and detail:
        rc = res.get("rc")
        return f"{msg}{f' ({rc})' if rc is not None else ''}: {detail}"
    return msg or detail or "no message"


# where a sentence ends: after a full stop or a closing bracket (the end of a listed item), before a capital
_SENTENCE_END = re.compile(r"(?<=[.!?\])])\s+(?=[A-Z])")
_GAP = " … "


def shorten(text: str, limit: int) -> str:
    """*text* in about *limit* characters, cut in the middle: a role's message starts with what failed
    and ends with what to do (the setting to change), with the long part (a list) in between. The end
    is kept in whole sentences, up to half the limit; the beginning fills the rest."""
    if len(text) <= limit:
        return text
    sentences = _SENTENCE_END.split(text)
    tail = ""
    for start in range(len(sentences) - 1, 0, -1):
        candidate = " ".join(sentences[start:])
        if len(candidate) > limit // 2:
            break
        tail = candidate
    if not tail:  # the last sentence alone is too long: keep its last words
        tail = text[-(limit // 2):]
        tail = tail[tail.find(" ") + 1:] if " " in tail else tail
    head = text[: max(limit - len(tail) - len(_GAP), 0)]
    head = head[: head.rfind(" ")] if " " in head else head
    return f"{head.rstrip()}{_GAP}{tail}"


def _program_output(res: dict[str, Any]) -> str:
    """The line of a failed program's output that says why: its first error-looking line (kubeadm
    and most tools put the error first and hints after it), else its last line."""
    for key in ("stderr", "module_stderr", "reason", "stdout"):
        lines = [line.strip() for line in str(res.get(key) or "").splitlines() if line.strip()]
        if lines:
            errors = [line for line in lines if _ERROR_LINE.search(line)]
            return shorten(errors[0] if errors else lines[-1], 400)
    return ""
