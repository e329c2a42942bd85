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
    return {"metadata": {"name": name}, "status": {"conditions": conditions}}


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
# stands for kubectl get ... -o json against a cluster with one Ready node and one Deployment
case "$*" in
  *" get nodes "*) cat "$NODES" ;;
  *" get deployments,daemonsets,statefulsets "*) cat "$WORKLOADS" ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
"""


def run_verify(tmp: Path, workloads: list[dict], **settings) -> subprocess.CompletedProcess[str]:
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
               WORKLOADS=str(tmp / "workloads.json"), NODES=str(tmp / "nodes.json"))  # fmt: skip
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-c", "local", "-i", "localhost,", "-e", f"@{ROOT}/group_vars/all/cluster.yml",
         "-e", f"@{tmp / 'extra.json'}", str(tmp / "play.yml")],
        capture_output=True, text=True, env=env, cwd=tmp,
    )  # fmt: skip


def test_verify_passes_when_everything_is_rolled_out(tmp_path: Path):
    ready = workload("Deployment", {"replicas": 1}, {"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1})
    proc = run_verify(tmp_path, [ready], verify_require_node_ready=True, verify_require_workloads_ready=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


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
