"""helm_release with REAL helm, REAL kubectl and the REAL kube-apiserver (`real_cluster`, tests/addons/conftest.py),
the fixture cilium chart (tests/fixtures/charts.py) from a chart repository on 127.0.0.1: install once, a re-run
changes nothing, a values change upgrades, a rollout that never completes fails naming the workload, a value
the upstream chart's schema refuses is refused by helm. The fixture chart's workloads are marked rolled out by
the `rollouts` helper (standing for controllers and kubelets); the test's own "stuck" Deployment is not.
Each test works in a namespace of its own (test-role-*)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.addons.conftest import ANSIBLE_PLAYBOOK, HERE, HOSTS, ROOT, RealCluster, ansible_env

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


def run_play(cluster: RealCluster, tmp: Path, namespace: str, values: dict, **extra) -> subprocess.CompletedProcess[str]:
    inventory = tmp / "inventory"
    if not inventory.exists():
        inventory.mkdir()
        shutil.copytree(ROOT / "group_vars" / "all", inventory / "group_vars" / "all")
        (inventory / "hosts.yml").write_text(yaml.safe_dump(HOSTS))
        (tmp / "ansible.cfg").write_text("[defaults]\n")
    variables = {
        "release_values": values,
        "release_namespace": namespace,
        "helm_release_helm_bin": cluster.helm_bin,
        "helm_release_repo_base_url": cluster.charts_url,
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


def test_install_then_rerun_is_unchanged_then_value_change_upgrades(real_cluster, rollouts, tmp_path):
    namespace = "test-role-upgrade"
    values = {"kubeProxyReplacement": True, "operator": {"replicas": 1}}
    first = run_play(real_cluster, tmp_path, namespace, values)
    assert first.returncode == 0, first.stdout[-4000:]
    assert recap(first.stdout)["changed"] == 4, first.stdout[-4000:]  # values dir and file, namespace, install
    values_file = tmp_path / "addons" / "cilium.values.yaml"
    assert oct(values_file.stat().st_mode & 0o777) == "0o600"
    second = run_play(real_cluster, tmp_path, namespace, values)
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-4000:]
    third = run_play(real_cluster, tmp_path, namespace, {**values, "operator": {"replicas": 2}})
    assert third.returncode == 0 and recap(third.stdout)["changed"] == 2, third.stdout[-4000:]  # values file + upgrade
    listed = real_cluster.helm("list", "-n", namespace, "-o", "json")
    assert [(r["name"], r["revision"], r["status"]) for r in json.loads(listed.stdout)] == [("cilium", "2", "deployed")]
    operator = real_cluster.kubectl("-n", namespace, "get", "deployment", "cilium-operator", "-o", "jsonpath={.spec.replicas}")
    assert operator.stdout == "2"


def test_failed_rollout_names_release_namespace_and_workload(real_cluster, rollouts, tmp_path):
    namespace = "test-role-rollout"
    real_cluster.kubectl("apply", "-f", "-", stdin=UNREADY.replace("NAMESPACE", namespace))
    wait_for = [{"kind": "daemonset", "name": "cilium"}, {"kind": "deployment", "name": "stuck"}]
    out = run_play(real_cluster, tmp_path, namespace, {"kubeProxyReplacement": True},
                   release_wait_for=wait_for, helm_release_wait_timeout=1)  # fmt: skip
    assert out.returncode != 0
    message = " ".join(out.stdout.split())
    assert f"Release cilium in namespace {namespace}: waited 1 x 1s for the rollout of deployment/stuck and it is not ready" in (
        message
    ), out.stdout[-4000:]
    assert "timed out waiting for the condition" in message


def test_value_the_chart_schema_refuses_is_refused_by_helm(real_cluster, rollouts, tmp_path):
    """Upstream cilium's values.schema.json (carried by the fixture chart) allows unknown top-level keys, so a
    misspelt key is NOT refused by helm (real helm installs `kubeProxyReplacment`: test_chart_values_upstream.py
    catches such keys offline); a value of the wrong type is, by helm's schema validation, before anything
    reaches the cluster."""
    out = run_play(real_cluster, tmp_path, "test-role-typo", {"kubeProxyReplacement": True, "operator": {"replicas": "two"}})
    assert out.returncode != 0, out.stdout[-4000:]
    message = " ".join(out.stdout.split())
    assert "values don't meet the specifications of the schema" in message and "replicas" in message, out.stdout[-4000:]
    assert real_cluster.kubectl("-n", "test-role-typo", "get", "deployments", "-o", "name").stdout == ""
