"""The Secrets encryption-at-rest key (issue 16): the first control plane's key has a 0600 copy in the
cluster's secrets directory on the controller (dir 0700), so a rebuilt control plane gets the same key
back instead of a new one that could not read the Secrets; a cluster made before the copy existed gets
its node key copied to the controller. Runs the role's own task file (tests/playbooks/encryption_key.yml)."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import ANSIBLE_PLAYBOOK, ROOT

PLAYBOOK = ROOT / "tests" / "playbooks" / "encryption_key.yml"


def _run(tmp: Path) -> dict[str, int]:
    done = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "localhost,", str(PLAYBOOK),
         "-e", f"node_dir={tmp / 'node'}", "-e", f"secrets_dir={tmp / 'secrets' / 'lab'}",
         "-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    recap = re.search(r"localhost\s*: ok=(\d+)\s+changed=(\d+)", done.stdout)
    return {"ok": int(recap.group(1)), "changed": int(recap.group(2))}


def _key(path: Path) -> str:
    config = yaml.safe_load(path.read_text())
    return config["resources"][0]["providers"][0]["secretbox"]["keys"][0]["secret"]


def _paths(tmp: Path) -> tuple[Path, Path]:
    return tmp / "node" / "etc/kubernetes/encryption/config.yaml", tmp / "secrets" / "lab" / "encryption-config.yaml"


def test_first_run_keeps_a_private_controller_copy_and_second_run_changes_nothing(tmp_path):
    _run(tmp_path)
    node, copy = _paths(tmp_path)
    assert node.read_text() == copy.read_text()
    assert stat.S_IMODE(node.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    assert _run(tmp_path)["changed"] == 0


def test_rebuilt_control_plane_gets_the_same_key_back(tmp_path):
    _run(tmp_path)
    node, copy = _paths(tmp_path)
    key = _key(copy)
    node.unlink()  # the control plane was rebuilt from scratch
    _run(tmp_path)
    assert _key(node) == key and stat.S_IMODE(node.stat().st_mode) == 0o600


def test_key_of_a_cluster_made_before_the_copy_existed_is_copied_to_the_controller(tmp_path):
    _run(tmp_path)
    node, copy = _paths(tmp_path)
    key = _key(node)
    copy.unlink()  # only the node has the key (older kubestrap, or a new controller)
    _run(tmp_path)
    assert _key(copy) == key and stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert _run(tmp_path)["changed"] == 0
