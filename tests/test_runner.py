"""A real ansible-runner run of small playbooks against localhost: events, counts, journal, redaction."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

from helpers import ROOT
from rich.console import Console

from kubestrap import runner
from kubestrap.journal import Journal
from kubestrap.phases import Phase
from kubestrap.progress import ProgressView
from kubestrap.redact import Redactor

SECRET = "S3cret-Pa55word-4242"
TOKEN = "abcdef.0123456789abcdef"


def _run(tmp_path: Path, playbook: str, monkeypatch):
    monkeypatch.setenv("LEAKY_PASSWORD", SECRET)
    monkeypatch.setenv("KUBESTRAP_RUNS_DIR", str(tmp_path / "runs"))
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                   f"      ansible_python_interpreter: {sys.executable}\n")
    phase = Phase("smoke", ROOT / "tests" / "playbooks" / playbook, "smoke")
    journal = Journal("test", Redactor([SECRET]), base=tmp_path / "runs")
    view = ProgressView(Console(file=open(tmp_path / "console.txt", "w"), force_terminal=False), 1)  # noqa: SIM115
    outcomes, seconds = runner.run_phases("test", [phase], {"smoke": ["localhost"]},
                                          runner.RunOptions(inv), journal, view)
    failure = runner.failure_message(outcomes[0], "bootstrap.py up", journal) if not outcomes[0].ok else None
    journal.write_summary(runner.RunResult("test", inv, outcomes, seconds, failure).as_dict())
    journal.close()
    return journal, outcomes, failure


def test_run_counts_changes_and_redacts_secrets(tmp_path: Path, monkeypatch):
    journal, outcomes, failure = _run(tmp_path, "leaky.yml", monkeypatch)
    assert failure is None
    host = outcomes[0].tracker.hosts["localhost"]
    assert (host.ok, host.changed, host.failed) == (3, 1, 0)
    summary = json.loads((journal.path / "summary.json").read_text())
    assert summary["result"] == "ok"
    assert summary["phases"][0]["hosts"]["localhost"]["changed"] == 1
    assert summary["hosts"]["localhost"]["ok"] == 3
    events = (journal.path / "events.jsonl").read_text()
    assert "kubeadm join 10.0.0.1:6443 --token <redacted>" in events
    # grep every file of the run for the known secrets
    for path in journal.path.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="ignore")
            assert TOKEN not in text, path
            assert SECRET not in text, path
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o700
    assert stat.S_IMODE((journal.path / "summary.json").stat().st_mode) == 0o600


def test_failure_names_host_phase_and_next_step(tmp_path: Path, monkeypatch):
    journal, outcomes, failure = _run(tmp_path, "failing.yml", monkeypatch)
    assert not outcomes[0].ok
    assert failure is not None
    assert "host localhost failed in phase smoke, task 'Stop with a known message': disk /dev/sdz is missing" in failure
    assert "--from-phase smoke" in failure
    # single-phase commands (check, status, reset) are repeated as given: they have no --from-phase
    again = runner.failure_message(outcomes[0], "bootstrap.py reset --node w3 --yes", journal, resumable=False)
    assert "then `bootstrap.py reset --node w3 --yes`." in again and "--from-phase" not in again
    summary = json.loads((journal.path / "summary.json").read_text())
    assert summary["result"] == "failed"
    assert summary["phases"][0]["hosts"]["localhost"]["failed"] == 1


def test_a_failure_its_rescue_handled_does_not_fail_the_phase(tmp_path: Path, monkeypatch):
    """A real ansible-runner run of a block whose first task fails and whose rescue succeeds (as a control-plane join
    that works the second time): the playbook succeeds, and so does the phase, its failure kept as rescued."""
    journal, outcomes, failure = _run(tmp_path, "rescued.yml", monkeypatch)
    assert failure is None and outcomes[0].ok
    tracker = outcomes[0].tracker
    assert tracker.failures == [] and [f.task for f in tracker.rescued] == ["Fail the first try"]
    host = tracker.hosts["localhost"]
    assert (host.failed, host.changed, host.status) == (0, 1, "changed")
    summary = json.loads((journal.path / "summary.json").read_text())
    assert summary["result"] == "ok" and summary["phases"][0]["hosts"]["localhost"]["failed"] == 0
