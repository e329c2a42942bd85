"""The files kubestrap renders for the kube-apiserver, which kubeadm only mounts into its static pod (the
EncryptionConfiguration, the audit Policy, the AdmissionConfiguration with the Pod Security admission
configuration), read and run by the REAL kube-apiserver v1.36.3 (tests/k8s_real.py, built from its Go module by
kubestrap/lab/sources/build.py). It is started with every flag the rendered ClusterConfiguration gives it
(apiServer.extraArgs; the node's paths of the rendered files mapped to the rendered files here), default settings
and with the other encryption provider, and must:

- start, with no configuration error and no lenient decoding of the audit policy (a misspelt field there is only
  a warning of the real server, so the test reads its log);
- keep Secrets encrypted in etcd with the rendered key (read back raw from etcd), ConfigMaps not;
- audit without secret payloads: Secrets and ConfigMaps at Metadata level, other writes with their request body,
  health checks not at all;
- enforce Pod Security "baseline" outside the exempt namespaces, warn of "restricted", exempt the add-ons'
  privileged namespaces;
- refuse each file with a misspelt field or a wrong value (the server exits naming it).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import render_configs
from k8s_real import ControlPlane, free_port, started

# the rendered flag naming a file on the node -> the rendered file standing for it here
FILE_FLAGS = {
    "encryption-provider-config": "k8s-cp-encryption-config.yaml",
    "audit-policy-file": "k8s-cp-audit-policy.yaml",
    "admission-control-config-file": "k8s-cp-admission-config.yaml",
}
SETTINGS = {
    "default": {},
    "aescbc": {"kubeadm_init_encryption_provider": "aescbc", "kubeadm_init_profiling": True,
               "kubeadm_init_audit_log_maxage_days": 90, "kubeadm_init_audit_log_maxsize_mb": 250},
}  # fmt: skip
LENIENT = "falling back to lenient decoding"
CANARY = "kubestrap-audit-canary-value"


def apiserver_args(dest: Path, files: dict, base: Path) -> tuple[str, ...]:
    """The rendered apiServer.extraArgs as kube-apiserver flags, node paths replaced by the rendered files."""
    cluster = next(d for d in files["k8s-cp-kubeadm-config.yaml"] if d and d.get("kind") == "ClusterConfiguration")
    args = {a["name"]: a["value"] for a in cluster["apiServer"]["extraArgs"]}
    assert set(FILE_FLAGS) | {"audit-log-path"} <= set(args), sorted(args)
    args.update({flag: str(dest / name) for flag, name in FILE_FLAGS.items()})
    args["audit-log-path"] = str(base / "audit.log")
    return tuple(f"--{name}={value}" for name, value in args.items())


class Plane:
    def __init__(self, name: str, plane: ControlPlane, dest: Path, files: dict, args: tuple[str, ...]) -> None:
        self.name, self.plane, self.dest, self.files, self.args = name, plane, dest, files, args
        self.provider = next(iter(files["k8s-cp-encryption-config.yaml"][0]["resources"][0]["providers"][0]))

    def kubectl(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, **kwargs)

    def etcd_value(self, key: str) -> bytes:
        """The raw value etcd holds under *key* (its JSON gateway on the plain-HTTP client URL)."""
        body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.plane.etcd_port}/v3/kv/range", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            kvs = json.loads(answer.read()).get("kvs", [])
        assert len(kvs) == 1, f"{key}: {kvs}"
        return base64.b64decode(kvs[0]["value"])

    def audit_events(self) -> list[dict]:
        return [json.loads(line) for line in (self.plane.base / "audit.log").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def plane(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"apiserver-files-{request.param}")
    extra = base / "settings.json"
    extra.write_text(json.dumps(SETTINGS[request.param]))
    dest = base / "render"
    files = render_configs(dest, "-e", f"@{extra}")
    args = apiserver_args(dest, files, base / "plane")
    with started(base / "plane", apiserver_args=args) as control_plane:
        yield Plane(request.param, control_plane, dest, files, args)


def test_the_real_apiserver_starts_with_every_rendered_flag_and_file(plane):
    assert plane.kubectl("get", "--raw", "/readyz").stdout == "ok"
    log = plane.plane.logs("kube-apiserver", tail=1_000_000)
    assert LENIENT not in log, log[-3000:]
    assert plane.provider == plane.name.replace("default", "secretbox")  # the setting took effect


def test_secrets_are_encrypted_at_rest_with_the_rendered_key(plane):
    plane.kubectl("create", "namespace", "test-enc")
    plane.kubectl("-n", "test-enc", "create", "secret", "generic", "s", f"--from-literal=value={CANARY}")
    plane.kubectl("-n", "test-enc", "create", "configmap", "c", f"--from-literal=value={CANARY}")
    stored = plane.etcd_value("/registry/secrets/test-enc/s")
    assert stored.startswith(f"k8s:enc:{plane.provider}:v1:key1:".encode()), stored[:40]
    assert CANARY.encode() not in stored
    assert CANARY.encode() in plane.etcd_value("/registry/configmaps/test-enc/c")  # only Secrets are encrypted
    got = json.loads(plane.kubectl("-n", "test-enc", "get", "secret", "s", "-o", "json").stdout)
    assert base64.b64decode(got["data"]["value"]).decode() == CANARY


def test_the_audit_log_keeps_secret_payloads_out(plane):
    plane.kubectl("create", "namespace", "test-audit")
    plane.kubectl("-n", "test-audit", "create", "secret", "generic", "s", f"--from-literal=value={CANARY}")
    plane.kubectl("-n", "test-audit", "create", "configmap", "c", f"--from-literal=value={CANARY}")
    plane.kubectl("-n", "test-audit", "create", "serviceaccount", "sa")
    plane.kubectl("get", "--raw", "/readyz")
    events = plane.audit_events()
    mine = {(e["objectRef"]["resource"], e["verb"]): e for e in events
            if e.get("objectRef", {}).get("namespace") == "test-audit"}  # fmt: skip
    assert mine[("secrets", "create")]["level"] == "Metadata" and "requestObject" not in mine[("secrets", "create")]
    assert mine[("configmaps", "create")]["level"] == "Metadata"
    assert mine[("serviceaccounts", "create")]["level"] == "Request"
    assert mine[("serviceaccounts", "create")]["requestObject"]["metadata"]["name"] == "sa"
    raw = (plane.plane.base / "audit.log").read_text()
    assert CANARY not in raw and base64.b64encode(CANARY.encode()).decode() not in raw
    assert not [e for e in events if e["stage"] == "RequestReceived"]
    assert not [e for e in events if e["requestURI"].startswith(("/readyz", "/healthz", "/livez"))]


def pod(namespace: str, name: str, privileged: bool) -> str:
    security = "{privileged: true}" if privileged else "{}"
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
            f"spec: {{containers: [{{name: main, image: registry.example/x:1, securityContext: {security}}}]}}\n")  # fmt: skip


def test_pod_security_enforces_baseline_except_in_the_exempt_namespaces(plane):
    admission = yaml.safe_load((plane.dest / FILE_FLAGS["admission-control-config-file"]).read_text())
    (psa,) = [p["configuration"] for p in admission["plugins"] if p["name"] == "PodSecurity"]
    exempt = psa["exemptions"]["namespaces"][-1]
    for namespace in ("test-psa", exempt):  # no controller makes the default ServiceAccount here
        plane.kubectl("create", "namespace", namespace)
        plane.kubectl("-n", namespace, "create", "serviceaccount", "default")
    refused = plane.kubectl("apply", "-f", "-", stdin=pod("test-psa", "privileged", True), check=False)
    assert refused.returncode != 0 and 'violates PodSecurity "baseline:latest": privileged' in refused.stderr
    warned = plane.kubectl("apply", "-f", "-", stdin=pod("test-psa", "plain", False))
    assert 'would violate PodSecurity "restricted:latest"' in warned.stderr
    plane.kubectl("apply", "-f", "-", stdin=pod(exempt, "privileged", True))
    assert plane.kubectl("-n", exempt, "get", "pod", "privileged", "-o", "name").stdout == "pod/privileged\n"


# (file, text in it, replacement, what the real kube-apiserver says; refused: it exits)
BROKEN = {
    "misspelt EncryptionConfiguration field": ("encryption-provider-config", "providers:", "provider:", True,
                                               'strict decoding error: unknown field "resources[0].provider"'),
    "an encryption key that is not base64": ("encryption-provider-config", "secret: ", "secret: not-base64!", True,
                                             "secrets must be base64 encoded"),
    "misspelt AdmissionConfiguration field": ("admission-control-config-file", "plugins:", "plugin:", True,
                                              'strict decoding error: unknown field "plugin"'),
    "misspelt PodSecurityConfiguration field": ("admission-control-config-file", "exemptions:", "exemption:", True,
                                                'strict decoding error: unknown field "exemption"'),
    "a Pod Security level that is not one": ("admission-control-config-file", "enforce: baseline", "enforce: basline",
                                             True, "enforce: must be one of privileged, baseline, restricted"),
    "an audit level that is not one": ("audit-policy-file", "level: Request\n", "level: Requests\n", True,
                                       'Unsupported value: "Requests"'),
    "misspelt audit Policy field (a warning only)": ("audit-policy-file", "omitStages:", "omitStage:", False,
                                                     LENIENT),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_real_apiserver_refuses_a_broken_file(plane, tmp_path, case):
    flag, old, new, exits, message = BROKEN[case]
    original = plane.dest / FILE_FLAGS[flag]
    text = original.read_text()
    assert old in text, f"{case}: {old!r} is not in the rendered {original.name}"
    broken = tmp_path / original.name
    broken.write_text(text.replace(old, new, 1))
    args = [a if not a.startswith(f"--{flag}=") else f"--{flag}={broken}" for a in plane.args]
    args = [a if not a.startswith("--audit-log-path=") else f"--audit-log-path={tmp_path / 'audit.log'}" for a in args]
    log = tmp_path / "kube-apiserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(plane.plane.apiserver_argv(free_port(), *args), stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None and message not in log.read_text(errors="replace"):
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)
    said = log.read_text(errors="replace").replace('\\"', '"')  # klog quotes the error
    assert message in said, f"{case}: {said[-3000:]}"
    if exits:
        assert process.returncode not in (0, -15), f"{case}: exit {process.returncode}"
