"""Offline validation of the rendered kubeadm, encryption and audit files against strict models."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import CORPUS, ROOT
from models import kubeadm_v1beta4 as model

INVENTORIES = {"homelab": ROOT / "inventories" / "homelab", "corpus-base": CORPUS / "base"}


def render(inventory: Path, dest: Path, *extra: str) -> dict[str, list]:
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
         str(ROOT / "tests" / "playbooks" / "render_cluster_configs.yml"),
         "-e", f"render_dir={dest}", "-e", "ansible_connection=local",
         "-e", f"ansible_python_interpreter={sys.executable}", *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {p.name: list(yaml.safe_load_all(p.read_text())) for p in sorted(dest.iterdir())}


@pytest.fixture(scope="module", params=sorted(INVENTORIES))
def rendered(request, tmp_path_factory):
    return request.param, render(INVENTORIES[request.param], tmp_path_factory.mktemp(request.param))


def _doc(docs: list, kind: str) -> dict:
    return next(d for d in docs if d and d.get("kind") == kind)


def test_every_rendered_file_passes_the_strict_model(rendered):
    _, files = rendered
    assert any(name.endswith("kubeadm-join.yaml") for name in files)
    for name, docs in files.items():
        assert model.validate_documents(docs) == [], name


def test_kubeadm_config_carries_the_cluster_settings(rendered):
    _, files = rendered
    docs = files["k8s-cp-kubeadm-config.yaml"]
    init, cluster, kubelet = (_doc(docs, k) for k in ("InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"))
    assert init["skipPhases"] == ["addon/kube-proxy"]
    assert {"name": "node-ip", "value": "192.168.1.10"} in init["nodeRegistration"]["kubeletExtraArgs"]
    assert init["localAPIEndpoint"] == {"advertiseAddress": "192.168.1.10", "bindPort": 6443}
    assert cluster["controlPlaneEndpoint"] == "192.168.1.10:6443"
    assert cluster["kubernetesVersion"] == "v1.36.4"
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12",
                                     "dnsDomain": "cluster.local"}
    args = {a["name"]: a["value"] for a in cluster["apiServer"]["extraArgs"]}
    assert args["encryption-provider-config"] == "/etc/kubernetes/encryption/config.yaml"
    assert args["audit-policy-file"] == "/etc/kubernetes/audit/policy.yaml"
    assert {"name": "bind-address", "value": "0.0.0.0"} in cluster["controllerManager"]["extraArgs"]
    assert {"name": "bind-address", "value": "0.0.0.0"} in cluster["scheduler"]["extraArgs"]
    assert {"name": "listen-metrics-urls", "value": "http://0.0.0.0:2381"} in cluster["etcd"]["local"]["extraArgs"]
    assert kubelet["cgroupDriver"] == "systemd"


def test_encryption_key_is_32_random_bytes(rendered):
    import base64

    _, files = rendered
    enc = files["k8s-cp-encryption-config.yaml"][0]
    provider = enc["resources"][0]["providers"][0]
    (name, body), = provider.items()
    assert name in ("secretbox", "aescbc")
    assert len(base64.b64decode(body["keys"][0]["secret"])) == 32
    assert enc["resources"][0]["providers"][-1] == {"identity": {}}


def test_join_config_uses_a_file_token_and_the_node_ip(rendered):
    _, files = rendered
    join = files["k8s-worker2-kubeadm-join.yaml"][0]
    assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "192.168.1.10:6443"
    assert join["discovery"]["bootstrapToken"]["caCertHashes"] == ["sha256:" + "0" * 64]
    assert {"name": "node-ip", "value": "192.168.1.12"} in join["nodeRegistration"]["kubeletExtraArgs"]
    assert join["nodeRegistration"]["name"] == "k8s-worker2"


def test_api_endpoint_name_goes_into_cert_sans(tmp_path):
    files = render(INVENTORIES["homelab"], tmp_path, "-e", "cluster_api_endpoint=k8s-api.home.arpa")
    cluster = _doc(files["k8s-cp-kubeadm-config.yaml"], "ClusterConfiguration")
    assert cluster["controlPlaneEndpoint"] == "k8s-api.home.arpa:6443"
    assert "k8s-api.home.arpa" in cluster["apiServer"]["certSANs"]
    ipaddress.ip_address(cluster["apiServer"]["certSANs"][1])


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d[0].update(nodeRegistation={}), 'unknown field "nodeRegistation"'),
    (lambda d: d[1].update(apiVersion="kubeadm.k8s.io/v1beta3"), "no longer supported"),
    (lambda d: d[1]["apiServer"].update(extraArgs={"audit-log-path": "/x"}), "expected a list"),
    (lambda d: d[0].update(timeouts={"discovery": "5 minutes"}), "invalid duration"),
    (lambda d: d[2].update(cgroupDriver="systemd-cgroup"), "unsupported value"),
    (lambda d: d[1]["networking"].update(podCIDR="10.0.0.0/8"), 'unknown field "podCIDR"'),
])
def test_model_rejects_what_kubeadm_rejects(rendered, mutate, message):
    _, files = rendered
    docs = [dict(d) for d in files["k8s-cp-kubeadm-config.yaml"]]
    docs[1] = {**docs[1], "apiServer": dict(docs[1]["apiServer"]), "networking": dict(docs[1]["networking"])}
    mutate(docs)
    errors = model.validate_documents(docs)
    assert any(message in e for e in errors), errors
