"""node_prep picks the time daemon from `systemctl list-unit-files` output (roles/node_prep/vars),
installing systemd-timesyncd only when none of node_prep_time_daemons is there."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ROOT

DEFAULTS = yaml.safe_load((ROOT / "roles/node_prep/defaults/main.yml").read_text())


def pick(tmp: Path, stdout_lines: list[str]) -> str:
    play = [{"name": "Pick", "hosts": "localhost", "gather_facts": False,
             "vars_files": [str(ROOT / "roles/node_prep/vars/main.yml")],
             "tasks": [{"name": "Show", "ansible.builtin.debug": {"msg": "{{ __node_prep_time_daemon }}"}}]}]  # fmt: skip
    (tmp / "play.yml").write_text(json.dumps(play))
    extra = {"node_prep_time_daemons": DEFAULTS["node_prep_time_daemons"], "node_prep_time_units": {"stdout_lines": stdout_lines}}
    (tmp / "extra.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOCALHOST_WARNING="false")
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-c", "local", "-i", "localhost,", "-e", f"@{tmp / 'extra.json'}",
         str(tmp / "play.yml")],
        capture_output=True, text=True, env=env, cwd=tmp,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:]
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]


@pytest.mark.parametrize(
    ("lines", "daemon"),
    [
        ([], ""),
        (["chrony.service enabled enabled"], "chrony.service"),
        (["ntp.service enabled enabled", "chrony.service enabled enabled"], "chrony.service"),
        (["chrony.service masked enabled", "ntp.service enabled enabled"], "ntp.service"),
        (["systemd-timesyncd.service enabled enabled"], ""),
    ],
)
def test_time_daemon_choice(tmp_path, lines, daemon):
    assert pick(tmp_path, lines) == daemon
