"""The verify phase's Prometheus check on the REAL API server: the role's kubectl reads the targets API through the
API server's service proxy, at the path the role builds, and judges the answer.

Prometheus itself cannot run here (no upstream image), so a small HTTP server of this test stands for it: it answers
`/api/v1/targets?state=active` with a target list this test writes, behind a Service of the name the role derives
(`<kube-prometheus-stack release>-prometheus`, port 9090) whose endpoints point at it. The API server refuses to
proxy to loopback addresses, so the stand-in listens on this machine's own non-loopback IPv4 address."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers import ANSIBLE_PLAYBOOK, ROLE_PATHS, ROOT

NAMESPACE = "test-verify-prometheus"
SERVICE = "kube-prometheus-stack-prometheus"


def _own_address() -> str:
    """One of this machine's global-scope IPv4 addresses (iproute2)."""
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True,
                           check=True).stdout.split()  # fmt: skip
    addresses = [shown[i + 1].split("/")[0] for i, word in enumerate(shown[:-1]) if word == "inet"]
    assert addresses, "no global IPv4 address here: the API server proxies to no loopback address"
    return addresses[0]


@contextmanager
def prometheus_stand_in(address: str, answer: dict) -> Iterator[tuple[int, list[str]]]:
    """Serves *answer* as Prometheus' targets API on *address*; yields the port and the paths requested."""
    paths: list[str] = []

    class Targets(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            body = json.dumps(answer).encode() if self.path.startswith("/api/v1/targets") else b"{}"
            self.send_response(200 if self.path.startswith("/api/v1/targets") else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, 0), Targets)
    thread = threading.Thread(target=server.serve_forever, name="prometheus-stand-in", daemon=True)
    thread.start()
    try:
        yield server.server_address[1], paths
    finally:
        server.shutdown()
        server.server_close()


def _service(real_cluster, address: str, port: int) -> None:
    """A Service without selector, named as kube-prometheus-stack names Prometheus', whose endpoints point at the
    stand-in through a Pod object carrying its address (the API server proxies only to addresses that are a pod's;
    no kubelet runs the pod: its status is written here)."""
    pod = "prometheus-stand-in"
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        # no controller-manager here makes the namespace's default ServiceAccount, which admission looks up
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": NAMESPACE},
         "spec": {"containers": [{"name": "prometheus", "image": "stand-in.invalid/prometheus:1"}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": NAMESPACE},
         "spec": {"ports": [{"name": "http-web", "port": 9090, "targetPort": port}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": SERVICE, "namespace": NAMESPACE},
         "subsets": [{"addresses": [{"ip": address, "targetRef": {"kind": "Pod", "name": pod, "namespace": NAMESPACE}}],
                      "ports": [{"name": "http-web", "port": port}]}]},
    ]  # fmt: skip
    real_cluster.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    status = {"status": {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}]}}
    real_cluster.kubectl("-n", NAMESPACE, "patch", "pod", pod, "--subresource=status", "--type=merge", "-p",
                         json.dumps(status))  # fmt: skip


def _verify(real_cluster, tmp: Path, expected: list[dict]) -> subprocess.CompletedProcess[str]:
    extra = {"ansible_python_interpreter": sys.executable, "verify_kubectl_bin": real_cluster.kubectl_bin,
             "verify_kubeconfig": str(real_cluster.kubeconfig), "verify_helm_bin": str(tmp / "no-helm"),
             "verify_expected_nodes": [], "verify_require_node_ready": False, "verify_require_workloads_ready": False,
             "verify_ingress_probe": False, "verify_probe_image": "unused:1", "verify_retries": 1, "verify_delay": 0,
             "verify_prometheus_targets": True, "verify_prometheus_namespace": NAMESPACE,
             "verify_prometheus_expected": expected}  # fmt: skip
    (tmp / "extra.json").write_text(json.dumps(extra))
    play = [{"name": "Verify", "hosts": "localhost", "gather_facts": False, "roles": [{"role": "verify"}]}]
    (tmp / "play.yml").write_text(json.dumps(play))
    env = dict(os.environ, **ROLE_PATHS, ANSIBLE_LOCALHOST_WARNING="false", HOME=real_cluster.home)
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-c", "local", "-i", "localhost,", "-e", f"@{ROOT}/group_vars/all/cluster.yml",
         "-e", f"@{tmp / 'extra.json'}", str(tmp / "play.yml")],
        capture_output=True, text=True, env=env, cwd=tmp, timeout=300,
    )  # fmt: skip


def test_verify_reads_prometheus_targets_through_the_real_api_server(real_cluster, tmp_path: Path):
    address = _own_address()
    answer = {"status": "success", "data": {"droppedTargets": [], "activeTargets": [
        {"labels": {"namespace": "longhorn-system"}, "scrapePool": "serviceMonitor/longhorn-system/longhorn/0",
         "health": "up", "lastError": ""},
        {"labels": {"namespace": "falco"}, "scrapePool": "serviceMonitor/falco/falco/0", "health": "down",
         "lastError": "context deadline exceeded"}]}}  # fmt: skip
    with prometheus_stand_in(address, answer) as (port, paths):
        _service(real_cluster, address, port)
        (tmp_path / "ok").mkdir()
        scraped = _verify(real_cluster, tmp_path / "ok", [{"addon": "longhorn", "namespace": "longhorn-system"}])
        assert scraped.returncode == 0, scraped.stdout[-3000:]
        assert paths == ["/api/v1/targets?state=active"]  # the role's path, proxied by the API server as it is
        (tmp_path / "gap").mkdir()
        gap = _verify(real_cluster, tmp_path / "gap", [{"addon": "longhorn", "namespace": "longhorn-system"},
                                                       {"addon": "falco", "namespace": "falco"}])  # fmt: skip
    assert gap.returncode == 2, gap.stdout[-3000:]
    assert ("these have no target up: falco (1 target(s) in falco, none up: context deadline exceeded)."
            in " ".join(gap.stdout.split())), gap.stdout[-3000:]  # fmt: skip
