"""node_prep picks the time daemon from the load states its probe reads (`systemctl show`, roles/node_prep/vars),
installing systemd-timesyncd only when none of node_prep_time_daemons is installed and not masked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ROOT

DEFAULTS = yaml.safe_load((ROOT / "roles/node_prep/defaults/main.yml").read_text())


def pick(tmp: Path, loaded: dict[str, str]) -> str:
    """The daemon picked when the probe read *loaded* (unit -> LoadState; every other daemon not-found)."""
    units = {name: {"load": loaded.get(name, "not-found"), "file": "", "active": ""}
             for name in DEFAULTS["node_prep_time_daemons"]}  # fmt: skip
    play = [{"name": "Pick", "hosts": "localhost", "gather_facts": False,
             "vars_files": [str(ROOT / "roles/node_prep/vars/main.yml")],
             "tasks": [{"name": "Show", "ansible.builtin.debug": {"msg": "{{ __node_prep_time_daemon }}"}}]}]  # fmt: skip
    (tmp / "play.yml").write_text(json.dumps(play))
    extra = {"node_prep_time_daemons": DEFAULTS["node_prep_time_daemons"], "node_prep_probe": {"units": units}}
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
    ("loaded", "daemon"),
    [
        ({}, ""),
        ({"chrony.service": "loaded"}, "chrony.service"),
        ({"ntp.service": "loaded", "chrony.service": "loaded"}, "chrony.service"),  # node_prep_time_daemons' order
        ({"chrony.service": "masked", "ntp.service": "loaded"}, "ntp.service"),
        ({"chrony.service": "masked"}, ""),
        ({"openntpd.service": "loaded"}, "openntpd.service"),
    ],
)
def test_time_daemon_choice(tmp_path, loaded, daemon):
    assert pick(tmp_path, loaded) == daemon


def test_the_probe_reads_the_time_daemons_and_no_task_of_its_own_looks_for_them():
    """One module run fewer on every node: the probe asks systemd for the daemons' states."""
    main = yaml.safe_load((ROOT / "roles/node_prep/tasks/main.yml").read_text())
    probe = next(t for t in main if "kubestrap_host_probe" in t)
    assert probe["kubestrap_host_probe"]["units"] == "{{ node_prep_time_daemons }}"
    packages = yaml.safe_load((ROOT / "roles/node_prep/tasks/packages.yml").read_text())
    assert [t["name"] for t in packages] == ["Install the packages every node needs"]
