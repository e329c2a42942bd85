"""The node-local etcd backup timer (roles/etcd_backup/tasks/timer.yml, issue 21): installed while
etcd_backup_timer is on, stopped and removed when it is off, and a node that never had it costs one module
run on every `up` (it runs in the control_plane phase each time). Run into a temporary root with a systemctl
stand-in (tests/helpers.py FAKE_SYSTEMCTL): the real units need systemd as PID 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import ANSIBLE_PLAYBOOK, ROOT, fake_systemctl

UNIT = "kubestrap-etcd-backup"


def _paths(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(the temporary root, the program, the unit directory), the directories created."""
    root = tmp_path / "root"
    for directory in ("usr/local/sbin", "etc/systemd/system"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    return root, root / "usr/local/sbin" / UNIT, root / "etc/systemd/system"


def _play(tmp_path: Path, timer: bool) -> subprocess.CompletedProcess[str]:
    root, program, units = _paths(tmp_path)
    extra = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "etcd_backup_timer": timer,
             "etcd_backup_timer_program": str(program), "etcd_backup_timer_unit_dir": str(units),
             "etcd_backup_timer_dir": str(root / "var/backups/kubestrap")}  # fmt: skip
    bin_dir = fake_systemctl(tmp_path / "bin")
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "k8s-cp,", str(ROOT / "tests" / "playbooks" / "etcd_backup_timer.yml"),
         "-e", json.dumps(extra)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "PATH": f"{bin_dir}:{os.environ['PATH']}",
             "KUBESTRAP_TEST_SYSTEMD_STATE": str(tmp_path / "systemd.json")},
    )  # fmt: skip


def _recap(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done.stdout.split("PLAY RECAP")[1]


def _ran(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The role's tasks that ran (not skipped) on the host, in order."""
    ran, task = [], None
    for line in done.stdout.splitlines():
        if line.startswith("TASK [etcd_backup : "):
            task = line[len("TASK [etcd_backup : "):].split("]")[0]
        elif task and line.startswith(("ok:", "changed:")):
            ran.append(task)
            task = None
    return ran


def _state(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "systemd.json").read_text()).get(f"{UNIT}.timer", {})


def test_on_installs_the_timer_off_removes_it_and_each_second_run_changes_nothing(tmp_path):
    _, program, units = _paths(tmp_path)
    assert "changed=0" not in _recap(_play(tmp_path, True))
    assert program.stat().st_mode & 0o777 == 0o700
    assert {p.name for p in units.iterdir()} == {f"{UNIT}.service", f"{UNIT}.timer"}
    assert _state(tmp_path) == {"active": True, "enabled": True}
    assert "changed=0" in _recap(_play(tmp_path, True))

    assert "changed=0" not in _recap(_play(tmp_path, False))
    assert not program.exists() and list(units.iterdir()) == []
    assert _state(tmp_path) == {"active": False, "enabled": False}
    calls = (tmp_path / "systemd.json.log").read_text().splitlines()
    assert calls[-1] == "daemon-reload", calls  # the removed units are unloaded

    again = _play(tmp_path, False)
    assert "changed=0" in _recap(again)
    # a node without the timer (every node until someone turns it on): one module run, the find
    assert _ran(again) == ["Look for the backup timer, its service and its program"], _ran(again)


def test_off_removes_what_an_interrupted_install_left(tmp_path):
    """Only the program is there (an install stopped before the units were written): it goes, nothing is stopped."""
    program = _paths(tmp_path)[1]
    program.write_text("#!/bin/sh\n")
    done = _play(tmp_path, False)
    assert "changed=1" in _recap(done)
    assert not program.exists()
    assert "Stop the backup timer" not in _ran(done)
