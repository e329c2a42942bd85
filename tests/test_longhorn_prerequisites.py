"""Longhorn's node prerequisites check (roles/longhorn/tasks/prerequisites.yml) refuses a node that
lacks them with one message naming the host, what is missing and what to run. (The passing case
runs on real VMs in tests/e2e, where node_prep installed open-iscsi, nfs-common and cryptsetup.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import ANSIBLE_PLAYBOOK, ROOT


def test_a_node_without_the_prerequisites_is_refused_by_name(tmp_path: Path):
    (tmp_path / "present").write_text("")
    play = [{"name": "Check", "hosts": "node-a", "gather_facts": False, "tasks": [
        {"name": "Check", "ansible.builtin.include_role": {"name": "longhorn", "tasks_from": "prerequisites.yml"}}]}]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    extra = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
             "longhorn_node_tools": [str(tmp_path / "present"), str(tmp_path / "no-such-tool")]}
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"))
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "node-a,", "-e", f"@{tmp_path / 'extra.json'}",
         str(tmp_path / "play.yml")],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-3000:]
    out = proc.stdout
    assert "Longhorn prerequisites missing on node-a" in out
    assert f"no {tmp_path / 'no-such-tool'}" in out and f"no {tmp_path / 'present'}" not in out
    assert "iscsid is " in out and "bootstrap.py up --phase node_prep" in out
