"""Strict field model of the KubeletConfiguration (kubelet.config.k8s.io/v1beta1) kubestrap renders into the kubeadm
configuration: REAL kubeadm decodes it strictly (field names and types: `kubeadm config validate` in
tests/test_cluster_configs.py) but hands its values to the kubelet unjudged, and no kubelet runs here (it needs
root and the node's runtime). The model lists the fields kubestrap may set or kubeadm writes (all real fields of
that type) and refuses the rest, so a typo cannot slip through, and judges the values the kubelet would (e.g.
cgroupDriver).

The other rendered files are judged by the real programs: the kubeadm.k8s.io/v1beta4 kinds by real kubeadm, the
files the kube-apiserver reads (encryption, audit, admission + Pod Security) by the real kube-apiserver
(tests/test_apiserver_config_files.py).
"""

from __future__ import annotations

import re
from typing import Any

DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


class Str: ...


class Int: ...


class Bool: ...


class Duration: ...


class Enum:
    def __init__(self, *values: str) -> None:
        self.values = values


class ListOf:
    def __init__(self, item: Any) -> None:
        self.item = item


class MapOf:
    def __init__(self, value: Any) -> None:
        self.value = value


class AnyValue: ...


KUBELET = {
    "cgroupDriver": Enum("systemd", "cgroupfs"), "clusterDNS": ListOf(Str), "clusterDomain": Str,
    "rotateCertificates": Bool, "serverTLSBootstrap": Bool, "maxPods": Int, "failSwapOn": Bool,
    "containerRuntimeEndpoint": Str, "authentication": AnyValue, "authorization": AnyValue,
    "evictionHard": MapOf(Str), "systemReserved": MapOf(Str), "kubeReserved": MapOf(Str),
    "protectKernelDefaults": Bool, "readOnlyPort": Int, "featureGates": MapOf(Bool),
    "shutdownGracePeriod": Duration, "shutdownGracePeriodCriticalPods": Duration,
    "imageGCHighThresholdPercent": Int, "imageGCLowThresholdPercent": Int, "staticPodPath": Str,
    "resolvConf": Str, "tlsMinVersion": Str, "tlsCipherSuites": ListOf(Str),
    "healthzBindAddress": Str, "healthzPort": Int, "nodeStatusUpdateFrequency": Duration,
    "nodeStatusReportFrequency": Duration, "seccompDefault": Bool, "podPidsLimit": Int,
}  # fmt: skip
KINDS: dict[tuple[str, str], dict[str, Any]] = {
    ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"): KUBELET,
}


def _check(value: Any, spec: Any, path: str, errors: list[str]) -> None:
    if spec is AnyValue:
        return
    if spec is Str:
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {type(value).__name__}")
    elif spec is Int:
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: expected an integer, got {type(value).__name__}")
    elif spec is Bool:
        if not isinstance(value, bool):
            errors.append(f"{path}: expected a boolean, got {type(value).__name__}")
    elif spec is Duration:
        if not isinstance(value, str) or not DURATION.match(value):
            errors.append(f"{path}: invalid duration {value!r}")
    elif isinstance(spec, Enum):
        if value not in spec.values:
            errors.append(f"{path}: unsupported value {value!r} (allowed: {', '.join(spec.values)})")
    elif isinstance(spec, ListOf):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check(item, spec.item, f"{path}[{i}]", errors)
    elif isinstance(spec, MapOf):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return
        for key, item in value.items():
            _check(item, spec.value, f"{path}.{key}", errors)
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        for key, item in value.items():
            if key not in spec:
                errors.append(f'{path}: unknown field "{key}"')
            else:
                _check(item, spec[key], f"{path}.{key}", errors)
    else:  # pragma: no cover - model error
        raise TypeError(f"bad spec at {path}: {spec!r}")


def validate_document(doc: Any) -> list[str]:
    """Errors of one YAML document (empty when it passes the model)."""
    if not isinstance(doc, dict):
        return ["document is not an object"]
    api, kind = doc.get("apiVersion"), doc.get("kind")
    spec = KINDS.get((api, kind))
    if spec is None:
        return [f"no kind {kind!r} is modelled for version {api!r}"]
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
    errors: list[str] = []
    _check(body, spec, kind, errors)
    return errors


def validate_documents(docs: list[Any]) -> list[str]:
    errors: list[str] = []
    for doc in docs:
        if doc is not None:
            errors.extend(validate_document(doc))
    return errors
