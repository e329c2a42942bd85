"""Which inventory a command works on: `-i DIR`, else $KUBESTRAP_INVENTORY, else (offline commands
only) the example inventory. Commands that contact hosts never fall back to the example: its
192.168.1.x addresses may well be someone's real machines."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubestrap import paths

ENV = "KUBESTRAP_INVENTORY"


class NoInventory(Exception):
    """A host-touching command without -i or $KUBESTRAP_INVENTORY; the message says what to give."""


@dataclass(frozen=True)
class Choice:
    path: Path
    explicit: bool  # named by -i or the environment (False: the example, for an offline command)


def choose(option: Path | None, command: str, touches_hosts: bool,
           environ: Mapping[str, str] = os.environ) -> Choice:
    if option is not None:
        return Choice(Path(option), True)
    chosen = environ.get(ENV, "").strip()
    if chosen:
        return Choice(Path(chosen), True)
    if touches_hosts:
        raise NoInventory(f"{command} contacts the hosts of an inventory: name it with -i DIR or set {ENV}=DIR "
                          f"(there is no default; the example {paths.display(paths.DEFAULT_INVENTORY)} is "
                          "only used by the offline check and plan)")
    return Choice(paths.DEFAULT_INVENTORY, False)
