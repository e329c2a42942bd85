"""kubestrap.known_hosts reads known_hosts files in-process; every answer here is compared with the real
`ssh-keygen -F` (which keys a file records for a name) and `ssh-keygen -l` (fingerprints) on the same files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubestrap import known_hosts


def _pub(tmp_path: Path, name: str, kind: str = "ed25519") -> tuple[str, str]:
    path = tmp_path / "keys" / name
    path.parent.mkdir(exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name, "-f", str(path)], check=True)
    kind_name, data = path.with_suffix(".pub").read_text().split()[:2]
    return kind_name, data


def _ssh_keygen_finds(name: str, path: Path) -> list[tuple[str, str]]:
    done = subprocess.run(["ssh-keygen", "-F", name, "-f", str(path)], capture_output=True, text=True, check=False)
    keys: list[tuple[str, str]] = []
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith(("#", "@")) and (fields[1], fields[2]) not in keys:
            keys.append((fields[1], fields[2]))
    return keys


@pytest.fixture
def keyfile(tmp_path: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """A known_hosts file with every kind of line ssh knows, and the keys in it by label."""
    keys = {label: _pub(tmp_path, label, kind) for label, kind in (
        ("plain", "ed25519"), ("port", "ed25519"), ("list", "ecdsa"), ("wild", "ed25519"), ("neg", "ed25519"),
        ("ca", "ed25519"), ("revoked", "ed25519"), ("hashed", "ed25519"), ("hashedport", "ed25519"),
        ("upper", "ed25519"), ("rsa", "rsa"), ("question", "ed25519"))}  # fmt: skip

    def line(names: str, label: str, marker: str = "") -> str:
        return f"{marker + ' ' if marker else ''}{names} {' '.join(keys[label])} comment {label}\n"

    hashed = tmp_path / "hashed"
    hashed.write_text(line("10.0.0.5", "hashed") + line("[10.0.0.6]:2222", "hashedport"))
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(hashed)], check=True, capture_output=True)
    path = tmp_path / "known_hosts"
    path.write_text(
        "# a comment line\n\n"
        + line("10.0.0.1", "plain")
        + line("[10.0.0.1]:2222", "port")
        + line("node-a,10.0.0.2,node-b.lan", "list")
        + line("*.lab.example", "wild")
        + line("*.corp.example,!bad.corp.example", "neg")
        + line("10.0.0.1", "ca", "@cert-authority")
        + line("10.0.0.1", "revoked", "@revoked")
        + "".join(ln for ln in hashed.read_text().splitlines(keepends=True) if not ln.startswith("#"))
        + line("Node-Upper", "upper")
        + line("10.0.0.1", "rsa")
        + line("w?.farm", "question")
        + "   \t\n"
        + "not-enough-fields\n"
    )
    return path, keys


NAMES = ["10.0.0.1", "[10.0.0.1]:2222", "[10.0.0.1]:22", "node-a", "10.0.0.2", "node-b.lan", "node-c",
         "x.lab.example", "lab.example", "ok.corp.example", "bad.corp.example", "10.0.0.5", "[10.0.0.6]:2222",
         "10.0.0.6", "node-upper", "NODE-UPPER", "w1.farm", "w10.farm", "[10.0.0.1]", "10.0.0.10"]


@pytest.mark.parametrize("name", NAMES)
def test_the_keys_found_for_a_name_are_the_ones_ssh_keygen_finds(keyfile, name: str):
    path, _ = keyfile
    assert known_hosts.keys_for(name, path.read_text()) == _ssh_keygen_finds(name, path)


def test_the_file_covers_what_it_should(keyfile):
    """The comparison above is not vacuous: names that match, do not match, hashed, negated, marked."""
    path, keys = keyfile
    text = path.read_text()
    assert known_hosts.keys_for("10.0.0.1", text) == [keys["plain"], keys["rsa"]]  # not the @cert-authority, @revoked
    assert known_hosts.keys_for("[10.0.0.1]:2222", text) == [keys["port"]]
    assert known_hosts.keys_for("node-b.lan", text) == [keys["list"]]
    assert known_hosts.keys_for("x.lab.example", text) == [keys["wild"]]
    assert known_hosts.keys_for("bad.corp.example", text) == []
    assert known_hosts.keys_for("10.0.0.5", text) == [keys["hashed"]]
    assert known_hosts.keys_for("[10.0.0.6]:2222", text) == [keys["hashedport"]]
    assert known_hosts.keys_for("NODE-upper", text) == [keys["upper"]]
    assert known_hosts.keys_for("w1.farm", text) == [keys["question"]]
    assert known_hosts.keys_for("w10.farm", text) == []


def test_a_missing_file_reads_as_empty(tmp_path: Path):
    assert known_hosts.read(tmp_path / "none") == ""


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_fingerprints_are_the_ones_ssh_keygen_shows(tmp_path: Path, kind: str):
    key = _pub(tmp_path, kind, kind)
    shown = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=f"{key[0]} {key[1]}\n", capture_output=True,
                           text=True, check=True).stdout.split()  # fmt: skip
    assert known_hosts.fingerprint(key) == f"{shown[-1].strip('()')} {shown[1]}"


def test_a_key_that_is_not_base64_is_named_not_fatal():
    assert known_hosts.fingerprint(("ssh-ed25519", "not base64!")) == "ssh-ed25519 (not a valid key)"
