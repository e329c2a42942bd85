"""The real `addons` phase (playbooks/cni.yml + playbooks/addons.yml, every add-on enabled) on this machine, no
VMs: REAL helm and REAL kubectl against the session's REAL kube-apiserver (`real_cluster`,
tests/addons/conftest.py), the pinned charts stood for by fixture charts (tests/fixtures/charts.py: the
workloads the roles wait for, the upstream CRDs, upstream values and schemas) from a chart repository on
127.0.0.1 (`kubestrap_charts_repo_base_url`, as with a chart mirror), their workloads marked rolled out by the
`rollouts` helper (tests/fixtures/rollouts.py). Only path, binary and repository variables the roles expose
are overridden. A second run must change nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.addons.conftest import ANSIBLE_PLAYBOOK, ROLES, ROOT, RealCluster, ansible_env

# Cilium comes with the control plane (playbooks/cni.yml), the rest in the addons phase.
PLAYBOOKS = [str(ROOT / "playbooks" / "cni.yml"), str(ROOT / "playbooks" / "addons.yml")]
ROLE_DIRS = ["cilium", "metallb", "cert_manager", "longhorn", "nfs_csi", "local_path", "istio", "monitoring", "argocd",
             "argo_rollouts", "falco"]


def run_phase(cluster: RealCluster, tmp: Path) -> subprocess.CompletedProcess[str]:
    inventory = tmp / "inventory"
    if not inventory.exists():
        inventory.mkdir()
        hosts = {"all": {"children": {"k8s_cluster": {"children": {
            "k8s_control_plane": {"hosts": {"k8s-cp": {"ansible_connection": "local", "node_ip": "127.0.0.1",
                                                       "ansible_python_interpreter": sys.executable}}},
            "k8s_workers": {"hosts": {}},
        }}}}}  # fmt: skip
        (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
        (tmp / "ansible.cfg").write_text("[defaults]\n")
    kubeconfig = str(cluster.kubeconfig)
    manifests = str(tmp / "addons")
    extra = {
        "addons_enabled": {name: True for name in ROLES},
        "argocd_app_of_apps_repo": "https://git.homelab.lan/platform/cluster-apps.git",
        "nfs_csi_server": "nas.homelab.lan",  # only the StorageClass names it: nothing mounts here
        "nfs_csi_export_path": "/volume1/kubernetes",
        # the "node" is this test machine (no systemd, no iscsid): the check itself is tested in
        # tests/test_longhorn_prerequisites.py and passes on the VMs of tests/e2e
        "longhorn_check_node_prerequisites": False,
        "kubestrap_charts_repo_base_url": cluster.charts_url,
        "helm_release_helm_bin": cluster.helm_bin,
        "helm_release_kubectl_bin": cluster.kubectl_bin,
        "helm_release_kubeconfig": kubeconfig,
        "monitoring_grafana_admin_password_file": str(tmp / "secrets" / "grafana-admin-password"),
        "monitoring_alertmanager_webhook_url_file": str(tmp / "secrets" / "alertmanager-webhook-url"),
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


def test_every_addon_installs_and_a_rerun_changes_nothing(real_cluster, rollouts, tmp_path):
    first = run_phase(real_cluster, tmp_path)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-2000:]
    assert recap(first.stdout)["failed"] == 0 and recap(first.stdout)["changed"] > 0
    listed = json.loads(real_cluster.helm("list", "-A", "-o", "json").stdout)
    listed = [r for r in listed if not r["namespace"].startswith("test-")]  # other tests' on the shared control plane
    assert {r["name"] for r in listed} == {
        "cilium", "metallb", "cert-manager", "longhorn", "istio-base", "istiod", "istio-ingressgateway",
        "kube-prometheus-stack", "loki", "alloy", "pushgateway", "argocd", "argo-rollouts", "falco-talon", "falco",
        "csi-driver-nfs", "local-path-provisioner",
    }  # fmt: skip
    assert all(r["status"] == "deployed" and r["revision"] == "1" for r in listed)
    for args in (("-n", "metallb-system", "get", "ipaddresspools.metallb.io", "default"),
                 ("-n", "metallb-system", "get", "l2advertisements.metallb.io", "default"),
                 ("get", "clusterissuers.cert-manager.io", "selfsigned"),
                 ("-n", "istio-system", "get", "peerauthentications.security.istio.io", "default"),
                 ("-n", "argocd", "get", "applications.argoproj.io", "app-of-apps"),
                 ("get", "storageclass", "longhorn"),
                 # installed before kube-prometheus-stack (cilium in cni.yml): its CRDs were applied first
                 ("-n", "kube-system", "get", "servicemonitors.monitoring.coreos.com", "cilium-agent"),
                 ("-n", "metallb-system", "get", "prometheusrules.monitoring.coreos.com", "metallb-alerts"),
                 ("-n", "monitoring", "get", "servicemonitors.monitoring.coreos.com", "pushgateway")):  # fmt: skip
        real_cluster.kubectl(*args)
    classes = json.loads(real_cluster.kubectl("get", "storageclass", "-o", "json").stdout)["items"]
    default = {c["metadata"]["name"]: c["metadata"].get("annotations", {}).get(
        "storageclass.kubernetes.io/is-default-class") for c in classes}  # fmt: skip
    assert {name: default.get(name) for name in ("longhorn", "nfs-csi", "local-path")} == {
        "longhorn": "true", "nfs-csi": "false", "local-path": "false"}  # fmt: skip
    nfs = next(c for c in classes if c["metadata"]["name"] == "nfs-csi")
    assert nfs["provisioner"] == "nfs.csi.k8s.io"
    assert nfs["parameters"] == {"server": "nas.homelab.lan", "share": "/volume1/kubernetes"}
    local = next(c for c in classes if c["metadata"]["name"] == "local-path")
    assert local["provisioner"] == "rancher.io/local-path" and local["volumeBindingMode"] == "WaitForFirstConsumer"
    second = run_phase(real_cluster, tmp_path)
    assert second.returncode == 0, second.stdout[-6000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-6000:]
