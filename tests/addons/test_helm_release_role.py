"""helm_release with the helm double, REAL kubectl and the session's API server double (`control_plane`,
tests/conftest.py): install once, a re-run changes nothing, a values change upgrades, a rollout that never
completes fails naming the workload. Each test works in a namespace of its own (test-role-*)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from k8s_double_cluster import Cluster

from tests.addons.conftest import ANSIBLE_PLAYBOOK, HERE, HOSTS, ROOT, ansible_env

UNREADY = """apiVersion: v1
kind: Namespace
metadata: {name: NAMESPACE}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck, namespace: NAMESPACE}
spec:
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec: {containers: [{name: stuck, image: registry.example/stuck:1}]}
"""


def run_play(cluster: Cluster, tmp: Path, namespace: str, values: dict, **extra) -> subprocess.CompletedProcess[str]:
    inventory = tmp / "inventory"
    if not inventory.exists():
        inventory.mkdir()
        shutil.copytree(ROOT / "group_vars" / "all", inventory / "group_vars" / "all")
        (inventory / "hosts.yml").write_text(yaml.safe_dump(HOSTS))
        (tmp / "ansible.cfg").write_text("[defaults]\n")
        helm = tmp / "helm"
        helm.write_text(f'#!/bin/sh\nexec {sys.executable} {ROOT / "tests/doubles/helm"} "$@"\n')
        helm.chmod(0o755)
    variables = {
        "release_values": values,
        "release_namespace": namespace,
        "helm_release_helm_bin": str(tmp / "helm"),
        "helm_release_kubectl_bin": cluster.kubectl_bin,
        "helm_release_kubeconfig": str(cluster.kubeconfig),
        "helm_release_values_dir": str(tmp / "addons"),
        "helm_release_wait_retries": 1,
        "helm_release_wait_delay": 0,
        **extra,
    }
    (tmp / "extra.yml").write_text(yaml.safe_dump(variables))
    env = ansible_env(tmp, cluster.home)
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory / "hosts.yml"), str(HERE / "helm_release_play.yml"),
         "-e", f"@{tmp / 'extra.yml'}"],
        capture_output=True, text=True, env=env, cwd=tmp, check=False, timeout=300,
    )  # fmt: skip


def recap(out: str) -> dict[str, int]:
    line = next(line for line in out.splitlines() if line.startswith("localhost"))
    return {k: int(v) for k, v in (part.split("=") for part in line.split(":", 1)[1].split())}


def test_install_then_rerun_is_unchanged_then_value_change_upgrades(control_plane, tmp_path):
    namespace = "test-role-upgrade"
    values = {"kubeProxyReplacement": True, "operator": {"replicas": 1}}
    first = run_play(control_plane, tmp_path, namespace, values)
    assert first.returncode == 0, first.stdout[-4000:]
    assert recap(first.stdout)["changed"] == 4, first.stdout[-4000:]  # values dir and file, namespace, install
    values_file = tmp_path / "addons" / "cilium.values.yaml"
    assert oct(values_file.stat().st_mode & 0o777) == "0o600"
    second = run_play(control_plane, tmp_path, namespace, values)
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-4000:]
    third = run_play(control_plane, tmp_path, namespace, {**values, "operator": {"replicas": 2}})
    assert third.returncode == 0 and recap(third.stdout)["changed"] == 2, third.stdout[-4000:]  # values file + upgrade
    listed = subprocess.run([str(tmp_path / "helm"), "list", "-n", namespace, "-o", "json", "--kubeconfig",
                             str(control_plane.kubeconfig)], capture_output=True, text=True, check=True)  # fmt: skip
    assert [(r["name"], r["revision"], r["status"]) for r in json.loads(listed.stdout)] == [("cilium", "2", "deployed")]
    operator = control_plane.kubectl("-n", namespace, "get", "deployment", "cilium-operator", "-o", "jsonpath={.spec.replicas}")
    assert operator.stdout == "2"


def test_failed_rollout_names_release_namespace_and_workload(control_plane, tmp_path):
    namespace = "test-role-rollout"
    control_plane.kubectl("apply", "-f", "-", stdin=UNREADY.replace("NAMESPACE", namespace))
    wait_for = [{"kind": "daemonset", "name": "cilium"}, {"kind": "deployment", "name": "stuck"}]
    out = run_play(control_plane, tmp_path, namespace, {"kubeProxyReplacement": True},
                   release_wait_for=wait_for, helm_release_wait_timeout=1)  # fmt: skip
    assert out.returncode != 0
    message = " ".join(out.stdout.split())
    assert f"Release cilium in namespace {namespace}: waited 1 x 1s for the rollout of deployment/stuck and it is not ready" in (
        message
    ), out.stdout[-4000:]
    assert "timed out waiting for the condition" in message


def test_typo_in_values_is_refused_by_helm(control_plane, tmp_path):
    out = run_play(control_plane, tmp_path, "test-role-typo", {"kubeProxyReplacment": True})
    assert out.returncode != 0 and "additional properties 'kubeProxyReplacment' not allowed" in out.stdout
