"""kube_binaries installs helm and the Cilium CLI from their staged release tarballs on the first
control-plane node only, once per version, and a re-run changes nothing."""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml
from helpers import ROOT

VERSIONS = yaml.safe_load((ROOT / "group_vars/all/versions.yml").read_text())["kubestrap_artifacts"]
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


TOOLS = "tools.yml"


def stage(staging: Path, name: str, members: dict[str, bytes]) -> None:
    pin = VERSIONS[name]
    archive = pin["url"].replace("{version}", pin["version"]).replace("{arch}", ARCH).rsplit("/", 1)[-1]
    target = staging / name / pin["version"] / ARCH / archive
    target.parent.mkdir(parents=True)
    with tarfile.open(target, "w:gz") as tar:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))


def run(tmp: Path, host: str) -> dict:
    playbook = tmp / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Tools",
                    "hosts": host,
                    "gather_facts": True,
                    "tasks": [{"name": "Tools", "ansible.builtin.include_role": {"name": "kube_binaries", "tasks_from": TOOLS}}],
                }
            ]
        )
    )
    hosts = {"all": {"children": {"k8s_control_plane": {"hosts": {"cp1": None}}, "k8s_workers": {"hosts": {"w1": None}}}}}
    (tmp / "hosts.yml").write_text(yaml.safe_dump(hosts))
    extra = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "kube_binaries_artifacts": VERSIONS,
        "kube_binaries_staging_dir": str(tmp / "staging"),
        "kube_binaries_tools_dir": str(tmp / "lib"),
        "kube_binaries_bin_dir": str(tmp / "bin"),
    }
    (tmp / "extra.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp / "hosts.yml"), "-e", f"@{tmp / 'extra.json'}",
         str(playbook)],
        capture_output=True, text=True, env=env, cwd=tmp,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout)["stats"]


def test_tools_land_on_the_first_control_plane_only_and_rerun_changes_nothing(tmp_path: Path):
    stage(tmp_path / "staging", "helm", {f"linux-{ARCH}/helm": b"#!/bin/sh\necho helm\n", f"linux-{ARCH}/LICENSE": b"x"})
    stage(tmp_path / "staging", "cilium_cli", {"cilium": b"#!/bin/sh\necho cilium\n"})
    (tmp_path / "bin").mkdir()  # /usr/local/bin exists on every node
    stats = run(tmp_path, "cp1")
    assert stats["cp1"]["changed"] > 0
    assert (tmp_path / "bin/helm").read_bytes() == b"#!/bin/sh\necho helm\n"
    assert (tmp_path / "bin/cilium").read_bytes() == b"#!/bin/sh\necho cilium\n"
    assert oct((tmp_path / "bin/helm").stat().st_mode & 0o777) == "0o755"
    assert (tmp_path / "lib" / f"helm-{VERSIONS['helm']['version']}" / f"linux-{ARCH}" / "helm").exists()
    assert run(tmp_path, "cp1")["cp1"]["changed"] == 0


def test_only_the_tools_host_runs_the_tools_tasks():
    tasks = yaml.safe_load((ROOT / "roles/kube_binaries/tasks/main.yml").read_text())
    step = next(t for t in tasks if t.get("ansible.builtin.import_tasks") == TOOLS)
    assert step["when"] == "inventory_hostname == kube_binaries_tools_host"
    defaults = yaml.safe_load((ROOT / "roles/kube_binaries/defaults/main.yml").read_text())
    assert "groups['k8s_control_plane']" in defaults["kube_binaries_tools_host"]
    staged = yaml.safe_load((ROOT / "roles/artifacts/defaults/main.yml").read_text())["artifacts_first_control_plane_items"]
    assert set(defaults["kube_binaries_tools"]) <= set(staged)
