"""Validation of the rendered cluster-formation files: the kubeadm configurations (init and join) by REAL
kubeadm v1.36.3 (`kubeadm config validate`, built from its Go module by kubestrap/lab/sources/build.py), for the
defaults and for a maximal set of settings, and a misspelt field or a wrong value refused by it; what REAL
`kubeadm init --dry-run` writes from them (the static pods' flags and mounts, the kubelet's files, the
kubeconfigs, the serving certificate); the KubeletConfiguration values kubeadm passes through unjudged against
the strict model of tests/models/kubelet_configuration.py; the CIS items one by one. The files kubeadm does not
read (encryption, audit, admission) are run by the real kube-apiserver: tests/test_apiserver_config_files.py."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import CORPUS, ROOT, render_configs
from k8s_real import upstream_dir
from models import kubelet_configuration as model

INVENTORIES = {"homelab": ROOT / "inventories" / "homelab", "corpus-base": CORPUS / "base"}


def render(inventory: Path, dest: Path, *extra: str) -> dict[str, list]:
    return render_configs(dest, *extra, inventory=inventory)


@pytest.fixture(scope="module", params=sorted(INVENTORIES))
def rendered(request, tmp_path_factory):
    dest = tmp_path_factory.mktemp(request.param)
    return request.param, render(INVENTORIES[request.param], dest), dest


# Every setting of the templates away from its default (the homelab inventory's nodes).
MAXIMAL = {
    "cluster_name": "lab-two", "cluster_api_endpoint": "k8s-api.home.arpa", "cluster_api_port": 8443,
    "cluster_pod_cidr": "10.128.0.0/14", "cluster_service_cidr": "10.112.0.0/16", "cluster_dns_domain": "lab.internal",
    "kubeadm_init_cert_sans": ["k8s-api.lab.internal", "192.168.1.250"], # Cilium off (bring your own CNI): kube-proxy runs
    "addons_enabled": {"cilium": False},
    "kubeadm_init_cri_socket": "unix:///var/run/containerd/containerd.sock",
    "kubeadm_init_encryption_provider": "aescbc",
    "kubeadm_init_encryption_config_path": "/etc/kubernetes/secrets-at-rest/config.yaml",
    "kubeadm_init_audit_log_maxage_days": 90, "kubeadm_init_audit_log_maxbackup": 3,
    "kubeadm_init_audit_log_maxsize_mb": 250, "kubeadm_init_profiling": True,
    "kubeadm_init_controller_manager_bind_address": "0.0.0.0", "kubeadm_init_scheduler_bind_address": "0.0.0.0",
    "kubeadm_init_etcd_metrics_url": "http://127.0.0.1:2381,http://192.168.1.10:2381",
    "kubeadm_init_tls_cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
    "kubeadm_init_kubelet_protect_kernel_defaults": False, "kubeadm_init_kubelet_server_tls_bootstrap": False,
    "kubeadm_init_kubelet_seccomp_default": False, "kubeadm_init_kubelet_pod_pids_limit": 32768,
    "kubeadm_init_bootstrap_token_ttl": "1h30m",
    "kubeadm_init_control_plane_timeout": "15m0s", "kubeadm_init_api_call_timeout": "5m0s",
    "kubeadm_join_cri_socket": "unix:///var/run/containerd/containerd.sock",
    "kubeadm_init_key_algorithm": "ECDSA-P256",
    "kubeadm_join_discovery_timeout": "12m0s", "kubeadm_join_tls_bootstrap_timeout": "13m0s",
    # a flag of kubestrap's replaced, one added; patches of two static pods and the kubelet configuration
    "kubeadm_init_extra_args": {"controllerManager": {"leader-elect-lease-duration": "120s", "profiling": "false"},
                                "etcd": {"heartbeat-interval": "250"}},
    "kubeadm_init_patches": {
        "kube-apiserver": {"spec": {"containers": [{"name": "kube-apiserver",
                                                    "livenessProbe": {"failureThreshold": 60, "timeoutSeconds": 30}}]}},
        "etcd": {"spec": {"containers": [{"name": "etcd", "livenessProbe": {"failureThreshold": 61}}]}},
        "kubeletconfiguration": {"maxPods": 50}},
}  # fmt: skip


@pytest.fixture(scope="module")
def rendered_max(tmp_path_factory):
    dest = tmp_path_factory.mktemp("maximal")
    extra = dest.parent / "maximal-settings.json"
    # the patches are written where kubeadm init (--dry-run below) reads them
    extra.write_text(json.dumps({**MAXIMAL, "kubeadm_init_config_dir": str(dest.parent / "maximal-kubestrap")}))
    return render(INVENTORIES["homelab"], dest, "-e", f"@{extra}"), dest


@pytest.fixture(scope="module")
def kubeadm() -> str:
    return str(upstream_dir("kubernetes") / "kubeadm")


def _validate(kubeadm: str, path: Path) -> subprocess.CompletedProcess[str]:
    """REAL kubeadm's judgement of a configuration file: strict decoding (unknown and duplicate fields, types,
    durations) of every document, kubeadm's and the KubeletConfiguration, then kubeadm's validation."""
    return subprocess.run([kubeadm, "config", "validate", "--config", str(path)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def _kubeadm_files(dest: Path) -> list[Path]:
    files = sorted(dest.glob("*-kubeadm-config.yaml")) + sorted(dest.glob("*-kubeadm-join.yaml"))
    assert [p.name for p in files] == ["k8s-cp-kubeadm-config.yaml", "k8s-worker1-kubeadm-join.yaml",
                                       "k8s-worker2-kubeadm-join.yaml", "k8s-worker3-kubeadm-join.yaml"]  # fmt: skip
    return files


def _doc(docs: list, kind: str) -> dict:
    return next(d for d in docs if d and d.get("kind") == kind)


def test_real_kubeadm_accepts_every_rendered_kubeadm_file(rendered, kubeadm):
    _, _, dest = rendered
    for path in _kubeadm_files(dest):
        done = _validate(kubeadm, path)
        assert (done.returncode, done.stdout.strip()) == (0, "ok"), f"{path.name}: {done.stderr}"


def test_real_kubeadm_accepts_the_files_rendered_with_every_setting_changed(rendered_max, kubeadm):
    files, dest = rendered_max
    for path in _kubeadm_files(dest):
        done = _validate(kubeadm, path)
        assert (done.returncode, done.stdout.strip()) == (0, "ok"), f"{path.name}: {done.stderr}"
    # the settings took effect (a render that ignored them would prove nothing)
    docs = files["k8s-cp-kubeadm-config.yaml"]
    init, cluster, kubelet = (_doc(docs, k) for k in ("InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"))
    assert "skipPhases" not in init and init["bootstrapTokens"][0]["ttl"] == "1h30m"
    assert "proxy" not in cluster  # kube-proxy runs (Cilium is off): no proxy.disabled either
    assert init["timeouts"]["controlPlaneComponentHealthCheck"] == "15m0s"
    assert init["timeouts"]["kubernetesAPICall"] == "5m0s"
    assert init["localAPIEndpoint"] == {"advertiseAddress": "192.168.1.10", "bindPort": 8443}
    assert cluster["clusterName"] == "lab-two" and cluster["controlPlaneEndpoint"] == "k8s-api.home.arpa:8443"
    assert cluster["networking"] == {"podSubnet": "10.128.0.0/14", "serviceSubnet": "10.112.0.0/16",
                                     "dnsDomain": "lab.internal"}  # fmt: skip
    assert cluster["apiServer"]["certSANs"] == ["k8s-api.home.arpa", "192.168.1.10", "k8s-cp", "k8s-api.lab.internal",
                                                "192.168.1.250"]  # fmt: skip
    assert {"name": "profiling", "value": "true"} in cluster["scheduler"]["extraArgs"]
    assert kubelet["podPidsLimit"] == 32768 and kubelet["serverTLSBootstrap"] is False
    join = files["k8s-worker1-kubeadm-join.yaml"][0]
    assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "k8s-api.home.arpa:8443"
    assert join["nodeRegistration"]["criSocket"] == "unix:///var/run/containerd/containerd.sock"


# (file, text in it, replacement, what real kubeadm says): a misspelt field or a wrong value in the rendered files.
REFUSED = {
    "misspelt InitConfiguration field": ("k8s-cp-kubeadm-config.yaml", "\nnodeRegistration:", "\nnodeRegistation:",
                                         'unknown field "nodeRegistation"'),
    "misspelt ClusterConfiguration field": ("k8s-cp-kubeadm-config.yaml", "podSubnet:", "podCIDR:",
                                            'unknown field "networking.podCIDR"'),
    "misspelt KubeletConfiguration field": ("k8s-cp-kubeadm-config.yaml", "seccompDefault:", "seccompDefaults:",
                                            'unknown field "seccompDefaults"'),
    "misspelt JoinConfiguration field": ("k8s-worker1-kubeadm-join.yaml", "caCertHashes:", "caCertHash:",
                                         'unknown field "discovery.bootstrapToken.caCertHash"'),
    "a field given twice": ("k8s-cp-kubeadm-config.yaml", "cgroupDriver: systemd\n",
                            "cgroupDriver: systemd\ncgroupDriver: cgroupfs\n", 'key "cgroupDriver" already set'),
    "an API version kubeadm 1.36 removed": ("k8s-cp-kubeadm-config.yaml",
                                            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration",
                                            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration",
                                            'old API spec: "kubeadm.k8s.io/v1beta2"'),
    "extraArgs as a map (v1beta3's shape)": ("k8s-cp-kubeadm-config.yaml",
                                             "extraArgs:\n    - name: bind-address\n      value: \"127.0.0.1\"\n"
                                             "    - name: profiling\n      value: \"false\"\nscheduler:",
                                             "extraArgs: {bind-address: 127.0.0.1}\nscheduler:",
                                             "cannot unmarshal object into Go struct field"),
    "a duration that is not one": ("k8s-cp-kubeadm-config.yaml", "kubeletHealthCheck: 4m0s",
                                   "kubeletHealthCheck: 4 minutes", 'unknown unit " minutes"'),
    "a join timeout that is not a duration": ("k8s-worker1-kubeadm-join.yaml", "discovery: 5m0s",
                                              "discovery: five minutes", "invalid duration"),
    "a string for an integer": ("k8s-cp-kubeadm-config.yaml", "podPidsLimit: 4096", "podPidsLimit: many",
                                "KubeletConfiguration.podPidsLimit of type int64"),
    "a string for a boolean": ("k8s-cp-kubeadm-config.yaml", "protectKernelDefaults: true",
                               "protectKernelDefaults: enforced", "protectKernelDefaults of type bool"),
    "a subnet that is not one": ("k8s-cp-kubeadm-config.yaml", "podSubnet: 10.244.0.0/16", "podSubnet: 10.244.0.0/33",
                                 "networking.podSubnet: Invalid value"),
    "a port out of range": ("k8s-cp-kubeadm-config.yaml", "bindPort: 6443", "bindPort: 70000",
                            "localAPIEndpoint.bindPort: Invalid value: 70000"),
    "an advertise address that is not an address": ("k8s-cp-kubeadm-config.yaml", 'advertiseAddress: "192.168.1.10"',
                                                    'advertiseAddress: "192.168.1.300"', "must be ipv4 or ipv6 address"),
    "a DNS domain that is not one": ("k8s-cp-kubeadm-config.yaml", "dnsDomain: cluster.local", "dnsDomain: Cluster_Local",
                                     "networking.dnsDomain: Invalid value"),
    "a join token of the wrong shape": ("k8s-worker1-kubeadm-join.yaml", '"abcdef.0123456789abcdef"', '"abcdef-0123"',
                                        "the bootstrap token is invalid"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_real_kubeadm_refuses_a_misspelt_field_or_a_wrong_value(rendered, kubeadm, tmp_path, case):
    _, _, dest = rendered
    name, old, new, message = REFUSED[case]
    text = (dest / name).read_text()
    assert text.count(old) == 1, f"{case}: {old!r} is not once in the rendered {name}"
    changed = tmp_path / name
    changed.write_text(text.replace(old, new))
    done = _validate(kubeadm, changed)
    assert done.returncode != 0 and message in done.stderr, f"{case}: rc={done.returncode} {done.stdout}{done.stderr}"


def test_real_kubeadm_refuses_a_join_configuration_without_discovery(rendered, kubeadm, tmp_path):
    _, files, _ = rendered
    (join,) = files["k8s-worker1-kubeadm-join.yaml"]
    assert "discovery" in join
    without = tmp_path / "join-without-discovery.yaml"
    without.write_text(yaml.safe_dump({k: v for k, v in join.items() if k != "discovery"}))
    done = _validate(kubeadm, without)
    assert done.returncode != 0 and "bootstrapToken or file must be set" in done.stderr, done.stdout + done.stderr


# --- what REAL kubeadm init writes from the rendered configuration -----------------------------------


def _init_dry_run(kubeadm: str, config: Path, out: Path) -> Path:
    """REAL `kubeadm init --dry-run` of a rendered configuration: every phase but preflight (it wants root and the
    node's runtime), nothing applied to a cluster; kubeadm writes each file init would write on the node into
    $KUBEADM_INIT_DRYRUN_DIR (*out*, flat: manifests, kubeconfigs, pki, the kubelet's files)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    home = out.parent / "home"
    home.mkdir(exist_ok=True)
    done = subprocess.run([kubeadm, "init", "--dry-run", "--config", str(config), "--skip-phases", "preflight"],
                          capture_output=True, text=True, timeout=180,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(home), "KUBEADM_INIT_DRYRUN_DIR": str(out)})  # fmt: skip
    assert done.returncode == 0, f"{config.name}: {done.stderr[-3000:]}"
    assert (out / "kube-apiserver.yaml").is_file(), sorted(p.name for p in out.iterdir())
    return out


@pytest.fixture(scope="module")
def init_dry_run(rendered, kubeadm, tmp_path_factory) -> tuple[dict, Path]:
    name, files, dest = rendered
    out = _init_dry_run(kubeadm, dest / "k8s-cp-kubeadm-config.yaml", tmp_path_factory.mktemp(f"dry-{name}") / "out")
    return files, out


@pytest.fixture(scope="module")
def init_dry_run_max(rendered_max, kubeadm, tmp_path_factory) -> tuple[dict, Path]:
    files, dest = rendered_max
    return files, _init_dry_run(kubeadm, dest / "k8s-cp-kubeadm-config.yaml", tmp_path_factory.mktemp("dry-max") / "out")


def _pod(out: Path, component: str) -> dict:
    return yaml.safe_load((out / f"{component}.yaml").read_text())["spec"]


def _flags(pod: dict) -> dict[str, str]:
    command = pod["containers"][0]["command"]
    return dict(arg[2:].split("=", 1) for arg in command[1:] if arg.startswith("--") and "=" in arg)


def _mount_of(pod: dict, path: str) -> tuple[dict, dict]:
    """The volume mount of *pod* holding *path* (the longest mount path above it) and its volume."""
    mounts = [m for m in pod["containers"][0]["volumeMounts"] if (path + "/").startswith(m["mountPath"].rstrip("/") + "/")]
    assert mounts, f"{path} is under no volume mount of the pod"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    return mount, volume


def _assert_every_flag_in_the_static_pods(files: dict, out: Path) -> None:
    cluster = _doc(files["k8s-cp-kubeadm-config.yaml"], "ClusterConfiguration")
    for component, settings in (("kube-apiserver", cluster["apiServer"]), ("kube-controller-manager",
                                cluster["controllerManager"]), ("kube-scheduler", cluster["scheduler"]),
                                ("etcd", cluster["etcd"]["local"])):  # fmt: skip
        flags = _flags(_pod(out, component))
        wanted = _args(settings)
        assert wanted, component
        assert {k: flags.get(k) for k in wanted} == wanted, component


def test_real_kubeadm_init_puts_every_rendered_flag_into_the_static_pods(init_dry_run):
    _assert_every_flag_in_the_static_pods(*init_dry_run)


def test_real_kubeadm_init_puts_every_flag_changed_into_the_static_pods(init_dry_run_max):
    _assert_every_flag_in_the_static_pods(*init_dry_run_max)
    files, out = init_dry_run_max
    # kubeadm_init_extra_args: one flag of kubestrap's replaced (not given twice), one added
    manager = _pod(out, "kube-controller-manager")["containers"][0]["command"]
    assert [a for a in manager if a.startswith("--profiling")] == ["--profiling=false"]
    assert "--leader-elect-lease-duration=120s" in manager
    assert "--heartbeat-interval=250" in _pod(out, "etcd")["containers"][0]["command"]
    # kubeadm_init_patches: real kubeadm applied each strategic merge patch, the rest of the probe kept
    init = _doc(files["k8s-cp-kubeadm-config.yaml"], "InitConfiguration")
    assert init["patches"] == {"directory": str(Path(init["patches"]["directory"]))}
    probe = _pod(out, "kube-apiserver")["containers"][0]["livenessProbe"]
    assert (probe["failureThreshold"], probe["timeoutSeconds"]) == (60, 30) and probe["httpGet"]["path"] == "/livez"
    assert _pod(out, "etcd")["containers"][0]["livenessProbe"]["failureThreshold"] == 61
    assert _pod(out, "kube-scheduler")["containers"][0]["livenessProbe"]["failureThreshold"] == 8  # kubeadm's own
    # kubeadm_init_key_algorithm: the certificates kubeadm made carry ECDSA P-256 keys
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    key = x509.load_pem_x509_certificate((out / "apiserver.crt").read_bytes()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert yaml.safe_load((out / "config.yaml").read_text())["maxPods"] == 50


def _assert_apiserver_files_mounted(out: Path) -> dict[str, str]:
    """kubestrap writes the encryption, audit and admission files on the node; the kube-apiserver runs in a static
    pod, so each path its flags name must be inside a hostPath mount of the same host path (read-only; the
    audit log's directory writable), or the API server does not start. Returns the pod's flags."""
    pod = _pod(out, "kube-apiserver")
    flags = _flags(pod)
    for flag, writable in (("encryption-provider-config", False), ("audit-policy-file", False),
                           ("admission-control-config-file", False), ("audit-log-path", True)):  # fmt: skip
        mount, volume = _mount_of(pod, flags[flag])
        assert volume["hostPath"]["path"] == mount["mountPath"], flag
        assert bool(mount.get("readOnly")) is not writable, flag
    return flags


def test_the_files_the_apiserver_reads_are_mounted_into_its_pod(init_dry_run):
    _assert_apiserver_files_mounted(init_dry_run[1])


def test_a_moved_encryption_file_is_mounted_where_it_moved(init_dry_run_max):
    flags = _assert_apiserver_files_mounted(init_dry_run_max[1])
    assert flags["encryption-provider-config"] == MAXIMAL["kubeadm_init_encryption_config_path"]


def test_real_kubeadm_init_writes_the_kubelet_files_from_the_rendered_configuration(init_dry_run):
    files, out = init_dry_run
    docs = files["k8s-cp-kubeadm-config.yaml"]
    init, kubelet = _doc(docs, "InitConfiguration"), _doc(docs, "KubeletConfiguration")
    name = init["nodeRegistration"]["name"]
    node_ip = {a["name"]: a["value"] for a in init["nodeRegistration"]["kubeletExtraArgs"]}["node-ip"]
    assert (out / "kubeadm-flags.env").read_text() == (
        f'KUBELET_KUBEADM_ARGS="--hostname-override={name} --node-ip={node_ip}"\n'
    )
    written = yaml.safe_load((out / "config.yaml").read_text())  # /var/lib/kubelet/config.yaml
    assert {k: written.get(k) for k in kubelet if k not in ("apiVersion", "kind")} == {
        k: v for k, v in kubelet.items() if k not in ("apiVersion", "kind")
    }


def test_real_kubeadm_init_writes_kubeconfigs_and_a_serving_certificate_for_the_rendered_endpoint(init_dry_run_max):
    from cryptography import x509

    files, out = init_dry_run_max
    cluster = _doc(files["k8s-cp-kubeadm-config.yaml"], "ClusterConfiguration")
    for conf in ("admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf"):
        assert oct((out / conf).stat().st_mode & 0o777) == "0o600", conf
    admin = yaml.safe_load((out / "admin.conf").read_text())
    assert admin["clusters"][0]["cluster"]["server"] == f"https://{cluster['controlPlaneEndpoint']}"
    cert = x509.load_pem_x509_certificate((out / "apiserver.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(sans.get_values_for_type(x509.DNSName)) | {str(a) for a in sans.get_values_for_type(x509.IPAddress)}
    first_service_ip = str(next(ipaddress.ip_network(cluster["networking"]["serviceSubnet"]).hosts()))
    assert {*cluster["apiServer"]["certSANs"], first_service_ip} <= names, sorted(names)


def test_kubelet_configuration_values_pass_the_strict_model(rendered, kubeadm, tmp_path):
    """kubeadm decodes the KubeletConfiguration strictly (names, types: the real-kubeadm tests above) but hands
    its values to the kubelet unjudged, and the kubelet is not started here: the model's value checks stay for
    it (a cgroupDriver the kubelet does not know, which real kubeadm lets through, is caught by the model)."""
    _, files, dest = rendered
    kubelet = _doc(files["k8s-cp-kubeadm-config.yaml"], "KubeletConfiguration")
    assert model.validate_document(kubelet) == []
    wrong = tmp_path / "kubeadm-config.yaml"
    text = (dest / "k8s-cp-kubeadm-config.yaml").read_text()
    wrong.write_text(text.replace("cgroupDriver: systemd", "cgroupDriver: systemd-cgroup"))
    assert _validate(kubeadm, wrong).returncode == 0, "kubeadm judges cgroupDriver now: drop the model check"
    assert any("unsupported value" in e for e in model.validate_document({**kubelet, "cgroupDriver": "systemd-cgroup"}))


def test_kubeadm_config_carries_the_cluster_settings(rendered):
    _, files, _ = rendered
    docs = files["k8s-cp-kubeadm-config.yaml"]
    init, cluster, kubelet = (_doc(docs, k) for k in ("InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"))
    assert init["skipPhases"] == ["addon/kube-proxy"] and cluster["proxy"] == {"disabled": True}
    assert init["timeouts"]["controlPlaneComponentHealthCheck"] == "5m0s"
    assert init["timeouts"]["kubernetesAPICall"] == "1m0s"
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

    _, files, _ = rendered
    enc = files["k8s-cp-encryption-config.yaml"][0]
    provider = enc["resources"][0]["providers"][0]
    (name, body), = provider.items()
    assert name in ("secretbox", "aescbc")
    assert len(base64.b64decode(body["keys"][0]["secret"])) == 32
    assert enc["resources"][0]["providers"][-1] == {"identity": {}}


def test_join_config_uses_a_file_token_and_the_node_ip(rendered):
    _, files, _ = rendered
    join = files["k8s-worker2-kubeadm-join.yaml"][0]
    assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "192.168.1.10:6443"
    assert join["discovery"]["bootstrapToken"]["caCertHashes"] == ["sha256:" + "0" * 64]
    assert {"name": "node-ip", "value": "192.168.1.12"} in join["nodeRegistration"]["kubeletExtraArgs"]
    assert join["nodeRegistration"]["name"] == "k8s-worker2"


def test_api_endpoint_name_goes_into_cert_sans(rendered_max):
    files, _ = rendered_max
    cluster = _doc(files["k8s-cp-kubeadm-config.yaml"], "ClusterConfiguration")
    assert cluster["controlPlaneEndpoint"] == "k8s-api.home.arpa:8443"
    assert "k8s-api.home.arpa" in cluster["apiServer"]["certSANs"]
    ipaddress.ip_address(cluster["apiServer"]["certSANs"][1])


# --- CIS Kubernetes Benchmark items for kubeadm clusters (issue 16), one check per item ---------------

STRONG_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}
# namespaces of the add-ons whose pods need more than the baseline level (host network/PID/paths, privileges)
PRIVILEGED_NAMESPACES = {"kube-system", "longhorn-system", "falco", "metallb-system", "istio-system", "monitoring",
                         "nfs-csi", "local-path-storage",
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
    _, files, _ = rendered
    assert CIS_ITEMS[item](_cis(files), files), f"CIS item not met by the rendered kubeadm config: {item}"


def test_pod_security_exemptions_cover_every_privileged_addon_namespace():
    """The exemption list follows the add-on roles' namespace settings (a role moving its namespace is caught)."""
    defaults = {}
    for role in ("cilium", "longhorn", "falco", "metallb", "istio", "monitoring", "nfs_csi", "local_path", "verify"):
        defaults.update(yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()))
    wanted = {defaults[k] for k in ("cilium_namespace", "longhorn_namespace", "falco_namespace", "metallb_namespace",
                                    "istio_namespace", "monitoring_namespace", "nfs_csi_namespace",
                                    "local_path_namespace", "verify_probe_namespace")}
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
    [written] = yaml.safe_load((ROOT / "roles" / "kubeadm_init" / "tasks" / "config.yml").read_text())
    # the API server's directories (role vars, written on every control plane) and the kubeadm configuration's
    assert written["kubestrap_install"]["directories"].startswith("{{ __kubeadm_init_apiserver_directories + ")
    assert "'path': kubeadm_init_config_dir" in written["kubestrap_install"]["directories"]
    role_vars = yaml.safe_load((ROOT / "roles" / "kubeadm_init" / "vars" / "main.yml").read_text())
    created = [*role_vars["__kubeadm_init_apiserver_directories"], {"path": "{{ kubeadm_init_config_dir }}"}]
    defaults = yaml.safe_load((ROOT / "roles" / "kubeadm_init" / "defaults" / "main.yml").read_text())
    shared = yaml.safe_load((ROOT / "group_vars" / "all" / "cluster.yml").read_text())
    config_dir = defaults["kubeadm_init_config_dir"].replace("{{ kubestrap_kubeadm_dir }}", shared["kubestrap_kubeadm_dir"])
    paths = {str(Path(defaults["kubeadm_init_encryption_config_path"]).parent) if "encryption_config_path" in d["path"]
             else d["path"].replace("{{ kubeadm_init_config_dir }}", config_dir) for d in created}
    reset = [path.replace("{{ kubestrap_kubeadm_dir }}", shared["kubestrap_kubeadm_dir"]) for path in
             yaml.safe_load((ROOT / "roles" / "node_reset" / "defaults" / "main.yml").read_text())["node_reset_always_paths"]]
    assert sorted(paths - {"/etc/kubernetes"} - set(reset)) == []
