"""Strict field-by-field model of the kubeadm configuration API kubeadm.k8s.io/v1beta4
(Kubernetes 1.31+, as shipped with kubeadm 1.36), of the KubeletConfiguration fields kubeadm
passes through (kubelet.config.k8s.io/v1beta1), and of the files kubestrap renders next to them
(EncryptionConfiguration apiserver.config.k8s.io/v1, audit Policy audit.k8s.io/v1).

Like kubeadm's strict decoding, an unknown field, a wrong type or an unknown kind/apiVersion is an
error. Used by the offline render tests and by the kubeadm contract double (tests/doubles/kubeadm).
Field names are facts from the upstream API types; the model is written here.
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


ARG = {"name": Str, "value": Str}
ENV = {"name": Str, "value": Str, "valueFrom": AnyValue}
HOST_PATH_MOUNT = {
    "name": Str, "hostPath": Str, "mountPath": Str, "readOnly": Bool,
    "pathType": Enum("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"),
}  # fmt: skip
COMPONENT = {"extraArgs": ListOf(ARG), "extraVolumes": ListOf(HOST_PATH_MOUNT), "extraEnvs": ListOf(ENV)}
TAINT = {"key": Str, "value": Str, "effect": Enum("NoSchedule", "PreferNoSchedule", "NoExecute"), "timeAdded": Str}
NODE_REGISTRATION = {
    "name": Str, "criSocket": Str, "taints": ListOf(TAINT), "kubeletExtraArgs": ListOf(ARG),
    "ignorePreflightErrors": ListOf(Str), "imagePullPolicy": Enum("Always", "IfNotPresent", "Never"),
    "imagePullSerial": Bool,
}  # fmt: skip
API_ENDPOINT = {"advertiseAddress": Str, "bindPort": Int}
TIMEOUTS = {
    "controlPlaneComponentHealthCheck": Duration, "kubeletHealthCheck": Duration, "kubernetesAPICall": Duration,
    "etcdAPICall": Duration, "tlsBootstrap": Duration, "discovery": Duration, "upgradeManifests": Duration,
}  # fmt: skip
PATCHES = {"directory": Str}
BOOTSTRAP_TOKEN = {"token": Str, "description": Str, "ttl": Duration, "expires": Str,
                   "usages": ListOf(Str), "groups": ListOf(Str)}
IMAGE_META = {"imageRepository": Str, "imageTag": Str}

INIT = {
    "bootstrapTokens": ListOf(BOOTSTRAP_TOKEN), "dryRun": Bool, "nodeRegistration": NODE_REGISTRATION,
    "localAPIEndpoint": API_ENDPOINT, "certificateKey": Str, "skipPhases": ListOf(Str), "patches": PATCHES,
    "timeouts": TIMEOUTS,
}  # fmt: skip
CLUSTER = {
    "etcd": {
        "local": {**IMAGE_META, "dataDir": Str, "extraArgs": ListOf(ARG), "extraEnvs": ListOf(ENV),
                  "serverCertSANs": ListOf(Str), "peerCertSANs": ListOf(Str)},
        "external": {"endpoints": ListOf(Str), "caFile": Str, "certFile": Str, "keyFile": Str},
    },
    "networking": {"serviceSubnet": Str, "podSubnet": Str, "dnsDomain": Str},
    "kubernetesVersion": Str, "controlPlaneEndpoint": Str,
    "apiServer": {**COMPONENT, "certSANs": ListOf(Str)},
    "controllerManager": COMPONENT, "scheduler": COMPONENT,
    "dns": {**IMAGE_META, "disabled": Bool}, "proxy": {"disabled": Bool},
    "certificatesDir": Str, "imageRepository": Str, "featureGates": MapOf(Bool), "clusterName": Str,
    "encryptionAlgorithm": Enum("ECDSA-P256", "ECDSA-P384", "RSA-2048", "RSA-3072", "RSA-4096"),
    "certificateValidityPeriod": Duration, "caCertificateValidityPeriod": Duration,
}  # fmt: skip
JOIN = {
    "dryRun": Bool, "nodeRegistration": NODE_REGISTRATION, "caCertPath": Str,
    "discovery": {
        "bootstrapToken": {"token": Str, "apiServerEndpoint": Str, "caCertHashes": ListOf(Str),
                           "unsafeSkipCAVerification": Bool},
        "file": {"kubeConfigPath": Str},
        "tlsBootstrapToken": Str,
    },
    "controlPlane": {"localAPIEndpoint": API_ENDPOINT, "certificateKey": Str},
    "skipPhases": ListOf(Str), "patches": PATCHES, "timeouts": TIMEOUTS,
}  # fmt: skip
RESET = {
    "cleanupTmpDir": Bool, "certificatesDir": Str, "criSocket": Str, "dryRun": Bool, "force": Bool,
    "ignorePreflightErrors": ListOf(Str), "skipPhases": ListOf(Str), "unmountFlags": ListOf(Str),
}  # fmt: skip
# The KubeletConfiguration fields kubestrap may set (a subset of kubelet.config.k8s.io/v1beta1;
# all are real fields of that type). Anything else is refused so a typo cannot slip through.
KUBELET = {
    "cgroupDriver": Enum("systemd", "cgroupfs"), "clusterDNS": ListOf(Str), "clusterDomain": Str,
    "rotateCertificates": Bool, "serverTLSBootstrap": Bool, "maxPods": Int, "failSwapOn": Bool,
    "containerRuntimeEndpoint": Str, "authentication": AnyValue, "authorization": AnyValue,
    "evictionHard": MapOf(Str), "systemReserved": MapOf(Str), "kubeReserved": MapOf(Str),
    "protectKernelDefaults": Bool, "readOnlyPort": Int, "featureGates": MapOf(Bool),
    "shutdownGracePeriod": Duration, "shutdownGracePeriodCriticalPods": Duration,
    "imageGCHighThresholdPercent": Int, "imageGCLowThresholdPercent": Int, "staticPodPath": Str,
    "resolvConf": Str, "tlsMinVersion": Str, "tlsCipherSuites": ListOf(Str),
}  # fmt: skip
KEY = {"name": Str, "secret": Str}
ENCRYPTION = {
    "resources": ListOf({
        "resources": ListOf(Str),
        "providers": ListOf({
            "identity": {}, "aescbc": {"keys": ListOf(KEY)}, "aesgcm": {"keys": ListOf(KEY)},
            "secretbox": {"keys": ListOf(KEY)}, "kms": AnyValue,
        }),
    }),
}  # fmt: skip
AUDIT_LEVEL = Enum("None", "Metadata", "Request", "RequestResponse")
AUDIT_POLICY = {
    "omitStages": ListOf(Enum("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")),
    "omitManagedFields": Bool,
    "rules": ListOf({
        "level": AUDIT_LEVEL, "users": ListOf(Str), "userGroups": ListOf(Str), "verbs": ListOf(Str),
        "resources": ListOf({"group": Str, "resources": ListOf(Str), "resourceNames": ListOf(Str)}),
        "namespaces": ListOf(Str), "nonResourceURLs": ListOf(Str), "omitStages": ListOf(Str),
        "omitManagedFields": Bool,
    }),
}  # fmt: skip

KINDS: dict[tuple[str, str], dict[str, Any]] = {
    ("kubeadm.k8s.io/v1beta4", "InitConfiguration"): INIT,
    ("kubeadm.k8s.io/v1beta4", "ClusterConfiguration"): CLUSTER,
    ("kubeadm.k8s.io/v1beta4", "JoinConfiguration"): JOIN,
    ("kubeadm.k8s.io/v1beta4", "ResetConfiguration"): RESET,
    ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"): KUBELET,
    ("apiserver.config.k8s.io/v1", "EncryptionConfiguration"): ENCRYPTION,
    ("audit.k8s.io/v1", "Policy"): AUDIT_POLICY,
}
# Versions real kubeadm 1.36 refuses outright (removed API versions).
REMOVED = {"kubeadm.k8s.io/v1beta1", "kubeadm.k8s.io/v1beta2", "kubeadm.k8s.io/v1beta3"}
REQUIRED = {
    "JoinConfiguration": [("discovery",)],
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
    """Errors of one YAML document (empty when kubeadm would accept it)."""
    if not isinstance(doc, dict):
        return ["document is not an object"]
    api, kind = doc.get("apiVersion"), doc.get("kind")
    if api in REMOVED:
        return [f"{kind}: apiVersion {api} is no longer supported by kubeadm 1.36; use kubeadm.k8s.io/v1beta4"]
    spec = KINDS.get((api, kind))
    if spec is None:
        return [f"no kind {kind!r} is registered for version {api!r}"]
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
    errors: list[str] = []
    _check(body, spec, kind, errors)
    for required in REQUIRED.get(kind, []):
        node: Any = body
        for part in required:
            node = node.get(part) if isinstance(node, dict) else None
        if node in (None, {}, ""):
            errors.append(f"{kind}.{'.'.join(required)}: required")
    return errors


def validate_documents(docs: list[Any]) -> list[str]:
    errors: list[str] = []
    for doc in docs:
        if doc is None:
            continue
        errors.extend(validate_document(doc))
    return errors
