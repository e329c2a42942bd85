"""Kubelet serving certificates (serverTLSBootstrap, issue 16): kubestrap approves a node's
kubernetes.io/kubelet-serving request only when the node asked for itself and for its own name and
address; anything else stays pending. The filter alone, then the role's task file against a cluster of
the doubles (the kubelet double requests its serving certificate when serverTLSBootstrap is on)."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT
from k8s_double_cluster import started, wait_until
from models import kubeadm_v1beta4 as model

double = model.double
PLUGIN = ROOT / "roles" / "kubeadm_join" / "filter_plugins" / "kubelet_serving_csrs.py"


def _plugin():
    spec = importlib.util.spec_from_file_location("kubelet_serving_csrs_plugin", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.kubelet_serving_csrs


KEY = double.RSAKey.generate()


def _csr(name="csr-1", node="w1", user=None, groups=("system:nodes", "system:authenticated"), dns=("w1",),
         ips=("10.0.0.5",), signer="kubernetes.io/kubelet-serving", usages=("digital signature", "server auth"),
         cn=None, orgs=("system:nodes",), conditions=()) -> dict:  # fmt: skip
    pem = double.make_csr(KEY, cn or f"system:node:{node}", orgs, dns=dns, ips=ips)
    return {"metadata": {"name": name}, "status": {"conditions": list(conditions)} if conditions else {},
            "spec": {"request": base64.b64encode(pem.encode()).decode(), "signerName": signer,
                     "username": user or f"system:node:{node}", "groups": list(groups), "usages": list(usages)}}  # fmt: skip


def _judge(*csrs: dict) -> dict:
    return _plugin()(json.dumps({"items": list(csrs)}), "w1", ["w1"], ["10.0.0.5"])


def test_the_nodes_own_request_is_approved():
    judged = _judge(_csr())
    assert [a["name"] for a in judged["approve"]] == ["csr-1"] and judged["refused"] == {}
    (condition,) = judged["approve"][0]["body"]["status"]["conditions"]
    assert condition["type"] == "Approved" and condition["status"] == "True"


@pytest.mark.parametrize("bad, reason", [
    ({"dns": ("w1", "evil.example")}, "DNS names ['evil.example'] are not this node's"),
    ({"ips": ("10.0.0.99",)}, "IP addresses ['10.0.0.99'] are not this node's"),
    ({"dns": (), "ips": ()}, "no subject alternative names"),
    ({"cn": "system:node:w2"}, "is not CN=system:node:w1"),
    ({"orgs": ("system:masters",)}, "is not CN=system:node:w1"),
    ({"usages": ("digital signature", "server auth", "client auth")}, "are not a serving certificate's"),
    ({"groups": ("system:authenticated",)}, "not in group system:nodes"),
])
def test_anything_else_from_the_node_stays_pending(bad, reason):
    judged = _judge(_csr(**bad))
    assert judged["approve"] == [] and reason in judged["refused"]["csr-1"]


def test_other_signers_requestors_and_decided_requests_are_left_alone():
    approved = {"type": "Approved", "status": "True"}
    judged = _judge(_csr(name="a", user="kubernetes-admin"), _csr(name="b", signer="kubernetes.io/kube-apiserver-client-kubelet"),
                    _csr(name="c", node="w2", dns=("w2",)), _csr(name="d", conditions=[{"type": "Denied", "status": "True"}]))
    assert judged == {"approve": [], "approved": False, "refused": {}}
    assert _judge(_csr(conditions=[approved]))["approved"] is True


# --- the role's task file against the doubles -------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with started(tmp_path_factory.mktemp("serving")) as cluster:
        yield cluster


def _play(cluster, host: str, retries: int = 30) -> subprocess.CompletedProcess[str]:
    extra = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
             "kubeadm_join_control_plane": host, "kubeadm_join_node_ip": "127.0.0.1",
             "kubeadm_join_kubectl_bin": cluster.kubectl_bin, "kubeadm_join_admin_kubeconfig": str(cluster.kubeconfig),
             "kubeadm_join_serving_csr_wait_retries": retries, "kubeadm_join_serving_csr_wait_delay": 1}  # fmt: skip
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", f"{host},",
         str(ROOT / "tests" / "playbooks" / "approve_serving.yml"), "-e", json.dumps(extra)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "HOME": cluster.home, "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip


def _forge_as_the_node(cluster, name: str, dns: tuple[str, ...]) -> None:
    """A serving request with the control plane kubelet's own client certificate, for a name not its own."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    pem = cluster.cp.path("/var/lib/kubelet/pki/kubelet-client-current.pem").read_text()
    cert_pem = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"
    key_pem = pem[len(cert_pem):].lstrip()
    api = double.Client(admin["server"], base64.b64decode(admin["certificate-authority-data"]).decode(),
                        cert_pem=cert_pem, key_pem=key_pem)  # fmt: skip
    request = double.make_csr(double.RSAKey.generate(), "system:node:k8s-cp", ("system:nodes",), dns=dns, ips=("127.0.0.1",))
    api.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": double.b64(request), "signerName": "kubernetes.io/kubelet-serving",
                 "usages": ["digital signature", "key encipherment", "server auth"]}})  # fmt: skip


def _csrs(cluster) -> dict[str, dict]:
    return {c["metadata"]["name"]: c for c in json.loads(cluster.kubectl("get", "csr", "-o", "json").stdout)["items"]}


def test_control_plane_serving_certificate_is_approved_and_a_forged_request_is_not(cluster):
    assert wait_until(lambda: any(c["spec"]["signerName"] == "kubernetes.io/kubelet-serving" for c in _csrs(cluster).values()),
                      60), cluster.cp.logs()  # the kubelet double asked for its serving certificate
    _forge_as_the_node(cluster, "csr-forged", ("k8s-cp", "api.evil.example"))
    done = _play(cluster, "k8s-cp")
    assert done.returncode == 0, done.stdout[-4000:]
    csrs = _csrs(cluster)
    decided = lambda c: [x["type"] for x in c.get("status", {}).get("conditions") or []]  # noqa: E731
    assert decided(csrs["csr-forged"]) == []
    serving = [c for n, c in csrs.items() if c["spec"]["signerName"] == "kubernetes.io/kubelet-serving" and n != "csr-forged"]
    assert [decided(c) for c in serving] == [["Approved"]]
    pem = cluster.cp.path("/var/lib/kubelet/pki/kubelet-server-current.pem")
    assert wait_until(pem.exists, 30), cluster.cp.logs()
    cert = double.Cert.from_pem(pem.read_text())
    assert cert.cn == "system:node:k8s-cp" and cert.dns_names == ["k8s-cp"] and cert.ips == ["127.0.0.1"]
    again = _play(cluster, "k8s-cp")  # nothing left to approve: no change
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]


def test_no_acceptable_request_fails_naming_what_was_awaited(cluster):
    done = _play(cluster, "k8s-worker9", retries=2)
    assert done.returncode != 0
    awaited = "acceptable kubelet serving certificate request (kubernetes.io/kubelet-serving) from system:node:k8s-worker9"
    assert awaited in done.stdout
    assert "none from this node" in done.stdout
