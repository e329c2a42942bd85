"""The lab's local apt repository (tests/fixtures/node_apt_repo.py): its index is what apt reads."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tests.fixtures import node_apt_repo
from tests.fixtures.artifact_mirror import KEYRING, MirrorError


def _deb(tmp: Path, name: str) -> Path:
    tree = tmp / name
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n"
    )
    out = tmp / f"{name}_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(out)], check=True, capture_output=True)
    return out


def test_index_names_every_package_with_its_file_size_and_sha256(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    debs = [_deb(tmp_path, "alpha"), _deb(tmp_path, "beta")]
    for deb in debs:
        deb.rename(repo / deb.name)
    node_apt_repo.write_index(repo)
    stanzas = (repo / "Packages").read_text().split("\n\n")
    assert [s.splitlines()[0] for s in stanzas] == ["Package: alpha", "Package: beta"]
    data = (repo / "alpha_1.0-1_all.deb").read_bytes()
    assert f"Filename: ./alpha_1.0-1_all.deb\nSize: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}" in stanzas[0]
    packages = (repo / "Packages").read_bytes()
    assert f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages" in (repo / "Release").read_text()


def test_vm_sources_get_debians_keyring_and_nothing_else_is_accepted():
    vm = (
        "deb http://deb.debian.org/debian bookworm main\n# comment\n"
        "deb [arch=amd64] http://x/debian-security bookworm-security main contrib\n"
    )
    assert node_apt_repo.signed_sources(vm) == (
        f"deb [signed-by={KEYRING}] http://deb.debian.org/debian bookworm main\n"
        f"deb [signed-by={KEYRING}] http://x/debian-security bookworm-security main contrib\n"
    )
    with pytest.raises(MirrorError, match="no one-line `deb` source"):
        node_apt_repo.signed_sources("Types: deb\nURIs: http://x\n")


def test_the_repository_holds_what_node_prep_installs():
    packages = node_apt_repo.node_prep_packages()
    assert {"conntrack", "socat", "systemd-timesyncd", "open-iscsi"} <= set(packages)


def test_the_repository_is_served_by_a_thread_that_ends_with_its_block(tmp_path):
    """No process of its own: a killed e2e run leaves no server behind (it ends with the test process)."""
    import threading
    import urllib.error
    import urllib.request

    (tmp_path / "Release").write_text("Origin: test\n")
    before = {t.name for t in threading.enumerate()}
    with node_apt_repo.served(tmp_path) as port:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/Release", timeout=5) as answer:
            assert answer.read() == b"Origin: test\n"
        assert "node-apt-repo" in {t.name for t in threading.enumerate()} - before
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/Release", timeout=5)
    assert "node-apt-repo" not in {t.name for t in threading.enumerate()}
