"""Phases whose node record still holds are skipped on that node; drift brings them back.

The CLI path is the real one (inventory, journal, runner, per-phase --limit); the two "nodes" are this
machine over the local connection, each with its own record directory and its own managed file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import localrun
import pytest
from helpers import ROOT

from kubestrap import phase_state
from kubestrap.phases import Phase

# argv: PROBE-PLAYBOOK WORK-PLAYBOOK COMMAND-LINE...; `up` runs the two as its phases
DRIVER = """
import sys
from pathlib import Path
from kubestrap import cli, phases
probe, work = Path(sys.argv[1]), Path(sys.argv[2])
phases.of = lambda command: [phases.Phase("preflight", probe, "preflight", ("preflight", "check")),
                             phases.Phase("work", work, "work")]
sys.exit(cli.main(sys.argv[3:]))
"""


def _books(tmp_path: Path) -> tuple[Path, Path]:
    state = tmp_path / "state"
    probe = tmp_path / "probe.yml"
    probe.write_text(f"""- name: Probe
  hosts: k8s_cluster
  gather_facts: false
  tasks:
    - name: Read the records
      kubestrap_phase_state:
        mode: check
        dir: "{state}/{{{{ inventory_hostname }}}}"
        phases: "{{{{ kubestrap_phase_inputs }}}}"
      when: kubestrap_phase_inputs is defined
""")
    work = tmp_path / "work.yml"
    work.write_text(f"""- name: Work
  hosts: k8s_cluster
  gather_facts: false
  tasks:
    - name: Write the managed file
      ansible.builtin.copy:
        content: "managed by the work phase\\n"
        dest: "{tmp_path}/managed-{{{{ inventory_hostname }}}}"
        mode: "0644"
  post_tasks:
    - name: Record what the phase applied
      kubestrap_phase_state:
        mode: record
        dir: "{state}/{{{{ inventory_hostname }}}}"
        phase: work
        inputs: "{{{{ kubestrap_phase_inputs.work }}}}"
        paths: ["{tmp_path}/managed-{{{{ inventory_hostname }}}}"]
      when: kubestrap_phase_inputs.work is defined
""")
    return probe, work


def _up(tmp_path: Path, probe: Path, work: Path, inv: Path, *extra: str, command: str = "up") -> dict:
    env = localrun.environment(tmp_path, ANSIBLE_LIBRARY=str(ROOT / "playbooks" / "library"))
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(probe), str(work), command, "-i", str(inv), "--json", *extra],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):]) if command == "plan" else json.loads(proc.stdout)


def _work_phase(summary: dict) -> dict:
    return next(p for p in summary["phases"] if p["name"] == "work")


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Path, Path, Path]:
    probe, work = _books(tmp_path)
    return probe, work, localrun.inventory(tmp_path)


def test_a_phase_whose_record_holds_is_skipped_and_drift_brings_it_back(tmp_path: Path, lab):
    probe, work, inv = lab
    first = _up(tmp_path, probe, work, inv)
    assert set(_work_phase(first)["hosts"]) == {"local-cp", "local-w"}
    assert first["hosts"]["local-w"]["changed"] == 1

    second = _up(tmp_path, probe, work, inv)
    phase = _work_phase(second)
    assert phase["hosts"] == {} and sorted(phase["no_work"]) == ["local-cp", "local-w"], phase
    assert phase["seconds"] == 0

    (tmp_path / "managed-local-w").write_text("edited by hand\n")  # drift on one node only
    third = _up(tmp_path, probe, work, inv)
    phase = _work_phase(third)
    assert set(phase["hosts"]) == {"local-w"} and phase["no_work"] == ["local-cp"], phase
    assert phase["work"]["local-w"] == [f"{tmp_path}/managed-local-w: content changed"], phase["work"]
    assert third["hosts"]["local-w"]["changed"] == 1  # repaired, and reported
    assert (tmp_path / "managed-local-w").read_text() == "managed by the work phase\n"

    forced = _up(tmp_path, probe, work, inv, "--full")  # --full runs it everywhere; nothing to change
    phase = _work_phase(forced)
    assert set(phase["hosts"]) == {"local-cp", "local-w"} and "no_work" not in phase
    assert all(h["changed"] == 0 for h in forced["hosts"].values())


def test_plan_hosts_shows_which_node_has_work_and_why(tmp_path: Path, lab):
    probe, work, inv = lab
    _up(tmp_path, probe, work, inv)
    planned = _up(tmp_path, probe, work, inv, "--hosts", command="plan")
    rows = {p["name"]: p["hosts"] for p in planned["phases"]}
    assert rows["work"] == {"local-cp": {"state": "no change", "reasons": []},
                            "local-w": {"state": "no change", "reasons": []}}
    assert rows["preflight"]["local-cp"]["state"] == "runs"  # a phase without records decides on the node
    (tmp_path / "managed-local-w").write_text("edited by hand\n")
    planned = _up(tmp_path, probe, work, inv, "--hosts", command="plan")
    rows = {p["name"]: p["hosts"] for p in planned["phases"]}
    assert rows["work"]["local-cp"]["state"] == "no change"
    assert rows["work"]["local-w"] == {"state": "would change",
                                       "reasons": [f"{tmp_path}/managed-local-w: content changed"]}
    assert (tmp_path / "managed-local-w").read_text() == "edited by hand\n"  # plan changes nothing


def test_a_settings_change_runs_the_phase_again_everywhere(tmp_path: Path, lab):
    probe, work, inv = lab
    _up(tmp_path, probe, work, inv)
    with (inv / "group_vars" / "k8s_cluster.yml").open("a") as vars_file:
        vars_file.write("loki_retention_hours: 200\n")
    again = _up(tmp_path, probe, work, inv)
    phase = _work_phase(again)
    assert set(phase["hosts"]) == {"local-cp", "local-w"}
    assert phase["work"]["local-cp"] == ["inputs changed (versions, settings or kubestrap's own files)"]


def test_inputs_cover_settings_and_inventory_but_not_the_add_node_scope(tmp_path: Path):
    inv = localrun.inventory(tmp_path)
    book = tmp_path / "recorded.yml"
    book.write_text("- hosts: all\n  post_tasks:\n    - kubestrap_phase_state: {mode: record, phase: r, inputs: x}\n")
    plain = tmp_path / "plain.yml"
    plain.write_text("- hosts: all\n  tasks: []\n")
    phases = [Phase("recorded", book, "recorded"), Phase("plain", plain, "plain")]
    base = phase_state.inputs(phases, inv, {})
    assert list(base) == ["recorded"]  # a phase that records nothing has no inputs hash
    assert phase_state.inputs(phases, inv, {"kubestrap_node_scope": "w9"}) == base
    assert phase_state.inputs(phases, inv, {"kubeadm_join_token": "x"}) != base
    (inv / "host_vars").mkdir()
    (inv / "host_vars" / "local-w.yml").write_text("node_ip: 10.77.5.12\n")
    assert phase_state.inputs(phases, inv, {}) != base
