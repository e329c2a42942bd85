"""Ctrl-C during a run: Ansible stops, none of its processes is left, the journal says where, exit 130."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import localrun

from kubestrap.interrupt import Interrupt


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_ctrl_c_stops_ansible_and_its_workers_and_says_how_to_resume(tmp_path: Path):
    mark = f"{os.getpid() % 1000}.{time.time_ns() % 10**6}"  # the sleep's unique duration marks it
    book = localrun.playbook(tmp_path, "sleepy", f"""
        - name: Sleep long
          ansible.builtin.command: sleep {mark}
          changed_when: false
    """)
    inv = localrun.inventory(tmp_path)
    proc = localrun.start(tmp_path, book, "up", "-i", str(inv))
    try:
        sleeping = _wait_for(lambda: len(localrun.processes_with(f"sleep {mark}")) == 2, 90, "both hosts' sleep")
        assert sleeping
        assert localrun.processes_with(str(book))  # ansible-playbook and its per-host workers
        time.sleep(0.5)  # both hosts' task start events reach the wrapper
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - started < 20, "stopping took too long"
    assert proc.returncode == 130, stderr[-3000:]
    assert localrun.processes_with(f"sleep {mark}") == []
    assert localrun.processes_with(str(book)) == []
    resume = "bootstrap.py up -i local --from-phase sleepy"  # the inventory, relative to the cwd
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("INTERRUPTED after "), last
    assert "interrupted in phase sleepy while running on local-cp (task 'Sleep long'); local-w (task 'Sleep long')" in last
    assert f"Resume with `{resume}`" in last
    summary = json.loads((tmp_path / "runs" / "latest" / "summary.json").read_text())
    assert summary["result"] == "interrupted"
    assert summary["interrupted"] == {"phase": "sleepy", "running": {"local-cp": "Sleep long", "local-w": "Sleep long"}}
    assert summary["phases"][0]["status"] == "interrupted"


def test_a_second_signal_hurries_the_stop():
    stop = Interrupt(grace=3600)
    cancel = stop.canceller("no-process-has-this-marker")
    assert cancel() is False
    stop._handle(signal.SIGINT, None)
    assert cancel() is False  # asked Ansible to stop; its grace runs
    stop._handle(signal.SIGINT, None)
    assert cancel() is True  # now: kill


def test_the_grace_is_bounded():
    stop = Interrupt(grace=0.2)
    cancel = stop.canceller("no-process-has-this-marker")
    stop._handle(signal.SIGTERM, None)
    assert cancel() is False
    time.sleep(0.3)
    assert cancel() is True
