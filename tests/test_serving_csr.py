"""Kubelet serving certificates (serverTLSBootstrap, issue 16): kubestrap approves a node's
kubernetes.io/kubelet-serving request only when the node asked for itself and for its own name and
address; anything else stays pending. The filter alone, then the role's task files and the approver program
against the REAL kube-apiserver and kube-controller-manager (tests/k8s_real.py, v1.36.3 built from its Go
module) with REAL kubectl: real Node objects, and real CertificateSigningRequests made with the client
certificates of node identities (CN=system:node:NAME, O=system:nodes, signed by the control plane's CA), as a
kubelet makes them; the controller-manager signs what is approved."""

from __future__ import annotations

import base64
import importlib.util
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import ANSIBLE_PLAYBOOK, ROOT, fake_systemctl, wait_until, with_cluster_defaults
from k8s_real import started, upstream_dir

PLUGIN = ROOT / "roles" / "kubeadm_join" / "filter_plugins" / "kubelet_serving_csrs.py"


def _plugin():
    spec = importlib.util.spec_from_file_location("kubelet_serving_csrs_plugin", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.kubelet_serving_csrs


KEY = ec.generate_private_key(ec.SECP256R1())  # a kubelet's serving key is ECDSA P-256


def _request_pem(cn: str, orgs=("system:nodes",), dns=(), ips=()) -> str:
    """A PKCS#10 request (PEM) for CN=cn, O=orgs asking for the DNS names and IP addresses given."""
    subject = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # fmt: skip
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _csr(name="csr-1", node="w1", user=None, groups=("system:nodes", "system:authenticated"), dns=("w1",),
         ips=("10.0.0.5",), signer="kubernetes.io/kubelet-serving", usages=("digital signature", "server auth"),
         cn=None, orgs=("system:nodes",), conditions=()) -> dict:  # fmt: skip
    pem = _request_pem(cn or f"system:node:{node}", orgs, dns=dns, ips=ips)
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


# --- the role's task file against the real control plane ------------------------------------------------

ADMIN = "kubestrap-test-admin"  # the user name of tests/k8s_real.py's admin client certificate
SERVING_USAGES = ("digital signature", "server auth")  # what a kubelet with an ECDSA key asks for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The real control plane with kube-controller-manager (it signs approved requests) and the Node k8s-cp as a
    kubelet registers it (name, InternalIP 127.0.0.1, Hostname k8s-cp)."""
    with started(tmp_path_factory.mktemp("serving"), controllers=True) as plane:
        _node(plane, "k8s-cp", "127.0.0.1")
        yield plane


def _node(cluster, name: str, ip: str) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}}  # fmt: skip
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(node))
    (created,) = json.loads(cluster.kubectl("get", "nodes", name, "-o", "json").stdout)["status"]["addresses"][:1]
    assert created == {"type": "InternalIP", "address": ip}, "the Node was created without its addresses"


def _as_node(cluster, name: str) -> Path:
    """A kubeconfig with the client certificate of the kubelet of *name* (system:node:NAME in system:nodes)."""
    return cluster.client_kubeconfig(f"system:node:{name}", "system:nodes")


def _request(cluster, kubeconfig: Path | None, name: str, cn: str, dns=(), ips=(),
             signer="kubernetes.io/kubelet-serving", usages=SERVING_USAGES) -> None:  # fmt: skip
    """Create a CertificateSigningRequest with real kubectl as the user of *kubeconfig* (None: the admin)."""
    pem = _request_pem(cn, ("system:nodes",), dns=dns, ips=ips)
    csr = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
           "spec": {"request": base64.b64encode(pem.encode()).decode(), "signerName": signer,
                    "usages": list(usages)}}  # fmt: skip
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(csr), kubeconfig=kubeconfig)


def _play(cluster, host: str, retries: int = 30, kubectl: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
             "kubeadm_join_control_plane": host, "kubeadm_join_node_ip": "127.0.0.1",
             "kubeadm_join_kubectl_bin": kubectl or cluster.kubectl_bin, "kubeadm_join_admin_kubeconfig": str(cluster.kubeconfig),
             "kubeadm_join_serving_csr_wait_retries": retries, "kubeadm_join_serving_csr_wait_delay": 1}  # fmt: skip
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", f"{host},",
         str(ROOT / "tests" / "playbooks" / "approve_serving.yml"), "-e", json.dumps(extra)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "HOME": cluster.home, "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip


def _csrs(cluster) -> dict[str, dict]:
    return {c["metadata"]["name"]: c for c in json.loads(cluster.kubectl("get", "csr", "-o", "json").stdout)["items"]}


def _conditions(csr: dict) -> list[str]:
    return [c["type"] for c in csr.get("status", {}).get("conditions") or []]



def _signed(cluster, name: str) -> x509.Certificate:
    """The certificate kube-controller-manager issued for the approved request *name*."""
    issued = wait_until(lambda: _csrs(cluster)[name].get("status", {}).get("certificate"), 60)
    assert issued, f"{name} was not signed:\n{cluster.logs('kube-controller-manager')}"
    return x509.load_pem_x509_certificate(base64.b64decode(issued))


def test_control_plane_serving_certificate_is_approved_and_a_forged_request_is_not(cluster):
    node = _as_node(cluster, "k8s-cp")
    _request(cluster, node, "csr-kubelet-serving", "system:node:k8s-cp", dns=("k8s-cp",), ips=("127.0.0.1",))
    _request(cluster, node, "csr-forged", "system:node:k8s-cp", dns=("k8s-cp", "api.evil.example"), ips=("127.0.0.1",))
    created = _csrs(cluster)["csr-kubelet-serving"]["spec"]
    assert (created["username"], "system:nodes" in created["groups"]) == ("system:node:k8s-cp", True)  # premise
    done = _play(cluster, "k8s-cp")
    assert done.returncode == 0, done.stdout[-4000:]
    csrs = _csrs(cluster)
    assert _conditions(csrs["csr-forged"]) == []
    serving = [c for n, c in csrs.items() if c["spec"]["signerName"] == "kubernetes.io/kubelet-serving" and n != "csr-forged"]
    assert [_conditions(c) for c in serving] == [["Approved"]]
    cert = _signed(cluster, "csr-kubelet-serving")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:k8s-cp"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["k8s-cp"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    again = _play(cluster, "k8s-cp")  # nothing left to approve: no change
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]


def _racing_kubectl(cluster, tmp_path: Path, also_deny: bool = False) -> str:
    """The real kubectl, except that an approval first lets someone else decide the request with the same (now
    stale) body, as the approver's timer on the first control plane may between the role's read and its write:
    the role's own approval then gets the API server's Conflict."""
    script = tmp_path / "kubectl"
    decide = ('python3 -c "import json,sys; b=json.load(sys.stdin); c=b[\\"status\\"][\\"conditions\\"][-1]; '
              'c.update(type=\\"Denied\\", reason=\\"SomeoneElse\\"); json.dump(b, sys.stdout)"') if also_deny else "cat"
    script.write_text(f"""#!/bin/sh
case "$*" in
  *" replace --raw "*/approval*)
    body=$(cat)
    printf '%s' "$body" | {decide} | "{cluster.kubectl_bin}" "$@" >/dev/null || exit 99
    printf '%s' "$body" | "{cluster.kubectl_bin}" "$@" 2>"{tmp_path}/approval.err"
    rc=$?; cat "{tmp_path}/approval.err" >&2; exit $rc ;;
  *) exec "{cluster.kubectl_bin}" "$@" ;;
esac
""")
    script.chmod(0o755)
    return str(script)


def test_a_request_approved_by_someone_else_meanwhile_is_not_a_failure(cluster, tmp_path):
    """The approver's timer approves the join's request between the read and the approval (CI, 2026-12-06)."""
    _node(cluster, "k8s-racer", "127.0.0.1")
    _request(cluster, _as_node(cluster, "k8s-racer"), "csr-racer", "system:node:k8s-racer", dns=("k8s-racer",),
             ips=("127.0.0.1",))  # fmt: skip
    done = _play(cluster, "k8s-racer", kubectl=_racing_kubectl(cluster, tmp_path))
    assert done.returncode == 0, done.stdout[-4000:]
    assert "(Conflict)" in (tmp_path / "approval.err").read_text()  # the race happened
    assert _conditions(_csrs(cluster)["csr-racer"]) == ["Approved"]


def test_a_request_denied_by_someone_else_meanwhile_fails_naming_it(cluster, tmp_path):
    _node(cluster, "k8s-denied", "127.0.0.1")
    _request(cluster, _as_node(cluster, "k8s-denied"), "csr-denied", "system:node:k8s-denied", dns=("k8s-denied",),
             ips=("127.0.0.1",))  # fmt: skip
    done = _play(cluster, "k8s-denied", kubectl=_racing_kubectl(cluster, tmp_path, also_deny=True))
    assert done.returncode != 0
    assert "could not approve the kubelet serving certificate request csr-denied of k8s-denied" in done.stdout
    assert "It is not approved now either" in done.stdout and "(Conflict)" in done.stdout
    assert _conditions(_csrs(cluster)["csr-denied"]) == ["Denied"]


def test_no_acceptable_request_fails_naming_what_was_awaited(cluster):
    _node(cluster, "k8s-worker9", "127.0.0.1")
    done = _play(cluster, "k8s-worker9", retries=2)
    assert done.returncode != 0
    awaited = "acceptable kubelet serving certificate request (kubernetes.io/kubelet-serving) from system:node:k8s-worker9"
    assert awaited in done.stdout
    assert "none from this node" in done.stdout


def test_a_node_that_never_registers_fails_naming_the_node_not_the_request(cluster):
    """The wait reads the Nodes and the requests together (a worker's kubeadm join returns before its Node is
    registered): a request alone is not enough, and the failure says what was missing."""
    _request(cluster, _as_node(cluster, "k8s-ghost"), "csr-ghost", "system:node:k8s-ghost", dns=("k8s-ghost",),
             ips=("127.0.0.1",))  # fmt: skip
    done = _play(cluster, "k8s-ghost", retries=2)
    assert done.returncode != 0
    assert "for the node k8s-ghost to register with the API server (no Node of that name)" in done.stdout
    assert "journalctl -u kubelet" in done.stdout
    assert _conditions(_csrs(cluster)["csr-ghost"]) == []  # not approved: the node is not there
    _node(cluster, "k8s-ghost", "127.0.0.1")  # registered now: the next run approves it
    again = _play(cluster, "k8s-ghost")
    assert again.returncode == 0, again.stdout[-4000:]
    assert _conditions(_csrs(cluster)["csr-ghost"]) == ["Approved"]


# --- renewals: kubestrap's approver program (one source of the rules with the filter) ------------------------

APPROVER = ROOT / "roles" / "kubeadm_join" / "files" / "kubestrap_approve_serving_csrs.py"
ROLE = ROOT / "roles" / "kubeadm_join"
UNIT = "kubestrap-approve-serving-csrs"


def _approver():
    spec = importlib.util.spec_from_file_location("kubestrap_approve_serving_csrs_under_test", APPROVER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_filter_takes_its_decisions_from_the_approver_program(monkeypatch):
    """One source: the join-time filter asks the approver's own functions (a change there changes both)."""
    plugin_spec = importlib.util.spec_from_file_location("kubelet_serving_csrs_plugin", PLUGIN)
    plugin = importlib.util.module_from_spec(plugin_spec)
    plugin_spec.loader.exec_module(plugin)
    assert Path(plugin.approver.__file__).resolve() == APPROVER.resolve()
    monkeypatch.setattr(plugin.approver, "refusal", lambda csr, nodes: "decided by the approver program")
    judged = plugin.kubelet_serving_csrs(json.dumps({"items": [_csr()]}), "w1", ["w1"], ["10.0.0.5"])
    assert judged["refused"] == {"csr-1": "decided by the approver program"}


def test_a_request_encoded_as_go_encodes_it_is_read(tmp_path):
    """Requests written by Go's crypto/x509 (subject strings as PrintableString, cryptography writes UTF8String),
    as a kubelet writes them: made here by REAL kubeadm (`kubeadm certs generate-csr`, the same crypto/x509
    CreateCertificateRequest), its kubelet.conf request for the subject and its API server request for the names."""
    config = tmp_path / "kubeadm.yaml"
    config.write_text(yaml.safe_dump_all([
        {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration", "nodeRegistration": {"name": "w1"},
         "localAPIEndpoint": {"advertiseAddress": "10.0.0.5"}},
        {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration", "kubernetesVersion": "v1.36.3"},
    ]))  # fmt: skip
    kubeadm = upstream_dir("kubernetes") / "kubeadm"
    done = subprocess.run([str(kubeadm), "certs", "generate-csr", "--config", str(config),
                           "--cert-dir", str(tmp_path / "pki"), "--kubeconfig-dir", str(tmp_path / "kubeconfigs")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    read = lambda path: _approver().parse_request(base64.b64encode(path.read_bytes()).decode())  # noqa: E731
    kubelet = tmp_path / "kubeconfigs" / "kubelet.conf.csr"
    assert b"\x13\x0esystem:node:w1" in x509.load_pem_x509_csr(kubelet.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert read(kubelet) == (["system:node:w1"], ["system:nodes"], [], [], 0)
    apiserver = read(tmp_path / "pki" / "apiserver.csr")
    assert apiserver.common_names == ["kube-apiserver"] and apiserver.other_names == 0
    assert sorted(apiserver.dns_names) == ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
                                           "kubernetes.default.svc.cluster.local", "w1"]  # fmt: skip
    assert sorted(apiserver.ip_addresses) == ["10.0.0.5", "10.96.0.1"]


def _run_approver(cluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/usr/bin/python3", str(APPROVER), "--kubectl", cluster.kubectl_bin, "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": cluster.home},
    )  # fmt: skip


def _conditions(csr: dict) -> list[str]:
    return [c["type"] for c in csr.get("status", {}).get("conditions") or []]


def test_the_approver_approves_a_nodes_renewal_and_leaves_the_rest_pending_naming_why(cluster):
    assert "k8s-cp" in cluster.kubectl("get", "nodes", "-o", "name").stdout
    node = _as_node(cluster, "k8s-cp")
    _request(cluster, node, "renewal-k8s-cp", "system:node:k8s-cp", dns=("k8s-cp",), ips=("127.0.0.1",))
    _request(cluster, node, "renewal-foreign-ip", "system:node:k8s-cp", dns=("k8s-cp",), ips=("127.0.0.1", "10.9.9.9"))
    _request(cluster, node, "renewal-foreign-dns", "system:node:k8s-cp", dns=("k8s-cp", "api.evil.example"),
             ips=("127.0.0.1",))  # fmt: skip
    _request(cluster, None, "renewal-not-a-node", "system:node:k8s-cp", dns=("k8s-cp",), ips=("127.0.0.1",))
    _request(cluster, _as_node(cluster, "ghost"), "renewal-ghost", "system:node:ghost", dns=("ghost",))
    _request(cluster, node, "client-signer", "system:node:k8s-cp", signer="kubernetes.io/kube-apiserver-client",
             usages=("digital signature", "client auth"))  # fmt: skip

    done = _run_approver(cluster)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert "renewal-k8s-cp" in result["approved"]
    left = result["left_pending"]
    assert left["renewal-foreign-ip"] == "IP addresses ['10.9.9.9'] are not this node's"
    assert left["renewal-foreign-dns"] == "DNS names ['api.evil.example'] are not this node's"
    assert left["renewal-not-a-node"].startswith(f"requested by {ADMIN}, not by a node")
    assert left["renewal-ghost"] == "requested by system:node:ghost, but there is no Node ghost"
    assert left["client-signer"] == "signer kubernetes.io/kube-apiserver-client is not kubernetes.io/kubelet-serving"
    for name in left:
        assert f"left pending {name}: " in done.stderr
    assert "approved renewal-k8s-cp (serving certificate of k8s-cp)" in done.stderr

    csrs = _csrs(cluster)
    assert _conditions(csrs["renewal-k8s-cp"]) == ["Approved"]
    assert _signed(cluster, "renewal-k8s-cp").subject.rfc4514_string() == "CN=system:node:k8s-cp,O=system:nodes"
    for name in left:
        assert _conditions(csrs[name]) == [], f"{name} must stay pending"

    again = _run_approver(cluster)  # nothing new: nothing approved, no change
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["approved"] == []


def _run_once_play(cluster) -> subprocess.CompletedProcess[str]:
    extra = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
             "kubeadm_join_serving_approver_path": str(APPROVER), "kubeadm_join_kubectl_bin": cluster.kubectl_bin,
             "kubeadm_join_admin_kubeconfig": str(cluster.kubeconfig)}  # fmt: skip
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "k8s-cp,",
         str(ROOT / "tests" / "playbooks" / "serving_approver_run.yml"), "-e", json.dumps(extra)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "HOME": cluster.home, "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip


def test_each_up_runs_the_approver_once_changed_only_when_it_approved(cluster):
    """A request an earlier run left pending (or a renewal) is approved by the next `up`: changed=1, then changed=0."""
    _request(cluster, _as_node(cluster, "k8s-cp"), "renewal-up", "system:node:k8s-cp", dns=("k8s-cp",),
             ips=("127.0.0.1",))  # fmt: skip
    done = _run_once_play(cluster)
    assert done.returncode == 0 and "changed=1" in done.stdout, done.stdout[-3000:]
    assert _conditions(_csrs(cluster)["renewal-up"]) == ["Approved"]
    again = _run_once_play(cluster)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]


# --- the timer and service the first control plane gets -----------------------------------------------------


def _units() -> dict[str, dict[str, dict[str, list[str]]]]:
    """The role's unit templates rendered with its defaults: {unit: {section: {key: [values]}}}."""
    import jinja2

    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values = {**{k: with_cluster_defaults(v) if isinstance(v, str) else v for k, v in defaults.items()},
              "ansible_managed": "managed"}  # fmt: skip
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    units = {}
    for kind in ("service", "timer"):
        text = env.from_string((ROLE / "templates" / f"{UNIT}.{kind}.j2").read_text()).render(values)
        sections: dict[str, dict[str, list[str]]] = {}
        for line in text.splitlines():
            if line.startswith("["):
                section = sections.setdefault(line.strip("[]"), {})
            elif line and not line.startswith("#"):
                key, value = line.split("=", 1)
                section.setdefault(key, []).append(value)
        units[kind] = sections
    return units


def test_the_timer_runs_the_installed_approver_regularly_and_after_missed_runs():
    units, defaults = _units(), yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    timer = units["timer"]["Timer"]
    assert timer.get("OnCalendar") or timer.get("OnUnitActiveSec"), "the timer must repeat"
    assert timer["OnCalendar"] == ["*:0/30"] and timer["Persistent"] == ["true"] and timer["RandomizedDelaySec"]
    assert units["timer"]["Install"]["WantedBy"] == ["timers.target"]
    service = units["service"]["Service"]
    assert service["Type"] == ["oneshot"]
    (command,) = service["ExecStart"]
    argv = command.split()
    assert argv[0] == defaults["kubeadm_join_serving_approver_path"]
    assert argv[1:] == ["--kubectl", "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]

    tasks = yaml.safe_load((ROLE / "tasks" / "serving_approver.yml").read_text())[0]["block"]
    (install,) = [t["kubestrap_install"]["files"] for t in tasks if "kubestrap_install" in t]  # one module run
    assert APPROVER.name in install[0]["content"] and "rstrip=false" in install[0]["content"]  # the bytes as they are
    assert (install[0]["dest"], install[0]["mode"]) == ("{{ kubeadm_join_serving_approver_path }}", "0755")
    assert [f["mode"] for f in install[1:]] == ["0644", "0644"]
    assert os.access(APPROVER, os.X_OK) and APPROVER.read_text().startswith("#!/usr/bin/python3\n")
    record = next(t for t in tasks if t.get("ansible.builtin.include_role", {}).get("name") == "node_manifest")
    assert tasks.index(record) == 0, "what it installs is recorded before it is installed (reset removes it)"
    unit_dir = "{{ kubeadm_join_serving_approver_unit_dir }}"
    assert set(record["vars"]["node_manifest_paths"]) == {
        "{{ kubeadm_join_serving_approver_path }}", f"{unit_dir}/{UNIT}.service", f"{unit_dir}/{UNIT}.timer"}
    assert defaults["kubeadm_join_serving_approver_unit_dir"] == "/etc/systemd/system"


def test_the_first_control_plane_gets_the_approver_before_init_and_runs_it_each_up():
    """Installed in kubeadm_init's node-local block before kubeadm init (module runs on a node are cheaper before
    the control plane runs; its service waits for the admin kubeconfig), run after init by every `up`."""
    tasks = yaml.safe_load((ROOT / "roles" / "kubeadm_init" / "tasks" / "main.yml").read_text())
    block = next(t for t in tasks if t["name"].startswith("Node-local files and kubeadm init"))["block"]
    names = [t["name"] for t in block]
    install = next(i for i, t in enumerate(block)
                   if t.get("ansible.builtin.include_role", {}).get("tasks_from") == "serving_approver.yml")  # fmt: skip
    assert install < next(i for i, n in enumerate(names) if n.startswith("Run kubeadm init")), names
    runs = [t for t in tasks if t.get("ansible.builtin.include_role", {}).get("tasks_from") == "serving_approver_run.yml"]
    assert len(runs) == 1 and "when" in runs[0] and "__kubeadm_init_apply" not in str(runs[0]["when"]), runs
    assert tasks.index(runs[0]) > next(i for i, t in enumerate(tasks) if t["name"].startswith("Wait until the API"))
    assert _units()["service"]["Unit"]["ConditionPathExists"] == ["/etc/kubernetes/admin.conf"]


def test_up_installs_the_approver_and_its_timer_and_a_second_run_changes_nothing(cluster, tmp_path):
    """tasks/serving_approver.yml into a temporary root (systemctl a stand-in): the program, its units and the
    manifest reset reads; the timer enabled and started; the installed program run; then changed=0."""
    root = tmp_path / "root"
    for directory in ("usr/local/sbin", "etc/systemd/system"):
        (root / directory).mkdir(parents=True)
    fake_bin = fake_systemctl(tmp_path / "bin")
    state = tmp_path / "systemd.json"
    program, units = root / "usr/local/sbin" / UNIT, root / "etc/systemd/system"
    extra = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
             "kubeadm_join_serving_approver_path": str(program), "kubeadm_join_serving_approver_unit_dir": str(units),
             "node_manifest_dir": str(root / "var/lib/kubestrap/manifest"),
             "kubeadm_join_kubectl_bin": cluster.kubectl_bin,
             "kubeadm_join_admin_kubeconfig": str(cluster.kubeconfig)}  # fmt: skip

    def play() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ANSIBLE_PLAYBOOK, "-i", "k8s-cp,",
             str(ROOT / "tests" / "playbooks" / "serving_approver.yml"), "-e", json.dumps(extra)],
            capture_output=True, text=True, cwd=ROOT, timeout=300,
            env={**os.environ, "HOME": cluster.home, "ANSIBLE_NOCOLOR": "1", "PATH": f"{fake_bin}:{os.environ['PATH']}",
                 "KUBESTRAP_TEST_SYSTEMD_STATE": str(state)},
        )  # fmt: skip

    done = play()
    assert done.returncode == 0, done.stdout[-4000:]
    assert "TASK [kubeadm_join : Run the serving certificate approver]" in done.stdout
    assert program.read_bytes() == APPROVER.read_bytes() and program.stat().st_mode & 0o777 == 0o755
    for kind in ("service", "timer"):
        assert (units / f"{UNIT}.{kind}").stat().st_mode & 0o777 == 0o644
    assert f"ExecStart={program} --kubectl" in (units / f"{UNIT}.service").read_text()
    manifest = json.loads((root / "var/lib/kubestrap/manifest/kubeadm_join.json").read_text())
    assert set(manifest["installed"]) == {str(program), str(units / f"{UNIT}.service"), str(units / f"{UNIT}.timer")}
    assert json.loads(state.read_text())[f"{UNIT}.timer"] == {"active": True, "enabled": True}
    calls = (tmp_path / "systemd.json.log").read_text().splitlines()
    assert calls.index("daemon-reload") < calls.index(f"enable {UNIT}.timer")

    again = play()
    assert again.returncode == 0, again.stdout[-4000:]
    assert "changed=0" in again.stdout.split("PLAY RECAP")[1], again.stdout[-4000:]
