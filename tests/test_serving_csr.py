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
from helpers import ROOT, fake_systemctl
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


def test_a_request_encoded_as_go_encodes_it_is_read():
    """Go's crypto/x509 writes subject strings as PrintableString (the doubles use UTF8String)."""
    d = double
    name = d.der_seq(*[d.der_set(d.der_seq(d.der_oid(oid), d.der(0x13, value.encode())))
                       for oid, value in ((d.OID_O, "system:nodes"), (d.OID_CN, "system:node:w1"))])  # fmt: skip
    sans = d.der_seq(d.der(0x82, b"w1"), d.der(0x87, bytes([10, 0, 0, 5])))
    attributes = d.der_seq(d.der_oid(d.OID_EXTENSION_REQUEST), d.der_set(d.der_seq(d._ext("2.5.29.17", sans))))
    info = d.der_seq(d.der_int(0), name, KEY.spki(), d.der(0xA0, attributes))
    algorithm = d.der_seq(d.der_oid(d.OID_SHA256_RSA), d.DER_NULL)
    pem = d.pem("CERTIFICATE REQUEST", d.der_seq(info, algorithm, d.der_bits(KEY.sign(info))))
    request = _approver().parse_request(base64.b64encode(pem.encode()).decode())
    assert request == (["system:node:w1"], ["system:nodes"], ["w1"], ["10.0.0.5"], 0)


def _client(cluster, cert_pem: str, key_pem: str):
    admin = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    return double.Client(admin["server"], base64.b64decode(admin["certificate-authority-data"]).decode(),
                         cert_pem=cert_pem, key_pem=key_pem)  # fmt: skip


def _as_the_node(cluster):
    """An API client with the control plane kubelet's own client certificate (system:node:k8s-cp)."""
    pem = cluster.cp.path("/var/lib/kubelet/pki/kubelet-client-current.pem").read_text()
    end = pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    return _client(cluster, pem[:end] + "\n", pem[end:].lstrip())


def _as_a_node_that_does_not_exist(cluster, name: str = "ghost"):
    """A client certificate of the cluster CA for system:node:<name> (in system:nodes), no Node of that name."""
    ca = double.Cert.from_pem(cluster.cp.path("/etc/kubernetes/pki/ca.crt").read_text())
    ca_key = double.RSAKey.from_private_pem(cluster.cp.path("/etc/kubernetes/pki/ca.key").read_text())
    cert = double.make_cert(KEY, f"system:node:{name}", ("system:nodes",), issuer=(ca, ca_key), client=True)
    return _client(cluster, cert.pem(), KEY.private_pem())


def _request(api, name: str, cn: str, dns=(), ips=(), signer="kubernetes.io/kubelet-serving",
             usages=("digital signature", "key encipherment", "server auth")) -> None:  # fmt: skip
    pem = double.make_csr(KEY, cn, ("system:nodes",), dns=dns, ips=ips)
    api.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": double.b64(pem), "signerName": signer, "usages": list(usages)}})  # fmt: skip


def _run_approver(cluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/usr/bin/python3", str(APPROVER), "--kubectl", cluster.kubectl_bin, "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": cluster.home},
    )  # fmt: skip


def _conditions(csr: dict) -> list[str]:
    return [c["type"] for c in csr.get("status", {}).get("conditions") or []]


def test_the_approver_approves_a_nodes_renewal_and_leaves_the_rest_pending_naming_why(cluster):
    assert wait_until(lambda: "k8s-cp" in cluster.nodes(), 60), cluster.cp.logs()
    node = _as_the_node(cluster)
    _request(node, "renewal-k8s-cp", "system:node:k8s-cp", dns=("k8s-cp",), ips=("127.0.0.1",))
    _request(node, "renewal-foreign-ip", "system:node:k8s-cp", dns=("k8s-cp",), ips=("127.0.0.1", "10.9.9.9"))
    _request(node, "renewal-foreign-dns", "system:node:k8s-cp", dns=("k8s-cp", "api.evil.example"), ips=("127.0.0.1",))
    admin = double.Client.from_kubeconfig(str(cluster.kubeconfig))
    _request(admin, "renewal-not-a-node", "system:node:k8s-cp", dns=("k8s-cp",), ips=("127.0.0.1",))
    _request(_as_a_node_that_does_not_exist(cluster), "renewal-ghost", "system:node:ghost", dns=("ghost",))
    _request(node, "client-signer", "system:node:k8s-cp", signer="kubernetes.io/kube-apiserver-client",
             usages=("digital signature", "client auth"))  # fmt: skip

    done = _run_approver(cluster)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert "renewal-k8s-cp" in result["approved"]
    left = result["left_pending"]
    assert left["renewal-foreign-ip"] == "IP addresses ['10.9.9.9'] are not this node's"
    assert left["renewal-foreign-dns"] == "DNS names ['api.evil.example'] are not this node's"
    assert left["renewal-not-a-node"].startswith("requested by kubernetes-admin, not by a node")
    assert left["renewal-ghost"] == "requested by system:node:ghost, but there is no Node ghost"
    assert left["client-signer"] == "signer kubernetes.io/kube-apiserver-client is not kubernetes.io/kubelet-serving"
    for name in left:
        assert f"left pending {name}: " in done.stderr
    assert "approved renewal-k8s-cp (serving certificate of k8s-cp)" in done.stderr

    csrs = _csrs(cluster)
    assert _conditions(csrs["renewal-k8s-cp"]) == ["Approved"]
    assert wait_until(lambda: _csrs(cluster)["renewal-k8s-cp"].get("status", {}).get("certificate"), 30)  # signed
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
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "k8s-cp,",
         str(ROOT / "tests" / "playbooks" / "serving_approver_run.yml"), "-e", json.dumps(extra)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "HOME": cluster.home, "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip


def test_each_up_runs_the_approver_once_changed_only_when_it_approved(cluster):
    """A request an earlier run left pending (or a renewal) is approved by the next `up`: changed=1, then changed=0."""
    assert wait_until(lambda: "k8s-cp" in cluster.nodes(), 60), cluster.cp.logs()
    _request(_as_the_node(cluster), "renewal-up", "system:node:k8s-cp", dns=("k8s-cp",), ips=("127.0.0.1",))
    done = _run_once_play(cluster)
    assert done.returncode == 0 and "changed=1" in done.stdout, done.stdout[-3000:]
    assert _conditions(_csrs(cluster)["renewal-up"]) == ["Approved"]
    again = _run_once_play(cluster)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]


# --- the timer and service the first control plane gets -----------------------------------------------------


def _units() -> dict[str, dict[str, dict[str, list[str]]]]:
    """The role's unit templates rendered with its defaults: {unit: {section: {key: [values]}}}."""
    import jinja2

    values = {**yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()), "ansible_managed": "managed"}
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
    install = next(t for t in tasks if "ansible.builtin.copy" in t)["ansible.builtin.copy"]
    assert install["src"] == APPROVER.name and install["dest"] == "{{ kubeadm_join_serving_approver_path }}"
    assert (install["owner"], install["mode"]) == ("root", "0755")
    assert os.access(APPROVER, os.X_OK) and APPROVER.read_text().startswith("#!/usr/bin/python3\n")
    record = next(t for t in tasks if t.get("ansible.builtin.include_role", {}).get("name") == "node_manifest")
    assert tasks.index(record) == 0, "what it installs is recorded before it is installed (reset removes it)"
    unit_dir = "{{ kubeadm_join_serving_approver_unit_dir }}"
    assert set(record["vars"]["node_manifest_paths"]) == {
        "{{ kubeadm_join_serving_approver_path }}", f"{unit_dir}/{UNIT}.service", f"{unit_dir}/{UNIT}.timer"}
    assert defaults["kubeadm_join_serving_approver_unit_dir"] == "/etc/systemd/system"


def test_the_first_control_plane_gets_the_approver_each_up():
    tasks = yaml.safe_load((ROOT / "roles" / "kubeadm_init" / "tasks" / "main.yml").read_text())
    included = [t["ansible.builtin.include_role"] for t in tasks if "ansible.builtin.include_role" in t]
    assert any(i["name"] == "kubeadm_join" and i["tasks_from"] == "serving_approver.yml" for i in included), included


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
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "k8s-cp,",
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
