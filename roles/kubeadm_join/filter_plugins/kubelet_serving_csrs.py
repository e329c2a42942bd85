"""kubelet_serving_csrs: which kubelet serving certificate requests of one node kubestrap may approve.

With serverTLSBootstrap the kubelet asks the cluster CA for its serving certificate through a
CertificateSigningRequest (signer kubernetes.io/kubelet-serving) that nothing approves by itself. This
filter takes `kubectl get csr -o json` and approves only what the node itself asked for itself: signer
kubernetes.io/kubelet-serving, requested by system:node:<node> (group system:nodes), subject
CN=system:node:<node> O=system:nodes, usages within digital signature / key encipherment / server auth
(server auth included), at least one subject alternative name and every one of them among the node's
own names and addresses (no e-mail or URI names). Runs on the controller (the `cryptography` package,
which ansible-core needs anyway, reads the request).
"""

from __future__ import annotations

import base64
import ipaddress
import json
from typing import Any

from ansible.errors import AnsibleFilterError

SIGNER = "kubernetes.io/kubelet-serving"
USAGES = {"digital signature", "key encipherment", "server auth"}


def _condition(csr: dict[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status", "True") == "True" for c in csr.get("status", {}).get("conditions") or [])


def _problem(csr: dict[str, Any], node: str, names: set[str], ips: set[str]) -> str:
    """Why this pending request must not be approved ('' when it may)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    spec = csr.get("spec", {})
    identity = f"system:node:{node}"
    if "system:nodes" not in (spec.get("groups") or []):
        return "requestor is not in group system:nodes"
    usages = set(spec.get("usages") or [])
    if "server auth" not in usages or not usages <= USAGES:
        return f"usages {sorted(usages)} are not a serving certificate's"
    try:
        request = x509.load_pem_x509_csr(base64.b64decode(spec.get("request", "")))
    except ValueError as exc:
        return f"unreadable request ({exc})"
    if not request.is_signature_valid:
        return "the request's signature does not verify"
    common = [a.value for a in request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if common != [identity] or orgs != ["system:nodes"]:
        return f"subject CN={common} O={orgs} is not CN={identity} O=system:nodes"
    try:
        sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no subject alternative names"
    dns = set(sans.get_values_for_type(x509.DNSName))
    addresses = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    if len(list(sans)) != len(dns) + len(addresses):
        return "asks for names other than DNS names and IP addresses"
    if not dns | addresses:
        return "no subject alternative names"
    if not dns <= names:
        return f"DNS names {sorted(dns - names)} are not this node's"
    if not addresses <= ips:
        return f"IP addresses {sorted(addresses - ips)} are not this node's"
    return ""


def kubelet_serving_csrs(csr_list: Any, node: str, names: list[str], ips: list[str]) -> dict[str, Any]:
    """{'approve': [{'name', 'body'}], 'approved': bool, 'refused': {name: reason}} for *node*'s serving CSRs."""
    try:
        items = (json.loads(csr_list) if isinstance(csr_list, str) else csr_list)["items"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"kubelet_serving_csrs needs `kubectl get csr -o json` output: {exc}") from None
    own_ips = {str(ipaddress.ip_address(ip)) for ip in ips}
    result: dict[str, Any] = {"approve": [], "approved": False, "refused": {}}
    for csr in items:
        spec = csr.get("spec", {})
        if spec.get("signerName") != SIGNER or spec.get("username") != f"system:node:{node}":
            continue
        if _condition(csr, "Denied") or _condition(csr, "Failed"):
            continue
        if _condition(csr, "Approved"):
            result["approved"] = True
            continue
        name = csr["metadata"]["name"]
        problem = _problem(csr, node, set(names), own_ips)
        if problem:
            result["refused"][name] = problem
            continue
        body = json.loads(json.dumps(csr))
        body.setdefault("status", {})["conditions"] = [*(body["status"].get("conditions") or []), {
            "type": "Approved", "status": "True", "reason": "KubestrapApproved",
            "message": f"kubestrap: serving certificate of {node} for its own names and addresses",
        }]  # fmt: skip
        result["approve"].append({"name": name, "body": body})
    return result


class FilterModule:
    def filters(self) -> dict:
        return {"kubelet_serving_csrs": kubelet_serving_csrs}
