"""The cluster's own container images as artifacts: which ones, their digests, OCI archives of them.

`group_vars/all/versions.yml` lists the images each node needs for the cluster itself
(`kubestrap_cluster_images`: kubeadm's control-plane images, etcd, CoreDNS, the sandbox image), their tags
derived from the pins (`{kubeadm}` stands for `kubestrap_artifacts.kubeadm.version`, any `{<artifact>}` for
that artifact's version). An image is identified by the digest its tag resolves to: pinned in the reference
(`name:tag@sha256:...`), or recorded by `bootstrap.py artifacts fetch` from the registry into the lock file
`group_vars/all/images_lock.yml` (`kubestrap_images_lock`, committed by the user) and verified ever after.

For air-gapped sites each image travels as an OCI image layout in a tar ("OCI archive"): `oci-layout`,
`index.json` naming the image (`io.containerd.image.name`) and pointing at the digest the tag resolves to,
and the blobs: that index or manifest, and for one architecture its manifest, config and layers.
`ctr -n k8s.io images import --platform linux/<arch>` loads it. Archives live in the controller cache and in
a mirror or bundle at `images/<name>:<tag>/linux-<arch>.oci.tar`.

`pull()` is a small OCI distribution client (standard library only, no Docker daemon): anonymous bearer-token
auth (`WWW-Authenticate: Bearer realm=...`), manifests by tag, blobs by digest, each verified against its
digest while it streams into the archive. Registries on a loopback address are spoken to over plain HTTP (as
Docker treats 127.0.0.0/8), every other one over HTTPS.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from kubestrap.paths import DEFAULTS_DIR

LOCK_FILE = DEFAULTS_DIR / "images_lock.yml"
LOCK_KEY = "kubestrap_images_lock"

# the images kubeadm itself runs (what `kubeadm init`/`join` asks for), by key; kube-proxy only on a cluster
# without Cilium (its entry says `without_addon: cilium`)
CONTROL_PLANE_KUBERNETES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
KUBERNETES_TAGGED = (*CONTROL_PLANE_KUBERNETES, "kube-proxy")  # tagged v<kubeadm>
REQUIRED = (*KUBERNETES_TAGGED, "etcd", "coredns", "pause")
NODE_SETS = ("all", "control_plane")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))
NAME_ANNOTATION = "io.containerd.image.name"

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+)\}")
_CHUNK = 1 << 20
_LOOPBACK = re.compile(r"^(localhost|127(\.\d+){3}|\[::1\])(:\d+)?$")


class ImageError(Exception):
    """An image cannot be used; the message says which one, why and what to do."""


class DigestMismatch(ImageError):
    """Content does not have the digest it must have (nothing was kept)."""


# --- references and the list in versions.yml ------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    name: str  # registry.k8s.io/coredns/coredns
    tag: str
    digest: str = ""  # sha256:... when pinned in the reference

    @property
    def name_tag(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def registry(self) -> str:
        first = self.name.split("/", 1)[0]
        if "/" in self.name and ("." in first or ":" in first or first == "localhost"):
            return first
        return "docker.io"

    @property
    def repository(self) -> str:
        if self.registry == "docker.io" and not self.name.startswith("docker.io/"):
            path = self.name
        else:
            path = self.name.split("/", 1)[1]
        return path if "/" in path or self.registry != "docker.io" else f"library/{path}"

    def __str__(self) -> str:
        return self.name_tag + (f"@{self.digest}" if self.digest else "")


def parse_reference(text: str) -> Reference:
    """`name:tag[@sha256:...]`; a tag is required (it says which release it is)."""
    name, _, digest = str(text).partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon <= slash:
        raise ImageError(f"image {text!r} has no tag (name:tag, optionally @sha256:...)")
    tag = name[colon + 1 :]
    if not _TAG.match(tag):
        raise ImageError(f"image {text!r}: {tag!r} is not a valid tag")
    if digest and not _DIGEST.match(digest):
        raise ImageError(f"image {text!r}: the digest must be sha256: and 64 lowercase hex digits")
    return Reference(name[:colon], tag, digest)


@dataclass(frozen=True)
class ClusterImage:
    key: str  # kube-apiserver, etcd, ... or an add-on's name
    reference: Reference  # placeholders resolved; digest from the reference or the lock ("" if neither)
    nodes: str  # all | control_plane
    pinned_in: str  # "reference", "lock" or ""
    without_addon: str = ""  # needed only while this add-on is off (kube-proxy: while Cilium is off)

    def mirror_path(self, arch: str) -> str:
        """Where its archive lives in a mirror, a bundle and the controller cache."""
        return f"images/{self.reference.name_tag}/linux-{arch}.oci.tar"

    def cache_path(self, cache_dir: Path, arch: str) -> Path:
        return cache_dir / self.mirror_path(arch)


def resolve(pattern: str, versions: Mapping[str, str], pinned_images: Mapping[str, Any] | None = None) -> str:
    """Replace each `{artifact}` by that pinned artifact's version; `{images.<key>}` (the whole value) is the
    reference kubestrap_images.<key> pins (the sandbox image: `{images.pause}`)."""
    whole = re.fullmatch(r"\{images\.([A-Za-z0-9_]+)\}", pattern)
    if whole:
        value = (pinned_images or {}).get(whole.group(1))
        if not isinstance(value, str):
            raise ImageError(f"{pattern} names no image of kubestrap_images")
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(1) not in versions:
            raise ImageError(f"{{{match.group(1)}}} in {pattern!r} names no pinned artifact (kubestrap_artifacts: "
                             f"{', '.join(sorted(versions))})")  # fmt: skip
        return versions[match.group(1)]

    return _PLACEHOLDER.sub(one, pattern)


def artifact_versions(settings: Mapping[str, Any]) -> dict[str, str]:
    arts = settings.get("kubestrap_artifacts")
    if not isinstance(arts, Mapping):
        return {}
    return {str(k): str(v["version"]) for k, v in arts.items() if isinstance(v, Mapping) and "version" in v}


def _pinned_images(settings: Mapping[str, Any]) -> Mapping[str, Any]:
    value = settings.get("kubestrap_images")
    return value if isinstance(value, Mapping) else {}


def cluster_images(settings: Mapping[str, Any], lock: Mapping[str, str] | None = None) -> list[ClusterImage]:
    """The resolved `kubestrap_cluster_images` of *settings* (versions.yml plus overrides); digests from the
    reference, else from *lock* (default: the settings' kubestrap_images_lock)."""
    raw = settings.get("kubestrap_cluster_images") or {}
    if not isinstance(raw, Mapping):
        raise ImageError("kubestrap_cluster_images must map a name to {image, nodes}")
    locked = dict(settings.get(LOCK_KEY) or {}) if lock is None else dict(lock)
    versions = artifact_versions(settings)
    chosen = []
    for key, entry in raw.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("image"), str):
            raise ImageError(f"kubestrap_cluster_images.{key} must be a mapping with image (name:tag) and nodes")
        reference = parse_reference(resolve(entry["image"], versions, _pinned_images(settings)))
        nodes = entry.get("nodes", "all")
        if nodes not in NODE_SETS:
            raise ImageError(f"kubestrap_cluster_images.{key}.nodes must be one of {', '.join(NODE_SETS)}, got {nodes!r}")
        pinned_in = "reference" if reference.digest else ""
        if not reference.digest and locked.get(reference.name_tag):
            reference = Reference(reference.name, reference.tag, str(locked[reference.name_tag]))
            pinned_in = "lock"
        chosen.append(ClusterImage(str(key), reference, str(nodes), pinned_in, str(entry.get("without_addon") or "")))
    return chosen


def node_images(
    settings: Mapping[str, Any], control_plane: bool, addons: Mapping[str, Any], lock: Mapping[str, str] | None = None
) -> list[ClusterImage]:
    """The images one node runs: `nodes: all` ones, `nodes: control_plane` ones on a control plane, and none whose
    `without_addon` add-on is on in *addons* (addons_enabled)."""
    return [
        image
        for image in cluster_images(settings, lock)
        if (image.nodes == "all" or control_plane) and not (image.without_addon and addons.get(image.without_addon))
    ]


def problems(settings: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(key, message) for every way the images list disagrees with the pins; `bootstrap.py check` reports them."""
    raw = settings.get("kubestrap_cluster_images")
    if raw is None:
        return
    if not isinstance(raw, Mapping):
        yield "kubestrap_cluster_images", "must map a name to {image, nodes}"
        return
    versions = artifact_versions(settings)
    kubeadm = versions.get("kubeadm")
    if kubeadm is not None and not re.fullmatch(r"\d+\.\d+\.\d+", kubeadm):
        kubeadm = None  # not a pinned version: reported as such, nothing to compare with
    for key in REQUIRED:
        if key not in raw:
            yield (f"kubestrap_cluster_images.{key}",
                   "missing: the cluster runs it (kubeadm's control plane, CoreDNS and the sandbox image)")  # fmt: skip
    proxy = raw.get("kube-proxy")
    if isinstance(proxy, Mapping) and proxy.get("without_addon") != "cilium":
        yield ("kubestrap_cluster_images.kube-proxy.without_addon",
               "must be cilium: kube-proxy runs only while Cilium (which replaces it) is off")  # fmt: skip
    addons = settings.get("addons_enabled")
    resolved: dict[str, Reference] = {}
    for key, entry in raw.items():
        where = f"kubestrap_cluster_images.{key}"
        if not isinstance(entry, Mapping):
            yield where, "must be a mapping with image (name:tag, optionally @sha256:...) and nodes"
            continue
        for field in sorted(set(entry) - {"image", "nodes", "without_addon"}):
            yield f"{where}.{field}", "unknown field (an image has image, nodes and optionally without_addon)"
        without = entry.get("without_addon")
        if without is not None and isinstance(addons, Mapping) and without not in addons:
            yield f"{where}.without_addon", f"{without!r} is no add-on of addons_enabled ({', '.join(sorted(addons))})"
        if entry.get("nodes", "all") not in NODE_SETS:
            yield f"{where}.nodes", f"must be one of {', '.join(NODE_SETS)}, got {entry.get('nodes')!r}"
        pattern = str(entry.get("image", ""))
        try:
            resolved[str(key)] = parse_reference(resolve(pattern, versions, _pinned_images(settings)))
        except ImageError as exc:
            if not pattern.startswith("{images."):  # kubestrap_images has its own check
                yield f"{where}.image", str(exc)
    if kubeadm:
        for key in KUBERNETES_TAGGED:
            ref = resolved.get(key)
            if ref is not None and ref.tag != f"v{kubeadm}":
                yield (f"kubestrap_cluster_images.{key}.image",
                       f"tag {ref.tag} disagrees with the pinned kubeadm {kubeadm}, which runs {key} v{kubeadm}; "
                       "write the tag as v{kubeadm} so it follows the pin")  # fmt: skip
        source = settings.get("kubestrap_cluster_images_from_kubeadm")
        if str(source) != kubeadm:
            yield ("kubestrap_cluster_images_from_kubeadm",
                   f"the etcd, coredns and pause tags were read from kubeadm {source} but kubeadm is pinned at {kubeadm}: "
                   f"run `kubeadm config images list --kubernetes-version v{kubeadm}`, update those tags and set this "
                   f"to \"{kubeadm}\"")  # fmt: skip
    pause = _pinned_images(settings).get("pause")
    with contextlib.suppress(ImageError):
        sandbox = parse_reference(pause) if isinstance(pause, str) else None
        if sandbox is not None and "pause" in resolved and resolved["pause"] != sandbox:
            yield ("kubestrap_cluster_images.pause.image",
                   f"{resolved['pause']} is not containerd's sandbox image kubestrap_images.pause ({sandbox}); "
                   "they must be the same image")  # fmt: skip
    lock = settings.get(LOCK_KEY)
    if lock is not None and not isinstance(lock, Mapping):
        yield LOCK_KEY, "must map name:tag to sha256:<digest>"
    for name, digest in (lock.items() if isinstance(lock, Mapping) else []):
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            yield f"{LOCK_KEY}.{name}", "must be sha256: and 64 lowercase hex digits"


def for_nodes(images: Iterable[ClusterImage], control_plane: bool) -> list[ClusterImage]:
    return [image for image in images if image.nodes == "all" or control_plane]


# --- the lock file ---------------------------------------------------------------------------------

LOCK_HEADER = """\
---
# Digests of kubestrap_cluster_images (versions.yml) that the references there do not pin: what each tag
# resolved to when `bootstrap.py artifacts fetch` pulled it from its registry (over HTTPS). Written by that
# command; commit it. Every later fetch, bundle and `up` with a mirror verifies the images against it, so a
# tag moved upstream or a tampered mirror is refused. A version bump adds new entries; delete an entry to
# record it anew.
"""


def read_lock(path: Path = LOCK_FILE) -> dict[str, str]:
    import yaml

    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(k): str(v) for k, v in (data.get(LOCK_KEY) or {}).items()}


def write_lock(entries: Mapping[str, str], path: Path = LOCK_FILE) -> None:
    lines = [LOCK_HEADER.rstrip("\n")]
    if entries:
        lines.append(f"{LOCK_KEY}:")
        lines += [f'  "{name}": "{entries[name]}"' for name in sorted(entries)]
    else:
        lines.append(f"{LOCK_KEY}: {{}}")
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(temp, 0o644)
    os.replace(temp, path)


# --- OCI archives ------------------------------------------------------------------------------------


def _tar_header(name: str, size: int, kind: bytes = tarfile.REGTYPE, mode: int = 0o644) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode, info.mtime = size, kind, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _platform_manifest(index: Mapping[str, Any], arch: str, what: str) -> Mapping[str, Any]:
    for entry in index.get("manifests") or []:
        platform = entry.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == arch and entry.get("mediaType") in MANIFEST_TYPES:
            return entry
    raise ImageError(f"{what} has no linux/{arch} image")


@dataclass(frozen=True)
class ArchiveInfo:
    name_tag: str
    digest: str  # what the tag resolves to (index or manifest)
    manifest: str  # the architecture's manifest
    blobs: int


def verify_archive(path: Path, name_tag: str, digest: str, arch: str, *, hash_layers: bool = True) -> ArchiveInfo:
    """Check an OCI archive: it names *name_tag*, points at *digest*, holds linux/*arch*'s manifest, config and
    layers, and (with *hash_layers*) every blob hashes to its name. Raises DigestMismatch or ImageError."""
    what = f"{path.name} ({name_tag})"
    try:
        archive = tarfile.open(path)  # noqa: SIM115 (closed by the with below)
    except (OSError, tarfile.TarError) as exc:
        raise ImageError(f"{what} is not a readable tar: {exc}") from None
    with archive:
        members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            if name not in members:
                raise ImageError(f"{what} lacks {name}")
            return archive.extractfile(members[name]).read()

        def blob(wanted: str) -> bytes:
            data = read(_blob_name(wanted))
            actual = "sha256:" + hashlib.sha256(data).hexdigest()
            if actual != wanted:
                raise DigestMismatch(f"{what}: blob {wanted} hashes to {actual}")
            return data

        try:
            index = json.loads(read("index.json"))
        except ValueError:
            raise ImageError(f"{what}: index.json is not JSON") from None
        entries = [e for e in index.get("manifests") or [] if (e.get("annotations") or {}).get(NAME_ANNOTATION) == name_tag]
        if len(entries) != 1:
            raise ImageError(f"{what} does not name {name_tag} (index.json {NAME_ANNOTATION})")
        top = entries[0]
        if top.get("digest") != digest:
            raise DigestMismatch(f"{what} holds {name_tag} as {top.get('digest')}, but its pinned digest is {digest}")
        document = json.loads(blob(digest))
        manifest_digest = digest
        if top.get("mediaType") in INDEX_TYPES or document.get("manifests") is not None:
            manifest_digest = _platform_manifest(document, arch, what)["digest"]
            document = json.loads(blob(manifest_digest))
        wanted = [document["config"]["digest"], *(layer["digest"] for layer in document.get("layers") or [])]
        for item in wanted:
            if hash_layers:
                _hash_member(archive, members, item, what)
            elif _blob_name(item) not in members:
                raise ImageError(f"{what} lacks {_blob_name(item)}")
        return ArchiveInfo(name_tag, digest, manifest_digest, len(wanted) + 1)


def _hash_member(archive: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo], wanted: str, what: str) -> None:
    name = _blob_name(wanted)
    if name not in members:
        raise ImageError(f"{what} lacks {name}")
    digest = hashlib.sha256()
    stream = archive.extractfile(members[name])
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    if "sha256:" + digest.hexdigest() != wanted:
        raise DigestMismatch(f"{what}: blob {wanted} hashes to sha256:{digest.hexdigest()}")


class ArchiveWriter:
    """Writes an OCI archive in a fixed order (oci-layout, index.json, then blobs by digest): the same image
    gives the same bytes."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.written: set[str] = set()

    def file(self, name: str, data: bytes) -> None:
        self.out.write(_tar_header(name, len(data)) + data + _padding(len(data)))

    def directories(self) -> None:
        for name in ("blobs/", "blobs/sha256/"):
            self.out.write(_tar_header(name, 0, tarfile.DIRTYPE, 0o755))

    def blob(self, digest: str, size: int, chunks: Iterable[bytes]) -> None:
        """A blob streamed from *chunks*, verified against *digest* and *size* as it is written."""
        if digest in self.written:
            return
        self.out.write(_tar_header(_blob_name(digest), size))
        hasher, length = hashlib.sha256(), 0
        for chunk in chunks:
            hasher.update(chunk)
            length += len(chunk)
            if length > size:
                break
            self.out.write(chunk)
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest or length != size:
            raise DigestMismatch(f"blob {digest} ({size} bytes) arrived as {actual} ({length} bytes)")
        self.out.write(_padding(size))
        self.written.add(digest)

    def close(self) -> None:
        self.out.write(b"\0" * (2 * tarfile.BLOCKSIZE))


# --- the registry client ----------------------------------------------------------------------------

Opener = Callable[[urllib.request.Request, float], Any]


def _open(request: urllib.request.Request, timeout: float) -> Any:
    return urllib.request.urlopen(request, timeout=timeout)  # registries named in versions.yml


class Registry:
    """Anonymous pulls from one registry (OCI distribution API), bearer tokens fetched as the registry asks."""

    def __init__(self, host: str, *, timeout: float = 60.0, opener: Opener = _open) -> None:
        self.host = "registry-1.docker.io" if host == "docker.io" else host
        self.scheme = "http" if _LOOPBACK.match(self.host) else "https"
        self.timeout = timeout
        self.opener = opener
        self.tokens: dict[str, str] = {}

    def _url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{path}"

    def get(self, repository: str, path: str, accept: str = "") -> Any:
        url = self._url(f"{repository}/{path}")
        for attempt in (1, 2):
            request = urllib.request.Request(url, headers={"User-Agent": "kubestrap-images"})
            if accept:
                request.add_header("Accept", accept)
            if repository in self.tokens:
                # not sent on to a redirect's target (blob storage has its own signed URLs)
                request.add_unredirected_header("Authorization", f"Bearer {self.tokens[repository]}")
            try:
                return self.opener(request, self.timeout)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 1 and repository not in self.tokens:
                    self.tokens[repository] = self._token(exc.headers.get("WWW-Authenticate", ""), repository, url)
                    continue
                raise ImageError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, OSError) as exc:
                raise ImageError(f"{url}: {getattr(exc, 'reason', None) or exc}") from None
        raise ImageError(f"{url}: refused after authenticating")

    def _token(self, challenge: str, repository: str, url: str) -> str:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() != "bearer":
            raise ImageError(f"{url} asks for {scheme or 'no'} authentication; only anonymous bearer tokens are supported")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if "realm" not in fields:
            raise ImageError(f"{url}: the bearer challenge names no realm")
        query = {"service": fields.get("service", ""), "scope": fields.get("scope") or f"repository:{repository}:pull"}
        token_url = fields["realm"] + ("&" if "?" in fields["realm"] else "?") + urllib.parse.urlencode(query)
        try:
            with contextlib.closing(self.opener(urllib.request.Request(token_url, headers={"User-Agent": "kubestrap-images"}),
                                                self.timeout)) as response:  # fmt: skip
                answer = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ImageError(f"cannot get a pull token from {fields['realm']}: {getattr(exc, 'reason', None) or exc}") from None
        token = answer.get("token") or answer.get("access_token")
        if not token:
            raise ImageError(f"{fields['realm']} answered without a token")
        return str(token)

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest or index by tag or digest."""
        with contextlib.closing(self.get(repository, f"manifests/{reference}", ACCEPT)) as response:
            body = response.read()
            media = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip()
            served = response.headers.get("Docker-Content-Digest") or ""
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if served and served != digest:
            raise DigestMismatch(f"{repository}:{reference}: the registry says {served} but the body hashes to {digest}")
        if not media:
            media = json.loads(body).get("mediaType", "")
        return body, media, digest

    def blob_chunks(self, repository: str, digest: str) -> Iterator[bytes]:
        with contextlib.closing(self.get(repository, f"blobs/{digest}")) as response:
            while chunk := response.read(_CHUNK):
                yield chunk


def pull(image: ClusterImage, arch: str, target: Path, *, timeout: float = 60.0, opener: Opener = _open) -> str:
    """Write *image* for linux/*arch* as an OCI archive at *target* from its registry; return the digest its tag
    resolves to. A pinned digest (reference or lock) must match, else nothing is kept."""
    ref = image.reference
    registry = Registry(ref.registry, timeout=timeout, opener=opener)
    body, media, digest = registry.manifest(ref.repository, ref.tag)
    if ref.digest and digest != ref.digest:
        raise DigestMismatch(
            f"{ref.name_tag} resolves to {digest} at {registry.host}, but it is pinned to {ref.digest} "
            f"({'kubestrap_cluster_images in versions.yml' if image.pinned_in == 'reference' else 'images_lock.yml'}): "
            "the tag was moved or the registry serves other content; nothing was kept"
        )
    document = json.loads(body)
    manifest_body, manifest_digest = body, digest
    if media in INDEX_TYPES or document.get("manifests") is not None:
        entry = _platform_manifest(document, arch, f"{ref.name_tag} at {registry.host}")
        manifest_body, _media, manifest_digest = registry.manifest(ref.repository, entry["digest"])
        if manifest_digest != entry["digest"]:
            raise DigestMismatch(f"{ref.name_tag}: manifest {entry['digest']} arrived as {manifest_digest}")
    manifest = json.loads(manifest_body)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        "mediaType": media, "digest": digest, "size": len(body),
        "annotations": {NAME_ANNOTATION: ref.name_tag, "org.opencontainers.image.ref.name": ref.tag},
    }]}  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            writer = ArchiveWriter(out)
            writer.file("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
            writer.file("index.json", _json(index))
            writer.directories()
            writer.blob(digest, len(body), [body])
            writer.blob(manifest_digest, len(manifest_body), [manifest_body])
            for descriptor in [manifest["config"], *(manifest.get("layers") or [])]:
                writer.blob(descriptor["digest"], int(descriptor["size"]),
                            registry.blob_chunks(ref.repository, descriptor["digest"]))  # fmt: skip
            writer.close()
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
    return digest


def download(image: ClusterImage, arch: str, target: Path, url: str, *, timeout: float = 60.0,
             opener: Callable[[str, float], BinaryIO] | None = None) -> None:  # fmt: skip
    """Fetch a ready archive from a mirror (*url*) into *target*, keeping it only if it verifies."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "kubestrap-images"})
                response = opener(url, timeout) if opener else urllib.request.urlopen(request, timeout=timeout)
                with contextlib.closing(response):
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
            except urllib.error.HTTPError as exc:
                raise ImageError(f"cannot download {image.reference.name_tag} ({arch}) from {url}: "
                                 f"HTTP {exc.code} {exc.reason}") from None  # fmt: skip
            except (urllib.error.URLError, OSError) as exc:
                raise ImageError(f"cannot download {image.reference.name_tag} ({arch}) from {url}: "
                                 f"{getattr(exc, 'reason', None) or exc}") from None  # fmt: skip
        verify_archive(temp, image.reference.name_tag, image.reference.digest, arch)
        temp.chmod(0o644)
        temp.replace(target)
    finally:
        temp.unlink(missing_ok=True)


__all__ = [
    "LOCK_FILE",
    "REQUIRED",
    "ArchiveInfo",
    "ArchiveWriter",
    "ClusterImage",
    "DigestMismatch",
    "ImageError",
    "Reference",
    "Registry",
    "cluster_images",
    "download",
    "for_nodes",
    "parse_reference",
    "problems",
    "pull",
    "read_lock",
    "resolve",
    "verify_archive",
    "write_lock",
]
