"""`kubestrap artifacts fetch|bundle`: the controller's artifact cache from the command line.

The main CLI calls `register(subparsers)` and later `args.func(args)`; `args.inventory` (when the
main parser defines it) names the inventory whose group_vars may override
`kubestrap_artifacts_base_url`, `kubestrap_architectures` or `kubestrap_artifacts`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from kubestrap import artifacts

_OVERRIDABLE = ("kubestrap_artifacts", "kubestrap_artifacts_base_url", "kubestrap_architectures")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `artifacts fetch` and `artifacts bundle` to the main parser."""
    parser = subparsers.add_parser(
        "artifacts",
        help="download, verify and bundle the pinned binaries (controller cache)",
        description="Manage the controller's cache of pinned binaries (group_vars/all/versions.yml).",
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
    fetch.set_defaults(func=run_fetch)

    bundle = actions.add_parser("bundle", help="write the cache as a .tar.gz in mirror layout (serve it as the base URL)")
    bundle.add_argument("output", type=Path, metavar="OUT.tar.gz", help="tarball to write")
    bundle.add_argument("--arch", action="append", default=None, metavar="ARCH", help="architecture to include (repeatable)")
    bundle.set_defaults(func=run_bundle)


def _cache_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "cache_dir", None):
        return Path(args.cache_dir)
    env = os.environ.get("KUBESTRAP_ARTIFACTS_DIR")
    return Path(env) if env else artifacts.DEFAULT_CACHE_DIR


def _inventory_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings of the inventory (group_vars of k8s_cluster) that change what is fetched."""
    location = getattr(args, "inventory", None)
    if not location:
        return {}
    from kubestrap import inventory  # the inventory loader is optional for this command

    try:
        inv = inventory.load(Path(location))
    except Exception as exc:  # the loader's own errors already name file and line
        raise artifacts.ArtifactError(f"cannot read the inventory {location}: {exc}") from None
    overrides: dict[str, Any] = {}
    rank = {("inventory-file", "all"): 0, ("inventory-file", inventory.CLUSTER_GROUP): 1}
    rank |= {("group_vars", "all"): 2, ("group_vars", inventory.CLUSTER_GROUP): 3}
    layers = [layer for layer in inv.layers if (layer.scope, layer.target) in rank]
    for layer in sorted(layers, key=lambda item: rank[(item.scope, item.target)]):  # later wins
        overrides.update({key: layer.values[key] for key in _OVERRIDABLE if key in layer.values})
    return overrides


def _versions(args: argparse.Namespace) -> artifacts.Versions:
    return artifacts.load_versions(artifacts.VERSIONS_FILE, _inventory_overrides(args))


def run_fetch(args: argparse.Namespace) -> int:
    cache_dir = _cache_dir(args)
    try:
        versions = _versions(args)

        def report(result: artifacts.FetchResult) -> None:
            state = "downloaded" if result.downloaded else "cached"
            print(
                f"{state:>10}  {result.artifact.name} {result.artifact.version} {result.arch}  {artifacts.display(result.path)}"
            )

        results = artifacts.fetch_all(
            versions,
            arches=args.arch,
            cache_dir=cache_dir,
            base_url=args.base_url,
            names=args.only,
            progress=report,
        )
    except artifacts.ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    fresh = sum(1 for r in results if r.downloaded)
    print(f"{len(results)} artifacts verified in {artifacts.display(cache_dir)} ({fresh} downloaded)")
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    cache_dir = _cache_dir(args)
    try:
        members = artifacts.bundle(args.output, _versions(args), cache_dir, arches=args.arch)
    except artifacts.ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    print(
        f"wrote {artifacts.display(Path(args.output))} with {len(members)} artifacts; unpack it into a web "
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
