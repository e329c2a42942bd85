"""Render every add-on's values and manifests once per configuration with ansible-playbook; the add-on tests'
real cluster (`real_cluster`: real kube-apiserver, real helm, fixture charts) and its `rollouts` helper."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE_BIN, ANSIBLE_PLAYBOOK, ROLE_PATHS, ROOT

HERE = Path(__file__).resolve().parent
ROLES = ["cilium", "metallb", "cert_manager", "longhorn", "nfs_csi", "local_path", "istio", "argocd", "argo_rollouts",
         "falco", "monitoring"]

HOSTS = {
    "all": {
        "children": {
            "addon_render": {
                "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}
            },
            "k8s_cluster": {
                "children": {
                    "k8s_control_plane": {"hosts": {"cp1": {"ansible_host": "192.168.1.10", "node_ip": "192.168.1.10"}}},
                    "k8s_workers": {
                        "hosts": {
                            f"worker{i}": {"ansible_host": f"192.168.1.1{i}", "node_ip": f"192.168.1.1{i}"} for i in (1, 2, 3)
                        }
                    },
                }
            },
        }
    }
}

# Everything on, STRICT mTLS, app-of-apps set, an API endpoint name, and extra values in every role.
MAXIMAL = {
    "addons_enabled": {name: True for name in ROLES},
    "cluster_api_endpoint": "k8s-api.homelab.lan",
    "istio_mtls_mode": "STRICT",
    "istio_gateway_replicas": 3,
    "argocd_app_of_apps_repo": "https://git.homelab.lan/platform/cluster-apps.git",
    "longhorn_replica_count": 5,
    "nfs_csi_server": "nas.homelab.lan",
    "nfs_csi_export_path": "/volume1/kubernetes",
    "monitoring_storage_class": "nfs-csi",
    "loki_retention_hours": 336,
    "monitoring_alertmanager_webhook_url": "https://hook.example/kubestrap", "monitoring_alertmanager_receiver_type": "slack",
    "cilium_extra_values": {"bpf": {"masquerade": True}, "hubble": {"relay": {"replicas": 2}}},
    "metallb_extra_values": {"controller": {"logLevel": "debug"}},
    "cert_manager_extra_values": {"replicaCount": 2},
    "longhorn_extra_values": {"defaultSettings": {"storageMinimalAvailablePercentage": 15}},
    "nfs_csi_extra_values": {"controller": {"logLevel": 3}, "storageClass": {"parameters": {"subDir": "${pvc.metadata.name}"}}},
    "local_path_extra_values": {"podAnnotations": {"example.com/team": "storage"}},
    "istio_extra_values": {
        "istiod": {"autoscaleEnabled": False},  # top level: the istiod chart (1.30) has no `pilot` key
        "istio_gateway": {"service": {"loadBalancerIP": "192.168.1.241"}},
    },
    "argocd_extra_values": {"server": {"service": {"type": "LoadBalancer"}}},
    "argo_rollouts_extra_values": {"dashboard": {"enabled": True}},
    "falco_extra_values": {"falco": {"falcosidekick": {"webui": {"enabled": True}}}, "falco_talon": {"replicaCount": 1}},
    "monitoring_extra_values": {
        "kube_prometheus_stack": {"alertmanager": {"enabled": False}},
        "loki": {"singleBinary": {"persistence": {"size": "20Gi"}}},
        "alloy": {"alloy": {"enableReporting": False}},
    },
}


def ansible_env(tmp: Path, home: str) -> dict[str, str]:
    """Environment of an ansible-playbook run against the real control plane (`real_cluster`; tmp/ansible.cfg)."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(tmp / "ansible.cfg"),
        **ROLE_PATHS,
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_NOCOWS": "1",
        "HOME": home,
    }


def render(tmp: Path, overrides: dict | None, roles: list[str] | None = None) -> Path:
    inventory = tmp / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    shutil.copytree(ROOT / "group_vars" / "all", inventory / "group_vars" / "all")
    (inventory / "hosts.yml").write_text(yaml.safe_dump(HOSTS))
    out = tmp / "out"
    out.mkdir()
    extra = {"render_dir": str(out), "addon_render_roles": roles or ROLES, **(overrides or {})}
    (tmp / "extra.yml").write_text(yaml.safe_dump(extra))
    (tmp / "ansible.cfg").write_text("[defaults]\n")
    env = {
        **os.environ,
        **ROLE_PATHS,
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_NOCOWS": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_CONFIG": str(tmp / "ansible.cfg"),
        "PATH": f"{ANSIBLE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inventory / "hosts.yml"), str(HERE / "render.yml"), "-e", f"@{tmp / 'extra.yml'}"],
        capture_output=True, text=True, env=env, cwd=tmp, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"rendering failed (rc={proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return out


class Rendered:
    def __init__(self, out: Path):
        self.out = out
        self.values = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((out / "values").glob("*.yaml"))}
        self.manifests = {}
        for path in sorted((out / "manifests").glob("*.yaml")):
            self.manifests[path.name] = [d for d in yaml.safe_load_all(path.read_text()) if d]

    def docs(self) -> list[tuple[str, dict]]:
        return [(name, doc) for name, docs in self.manifests.items() for doc in docs]

    def releases(self) -> list[tuple[str, str, dict]]:
        """(role, chart key, values) for every rendered release."""
        return [(role, key, vals) for role, per_chart in self.values.items() for key, vals in per_chart.items()]


def render_once(tmp_path_factory, name: str, overrides: dict | None) -> Path:
    """render() once per test run: pytest-xdist's workers (one session each) share it, under a lock, instead of each
    rendering it again (an ansible-playbook run of 20-40 s on two busy cores). Rendered into a directory of its own
    and renamed when complete, so a failed rendering leaves nothing another worker could take for a result."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return render(tmp_path_factory.mktemp(name), overrides)
    run_dir = tmp_path_factory.getbasetemp().parent  # this run's, shared by its workers
    done = run_dir / f"rendered-{name}"
    with open(run_dir / f"rendered-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_dir():
            work = Path(tempfile.mkdtemp(prefix=f".rendering-{name}-", dir=run_dir))
            render(work, overrides)
            work.rename(done)
    return done / "out"


@pytest.fixture(scope="session")
def rendered_default(tmp_path_factory) -> Rendered:
    return Rendered(render_once(tmp_path_factory, "default", None))


@pytest.fixture(scope="session")
def rendered_max(tmp_path_factory) -> Rendered:
    return Rendered(render_once(tmp_path_factory, "maximal", MAXIMAL))


@pytest.fixture(scope="session", params=["default", "maximal"])
def rendered(request) -> Rendered:
    return request.getfixturevalue(f"rendered_{'max' if request.param == 'maximal' else 'default'}")


@pytest.fixture(scope="session")
def charts() -> dict:
    return yaml.safe_load((ROOT / "group_vars" / "all" / "versions.yml").read_text())["kubestrap_charts"]


class RealCluster:
    """The add-on tests' cluster: the REAL kube-apiserver (tests/k8s_real.py), REAL helm built from its Go module
    (kubestrap/lab/sources/build.py helm) and the fixture charts (tests/fixtures/charts.py) served as a Helm chart
    repository over HTTP on 127.0.0.1 (`charts_url`, what kubestrap_charts_repo_base_url points at)."""

    def __init__(self, plane, helm: Path, charts_url: str) -> None:
        self.plane = plane
        self.helm_bin = str(helm)
        self.charts_url = charts_url

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    @property
    def kubectl_bin(self) -> str:
        return self.plane.kubectl_bin

    @property
    def home(self) -> str:
        return self.plane.home

    def kubectl(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, **kwargs)

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.helm_bin, *args, "--kubeconfig", str(self.kubeconfig)], capture_output=True,
                              text=True, check=True, env={**os.environ, "HOME": self.home}, timeout=120)  # fmt: skip


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory):
    """ONE real control plane for the session's add-on tests (each keeps to namespaces of its own, test-* except
    the add-on phase's), with real helm and the fixture chart repository."""
    import http.server
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from k8s_real import started, upstream_dir

    from tests.fixtures.charts import build_repo

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(base / "charts" / "repo"), **kwargs)

        def log_message(self, *args) -> None:
            pass

    base = tmp_path_factory.mktemp("addons-cluster")
    helm = upstream_dir("helm") / "helm"
    with ThreadPoolExecutor(1) as pool:  # the charts are packaged while the control plane starts
        repo = pool.submit(build_repo, helm, base / "charts", {**os.environ, "HOME": str(base)})
        with started(base / "plane") as plane:
            repo.result()
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
            thread = threading.Thread(target=server.serve_forever, name="fixture-chart-repo", daemon=True)
            thread.start()
            try:
                yield RealCluster(plane, helm, f"http://127.0.0.1:{server.server_address[1]}/")
            finally:
                server.shutdown()
                server.server_close()


@pytest.fixture
def rollouts(real_cluster):
    """The fixture charts' workloads marked rolled out while the test runs (tests/fixtures/rollouts.py: stands
    for the controllers and kubelets running the upstream images)."""
    from tests.fixtures.rollouts import Rollouts

    with Rollouts(real_cluster.plane) as helper:
        yield helper
