"""Build the base image once per recipe, cached under ``~/.cache/kubestrap/images/<recipe-hash>/``.

The build runs in a temporary directory next to the cache entry and is renamed into place when it
is complete, under an exclusive lock, so concurrent callers never both build nor see half an image.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from kubestrap.lab import hostdeps, paths
from kubestrap.lab.errors import LabError
from kubestrap.lab.recipe import Recipe

READY = "READY"


@dataclass(frozen=True)
class Image:
    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "base.raw"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"


def image_for(recipe: Recipe, root: Path | None = None) -> Image:
    return Image((root or paths.images_dir()) / recipe.digest())


def is_ready(image: Image) -> bool:
    return (image.directory / READY).is_file()


@contextlib.contextmanager
def _locked(lock_path: Path, log: Callable[[str], None]) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another process is building the lab image; waiting for its lock {lock_path}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_image(recipe: Recipe, log: Callable[[str], None], root: Path | None = None) -> Image:
    """Return the cached image for ``recipe``, building it first if needed."""
    image = image_for(recipe, root)
    if is_ready(image):
        return image
    with _locked(image.directory.with_suffix(".lock"), log):
        if is_ready(image):  # built by whoever held the lock before us
            return image
        if os.geteuid() != 0:
            raise LabError("building the lab image needs root (debootstrap, chroot); run as root once")
        hostdeps.require(["debootstrap", "mkfs.ext4"])
        tmp = image.directory.parent / f".tmp-{image.directory.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        started = time.monotonic()
        log(f"building the lab image {image.directory.name} ({recipe.suite} from {recipe.mirror})")
        try:
            _build(recipe, tmp, log)
        except BaseException:
            _unmount_all(tmp / "rootfs")
            raise
        if image.directory.exists():
            shutil.rmtree(image.directory)
        os.rename(tmp, image.directory)
        log(f"lab image ready in {time.monotonic() - started:.0f}s: {image.directory}")
        return image


def _run(cmd: list[str], logfile: Path, what: str, env: dict[str, str] | None = None) -> None:
    with logfile.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        raise LabError(f"lab image build failed while {what} (exit {proc.returncode}); see {logfile}")


def _chroot_env() -> dict[str, str]:
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C",
        "HOME": "/root",
    }


_MOUNTS = (("proc", "proc", "proc"), ("sysfs", "sys", "sysfs"), ("devpts", "dev/pts", "devpts"))


def _unmount_all(rootfs: Path) -> None:
    for _src, rel, _fstype in reversed(_MOUNTS):
        target = rootfs / rel
        if os.path.ismount(target):
            subprocess.run(["umount", "-l", str(target)], check=False)


def _apt_sources(recipe: Recipe) -> str:
    lines = [
        f"deb {recipe.mirror} {recipe.suite} main",
        f"deb {recipe.mirror} {recipe.suite}-updates main",
    ]
    if recipe.security_mirror:
        lines.append(f"deb {recipe.security_mirror} {recipe.suite}-security main")
    return "\n".join(lines) + "\n"


def _build(recipe: Recipe, tmp: Path, log: Callable[[str], None]) -> None:
    logfile = tmp / "build.log"
    rootfs = tmp / "rootfs"
    env = _chroot_env()
    log("  debootstrap (about a minute)")
    _run(
        [
            hostdeps.program("debootstrap"),
            "--variant=minbase",
            f"--include={','.join(recipe.include)}",
            recipe.suite,
            str(rootfs),
            recipe.mirror,
        ],
        logfile,
        "running debootstrap",
        env={**os.environ, **env},
    )
    (rootfs / "etc/apt/sources.list").write_text(_apt_sources(recipe))
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")  # no service starts inside the build chroot
    policy.chmod(0o755)
    shutil.copyfile("/etc/resolv.conf", rootfs / "etc/resolv.conf", follow_symlinks=True)
    for src, rel, fstype in _MOUNTS:
        (rootfs / rel).mkdir(parents=True, exist_ok=True)
        _run(["mount", "-t", fstype, src, str(rootfs / rel)], logfile, f"mounting {rel} in the chroot")
    try:
        log(f"  installing {' '.join(recipe.chroot_packages)} in the chroot")
        chroot = ["chroot", str(rootfs)]
        _run([*chroot, "apt-get", "update"], logfile, "running apt-get update in the chroot", env=env)
        _run(
            [*chroot, "apt-get", "install", "-y", "--no-install-recommends", *recipe.chroot_packages],
            logfile,
            "installing the kernel in the chroot",
            env=env,
        )
        for rel, content, mode in recipe.guest_files:
            target = rootfs / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(mode)
        _run(
            [*chroot, "systemctl", "enable", "systemd-networkd.service", "kubestrap-lab-seed.service"],
            logfile,
            "enabling networkd and the seed unit",
            env=env,
        )
        _run([*chroot, "apt-get", "clean"], logfile, "cleaning apt's cache", env=env)
    finally:
        _unmount_all(rootfs)
    policy.unlink()
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # every VM gets its own host key from its seed disk
    shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
    resolv = rootfs / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text("nameserver 10.0.2.3\n")
    (rootfs / "etc/hostname").write_text("localhost\n")
    _copy_boot_files(rootfs, tmp)
    log(f"  writing the {recipe.size_gib} GiB ext4 base image")
    _run(
        [
            hostdeps.program("mkfs.ext4"),
            "-q",
            "-F",
            "-L",
            "kroot",
            "-d",
            str(rootfs),
            str(tmp / "base.raw"),
            f"{recipe.size_gib}G",
        ],
        logfile,
        "writing the ext4 image (mkfs.ext4 -d)",
    )
    shutil.rmtree(rootfs)
    (tmp / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2, sort_keys=True) + "\n")
    (tmp / READY).write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))


def _copy_boot_files(rootfs: Path, tmp: Path) -> None:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise LabError(f"lab image build left no kernel/initrd in {rootfs / 'boot'}; see {tmp / 'build.log'}")
    shutil.copyfile(kernels[-1], tmp / "vmlinuz")
    shutil.copyfile(initrds[-1], tmp / "initrd.img")
