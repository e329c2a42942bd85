"""Offline validation: the homelab inventory passes; each broken inventory fails with its own line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from helpers import CORPUS, ROOT, build_case, build_defaults

from kubestrap import inventory, paths, schema, spec_check, validate, yamlfile

CASES = sorted(p for p in (CORPUS / "broken").iterdir() if p.is_dir())
# Cases that change the documented defaults need the loader pointed at their copy; the CLI has no
# such switch, so the CLI test samples the others.
CLI_CASES = [c for c in CASES if not (c / "defaults").is_dir()]


def test_corpus_is_large_enough():
    assert len(CASES) >= 80


def test_homelab_inventory_is_valid():
    assert list(validate.check_path(ROOT / "inventories" / "homelab")) == []


def test_base_inventory_is_valid():
    assert list(validate.check_path(CORPUS / "base")) == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_inventory_gives_its_one_line(case: Path, tmp_path: Path):
    inv = build_case(case, tmp_path / case.name)
    defaults = build_defaults(case, tmp_path / "defaults")
    expected = (case / "EXPECT").read_text().strip()
    lines = list(validate.check_path(inv, defaults_dir=defaults))
    assert len(lines) == 1, f"expected exactly one problem, got: {lines}"
    assert expected in lines[0]


def _fake_ssh(tmp_path: Path) -> dict[str, str]:
    """A PATH where `ssh` and `scp` record that they were called: they must never be."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    marker = tmp_path / "ssh-called"
    for tool in ("ssh", "scp", "sftp"):
        script = bindir / tool
        script.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {marker}\nexit 255\n")
        script.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    return env


@pytest.mark.parametrize("case", CLI_CASES[:: max(1, len(CLI_CASES) // 8)], ids=lambda c: c.name)
def test_cli_check_exits_2_with_one_line_and_no_ssh(case: Path, tmp_path: Path):
    inv = build_case(case, tmp_path / case.name)
    env = _fake_ssh(tmp_path)
    for command in (["check"], ["up"], ["add-node", "k8s-worker1"], ["plan"]):
        proc = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), *command, "-i", str(inv)],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, (command, proc.stderr)
        assert (case / "EXPECT").read_text().strip() in lines[0]
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "ssh-called").exists()


# --- the declared spec -------------------------------------------------------------------------
def _documented_defaults() -> dict:
    merged: dict = {}
    for layer in inventory.load_defaults():
        merged.update(layer.values)
    return merged


def test_every_documented_setting_is_declared_and_every_declared_one_documented():
    declared = {name for name, spec in schema.known_settings().items() if spec.cluster_level}
    assert declared == set(_documented_defaults())


def test_settings_spec_is_a_valid_ansible_argument_spec_that_the_defaults_satisfy():
    """Ansible itself reads roles/settings/meta/argument_specs.yml the same way (role start)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    options = yaml.safe_load((ROOT / schema.SETTINGS_SPEC).read_text())["argument_specs"]["main"]["options"]
    defaults = {k: v for k, v in _documented_defaults().items() if not spec_check.is_template(v)}
    assert ArgumentSpecValidator(options).validate(defaults).error_messages == []
    broken = ArgumentSpecValidator(options).validate({**defaults, "addons_enabled": {"traefik": True}})
    assert broken.error_messages


def test_bounds_are_read_from_the_description():
    spec = schema.parse_option("x", {"type": "int", "description": "Replicas. From 2 to 9."}, "here")
    assert (spec.minimum, spec.maximum) == (2, 9)
    assert list(spec_check.check("x", 1, spec)) == [("x", "must be from 2 to 9, got 1")]
    assert list(spec_check.check("x", "{{ n }}", spec)) == []


def _inventory_with(tmp_path: Path, cluster_vars: str) -> Path:
    inv = build_case(CORPUS / "base", tmp_path / "inv")
    with (inv / "group_vars" / "k8s_cluster.yml").open("a") as handle:
        handle.write(cluster_vars)
    return inv


@pytest.mark.parametrize(("old", "new"), sorted(schema.RENAMED.items()))
def test_a_renamed_setting_is_refused_naming_file_key_and_new_name(tmp_path: Path, old: str, new: str):
    inv = _inventory_with(tmp_path, f"{old}: 3\n")
    lines = list(validate.check_path(inv))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{paths.display(inv / 'group_vars' / 'k8s_cluster.yml')}: {old}: renamed to {new!r}")


def test_every_setting_has_one_name():
    """The new names are declared settings with one documented value; the old ones are read or defined nowhere."""
    specs = schema.known_settings()
    documented = _documented_defaults()
    pattern = re.compile(r"\b(" + "|".join(schema.RENAMED) + r")\b")
    places = [*(ROOT / "roles").rglob("*"), *(ROOT / "playbooks").rglob("*"), *(ROOT / "inventories").rglob("*"),
              *(ROOT / "group_vars").rglob("*"), ROOT / "README.md"]
    for new in schema.RENAMED.values():
        assert specs[new].cluster_level and new in documented, new
    assert schema.RENAMED.keys().isdisjoint(specs)
    used = [str(p) for p in places if p.is_file() and pattern.search(p.read_text(errors="replace"))]
    assert used == []


@pytest.mark.parametrize("ref", [
    "registry.k8s.io/pause:3.10.2@sha256:" + "a" * 64,
    "registry.k8s.io/pause@sha256:" + "0" * 64,
    "mirror.lan:5000/pause:3.10.2",
])
def test_pinned_image_references_are_accepted(tmp_path: Path, ref: str):
    inv = _inventory_with(tmp_path, f"kubestrap_images:\n  pause: \"{ref}\"\n")
    assert list(validate.check_path(inv)) == []


def test_the_images_kubestrap_pins_carry_their_digests():
    """What kubestrap itself pins is pinned by digest (a tag can be moved; the digest names the bytes)."""
    images = yaml.safe_load((ROOT / "group_vars/all/versions.yml").read_text())["kubestrap_images"]
    for name, ref in images.items():
        assert re.fullmatch(r"[^@\s]+:[^@:/\s]+@sha256:[0-9a-f]{64}", ref), f"kubestrap_images.{name}: {ref}"


# --- what cannot be read -----------------------------------------------------------------------
def test_unreadable_vars_directory_gives_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    inv = build_case(CORPUS / "base", tmp_path / "inv")
    (inv / "group_vars" / "k8s_workers").mkdir()
    real_iterdir = Path.iterdir

    def iterdir(self: Path):
        if self.name == "k8s_workers":
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    lines = list(validate.check_path(inv))
    assert len(lines) == 1 and "k8s_workers: cannot read this directory: Permission denied" in lines[0]


def test_unreadable_vars_file_gives_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    inv = build_case(CORPUS / "base", tmp_path / "inv")
    real_open = Path.open

    def open_(self: Path, *args, **kwargs):
        if self.name == "k8s_cluster.yml":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    lines = list(validate.check_path(inv))
    assert len(lines) == 1 and "k8s_cluster.yml: cannot read: Permission denied" in lines[0]


def test_a_pipe_among_the_vars_files_gives_one_line(tmp_path: Path):
    inv = build_case(CORPUS / "base", tmp_path / "inv")
    os.mkfifo(inv / "group_vars" / "k8s_workers.yml")
    lines = list(validate.check_path(inv))
    assert len(lines) == 1 and "k8s_workers.yml: neither a file nor a directory" in lines[0]


def test_alias_bomb_is_refused_in_bounded_time_and_memory(tmp_path: Path):
    text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    text += "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 30))
    path = tmp_path / "bomb.yml"
    path.write_text(text)
    tracemalloc.start()
    started = time.monotonic()
    with pytest.raises(yamlfile.YamlError, match="aliases expand"):
        yamlfile.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 50 * 1024 * 1024


def test_a_few_anchors_and_merge_keys_still_load(tmp_path: Path):
    path = tmp_path / "anchors.yml"
    path.write_text("base: &base {a: 1, b: 2}\nmore:\n  <<: *base\n  c: 3\nlist: [*base, *base]\n")
    assert yamlfile.load(path)["more"] == {"a": 1, "b": 2, "c": 3}


def test_thousands_of_hosts_are_checked_in_bounded_time(tmp_path: Path):
    """Every host list within the size cap is checked in seconds (2000 hosts took minutes)."""
    inv = build_case(CORPUS / "base", tmp_path / "inv")
    workers = "".join(f"            w{i}: {{node_ip: 192.168.{8 + i // 250}.{1 + i % 250}}}\n" for i in range(2000))
    (inv / "hosts.yml").write_text(
        "all:\n  children:\n    k8s_cluster:\n      children:\n        k8s_control_plane:\n          hosts:\n"
        "            k8s-cp: {node_ip: 192.168.1.10}\n        k8s_workers:\n          hosts:\n" + workers)
    (inv / "group_vars" / "k8s_cluster.yml").write_text(
        "cluster_node_network: 192.168.0.0/16\ncluster_api_endpoint: 192.168.1.10\n"
        "metallb_address_pool: 192.168.1.240-192.168.1.250\ncluster_pod_cidr: 10.128.0.0/12\n")
    started = time.monotonic()
    assert list(validate.check_path(inv)) == []
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("name", ["alias_bomb", "latin1_byte", "huge_vars_file", "deeply_nested", "group_vars_symlink_loop"])
def test_cli_check_on_hostile_files_prints_one_line_without_traceback(name: str, tmp_path: Path):
    case = CORPUS / "broken" / name
    inv = build_case(case, tmp_path / name)
    proc = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), "check", "-i", str(inv)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and (case / "EXPECT").read_text().strip() in lines[0], proc.stderr


def test_vars_file_shadowed_by_a_vars_folder_is_refused(tmp_path: Path):
    """Ansible reads the first of group_vars/<group>/, <group>.yml, <group>.yaml, <group>.json and ignores the rest
    (DataLoader.find_vars_files): a settings file beside a folder of the same group would silently not apply."""
    inv = build_case(CORPUS / "base", tmp_path / "inv")
    (inv / "group_vars" / "k8s_cluster").mkdir()
    (inv / "group_vars" / "k8s_cluster" / "more.yml").write_text("cluster_name: other\n")
    lines = list(validate.check_path(inv))
    shadowed = paths.display(inv / "group_vars" / "k8s_cluster.yml")
    assert any(line.startswith(f"{shadowed}: Ansible ignores this because") for line in lines), lines


# --- HA control plane (cluster_api_vip) ----------------------------------------------------------------------
def _ha_inventory(tmp_path: Path, control_planes: int, settings: dict) -> Path:
    """The base inventory with *control_planes* control-plane nodes (192.168.1.20, .21, ...) and *settings*."""
    inv = build_case(CORPUS / "base", tmp_path / "ha")
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    cps = {f"k8s-cp{i + 1}" if i else "k8s-cp": {"ansible_host": f"192.168.1.{20 + i}", "node_ip": f"192.168.1.{20 + i}"}
           for i in range(control_planes)}  # fmt: skip
    hosts["all"]["children"]["k8s_cluster"]["children"]["k8s_control_plane"]["hosts"] = cps
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    base = yaml.safe_load((inv / "group_vars" / "k8s_cluster.yml").read_text())
    base.pop("cluster_api_endpoint")
    (inv / "group_vars" / "k8s_cluster.yml").write_text(yaml.safe_dump({**base, **settings}))
    return inv


@pytest.mark.parametrize("control_planes", [1, 3, 5, 7])
def test_an_odd_number_of_control_planes_with_a_free_vip_is_valid(tmp_path: Path, control_planes: int):
    inv = _ha_inventory(tmp_path, control_planes, {"cluster_api_vip": "192.168.1.5"})
    assert list(validate.check_path(inv)) == []


def test_the_endpoint_may_name_the_vip_or_a_dns_name_for_it(tmp_path: Path):
    for endpoint in ("192.168.1.5", "k8s-api.home.arpa"):
        inv = _ha_inventory(tmp_path / endpoint, 3, {"cluster_api_vip": "192.168.1.5", "cluster_api_endpoint": endpoint})
        assert list(validate.check_path(inv)) == []


@pytest.mark.parametrize("control_planes", [2, 4, 6])
def test_an_even_number_of_control_planes_is_refused_saying_why(tmp_path: Path, control_planes: int):
    inv = _ha_inventory(tmp_path, control_planes, {"cluster_api_vip": "192.168.1.5"})
    lines = [str(p) for p in validate.check_path(inv)]
    assert len(lines) == 1 and f"k8s_control_plane: {control_planes} control-plane nodes" in lines[0], lines
    assert "etcd needs an odd number" in lines[0] and "move one to k8s_workers or add one" in lines[0]


def test_a_vip_inside_the_metallb_pool_is_refused_also_when_metallb_is_off(tmp_path: Path):
    inv = _ha_inventory(tmp_path, 1, {"cluster_api_vip": "192.168.1.240", "addons_enabled": {"metallb": False, "cilium": True}})
    lines = [str(p) for p in validate.check_path(inv)]
    assert len(lines) == 1 and "contains cluster_api_vip 192.168.1.240" in lines[0], lines


# --- storage add-ons (nfs_csi, local_path) and the class of the monitoring data ------------------------------
def _storage_inventory(tmp_path: Path, settings: dict) -> Path:
    inv = build_case(CORPUS / "base", tmp_path / "storage")
    base = yaml.safe_load((inv / "group_vars" / "k8s_cluster.yml").read_text())
    (inv / "group_vars" / "k8s_cluster.yml").write_text(yaml.safe_dump({**base, **settings}))
    return inv


ALL_STORAGE_ON = {"cilium": True, "metallb": True, "longhorn": True, "nfs_csi": True, "local_path": True}


@pytest.mark.parametrize("server", ["192.168.1.5", "nas.homelab.lan", "NAS", "fd00::5", "nas.homelab.lan."])
def test_an_nfs_server_given_as_an_ip_or_a_dns_name_is_valid(tmp_path: Path, server: str):
    inv = _storage_inventory(tmp_path, {"addons_enabled": ALL_STORAGE_ON, "nfs_csi_server": server,
                                        "nfs_csi_export_path": "/volume1/kubernetes"})
    assert list(validate.check_path(inv)) == []


@pytest.mark.parametrize("server", ["nas.homelab.lan:2049", "nas/export", "-nas", "127.0.0.1", "localhost", "10.0.0.256"])
def test_an_nfs_server_that_is_no_nas_address_is_refused(tmp_path: Path, server: str):
    inv = _storage_inventory(tmp_path, {"nfs_csi_server": server})
    lines = list(validate.check_path(inv))
    assert len(lines) == 1 and ": nfs_csi_server: " in lines[0], lines


def test_an_empty_nfs_server_is_fine_while_the_addon_is_off(tmp_path: Path):
    inv = _storage_inventory(tmp_path, {"addons_enabled": {**ALL_STORAGE_ON, "nfs_csi": False}, "nfs_csi_server": ""})
    assert list(validate.check_path(inv)) == []


@pytest.mark.parametrize(("klass", "addon"), [("nfs-csi", "nfs_csi"), ("local-path", "local_path"), ("longhorn", "longhorn")])
def test_monitoring_data_may_live_on_the_class_of_an_addon_that_is_on(tmp_path: Path, klass: str, addon: str):
    flags = {**ALL_STORAGE_ON}
    inv = _storage_inventory(tmp_path / "on", {"addons_enabled": flags, "nfs_csi_server": "192.168.1.5",
                                               "monitoring_storage_class": klass})
    assert list(validate.check_path(inv)) == []
    inv = _storage_inventory(tmp_path / "off", {"addons_enabled": {**flags, addon: False}, "nfs_csi_server": "192.168.1.5",
                                                "monitoring_storage_class": klass})
    lines = list(validate.check_path(inv))
    assert len(lines) == 1 and f"'{klass}' is the StorageClass of the {addon} add-on, which is off" in lines[0], lines


def test_a_renamed_storage_class_is_followed_by_the_monitoring_check(tmp_path: Path):
    settings = {"addons_enabled": {**ALL_STORAGE_ON, "nfs_csi": False}, "nfs_csi_storage_class": "nas",
                "monitoring_storage_class": "nas"}
    lines = list(validate.check_path(_storage_inventory(tmp_path / "renamed", settings)))
    assert len(lines) == 1 and "'nas' is the StorageClass of the nfs_csi add-on" in lines[0], lines
    settings["monitoring_storage_class"] = "nfs-csi"  # no class of that name any more: the user's own class
    assert list(validate.check_path(_storage_inventory(tmp_path / "own", settings))) == []


def test_local_path_may_be_the_default_class_without_longhorn(tmp_path: Path):
    inv = _storage_inventory(tmp_path, {"addons_enabled": {**ALL_STORAGE_ON, "longhorn": False},
                                        "nfs_csi_server": "nas.homelab.lan", "local_path_default_storage_class": True})
    assert list(validate.check_path(inv)) == []


def test_a_bad_alertmanager_receiver_url_is_refused_without_showing_it(tmp_path: Path):
    case = CORPUS / "broken" / "alertmanager_webhook_not_a_url"
    lines = list(validate.check_path(build_case(case, tmp_path / "inv"), defaults_dir=build_defaults(case, tmp_path / "d")))
    assert len(lines) == 1 and "secret-part" not in lines[0] and "T000" not in lines[0], lines
    good = tmp_path / "good"
    shutil.copytree(case, good)
    vars_file = good / "group_vars" / "k8s_cluster.yml"
    vars_file.write_text(vars_file.read_text().replace("hooks.slack.com", "https://hooks.slack.com"))
    inv = build_case(good, tmp_path / "inv2")
    assert list(validate.check_path(inv, defaults_dir=build_defaults(good, tmp_path / "d2"))) == []
