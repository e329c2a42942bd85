"""The image recipe: every input that shapes the base image, and its hash (the cache key)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kubestrap.lab import guest

RECIPE_VERSION = 1
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "KUBESTRAP_LAB_MIRROR"
SECURITY_MIRROR_ENV = "KUBESTRAP_LAB_SECURITY_MIRROR"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


@dataclass(frozen=True)
class Recipe:
    suite: str = "bookworm"
    mirror: str = DEFAULT_MIRROR
    security_mirror: str = ""
    # What a fresh Debian 12 host has before kubestrap touches it (the official cloud images ship all of
    # these; ca-certificates and python3-apt too, and configuring them under TCG took ~7 min per VM).
    # Everything else a node needs (conntrack, socat, ebtables, ethtool, iptables, ipset, ...) is
    # installed by node_prep, for real, from the Debian mirror.
    include: tuple[str, ...] = (
        "systemd",
        "systemd-sysv",
        "openssh-server",
        "python3",
        "python3-apt",
        "ca-certificates",
        "iproute2",
        "sudo",
        "dbus",
    )
    chroot_packages: tuple[str, ...] = ("linux-image-cloud-amd64", "initramfs-tools")
    size_gib: int = 8
    guest_files: tuple[tuple[str, str, int], ...] = field(default=guest.FILES)
    version: int = RECIPE_VERSION

    def digest(self) -> str:
        """Stable hash of every input; a change to any of them means a new image."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


_DEB_LINE = re.compile(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)")


def _sources_text() -> list[str]:
    texts: list[str] = []
    for p in APT_SOURCES:
        files = sorted(p.glob("*.list")) + sorted(p.glob("*.sources")) if p.is_dir() else [p]
        for f in files:
            try:
                texts.append(f.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
    return texts


def mirrors_from_sources(texts: list[str], suite: str) -> tuple[str | None, str | None]:
    """(main mirror, security mirror) configured for ``suite`` in apt sources (one-line or deb822)."""
    main: str | None = None
    security: str | None = None
    for text in texts:
        pairs: list[tuple[str, str]] = []
        for line in text.splitlines():
            m = _DEB_LINE.match(line)
            if m:
                pairs.append((m.group(1), m.group(2)))
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split():
                for uri in fields.get("uris", "").split():
                    for s in fields.get("suites", "").split():
                        pairs.append((uri, s))
        for uri, s in pairs:
            if s == suite and main is None:
                main = uri.rstrip("/")
            elif s == f"{suite}-security" and security is None:
                security = uri.rstrip("/")
    return main, security


def default_recipe() -> Recipe:
    """The recipe for this machine: the host's Debian mirror unless the env vars override it."""
    main, security = mirrors_from_sources(_sources_text(), "bookworm")
    mirror = os.environ.get(MIRROR_ENV) or main or DEFAULT_MIRROR
    sec = os.environ.get(SECURITY_MIRROR_ENV) or security or ""
    return Recipe(mirror=mirror.rstrip("/"), security_mirror=sec.rstrip("/"))
