"""The artifact map, the one definition of the layout `<name>/<version>/<arch>/<file>` (kubestrap/artifacts.py,
read by the roles through filter_plugins/artifact_map.py), and the one downloader (`fetch_file`, of `kubestrap
artifacts fetch` and of the artifacts role's action kubestrap_artifacts_fetch): the map gives the paths the roles
used before, the CLI and the role fill the same cache, and no role or playbook joins the layout again."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ARCH_MAP, ROLE_PATHS, ROOT

from kubestrap import artifacts

PINS = yaml.safe_load((ROOT / "group_vars" / "all" / "versions.yml").read_text())["kubestrap_artifacts"]
STAGING = "/var/cache/kubestrap/artifacts"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FILTER = _load("artifact_map_filter", ROOT / "filter_plugins" / "artifact_map.py")
ACTION = _load("kubestrap_artifacts_fetch", ROOT / "roles" / "artifacts" / "action_plugins" / "kubestrap_artifacts_fetch.py")


def _old_layout(name: str, arch: str) -> str:
    """The path the roles and the CLI wrote by hand before the map (the Jinja of roles/*/vars/main.yml)."""
    pin = PINS[name]
    url = pin["url"].replace("{version}", pin["version"]).replace("{arch}", arch)
    return f"{name}/{pin['version']}/{arch}/{re.sub(r'[?#].*$', '', url).rsplit('/', 1)[-1]}"


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_the_map_gives_every_pinned_artifact_at_the_path_the_roles_used(arch: str):
    versions = artifacts.parse_versions({"kubestrap_artifacts": PINS})
    found = artifacts.download_map(versions, arch, cache_dir="/ctl/cache/", staging_dir=STAGING)
    assert set(found) == set(PINS)
    for name, entry in found.items():
        pin = PINS[name]
        path = _old_layout(name, arch)
        upstream = pin["url"].replace("{version}", pin["version"]).replace("{arch}", arch)
        assert entry == {
            "name": name, "version": pin["version"], "arch": arch, "file": path.rsplit("/", 1)[-1], "path": path,
            "url": upstream, "upstream_url": upstream, "sha256": pin["sha256"].get(arch, ""),
            "cache": f"/ctl/cache/{path}", "dest": f"{STAGING}/{path}",
        }  # fmt: skip
        assert entry["cache"] == str(versions.artifacts[name].cache_path(Path("/ctl/cache"), arch))  # the CLI's path


def test_the_map_applies_the_mirror_and_selects_names_in_order():
    versions = artifacts.parse_versions({"kubestrap_artifacts": PINS, "kubestrap_artifacts_base_url": "http://m.lan/a/"})
    found = artifacts.download_map(versions, "amd64", ["kubelet", "kubeadm"])
    assert list(found) == ["kubelet", "kubeadm"]
    assert found["kubeadm"]["url"] == f"http://m.lan/a/dl.k8s.io/release/v{PINS['kubeadm']['version']}/bin/linux/amd64/kubeadm"
    assert found["kubeadm"]["cache"] == found["kubeadm"]["path"]  # no directory: the path itself
    with pytest.raises(artifacts.ArtifactError, match="unknown artifact 'nope'"):
        artifacts.download_map(versions, "amd64", ["nope"])


def test_an_architecture_without_a_pin_gets_an_empty_sha256_for_the_roles_to_refuse():
    pins = {"kubeadm": {**PINS["kubeadm"], "sha256": {"amd64": PINS["kubeadm"]["sha256"]["amd64"]}}}
    found = FILTER.artifact_map(pins, "riscv64", staging_dir="/s")
    assert found["kubeadm"]["sha256"] == "" and found["kubeadm"]["dest"].startswith("/s/kubeadm/")


def test_a_file_name_drops_query_and_fragment():
    pins = {"x": {"version": "1", "url": "https://h/v{version}/x-{arch}.tgz?raw=1#top", "sha256": {"amd64": "a" * 64}}}
    assert FILTER.artifact_map(pins, "amd64")["x"]["path"] == "x/1/amd64/x-amd64.tgz"


def test_the_filter_is_the_python_map_and_reports_errors_as_filter_errors():
    expected = artifacts.download_map(
        artifacts.parse_versions({"kubestrap_artifacts": PINS, "kubestrap_artifacts_base_url": "file:///srv"}),
        "amd64", ["containerd"], cache_dir="/c", staging_dir="/s",
    )  # fmt: skip
    assert FILTER.artifact_map(PINS, "amd64", names=["containerd"], base_url="file:///srv", cache_dir="/c",
                               staging_dir="/s") == expected  # fmt: skip
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="unknown artifact"):
        FILTER.artifact_map(PINS, "amd64", names=["nope"])


def _render(tmp_path: Path, host: str, hostvars: dict) -> dict:
    """The derived variables of the three roles that read the map, rendered by Ansible from their vars files."""
    play = [{
        "name": "Render", "hosts": host, "gather_facts": False,
        "vars_files": [str(ROOT / f"roles/{role}/defaults/main.yml") for role in ("artifacts", "containerd", "kube_binaries")]
        + [str(ROOT / f"roles/{role}/vars/main.yml") for role in ("artifacts", "containerd", "kube_binaries")],
        "tasks": [
            {"name": "Select", "ansible.builtin.set_fact": {
                "artifacts_node_arch": "amd64",
                "artifacts_node_selection": "{{ artifacts_node_items + artifacts_control_plane_items"
                                            " + artifacts_first_control_plane_items }}"}},
            {"name": "Show", "ansible.builtin.debug": {"msg": {
                "artifacts": "{{ __artifacts_node_downloads }}",
                "containerd": "{{ __containerd_staged }}",
                "kube_binaries": "{{ __kube_binaries_staged }}",
                "install": "{{ __kube_binaries_install_files }}"}}},
        ],
    }]  # fmt: skip
    book = tmp_path / "render.yml"
    book.write_text(yaml.safe_dump(play))
    inventory = {"all": {"children": {"k8s_control_plane": {"hosts": {host: None}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    extra = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "kubestrap_artifacts": PINS,
             "kubestrap_arch_map": ARCH_MAP, "ansible_facts": {"architecture": "x86_64"}, "kubestrap_images": {},
             "kube_binaries_current": [], "kubestrap_node_staging_dir": STAGING, **hostvars}  # fmt: skip
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    env = {**os.environ, **ROLE_PATHS, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_NOCOWS": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")}  # fmt: skip
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "hosts.yml"), "-e", f"@{tmp_path / 'extra.json'}",
                           str(book)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return json.loads(done.stdout)["plays"][0]["tasks"][1]["hosts"][host]["msg"]


def test_the_roles_read_the_same_paths_from_the_map(tmp_path: Path):
    """What the artifacts role stages is where containerd and kube_binaries install from: the paths of before."""
    shown = _render(tmp_path, "cp1", {"artifacts_controller_cache_dir": "/ctl/cache"})
    staged = {name: entry["dest"] for name, entry in shown["artifacts"].items()}
    assert staged == {name: f"{STAGING}/{_old_layout(name, 'amd64')}" for name in staged}
    assert {e["cache"] for e in shown["artifacts"].values()} == {f"/ctl/cache/{_old_layout(n, 'amd64')}" for n in staged}
    assert {name: entry["dest"] for name, entry in shown["containerd"].items()} == {
        name: staged[name] for name in ("containerd", "runc", "cni_plugins", "crictl")}  # fmt: skip
    assert shown["kube_binaries"] == {name: staged[name] for name in ("kubeadm", "kubelet", "kubectl")}
    tools = {f["src"] for f in shown["install"] if f.get("archive")}
    assert tools == {staged["helm"], staged["cilium_cli"]}  # the tools host installs from the staged tarballs


# --- the one downloader ------------------------------------------------------------------------------------


def _entries(server, cache: Path, payloads: dict[str, bytes]) -> tuple[dict, list[dict[str, str]]]:
    """Pins of stand-in files served by the mirror *server*, and their artifact map entries under *cache*."""
    pins = {}
    for name, data in payloads.items():
        server.put(f"upstream.example/files/v1/{name}-amd64.bin", data)
        pins[name] = {"version": "1", "url": f"https://upstream.example/files/v{{version}}/{name}-{{arch}}.bin",
                      "sha256": {"amd64": hashlib.sha256(data).hexdigest()}}  # fmt: skip
    return pins, list(FILTER.artifact_map(pins, "amd64", base_url=server.url, cache_dir=str(cache)).values())


def _urllib(url: str, timeout: float):
    return artifacts._urlopen(url, timeout)


def test_the_role_downloads_with_the_cli_downloader_into_the_same_cache(http_server, tmp_path: Path):
    cache = tmp_path / "cache"
    pins, entries = _entries(http_server, cache, {"a": b"a" * 5000, "b": b"b" * 7000})
    # the CLI fills the cache ...
    versions = artifacts.parse_versions({"kubestrap_artifacts": pins, "kubestrap_artifacts_base_url": http_server.url})
    cli = artifacts.fetch_all(versions, ["amd64"], cache, opener=_urllib)
    assert [r.downloaded for r in cli] == [True, True]
    served = len(http_server.requests)
    # ... and the role's action finds every file where the map says, verified: nothing downloaded again
    result = ACTION.fetch(entries, 30, str(cache))
    assert result == {"changed": False, "results": [
        {"name": e["name"], "arch": "amd64", "cache": e["cache"], "downloaded": False} for e in entries]}  # fmt: skip
    assert len(http_server.requests) == served
    # a file gone from the cache is downloaded again, by the action, through Ansible's open_url
    Path(entries[0]["cache"]).unlink()
    again = ACTION.fetch(entries, 30, str(cache))
    assert again["changed"] is True and [r["downloaded"] for r in again["results"]] == [True, False]
    assert Path(entries[0]["cache"]).read_bytes() == b"a" * 5000
    assert oct(Path(entries[0]["cache"]).stat().st_mode & 0o777) == "0o644"


def test_the_action_names_each_failure_with_both_hashes_and_keeps_nothing(http_server, tmp_path: Path):
    cache = tmp_path / "cache"
    _, entries = _entries(http_server, cache, {"a": b"a" * 5000, "b": b"b" * 7000})
    http_server.put("upstream.example/files/v1/a-amd64.bin", b"tampered")
    missing = {**entries[1], "url": http_server.url + "/nowhere/b-amd64.bin"}
    result = ACTION.fetch([entries[0], missing], 30, str(cache))
    assert result["failed"] is True
    msg = result["msg"]
    assert msg.startswith("Artifact download or verification failed on the controller; nothing was staged on any node.")
    assert f"[a 1 (amd64), file a-amd64.bin from {entries[0]['url']}: sha256 mismatch, expected {entries[0]['sha256']}, " \
           f"got {hashlib.sha256(b'tampered').hexdigest()}]" in msg  # fmt: skip
    assert "[b 1 (amd64), file b-amd64.bin from " in msg and "404" in msg
    assert msg.endswith(f"Nothing unverified was kept in {cache}.")
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # nothing kept, no temporary file left


def test_check_mode_downloads_nothing_and_reports_what_would_be(http_server, tmp_path: Path):
    cache = tmp_path / "cache"
    _, entries = _entries(http_server, cache, {"a": b"a" * 50})
    result = ACTION.fetch(entries, 30, str(cache), check_mode=True)
    assert result["changed"] is True and http_server.requests == [] and not cache.exists()


def _oci_archive(name_tag: str, layer: bytes) -> tuple[bytes, str]:
    """A one-layer linux/amd64 OCI archive naming *name_tag*, and the digest of its manifest."""
    import io

    from kubestrap import images

    def described(media_type: str, data: bytes) -> dict:
        return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}

    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": described("application/vnd.oci.image.config.v1+json", config),
                           "layers": [described("application/vnd.oci.image.layer.v1.tar", layer)]}).encode()  # fmt: skip
    top = {**described("application/vnd.oci.image.manifest.v1+json", manifest),
           "annotations": {"io.containerd.image.name": name_tag}}  # fmt: skip
    out = io.BytesIO()
    writer = images.ArchiveWriter(out)
    writer.file("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
    writer.file("index.json", json.dumps({"schemaVersion": 2, "manifests": [top]}).encode())
    writer.directories()
    for data in (manifest, config, layer):
        writer.blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), [data])
    writer.close()
    return out.getvalue(), top["digest"]


def test_the_action_fetches_image_archives_with_the_cli_downloader_verified(http_server, tmp_path: Path):
    """One downloader of image archives on the controller too: the role's action calls kubestrap/images.py's
    `download` (as `bootstrap.py artifacts fetch` does), keeps an archive only when every blob verifies, and does
    not download one the cache already holds verified."""
    name = "registry.example/app:v1"
    data, digest = _oci_archive(name, b"layer " * 1000)
    http_server.put("images/app-amd64.oci.tar", data)
    target = tmp_path / "cache" / "images" / name / "linux-amd64.oci.tar"
    wanted = [{"name": name, "digest": digest, "archive": str(target), "url": http_server.url + "/images/app-amd64.oci.tar",
               "arch": "amd64"}]  # fmt: skip
    first = ACTION.fetch([], 30, str(tmp_path / "cache"), wanted_images=wanted)
    assert first == {"changed": True, "results": [{"name": name, "arch": "amd64", "cache": str(target),
                                                    "downloaded": True}]}  # fmt: skip
    assert target.read_bytes() == data
    served = len(http_server.requests)
    again = ACTION.fetch([], 30, str(tmp_path / "cache"), wanted_images=wanted)
    assert again["changed"] is False and len(http_server.requests) == served
    # a mirror whose archive does not hold the pinned image: refused, named, nothing kept
    target.unlink()
    tampered, _ = _oci_archive(name, b"other " * 1000)
    http_server.put("images/app-amd64.oci.tar", tampered)
    refused = ACTION.fetch([], 30, str(tmp_path / "cache"), wanted_images=wanted)
    assert refused["failed"] is True
    assert f"[image {name} (amd64) from {wanted[0]['url']}: " in refused["msg"] and digest in refused["msg"]
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


# --- no second definition ----------------------------------------------------------------------------------

# Ways a role or playbook would write the layout or the file name again instead of reading the map: resolving a
# URL pattern, taking the file name off a URL, joining a version into a path, or a path under the staging or
# cache directory (a directory passed on as a whole, e.g. find's paths:, is fine).
_FORBIDDEN = [
    re.compile(r"replace\(\s*['\"]\{version\}"),
    re.compile(r"regex_replace\(\s*['\"]\[\?#\]"),
    re.compile(r"version\s*~\s*['\"]/"),
    re.compile(r"\.version\s*\}\}\s*/"),
    re.compile(r"(staging_dir|cache_dir|staged_in)\s*~\s*['\"]/"),
    re.compile(r"(staging_dir|cache_dir)\s*\}\}\s*/"),
]


def test_no_role_or_playbook_writes_the_artifact_layout_again():
    places = [p for top in ("roles", "playbooks") for p in (ROOT / top).rglob("*")
              if p.is_file() and p.suffix in (".yml", ".yaml", ".j2")]  # fmt: skip
    assert places
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in places
             for n, line in enumerate(p.read_text().splitlines(), 1) if any(r.search(line) for r in _FORBIDDEN)]  # fmt: skip
    assert found == [], "read .path/.dest/.cache/.url of the artifact map (filter_plugins/artifact_map.py) instead"


def test_the_patterns_catch_the_old_concatenations():
    old = [
        "{%-   set _ = staged.update({name: containerd_staging_dir ~ '/' ~ name ~ '/'",
        "~ item.version ~ '/' ~ __containerd_arch ~ '/'",
        'path: "{{ artifacts_controller_cache_dir }}/{{ item.name }}/{{ artifacts_pinned[item.name].version }}"',
        "{{ artifacts_pinned[item.name].url | replace('{version}', artifacts_pinned[item.name].version) }}",
        "| regex_replace('[?#].*$', '') | basename)}) -%}",
        "'archive': artifacts_controller_cache_dir ~ '/' ~ image.path,",
    ]
    assert all(any(r.search(line) for r in _FORBIDDEN) for line in old)


def test_python_writes_the_layout_once():
    """Artifact.path is the one place; no other Python file of the product joins name, version and arch."""
    layout = re.compile(r"\{[\w.]*name\}/\{[\w.]*version\}/\{arch\}/")
    sources = [*(ROOT / "kubestrap").rglob("*.py"), *(ROOT / "filter_plugins").glob("*.py"),
               *(ROOT / "roles").rglob("*.py"), *(ROOT / "playbooks").rglob("*.py")]  # fmt: skip
    found = [str(p.relative_to(ROOT)) for p in sources for _ in layout.finditer(p.read_text())]
    assert found == ["kubestrap/artifacts.py"]
    assert "/ self.name / self.version" not in (ROOT / "kubestrap" / "artifacts.py").read_text()
