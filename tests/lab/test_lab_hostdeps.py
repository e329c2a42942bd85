import pytest

from kubestrap.lab import hostdeps
from kubestrap.lab.errors import LabError


def test_missing_packages_map_programs_to_debian_packages():
    present = {"ssh", "ssh-keygen", "mkfs.ext4", "qemu-img"}
    missing = hostdeps.missing_packages(which=lambda p: f"/usr/bin/{p}" if p in present else None)
    assert missing == ["debootstrap", "qemu-system-x86", "vde2"]


def test_message_names_the_exact_apt_get_command():
    with pytest.raises(LabError) as exc:
        hostdeps.require(which=lambda p: None if p in ("vde_switch", "qemu-img") else "/bin/x")
    assert "sudo apt-get install -y qemu-utils vde2" in str(exc.value)


def test_nothing_missing():
    hostdeps.require(which=lambda p: "/bin/" + p)


def test_program_raises_for_unknown():
    with pytest.raises(LabError, match="apt-get install -y no-such-program-xyz"):
        hostdeps.program("no-such-program-xyz")
