#!/usr/bin/python
"""Ansible module kubestrap_install: directories, files and release-archive members put in place in one run."""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: kubestrap_install
short_description: Create directories and install files from staged files and release archives, in one module run
description:
  - Each module run costs a Python start on the node (seconds on small or emulated machines), and
    M(ansible.builtin.unarchive) reads an archive three times (list, compare, extract). This module
    creates the given directories and installs the given files in one run, reading each archive once.
  - A file is written only when its content differs from what is installed (same size and same bytes
    means the same file), through a temporary file renamed into place, so a running binary is replaced
    atomically; owner and mode are corrected when they differ. Archives of any compression Python's
    tarfile reads are supported; only regular files and directories are taken from them, and a member
    that would land outside I(dest) is refused.
  - Supports check mode, and diff mode for files given as I(content).
options:
  directories:
    description: Directories to create (with their parents); I(mode) defaults to 0755.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: The directory., type: path, required: true}
      mode: {description: Its mode (octal string)., type: str, default: "0755"}
  files:
    description: Files to install.
    type: list
    elements: dict
    default: []
    suboptions:
      src: {description: "A file on the node (with I(archive), a tar archive); this or I(content).", type: path}
      content:
        description: >-
          The file's text, given in the task (a template rendered on the controller, for example); this or I(src).
          Not for secrets: module arguments can be logged.
        type: str
      dest:
        description: "The installed file; with I(archive), the directory members are placed under."
        type: path
        required: true
      archive: {description: I(src) is a tar archive whose regular files are installed under I(dest)., type: bool, default: false}
      members:
        description: With I(archive), only these members (names as listed by C(tar -t), a leading C(./) ignored).
        type: list
        elements: str
      mode:
        description: >-
          Mode of the installed file(s) (octal string); default the archive member's mode, or 0755 (0644 with I(content)).
        type: str
      strip_components:
        description: With I(archive), leading path components removed from member names (as C(tar --strip-components)).
        type: int
        default: 0
  hold:
    description:
      - >-
        Programs not to replace with another version while I(while_exists) exists (the containerd of a node that has
        joined the cluster, which C(bootstrap.py upgrade) replaces drained). Looked at only when such a program's
        installed bytes differ from the staged ones, so an unchanged node pays nothing. Then the installed program is
        asked its version (I(version_args)); a readable version other than I(version) fails the run before anything
        of its file or archive is written (list that item first, only the directories come before it), naming the
        path, both versions and I(msg). A program that reports I(version) or no readable version is replaced as usual
        (a repair).
    type: dict
    suboptions:
      paths: {description: The installed programs held., type: list, elements: path, required: true}
      version: {description: "The version the staged files carry (the pin).", type: str, required: true}
      version_args:
        description: Arguments that make a program print its version.
        type: list
        elements: str
        default: [--version]
      while_exists: {description: The hold applies while this path exists., type: path, required: true}
      msg: {description: What to do instead; appended to the failure., type: str, default: ""}
  owner: {description: Owner of everything installed., type: str, default: root}
  group: {description: Group of everything installed., type: str, default: root}
"""

EXAMPLES = r"""
- name: Install containerd, runc and the CNI plugins
  kubestrap_install:
    directories: [{path: /opt/cni/bin}]
    files:
      - {src: /var/cache/kubestrap/containerd.tar.gz, dest: /usr/local, archive: true}
      - {src: /var/cache/kubestrap/runc.amd64, dest: /usr/local/sbin/runc, mode: "0755"}
      - {src: /var/cache/kubestrap/crictl.tar.gz, dest: /usr/local/bin, archive: true, members: [crictl]}

- name: Install a program and its systemd units, rendered on the controller
  kubestrap_install:
    files:
      - {content: "{{ lookup('ansible.builtin.file', 'tool.py', rstrip=false) }}", dest: /usr/local/sbin/tool, mode: "0755"}
      - content: "{{ lookup('ansible.builtin.template', 'tool.service.j2') }}"
        dest: /etc/systemd/system/tool.service
"""

RETURN = r"""
directories: {description: The directories created or corrected., type: list, returned: always}
installed:
  description: "One entry per file written or corrected: path and what changed (new, content, mode, owner)."
  type: list
  returned: always
"""

CHUNK = 1024 * 1024


class InstallError(Exception):
    """A problem with the input that names what to fix."""


def member_name(name: str) -> str:
    """tar member name without a leading ./ (the CNI plugins' tarball lists ./bridge)."""
    while name.startswith("./"):
        name = name[2:]
    return name


def safe_join(root: str, name: str) -> str:
    """root/name, refusing absolute names and .. that would leave root."""
    if os.path.isabs(name) or ".." in name.split("/"):
        raise InstallError(f"archive member {name!r} would land outside {root}")
    return os.path.join(root, name)


def same_content(path: str, size: int, chunks: Iterable[bytes]) -> bool:
    """Whether the regular file at path holds exactly the bytes *chunks* yields (size known up front).
    Consumes chunks only while they match."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        return False
    with open(path, "rb") as handle:
        for chunk in chunks:
            if handle.read(len(chunk)) != chunk:
                return False
    return True


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    while True:
        chunk = handle.read(CHUNK)
        if not chunk:
            return
        yield chunk


DIFF_LIMIT = 64 * 1024


def text_diff(dest: str, data: bytes) -> dict:
    """Ansible's --diff entry for a file given as content: before and after as text (a binary or large side
    is named, not shown)."""

    def shown(raw: bytes) -> str:
        if len(raw) > DIFF_LIMIT or b"\0" in raw:
            return f"({len(raw)} bytes, not shown)\n"
        return raw.decode("utf-8", "replace")

    try:
        with open(dest, "rb") as handle:
            before = shown(handle.read(DIFF_LIMIT + 1))
    except FileNotFoundError:
        before = ""
    return {"before_header": dest, "after_header": dest, "before": before, "after": shown(data)}


VERSION = re.compile(r"v?(\d+\.\d+\.\d+)")


class Hold:
    """Programs not replaced with another version (the option `hold`): active only while its marker exists."""

    def __init__(self, spec: dict | None) -> None:
        spec = spec or {}
        self.active = bool(spec) and os.path.lexists(spec["while_exists"])
        self.paths = {os.path.normpath(p) for p in spec.get("paths") or []} if self.active else set()
        self.spec = spec

    def holds(self, path: str) -> bool:
        return os.path.normpath(path) in self.paths

    def under(self, dest: str) -> bool:
        """Whether a held program may be installed under the directory *dest* (an archive's)."""
        root = os.path.normpath(dest) + os.sep
        return any(p.startswith(root) for p in self.paths)

    def check(self, path: str, written: list[str]) -> None:
        """*path* is held and its installed bytes differ from the staged ones: refuse unless it reports the version
        given (or none readable). *written*: what this run changed before (named in the refusal)."""
        try:
            out = subprocess.run([path, *self.spec["version_args"]], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return
        found = VERSION.search(out.stdout + out.stderr) if out.returncode == 0 else None
        wanted = VERSION.search(self.spec["version"])
        if not found or not wanted or found.group(1) == wanted.group(1):
            return
        before = f" Only these were created before: {', '.join(written)}." if written else " Nothing was written."
        raise InstallError(f"{path} on {os.uname().nodename} is v{found.group(1)}, the staged one v{wanted.group(1)}, and "
                           f"{self.spec['while_exists']} exists: not replaced. {self.spec['msg']}{before}".strip())


class Installer:
    def __init__(self, uid: int, gid: int, check_mode: bool, diff: bool = False, hold: Hold | None = None) -> None:
        self.uid, self.gid, self.check_mode = uid, gid, check_mode
        self.diff: list[dict] | None = [] if diff else None
        self.directories: list[str] = []
        self.installed: list[dict] = []
        self.hold = hold or Hold(None)

    def _written(self) -> list[str]:
        return self.directories + [entry["path"] for entry in self.installed]

    def directory(self, path: str, mode: int) -> None:
        missing = []
        current = path
        while current and not os.path.lexists(current):
            missing.append(current)
            current = os.path.dirname(current)
        if current and not os.path.isdir(current):
            raise InstallError(f"{current} exists and is not a directory (needed for {path})")
        for new in reversed(missing):
            if not self.check_mode:
                os.mkdir(new, mode)
                os.chmod(new, mode)
                os.chown(new, self.uid, self.gid)
            self.directories.append(new)
        if missing:
            return
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) != mode or (st.st_uid, st.st_gid) != (self.uid, self.gid):
            if not self.check_mode:
                os.chmod(path, mode)
                os.chown(path, self.uid, self.gid)
            self.directories.append(path)

    def _attributes(self, dest: str, mode: int) -> list[str]:
        st = os.lstat(dest)
        wrong = []
        if stat.S_IMODE(st.st_mode) != mode:
            wrong.append("mode")
            if not self.check_mode:
                os.chmod(dest, mode)
        if (st.st_uid, st.st_gid) != (self.uid, self.gid):
            wrong.append("owner")
            if not self.check_mode:
                os.chown(dest, self.uid, self.gid)
        return wrong

    def _write(self, dest: str, mode: int, chunks: Iterable[bytes], reason: str) -> None:
        self.installed.append({"path": dest, "changed": [reason]})
        if self.check_mode:
            for _ in chunks:
                pass
            return
        parent = os.path.dirname(dest)
        if not os.path.isdir(parent):
            self.directory(parent, 0o755)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", dir=parent)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, mode)
            os.chown(tmp, self.uid, self.gid)
            os.replace(tmp, dest)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def file(self, src: str, dest: str, mode: int) -> None:
        size = os.stat(src).st_size
        with open(src, "rb") as handle:
            if same_content(dest, size, _chunks(handle)):
                wrong = self._attributes(dest, mode)
                if wrong:
                    self.installed.append({"path": dest, "changed": wrong})
                return
        reason = "content" if os.path.lexists(dest) else "new"
        if reason == "content" and self.hold.holds(dest):
            self.hold.check(dest, self._written())
        with open(src, "rb") as handle:
            self._write(dest, mode, _chunks(handle), reason)

    def content(self, data: bytes, dest: str, mode: int) -> None:
        if same_content(dest, len(data), [data]):
            wrong = self._attributes(dest, mode)
            if wrong:
                self.installed.append({"path": dest, "changed": wrong})
            return
        if self.diff is not None:
            self.diff.append(text_diff(dest, data))
        self._write(dest, mode, [data], "content" if os.path.lexists(dest) else "new")

    def archive(self, src: str, dest: str, members: list[str] | None, mode: int | None, strip: int = 0) -> None:
        wanted = {member_name(m) for m in members} if members is not None else None
        found: set[str] = set()
        redo: list[str] = []
        # with a held program among what this archive may install, every write of it waits until its held members were
        # compared (an archive limited to other members, crictl's, is not held up)
        held_here = self.hold.under(dest) and (wanted is None or any(
            self.hold.holds(os.path.join(dest, "/".join(m.split("/")[strip:]))) for m in wanted))
        held_differ: list[str] = []
        with tarfile.open(src, "r:*") as tar:
            for info in tar:
                name = member_name(info.name)
                if not name or (wanted is not None and name not in wanted):
                    continue
                relative = "/".join(name.split("/")[strip:])
                if not relative:
                    continue
                target = safe_join(dest, relative)
                if info.isdir():
                    if wanted is None and not os.path.isdir(target):
                        self.directory(target, 0o755)  # an existing one (/usr/local/bin) is left as it is
                    continue
                if not info.isfile():
                    raise InstallError(f"{src}: member {info.name!r} is not a regular file or directory")
                found.add(name)
                file_mode = mode if mode is not None else (info.mode & 0o7777)
                handle = tar.extractfile(info)
                if os.path.lexists(target):
                    if same_content(target, info.size, _chunks(handle)):
                        wrong = self._attributes(target, file_mode)
                        if wrong:
                            self.installed.append({"path": target, "changed": wrong})
                    else:
                        redo.append(name)  # the stream is partly consumed: written in a second pass
                        if self.hold.holds(target):
                            held_differ.append(target)
                    continue
                if held_here:
                    redo.append(name)
                    continue
                self._write(target, file_mode, _chunks(handle), "new")
        if wanted is not None and wanted - found:
            raise InstallError(f"{src} has no member {', '.join(sorted(wanted - found))}")
        for target in held_differ:
            self.hold.check(target, self._written())
        if redo:
            with tarfile.open(src, "r:*") as tar:
                for info in tar:
                    name = member_name(info.name)
                    if name in redo and info.isfile():
                        file_mode = mode if mode is not None else (info.mode & 0o7777)
                        target = safe_join(dest, "/".join(name.split("/")[strip:]))
                        reason = "content" if os.path.lexists(target) else "new"
                        self._write(target, file_mode, _chunks(tar.extractfile(info)), reason)


def _mode(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value), 8)
    except ValueError:
        raise InstallError(f"{what}: mode {value!r} is not an octal number such as 0755") from None


def run(module: AnsibleModule) -> dict:
    params = module.params
    try:
        uid = pwd.getpwnam(params["owner"]).pw_uid
        gid = grp.getgrnam(params["group"]).gr_gid
    except KeyError as exc:
        raise InstallError(f"no such user or group: {exc.args[0]}") from None
    installer = Installer(uid, gid, module.check_mode, diff=module._diff, hold=Hold(params.get("hold")))
    for item in params["directories"]:
        installer.directory(item["path"], _mode(item["mode"], item["path"]))
    for item in params["files"]:
        if (item["src"] is None) == (item["content"] is None):
            raise InstallError(f"{item['dest']}: give either src or content")
        if item["content"] is not None:
            if item["archive"]:
                raise InstallError(f"{item['dest']}: archive needs src, not content")
            mode = _mode(item.get("mode"), item["dest"])
            installer.content(item["content"].encode(), item["dest"], 0o644 if mode is None else mode)
            continue
        if not os.path.isfile(item["src"]):
            raise InstallError(f"{item['src']} is not a file on {os.uname().nodename} (was the artifacts phase run?)")
        mode = _mode(item.get("mode"), item["dest"])
        if item["archive"]:
            installer.archive(item["src"], item["dest"], item.get("members"), mode, item["strip_components"])
        else:
            installer.file(item["src"], item["dest"], 0o755 if mode is None else mode)
    result = {
        "changed": bool(installer.directories or installer.installed),
        "directories": installer.directories,
        "installed": installer.installed,
    }
    if installer.diff:
        result["diff"] = installer.diff
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directories": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {"path": {"type": "path", "required": True}, "mode": {"type": "str", "default": "0755"}},
            },
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "src": {"type": "path"},
                    "content": {"type": "str"},
                    "dest": {"type": "path", "required": True},
                    "archive": {"type": "bool", "default": False},
                    "members": {"type": "list", "elements": "str"},
                    "mode": {"type": "str"},
                    "strip_components": {"type": "int", "default": 0},
                },
            },
            "hold": {
                "type": "dict",
                "options": {
                    "paths": {"type": "list", "elements": "path", "required": True},
                    "version": {"type": "str", "required": True},
                    "version_args": {"type": "list", "elements": "str", "default": ["--version"]},
                    "while_exists": {"type": "path", "required": True},
                    "msg": {"type": "str", "default": ""},
                },
            },
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
        },
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except (InstallError, OSError, tarfile.TarError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
