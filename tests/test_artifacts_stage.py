"""The artifacts role for real, on this machine as two local "nodes": verified download into the
controller cache (file:// URLs), then each node gets what it lacks as one archive; a second run
changes nothing; a node missing one file gets only that one back; no scratch archive is left."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import ANSIBLE_PLAYBOOK, ARCH_MAP, ROOT


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    pins = {}
    for name, size in (("containerd", 3000), ("kubeadm", 2000), ("kubectl", 1000)):
        blob = upstream / f"{name}-1.0-amd64.bin"
        blob.write_bytes(os.urandom(size))
        pins[name] = {"version": "1.0", "url": f"file://{upstream}/{name}-{{version}}-{{arch}}.bin",
                      "sha256": {"amd64": hashlib.sha256(blob.read_bytes()).hexdigest()}}
    common = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {"all": {"children": {"k8s_cluster": {"children": {
        "k8s_control_plane": {"hosts": {"cp": {**common, "artifacts_node_staging_dir": str(tmp_path / "cp")}}},
        "k8s_workers": {"hosts": {"w1": {**common, "artifacts_node_staging_dir": str(tmp_path / "w1")}}},
    }}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    book = tmp_path / "stage.yml"
    book.write_text(yaml.safe_dump([{
        "name": "Stage", "hosts": "k8s_cluster", "gather_facts": False,
        "vars": {"kubestrap_artifacts": pins, "artifacts_node_items": ["containerd", "kubeadm"],
                 "artifacts_control_plane_items": ["kubectl"], "artifacts_first_control_plane_items": [],
                 "artifacts_controller_cache_dir": str(tmp_path / "cache"), "kubestrap_arch_map": ARCH_MAP},
        "roles": [{"role": "artifacts"}],
    }]))
    return book, tmp_path / "hosts.yml"


def _node_module_runs(output: dict, host: str) -> int:
    """Module runs on *host* itself (delegated and skipped results and fact checks excluded)."""
    runs = 0
    for play in output["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get(host)
            if not result or result.get("skipped") or result.get("_ansible_delegated_vars"):
                continue
            items = result.get("results")
            if items is not None:
                runs += len([i for i in items if not i.get("skipped")])
            elif task["task"]["name"] and result.get("action") not in ("ansible.builtin.set_fact", "ansible.builtin.assert",
                                                                        "ansible.builtin.validate_argument_spec"):
                runs += 1
    return runs


def _run(tmp_path: Path, book: Path, inventory: Path) -> dict[str, dict[str, int]]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path / "facts"),
           "ANSIBLE_HOST_KEY_CHECKING": "False"}
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), str(book)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    output = json.loads(proc.stdout)
    return {**output["stats"], "module_runs": {h: _node_module_runs(output, h) for h in output["stats"]}}


def _staged(node: Path) -> dict[str, str]:
    return {str(p.relative_to(node)): oct(stat.S_IMODE(p.stat().st_mode)) for p in sorted(node.rglob("*"))}


def test_each_node_gets_what_it_lacks_in_one_archive_and_a_rerun_changes_nothing(tmp_path: Path):
    book, inventory = _setup(tmp_path)
    first = _run(tmp_path, book, inventory)
    assert first["cp"]["changed"] >= 1 and first["w1"]["changed"] >= 1
    # on the node: facts, staging directory, find, one unpack; not a copy (and a mkdir) per artifact
    # (the worker: the control plane's count also holds the run-once controller downloads)
    assert first["module_runs"]["w1"] == 4, first["module_runs"]
    cp, w1 = _staged(tmp_path / "cp"), _staged(tmp_path / "w1")
    assert cp["kubectl/1.0/amd64/kubectl-1.0-amd64.bin"] == "0o644"  # control plane only
    assert "kubectl" not in w1 and w1["kubeadm/1.0/amd64/kubeadm-1.0-amd64.bin"] == "0o644"
    assert w1["kubeadm/1.0/amd64"] == "0o755" and w1["containerd"] == "0o755"
    for node in ("cp", "w1"):
        for name in ("containerd", "kubeadm"):
            staged = tmp_path / node / name / "1.0" / "amd64" / f"{name}-1.0-amd64.bin"
            assert staged.read_bytes() == (tmp_path / "upstream" / f"{name}-1.0-amd64.bin").read_bytes()
    assert not list((tmp_path / "cache").glob(".bundle-*")), "scratch archive left in the controller cache"

    again = _run(tmp_path, book, inventory)
    assert {h: again[h]["changed"] for h in ("cp", "w1")} == {"cp": 0, "w1": 0}

    (tmp_path / "w1" / "kubeadm" / "1.0" / "amd64" / "kubeadm-1.0-amd64.bin").unlink()
    repaired = _run(tmp_path, book, inventory)
    assert {h: repaired[h]["changed"] for h in ("cp", "w1")} == {"cp": 0, "w1": 1}
    assert _staged(tmp_path / "w1") == w1
    assert not list((tmp_path / "cache").glob(".bundle-*"))
