"""Air-gapped image preload end to end on this machine (no VM): the REAL `artifacts` phase playbook fetches the
cluster's OCI image archives from a local HTTP mirror (the archives kubestrap/lab/sources/images.py makes from the built
programs, laid out by tests/fixtures/image_registry.mirror_images) into the controller cache, verified against
their digests, and stages them on a control-plane node (every image) and a worker (coredns and pause only); then
the containerd role's preload (roles/containerd/tasks/images.yml, the kubestrap_images module) imports them into
a REAL containerd (the built one, as tests/test_upstream_images.py runs it) in k8s.io. A second run of both changes
nothing; an archive that does not hold the pinned digest is refused before anything is imported."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ARCH_MAP, ROOT

from tests.fixtures import image_registry
from tests.test_upstream_images import Containerd  # a missing build FAILS there, naming the build command

VERSIONS = yaml.safe_load((ROOT / "group_vars" / "all" / "versions.yml").read_text())
CONTROL_PLANE_ONLY = {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"}


def _url_path(entry: dict) -> str:
    return re.sub(r"^https?://", "", entry["url"].replace("{version}", entry["version"]).replace("{arch}", "amd64"))


@pytest.fixture
def lab(http_server, tmp_path):
    """Mirror (stand-in files + the cluster's real image archives), inventory of two local nodes, override file."""
    artifacts = {}
    for name, entry in VERSIONS["kubestrap_artifacts"].items():
        data = f"stand-in for {name}\n".encode()
        http_server.put(_url_path(entry), data)
        artifacts[name] = {**entry, "sha256": {"amd64": hashlib.sha256(data).hexdigest()}}
    try:
        images = image_registry.mirror_images(http_server.root)
    except Exception as exc:  # a missing build: say which
        pytest.fail(f"cannot make the image archives: {exc}")
    override = {
        "kubestrap_artifacts_base_url": http_server.url,
        "kubestrap_artifacts": artifacts,
        "artifacts_controller_cache_dir": str(tmp_path / "cache"),
        # the preload playbook lives outside playbooks/, where the repository's group_vars/all are not read
        "kubestrap_cluster_images": VERSIONS["kubestrap_cluster_images"],
        "kubestrap_arch_map": ARCH_MAP,
        **images,
    }
    (tmp_path / "override.yml").write_text(yaml.safe_dump(override))
    node = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False}
    hosts = {"cp1": {**node, "node_ip": "127.0.0.1", "artifacts_node_staging_dir": str(tmp_path / "cp1"),
                     "containerd_staging_dir": str(tmp_path / "cp1")},
             "w1": {**node, "node_ip": "127.0.0.2", "artifacts_node_staging_dir": str(tmp_path / "w1"),
                    "containerd_staging_dir": str(tmp_path / "w1")}}  # fmt: skip
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"k8s_cluster": {"children": {
        "k8s_control_plane": {"hosts": {"cp1": hosts["cp1"]}},
        "k8s_workers": {"hosts": {"w1": hosts["w1"]}}}}}}}))  # fmt: skip
    return {"tmp": tmp_path, "server": http_server, "images": images}


def _playbook(lab: dict, playbook: Path, *extra: str, limit: str = "all") -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(lab["tmp"] / "ansible-local"), ANSIBLE_REMOTE_TEMP=str(lab["tmp"] / "ansible-remote"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")  # fmt: skip
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(lab["tmp"] / "hosts.yml"),
         "-e", f"@{lab['tmp'] / 'override.yml'}", "--limit", limit, *extra, str(playbook)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def _recap(output: str, host: str) -> dict[str, int]:
    match = re.search(rf"{host}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert match, output[-3000:]
    return dict(zip(["ok", "changed", "unreachable", "failed"], map(int, match.groups()), strict=True))


def _staged(directory: Path) -> set[str]:
    return {str(p.relative_to(directory / "images").parent) for p in (directory / "images").rglob("*.oci.tar")}


def _preload_playbook(lab: dict, containerd: Containerd) -> Path:
    prefix = lab["tmp"] / "prefix"
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    for tool in ("ctr", "containerd"):
        link = prefix / "bin" / tool
        if not link.exists():
            link.symlink_to(containerd.bin / tool)
    playbook = lab["tmp"] / "preload.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "The containerd role's image preload against the throw-away containerd",
        "hosts": "k8s_cluster", "gather_facts": False,
        "tasks": [
            {"name": "Platform facts", "ansible.builtin.setup": {"gather_subset": ["!all", "!min", "platform"]}},
            {"name": "Preload", "ansible.builtin.include_role": {"name": "containerd", "tasks_from": "images"},
             "vars": {"containerd_prefix": str(prefix), "containerd_socket": str(containerd.address),
                      "containerd_images_snapshotter": "native",
                      # this playbook lives outside playbooks/, so group_vars/all (addons_enabled) is not read
                      "containerd_images_addons": {"cilium": True}}},
        ],
    }]))  # fmt: skip
    return playbook


def _listed(containerd: Containerd) -> dict[str, str]:
    rows = [line.split() for line in containerd.ctr("images", "ls").stdout.splitlines()[1:]]
    return {row[0]: row[2] for row in rows}


def test_stage_and_preload_into_real_containerd_then_nothing_changes(lab, tmp_path):
    # Cilium is on (the default): kube-proxy, which it replaces, travels nowhere
    lock = {n: d for n, d in lab["images"]["kubestrap_images_lock"].items() if "/kube-proxy:" not in n}
    every = {n for n in lock}
    worker = {n for n in lock if n.rsplit("/", 1)[-1].split(":")[0] not in CONTROL_PLANE_ONLY}
    first = _playbook(lab, ROOT / "playbooks" / "artifacts.yml")
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-2000:]
    assert _staged(tmp_path / "cp1") == every and _staged(tmp_path / "w1") == worker == {
        n for n in lock if "/coredns/" in n or "/pause:" in n}  # fmt: skip
    for name_tag in every:
        cached = tmp_path / "cache" / "images" / name_tag / "linux-amd64.oci.tar"
        assert cached.read_bytes() == (tmp_path / "cp1" / "images" / name_tag / "linux-amd64.oci.tar").read_bytes()
    served = len(lab["server"].requests)
    again = _playbook(lab, ROOT / "playbooks" / "artifacts.yml")
    assert again.returncode == 0, again.stdout[-5000:]
    assert _recap(again.stdout, "cp1")["changed"] == 0 and _recap(again.stdout, "w1")["changed"] == 0
    assert len(lab["server"].requests) == served  # verified cache: nothing downloaded again
    # a cluster bringing its own CNI (Cilium off) runs kube-proxy: every node gets its image, and nothing else changes
    (tmp_path / "byo-cni.yml").write_text(yaml.safe_dump({"addons_enabled": {"cilium": False}}))
    byo = _playbook(lab, ROOT / "playbooks" / "artifacts.yml", "-e", f"@{tmp_path / 'byo-cni.yml'}", limit="w1")
    assert byo.returncode == 0, byo.stdout[-5000:]
    proxy = {n for n in lab["images"]["kubestrap_images_lock"] if "/kube-proxy:" in n}
    assert len(proxy) == 1 and _staged(tmp_path / "w1") == worker | proxy

    (tmp_path / "ctd").mkdir()
    daemon = Containerd(tmp_path / "ctd")
    try:
        daemon.start()
        playbook = _preload_playbook(lab, daemon)
        # the control-plane node first: every image imported, by tag at its digest (and by digest)
        done = _playbook(lab, playbook, limit="cp1")
        assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
        assert _recap(done.stdout, "cp1")["changed"] == 1, done.stdout[-4000:]
        listed = _listed(daemon)
        assert {n: listed.get(n) for n in every} == lock
        assert all(f"{n.split(':')[0]}@{d}" in listed for n, d in lock.items())
        check = daemon.ctr("images", "check", "--snapshotter", "native").stdout
        assert all(re.search(rf"^{re.escape(n)}\s.*complete.*true$", check, re.M) for n in every), check
        # again: containerd has every image at its digest, nothing imported, changed=0
        rerun = _playbook(lab, playbook, limit="cp1")
        assert rerun.returncode == 0 and _recap(rerun.stdout, "cp1")["changed"] == 0, rerun.stdout[-3000:]
        # an archive that does not hold the pinned digest is refused before anything is imported
        coredns = next(n for n in every if "/coredns/" in n)
        pause = next(n for n in every if "/pause:" in n)
        staged = tmp_path / "w1" / "images" / coredns / "linux-amd64.oci.tar"
        shutil.copyfile(tmp_path / "w1" / "images" / pause / "linux-amd64.oci.tar", staged)
        daemon.ctr("images", "rm", coredns, f"{coredns.split(':')[0]}@{lock[coredns]}")
        refused = _playbook(lab, playbook, limit="w1")
        assert refused.returncode != 0
        assert "refused, nothing imported" in refused.stdout and coredns in refused.stdout, refused.stdout[-3000:]
        assert coredns not in _listed(daemon)
    finally:
        daemon.stop()
