#!/usr/bin/env python3
"""OCI image archives of the cluster's images, made from the programs kubestrap/lab/sources/build.py built (no Docker,
no registry): kube-apiserver, kube-controller-manager, kube-scheduler, etcd, coredns and pause.

Each archive is an OCI image layout in a tar (oci-layout, index.json, blobs/sha256/...) that also carries a
Docker-style manifest.json, so `ctr images import` and `docker load` both name the image. One image is one
uncompressed layer holding the binary where kubeadm's static pods and Deployments expect it (/usr/local/bin/<name>
for the Kubernetes programs and etcd, with etcdctl and etcdutl beside etcd as upstream's image has them, /coredns,
/pause) plus /tmp; PATH includes /usr/local/bin, because kubeadm's
manifests call `kube-apiserver ...` and `etcd ...` by name. Output is deterministic (entries sorted, mtime 0,
uid/gid 0, canonical JSON): a rebuild gives the same bytes and digests. Archives are cached beside the builds,
``<build cache>/images/<reference>-<key>.tar``, the key hashing the reference, the image's spec and the binary's
sha256 (and its companions'). Standard library only.

    python -m kubestrap.lab.sources.images REF...                 write (or find) the archive of each reference
    python -m kubestrap.lab.sources.images --kubeadm-config FILE  the same for what the built kubeadm lists for FILE
                                                         (`kubeadm config images list --config FILE`)

Each line printed: REFERENCE ARCHIVE MANIFEST-DIGEST BUILT-VERSION. A reference names the image by its last path
part (a mirror's `imageRepository` works); its tag must be what the build stands for: the built version, or the
documented nearest (build.NEAREST: Kubernetes v1.36.4 is v1.36.3; STAND_INS: coredns v1.14.2 is v1.14.3); etcd's
tag is `<version>-<revision>`; pause (upstream's pause.c of the kubernetes module) carries a tag of its pause release
(3.10.2 carries 3.10 and 3.10.x: the same program for the sandbox). A digest in a reference
(`name:tag@sha256:...`, the containerd sandbox pin) is dropped: these images' digests are not upstream's.
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
import tarfile
import tempfile
import typing
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from kubestrap.lab.sources import build

IMAGES_FORMAT = 2  # bump when the archives' layout or content changes for the same binaries
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EPOCH = "1970-01-01T00:00:00Z"
CHUNK = 1 << 20

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class Image:
    """What goes into one image: a built binary at a path, and how the container starts; optionally files of
    Debian packages (the userspace a program execs, e.g. kube-proxy's iptables) and symlinks to them."""

    program: str  # build.PROGRAMS key
    binary: str
    path: str  # in the image, without the leading /
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""  # empty: root, as kubeadm's static pods and CoreDNS Deployment run them
    debs: tuple[str, ...] = ()  # Debian packages (of the machine's release) unpacked into the image
    links: tuple[tuple[str, str], ...] = ()  # (path, target): what the packages' maintainer scripts would link
    # more built programs of the same release beside the binary: (build.PROGRAMS key, path in the image); each
    # binary is named after its program and must be built at the same version as the image's own program
    companions: tuple[tuple[str, str], ...] = ()


def _kubernetes(name: str) -> Image:
    # upstream's images start /go-runner (a log-redirecting wrapper) we do not build; kubeadm replaces the
    # entrypoint with its own command anyway
    return Image("kubernetes", name, f"usr/local/bin/{name}", entrypoint=(f"/usr/local/bin/{name}",))


# iptables (nft backend) and what it needs at run time, by Debian package name (their Depends, libc6 included)
IPTABLES_DEBS = ("iptables", "libip4tc2", "libip6tc2", "libxtables12", "libmnl0", "libnetfilter-conntrack3",
                 "libnfnetlink0", "libnftnl11", "libc6", "netbase")  # fmt: skip
IPTABLES_LINKS = tuple(
    (f"usr/sbin/{name}", "xtables-nft-multi")
    for name in ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore")
)
# paths of a package not needed in an image (documentation, manuals, translations)
DEB_SKIPPED = ("usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/lintian/", "usr/share/locale/",
               "usr/lib/x86_64-linux-gnu/gconv/", "usr/share/i18n/")  # fmt: skip

# image name (the last part of its repository) -> its spec
IMAGES: dict[str, Image] = {
    "kube-apiserver": _kubernetes("kube-apiserver"),
    "kube-controller-manager": _kubernetes("kube-controller-manager"),
    "kube-scheduler": _kubernetes("kube-scheduler"),
    # upstream's etcd image carries etcdctl and etcdutl beside etcd (kubestrap's backup and restore run them from it)
    "etcd": Image("etcd", "etcd", "usr/local/bin/etcd", cmd=("/usr/local/bin/etcd",),
                  companions=(("etcdctl", "usr/local/bin/etcdctl"), ("etcdutl", "usr/local/bin/etcdutl"))),
    # upstream's coredns image runs as nonroot with cap_net_bind_service as a file capability; this one has
    # no file capabilities, so it runs as root (kubeadm's Deployment drops every capability but NET_BIND_SERVICE)
    "coredns": Image("coredns", "coredns", "coredns", entrypoint=("/coredns",)),
    "pause": Image("pause", "pause", "pause", entrypoint=("/pause",), user="65535:65535"),
    # kube-proxy (a cluster without Cilium) programs the node's packet filter by running iptables-restore; upstream's
    # image carries iptables from Debian too. Only the nftables backend: Debian's default since bullseye (the
    # alternatives links below are what iptables' postinst makes with update-alternatives).
    "kube-proxy": Image(
        "kubernetes",
        "kube-proxy",
        "usr/local/bin/kube-proxy",
        entrypoint=("/usr/local/bin/kube-proxy",),
        debs=IPTABLES_DEBS,
        links=IPTABLES_LINKS,
    ),
}

# tags kubeadm asks for that a built version stands in for (program -> tag -> built version); tests/README.md
# says why. Kubernetes' stand-in comes from build.NEAREST.
STAND_INS: dict[str, dict[str, str]] = {
    # kubeadm v1.36.3 asks for v1.14.2; the proxy's oldest v1.14 is v1.14.3. kubeadm v1.35.4 (the previous minor,
    # for the upgrade test only) asks for v1.13.1, which the proxy does not serve at all.
    "coredns": {"v1.14.2": "v1.14.3", "v1.13.1": "v1.14.3"},
    # kubeadm v1.35.4 asks for etcd 3.6.6-0; the proxy serves etcd v3.6.5 and v3.6.8, not v3.6.6 (upgrade test only)
    "etcd": {"3.6.6-0": "v3.6.8"},
}


class ImageError(Exception):
    pass


@dataclass(frozen=True)
class Archive:
    reference: str  # name:tag
    path: Path
    manifest_digest: str  # sha256:...
    built_version: str
    binary: Path


def parse_reference(reference: str) -> tuple[str, str]:
    """(name, tag) of *reference*; a digest is dropped, a missing tag refused."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon <= slash:
        raise ImageError(f"image reference {reference!r} has no tag")
    return name[:colon], name[colon + 1 :]


def image_for(name: str) -> Image:
    """The spec of the image *name* (a repository, or a reference with its tag) names by its last path part."""
    base = name.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    if base not in IMAGES:
        raise ImageError(f"no image is made for {name!r} (made: {', '.join(IMAGES)})")
    return IMAGES[base]


def _stands_for(image: Image, tag: str, built: str) -> bool:
    """Whether the build *built* (e.g. v1.36.3) may carry *tag*."""
    if image.program == "pause":
        release = build.pause_tag().split(".")[:2]
        return tag.split(".")[:2] == release
    if image.program == "etcd" and re.fullmatch(rf"{re.escape(built.lstrip('v'))}-\d+", tag):
        return True
    if tag == built:
        return True
    if image.program == "kubernetes":
        pinned, nearest, _why = build.NEAREST["kubeadm"]
        return tag == f"v{pinned}" and built == f"v{nearest}"
    return STAND_INS.get(image.program, {}).get(tag) == built


def _version(image: Image) -> str:
    return build.module_version(build.PROGRAMS[image.program])


def program_for(image: Image, tag: str = "") -> build.Program:
    """The build an image of *tag* is made from: the Kubernetes programs of the previous minor for its tag
    (build.PREVIOUS_KUBERNETES, the upgrade test's starting version), else the image's own program."""
    previous = build.PREVIOUS_KUBERNETES
    if image.program == "kubernetes" and tag and tag == build.module_version(previous):
        return previous
    return build.PROGRAMS[image.program]


def binary_of(image: Image, build_missing: bool = False, tag: str = "") -> tuple[Path, str]:
    """(the built binary, the version built) of *image* (of *tag*: see program_for); a missing build is built or
    refused."""
    program = program_for(image, tag)
    version = build.module_version(program)
    if build_missing:
        target, _seconds, _cached = build.build(program, log=lambda message: print(message, file=sys.stderr))
    else:
        target = build.target_dir(program, version, build.go_version())
    binary = target / image.binary
    if not binary.is_file():
        raise ImageError(
            f"{program.name} is not built ({binary} missing): run python -m kubestrap.lab.sources.build {program.name}"
        )
    return binary, version


def companion_binaries(image: Image, version: str, build_missing: bool = False) -> dict[str, Path]:
    """Path in the image -> built binary of each of *image*'s companions; refused when one is missing or was built
    at another version than *version* (the image's own program)."""
    found: dict[str, Path] = {}
    for name, path in image.companions:
        program = build.PROGRAMS[name]
        built = build.module_version(program)
        if built != version:
            raise ImageError(f"{name} {built} cannot go into the {image.binary} {version} image: its wrapper "
                             f"{program.dir / 'go.mod'} must require the same version as {image.program}'s")
        if build_missing:
            target = build.build(program, log=lambda message: print(message, file=sys.stderr))[0]
        else:
            target = build.target_dir(program, built, build.go_version())
        binary = target / name
        if not binary.is_file():
            raise ImageError(f"{name} is not built ({binary} missing): run python -m kubestrap.lab.sources.build {name}")
        found[path] = binary
    return found


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _header(name: str, size: int = 0, mode: int = 0o644, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type, info.mtime = size, mode, kind, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


@dataclass(frozen=True)
class Entry:
    """One member of the layer: a directory (name ends with /), a symlink (link) or a regular file (source)."""

    name: str
    mode: int
    source: Path | None = None
    link: str = ""


def debian_root(packages: tuple[str, ...], cache: Path | None = None) -> Path:
    """A directory holding *packages* unpacked (`apt-get download` + `dpkg-deb -x`, no maintainer scripts), cached
    by the package files' names (name_version_arch), so a Debian update gives a new directory."""
    debs = (cache or build.cache_root()) / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    files = {path.name.split("_", 1)[0]: path for path in debs.glob("*.deb")}
    missing = [name for name in packages if name not in files]
    if missing:
        done = subprocess.run(["apt-get", "download", *missing], cwd=debs, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise ImageError(f"apt-get download {' '.join(missing)} failed: {done.stderr.strip()} (run apt-get update?)")
        files = {path.name.split("_", 1)[0]: path for path in debs.glob("*.deb")}
    chosen = sorted(files[name].name for name in packages)
    root = debs / ("root-" + hashlib.sha256("\n".join(chosen).encode()).hexdigest()[:12])
    if not root.is_dir():
        scratch = Path(tempfile.mkdtemp(prefix=".root-", dir=debs))
        try:
            for name in chosen:
                subprocess.run(["dpkg-deb", "-x", str(debs / name), str(scratch)], check=True, capture_output=True)
            scratch.rename(root)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return root


def _entries(image: Image, binary: Path) -> list[Entry]:
    """Every member of the image's layer, sorted by name: the binary and its parent directories, /tmp, the Debian
    packages' files and the links."""
    entries: dict[str, Entry] = {}

    def parents(path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            name = "/".join(parts[:i]) + "/"
            entries.setdefault(name, Entry(name, 0o755))

    if image.debs:
        root = debian_root(image.debs)
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if (rel + "/").startswith(DEB_SKIPPED):
                continue
            if path.is_symlink():
                entries[rel] = Entry(rel, 0o777, link=os.readlink(path))
            elif path.is_dir():
                entries[rel + "/"] = Entry(rel + "/", path.stat().st_mode & 0o7777)
            else:
                entries[rel] = Entry(rel, path.stat().st_mode & 0o7777, source=path)
            parents(rel)
    for path, target in image.links:
        parents(path)
        entries[path] = Entry(path, 0o777, link=target)
    parents(image.path)
    entries["tmp/"] = Entry("tmp/", 0o1777)
    entries[image.path] = Entry(image.path, 0o755, source=binary)
    for path, companion in companion_binaries(image, _version(image)).items():
        parents(path)
        entries[path] = Entry(path, 0o755, source=companion)
    return [entries[name] for name in sorted(entries)]


def _layer(entries: list[Entry]) -> Iterator[bytes]:
    """The layer tar, in pieces."""
    for entry in entries:
        if entry.name.endswith("/"):
            yield _header(entry.name, mode=entry.mode, kind=tarfile.DIRTYPE)
            continue
        if entry.link:
            info = tarfile.TarInfo(entry.name)
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, entry.link, 0o777, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            yield info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
            continue
        assert entry.source is not None
        size = entry.source.stat().st_size
        yield _header(entry.name, size=size, mode=entry.mode)
        read = 0
        with entry.source.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                read += len(chunk)
                yield chunk
        if read != size:
            raise ImageError(f"{entry.source} changed while it was read")
        yield _padding(size)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _blobs(image: Image, reference: str, binary: Path, version: str) -> tuple[dict[str, bytes], str, int, str]:
    """The small blobs and files of the archive (path -> bytes), the layer's digest and size, the manifest digest."""
    name, tag = parse_reference(reference)
    digest, layer_size = hashlib.sha256(), 0
    for piece in _layer(_entries(image, binary)):
        digest.update(piece)
        layer_size += len(piece)
    layer = f"sha256:{digest.hexdigest()}"
    settings: dict[str, object] = {"Env": [PATH_ENV], "WorkingDir": "/", "Labels": {
        "org.opencontainers.image.title": image.binary,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.description": f"{image.binary} {version} built by kubestrap/lab/sources/build.py",
    }}  # fmt: skip
    if image.entrypoint:
        settings["Entrypoint"] = list(image.entrypoint)
    if image.cmd:
        settings["Cmd"] = list(image.cmd)
    if image.user:
        settings["User"] = image.user
    config = _json({
        "architecture": "amd64", "os": "linux", "created": EPOCH, "config": settings,
        "rootfs": {"type": "layers", "diff_ids": [layer]},
        "history": [{"created": EPOCH,
                     "created_by": f"kubestrap/lab/sources/images.py: /{image.path} ({image.binary} {version})"}],
    })  # fmt: skip
    config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    manifest = _json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": layer_size}],
    })  # fmt: skip
    manifest_digest = f"sha256:{hashlib.sha256(manifest).hexdigest()}"
    index = _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest),
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": f"{name}:{tag}", "org.opencontainers.image.ref.name": tag},
    }]})  # fmt: skip
    docker = _json([{"Config": _blob_path(config_digest), "RepoTags": [f"{name}:{tag}"], "Layers": [_blob_path(layer)]}])
    files = {
        "oci-layout": _json({"imageLayoutVersion": "1.0.0"}), "index.json": index, "manifest.json": docker,
        _blob_path(config_digest): config, _blob_path(manifest_digest): manifest,
    }  # fmt: skip
    return files, layer, layer_size, manifest_digest


def _blob_path(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _write(out: typing.BinaryIO, image: Image, binary: Path, files: dict[str, bytes], layer: str, layer_size: int) -> None:
    entries: dict[str, bytes | None] = {"blobs/": None, "blobs/sha256/": None, **files, _blob_path(layer): None}
    for path in sorted(entries):
        data = entries[path]
        if path.endswith("/"):
            out.write(_header(path, mode=0o755, kind=tarfile.DIRTYPE))
        elif data is not None:
            out.write(_header(path, size=len(data)) + data + _padding(len(data)))
        else:  # the layer, streamed from the binary
            out.write(_header(path, size=layer_size))
            digest, written = hashlib.sha256(), 0
            for piece in _layer(_entries(image, binary)):
                digest.update(piece)
                written += len(piece)
                out.write(piece)
            if f"sha256:{digest.hexdigest()}" != layer or written != layer_size:
                raise ImageError(f"{binary} changed while the image was written")
            out.write(_padding(layer_size))
    out.write(b"\0" * (2 * tarfile.BLOCKSIZE))


def images_dir(cache: Path | None = None) -> Path:
    return cache if cache is not None else build.cache_root() / "images"


def archive(reference: str, cache: Path | None = None, build_missing: bool = False) -> Archive:
    """The archive of *reference* (written unless the cache has it)."""
    name, tag = parse_reference(reference)
    image = image_for(name)
    binary, version = binary_of(image, build_missing, tag)
    companions = companion_binaries(image, version, build_missing)
    if not _stands_for(image, tag, version):
        raise ImageError(f"{name}:{tag} cannot be made from {image.program} {version}: the tag is neither the built "
                         f"version nor a documented stand-in (build.NEAREST, images.STAND_INS)")  # fmt: skip
    key = hashlib.sha256(_json({
        "format": IMAGES_FORMAT, "reference": f"{name}:{tag}", "image": asdict(image), "version": version,
        "binary": _sha256_file(binary), "debs": debian_root(image.debs).name if image.debs else "",
        **({"companions": {path: _sha256_file(made) for path, made in companions.items()}} if companions else {}),
    })).hexdigest()[:12]  # fmt: skip
    target = images_dir(cache) / f"{re.sub(r'[^A-Za-z0-9._-]', '_', f'{name}:{tag}')}-{key}.tar"
    digest_file = target.with_suffix(".digest")
    if target.is_file() and digest_file.is_file():
        return Archive(f"{name}:{tag}", target, digest_file.read_text().strip(), version, binary)
    files, layer, layer_size, manifest_digest = _blobs(image, f"{name}:{tag}", binary, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            _write(out, image, binary, files, layer, layer_size)
        os.chmod(scratch, 0o644)
        os.replace(scratch, target)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
    digest_file.write_text(manifest_digest + "\n")
    return Archive(f"{name}:{tag}", target, manifest_digest, version, binary)


def write_archives(references: list[str], cache: Path | None = None, build_missing: bool = False) -> dict[str, Archive]:
    """name:tag -> archive for every reference (the same name:tag given twice, e.g. with a digest, is one image)."""
    result: dict[str, Archive] = {}
    for reference in references:
        name, tag = parse_reference(reference)
        if f"{name}:{tag}" not in result:
            result[f"{name}:{tag}"] = archive(reference, cache, build_missing)
    return result


def kubeadm_list(config: Path, build_missing: bool = False) -> list[str]:
    """What the built kubeadm's `config images list --config CONFIG` prints, one reference a line."""
    kubernetes = build.PROGRAMS["kubernetes"]
    if build_missing:
        target = build.build(kubernetes, log=lambda message: print(message, file=sys.stderr))[0]
    else:
        target = build.target_dir(kubernetes, build.module_version(kubernetes), build.go_version())
    if not (target / "kubeadm").is_file():
        raise ImageError(
            f"kubeadm is not built ({target / 'kubeadm'} missing): run python -m kubestrap.lab.sources.build kubernetes"
        )
    done = subprocess.run([str(target / "kubeadm"), "config", "images", "list", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    if done.returncode != 0:
        raise ImageError(f"kubeadm config images list --config {config} failed: {done.stderr.strip()}")
    return done.stdout.split()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("references", nargs="*", help="image references, e.g. registry.k8s.io/pause:3.10.2")
    parser.add_argument("--kubeadm-config", type=Path, help="also every image the built kubeadm lists for this file")
    parser.add_argument("--cache", type=Path, help="where the archives go (default: beside the builds)")
    args = parser.parse_args(argv)
    try:
        references = list(args.references)
        if args.kubeadm_config:
            for reference in kubeadm_list(args.kubeadm_config, build_missing=True):
                if parse_reference(reference)[0].rsplit("/", 1)[-1] in IMAGES:
                    references.append(reference)
                else:
                    print(f"skipped {reference}: no image is made for it", file=sys.stderr)
        if not references:
            parser.error("no image references given")
        for reference, made in write_archives(references, args.cache, build_missing=True).items():
            print(reference, made.path, made.manifest_digest, made.built_version)
    except (ImageError, build.BuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
