#!/usr/bin/python
"""Ansible module kubestrap_phase_state: record what a node-local phase applied, check whether it still holds."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: kubestrap_phase_state
short_description: Record what a kubestrap phase applied on a node, or check whether a phase has work there
description:
  - C(mode=record) (the last task of a node-local phase) observes what the phase set up (paths, systemd units,
    sysctls, kernel modules, Debian packages, swap) and writes it with the hash of the phase's inputs to
    I(dir)/<phase>.json (directory 0700, file 0600, replaced atomically). An identical record gives identical
    bytes; the record is kubestrap's bookkeeping, so the task never reports a change.
  - C(mode=check) (one call per host for every phase) reports per phase whether it has work on the node (no
    record, an unreadable record, other inputs, or any difference between the node now and the recorded
    observation, observed again from the record's own spec), each given as a short reason.
  - A file of at most 1 MiB is compared by its sha256, a bigger one by its size and mtime. A directory is
    observed with everything under it (not its mtime). A symbolic link is observed as a link (its target).
    A record observes at most 5000 paths (the record fails beyond; name files, not a directory others fill).
  - Units and packages are observed with one systemctl and one dpkg-query call; when the tool is missing or
    cannot answer (no systemd running), they are observed as C(unknown).
options:
  mode: {description: C(record) or C(check)., type: str, required: true, choices: [check, record]}
  dir:
    description: Where the records are kept (C(kubestrap_node_state_dir)/phases in kubestrap's plays).
    type: path
    required: true
  phase: {description: The phase to record (C(mode=record))., type: str}
  inputs: {description: The hash of the phase's inputs the wrapper computed (C(mode=record))., type: str}
  paths:
    description: Absolute paths to observe (files, directories with everything under them, symbolic links).
    type: list
    elements: path
    default: []
  units: {description: systemd units to observe (active and enabled state)., type: list, elements: str, default: []}
  sysctl: {description: Kernel parameters to observe (C(net.ipv4.ip_forward))., type: list, elements: str, default: []}
  modules: {description: Kernel modules to observe (loaded or not)., type: list, elements: str, default: []}
  packages: {description: Debian packages to observe (installed version)., type: list, elements: str, default: []}
  swap_off: {description: Observe whether any swap is on., type: bool, default: false}
  phases:
    description: Phase name -> the hash of its inputs now (C(mode=check)).
    type: dict
    default: {}
notes:
  - Supports check mode; C(record) then writes nothing and I(written) says whether it would have.
"""

EXAMPLES = r"""
- name: Record what the containerd phase applied
  kubestrap_phase_state:
    mode: record
    dir: /var/lib/kubestrap/phases
    phase: containerd
    inputs: "{{ kubestrap_phase_inputs.containerd }}"
    paths: [/etc/containerd, /usr/local/bin/containerd, /etc/systemd/system/containerd.service]
    units: [containerd.service]
    sysctl: [net.ipv4.ip_forward]
    modules: [overlay, br_netfilter]
    packages: [conntrack]

- name: Which phases have work on this node
  kubestrap_phase_state:
    mode: check
    dir: /var/lib/kubestrap/phases
    phases: "{{ kubestrap_phase_inputs }}"
  register: phase_state
"""

RETURN = r"""
phases:
  description: C(mode=check) - phase name -> C(work) (bool) and C(reasons) (short texts, at most 5 plus "and N more").
  type: dict
  returned: mode=check
  sample: {containerd: {work: true, reasons: ["/etc/containerd/config.toml: content changed"]}}
written:
  description: C(mode=record) - whether the record's bytes differed (they were written; in check mode, would be).
  type: bool
  returned: mode=record
path: {description: C(mode=record) - the record file., type: str, returned: mode=record}
changed:
  description: Always false (a record is kubestrap's bookkeeping, not node configuration).
  type: bool
  returned: always
"""

FORMAT = 1
HASH_LIMIT = 1024 * 1024
MAX_ENTRIES = 5000  # per record: the check runs on every host on every run, on slow nodes
MAX_REASONS = 5
UNKNOWN = "unknown"
NEVER = "never applied on this node"
INPUTS_CHANGED = "inputs changed (versions, settings or kubestrap's own files)"
_PHASE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SPEC_LISTS = ("paths", "units", "sysctl", "modules", "packages")

ARGUMENT_SPEC = {
    "mode": {"type": "str", "required": True, "choices": ["check", "record"]},
    "dir": {"type": "path", "required": True},
    "phase": {"type": "str"},
    "inputs": {"type": "str"},
    "paths": {"type": "list", "elements": "path", "default": []},
    "units": {"type": "list", "elements": "str", "default": []},
    "sysctl": {"type": "list", "elements": "str", "default": []},
    "modules": {"type": "list", "elements": "str", "default": []},
    "packages": {"type": "list", "elements": "str", "default": []},
    "swap_off": {"type": "bool", "default": False},
    "phases": {"type": "dict", "default": {}},
}


class Probe:
    """How observations run commands: the module's run_command, or a stand-in in tests."""

    def __init__(self, module: AnsibleModule | None = None) -> None:
        self.module = module

    def which(self, name: str) -> str | None:
        if self.module is None:
            return None
        return self.module.get_bin_path(name)

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        assert self.module is not None
        rc, out, err = self.module.run_command(argv, expand_user_and_vars=False, environ_update={"LC_ALL": "C"})
        return rc, out, err


# ---------------------------------------------------------------------------------------------------------- observing


def _observe_one(path: str) -> tuple[dict, bool]:
    """The observation of *path* itself (not followed if a link) and whether it is a directory to descend into."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return {"type": "missing"}, False
    except OSError as err:
        return {"type": "unreadable", "error": err.strerror or str(err)}, False
    entry: dict = {"mode": f"{stat.S_IMODE(info.st_mode):04o}", "uid": info.st_uid, "gid": info.st_gid}
    if stat.S_ISLNK(info.st_mode):
        entry["type"] = "link"
        try:
            entry["target"] = os.readlink(path)
        except OSError as err:
            entry["target"] = f"<unreadable: {err.strerror}>"
        return entry, False
    if stat.S_ISDIR(info.st_mode):
        entry["type"] = "dir"
        return entry, True
    if not stat.S_ISREG(info.st_mode):
        entry["type"] = "other"
        return entry, False
    entry.update(type="file", size=info.st_size, mtime_ns=info.st_mtime_ns)
    if info.st_size <= HASH_LIMIT:
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(65536), b""):
                    digest.update(block)
            entry["sha256"] = digest.hexdigest()
        except OSError as err:
            entry["sha256"] = f"<unreadable: {err.strerror}>"
    return entry, False


class TooManyEntries(Exception):
    pass


def observe_paths(paths: list[str], limit: int | None = None) -> dict[str, dict]:
    """path -> observation, for every path and everything under the directories among them (at most *limit*,
    default MAX_ENTRIES)."""
    limit = MAX_ENTRIES if limit is None else limit
    seen: dict[str, dict] = {}
    pending = sorted(set(paths), reverse=True)
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        if len(seen) >= limit:
            raise TooManyEntries(f"more than {limit} paths to observe (at {path}): name the files the phase writes, "
                                 "not a directory others fill")  # fmt: skip
        entry, descend = _observe_one(path)
        seen[path] = entry
        if descend:
            try:
                names = os.listdir(path)
            except OSError as err:
                entry["error"] = err.strerror or str(err)
                continue
            pending.extend(os.path.join(path, name) for name in sorted(names, reverse=True))
    return seen


def parse_systemctl_show(text: str, units: list[str]) -> dict[str, object]:
    """unit -> {"active": ActiveState, "enabled": UnitFileState} from `systemctl show --property=Id,ActiveState,
    UnitFileState UNITS...` (one blank-line separated block per unit, in the order asked); a unit without a
    block is "unknown"."""
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\n\s*\n", text.strip()):
        block = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                block[key.strip()] = value.strip()
        if block:
            blocks.append(block)
    result: dict[str, object] = {}
    by_position = len(blocks) == len(units)
    for index, unit in enumerate(units):
        block = blocks[index] if by_position else next(
            (b for b in blocks if b.get("Id") in (unit, f"{unit}.service")), None)
        if block is None or "ActiveState" not in block:
            result[unit] = UNKNOWN
        else:
            result[unit] = {"active": block["ActiveState"], "enabled": block.get("UnitFileState", "")}
    return result


def parse_dpkg_query(text: str, packages: list[str]) -> dict[str, object]:
    """package -> {"status": ..., "version": ...} or None (not known to dpkg) from `dpkg-query -W
    -f='${Package}\\t${Version}\\t${db:Status-Status}\\n' PACKAGES...`. A name may carry an architecture
    (`libc6:amd64`); of several architectures the installed one wins."""
    found: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 3 or not fields[0]:
            continue
        name, version, status = fields[0].strip(), fields[1].strip(), fields[2].strip()
        if name not in found or (status == "installed" and found[name]["status"] != "installed"):
            found[name] = {"status": status, "version": version}
    return {package: found.get(package.split(":", 1)[0]) for package in packages}


def _observe_units(units: list[str], probe: Probe) -> dict[str, object]:
    if not units:
        return {}
    systemctl = probe.which("systemctl")
    if not systemctl:
        return {unit: UNKNOWN for unit in units}
    rc, out, _err = probe.run([systemctl, "show", "--no-pager", "--property=Id,ActiveState,UnitFileState", *units])
    if rc != 0:
        return {unit: UNKNOWN for unit in units}
    return parse_systemctl_show(out, units)


def _observe_packages(packages: list[str], probe: Probe) -> dict[str, object]:
    if not packages:
        return {}
    dpkg_query = probe.which("dpkg-query")
    if not dpkg_query:
        return {package: UNKNOWN for package in packages}
    rc, out, _err = probe.run([dpkg_query, "-W", "-f=${Package}\t${Version}\t${db:Status-Status}\n", *packages])
    if rc not in (0, 1):  # 1: some package is not known to dpkg (said on stderr)
        return {package: UNKNOWN for package in packages}
    return parse_dpkg_query(out, packages)


def sysctl_path(key: str, root: str = "/proc/sys") -> str:
    """/proc/sys file of a sysctl key (dots, or slashes when a name holds a dot: net/ipv4/conf/eth0.1/rp_filter)."""
    relative = key.strip("/") if "/" in key else key.replace(".", "/")
    return os.path.join(root, relative)


def observe_sysctl(keys: list[str], root: str = "/proc/sys") -> dict[str, object]:
    result: dict[str, object] = {}
    for key in keys:
        try:
            with open(sysctl_path(key, root), encoding="utf-8", errors="replace") as handle:
                result[key] = " ".join(handle.read().split())
        except FileNotFoundError:
            result[key] = None
        except OSError:
            result[key] = UNKNOWN
    return result


def observe_modules(names: list[str], root: str = "/sys/module") -> dict[str, bool]:
    return {name: os.path.isdir(os.path.join(root, name.replace("-", "_"))) for name in names}


def observe_swap(swaps: str = "/proc/swaps") -> str:
    try:
        with open(swaps, encoding="utf-8", errors="replace") as handle:
            lines = [line for line in handle.read().splitlines()[1:] if line.strip()]
    except OSError:
        return UNKNOWN
    return "on" if lines else "off"


def observe(spec: dict, probe: Probe, known: dict | None = None) -> dict:
    """What the node looks like now, for everything *spec* names. *known* may hold units and packages already
    observed (a check observes those of all its phases with one call each)."""
    known = known or {}
    units, packages = spec.get("units", []), spec.get("packages", [])
    if not set(units) <= set(known.get("units", {})):
        known = {**known, "units": _observe_units(units, probe)}
    if not set(packages) <= set(known.get("packages", {})):
        known = {**known, "packages": _observe_packages(packages, probe)}
    observed: dict = {
        "paths": observe_paths(spec.get("paths", [])),
        "units": {unit: known["units"][unit] for unit in units},
        "sysctl": observe_sysctl(spec.get("sysctl", [])),
        "modules": observe_modules(spec.get("modules", [])),
        "packages": {package: known["packages"][package] for package in packages},
    }
    if spec.get("swap_off"):
        observed["swap"] = observe_swap()
    return observed


# --------------------------------------------------------------------------------------------------------- comparing

_TYPE_NAMES = {"file": "a file", "dir": "a directory", "link": "a link", "other": "a special file",
               "missing": "missing", "unreadable": "unreadable"}


def _is_under(path: str, parents: set[str]) -> bool:
    parent = os.path.dirname(path)
    while parent != path:
        if parent in parents:
            return True
        path, parent = parent, os.path.dirname(parent)
    return False


def _path_reasons(path: str, was: dict, now: dict) -> list[str]:
    was_type, now_type = was.get("type"), now.get("type")
    if was_type != now_type:
        if now_type == "missing":
            return [f"{path}: missing"]
        if was_type == "missing":
            return [f"{path}: exists, was missing"]
        return [f"{path}: {_TYPE_NAMES.get(now_type, now_type)}, was {_TYPE_NAMES.get(was_type, was_type)}"]
    reasons = []
    if now_type == "file":
        if was.get("sha256") and now.get("sha256"):
            if was["sha256"] != now["sha256"]:
                reasons.append(f"{path}: content changed")
        elif was.get("size") != now.get("size"):
            reasons.append(f"{path}: content changed (size {now.get('size')}, was {was.get('size')})")
        elif was.get("mtime_ns") != now.get("mtime_ns"):
            reasons.append(f"{path}: modified (mtime changed)")
    if now_type == "link" and was.get("target") != now.get("target"):
        reasons.append(f"{path}: link to {now.get('target')}, was to {was.get('target')}")
    if now_type != "link" and was.get("mode") != now.get("mode"):
        reasons.append(f"{path}: mode {now.get('mode')}, was {was.get('mode')}")
    if (was.get("uid"), was.get("gid")) != (now.get("uid"), now.get("gid")):
        reasons.append(f"{path}: owner {now.get('uid')}:{now.get('gid')}, was {was.get('uid')}:{was.get('gid')}")
    if now.get("error") != was.get("error"):
        reasons.append(f"{path}: unreadable ({now['error']})" if now.get("error") else f"{path}: readable again")
    return reasons


def compare_paths(was: dict[str, dict], now: dict[str, dict]) -> list[str]:
    """Reasons for every difference. Under a directory that is gone, new or no longer a directory only the
    directory itself is named, not every entry under it."""
    missing = {"type": "missing"}
    replaced = {p for p in was if now.get(p, missing).get("type") != was[p].get("type")}
    new = {p for p in now if p not in was}
    reasons = []
    for path in sorted(set(was) | set(now)):
        if _is_under(path, replaced | new):
            continue
        if path in new:
            reasons.append(f"{path}: new entry")
        else:
            reasons.extend(_path_reasons(path, was[path], now.get(path, missing)))
    return reasons


def _unit_text(state: object) -> str:
    if state is None:
        return "not observed"
    if not isinstance(state, dict):
        return "state unknown"
    return f"{state.get('active') or 'no state'}, {state.get('enabled') or 'no unit file'}"


def _package_text(state: object) -> str:
    if state == UNKNOWN:
        return "unknown"
    if not isinstance(state, dict) or state.get("status") in (None, "not-installed", "config-files"):
        return "not installed"
    if state.get("status") == "installed":
        return f"{state.get('version')} installed"
    return f"{state.get('version')} {state.get('status')}"  # half-installed, unpacked, ...


def _value_text(value: object) -> str:
    return "absent" if value is None else str(value)


def compare(was: dict, now: dict) -> list[str]:
    """Short human reasons for every difference between a recorded observation and the node now."""
    reasons = compare_paths(was.get("paths", {}), now.get("paths", {}))
    was_units, now_units = was.get("units", {}), now.get("units", {})
    for unit in sorted(set(was_units) | set(now_units)):
        before, after = was_units.get(unit), now_units.get(unit)
        if isinstance(before, dict) and isinstance(after, dict):
            for key, empty in (("active", "no state"), ("enabled", "no unit file")):
                if before.get(key) != after.get(key):
                    reasons.append(f"unit {unit}: {after.get(key) or empty}, was {before.get(key) or empty}")
        elif before != after:
            reasons.append(f"unit {unit}: {_unit_text(after)}, was {_unit_text(before)}")
    was_sysctl, now_sysctl = was.get("sysctl", {}), now.get("sysctl", {})
    for key in sorted(set(was_sysctl) | set(now_sysctl)):
        if was_sysctl.get(key) != now_sysctl.get(key):
            reasons.append(f"sysctl {key}: {_value_text(now_sysctl.get(key))}, was {_value_text(was_sysctl.get(key))}")
    was_modules, now_modules = was.get("modules", {}), now.get("modules", {})
    for name in sorted(set(was_modules) | set(now_modules)):
        if bool(was_modules.get(name)) != bool(now_modules.get(name)):
            reasons.append(f"module {name}: loaded, was not loaded" if now_modules.get(name) else f"module {name}: not loaded")
    was_packages, now_packages = was.get("packages", {}), now.get("packages", {})
    for package in sorted(set(was_packages) | set(now_packages)):
        before, after = _package_text(was_packages.get(package)), _package_text(now_packages.get(package))
        if before != after:
            reasons.append(f"package {package}: {after}" + ("" if after == "not installed" else f", was {before}"))
    if was.get("swap") != now.get("swap"):
        reasons.append(f"swap: {now.get('swap') or 'not observed'}, was {was.get('swap') or 'not observed'}")
    return reasons


def cap(reasons: list[str], limit: int = MAX_REASONS) -> list[str]:
    if len(reasons) <= limit:
        return reasons
    return [*reasons[:limit], f"and {len(reasons) - limit} more"]


# ------------------------------------------------------------------------------------------------- records and phases


def normalize_spec(params: dict) -> dict:
    """The spec a record keeps: sorted, de-duplicated lists (so the same spec in another order is the same record)."""
    spec: dict = {name: sorted({str(item) for item in params.get(name) or []}) for name in _SPEC_LISTS}
    spec["paths"] = sorted({os.path.normpath(p) for p in spec["paths"]})
    spec["swap_off"] = bool(params.get("swap_off"))
    return spec


def record_path(directory: str, phase: str) -> str:
    return os.path.join(directory, f"{phase}.json")


def record_bytes(phase: str, inputs: str, spec: dict, observed: dict) -> bytes:
    record = {"format": FORMAT, "phase": phase, "inputs": inputs, "spec": spec, "observed": observed}
    return (json.dumps(record, sort_keys=True, indent=1) + "\n").encode("utf-8")


def _valid_record(record: object) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("spec"), dict) or not isinstance(record.get("observed"), dict):
        return False
    spec = record["spec"]
    return all(isinstance(spec.get(name, []), list) for name in _SPEC_LISTS) and all(
        isinstance(record["observed"].get(name, {}), dict) for name in _SPEC_LISTS)


def _load(directory: str, phase: str, inputs: str) -> tuple[dict | None, list[str]]:
    """The phase's record when it can be compared with the node, else the reason it has work without looking."""
    try:
        with open(record_path(directory, phase), "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None, [NEVER]
    except OSError as err:
        return None, [f"record unreadable ({err.strerror or err})"]
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError as err:
        return None, [f"record corrupt ({err})"]
    if not _valid_record(record):
        return None, ["record corrupt (not a kubestrap phase record)"]
    if record.get("format") != FORMAT:
        return None, [f"record format {record.get('format')!r} not understood"]
    if record.get("inputs") != inputs:
        return None, [INPUTS_CHANGED]
    return record, []


def check_phases(directory: str, phases: dict[str, str], probe: Probe) -> dict[str, dict]:
    """phase -> {"work": bool, "reasons": [...]}; the units and packages of all phases are observed together."""
    records: dict[str, dict] = {}
    result: dict[str, dict] = {}
    for phase, inputs in sorted(phases.items()):
        record, reasons = _load(directory, phase, inputs)
        if record is None:
            result[phase] = {"work": True, "reasons": reasons}
        else:
            records[phase] = record
    specs = {phase: normalize_spec(record["spec"]) for phase, record in records.items()}
    units = sorted({unit for spec in specs.values() for unit in spec["units"]})
    packages = sorted({package for spec in specs.values() for package in spec["packages"]})
    known = {"units": _observe_units(units, probe), "packages": _observe_packages(packages, probe)}
    for phase, record in records.items():
        try:
            reasons = compare(record["observed"], observe(specs[phase], probe, known))
        except TooManyEntries as err:
            reasons = [str(err)]
        except (AttributeError, KeyError, TypeError, ValueError) as err:  # valid JSON, but not as written
            reasons = [f"record corrupt (unexpected content: {err!r})"]
        result[phase] = {"work": bool(reasons), "reasons": cap(reasons)}
    return result


def check_phase(directory: str, phase: str, inputs: str, probe: Probe) -> dict:
    """{"work": bool, "reasons": [...]} for one phase."""
    return check_phases(directory, {phase: inputs}, probe)[phase]


def write_record(directory: str, phase: str, content: bytes, check_mode: bool) -> bool:
    """Write *content* as the phase's record unless it is already that; whether the bytes differed."""
    path = record_path(directory, phase)
    try:
        with open(path, "rb") as handle:
            differs = handle.read() != content
    except FileNotFoundError:
        differs = True
    if check_mode:
        return differs
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if stat.S_IMODE(os.stat(directory).st_mode) != 0o700:
        os.chmod(directory, 0o700)
    if not differs:
        if stat.S_IMODE(os.stat(path).st_mode) != 0o600:
            os.chmod(path, 0o600)
        return False
    handle_fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{phase}.", suffix=".tmp")  # created 0600
    try:
        with os.fdopen(handle_fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.lexists(temp):
            os.unlink(temp)
        raise
    return True


def _phase_name(module: AnsibleModule, name: object) -> str:
    if not isinstance(name, str) or not _PHASE_NAME.match(name):
        module.fail_json(msg=f"phase name {name!r} is not a plain name (letters, digits, '_', '.', '-')")
    return str(name)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("mode", "record", ("phase", "inputs"))],
        supports_check_mode=True,
    )
    params = module.params
    directory = params["dir"]
    probe = Probe(module)
    if params["mode"] == "check":
        wanted = {_phase_name(module, name): str(inputs) for name, inputs in params["phases"].items()}
        module.exit_json(changed=False, phases=check_phases(directory, wanted, probe))
    phase = _phase_name(module, params["phase"])
    spec = normalize_spec(params)
    relative = [p for p in spec["paths"] if not os.path.isabs(p)]
    if relative:
        module.fail_json(msg=f"the {phase} record takes absolute paths only, got {', '.join(relative)}")
    try:
        content = record_bytes(phase, params["inputs"], spec, observe(spec, probe))
    except TooManyEntries as err:
        module.fail_json(msg=f"the {phase} record: {err}")
    try:
        written = write_record(directory, phase, content, module.check_mode)
    except OSError as err:
        module.fail_json(msg=f"cannot write the {phase} record in {directory}: {err}")
    module.exit_json(changed=False, written=written, path=record_path(directory, phase))


if __name__ == "__main__":
    main()
