"""The verify phase (roles/verify): its readiness filters, and its probe manifest validated offline
(core kinds with kubernetes-validate, Istio Gateway/VirtualService against strict models)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ROLE_PATHS, ROOT

from tests.addons import validator
from tests.addons.test_addons_render import CORE_API_VERSIONS, k8s_schema_version

_spec = importlib.util.spec_from_file_location("readiness", ROOT / "filter_plugins/readiness.py")
assert _spec and _spec.loader
checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checks)


def node(name: str, ready: str | None) -> dict:
    conditions = [] if ready is None else [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": ready}]
    return {"kind": "Node", "metadata": {"name": name}, "status": {"conditions": conditions}}


def test_node_rows_for_the_status_table_and_ups_summary():
    """kubestrap_node_rows (status.yml and verify's report): name, kubelet, Ready status; Unknown without one."""
    items = [node("cp", "True"), node("w1", None)]
    items[0]["status"]["nodeInfo"] = {"kubeletVersion": "v1.36.3"}
    assert checks.node_rows(items) == [["cp", "v1.36.3", "True"], ["w1", "", "Unknown"]]


def test_nodes_missing_or_not_ready_are_named():
    items = [node("cp", "True"), node("w1", "False"), node("w2", None)]
    assert checks.unready_nodes(items, ["cp", "w1", "w2", "w3"]) == [
        "w1 (Ready=False)", "w2 (Ready=Unknown)", "w3 (not registered)",
    ]  # fmt: skip
    assert checks.unready_nodes(items, ["cp", "w1", "w2", "w3"], require_ready=False) == ["w3 (not registered)"]
    assert checks.unready_nodes(items, ["cp"]) == []


DS = "DaemonSet"


def workload(kind: str, spec: dict, status: dict, generation: int = 2, observed: int = 2) -> dict:
    return {
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns", "generation": generation},
        "spec": spec,
        "status": {"observedGeneration": observed, **status},
    }


@pytest.mark.parametrize(
    ("obj", "gap"),
    [
        (workload("Deployment", {"replicas": 2}, {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}), ""),
        (workload("Deployment", {"replicas": 2}, {"replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}), "2/2 available"),
        (workload("Deployment", {"replicas": 2}, {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}), "1/2 available"),
        (workload("Deployment", {}, {"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}, observed=1), "not seen"),
        (workload(DS, {}, {"desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}), ""),
        (workload(DS, {}, {"desiredNumberScheduled": 3, "updatedNumberScheduled": 2, "numberAvailable": 3}), "2 updated"),
        (workload("StatefulSet", {"replicas": 1}, {"readyReplicas": 1, "updatedReplicas": 1}), ""),
        (workload("StatefulSet", {"replicas": 1}, {"readyReplicas": 0, "updatedReplicas": 1}), "0/1 ready"),
    ],
)
def test_workload_readiness_follows_rollout_status(obj, gap):
    problems = checks.unready_workloads([obj])
    if gap:
        assert len(problems) == 1 and problems[0].startswith(f"{obj['kind']} ns/x: ") and gap in problems[0]
    else:
        assert problems == []


@pytest.mark.parametrize(
    ("ip", "pool", "inside"),
    [
        ("192.168.1.200", "192.168.1.200-192.168.1.220", True),
        ("192.168.1.221", "192.168.1.200-192.168.1.220", False),
        ("10.77.0.5", "10.77.0.0/28", True),
        ("10.77.0.16", "10.77.0.0/28", False),
        ("10.0.0.1", ["192.168.1.200-192.168.1.220", "10.0.0.0/24"], True),
        ("not-an-ip", "10.0.0.0/24", False),
        ("", "10.0.0.0/24", False),
    ],
)
def test_gateway_ip_must_come_from_the_pool(ip, pool, inside):
    assert checks.ip_in_pool(ip, pool) is inside


def test_probe_manifest_validates(tmp_path: Path):
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Render the verify probe",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Render",
                            "ansible.builtin.include_role": {"name": "verify", "tasks_from": "render.yml"},
                            "vars": {"verify_dir": str(tmp_path / "out")},
                        }
                    ],
                }
            ]
        )
    )
    env = dict(os.environ, **ROLE_PATHS, ANSIBLE_LOCALHOST_WARNING="false")
    extra = ["-e", f"ansible_python_interpreter={sys.executable}"]
    extra += [arg for name in ("versions", "cluster", "addons") for arg in ("-e", f"@{ROOT}/group_vars/all/{name}.yml")]
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-c", "local", "-i", "localhost,", *extra, str(playbook)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    docs = [d for d in yaml.safe_load_all((tmp_path / "out" / "probe.yaml").read_text()) if d]
    assert [d["kind"] for d in docs] == ["Namespace", "Deployment", "Service", "Gateway", "VirtualService"]
    models = validator.cr_models()
    errors = []
    for doc in docs:
        if doc["apiVersion"] in CORE_API_VERSIONS:
            try:
                kubernetes_validate.validate(doc, k8s_schema_version(), strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{doc['kind']}: {exc.message}")
        else:
            errors += validator.check_cr(doc, models)
    assert errors == []
    gateway = docs[3]
    assert gateway["spec"]["selector"] == {"istio": "ingressgateway"}
    route = docs[4]["spec"]["http"][0]["route"][0]["destination"]
    assert route["host"] == "echo.kubestrap-verify.svc.cluster.local"
    assert docs[1]["spec"]["template"]["spec"]["containers"][0]["image"].startswith("registry.k8s.io/e2e-test-images/agnhost:")


def test_a_typo_in_the_probe_is_caught_by_the_models():
    models = validator.cr_models()
    bad = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "echo", "namespace": "x"},
        "spec": {"hosts": ["h"], "http": [{"route": [{"destinaton": {"host": "echo"}}]}]},
    }
    assert validator.check_cr(bad, models) != []


def test_verify_is_the_last_phase_of_up():
    site = yaml.safe_load((ROOT / "playbooks/site.yml").read_text())
    assert site[-1]["tags"] == ["verify"] and site[-1]["ansible.builtin.import_playbook"] == "verify.yml"


def test_namespace_readiness_counts_rolled_out_workloads():
    ready = workload("Deployment", {"replicas": 1}, {"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1})
    stuck = workload(DS, {}, {"desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 1})
    other = json.loads(json.dumps(ready))
    other["metadata"]["namespace"] = "metallb-system"
    assert checks.namespace_readiness([ready, stuck, other]) == {"ns": "1/2 ready", "metallb-system": "1/1 ready"}


def test_status_table_joins_releases_with_their_namespace_readiness():
    from kubestrap import cli

    stats = {"kubestrap_status": {
        "addons": [{"name": "metallb", "namespace": "metallb-system", "chart": "metallb-0.16.1", "status": "deployed"},
                   {"name": "istio-base", "namespace": "istio-system", "chart": "base-1.30.3", "status": "deployed"}],
        "workloads": {"metallb-system": "2/2 ready"},
    }}  # fmt: skip
    rows = cli._status_addons(stats["kubestrap_status"])
    assert [r["workloads"] for r in rows] == ["2/2 ready", "no workloads"]


KUBECTL = """#!/bin/sh
# stands for kubectl get ... -o json against a cluster with one Ready node and one Deployment, and for Prometheus'
# targets API read through the API server (no Prometheus image runs here): the answer in $TARGETS. Every call is
# recorded in $CALLS.
echo "$*" >> "$CALLS"
case "$*" in
  *" get nodes "*) cat "$NODES" ;;
  *" get nodes,deployments,daemonsets,statefulsets "*)  # one List of both, as kubectl returns several kinds
    python3 -c 'import json, sys
items = [i for f in sys.argv[1:] for i in json.load(open(f))["items"]]
print(json.dumps({"kind": "List", "items": items}))' "$NODES" "$WORKLOADS" ;;
  *" get --raw "*) echo "$*" >> "$RAW_CALLS"; cat "$TARGETS" ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
"""


def run_verify(tmp: Path, workloads: list[dict], targets: str = "", **settings) -> subprocess.CompletedProcess[str]:
    (tmp / "targets.json").write_text(targets)
    kubectl = tmp / "kubectl"
    kubectl.write_text(KUBECTL)
    kubectl.chmod(0o755)
    (tmp / "workloads.json").write_text(json.dumps({"items": workloads}))
    (tmp / "nodes.json").write_text(json.dumps({"items": [node("cp1", "True")]}))
    extra = {"ansible_python_interpreter": sys.executable, "verify_kubectl_bin": str(kubectl),
             "verify_helm_bin": str(tmp / "no-helm"), "verify_expected_nodes": ["cp1"], "verify_retries": 1,
             "verify_delay": 0, "verify_ingress_probe": False, "addons_enabled": {}, "verify_probe_image": "unused:1",
             **settings}  # fmt: skip
    (tmp / "extra.json").write_text(json.dumps(extra))
    play = [{"name": "Verify", "hosts": "localhost", "gather_facts": False, "roles": [{"role": "verify"}]}]
    (tmp / "play.yml").write_text(json.dumps(play))
    env = dict(os.environ, **ROLE_PATHS, ANSIBLE_LOCALHOST_WARNING="false",
               WORKLOADS=str(tmp / "workloads.json"), NODES=str(tmp / "nodes.json"), TARGETS=str(tmp / "targets.json"),
               RAW_CALLS=str(tmp / "raw-calls"), CALLS=str(tmp / "calls"))  # fmt: skip
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-c", "local", "-i", "localhost,", "-e", f"@{ROOT}/group_vars/all/cluster.yml",
         "-e", f"@{tmp / 'extra.json'}", str(tmp / "play.yml")],
        capture_output=True, text=True, env=env, cwd=tmp,
    )  # fmt: skip


def test_verify_passes_when_everything_is_rolled_out(tmp_path: Path):
    ready = workload("Deployment", {"replicas": 1}, {"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1})
    proc = run_verify(tmp_path, [ready], verify_require_node_ready=True, verify_require_workloads_ready=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def _gets(tmp: Path) -> list[str]:
    """What verify asked kubectl to get (the resource argument of each `get` call)."""
    return [call.split(" get ", 1)[1].split()[0] for call in (tmp / "calls").read_text().splitlines() if " get " in call]


def test_nodes_and_workloads_are_read_together_once_when_both_are_awaited(tmp_path: Path):
    """One kubectl run (one module run on the control plane) answers both waits; without awaited workloads only the
    nodes are read."""
    ready = workload("Deployment", {"replicas": 1}, {"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1})
    proc = run_verify(tmp_path, [ready], verify_require_workloads_ready=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert _gets(tmp_path) == ["nodes,deployments,daemonsets,statefulsets"]
    (tmp_path / "calls").unlink()
    proc = run_verify(tmp_path, [ready])
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert _gets(tmp_path) == ["nodes"]


def test_a_node_not_ready_is_named_when_the_workloads_are_read_with_it(tmp_path: Path):
    proc = run_verify(tmp_path, [], verify_require_workloads_ready=True, verify_require_node_ready=True,
                      verify_expected_nodes=["cp1", "worker1"])  # fmt: skip
    assert proc.returncode == 2
    assert "for the nodes and these are not Ready: worker1 (not registered)" in " ".join(proc.stdout.split())


def test_verify_names_the_workload_that_is_not_rolled_out(tmp_path: Path):
    stuck = workload("Deployment", {"replicas": 2}, {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 1})
    proc = run_verify(tmp_path, [stuck], verify_require_workloads_ready=True)
    assert proc.returncode == 2
    assert "these are not rolled out: Deployment ns/x: 1/2 available" in " ".join(proc.stdout.split())


def test_without_a_cni_of_ours_pending_workloads_are_not_awaited(tmp_path: Path):
    stuck = workload("Deployment", {"replicas": 2}, {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 0})
    proc = run_verify(tmp_path, [stuck])  # addons_enabled.cilium unset: CoreDNS waits for the user's CNI
    assert proc.returncode == 0, proc.stdout[-3000:]


def _helm(tmp: Path, script: str) -> str:
    helm = tmp / "helm"
    helm.write_text("#!/bin/sh\n" + script)
    helm.chmod(0o755)
    return str(helm)


def test_without_helm_there_is_no_release_to_check(tmp_path: Path):
    """A node where no add-on was ever installed has no helm: one module run finds that, verify passes."""
    proc = run_verify(tmp_path, [])
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Read the Helm releases" in proc.stdout and "Look for helm" not in proc.stdout


def test_a_release_not_deployed_is_named(tmp_path: Path):
    releases = [{"name": "metallb", "namespace": "metallb-system", "status": "deployed"},
                {"name": "longhorn", "namespace": "longhorn-system", "status": "failed"}]  # fmt: skip
    helm = _helm(tmp_path, f"echo '{json.dumps(releases)}'\n")
    proc = run_verify(tmp_path, [], verify_helm_bin=helm)
    assert proc.returncode == 2
    assert "Helm releases not deployed: longhorn-system/longhorn/failed." in " ".join(proc.stdout.split())


def test_helm_that_cannot_reach_the_cluster_fails_verify(tmp_path: Path):
    helm = _helm(tmp_path, "echo 'Error: Kubernetes cluster unreachable' >&2; exit 1\n")
    proc = run_verify(tmp_path, [], verify_helm_bin=helm)
    assert proc.returncode == 2
    assert "Kubernetes cluster unreachable" in proc.stdout


def test_kubectl_apply_changed_when_some_object_is_not_unchanged():
    spec = importlib.util.spec_from_file_location("kubectl_apply", ROOT / "filter_plugins/kubectl_apply.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    changed = module.FilterModule().filters()["kubestrap_apply_changed"]
    assert changed(["ipaddresspool.metallb.io/pool configured", "l2advertisement.metallb.io/l2 unchanged"])
    assert not changed(["ipaddresspool.metallb.io/pool unchanged", "l2advertisement.metallb.io/l2 unchanged"])
    assert not changed([])
    assert changed(["namespace/unchanged created"])  # only the ending counts


# --- Prometheus' scrape targets (issue #22: every monitored add-on has a target up) ----------------------------


def target(namespace: str, pool: str, health: str = "up", error: str = "") -> dict:
    """One entry of Prometheus' /api/v1/targets activeTargets, as prometheus-operator's scrape configs label it."""
    return {"labels": {"namespace": namespace, "job": pool.split("/")[2] if "/" in pool else pool},
            "scrapePool": pool, "health": health, "lastError": error}  # fmt: skip


def answer(*targets: dict) -> str:
    return json.dumps({"status": "success", "data": {"activeTargets": list(targets), "droppedTargets": []}})


EXPECTED = [
    {"addon": "cilium", "namespace": "kube-system", "monitor": "cilium", "enabled": True},
    {"addon": "longhorn", "namespace": "longhorn-system", "enabled": "True"},
    {"addon": "loki", "namespace": "monitoring", "monitor": "loki", "enabled": True},
    {"addon": "falco", "namespace": "falco", "enabled": False},
]


def test_every_monitored_addon_with_a_target_up_leaves_no_gap():
    ok = answer(target("kube-system", "serviceMonitor/kube-system/cilium-agent/0"),
                target("longhorn-system", "serviceMonitor/longhorn-system/longhorn-prometheus-servicemonitor/0"),
                target("monitoring", "serviceMonitor/monitoring/loki/0", health="down", error="timeout"),
                target("monitoring", "serviceMonitor/monitoring/loki/1"))  # fmt: skip
    assert checks.scrape_gaps(ok, EXPECTED) == []  # falco is off: not looked for
    assert checks.scrape_gaps(json.loads(ok), EXPECTED) == []


def test_an_addon_without_a_target_or_with_none_up_is_named():
    # kube-system's other targets (the kubelet, CoreDNS) do not stand for Cilium; Loki's are all down
    gaps = checks.scrape_gaps(answer(
        target("kube-system", "serviceMonitor/monitoring/kube-prometheus-stack-kubelet/0"),
        target("kube-system", "serviceMonitor/monitoring/kube-prometheus-stack-coredns/0"),
        target("monitoring", "serviceMonitor/monitoring/loki/0", health="down", error="connection refused"),
        target("monitoring", "serviceMonitor/monitoring/kube-prometheus-stack-prometheus/0"),
    ), EXPECTED)  # fmt: skip
    assert gaps == ["cilium (no target in kube-system from the monitor cilium)",
                    "longhorn (no target in longhorn-system)",
                    "loki (1 target(s) in monitoring from the monitor loki, none up: connection refused)"]  # fmt: skip


@pytest.mark.parametrize("bad", ["<html>503</html>", json.dumps({"status": "error", "error": "x"}), ""])
def test_an_answer_that_is_no_target_list_is_a_gap(bad: str):
    gaps = checks.scrape_gaps(bad, EXPECTED)
    assert len(gaps) == 1 and gaps[0].startswith("Prometheus' targets API answered no")


def _namespace(role: str, var: str) -> str:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())[var]


def _all_monitored_targets() -> list[dict]:
    """A target up for every add-on the default settings monitor, in the roles' default namespaces and from monitors
    named as the charts name them after the default releases (the names verify's defaults expect)."""
    mon = _namespace("monitoring", "monitoring_namespace")
    pools = [("cilium", "cilium_namespace", "cilium-agent"), ("cilium", "cilium_namespace", "hubble"),
             ("metallb", "metallb_namespace", "metallb-controller"),
             ("cert_manager", "cert_manager_namespace", "cert-manager"),
             ("longhorn", "longhorn_namespace", "longhorn-prometheus-servicemonitor"),
             ("istio", "istio_namespace", "istiod"), ("argocd", "argocd_namespace", "argocd-server"),
             ("argo_rollouts", "argo_rollouts_namespace", "argo-rollouts"), ("falco", "falco_namespace", "falco")]
    found = [target(_namespace(role, var), f"serviceMonitor/{_namespace(role, var)}/{name}/0") for role, var, name in pools]
    return found + [target(mon, f"serviceMonitor/{mon}/{name}/0") for name in ("loki", "alloy", "pushgateway")]


ALL_ON = {"cilium": True, "metallb": True, "cert_manager": True, "longhorn": True, "istio": True, "argocd": True,
          "argo_rollouts": True, "falco": True, "monitoring": True}  # fmt: skip


def test_verify_reads_prometheus_targets_through_the_api_server_and_passes_when_each_addon_is_scraped(tmp_path: Path):
    proc = run_verify(tmp_path, [], answer(*_all_monitored_targets()), addons_enabled=ALL_ON,
                      verify_require_workloads_ready=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    calls = (tmp_path / "raw-calls").read_text().split("\n")
    assert calls[0].split()[-3:] == [
        "get", "--raw",
        "/api/v1/namespaces/monitoring/services/kube-prometheus-stack-prometheus:9090/proxy/api/v1/targets?state=active",
    ]  # fmt: skip


def test_verify_names_the_addon_prometheus_does_not_scrape(tmp_path: Path):
    targets = [t for t in _all_monitored_targets() if t["labels"]["namespace"] != "longhorn-system"]
    proc = run_verify(tmp_path, [], answer(*targets), addons_enabled=ALL_ON, verify_require_workloads_ready=True)
    assert proc.returncode == 2
    out = " ".join(proc.stdout.split())
    assert ("to scrape every add-on it monitors, and these have no target up: longhorn (no target in longhorn-system)."
            in out), out[-3000:]  # fmt: skip
    assert "port-forward svc/kube-prometheus-stack-prometheus 9090" in out


def test_targets_are_not_looked_for_while_monitoring_is_off_or_nothing_runs(tmp_path: Path):
    """Monitoring off, or workloads not awaited (no CNI of ours: Prometheus cannot run): no targets API call."""
    for name, settings in {"off": {"addons_enabled": {**ALL_ON, "monitoring": False},
                                   "verify_require_workloads_ready": True},
                           "no-cni": {"addons_enabled": ALL_ON, "verify_require_workloads_ready": False}}.items():  # fmt: skip
        work = tmp_path / name
        work.mkdir()
        proc = run_verify(work, [], "", **settings)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert not (work / "raw-calls").exists()
