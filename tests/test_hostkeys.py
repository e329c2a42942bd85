"""SSH host keys: recorded on first contact, a changed key refused before any host is touched, strict mode,
the lab left unchecked, and what Ansible is told. There is no sshd here: a stand-in for ssh-keyscan on PATH
prints real keys made with ssh-keygen; ssh-keygen -F/-l and `ssh -G` are the real programs."""

from __future__ import annotations

import configparser
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from kubestrap import hostkeys
from kubestrap import inventory as inv_mod

FAKE_KEYSCAN = """#!/bin/sh
# stands for ssh-keyscan: for each host asked about (after the options; `--` ends them), prints the public key
# files in $FAKE_KEYS/<address>/, only those of the types -t asks for (rsa, ecdsa, ed25519; all without -t);
# its command line goes to $FAKE_KEYSCAN_LOG
[ -n "$FAKE_KEYSCAN_LOG" ] && echo "$*" >> "$FAKE_KEYSCAN_LOG"
port=22
types=rsa,ecdsa,ed25519
while [ $# -gt 0 ]; do
  case "$1" in -p) port=$2; shift 2 ;; -T) shift 2 ;; -t) types=$2; shift 2 ;; --) shift; break ;; -*) shift ;; *) break ;; esac
done
for addr in "$@"; do
  echo "# $addr:$port SSH-2.0-OpenSSH_9.2p1" >&2
  [ -d "$FAKE_KEYS/$addr" ] || continue
  name=$addr; [ "$port" = 22 ] || name="[$addr]:$port"
  for f in "$FAKE_KEYS/$addr"/*.pub; do
    case "$(cut -d' ' -f1 "$f")" in ssh-rsa) t=rsa ;; ecdsa-*) t=ecdsa ;; ssh-ed25519) t=ed25519 ;; *) t=other ;; esac
    case ",$types," in *",$t,"*) awk -v n="$name" '{print n, $1, $2}' "$f" ;; esac
  done
done
"""

FAKE_SSH = """#!/bin/sh
# stands for ssh: writes its command line to $FAKE_SSH_LOG and fails like a closed port
printf '%s\\n' "$@" >> "$FAKE_SSH_LOG"
echo "ssh: connect to host 127.0.0.1 port 9: Connection refused" >&2
exit 255
"""


def _key(tmp_path: Path, name: str, kind: str = "ed25519") -> Path:
    path = tmp_path / "keys" / name
    path.parent.mkdir(exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name, "-f", str(path)], check=True)
    return path.with_suffix(".pub")


def _fingerprint(pub: Path) -> str:
    return subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ssh-keyscan first on PATH, HOME and the secrets dir in tmp_path."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("ssh-keyscan", FAKE_KEYSCAN), ("ssh", FAKE_SSH)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KUBESTRAP_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("FAKE_KEYS", str(tmp_path / "served"))
    monkeypatch.setenv("FAKE_SSH_LOG", str(tmp_path / "ssh.log"))
    monkeypatch.delenv(hostkeys.STRICT_ENV, raising=False)
    return tmp_path


def _serve(world: Path, address: str, *pubs: Path) -> None:
    folder = world / "served" / address
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.pub"):
        old.unlink()
    for pub in pubs:
        (folder / pub.name).write_text(pub.read_text())


def _inventory(path: Path, extra_cp: str = "", extra_group: str = "") -> Path:
    (path / "group_vars").mkdir(parents=True)
    (path / "hosts.yml").write_text(f"""all:
  children:
    k8s_cluster:
      children:
        k8s_control_plane:
          hosts:
            k8s-cp:
              ansible_host: 127.0.0.1
              ansible_port: 9
              node_ip: 192.168.1.10{extra_cp}
        k8s_workers:
{extra_group}          hosts:
            k8s-worker1:
              ansible_host: 127.0.0.2
              ansible_port: 9
              node_ip: 192.168.1.11
""")
    (path / "group_vars" / "k8s_cluster.yml").write_text(
        "cluster_name: keys\ncluster_node_network: 192.168.1.0/24\ncluster_api_endpoint: 192.168.1.10\n"
        "metallb_address_pool: 192.168.1.240-192.168.1.250\n")
    return path


def _scans(world: Path) -> set[tuple[str, str]]:
    """(options, address) of each host the ssh-keyscan calls logged asked, each call's log then cleared."""
    log = world / "keyscan.log"
    asked = set()
    for call in log.read_text().splitlines():
        options, addresses = call.split(" -- ")
        asked |= {(options, address) for address in addresses.split()}
    log.write_text("")
    return asked


def _contact(inv_dir: Path, accept_new: str | None = None) -> list[str]:
    inv = inv_mod.load(inv_dir)
    return hostkeys.first_contact(inv, inv.hosts, accept_new, "bootstrap.py check -i inv --hosts")


# --- which hosts are checked ----------------------------------------------------------------------
def test_local_and_lab_hosts_are_not_checked(tmp_path: Path):
    inv = inv_mod.load(_inventory(tmp_path / "a"))
    assert hostkeys.targets(inv, ["localhost", *inv.hosts]) == [
        hostkeys.Target("k8s-cp", "127.0.0.1", 9), hostkeys.Target("k8s-worker1", "127.0.0.2", 9)]
    host_off = inv_mod.load(_inventory(tmp_path / "b", extra_cp="\n              ansible_connection: local"))
    assert [t.host for t in hostkeys.targets(host_off, host_off.hosts)] == ["k8s-worker1"]
    off = "          vars:\n            ansible_host_key_checking: false\n"
    group_off = inv_mod.load(_inventory(tmp_path / "c", extra_group=off))
    assert [t.host for t in hostkeys.targets(group_off, group_off.hosts)] == ["k8s-cp"]
    # a lab inventory written before it set ansible_host_key_checking: its ssh options turn checking off
    old_lab = inv_mod.load(_inventory(tmp_path / "d", extra_cp="\n              ansible_ssh_common_args: "
                                      "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"))
    assert [t.host for t in hostkeys.targets(old_lab, old_lab.hosts)] == ["k8s-worker1"]
    assert hostkeys.Target("h", "10.0.0.1", 22).known_name == "10.0.0.1"
    assert hostkeys.Target("h", "10.0.0.1", 2222).known_name == "[10.0.0.1]:2222"


# --- first contact, known, changed, strict -----------------------------------------------------------
def test_first_contact_records_the_keys_and_prints_their_fingerprints(world: Path):
    cp, w1 = _key(world, "cp"), _key(world, "w1")
    _serve(world, "127.0.0.1", cp)
    _serve(world, "127.0.0.2", w1)
    inv_dir = _inventory(world / "inv")
    lines = _contact(inv_dir)
    own = world / "secrets" / "keys" / "ssh" / "known_hosts"
    assert len(lines) == 2
    assert lines[0].startswith("first contact with k8s-cp ([127.0.0.1]:9): trusting its SSH host key ")
    assert f"ED25519 {_fingerprint(cp)}" in lines[0] and f"ED25519 {_fingerprint(w1)}" in lines[1]
    assert str(own) in lines[0]
    assert stat.S_IMODE(own.stat().st_mode) == 0o600 and stat.S_IMODE(own.parent.stat().st_mode) == 0o700
    text = own.read_text()
    assert len(text.splitlines()) > 1  # never a one-line file: the redactor would take it for a secret
    # what was recorded is what ssh finds
    found = subprocess.run(["ssh-keygen", "-F", "[127.0.0.1]:9", "-f", str(own)], capture_output=True, text=True)
    assert found.returncode == 0 and cp.read_text().split()[1] in found.stdout
    # the second time nothing is new and nothing is written
    assert _contact(inv_dir) == []
    assert own.read_text() == text


def test_keyscan_asks_for_rsa_ecdsa_and_ed25519_explicitly_and_records_each(world: Path, monkeypatch):
    monkeypatch.setenv("FAKE_KEYSCAN_LOG", str(world / "keyscan.log"))
    keys = {kind: _key(world, f"cp-{kind}", kind) for kind in ("rsa", "ecdsa", "ed25519")}
    _serve(world, "127.0.0.1", *keys.values())
    _serve(world, "127.0.0.2", _key(world, "w1"))
    own = world / "secrets" / "keys" / "ssh" / "known_hosts"
    lines = _contact(_inventory(world / "inv"))
    assert len(lines) == 2
    # the hosts that share a port go to one ssh-keyscan per CPU at most (each asks its hosts in parallel)
    assert len((world / "keyscan.log").read_text().splitlines()) == min(2, os.cpu_count() or 1)
    assert _scans(world) == {("-T 5 -t rsa,ecdsa,ed25519 -p 9", "127.0.0.1"), ("-T 5 -t rsa,ecdsa,ed25519 -p 9", "127.0.0.2")}
    recorded = subprocess.run(["ssh-keygen", "-F", "[127.0.0.1]:9", "-f", str(own)], capture_output=True, text=True).stdout
    for kind, pub in keys.items():
        assert pub.read_text().split()[1] in recorded, kind
        assert _fingerprint(pub) in lines[0], kind


def test_hosts_on_different_ports_get_one_scan_per_port_and_each_its_own_keys(world: Path, monkeypatch):
    monkeypatch.setenv("FAKE_KEYSCAN_LOG", str(world / "keyscan.log"))
    cp, w1 = _key(world, "cp"), _key(world, "w1")
    _serve(world, "127.0.0.1", cp)
    _serve(world, "127.0.0.2", w1)
    inv_dir = _inventory(world / "inv")
    hosts = inv_dir / "hosts.yml"
    worker = "ansible_host: 127.0.0.2\n              ansible_port: "
    hosts.write_text(hosts.read_text().replace(f"{worker}9", f"{worker}22"))
    lines = _contact(inv_dir)
    assert _scans(world) == {("-T 5 -t rsa,ecdsa,ed25519 -p 22", "127.0.0.2"), ("-T 5 -t rsa,ecdsa,ed25519 -p 9", "127.0.0.1")}
    assert lines[0].startswith("first contact with k8s-cp ([127.0.0.1]:9)") and _fingerprint(cp) in lines[0]
    assert lines[1].startswith("first contact with k8s-worker1 (127.0.0.2)") and _fingerprint(w1) in lines[1]
    assert _fingerprint(w1) not in lines[0]
    own = world / "secrets" / "keys" / "ssh" / "known_hosts"
    for name, pub in (("[127.0.0.1]:9", cp), ("127.0.0.2", w1)):
        found = subprocess.run(["ssh-keygen", "-F", name, "-f", str(own)], capture_output=True, text=True).stdout
        assert pub.read_text().split()[1] in found
    assert _contact(inv_dir) == []  # known now, by the in-process reading of the file
    # a known host is asked only for the recorded type ssh uses: one key exchange, not three
    assert _scans(world) == {("-T 5 -t ed25519 -p 22", "127.0.0.2"), ("-T 5 -t ed25519 -p 9", "127.0.0.1")}


@pytest.mark.parametrize(("recorded", "asked"), [
    ({"ssh-rsa"}, "rsa"), ({"ssh-rsa", "ecdsa-sha2-nistp256"}, "ecdsa"), ({"ssh-ed25519", "ssh-rsa"}, "ed25519"),
    (set(), "rsa,ecdsa,ed25519"), ({"ssh-dss"}, "rsa,ecdsa,ed25519")])  # fmt: skip
def test_a_known_host_is_asked_for_the_type_ssh_prefers_among_the_recorded(recorded: set[str], asked: str):
    assert hostkeys.scan_types({Path("f"): [(kind, "AAAA") for kind in sorted(recorded)]}) == asked


def test_a_changed_key_is_refused_naming_host_file_and_how_to_remove_it(world: Path):
    _serve(world, "127.0.0.1", _key(world, "cp"))
    _serve(world, "127.0.0.2", _key(world, "w1"))
    inv_dir = _inventory(world / "inv")
    _contact(inv_dir)
    own = world / "secrets" / "keys" / "ssh" / "known_hosts"
    before = own.read_text()
    _serve(world, "127.0.0.2", _key(world, "intruder"))
    with pytest.raises(hostkeys.HostKeyError) as caught:
        _contact(inv_dir)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("the SSH host key of k8s-worker1 ([127.0.0.2]:9) differs from the one recorded in ")
    assert str(own) in message and f"`ssh-keygen -R '[127.0.0.2]:9' -f {own}`" in message
    assert "`bootstrap.py check -i inv --hosts`" in message
    assert own.read_text() == before  # nothing recorded


def test_keys_the_user_already_trusts_count_and_conflicts_with_them_are_refused(world: Path):
    cp, w1 = _key(world, "cp"), _key(world, "w1")
    _serve(world, "127.0.0.1", cp)
    _serve(world, "127.0.0.2", w1)
    user = world / "home" / ".ssh" / "known_hosts"
    user.parent.mkdir(parents=True)
    pairs = (("127.0.0.1", cp), ("127.0.0.2", w1))
    user.write_text("".join(f"[{a}]:9 {' '.join(k.read_text().split()[:2])}\n" for a, k in pairs))
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(user)], check=True, capture_output=True)  # hashed names too
    assert _contact(_inventory(world / "inv")) == []
    assert not (world / "secrets" / "keys" / "ssh" / "known_hosts").exists()
    _serve(world, "127.0.0.1", _key(world, "other"))
    with pytest.raises(hostkeys.HostKeyError, match=r"k8s-cp .* recorded in .*home/\.ssh/known_hosts"):
        _contact(world / "inv")


def test_strict_mode_refuses_unknown_keys_and_says_to_run_check_hosts(world: Path):
    _serve(world, "127.0.0.1", _key(world, "cp"))
    _serve(world, "127.0.0.2", _key(world, "w1"))
    with pytest.raises(hostkeys.HostKeyError) as caught:
        _contact(_inventory(world / "inv"), accept_new="new keys are not accepted (--no-new-host-keys)")
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert "k8s-cp ([127.0.0.1]:9) is not known and new keys are not accepted (--no-new-host-keys)" in lines[0]
    assert "run `bootstrap.py check -i inv --hosts` first" in lines[0]
    assert "ssh-keyscan -t rsa,ecdsa,ed25519 -p 9 127.0.0.1 >> " in lines[0]
    assert not (world / "secrets" / "keys").exists()
    assert hostkeys.strict_from_env({hostkeys.STRICT_ENV: "1"}) and not hostkeys.strict_from_env({})


def test_a_host_that_does_not_answer_is_named_and_nothing_recorded(world: Path):
    _serve(world, "127.0.0.1", _key(world, "cp"))
    lines = _contact(_inventory(world / "inv"))
    assert any(line.startswith("k8s-worker1 ([127.0.0.2]:9) did not answer ssh-keyscan") for line in lines)
    own = (world / "secrets" / "keys" / "ssh" / "known_hosts").read_text()
    assert "127.0.0.2" not in own and "127.0.0.1" in own


# --- what Ansible and ssh are told --------------------------------------------------------------------
def test_ansible_checks_host_keys_against_the_clusters_file_and_the_users(world: Path):
    inv_dir = _inventory(world / "my inv")  # a space in the path
    world_secrets = world / "secrets"
    env = hostkeys.ansible_env(inv_dir)
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    args = shlex.split(env["ANSIBLE_SSH_ARGS"])  # how Ansible splits ssh_args
    cfg = configparser.RawConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    assert " ".join(args).startswith(cfg.get("ssh_connection", "ssh_args"))  # ControlPersist & co. kept
    # the real ssh reads both files from the option
    shown = subprocess.run(["/usr/bin/ssh", "-G", *args, "-p", "9", "127.0.0.1"], capture_output=True, text=True,
                           check=True).stdout
    line = next(x for x in shown.splitlines() if x.startswith("userknownhostsfile "))
    assert str(world_secrets / "keys" / "ssh" / "known_hosts") in line
    assert str(world / "home" / ".ssh" / "known_hosts") in line


def test_an_inventory_without_checked_hosts_gets_no_known_hosts_option(tmp_path: Path):
    inv_dir = _inventory(tmp_path / "lab", extra_cp="\n              ansible_host_key_checking: false",
                         extra_group="          vars:\n            ansible_host_key_checking: false\n")
    assert hostkeys.ansible_env(inv_dir) == {"ANSIBLE_HOST_KEY_CHECKING": "True"}


def test_ansible_cfg_checks_host_keys_for_plain_ansible_playbook():
    cfg = configparser.RawConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    assert cfg.getboolean("defaults", "host_key_checking") is True


def test_the_lab_inventory_turns_checking_off_for_its_vms_only(tmp_path: Path):
    from kubestrap.lab import inventory as lab_inventory

    hv = lab_inventory.host_vars(40022, "10.77.0.10", tmp_path / "key")
    assert hv["ansible_host_key_checking"] is False


# --- through the command line ---------------------------------------------------------------------------
def _cli(world: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBESTRAP_RUNS_DIR": str(world / "runs")}
    env.pop("KUBESTRAP_INVENTORY", None)
    return subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), *argv], capture_output=True, text=True,
                          cwd=world, timeout=300, env=env)


def test_up_records_new_keys_before_touching_hosts_and_ansible_checks_them(world: Path):
    cp, w1 = _key(world, "cp"), _key(world, "w1")
    _serve(world, "127.0.0.1", cp)
    _serve(world, "127.0.0.2", w1)
    inv_dir = _inventory(world / "inv")
    proc = _cli(world, "up", "--phase", "preflight", "-i", str(inv_dir))
    assert proc.returncode == 1, proc.stderr  # the hosts are not there: unreachable
    lines = proc.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("first contact with k8s-cp"))
    assert _fingerprint(cp) in lines[first]
    assert first < next(i for i, line in enumerate(lines) if "phase 1/1" in line)
    own = world / "secrets" / "keys" / "ssh" / "known_hosts"
    assert "[127.0.0.2]:9" in own.read_text()
    # Ansible's ssh was told to check against the cluster's file (and the user's), never told not to check
    ssh_args = (world / "ssh.log").read_text()
    assert f'UserKnownHostsFile="{own}" "{world / "home" / ".ssh" / "known_hosts"}"' in ssh_args
    assert "StrictHostKeyChecking=no" not in ssh_args


def test_commands_refuse_a_changed_key_before_touching_any_host(world: Path):
    _serve(world, "127.0.0.1", _key(world, "cp"))
    _serve(world, "127.0.0.2", _key(world, "w1"))
    inv_dir = _inventory(world / "inv")
    _contact(inv_dir)
    _serve(world, "127.0.0.1", _key(world, "intruder"))
    for argv in (["status"], ["up"], ["check", "--hosts"], ["reset", "--yes"], ["add-node", "k8s-worker1"]):
        proc = _cli(world, *argv, "-i", "inv")
        assert proc.returncode == 2, (argv, proc.stderr)
        assert proc.stderr.strip().splitlines() == [next(x for x in proc.stderr.splitlines() if "k8s-cp" in x)], argv
        assert "differs from the one recorded in" in proc.stderr
        assert "`bootstrap.py check -i inv --hosts`" in proc.stderr
    assert not (world / "ssh.log").exists() and not (world / "runs").exists()  # nothing touched, no run started


def test_strict_mode_and_existing_cluster_commands_refuse_unknown_keys(world: Path):
    _serve(world, "127.0.0.1", _key(world, "cp"))
    _serve(world, "127.0.0.2", _key(world, "w1"))
    _inventory(world / "inv")
    for argv, env in ((["up", "--no-new-host-keys"], {}), (["up"], {hostkeys.STRICT_ENV: "1"}), (["status"], {}),
                      (["reset", "--yes"], {})):
        os.environ.update(env)
        try:
            proc = _cli(world, *argv, "-i", "inv")
        finally:
            for key in env:
                os.environ.pop(key)
        assert proc.returncode == 2, (argv, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == (1 if argv == ["status"] else 2), proc.stderr  # one line per host it would touch
        assert all("run `bootstrap.py check -i inv --hosts` first" in line for line in lines), proc.stderr
    assert not (world / "secrets" / "keys").exists() and not (world / "ssh.log").exists()


def test_the_keys_follow_a_secrets_dir_the_inventory_moved(world: Path):
    _serve(world, "127.0.0.1", _key(world, "cp"))
    _serve(world, "127.0.0.2", _key(world, "w1"))
    inv_dir = _inventory(world / "inv")
    with (inv_dir / "group_vars" / "k8s_cluster.yml").open("a") as out:
        out.write(f"kubestrap_secrets_dir: {world / 'elsewhere'}\n")
    lines = _contact(inv_dir)
    own = world / "elsewhere" / "ssh" / "known_hosts"
    assert own.is_file() and str(own) in lines[0]
    assert f'"{own}"' in hostkeys.ansible_env(inv_dir)["ANSIBLE_SSH_ARGS"]


def test_a_secrets_dir_that_cannot_be_written_is_one_line_naming_it(world: Path):
    _serve(world, "127.0.0.1", _key(world, "cp"))
    (world / "secrets").mkdir()
    (world / "secrets" / "keys").write_text("not a directory\n")
    with pytest.raises(hostkeys.HostKeyError) as caught:
        _contact(_inventory(world / "inv"))
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"cannot record SSH host keys in {world / 'secrets' / 'keys' / 'ssh' / 'known_hosts'}")
    assert "KUBESTRAP_SECRETS_DIR" in message
