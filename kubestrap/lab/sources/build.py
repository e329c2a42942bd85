#!/usr/bin/env python3
"""Build the pinned upstream programs from their Go modules, into a cache outside the clone.

Where the release hosts (dl.k8s.io, GitHub) cannot be reached but the Go module proxy can, this is how the VM lab
gets the real programs (kubestrap/lab/mirror.py packages them into a local artifact mirror) and how the tests run
them. Each program has a wrapper module here (kubestrap/lab/sources/<dir>/go.mod + go.sum, committed) that
requires the upstream module at one version and lists its main packages as `tool`s; `go build` builds them with
the upstream release's version stamping. The pause program is upstream's C source (build/pause/linux/pause.c of
the k8s.io/kubernetes module), compiled statically with gcc as its Makefile does. Nothing built is committed:
binaries go to
``$KUBESTRAP_UPSTREAM_CACHE`` (default ``~/.cache/kubestrap/upstream``) under
``<program>/<version>-<key>/``, where the key hashes the wrapper's go.mod and go.sum, the flags and the Go
version, so a fresh clone on the same machine (how CI runs) reuses the build, and a bump builds anew.

    python -m kubestrap.lab.sources.build [PROGRAM...]        build what is missing; one line per program
    python -m kubestrap.lab.sources.build --json [PROGRAM...] the same as JSON: program -> {version, dir, ...}
    python -m kubestrap.lab.sources.build --dir PROGRAM       print the program's binary directory

The versions built are the product's pins (group_vars/all/versions.yml) or, where the Go module proxy does
not serve a pin, the nearest version it does serve: NEAREST below, explained in tests/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
FLAGS_FORMAT = 1  # bump when the way programs are built changes without their go.mod changing


def _kubernetes(version: str) -> list[str]:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.gitVersion={version}", f"-X {package}.gitMajor={major}",
                  f"-X {package}.gitMinor={minor}", f"-X {package}.gitTreeState=clean",
                  f"-X {package}.buildDate=1970-01-01T00:00:00Z"]  # fmt: skip
    return flags


@dataclass(frozen=True)
class Program:
    """One upstream Go module and the binaries built from it."""

    name: str
    module: str  # the upstream module the wrapper requires
    binaries: dict[str, str]  # binary name -> Go package
    ldflags: Callable[[str], list[str]] = field(default=lambda version: [])
    pin: str | None = None  # key of kubestrap_artifacts in versions.yml whose version this is
    cgo: bool = False
    tags: tuple[str, ...] = ()
    wrapper: str = ""  # the wrapper module's directory, when not the program's name
    c_source: bool = False  # binaries maps to C files of the module (compiled with gcc), not Go packages

    @property
    def dir(self) -> Path:
        return HERE / (self.wrapper or self.name)


PROGRAMS: dict[str, Program] = {p.name: p for p in (
    Program("kubernetes", "k8s.io/kubernetes",
            {name: f"k8s.io/kubernetes/cmd/{name}" for name in (
                "kubeadm", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                "kube-proxy")},
            _kubernetes, pin="kubeadm"),
    Program("etcd", "go.etcd.io/etcd/server/v3", {"etcd": "go.etcd.io/etcd/server/v3"}),
    # upstream's etcd image also ships etcdctl (the client: snapshot save) and etcdutl (offline: snapshot status
    # and restore), each its own Go module released at the server's version (the wrappers require the same one)
    Program("etcdctl", "go.etcd.io/etcd/etcdctl/v3", {"etcdctl": "go.etcd.io/etcd/etcdctl/v3"}),
    Program("etcdutl", "go.etcd.io/etcd/etcdutl/v3", {"etcdutl": "go.etcd.io/etcd/etcdutl/v3"}),
    Program("containerd", "github.com/containerd/containerd/v2",
            {name: f"github.com/containerd/containerd/v2/cmd/{name}"
             for name in ("containerd", "ctr", "containerd-shim-runc-v2")},
            lambda v: [f"-X github.com/containerd/containerd/v2/version.Version={v}",
                       "-X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2"],
            pin="containerd", tags=("urfave_cli_no_docs",)),
    # runc embeds its VERSION file (go:embed), so its version needs no -X; its Makefile stamps only main.gitCommit
    # (git describe), which a module build has no checkout for.
    Program("runc", "github.com/opencontainers/runc", {"runc": "github.com/opencontainers/runc"},
            pin="runc", cgo=True, tags=("seccomp", "urfave_cli_no_docs")),
    Program("cri-tools", "sigs.k8s.io/cri-tools", {"crictl": "sigs.k8s.io/cri-tools/cmd/crictl"},
            lambda v: [f"-X sigs.k8s.io/cri-tools/pkg/version.Version={v}"], pin="crictl"),
    Program("cni", "github.com/containernetworking/plugins",
            {"bridge": "github.com/containernetworking/plugins/plugins/main/bridge",
             "host-local": "github.com/containernetworking/plugins/plugins/ipam/host-local",
             "loopback": "github.com/containernetworking/plugins/plugins/main/loopback",
             "portmap": "github.com/containernetworking/plugins/plugins/meta/portmap"},
            lambda v: [f"-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion={v}"],
            pin="cni_plugins"),
    Program("helm", "helm.sh/helm/v3", {"helm": "helm.sh/helm/v3/cmd/helm"},
            lambda v: [f"-X helm.sh/helm/v3/internal/version.version={v}",
                       "-X helm.sh/helm/v3/internal/version.gitTreeState=clean"], pin="helm"),
    # coredns's version is a constant (coremain.CoreVersion); its Makefile stamps coremain.GitCommit with
    # `git describe --dirty --always`: without a checkout, the module version stands for it.
    Program("coredns", "github.com/coredns/coredns", {"coredns": "github.com/coredns/coredns"},
            lambda v: [f"-X github.com/coredns/coredns/coremain.GitCommit={v}"], tags=("grpcnotrace",)),
    # upstream's pause: the C program of the k8s.io/kubernetes module (build/pause), version-stamped like its Makefile
    # (-DVERSION=v<TAG>-<revision>; the module version stands for the git revision)
    Program("pause", "k8s.io/kubernetes", {"pause": "build/pause/linux/pause.c"}, wrapper="kubernetes", c_source=True),
)}  # fmt: skip
# The Kubernetes programs of the minor before the pin, built only on request (`build.py kubernetes-previous`): the
# lab's upgrade test forms a cluster at this version and upgrades it to the pin (tests/e2e/test_upgrade.py).
PREVIOUS_KUBERNETES = Program("kubernetes-previous", "k8s.io/kubernetes", PROGRAMS["kubernetes"].binaries, _kubernetes,
                              wrapper="kubernetes-1.35")
ON_REQUEST: dict[str, Program] = {PREVIOUS_KUBERNETES.name: PREVIOUS_KUBERNETES}
PAUSE_MAKEFILE = "build/pause/Makefile"  # in the k8s.io/kubernetes module: `TAG ?= <pause version>`

# Pins the module proxy does not serve: pin key -> (pinned, built instead, why). tests/README.md says more.
NEAREST: dict[str, tuple[str, str, str]] = {
    "kubeadm": ("1.36.4", "1.36.3", "the proxy serves k8s.io/kubernetes v1.36.1 and v1.36.3, not v1.36.4"),
    "crictl": ("1.36.0", "1.37.0", "the proxy serves sigs.k8s.io/cri-tools v1.34.0 and v1.37.0 only"),
}


class BuildError(Exception):
    pass


def cache_root() -> Path:
    configured = os.environ.get("KUBESTRAP_UPSTREAM_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubestrap" / "upstream"


def module_version(program: Program) -> str:
    """The version the wrapper's go.mod requires."""
    text = (program.dir / "go.mod").read_text()
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(program.module)}\s+(v\S+)", text, re.MULTILINE)
    if not found:
        raise BuildError(f"{program.dir / 'go.mod'} does not require {program.module}")
    return found.group(1)


def go_version() -> str:
    try:
        return subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"cannot run go ({exc}); install Go 1.26 or newer") from None


def module_dir(program: Program) -> Path:
    """The module's source directory in Go's module cache (downloaded through the module proxy if missing)."""
    version = module_version(program)
    done = subprocess.run(["go", "mod", "download", "-json", f"{program.module}@{version}"], cwd=program.dir,
                          capture_output=True, text=True, env={**os.environ, "GOFLAGS": "-mod=readonly"})  # fmt: skip
    if done.returncode != 0:
        raise BuildError(f"go mod download {program.module}@{version} failed:\n{(done.stdout + done.stderr)[-2000:]}")
    return Path(json.loads(done.stdout)["Dir"])


def pause_tag() -> str:
    """The pause version of the k8s.io/kubernetes module the pause program is built from (its Makefile's TAG)."""
    makefile = module_dir(PROGRAMS["pause"]) / PAUSE_MAKEFILE
    found = re.search(r"^TAG\s*\??=\s*(\S+)", makefile.read_text(), re.MULTILINE)
    if not found:
        raise BuildError(f"{makefile} sets no TAG")
    return found.group(1)


def _c_compiler() -> str:
    try:
        return subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"cannot run gcc ({exc}); install Debian's gcc and libc6-dev") from None


def build_key(program: Program, version: str, go: str) -> str:
    digest = hashlib.sha256()
    if program.c_source:
        digest.update(b"gcc\0" + _c_compiler().encode())
    for name in ("go.mod", "go.sum", "main.go"):
        path = program.dir / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    flags = {"ldflags": program.ldflags(version), "cgo": program.cgo, "tags": program.tags,
             "binaries": program.binaries, "go": go, "format": FLAGS_FORMAT}  # fmt: skip
    digest.update(json.dumps(flags, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def target_dir(program: Program, version: str, go: str) -> Path:
    return cache_root() / program.name / f"{version}-{build_key(program, version, go)}"


def build(program: Program, log: Callable[[str], None] = print) -> tuple[Path, float, bool]:
    """Build *program* unless its cache entry is complete; return (binary dir, seconds, was cached)."""
    go = go_version()
    version = module_version(program)
    target = target_dir(program, version, go)
    if all((target / name).is_file() for name in program.binaries):
        return target, 0.0, True
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=f".{program.name}-", dir=target.parent))
    try:
        if program.c_source:
            _compile_c(program, version, scratch, log)
            shutil.rmtree(target, ignore_errors=True)
            scratch.rename(target)
            return target, time.monotonic() - started, False
        env = {**os.environ, "CGO_ENABLED": "1" if program.cgo else "0", "GOFLAGS": "-mod=readonly"}
        ldflags = " ".join(["-s", "-w", *program.ldflags(version)])
        for name, package in program.binaries.items():
            log(f"building {program.name} {version}: {name}")
            argv = ["go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", str(scratch / name)]
            if program.tags:
                argv += ["-tags", ",".join(program.tags)]
            done = subprocess.run([*argv, package], cwd=program.dir, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise BuildError(f"go build {package} ({program.name} {version}) failed:\n{done.stderr[-4000:]}")
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target, time.monotonic() - started, False


def _compile_c(program: Program, version: str, out: Path, log: Callable[[str], None]) -> None:
    """gcc -Os -Wall -Werror -static, as upstream's Makefile builds pause (the module version for its revision)."""
    source_dir = module_dir(program)
    stamp = f"v{pause_tag()}-{version}"
    for name, source in program.binaries.items():
        log(f"building {program.name} {stamp}: {name} (gcc, {source} of {program.module})")
        argv = ["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION={stamp}", "-o", str(out / name),
                str(source_dir / source)]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"gcc {source} ({program.name} {stamp}) failed:\n{done.stderr[-4000:]}")


def versions_pins() -> dict[str, str]:
    import yaml

    data = yaml.safe_load((ROOT / "group_vars" / "all" / "versions.yml").read_text())
    return {name: str(entry["version"]) for name, entry in data["kubestrap_artifacts"].items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("programs", nargs="*",
                        help=f"of: {', '.join(PROGRAMS)} (default: all); on request: {', '.join(ON_REQUEST)}")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--dir", metavar="PROGRAM", help="print PROGRAM's binary directory (building it if needed)")
    args = parser.parse_args(argv)
    known = {**PROGRAMS, **ON_REQUEST}
    names = [args.dir] if args.dir else (args.programs or list(PROGRAMS))
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"error: unknown program(s) {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    result = {}
    try:
        for name in names:
            quiet = args.json or args.dir
            target, seconds, cached = build(known[name], log=(lambda m: print(m, file=sys.stderr)) if quiet else print)
            result[name] = {"version": module_version(known[name]), "dir": str(target),
                            "seconds": round(seconds, 1), "cached": cached}  # fmt: skip
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.dir:
        print(result[args.dir]["dir"])
    elif args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, entry in result.items():
            how = "cached" if entry["cached"] else f"built in {entry['seconds']}s"
            print(f"{name} {entry['version']}: {entry['dir']} ({how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
