"""Readiness filters (the verify role, playbooks/status.yml): which nodes and workloads are not ready,
each namespace's readiness, and whether an IP is in a pool. A top-level plugin directory
(ansible.cfg: filter_plugins), so the roles and the playbooks read the same file.

Readiness follows what `kubectl rollout status` waits for: the controller has observed the current
generation, every desired replica runs the current template and is available.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any


def _ready_condition(node: dict[str, Any]) -> str:
    for cond in node.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status", "Unknown"))
    return "Unknown"


def unready_nodes(items: list[dict[str, Any]], expected: list[str], require_ready: bool = True) -> list[str]:
    """Expected node names that are missing, or (with require_ready) whose Ready condition is not True."""
    by_name = {item.get("metadata", {}).get("name"): item for item in items}
    problems = []
    for name in expected:
        node = by_name.get(name)
        if node is None:
            problems.append(f"{name} (not registered)")
        elif require_ready and _ready_condition(node) != "True":
            problems.append(f"{name} (Ready={_ready_condition(node)})")
    return problems


def _generation_seen(obj: dict[str, Any]) -> bool:
    return int(obj.get("status", {}).get("observedGeneration", 0)) >= int(obj.get("metadata", {}).get("generation", 1))


def _workload_gap(obj: dict[str, Any]) -> str:
    """Empty when the workload is rolled out, else what is missing."""
    kind = obj.get("kind", "")
    spec, status = obj.get("spec", {}), obj.get("status", {})
    if not _generation_seen(obj):
        return "controller has not seen the latest spec"
    if kind == "Deployment":
        want = int(spec.get("replicas", 1))
        updated, available = int(status.get("updatedReplicas", 0)), int(status.get("availableReplicas", 0))
        total = int(status.get("replicas", 0))
        if updated < want or total > updated or available < updated:
            return f"{available}/{want} available, {updated} updated"
    elif kind == "DaemonSet":
        want = int(status.get("desiredNumberScheduled", 0))
        updated, available = int(status.get("updatedNumberScheduled", 0)), int(status.get("numberAvailable", 0))
        if updated < want or available < want:
            return f"{available}/{want} available, {updated} updated"
    elif kind == "StatefulSet":
        want = int(spec.get("replicas", 1))
        ready, updated = int(status.get("readyReplicas", 0)), int(status.get("updatedReplicas", 0))
        if ready < want or updated < want:
            return f"{ready}/{want} ready, {updated} updated"
    return ""


def unready_workloads(items: list[dict[str, Any]]) -> list[str]:
    """'Kind namespace/name: gap' for every Deployment, DaemonSet or StatefulSet not rolled out."""
    problems = []
    for obj in items:
        gap = _workload_gap(obj)
        if gap:
            meta = obj.get("metadata", {})
            problems.append(f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}: {gap}")
    return problems


def node_rows(items: list[dict[str, Any]]) -> list[list[str]]:
    """[name, kubelet version, Ready condition status] of each Node object (the status table and `up`'s summary)."""
    return [
        [
            str(node.get("metadata", {}).get("name", "")),
            str(node.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")),
            _ready_condition(node),
        ]
        for node in items
    ]


def namespace_readiness(items: list[dict[str, Any]]) -> dict[str, str]:
    """Per namespace, "R/T ready": rolled-out workloads out of all Deployments/DaemonSets/StatefulSets."""
    totals: dict[str, list[int]] = {}
    for obj in items:
        counts = totals.setdefault(str(obj.get("metadata", {}).get("namespace", "")), [0, 0])
        counts[1] += 1
        counts[0] += 0 if _workload_gap(obj) else 1
    return {ns: f"{ready}/{total} ready" for ns, (ready, total) in totals.items()}


def ip_in_pool(address: str, pool: str | list[str]) -> bool:
    """Whether address lies in a MetalLB pool given as "FIRST-LAST", a CIDR, or a list of those."""
    try:
        ip = ipaddress.ip_address(str(address).strip())
    except ValueError:
        return False
    for entry in [pool] if isinstance(pool, str) else pool:
        entry = str(entry).strip()
        if "-" in entry:
            first, last = (ipaddress.ip_address(part.strip()) for part in entry.split("-", 1))
            if first.version == ip.version and first <= ip <= last:  # type: ignore[operator]
                return True
        elif ip in ipaddress.ip_network(entry, strict=False):
            return True
    return False


def _truthy(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "yes", "on", "1")


def _monitor_of(target: dict[str, Any]) -> str:
    """The monitor's name in a prometheus-operator scrape pool (`serviceMonitor/NS/NAME/N`), else ''."""
    parts = str(target.get("scrapePool", "")).split("/")
    return parts[2] if len(parts) >= 4 and parts[0] in ("serviceMonitor", "podMonitor") else ""


def scrape_gaps(answer: Any, expected: list[dict[str, Any]]) -> list[str]:
    """The add-ons Prometheus does not scrape, from its targets API's answer (`/api/v1/targets?state=active`, JSON text
    or parsed). Each expected entry {addon, namespace, monitor, enabled} wants an active target whose `namespace`
    label (prometheus-operator's: the scraped endpoint's namespace) is that namespace and, where `monitor` is given,
    whose scrape pool comes from a ServiceMonitor or PodMonitor whose name starts with it (`serviceMonitor/NS/NAME/N`;
    the charts name theirs after the release), with at least one of them up. A gap names the add-on and what was
    found (no target, or none up with a scrape error)."""
    try:
        parsed = json.loads(answer) if isinstance(answer, str) else answer
    except ValueError:
        return [f"Prometheus' targets API answered no JSON: {str(answer).strip()[:200]!r}"]
    data = parsed.get("data") if isinstance(parsed, dict) else None
    if not isinstance(data, dict) or parsed.get("status") != "success":
        return [f"Prometheus' targets API answered no target list: {str(answer).strip()[:200]!r}"]
    targets = [t for t in data.get("activeTargets") or [] if isinstance(t, dict)]
    gaps = []
    for want in expected:
        if not _truthy(want.get("enabled", True)):
            continue
        namespace, monitor = str(want.get("namespace", "")), str(want.get("monitor") or "")
        mine = [t for t in targets if (t.get("labels") or {}).get("namespace") == namespace
                and (not monitor or _monitor_of(t).startswith(monitor))]  # fmt: skip
        where = f"in {namespace}" + (f" from the monitor {monitor}" if monitor else "")
        if not mine:
            gaps.append(f"{want.get('addon')} (no target {where})")
        elif not any(t.get("health") == "up" for t in mine):
            error = next((str(t["lastError"]) for t in mine if t.get("lastError")), "")
            gaps.append(f"{want.get('addon')} ({len(mine)} target(s) {where}, none up" + (f": {error[:200]})" if error else ")"))
    return gaps


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kubestrap_unready_nodes": unready_nodes,
            "kubestrap_unready_workloads": unready_workloads,
            "kubestrap_ip_in_pool": ip_in_pool,
            "kubestrap_namespace_readiness": namespace_readiness,
            "kubestrap_node_rows": node_rows,
            "kubestrap_scrape_gaps": scrape_gaps,
        }
