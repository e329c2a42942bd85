"""The upstream programs kubestrap/lab/sources/build.py builds: each binary's own version command prints the version
build.py built, and that version is the product's pin (group_vars/all/versions.yml) or, where the Go module
proxy does not serve the pin, the documented nearest (build.NEAREST). Upstream's pause (C, built with gcc) exits on SIGTERM.

The builds are looked up in the cache, never started here (a cold build takes minutes to tens of minutes): a
missing build FAILS, naming the command that builds it (scripts/test runs kubestrap/lab/sources/build.py first)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kubestrap.lab.sources import build

# binary -> (arguments that print its version, the line that must be printed; {v} is the version build.py built,
# e.g. v1.9.1, {n} the same without the v). Lines are compared with runs of whitespace collapsed; a line may
# go on after the expected text (containerd prints the VCS revision, empty in a module build, after it).
VERSION_COMMANDS: dict[str, tuple[list[str], str]] = {
    "kubeadm": (["version", "-o", "short"], "{v}"),
    "kubelet": (["--version"], "Kubernetes {v}"),
    "kubectl": (["version", "--client"], "Client Version: {v}"),
    "kube-apiserver": (["--version"], "Kubernetes {v}"),
    "kube-controller-manager": (["--version"], "Kubernetes {v}"),
    "kube-scheduler": (["--version"], "Kubernetes {v}"),
    "kube-proxy": (["--version"], "Kubernetes {v}"),
    "etcd": (["--version"], "etcd Version: {n}"),
    "etcdctl": (["version"], "etcdctl version: {n}"),
    "etcdutl": (["version"], "etcdutl version: {n}"),
    "containerd": (["--version"], "containerd github.com/containerd/containerd/v2 {v}"),
    "ctr": (["--version"], "ctr github.com/containerd/containerd/v2 {v}"),
    "containerd-shim-runc-v2": (["-v"], "Version: {v}"),
    "runc": (["--version"], "runc version {n}"),
    "crictl": (["--version"], "crictl version {v}"),
    # a CNI plugin run without CNI_COMMAND prints its "about" line and the CNI versions it speaks on stderr
    "bridge": ([], "CNI bridge plugin {v}"),
    "host-local": ([], "CNI host-local plugin {v}"),
    "loopback": ([], "CNI loopback plugin {v}"),
    "portmap": ([], "CNI portmap plugin {v}"),
    "helm": (["version", "--template", "{{.Version}}"], "{v}"),
    "coredns": (["-version"], "CoreDNS-{n}"),
    "pause": (["-v"], "pause.c v" + build.pause_tag() + "-{v}"),
}

BINARIES = [(program.name, binary) for program in build.PROGRAMS.values() for binary in program.binaries]


def built_dir(name: str) -> Path:
    """The cache directory of *name*'s current build; the test fails when the build is missing."""
    program = build.PROGRAMS[name]
    target = build.target_dir(program, build.module_version(program), build.go_version())
    missing = [binary for binary in program.binaries if not (target / binary).is_file()]
    if missing:
        pytest.fail(f"{name} is not built ({', '.join(missing)} missing in {target}): "
                    f"run kubestrap/lab/sources/build.py {name}")  # fmt: skip
    return target


def expected_version(name: str) -> str:
    """The version build.py must build for *name*: its pin, or the documented nearest (with a leading v)."""
    program = build.PROGRAMS[name]
    if program.pin is None:
        return build.module_version(program)
    pinned = build.versions_pins()[program.pin]
    if program.pin in build.NEAREST:
        assert build.NEAREST[program.pin][0] == pinned, f"NEAREST[{program.pin!r}] is about another pin than {pinned}"
        return "v" + build.NEAREST[program.pin][1]
    return "v" + pinned


def test_every_binary_has_a_version_command():
    assert sorted(binary for _name, binary in BINARIES) == sorted(VERSION_COMMANDS)


@pytest.mark.parametrize("name", list(build.PROGRAMS))
def test_builds_the_pin_or_the_documented_nearest(name):
    assert build.module_version(build.PROGRAMS[name]) == expected_version(name)


@pytest.mark.parametrize(("name", "binary"), BINARIES, ids=[binary for _name, binary in BINARIES])
def test_version_command_prints_the_built_version(name, binary, tmp_path):
    directory = built_dir(name)
    version = build.module_version(build.PROGRAMS[name])
    args, line = VERSION_COMMANDS[binary]
    expected = line.format(v=version, n=version.removeprefix("v"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "kubeconfig")}
    done = subprocess.run([str(directory / binary), *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    lines = [" ".join(text.split()) for text in output.splitlines()]
    assert any(text == expected or text.startswith(expected + " ") for text in lines), (
        f"{binary} {' '.join(args)} does not print {expected!r}:\n{output}")  # fmt: skip
    if binary == "runc":  # built with the seccomp tag against libseccomp (cgo)
        assert any(text.startswith("libseccomp: ") for text in lines), output


def test_pause_runs_until_sigterm(tmp_path):
    pause = built_dir("pause") / "pause"
    process = subprocess.Popen([str(pause)], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    try:
        time.sleep(0.5)
        assert process.poll() is None, f"pause exited by itself (status {process.returncode})"
        os.kill(process.pid, signal.SIGTERM)
        # 0, not -SIGTERM: the program's own handler ended it
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
