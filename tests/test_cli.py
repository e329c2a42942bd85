"""The command line: help, plan, check (offline and --hosts against this machine), add-node refusals."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import localrun
import pytest
from helpers import ANSIBLE_PLAYBOOK, ROOT
from k8s_real import started

from kubestrap import cli, exits, inventory, phases, plan, validate


def run(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout)


def test_help_lists_every_command():
    out = run("--help").stdout
    commands = ["up", "add-node", "check", "plan", "status", "reset", "backup", "restore", "upgrade", "certs", "lab",
                "artifacts"]
    for command in commands:
        assert f"    {command}" in out
    assert list(cli.COMMANDS) == commands
    parser = cli.build_parser()
    choices = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(choices) == list(cli.COMMANDS)  # each entry registers the command it is named after


@pytest.mark.parametrize("module", ["kubestrap.lab.cli", "kubestrap.artifacts_cli"])
def test_a_command_module_that_cannot_be_imported_stops_the_cli(module: str):
    # the lab and artifacts commands were imported under `except ImportError: continue`: a broken
    # import dropped the command from bootstrap.py without a word
    driver = f"import sys; sys.modules[{module!r}] = None; from kubestrap import cli; sys.exit(cli.main(['--help']))"
    proc = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode != 0 and f"import of {module} halted" in proc.stderr, proc.stderr


def test_every_main_maps_errors_to_the_same_exit_codes(tmp_path: Path):
    # bootstrap.py's own commands, the lab through bootstrap.py and `python -m kubestrap.lab`: one map
    refused = run("up", "-i", "inventories/homelab", "--from-phase", "nope")
    assert refused.returncode == exits.INPUT and not refused.stderr.startswith("error:")
    lab_argv = ["up", "--workers", "-1", "--state-dir", str(tmp_path)]
    for argv in (["lab", *lab_argv], None):
        command = [sys.executable, str(ROOT / "bootstrap.py"), *argv] if argv else \
            [sys.executable, "-m", "kubestrap.lab", *lab_argv]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == exits.FAILED and proc.stderr.startswith("error: --workers"), proc.stderr
        assert "Traceback" not in proc.stderr


def test_check_homelab_passes():
    proc = run("check", "-i", "inventories/homelab")
    assert proc.returncode == 0, proc.stderr
    assert "is valid" in proc.stderr


def test_plan_prints_phase_by_host_table():
    proc = run("plan", "-i", "inventories/homelab")
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if "phase" in line and "k8s-cp" in line)
    for host in ("k8s-cp", "k8s-worker1", "k8s-worker2", "k8s-worker3"):
        assert host in header
    for phase in phases.of("up"):
        assert any(f" {phase.name} " in line for line in proc.stdout.splitlines())


def test_plan_json_matches_the_declared_phases():
    proc = run("plan", "-i", "inventories/homelab", "--json")
    data = json.loads(proc.stdout)
    assert [p["name"] for p in data["phases"]] == [p.name for p in phases.of("up")]
    preflight = next(p for p in data["phases"] if p["name"] == "preflight")
    assert preflight["hosts"] == ["k8s-cp", "k8s-worker1", "k8s-worker2", "k8s-worker3"]


def test_add_node_plan_touches_only_the_new_node():
    hosts = plan.phase_hosts(phases.of("add-node"), inventory.load(ROOT / "inventories" / "homelab"),
                             {"kubestrap_node_scope": "k8s-worker3"})
    for phase, names in hosts.items():
        others = set(names) - {"k8s-worker3", "localhost"}
        # only the token step may run on the first control-plane node
        assert others <= {"k8s-cp"}, (phase, names)
        if "k8s-cp" in others:
            assert "token" in phase or "join" in phase, phase


def test_every_command_plan_resolves_with_ansibles_filters():
    # the hosts: patterns are templated like Ansible does it (reset --gone uses `| bool`)
    homelab = inventory.load(ROOT / "inventories" / "homelab")
    reset = phases.of("reset")
    gone = plan.phase_hosts(reset, homelab, {"kubestrap_node_scope": "k8s-worker3", "kubestrap_reset_gone": True})
    assert set(gone["reset"]) == {"k8s-cp", "localhost"}
    one = plan.phase_hosts(reset, homelab, {"kubestrap_node_scope": "k8s-worker3"})
    assert set(one["reset"]) == {"k8s-cp", "k8s-worker3"}  # the controller side is cleaned on a full reset only
    full = plan.phase_hosts(reset, homelab, {})
    assert set(full["reset"]) == {"k8s-cp", "k8s-worker1", "k8s-worker2", "k8s-worker3", "localhost"}
    status = phases.of("status")
    assert plan.phase_hosts(status, homelab, {})["status"] == ["k8s-cp"]
    for phase_list in (phases.of("up"), phases.of("add-node")):
        assert all(plan.phase_hosts(phase_list, homelab, {}).values())


def test_unknown_phase_is_refused_with_the_list():
    proc = run("up", "-i", "inventories/homelab", "--from-phase", "nope")
    assert proc.returncode == 2
    assert "unknown phase 'nope'; phases are: preflight" in proc.stderr


def test_add_node_not_in_inventory_says_what_to_add():
    proc = run("add-node", "k8s-worker9", "-i", "inventories/homelab")
    assert proc.returncode == 2
    assert "k8s-worker9 is not in" in proc.stderr and "node_ip" in proc.stderr


def test_unknown_node_refusals_name_the_inventory_and_the_right_next_step(tmp_path: Path):
    inv = tmp_path / "my-inv"
    shutil.copytree(ROOT / "inventories" / "homelab", inv)
    add = run("add-node", "k8s-worker9", "-i", str(inv))
    assert add.returncode == 2
    assert f"then run `bootstrap.py add-node -i {inv} k8s-worker9` again" in add.stderr
    planned = run("plan", "--add-node", "k8s-worker9", "-i", str(inv))
    assert f"`bootstrap.py plan -i {inv} --add-node k8s-worker9`" in planned.stderr
    # reset works on nodes that exist: no advice to add one, the nodes it could mean instead
    reset = run("reset", "--node", "k8s-worker9", "--yes", "-i", str(inv))
    assert reset.returncode == 2
    assert "its nodes are: k8s-cp, k8s-worker1, k8s-worker2, k8s-worker3" in reset.stderr
    assert "add-node" not in reset.stderr


def test_reset_without_terminal_needs_yes():
    proc = run("reset", "-i", "inventories/homelab")
    assert proc.returncode == 2
    assert "--yes" in proc.stderr


def test_reset_gone_needs_a_worker():
    proc = run("reset", "--gone", "--yes", "-i", "inventories/homelab")
    assert proc.returncode == 2 and "name it with --node NAME" in proc.stderr
    proc = run("reset", "--node", "k8s-cp", "--gone", "--yes", "-i", "inventories/homelab")
    assert proc.returncode == 2 and "k8s-cp is a control-plane node" in proc.stderr


def test_reset_of_one_control_plane_is_refused_before_any_host_is_touched():
    """Only workers are reset one at a time: a control plane is the cluster's (its etcd member, the first one's
    cluster steps); the message names the command that takes everything down."""
    proc = run("reset", "--node", "k8s-cp", "--yes", "-i", "inventories/homelab")
    assert proc.returncode == 2, proc.stdout
    assert "k8s-cp is a control-plane node: `reset --node` resets workers only" in proc.stderr
    assert "`bootstrap.py reset -i inventories/homelab --yes`" in proc.stderr
    assert "Traceback" not in proc.stderr and "PLAY" not in proc.stdout


def test_reset_hints_name_what_to_do_about_unreachable_nodes():
    def hint(*argv: str, unreachable: str | None) -> str | None:
        args = cli.build_parser().parse_args(["reset", *argv, "--yes"])
        return cli._reset_hint(args, [unreachable] if unreachable else [])

    assert hint(unreachable=None) is None
    full = hint(unreachable="k8s-worker2")
    assert full and full.startswith("k8s-worker2 could not be reached") and "`bootstrap.py reset --yes` again" in full
    one = hint("--node", "k8s-worker2", unreachable="k8s-worker2")
    assert one and "`bootstrap.py reset --node k8s-worker2 --gone --yes`" in one
    assert hint("--node", "k8s-worker2", unreachable="k8s-cp") is None  # --gone would not help there
    assert hint("--node", "k8s-worker2", "--gone", unreachable="k8s-worker2") is None


def test_up_prints_its_plan_before_touching_a_host(tmp_path: Path):
    inv = _local_inventory(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), "up", "--phase", "preflight", "-i", str(inv)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "KUBESTRAP_RUNS_DIR": str(tmp_path / "runs"),
                               "HOME": str(tmp_path)})  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # the two nodes share this machine's identity
    lines = proc.stderr.splitlines()
    title = next(i for i, line in enumerate(lines) if line.strip() == "plan: phases x hosts")
    row = next(line for line in lines[title:] if " preflight " in line)
    assert row.count("x") == 2, row
    assert title < next(i for i, line in enumerate(lines) if "phase 1/1" in line)
    # a failed up names this very command to resume with
    assert "`bootstrap.py up -i local --from-phase preflight`" in proc.stderr  # relative to the cwd


def test_rerun_advice_names_the_inventory_and_the_node(tmp_path: Path):
    args = cli.build_parser().parse_args(["reset", "--node", "k8s-worker3", "-i", str(tmp_path / "my inv")])
    assert cli._again(args, "reset", "--node", "k8s-worker3", "--yes") == \
        f"bootstrap.py reset -i '{tmp_path / 'my inv'}' --node k8s-worker3 --yes"
    default = cli.build_parser().parse_args(["plan"])  # offline, reading the example inventory
    assert cli._again(default, "plan") == "bootstrap.py plan"


def _local_inventory(tmp_path: Path) -> Path:
    """Two inventory nodes that are both this machine: preflight must catch the shared identity."""
    return localrun.inventory(tmp_path, "preflight_min_cpus_control_plane: 1\n", network="127.0.0.0/8", first=1)


def test_check_hosts_runs_preflight_and_names_failing_host(tmp_path: Path):
    inv = _local_inventory(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), "check", "--hosts", "-i", str(inv), "--json"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "KUBESTRAP_RUNS_DIR": str(tmp_path / "runs"),
                               "HOME": str(tmp_path)})
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    results = summary["phases"][0]["stats"]["kubestrap_preflight"]
    # both inventory nodes are this one machine: same machine-id, and 127.0.0.2 is owned by no interface
    assert results["local-w"]["machine_id"]["ok"] is False
    assert "shared with local-cp" in results["local-w"]["machine_id"]["detail"]
    assert results["local-w"]["node_ip"]["ok"] is False
    assert results["local-cp"]["node_ip"]["ok"] is True
    assert results["local-cp"]["ssh"]["ok"] is True
    assert "failed in phase preflight" in proc.stderr and "local-w" in proc.stderr
    assert "host preflight" in proc.stderr  # the table
    # the advice repeats this very command (its inventory included); check has no --from-phase
    assert "Next: fix the cause, then `bootstrap.py check -i local --hosts`." in proc.stderr
    journal = ROOT / summary["journal"] if not Path(summary["journal"]).is_absolute() else Path(summary["journal"])
    assert (journal / "summary.json").exists() or (tmp_path / summary["journal"]).exists()


def test_status_of_hosts_without_a_cluster_says_not_bootstrapped(tmp_path: Path):
    """Fresh hosts, or hosts after `reset`: no admin kubeconfig and no helm on the control plane.
    status must still print the table (it crashed in from_json on the skipped add-on reads: seen on
    the lab after a full reset)."""
    inv = _local_inventory(tmp_path)
    assert not Path("/etc/kubernetes/admin.conf").exists() and not Path("/usr/local/bin/helm").exists()
    proc = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), "status", "-i", str(inv), "--json"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "KUBESTRAP_RUNS_DIR": str(tmp_path / "runs"),
                               "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert {n["name"]: n["ready"] for n in summary["nodes"]} == {"local-cp": "not bootstrapped",
                                                                  "local-w": "not bootstrapped"}
    assert summary["addons"] == []


def _env_without_inventory(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBESTRAP_INVENTORY"}
    return {**env, **extra}


HOST_COMMANDS = [["up"], ["add-node", "k8s-worker1"], ["reset", "--yes"], ["status"], ["check", "--hosts"]]


@pytest.mark.parametrize("command", HOST_COMMANDS, ids=lambda c: " ".join(c))
def test_host_touching_commands_need_an_explicit_inventory(command: list[str], tmp_path: Path):
    # without -i they used to fall back to the example inventory: `reset --yes` went to its 192.168.1.x hosts
    proc = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), *command], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env=_env_without_inventory(KUBESTRAP_RUNS_DIR=str(tmp_path / "r")))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "-i" in lines[0] and "KUBESTRAP_INVENTORY" in lines[0] and command[0] in lines[0]
    assert not (tmp_path / "r").exists()  # no run was started


def test_the_inventory_can_be_chosen_once_in_the_environment(tmp_path: Path):
    inv = tmp_path / "mine"
    shutil.copytree(ROOT / "inventories" / "homelab", inv)
    proc = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), "add-node", "k8s-worker9"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120, env=_env_without_inventory(KUBESTRAP_INVENTORY=str(inv)))
    assert proc.returncode == 2
    assert "k8s-worker9 is not in mine/hosts.yml" in proc.stderr  # relative to the cwd
    assert "`bootstrap.py add-node -i mine k8s-worker9`" in proc.stderr  # the advice names it


def test_offline_commands_read_the_example_inventory_and_say_so(tmp_path: Path):
    for command in (["check"], ["plan"]):
        proc = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), *command], capture_output=True, text=True,
                              cwd=ROOT, timeout=120, env=_env_without_inventory())
        assert proc.returncode == 0, proc.stderr
        assert "example inventory inventories/homelab" in proc.stderr


def test_check_counts_in_singular_and_plural(tmp_path: Path):
    proc = run("check", "-i", str(_local_inventory(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert "1 control-plane node, 1 worker" in proc.stderr and "1 workers" not in proc.stderr
    proc = run("check", "-i", "inventories/homelab")
    assert "1 control-plane node, 3 workers" in proc.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer", ["yes", "y", "", "homelab2", "HOMELAB"])
def test_reset_without_yes_cancels_unless_the_cluster_name_is_typed(answer: str, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", _Terminal(f"{answer}\n"))
    monkeypatch.setattr(cli, "_execute", lambda *a, **k: pytest.fail("reset touched hosts"))
    assert cli.main(["reset", "-i", str(ROOT / "inventories" / "homelab")]) == 0
    err = capsys.readouterr().err
    assert "type the cluster name homelab" in err.lower() and "reset cancelled; nothing was touched" in err


def test_reset_goes_on_when_the_cluster_name_is_typed(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", _Terminal("homelab\n"))
    calls: list[str] = []
    monkeypatch.setattr(cli, "_host_keys", lambda *a, **k: None)
    monkeypatch.setattr(cli, "_execute", lambda command, *a, **k: (calls.append(command), (0, None))[1])
    assert cli.main(["reset", "--node", "k8s-worker2", "-i", str(ROOT / "inventories" / "homelab")]) == 0
    assert calls == ["reset"]
    assert "cancelled" not in capsys.readouterr().err


def test_every_command_runs_what_its_declaration_in_playbooks_says():
    assert phases.DECLARATIONS == {"up": "site.yml", "add-node": "add_node.yml", "status": "status.yml",
                                   "reset": "reset.yml", "backup": "backup.yml", "restore": "restore.yml",
                                   "certs-renew": "certs_renew.yml", "upgrade": "upgrade.yml",
                                   "upgrade-versions": "upgrade_versions.yml"}
    # check --hosts and plan --hosts run the phases site.yml / add_node.yml tag `check`
    assert [p.name for p in phases.checks(phases.of("up"))] == ["preflight"]
    assert [p.name for p in phases.checks(phases.of("add-node"))] == ["preflight"]
    assert [p.name for p in phases.of("upgrade")] == ["artifacts", "upgrade"]  # staged binaries first, then the nodes
    for command in ("status", "reset", "backup", "restore", "certs-renew", "upgrade-versions"):  # plays: one phase
        [phase] = phases.of(command)
        assert (phase.name, phase.playbook) == (command, ROOT / "playbooks" / phases.DECLARATIONS[command])


def test_a_command_reads_its_inventory_once(monkeypatch, capsys):
    loads: list[Path] = []
    real = validate.inv_mod.load
    monkeypatch.setattr(validate.inv_mod, "load", lambda path, **kw: (loads.append(path), real(path, **kw))[1])
    assert cli.main(["check", "-i", str(ROOT / "inventories" / "homelab")]) == 0
    assert loads == [ROOT / "inventories" / "homelab"]  # validated and used: one pass


def _status_stats(tmp_path: Path, **extra: object) -> dict:
    """playbooks/status.yml run on this machine as the inventory's control plane; its kubestrap_status stats."""
    inv = _local_inventory(tmp_path)
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inv), str(ROOT / "playbooks" / "status.yml"), "-e", json.dumps(extra)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "ANSIBLE_SHOW_CUSTOM_STATS": "1", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    stats = proc.stdout.split("CUSTOM STATS:", 1)[1]
    return json.JSONDecoder().raw_decode(stats[stats.index("{"):])[0]["kubestrap_status"]


def test_status_reads_nodes_releases_and_workloads_of_a_bootstrapped_cluster(tmp_path: Path):
    """status.yml against the REAL kube-apiserver (tests/k8s_real.py) with real kubectl, helm a stand-in
    (releases as `helm list -o json` prints them): two module runs fill the table, one `kubectl get` for the nodes
    and the workloads (the readiness of each release's namespace), one `helm list`."""
    helm = tmp_path / "helm"
    helm.write_text("#!/bin/sh\necho '[{\"name\": \"metallb\", \"namespace\": \"metallb-system\", "
                    "\"status\": \"deployed\", \"chart\": \"metallb-0.15.3\", \"revision\": \"1\"}]'\n")  # fmt: skip
    helm.chmod(0o755)
    with started(tmp_path / "plane") as plane:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "local-cp"}}
        plane.kubectl("create", "-f", "-", stdin=json.dumps(node))
        plane.kubectl("create", "namespace", "metallb-system")
        plane.kubectl("create", "deployment", "controller", "-n", "metallb-system", "--image=registry.invalid/x:1")
        common = {"status_kubectl_bin": plane.kubectl_bin, "kubestrap_admin_kubeconfig": str(plane.kubeconfig)}
        status = _status_stats(tmp_path / "a", **common, status_helm_bin=str(helm))
        assert status["bootstrapped"] is True
        assert [row[0] for row in status["nodes"]] == ["local-cp"]  # (name, version, ready) rows
        assert status["addons"] == [{"name": "metallb", "namespace": "metallb-system", "status": "deployed",
                                     "chart": "metallb-0.15.3"}]  # fmt: skip
        # the Deployment (no controller runs here: none of its replicas is ready), not the Node, in its namespace
        assert list(status["workloads"]) == ["metallb-system"] and status["workloads"]["metallb-system"].startswith("0/")
        without_helm = _status_stats(tmp_path / "b", **common, status_helm_bin=str(tmp_path / "no-helm"))
        assert without_helm["bootstrapped"] is True and without_helm["addons"] == []
        assert [row[0] for row in without_helm["nodes"]] == ["local-cp"]
