"""The per-node phase records (playbooks/library/kubestrap_phase_state.py): a phase records what it applied,
the wrapper's check finds no work while inputs and the node are unchanged, and every kind of drift (content,
mode, a deleted binary, a new entry, a stopped unit, a sysctl, a module, a package, swap) is work with a short
reason. Pure parts are tested on their functions, the module itself through ansible-playbook on this machine."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from shlex import quote

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ROOT

LIBRARY = ROOT / "playbooks" / "library"
SOURCE = LIBRARY / "kubestrap_phase_state.py"


def _load():
    spec = importlib.util.spec_from_file_location("kubestrap_phase_state", SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ps = _load()


class FakeProbe(ps.Probe):
    """Commands answered from canned (rc, stdout, stderr); a tool absent from *answers* is not installed."""

    def __init__(self, answers: dict[str, tuple[int, str, str]]):
        super().__init__(None)
        self.answers = answers
        self.calls: list[list[str]] = []

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.answers else None

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        return self.answers[os.path.basename(argv[0])]


# ------------------------------------------------------------------------------------------------ the module's shape


def test_documentation_matches_the_argument_spec_and_runs_on_python_3_9():
    doc = yaml.safe_load(ps.DOCUMENTATION)
    assert doc["module"] == "kubestrap_phase_state"
    assert set(doc["options"]) == set(ps.ARGUMENT_SPEC)
    for name, option in doc["options"].items():
        arg = ps.ARGUMENT_SPEC[name]
        assert option["type"] == arg["type"], name
        assert option.get("default") == arg.get("default"), name
        assert option.get("required", False) == arg.get("required", False), name
        assert option.get("elements") == arg.get("elements"), name
    assert set(yaml.safe_load(ps.RETURN)) == {"phases", "written", "path", "changed"}
    assert [task["kubestrap_phase_state"]["mode"] for task in yaml.safe_load(ps.EXAMPLES)] == ["record", "check"]
    # the nodes run Debian 11's Python 3.9: no syntax newer than that
    ast.parse(SOURCE.read_text(), feature_version=(3, 9))


# ------------------------------------------------------------------------------------------------------------ paths


def _tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "config.toml").write_text("version = 2\n")
    (root / "bin").mkdir()
    tool = root / "bin" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    with open(root / "bin" / "big", "wb") as handle:  # sparse: cheap to make, too big to hash
        handle.truncate(ps.HASH_LIMIT + 1)
    (root / "bin" / "link").symlink_to("tool")
    (root / "bin" / "dangling").symlink_to("/nonexistent/kubestrap-target")
    return root


def test_observe_paths_descends_directories_hashes_small_files_and_does_not_follow_links(tmp_path: Path):
    root = _tree(tmp_path / "t")
    seen = ps.observe_paths([str(root), str(tmp_path / "absent"), str(root / "etc")])
    assert sorted(seen) == sorted([str(tmp_path / "absent"), str(root), *(str(p) for p in root.rglob("*"))])
    assert seen[str(tmp_path / "absent")] == {"type": "missing"}
    assert seen[str(root)]["type"] == "dir" and "mtime_ns" not in seen[str(root)]
    tool = seen[str(root / "bin" / "tool")]
    info = os.stat(root / "bin" / "tool")
    assert tool == {"type": "file", "mode": "0755", "uid": info.st_uid, "gid": info.st_gid, "size": 10,
                    "mtime_ns": info.st_mtime_ns, "sha256": hashlib.sha256(b"#!/bin/sh\n").hexdigest()}  # fmt: skip
    big = seen[str(root / "bin" / "big")]
    assert big["size"] == ps.HASH_LIMIT + 1 and "sha256" not in big
    assert seen[str(root / "bin" / "link")]["type"] == "link"
    assert seen[str(root / "bin" / "link")]["target"] == "tool"
    assert seen[str(root / "bin" / "dangling")] == {**seen[str(root / "bin" / "dangling")], "type": "link",
                                                    "target": "/nonexistent/kubestrap-target"}  # fmt: skip


def test_observing_is_bounded_a_record_of_too_many_paths_fails_and_its_check_has_work(tmp_path: Path):
    root = _tree(tmp_path / "t")  # 8 paths
    assert len(ps.observe_paths([str(root)], limit=8)) == 8
    with pytest.raises(ps.TooManyEntries, match=r"more than 7 paths to observe"):
        ps.observe_paths([str(root)], limit=7)
    records = tmp_path / "phases"
    _record(records, "p", "h", {"paths": [str(root)]})
    (root / "etc" / "many").mkdir()
    for index in range(ps.MAX_ENTRIES):
        (root / "etc" / "many" / str(index)).touch()
    [reason] = ps.check_phase(str(records), "p", "h", FakeProbe({}))["reasons"]
    assert reason.startswith(f"more than {ps.MAX_ENTRIES} paths to observe")


def _drift(tmp_path: Path, change) -> list[str]:
    root = _tree(tmp_path / "t")
    before = ps.observe_paths([str(root)])
    change(root)
    return ps.compare({"paths": before}, {"paths": ps.observe_paths([str(root)])})


def test_an_unchanged_tree_has_no_reasons(tmp_path: Path):
    assert _drift(tmp_path, lambda root: None) == []


def test_touching_a_small_file_without_changing_it_is_no_drift(tmp_path: Path):
    assert _drift(tmp_path, lambda root: os.utime(root / "etc" / "config.toml", ns=(1, 1))) == []


@pytest.mark.parametrize(("change", "reason"), [
    (lambda r: (r / "etc" / "config.toml").write_text("version = 3\n"), "etc/config.toml: content changed"),
    (lambda r: (r / "bin" / "tool").chmod(0o644), "bin/tool: mode 0644, was 0755"),
    (lambda r: (r / "bin" / "tool").unlink(), "bin/tool: missing"),
    (lambda r: (r / "etc" / "extra.conf").write_text("x"), "etc/extra.conf: new entry"),
    (lambda r: os.truncate(r / "bin" / "big", ps.HASH_LIMIT + 2),
     f"bin/big: content changed (size {ps.HASH_LIMIT + 2}, was {ps.HASH_LIMIT + 1})"),
    (lambda r: os.utime(r / "bin" / "big", ns=(1, 1)), "bin/big: modified (mtime changed)"),
    (lambda r: ((r / "bin" / "link").unlink(), (r / "bin" / "link").symlink_to("big")), "bin/link: link to big, was to tool"),
    (lambda r: ((r / "bin" / "link").unlink(), (r / "bin" / "link").write_text("")), "bin/link: a file, was a link"),
], ids=["content", "mode", "deleted", "new-entry", "big-size", "big-mtime", "link-target", "link-replaced"])  # fmt: skip
def test_each_kind_of_path_drift_is_one_short_reason(tmp_path: Path, change, reason: str):
    assert _drift(tmp_path, change) == [f"{tmp_path / 't'}/{reason}"]


def test_a_deleted_or_new_directory_is_named_once_not_per_entry(tmp_path: Path):
    def change(root: Path) -> None:
        for entry in (root / "bin").iterdir():
            entry.unlink()
        (root / "bin").rmdir()
        (root / "etc" / "d" / "e").mkdir(parents=True)
        (root / "etc" / "d" / "e" / "f").write_text("")

    root = tmp_path / "t"
    assert _drift(tmp_path, change) == [f"{root}/bin: missing", f"{root}/etc/d: new entry"]


def test_a_directory_that_became_a_file_is_named_once(tmp_path: Path):
    def change(root: Path) -> None:
        for entry in (root / "etc").iterdir():
            entry.unlink()
        (root / "etc").rmdir()
        (root / "etc").write_text("")

    assert _drift(tmp_path, change) == [f"{tmp_path / 't'}/etc: a file, was a directory"]


def test_owner_and_reappearing_paths():
    was = {"/x": {"type": "file", "mode": "0644", "uid": 0, "gid": 0, "size": 1, "mtime_ns": 1, "sha256": "a"},
           "/y": {"type": "missing"}}  # fmt: skip
    now = {"/x": {**was["/x"], "uid": 1000, "gid": 1000}, "/y": {"type": "dir", "mode": "0755", "uid": 0, "gid": 0}}
    assert ps.compare_paths(was, now) == ["/x: owner 1000:1000, was 0:0", "/y: exists, was missing"]


# ------------------------------------------------------------------------------------------------ units and packages

SYSTEMCTL_SHOW = """Id=containerd.service
ActiveState=active
UnitFileState=enabled

Id=kubelet.service
ActiveState=activating
UnitFileState=enabled

Id=nosuch.service
ActiveState=inactive
UnitFileState=
"""

DPKG_QUERY = "conntrack\t1:1.4.7-1+b2\tinstalled\nlibc6\t2.36-9\tinstalled\nsocat\t1.7.4.4-2\tconfig-files\n"


def test_systemctl_show_blocks_map_to_the_units_asked_in_order():
    units = ["containerd", "kubelet.service", "nosuch.service"]
    assert ps.parse_systemctl_show(SYSTEMCTL_SHOW, units) == {
        "containerd": {"active": "active", "enabled": "enabled"},
        "kubelet.service": {"active": "activating", "enabled": "enabled"},
        "nosuch.service": {"active": "inactive", "enabled": ""},
    }
    # fewer blocks than units (should not happen): matched by Id, the rest unknown
    assert ps.parse_systemctl_show(SYSTEMCTL_SHOW, ["kubelet", "containerd.service", "x", "y"]) == {
        "kubelet": {"active": "activating", "enabled": "enabled"},
        "containerd.service": {"active": "active", "enabled": "enabled"},
        "x": "unknown", "y": "unknown",
    }  # fmt: skip
    assert ps.parse_systemctl_show("", ["containerd"]) == {"containerd": "unknown"}
    assert ps.parse_systemctl_show("Id=a.service\nActiveState=active\n", ["a"]) == {"a": {"active": "active", "enabled": ""}}


def test_dpkg_query_lines_map_to_packages_absent_ones_are_none():
    assert ps.parse_dpkg_query(DPKG_QUERY, ["conntrack", "libc6:amd64", "socat", "ebtables"]) == {
        "conntrack": {"status": "installed", "version": "1:1.4.7-1+b2"},
        "libc6:amd64": {"status": "installed", "version": "2.36-9"},
        "socat": {"status": "config-files", "version": "1.7.4.4-2"},
        "ebtables": None,
    }
    two_arches = "libc6\t2.36-9\tnot-installed\nlibc6\t2.36-9\tinstalled\n"
    assert ps.parse_dpkg_query(two_arches, ["libc6"]) == {"libc6": {"status": "installed", "version": "2.36-9"}}


def test_units_and_packages_are_observed_with_one_call_each_as_argv():
    probe = FakeProbe({"systemctl": (0, SYSTEMCTL_SHOW, ""),
                       "dpkg-query": (1, DPKG_QUERY, "dpkg-query: no packages found matching ebtables\n")})  # fmt: skip
    spec = ps.normalize_spec({"units": ["nosuch.service", "kubelet.service", "containerd"],
                              "packages": ["socat", "ebtables", "conntrack", "libc6:amd64"]})  # fmt: skip
    observed = ps.observe(spec, probe)
    assert probe.calls == [
        ["/usr/bin/systemctl", "show", "--no-pager", "--property=Id,ActiveState,UnitFileState",
         "containerd", "kubelet.service", "nosuch.service"],
        ["/usr/bin/dpkg-query", "-W", "-f=${Package}\t${Version}\t${db:Status-Status}\n",
         "conntrack", "ebtables", "libc6:amd64", "socat"],
    ]  # fmt: skip
    assert observed["units"]["containerd"] == {"active": "active", "enabled": "enabled"}
    assert observed["packages"]["ebtables"] is None
    assert observed["packages"]["conntrack"]["version"] == "1:1.4.7-1+b2"
    assert "swap" not in observed


def test_without_systemctl_or_dpkg_query_or_a_running_systemd_the_state_is_unknown():
    spec = ps.normalize_spec({"units": ["containerd"], "packages": ["conntrack"]})
    missing = ps.observe(spec, FakeProbe({}))
    assert missing["units"] == {"containerd": "unknown"} and missing["packages"] == {"conntrack": "unknown"}
    failing = ps.observe(spec, FakeProbe({"systemctl": (1, "", "System has not been booted with systemd"),
                                          "dpkg-query": (2, "", "dpkg-query: error")}))  # fmt: skip
    assert failing["units"] == missing["units"] and failing["packages"] == missing["packages"]
    assert ps.compare(missing, failing) == []  # unknown both times: no work
    assert ps.compare({"units": {"containerd": {"active": "active", "enabled": "enabled"}}}, {"units": missing["units"]}) == [
        "unit containerd: state unknown, was active, enabled"]


def test_sysctl_modules_and_swap_are_read_from_proc_and_sys(tmp_path: Path):
    proc = tmp_path / "sys"
    (proc / "net" / "ipv4" / "conf" / "eth0.1").mkdir(parents=True)
    (proc / "net" / "ipv4" / "ip_forward").write_text("1\n")
    (proc / "net" / "ipv4" / "tcp_rmem").write_text("4096\t131072\t6291456\n")
    (proc / "net" / "ipv4" / "conf" / "eth0.1" / "rp_filter").write_text("2\n")
    assert ps.observe_sysctl(["net.ipv4.ip_forward", "net.ipv4.tcp_rmem", "net/ipv4/conf/eth0.1/rp_filter",
                              "net.bridge.bridge-nf-call-iptables"], root=str(proc)) == {
        "net.ipv4.ip_forward": "1", "net.ipv4.tcp_rmem": "4096 131072 6291456",
        "net/ipv4/conf/eth0.1/rp_filter": "2", "net.bridge.bridge-nf-call-iptables": None,
    }
    (tmp_path / "module" / "br_netfilter").mkdir(parents=True)
    assert ps.observe_modules(["br_netfilter", "nf-conntrack", "overlay"], root=str(tmp_path / "module")) == {
        "br_netfilter": True, "nf-conntrack": False, "overlay": False}
    (tmp_path / "module" / "nf_conntrack").mkdir()
    assert ps.observe_modules(["nf-conntrack"], root=str(tmp_path / "module")) == {"nf-conntrack": True}
    swaps = tmp_path / "swaps"
    swaps.write_text("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
    assert ps.observe_swap(str(swaps)) == "off"
    swaps.write_text(swaps.read_text() + "/swap.img\tfile\t\t2097148\t\t0\t\t-2\n")
    assert ps.observe_swap(str(swaps)) == "on"
    assert ps.observe_swap(str(tmp_path / "absent")) == "unknown"


def test_reasons_for_units_sysctls_modules_packages_and_swap():
    was = {"units": {"containerd": {"active": "active", "enabled": "enabled"},
                     "kubelet": {"active": "active", "enabled": "enabled"}},
           "sysctl": {"net.ipv4.ip_forward": "1", "vm.overcommit_memory": None},
           "modules": {"br_netfilter": True, "overlay": False},
           "packages": {"conntrack": {"status": "installed", "version": "1.4"},
                        "socat": {"status": "installed", "version": "1.7"},
                        "ebtables": None, "ipset": {"status": "installed", "version": "7.1"}},
           "swap": "off"}  # fmt: skip
    now = {"units": {"containerd": {"active": "inactive", "enabled": "enabled"},
                     "kubelet": {"active": "active", "enabled": "disabled"}},
           "sysctl": {"net.ipv4.ip_forward": "0", "vm.overcommit_memory": "1"},
           "modules": {"br_netfilter": False, "overlay": True},
           "packages": {"conntrack": {"status": "installed", "version": "1.2"},
                        "socat": None, "ebtables": {"status": "installed", "version": "2.0"},
                        "ipset": {"status": "half-configured", "version": "7.1"}},
           "swap": "on"}  # fmt: skip
    assert ps.compare(was, now) == [
        "unit containerd: inactive, was active",
        "unit kubelet: disabled, was enabled",
        "sysctl net.ipv4.ip_forward: 0, was 1",
        "sysctl vm.overcommit_memory: 1, was absent",
        "module br_netfilter: not loaded",
        "module overlay: loaded, was not loaded",
        "package conntrack: 1.2 installed, was 1.4 installed",
        "package ebtables: 2.0 installed, was not installed",
        "package ipset: 7.1 half-configured, was 7.1 installed",
        "package socat: not installed",
        "swap: on, was off",
    ]
    assert ps.compare(was, was) == []
    assert ps.cap(ps.compare(was, now)) == [*ps.compare(was, now)[:5], "and 6 more"]
    assert ps.cap(["a", "b"]) == ["a", "b"]


# --------------------------------------------------------------------------------------------- records, pure parts


def _record(directory: Path, phase: str, inputs: str, spec: dict) -> None:
    spec = ps.normalize_spec(spec)
    ps.write_record(str(directory), phase, ps.record_bytes(phase, inputs, spec, ps.observe(spec, FakeProbe({}))), False)


def test_check_phase_reasons_for_missing_corrupt_foreign_and_changed_records(tmp_path: Path):
    records = tmp_path / "phases"
    target = tmp_path / "f"
    target.write_text("x")
    _record(records, "p", "h1", {"paths": [str(target)], "units": ["containerd"]})
    assert ps.check_phase(str(records), "p", "h1", FakeProbe({})) == {"work": False, "reasons": []}
    assert ps.check_phase(str(records), "p", "h2", FakeProbe({})) == {"work": True, "reasons": [ps.INPUTS_CHANGED]}
    assert ps.check_phase(str(records), "q", "h1", FakeProbe({})) == {"work": True, "reasons": ["never applied on this node"]}
    for name, content, reason in [
        ("truncated", '{"format": 1, "phase"', "record corrupt ("),
        ("binary", "\udcff", "record corrupt ("),
        ("list", "[1, 2]", "record corrupt (not a kubestrap phase record)"),
        ("badspec", '{"format": 1, "inputs": "h1", "spec": {"paths": "/etc"}, "observed": {}}', "record corrupt (not a"),
        ("future", '{"format": 2, "inputs": "h1", "spec": {}, "observed": {}}', "record format 2 not understood"),
    ]:  # fmt: skip
        (records / f"{name}.json").write_bytes(content.encode("utf-8", "surrogateescape"))
        result = ps.check_phase(str(records), name, "h1", FakeProbe({}))
        assert result["work"] and len(result["reasons"]) == 1 and result["reasons"][0].startswith(reason), result
    (records / "dir.json").mkdir()
    assert ps.check_phase(str(records), "dir", "h1", FakeProbe({}))["reasons"][0].startswith("record unreadable (")
    target.write_text("y")
    assert ps.check_phase(str(records), "p", "h1", FakeProbe({})) == {"work": True, "reasons": [f"{target}: content changed"]}
    many = tmp_path / "many"
    many.mkdir()
    _record(records, "many", "h1", {"paths": [str(many)]})
    for index in range(8):
        (many / str(index)).write_text("")
    assert ps.check_phase(str(records), "many", "h1", FakeProbe({})) == {
        "work": True, "reasons": [*(f"{many}/{index}: new entry" for index in range(5)), "and 3 more"]}


def test_one_check_observes_the_units_and_packages_of_all_phases_with_one_call_each(tmp_path: Path):
    records = tmp_path / "phases"
    probe = FakeProbe({"systemctl": (0, SYSTEMCTL_SHOW, ""), "dpkg-query": (1, DPKG_QUERY, "")})
    for phase, units, packages in (("a", ["containerd", "kubelet.service"], ["conntrack"]),
                                   ("b", ["nosuch.service", "containerd"], ["socat", "libc6:amd64"])):  # fmt: skip
        spec = ps.normalize_spec({"units": units, "packages": packages})
        ps.write_record(str(records), phase, ps.record_bytes(phase, "h", spec, ps.observe(spec, probe)), False)
    probe.calls.clear()
    assert ps.check_phases(str(records), {"a": "h", "b": "h", "c": "h"}, probe) == {
        "a": {"work": False, "reasons": []}, "b": {"work": False, "reasons": []},
        "c": {"work": True, "reasons": ["never applied on this node"]}}  # fmt: skip
    assert [call[1] for call in probe.calls] == ["show", "-W"]
    assert probe.calls[0][-3:] == ["containerd", "kubelet.service", "nosuch.service"]
    assert probe.calls[1][-3:] == ["conntrack", "libc6:amd64", "socat"]
    probe.answers["systemctl"] = (0, SYSTEMCTL_SHOW.replace("ActiveState=active", "ActiveState=failed"), "")
    assert ps.check_phases(str(records), {"a": "h", "b": "h"}, probe) == {
        "a": {"work": True, "reasons": ["unit containerd: failed, was active"]},
        "b": {"work": True, "reasons": ["unit containerd: failed, was active"]}}  # fmt: skip


def test_a_record_that_is_valid_json_but_not_as_written_is_work_not_a_crash(tmp_path: Path):
    records = tmp_path / "phases"
    records.mkdir()
    path = str(tmp_path / "f")
    (records / "odd.json").write_text(json.dumps({"format": 1, "phase": "odd", "inputs": "h", "spec": {"paths": [path]},
                                                  "observed": {"paths": {path: "a string"}}}))  # fmt: skip
    [reason] = ps.check_phase(str(records), "odd", "h", FakeProbe({}))["reasons"]
    assert reason.startswith("record corrupt (unexpected content: ")


def test_records_are_written_atomically_0600_in_a_0700_directory_and_only_when_different(tmp_path: Path):
    records = tmp_path / "var" / "phases"
    content = ps.record_bytes("p", "h", ps.normalize_spec({}), {})
    assert ps.write_record(str(records), "p", content, check_mode=True)  # would write
    assert not (tmp_path / "var").exists()
    assert ps.write_record(str(records), "p", content, check_mode=False)
    assert stat.S_IMODE(records.stat().st_mode) == 0o700
    assert stat.S_IMODE((records / "p.json").stat().st_mode) == 0o600
    inode = (records / "p.json").stat().st_ino
    assert not ps.write_record(str(records), "p", content, check_mode=False)
    assert (records / "p.json").stat().st_ino == inode  # not rewritten
    records.chmod(0o755)
    (records / "p.json").chmod(0o644)
    assert not ps.write_record(str(records), "p", content, check_mode=False)
    assert stat.S_IMODE(records.stat().st_mode) == 0o700
    assert stat.S_IMODE((records / "p.json").stat().st_mode) == 0o600
    other = ps.record_bytes("p", "h2", ps.normalize_spec({}), {})
    assert ps.write_record(str(records), "p", other, check_mode=False)
    assert (records / "p.json").read_bytes() == other and (records / "p.json").stat().st_ino != inode
    assert sorted(os.listdir(records)) == ["p.json"]  # no temp file left behind


def test_the_same_spec_in_another_order_gives_the_same_record_bytes():
    a = ps.normalize_spec({"paths": ["/b", "/a/", "/a"], "units": ["y", "x"], "swap_off": True})
    b = ps.normalize_spec({"paths": ["/a", "/b"], "units": ["x", "y", "x"], "swap_off": True})
    assert a == b and a["paths"] == ["/a", "/b"]
    assert ps.record_bytes("p", "h", a, {"paths": {}}) == ps.record_bytes("p", "h", b, {"paths": {}})
    record = json.loads(ps.record_bytes("p", "h", a, {"paths": {}}))
    assert set(record) == {"format", "phase", "inputs", "spec", "observed"}  # no timestamp


# --------------------------------------------------------------------------------------- the module through Ansible


def _main(args: dict, capsys) -> dict:
    """The module's main() in this process (fast, for its failures); its JSON answer."""
    from ansible.module_utils.testing import patch_module_args

    with patch_module_args(args), pytest.raises(SystemExit):
        ps.main()
    return json.loads(capsys.readouterr().out)


def test_the_module_refuses_bad_arguments_and_too_big_a_record(tmp_path: Path, capsys, monkeypatch):
    records = str(tmp_path / "phases")
    assert "phase, inputs" in _main({"mode": "record", "dir": records}, capsys)["msg"]
    assert "plain name" in _main({"mode": "check", "dir": records, "phases": {"a/b": "h"}}, capsys)["msg"]
    monkeypatch.setattr(ps, "MAX_ENTRIES", 3)
    root = _tree(tmp_path / "t")
    answer = _main({"mode": "record", "dir": records, "phase": "p", "inputs": "h", "paths": [str(root)]}, capsys)
    assert answer["failed"] and answer["msg"].startswith("the p record: more than 3 paths to observe")
    assert not (tmp_path / "phases").exists()
    answer = _main({"mode": "record", "dir": records, "phase": "p", "inputs": "h", "paths": [str(root / "etc")]}, capsys)
    assert answer == {**answer, "changed": False, "written": True, "path": f"{records}/p.json"}
    assert ps.check_phase(records, "p", "h", ps.Probe(None)) == {"work": False, "reasons": []}


def _loaded_module() -> list[str]:
    try:
        return sorted(os.listdir("/sys/module"))[:1]
    except OSError:
        return []


def test_record_then_check_through_ansible(tmp_path: Path):
    tree = _tree(tmp_path / "node")
    records = tmp_path / "var" / "lib" / "kubestrap" / "phases"
    observe = {"paths": [str(tree)], "units": ["cron.service", "kubestrap-no-such.service"],
               "sysctl": ["kernel.ostype", "kernel.hostname"], "modules": [*_loaded_module(), "kubestrap_no_such_module"],
               "packages": ["bash", "kubestrap-no-such-package"], "swap_off": True}  # fmt: skip
    record = {"mode": "record", "dir": str(records), "phase": "alpha", "inputs": "h1", **observe}

    def check(name: str, phases: dict) -> dict:
        return {"name": name, "kubestrap_phase_state": {"mode": "check", "dir": str(records), "phases": phases},
                "register": name}  # fmt: skip

    config = tree / "etc" / "config.toml"
    # edit a file, chmod one, delete one, add an entry in an observed directory, corrupt a record: one task, since
    # every task costs seconds here (each kind on its own: test_each_kind_of_path_drift_is_one_short_reason)
    drift = "; ".join([f"printf 'version = 3\\n' > {quote(str(config))}", f"chmod 0644 {quote(str(tree / 'bin' / 'tool'))}",
                       f"rm {quote(str(tree / 'bin' / 'big'))}", f": > {quote(str(tree / 'etc' / 'new.conf'))}",
                       f"printf '{{not json' > {quote(str(records / 'gamma.json'))}"])  # fmt: skip
    tasks = [
        {"name": "record", "kubestrap_phase_state": record},
        {"name": "record_again", "kubestrap_phase_state": record},
        {"name": "record_check_mode", "kubestrap_phase_state": {**record, "phase": "beta"}, "check_mode": True},
        check("unchanged", {"alpha": "h1", "beta": "h1"}),
        {"name": "drift", "ansible.builtin.shell": drift},
        check("drifted", {"alpha": "h1", "gamma": "h1"}),
        check("inputs", {"alpha": "h2"}),
        {"name": "bad_name", "kubestrap_phase_state": {**record, "phase": "../escape"}, "ignore_errors": True},
        {"name": "relative", "kubestrap_phase_state": {**record, "phase": "delta", "paths": ["etc/x"]}, "ignore_errors": True},
    ]  # fmt: skip
    (tmp_path / "play.yml").write_text(json.dumps([{"name": "phase state", "hosts": "node-a", "gather_facts": False,
                                                    "tasks": tasks}]))  # fmt: skip
    (tmp_path / "extra.json").write_text(json.dumps({"ansible_connection": "local",
                                                     "ansible_python_interpreter": sys.executable}))  # fmt: skip
    env = dict(os.environ, ANSIBLE_LIBRARY=str(LIBRARY), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
               Package="expanded")  # dpkg-query's ${Package} must reach it as written  # fmt: skip
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "node-a,",
                           "-e", f"@{tmp_path / 'extra.json'}", str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = {t["task"]["name"]: t["hosts"]["node-a"] for t in json.loads(proc.stdout)["plays"][0]["tasks"]}

    def reasons(name: str, phase: str = "alpha") -> list[str]:
        entry = results[name]["phases"][phase]
        assert entry["work"] is bool(entry["reasons"])
        return entry["reasons"]

    assert results["record"]["written"] is True and results["record_again"]["written"] is False
    assert results["record"]["path"] == str(records / "alpha.json")
    assert results["record_check_mode"]["written"] is True
    assert results["unchanged"]["phases"] == {"alpha": {"work": False, "reasons": []},
                                              "beta": {"work": True, "reasons": ["never applied on this node"]}}
    assert reasons("drifted") == [f"{tree}/bin/big: missing", f"{tree}/bin/tool: mode 0644, was 0755",
                                  f"{config}: content changed", f"{tree}/etc/new.conf: new entry"]  # fmt: skip
    assert reasons("inputs") == ["inputs changed (versions, settings or kubestrap's own files)"]
    [corrupt] = reasons("drifted", "gamma")
    assert corrupt.startswith("record corrupt (")
    assert "plain name" in results["bad_name"]["msg"] and results["bad_name"]["failed"]
    assert "absolute paths only, got etc/x" in results["relative"]["msg"]
    assert not (tmp_path / "var" / "lib" / "escape.json").exists()

    module_tasks = [name for name, result in results.items() if name != "drift"]
    assert [name for name in module_tasks if results[name].get("changed")] == []
    assert stat.S_IMODE(records.stat().st_mode) == 0o700
    assert stat.S_IMODE((records / "alpha.json").stat().st_mode) == 0o600
    assert sorted(os.listdir(records)) == ["alpha.json", "gamma.json"]  # beta only in check mode; no temp files
    stored = json.loads((records / "alpha.json").read_text())
    assert stored["format"] == 1 and stored["phase"] == "alpha" and stored["inputs"] == "h1"
    assert stored["spec"] == {**observe, "units": sorted(observe["units"]), "sysctl": sorted(observe["sysctl"]),
                              "modules": sorted(observe["modules"])}  # fmt: skip
    assert stored["observed"]["sysctl"]["kernel.ostype"] == "Linux"
    assert stored["observed"]["packages"]["kubestrap-no-such-package"] is None
    assert stored["observed"]["packages"]["bash"]["status"] == "installed"
    assert stored["observed"]["modules"]["kubestrap_no_such_module"] is False
    assert stored["observed"]["swap"] in ("on", "off")


def test_every_play_keeps_its_records_under_the_node_state_dir():
    """The module has no default directory: each call names it from kubestrap_node_state_dir (one setting)."""
    calls = []
    for path in [*(ROOT / "playbooks").glob("*.yml"), *(ROOT / "roles").glob("*/tasks/*.yml")]:
        for match in re.finditer(r"^( *)kubestrap_phase_state:\n((?:\1  .*\n)+)", path.read_text(), re.M):
            calls.append((path.relative_to(ROOT).as_posix(), yaml.safe_load(textwrap.dedent(match.group(2)))))
    assert len(calls) == 7, calls
    defaults = yaml.safe_load((ROOT / "roles" / "kubeadm_init" / "defaults" / "main.yml").read_text())
    assert defaults["kubeadm_init_phase_state_dir"] == "{{ kubestrap_node_state_dir }}/phases"
    for where, args in calls:
        assert args.get("dir") in ("{{ kubestrap_node_state_dir }}/phases", "{{ kubeadm_init_phase_state_dir }}"), where
    assert "default" not in ps.ARGUMENT_SPEC["dir"] and ps.ARGUMENT_SPEC["dir"]["required"] is True
