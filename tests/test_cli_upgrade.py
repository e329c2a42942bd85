"""`bootstrap.py plan --upgrade` and `bootstrap.py upgrade` (issue 21 item 2) at the CLI, without a cluster: the
versions the read-only playbook (playbooks/upgrade_versions.yml) would report are fed in by monkeypatching
cli._read_versions, and cli._execute records what would run. Refusals exit 2 before any node is changed (the
example inventory's hosts do not exist: reaching one would fail otherwise)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from helpers import ROOT

from kubestrap import cli, exits, phases, upgrade

PIN = "1.36.4"  # group_vars/all/versions.yml kubeadm/kubelet/kubectl
CONTAINERD = "2.3.4"  # group_vars/all/versions.yml containerd


def cluster(apiserver: str, runtimes: dict[str, str] | None = None, **kubelets: str) -> dict[str, Any]:
    """What playbooks/upgrade_versions.yml reports; each node's containerd at the pin unless *runtimes* says otherwise."""
    nodes = [{"name": name.replace("_", "-"), "kubelet": f"v{version}", "ready": True, "control_plane": name == "k8s_cp",
              "schedulable": True, "runtime": (runtimes or {}).get(name, f"containerd://{CONTAINERD}")}
             for name, version in kubelets.items()]
    return {"apiserver": f"v{apiserver}", "nodes": nodes}


HOMELAB = {"k8s_cp": "1.35.4", "k8s_worker1": "1.35.4", "k8s_worker2": "1.35.4", "k8s_worker3": "1.35.2"}


@pytest.fixture
def fake(monkeypatch):
    """cli with the cluster's answer fed in and nothing run: .reads counts version reads, .runs the upgrade runs."""
    state: dict[str, Any] = {"cluster": cluster("1.35.4", **HOMELAB), "reads": [], "runs": [], "keys": []}

    def read_versions(args, inv, words):
        state["reads"].append(words)
        return exits.OK, state["cluster"]

    def execute(command, resume, selected, inv, args, extravars):
        state["runs"].append({"command": command, "resume": resume, "phases": [p.name for p in selected],
                              "extravars": extravars})
        return exits.OK, None

    monkeypatch.setattr(cli, "_read_versions", read_versions)
    monkeypatch.setattr(cli, "_execute", execute)
    monkeypatch.setattr(cli, "_host_keys", lambda command, *rest: state["keys"].append(command))
    return state


def main(*argv: str) -> int:
    return cli.main(list(argv))


def test_the_commands_are_declared_by_their_playbooks():
    assert [(p.name, p.playbook.name) for p in phases.of("upgrade")] == [("artifacts", "artifacts.yml"),
                                                                        ("upgrade", "upgrade_nodes.yml")]
    assert [p.playbook.name for p in phases.of("upgrade-versions")] == ["upgrade_versions.yml"]


def test_plan_upgrade_prints_the_order_from_the_running_versions(fake, capsys):
    assert main("plan", "-i", "inventories/homelab", "--upgrade", "--batch-size", "2") == exits.OK
    out = capsys.readouterr().out
    assert "upgrade: API server 1.35.4 -> 1.36.4" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert set(rows) == {"1", "2", "3"}
    assert "k8s-cp" in rows["1"] and "kubeadm upgrade apply" in rows["1"] and "1.35.4 -> 1.36.4" in rows["1"]
    assert "k8s-worker1, k8s-worker2" in rows["2"] and "kubeadm upgrade node; drain; kubelet" in rows["2"]
    assert "k8s-worker3" in rows["3"] and "1.35.2 -> 1.36.4" in rows["3"]
    assert fake["reads"] == [["plan", "--upgrade", "--batch-size", "2"]] and fake["runs"] == []


def test_plan_upgrade_json(fake, capsys):
    fake["cluster"] = cluster("1.36.4", k8s_cp=PIN, k8s_worker1=PIN, k8s_worker2="1.35.4", k8s_worker3="1.35.4")
    assert main("plan", "-i", "inventories/homelab", "--upgrade", "--json") == exits.OK
    plan = json.loads(capsys.readouterr().out)["upgrade"]
    assert plan["current"] == ["k8s-cp", "k8s-worker1"] and plan["pending"] == ["k8s-worker2", "k8s-worker3"]
    assert [s["action"] for s in plan["steps"]] == [upgrade.NODE, upgrade.NODE]


@pytest.mark.parametrize(("command", "apiserver", "kubelets", "message"), [
    ("plan", "1.34.9", {"k8s_cp": "1.34.9"}, "skips minor version(s) 1.35"),
    ("upgrade", "1.34.9", {"k8s_cp": "1.34.9"}, "Pin the newest 1.35.x first"),
    ("upgrade", "1.37.0", {"k8s_cp": "1.37.0"}, "does not downgrade"),
    ("upgrade", "1.35.4", {"k8s_cp": "1.35.4", "k8s_worker1": "1.32.0"}, "supports kubelets from 1.33 on"),
])  # fmt: skip
def test_a_refused_upgrade_exits_2_and_touches_no_node(fake, capsys, command, apiserver, kubelets, message):
    fake["cluster"] = cluster(apiserver, **kubelets)
    argv = ["plan", "-i", "inventories/homelab", "--upgrade"] if command == "plan" else ["upgrade", "-i",
                                                                                          "inventories/homelab", "--yes"]
    assert main(*argv) == exits.INPUT
    err = capsys.readouterr().err
    assert message in err and "nothing was changed" in err
    assert fake["runs"] == [] and "upgrade" not in fake["keys"]


def test_a_node_that_did_not_come_back_stops_the_next_run_before_any_change(fake, capsys):
    fake["cluster"] = cluster("1.36.4", k8s_cp=PIN, k8s_worker1=PIN, k8s_worker2="1.35.4", k8s_worker3="1.35.4")
    fake["cluster"]["nodes"][1]["ready"] = False
    assert main("upgrade", "-i", "inventories/homelab", "--yes") == exits.INPUT
    assert "k8s-worker1 is NotReady" in capsys.readouterr().err and fake["runs"] == []


def test_a_cluster_at_the_pin_has_nothing_to_do(fake, capsys):
    fake["cluster"] = cluster(PIN, **dict.fromkeys(HOMELAB, PIN))
    assert main("upgrade", "-i", "inventories/homelab", "--yes") == exits.OK
    assert "nothing to do" in capsys.readouterr().err and fake["runs"] == []


def test_upgrade_runs_the_declared_phases_with_the_batch_size_and_says_how_to_resume(fake, capsys):
    assert main("upgrade", "-i", "inventories/homelab", "--batch-size", "2", "--yes") == exits.OK
    [run] = fake["runs"]
    assert run["command"] == "upgrade" and run["phases"] == ["artifacts", "upgrade"]
    assert run["extravars"] == {"kube_upgrade_batch_size": 2}
    assert run["resume"] == "bootstrap.py upgrade -i inventories/homelab --batch-size 2 --yes"  # a re-run resumes
    assert fake["keys"] == ["upgrade"]
    err = capsys.readouterr().err
    assert "kubeadm upgrade apply" in err  # the order is shown before anything runs


@pytest.mark.parametrize("argv", [
    ["upgrade", "-i", "inventories/homelab", "--batch-size", "0", "--yes"],
    ["plan", "-i", "inventories/homelab", "--upgrade", "--batch-size", "-1"],
    ["plan", "-i", "inventories/homelab", "--batch-size", "2"],
    ["plan", "-i", "inventories/homelab", "--upgrade", "--hosts"],
    ["plan", "-i", "inventories/homelab", "--upgrade", "--for", "backup"],
    ["upgrade", "-i", "inventories/homelab"],  # no terminal to confirm in, no --yes
])  # fmt: skip
def test_bad_options_are_refused_before_the_cluster_is_read(fake, monkeypatch, argv):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert main(*argv) == exits.INPUT
    assert fake["reads"] == [] and fake["runs"] == []


def test_upgrade_and_plan_upgrade_need_an_inventory():
    for argv in (["upgrade", "--yes"], ["plan", "--upgrade"]):
        proc = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), *argv], capture_output=True, text=True,
                              cwd=ROOT, timeout=120, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
        assert proc.returncode == 2 and "-i" in proc.stderr, proc.stderr


@pytest.mark.parametrize(("answer", "runs"), [("homelab", 1), ("y", 0)])
def test_upgrade_asks_for_the_cluster_name_after_showing_the_order(fake, monkeypatch, capsys, answer, runs):
    class Terminal:
        def isatty(self) -> bool:
            return True

        def readline(self) -> str:
            return answer + "\n"

    monkeypatch.setattr(sys, "stdin", Terminal())
    assert main("upgrade", "-i", "inventories/homelab") == exits.OK
    err = capsys.readouterr().err
    assert "Type the cluster name homelab to go on" in err
    assert len(fake["runs"]) == runs and ("upgrade cancelled; nothing was touched" in err) == (runs == 0)


def _rows(out: str) -> dict[str, str]:
    return {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}


def test_plan_upgrade_prints_the_containerd_steps(fake, capsys):
    """Kubelets at the pin, containerd behind on two nodes: a runtime step each, in the same order (issue 21)."""
    fake["cluster"] = cluster(PIN, runtimes={"k8s_cp": "containerd://2.2.1", "k8s_worker2": "containerd://2.3.0"},
                              **dict.fromkeys(HOMELAB, PIN))
    assert main("plan", "-i", "inventories/homelab", "--upgrade") == exits.OK
    out = capsys.readouterr().out
    assert f"upgrade: API server {PIN} -> {PIN}, containerd -> {CONTAINERD}" in out
    rows = _rows(out)
    assert set(rows) == {"1", "2"}
    assert "k8s-cp" in rows["1"] and "drain; containerd + runc; restart containerd, kubelet; uncordon" in rows["1"]
    assert f"containerd 2.2.1 -> {CONTAINERD}" in rows["1"]
    assert "k8s-worker2" in rows["2"] and f"containerd 2.3.0 -> {CONTAINERD}" in rows["2"]
    assert f"already at {PIN} with containerd {CONTAINERD} (not touched): k8s-worker1, k8s-worker3" in out


def test_a_kubelet_step_says_when_it_replaces_containerd_too(fake, capsys):
    fake["cluster"] = cluster("1.35.4", runtimes={"k8s_worker1": "containerd://2.2.1"}, **HOMELAB)
    assert main("plan", "-i", "inventories/homelab", "--upgrade", "--batch-size", "2") == exits.OK
    rows = _rows(capsys.readouterr().out)
    assert "kubeadm upgrade apply; drain; kubelet + kubectl; restart; uncordon" in rows["1"]  # containerd at the pin
    assert "kubeadm upgrade node; drain; containerd + runc on k8s-worker1; kubelet; restart; uncordon" in rows["2"]
    assert f"1.35.4 -> {PIN}; containerd 2.2.1 -> {CONTAINERD}" in rows["2"]
    assert "containerd" not in rows["3"]


def test_plan_upgrade_json_has_the_runtime_fields(fake, capsys):
    fake["cluster"] = cluster(PIN, runtimes={"k8s_worker3": "containerd://2.2.1"}, **dict.fromkeys(HOMELAB, PIN))
    assert main("plan", "-i", "inventories/homelab", "--upgrade", "--json") == exits.OK
    plan = json.loads(capsys.readouterr().out)["upgrade"]
    assert plan["runtime"] == CONTAINERD and plan["pending"] == ["k8s-worker3"]
    [step] = plan["steps"]
    assert (step["action"], step["runtime_nodes"], step["runtime_from"], step["runtime_to"]) == (
        upgrade.RUNTIME, ["k8s-worker3"], ["2.2.1"], CONTAINERD)


@pytest.mark.parametrize(("runtime", "message"), [
    ("containerd://2.4.0", "k8s-worker1 (containerd 2.4.0) run(s) a containerd newer than the pinned 2.3.4"),
    ("cri-o://1.36.1", "node k8s-worker1 runs the container runtime 'cri-o://1.36.1', not containerd"),
])  # fmt: skip
def test_a_refused_runtime_exits_2_and_touches_no_node(fake, capsys, runtime, message):
    fake["cluster"] = cluster(PIN, runtimes={"k8s_worker1": runtime}, **dict.fromkeys(HOMELAB, PIN))
    assert main("upgrade", "-i", "inventories/homelab", "--yes") == exits.INPUT
    err = capsys.readouterr().err
    assert message in err and "nothing was changed" in err and fake["runs"] == []


def test_a_cluster_with_kubelets_and_runtimes_at_the_pins_has_nothing_to_do(fake, capsys):
    fake["cluster"] = cluster(PIN, **dict.fromkeys(HOMELAB, PIN))
    assert main("plan", "-i", "inventories/homelab", "--upgrade") == exits.OK
    assert f"nothing to do, the API server and every node run {PIN}, containerd {CONTAINERD}" in capsys.readouterr().out
