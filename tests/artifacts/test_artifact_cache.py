"""kubestrap.artifacts: URL building, verified downloads, the cache, bundles, and the CLI."""

from __future__ import annotations

import argparse
import hashlib
import tarfile
from pathlib import Path

import pytest
import yaml

from kubestrap import artifacts, artifacts_cli

PAYLOAD = b"#!/bin/sh\necho pretend binary\n" * 1000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
TARBALL = b"\x1f\x8b pretend tarball " * 5000
TARBALL_SHA = hashlib.sha256(TARBALL).hexdigest()

KUBEADM_PATH = "dl.k8s.io/release/v1.36.4/bin/linux/amd64/kubeadm"
RUNC_PATH = "github.com/opencontainers/runc/releases/download/v1.4.3/runc.amd64"


def make_versions(base_url: str = "", kubeadm_sha: str = PAYLOAD_SHA, runc_sha: str = TARBALL_SHA):
    data = {
        "kubestrap_artifacts_base_url": base_url,
        "kubestrap_architectures": ["amd64"],
        "kubestrap_artifacts": {
            "kubeadm": {
                "version": "1.36.4",
                "url": "https://dl.k8s.io/release/v{version}/bin/linux/{arch}/kubeadm",
                "sha256": {"amd64": kubeadm_sha},
            },
            "runc": {
                "version": "1.4.3",
                "url": "https://github.com/opencontainers/runc/releases/download/v{version}/runc.{arch}",
                "sha256": {"amd64": runc_sha},
            },
        },
    }
    return artifacts.parse_versions(data, Path("versions.yml"))


def files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*")) if directory.exists() else []


# --- URL building ---------------------------------------------------------------------------


def test_upstream_url_fills_version_and_arch():
    kubeadm = make_versions().artifacts["kubeadm"]
    assert kubeadm.url("amd64") == "https://dl.k8s.io/release/v1.36.4/bin/linux/amd64/kubeadm"
    assert kubeadm.url("arm64").endswith("/bin/linux/arm64/kubeadm")
    assert kubeadm.filename("amd64") == "kubeadm"


def test_mirror_url_drops_the_scheme_and_keeps_host_and_path():
    kubeadm = make_versions().artifacts["kubeadm"]
    expected = f"https://mirror.lan/files/{KUBEADM_PATH}"
    assert kubeadm.url("amd64", "https://mirror.lan/files") == expected
    assert kubeadm.url("amd64", "https://mirror.lan/files/") == expected
    assert artifacts.mirror_url("http://a/b", "") == "http://a/b"
    assert artifacts.mirror_url("https://x.y/z?q=1", "file:///srv/m") == "file:///srv/m/x.y/z?q=1"


def test_cache_path_layout(tmp_path: Path):
    runc = make_versions().artifacts["runc"]
    assert runc.cache_path(tmp_path, "amd64") == tmp_path / "runc" / "1.4.3" / "amd64" / "runc.amd64"
    assert runc.mirror_path("amd64") == RUNC_PATH


def test_the_real_versions_file_parses_with_a_checksum_for_every_architecture():
    versions = artifacts.load_versions()
    assert {"kubeadm", "kubelet", "kubectl", "containerd", "runc", "cni_plugins", "crictl"} <= set(versions.artifacts)
    for artifact in versions.artifacts.values():
        for arch in versions.architectures:
            assert len(artifact.checksum(arch)) == 64


def test_missing_checksum_for_an_architecture_says_what_to_add():
    kubeadm = make_versions().artifacts["kubeadm"]
    with pytest.raises(artifacts.ArtifactError, match=r"kubestrap_artifacts\.kubeadm\.sha256.*'arm64'"):
        kubeadm.checksum("arm64")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"version": "1", "url": "https://x/{version}"}, "lacks sha256"),
        ({"version": "1", "url": "https://x/{version}", "sha256": {"amd64": "abc"}}, "not a sha256"),
        ("just a string", "must be a mapping"),
    ],
)
def test_bad_entries_are_refused_with_the_key(entry, message):
    with pytest.raises(artifacts.ArtifactError, match=message):
        artifacts.parse_versions({"kubestrap_artifacts": {"thing": entry}}, Path("v.yml"))


# --- fetching --------------------------------------------------------------------------------


def test_fetch_downloads_verifies_and_then_skips(http_server, tmp_path: Path):
    http_server.put(KUBEADM_PATH, PAYLOAD)
    versions = make_versions(http_server.url)
    cache = tmp_path / "cache"
    first = artifacts.fetch(versions.artifacts["kubeadm"], "amd64", cache, versions.base_url)
    assert first.downloaded
    assert first.path == cache / "kubeadm" / "1.36.4" / "amd64" / "kubeadm"
    assert first.path.read_bytes() == PAYLOAD
    assert http_server.requests == [f"/{KUBEADM_PATH}"]

    # The mirror disappears: a verified file is used as it is, without any request.
    (http_server.root / KUBEADM_PATH).unlink()
    again = artifacts.fetch(versions.artifacts["kubeadm"], "amd64", cache, versions.base_url)
    assert not again.downloaded
    assert http_server.requests == [f"/{KUBEADM_PATH}"]


def test_a_damaged_cached_file_is_downloaded_again(http_server, tmp_path: Path):
    http_server.put(KUBEADM_PATH, PAYLOAD)
    versions = make_versions(http_server.url)
    cache = tmp_path / "cache"
    path = versions.artifacts["kubeadm"].cache_path(cache, "amd64")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated")
    result = artifacts.fetch(versions.artifacts["kubeadm"], "amd64", cache, versions.base_url)
    assert result.downloaded
    assert path.read_bytes() == PAYLOAD


def test_checksum_mismatch_keeps_nothing_and_names_file_and_hashes(http_server, tmp_path: Path):
    tampered = PAYLOAD + b"evil"
    http_server.put(KUBEADM_PATH, tampered)
    versions = make_versions(http_server.url)
    cache = tmp_path / "cache"
    with pytest.raises(artifacts.ChecksumMismatch) as failure:
        artifacts.fetch(versions.artifacts["kubeadm"], "amd64", cache, versions.base_url)
    message = str(failure.value)
    assert "kubeadm" in message
    assert f"{http_server.url}/{KUBEADM_PATH}" in message
    assert PAYLOAD_SHA in message
    assert hashlib.sha256(tampered).hexdigest() in message
    # no file, no temporary file, not even the directories created for it
    assert files_under(cache) == []


def test_checksum_mismatch_does_not_touch_a_previous_good_version(http_server, tmp_path: Path):
    http_server.put(RUNC_PATH, TARBALL)
    cache = tmp_path / "cache"
    good = make_versions(http_server.url)
    artifacts.fetch(good.artifacts["runc"], "amd64", cache, good.base_url)
    before = files_under(cache)
    http_server.put(KUBEADM_PATH, b"not the pinned file")
    with pytest.raises(artifacts.ChecksumMismatch):
        artifacts.fetch_all(good, cache_dir=cache)
    assert files_under(cache) == before


def test_http_error_names_artifact_url_and_the_mirror_setting(http_server, tmp_path: Path):
    versions = make_versions(http_server.url)
    with pytest.raises(artifacts.ArtifactError) as failure:
        artifacts.fetch(versions.artifacts["kubeadm"], "amd64", tmp_path / "c", versions.base_url)
    message = str(failure.value)
    assert "kubeadm 1.36.4 (amd64)" in message
    assert "HTTP 404" in message
    assert "kubestrap_artifacts_base_url" in message
    assert files_under(tmp_path / "c") == []


def test_fetch_all_uses_the_base_url_of_the_versions_unless_overridden(http_server, tmp_path: Path):
    http_server.put(KUBEADM_PATH, PAYLOAD)
    http_server.put(RUNC_PATH, TARBALL)
    versions = make_versions("http://127.0.0.1:9/unused")
    results = artifacts.fetch_all(versions, cache_dir=tmp_path / "c", base_url=http_server.url)
    assert [(r.artifact.name, r.downloaded) for r in results] == [("kubeadm", True), ("runc", True)]
    again = artifacts.fetch_all(versions, cache_dir=tmp_path / "c", base_url=http_server.url)
    assert [r.downloaded for r in again] == [False, False]


# --- bundles ---------------------------------------------------------------------------------


def test_bundle_is_in_mirror_layout_and_serves_as_a_base_url(http_server, tmp_path: Path):
    http_server.put(KUBEADM_PATH, PAYLOAD)
    http_server.put(RUNC_PATH, TARBALL)
    versions = make_versions(http_server.url)
    cache = tmp_path / "cache"
    artifacts.fetch_all(versions, cache_dir=cache)
    out = tmp_path / "out" / "bundle.tar.gz"
    members = artifacts.bundle(out, versions, cache)
    assert sorted(members) == sorted([KUBEADM_PATH, RUNC_PATH])
    with tarfile.open(out) as tar:
        files = {m.name: m for m in tar.getmembers() if m.isfile()}
        assert set(files) == {KUBEADM_PATH, RUNC_PATH}
        assert all(m.uid == 0 and m.mtime == 0 for m in files.values())
        assert tar.extractfile(KUBEADM_PATH).read() == PAYLOAD
        # unpack it as a new web root: a fresh cache fills from it through base_url
        site = http_server.root / "airgap"
        tar.extractall(site, filter="data")
    fresh = tmp_path / "fresh"
    results = artifacts.fetch_all(versions, cache_dir=fresh, base_url=f"{http_server.url}/airgap")
    assert all(r.downloaded for r in results)
    assert (fresh / "runc" / "1.4.3" / "amd64" / "runc.amd64").read_bytes() == TARBALL


def test_bundle_refuses_an_incomplete_cache(tmp_path: Path):
    with pytest.raises(artifacts.ArtifactError, match=r"kubeadm 1\.36\.4 \(amd64\).*artifacts fetch"):
        artifacts.bundle(tmp_path / "b.tar.gz", make_versions(), tmp_path / "empty")
    assert not (tmp_path / "b.tar.gz").exists()


def test_bundle_refuses_a_tampered_cache(http_server, tmp_path: Path):
    http_server.put(KUBEADM_PATH, PAYLOAD)
    http_server.put(RUNC_PATH, TARBALL)
    versions = make_versions(http_server.url)
    cache = tmp_path / "cache"
    results = artifacts.fetch_all(versions, cache_dir=cache)
    results[0].path.write_bytes(b"changed after the download")
    with pytest.raises(artifacts.ChecksumMismatch, match="kubeadm"):
        artifacts.bundle(tmp_path / "b.tar.gz", versions, cache)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(("b.tar", ".b.tar"))] == []


# --- CLI -------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kubestrap")
    parser.add_argument("-i", "--inventory", default=None)
    artifacts_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.fixture
def fake_versions(monkeypatch, tmp_path: Path):
    path = tmp_path / "versions.yml"

    def write(base_url: str, kubeadm_sha: str = PAYLOAD_SHA) -> Path:
        versions = make_versions(base_url, kubeadm_sha)
        data = {
            "kubestrap_artifacts_base_url": base_url,
            "kubestrap_architectures": ["amd64"],
            "kubestrap_artifacts": {
                name: {"version": a.version, "url": a.url_pattern, "sha256": dict(a.sha256)}
                for name, a in versions.artifacts.items()
            },
        }
        path.write_text(yaml.safe_dump(data))
        monkeypatch.setattr(artifacts, "VERSIONS_FILE", path)
        return path

    return write


def test_cli_fetch_then_bundle(http_server, fake_versions, tmp_path: Path, capsys):
    http_server.put(KUBEADM_PATH, PAYLOAD)
    http_server.put(RUNC_PATH, TARBALL)
    fake_versions("http://127.0.0.1:9/not-used")
    cache = tmp_path / "cli-cache"
    args = parse(["artifacts", "--cache-dir", str(cache), "fetch", "--base-url", http_server.url])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "2 artifacts verified" in out and "2 downloaded" in out

    args = parse(["artifacts", "--cache-dir", str(cache), "fetch", "--arch", "amd64", "--base-url", "x:"])
    assert args.func(args) == 0  # everything cached: the bogus mirror is never asked
    assert "0 downloaded" in capsys.readouterr().out

    target = tmp_path / "airgap.tar.gz"
    args = parse(["artifacts", "--cache-dir", str(cache), "bundle", str(target)])
    assert args.func(args) == 0
    assert "kubestrap_artifacts_base_url" in capsys.readouterr().out
    with tarfile.open(target) as tar:
        assert KUBEADM_PATH in tar.getnames()


def test_cli_fetch_reports_a_mismatch_on_one_line_and_fails(http_server, fake_versions, tmp_path, capsys):
    http_server.put(KUBEADM_PATH, b"bad")
    http_server.put(RUNC_PATH, TARBALL)
    fake_versions(http_server.url)
    cache = tmp_path / "cli-cache"
    args = parse(["artifacts", "--cache-dir", str(cache), "fetch"])
    assert args.func(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: checksum mismatch for kubeadm")
    assert "\n" not in err
    assert PAYLOAD_SHA in err and hashlib.sha256(b"bad").hexdigest() in err
    assert files_under(cache) == []


def test_cli_uses_the_env_cache_dir(http_server, fake_versions, tmp_path: Path, monkeypatch):
    http_server.put(KUBEADM_PATH, PAYLOAD)
    fake_versions(http_server.url)
    monkeypatch.setenv("KUBESTRAP_ARTIFACTS_DIR", str(tmp_path / "env-cache"))
    args = parse(["artifacts", "fetch", "--only", "kubeadm"])
    assert args.func(args) == 0
    assert (tmp_path / "env-cache" / "kubeadm" / "1.36.4" / "amd64" / "kubeadm").is_file()


def test_cli_inventory_base_url_override(http_server, fake_versions, tmp_path: Path):
    http_server.put(KUBEADM_PATH, PAYLOAD)
    fake_versions("http://127.0.0.1:9/unreachable")
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(
        "all:\n  children:\n    k8s_cluster:\n      children:\n"
        "        k8s_control_plane:\n          hosts:\n"
        "            cp: {ansible_host: 10.0.0.1, node_ip: 10.0.0.1}\n"
    )
    (inv / "group_vars" / "k8s_cluster.yml").write_text(f"kubestrap_artifacts_base_url: {http_server.url}\n")
    cache = str(tmp_path / "c")
    args = parse(["-i", str(inv), "artifacts", "--cache-dir", cache, "fetch", "--only", "kubeadm"])
    assert args.func(args) == 0
    assert http_server.requests == [f"/{KUBEADM_PATH}"]
