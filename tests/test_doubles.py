"""The kubeadm / kubelet / kube-apiserver contract doubles (tests/doubles/kubeadm), end to end on this
machine: a control-plane "node" and worker "nodes" (tests/k8s_double_cluster.py) bootstrapped with the
configs kubestrap's roles render, driven with REAL kubectl 1.36. This module's cluster is its own: the
tests join and reset nodes. tests/test_apiserver_double.py tests the API server on the shared one.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess

import pytest
import yaml
from helpers import wait_until
from k8s_double_cluster import DOUBLES, Cluster, Node, dump, find_kubectl, free_port, render, started
from models import kubeadm_v1beta4 as model

double = model.double


@pytest.fixture(scope="module")
def kubectl() -> str:
    return find_kubectl()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, kubectl):
    with started(tmp_path_factory.mktemp("cluster"), kubectl) as cluster:
        yield cluster


def token_and_hash(cluster: Cluster, *extra: str) -> tuple[str, str, str]:
    done = cluster.cp.kubeadm("token", "create", "--ttl", "15m", "--print-join-command", *extra)
    assert done.returncode == 0, done.stderr
    token = re.search(r"--token\s+(\S+)", done.stdout).group(1)
    ca_hash = re.search(r"--discovery-token-ca-cert-hash\s+(\S+)", done.stdout).group(1)
    return token, ca_hash, done.stdout


# --- pure parts ------------------------------------------------------------------------------------


def test_version_outputs_are_unchanged():
    run = lambda *a: subprocess.run([str(DOUBLES / a[0]), *a[1:]], capture_output=True, text=True)  # noqa: E731
    assert run("kubeadm", "version", "-o", "short").stdout == "v1.36.4\n"
    assert run("kubelet", "--version").stdout == "Kubernetes v1.36.4\n"
    assert json.loads(run("kubeadm", "version", "-o", "json").stdout)["clientVersion"]["gitVersion"] == "v1.36.4"
    assert 'GitVersion:"v1.36.4"' in run("kubeadm", "version").stdout
    bad = run("kubeadm", "version", "--bogus")
    assert bad.returncode == 1 and "unknown flag: --bogus" in bad.stderr
    assert run("kubeadm", "frobnicate").returncode == 1


def test_yaml_subset_matches_pyyaml_on_every_rendered_file(tmp_path):
    files = render(tmp_path / "r", 6443)
    for name in files:
        text = (tmp_path / "r" / name).read_text()
        assert double.yaml_load_all(text) == list(yaml.safe_load_all(text)), name
    sample = {"a": [1, "x: y", {"b": None, "c": ["", "true", True]}], "d": {}, "e": "#not-a-comment", "f": "0755"}
    assert yaml.safe_load(double.yaml_dump(sample)) == sample
    assert double.yaml_load(double.yaml_dump(sample)) == sample
    for text in ("{}\n", "[]\n", "{a: [1, x]}\n", "null\n"):  # one-line documents (to_nice_yaml of {})
        assert double.yaml_load(text) == yaml.safe_load(text), text
    with pytest.raises(double.YAMLError, match="duplicate key"):
        double.yaml_load("a: 1\na: 2\n")
    with pytest.raises(double.YAMLError, match="unsupported"):
        double.yaml_load("a: &anchor 1\n")


def test_certificates_verify_with_openssl_semantics(tmp_path):
    keys = double.generate_keys(2)
    ca = double.make_cert(keys[0], "kubernetes", ca=True)
    leaf = double.make_cert(keys[1], "kube-apiserver", issuer=(ca, keys[0]), server=True, dns=("kubernetes",), ips=("10.96.0.1",))
    assert ca.is_ca and not leaf.is_ca
    assert double.verify_signed_by(leaf, ca)
    assert not double.verify_signed_by(leaf, double.make_cert(keys[1], "other", ca=True))
    assert leaf.dns_names == ["kubernetes"] and leaf.ips == ["10.96.0.1"]
    import ssl

    ctx = ssl.create_default_context(cadata=ca.pem())  # the stdlib (OpenSSL) accepts the chain
    (tmp_path / "k.pem").write_text(leaf.pem() + keys[1].private_pem())
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(tmp_path / "k.pem"))
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    subject, key = double.parse_csr(double.make_csr(keys[1], "system:node:x", ("system:nodes",)))
    assert subject == {"O": ["system:nodes"], "CN": ["system:node:x"]} and key.n == keys[1].n


# --- refusals before anything is written -----------------------------------------------------------


@pytest.fixture(scope="module")
def rendered_once(tmp_path_factory) -> dict[str, list]:
    return render(tmp_path_factory.mktemp("rendered"), free_port())


@pytest.fixture
def bare_node(tmp_path):
    node = Node(tmp_path, "k8s-cp")
    yield node
    node.stop()


def _write_config(node: Node, docs: list) -> str:
    path = node.path("/etc/kubernetes/kubestrap/kubeadm-config.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump(docs))
    return "/etc/kubernetes/kubestrap/kubeadm-config.yaml"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d[0].update(nodeRegistation={}), 'unknown field "nodeRegistation"'),
        (lambda d: d[1].update(apiVersion="kubeadm.k8s.io/v1beta3"), "no longer supported"),
        (lambda d: d[1]["apiServer"].update(extraArgs={"audit-log-path": "/x"}), "expected a list"),
        (lambda d: d[2].update(cgroupDriver="systemd-cgroup"), "unsupported value"),
        (lambda d: d[1].update(kubernetesVersion="v1.30.0"), "control plane version >= 1.35.0"),
        (lambda d: d[0]["localAPIEndpoint"].update(advertiseAddress="not-an-ip"), "must be a valid IP address"),
    ],
)
def test_init_refuses_a_bad_config_and_writes_nothing(rendered_once, bare_node, mutate, message):
    docs = copy.deepcopy(rendered_once["k8s-cp-kubeadm-config.yaml"])
    mutate(docs)
    done = bare_node.kubeadm("init", "--config", _write_config(bare_node, docs))
    assert done.returncode == 1
    assert message in done.stderr
    assert not bare_node.path("/etc/kubernetes/pki").exists()
    assert not bare_node.path("/etc/kubernetes/admin.conf").exists()


def test_init_refuses_unknown_flags_and_missing_config(bare_node):
    done = bare_node.kubeadm("init", "--confg", "/x")
    assert done.returncode == 1 and "unknown flag: --confg" in done.stderr
    done = bare_node.kubeadm("init", "--config", "/nope.yaml")
    assert done.returncode == 1 and 'unable to read config from "/nope.yaml"' in done.stderr


def test_init_preflight_refuses_like_kubeadm(rendered_once, bare_node):
    docs = copy.deepcopy(rendered_once["k8s-cp-kubeadm-config.yaml"])
    bare_node.path("/proc/sys/net/ipv4/ip_forward").write_text("0\n")
    bare_node.cri.close()
    bare_node.path("/run/containerd/containerd.sock").unlink()
    manifests = bare_node.path("/etc/kubernetes/manifests")
    manifests.mkdir(parents=True)
    (manifests / "kube-apiserver.yaml").write_text("{}\n")
    done = bare_node.kubeadm("init", "--config", _write_config(bare_node, docs))
    assert done.returncode == 1
    assert "[preflight] Some fatal errors occurred" in done.stderr
    assert "[ERROR FileContent--proc-sys-net-ipv4-ip_forward]" in done.stderr
    assert "[ERROR CRI]" in done.stderr and "no such file or directory" in done.stderr
    assert "[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]" in done.stderr
    assert not bare_node.path("/etc/kubernetes/pki").exists()


def test_kubelet_refuses_to_start_without_its_config(bare_node):
    done = subprocess.run([str(bare_node.bin / "kubelet"), "--config=/var/lib/kubelet/config.yaml",
                           "--kubeconfig=/etc/kubernetes/kubelet.conf"],
                          capture_output=True, text=True, env=bare_node.env())  # fmt: skip
    assert done.returncode == 1
    assert "failed to load kubelet config file" in done.stderr and "no such file or directory" in done.stderr
    removed = subprocess.run([str(bare_node.bin / "kubelet"), "--pod-infra-container-image=registry.k8s.io/pause:3.10"],
                             capture_output=True, text=True, env=bare_node.env())  # fmt: skip
    assert removed.returncode == 1 and "unknown flag: --pod-infra-container-image" in removed.stderr


def test_kubelet_refuses_swap_and_a_dead_runtime(bare_node):
    config = bare_node.path("/var/lib/kubelet/config.yaml")
    config.parent.mkdir(parents=True)
    config.write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"
                      "containerRuntimeEndpoint: unix:///run/containerd/containerd.sock\nhealthzPort: 0\n")  # fmt: skip
    bare_node.path("/proc/swaps").write_text("Filename Type Size Used Priority\n/swapfile file 1024 0 -2\n")
    run = lambda: subprocess.run([str(bare_node.bin / "kubelet"), "--config=/var/lib/kubelet/config.yaml"],  # noqa: E731
                                 capture_output=True, text=True, env=bare_node.env(), timeout=30)  # fmt: skip
    done = run()
    assert done.returncode == 1 and "running with swap on is not supported" in done.stderr
    bare_node.path("/proc/swaps").write_text("Filename Type Size Used Priority\n")
    bare_node.cri.close()
    bare_node.path("/run/containerd/containerd.sock").unlink()
    done = run()
    assert done.returncode == 1 and "validate CRI v1 runtime API" in done.stderr


# --- a cluster: init, kubectl, token, join, reset ---------------------------------------------------


def test_init_writes_what_kubeadm_writes(cluster):
    cp = cluster.cp
    out = cluster.init.stdout
    assert "Your Kubernetes control-plane has initialized successfully!" in out
    for name in model.double.PKI_FILES:
        assert cp.path(f"/etc/kubernetes/pki/{name}").is_file(), name
    for name in ("admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf"):
        conf = yaml.safe_load(cp.path(f"/etc/kubernetes/{name}").read_text())
        assert conf["kind"] == "Config" and conf["clusters"][0]["cluster"]["server"].startswith("https://")
        assert oct(cp.path(f"/etc/kubernetes/{name}").stat().st_mode & 0o777) == "0o600"
    admin = yaml.safe_load(cp.path("/etc/kubernetes/admin.conf").read_text())
    assert admin["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{cluster.port}"
    cert = double.Cert.from_pem(base64.b64decode(admin["users"][0]["user"]["client-certificate-data"]))
    assert cert.subject == {"O": ["kubeadm:cluster-admins"], "CN": ["kubernetes-admin"]}
    api = double.Cert.from_pem(cp.path("/etc/kubernetes/pki/apiserver.crt").read_text())
    assert "k8s-cp" in api.dns_names and "127.0.0.1" in api.ips and "10.96.0.1" in api.ips
    apiserver = yaml.safe_load(cp.path("/etc/kubernetes/manifests/kube-apiserver.yaml").read_text())
    command = apiserver["spec"]["containers"][0]["command"]
    assert "--encryption-provider-config=/etc/kubernetes/encryption/config.yaml" in command
    assert "--audit-policy-file=/etc/kubernetes/audit/policy.yaml" in command
    assert {"name": "audit-log", "hostPath": {"path": "/var/log/kubernetes/audit", "type": "DirectoryOrCreate"}} in apiserver[
        "spec"
    ]["volumes"]
    etcd = yaml.safe_load(cp.path("/etc/kubernetes/manifests/etcd.yaml").read_text())
    assert "--listen-metrics-urls=http://127.0.0.1:2381" in etcd["spec"]["containers"][0]["command"]
    assert "--admission-control-config-file=/etc/kubernetes/admission/config.yaml" in command
    assert "--profiling=false" in command
    flags = cp.path("/var/lib/kubelet/kubeadm-flags.env").read_text()
    assert flags == 'KUBELET_KUBEADM_ARGS="--hostname-override=k8s-cp --node-ip=127.0.0.1"\n'
    kubelet = yaml.safe_load(cp.path("/var/lib/kubelet/config.yaml").read_text())
    assert kubelet["cgroupDriver"] == "systemd"
    assert kubelet["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"
    assert cp.path("/var/lib/kubelet/pki/kubelet-client-current.pem").exists()
    assert "restart kubelet" in cp.path("/var/log/systemctl.calls").read_text()
    join = re.search(r"kubeadm join 127\.0\.0\.1:\d+ --token (\S+) \\\n\t--discovery-token-ca-cert-hash (sha256:\w+)", out)
    assert join, out
    ca = double.Cert.from_pem(cp.path("/etc/kubernetes/pki/ca.crt").read_text())
    assert join.group(2) == ca.spki_sha256()


def test_real_kubectl_talks_to_the_apiserver(cluster):
    assert cluster.kubectl("get", "--raw=/readyz").stdout == "ok"
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.36.4"
    node = wait_until(lambda: cluster.nodes().get("k8s-cp"))
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.4"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "k8s-cp" and labels["kubernetes.io/os"] == "linux"
    assert "node-role.kubernetes.io/control-plane" in labels
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in node["spec"]["taints"]
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and "NetworkPluginNotReady" in ready["message"]
    table = cluster.kubectl("get", "nodes").stdout
    assert re.search(r"^k8s-cp\s+NotReady\s+control-plane\s+\S+\s+v1\.36\.4$", table, re.M), table
    missing = cluster.kubectl("get", "node", "nope", check=False)
    assert missing.returncode == 1
    assert 'Error from server (NotFound): nodes "nope" not found' in missing.stderr
    assert cluster.kubectl("get", "node", "k8s-cp", "-o", "name").stdout == "node/k8s-cp\n"
    assert cluster.kubectl("get", "pods", "-A", "-o", "json").stdout.count('"items": []') == 1
    config = json.loads(cluster.kubectl("-n", "kube-system", "get", "configmap", "kubeadm-config", "-o", "json").stdout)
    assert yaml.safe_load(config["data"]["ClusterConfiguration"])["clusterName"] == "homelab"


def test_node_turns_ready_once_a_cni_config_exists(cluster):
    cni = cluster.cp.path("/etc/cni/net.d")
    cni.mkdir(parents=True, exist_ok=True)
    (cni / "05-test.conflist").write_text('{"cniVersion": "1.0.0", "name": "test", "plugins": []}\n')

    def ready() -> bool:
        node = cluster.nodes()["k8s-cp"]
        return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"

    assert wait_until(ready, 30), cluster.cp.logs()
    assert re.search(r"^k8s-cp\s+Ready\s", cluster.kubectl("get", "nodes").stdout, re.M)


def test_anonymous_and_unknown_clients_get_real_errors(cluster, kubectl):
    import ssl
    import urllib.error
    import urllib.request

    server = f"https://127.0.0.1:{cluster.port}"
    insecure = ssl._create_unverified_context()
    with urllib.request.urlopen(f"{server}/readyz", context=insecure) as resp:  # public health endpoint
        assert resp.read() == b"ok"
    for path, message in (("/api/v1/nodes", 'nodes is forbidden: User "system:anonymous" cannot list resource "nodes" '
                                             'in API group "" at the cluster scope'),
                          ("/api", 'forbidden: User "system:anonymous" cannot get path "/api"')):  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{server}{path}", context=insecure)
        status = json.loads(err.value.read())
        assert (err.value.code, status["kind"], status["reason"], status["message"]) == (403, "Status", "Forbidden", message)
    with urllib.request.urlopen(f"{server}/api/v1/namespaces/kube-public/configmaps/cluster-info", context=insecure) as resp:
        info = json.loads(resp.read())
    assert "kubeconfig" in info["data"] and any(k.startswith("jws-kubeconfig-") for k in info["data"])
    done = subprocess.run([kubectl, "--server", server, "--insecure-skip-tls-verify", "--token", "abcdef.0123456789abcdef",
                           "get", "nodes"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "HOME": str(cluster.base / "anon")})  # fmt: skip
    assert done.returncode == 1 and "error: You must be logged in to the server" in done.stderr


def test_token_create_list_delete(cluster):
    token, _, out = token_and_hash(cluster, "--description", "for the test")
    assert out.startswith(f"kubeadm join 127.0.0.1:{cluster.port} --token {token} --discovery-token-ca-cert-hash sha256:")
    listed = cluster.cp.kubeadm("token", "list")
    assert listed.returncode == 0
    line = next(line for line in listed.stdout.splitlines() if line.startswith(token))
    assert re.search(r"\s1[45]m\s", line) and "authentication,signing" in line and "for the test" in line
    secret = json.loads(
        cluster.kubectl("-n", "kube-system", "get", "secret", f"bootstrap-token-{token[:6]}", "-o", "json").stdout
    )
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    assert base64.b64decode(secret["data"]["auth-extra-groups"]).decode() == "system:bootstrappers:kubeadm:default-node-token"
    deleted = cluster.cp.kubeadm("token", "delete", token)
    assert deleted.returncode == 0 and f'bootstrap token "{token[:6]}" deleted' in deleted.stdout
    assert token not in cluster.cp.kubeadm("token", "list").stdout
    bad = cluster.cp.kubeadm("token", "create", "--ttl", "15 minutes")
    assert bad.returncode == 1 and "invalid argument" in bad.stderr


def _worker(cluster: Cluster, name: str) -> Node:
    node = Node(cluster.base, name)
    cluster.workers.append(node)
    return node


def test_join_with_a_wrong_token_fails_and_changes_nothing(cluster):
    token, ca_hash, _ = token_and_hash(cluster)
    before = sorted(cluster.nodes())
    node = _worker(cluster, "k8s-worker2")
    wrong_id = "zzzzzz.0123456789abcdef"
    done = node.kubeadm(
        "join", "--config", str(cluster.join_config(node, wrong_id, ca_hash, free_port())).replace(str(node.root), "")
    )
    assert done.returncode == 1
    assert (
        'couldn\'t validate the identity of the API Server: token id "zzzzzz" is invalid for this cluster or it has expired'
        in done.stderr
    )
    wrong_secret = token[:7] + "0000000000000000"
    done = node.kubeadm(
        "join", "--config", str(cluster.join_config(node, wrong_secret, ca_hash, free_port())).replace(str(node.root), "")
    )
    assert done.returncode == 1 and "failed to verify JWS signature" in done.stderr
    wrong_hash = "sha256:" + "1" * 64
    done = node.kubeadm(
        "join", "--config", str(cluster.join_config(node, token, wrong_hash, free_port())).replace(str(node.root), "")
    )
    assert done.returncode == 1 and "none of the public keys" in done.stderr and "are pinned" in done.stderr
    assert not node.path("/etc/kubernetes/kubelet.conf").exists()
    assert not node.path("/var/lib/kubelet/config.yaml").exists()
    assert sorted(cluster.nodes()) == before


def test_join_refuses_a_config_without_discovery(cluster):
    node = _worker(cluster, "k8s-worker3")
    path = node.path("/etc/kubernetes/kubestrap/kubeadm-join.yaml")
    path.parent.mkdir(parents=True)
    docs = cluster.files["k8s-worker3-kubeadm-join.yaml"]
    docs[0].pop("discovery")
    path.write_text(dump(docs))
    done = node.kubeadm("join", "--config", "/etc/kubernetes/kubestrap/kubeadm-join.yaml")
    assert done.returncode == 1 and "JoinConfiguration.discovery: required" in done.stderr


def test_worker_joins_with_a_fresh_token(cluster):
    token, ca_hash, _ = token_and_hash(cluster)
    node = _worker(cluster, "k8s-worker1")
    config = cluster.join_config(node, token, ca_hash, free_port())
    done = node.kubeadm("join", "--config", "/" + str(config.relative_to(node.root)))
    assert done.returncode == 0, done.stdout + done.stderr + node.logs()
    assert "This node has joined the cluster" in done.stdout
    kubelet_conf = yaml.safe_load(node.path("/etc/kubernetes/kubelet.conf").read_text())
    assert kubelet_conf["users"][0]["user"]["client-certificate"] == "/var/lib/kubelet/pki/kubelet-client-current.pem"
    assert not node.path("/etc/kubernetes/bootstrap-kubelet.conf").exists()
    assert double.Cert.from_pem(node.path("/etc/kubernetes/pki/ca.crt").read_text()).spki_sha256() == ca_hash
    pem = node.path("/var/lib/kubelet/pki/kubelet-client-current.pem").read_text()
    assert double.Cert.from_pem(pem).subject == {"O": ["system:nodes"], "CN": ["system:node:k8s-worker1"]}
    # what roles/kubeadm_join waits for on the control plane
    got = wait_until(lambda: cluster.kubectl("get", "node", "k8s-worker1", "-o", "name", check=False).returncode == 0, 60)
    assert got, node.logs()
    worker = cluster.nodes()["k8s-worker1"]
    assert "node-role.kubernetes.io/control-plane" not in worker["metadata"]["labels"]
    csrs = json.loads(cluster.kubectl("get", "csr", "-o", "json").stdout)["items"]
    assert any(c["spec"]["username"] == f"system:bootstrap:{token[:6]}" and c["status"].get("certificate") for c in csrs)
    again = node.kubeadm(
        "join", "--config", "/" + str(cluster.join_config(node, token, ca_hash, free_port()).relative_to(node.root))
    )
    assert again.returncode == 1 and "[ERROR FileAvailable--etc-kubernetes-kubelet.conf]" in again.stderr


def test_drain_and_delete_node_like_the_reset_playbook(cluster):
    assert wait_until(lambda: "k8s-worker1" in cluster.nodes(), 60)
    drained = cluster.kubectl("drain", "k8s-worker1", "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=60s")
    assert "node/k8s-worker1 cordoned" in drained.stdout and "node/k8s-worker1 drained" in drained.stdout
    assert cluster.nodes()["k8s-worker1"]["spec"]["unschedulable"] is True
    assert "SchedulingDisabled" in cluster.kubectl("get", "node", "k8s-worker1").stdout
    cluster.kubectl("uncordon", "k8s-worker1")
    assert "unschedulable" not in cluster.nodes()["k8s-worker1"]["spec"]
    worker = next(w for w in cluster.workers if w.name == "k8s-worker1")
    reset = worker.kubeadm("reset", "--force")
    assert reset.returncode == 0, reset.stderr
    deleted = cluster.kubectl("delete", "node", "k8s-worker1")
    assert 'node "k8s-worker1" deleted' in deleted.stdout
    assert "k8s-worker1" not in cluster.nodes()
    assert not worker.path("/etc/kubernetes/kubelet.conf").exists()
    assert not any(worker.path("/var/lib/kubelet").iterdir())


def test_reset_asks_then_removes_what_init_wrote(cluster):
    cp = cluster.cp
    refused = cp.kubeadm("reset", stdin="n\n")
    assert refused.returncode == 1 and "won't proceed" in refused.stderr
    assert cp.path("/etc/kubernetes/admin.conf").exists()
    done = cp.kubeadm("reset", stdin="y\n")
    assert done.returncode == 0, done.stderr
    assert cp.kubelet_pid() is None
    for path in ("/etc/kubernetes/admin.conf", "/etc/kubernetes/super-admin.conf", "/etc/kubernetes/kubelet.conf",
                 "/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/manifests/kube-apiserver.yaml",
                 "/var/lib/kubelet/config.yaml"):  # fmt: skip
        assert not cp.path(path).exists(), path
    assert not any(cp.path("/var/lib/etcd").iterdir())
    assert cp.path("/etc/kubernetes/encryption/config.yaml").exists()  # not kubeadm's: kept, as the real reset does
    gone = cluster.kubectl("get", "--raw=/readyz", check=False)
    assert gone.returncode != 0
