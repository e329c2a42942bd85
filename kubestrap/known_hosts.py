"""Reading OpenSSH known_hosts files in-process: which keys a file records for a host, and key fingerprints.

`ssh-keygen -F NAME -f FILE` answers the first question, but one process per host and file made the host-key
step cost about 25 ms per host before every command (two files, 32 hosts: 1.6 s). The rules followed are
sshd(8)'s "SSH_KNOWN_HOSTS FILE FORMAT", as ssh and `ssh-keygen -F` apply them:

- a line is `[marker] hostnames keytype base64-key [comment]`; blank lines and `#` comments are skipped, and
  so are marked lines (`@cert-authority`, `@revoked`): they do not record a host's own key;
- hostnames is a comma-separated list of patterns (`*` and `?` wildcards, `!` negates; a name given as
  `[host]:port` is matched as that text), compared without regard to case; a negated match rules the line
  out whatever else matches;
- or a hashed name, `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.

tests/test_known_hosts.py checks these answers against the real `ssh-keygen -F` on the same files.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from fnmatch import fnmatchcase
from pathlib import Path

Key = tuple[str, str]  # (type, base64)

_HASH_MAGIC = "|1|"
# The names `ssh-keygen -l` shows for the key types, after the fingerprint
_TYPE_NAMES = {
    "ssh-rsa": "RSA", "ssh-dss": "DSA", "ssh-ed25519": "ED25519", "ecdsa-sha2-nistp256": "ECDSA",
    "ecdsa-sha2-nistp384": "ECDSA", "ecdsa-sha2-nistp521": "ECDSA", "sk-ssh-ed25519@openssh.com": "ED25519-SK",
    "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA-SK",
}  # fmt: skip


def _pattern(pattern: str) -> str:
    """An OpenSSH pattern as an fnmatch one: only `*` and `?` are special, so `[` stands for itself."""
    return pattern.replace("[", "[[]")


def _hashed_match(entry: str, name: str) -> bool:
    parts = entry[len(_HASH_MAGIC):].split("|")
    if len(parts) != 2:
        return False
    try:
        salt, digest = base64.b64decode(parts[0], validate=True), base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)


def names_match(hostnames: str, name: str) -> bool:
    """Whether a known_hosts line's hostnames field covers *name* (as ssh writes it: `host` or `[host]:port`)."""
    if hostnames.startswith(_HASH_MAGIC):
        return _hashed_match(hostnames, name)
    lowered, found = name.lower(), False
    for pattern in hostnames.split(","):
        negated = pattern.startswith("!")
        if fnmatchcase(lowered, _pattern(pattern[1:] if negated else pattern).lower()):
            if negated:
                return False
            found = True
    return found


def keys_for(name: str, text: str) -> list[Key]:
    """The (type, key) pairs *text* (a known_hosts file) records for *name*, each once, in file order."""
    keys: list[Key] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith(("#", "@")):
            continue
        if names_match(fields[0], name) and (fields[1], fields[2]) not in keys:
            keys.append((fields[1], fields[2]))
    return keys


def read(path: Path) -> str:
    """A known_hosts file's text ('' when it is missing or unreadable, as ssh treats it)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def fingerprint(key: Key) -> str:
    """`ED25519 SHA256:...`, as `ssh-keygen -l` names and prints it."""
    kind, data = key
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return f"{kind} (not a valid key)"
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"{_TYPE_NAMES.get(kind, kind.upper())} SHA256:{digest}"
