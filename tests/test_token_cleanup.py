"""Bootstrap tokens do not outlive the step that needs them (issue 16): the token `kubeadm init` creates
is deleted right after init, each per-run join token when the join phase ends (also after a failed join),
and every task that handles a token hides its output (no_log), so `-v` and the run journal never show one.

The deletions run the roles' own task files with REAL kubeadm (v1.36.3, kubestrap/lab/sources/build.py) against the REAL
kube-apiserver of tests/k8s_real.py: the tasks call `kubeadm` from PATH, which is the built one, and kubeadm's token
commands read the admin kubeconfig from $KUBECONFIG when no --kubeconfig is given (the node's default,
/etc/kubernetes/admin.conf, is not there on this machine).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ROOT, render_configs
from k8s_real import started, upstream_dir

TOKEN = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")
ROLES = ROOT / "roles"


# --- static: the task files -----------------------------------------------------------------------


def _tasks(items: list) -> list[dict]:
    out = []
    for task in items or []:
        out.append(task)
        for key in ("block", "rescue", "always"):
            out.extend(_tasks(task.get(key)))
    return out


def _task_files() -> dict[str, list[dict]]:
    return {
        str(path.relative_to(ROOT)): _tasks(yaml.safe_load(path.read_text()))
        for role in ("kubeadm_init", "kubeadm_join")
        for path in sorted((ROLES / role / "tasks").glob("*.yml"))
    }


def _touches_a_token(task: dict) -> bool:
    """Runs kubeadm init (it prints a token), a token command, keeps a token or writes a file holding one."""
    command = task.get("ansible.builtin.command") or {}
    argv = " ".join(map(str, command.get("argv", []))) if isinstance(command, dict) else str(command)
    facts = task.get("ansible.builtin.set_fact") or {}
    stdin = str(command.get("stdin", "")) if isinstance(command, dict) else ""
    template = str((task.get("ansible.builtin.template") or {}).get("src", ""))
    return (
        "token" in argv
        or argv.startswith("kubeadm init")
        or any("token" in key for key in facts)
        or "kubeadm-join" in stdin  # the JoinConfiguration on kubeadm join's standard input
        or template.startswith("kubeadm-join")  # a JoinConfiguration written to a file (a control plane's)
    )


def test_every_task_touching_a_token_is_no_log():
    touching = {f"{path}: {t['name']}": t for path, tasks in _task_files().items() for t in tasks if _touches_a_token(t)}
    # init, init token delete, mint, keep, a worker's join (its input), a control plane's join file, token deletes
    assert len(touching) >= 7, sorted(touching)
    assert [name for name, task in touching.items() if task.get("no_log") is not True] == []


def test_init_config_asks_for_a_short_lived_token(tmp_path):
    """The role's own template rendered (tests/helpers.render_configs): kubeadm generates the token, the file holds
    none, and its lifetime is the setting's."""
    docs = render_configs(tmp_path / "rendered", "-e", "kubeadm_init_bootstrap_token_ttl=7m")["k8s-cp-kubeadm-config.yaml"]
    init = next(d for d in docs if d and d.get("kind") == "InitConfiguration")
    (token,) = init["bootstrapTokens"]
    assert "token" not in token  # kubeadm generates it; nothing secret in the rendered file
    assert token["ttl"] == "7m"


def test_init_failure_is_reported_without_the_token():
    tasks = {t["name"]: t for t in _task_files()["roles/kubeadm_init/tasks/main.yml"]}
    init = next(t for t in tasks.values() if "kubeadm init" in " ".join(t.get("ansible.builtin.command", {}).get("argv", [])))
    assert init["no_log"] is True and init["failed_when"] is False
    report = next(t for t in tasks.values() if "ansible.builtin.fail" in t)
    assert "kubeadm_init_result.rc" in report["when"]
    assert "kubestrap_kubeadm_error" in report["vars"]["kubeadm_init_failure"]  # filter_plugins/kubeadm_output.py


def test_init_failure_message_is_one_line_without_the_token(tmp_path):
    """The role's own report task, fed a failed init's result: what went wrong, no token, one line."""
    report = next(t for t in _task_files()["roles/kubeadm_init/tasks/main.yml"] if "ansible.builtin.fail" in t)
    token = "abcdef.0123456789abcdef"
    result = {"rc": 1, "changed": True, "stdout": f"kubeadm join 10.0.0.1:6443 --token {token} \\",
              "stderr": "error execution phase preflight: [preflight] Some fatal errors occurred:\n"
                        f"\t[ERROR Port-6443]: Port 6443 is in use ({token})\n"
                        "To see the stack trace of this error execute with --v=5 or higher\n"}
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False,
                                     "vars": {"kubeadm_init_result": result}, "tasks": [report]}]))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", str(play)],
                          capture_output=True, text=True, timeout=120, env=env)
    message = json.loads(re.search(r"fatal: \[localhost\]: FAILED! => (\{.*\})", done.stdout).group(1))["msg"]
    assert "[ERROR Port-6443]: Port 6443 is in use" in message and "kubeadm init failed (exit 1)" in message
    assert token not in message and "stack trace" not in message and "\n" not in message


def test_join_token_is_deleted_in_the_always_section_of_the_join():
    main = yaml.safe_load((ROLES / "kubeadm_join" / "tasks" / "main.yml").read_text())
    join = next(t for t in main if "block" in t)
    imported = [t.get("ansible.builtin.import_tasks") for t in join["always"]]
    assert "delete_token.yml" in imported
    delete, report = yaml.safe_load((ROLES / "kubeadm_join" / "tasks" / "delete_token.yml").read_text())
    assert report["ansible.builtin.fail"]["msg"] == "{{ __kubeadm_join_token_left }}" and report["run_once"] is True
    assert delete["run_once"] is True and delete["delegate_to"] == "{{ kubeadm_join_control_plane }}"


# --- against the real control plane, with real kubeadm ---------------------------------------------------


class TokenCluster:
    """The real control plane and what `kubeadm init` left on it: its output (`init`) and its bootstrap token.

    `kubeadm init` cannot run here in full (it starts a kubelet and static pods and advertises a non-loopback
    address it would then connect to), so its two parts that matter are run with real kubeadm and the role's
    rendered configuration: `kubeadm init --dry-run` prints what init prints, join command and generated token
    included; `kubeadm token create --config` with that token in the InitConfiguration's bootstrapTokens creates
    it as init's bootstrap-token phase does (the rendered ttl and description)."""

    def __init__(self, plane, base: Path) -> None:
        self.plane = plane
        self.kubeadm_bin = str(plane.kubernetes / "kubeadm")
        self.env = {**os.environ, "PATH": f"{plane.kubernetes}{os.pathsep}{os.environ['PATH']}",
                    "KUBECONFIG": str(plane.kubeconfig), "HOME": plane.home,
                    "KUBEADM_INIT_DRYRUN_DIR": str(base / "init-dry-run")}  # fmt: skip
        config = render_init_config(base / "render")
        self.init = self.kubeadm("init", "--dry-run", "--config", str(config), "--skip-phases", "preflight")
        assert self.init.returncode == 0, self.init.stderr[-3000:]
        token = re.search(r"--token (\S+)", self.init.stdout).group(1)
        docs = list(yaml.safe_load_all(config.read_text()))
        next(d for d in docs if d["kind"] == "InitConfiguration")["bootstrapTokens"][0]["token"] = token
        with_token = base / "init-config-with-token.yaml"
        with_token.write_text(yaml.safe_dump_all(docs))
        created = self.kubeadm("token", "create", "--config", str(with_token))
        assert created.returncode == 0 and created.stdout.strip() == token, created.stdout + created.stderr

    def kubeadm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.kubeadm_bin, *args], capture_output=True, text=True, env=self.env, timeout=120)


def render_init_config(dest: Path) -> Path:
    """The kubeadm configuration kubeadm_init renders, for the first control plane of the homelab inventory."""
    render_configs(dest)
    return dest / "k8s-cp-kubeadm-config.yaml"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("tokens")
    with started(base / "plane") as plane:
        yield TokenCluster(plane, base)


def _tokens(cluster) -> list[str]:
    listed = cluster.kubeadm("token", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    return TOKEN.findall(listed.stdout)


def _play(cluster, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"k8s-cp": {}, "k8s-worker1": {}}, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "kubeadm_join_control_plane": "k8s-cp", "kubeadm_join_token_ttl": "15m"}}}))
    args = [a for k, v in extra.items() for a in ("-e", f"{k}={v}")]
    done = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inventory),
         str(ROOT / "tests" / "playbooks" / "token_cleanup.yml"), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env={**cluster.env, "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    assert not TOKEN.search(done.stdout + done.stderr), "a token was printed"
    return done


def test_init_token_is_deleted_right_after_init(cluster, tmp_path):
    assert cluster.init.returncode == 0
    printed = re.search(r"--token (\S+)", cluster.init.stdout).group(1)
    assert _tokens(cluster) == [printed], "kubeadm init's token is not in the cluster (test premise)"
    stdout = tmp_path / "init.out"
    stdout.write_text(cluster.init.stdout)
    done = _play(cluster, tmp_path, init_stdout_file=str(stdout))
    assert done.returncode == 0, done.stdout[-3000:]
    assert _tokens(cluster) == []


def test_join_token_is_deleted_when_the_join_fails(cluster, tmp_path):
    before = _tokens(cluster)
    done = _play(cluster, tmp_path, mint_join_token="true")
    assert re.search(r"TASK \[Mint a short-lived join token\][ *]*\nchanged: \[k8s-cp\]", done.stdout), done.stdout[-3000:]
    assert done.returncode != 0 and "join failed (test)" in done.stdout, done.stdout[-3000:]
    # changed: kubeadm token delete found the token the mint task created (a missing one is "not found", ok)
    deleted = re.search(r"TASK \[kubeadm_join : Delete this run's join token.*\nchanged: \[k8s-worker1 -> k8s-cp", done.stdout)
    assert deleted, done.stdout[-3000:]
    assert _tokens(cluster) == before


def test_a_token_that_cannot_be_deleted_is_reported_by_its_id_with_what_to_do(tmp_path):
    """The REAL kubeadm's `token delete` against an API server that does not answer (a closed port), tried
    kubeadm_join_cleanup_retries times: the run fails naming the token's ID, kubeadm's last line, that the token
    expires by itself and the command to delete it by hand; the token itself is printed nowhere (the deletion's own
    output stays hidden)."""
    kubeconfig = tmp_path / "admin.conf"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "x"}}]}))  # fmt: skip
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"k8s-cp": {}, "k8s-worker1": {}}, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "kubeadm_join_control_plane": "k8s-cp", "kubeadm_join_token_ttl": "15m"}}}))  # fmt: skip
    kubernetes = upstream_dir("kubernetes")
    env = {**os.environ, "PATH": f"{kubernetes}{os.pathsep}{os.environ['PATH']}", "KUBECONFIG": str(kubeconfig),
           "HOME": str(tmp_path), "ANSIBLE_NOCOLOR": "1"}  # fmt: skip
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), "-e", "kubeadm_join_cleanup_retries=1",
                           "-e", "kubeadm_join_cleanup_delay=0", str(ROOT / "tests/playbooks/token_delete_unanswered.yml")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    said = " ".join(re.search(r"fatal: \[k8s-worker1.*?\n(.*?)\n\n", done.stdout, re.S).group(1).split())
    assert "the join token abcdef could not be deleted on k8s-cp (tried again 1 time(s); kubeadm token delete: " in said, said
    assert "127.0.0.1:1" in said and "connection refused" in said, said  # kubeadm's own last line
    assert "It expires by itself within 15m; to delete it now, run `kubeadm token delete abcdef` on k8s-cp" in said
    assert "0123456789abcdef" not in out


def test_the_control_plane_token_is_reported_as_the_workers_is():
    """tasks/control_plane_cleanup.yml reports a control-plane token it could not delete with the same message (the
    role's __kubeadm_join_token_left), its ID and its lifetime; its deletion keeps its output hidden."""
    tasks = yaml.safe_load((ROLES / "kubeadm_join" / "tasks" / "control_plane_cleanup.yml").read_text())
    delete = next(t for t in tasks if t["name"] == "Delete the control-plane joins' token on the first control-plane node")
    report = tasks[tasks.index(delete) + 1]
    assert delete["no_log"] is True and delete["failed_when"] is False
    assert delete["retries"] == "{{ kubeadm_join_cleanup_retries }}"
    assert report["ansible.builtin.fail"]["msg"] == "{{ __kubeadm_join_token_left }}"
    assert report["vars"] == {"_id": "{{ __kubeadm_join_cp_token_id }}", "_result": "{{ kubeadm_join_cp_token_deleted }}",
                              "_ttl": "{{ kubeadm_join_control_plane_token_ttl }}"}  # fmt: skip
    assert "kubeadm_join_cp_token_deleted.rc" in report["when"]
