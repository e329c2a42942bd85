"""kube_binaries refuses to silently downgrade (run on this machine, local connection, private
directories; the role fails before it writes anything, so nothing outside tmp_path is touched).

The staged kubeadm, kubelet and kubectl are never run here (the role stops at the version comparison of the
INSTALLED binaries, before it installs or runs a staged one): one-line scripts that print the pinned version
stand for them, as the installed ones stand for a node's older and newer programs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import ANSIBLE_PLAYBOOK, ARCH_MAP, ROOT


def fake(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{text}'\n")
    path.chmod(0o755)
    return path


def test_a_newer_installed_kubelet_stops_the_run_with_what_to_do(tmp_path: Path):
    staging = tmp_path / "staging"
    bin_dir = tmp_path / "bin"
    artifacts = {}
    for name in ("kubeadm", "kubelet", "kubectl"):
        artifacts[name] = {
            "version": "1.36.4",
            "url": f"https://dl.k8s.io/release/v{{version}}/bin/linux/{{arch}}/{name}",
            "sha256": {"amd64": "0" * 64},
        }
    fake(staging / "kubeadm/1.36.4/amd64/kubeadm", "v1.36.4")
    fake(staging / "kubelet/1.36.4/amd64/kubelet", "Kubernetes v1.36.4")
    fake(staging / "kubectl/1.36.4/amd64/kubectl", "Client Version: v1.36.4")
    newer = fake(bin_dir / "kubelet", "Kubernetes v1.37.0")
    older = fake(bin_dir / "kubeadm", "v1.35.2")

    playbook = tmp_path / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "kube_binaries downgrade guard",
                    "hosts": "node1",
                    "gather_facts": False,
                    "roles": [{"role": "kube_binaries"}],
                }
            ]
        )
    )
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "node1": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                            "kube_binaries_artifacts": artifacts,
                            "kubestrap_arch_map": ARCH_MAP,
                            "kube_binaries_staging_dir": str(staging),
                            "kube_binaries_bin_dir": str(bin_dir),
                            "kubestrap_node_state_dir": str(tmp_path / "state"),
                        }
                    }
                }
            }
        )
    )
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_CACHE_PLUGIN="memory",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"),
    )
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(playbook)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert f"kubelet at {newer} on node1 is v1.37.0, newer than the pinned v1.36.4" in " ".join(out.split())
    assert "kube_binaries_allow_downgrade" in out
    # nothing was replaced: neither the newer kubelet nor the older kubeadm (the run stopped first)
    assert newer.read_text() == "#!/bin/sh\necho 'Kubernetes v1.37.0'\n"
    assert older.read_text() == "#!/bin/sh\necho 'v1.35.2'\n"
    assert sorted(p.name for p in bin_dir.iterdir()) == ["kubeadm", "kubelet"]
