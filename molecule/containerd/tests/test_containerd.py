"""containerd + kube_binaries on a lab VM, from the local artifact mirror."""

import json
import os
from pathlib import Path

import yaml

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
MIRROR_ROOT = Path(os.environ.get("KUBESTRAP_TEST_MIRROR_DIR")
                   or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kubestrap" / "test-mirror")
OVERRIDE = yaml.safe_load((MIRROR_ROOT / "versions-override.yml").read_text())
PINS = OVERRIDE["kubestrap_artifacts"]
STAGING = "/var/cache/kubestrap/artifacts"
PAUSE = yaml.safe_load((PROJECT / "group_vars" / "all" / "versions.yml").read_text())["kubestrap_images"]["pause"]


def test_staged_artifacts_for_the_first_control_plane(host):
    for name in ["containerd", "runc", "cni_plugins", "crictl", "kubeadm", "kubelet", "kubectl", "helm", "cilium_cli"]:
        staged = host.file(f"{STAGING}/{name}/{PINS[name]['version']}/amd64")
        assert staged.is_directory, name
        with host.sudo():
            files = host.run(f"sha256sum {STAGING}/{name}/{PINS[name]['version']}/amd64/*").stdout.split()
        assert files[0] == PINS[name]["sha256"]["amd64"], name


def test_containerd_runs_the_pinned_version(host):
    service = host.service("containerd")
    assert service.is_running
    assert service.is_enabled
    with host.sudo():
        out = host.check_output("/usr/local/bin/ctr version")
    assert f"Version:  {PINS['containerd']['version']}" in out or f"Version: {PINS['containerd']['version']}" in out


def test_unit_and_configs(host):
    unit = host.file("/etc/systemd/system/containerd.service").content_string
    assert "Delegate=yes" in unit and "KillMode=process" in unit
    config = host.file("/etc/containerd/config.toml").content_string
    assert "version = 3" in config
    assert "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]" in config
    assert "SystemdCgroup = true" in config
    assert f"sandbox = '{PAUSE}'" in config
    crictl = host.file("/etc/crictl.yaml").content_string
    assert "runtime-endpoint: unix:///run/containerd/containerd.sock" in crictl
    with host.sudo():
        dumped = host.check_output("/usr/local/bin/containerd config dump")
    assert "SystemdCgroup = true" in dumped
    assert PAUSE in dumped


def test_runtime_binaries(host):
    assert PINS["runc"]["version"] in host.check_output("/usr/local/sbin/runc --version")
    assert host.file("/opt/cni/bin/bridge").mode & 0o111
    assert host.file("/opt/cni/bin/host-local").mode & 0o111
    assert host.check_output("/usr/local/bin/crictl --version") == f"crictl version v{PINS['crictl']['version']}"


def test_ctr_runs_a_container_from_a_locally_imported_image(host):
    served = json.loads((MIRROR_ROOT / "server.json").read_text())["www"]
    image_tar = Path(served).parent / "images" / "busybox-oci.tar"
    result = host.ansible("copy", f"src={image_tar} dest=/root/busybox-oci.tar mode=0600", become=True, check=False)
    assert not result.get("failed"), result
    with host.sudo():
        imported = host.run("/usr/local/bin/ctr images import /root/busybox-oci.tar")
        assert imported.rc == 0, imported.stderr
        ran = host.run("/usr/local/bin/ctr run --rm docker.io/kubestrap/busybox:test molecule-true /bin/busybox true")
        assert ran.rc == 0, ran.stderr
        echoed = host.run(
            "/usr/local/bin/ctr run --rm docker.io/kubestrap/busybox:test molecule-echo /bin/busybox echo hello-from-container"
        )
        assert echoed.stdout.strip() == "hello-from-container", echoed.stderr


def test_kubectl_is_real_and_pinned(host):
    out = host.check_output("/usr/local/bin/kubectl version --client")
    assert f"Client Version: v{PINS['kubectl']['version']}" in out


def test_kubeadm_and_kubelet_doubles(host):
    assert host.check_output("/usr/local/bin/kubeadm version -o short") == f"v{PINS['kubeadm']['version']}"
    assert host.check_output("/usr/local/bin/kubelet --version") == f"Kubernetes v{PINS['kubelet']['version']}"


def test_kubelet_enabled_but_not_started(host):
    kubelet = host.service("kubelet")
    assert kubelet.is_enabled
    assert not kubelet.is_running
    assert host.run("systemctl is-active kubelet").stdout.strip() == "inactive"
    dropin = host.file("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf").content_string
    assert "KUBELET_KUBECONFIG_ARGS=" in dropin and "/var/lib/kubelet/config.yaml" in dropin
    assert "EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env" in dropin
    assert host.file("/etc/default/kubelet").exists
