"""Check that the host programs the lab runs are installed, naming the exact apt-get command."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable

from kubestrap.lab.errors import LabError

# program -> Debian package that ships it
PROGRAMS: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
    "vde_switch": "vde2",
    "mkfs.ext4": "e2fsprogs",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}

_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def find_program(name: str) -> str | None:
    """``shutil.which`` that also looks in the sbin directories (not on every user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(name, path=path)


def missing_packages(programs: Iterable[str] = PROGRAMS, which: Callable[[str], str | None] = find_program) -> list[str]:
    """Debian packages to install for the missing programs, sorted, without duplicates."""
    return sorted({PROGRAMS[p] for p in programs if which(p) is None})


def missing_message(packages: list[str]) -> str:
    names = " ".join(packages)
    return f"the VM lab needs host packages that are not installed: {names}. Install them with: sudo apt-get install -y {names}"


def require(programs: Iterable[str] = PROGRAMS, which: Callable[[str], str | None] = find_program) -> None:
    """Raise a LabError naming the apt-get command if any program is missing."""
    packages = missing_packages(programs, which)
    if packages:
        raise LabError(missing_message(packages))


def program(name: str) -> str:
    """Absolute path of a required program (LabError if missing)."""
    found = find_program(name)
    if found is None:
        raise LabError(missing_message([PROGRAMS.get(name, name)]))
    return found
