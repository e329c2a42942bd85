"""The real `addons` phase (playbooks/addons.yml, every add-on enabled) against the contract doubles on this
machine, no VMs: the session's control plane of the kubeadm/kubelet/kube-apiserver doubles (`control_plane`,
tests/conftest.py), the helm double, and REAL kubectl 1.36. Only path and binary variables the roles
expose are overridden. A second run must change nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from k8s_double_cluster import Cluster

from tests.addons.conftest import ANSIBLE_PLAYBOOK, ROLES, ROOT, ansible_env

# Cilium comes with the control plane (playbooks/cni.yml), the rest in the addons phase.
PLAYBOOKS = [str(ROOT / "playbooks" / "cni.yml"), str(ROOT / "playbooks" / "addons.yml")]
ROLE_DIRS = ["cilium", "metallb", "cert_manager", "longhorn", "istio", "monitoring", "argocd", "argo_rollouts", "falco"]


def run_phase(cluster: Cluster, tmp: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        helm = bin_dir / "helm"
        helm.write_text(f'#!/bin/sh\nexec python3 {ROOT / "tests/doubles/helm"} "$@"\n')
        helm.chmod(0o755)
        inventory = tmp / "inventory"
        inventory.mkdir()
        hosts = {"all": {"children": {"k8s_cluster": {"children": {
            "k8s_control_plane": {"hosts": {"k8s-cp": {"ansible_connection": "local", "node_ip": "127.0.0.1",
                                                       "ansible_python_interpreter": sys.executable}}},
            "k8s_workers": {"hosts": {}},
        }}}}}  # fmt: skip
        (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
        (tmp / "ansible.cfg").write_text("[defaults]\n")
    kubeconfig = str(cluster.cp.path("/etc/kubernetes/admin.conf"))
    manifests = str(tmp / "addons")
    extra = {
        "addons_enabled": {name: True for name in ROLES},
        "argocd_app_of_apps_repo": "https://git.homelab.lan/platform/cluster-apps.git",
        # the "node" is this test machine (no systemd, no iscsid): the check itself is tested in
        # tests/test_longhorn_prerequisites.py and passes on the VMs of tests/e2e
        "longhorn_check_node_prerequisites": False,
        "helm_release_helm_bin": str(bin_dir / "helm"),
        "helm_release_kubectl_bin": cluster.kubectl_bin,
        "helm_release_kubeconfig": kubeconfig,
        "monitoring_grafana_admin_password_file": str(tmp / "secrets" / "grafana-admin-password"),
        "argocd_admin_password_file": str(tmp / "secrets" / "argocd-admin-password"),
        **{f"{role}_manifest_dir": manifests for role in ROLE_DIRS},
        **{f"{role}_kubectl_bin": cluster.kubectl_bin for role in ("metallb", "cert_manager", "istio", "argocd")},
        **{f"{role}_kubeconfig": kubeconfig for role in ("metallb", "cert_manager", "istio", "argocd")},
    }
    (tmp / "extra.yml").write_text(yaml.safe_dump(extra))
    env = ansible_env(tmp, cluster.home)
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(tmp / "inventory" / "hosts.yml"), *PLAYBOOKS,
         "-e", f"@{tmp / 'extra.yml'}"],
        capture_output=True, text=True, env=env, cwd=tmp, check=False, timeout=600,
    )  # fmt: skip


def recap(out: str) -> dict[str, int]:
    line = next(line for line in out.splitlines() if line.startswith("k8s-cp ") and "ok=" in line)
    return {k: int(v) for k, v in (part.split("=") for part in line.split(":", 1)[1].split())}


def test_every_addon_installs_and_a_rerun_changes_nothing(control_plane, tmp_path):
    first = run_phase(control_plane, tmp_path)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-2000:]
    assert recap(first.stdout)["failed"] == 0 and recap(first.stdout)["changed"] > 0
    helm = [str(tmp_path / "bin" / "helm"), "list", "-A", "-o", "json", "--kubeconfig", str(control_plane.kubeconfig)]
    listed = json.loads(subprocess.run(helm, capture_output=True, text=True, check=True).stdout)
    listed = [r for r in listed if not r["namespace"].startswith("test-")]  # other tests' on the shared control plane
    assert {r["name"] for r in listed} == {
        "cilium", "metallb", "cert-manager", "longhorn", "istio-base", "istiod", "istio-ingressgateway",
        "kube-prometheus-stack", "loki", "alloy", "argocd", "argo-rollouts", "falco-talon", "falco",
    }  # fmt: skip
    assert all(r["status"] == "deployed" and r["revision"] == "1" for r in listed)
    for args in (("-n", "metallb-system", "get", "ipaddresspools.metallb.io", "default"),
                 ("-n", "metallb-system", "get", "l2advertisements.metallb.io", "default"),
                 ("get", "clusterissuers.cert-manager.io", "selfsigned"),
                 ("-n", "istio-system", "get", "peerauthentications.security.istio.io", "default"),
                 ("-n", "argocd", "get", "applications.argoproj.io", "app-of-apps"),
                 ("get", "storageclass", "longhorn")):  # fmt: skip
        control_plane.kubectl(*args)
    second = run_phase(control_plane, tmp_path)
    assert second.returncode == 0, second.stdout[-6000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-6000:]
