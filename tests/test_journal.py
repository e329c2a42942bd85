"""The run journal: no controller environment kept, old runs pruned, private modes (fact cache too),
write failures reported in one line, secrets generated during the run redacted."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import sys
from pathlib import Path

import localrun
import pytest
from rich.console import Console

from kubestrap import cli, paths, runner
from kubestrap.journal import Journal
from kubestrap.phases import Phase
from kubestrap.progress import ProgressView
from kubestrap.redact import MASK, Redactor

CREDENTIAL = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYzEXAMPLEKEY"
HELLO = """
    - name: Say hello
      ansible.builtin.debug:
        msg: hello
"""


def test_old_runs_are_pruned_to_the_newest_n(tmp_path: Path, monkeypatch):
    base = tmp_path / "runs"
    for day in range(1, 6):
        (base / f"202601{day:02d}T000000Z-up").mkdir(parents=True)
    (base / "facts").mkdir()
    (base / "locks").mkdir()
    (base / "notes").mkdir()  # not a run: never touched
    monkeypatch.setenv("KUBESTRAP_RUNS_KEEP", "3")
    journal = Journal("up", Redactor(), base=base)
    journal.close()
    kept = sorted(p.name for p in base.iterdir())
    assert kept == sorted(["20260104T000000Z-up", "20260105T000000Z-up", journal.path.name,
                           "facts", "locks", "notes", "latest"])
    monkeypatch.setenv("KUBESTRAP_RUNS_KEEP", "0")  # keep all
    Journal("up", Redactor(), base=base).close()
    assert len([p for p in base.iterdir() if p.name.startswith("2026")]) == 4
    monkeypatch.setenv("KUBESTRAP_RUNS_KEEP", "many")
    with pytest.raises(ValueError, match="KUBESTRAP_RUNS_KEEP must be the number of run journals to keep"):
        Journal("up", Redactor(), base=base)


def test_the_fact_cache_is_private_while_the_run_is_on(tmp_path: Path, monkeypatch):
    book = localrun.playbook(tmp_path, "facts", """
        - name: Show a fact
          ansible.builtin.debug:
            msg: "{{ ansible_facts.distribution | default('?') }}"
    """, hosts="localhost", gather=True)
    inventory = tmp_path / "inv.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                         f"      ansible_python_interpreter: {sys.executable}\n")
    runs = tmp_path / "runs"
    monkeypatch.setenv("KUBESTRAP_RUNS_DIR", str(runs))
    journal = Journal("test", Redactor(), base=runs)
    view = ProgressView(Console(file=io.StringIO()), 1)
    outcomes, _ = runner.run_phases("test", [Phase("facts", book, "facts")], {"facts": ["localhost"]},
                                    runner.RunOptions(inventory), journal, view)
    assert outcomes[0].ok
    # before the journal is closed: the next phase may be running for an hour
    cached = [p for p in runs.rglob("*") if p.is_file() and p.name.endswith("localhost")]  # jsonfile: one per host
    assert cached, "no fact cache file found"
    for path in [runs, *runs.rglob("*")]:
        if not path.is_symlink():
            assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    journal.close()


def test_a_journal_that_cannot_be_created_is_one_line_naming_the_setting(tmp_path: Path):
    book = localrun.playbook(tmp_path, "hello", HELLO)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    env = localrun.environment(tmp_path, KUBESTRAP_RUNS_DIR=str(blocker / "runs"))
    proc = localrun.run(tmp_path, book, "up", "-i", str(localrun.inventory(tmp_path)), env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cannot write a-file/runs"), lines[0]  # relative to the cwd
    assert "Not a directory" in lines[0]
    assert lines[0].endswith("set KUBESTRAP_RUNS_DIR to a writable directory with free space"), lines[0]


def test_a_disk_full_mid_run_keeps_the_result_line_and_exits_1(tmp_path: Path, monkeypatch, capsys):
    book = localrun.playbook(tmp_path, "hello", HELLO, hosts="k8s_control_plane")
    inv = localrun.inventory(tmp_path)
    runs = tmp_path / "runs"
    for key, value in localrun.environment(tmp_path).items():
        if key not in ("PATH", "PYTHONPATH", "HOME"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.startswith(str(runs)) and target.endswith("events.jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    monkeypatch.setattr(cli.phases, "of", lambda command: [cli.phases.Phase("hello", book, "hello")])
    code = cli.main(["up", "-i", str(inv)])
    err = capsys.readouterr().err
    assert code == 1, err
    lines = err.strip().splitlines()
    assert lines[-2].startswith("Finished up in "), err
    journal = next(runs.glob("*-up"))
    assert lines[-1] == (f"cannot write {paths.display(journal / 'events.jsonl')}: No space left on device; "
                         "set KUBESTRAP_RUNS_DIR to a writable directory with free space"), err
    assert json.loads((journal / "summary.json").read_text())["result"] == "ok"


def test_the_journal_keeps_no_credential_of_the_controller_nor_secrets_generated_during_the_run(tmp_path: Path):
    """One run proves both: the controller's environment (AWS_SECRET_ACCESS_KEY, ...) is not kept, and a
    password written during the run into the inventory's own secrets directory is masked in later events."""
    secrets = tmp_path / "elsewhere" / "local-secrets"
    book = localrun.playbook(tmp_path, "passwords", """
        - name: Generate a password into the secrets directory, as the add-on roles do
          ansible.builtin.copy:
            dest: "{{ kubestrap_secrets_dir }}/grafana-admin-password"
            content: "{{ lookup('ansible.builtin.password', '/dev/null', length=24, chars=['ascii_letters', 'digits']) }}"
            mode: "0600"
          no_log: true
        - name: A later task prints it
          ansible.builtin.debug:
            msg: "the password is {{ lookup('ansible.builtin.file', kubestrap_secrets_dir ~ '/grafana-admin-password') }}"
        - name: A failure message quotes it
          ansible.builtin.fail:
            msg: "refused {{ lookup('ansible.builtin.file', kubestrap_secrets_dir ~ '/grafana-admin-password') }}"
    """, hosts="k8s_control_plane")
    inv = localrun.inventory(tmp_path, settings=f"kubestrap_secrets_dir: {secrets}\n")
    secrets.mkdir(parents=True, mode=0o700)
    env = localrun.environment(tmp_path, AWS_SECRET_ACCESS_KEY=CREDENTIAL, GITHUB_TOKEN="ghp_" + CREDENTIAL)
    proc = localrun.run(tmp_path, book, "up", "-i", str(inv), "--json", env=env)
    assert proc.returncode == 1, proc.stderr
    assert f"task 'A failure message quotes it': refused {MASK}" in proc.stderr  # the console is redacted too
    password = (secrets / "grafana-admin-password").read_text().strip()
    assert len(password) == 24
    text = localrun.journal_text(tmp_path / "runs")
    assert f"the password is {MASK}" in text
    assert password not in text and password not in proc.stderr and password not in proc.stdout
    assert CREDENTIAL not in text
    # what explains the run stays: the command, Ansible's settings, PATH
    record = json.loads(next((tmp_path / "runs").glob("*-up/phases/01-passwords/artifacts/*/command")).read_text())
    assert record["command"][0] == "ansible-playbook"
    assert record["env"]["PATH"].endswith("/usr/bin:/bin")
    assert "ANSIBLE_CONFIG" in record["env"]
    assert "HOME" not in record["env"] and "AWS_SECRET_ACCESS_KEY" not in record["env"]


def test_the_redactor_learns_files_that_appear_and_change(tmp_path: Path):
    directory = tmp_path / "secrets"
    redactor = Redactor.for_secrets_dir(directory)  # does not exist yet
    assert redactor.text("pw: first-password-1") == "pw: first-password-1"
    directory.mkdir()
    (directory / "a").write_text("first-password-1\n")
    redactor.refresh()
    assert redactor.text("pw: first-password-1") == f"pw: {MASK}"
    (directory / "nested").mkdir()
    (directory / "nested" / "b").write_text("second-password-2")
    assert redactor.refresh() is True
    assert redactor.refresh() is False  # nothing changed: nothing re-read
    assert redactor.text("second-password-2") == MASK


def test_the_effective_secrets_dir_follows_the_inventory(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("KUBESTRAP_SECRETS_DIR", str(tmp_path / "env"))
    template = "{{ (lookup('ansible.builtin.env', 'KUBESTRAP_SECRETS_DIR') or 'x') ~ '/' ~ cluster_name }}"
    assert paths.effective_secrets_dir("c1", template) == tmp_path / "env" / "c1"
    assert paths.effective_secrets_dir("c1", None) == tmp_path / "env" / "c1"
    assert paths.effective_secrets_dir("c1", str(tmp_path / "mine")) == tmp_path / "mine"
    assert paths.effective_secrets_dir("c1", "rel/dir") == paths.REPO_ROOT / "rel" / "dir"


@pytest.mark.parametrize("from_env", [False, True])
def test_the_playbooks_write_secrets_where_bootstrap_reads_them(tmp_path: Path, from_env: bool):
    """group_vars/all's kubestrap_secrets_dir is kubestrap/paths.py's secrets_dir (through the
    kubestrap_secrets_dir filter), with and without $KUBESTRAP_SECRETS_DIR: one definition of the default."""
    import re
    import subprocess

    inventory = tmp_path / "inv"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    (inventory / "group_vars").symlink_to(paths.REPO_ROOT / "group_vars")
    env = {k: v for k, v in os.environ.items() if k != "KUBESTRAP_SECRETS_DIR"}
    if from_env:
        env["KUBESTRAP_SECRETS_DIR"] = str(tmp_path / "env")
    env.update(ANSIBLE_CONFIG=str(paths.ANSIBLE_CFG), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    shown = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-i", str(inventory), "-m",
                            "ansible.builtin.debug", "-a", "var=kubestrap_secrets_dir"],
                           capture_output=True, text=True, env=env, timeout=120, check=False)  # fmt: skip
    found = re.search(r'kubestrap_secrets_dir"?: "?([^"\s]+)', shown.stdout)  # YAML or JSON callback
    assert found, shown.stdout + shown.stderr
    expected = (tmp_path / "env" / "homelab") if from_env else paths.REPO_ROOT / ".secrets" / "homelab"
    assert Path(found.group(1)) == expected


def test_a_phase_without_its_directory_fails_naming_the_path_and_the_setting(tmp_path: Path):
    journal = Journal("up", Redactor(), base=tmp_path / "runs")
    (journal.path / "phases").write_text("a file where the phases directory goes\n")
    view = ProgressView(Console(file=io.StringIO()), 1)
    outcomes, _ = runner.run_phases("up", [Phase("hello", tmp_path / "none.yml", "hello")], {"hello": []},
                                    runner.RunOptions(tmp_path / "inv.yml"), journal, view)
    assert not outcomes[0].ok
    message = runner.failure_message(outcomes[0], "bootstrap.py up", journal)
    assert "phases: File exists; set KUBESTRAP_RUNS_DIR to a writable directory with free space" in message
    assert "`bootstrap.py up --from-phase hello`" in message
    assert journal.problem and journal.problem.startswith("cannot write ")
    journal.close()


def test_facts_are_gathered_once_for_all_phases_and_runs(tmp_path: Path, monkeypatch):
    """The roles gather the facts they need only when the cache lacks them; a cache per phase made
    every phase gather again (seconds per host per phase on slow nodes)."""
    book = localrun.playbook(tmp_path, "arch", """
        - name: Gather the architecture when not known yet
          ansible.builtin.setup:
            gather_subset: ["!all", "!min", platform]
          when: ansible_facts.architecture is not defined
    """, hosts="localhost")
    inventory = tmp_path / "inv.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                         f"      ansible_python_interpreter: {sys.executable}\n")
    runs = tmp_path / "runs"
    monkeypatch.setenv("KUBESTRAP_RUNS_DIR", str(runs))
    gathered = []
    for _ in range(2):  # two runs of two phases each
        journal = Journal("test", Redactor(), base=runs)
        view = ProgressView(Console(file=io.StringIO()), 2)
        phases = [Phase("one", book, "one"), Phase("two", book, "two")]
        outcomes, _ = runner.run_phases("test", phases, {"one": ["localhost"], "two": ["localhost"]},
                                        runner.RunOptions(inventory), journal, view)
        journal.close()
        assert all(o.ok for o in outcomes)
        gathered += [o.tracker.hosts["localhost"].ok for o in outcomes]
    assert gathered == [1, 0, 0, 0]  # the setup task ran in the first phase of the first run only


def test_a_file_that_vanishes_while_the_phase_is_made_private_is_no_write_failure(tmp_path: Path, monkeypatch):
    """ansible-runner renames its partial event files while finish_phase walks the phase's tree (a Ctrl-C under load
    showed it): a file gone between the walk and its chmod is no storage problem of the run."""
    journal = Journal("up", Redactor(), base=tmp_path / "runs")
    phase = journal.phase_dir(1, "sleepy")
    events = phase / "artifacts" / "x" / "job_events"
    events.mkdir(parents=True)
    (events / "1-partial.json.tmp").write_text("{}")
    real_stat = os.stat

    def vanishing_stat(path, *args, **kwargs):
        if str(path).endswith("-partial.json.tmp"):
            os.unlink(path)  # renamed away by ansible-runner right after the walk listed it
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", vanishing_stat)
    journal.finish_phase(phase)
    assert journal.problem is None
    assert stat.S_IMODE(real_stat(events).st_mode) == 0o700
