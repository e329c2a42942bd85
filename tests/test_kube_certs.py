"""Certificate expiry and renewal (issue 21 item 4) with the REAL kubeadm (v1.36.3, kubestrap/lab/sources/build.py).

A PKI is made in a tmp dir by `kubeadm init phase certs all --cert-dir` with a short validity (2 days, as a
cluster close to its yearly renewal), the role's own task files run on this machine (roles/kube_certs
expiry.yml and main.yml with `kubeadm` pointed at the built one and --cert-dir at the tmp dir), their facts read
back: the filter kubestrap_cert_expiry parses check-expiration's real JSON, warns under the threshold, and
main.yml renews (`kubeadm certs renew all`) only when a certificate is under certs_renew_days; the dates move
to a year. The static pod restarts and the admin kubeconfig refresh need a kubelet: not run here (the lab does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ROLE_PATHS, ROOT
from k8s_real import upstream_dir

sys.path.insert(0, str(ROOT / "filter_plugins"))
from cert_expiry import cert_expiry


@pytest.fixture(scope="module")
def kubeadm() -> Path:
    return upstream_dir("kubernetes") / "kubeadm"


def _pki(kubeadm: Path, base: Path, validity: str) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    config = base / "kubeadm.yaml"
    config.write_text(yaml.safe_dump({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration",
                                      "certificatesDir": str(base / "pki"),
                                      "certificateValidityPeriod": validity}))  # fmt: skip
    subprocess.run([kubeadm, "init", "phase", "certs", "all", "--config", str(config)], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    return base / "pki"


def _check(kubeadm: Path, pki: Path) -> str:
    return subprocess.run([kubeadm, "certs", "check-expiration", "--cert-dir", str(pki), "-o", "json"], check=True,
                          capture_output=True, text=True, timeout=60).stdout  # fmt: skip


def _run_role(tmp_path: Path, kubeadm: Path, pki: Path, tasks_from: str, **extra: object) -> dict:
    """Run roles/kube_certs tasks_from on localhost; return the facts it set (kube_certs_*) and its changed count."""
    out = tmp_path / "facts.json"
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "run the role", "ansible.builtin.include_role": {"name": "kube_certs", "tasks_from": tasks_from}},
        {"name": "keep facts", "ansible.builtin.copy": {"dest": str(out), "mode": "0600", "content": (
            "{{ {'expiry': kube_certs_expiry, 'due': kube_certs_renew_due,"
            " 'renewed': kube_certs_renewed is defined and kube_certs_renewed is changed} | to_json }}")}},
    ]}]  # fmt: skip
    book = tmp_path / f"{tasks_from}.yml"
    book.write_text(yaml.safe_dump(play))
    variables = {"kube_certs_kubeadm": str(kubeadm), "kube_certs_cert_dir": str(pki), "certs_expiry_warn_days": 30,
                 "certs_renew_days": 30, "kube_certs_static_pods": [], "kubestrap_admin_kubeconfig": str(tmp_path / "admin.conf"),
                 "kubestrap_secrets_dir": str(tmp_path / "secrets"), "kubestrap_kubeadm_dir": str(tmp_path / "kubeadm"),
                 "ansible_python_interpreter": sys.executable,
                 **extra}  # fmt: skip
    env = {**os.environ, **ROLE_PATHS, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(book), "-e", json.dumps(variables)],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return json.loads(out.read_text())


def test_the_filter_reads_kubeadms_real_json(kubeadm, tmp_path):
    pki = _pki(kubeadm, tmp_path, "48h0m0s")
    raw = json.loads(_check(kubeadm, pki))
    assert raw["kind"] == "CertificateExpirationInfo" and raw["apiVersion"] == "output.kubeadm.k8s.io/v1alpha3"
    expiry = cert_expiry(json.dumps(raw), 30)
    names = {c["name"] for c in expiry["certificates"] if not c["authority"]}
    assert {"apiserver", "apiserver-etcd-client", "apiserver-kubelet-client", "etcd-server", "etcd-peer",
            "etcd-healthcheck-client", "front-proxy-client"} <= names  # fmt: skip
    assert {c["name"] for c in expiry["certificates"] if c["authority"]} == {"ca", "etcd-ca", "front-proxy-ca"}
    # the kubeconfigs live in /etc/kubernetes, not in the tmp dir: reported missing, never counted as expiring
    assert "admin.conf" in expiry["missing"] and "admin.conf" not in expiry["under"]
    assert sorted(expiry["under"]) == sorted(names)  # every leaf: 1 day left, under 30
    assert expiry["soonest"]["days"] == 1 and expiry["soonest"]["name"] in names
    assert all(c["days"] >= 3600 for c in expiry["certificates"] if c["authority"])  # CAs: ten years, not warned
    assert cert_expiry(json.dumps(raw), 1)["under"] == []  # 1 day left is not under 1
    with pytest.raises(Exception, match="not CertificateExpirationInfo"):
        cert_expiry(json.dumps({"kind": "Other"}), 30)


def test_up_renews_under_the_threshold_and_not_above_it(kubeadm, tmp_path):
    pki = _pki(kubeadm, tmp_path, "48h0m0s")
    before = json.loads(_check(kubeadm, pki))
    # far from the threshold (1 day left, threshold 1): up's entry point reads the expiry and changes nothing
    kept = _run_role(tmp_path, kubeadm, pki, "main", certs_renew_days=1)
    assert kept["renewed"] is False and kept["due"] == []
    dates = lambda info: {c["name"]: c["expirationDate"] for c in info["certificates"]}  # noqa: E731
    assert dates(json.loads(_check(kubeadm, pki))) == dates(before)
    # under it (30): renewed, and the expiry read after the renewal says a year; the controller's admin kubeconfig
    # gets the node's (renewed) one, keeping the server URL it had
    node_conf = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://10.0.0.5:6443\n  name: k\nusers:\n- name: u\n"
    (tmp_path / "admin.conf").write_text(node_conf.replace("name: u", "name: renewed"))
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "admin.conf").write_text(node_conf.replace("10.0.0.5:6443", "127.0.0.1:16443"))
    renewed = _run_role(tmp_path, kubeadm, pki, "main")
    copy = tmp_path / "secrets" / "admin.conf"
    expected = node_conf.replace("10.0.0.5:6443", "127.0.0.1:16443").replace("name: u", "name: renewed")
    assert copy.read_text().strip() == expected.strip()
    assert copy.stat().st_mode & 0o777 == 0o600
    assert renewed["renewed"] is True
    assert renewed["expiry"]["under"] == [] and renewed["expiry"]["soonest"]["days"] >= 364
    after = {c["name"]: c for c in json.loads(_check(kubeadm, pki))["certificates"] if not c["missing"]}
    old = {c["name"]: c for c in before["certificates"] if not c["missing"]}
    assert after.keys() == old.keys()
    assert all(after[n]["expirationDate"] > old[n]["expirationDate"] for n in after)
    # certs_renew_days 0: never automatically, even with every certificate under the warning threshold
    pki2 = _pki(kubeadm, tmp_path / "off", "48h0m0s")
    off = _run_role(tmp_path, kubeadm, pki2, "main", certs_renew_days=0)
    assert off["renewed"] is False and off["expiry"]["soonest"]["days"] == 1


def test_status_expiry_entry_point_changes_nothing(kubeadm, tmp_path):
    pki = _pki(kubeadm, tmp_path, "48h0m0s")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in pki.rglob("*"))
    facts = _run_role(tmp_path, kubeadm, pki, "expiry")
    assert facts["renewed"] is False and len(facts["expiry"]["under"]) == 7
    assert sorted((p.name, p.stat().st_mtime_ns) for p in pki.rglob("*")) == before


# --- the static pods' restart after a renewal (tasks/restart.yml), with a kubelet stand-in ---------------------

KUBELET = r"""#!/usr/bin/python3
# Stands for the kubelet behind `crictl ps --state running --output json`: a static pod's container runs while its
# manifest is in the kubelet's directory and gets a new id each time the manifest comes back; coredns always runs.
# STUCK names a pod whose container never stops.
import json, os, sys
manifests, path = os.environ["KUBELET_MANIFESTS"], os.environ["KUBELET_STATE"]
state = json.load(open(path)) if os.path.exists(path) else {}
for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
    present = os.path.exists(os.path.join(manifests, name + ".yaml")) or name == os.environ.get("STUCK")
    pod = state.setdefault(name, {"generation": 1, "present": present, "seen_absent": False})
    if present and not pod["present"]:
        pod["generation"] += 1
    pod["seen_absent"] = pod["seen_absent"] or not present
    pod["present"] = present
json.dump(state, open(path, "w"))
running = [{"id": f"{name}-{pod['generation']}", "metadata": {"name": name}, "state": "CONTAINER_RUNNING"}
           for name, pod in state.items() if pod["present"]]
print(json.dumps({"containers": running + [{"id": "dns-1", "metadata": {"name": "coredns"}, "state": "CONTAINER_RUNNING"}]}))
"""


def _restart(tmp_path: Path, stuck: str = "") -> tuple[subprocess.CompletedProcess[str], Path, dict]:
    manifests, held = tmp_path / "manifests", tmp_path / "held"
    manifests.mkdir()
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        (manifests / f"{name}.yaml").write_text(f"kind: Pod\nmetadata: {{name: {name}}}\n")
    for tool, text in (("crictl", KUBELET), ("kubectl", "#!/bin/sh\necho \"$*\" >> \"$KUBECTL_LOG\"\necho ok\n")):
        (tmp_path / tool).write_text(text)
        (tmp_path / tool).chmod(0o755)
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "restart", "ansible.builtin.include_role": {"name": "kube_certs", "tasks_from": "restart"}}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    variables = {"kube_certs_manifests_dir": str(manifests), "kube_certs_held_dir": str(held),
                 "kube_certs_crictl": str(tmp_path / "crictl"), "kube_certs_kubectl": str(tmp_path / "kubectl"),
                 "kube_certs_wait_retries": 3, "kube_certs_wait_delay": 1, "kubestrap_admin_kubeconfig": "/dev/null",
                 "ansible_python_interpreter": sys.executable}  # fmt: skip
    env = {**os.environ, **ROLE_PATHS, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "KUBELET_MANIFESTS": str(manifests), "KUBELET_STATE": str(tmp_path / "kubelet.json"),
           "KUBECTL_LOG": str(tmp_path / "kubectl.log"), "STUCK": stuck}  # fmt: skip
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
                           "-e", json.dumps(variables)], capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    state = json.loads((tmp_path / "kubelet.json").read_text())
    return done, manifests, state


def test_renewal_restarts_every_static_pod_and_waits_for_the_api_server(tmp_path):
    done, manifests, state = _restart(tmp_path)
    assert done.returncode == 0, done.stdout[-4000:]
    # every pod stopped (its manifest out) and runs a new container; the manifests are back, unchanged
    assert {name: (pod["seen_absent"], pod["generation"], pod["present"]) for name, pod in state.items()} == {
        name: (True, 2, True) for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")}
    assert sorted(p.name for p in manifests.iterdir()) == [
        "etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"]
    assert (manifests / "etcd.yaml").read_text() == "kind: Pod\nmetadata: {name: etcd}\n"
    assert list((tmp_path / "held").iterdir()) == []
    assert "get --raw=/readyz" in (tmp_path / "kubectl.log").read_text()
    # a handful of module runs for the four pods, no per-pod include
    assert done.stdout.count("TASK [kube_certs : ") <= 9, done.stdout


def test_a_pod_that_does_not_stop_fails_the_renewal_and_every_manifest_goes_back(tmp_path):
    done, manifests, _ = _restart(tmp_path, stuck="kube-scheduler")
    assert done.returncode != 0
    assert "Wait until the kubelet has stopped the static pods" in done.stdout
    assert sorted(p.name for p in manifests.iterdir()) == [
        "etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"]
