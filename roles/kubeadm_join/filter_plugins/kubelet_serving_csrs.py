"""kubelet_serving_csrs: which kubelet serving certificate requests of one node kubestrap may approve.

With serverTLSBootstrap the kubelet asks the cluster CA for its serving certificate through a
CertificateSigningRequest (signer kubernetes.io/kubelet-serving) that nothing approves by itself. This
filter takes `kubectl get csr -o json` and judges the pending requests *node* made, right after init or
join, against the node's inventory identity (its name and node_ip). The rules are NOT here: they are
those of kubestrap's approver program, roles/kubeadm_join/files/kubestrap_approve_serving_csrs.py (the
one the systemd timer on the first control plane runs for renewals), imported from that file, so the
join-time approval and the renewals can never disagree.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ansible.errors import AnsibleFilterError

APPROVER = Path(__file__).resolve().parent.parent / "files" / "kubestrap_approve_serving_csrs.py"
_MODULE = "kubestrap_approve_serving_csrs"


def _load() -> ModuleType:
    if _MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(_MODULE, APPROVER)
        if spec is None or spec.loader is None:
            raise AnsibleFilterError(f"kubelet_serving_csrs cannot load the approver {APPROVER}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE] = module  # NamedTuple classes resolve their module by name
        spec.loader.exec_module(module)
    return sys.modules[_MODULE]


approver = _load()


def kubelet_serving_csrs(csr_list: Any, node: str, names: list[str], ips: list[str]) -> dict[str, Any]:
    """{'approve': [{'name', 'body'}], 'approved': bool, 'refused': {name: reason}} for *node*'s serving CSRs."""
    try:
        items = (json.loads(csr_list) if isinstance(csr_list, str) else csr_list)["items"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"kubelet_serving_csrs needs `kubectl get csr -o json` output: {exc}") from None
    nodes = {node: approver.identity(node, names, ips)}
    result: dict[str, Any] = {"approve": [], "approved": False, "refused": {}}
    for csr in items:
        spec = csr.get("spec", {})
        if spec.get("signerName") != approver.SIGNER or approver.requester(csr) != node:
            continue  # another node's, or not a serving certificate request: not this filter's business
        state = approver.state(csr)
        if state == "approved":
            result["approved"] = True
        if state != "pending":
            continue
        name = csr["metadata"]["name"]
        reason = approver.refusal(csr, nodes)
        if reason:
            result["refused"][name] = reason
        else:
            result["approve"].append({"name": name, "body": approver.approval(csr)})
    return result


class FilterModule:
    def filters(self) -> dict:
        return {"kubelet_serving_csrs": kubelet_serving_csrs}
