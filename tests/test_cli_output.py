"""What the CLI prints into pipes and CI logs: rich markup never eats names or messages, and tables are
sized to their content when there is no terminal to fit."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from kubestrap import cli, phases
from kubestrap import inventory as inv_mod
from kubestrap.progress import ProgressView
from kubestrap.tables import print_table
from kubestrap.tracker import PhaseTracker


def _pipe() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, highlight=False, soft_wrap=True), out


def test_progress_into_a_pipe_keeps_the_phase_name_and_bracketed_names():
    console, out = _pipe()
    assert not console.is_terminal
    view = ProgressView(console, 9)
    tracker = PhaseTracker("preflight")
    view.phase_started(1, tracker, ["[weird]host"])
    event = {"event": "playbook_on_task_start", "event_data": {"task": "Check [bold]everything[/bold]"}}
    tracker.feed(event)
    view.event(event)
    tracker.feed({"event": "runner_on_ok", "event_data": {"host": "[weird]host", "task": "t", "res": {}}})
    view.phase_finished(tracker, 1.0)
    text = out.getvalue()
    assert "  [preflight] Check [bold]everything[/bold]" in text
    assert "([weird]host)" in text
    assert "phase 1/9 preflight in" in text


def test_the_live_view_escapes_task_and_host_names():
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    view = ProgressView(console, 9)
    tracker = PhaseTracker("preflight")
    view.tracker = tracker
    tracker.feed({"event": "playbook_on_task_start", "event_data": {"task": "Wait for [red]x[/red]"}})
    tracker.feed({"event": "runner_on_start", "event_data": {"host": "[h1]", "task": "Wait for [red]x[/red]"}})
    rendered = Console(file=io.StringIO(), width=200, record=True)
    rendered.print(view._render())
    text = rendered.export_text()
    assert "task: Wait for [red]x[/red]" in text
    assert "[h1]" in text


def test_a_wide_table_into_a_pipe_is_not_cut_at_80_columns():
    console, out = _pipe()
    table = Table(title="lab ports")
    for col in ("vm", "ssh", "api server", "node ip", "a rather long column header that is wide"):
        table.add_column(col)
    table.add_row("e2e-control-plane-1", "127.0.0.1:40022", "https://127.0.0.1:46443", "10.77.0.10",
                  "x" * 60)
    print_table(console, table)
    text = out.getvalue()
    assert "https://127.0.0.1:46443" in text and "x" * 60 in text
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) > 80


def test_plan_table_of_a_wide_inventory_into_a_pipe_shows_every_host_name_whole(tmp_path):
    names = [f"k8s-worker-with-a-long-name-{i}" for i in range(6)]
    hosts = "\n".join(f"            {n}:\n              ansible_host: 10.0.0.{i + 2}\n              node_ip: 10.0.0.{i + 2}"
                      for i, n in enumerate(names))
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yml").write_text(f"""all:
  children:
    k8s_cluster:
      children:
        k8s_control_plane:
          hosts:
            cp:
              ansible_host: 10.0.0.1
              node_ip: 10.0.0.1
        k8s_workers:
          hosts:
{hosts}
""")
    inv = inv_mod.load(tmp_path)
    console, out = _pipe()
    selected = phases.of("up")
    cli._print_plan(console, selected, {p.name: ["cp", *names] for p in selected}, inv)
    text = out.getvalue()
    for name in names:
        assert name in text
    assert "…" not in text


def test_preflight_table_into_a_pipe_keeps_bracketed_details_whole():
    console, out = _pipe()
    detail = "owned by [enp0s31f6] at 192.168.100.200/24 with a long explanation of what to change " * 2
    cli._print_preflight(console, {"[node-1]": {"node_ip": {"ok": False, "detail": detail}}})
    text = out.getvalue()
    assert "[node-1]" in text and detail.strip() in text


def test_lab_status_table_into_a_pipe_shows_the_ports_whole(capsys):
    from kubestrap.lab import cli as lab_cli

    vm = {"name": "kubestrap-lab-control-plane-1", "role": "control_plane", "node_ip": "10.77.0.10",
          "ssh_port": 40022, "api_port": 46443, "pid": 4242, "running": True, "ssh": True}
    info = {"name": "lab", "accel": "tcg", "network": "10.77.0.0/24", "private_key": "/k", "vms": [vm, {**vm, "name": "w1"}]}
    lab_cli._print_table(info)
    out = capsys.readouterr().out
    assert "127.0.0.1:40022" in out and "127.0.0.1:46443" in out and "kubestrap-lab-control-plane-1" in out
    assert "…" not in out


def test_up_ends_with_the_nodes_verify_saw_and_the_kubeconfig_path(tmp_path, capsys, monkeypatch):
    """A verified `up` prints the nodes table (from the verify phase's report) and where the admin kubeconfig is."""
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "k8s_cluster.yml").write_text("cluster_name: demo\n")
    (tmp_path / "hosts.yml").write_text("""all:
  children:
    k8s_cluster:
      children:
        k8s_control_plane:
          hosts:
            cp: {ansible_host: 10.0.0.1, node_ip: 10.0.0.1}
        k8s_workers:
          hosts:
            w1: {ansible_host: 10.0.0.2, node_ip: 10.0.0.2}
""")
    monkeypatch.setenv("KUBESTRAP_SECRETS_DIR", str(tmp_path / "secrets"))
    inv = inv_mod.load(tmp_path)
    cli._print_cluster(inv, {"nodes": [["cp", "v1.36.3", "True"], ["w1", "v1.36.3", "False"]]})
    out = capsys.readouterr().out
    assert "cluster demo" in out
    assert [[cell.strip() for cell in line.split("│")[1:6]] for line in out.splitlines() if "v1.36.3" in line] == [
        ["cp", "control-plane", "10.0.0.1", "v1.36.3", "Ready"],
        ["w1", "worker", "10.0.0.2", "v1.36.3", "NotReady"],
    ]
    assert f"kubeconfig: {tmp_path / 'secrets' / 'demo' / 'admin.conf'} (0600)" in out
