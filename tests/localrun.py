"""Run bootstrap.py on this machine with a small test playbook as its only phase.

The inventory's two nodes both use `ansible_connection: local`; the CLI path is the real one (inventory
validation, lock, journal, redaction, runner), only the phase list is replaced by the playbook.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import ROOT

# argv: PLAYBOOK COMMAND-LINE...; `up` then runs PLAYBOOK as its one phase (named after the file)
DRIVER = """
import sys
from pathlib import Path
from kubestrap import cli, phases
book = Path(sys.argv[1])
phases.of = lambda command: [phases.Phase(book.stem, book, book.stem)]
sys.exit(cli.main(sys.argv[2:]))
"""


def inventory(tmp_path: Path, settings: str = "", network: str = "10.77.5.0/24", first: int = 10) -> Path:
    """A valid inventory (cluster `local`) whose two nodes (control plane, worker) are this machine, at
    the *first* and next addresses of *network*; the MetalLB pool is its addresses 200-210."""
    net = ipaddress.ip_network(network)
    inv = tmp_path / "local"
    (inv / "group_vars").mkdir(parents=True)
    common = f"ansible_connection: local\n              ansible_python_interpreter: {sys.executable}"
    (inv / "hosts.yml").write_text(f"""all:
  children:
    k8s_cluster:
      children:
        k8s_control_plane:
          hosts:
            local-cp:
              {common}
              node_ip: {net[first]}
        k8s_workers:
          hosts:
            local-w:
              {common}
              node_ip: {net[first + 1]}
""")
    (inv / "group_vars" / "k8s_cluster.yml").write_text(
        f"cluster_name: local\ncluster_node_network: {net}\nmetallb_address_pool: {net[200]}-{net[210]}\n" + settings
    )
    return inv


def playbook(tmp_path: Path, name: str, tasks: str, hosts: str = "k8s_cluster", gather: bool = False) -> Path:
    """A one-play playbook in *tmp_path* running *tasks* (YAML, indented as a task list) on *hosts*."""
    path = tmp_path / f"{name}.yml"
    path.write_text(f"""- name: {name}
  hosts: {hosts}
  gather_facts: {str(gather).lower()}
  tasks:
{textwrap.indent(textwrap.dedent(tasks).strip(), "    ")}
""")
    return path


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    # PYTHONPATH: the kubestrap of this checkout, whatever the virtualenv has installed
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
            "KUBESTRAP_RUNS_DIR": str(tmp_path / "runs"),
            "KUBESTRAP_SECRETS_DIR": str(tmp_path / "secrets"), **extra}


def command(book: Path, *argv: str) -> list[str]:
    return [sys.executable, "-c", DRIVER, str(book), *argv]


def run(tmp_path: Path, book: Path, *argv: str, env: dict[str, str] | None = None,
        timeout: int = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(book, *argv), capture_output=True, text=True, cwd=tmp_path, timeout=timeout,
                          env=env or environment(tmp_path))


def start(tmp_path: Path, book: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(command(book, *argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=env or environment(tmp_path))


def processes_with(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose command line holds *marker*."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append((int(entry), cmdline))
    return found


def journal_text(runs: Path) -> str:
    """Every file of every run journal under *runs*, concatenated."""
    return "\n".join(p.read_text(errors="ignore") for p in sorted(runs.rglob("*")) if p.is_file())


__all__ = ["ROOT", "command", "environment", "inventory", "journal_text", "playbook", "processes_with", "run", "start"]
