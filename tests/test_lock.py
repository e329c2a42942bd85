"""One host-touching run per cluster at a time: a per-cluster flock under the runs directory."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import localrun
import pytest

from kubestrap import lock

HOLDER = """
import sys, time
from pathlib import Path
from kubestrap import lock
held = lock.acquire("local", "bootstrap.py up -i local", base=Path(sys.argv[1]))
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path: Path):
    """Another process holding the lock of cluster `local`, as a running `bootstrap.py up` does."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "runs")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_run_on_the_cluster_exits_at_once_naming_the_holder(tmp_path: Path, holder):
    book = localrun.playbook(tmp_path, "quick", """
        - name: Say hello
          ansible.builtin.debug:
            msg: hello
    """)
    inv = localrun.inventory(tmp_path)
    started = time.monotonic()
    proc = localrun.run(tmp_path, book, "up", "-i", str(inv))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"another kubestrap run holds the lock of cluster local: pid {holder.pid}, "
                               "`bootstrap.py up -i local`, started "), lines[0]
    assert lines[0].endswith("; wait for it or stop it"), lines[0]
    assert time.monotonic() - started < 30
    # nothing ran: no journal was written
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["locks"]


def test_the_lock_is_taken_and_released_and_a_stale_file_is_simply_taken(tmp_path: Path):
    base = tmp_path / "runs"
    (base / "locks").mkdir(parents=True)
    # a run that died without cleaning up: the file is there, nobody holds its flock
    (base / "locks" / "local.lock").write_text(json.dumps({"pid": 999999, "command": "bootstrap.py up", "started": "x"}))
    first = lock.acquire("local", "bootstrap.py status", base=base)
    assert json.loads((base / "locks" / "local.lock").read_text())["command"] == "bootstrap.py status"
    assert stat.S_IMODE((base / "locks" / "local.lock").stat().st_mode) == 0o600
    assert stat.S_IMODE((base / "locks").stat().st_mode) == 0o700
    with pytest.raises(lock.LockHeld, match=r"pid \d+, `bootstrap.py status`, started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"):
        lock.acquire("local", "bootstrap.py up", base=base)
    other = lock.acquire("other", "bootstrap.py up", base=base)  # the lock is per cluster
    first.release()
    other.release()
    again = lock.acquire("local", "bootstrap.py up", base=base)
    again.release()


def test_a_finished_run_leaves_the_lock_free(tmp_path: Path):
    book = localrun.playbook(tmp_path, "quick", """
        - name: Say hello
          ansible.builtin.debug:
            msg: hello
    """)
    inv = localrun.inventory(tmp_path)
    proc = localrun.run(tmp_path, book, "up", "-i", str(inv))
    assert proc.returncode == 0, proc.stderr
    lock.acquire("local", "bootstrap.py up", base=tmp_path / "runs").release()
