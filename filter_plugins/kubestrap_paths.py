"""The controller paths the Python side defines, for the playbooks, so the two cannot disagree:
`cluster_name | kubestrap_secrets_dir` is where `bootstrap.py` reads the generated secrets from (kubestrap/paths.py:
$KUBESTRAP_SECRETS_DIR, else .secrets in the repository, then the cluster's name); `None |
kubestrap_controller_cache_dir` is the controller cache `bootstrap.py artifacts` uses by default
(kubestrap/artifacts.py: $KUBESTRAP_ARTIFACTS_DIR, else .cache/artifacts in the repository)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from kubestrap import artifacts, paths  # noqa: E402


def secrets_dir(cluster_name: Any) -> str:
    return str(paths.secrets_dir(str(cluster_name)))


def controller_cache_dir(_: Any = None) -> str:
    return str(artifacts.controller_cache_dir())


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kubestrap_secrets_dir": secrets_dir, "kubestrap_controller_cache_dir": controller_cache_dir}
