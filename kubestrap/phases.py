"""What each command runs, read from the playbooks that declare it (DECLARATIONS).

A declaration made of `ansible.builtin.import_playbook` entries (playbooks/site.yml for `up`,
playbooks/add_node.yml for `add-node`) is a list of phases, one per entry, named by its first tag
(or file name); a declaration made of plays (status.yml, reset.yml) is one phase named after the
command. The phases tagged CHECK_TAG are the read-only ones `check --hosts` and `plan --hosts` run.
Plain `ansible-playbook playbooks/site.yml [--tags check]` and bootstrap.py therefore always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubestrap import paths, yamlfile

_IMPORT_KEYS = ("ansible.builtin.import_playbook", "import_playbook")

# Each host-touching command's declaration in playbooks/ (`check --hosts` runs up's CHECK_TAG phases).
DECLARATIONS = {"up": "site.yml", "add-node": "add_node.yml", "status": "status.yml", "reset": "reset.yml",
                "backup": "backup.yml", "restore": "restore.yml", "certs-renew": "certs_renew.yml",
                "upgrade": "upgrade.yml", "upgrade-versions": "upgrade_versions.yml"}
CHECK_TAG = "check"


class PhaseError(Exception):
    """A phase list or phase name that cannot be used."""


@dataclass(frozen=True)
class Phase:
    name: str
    playbook: Path
    description: str
    tags: tuple[str, ...] = ()


def load(declaration: Path, command: str | None = None) -> list[Phase]:
    """Phases declared by *declaration*, in order: one per import_playbook entry, or, for a playbook
    made of plays, the playbook itself as one phase named *command* (default: the file name)."""
    entries = yamlfile.load_own(declaration) or []
    imports = [next((entry[k] for k in _IMPORT_KEYS if k in entry), None) for entry in entries]
    if entries and not any(imports):
        name = command or declaration.stem
        return [Phase(name, declaration.resolve(), name)]
    phases: list[Phase] = []
    for entry, target in zip(entries, imports, strict=True):
        if target is None:
            raise PhaseError(f"{paths.display(declaration)}: every entry must import one phase playbook")
        tags = tuple(entry.get("tags") or ())
        name = tags[0] if tags else Path(target).stem
        phases.append(Phase(name, (declaration.parent / target).resolve(), str(entry.get("name", name)), tags))
    return phases


def of(command: str) -> list[Phase]:
    """The phases *command* runs (up, add-node, status, reset), from its declaration."""
    return load(paths.PLAYBOOKS_DIR / DECLARATIONS[command], command)


def add_node_phases() -> list[Phase]:
    """`of("add-node")` under the name tests/e2e uses."""
    return of("add-node")


def checks(phases: list[Phase]) -> list[Phase]:
    """The read-only phases of *phases* (tagged CHECK_TAG): what `check --hosts` and `plan --hosts` run."""
    return [p for p in phases if CHECK_TAG in p.tags]


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
