import subprocess
import sys
import time
from pathlib import Path

from kubestrap.lab import procs
from kubestrap.lab.procs import ProcRecord


def fake_proc(root, pid, start, argv, comm="qemu (x) y"):
    d = root / str(pid)
    d.mkdir(parents=True)
    fields = ["S", "1", *["0"] * 17, str(start), "0"]
    (d / "stat").write_text(f"{pid} ({comm}) {' '.join(fields)}\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_start_time_parses_names_with_spaces_and_parens(tmp_path):
    fake_proc(tmp_path, 42, 12345, ["qemu"])
    assert procs.start_time(42, tmp_path) == 12345
    assert procs.start_time(43, tmp_path) is None


def test_is_ours_needs_same_start_time_and_marker(tmp_path):
    fake_proc(tmp_path, 42, 100, ["qemu-system-x86_64", "-serial", "file:/lab/vms/a/console.log"])
    assert procs.is_ours(ProcRecord(42, 100, "/lab/vms/a/console.log"), tmp_path)
    assert not procs.is_ours(ProcRecord(42, 101, "/lab/vms/a/console.log"), tmp_path)  # PID reused
    assert not procs.is_ours(ProcRecord(42, 100, "/lab/vms/b/console.log"), tmp_path)  # other VM
    assert not procs.is_ours(ProcRecord(44, 100, "/lab/vms/a/console.log"), tmp_path)  # gone
    assert not procs.is_ours(ProcRecord(1, 100, "x"), tmp_path)


def _wait_for_exec(pid: int, marker: str) -> None:
    """Right after fork the child's /proc cmdline is still the parent's: wait for its exec."""
    deadline = time.monotonic() + 10
    while marker not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
        assert time.monotonic() < deadline, "the child never exec'd"
        time.sleep(0.05)


def test_record_and_stop_a_real_process(tmp_path):
    marker = str(tmp_path / "marker")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        _wait_for_exec(child.pid, marker)
        rec = procs.record(child.pid, marker)
        assert rec is not None and procs.is_ours(rec)
        assert procs.stop(rec, timeout=5) is True
        child.wait(timeout=5)
        assert not procs.is_ours(rec)
        assert procs.stop(rec) is False  # never signals a process that is not ours any more
    finally:
        child.kill()
        child.wait()


def test_stop_refuses_a_foreign_process():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        rec = procs.record(child.pid, "not-in-its-cmdline")
        assert rec is not None
        assert procs.stop(rec) is False
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_read_pidfile(tmp_path):
    pidfile = tmp_path / "x.pid"
    assert procs.read_pidfile(pidfile, timeout=0.1) is None
    pidfile.write_text("1234\n")
    assert procs.read_pidfile(pidfile, timeout=0.1) == 1234
