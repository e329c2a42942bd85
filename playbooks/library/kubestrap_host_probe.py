#!/usr/bin/python
"""Ansible module kubestrap_host_probe: read in one call what a phase needs to know about a node."""

from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable

DOCUMENTATION = r"""
module: kubestrap_host_probe
short_description: Read what a kubestrap phase needs to know about a node, in one module run, changing nothing
description:
  - Each module run costs a Python start on the node (seconds on small or emulated machines), so the read-only
    questions a phase asks (which paths exist, a few small files, which kernel modules are missing, which TCP
    ports listen, CPUs, memory, product UUID) are answered together instead of by one task each.
  - Reads only C(/proc), C(/sys) and the named paths; never changes the node.
  - Everything but main() is plain Python without Ansible's module_utils, so preflight's action plugin can also
    run this file's probe() as a bare Python script (no module payload to unpack and compile on the node).
options:
  paths: {description: Paths whose existence is reported (a dangling link counts)., type: list, elements: path, default: []}
  globs: {description: Shell patterns of paths; those that match a path are reported., type: list, elements: str, default: []}
  files:
    description: Small text files to read (at most 64 KiB each); a file that cannot be read is returned as null.
    type: list
    elements: path
    default: []
  modules:
    description: Kernel modules to look for (loaded, or built into the running kernel); C(-) and C(_) are the same.
    type: list
    elements: str
    default: []
  sysctls:
    description: Kernel parameters (sysctl keys as sysctl(8) names them) whose live values are read from C(/proc/sys).
    type: list
    elements: str
    default: []
  listening: {description: Report the TCP ports in the LISTEN state (IPv4 and IPv6)., type: bool, default: false}
  hardware: {description: Report CPUs, memory and the DMI product UUID., type: bool, default: false}
  facts:
    description:
      - Return as facts the OS as Ansible's setup names it (C(distribution), C(distribution_version),
        C(distribution_major_version), C(distribution_minor_version), C(distribution_release), C(os_family)) from
        C(/etc/os-release), C(architecture), C(kernel), C(hostname) and C(system), so the fact cache holds what
        later phases read without a setup run; also report the node's clock (C(clock)) and the user the module
        ran as (C(uid)).
    type: bool
    default: false
  interfaces:
    description: Report each network interface's MAC address and IPv4 addresses (from C(ip -o -4 addr show)).
    type: bool
    default: false
  units:
    description: systemd units whose load, unit-file and active states are reported (one C(systemctl show)).
    type: list
    elements: str
    default: []
  unit_types:
    description: systemd unit types (C(swap), C(target), ...) whose units, loaded or not, are listed (one
      C(systemctl list-units --all)).
    type: list
    elements: str
    default: []
  packages:
    description: Debian packages whose installation is reported (one C(dpkg-query)).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Look at the node once
  kubestrap_host_probe:
    paths: [/sys/fs/cgroup/cgroup.controllers, /etc/kubernetes/kubelet.conf]
    files: [/etc/machine-id]
    modules: [overlay, br_netfilter]
    listening: true
    hardware: true
  register: probe
"""

RETURN = r"""
present: {description: The given paths that exist, in the given order., type: list, returned: always}
matched: {description: The given patterns that match a path, in the given order., type: list, returned: always}
files: {description: Path -> content (null when unreadable)., type: dict, returned: always}
files_truncated: {description: The given files longer than what is read of them (64 KiB)., type: list, returned: always}
modules_missing: {description: The given modules neither loaded nor built in, in the given order., type: list, returned: always}
sysctls:
  description: Key -> its live value as C(sysctl -n) prints it (null when the kernel has no such key).
  type: dict
  returned: always
tcp_listening: {description: Sorted TCP ports in LISTEN (empty unless I(listening))., type: list, returned: always}
hardware: {description: "vcpus, memtotal_mb, product_uuid (lower case, empty if unreadable)", type: dict, returned: when hardware}
ansible_facts:
  description: "ansible_distribution*, ansible_os_family, ansible_architecture, ansible_kernel, ansible_hostname"
  type: dict
  returned: when facts
clock: {description: The node's clock (seconds since the epoch) while the module ran., type: float, returned: when facts}
uid: {description: The effective user id the module ran as., type: int, returned: when facts}
interfaces:
  description: "Interface name -> {mac: the MAC (empty if none), ipv4: [addresses]}"
  type: dict
  returned: when interfaces
units:
  description: "Unit -> {load: LoadState (loaded, not-found, masked...), file: UnitFileState, active: ActiveState}"
  type: dict
  returned: always
unit_list:
  description: "The units of I(unit_types): [{unit, load, active, sub}] as C(systemctl list-units --output=json) lists them"
  type: list
  returned: always
packages_installed: {description: The given packages dpkg has installed, in the given order., type: list, returned: always}
"""

FILE_LIMIT = 64 * 1024
LISTEN = "0A"


def read_text(path: str, limit: int = FILE_LIMIT) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def _size(path: str) -> int:
    """The file's size (0 when it cannot be looked at; /proc files report 0 and are read whole)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def sysctl_path(key: str) -> str:
    """The /proc/sys file of a sysctl key: dots separate its parts, and a slash stands for a dot within a part
    (net.ipv4.conf.eth0/100.rp_filter is /proc/sys/net/ipv4/conf/eth0.100/rp_filter), as sysctl(8) reads them."""
    return "/proc/sys/" + "/".join(part.replace("/", ".") for part in key.split("."))


def sysctl_values(keys: list[str]) -> dict[str, str | None]:
    values = {}
    for key in keys:
        text = read_text(sysctl_path(key))
        values[key] = None if text is None else text.rstrip("\n")
    return values


def _module_name(name: str) -> str:
    return name.replace("-", "_")


def missing_modules(wanted: list[str], proc_modules: str, builtin: str) -> list[str]:
    """The modules of *wanted* not in /proc/modules' text and not in modules.builtin's text."""
    have = {_module_name(line.split()[0]) for line in proc_modules.splitlines() if line.strip()}
    for line in builtin.splitlines():  # kernel/net/bridge/br_netfilter.ko
        base = line.strip().rsplit("/", 1)[-1]
        if base.endswith(".ko"):
            have.add(_module_name(base[:-3]))
    return [name for name in wanted if _module_name(name) not in have]


def listening_ports(tables: list[str]) -> list[int]:
    """TCP ports in LISTEN from the text of /proc/net/tcp and /proc/net/tcp6."""
    ports = set()
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def memtotal_mb(meminfo: str) -> int:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def architecture(machine: str) -> str:
    """The kernel's machine name as Ansible's setup reports it (ansible_architecture)."""
    return "i386" if len(machine) == 4 and machine.startswith("i") and machine.endswith("86") else machine


# os-release ID -> the distribution name Ansible's setup reports (ID capitalized otherwise)
DISTRIBUTIONS = {"debian": "Debian", "ubuntu": "Ubuntu", "centos": "CentOS", "rhel": "RedHat", "fedora": "Fedora",
                 "rocky": "Rocky", "almalinux": "AlmaLinux", "ol": "OracleLinux", "opensuse-leap": "openSUSE Leap",
                 "sles": "SLES", "arch": "Archlinux", "alpine": "Alpine", "linuxmint": "Linux Mint",
                 "pop": "Pop!_OS"}  # fmt: skip
# os_family as setup names it, by os-release ID or ID_LIKE (the distribution's name otherwise)
FAMILIES = {"Debian": {"debian", "ubuntu", "linuxmint", "pop", "raspbian", "kali", "devuan"},
            "RedHat": {"rhel", "centos", "fedora", "rocky", "almalinux", "ol"},
            "Suse": {"suse", "sles", "opensuse", "opensuse-leap", "opensuse-tumbleweed"}}  # fmt: skip


def os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key] = value.strip().strip("'\"")
    return values


def distribution_facts(release: dict[str, str], debian_version: str | None) -> dict[str, str]:
    """distribution* and os_family as setup names them, from /etc/os-release (and /etc/debian_version, which
    carries Debian's point release: 12.11 where os-release says 12)."""
    ident = release.get("ID", "").lower()
    name = DISTRIBUTIONS.get(ident, ident.capitalize() or "NA")
    version = release.get("VERSION_ID", "NA")
    point = (debian_version or "").strip()
    if ident == "debian" and point[:1].isdigit():
        version = point
    parts = version.split(".")
    like = release.get("ID_LIKE", "").lower().split()
    family = next((fam for fam, ids in FAMILIES.items() if ident in ids or ids & set(like)), name)
    facts = {"distribution": name, "distribution_version": version, "distribution_major_version": parts[0],
             "distribution_release": release.get("VERSION_CODENAME") or release.get("UBUNTU_CODENAME") or "NA",
             "os_family": family}  # fmt: skip
    if len(parts) > 1:
        facts["distribution_minor_version"] = parts[1]
    return facts


def os_facts() -> dict:
    """What later phases read from the fact cache, named (ansible_*) as setup names them."""
    release = os_release(read_text("/etc/os-release") or read_text("/usr/lib/os-release") or "")
    facts = {f"ansible_{key}": value for key, value in distribution_facts(release, read_text("/etc/debian_version")).items()}
    facts.update(ansible_architecture=architecture(platform.machine()), ansible_kernel=platform.release(),
                 ansible_hostname=platform.node().split(".")[0], ansible_system=platform.system())  # fmt: skip
    return facts


def ipv4_interfaces(ip_output: str, mac_of: Callable[[str], str]) -> dict:
    """Interface -> {mac, ipv4} from `ip -o -4 addr show` (one address a line; a name may carry @peer)."""
    found: dict = {}
    for line in ip_output.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] != "inet":
            continue
        name = fields[1].split("@", 1)[0]
        entry = found.setdefault(name, {"mac": mac_of(name), "ipv4": []})
        entry["ipv4"].append(fields[3].split("/", 1)[0])
    return found


def _mac(name: str) -> str:
    return (read_text(f"/sys/class/net/{name}/address") or "").strip().lower()


def _program(name: str) -> str | None:
    """A program's path: on PATH, or in the system directories a module's minimal PATH may lack."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"]))


def _ip_addresses() -> str:
    ip = _program("ip")
    if not ip:
        return ""
    return subprocess.run([ip, "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout


def _systemctl(*args: str) -> str:
    """systemctl's output ('' without systemctl); its exit code is not judged: the callers read what it printed."""
    found = _program("systemctl")
    if not found:
        return ""
    return subprocess.run([found, "--no-pager", *args], capture_output=True, text=True, check=False).stdout


SHOWN = {"LoadState": "load", "UnitFileState": "file", "ActiveState": "active"}
DPKG_FORMAT = "${Package} ${db:Status-Status}\n"


def installed_packages(names: list[str], listed: str) -> list[str]:
    """The packages of *names* that `dpkg-query -W -f='${Package} ${db:Status-Status}\\n' NAMES` lists as installed
    (it lists only the known ones: a package never installed is left out, with an error on stderr)."""
    have = {fields[0] for fields in map(str.split, listed.splitlines()) if len(fields) == 2 and fields[1] == "installed"}
    return [name for name in names if name in have]


def _dpkg_query(names: list[str]) -> str:
    found = _program("dpkg-query")
    if not found:
        return ""
    return subprocess.run([found, "-W", "-f=" + DPKG_FORMAT, "--", *names], capture_output=True, text=True,
                          check=False).stdout  # fmt: skip


def unit_states(names: list[str], shown: str) -> dict[str, dict[str, str]]:
    """Unit -> {load, file, active} from `systemctl show --property=... -- NAMES`: a block of KEY=VALUE lines per
    unit, in the given order, blank lines between; a unit systemctl printed nothing for is 'unknown'."""
    blocks = shown.strip("\n").split("\n\n") if shown.strip() else []
    states = {}
    for index, name in enumerate(names):
        block = blocks[index] if index < len(blocks) else ""
        pairs = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[name] = {short: pairs.get(key, "unknown" if short == "load" else "") for key, short in SHOWN.items()}
    return states


def probe(p: dict) -> dict:
    """The answers to *p* (the module's options, every one given)."""
    result: dict = {
        "changed": False,
        "present": [path for path in p["paths"] if os.path.lexists(path)],
        "matched": [pattern for pattern in p["globs"] if glob.glob(pattern)],
        "files": {path: read_text(path) for path in p["files"]},
        "files_truncated": [path for path in p["files"] if _size(path) > FILE_LIMIT],
        "modules_missing": [],
        "sysctls": sysctl_values(p.get("sysctls") or []),
        "tcp_listening": [],
    }
    if p["modules"]:
        builtin = read_text(f"/lib/modules/{platform.release()}/modules.builtin", limit=1 << 22) or ""
        result["modules_missing"] = missing_modules(p["modules"], read_text("/proc/modules", limit=1 << 22) or "", builtin)
    if p["listening"]:
        tables = [read_text(f"/proc/net/{name}", limit=1 << 24) or "" for name in ("tcp", "tcp6")]
        result["tcp_listening"] = listening_ports(tables)
    if p["hardware"]:
        result["hardware"] = {
            "vcpus": os.cpu_count() or 0,
            "memtotal_mb": memtotal_mb(read_text("/proc/meminfo") or ""),
            "product_uuid": (read_text("/sys/class/dmi/id/product_uuid") or "").strip().lower(),
        }
    if p["facts"]:
        result["ansible_facts"] = os_facts()
        result["uid"] = os.geteuid()
        result["clock"] = time.time()
    if p["interfaces"]:
        result["interfaces"] = ipv4_interfaces(_ip_addresses(), _mac)
    units = p.get("units") or []
    result["units"] = unit_states(units, _systemctl("show", "--property=" + ",".join(SHOWN), "--", *units)) if units else {}
    types = p.get("unit_types") or []
    listed = _systemctl("list-units", "--all", "--type=" + ",".join(types), "--output=json") if types else ""
    result["unit_list"] = json.loads(listed) if listed.strip() else []
    packages = p.get("packages") or []
    result["packages_installed"] = installed_packages(packages, _dpkg_query(packages)) if packages else []
    return result


OPTIONS = {
    "paths": {"type": "list", "elements": "path", "default": []},
    "globs": {"type": "list", "elements": "str", "default": []},
    "files": {"type": "list", "elements": "path", "default": []},
    "modules": {"type": "list", "elements": "str", "default": []},
    "sysctls": {"type": "list", "elements": "str", "default": []},
    "listening": {"type": "bool", "default": False},
    "hardware": {"type": "bool", "default": False},
    "facts": {"type": "bool", "default": False},
    "interfaces": {"type": "bool", "default": False},
    "units": {"type": "list", "elements": "str", "default": []},
    "unit_types": {"type": "list", "elements": "str", "default": []},
    "packages": {"type": "list", "elements": "str", "default": []},
}


def main() -> None:
    # imported here: probe() and everything above run without Ansible's module_utils too
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(argument_spec=OPTIONS, supports_check_mode=True)
    try:
        result = probe(module.params)
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        module.fail_json(msg=f"kubestrap_host_probe: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
