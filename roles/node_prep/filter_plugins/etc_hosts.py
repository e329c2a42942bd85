"""kubestrap_etc_hosts: the /etc/hosts node_prep wants, from the text its probe read, in one module run.

/etc/hosts used to be edited on the node by two tasks: ansible.builtin.lineinfile (state absent: the Debian-style
`127.0.1.1 <name>` alias of the node's own name) and ansible.builtin.blockinfile (the cluster's nodes between
`# BEGIN/END kubestrap cluster nodes` markers). This filter makes the same edits to the text the probe read, as those
two modules make them (tests/test_node_prep_etc_hosts.py runs both on the same texts): every line the pattern finds
is dropped; the block replaces the one between the markers (the last marker of each kind counts), or goes at the
end, after a line break the file may lack. The role writes the result only when it differs (kubestrap_install).
"""

from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError


def etc_hosts(content: Any, block: str, marker: str = "# {mark} kubestrap cluster nodes", drop: str = "") -> str:
    """*content* without the lines *drop* (a regular expression; '' drops none) finds, and with *block* between
    *marker*'s BEGIN and END lines."""
    if not isinstance(content, str):
        raise AnsibleFilterError("kubestrap_etc_hosts needs the text of /etc/hosts (the probe could not read it)")
    lines = content.splitlines(True)
    if drop:
        pattern = re.compile(drop)
        lines = [line for line in lines if not pattern.search(line.rstrip("\r\n"))]
    begin, end = (marker.replace("{mark}", mark) + "\n" for mark in ("BEGIN", "END"))
    text = block if not block or block.endswith("\n") else block + "\n"
    first = last = None
    for index, line in enumerate(lines):
        if line == begin:
            first = index
        if line == end:
            last = index
    if first is None or last is None:
        first = len(lines)
    elif first < last:
        del lines[first : last + 1]
    else:
        del lines[last : first + 1]
        first = last
    if first > 0 and not lines[first - 1].endswith("\n"):
        lines[first - 1] += "\n"
    lines[first:first] = [begin, *text.splitlines(True), end] if text else []  # blockinfile: no block, no markers
    return "".join(lines)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kubestrap_etc_hosts": etc_hosts}
