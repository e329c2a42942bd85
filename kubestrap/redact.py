"""Remove secrets from anything written to the run journal or shown to a person.

Two nets: patterns for secret shapes (join tokens, private keys, kubeconfig credentials, bcrypt
hashes, certificate keys) and the literal values of every generated secret of the cluster.
"""

from __future__ import annotations

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
    # bcrypt hashes (Argo CD admin password)
    re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}"),
]
_MIN_LITERAL = 8


class Redactor:
    def __init__(self, literals: Iterable[str] = ()) -> None:
        self.literals = sorted({s for s in literals if len(s) >= _MIN_LITERAL}, key=len, reverse=True)

    @classmethod
    def for_secrets_dir(cls, directory: Path) -> Redactor:
        """Every small file under *directory* is a secret value (generated passwords, tokens)."""
        literals: list[str] = []
        if directory.is_dir():
            for path in directory.rglob("*"):
                if path.is_file() and path.stat().st_size <= 4096:
                    text = path.read_text(encoding="utf-8", errors="ignore").strip()
                    if text and "\n" not in text:
                        literals.append(text)
        return cls(literals)

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
