"""The artifact map: every pinned artifact of one architecture with its URL (mirror applied), sha256, file name,
layout path `<name>/<version>/<arch>/<file>`, controller cache path (`cache`) and staged path on the node (`dest`),
built by kubestrap/artifacts.py (`download_map`, the one definition of the layout, which `kubestrap artifacts
fetch` uses too). The artifacts, containerd and kube_binaries roles read `.dest` / `.cache` / `.url` from it and
never join those paths themselves (tests/artifacts/test_artifact_map.py). A top-level plugin directory
(ansible.cfg: filter_plugins), so every role reads the same file.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from kubestrap import artifacts  # noqa: E402


def artifact_map(
    pinned: Mapping[str, Any],
    arch: str,
    *,
    names: list[str] | None = None,
    base_url: str = "",
    cache_dir: str = "",
    staging_dir: str = "",
) -> dict[str, dict[str, str]]:
    """`kubestrap_artifacts | kubestrap_artifact_map(arch, names=[...], base_url=..., cache_dir=..., staging_dir=...)`:
    name -> {name, version, arch, file, path, url, upstream_url, sha256 ('' if *arch* has none), cache, dest}
    for each of *names* (default: every pinned artifact); `cache` and `dest` are '' without their directory."""
    settings = {"kubestrap_artifacts": dict(pinned) if isinstance(pinned, Mapping) else pinned,
                "kubestrap_artifacts_base_url": base_url or ""}  # fmt: skip
    try:
        versions = artifacts.parse_versions(settings)
        return artifacts.download_map(versions, str(arch), None if names is None else [str(n) for n in names],
                                      cache_dir=str(cache_dir or ""), staging_dir=str(staging_dir or ""))  # fmt: skip
    except artifacts.ArtifactError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kubestrap_artifact_map": artifact_map}
