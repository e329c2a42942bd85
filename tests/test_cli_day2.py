"""The day-2 commands (issue 21 items 3 and 4) at the CLI: declared, validated first, bad input refused with exit 2
before any host is touched (the example inventory's hosts do not exist: reaching one would fail otherwise)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from types import SimpleNamespace

import pytest
from helpers import ROOT

from kubestrap import cli, exits, phases


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)  # fmt: skip


def test_the_commands_are_declared_by_their_playbooks():
    assert [p.playbook.name for p in phases.of("backup")] == ["backup.yml"]
    assert [p.playbook.name for p in phases.of("restore")] == ["restore.yml"]
    assert [p.playbook.name for p in phases.of("certs-renew")] == ["certs_renew.yml"]
    out = run("certs", "--help").stdout
    assert "renew" in out


@pytest.mark.parametrize("content", [None, b"", b"not a snapshot" * 10])
def test_restore_refuses_a_missing_or_bad_snapshot_before_any_host(tmp_path, content):
    snapshot = tmp_path / "snap.db"
    if content is not None:
        snapshot.write_bytes(content)
    proc = run("restore", "-i", "inventories/homelab", str(snapshot), "--yes")
    assert proc.returncode == 2, proc.stderr
    assert ("does not exist" if content is None else "is not an etcd snapshot") in proc.stderr


def test_restore_refuses_an_archive_without_a_snapshot(tmp_path):
    archive = tmp_path / "x.tar.gz"


    with tarfile.open(archive, "w:gz") as out:
        out.add(ROOT / "README.md", arcname="README.md")
    proc = run("restore", "-i", "inventories/homelab", str(archive), "--yes")
    assert proc.returncode == 2 and "holds no etcd/snapshot.db" in proc.stderr


def test_restore_refuses_more_than_one_control_plane(monkeypatch, tmp_path):
    inv = SimpleNamespace(control_plane=["cp1", "cp2", "cp3"], hosts_file=tmp_path / "hosts.yml")
    monkeypatch.setattr(cli, "_inventory", lambda args, touching: inv)
    args = cli.build_parser().parse_args(["restore", "-i", str(tmp_path), str(tmp_path / "s.db"), "--yes"])
    with pytest.raises(exits.UserError, match="3 control-plane nodes: restore handles one"):
        cli.cmd_restore(args)


def test_restore_without_terminal_needs_yes(tmp_path):
    snapshot = tmp_path / "snap.db"
    snapshot.write_bytes(b"\0" * 16 + (0xED0CDAED).to_bytes(4, "little") + b"\0" * 64)  # a bbolt meta page's magic
    proc = run("restore", "-i", "inventories/homelab", str(snapshot))
    assert proc.returncode == 2 and "--yes" in proc.stderr


def test_backup_and_certs_need_an_inventory_and_validate_it(tmp_path):
    for argv in (["backup"], ["certs", "renew"]):
        proc = run(*argv)
        assert proc.returncode == 2 and "-i" in proc.stderr
    broken = tmp_path / "inv"
    broken.mkdir()
    (broken / "hosts.yml").write_text("all: {children: {k8s_cluster: {}}}\n")
    proc = run("backup", "-i", str(broken))
    assert proc.returncode == 2
    proc = run("backup", "-i", "inventories/homelab", "--dest", str(ROOT / "README.md"))
    assert proc.returncode == 2 and "is not a directory" in proc.stderr


def test_a_backup_archive_key_never_reaches_the_journal():
    from kubestrap.redact import MASK, Redactor

    line = "    - name: key1\n      secret: c2VjcmV0LWtleS1vZi0zMi1ieXRlcy1mb3ItdGVzdHM=\n"
    assert "c2VjcmV0" not in Redactor().text(line) and MASK in Redactor().text(line)


def test_plan_for_a_day2_command_lists_its_hosts_without_touching_any():
    """#21 item 5: `plan --for` shows per host what backup, restore and certs renew would run (offline)."""
    for command, hosts in (("backup", {"k8s-cp"}), ("restore", {"k8s-cp"}), ("certs-renew", {"k8s-cp"})):
        proc = run("plan", "-i", "inventories/homelab", "--for", command, "--json")
        assert proc.returncode == 0, proc.stderr
        (phase,) = json.loads(proc.stdout)["phases"]
        assert phase["name"] == command and set(phase["hosts"]) == hosts, phase
    refused = run("plan", "-i", "inventories/homelab", "--for", "backup", "--hosts")
    assert refused.returncode == 2 and "--hosts go with plan of up only" in refused.stderr


class _Terminal:
    """stdin of a terminal where the user types *answer*."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def isatty(self) -> bool:
        return True

    def readline(self) -> str:
        return self.answer + "\n"


@pytest.mark.parametrize(("answer", "runs"), [("homelab", 1), ("yes", 0), ("", 0)])
def test_restore_asks_for_the_cluster_name_and_only_that_goes_on(tmp_path, monkeypatch, capsys, answer, runs):
    snapshot = tmp_path / "snap.db"
    snapshot.write_bytes(b"\0" * 16 + (0xED0CDAED).to_bytes(4, "little") + b"\0" * 64)  # a bbolt meta page's magic
    executed: list[str] = []
    monkeypatch.setattr(sys, "stdin", _Terminal(answer))
    monkeypatch.setattr(cli, "_host_keys", lambda *a, **k: None)
    monkeypatch.setattr(cli, "_execute", lambda command, *a, **k: (executed.append(command), (exits.OK, None))[1])
    assert cli.main(["restore", "-i", str(ROOT / "inventories" / "homelab"), str(snapshot)]) == exits.OK
    err = capsys.readouterr().err
    assert f"Restore cluster homelab from {snapshot}?" in err and "Type the cluster name homelab to go on" in err
    assert len(executed) == runs
    assert ("restore cancelled; nothing was touched" in err) == (runs == 0)
