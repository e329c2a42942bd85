"""Which hosts each phase touches, as Ansible itself resolves them: one `ansible-playbook --list-hosts`
over the phases' playbooks (its templating of each play's `hosts:` with the extra vars, its inventory
and pattern logic), through its command line rather than its internals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

from kubestrap import paths
from kubestrap.exits import UserError
from kubestrap.inventory import Inventory
from kubestrap.phases import Phase

CONTROLLER = "localhost"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"  # the one installed beside this Python

_HOSTS_HEADER = re.compile(r"^\s+hosts \(\d+\):$")
# The last answer, for the same loaded inventory only: a command asks twice (host keys, then the run), and
# each command loads its inventory once, so a new command (or an edited inventory, reloaded) asks Ansible again.
_LAST: dict[tuple[tuple[str, ...], str, str], tuple[weakref.ref[Inventory], dict[str, list[str]]]] = {}


def parse_list_hosts(output: str) -> list[list[list[str]]]:
    """`ansible-playbook --list-hosts` output -> for each playbook, in order, the hosts of each of its
    plays (Ansible lists a play's hosts in no particular order)."""
    books: list[list[list[str]]] = []
    plays: list[list[str]] = []
    listing = False
    for line in output.splitlines():
        if line.startswith("playbook: "):
            plays = []
            books.append(plays)
            listing = False
        elif line.strip().startswith("play #"):
            listing = False
        elif _HOSTS_HEADER.match(line) and books:
            plays.append([])
            listing = True
        elif listing and line.strip():
            plays[-1].append(line.strip())
    return books


def _in_order(plays: list[list[str]], order: list[str]) -> list[str]:
    """The hosts of a phase's plays: play after play, each play's in inventory order (the order Ansible
    runs them in), hosts outside the inventory (the controller) after those, each host once."""
    rank = {name: index for index, name in enumerate(order)}
    hosts: list[str] = []
    for play in plays:
        for host in sorted(play, key=lambda name: (rank.get(name, len(rank)), name)):
            if host not in hosts:
                hosts.append(host)
    return hosts


def _list_hosts(playbooks: tuple[str, ...], inventory: str, extravars: str) -> list[list[list[str]]]:
    env = {**os.environ, "ANSIBLE_CONFIG": os.environ.get("ANSIBLE_CONFIG", str(paths.ANSIBLE_CFG)),
           # groups made at run time (e.g. kubestrap_join_pending) do not exist yet: no warning for them
           "ANSIBLE_HOST_PATTERN_MISMATCH": "ignore", "ANSIBLE_NOCOLOR": "1"}  # fmt: skip
    command = [str(ANSIBLE_PLAYBOOK), "--list-hosts", "-i", inventory, "-e", extravars, *playbooks]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"cannot list the hosts of the phases with {ANSIBLE_PLAYBOOK}: {exc}") from None
    books = parse_list_hosts(done.stdout)
    if done.returncode != 0 or len(books) != len(playbooks):
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise UserError(f"ansible-playbook --list-hosts -i {inventory} failed (exit {done.returncode}): "
                        + " / ".join(said))  # fmt: skip
    return books


def phase_hosts(phases: list[Phase], inv: Inventory, extravars: dict[str, Any]) -> dict[str, list[str]]:
    """Map phase name -> hosts its plays run on (`localhost` is the controller), for the inventory *inv*
    (already read and checked: its path is handed to Ansible, its host order kept)."""
    if not phases:
        return {}
    playbooks = tuple(str(phase.playbook) for phase in phases)
    key = (playbooks, str(inv.path.absolute()), json.dumps(extravars, sort_keys=True, default=str))
    last = _LAST.get(key)
    if last is not None and last[0]() is inv:  # the same command asking again (host keys, then the run)
        return {name: list(hosts) for name, hosts in last[1].items()}
    books = _list_hosts(*key)
    order = list(inv.hosts)
    result = {phase.name: _in_order(plays, order) for phase, plays in zip(phases, books, strict=True)}
    _LAST.clear()
    _LAST[key] = (weakref.ref(inv), result)
    return {name: list(hosts) for name, hosts in result.items()}
