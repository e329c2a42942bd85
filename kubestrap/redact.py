"""Remove secrets from anything written to the run journal or shown to a person.

Two nets: patterns for secret shapes (join tokens, private keys, kubeconfig credentials, bcrypt
hashes, certificate keys) and the literal values of every generated secret of the cluster.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MASK = "<redacted>"

_PATTERNS = [
    # kubeadm bootstrap token: [a-z0-9]{6}.[a-z0-9]{16}
    re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b"),
    # PEM private keys of any kind
    re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.S),
    # kubeconfig credentials and bearer tokens
    re.compile(r"(?<=client-key-data: )[A-Za-z0-9+/=]+"),
    re.compile(r"(?<=client-certificate-data: )[A-Za-z0-9+/=]+"),
    re.compile(r"(?i)(?<=bearer )[A-Za-z0-9._~+/=-]{16,}"),
    # kubeadm certificate key (upload-certs), in flags and config files
    re.compile(r"(?<=--certificate-key[ =])[0-9a-f]{64}"),
    re.compile(r"(?<=certificateKey: )[\"']?[0-9a-f]{64}"),
    # encryption-at-rest keys (EncryptionConfiguration `secret:`, base64 of 16, 24 or 32 bytes)
    re.compile(r"(?<=secret: )[\"']?[A-Za-z0-9+/]{22,}={0,2}"),
    # bcrypt hashes (Argo CD admin password)
    re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}"),
]
_MIN_LITERAL = 8
_MAX_SECRET_FILE = 4096


def _listing(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """(relative name, mtime, size) of every file under *directory*; empty when it does not exist."""
    entries: list[tuple[str, int, int]] = []
    pending = [directory]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                    elif entry.is_file():
                        info = entry.stat()
                        entries.append((str(Path(entry.path).relative_to(directory)), info.st_mtime_ns, info.st_size))
        except OSError:
            continue
    return tuple(sorted(entries))


class Redactor:
    def __init__(self, literals: Iterable[str] = (), directory: Path | None = None) -> None:
        self._given = {s for s in literals if len(s) >= _MIN_LITERAL}
        self.literals = sorted(self._given, key=len, reverse=True)
        self.directory = directory
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self.refresh()

    @classmethod
    def for_secrets_dir(cls, directory: Path) -> Redactor:
        """Every small file under *directory* is a secret value (generated passwords, tokens), also
        the files Ansible writes there during the run: `refresh` learns them."""
        return cls(directory=directory)

    def refresh(self) -> bool:
        """Re-read the secrets directory when its listing or a file in it changed (a stat per entry:
        cheap enough for every event). Returns True when the literals were re-read."""
        if self.directory is None:
            return False
        seen = _listing(self.directory)
        if seen == self._seen:
            return False
        self._seen = seen
        found = set(self._given)
        for name, _, size in seen:
            path = self.directory / name
            if size <= _MAX_SECRET_FILE:
                try:
                    text = path.read_text(encoding="utf-8", errors="ignore").strip()
                except OSError:
                    continue
                if len(text) >= _MIN_LITERAL and "\n" not in text:
                    found.add(text)
        self.literals = sorted(found, key=len, reverse=True)
        return True

    def text(self, value: str) -> str:
        for literal in self.literals:
            value = value.replace(literal, MASK)
        for pattern in _PATTERNS:
            value = pattern.sub(MASK, value)
        return value

    def obj(self, value: Any) -> Any:
        """Redact strings anywhere inside a JSON-like structure."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.obj(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.obj(v) for v in value]
        return value

    def sweep(self, directory: Path) -> int:
        """Redact every text file under *directory* in place; return how many were changed."""
        changed = 0
        for path in directory.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            try:
                original = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            cleaned = self.text(original)
            if cleaned != original:
                path.write_text(cleaned, encoding="utf-8")
                changed += 1
        return changed
