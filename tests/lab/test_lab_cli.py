import argparse
import json
import os
import subprocess
import sys

from helpers import ROOT

from kubestrap.lab import cli
from kubestrap.lab.__main__ import main


def test_register_adds_lab_with_funcs():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    args = parser.parse_args(["lab", "up", "--workers", "2", "--name", "x"])
    assert args.func is cli.cmd_up and args.workers == 2 and args.name == "x"
    assert parser.parse_args(["lab", "down"]).func is cli.cmd_down
    status = parser.parse_args(["lab", "status", "--json"])
    assert status.func is cli.cmd_status and status.json


def test_status_of_missing_lab_as_json(tmp_path, capsys):
    assert main(["status", "--state-dir", str(tmp_path / "none"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["exists"] is False


def test_down_of_missing_lab_is_fine(tmp_path, capsys):
    assert main(["down", "--state-dir", str(tmp_path)]) == 0
    assert "nothing to stop" in capsys.readouterr().err


def test_user_mistakes_are_one_line_errors_without_traceback(tmp_path):
    bad_spec = tmp_path / "spec.json"
    bad_spec.write_text("{not json")
    cases = [
        ["up", "--workers", "-1", "--state-dir", str(tmp_path)],
        ["up", "--spec", str(bad_spec), "--state-dir", str(tmp_path)],
        ["up", "--spec", str(tmp_path / "missing.json"), "--state-dir", str(tmp_path)],
        ["up", "--network", "10.77.0.0/33", "--state-dir", str(tmp_path)],
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "kubestrap.lab", *argv], capture_output=True, text=True, env=env, check=False
        )
        assert proc.returncode == 1, argv
        assert "Traceback" not in proc.stderr
        assert proc.stderr.startswith("error: "), proc.stderr


def test_molecule_inventory_source_reports_node_ips(tmp_path):
    script = ROOT / "molecule" / "_shared" / "inventory.py"
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "state.json").write_text(
        json.dumps({"vms": [{"name": "cp1", "node_ip": "10.77.0.10", "groups": ["k8s_control_plane"]}]})
    )
    env = {**os.environ, "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path)}
    out = json.loads(subprocess.run([str(script), "--list"], capture_output=True, env=env, check=True).stdout)
    assert out["_meta"]["hostvars"]["cp1"] == {"node_ip": "10.77.0.10"}
    assert out["k8s_cluster"]["children"] == ["k8s_control_plane", "k8s_workers"]
    assert out["k8s_control_plane"]["hosts"] == ["cp1"]
    env.pop("MOLECULE_EPHEMERAL_DIRECTORY")
    empty = json.loads(subprocess.run([str(script), "--list"], capture_output=True, env=env, check=True).stdout)
    assert empty["_meta"]["hostvars"] == {}


def test_an_error_text_with_brackets_is_printed_whole(tmp_path):
    # a path or name in square brackets was eaten as rich markup
    spec = tmp_path / "[lab] spec.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "kubestrap.lab", "up", "--spec", str(spec), "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 1
    assert "[lab] spec.json" in proc.stderr, proc.stderr
