"""Action kubestrap_artifacts_fetch: the artifacts of the play's nodes into the controller cache, verified.

Runs on the controller (an action plugin: no module is sent anywhere). Each entry of I(downloads) is an entry of
the artifact map (filter_plugins/artifact_map.py): its file must end up at I(cache) with the sha256 I(sha256),
downloaded from I(url) when the cache lacks it. The download is kubestrap/artifacts.py's `fetch_file`, the one
`bootstrap.py artifacts fetch` runs: it streams into a temporary file next to the target while hashing and
renames only a verified file into place, so the cache never holds a half-written or unverified file. The
transport is Ansible's `open_url` with get_url's defaults (proxies from the environment, certificates
validated, ~/.netrc credentials, user agent ansible-httpget), as when this role downloaded with get_url.

Each entry of I(images) (name, digest, archive, url, arch: the image archives of the play's nodes) is fetched the
same way with kubestrap/images.py's `download`, the one `bootstrap.py artifacts fetch` runs against a mirror: kept
only when the archive names the image, points at the pinned digest and every blob of linux/<arch> hashes to its
name; an archive already in the cache that verifies so is not downloaded again.

Every entry is tried; when any fails, the task fails with one message naming each failed file, where it came
from and why (for a checksum mismatch: the expected and the actual sha256). Check mode downloads nothing and
reports a change for each entry not in the cache with its sha256.
"""

from __future__ import annotations

import sys
import urllib.error
from pathlib import Path
from typing import Any, BinaryIO

from ansible.module_utils import urls
from ansible.plugins.action import ActionBase

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from kubestrap import artifacts, images  # noqa: E402

REQUIRED = ("name", "version", "arch", "url", "sha256", "cache")
IMAGE_REQUIRED = ("name", "digest", "archive", "url", "arch")
ADVICE = (
    "A checksum mismatch means the file differs from the pin: fix the mirror (kubestrap_artifacts_base_url) or, "
    "if the pin itself is wrong, the sha256 in group_vars/all/versions.yml."
)


def open_url(url: str, timeout: float) -> BinaryIO:
    """GET *url* as get_url did (its defaults); a failure is an URLError/HTTPError for fetch_file to report."""
    try:
        return urls.open_url(url, timeout=timeout, http_agent="ansible-httpget", follow_redirects="urllib2")
    except urls.ConnectionError as exc:  # Ansible's own (SSL validation, proxy tunnel, missing modules)
        raise urllib.error.URLError(str(exc)) from None


def fetch_images(wanted: list[dict[str, Any]], timeout: float, check_mode: bool = False,
                 opener: artifacts.Opener = open_url) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
    """(results, failures) of fetching every image archive of *wanted* into its `archive` path."""
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    for entry in wanted:
        what = f"image {entry.get('name', '?')} ({entry.get('arch', '?')})"
        missing = [key for key in IMAGE_REQUIRED if not entry.get(key)]
        if missing:
            failures.append(f"[{what}: the image entry lacks {', '.join(missing)}]")
            continue
        target, name, digest, arch = Path(entry["archive"]), str(entry["name"]), str(entry["digest"]), str(entry["arch"])
        try:
            images.verify_archive(target, name, digest, arch)
            cached = True
        except images.ImageError:
            cached = False  # missing, stale or damaged: downloaded again (download replaces it only once verified)
        if cached or check_mode:
            results.append({"name": name, "arch": arch, "cache": str(target), "downloaded": not cached})
            continue
        image = images.ClusterImage(name, images.parse_reference(f"{name}@{digest}"), "all", "")
        try:
            images.download(image, arch, target, str(entry["url"]), timeout=timeout, opener=opener)
        except images.ImageError as exc:  # DigestMismatch included: names the blob and both digests
            failures.append(f"[{what} from {urls.mask_url(str(entry['url']))}: {exc}]")
            continue
        results.append({"name": name, "arch": arch, "cache": str(target), "downloaded": True})
    return results, failures


def fetch(downloads: list[dict[str, Any]], timeout: float, cache_dir: str = "", check_mode: bool = False,
          opener: artifacts.Opener = open_url, wanted_images: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """Fetch every entry and image archive; the action's result. *cache_dir* (the cache's root) is named in the
    failure message."""
    results, failures = fetch_images(wanted_images or [], timeout, check_mode, opener)
    for entry in downloads:
        missing = [key for key in REQUIRED if not entry.get(key)]
        what = f"{entry.get('name', '?')} {entry.get('version', '')} ({entry.get('arch', '?')})"
        if missing:
            failures.append(f"[{what}: the artifact map entry lacks {', '.join(missing)}]")
            continue
        target = Path(entry["cache"])
        url = str(entry["url"])
        shown = urls.mask_url(url)
        if check_mode:
            cached = target.is_file() and artifacts.sha256_file(target) == entry["sha256"]
            results.append({"name": entry["name"], "arch": entry["arch"], "cache": str(target), "downloaded": not cached})
            continue
        try:
            downloaded = artifacts.fetch_file(
                url, target, str(entry["sha256"]), what=what,
                pin=f"kubestrap_artifacts.{entry['name']}.sha256.{entry['arch']}", timeout=timeout, opener=opener,
            )  # fmt: skip
        except artifacts.ChecksumMismatch as exc:
            failures.append(f"[{what}, file {target.name} from {shown}: sha256 mismatch, expected {exc.expected}, "
                            f"got {exc.actual}]")  # fmt: skip
            continue
        except artifacts.DownloadFailed as exc:
            failures.append(f"[{what}, file {target.name} from {shown}: {exc.reason}]")
            continue
        except (artifacts.ArtifactError, OSError) as exc:
            failures.append(f"[{what}, file {target.name}: {exc}]")
            continue
        results.append({"name": entry["name"], "arch": entry["arch"], "cache": str(target), "downloaded": downloaded})
    changed = any(r["downloaded"] for r in results)
    if failures:
        return {
            "failed": True,
            "changed": changed,
            "results": results,
            "msg": "Artifact download or verification failed on the controller; nothing was staged on any node. "
            + " ".join(failures)
            + f" {ADVICE} Nothing unverified was kept in {cache_dir or 'the controller cache'}.",
        }
    return {"changed": changed, "results": results}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset({"downloads", "images", "timeout", "cache_dir"})

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        downloads = self._task.args.get("downloads") or []
        if not isinstance(downloads, list) or not all(isinstance(d, dict) for d in downloads):
            return {**result, "failed": True, "msg": "downloads must be a list of artifact map entries"}
        wanted_images = self._task.args.get("images") or []
        if not isinstance(wanted_images, list) or not all(isinstance(d, dict) for d in wanted_images):
            return {**result, "failed": True, "msg": "images must be a list of {name, digest, archive, url, arch}"}
        try:
            timeout = float(self._task.args.get("timeout", 300))
        except (TypeError, ValueError):
            return {**result, "failed": True, "msg": "timeout must be a number of seconds"}
        cache_dir = str(self._task.args.get("cache_dir") or "")
        return {**result, **fetch(downloads, timeout, cache_dir, bool(self._task.check_mode), wanted_images=wanted_images)}
