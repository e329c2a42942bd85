"""Phases, read from the playbooks that declare them (playbooks/site.yml, playbooks/add_node.yml).

Each `ansible.builtin.import_playbook` entry is one phase, named by its tag (or file name).
Plain `ansible-playbook playbooks/site.yml` and bootstrap.py therefore always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubestrap import paths, yamlfile

_IMPORT_KEYS = ("ansible.builtin.import_playbook", "import_playbook")


class PhaseError(Exception):
    """A phase list or phase name that cannot be used."""


@dataclass(frozen=True)
class Phase:
    name: str
    playbook: Path
    description: str

    def host_patterns(self, extravars: dict[str, Any]) -> list[str]:
        """The `hosts:` pattern of each play in the phase playbook, templated with *extravars*.

        Ansible's own templar renders it, so every filter a playbook may use (`bool`, ...) works here too.
        """
        from ansible.parsing.dataloader import DataLoader
        from ansible.template import Templar, trust_as_template

        plays = yamlfile.load(self.playbook) or []
        templar = Templar(loader=DataLoader(), variables=extravars)
        patterns = []
        for play in plays:
            hosts = play.get("hosts")
            if hosts is None:
                continue
            if isinstance(hosts, list):
                hosts = ":".join(hosts)
            patterns.append(str(templar.template(trust_as_template(str(hosts)))))
        return patterns


def load(declaration: Path) -> list[Phase]:
    """Phases declared by *declaration* (a playbook made of import_playbook entries), in order."""
    entries = yamlfile.load(declaration) or []
    phases: list[Phase] = []
    for entry in entries:
        target = next((entry[k] for k in _IMPORT_KEYS if k in entry), None)
        if target is None:
            raise PhaseError(f"{paths.display(declaration)}: every entry must import one phase playbook")
        tags = entry.get("tags") or []
        name = tags[0] if tags else Path(target).stem
        phases.append(Phase(name, (declaration.parent / target).resolve(), str(entry.get("name", name))))
    return phases


def single(playbook: Path, name: str) -> list[Phase]:
    """A command that is one playbook (status, reset) as a one-phase list."""
    return [Phase(name, playbook.resolve(), name)]


def up_phases() -> list[Phase]:
    return load(paths.PLAYBOOKS_DIR / "site.yml")


def add_node_phases() -> list[Phase]:
    return load(paths.PLAYBOOKS_DIR / "add_node.yml")


def select(phases: list[Phase], from_phase: str | None = None, only: list[str] | None = None) -> list[Phase]:
    """Phases to run: from *from_phase* on, or just *only*; unknown names are refused with the list."""
    names = [p.name for p in phases]
    for wanted in [*(only or []), *([from_phase] if from_phase else [])]:
        if wanted not in names:
            raise PhaseError(f"unknown phase {wanted!r}; phases are: {', '.join(names)}")
    if from_phase:
        phases = phases[names.index(from_phase):]
    if only:
        phases = [p for p in phases if p.name in only]
    return phases
