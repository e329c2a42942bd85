"""The cluster's images as artifacts: the list in versions.yml against the REAL kubeadm, `check` refusing a list
that disagrees with the pins, and `bootstrap.py artifacts fetch` pulling them from a REAL registry (Debian's
docker-registry on 127.0.0.1, tests/fixtures/image_registry.py; plain and behind anonymous bearer tokens) with the
product's own client, recording their digests, refusing a moved tag, and `artifacts bundle` carrying them.

The images pushed are the ones kubestrap/lab/sources/images.py makes from the built programs (nothing is built here: a
missing build FAILS naming the kubestrap/lab/sources/build.py command)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from kubestrap import artifacts, artifacts_cli, images
from kubestrap.lab.sources import build
from kubestrap.lab.sources import images as upstream_images
from tests.fixtures import image_registry

VERSIONS = yaml.safe_load((ROOT / "group_vars" / "all" / "versions.yml").read_text())


def _kubeadm() -> Path:
    program = build.PROGRAMS["kubernetes"]
    binary = build.target_dir(program, build.module_version(program), build.go_version()) / "kubeadm"
    if not binary.is_file():
        pytest.fail(f"kubeadm is not built ({binary} missing): run kubestrap/lab/sources/build.py kubernetes")
    return binary


def test_the_list_is_what_real_kubeadm_asks_for_at_the_pin_kube_proxy_only_without_cilium():
    pin = VERSIONS["kubestrap_artifacts"]["kubeadm"]["version"]
    done = subprocess.run([str(_kubeadm()), "config", "images", "list", "--kubernetes-version", f"v{pin}"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    asked = set(done.stdout.split())
    listed = {image.reference.name_tag for image in images.cluster_images(VERSIONS, lock={})}
    assert f"registry.k8s.io/kube-proxy:v{pin}" in asked
    assert listed == asked
    assert VERSIONS["kubestrap_cluster_images_from_kubeadm"] == pin
    by_key = {image.key: image for image in images.cluster_images(VERSIONS, lock={})}
    assert {k for k, i in by_key.items() if i.nodes == "control_plane"} == {
        "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"}  # fmt: skip
    # what one node runs: kube-proxy only while Cilium (which replaces it) is off; the control-plane images only on
    # a control plane
    def node(control_plane: bool, cilium: bool) -> set[str]:
        return {i.key for i in images.node_images(VERSIONS, control_plane, {"cilium": cilium, "metallb": True}, lock={})}

    assert node(True, cilium=True) == set(by_key) - {"kube-proxy"}
    assert node(True, cilium=False) == set(by_key)
    assert node(False, cilium=True) == {"coredns", "pause"}
    assert node(False, cilium=False) == {"coredns", "pause", "kube-proxy"}
    # the sandbox image is containerd's pin, upstream's digest included
    assert str(by_key["pause"].reference) == VERSIONS["kubestrap_images"]["pause"]
    assert list(images.problems(VERSIONS)) == []


def test_a_kubeadm_bump_moves_the_kubernetes_tags_and_check_asks_for_the_others():
    bumped = json.loads(json.dumps(VERSIONS))
    bumped["kubestrap_artifacts"]["kubeadm"]["version"] = "1.36.5"
    tags = {i.key: i.reference.tag for i in images.cluster_images(bumped, lock={})}
    assert tags["kube-apiserver"] == tags["kube-controller-manager"] == tags["kube-scheduler"] == "v1.36.5"
    found = list(images.problems(bumped))
    assert [key for key, _ in found] == ["kubestrap_cluster_images_from_kubeadm"]
    assert "kubeadm config images list --kubernetes-version v1.36.5" in found[0][1]
    # a literal tag left behind is refused
    behind = json.loads(json.dumps(bumped))
    behind["kubestrap_cluster_images_from_kubeadm"] = "1.36.5"
    behind["kubestrap_cluster_images"]["kube-scheduler"]["image"] = "registry.k8s.io/kube-scheduler:v1.36.4"
    assert [key for key, _ in images.problems(behind)] == ["kubestrap_cluster_images.kube-scheduler.image"]
    behind["kubestrap_cluster_images"]["kube-proxy"]["image"] = "registry.k8s.io/kube-proxy:v1.36.4"
    assert [key for key, _ in images.problems(behind)] == ["kubestrap_cluster_images.kube-scheduler.image",
                                                          "kubestrap_cluster_images.kube-proxy.image"]  # fmt: skip


def test_check_refuses_a_kube_proxy_that_would_run_beside_cilium_and_an_unknown_add_on():
    settings = json.loads(json.dumps(VERSIONS))
    settings["addons_enabled"] = {"cilium": True, "metallb": False}
    assert list(images.problems(settings)) == []
    del settings["kubestrap_cluster_images"]["kube-proxy"]["without_addon"]
    found = dict(images.problems(settings))
    assert "must be cilium" in found["kubestrap_cluster_images.kube-proxy.without_addon"]
    settings["kubestrap_cluster_images"]["extra"] = {"image": "example.org/x:1", "nodes": "all", "without_addon": "ciliun"}
    found = dict(images.problems(settings))
    assert "'ciliun' is no add-on of addons_enabled" in found["kubestrap_cluster_images.extra.without_addon"]
    del settings["kubestrap_cluster_images"]["kube-proxy"]
    assert "kubestrap_cluster_images.kube-proxy" in dict(images.problems(settings))


def _archives() -> dict[str, upstream_images.Archive]:
    try:
        return upstream_images.write_archives(image_registry.cluster_references())
    except upstream_images.ImageError as exc:
        pytest.fail(str(exc))


def _repository(name_tag: str) -> tuple[str, str]:
    name, tag = name_tag.rsplit(":", 1)
    return name.split("/", 1)[1], tag  # registry.k8s.io/coredns/coredns -> coredns/coredns


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The real registry with the cluster's images pushed: pause under a two-architecture index, the rest alone."""
    made = _archives()
    with image_registry.local_registry(tmp_path_factory.mktemp("registry")) as running:
        pushed: dict[str, str] = {}
        for name_tag, archive in made.items():
            repository, tag = _repository(name_tag)
            if repository == "pause":
                pushed[name_tag], _ = image_registry.push_multiarch(running, archive.path, repository, tag)
            else:
                pushed[name_tag] = image_registry.push_archive(running, archive.path, repository, tag)
        yield running, made, pushed


def _settings_for(host: str) -> dict:
    """versions.yml with the images list pointing at the local registry (same repositories and tags)."""
    settings = json.loads(json.dumps(VERSIONS))
    settings["kubestrap_images"]["pause"] = f"{host}/pause:3.10.2"  # upstream's digest cannot match ours
    for entry in settings["kubestrap_cluster_images"].values():
        if entry["image"] != "{images.pause}":
            entry["image"] = entry["image"].replace("registry.k8s.io/", f"{host}/")
    return settings


def _local(name_tag: str, host: str) -> str:
    return name_tag.replace("registry.k8s.io/", f"{host}/")


def test_fetch_pulls_from_a_real_registry_records_digests_and_refuses_a_moved_tag(registry, tmp_path):
    running, made, pushed = registry
    settings = _settings_for(running.host)
    lock, cache = tmp_path / "images_lock.yml", tmp_path / "cache"
    images.write_lock({}, lock)
    chosen = images.cluster_images(settings, lock=images.read_lock(lock))
    first = artifacts.fetch_images(chosen, ["amd64"], cache, lock_file=lock)
    assert {(r.image.key, r.how, r.recorded) for r in first} == {(i.key, "pulled", True) for i in chosen}
    recorded = images.read_lock(lock)
    assert recorded == {_local(n, running.host): d for n, d in pushed.items()}  # what each tag resolved to
    for result in first:
        name_tag = result.image.reference.name_tag
        info = images.verify_archive(result.path, name_tag, recorded[name_tag], "amd64")
        assert result.path == cache / f"images/{result.image.reference.name_tag}/linux-amd64.oci.tar"
        ours = made[result.image.reference.name_tag.replace(f"{running.host}/", "registry.k8s.io/")]
        assert info.manifest == ours.manifest_digest  # the amd64 image, byte for byte what was pushed
    # pause came as an index: the archive holds the index and the amd64 image, not the arm64 one
    pause = next(r for r in first if r.image.key == "pause")
    with tarfile.open(pause.path) as archive:
        index = json.loads(archive.extractfile(f"blobs/sha256/{recorded[pause.image.reference.name_tag][7:]}").read())
        arm64 = next(m["digest"] for m in index["manifests"] if m["platform"]["architecture"] == "arm64")
        assert f"blobs/sha256/{arm64[7:]}" not in archive.getnames()
        assert len(index["manifests"]) == 2
    # a second fetch finds everything in the cache, verified
    chosen = images.cluster_images(settings, lock=images.read_lock(lock))
    again = artifacts.fetch_images(chosen, ["amd64"], cache, lock_file=lock)
    assert {r.how for r in again} == {"cached"} and images.read_lock(lock) == recorded
    # the tag moved upstream (etcd's tag now holds the scheduler image): refused, the cached copy is not replaced
    etcd = next(i for i in chosen if i.key == "etcd")
    before = hashlib.sha256(etcd.cache_path(cache, "amd64").read_bytes()).hexdigest()
    etcd.cache_path(cache, "amd64").unlink()
    image_registry.push_archive(running, made["registry.k8s.io/kube-scheduler:v1.36.4"].path, "etcd", etcd.reference.tag)
    with pytest.raises(artifacts.ChecksumMismatch, match="nothing was kept"):
        artifacts.fetch_images([etcd], ["amd64"], cache, lock_file=lock)
    assert not etcd.cache_path(cache, "amd64").exists() and images.read_lock(lock) == recorded
    assert not list(cache.rglob("*.part"))
    image_registry.push_archive(running, made["registry.k8s.io/etcd:3.6.8-0"].path, "etcd", etcd.reference.tag)
    artifacts.fetch_images([etcd], ["amd64"], cache, lock_file=lock)
    assert hashlib.sha256(etcd.cache_path(cache, "amd64").read_bytes()).hexdigest() == before


def test_fetch_and_bundle_through_the_command_line(registry, tmp_path, monkeypatch, capsys):
    running, _made, pushed = registry
    inventory = tmp_path / "inv"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"k8s_cluster": {"children": {
        "k8s_control_plane": {"hosts": {"cp": {"node_ip": "10.0.0.1"}}}}}}}}))  # fmt: skip
    settings = _settings_for(running.host)
    # one small stand-in file artifact, so the bundle's file part is quick and needs no internet
    data = b"stand-in\n"
    settings["kubestrap_artifacts"] = {"kubeadm": {**settings["kubestrap_artifacts"]["kubeadm"],
                                                   "sha256": {"amd64": hashlib.sha256(data).hexdigest()}}}  # fmt: skip
    overrides = {k: settings[k] for k in ("kubestrap_cluster_images", "kubestrap_images", "kubestrap_artifacts")}
    (inventory / "group_vars" / "k8s_cluster.yml").write_text(yaml.safe_dump(overrides))
    cache, lock = tmp_path / "cache", tmp_path / "lock.yml"
    kubeadm = artifacts.parse_versions(settings).artifacts["kubeadm"]
    kubeadm.cache_path(cache, "amd64").parent.mkdir(parents=True)
    kubeadm.cache_path(cache, "amd64").write_bytes(data)
    base = ["-i", str(inventory), "artifacts", "--cache-dir", str(cache), "--lock-file", str(lock)]
    assert artifacts_cli.main([*base, "fetch", "--base-url", ""]) == 0
    out = capsys.readouterr().out
    assert "7 image archives verified (7 fetched); 7 digests recorded" in out
    assert images.read_lock(lock) == {_local(n, running.host): d for n, d in pushed.items()}
    assert artifacts_cli.main([*base, "fetch", "--base-url", ""]) == 0
    assert "7 image archives verified (0 fetched)" in capsys.readouterr().out
    bundle = tmp_path / "offline.tar.gz"
    assert artifacts_cli.main([*base, "bundle", str(bundle)]) == 0
    assert "1 artifacts and 7 image archives" in capsys.readouterr().out
    # gzip's own default level, not tarfile's 9 (the header's XFL byte: 2 at level 9, 4 at level 1): 3.5 times as fast
    # for the same size, most of a bundle being image layers that are gzip already
    assert bundle.read_bytes()[8] == 0
    with tarfile.open(bundle) as tar:
        names = set(tar.getnames())
        for name_tag, digest in images.read_lock(lock).items():
            member = f"images/{name_tag}/linux-amd64.oci.tar"
            assert member in names
            tar.extract(member, tmp_path / "www", filter="data")
            images.verify_archive(tmp_path / "www" / member, name_tag, digest, "amd64")
    # the unpacked bundle serves as a mirror: a fetch from it into an empty cache verifies every archive
    mirror_cache = tmp_path / "from-mirror"
    assert artifacts_cli.main([*base[:-4], "--cache-dir", str(mirror_cache), "--lock-file", str(lock), "fetch",
                               "--base-url", (tmp_path / "www").as_uri(), "--images-only"]) == 0  # fmt: skip
    assert "7 image archives verified (7 fetched)" in capsys.readouterr().out
    # an image whose digest nobody recorded cannot go into a bundle
    lock.write_text(images.LOCK_HEADER + "kubestrap_images_lock: {}\n")
    assert artifacts_cli.main([*base, "bundle", str(tmp_path / "b2.tar.gz")]) == 1
    assert "has no digest" in capsys.readouterr().err


def test_fetch_through_anonymous_bearer_tokens(tmp_path):
    made = _archives()
    with image_registry.local_registry(tmp_path / "reg", token_auth=True) as running:
        pause = next(a for n, a in made.items() if "/pause:" in n)
        index_digest, _ = image_registry.push_multiarch(running, pause.path, "pause", "3.10.2")
        running.tokens.issued.clear()
        reference = images.Reference(f"{running.host}/pause", "3.10.2", index_digest)
        image = images.ClusterImage("pause", reference, "all", "reference")
        (result,) = artifacts.fetch_images([image], ["amd64"], tmp_path / "cache", lock_file=tmp_path / "lock.yml")
        assert result.how == "pulled" and not result.recorded
        assert running.tokens.issued == ["repository:pause:pull"]  # one anonymous token, asked for as challenged
        images.verify_archive(result.path, image.reference.name_tag, index_digest, "amd64")
        # the registry refuses a pull without a token: the token flow is what let it through
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{running.url}/v2/pause/manifests/3.10.2", timeout=10)
        assert refused.value.code == 401 and "Bearer realm=" in refused.value.headers["WWW-Authenticate"]
