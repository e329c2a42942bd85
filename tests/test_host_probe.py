"""playbooks/library/kubestrap_host_probe.py: one module run answers a phase's read-only questions."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from helpers import ANSIBLE, ROOT

LIBRARY = ROOT / "playbooks" / "library"
_spec = importlib.util.spec_from_file_location("kubestrap_host_probe", LIBRARY / "kubestrap_host_probe.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:19C8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000 100 0 0 10 0
   1: 0100007F:0016 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000 100 0 0 10 0
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000
"""


def test_only_listening_sockets_count_from_both_tables():
    # 0x19C8 = 6600 listens; 0x0016 = 22 is an established connection in tcp but listens in tcp6
    assert probe.listening_ports([TCP, TCP6]) == [22, 6600]


def test_a_module_loaded_or_built_in_is_not_missing_whatever_its_dashes():
    proc_modules = "overlay 151552 0 - Live 0x0\nbr_netfilter 32768 0 - Live 0x0\n"
    builtin = "kernel/drivers/md/dm-crypt.ko\nkernel/fs/nfs/nfs.ko\n"
    wanted = ["overlay", "br-netfilter", "dm_crypt", "nfs", "iscsi_tcp"]
    assert probe.missing_modules(wanted, proc_modules, builtin) == ["iscsi_tcp"]


def test_memory_in_mib_from_meminfo():
    assert probe.memtotal_mb("MemTotal:        2030112 kB\nMemFree: 1 kB\n") == 1982
    assert probe.memtotal_mb("") == 0


def test_one_run_on_this_machine_reads_paths_files_ports_and_hardware(tmp_path):
    there = tmp_path / "there"
    there.write_text("abc\n")
    args = {"paths": [str(there), str(tmp_path / "absent")], "globs": [f"{tmp_path}/th*", f"{tmp_path}/none*"],
            "files": [str(there), str(tmp_path / "absent")],
            "modules": ["no_such_module_x"], "listening": True, "hardware": True}  # fmt: skip
    env = dict(os.environ, ANSIBLE_LIBRARY=str(LIBRARY), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))  # fmt: skip
    proc = subprocess.run(
        [ANSIBLE, "localhost", "-c", "local", "-e",
         f"ansible_python_interpreter={sys.executable}", "-m", "kubestrap_host_probe", "-a", json.dumps(args)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert result["changed"] is False
    assert result["present"] == [str(there)]
    assert result["matched"] == [f"{tmp_path}/th*"]
    assert result["files"] == {str(there): "abc\n", str(tmp_path / "absent"): None}
    assert result["modules_missing"] == ["no_such_module_x"]
    assert all(isinstance(port, int) for port in result["tcp_listening"])
    assert result["hardware"]["vcpus"] == os.cpu_count() and result["hardware"]["memtotal_mb"] > 0
