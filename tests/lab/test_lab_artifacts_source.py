"""Where the lab's cluster gets its artifacts (kubestrap/lab/artifacts_source.py): the local mirror's settings written
beside the lab's inventory when a release host does not answer, removed with the internet, and accepted by `check`."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from kubestrap import validate
from kubestrap.lab import artifacts_source, inventory, mirror
from kubestrap.lab.errors import LabError
from kubestrap.lab.sources import build as sources
from tests.lab.test_lab_inventory import lab_state, vm


def fake_mirror(directory: Path) -> mirror.Mirror:
    """A mirror record as `mirror.build` returns it (nothing built): other sha256 sums than the pins, image digests."""
    pins = yaml.safe_load((ROOT / "group_vars/all/versions.yml").read_text())
    built = {name: {"version": entry["version"], "url": entry["url"],
                    "sha256": {"amd64": hashlib.sha256(name.encode()).hexdigest()}}
             for name, entry in pins["kubestrap_artifacts"].items() if name != "cilium_cli"}  # fmt: skip
    references = mirror.cluster_references()
    lock = {ref: "sha256:" + hashlib.sha256(ref.encode()).hexdigest() for ref in references}
    pause = next(ref for ref in references if ref.rsplit("/", 1)[-1].startswith("pause:"))
    images = {**pins["kubestrap_images"], "pause": f"{pause}@{lock[pause]}"}
    settings = {"kubestrap_images_lock": lock, "kubestrap_images": images,
                "kubestrap_cluster_images_from_kubeadm": pins["kubestrap_cluster_images_from_kubeadm"]}  # fmt: skip
    return mirror.Mirror(directory, built, settings)


def lab_inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "lab"
    shutil.copytree(ROOT / "inventories" / "lab" / "group_vars", inv / "group_vars")
    (inv / "group_vars" / "k8s_cluster" / artifacts_source.SETTINGS_FILE).unlink(missing_ok=True)
    st = lab_state()
    st.vms[0] = vm("lab-cp", "control_plane", "10.77.0.10", 40001, api_port=40443)
    inventory.write(inv / "hosts.yml", inventory.render_text(st, tmp_path / "k"))
    return inv


@pytest.fixture
def no_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    built: list[str] = []

    def build(log):
        built.append("build")
        return fake_mirror(tmp_path / "mirror" / "key"), False

    monkeypatch.setattr(mirror, "build", build)
    return built


def test_offline_lab_writes_the_local_mirror_settings_and_check_accepts_them(tmp_path, no_build, monkeypatch):
    inv = lab_inventory(tmp_path)
    monkeypatch.setattr(artifacts_source, "unreachable", lambda: ["https://dl.k8s.io/"])
    logged: list[str] = []
    assert artifacts_source.apply("auto", inv / "hosts.yml", logged.append) == "local"
    written = inv / "group_vars" / "k8s_cluster" / "local-mirror.yml"
    text = written.read_text()
    settings = yaml.safe_load(text)
    assert settings["kubestrap_artifacts_base_url"] == (tmp_path / "mirror" / "key" / "www").as_uri()
    assert settings["addons_enabled"] == dict.fromkeys(settings["addons_enabled"], False)
    assert settings["addons_enabled"]["cilium"] is False
    assert "Off: Cilium" in text and "https://dl.k8s.io/ not reachable" in logged[0]
    # the lab's settings and the mirror's, together, are a valid inventory: `up` runs on it with nothing else
    assert list(validate.check_path(inv)) == []
    assert no_build == ["build"]


def test_with_the_internet_the_lab_uses_the_pins(tmp_path, no_build, monkeypatch):
    inv = lab_inventory(tmp_path)
    artifacts_source.apply("local", inv / "hosts.yml", lambda message: None)
    written = inv / "group_vars" / "k8s_cluster" / "local-mirror.yml"
    assert written.is_file()
    monkeypatch.setattr(artifacts_source, "unreachable", lambda: [])
    assert artifacts_source.apply("auto", inv / "hosts.yml", lambda message: None) == "internet"
    assert not written.exists()
    assert list(validate.check_path(inv)) == []
    assert no_build == ["build"]


def test_a_release_host_that_answers_with_an_error_status_counts_as_reachable(monkeypatch):
    import urllib.error

    def refuse(request, timeout):
        raise urllib.error.HTTPError(request.full_url, 401, "Unauthorized", {}, None)

    monkeypatch.setattr(artifacts_source.urllib.request, "urlopen", refuse)
    assert artifacts_source.unreachable(("https://registry.k8s.io/v2/",)) == []

    def down(request, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(artifacts_source.urllib.request, "urlopen", down)
    assert artifacts_source.unreachable(("https://dl.k8s.io/",)) == ["https://dl.k8s.io/"]


def test_the_previous_minor_settings_form_a_valid_inventory_one_minor_below_the_pin(tmp_path, no_build, monkeypatch):
    """The upgrade test's mirror (mirror.build(previous=True)): its "previous" settings run kubeadm, kubelet and kubectl
    of the minor before the pin with the images that kubeadm asks for, and `check` accepts them as it does the pin's."""
    inv = lab_inventory(tmp_path)
    made = fake_mirror(tmp_path / "mirror" / "key")
    pins = yaml.safe_load((ROOT / "group_vars/all/versions.yml").read_text())
    version = sources.module_version(sources.PREVIOUS_KUBERNETES).lstrip("v")
    artifacts = {name: {**made.artifacts[name], "version": version} for name in ("kubeadm", "kubelet", "kubectl")}
    cluster_images = {**pins["kubestrap_cluster_images"], **mirror.PREVIOUS_CLUSTER_IMAGES}
    previous = {"artifacts": artifacts, "cluster_images": cluster_images,
                "images_lock": {"registry.k8s.io/etcd:3.6.6-0": "sha256:" + "0" * 64}}  # fmt: skip
    made = mirror.Mirror(made.directory, made.artifacts, made.image_settings, previous)
    settings = made.settings(kubernetes="previous")
    assert settings["kubestrap_artifacts"]["kubelet"]["version"] == version
    assert settings["kubestrap_cluster_images_from_kubeadm"] == version
    assert settings["kubestrap_images_lock"]["registry.k8s.io/etcd:3.6.6-0"].startswith("sha256:")
    assert made.settings()["kubestrap_artifacts"]["kubelet"]["version"] == pins["kubestrap_artifacts"]["kubelet"]["version"]
    pin_minor = int(build_nearest_kubeadm().split(".")[1])
    assert int(version.split(".")[1]) == pin_minor - 1
    written = inv / "group_vars" / "k8s_cluster" / "local-mirror.yml"
    written.write_text(made.settings_text(kubernetes="previous"))
    assert list(validate.check_path(inv)) == []
    with pytest.raises(LabError, match="serves no Kubernetes"):
        fake_mirror(tmp_path / "other").settings(kubernetes="previous")


def build_nearest_kubeadm() -> str:
    """The Kubernetes version the lab builds for the pin (the pin, or build.NEAREST's stand-in)."""
    pinned = yaml.safe_load((ROOT / "group_vars/all/versions.yml").read_text())["kubestrap_artifacts"]["kubeadm"]
    nearest = sources.NEAREST.get("kubeadm")
    return nearest[1] if nearest and nearest[0] == str(pinned["version"]) else str(pinned["version"])
