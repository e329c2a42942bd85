"""node_prep writes /etc/hosts in one module run (or none) from the text its probe read: the cluster's nodes between
kubestrap's markers, the Debian-style `127.0.1.1 <name>` alias of the node's own name dropped. The edit is made on
the controller (roles/node_prep/filter_plugins/etc_hosts.py) and must be what ansible.builtin.lineinfile and
ansible.builtin.blockinfile make on the node, which the role still runs when the probe could not read the file whole.
Each case runs the role's own fallback tasks (tasks/names.yml) on a file here and compares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ROOT

ROLE = ROOT / "roles" / "node_prep"
NODES = {"node1": "10.0.0.11", "node2.lab.example": "10.0.0.12", "node3": "10.0.0.13"}
DEBIAN = "127.0.0.1\tlocalhost\n127.0.1.1\tnode1\n\n::1 localhost ip6-localhost ip6-loopback\n"
OLD_BLOCK = "# BEGIN kubestrap cluster nodes\n10.0.0.99 gone\n# END kubestrap cluster nodes\n"
CASES = {
    "a fresh Debian node": DEBIAN,
    "no line break at the end": "127.0.0.1 localhost\n127.0.1.1 node1",
    "the alias of another name is kept": "127.0.0.1 localhost\n127.0.1.1 node10\n",
    "an alias line that starts with another name is kept": "127.0.1.1\tnode1.lab node1\n",
    "a block of an earlier run, text after it": "127.0.0.1 localhost\n" + OLD_BLOCK + "192.0.2.1 nas\n",
    "markers in the wrong order": "# END kubestrap cluster nodes\n10.0.0.99 gone\n# BEGIN kubestrap cluster nodes\n",
    "only a begin marker": "127.0.0.1 localhost\n# BEGIN kubestrap cluster nodes\n",
    "empty": "",
}


def _tasks() -> list[dict]:
    names = yaml.safe_load((ROLE / "tasks" / "names.yml").read_text())
    block = next(t for t in names if "block" in t)["block"]
    return [t for t in block if "ansible.builtin.lineinfile" in t or "ansible.builtin.blockinfile" in t
            or "kubestrap_install" in t]  # fmt: skip


def _run(tmp: Path, text: str, drop_alias: bool = True) -> dict:
    """The role's fallback edits of a file holding *text*, and the filter's result for the same text."""
    hosts = tmp / "hosts"
    hosts.write_text(text)
    install, *edits = _tasks()
    assert "kubestrap_install" in install and len(edits) == 2
    tasks = [{**{k: v for k, v in task.items() if k != "when"},
              **{module: {**task[module], "path": str(hosts)} for module in task if module.startswith("ansible.builtin.")},
              "when": task["when"]} for task in edits]  # fmt: skip
    tasks.append({"name": "wanted", "ansible.builtin.debug": {"msg": "{{ __node_prep_etc_hosts }}"}})
    play = [{"name": "hosts", "hosts": "node1", "gather_facts": False,
             "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
             "roles": [], "tasks": tasks}]  # fmt: skip
    (tmp / "play.yml").write_text(json.dumps(play))
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {"all": {"children": {"k8s_cluster": {"hosts": {name: {**local, "node_ip": ip}
                                                                for name, ip in NODES.items()}}}}}  # fmt: skip
    (tmp / "inventory.json").write_text(json.dumps(inventory))
    probe = {"files": {"/etc/hosts": text}, "files_truncated": []}
    # the fallback tasks run as if the probe had not read the file; the filter is fed what it would have read
    extra = {"node_prep_probe": probe, "node_prep_hosts_drop_loopback_alias": drop_alias, "__node_prep_hosts_read": False}
    (tmp / "extra.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_FILTER_PLUGINS=str(ROLE / "filter_plugins"))
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp / "inventory.json"), "-e", f"@{tmp / 'extra.json'}",
                           str(tmp / "play.yml")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    results = {t["task"]["name"]: t["hosts"]["node1"] for t in json.loads(done.stdout)["plays"][0]["tasks"]}
    return {"edited": hosts.read_text(), "wanted": results["wanted"]["msg"]}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_the_controllers_edit_is_what_lineinfile_and_blockinfile_make(tmp_path, text):
    got = _run(tmp_path, text)
    assert got["wanted"] == got["edited"]
    assert "10.0.0.11 node1\n10.0.0.12 node2.lab.example node2\n10.0.0.13 node3\n" in got["wanted"]
    assert "10.0.0.99 gone" not in got["wanted"]


def test_the_alias_setting_and_a_second_run_that_has_nothing_to_write(tmp_path):
    kept = _run(tmp_path, DEBIAN, drop_alias=False)
    assert kept["wanted"] == kept["edited"] and "127.0.1.1\tnode1\n" in kept["wanted"]
    first = _run(tmp_path, DEBIAN)
    assert "127.0.1.1" not in first["wanted"]
    again = _run(tmp_path, first["wanted"])  # the node as the first run left it
    assert again["wanted"] == first["wanted"] == again["edited"]


def test_one_module_run_only_when_the_file_differs_and_the_probe_read_it_whole():
    install = _tasks()[0]
    assert install["kubestrap_install"]["files"] == [
        {"content": "{{ __node_prep_etc_hosts }}", "dest": "/etc/hosts", "mode": "0644"}]
    assert install["when"] == ["__node_prep_hosts_read | bool",
                               "__node_prep_etc_hosts != node_prep_probe.files['/etc/hosts']"]  # fmt: skip
    main = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    probe = next(t for t in main if "kubestrap_host_probe" in t)["kubestrap_host_probe"]
    assert "/etc/hosts" in probe["files"]
