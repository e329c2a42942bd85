"""`kubestrap_apply_changed`: did `kubectl apply` change anything? (for `changed_when:`)

kubectl prints one line per object, ending in " unchanged" when the object was left as it was, so the
run changed something when any line does not end so. (Top-level plugin directory: ansible.cfg.)
"""

from __future__ import annotations

import re
from typing import Any

_UNCHANGED = re.compile(r" unchanged$")


def apply_changed(lines: list[str]) -> bool:
    """True when some line of `kubectl apply` output (stdout_lines) is not an "... unchanged" line."""
    return any(not _UNCHANGED.search(str(line)) for line in lines)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kubestrap_apply_changed": apply_changed}
