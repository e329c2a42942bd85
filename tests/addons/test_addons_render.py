"""Offline validation of every add-on's rendered Helm values and manifests (the values' keys and types are
checked against the upstream charts in test_chart_values_upstream.py)."""

from __future__ import annotations

import copy
import json
import stat
import subprocess
import warnings

import kubernetes_validate
import pytest
import yaml
from helpers import ANSIBLE

from tests.addons import validator
from tests.addons.conftest import ROOT

CORE_API_VERSIONS = {"v1", "apps/v1", "batch/v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "policy/v1"}


def k8s_schema_version() -> str:
    """The kubectl version pinned in versions.yml, else the nearest schema kubernetes-validate ships."""
    pinned = yaml.safe_load((ROOT / "group_vars/all/versions.yml").read_text())["kubestrap_artifacts"]["kubectl"]["version"]
    major_minor = ".".join(pinned.split(".")[:2])
    return f"{major_minor}.0"


def test_every_role_renders_values(rendered):
    assert set(rendered.values) == {
        "cilium", "metallb", "cert_manager", "longhorn", "nfs_csi", "local_path", "istio", "argocd", "argo_rollouts",
        "falco", "monitoring",
    }  # fmt: skip
    keys = {key for _, key, _ in rendered.releases()}
    assert keys == {
        "cilium", "metallb", "cert_manager", "longhorn", "nfs_csi", "local_path", "istio_base", "istiod", "istio_gateway",
        "argocd", "argo_rollouts", "falco", "falco_talon", "kube_prometheus_stack", "loki", "alloy", "pushgateway",
    }  # fmt: skip


def test_manifests_validate(rendered):
    models = validator.cr_models()
    version = k8s_schema_version()
    errors = []
    for name, doc in rendered.docs():
        if doc["apiVersion"] in CORE_API_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{name}: {exc.message}")
        else:
            errors += [f"{name}: {e}" for e in validator.check_cr(doc, models)]
    assert errors == []


def test_kubernetes_schema_for_pinned_version_exists():
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    kubernetes_validate.validate(namespace, k8s_schema_version(), strict=True)


def test_default_config_settings(rendered_default):
    cilium = rendered_default.values["cilium"]["cilium"]
    assert cilium["kubeProxyReplacement"] is True
    assert cilium["k8sServiceHost"] == "192.168.1.10" and cilium["k8sServicePort"] == 6443
    assert cilium["ipam"]["mode"] == "kubernetes"
    assert cilium["socketLB"]["hostNamespaceOnly"] is True and cilium["defaultLBServiceIPAM"] == "none"
    assert cilium["operator"]["replicas"] == 2
    assert cilium["hubble"]["relay"]["enabled"] and cilium["hubble"]["ui"]["enabled"]
    assert rendered_default.values["metallb"]["metallb"]["frrk8s"]["enabled"] is False
    pool = rendered_default.manifests["metallb-pool.yaml"]
    assert pool[0]["spec"]["addresses"] == ["192.168.1.240-192.168.1.250"]
    assert rendered_default.values["cert_manager"]["cert_manager"]["crds"]["enabled"] is True
    longhorn = rendered_default.values["longhorn"]["longhorn"]
    assert yaml.safe_load(longhorn["defaultSettings"]["defaultReplicaCount"]) == {"v1": "3", "v2": "3"}
    assert longhorn["persistence"]["defaultClassReplicaCount"] == 3
    peer = rendered_default.manifests["istio-peer-authentication.yaml"][0]
    assert peer["spec"]["mtls"]["mode"] == "PERMISSIVE"
    gateway = rendered_default.values["istio"]["istio_gateway"]
    assert gateway["replicaCount"] == 2 and gateway["autoscaling"]["enabled"] is False
    assert gateway["service"]["type"] == "LoadBalancer"
    assert "argocd-app-of-apps.yaml" not in rendered_default.manifests
    falco = rendered_default.values["falco"]["falco"]
    assert falco["driver"]["kind"] == "modern_ebpf"
    assert falco["falcosidekick"]["config"]["webhook"]["address"] == "http://falco-talon:2803"
    assert falco["falcosidekick"]["config"]["loki"]["hostport"].startswith("http://loki-gateway.monitoring.svc.")
    talon_rules = yaml.safe_load(rendered_default.values["falco"]["falco_talon"]["config"]["rulesOverride"])
    assert any(r.get("dry_run") is True for r in talon_rules)
    kps = rendered_default.values["monitoring"]["kube_prometheus_stack"]
    assert kps["kubeProxy"]["enabled"] is False and kps["kubeEtcd"]["service"]["port"] == 2381
    assert kps["prometheus"]["prometheusSpec"]["serviceMonitorSelectorNilUsesHelmValues"] is False
    assert kps["grafana"]["additionalDataSources"][0]["type"] == "loki"
    loki = rendered_default.values["monitoring"]["loki"]
    assert loki["loki"]["limits_config"]["retention_period"] == "168h"
    assert loki["singleBinary"]["replicas"] == 1 and loki["singleBinary"]["persistence"]["storageClass"] == "longhorn"
    assert rendered_default.values["monitoring"]["alloy"]["controller"]["type"] == "daemonset"


def test_maximal_config_settings(rendered_max):
    cilium = rendered_max.values["cilium"]["cilium"]
    assert cilium["k8sServiceHost"] == "k8s-api.homelab.lan"
    assert cilium["bpf"]["masquerade"] is True  # extra values merged
    assert cilium["hubble"]["relay"]["replicas"] == 2 and cilium["hubble"]["relay"]["enabled"] is True  # recursive
    assert rendered_max.manifests["istio-peer-authentication.yaml"][0]["spec"]["mtls"]["mode"] == "STRICT"
    assert rendered_max.values["istio"]["istio_gateway"]["replicaCount"] == 3
    app = rendered_max.manifests["argocd-app-of-apps.yaml"][0]
    assert app["spec"]["source"]["repoURL"] == "https://git.homelab.lan/platform/cluster-apps.git"
    longhorn = rendered_max.values["longhorn"]["longhorn"]
    assert longhorn["persistence"]["defaultClassReplicaCount"] == 3  # 5 requested, capped at 3 workers
    assert rendered_max.values["monitoring"]["loki"]["loki"]["limits_config"]["retention_period"] == "336h"
    assert rendered_max.values["argocd"]["argocd"]["server"]["service"]["type"] == "LoadBalancer"


def test_generated_passwords_are_private_and_hashed(rendered):
    secret_dir = rendered.out / "secrets"
    password = (secret_dir / "argocd-admin-password").read_text().strip()
    assert len(password) == 32 and password != "admin"
    assert stat.S_IMODE((secret_dir / "argocd-admin-password").stat().st_mode) == 0o600
    assert stat.S_IMODE(secret_dir.stat().st_mode) == 0o700
    hashed = rendered.values["argocd"]["argocd"]["configs"]["secret"]["argocdServerAdminPassword"]
    assert hashed.startswith("$2b$") and password not in hashed
    grafana = (secret_dir / "grafana-admin-password").read_text().strip()
    assert rendered.values["monitoring"]["kube_prometheus_stack"]["grafana"]["adminPassword"] == grafana


def test_bcrypt_hash_matches_password(rendered_default):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    password = (rendered_default.out / "secrets" / "argocd-admin-password").read_text().strip()
    hashed = rendered_default.values["argocd"]["argocd"]["configs"]["secret"]["argocdServerAdminPassword"]
    assert crypt.crypt(password, hashed) == hashed


# --- negative tests: the manifest checks catch typos and wrong API versions ----------------------------


def test_wrong_cr_api_version_fails(rendered_default):
    doc = copy.deepcopy(rendered_default.manifests["metallb-pool.yaml"][0])
    doc["apiVersion"] = "metallb.io/v1alpha1"
    assert validator.check_cr(doc, validator.cr_models()) == [
        "IPAddressPool: no model for apiVersion 'metallb.io/v1alpha1' kind 'IPAddressPool'"
    ]


def test_typo_in_cr_field_fails(rendered_default):
    doc = copy.deepcopy(rendered_default.manifests["istio-peer-authentication.yaml"][0])
    doc["spec"]["mtls"]["mod"] = doc["spec"]["mtls"].pop("mode")
    errors = validator.check_cr(doc, validator.cr_models())
    assert errors == ["PeerAuthentication: spec.mtls.mod: unknown key (not in the model)"]


def test_bad_mtls_mode_fails(rendered_default):
    doc = copy.deepcopy(rendered_default.manifests["istio-peer-authentication.yaml"][0])
    doc["spec"]["mtls"]["mode"] = "STRICTER"
    assert len(validator.check_cr(doc, validator.cr_models())) == 1


def test_cr_missing_required_field_fails(rendered_default):
    doc = copy.deepcopy(rendered_default.manifests["metallb-pool.yaml"][0])
    del doc["spec"]["addresses"]
    assert validator.check_cr(doc, validator.cr_models()) == ["IPAddressPool: spec.addresses: required key missing"]


def test_core_kind_typo_fails_kubernetes_validate(rendered_default):
    doc = copy.deepcopy(rendered_default.manifests["namespace-falco.yaml"][0])
    doc["metadata"]["lables"] = doc["metadata"].pop("labels")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, k8s_schema_version(), strict=True)


def test_core_kind_wrong_api_version_fails(rendered_default):
    doc = copy.deepcopy(rendered_default.manifests["namespace-falco.yaml"][0])
    doc["apiVersion"] = "v2"
    with pytest.raises((kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError)):
        kubernetes_validate.validate(doc, k8s_schema_version(), strict=True)


# --- storage add-ons: nfs_csi and local_path --------------------------------------------------------------------
def test_nfs_class_is_on_the_nas_and_never_the_default(rendered):
    values = rendered.values["nfs_csi"]["nfs_csi"]
    klass = values["storageClass"]
    assert klass["create"] is True and klass["name"] == "nfs-csi"
    assert klass["annotations"] == {"storageclass.kubernetes.io/is-default-class": "false"}
    assert klass["reclaimPolicy"] == "Delete" and klass["volumeBindingMode"] == "Immediate"
    assert klass["mountOptions"] == ["nfsvers=4.1"]


def test_nfs_class_takes_the_cluster_settings(rendered_default, rendered_max):
    assert rendered_default.values["nfs_csi"]["nfs_csi"]["storageClass"]["parameters"] == {
        "server": "", "share": "/srv/nfs/kubernetes"}  # fmt: skip
    values = rendered_max.values["nfs_csi"]["nfs_csi"]
    assert values["storageClass"]["parameters"] == {
        "server": "nas.homelab.lan", "share": "/volume1/kubernetes", "subDir": "${pvc.metadata.name}"}  # fmt: skip
    assert values["controller"] == {"replicas": 1, "logLevel": 3}  # extra values merged recursively


def test_local_path_class_is_not_the_default(rendered):
    values = rendered.values["local_path"]["local_path"]
    assert values["fullnameOverride"] == "local-path-provisioner"
    assert values["storageClass"] == {
        "create": True, "name": "local-path", "defaultClass": False, "provisionerName": "rancher.io/local-path",
        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}  # fmt: skip
    assert values["nodePathMap"] == [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["/opt/local-path-provisioner"]}]
    # the helper pod's image is the pinned one (versions.yml kubestrap_addon_images.local_path_helper), not the chart's latest
    assert values["helperImage"] == {"repository": "docker.io/library/busybox", "tag": "1.37.0"}


@pytest.mark.parametrize(("reference", "repository", "tag"), [
    ("busybox:1.37.0", "busybox", "1.37.0"),
    ("registry.lan:5000/mirror/busybox:1.37.0", "registry.lan:5000/mirror/busybox", "1.37.0"),
    ("docker.io/library/busybox:1.37.0@sha256:" + "a" * 64, "docker.io/library/busybox", "1.37.0@sha256:" + "a" * 64),
])  # fmt: skip
def test_the_local_path_helper_image_splits_into_the_charts_repository_and_tag(tmp_path, reference, repository, tag):
    """The chart joins helperImage.repository and .tag with a colon: the template's own split, rendered by Ansible."""
    template = (ROOT / "roles/local_path/templates/values.yml.j2").read_text()
    lines = [line for line in template.splitlines() if "local_path_helper_image" in line]
    src = tmp_path / "helper.j2"
    src.write_text("helperImage:\n" + "\n".join(lines) + "\n")
    out = tmp_path / "helper.yml"
    done = subprocess.run([ANSIBLE, "localhost", "-c", "local", "-m", "ansible.builtin.template", "-a",
                           f"src={src} dest={out} mode=0600", "-e", json.dumps({"local_path_helper_image": reference})],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert yaml.safe_load(out.read_text()) == {"helperImage": {"repository": repository, "tag": tag}}


def test_monitoring_data_can_live_on_the_nfs_class(rendered_max):
    loki = rendered_max.values["monitoring"]["loki"]
    assert loki["singleBinary"]["persistence"]["storageClass"] == "nfs-csi"
