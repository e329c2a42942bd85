"""helm_release against the helm double and a kubectl stub: install once, then a re-run changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.addons.conftest import ANSIBLE_PLAYBOOK, HERE, HOSTS, ROOT

KUBECTL_STUB = """#!/bin/sh
# kubectl stub: `apply` reports the object unchanged after the first time, `rollout status` succeeds.
case " $* " in
  *" apply "*) cat >/dev/null; if [ -e "$STUB_DIR/applied" ]; then echo "namespace/kube-system unchanged";
               else touch "$STUB_DIR/applied"; echo "namespace/kube-system configured"; fi ;;
  *" rollout "*) if [ -e "$STUB_DIR/rollout-fails" ]; then echo "error: timed out waiting" >&2; exit 1; fi;
                 echo "daemon set \\"cilium\\" successfully rolled out" ;;
  *) exit 1 ;;
esac
"""


def run_play(tmp: Path, values: dict) -> subprocess.CompletedProcess:
    helm = tmp / "helm"
    helm.write_text(f'#!/bin/sh\nexec {sys.executable} {ROOT / "tests/doubles/helm"} "$@"\n')
    kubectl = tmp / "kubectl"
    kubectl.write_text(KUBECTL_STUB)
    for path in (helm, kubectl):
        path.chmod(0o755)
    inventory = tmp / "inventory"
    if not inventory.exists():
        inventory.mkdir()
        shutil.copytree(ROOT / "group_vars" / "all", inventory / "group_vars" / "all")
        hosts = json.loads(json.dumps(HOSTS))
        hosts["all"]["children"]["addon_render"]["hosts"]["localhost"]["ansible_python_interpreter"] = sys.executable
        (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
        (tmp / "ansible.cfg").write_text("[defaults]\n")
    extra = {
        "release_values": values,
        "helm_release_helm_bin": str(helm),
        "helm_release_kubectl_bin": str(kubectl),
        "helm_release_values_dir": str(tmp / "addons"),
        "helm_release_wait_retries": 2,
        "helm_release_wait_delay": 0,
    }
    (tmp / "extra.yml").write_text(yaml.safe_dump(extra))
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_CONFIG": str(tmp / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
        "HELM_DOUBLE_STATE_DIR": str(tmp / "helm-state"),
        "STUB_DIR": str(tmp),
        "ANSIBLE_STDOUT_CALLBACK": "default",
    }
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory / "hosts.yml"), str(HERE / "helm_release_play.yml"),
         "-e", f"@{tmp / 'extra.yml'}"],
        capture_output=True, text=True, env=env, cwd=tmp, check=False,
    )  # fmt: skip


def recap(out: str) -> dict[str, int]:
    line = next(line for line in out.splitlines() if line.startswith("localhost"))
    return {k: int(v) for k, v in (part.split("=") for part in line.split(":", 1)[1].split())}


def test_install_then_rerun_is_unchanged_then_value_change_upgrades(tmp_path):
    values = {"kubeProxyReplacement": True, "operator": {"replicas": 1}}
    first = run_play(tmp_path, values)
    assert first.returncode == 0, first.stdout[-4000:]
    assert recap(first.stdout)["changed"] >= 2
    values_file = tmp_path / "addons" / "cilium.values.yaml"
    assert oct(values_file.stat().st_mode & 0o777) == "0o600"
    second = run_play(tmp_path, values)
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-4000:]
    third = run_play(tmp_path, {**values, "operator": {"replicas": 2}})
    assert third.returncode == 0 and recap(third.stdout)["changed"] == 2  # values file + upgrade
    state = json.loads((tmp_path / "helm-state" / "kube-system" / "cilium.json").read_text())
    assert state["revision"] == "2" and state["config"]["operator"]["replicas"] == 2


def test_failed_rollout_names_release_namespace_and_workload(tmp_path):
    (tmp_path / "rollout-fails").touch()
    out = run_play(tmp_path, {"kubeProxyReplacement": True})
    assert out.returncode != 0
    assert "Release cilium in namespace kube-system" in out.stdout and "daemonset/cilium" in out.stdout


def test_typo_in_values_is_refused_by_helm(tmp_path):
    out = run_play(tmp_path, {"kubeProxyReplacment": True})
    assert out.returncode != 0 and "additional properties 'kubeProxyReplacment' not allowed" in out.stdout
