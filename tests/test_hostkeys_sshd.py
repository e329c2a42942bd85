"""SSH host keys against a real sshd: the one real-connection proof of tests/test_hostkeys.py's stand-ins.

A private /usr/sbin/sshd (openssh-server, installed by `scripts/setup --dev`) runs as root on 127.0.0.1 and a
free port, with its own configuration, host key and authorized client key in a temporary directory. The
inventory's control-plane node is that sshd (`ansible_host: 127.0.0.1`, `ansible_port`, `ansible_user: root`,
the client key), with host key checking on as on a real LAN; its worker uses the local connection and does
nothing. `up` goes through the real CLI (inventory validation, host-key pre-check, lock, journal, runner) with
its phases replaced by one playbook (tests/localrun.py), whose one task, run over SSH, writes the sshd session's
$SSH_CONNECTION to a marker file. A stand-in for ssh on PATH logs the arguments Ansible gives ssh and then runs
the real one.

Shown: the first contact records the sshd's real key and prints its fingerprint, and the task then runs over
SSH with checking on; the same key again is accepted and nothing is recorded; a different key (a man in the
middle) is refused before any task runs, and plain ansible-playbook meets ssh's own refusal of it; strict mode
refuses an unknown key, and so does Ansible on its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import localrun
import pytest
from helpers import ANSIBLE_PLAYBOOK, ROOT

from kubestrap import hostkeys

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without its privilege separation directory
NODE = "ssh-cp"
CLUSTER = "sshkeys"
START_SECONDS = 15

LOGGING_SSH = f"""#!{sys.executable}
# stands in for ssh: appends its arguments to $SSH_ARGS_LOG (one JSON list a line), then runs the real ssh
import json, os, sys
with open(os.environ["SSH_ARGS_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
os.execv("/usr/bin/ssh", ["ssh", *sys.argv[1:]])
"""


def _keygen(path: Path) -> Path:
    """A fresh ed25519 key pair at *path*; returns the public key's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path.with_name(path.name + ".pub")


def _fingerprint(pub: Path) -> str:
    return subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Sshd:
    """One sshd on 127.0.0.1:port; start() it with a host key, stop() it (with its open sessions)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.client_key = root / "client" / "id_ed25519"
        _keygen(self.client_key)
        self.authorized = root / "authorized_keys"
        self.authorized.write_text(Path(f"{self.client_key}.pub").read_text())
        self.log = root / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.host_pub: Path | None = None

    def start(self, host_key: Path) -> None:
        config = self.root / "sshd_config"
        config.write_text(f"""ListenAddress 127.0.0.1:{self.port}
HostKey {host_key}
AuthorizedKeysFile {self.authorized}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# the key files are in a temporary directory below the world-writable /tmp
StrictModes no
PidFile {self.root / "sshd.pid"}
""")
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        self.host_pub = host_key.with_name(host_key.name + ".pub")
        deadline = time.monotonic() + START_SECONDS
        while True:  # until it greets a client with its banner
            assert self.proc.poll() is None, f"sshd exited ({self.proc.returncode}): {self.log.read_text()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-2.0-"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"sshd did not answer in {START_SECONDS}s: {self.log.read_text()}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        # its per-connection processes would outlive the listener: they go first, and the listener reaps them
        for pid in _children(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _children(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    assert SSHD.is_file(), f"{SSHD} is missing: install openssh-server (scripts/setup --dev does)"
    assert os.geteuid() == 0, "these tests start sshd and log in as root, as CI does"
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    server.start(_host_key(server, "genuine"))
    yield server
    server.stop()


def _host_key(sshd: Sshd, name: str) -> Path:
    key = sshd.root / "keys" / name
    if not key.exists():
        _keygen(key)
    return key


# --- the world of one test: inventory, playbook, environment ------------------------------------------
def _inventory(tmp_path: Path, sshd: Sshd) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(f"""all:
  children:
    k8s_cluster:
      children:
        k8s_control_plane:
          hosts:
            {NODE}:
              ansible_host: 127.0.0.1
              ansible_port: {sshd.port}
              ansible_user: root
              ansible_ssh_private_key_file: {sshd.client_key}
              ansible_python_interpreter: {sys.executable}
              node_ip: 10.77.6.10
        k8s_workers:
          hosts:
            local-w:
              ansible_connection: local
              ansible_python_interpreter: {sys.executable}
              node_ip: 10.77.6.11
""")
    (inv / "group_vars" / "k8s_cluster.yml").write_text(
        f"cluster_name: {CLUSTER}\ncluster_node_network: 10.77.6.0/24\nmetallb_address_pool: 10.77.6.200-10.77.6.210\n")
    return inv


def _book(tmp_path: Path) -> Path:
    marker = tmp_path / "marker"
    return localrun.playbook(tmp_path, "touch", f"""
        - name: Write the SSH session this task runs in
          ansible.builtin.shell: printf '%s\\n' "$SSH_CONNECTION" > {shlex.quote(str(marker))}
          changed_when: true
        """, hosts="k8s_control_plane")


def _control_dir(tmp_path: Path) -> Path:
    """Where Ansible's SSH keeps its ControlPersist sockets: a short path of its own under /tmp (a unix
    socket path is limited to 107 bytes, and pytest-xdist's tmp paths are long)."""
    directory = Path("/tmp") / f"ks-cp-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:10]}"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def _env(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "ssh").write_text(LOGGING_SSH)
    (bindir / "ssh").chmod(0o755)
    # ANSIBLE_REMOTE_TEMP: the node is this machine; its module files stay in tmp_path, not in /root
    return localrun.environment(tmp_path, PATH=f"{bindir}{os.pathsep}/usr/bin:/bin",
                                SSH_ARGS_LOG=str(tmp_path / "ssh-args.jsonl"),
                                ANSIBLE_SSH_CONTROL_PATH_DIR=str(_control_dir(tmp_path)),
                                ANSIBLE_REMOTE_TEMP=str(tmp_path / "remote-tmp"))


def _up(tmp_path: Path, book: Path, inv: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return localrun.run(tmp_path, book, "up", "-i", str(inv), "--json", *extra, env=_env(tmp_path), timeout=120)


def _known_hosts(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / CLUSTER / "ssh" / "known_hosts"


def _ssh_calls(tmp_path: Path, port: int) -> list[list[str]]:
    """The argument lists of the ssh commands that connected to *port*."""
    log = tmp_path / "ssh-args.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [c for c in calls if f"Port={port}" in c]


def _close_connections(tmp_path: Path) -> None:
    """End the connections Ansible keeps open (ControlPersist): the next ssh connects afresh."""
    for sock in [*tmp_path.rglob("*"), *_control_dir(tmp_path).iterdir()]:
        if sock.is_socket():
            subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "unused"], capture_output=True,
                           check=False, timeout=10)


def _effective(args: list[str]) -> dict[str, str]:
    """What ssh makes of these arguments (`ssh -G`): option -> value, lowercase names."""
    host = args.index("127.0.0.1")
    shown = subprocess.run(["/usr/bin/ssh", "-G", *args[: host + 1]], capture_output=True, text=True, check=True)
    return dict(line.split(" ", 1) for line in shown.stdout.splitlines() if " " in line)


# --- the tests --------------------------------------------------------------------------------------------
def test_a_real_sshd_key_is_recorded_checked_by_ansible_and_a_changed_one_refused(
        sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    genuine = _host_key(sshd, "genuine")
    if sshd.host_pub != genuine.with_name("genuine.pub"):  # an earlier test left another key on
        sshd.stop()
        sshd.start(genuine)
    inv, book, marker = _inventory(tmp_path, sshd), _book(tmp_path), tmp_path / "marker"
    own = _known_hosts(tmp_path)
    name = f"[127.0.0.1]:{sshd.port}"

    # a. first contact: the sshd's key is recorded and shown, then the task runs over SSH with checking on
    first = _up(tmp_path, book, inv)
    assert first.returncode == 0, first.stderr[-4000:]
    shown = next(line for line in first.stderr.splitlines() if line.startswith("first contact with"))
    assert shown.startswith(f"first contact with {NODE} ({name}): trusting its SSH host key "
                            f"ED25519 {_fingerprint(genuine.with_name('genuine.pub'))}; recorded in "), shown
    assert stat.S_IMODE(own.stat().st_mode) == 0o600
    kind, data = genuine.with_name("genuine.pub").read_text().split()[:2]
    found = subprocess.run(["ssh-keygen", "-F", name, "-f", str(own)], capture_output=True, text=True, check=False)
    assert found.returncode == 0 and f"{name} {kind} {data}" in found.stdout, own.read_text()
    summary = json.loads(first.stdout)
    assert summary["result"] == "ok"
    assert summary["hosts"][NODE]["ok"] == 1 and summary["hosts"][NODE]["changed"] == 1, summary["hosts"]
    # the task ran in a session of this sshd: its client port, then the sshd's address and port
    assert marker.read_text().split()[2:] == ["127.0.0.1", str(sshd.port)]
    calls = _ssh_calls(tmp_path, sshd.port)
    assert calls, "Ansible never ran ssh against the sshd"
    user_file = tmp_path / ".ssh" / "known_hosts"  # HOME is tmp_path
    for args in calls:
        assert f'UserKnownHostsFile="{own}" "{user_file}"' in args, args
        assert not any(a.lower().replace(" ", "").startswith("stricthostkeychecking=") for a in args), args
        effective = _effective(args)  # ssh's own view, its configuration files included
        assert effective["stricthostkeychecking"] in ("true", "ask"), effective  # both refuse a changed key
        assert effective["userknownhostsfile"].split() == [str(own), str(user_file)], effective
    recorded = json.loads(next((tmp_path / "runs" / "latest").glob("phases/*/artifacts/*/command")).read_text())
    assert recorded["env"]["ANSIBLE_HOST_KEY_CHECKING"] == "True"

    # b. the same key again: accepted, nothing recorded, the task runs again
    text = own.read_text()
    marker.unlink()
    second = _up(tmp_path, book, inv)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "first contact" not in second.stderr and own.read_text() == text
    assert marker.read_text().split()[2:] == ["127.0.0.1", str(sshd.port)]

    # c. the sshd now answers with another key (a man in the middle): refused before any task runs
    _close_connections(tmp_path)
    intruder = _host_key(sshd, "intruder")
    sshd.stop()
    sshd.start(intruder)
    marker.unlink()
    journals, ssh_before = sorted((tmp_path / "runs").glob("*-up")), len(_ssh_calls(tmp_path, sshd.port))
    refused = _up(tmp_path, book, inv)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith(f"the SSH host key of {NODE} ({name}) differs from the one recorded in "), lines[0]
    shown_own = "secrets/sshkeys/ssh/known_hosts"  # as the user reads it, from the current directory
    assert (tmp_path / shown_own) == own
    assert f" recorded in {shown_own}; " in lines[0], lines[0]
    advice = f"ssh-keygen -R '{name}' -f {shown_own}"
    assert f"`{advice}`" in lines[0], lines[0]
    assert not marker.exists() and own.read_text() == text
    assert sorted((tmp_path / "runs").glob("*-up")) == journals  # no run started
    assert len(_ssh_calls(tmp_path, sshd.port)) == ssh_before  # Ansible's ssh never ran

    # d. the same situation reached by Ansible itself (no pre-check): ssh refuses the changed key
    monkeypatch.setenv("KUBESTRAP_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("HOME", str(tmp_path))
    direct = _ansible_playbook(tmp_path, book, inv)
    assert direct.returncode != 0, direct.stdout
    assert "Host key verification failed" in direct.stdout, direct.stdout[-4000:]
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in direct.stdout, direct.stdout[-4000:]
    assert not marker.exists()
    assert own.read_text() == text  # ssh did not record the intruder's key either

    # the advice works: the command the message gives removes the old key (a reinstalled machine)
    subprocess.run(shlex.split(advice), cwd=tmp_path, capture_output=True, check=True)
    assert subprocess.run(["ssh-keygen", "-F", name, "-f", str(own)], capture_output=True, check=False).returncode == 1


def _ansible_playbook(tmp_path: Path, book: Path, inv: Path) -> subprocess.CompletedProcess[str]:
    """Plain ansible-playbook, with ansible.cfg and the environment bootstrap.py gives ansible-runner."""
    env = {**_env(tmp_path), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path / "facts"), **hostkeys.ansible_env(inv)}
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inv), str(book)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_strict_mode_refuses_the_first_contact_with_a_real_sshd(sshd: Sshd, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    inv, book = _inventory(tmp_path, sshd), _book(tmp_path)
    proc = _up(tmp_path, book, inv, "--no-new-host-keys")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"the SSH host key of {NODE} ([127.0.0.1]:{sshd.port}) is not known and new keys are "
                               "not accepted (--no-new-host-keys): run `bootstrap.py check -i "), lines[0]
    assert f"ssh-keyscan -t rsa,ecdsa,ed25519 -p {sshd.port} 127.0.0.1 >> " in lines[0]
    assert not _known_hosts(tmp_path).exists() and not (tmp_path / "marker").exists()
    assert not (tmp_path / "runs").exists() and not _ssh_calls(tmp_path, sshd.port)

    # Ansible on its own does not trust an unknown key either (checking on is not accept-new): a host the
    # pre-check could not record is refused, not trusted behind the user's back
    monkeypatch.setenv("KUBESTRAP_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("HOME", str(tmp_path))
    direct = _ansible_playbook(tmp_path, book, inv)
    assert direct.returncode != 0 and "Host key verification failed" in direct.stdout, direct.stdout[-4000:]
    assert _ssh_calls(tmp_path, sshd.port)  # it did try
    assert not (tmp_path / "marker").exists()
    assert not _known_hosts(tmp_path).exists() and not (tmp_path / ".ssh" / "known_hosts").exists()
