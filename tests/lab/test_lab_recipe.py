from dataclasses import replace
from pathlib import Path

from kubestrap.lab import recipe
from kubestrap.lab.recipe import Recipe, mirrors_from_sources

DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_digest_is_stable_and_short():
    assert Recipe().digest() == Recipe().digest()
    assert len(Recipe().digest()) == 16


def test_digest_changes_with_every_input():
    base = Recipe()
    variants = [
        replace(base, mirror="http://other/debian"),
        replace(base, include=(*base.include, "curl")),
        replace(base, chroot_packages=("linux-image-amd64",)),
        replace(base, size_gib=base.size_gib + 1),
        replace(base, suite="trixie"),
        replace(base, guest_files=(("etc/x", "y", 0o644),)),
        replace(base, version=base.version + 1),
    ]
    digests = {v.digest() for v in variants}
    assert base.digest() not in digests
    assert len(digests) == len(variants)


def test_image_packages_hold_only_what_ansible_needs():
    r = Recipe()
    assert {"python3", "sudo", "openssh-server"} <= set(r.include)
    assert not {"containerd", "runc", "kubelet", "kubeadm"} & set(r.include + r.chroot_packages)


def test_image_is_a_fresh_debian_host_and_node_prep_still_installs_its_packages():
    """The image holds what Debian's own cloud images ship (CA certificates, python3-apt for Ansible's apt
    module): configuring them in every TCG guest cost minutes. What node_prep adds stays out of it, so
    its apt install runs for real."""
    import yaml

    r = Recipe()
    assert {"ca-certificates", "python3-apt"} <= set(r.include)
    defaults = yaml.safe_load((Path(__file__).resolve().parents[2] / "roles/node_prep/defaults/main.yml").read_text())
    kubestrap_adds = set(defaults["node_prep_packages"]) - {"ca-certificates", "iproute2", "kmod"}
    assert kubestrap_adds and not kubestrap_adds & set(r.include + r.chroot_packages)


def test_mirrors_from_deb822_sources():
    assert mirrors_from_sources([DEB822], "bookworm") == (
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    )


def test_mirrors_from_one_line_sources_skip_other_suites():
    text = "deb [arch=amd64] https://packages.example/apt cloud-sdk main\ndeb http://m.example/debian/ bookworm main\n"
    assert mirrors_from_sources([text], "bookworm") == ("http://m.example/debian", None)


def test_env_overrides_the_host_mirror(monkeypatch):
    monkeypatch.setattr(recipe, "_sources_text", lambda: [DEB822])
    monkeypatch.delenv(recipe.MIRROR_ENV, raising=False)
    assert recipe.default_recipe().mirror == "http://mirror.example/debian"
    monkeypatch.setenv(recipe.MIRROR_ENV, "http://local.mirror/debian/")
    assert recipe.default_recipe().mirror == "http://local.mirror/debian"


def test_no_sources_falls_back_to_debian(monkeypatch):
    monkeypatch.setattr(recipe, "_sources_text", list)
    monkeypatch.delenv(recipe.MIRROR_ENV, raising=False)
    monkeypatch.delenv(recipe.SECURITY_MIRROR_ENV, raising=False)
    assert recipe.default_recipe().mirror == recipe.DEFAULT_MIRROR


def test_guest_never_rebuilds_its_unused_initramfs():
    from kubestrap.lab import guest

    files = {path: content for path, content, _ in guest.FILES}
    assert "update_initramfs=no" in files["etc/initramfs-tools/update-initramfs.conf"].splitlines()
    # written after the chroot packages, so the image's own initrd (qemu's -initrd) is built first
    source = (Path(__file__).resolve().parents[2] / "kubestrap/lab/image.py").read_text()
    assert source.index("recipe.chroot_packages],") < source.index("for rel, content, mode in recipe.guest_files")
