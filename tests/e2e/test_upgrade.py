"""End-to-end upgrade on real VMs: a cluster formed at the Kubernetes minor before the pin is upgraded to the pin
with `bootstrap.py upgrade`, while a workload (a Deployment of 2 replicas and a PodDisruptionBudget) stays available.

The lab is its own (`e2e-upgrade`: one control plane, one worker), on the lab's local artifact mirror in its
previous-minor variant (kubestrap/lab/mirror.py `build(previous=True)`): kubeadm, kubelet, kubectl and the control
plane of k8s.io/kubernetes v1.35.4 and of the pin's build, all built from their Go modules
(kubestrap/lab/sources/build.py). The cluster is formed with the mirror's "previous" settings, then the inventory is
switched to its pin settings, as a user bumps the pins, and `upgrade` runs: `kubeadm upgrade apply` on the control
plane (etcd and CoreDNS move to the pin's versions too), then the worker drained, its kubelet replaced, uncordoned.

The workload is the test image (static busybox from Debian, tests/fixtures/artifact_mirror.py: registries cannot be
reached here) running busybox's httpd, with a readiness probe; its replicas tolerate the control plane's taint so
the two nodes can each hold one while the other is drained. Extended: it forms a cluster of its own (about 40 min
under TCG); run it alone: `pytest -m extended tests/e2e/test_upgrade.py`.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
import yaml
from e2e_support import ROOT, Cluster, start_cluster

from kubestrap import upgrade
from kubestrap.lab import mirror as lab_mirror

LAB = "e2e-upgrade"
CP, WORKER = f"{LAB}-cp", f"{LAB}-worker1"
IMAGE = "docker.io/kubestrap/busybox:test"
UPGRADED: list[str] = []  # the target, once the upgrade test passed
WORKLOAD = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: default}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      tolerations: [{{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}}]
      topologySpreadConstraints:
        - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway,
            labelSelector: {{matchLabels: {{app: web}}}}}}
      terminationGracePeriodSeconds: 5
      containers:
        - name: web
          image: {IMAGE}
          imagePullPolicy: Never
          command: [/bin/busybox, httpd, -f, -p, "8080", -h, /]
          readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 2}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: web, namespace: default}}
spec:
  minAvailable: 1
  selector: {{matchLabels: {{app: web}}}}
"""


@pytest.fixture(scope="module")
def old_cluster(tmp_path_factory):
    yield from start_cluster(tmp_path_factory, name=LAB, workers=1, spare=False, kubernetes="previous")


class Availability(threading.Thread):
    """Polls the Deployment's available replicas while the upgrade runs: (seconds, available or None when the API
    did not answer, e.g. while `kubeadm upgrade apply` restarts the API server)."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster, self.samples, self.stop = cluster, [], threading.Event()
        self.started = time.monotonic()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                done = self.cluster.kubectl("get", "deployment", "web", "-o", "jsonpath={.status.availableReplicas}",
                                            timeout=20)  # fmt: skip
                value = int(done.stdout or 0) if done.returncode == 0 else None
            except subprocess.TimeoutExpired:  # the API server did not answer within 20 s
                value = None
            self.samples.append((round(time.monotonic() - self.started, 1), value))
            self.stop.wait(3)


def node_versions(cluster: Cluster) -> dict[str, str]:
    done = cluster.kubectl("get", "nodes", "-o", "json")
    assert done.returncode == 0, done.stderr
    return {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"] for n in json.loads(done.stdout)["items"]}


def server_version(cluster: Cluster) -> str:
    done = cluster.kubectl("version", "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["serverVersion"]["gitVersion"]


@pytest.mark.extended
def test_upgrade_to_the_pin_keeps_the_workload_available(old_cluster: Cluster):
    c = old_cluster
    previous = "v" + str(c.overrides["kubestrap_artifacts"]["kubelet"]["version"])
    built, _ = lab_mirror.build(previous=True)
    pin_settings = built.settings()
    target = "v" + str(pin_settings["kubestrap_artifacts"]["kubelet"]["version"])
    assert previous.split(".")[1] == str(int(target.split(".")[1]) - 1), (previous, target)

    _, summary, _ = c.cli("up")
    assert summary["result"] == "ok"
    assert node_versions(c) == {CP: previous, WORKER: previous}
    assert server_version(c) == previous

    for node in (CP, WORKER):  # the workload's image, as a site's own registry would serve it
        c.copy_to(node, c.image_tar, "/root/busybox-oci.tar")
        imported = c.ssh(node, "/usr/local/bin/ctr", "-n", "k8s.io", "images", "import", "/root/busybox-oci.tar")
        assert imported.returncode == 0, imported.stderr
    manifest = c.work / "workload.yaml"
    manifest.write_text(WORKLOAD)
    applied = c.kubectl("apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    rolled = c.kubectl("rollout", "status", "deployment/web", "--timeout=600s", timeout=660)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr

    # the pins move to the next minor (the mirror's pin settings), as a user bumps group_vars/all/versions.yml
    c.overrides = pin_settings
    c.write_inventories()
    _, planned, _ = c.cli("plan", "--upgrade")
    steps = planned["upgrade"]["steps"]
    assert [(s["action"], s["nodes"]) for s in steps] == [(upgrade.APPLY, [CP]), (upgrade.NODE, [WORKER])], steps
    assert planned["upgrade"]["target"] == target.lstrip("v")

    watch = Availability(c)
    watch.start()
    try:
        _, upgraded, _ = c.cli("upgrade", "--yes")
    finally:
        watch.stop.set()
        watch.join(timeout=60)
    (c.work / "availability.json").write_text(json.dumps(watch.samples))
    assert upgraded["result"] == "ok"
    assert node_versions(c) == {CP: target, WORKER: target}
    assert server_version(c) == target
    answered = [value for _, value in watch.samples if value is not None]
    assert len(answered) >= 10, watch.samples
    assert min(answered) >= 1, f"the workload was unavailable during the upgrade: {watch.samples}"
    UPGRADED.append(target)
    # the static pods kubeadm wrote anew keep the inventory's kubeadm patches (the lab's gentler probes)
    manifest = c.ssh(CP, "cat", "/etc/kubernetes/manifests/kube-apiserver.yaml")
    probe = yaml.safe_load(manifest.stdout)["spec"]["containers"][0]["livenessProbe"]
    patched = c.overrides.get("kubeadm_init_patches") or yaml.safe_load(
        (ROOT / "inventories" / "lab" / "group_vars" / "k8s_cluster" / "lab.yml").read_text())["kubeadm_init_patches"]
    wanted = patched["kube-apiserver"]["spec"]["containers"][0]["livenessProbe"]
    assert {key: probe.get(key) for key in wanted} == wanted, probe
    assert f"kube-apiserver:{target}" in yaml.safe_load(manifest.stdout)["spec"]["containers"][0]["image"]
    # kubeadm moved etcd and CoreDNS to the pin's versions with the control plane
    pods = json.loads(c.kubectl("get", "pods", "-n", "kube-system", "-o", "json").stdout)["items"]
    images = {container["image"] for pod in pods for container in pod["spec"]["containers"]}
    assert any(image.endswith(":3.6.8-0") for image in images), images
    assert not any(image.endswith(":3.6.6-0") or image.endswith(":v1.13.1") for image in images), images


@pytest.mark.extended
def test_after_the_upgrade_upgrade_and_up_change_nothing(old_cluster: Cluster):
    c = old_cluster
    # after the test above only: run alone, this would do the upgrade itself, unwatched
    assert UPGRADED, "the upgrade test before this one did not complete; nothing to re-run"
    _, again, _ = c.cli("upgrade", "--yes")
    assert again["upgrade"]["nothing_to_do"] is True, again
    _, summary, _ = c.cli("up")
    assert summary["result"] == "ok"
    assert {host: counts["changed"] for host, counts in summary["hosts"].items()} == {CP: 0, WORKER: 0}, summary

