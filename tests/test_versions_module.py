"""playbooks/library/kubestrap_versions.py: installed programs' versions checked against the pins in one module
run, and kube_binaries' check after installing (tasks/main.yml) built on it with the role's own commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import ANSIBLE_PLAYBOOK, ROOT

ROLE = ROOT / "roles" / "kube_binaries"


def _program(bin_dir: Path, name: str, output: str, rc: int = 0) -> Path:
    """A stand-in binary printing *output* whatever its arguments, and recording them."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\necho "$@" > "{bin_dir}/{name}.args"\nprintf "%s\\n" "{output}"\nexit {rc}\n')
    path.chmod(0o755)
    return path


def _play(tmp: Path, tasks: list[dict], extra: dict, vars_files: list[Path] = ()) -> dict:
    play = [{"name": "Check", "hosts": "localhost", "gather_facts": False, "vars_files": [str(f) for f in vars_files],
             "tasks": tasks}]  # fmt: skip
    (tmp / "play.yml").write_text(json.dumps(play))
    (tmp / "extra.json").write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra}))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_LIBRARY=str(ROOT / "playbooks" / "library"))  # fmt: skip
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-c", "local", "-i", "localhost,", "-e", f"@{tmp / 'extra.json'}", str(tmp / "play.yml")],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    return json.loads(proc.stdout)["plays"][0]["tasks"][-1]["hosts"]["localhost"]


def test_every_program_in_one_run_and_each_problem_named(tmp_path):
    good = _program(tmp_path / "bin", "kubeadm", "v1.36.3")
    old = _program(tmp_path / "bin", "kubelet", "Kubernetes v1.35.0")
    broken = _program(tmp_path / "bin", "kubectl", "boom", rc=3)
    task = {"name": "versions", "kubestrap_versions": {
        "programs": {"kubeadm": [str(good), "version", "-o", "short"], "kubelet": [str(old), "--version"]}}}
    result = _play(tmp_path, [task], {})
    assert result["versions"] == {"kubeadm": "1.36.3", "kubelet": "1.35.0"} and not result.get("failed"), result
    assert (tmp_path / "bin" / "kubeadm.args").read_text() == "version -o short\n"

    task["kubestrap_versions"]["programs"]["kubectl"] = [str(broken), "version"]
    task["kubestrap_versions"]["expect"] = {"kubeadm": "1.36.3", "kubelet": "1.36.3", "kubectl": "1.36.3"}
    result = _play(tmp_path, [task], {})
    assert result["failed"] is True
    assert f"kubelet ({old}) reports 1.35.0, not the pinned 1.36.3" in result["msg"]
    assert f"kubectl ({broken}): exit 3: boom" in result["msg"]
    assert "kubeadm" not in result["msg"]


def test_kube_binaries_checks_what_it_installed_with_each_binarys_own_version_command(tmp_path):
    """The role's task: the binaries not already at their pin, each asked the way vars/main.yml says."""
    bin_dir = tmp_path / "bin"
    for name in ("kubeadm", "kubelet", "kubectl"):
        _program(bin_dir, name, "v1.36.3")
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    check = next(t for t in tasks if "kubestrap_versions" in t)
    pins = {name: {"version": "1.36.3"} for name in ("kubeadm", "kubelet", "kubectl")}
    extra = {"kube_binaries_bin_dir": str(bin_dir), "kube_binaries_artifacts": pins, "kube_binaries_current": ["kubectl"],
             "__kube_binaries_names": ["kubeadm", "kubelet", "kubectl"]}  # fmt: skip
    result = _play(tmp_path, [check], extra, [ROLE / "defaults" / "main.yml", ROLE / "vars" / "main.yml"])
    assert not result.get("failed") and result["versions"] == {"kubeadm": "1.36.3", "kubelet": "1.36.3"}, result
    args = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__kube_binaries_version_args"]
    assert (bin_dir / "kubeadm.args").read_text().split() == args["kubeadm"]
    assert (bin_dir / "kubelet.args").read_text().split() == args["kubelet"]
    assert not (bin_dir / "kubectl.args").exists()  # already at its pin: not asked again

    _program(bin_dir, "kubelet", "Kubernetes v1.36.2")
    result = _play(tmp_path, [check], extra, [ROLE / "defaults" / "main.yml", ROLE / "vars" / "main.yml"])
    assert result["failed"] is True and "kubelet" in result["msg"] and "1.36.2" in result["msg"], result
