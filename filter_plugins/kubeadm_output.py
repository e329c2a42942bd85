"""What a failed kubeadm command said, fit for a failure message and the run journal.

Tasks that run kubeadm with a bootstrap token or a certificate key in reach hide their result (`no_log`), then report
a failure themselves. `kubestrap_kubeadm_error` gives them kubeadm's last lines: from stderr (stdout when stderr is
empty), blank lines and kubeadm's stack-trace hint left out, every token-shaped string shown as `<token>` and every
certificate-key-shaped one as `<key>`, joined on one line. The join module (roles/kubeadm_join/library) keeps its
own copy of the masks: a module cannot import a filter.
"""

from __future__ import annotations

import re
from typing import Any

TOKEN = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")  # no word boundaries: masked wherever it stands
CERTIFICATE_KEY = re.compile(r"[0-9a-f]{64}")
HINT = "stack trace of this error"


def kubeadm_error(result: Any, lines: int = 5, empty: str = "no output") -> str:
    """kubeadm's last *lines* lines of *result* (a registered command result, or its output as a string), masked."""
    if isinstance(result, dict):
        text = str(result.get("stderr") or "").strip() or str(result.get("stdout") or "")
    else:
        text = str(result or "")
    kept = [line.strip() for line in text.splitlines() if line.strip() and HINT not in line]
    said = " / ".join(kept[-int(lines):]) if kept else empty
    return CERTIFICATE_KEY.sub("<key>", TOKEN.sub("<token>", said))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kubestrap_kubeadm_error": kubeadm_error}
