"""Controller paths kubestrap/paths.py defines, for the playbooks: `cluster_name | kubestrap_secrets_dir` is the
directory `bootstrap.py` reads the generated secrets from ($KUBESTRAP_SECRETS_DIR, else .secrets in the repository,
then the cluster's name), so the Python side and the playbooks cannot disagree."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from kubestrap import paths  # noqa: E402


def secrets_dir(cluster_name: Any) -> str:
    return str(paths.secrets_dir(str(cluster_name)))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kubestrap_secrets_dir": secrets_dir}
