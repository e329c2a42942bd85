"""The cluster images one node receives (the artifacts role stages them, the containerd role imports them),
resolved by kubestrap/images.py, the one place that reads `kubestrap_cluster_images`: placeholders replaced by the
pins, digests from the reference or the lock, `nodes` and `without_addon` applied. A top-level plugin directory
(ansible.cfg: filter_plugins), so both roles read the same file.
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

from kubestrap import images  # noqa: E402
from kubestrap.artifacts import mirror_url, under  # noqa: E402


def node_images(
    cluster_images: dict[str, Any],
    arch: str,
    *,
    control_plane: bool,
    artifacts: dict[str, Any],
    pinned_images: dict[str, Any],
    lock: dict[str, str],
    addons: dict[str, Any],
    staged_in: str = "",
    base_url: str = "",
    cache_dir: str = "",
    staging_dir: str = "",
) -> list[dict[str, str]]:
    """[{key, name (name:tag), digest ('' if none is known), path (images/<name:tag>/linux-<arch>.oci.tar)}], plus
    `url` (on the mirror *base_url*), `cache` (under *cache_dir*, the controller's) and `dest` (under *staging_dir*,
    the node's) when those are given; with *staged_in*, what the kubestrap_images module imports:
    [{name, digest, archive (STAGED_IN/path)}]."""
    def mapping(value: Any) -> dict[str, Any]:  # `-e name={}` on a command line is a string: nothing set
        return dict(value) if isinstance(value, Mapping) else {}

    settings = {"kubestrap_cluster_images": cluster_images, "kubestrap_artifacts": artifacts,
                "kubestrap_images": mapping(pinned_images)}  # fmt: skip
    try:
        chosen = images.node_images(settings, bool(control_plane), mapping(addons), lock=mapping(lock))
    except images.ImageError as exc:
        raise AnsibleFilterError(str(exc)) from None
    result = []
    for image in chosen:
        item = {"key": image.key, "name": image.reference.name_tag, "digest": image.reference.digest,
                "path": image.mirror_path(arch)}  # fmt: skip
        for key, value in (("url", mirror_url(item["path"], base_url) if base_url else ""),
                           ("cache", under(cache_dir, item["path"]) if cache_dir else ""),
                           ("dest", under(staging_dir, item["path"]) if staging_dir else "")):  # fmt: skip
            if value:
                item[key] = value
        if staged_in:
            item = {"name": item["name"], "digest": item["digest"], "archive": under(staged_in, item["path"])}
        result.append(item)
    return result


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kubestrap_node_images": node_images}
