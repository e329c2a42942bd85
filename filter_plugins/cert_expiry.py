"""The certificate expiry of a control-plane node, from `kubeadm certs check-expiration -o json`
(kind CertificateExpirationInfo, apiVersion output.kubeadm.k8s.io/v1alpha3): its `certificates` (the leaf
certificates and the kubeconfigs' client certificates) and `certificateAuthorities`, each with `name`,
`expirationDate` (RFC 3339, null when missing), `residualTime` (seconds left), `externallyManaged`, `missing`.

`kubestrap_cert_expiry` turns that into what the status table and `up`'s automatic renewal read: every present
certificate with its days left, the soonest to expire, and the names under a threshold. The roles (kube_certs) and
the tests read the same function.
"""

from __future__ import annotations

import json
from typing import Any

from ansible.errors import AnsibleFilterError

SECONDS_PER_DAY = 86400
KIND = "CertificateExpirationInfo"


def cert_expiry(output: Any, threshold_days: int | str) -> dict[str, Any]:
    """{certificates: [{name, expires, days, authority}], missing: [names], soonest: {name, expires, days} or {},
    under: [names of kubeadm-managed leaf certificates with fewer than *threshold_days* days left]}.

    Certificate authorities are listed (a CA lasts ten years and `kubeadm certs renew` does not renew it) but never
    counted as under the threshold; externally managed certificates are not kubeadm's to renew either."""
    try:
        data = json.loads(output) if isinstance(output, str) else dict(output)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"kubeadm certs check-expiration printed no JSON ({exc})") from None
    if data.get("kind") != KIND:
        raise AnsibleFilterError(f"kubeadm certs check-expiration printed kind {data.get('kind')!r}, not {KIND}")
    try:
        threshold = int(threshold_days)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"threshold {threshold_days!r} is not a number of days") from None
    certificates: list[dict[str, Any]] = []
    missing: list[str] = []
    under: list[str] = []
    for authority, key in ((False, "certificates"), (True, "certificateAuthorities")):
        for entry in data.get(key) or []:
            if entry.get("missing") or not entry.get("expirationDate"):
                missing.append(str(entry.get("name")))
                continue
            days = int(entry.get("residualTime") or 0) // SECONDS_PER_DAY
            item = {"name": str(entry["name"]), "expires": str(entry["expirationDate"]), "days": days,
                    "authority": authority}  # fmt: skip
            certificates.append(item)
            if not authority and not entry.get("externallyManaged") and days < threshold:
                under.append(item["name"])
    leaves = [c for c in certificates if not c["authority"]] or certificates
    soonest = min(leaves, key=lambda c: c["expires"]) if leaves else {}
    return {"certificates": certificates, "missing": missing, "under": under,
            "soonest": {k: soonest[k] for k in ("name", "expires", "days")} if soonest else {}}  # fmt: skip


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kubestrap_cert_expiry": cert_expiry}
