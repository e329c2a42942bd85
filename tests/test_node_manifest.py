"""What `up` installed on a node is recorded there (roles/node_manifest, one task per installing role, run
before the role installs anything), so `bootstrap.py reset` removes only that: a path that existed before
kubestrap (a distribution's /opt/cni/bin, a user's helm) is recorded as kept, never as installed, and a
second run changes nothing (the e2e asserts changed=0 on a second `up`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import ANSIBLE_PLAYBOOK, ROOT


def _run(tmp: Path, play: list[dict], extra: dict) -> dict:
    (tmp / "play.yml").write_text(json.dumps(play))
    (tmp / "extra.json").write_text(json.dumps({"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                                **extra}))  # fmt: skip
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"))  # fmt: skip
    # node-a is the first control-plane node (it gets kubectl, helm and the Cilium CLI)
    (tmp / "inventory.yml").write_text("all:\n  children:\n    k8s_control_plane:\n      hosts:\n        node-a:\n")
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(tmp / "inventory.yml"), "-e", f"@{tmp / 'extra.json'}",
         str(tmp / "play.yml")],
        capture_output=True, text=True, env=env, cwd=tmp, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _record(tmp: Path, manifest_dir: Path, paths: list[str], marker: str = "") -> bool:
    play = [{"name": "Record", "hosts": "node-a", "gather_facts": False, "tasks": [
        {"name": "Record", "ansible.builtin.include_role": {"name": "node_manifest"}}]}]  # fmt: skip
    out = _run(tmp, play, {"node_manifest_dir": str(manifest_dir), "node_manifest_name": "containerd",
                           "node_manifest_paths": paths, "node_manifest_adopt_marker": marker})  # fmt: skip
    return out["stats"]["node-a"]["changed"] > 0


def test_paths_present_before_kubestrap_are_kept_and_a_second_run_changes_nothing(tmp_path: Path):
    foreign = tmp_path / "opt/cni/bin"  # e.g. Debian's containernetworking-plugins
    foreign.mkdir(parents=True)
    (foreign / "bridge").write_text("the distribution's plugin\n")
    ours = [tmp_path / "etc/containerd", tmp_path / "usr/local/bin/containerd"]
    manifest_dir = tmp_path / "var/lib/kubestrap/manifest"
    paths = [str(p) for p in [*ours, foreign]]

    assert _record(tmp_path, manifest_dir, paths)  # first run: the manifest is written
    manifest = json.loads((manifest_dir / "containerd.json").read_text())
    assert manifest["installed"] == sorted(str(p) for p in ours)
    assert manifest["kept"] == [str(foreign)]

    for path in ours:  # the role goes on and installs them
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("installed by kubestrap\n")
    assert not _record(tmp_path, manifest_dir, paths)  # second `up`: nothing changes, ours stay ours
    assert json.loads((manifest_dir / "containerd.json").read_text()) == manifest


def test_a_node_set_up_before_manifests_existed_adopts_what_its_kubestrap_installed(tmp_path: Path):
    """Upgrading: no manifest yet, but the role's unit names kubestrap. What is there counts as installed
    (reset removes it, as the old fixed list did); on a fresh node the same paths would be kept."""
    unit = tmp_path / "etc/systemd/system/containerd.service"
    binary = tmp_path / "usr/local/bin/containerd"
    for path, text in ((unit, "Description=containerd container runtime (kubestrap)\n"), (binary, "old\n")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    manifest_dir = tmp_path / "manifest"
    assert _record(tmp_path, manifest_dir, [str(unit), str(binary)], marker=str(unit))
    assert json.loads((manifest_dir / "containerd.json").read_text())["installed"] == sorted([str(unit), str(binary)])

    unit.write_text("Description=someone else's containerd\n")  # a unit that does not name kubestrap
    (manifest_dir / "containerd.json").unlink()
    assert _record(tmp_path, manifest_dir, [str(unit), str(binary)], marker=str(unit))
    assert json.loads((manifest_dir / "containerd.json").read_text())["installed"] == []


def _manifest_paths(role: str) -> list[str]:
    """The node_manifest_paths the role passes to node_manifest (the task that imports it)."""
    tasks = yaml.safe_load((ROOT / "roles" / role / "tasks" / "main.yml").read_text())
    records = [t for t in tasks if (t.get("ansible.builtin.import_role") or {}).get("name") == "node_manifest"]
    assert len(records) == 1, f"roles/{role}/tasks/main.yml records its manifest once"
    installs = next(i for i, t in enumerate(tasks) if "Install" in t["name"])
    assert tasks.index(records[0]) < installs, f"{role} records what it installs before it installs it"
    return records[0]["vars"]["node_manifest_paths"]


def test_the_manifests_cover_everything_the_old_fixed_reset_list_removed(tmp_path: Path):
    """containerd's and kube_binaries' manifests (on the first control plane, which gets the tools) plus what
    reset always removes (kubestrap's own directories) cover the fixed list reset used before manifests."""
    node_reset = yaml.safe_load((ROOT / "roles/node_reset/defaults/main.yml").read_text())
    wanted = {"containerd": _manifest_paths("containerd"), "kube_binaries": _manifest_paths("kube_binaries")}
    play = [{"name": "Render", "hosts": "node-a", "gather_facts": False,
             "vars_files": [*(str(ROOT / f"roles/{role}/defaults/main.yml") for role in ("containerd", "kube_binaries")),
                            str(ROOT / "roles/kube_binaries/vars/main.yml")],
             "vars": {"wanted": wanted},
             "tasks": [{"name": "Show", "ansible.builtin.debug": {"msg": "{{ wanted }}"}}]}]  # fmt: skip
    out = _run(tmp_path, play, {"kube_binaries_tools_host": "node-a"})  # the node that gets helm and the Cilium CLI
    rendered = out["plays"][0]["tasks"][0]["hosts"]["node-a"]["msg"]
    covered = set(rendered["containerd"]) | set(rendered["kube_binaries"]) | set(node_reset["node_reset_always_paths"])
    # kubeadm reset removes etcd's data; the tools' unpack directory is no longer made (helm and the Cilium CLI go
    # straight from their tarballs into the bin directory), and a node that has one from an older kubestrap lists
    # it in its manifest already (a manifest only grows: kubestrap_manifest keeps what it recorded before)
    not_recorded = {"/var/lib/etcd", "/usr/local/lib/kubestrap"}
    missing = set(node_reset["node_reset_legacy_paths"]) - covered - not_recorded
    assert not missing, f"no manifest records {sorted(missing)}"
