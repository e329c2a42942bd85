"""Action kubestrap_preflight_verdict: preflight's checks across nodes, run once on the controller.

Every node's kubestrap_preflight_probe result (registered under C(probe_var)) already holds that node's own
checks. Whether a machine-id, product_uuid or MAC is shared is a question about all nodes together: it is
answered here once, over the nodes of the play and the identities cached from earlier runs for the cluster's
other nodes (add-node compares the new node against them), instead of by every node looking at every other
(N x N lookups of other hosts' variables). The result holds, per node, the checks (published as the stats key
C(kubestrap_preflight) for `check --hosts`' table), the failure message of each node that failed a check and
a warning for each node let through with a container runtime kubestrap did not install.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.plugins.action import ActionBase

IDENTITY = ("machine_id", "product_uuid", "mac")


def shared(identities: Mapping[str, Mapping[str, str]], hosts: Iterable[str],
           order: list[str]) -> dict[str, dict[str, list[str]]]:
    """For each of *hosts*: identity key -> the other nodes (in *order*) with the same non-empty value."""
    found: dict[str, dict[str, list[str]]] = {}
    for host in hosts:
        mine = identities.get(host) or {}
        for key in IDENTITY:
            value = mine.get(key) or ""
            if not value:
                continue  # unknown (no DMI, no interface): nothing to compare
            same = [other for other in order if other != host and (identities.get(other) or {}).get(key) == value]
            if same:
                found.setdefault(host, {})[key] = same
    return found


def failure_message(host: str, results: Mapping[str, Mapping[str, Any]]) -> str:
    failed = [f"{check} = {result.get('detail', '')}" for check, result in results.items() if not result.get("ok")]
    if not failed:
        return ""
    return (f"preflight failed on {host}: {'; '.join(failed)}. "
            "Fix these on the host (or the inventory), then run `bootstrap.py check --hosts` again.")


def runtime_warning(host: str, runtimes: list[str]) -> str:
    return (f"WARNING: {host} runs a container runtime kubestrap did not install: {', '.join(runtimes)}. "
            "preflight_allow_foreign_runtime is true, so `up` goes on; the containerd role removes the "
            "distribution's containerd, containerd.io and runc packages and installs its own containerd.")


def verdict(probes: Mapping[str, Mapping[str, Any]], cached: Mapping[str, Mapping[str, str]],
            cluster: list[str]) -> dict[str, Any]:
    """*probes*: host -> its kubestrap_preflight_probe result (the play's nodes); *cached*: host -> identity
    remembered from earlier runs (the cluster's other nodes); *cluster*: every node, in inventory order.

    Returns {"hosts": host -> checks, "failures": host -> message, "runtime_warnings": host -> message}."""
    identities = {**{h: dict(i) for h, i in cached.items()}, **{h: dict(p.get("identity") or {}) for h, p in probes.items()}}
    order = [h for h in cluster if h in identities] + [h for h in probes if h not in cluster]
    same = shared(identities, probes, order)
    hosts: dict[str, dict[str, Any]] = {}
    for host, probe in probes.items():
        results = {check: dict(result) for check, result in (probe.get("results") or {}).items()}
        for key, others in same.get(host, {}).items():
            results[key] = {"ok": False, "detail": "shared with " + ",".join(others)}
        hosts[host] = results
    failures = {host: failure_message(host, results) for host, results in hosts.items()}
    warnings = {host: runtime_warning(host, probe["foreign_runtimes"]) for host, probe in probes.items()
                if probe.get("foreign_runtimes") and hosts[host].get("runtime", {}).get("ok")}  # fmt: skip
    return {"hosts": hosts, "failures": {h: m for h, m in failures.items() if m}, "runtime_warnings": warnings}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _VALID_ARGS = frozenset(("hosts", "cluster", "probe_var"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars if task_vars is not None else {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        hosts = list(args.get("hosts") or [])
        cluster = list(args.get("cluster") or hosts)
        var = str(args.get("probe_var") or "preflight_probe")
        hostvars = task_vars["hostvars"]
        probes: dict[str, Any] = {}
        for host in hosts:
            probe = hostvars[host].get(var)
            if not isinstance(probe, Mapping) or "results" not in probe:
                return {**result, "failed": True, "msg": f"{host} has no {var} from kubestrap_preflight_probe"}
            probes[host] = probe
        cached = {}
        for host in cluster:
            if host in probes or host not in hostvars:
                continue
            facts = hostvars[host].get("ansible_facts") or {}
            if any(facts.get(f"preflight_{key}") for key in IDENTITY):
                cached[host] = {key: str(facts.get(f"preflight_{key}") or "") for key in IDENTITY}
        judged = verdict(probes, cached, cluster)
        return {**result, "changed": False, **judged,
                "warnings": list(judged["runtime_warnings"].values()),
                "ansible_stats": {"data": {"kubestrap_preflight": judged["hosts"]}, "per_host": False, "aggregate": True}}
