"""Action kubestrap_preflight_probe: everything preflight asks one node, in one task and one module run.

Each task costs the controller a worker process and a round of variable templating per host, and each module
run costs the node a Python start; with many nodes on a small controller that cost is what preflight's time
is made of. This action does, for its node, what used to be eight tasks:

- waits until the node answers over SSH (retrying until C(connect_timeout), as wait_for_connection did);
- runs kubestrap_host_probe's probe once with become, as a bare Python program (a module run would first
  unpack and compile Ansible's module_utils on the node: most of a module run's cost there), or as the module
  where that cannot run; when become fails (no sudo, a password prompt) it says so in the C(sudo) check and
  probes again without become, so every other check is still reported;
- reads the controller's clock just before and after that run, so the node's clock (read by the module) is
  judged against a tight window;
- judges every single-node check here, with this node's settings, and returns the node's identity
  (machine-id, product_uuid, the MAC of the interface owning node_ip) as cacheable facts
  (preflight_machine_id, preflight_product_uuid, preflight_mac), so add-node compares a new node against
  nodes probed in earlier runs. The checks that compare nodes are kubestrap_preflight_verdict's (run once).

The OS facts later phases read (ansible_facts.architecture, os_family, distribution, ...) come back from the
module as facts, so the fact cache holds them without a setup run.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from typing import Any

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.compat.version import LooseVersion
from ansible.plugins.action import ActionBase

CGROUP2 = "/sys/fs/cgroup/cgroup.controllers"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
MACHINE_ID = "/etc/machine-id"  # what kubelet reports; a cloned /var/lib/dbus/machine-id must not hide duplicates
IDENTITY = ("machine_id", "product_uuid", "mac")


def probe_args(runtimes: dict[str, list[str]], markers: list[str]) -> dict[str, Any]:
    """The kubestrap_host_probe arguments preflight needs."""
    paths = [CGROUP2, KUBELET_CONF, *(p for found in runtimes.values() for p in found), *markers]
    return {"paths": paths, "files": [MACHINE_ID], "listening": True, "hardware": True, "facts": True,
            "interfaces": True}  # fmt: skip


def foreign_runtimes(present: list[str], runtimes: dict[str, list[str]], markers: list[str]) -> list[str]:
    """The container runtimes kubestrap did not install, each as "name (paths found)"; kubestrap's own
    containerd (one of *markers* present) is left out."""
    ours = any(marker in present for marker in markers)
    found = []
    for name, paths in runtimes.items():
        if name == "containerd" and ours:
            continue
        hits = [path for path in paths if path in present]
        if hits:
            found.append(f"{name} ({', '.join(hits)})")
    return found


def _kernel_ok(kernel: str, minimum: str) -> bool:
    try:
        return LooseVersion(kernel) >= LooseVersion(minimum)
    except TypeError:  # a release string LooseVersion cannot order against the minimum
        return False


def owner_of(interfaces: dict[str, dict[str, Any]], address: str) -> str:
    """The interface carrying *address*, or ''."""
    return next((name for name, iface in sorted(interfaces.items()) if address in iface.get("ipv4", [])), "")


def judge(probe: dict[str, Any], settings: dict[str, Any], sudo: dict[str, Any],
          window: tuple[float, float]) -> dict[str, Any]:
    """This node's checks from one probe (the module's result), its settings, how become went and the
    controller's clock before and after the module ran: {"results": check -> {ok, detail}, "identity": ...,
    "foreign_runtimes": [...]}. Identity checks are judged for this node alone here (machine-id present)."""
    facts = probe.get("ansible_facts") or {}
    present = probe.get("present") or []
    hardware = probe.get("hardware") or {}
    distribution = str(facts.get("ansible_distribution", "?"))
    machine = str(facts.get("ansible_architecture", "?"))
    arch = str((settings["arch_map"] or {}).get(machine, machine))  # kubestrap_arch_map: one map for every role
    kernel = str(facts.get("ansible_kernel", ""))
    node_ip = str(settings["node_ip"])
    iface = owner_of(probe.get("interfaces") or {}, node_ip)
    mac = str((probe.get("interfaces") or {}).get(iface, {}).get("mac", "")) if iface else ""
    machine_id = str((probe.get("files") or {}).get(MACHINE_ID) or "").strip()
    uuid = str(hardware.get("product_uuid") or "")
    node_clock = float(probe.get("clock") or 0.0)
    skew = round(max(0.0, window[0] - node_clock, node_clock - window[1]))
    joined = KUBELET_CONF in present
    listening = probe.get("tcp_listening") or []
    wanted = {int(port) for port in settings["ports"]}
    busy = [] if joined else [port for port in listening if port in wanted]
    runtimes = foreign_runtimes(present, settings["runtimes"], settings["runtime_markers"])
    allow = bool(settings["allow_foreign_runtime"])
    vcpus, memory = int(hardware.get("vcpus") or 0), int(hardware.get("memtotal_mb") or 0)
    min_cpus, min_memory = int(settings["min_cpus"]), int(settings["min_memory_mb"])
    supported = [str(v) for v in (settings["supported_os"] or {}).get(distribution, [])]
    if not runtimes:
        runtime_detail = "none"
    elif allow:
        runtime_detail = "allowed: " + ", ".join(runtimes)
    else:
        runtime_detail = (", ".join(runtimes)
                          + " not installed by kubestrap; remove it or set preflight_allow_foreign_runtime: true")
    results = {
        "ssh": {"ok": True, "detail": str(facts.get("ansible_hostname", ""))},
        "sudo": {"ok": bool(sudo["ok"]), "detail": "" if sudo["ok"] else str(sudo["detail"])[:80]},
        "os": {"ok": str(facts.get("ansible_distribution_major_version", "")) in supported,
               "detail": f"{distribution} {facts.get('ansible_distribution_version', '?')}"},
        "arch": {"ok": arch in settings["architectures"], "detail": arch},
        "kernel": {"ok": _kernel_ok(kernel, str(settings["min_kernel"])), "detail": kernel},
        "cgroup_v2": {"ok": CGROUP2 in present,
                      "detail": "unified" if CGROUP2 in present else "cgroup v1: boot with systemd.unified_cgroup_hierarchy=1"},
        "cpu": {"ok": vcpus >= min_cpus, "detail": f"{hardware.get('vcpus', '?')} (min {min_cpus})"},
        "memory": {"ok": memory >= min_memory, "detail": f"{hardware.get('memtotal_mb', '?')} MiB (min {min_memory})"},
        "node_ip": {"ok": bool(iface), "detail": f"{node_ip} on {iface or 'no interface'}"},
        "machine_id": {"ok": bool(machine_id), "detail": machine_id[:8] if machine_id else f"{MACHINE_ID} is empty"},
        "product_uuid": {"ok": True, "detail": uuid[:8] if uuid else "unknown"},
        "mac": {"ok": True, "detail": mac},
        "clock": {"ok": skew <= int(settings["max_clock_skew"]), "detail": f"skew {skew}s"},
        "ports": {"ok": not busy,
                  "detail": ("in use: " + ",".join(map(str, busy))) if busy else ("joined" if joined else "free")},
        "runtime": {"ok": not runtimes or allow, "detail": runtime_detail},
    }  # fmt: skip
    return {"results": results, "identity": {"machine_id": machine_id, "product_uuid": uuid, "mac": mac},
            "foreign_runtimes": runtimes}


SETTINGS = ("node_ip", "min_cpus", "min_memory_mb", "supported_os", "architectures", "arch_map", "min_kernel", "max_clock_skew",
            "ports", "runtimes", "runtime_markers", "allow_foreign_runtime")  # fmt: skip


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _VALID_ARGS = frozenset(("connect_timeout", *SETTINGS))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars if task_vars is not None else {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        missing = [name for name in SETTINGS if name not in args]
        if missing:
            return {**result, "failed": True, "msg": f"kubestrap_preflight_probe needs {', '.join(missing)}"}
        module_args = probe_args(args["runtimes"], args["runtime_markers"])
        deadline = time.monotonic() + int(args.get("connect_timeout", 30))
        sudo: dict[str, Any] = {"ok": True, "detail": ""}
        while True:  # until the node answers over SSH (it may still be booting)
            try:
                probe, window, sudo = self._probe(module_args, task_vars)
                break
            except AnsibleConnectionFailure as exc:
                if time.monotonic() >= deadline:
                    return {**result, "unreachable": True,
                            "msg": f"no SSH answer within {args.get('connect_timeout', 30)}s: {exc}"}
                time.sleep(1)
                if self._discovered_interpreter_key:  # discover again on the next attempt
                    task_vars.get("ansible_facts", {}).pop(self._discovered_interpreter_key, None)
                with contextlib.suppress(AttributeError):  # a connection without reset
                    self._connection.reset()
        if probe.get("failed"):
            return {**result, **probe}
        judged = judge(probe, {name: args[name] for name in SETTINGS}, sudo, window)
        identity = judged["identity"]
        facts = {**(probe.get("ansible_facts") or {}),
                 **{f"preflight_{key}": identity[key] for key in IDENTITY}}  # fmt: skip
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return {**result, "changed": False, **judged, "ansible_facts": facts,
                "probe": {k: v for k, v in probe.items() if k not in ("ansible_facts", "invocation", "changed")}}

    def _probe(self, module_args: dict[str, Any],
               task_vars: dict[str, Any]) -> tuple[dict[str, Any], tuple[float, float], dict[str, Any]]:
        """One probe with become; when become itself fails, one without it and the reason as sudo's."""
        become = self._connection.become
        if become is None:
            probe, window, _ = self._attempt(module_args, task_vars)
            root = probe.get("uid") == 0
            return probe, window, {"ok": root, "detail": "" if root else "the task has no become"}
        probe, window, why = self._attempt(module_args, task_vars)
        if not probe.get("failed") and probe.get("uid") == 0:
            return probe, window, {"ok": True, "detail": ""}
        if not probe.get("failed"):
            why = f"became uid {probe.get('uid')}, not root"
        self._connection.set_become_plugin(None)
        try:
            probe, window, _ = self._attempt(module_args, task_vars)
        finally:
            self._connection.set_become_plugin(become)
        return probe, window, {"ok": False, "detail": why or "sudo failed"}

    def _attempt(self, module_args: dict[str, Any],
                 task_vars: dict[str, Any]) -> tuple[dict[str, Any], tuple[float, float], str]:
        """The probe run directly, else as a module: (result, the controller's clock around it, why it failed)."""
        before = time.time()
        why = ""
        try:
            direct = self._direct(module_args, task_vars)
            if isinstance(direct, dict):
                return {**direct, "via": "python"}, (before, time.time()), ""
            why = direct
        except AnsibleConnectionFailure:
            raise
        except AnsibleError as exc:  # a wrong or missing become password, a connection without stdin
            return {"failed": True, "msg": _first_line(str(exc))}, (before, time.time()), _first_line(str(exc))
        before = time.time()
        probe = self._execute_module(module_name="kubestrap_host_probe", module_args=module_args, task_vars=task_vars)
        window = (before, time.time())
        probe["via"] = "module"
        if probe.get("failed"):
            why = why or _first_line(probe.get("module_stderr") or probe.get("msg") or "")
        return probe, window, why

    def _direct(self, module_args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any] | str:
        """kubestrap_host_probe's probe() run as a bare Python program read from stdin: a module run would make
        the node unpack and compile Ansible's module_utils first (about 0.2 s of CPU per node). The result, or
        the first line of what went wrong."""
        python = self._python(task_vars)
        program = _program(self._module_source(), module_args)
        done = self._low_level_execute_command(f"{shlex.quote(python)} -", sudoable=True, in_data=program.encode("utf-8"))
        for line in str(done.get("stdout", "")).splitlines():
            if line.startswith(MARK):
                try:
                    return json.loads(line[len(MARK):])
                except ValueError:
                    break
        return _first_line(done.get("stderr") or done.get("stdout") or f"{python} exited {done.get('rc')}")

    def _python(self, task_vars: dict[str, Any]) -> str:
        """The interpreter the inventory names, else the one discovered on an earlier run, else python3."""
        configured = task_vars.get("ansible_python_interpreter")
        if configured:
            return str(self._templar.template(configured))
        discovered = (task_vars.get("ansible_facts") or {}).get("discovered_interpreter_python")
        return str(discovered or "/usr/bin/python3")

    def _module_source(self) -> str:
        found = self._shared_loader_obj.module_loader.find_plugin("kubestrap_host_probe")
        if not found:
            raise AnsibleError("kubestrap_host_probe is not in the module path")
        with open(found, encoding="utf-8") as handle:
            return handle.read()


MARK = "KUBESTRAP-PROBE-RESULT "


def _program(source: str, module_args: dict[str, Any]) -> str:
    """The module's source without its entry point, then a call of probe() printing the result on one line."""
    body = source.replace('if __name__ == "__main__":\n    main()', "")
    args = json.dumps(module_args)
    return (f"{body}\n\nimport json as _json, sys as _sys\n"
            f"_args = {{**{{k: v['default'] for k, v in OPTIONS.items()}}, **_json.loads({args!r})}}\n"
            f"_sys.stdout.write('\\n' + {MARK!r} + _json.dumps(probe(_args)) + '\\n')\n")


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")
