"""SSH host keys of a cluster's hosts: checked on every connection, recorded on first contact.

Each cluster keeps the keys kubestrap recorded in `<secrets dir>/<cluster>/ssh/known_hosts` (0600);
keys the user already trusts in `~/.ssh/known_hosts` count as known too. Before a command touches
hosts, every host it will reach over SSH is asked for its key with `ssh-keyscan` (read-only):

- a key that differs from a known one is refused (nothing is touched);
- an unknown key is recorded and its fingerprint printed (trust on first use), unless the command
  may not accept new keys (strict mode, or a command that works on an existing cluster).

Hosts whose inventory sets `ansible_host_key_checking: false` (the VM lab, whose VMs get new keys on
every boot) and hosts not reached over SSH (`ansible_connection: local`) are left out.
"""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubestrap import inventory as inv_mod
from kubestrap import known_hosts, paths

STRICT_ENV = "KUBESTRAP_NO_NEW_HOST_KEYS"
SCAN_SECONDS = 5
# The key types asked for, explicitly (whatever this ssh-keyscan's default is): the ones sshd offers by default
SCAN_TYPES = "rsa,ecdsa,ed25519"
_SSH_CONNECTIONS = {None, "ssh", "smart", "ansible.builtin.ssh"}
_CHECKING_VARS = ("ansible_host_key_checking", "ansible_ssh_host_key_checking")
_HEADER = ("# SSH host keys of the hosts of cluster {cluster}, recorded by kubestrap on first contact.\n"
           "# Remove a host's old key with: ssh-keygen -R HOST -f {path}\n")

Key = known_hosts.Key  # (type, base64)


class HostKeyError(Exception):
    """A key was refused; the message has one line per host saying why and what to do."""


@dataclass(frozen=True)
class Target:
    host: str  # inventory name
    address: str
    port: int

    @property
    def known_name(self) -> str:
        """The host as ssh writes it in known_hosts."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


@dataclass
class Verdict:
    target: Target
    status: str  # known / new / changed / silent (did not answer ssh-keyscan)
    scanned: list[Key] = field(default_factory=list)
    conflict_file: Path | None = None


# --- where keys are kept ----------------------------------------------------------------------
def cluster_file(inv: inv_mod.Inventory) -> Path:
    """The cluster's own known_hosts, in its secrets dir (wherever the inventory puts it). In a
    subfolder, and never one line long (it starts with a comment), so the redactor does not take it
    for a secret value."""
    cluster = str(inv.value("cluster_name", "cluster"))
    return paths.effective_secrets_dir(cluster, inv.value("kubestrap_secrets_dir")) / "ssh" / "known_hosts"


def user_file() -> Path:
    return Path.home() / ".ssh" / "known_hosts"


def strict_from_env(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(STRICT_ENV, "").strip().lower() not in ("", "0", "false", "no")


# --- which hosts are checked --------------------------------------------------------------------
def _host_var(inv: inv_mod.Inventory, host: str, names: Iterable[str]) -> Any:
    """A variable as this host sees it: its own value, else one of its groups' (inventory file or
    group_vars), `all` ranking lowest."""
    for name in names:
        value, source = inv_mod.host_value(inv, host, name)
        if source is not None:
            return value
    found: Any = None
    groups = inv.hosts[host].groups
    for layer in sorted(inv.layers, key=lambda la: la.target != "all"):
        if layer.scope in ("inventory-file", "group_vars") and (layer.target in groups or layer.target == "all"):
            for name in names:
                if name in layer.values:
                    found = layer.values[name]
    return found


def _false(value: Any) -> bool:
    return value is False or str(value).strip().lower() in ("false", "no", "0", "off")


def _ssh_turns_checking_off(inv: inv_mod.Inventory, host: str) -> bool:
    """The host's own ssh options say StrictHostKeyChecking=no: ssh would not check it anyway (lab
    inventories written before ansible_host_key_checking was set there)."""
    for names in (("ansible_ssh_common_args",), ("ansible_ssh_extra_args",)):
        words = str(_host_var(inv, host, names) or "").replace("=", " ").lower().split()
        for i, word in enumerate(words[:-1]):
            if word.endswith("stricthostkeychecking") and words[i + 1] in ("no", "off"):
                return True
    return False


def targets(inv: inv_mod.Inventory, hosts: Iterable[str]) -> list[Target]:
    """The hosts among *hosts* reached over SSH with host key checking on."""
    found = []
    for host in hosts:
        if host not in inv.hosts:
            continue  # the controller (localhost)
        if _host_var(inv, host, ("ansible_connection",)) not in _SSH_CONNECTIONS:
            continue
        checking = _host_var(inv, host, _CHECKING_VARS)
        if checking is not None and _false(checking):
            continue
        if _ssh_turns_checking_off(inv, host):
            continue
        address = str(_host_var(inv, host, ("ansible_host", "ansible_ssh_host")) or host)
        port = _host_var(inv, host, ("ansible_port", "ansible_ssh_port")) or 22
        found.append(Target(host, address, int(port)))
    return found


# --- asking and comparing -----------------------------------------------------------------------
def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise HostKeyError(f"{name} is not installed on this machine; it is needed to check the hosts' SSH keys "
                           "(Debian/Ubuntu: apt-get install openssh-client)")
    return path


def scan(found: list[Target], types: Mapping[Target, str] | None = None) -> dict[Target, list[Key]]:
    """Ask every target for its host keys at once (ssh-keyscan, read-only), for the key types *types* gives it
    (SCAN_TYPES otherwise). Each key type costs a connection with a full key exchange (about 60 ms of this
    machine's CPU with OpenSSH's default post-quantum exchange), so the hosts that share a port and types go to a
    few ssh-keyscan processes that each ask their hosts in parallel: one per CPU, not one per host."""
    keyscan = _tool("ssh-keyscan")
    groups: dict[tuple[int, str], list[str]] = {}
    for target in found:
        addresses = groups.setdefault((target.port, (types or {}).get(target, SCAN_TYPES)), [])
        if target.address not in addresses:
            addresses.append(target.address)
    workers = max(1, os.cpu_count() or 1)
    procs = [subprocess.Popen([keyscan, "-T", str(SCAN_SECONDS), "-t", kinds, "-p", str(port), "--", *chunk],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for (port, kinds), addresses in groups.items()
             for chunk in (addresses[i::workers] for i in range(min(workers, len(addresses))))]  # fmt: skip
    # ssh-keyscan waits SCAN_SECONDS at most for each step of a host; a host list takes no longer than one host
    lines: list[str] = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=SCAN_SECONDS * 3)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lines += out.splitlines()
    answers: dict[str, list[str]] = {}  # the name ssh-keyscan printed (the known_hosts one), lowered -> lines
    for line in lines:
        if line.strip() and not line.startswith("#"):
            answers.setdefault(line.split()[0].lower(), []).append(line)
    return {t: _parse("\n".join(answers.get(t.known_name.lower(), []))) for t in found}


# ssh-keyscan's name of each key type, in the order ssh prefers them when it knows keys of several for a host
_SCAN_TYPE_OF = {"ssh-ed25519": "ed25519", "ecdsa-sha2-nistp256": "ecdsa", "ecdsa-sha2-nistp384": "ecdsa",
                 "ecdsa-sha2-nistp521": "ecdsa", "ssh-rsa": "rsa"}  # fmt: skip
_PREFERRED = ("ed25519", "ecdsa", "rsa")


def scan_types(known: Mapping[Path, list[Key]]) -> str:
    """What to ask a host for: every type on first contact (all are recorded); for a host with recorded keys,
    the recorded type ssh will use (it prefers the types it knows, ed25519 first). A changed key of that type is
    caught here, before any host is touched; ssh itself checks the key it is offered on every connection."""
    recorded = {_SCAN_TYPE_OF.get(kind) for keys in known.values() for kind, _ in keys}
    return next((kind for kind in _PREFERRED if kind in recorded), SCAN_TYPES)


def _parse(text: str) -> list[Key]:
    """(type, key) of each known_hosts-style line; comments and marker lines (@revoked, ...) skipped."""
    keys = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith(("#", "@")) and (fields[1], fields[2]) not in keys:
            keys.append((fields[1], fields[2]))
    return keys


def known_keys(target: Target, files: Mapping[Path, str]) -> dict[Path, list[Key]]:
    """Keys recorded for *target* in each known_hosts file (path -> its text; hashed names are found too)."""
    result: dict[Path, list[Key]] = {}
    for path, text in files.items():
        keys = known_hosts.keys_for(target.known_name, text)
        if keys:
            result[path] = keys
    return result


def judge(target: Target, scanned: list[Key], known: dict[Path, list[Key]]) -> Verdict:
    if not scanned:
        return Verdict(target, "known" if known else "silent")
    if not known:
        return Verdict(target, "new", scanned)
    # as ssh decides: a key type recorded for the host (in any file) whose recorded keys do not include
    # the one offered is a changed key; so is a host none of whose offered keys is recorded
    recorded = {key for keys in known.values() for key in keys}
    for kind, data in scanned:
        holders = [path for path, keys in known.items() if any(k[0] == kind for k in keys)]
        if holders and (kind, data) not in recorded:
            return Verdict(target, "changed", scanned, holders[0])
    if not set(scanned) & recorded:
        return Verdict(target, "changed", scanned, next(iter(known)))
    return Verdict(target, "known", scanned)


def fingerprints(keys: list[Key]) -> str:
    """'ED25519 SHA256:..., RSA SHA256:...' as ssh shows them."""
    return ", ".join(known_hosts.fingerprint(key) for key in keys) or "(no fingerprint)"


def record(path: Path, cluster: str, verdicts: list[Verdict]) -> None:
    """Append the keys of new hosts to the cluster's file (0700 folder, 0600 file)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fresh = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            if fresh:
                out.write(_HEADER.format(cluster=cluster, path=paths.display(path)))
            for verdict in verdicts:
                for kind, data in verdict.scanned:
                    out.write(f"{verdict.target.known_name} {kind} {data}\n")
        os.chmod(path, 0o600)
    except OSError as exc:
        raise HostKeyError(f"cannot record SSH host keys in {paths.display(path)} ({exc.strerror or exc}); nothing "
                           "was touched. Make it writable, or move the secrets with KUBESTRAP_SECRETS_DIR (or "
                           "kubestrap_secrets_dir in the inventory)") from None


# --- the step a command runs before touching hosts ------------------------------------------------
def first_contact(inv: inv_mod.Inventory, hosts: Iterable[str], accept_new: str | None, check_command: str) -> list[str]:
    """Check the keys of the SSH hosts among *hosts*; record unknown ones when *accept_new* is None,
    else refuse them with *accept_new* as the reason. Returns the lines to show; raises HostKeyError
    (changed keys, refused new ones) before any host is touched."""
    found = targets(inv, hosts)
    if not found:
        return []
    cluster = str(inv.value("cluster_name", "cluster"))
    own = cluster_file(inv)
    files = {path: known_hosts.read(path) for path in (own, user_file())}  # each file read once, not per host
    known = {t: known_keys(t, files) for t in found}
    verdicts = [judge(t, keys, known[t]) for t, keys in scan(found, {t: scan_types(known[t]) for t in found}).items()]
    problems = [_changed(v, check_command) for v in verdicts if v.status == "changed"]
    new = [v for v in verdicts if v.status == "new"]
    if accept_new is not None:
        problems += [_unknown(v, own, accept_new, check_command) for v in new]
    if problems:
        raise HostKeyError("\n".join(problems))
    lines = [f"{v.target.host} ({v.target.known_name}) did not answer ssh-keyscan; its SSH host key is not "
             "known, so the connection will be refused until it is recorded" for v in verdicts if v.status == "silent"]
    if new:
        record(own, cluster, new)
        lines += [f"first contact with {v.target.host} ({v.target.known_name}): trusting its SSH host key "
                  f"{fingerprints(v.scanned)}; recorded in {paths.display(own)}" for v in new]
    return lines


def _changed(verdict: Verdict, check_command: str) -> str:
    where = paths.display(verdict.conflict_file) if verdict.conflict_file else "known_hosts"
    return (f"the SSH host key of {verdict.target.host} ({verdict.target.known_name}) differs from the one recorded in "
            f"{where}; nothing was touched. Someone may be intercepting the connection; if the machine was "
            f"reinstalled, remove the old key with `ssh-keygen -R {shlex.quote(verdict.target.known_name)} -f "
            f"{shlex.quote(where)}` and run `{check_command}` to record the new one")


def _unknown(verdict: Verdict, own: Path, reason: str, check_command: str) -> str:
    t = verdict.target
    return (f"the SSH host key of {t.host} ({t.known_name}) is not known and {reason}: run `{check_command}` first "
            f"to see its fingerprint and record it (or, after checking the fingerprint, add it yourself: "
            f"`ssh-keyscan -t {SCAN_TYPES} -p {t.port} {shlex.quote(t.address)} >> {shlex.quote(paths.display(own))}`)")


# --- what Ansible is told ---------------------------------------------------------------------------
def _configured_ssh_args() -> str:
    parser = configparser.RawConfigParser()
    parser.read(paths.ANSIBLE_CFG)
    return parser.get("ssh_connection", "ssh_args", fallback="")


def ansible_env(inventory: Path) -> dict[str, str]:
    """Environment for ansible-runner: host keys checked, against the cluster's known_hosts and the
    user's own (hosts whose inventory turns checking off, the lab's, are not checked)."""
    env = {"ANSIBLE_HOST_KEY_CHECKING": "True"}  # ansible-runner turns it off unless told
    try:
        inv = inv_mod.load(inventory)
    except inv_mod.InventoryError:
        return env
    if targets(inv, inv.hosts):
        files = " ".join(f'"{p.resolve()}"' for p in (cluster_file(inv), user_file()))
        env["ANSIBLE_SSH_ARGS"] = f"{_configured_ssh_args()} -o {shlex.quote(f'UserKnownHostsFile={files}')}".strip()
    return env
