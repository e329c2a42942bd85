"""Where the upstream reference data is read from (CRDs, chart values and schemas taken at our pins): the
read-only ../shared/reference next to the checkout, which travels with CI, or $KUBESTRAP_REFERENCE_DIR."""

from __future__ import annotations

import os
from pathlib import Path

REFERENCE = Path(os.environ.get("KUBESTRAP_REFERENCE_DIR") or Path(__file__).resolve().parents[2] / "shared" / "reference")
