"""`kubestrap artifacts fetch|bundle`: the controller's artifact cache from the command line.

The main CLI calls `register(subparsers)` and later `args.func(args)`; `args.inventory` (when the
main parser defines it) names the inventory whose group_vars may override
`kubestrap_artifacts_base_url`, `kubestrap_architectures` or `kubestrap_artifacts`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from kubestrap import artifacts, images, inventory

_OVERRIDABLE = ("kubestrap_artifacts", "kubestrap_artifacts_base_url", "kubestrap_architectures",
               "kubestrap_cluster_images", "kubestrap_images", "kubestrap_images_lock")  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `artifacts fetch` and `artifacts bundle` to the main parser."""
    parser = subparsers.add_parser(
        "artifacts",
        help="download, verify and bundle the pinned binaries (controller cache)",
        description="Manage the controller's cache of pinned binaries (group_vars/all/versions.yml).",
    )
    parser.add_argument(
        "--lock-file",
        type=Path,
        default=None,
        help="digests of the cluster's images not pinned in versions.yml (default: group_vars/all/images_lock.yml)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache directory (default: $KUBESTRAP_ARTIFACTS_DIR or .cache/artifacts in the repository)",
    )
    actions = parser.add_subparsers(dest="artifacts_command", metavar="{fetch,bundle}", required=True)

    fetch = actions.add_parser("fetch", help="download and verify every pinned artifact into the cache")
    fetch.add_argument(
        "--arch",
        action="append",
        default=None,
        metavar="ARCH",
        help="architecture to fetch (repeatable; default: every one in kubestrap_architectures)",
    )
    fetch.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="mirror base URL (default: kubestrap_artifacts_base_url; '' forces upstream URLs)",
    )
    fetch.add_argument("--only", action="append", default=None, metavar="NAME", help="fetch only this artifact (repeatable)")
    fetch.add_argument("--images-only", action="store_true", help="fetch only the cluster's container images")
    fetch.add_argument(
        "--no-images",
        action="store_true",
        help="skip the cluster's container images (kubestrap_cluster_images; pulled from their registries, or "
        "downloaded from the mirror, as OCI archives; digests not pinned yet are recorded in group_vars/all/images_lock.yml)",
    )
    fetch.set_defaults(func=run_fetch)

    bundle = actions.add_parser("bundle", help="write the cache as a .tar.gz in mirror layout (serve it as the base URL)")
    bundle.add_argument("output", type=Path, metavar="OUT.tar.gz", help="tarball to write")
    bundle.add_argument("--arch", action="append", default=None, metavar="ARCH", help="architecture to include (repeatable)")
    bundle.add_argument("--no-images", action="store_true", help="leave the cluster's container images out")
    bundle.set_defaults(func=run_bundle)


def _cache_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "cache_dir", None):
        return Path(args.cache_dir)
    return artifacts.controller_cache_dir()


def _inventory_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings of the inventory that change what is fetched (see overrides_of)."""
    location = getattr(args, "inventory", None)
    if not location:
        return {}
    try:
        inv = inventory.load(Path(location))
    except Exception as exc:  # the loader's own errors already name file and line
        raise artifacts.ArtifactError(f"cannot read the inventory {location}: {exc}") from None
    return overrides_of(inv)


def overrides_of(inv: inventory.Inventory) -> dict[str, Any]:
    """The values of _OVERRIDABLE the inventory sets AND that win over the documented defaults, in
    Ansible's order (kubestrap.inventory.effective: the one precedence function)."""
    settings = inventory.effective(inv.layers)
    return {key: value for key, (value, layer) in settings.items()
            if key in _OVERRIDABLE and layer.scope != "defaults"}  # fmt: skip


def _versions(args: argparse.Namespace) -> artifacts.Versions:
    return artifacts.load_versions(artifacts.VERSIONS_FILE, _inventory_overrides(args))


def _lock_file(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "lock_file", None) or images.LOCK_FILE)


def _cluster_images(args: argparse.Namespace) -> list[images.ClusterImage]:
    """kubestrap_cluster_images resolved against the pins; digests from the references and the lock file."""
    try:
        settings = dict(yaml.safe_load(artifacts.VERSIONS_FILE.read_text(encoding="utf-8")) or {})
        settings[images.LOCK_KEY] = images.read_lock(_lock_file(args))
        settings.update(_inventory_overrides(args))
        return images.cluster_images(settings)
    except (OSError, yaml.YAMLError, images.ImageError) as exc:
        raise artifacts.ArtifactError(f"kubestrap_cluster_images: {exc}") from None


def run_fetch(args: argparse.Namespace) -> int:
    cache_dir = _cache_dir(args)
    try:
        versions = _versions(args)

        def report(result: artifacts.FetchResult) -> None:
            state = "downloaded" if result.downloaded else "cached"
            print(
                f"{state:>10}  {result.artifact.name} {result.artifact.version} {result.arch}  {artifacts.display(result.path)}"
            )

        results = [] if args.images_only else artifacts.fetch_all(
            versions,
            arches=args.arch,
            cache_dir=cache_dir,
            base_url=args.base_url,
            names=args.only,
            progress=report,
        )
        image_results: list[artifacts.ImageResult] = []
        if not args.no_images and not args.only:

            def report_image(result: artifacts.ImageResult) -> None:
                ref = result.image.reference
                note = f"  (digest {ref.digest} recorded in {artifacts.display(_lock_file(args))})" if result.recorded else ""
                print(f"{result.how:>10}  {ref.name_tag} {result.arch}  {artifacts.display(result.path)}{note}")

            image_results = artifacts.fetch_images(
                _cluster_images(args),
                args.arch or versions.architectures,
                cache_dir,
                versions.base_url if args.base_url is None else args.base_url,
                lock_file=_lock_file(args),
                progress=report_image,
            )
    except artifacts.ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    fresh = sum(1 for r in results if r.downloaded)
    print(f"{len(results)} artifacts verified in {artifacts.display(cache_dir)} ({fresh} downloaded)")
    if image_results:
        recorded = sum(1 for r in image_results if r.recorded)
        print(f"{len(image_results)} image archives verified ({sum(1 for r in image_results if r.how != 'cached')} fetched)"
              + (f"; {recorded} digests recorded: commit {artifacts.display(_lock_file(args))}" if recorded else ""))  # fmt: skip
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    cache_dir = _cache_dir(args)
    try:
        chosen = [] if args.no_images else _cluster_images(args)
        members = artifacts.bundle(args.output, _versions(args), cache_dir, arches=args.arch, cluster_images=chosen)
    except artifacts.ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    count = sum(1 for m in members if m.startswith("images/"))
    print(
        f"wrote {artifacts.display(Path(args.output))} with {len(members) - count} artifacts and {count} image archives; "
        "unpack it into a web "
        "root and set kubestrap_artifacts_base_url to that root's URL"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: `python -m kubestrap.artifacts_cli [-i INVENTORY] artifacts fetch|bundle ...`."""
    parser = argparse.ArgumentParser(prog="kubestrap")
    parser.add_argument("-i", "--inventory", default=None, help="inventory directory or hosts file")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
