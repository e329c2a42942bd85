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
    assert {"name": "bind-address", "value": "127.0.0.1"} in cluster["controllerManager"]["extraArgs"]
    assert {"name": "bind-address", "value": "127.0.0.1"} in cluster["scheduler"]["extraArgs"]
    assert {"name": "listen-metrics-urls", "value": "http://127.0.0.1:2381"} in cluster["etcd"]["local"]["extraArgs"]
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


# --- CIS Kubernetes Benchmark items for kubeadm clusters (issue 16), one check per item ---------------

STRONG_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}
# namespaces of the add-ons whose pods need more than the baseline level (host network/PID/paths, privileges)
PRIVILEGED_NAMESPACES = {"kube-system", "longhorn-system", "falco", "metallb-system", "istio-system", "monitoring",
                         "kubestrap-verify"}  # the verify probe: Istio's sidecar init container needs NET_ADMIN/NET_RAW


def _args(component: dict) -> dict[str, str]:
    return {a["name"]: a["value"] for a in component.get("extraArgs", [])}


def _cis(files: dict) -> dict:
    docs = files["k8s-cp-kubeadm-config.yaml"]
    cluster = _doc(docs, "ClusterConfiguration")
    return {
        "api": _args(cluster["apiServer"]), "cm": _args(cluster["controllerManager"]),
        "sched": _args(cluster["scheduler"]), "etcd": _args(cluster["etcd"]["local"]),
        "kubelet": _doc(docs, "KubeletConfiguration"), "cluster": cluster,
    }


def _pod_security(files: dict) -> dict:
    (admission,) = files["k8s-cp-admission-config.yaml"]
    assert admission["kind"] == "AdmissionConfiguration"
    (plugin,) = [p for p in admission["plugins"] if p["name"] == "PodSecurity"]
    return plugin["configuration"]


CIS_ITEMS = {
    "apiserver profiling off": lambda c, f: c["api"].get("profiling") == "false",
    "controller-manager profiling off": lambda c, f: c["cm"].get("profiling") == "false",
    "scheduler profiling off": lambda c, f: c["sched"].get("profiling") == "false",
    "controller-manager bound to 127.0.0.1": lambda c, f: c["cm"].get("bind-address") == "127.0.0.1",
    "scheduler bound to 127.0.0.1": lambda c, f: c["sched"].get("bind-address") == "127.0.0.1",
    "etcd metrics not plain HTTP on all addresses": lambda c, f: all(
        u.startswith("https://") or u.startswith("http://127.0.0.1:")
        for u in c["etcd"].get("listen-metrics-urls", "http://127.0.0.1:2381").split(",")),
    "kubelet protectKernelDefaults": lambda c, f: c["kubelet"].get("protectKernelDefaults") is True,
    "kubelet serverTLSBootstrap": lambda c, f: c["kubelet"].get("serverTLSBootstrap") is True,
    "kubelet seccompDefault": lambda c, f: c["kubelet"].get("seccompDefault") is True,
    "kubelet podPidsLimit": lambda c, f: isinstance(c["kubelet"].get("podPidsLimit"), int)
    and 0 < c["kubelet"]["podPidsLimit"] <= 32768,
    "kubelet strong TLS cipher suites": lambda c, f: c["kubelet"].get("tlsCipherSuites")
    and set(c["kubelet"]["tlsCipherSuites"]) <= STRONG_CIPHERS,
    "apiserver strong TLS cipher suites": lambda c, f: c["api"].get("tls-cipher-suites")
    and set(c["api"]["tls-cipher-suites"].split(",")) <= STRONG_CIPHERS,
    "audit log kept 30 days": lambda c, f: c["api"].get("audit-log-maxage") == "30",
    "audit log 10 backups": lambda c, f: c["api"].get("audit-log-maxbackup") == "10",
    "audit log rotated by size": lambda c, f: int(c["api"].get("audit-log-maxsize", "0")) > 0,
    "pod security admission configured": lambda c, f: c["api"].get("admission-control-config-file")
    == "/etc/kubernetes/admission/config.yaml"
    and any(v["mountPath"] == "/etc/kubernetes/admission" and v["readOnly"] for v in c["cluster"]["apiServer"]["extraVolumes"]),
    "pod security enforces baseline": lambda c, f: _pod_security(f)["defaults"]["enforce"] == "baseline",
    "pod security warns restricted": lambda c, f: _pod_security(f)["defaults"]["warn"] == "restricted",
    "pod security audits restricted": lambda c, f: _pod_security(f)["defaults"]["audit"] == "restricted",
    "pod security exempts the privileged add-ons' namespaces": lambda c, f: set(
        _pod_security(f)["exemptions"]["namespaces"]) == PRIVILEGED_NAMESPACES,
}


@pytest.mark.parametrize("item", sorted(CIS_ITEMS))
def test_cis_item_in_rendered_config(rendered, item):
    _, files = rendered
    assert CIS_ITEMS[item](_cis(files), files), f"CIS item not met by the rendered kubeadm config: {item}"


def test_pod_security_configuration_passes_the_strict_model(rendered):
    _, files = rendered
    assert model.validate_documents(files["k8s-cp-admission-config.yaml"]) == []
    assert model.validate_document(_pod_security(files)) == []


def test_pod_security_exemptions_cover_every_privileged_addon_namespace():
    """The exemption list follows the add-on roles' namespace settings (a role moving its namespace is caught)."""
    defaults = {}
    for role in ("cilium", "longhorn", "falco", "metallb", "istio", "monitoring", "verify"):
        defaults.update(yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()))
    wanted = {defaults[k] for k in ("cilium_namespace", "longhorn_namespace", "falco_namespace", "metallb_namespace",
                                    "istio_namespace", "monitoring_namespace", "verify_probe_namespace")}
    init_defaults = yaml.safe_load((ROOT / "roles" / "kubeadm_init" / "defaults" / "main.yml").read_text())
    assert wanted <= set(init_defaults["kubeadm_init_pod_security_exempt_namespaces"])


def test_node_prep_sets_the_sysctls_protect_kernel_defaults_requires():
    """With protectKernelDefaults the kubelet refuses to start unless these kernel values are set."""
    sysctls = yaml.safe_load((ROOT / "roles" / "node_prep" / "defaults" / "main.yml").read_text())["node_prep_sysctls"]
    required = {"vm.overcommit_memory": "1", "vm.panic_on_oom": "0", "kernel.panic": "10", "kernel.panic_on_oops": "1",
                "kernel.keys.root_maxkeys": "1000000", "kernel.keys.root_maxbytes": "25000000"}
    assert {k: str(sysctls.get(k)) for k in required} == required


def test_reset_removes_every_directory_kubeadm_init_adds():
    """kubeadm reset leaves kubestrap's own files next to kubeadm's: node_reset must remove each of them."""
    tasks = yaml.safe_load((ROOT / "roles" / "kubeadm_init" / "tasks" / "main.yml").read_text())
    flat = [inner for t in tasks for inner in [t, *t.get("block", [])]]
    created = next(t for t in flat if t["name"] == "Create kubestrap's kubeadm directories")["kubestrap_install"]["directories"]
    defaults = yaml.safe_load((ROOT / "roles" / "kubeadm_init" / "defaults" / "main.yml").read_text())
    paths = {str(Path(defaults["kubeadm_init_encryption_config_path"]).parent) if "encryption_config_path" in d["path"]
             else d["path"].replace("{{ kubeadm_init_config_dir }}", defaults["kubeadm_init_config_dir"]) for d in created}
    reset = yaml.safe_load((ROOT / "roles" / "node_reset" / "defaults" / "main.yml").read_text())["node_reset_always_paths"]
    assert sorted(paths - {"/etc/kubernetes"} - set(reset)) == []
