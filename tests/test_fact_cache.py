"""Plain `ansible-playbook` runs keep the fact cache as private as bootstrap.py keeps its own (directory 0700,
files 0600). ansible.cfg's jsonfile cache (`.runs/facts`) is created by Ansible 0755 when the playbook starts and
every fact file is written 0644; kubestrap's callback next to the playbooks
(playbooks/callback_plugins/kubestrap_private_fact_cache.py) makes the directory 0700 before the first play, so
before any fact is written, and the files 0600 when the playbook ends. It adds no task: a second run has
changed=0 as before."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import ANSIBLE_PLAYBOOK, ROOT


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _env(tmp_path: Path, cache: Path) -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_CACHE_PLUGIN="jsonfile",
                ANSIBLE_CACHE_PLUGIN_CONNECTION=str(cache), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
                KUBESTRAP_SECRETS_DIR=str(tmp_path / "secrets"), ANSIBLE_NOCOLOR="1")  # fmt: skip


def _playbook(tmp_path: Path, book: Path, inventory: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", inventory, str(book)],
        cwd=tmp_path, env=_env(tmp_path, cache), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_plain_run_of_an_entry_playbook_leaves_the_fact_cache_private(tmp_path: Path):
    """playbooks/reset.yml as a user runs it (the controller play only): the cache Ansible created is 0700."""
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    local = {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": local, "children": {"k8s_cluster": {"children": {
        "k8s_control_plane": {"hosts": {"cp1": {"ansible_host": "192.0.2.10", "node_ip": "192.0.2.10"}}}}}}}}))  # fmt: skip
    (inv / "group_vars" / "k8s_cluster.yml").write_text("cluster_name: lab\n")
    cache = tmp_path / "runs" / "facts"
    done = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inv), "--limit", "localhost",
         str(ROOT / "playbooks" / "reset.yml")],
        cwd=tmp_path, env=_env(tmp_path, cache), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert cache.is_dir() and _mode(cache) == 0o700, oct(_mode(cache))


def _beside_kubestraps_playbooks(tmp_path: Path) -> Path:
    """A playbook that gathers facts in a directory with kubestrap's callback_plugins, as its own playbooks have."""
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "callback_plugins").symlink_to(ROOT / "playbooks" / "callback_plugins")
    book = books / "facts.yml"
    book.write_text(yaml.safe_dump([{"name": "Gather", "hosts": "localhost", "gather_facts": True,
                                     "tasks": [{"name": "Nothing", "ansible.builtin.debug": {"msg": "hi"}}]}]))  # fmt: skip
    return book


INVENTORY = f"localhost ansible_connection=local ansible_python_interpreter={sys.executable},"


def test_facts_are_written_into_a_private_directory_and_a_second_run_changes_nothing(tmp_path: Path):
    """Directory 0700, files 0600, also a file an earlier run left 0644; the second run reports changed=0."""
    book = _beside_kubestraps_playbooks(tmp_path)
    cache = tmp_path / "runs" / "facts"
    cache.mkdir(parents=True)
    cache.chmod(0o755)
    old = cache / "old-host"
    old.write_text("{}")
    old.chmod(0o644)
    for run in (1, 2):
        done = _playbook(tmp_path, book, INVENTORY, cache)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        assert "changed=0" in done.stdout.split("PLAY RECAP")[1], done.stdout[-2000:]
        assert _mode(cache) == 0o700, (run, oct(_mode(cache)))
        files = sorted(cache.iterdir())
        assert [p for p in files if p.name != "old-host"], f"no fact file was written: {files}"
        assert {p.name: oct(_mode(p)) for p in files} == {p.name: "0o600" for p in files}, run


def test_a_cache_set_to_a_directory_that_holds_more_than_facts_is_left_alone(tmp_path: Path):
    """fact_caching_connection pointed at a busy directory (a home, /tmp): not made 0700, a warning says why."""
    book = _beside_kubestraps_playbooks(tmp_path)
    busy = tmp_path / "busy"
    (busy / "projects").mkdir(parents=True)
    busy.chmod(0o755)
    done = _playbook(tmp_path, book, INVENTORY, busy)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert _mode(busy) == 0o755
    assert f"kubestrap leaves the fact cache {busy} as it is: it holds more than cache files" in done.stdout + done.stderr
