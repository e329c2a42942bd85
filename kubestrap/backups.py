"""etcd backups on the controller: what `bootstrap.py restore` accepts, checked before any host is touched.

A backup is the archive `bootstrap.py backup` writes (roles/etcd_backup: a gzip tar holding etcd/snapshot.db,
encryption/config.yaml and pki/) or a plain etcd snapshot file (`etcdctl snapshot save`). Either way the snapshot
must be a bbolt database: its first page is a meta page whose magic number follows the 16-byte page header. The
node's `etcdutl snapshot status` judges it in full before anything is stopped (roles/etcd_restore).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from kubestrap import paths

SNAPSHOT_MEMBER = "etcd/snapshot.db"
BOLT_MAGIC = (0xED0CDAED).to_bytes(4, "little")
BOLT_MAGIC_OFFSET = 16  # after the page header: id (8 bytes), flags (2), count (2), overflow (4)


class BadSnapshot(Exception):
    """A file restore cannot use; the message names it and says what to do."""


def _is_bolt(head: bytes) -> bool:
    return head[BOLT_MAGIC_OFFSET:BOLT_MAGIC_OFFSET + len(BOLT_MAGIC)] == BOLT_MAGIC


def is_archive(path: Path) -> bool:
    """Whether *path* is named as a backup archive (the playbook decides by the same names)."""
    return path.name.endswith((".tar.gz", ".tgz"))


def check(path: Path) -> str:
    """'archive' or 'snapshot' for a usable *path*; BadSnapshot otherwise."""
    shown = paths.display(path)
    advice = "name an archive `bootstrap.py backup` wrote (etcd_backup_dir, default .secrets/<cluster>/backups/)"
    if not path.exists():
        raise BadSnapshot(f"snapshot {shown} does not exist: {advice}")
    if not path.is_file():
        raise BadSnapshot(f"snapshot {shown} is not a file: {advice}")
    try:
        if is_archive(path):
            try:
                with tarfile.open(path, "r:*") as archive:
                    member = archive.getmember(SNAPSHOT_MEMBER)
                    stream = archive.extractfile(member)
                    head = stream.read(64) if stream else b""
            except KeyError:
                raise BadSnapshot(f"{shown} holds no {SNAPSHOT_MEMBER}: it is not a kubestrap backup; {advice}") from None
            except (tarfile.TarError, EOFError, OSError) as exc:
                if isinstance(exc, PermissionError):
                    raise
                raise BadSnapshot(f"{shown} is not a readable backup archive ({exc}): {advice}") from None
            kind = "archive"
        else:
            with path.open("rb") as stream:
                head = stream.read(64)
            kind = "snapshot"
    except PermissionError:
        raise BadSnapshot(f"snapshot {shown} cannot be read (permission denied): run as its owner") from None
    if not _is_bolt(head):
        inner = f"{SNAPSHOT_MEMBER} in {shown}" if kind == "archive" else shown
        raise BadSnapshot(f"{inner} is not an etcd snapshot (no bbolt database): {advice}")
    return kind
