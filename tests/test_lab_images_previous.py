"""Which build an image of the lab's mirror is made from (kubestrap/lab/sources/images.py): the Kubernetes images of
the previous minor's tag from the previous minor's programs (build.PREVIOUS_KUBERNETES, the upgrade test's starting
version), and the documented stand-ins for the etcd and CoreDNS tags kubeadm of that minor asks for. Nothing is
built here."""

from __future__ import annotations

import re

from kubestrap.lab.sources import build, images


def test_kubernetes_images_of_the_previous_tag_come_from_the_previous_build():
    previous = build.module_version(build.PREVIOUS_KUBERNETES)
    pin = build.module_version(build.PROGRAMS["kubernetes"])
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        image = images.image_for(name)
        assert images.program_for(image, previous) is build.PREVIOUS_KUBERNETES
        assert images.program_for(image, pin) is build.PROGRAMS["kubernetes"]
    assert images.program_for(images.image_for("etcd"), previous) is build.PROGRAMS["etcd"]


def test_the_previous_build_is_one_minor_below_the_pins_build_with_matching_staging_modules():
    previous = build.module_version(build.PREVIOUS_KUBERNETES)
    pin = build.module_version(build.PROGRAMS["kubernetes"])
    assert int(previous.split(".")[1]) == int(pin.split(".")[1]) - 1
    text = (build.PREVIOUS_KUBERNETES.dir / "go.mod").read_text()
    staging = re.findall(r"^\s*(k8s\.io/\S+) => (k8s\.io/\S+) (v\S+)$", text, re.MULTILINE)
    assert len(staging) > 20
    assert {(left == right, version) for left, right, version in staging} == {(True, "v0" + previous[2:])}
    assert build.PREVIOUS_KUBERNETES.binaries == build.PROGRAMS["kubernetes"].binaries
    assert build.PREVIOUS_KUBERNETES.name not in build.PROGRAMS  # built on request only, not by CI's build stage


def test_stand_ins_for_the_previous_minors_etcd_and_coredns_are_exact():
    etcd, coredns = images.image_for("etcd"), images.image_for("coredns")
    assert images._stands_for(etcd, "3.6.6-0", "v3.6.8")
    assert images._stands_for(etcd, "3.6.8-0", "v3.6.8")
    assert not images._stands_for(etcd, "3.6.7-0", "v3.6.8")
    assert images._stands_for(coredns, "v1.13.1", "v1.14.3")
    assert not images._stands_for(coredns, "v1.13.0", "v1.14.3")
