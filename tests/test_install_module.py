"""playbooks/library/kubestrap_install.py: directories, files and archive members in one module run,
written only when their content differs, through Ansible itself (check mode included)."""

from __future__ import annotations

import grp
import importlib.util
import io
import json
import os
import pwd
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE, ROOT

LIBRARY = ROOT / "playbooks" / "library"


def _tarball(path: Path, members: dict[str, bytes], prefix: str = "", mode: int = 0o755) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        if prefix:
            info = tarfile.TarInfo(prefix.rstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(prefix + name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return path


def install(tmp_path: Path, args: dict, check: bool = False, diff: bool = False) -> dict:
    env = dict(os.environ, ANSIBLE_LIBRARY=str(LIBRARY), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))  # fmt: skip
    me = {"owner": pwd.getpwuid(os.getuid()).pw_name, "group": grp.getgrgid(os.getgid()).gr_name}
    proc = subprocess.run(
        [ANSIBLE, "localhost", "-c", "local", "-e",
         f"ansible_python_interpreter={sys.executable}", "-m", "kubestrap_install", "-a", json.dumps({**me, **args})]
        + (["--check"] if check else []) + (["--diff"] if diff else []),
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]


@pytest.fixture
def staged(tmp_path: Path) -> dict[str, Path]:
    stage = tmp_path / "stage"
    stage.mkdir()
    runc = stage / "runc.amd64"
    runc.write_bytes(b"runc v1\n" * 1000)
    return {
        "containerd": _tarball(stage / "containerd.tar.gz", {"containerd": b"c" * 3_000_000, "ctr": b"ctr\n"}, "bin/"),
        "cni": _tarball(stage / "cni.tgz", {"./bridge": b"bridge\n", "./loopback": b"lo\n"}),
        "crictl": _tarball(stage / "crictl.tar.gz", {"crictl": b"crictl\n", "README": b"doc\n"}, mode=0o644),
        "runc": runc,
    }


def _args(tmp_path: Path, staged: dict[str, Path]) -> dict:
    root = tmp_path / "root"
    return {
        "directories": [{"path": str(root / "opt/cni/bin")}, {"path": str(root / "etc/k8s"), "mode": "0700"}],
        "files": [
            {"src": str(staged["containerd"]), "dest": str(root / "usr/local"), "archive": True},
            {"src": str(staged["runc"]), "dest": str(root / "usr/local/sbin/runc"), "mode": "0755"},
            {"src": str(staged["cni"]), "dest": str(root / "opt/cni/bin"), "archive": True},
            {"src": str(staged["crictl"]), "dest": str(root / "usr/local/bin"), "archive": True,
             "members": ["crictl"], "mode": "0755"},
        ],
    }  # fmt: skip


def test_first_run_installs_everything_and_the_second_changes_nothing(tmp_path, staged):
    args = _args(tmp_path, staged)
    root = tmp_path / "root"
    first = install(tmp_path, args)
    assert first["changed"] is True, first
    assert {entry["path"] for entry in first["installed"]} == {
        str(root / p) for p in ("usr/local/bin/containerd", "usr/local/bin/ctr", "usr/local/sbin/runc",
                                "opt/cni/bin/bridge", "opt/cni/bin/loopback", "usr/local/bin/crictl")}  # fmt: skip
    assert (root / "usr/local/bin/containerd").read_bytes() == b"c" * 3_000_000
    assert (root / "opt/cni/bin/bridge").read_bytes() == b"bridge\n"
    assert not (root / "usr/local/bin/README").exists()  # only the named member
    assert stat.S_IMODE((root / "usr/local/bin/crictl").stat().st_mode) == 0o755  # mode given wins
    assert stat.S_IMODE((root / "etc/k8s").stat().st_mode) == 0o700
    assert not [p for p in (root / "usr/local/bin").iterdir() if p.name.startswith(".")]  # no temp file left

    second = install(tmp_path, args)
    assert second["changed"] is False, second
    assert second["installed"] == [] and second["directories"] == []


def test_only_what_differs_is_written_and_check_mode_writes_nothing(tmp_path, staged):
    args = _args(tmp_path, staged)
    root = tmp_path / "root"
    install(tmp_path, args)
    containerd = root / "usr/local/bin/containerd"
    containerd.write_bytes(b"c" * 2_999_999 + b"X")  # same size, one byte differs
    inode_ctr = (root / "usr/local/bin/ctr").stat().st_ino
    (root / "opt/cni/bin/loopback").chmod(0o700)
    (root / "etc/k8s").chmod(0o755)

    dry = install(tmp_path, args, check=True)
    assert dry["changed"] is True
    assert containerd.read_bytes().endswith(b"X")  # check mode changed nothing

    fixed = install(tmp_path, args)
    assert sorted((e["path"], e["changed"]) for e in fixed["installed"]) == [
        (str(root / "opt/cni/bin/loopback"), ["mode"]), (str(containerd), ["content"])]  # fmt: skip
    assert fixed["directories"] == [str(root / "etc/k8s")]
    assert containerd.read_bytes() == b"c" * 3_000_000
    assert (root / "usr/local/bin/ctr").stat().st_ino == inode_ctr  # untouched file not rewritten
    assert install(tmp_path, args)["changed"] is False


def test_a_running_binary_is_replaced_by_rename_not_rewritten_in_place(tmp_path, staged):
    args = _args(tmp_path, staged)
    root = tmp_path / "root"
    install(tmp_path, args)
    runc = root / "usr/local/sbin/runc"
    with runc.open("rb") as held:  # stands for the running process' open text file
        staged["runc"].write_bytes(b"runc v2\n")
        result = install(tmp_path, args)
        assert held.read(8) == b"runc v1\n"  # the old inode still has the old bytes
    assert [e["changed"] for e in result["installed"]] == [["content"]]
    assert runc.read_bytes() == b"runc v2\n"


def test_bad_input_fails_with_a_message_naming_it(tmp_path, staged):
    evil = _tarball(tmp_path / "evil.tgz", {"../escape": b"x"})
    result = install(tmp_path, {"files": [{"src": str(evil), "dest": str(tmp_path / "d"), "archive": True}]})
    assert result.get("failed") and "outside" in result["msg"], result
    assert not (tmp_path / "escape").exists()

    result = install(tmp_path, {"files": [{"src": str(staged["crictl"]), "dest": str(tmp_path / "d"),
                                           "archive": True, "members": ["kubectl"]}]})  # fmt: skip
    assert result.get("failed") and "no member kubectl" in result["msg"], result

    result = install(tmp_path, {"files": [{"src": str(tmp_path / "absent"), "dest": str(tmp_path / "d")}]})
    assert result.get("failed") and "artifacts phase" in result["msg"], result

    result = install(tmp_path, {"directories": [{"path": str(tmp_path / "d2"), "mode": "rwx"}]})
    assert result.get("failed") and "octal" in result["msg"], result


def test_files_given_as_content_are_written_when_they_differ_and_mode_defaults_to_0644(tmp_path):
    unit, program = tmp_path / "root/etc/systemd/system/tool.service", tmp_path / "root/usr/local/sbin/tool"
    args = {"files": [{"content": "[Service]\nExecStart=/usr/local/sbin/tool\n", "dest": str(unit)},
                      {"content": "#!/usr/bin/python3\nprint('ü')\n", "dest": str(program), "mode": "0755"}]}  # fmt: skip
    first = install(tmp_path, args)
    assert sorted((e["path"], e["changed"]) for e in first["installed"]) == [
        (str(unit), ["new"]), (str(program), ["new"])]  # fmt: skip
    assert unit.read_text() == "[Service]\nExecStart=/usr/local/sbin/tool\n"
    assert program.read_text(encoding="utf-8") == "#!/usr/bin/python3\nprint('ü')\n"
    assert (stat.S_IMODE(unit.stat().st_mode), stat.S_IMODE(program.stat().st_mode)) == (0o644, 0o755)
    assert install(tmp_path, args)["changed"] is False

    unit.write_text("[Service]\nExecStart=/bin/false\n")  # a hand edit
    program.chmod(0o700)
    fixed = install(tmp_path, args, diff=True)
    assert fixed["diff"] == [{"before_header": str(unit), "after_header": str(unit),  # what --diff shows
                              "before": "[Service]\nExecStart=/bin/false\n",
                              "after": "[Service]\nExecStart=/usr/local/sbin/tool\n"}]  # fmt: skip
    assert sorted((e["path"], e["changed"]) for e in fixed["installed"]) == [
        (str(unit), ["content"]), (str(program), ["mode"])]  # fmt: skip
    assert unit.read_text() == "[Service]\nExecStart=/usr/local/sbin/tool\n"
    assert install(tmp_path, args)["changed"] is False


def test_a_file_needs_exactly_one_of_src_and_content(tmp_path, staged):
    both = install(tmp_path, {"files": [{"src": str(staged["runc"]), "content": "x", "dest": str(tmp_path / "d")}]})
    assert both.get("failed") and "either src or content" in both["msg"], both
    neither = install(tmp_path, {"files": [{"dest": str(tmp_path / "d")}]})
    assert neither.get("failed") and "either src or content" in neither["msg"], neither
    archive = install(tmp_path, {"files": [{"content": "x", "dest": str(tmp_path / "d"), "archive": True}]})
    assert archive.get("failed") and "archive needs src" in archive["msg"], archive
    assert not (tmp_path / "d").exists()


# --- hold: `up` does not replace the containerd of a joined node with another version (issue 21) ---
def _containerd(version: str, trace: Path | None = None) -> bytes:
    """A program answering `--version` as containerd does (and, given *trace*, noting that it was asked)."""
    note = f"echo asked >> {trace}\n" if trace else ""
    return f"#!/bin/sh\n{note}echo 'containerd github.com/containerd/containerd/v2 v{version} 0123abc'\n".encode()


def _held(tmp_path: Path, installed: bytes, staged_version: str = "2.3.4", joined: bool = True,
          trace: Path | None = None) -> tuple[dict, Path]:
    """bin/containerd installed as *installed*, the staged archive's at *staged_version* plus a new member; the hold
    on bin/containerd while a kubelet.conf exists (*joined*)."""
    root, stage = tmp_path / "root", tmp_path / "stage"
    (root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    stage.mkdir(exist_ok=True)
    (root / "usr/local/bin/containerd").write_bytes(installed)
    (root / "usr/local/bin/containerd").chmod(0o755)
    (root / "usr/local/bin/ctr").write_bytes(b"old ctr\n")
    archive = _tarball(stage / "containerd.tar.gz", {"containerd": _containerd(staged_version, trace), "ctr": b"new ctr\n",
                                                     "containerd-new": b"new\n"}, "bin/")  # fmt: skip
    marker = tmp_path / "kubelet.conf"
    if joined:
        marker.write_text("x")
    hold = {"paths": [str(root / "usr/local/bin/containerd")], "version": staged_version, "while_exists": str(marker),
            "msg": "Run `bootstrap.py upgrade`."}  # fmt: skip
    args = {"files": [{"src": str(archive), "dest": str(root / "usr/local"), "archive": True},
                      {"content": "new config\n", "dest": str(root / "etc/containerd/config.toml")}], "hold": hold}
    return args, root


def test_a_held_program_of_another_version_is_not_replaced_and_nothing_is_written(tmp_path):
    args, root = _held(tmp_path, _containerd("2.2.1"))
    result = install(tmp_path, args)
    assert result.get("failed") and not result.get("changed")
    message = result["msg"]
    assert f"{root}/usr/local/bin/containerd on " in message and "is v2.2.1, the staged one v2.3.4" in message
    assert f"{tmp_path / 'kubelet.conf'} exists: not replaced. Run `bootstrap.py upgrade`. Nothing was written." in message
    assert b"v2.2.1" in (root / "usr/local/bin/containerd").read_bytes()
    assert (root / "usr/local/bin/ctr").read_bytes() == b"old ctr\n"
    assert not (root / "usr/local/bin/containerd-new").exists() and not (root / "etc/containerd").exists()


def test_a_held_program_is_replaced_on_a_node_that_has_not_joined_or_when_it_reports_the_version(tmp_path):
    args, root = _held(tmp_path, _containerd("2.2.1"), joined=False)  # a fresh node: up installs as before
    assert install(tmp_path, args)["changed"] and b"v2.3.4" in (root / "usr/local/bin/containerd").read_bytes()
    assert (root / "usr/local/bin/containerd-new").read_bytes() == b"new\n"
    (root / "usr/local/bin/containerd").write_bytes(_containerd("2.3.4") + b"# edited by hand\n")  # same version: repaired
    (tmp_path / "kubelet.conf").write_text("x")
    result = install(tmp_path, args)
    assert result["changed"] and not result.get("failed"), result
    assert (root / "usr/local/bin/containerd").read_bytes() == _containerd("2.3.4")


def test_an_unchanged_held_program_is_not_even_asked_its_version(tmp_path):
    trace = tmp_path / "asked"
    args, root = _held(tmp_path, _containerd("2.3.4", trace), trace=trace)
    result = install(tmp_path, args)
    assert result["changed"] and not result.get("failed"), result  # ctr, the new member and the config: written
    assert (root / "usr/local/bin/ctr").read_bytes() == b"new ctr\n" and (root / "usr/local/bin/containerd-new").exists()
    assert not trace.exists()
    assert install(tmp_path, args)["changed"] is False


def test_the_module_documents_its_options():
    """DOCUMENTATION parses (ansible-doc reads it) and names every option, the hold's too."""
    spec = importlib.util.spec_from_file_location("kubestrap_install_doc", LIBRARY / "kubestrap_install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    options = yaml.safe_load(module.DOCUMENTATION)["options"]
    assert sorted(options) == ["directories", "files", "group", "hold", "owner"]
    assert sorted(options["hold"]["suboptions"]) == ["msg", "paths", "version", "version_args", "while_exists"]


def test_an_archive_limited_to_other_members_is_not_held_up(tmp_path):
    """crictl's archive goes to the held program's directory but installs crictl only: written as before, the held
    program (an older one, which notes it when asked its version) neither replaced nor asked."""
    trace = tmp_path / "asked"
    args, root = _held(tmp_path, _containerd("2.2.1", trace))
    crictl = _tarball(tmp_path / "stage" / "crictl.tar.gz", {"crictl": b"crictl\n", "containerd": b"not this one\n"})
    args["files"] = [{"src": str(crictl), "dest": str(root / "usr/local/bin"), "archive": True, "members": ["crictl"]}]
    result = install(tmp_path, args)
    assert result["changed"] and not result.get("failed"), result
    assert (root / "usr/local/bin/crictl").read_bytes() == b"crictl\n" and not trace.exists()
