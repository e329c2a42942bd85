"""Lab lifecycle: ``up`` (idempotent), ``down`` and ``status``."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubestrap.lab import accel, alloc, hostdeps, image, inventory, procs, seed, sshwait, state, switch, vm
from kubestrap.lab.errors import LabError
from kubestrap.lab.recipe import default_recipe
from kubestrap.lab.spec import LabSpec, VMSpec, assign_node_ips, validate
from kubestrap.lab.state import LabState, VMState

Log = Callable[[str], None]
PORT_TRIES = 3


@dataclass
class UpResult:
    state: LabState
    started: list[str]
    inventory_changed: bool
    ssh_seconds: dict[str, float]


def key_path(state_dir: Path) -> Path:
    return state_dir / "id_ed25519"


def vm_dir(state_dir: Path, name: str) -> Path:
    return state_dir / "vms" / name


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_key(state_dir: Path) -> Path:
    """The lab's SSH key pair (ed25519, private key 0600), made once per lab."""
    key = key_path(state_dir)
    if not key.exists():
        cmd = [hostdeps.program("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "kubestrap-lab", "-f", str(key)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"ssh-keygen could not create the lab key {key}: {proc.stderr.strip()}")
    key.chmod(0o600)
    return key


def _running(rec: procs.ProcRecord | None) -> bool:
    return rec is not None and procs.is_ours(rec)


def _vm_config(st: VMState, state_dir: Path, accel_name: str) -> vm.VMConfig:
    return vm.VMConfig(
        name=st.name,
        vm_dir=vm_dir(state_dir, st.name),
        cpus=st.cpus,
        memory_mib=st.memory_mib,
        ssh_port=st.ssh_port,
        uplink_mac=st.uplink_mac,
        node_mac=st.node_mac,
        uuid=st.uuid,
        machine_id=st.machine_id,
        switch_sock=switch.sock_dir(state_dir),
        accel=accel_name,
        api_port=st.api_port,
    )


def _plan_vm(vs: VMSpec, ip: str, old: VMState | None, macs: tuple[str, str]) -> VMState:
    return VMState(
        name=vs.name,
        role=vs.role,
        node_ip=ip,
        cpus=vs.cpus,
        memory_mib=vs.memory_mib,
        ssh_port=old.ssh_port if old else 0,
        uplink_mac=old.uplink_mac if old else macs[0],
        node_mac=old.node_mac if old else macs[1],
        uuid=old.uuid if old else alloc.new_uuid(),
        machine_id=old.machine_id if old else alloc.new_machine_id(),
        groups=list(vs.groups),
        api_port=old.api_port if old else 0,
    )


def pick_port(previous: int, ports: set[int]) -> int:
    """``previous`` when it is set, not handed out in this lab and free on 127.0.0.1, else a new free
    port; the result is added to ``ports``."""
    keep = previous and previous not in ports and alloc.port_is_free(previous)
    port = previous if keep else alloc.free_port(exclude=ports)
    ports.add(port)
    return port


def _boot(
    st: VMState, spec: LabSpec, img: image.Image, key: Path, accel_name: str, ports: set[int], lab_ips: tuple[str, ...]
) -> None:
    """Prepare disks and start one VM; sets ``st.ssh_port`` and, on a control plane, ``st.api_port``
    (a restarted VM gets the ports it had when they are still free, so inventories and kubeconfigs
    written for it stay valid) and ``st.process``."""
    directory = vm_dir(spec.state_dir, st.name)
    directory.mkdir(parents=True, exist_ok=True)
    seed.build(
        seed.SeedData(st.name, key.with_suffix(".pub").read_text(), st.uplink_mac, st.node_mac, st.node_ip, spec.network,
                      lab_ips),
        directory,
    )
    cfg = _vm_config(st, spec.state_dir, accel_name)
    if not cfg.overlay.exists():
        vm.create_overlay(img, cfg.overlay)
    for attempt in range(PORT_TRIES):
        st.ssh_port = pick_port(st.ssh_port if attempt == 0 else 0, ports)
        if st.role == "control_plane":
            st.api_port = pick_port(st.api_port if attempt == 0 else 0, ports)
        cfg = _vm_config(st, spec.state_dir, accel_name)
        try:
            st.process = vm.start(cfg, img)
            return
        except vm.PortInUse:
            if attempt == PORT_TRIES - 1:
                raise


def up(spec: LabSpec, log: Log) -> UpResult:
    """Bring the lab to ``spec``: start what is not running, wait for SSH, write the inventory."""
    validate(spec)
    ips = assign_node_ips(spec)
    hostdeps.require()
    with _locked(spec.state_dir):
        img = image.ensure_image(default_recipe(), log)
        key = ensure_key(spec.state_dir)
        old = state.load(spec.state_dir)
        old_vms = {v.name: v for v in old.vms} if old else {}
        running = {n for n, v in old_vms.items() if _running(v.process)}
        wanted = {vs.name for vs in spec.vms}
        extra = sorted(running - wanted)
        if extra:
            raise LabError(
                f"lab {spec.name} runs VMs that this request does not have ({', '.join(extra)}); "
                f"run `lab down --name {spec.name}` first to change its shape"
            )
        if old and running and old.network != spec.network:
            raise LabError(f"lab {spec.name} runs on {old.network}; run `lab down` before changing the network")
        switch_rec = old.switch if old else None
        if not _running(switch_rec):
            if running:
                raise LabError(f"the switch of lab {spec.name} is gone while its VMs run; run `lab down --name {spec.name}`")
            switch_rec = switch.start(spec.state_dir)
        accel_name = old.accel if (old and running) else accel.choose(img)
        macs = alloc.allocate_macs(str(spec.state_dir.resolve()), [vs.name for vs in spec.vms])
        new = LabState(spec.name, spec.network, accel_name, switch_rec, old.inventory if old else None)
        to_boot: list[VMState] = []
        for vs in spec.vms:
            prev = old_vms.get(vs.name)
            if vs.name in running and prev is not None:
                if prev.node_ip != ips[vs.name]:
                    raise LabError(
                        f"VM {vs.name} runs with node_ip {prev.node_ip}, not {ips[vs.name]}; "
                        f"run `lab down --name {spec.name}` first"
                    )
                new.vms.append(prev)
                continue
            st = _plan_vm(vs, ips[vs.name], prev, macs[vs.name])
            new.vms.append(st)
            to_boot.append(st)
        for gone in set(old_vms) - wanted:
            _clean_vm_files(vm_dir(spec.state_dir, gone))
        ports = {p for v in new.vms if v.name in running for p in (v.ssh_port, v.api_port) if p}
        if to_boot:
            log(f"starting {', '.join(v.name for v in to_boot)} ({accel_name})")
        errors: list[str] = []
        try:
            with ThreadPoolExecutor(max_workers=max(1, len(to_boot))) as pool:
                lab_ips = tuple(v.node_ip for v in new.vms)
                futures = [pool.submit(_boot, st, spec, img, key, accel_name, ports, lab_ips) for st in to_boot]
                for fut in futures:
                    try:
                        fut.result()
                    except LabError as exc:
                        errors.append(str(exc))
        finally:
            state.save(spec.state_dir, new)
        if errors:
            raise LabError("; ".join(errors) + f"; clean up with `lab down --name {spec.name}`")
        targets = [
            sshwait.Target(v.name, v.ssh_port, vm_dir(spec.state_dir, v.name) / "console.log", _alive_check(v.process))
            for v in new.vms
        ]
        seconds = sshwait.wait_all(targets, key, spec.timeout, log)
        changed = False
        if spec.inventory is not None:
            changed = inventory.write(spec.inventory, inventory.render_text(new, key))
            new.inventory = str(spec.inventory)
            state.save(spec.state_dir, new)
        return UpResult(new, [v.name for v in to_boot], changed, seconds)


def _alive_check(rec: procs.ProcRecord | None) -> Callable[[], bool]:
    return lambda: _running(rec)


def _clean_vm_files(directory: Path) -> None:
    for name in ("disk.qcow2", "seed.img", "qemu.pid"):
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / "seed", ignore_errors=True)


def down(state_dir: Path, log: Log) -> list[str]:
    """Stop every process the lab started (verified by PID record) and remove overlays and the switch."""
    with _locked(state_dir):
        st = state.load(state_dir)
        if st is None:
            switch.remove(state_dir)
            log(f"no lab state in {state_dir}; nothing to stop")
            return []
        stopped: list[str] = []

        def stop_vm(v: VMState) -> None:
            if v.process is not None and procs.is_ours(v.process):
                procs.stop(v.process)
                stopped.append(v.name)
            elif v.process is not None:
                log(f"{v.name}: pid {v.process.pid} is no longer its qemu; not signalled")
            _clean_vm_files(vm_dir(state_dir, v.name))

        with ThreadPoolExecutor(max_workers=max(1, len(st.vms))) as pool:
            list(pool.map(stop_vm, st.vms))
        if st.switch is not None and procs.is_ours(st.switch):
            procs.stop(st.switch)
        switch.remove(state_dir)
        if st.inventory:
            Path(st.inventory).unlink(missing_ok=True)
        state.remove(state_dir)
        return sorted(stopped)


def status(state_dir: Path, probe_ssh: bool = True) -> dict[str, Any]:
    """Machine-readable view of a lab (also what molecule's create playbook reads)."""
    st = state.load(state_dir)
    if st is None:
        return {"state_dir": str(state_dir), "exists": False, "vms": []}
    key = key_path(state_dir)

    def row(v: VMState) -> dict[str, Any]:
        up_now = _running(v.process)
        return {
            "name": v.name,
            "role": v.role,
            "groups": v.groups,
            "node_ip": v.node_ip,
            "ssh_host": "127.0.0.1",
            "ssh_port": v.ssh_port,
            "api_port": v.api_port or None,
            "user": "root",
            "pid": v.process.pid if v.process else None,
            "running": up_now,
            "ssh": bool(up_now and probe_ssh and sshwait.answers(v.ssh_port, key, timeout=8)),
            "cpus": v.cpus,
            "memory_mib": v.memory_mib,
            "console_log": str(vm_dir(state_dir, v.name) / "console.log"),
        }

    with ThreadPoolExecutor(max_workers=max(1, len(st.vms))) as pool:
        rows = list(pool.map(row, st.vms))
    return {
        "name": st.name,
        "state_dir": str(state_dir),
        "exists": True,
        "network": st.network,
        "accel": st.accel,
        "switch_running": _running(st.switch),
        "private_key": str(key.resolve()),
        "inventory": st.inventory,
        "vms": rows,
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
