"""containerd + kube_binaries on a lab VM, from the local artifact mirror."""

import json
import os
import sys
from pathlib import Path

import yaml

# the settings converge.yml wrote for the lab's local mirror (kubestrap/lab/mirror.py), as `lab up` does
OVERRIDE = yaml.safe_load((Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "local-mirror.yml").read_text())
PINS = OVERRIDE["kubestrap_artifacts"]
STAGING = "/var/cache/kubestrap/artifacts"
# the sandbox image the converge configured: the mirror's pause (built here, so its digest is not upstream's pin)
PAUSE = OVERRIDE["kubestrap_images"]["pause"]


def test_staged_artifacts_for_the_first_control_plane(host):
    # Cilium is off with the local mirror: no Cilium CLI is staged
    assert not host.file(f"{STAGING}/cilium_cli").exists
    for name in ["containerd", "runc", "cni_plugins", "crictl", "kubeadm", "kubelet", "kubectl", "helm"]:
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
    # the running server, stamped like an upstream release ("v" + the version)
    assert f"Version:  v{PINS['containerd']['version']}" in out.partition("Server:")[2], out


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
    sys.path.insert(0, os.environ["MOLECULE_PROJECT_DIRECTORY"])
    from tests.fixtures.artifact_mirror import busybox_image  # the test image (Debian's busybox-static)

    image_tar = busybox_image()
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


def test_kubeadm_and_kubelet_are_the_real_programs_the_mirror_serves(host):
    """The installed kubeadm and kubelet are the mirror's files byte for byte (the real programs built from
    k8s.io/kubernetes by kubestrap/lab/sources/build.py: an ELF executable, not a script) and report the version the
    mirror serves them at (the pin, or build.NEAREST where the module proxy lacks it), stamped like a release."""
    for name in ("kubeadm", "kubelet"):
        path = f"/usr/local/bin/{name}"
        with host.sudo():
            digest = host.check_output(f"sha256sum {path}").split()[0]
            magic = host.check_output(f"head -c 4 {path} | od -An -c").split()
        assert digest == PINS[name]["sha256"]["amd64"], name
        assert magic == ["177", "E", "L", "F"], (name, magic)
    version = f"v{PINS['kubeadm']['version']}"
    assert PINS["kubelet"]["version"] == PINS["kubeadm"]["version"]
    assert host.check_output("/usr/local/bin/kubeadm version -o short") == version
    stamped = json.loads(host.check_output("/usr/local/bin/kubeadm version -o json"))["clientVersion"]
    assert stamped["gitVersion"] == version and stamped["gitTreeState"] == "clean", stamped
    assert stamped["platform"] == "linux/amd64", stamped
    assert host.check_output("/usr/local/bin/kubelet --version") == f"Kubernetes {version}"


def test_control_plane_images_preloaded_at_their_digests(host):
    """With a mirror the containerd role imports the cluster's images (the mirror's, built from the same modules)
    into containerd's k8s.io namespace, where the CRI finds them, each at the digest of the mirror's lock."""
    lock = OVERRIDE["kubestrap_images_lock"]
    wanted = [ref for ref in lock if ref.rsplit("/", 1)[-1].split(":")[0] in ("kube-apiserver", "etcd", "pause")]
    assert len(wanted) == 3, lock
    with host.sudo():
        out = host.check_output("/usr/local/bin/ctr -n k8s.io images ls")
    listed = {line.split()[0]: line.split()[2] for line in out.splitlines()[1:] if len(line.split()) >= 3}
    for ref in wanted:
        assert listed.get(ref) == lock[ref], (ref, listed)


def test_kubelet_enabled_but_not_started(host):
    kubelet = host.service("kubelet")
    assert kubelet.is_enabled
    assert not kubelet.is_running
    assert host.run("systemctl is-active kubelet").stdout.strip() == "inactive"
    dropin = host.file("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf").content_string
    assert "KUBELET_KUBECONFIG_ARGS=" in dropin and "/var/lib/kubelet/config.yaml" in dropin
    assert "EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env" in dropin
    assert host.file("/etc/default/kubelet").exists
