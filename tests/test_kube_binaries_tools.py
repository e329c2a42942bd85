"""kube_binaries installs its binaries with one kubestrap_install run (kubelet in a second, which restarts a
running kubelet), and helm and the Cilium CLI straight from their staged release tarballs on the first
control-plane node only; a re-run changes nothing, a binary already at its pin is not looked at."""

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
from helpers import ANSIBLE_PLAYBOOK, ARCH_MAP, ROLE_PATHS, ROOT, fake_systemctl

VERSIONS = yaml.safe_load((ROOT / "group_vars/all/versions.yml").read_text())["kubestrap_artifacts"]
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _staged(staging: Path, name: str) -> Path:
    pin = VERSIONS[name]
    archive = pin["url"].replace("{version}", pin["version"]).replace("{arch}", ARCH).rsplit("/", 1)[-1]
    target = staging / name / pin["version"] / ARCH / archive
    target.parent.mkdir(parents=True)
    return target


def stage_tarball(staging: Path, name: str, members: dict[str, bytes]) -> None:
    with tarfile.open(_staged(staging, name), "w:gz") as tar:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


def run(tmp: Path, host: str, current: list[str] | None = None) -> dict:
    playbook = tmp / "play.yml"
    tasks = [{"name": "Install", "ansible.builtin.include_role": {"name": "kube_binaries", "tasks_from": "install.yml"}}]
    playbook.write_text(yaml.safe_dump([{"name": "Install", "hosts": host, "gather_facts": True, "tasks": tasks}]))
    hosts = {"all": {"children": {"k8s_control_plane": {"hosts": {"cp1": None}}, "k8s_workers": {"hosts": {"w1": None}}}}}
    (tmp / "hosts.yml").write_text(yaml.safe_dump(hosts))
    extra = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "kube_binaries_artifacts": VERSIONS,
        "kubestrap_arch_map": ARCH_MAP,
        "kube_binaries_staging_dir": str(tmp / "staging"),
        "kube_binaries_bin_dir": str(tmp / host / "bin"),
        "kube_binaries_current": current or [],
        "__kube_binaries_directories": [{"path": str(tmp / host / d)} for d in ("kubelet.service.d", "var-lib-kubelet")],
    }
    (tmp / "extra.json").write_text(json.dumps(extra))
    # kubelet's handler asks systemctl whether kubelet runs: a stand-in answers (inactive)
    fake_bin = fake_systemctl(tmp / "fake-bin")
    env = dict(os.environ, **ROLE_PATHS, ANSIBLE_LIBRARY=str(ROOT / "playbooks" / "library"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", PATH=f"{fake_bin}:{os.environ['PATH']}",
               KUBESTRAP_TEST_SYSTEMD_STATE=str(tmp / "systemd.json"))  # fmt: skip
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(tmp / "hosts.yml"), "-e", f"@{tmp / 'extra.json'}",
         str(playbook)],
        capture_output=True, text=True, env=env, cwd=tmp,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _stage_all(staging: Path) -> None:
    for name in ("kubeadm", "kubelet", "kubectl"):
        _staged(staging, name).write_bytes(f"#!/bin/sh\necho {name}\n".encode())
    stage_tarball(staging, "helm", {f"linux-{ARCH}/helm": b"#!/bin/sh\necho helm\n", f"linux-{ARCH}/LICENSE": b"x"})
    stage_tarball(staging, "cilium_cli", {"cilium": b"#!/bin/sh\necho cilium\n"})


def test_binaries_and_tools_land_in_one_module_run_and_a_rerun_changes_nothing(tmp_path: Path):
    _stage_all(tmp_path / "staging")
    first = run(tmp_path, "cp1")
    assert first["stats"]["cp1"]["changed"] == 2  # the binaries and tools, then kubelet
    bin_dir = tmp_path / "cp1" / "bin"
    assert sorted(p.name for p in bin_dir.iterdir()) == ["cilium", "helm", "kubeadm", "kubectl", "kubelet"]
    assert (bin_dir / "helm").read_bytes() == b"#!/bin/sh\necho helm\n"  # linux-<arch>/ stripped
    assert all(oct(p.stat().st_mode & 0o777) == "0o755" for p in bin_dir.iterdir())
    assert not (bin_dir / "LICENSE").exists()
    assert (tmp_path / "cp1" / "kubelet.service.d").is_dir() and (tmp_path / "cp1" / "var-lib-kubelet").is_dir()
    assert run(tmp_path, "cp1")["stats"]["cp1"]["changed"] == 0

    (bin_dir / "kubeadm").write_bytes(b"#!/bin/sh\necho old kubeadm\n")  # not at its pin: replaced
    again = run(tmp_path, "cp1")
    assert again["stats"]["cp1"]["changed"] == 1
    assert (bin_dir / "kubeadm").read_bytes() == b"#!/bin/sh\necho kubeadm\n"

    (bin_dir / "kubectl").write_bytes(b"same version, other bytes\n")  # versions.yml found it at its pin
    assert run(tmp_path, "cp1", current=["kubectl", "kubelet"])["stats"]["cp1"]["changed"] == 0


def test_only_the_tools_host_gets_the_tools_and_workers_get_no_kubectl(tmp_path: Path):
    _stage_all(tmp_path / "staging")
    run(tmp_path, "w1")
    assert sorted(p.name for p in (tmp_path / "w1" / "bin").iterdir()) == ["kubeadm", "kubelet"]
    defaults = yaml.safe_load((ROOT / "roles/kube_binaries/defaults/main.yml").read_text())
    assert "groups['k8s_control_plane']" in defaults["kube_binaries_tools_host"]
    staged = yaml.safe_load((ROOT / "roles/artifacts/defaults/main.yml").read_text())["artifacts_first_control_plane_items"]
    # the tools installed are among the artifacts staged, with Cilium on (helm, cilium CLI) and off (helm only)
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    for cilium, tools in ((True, {"helm", "cilium_cli"}), (False, {"helm"})):
        templar = Templar(loader=DataLoader(), variables={"addons_enabled": {"cilium": cilium}})
        assert set(templar.template(trust_as_template(defaults["kube_binaries_tools"]))) == tools
        assert set(templar.template(trust_as_template(staged))) == tools
