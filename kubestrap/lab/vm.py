"""One lab VM: its disks (qcow2 overlay on the base image, seed disk) and its qemu process."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubestrap.lab import hostdeps, procs
from kubestrap.lab.errors import LabError
from kubestrap.lab.image import Image

API_SERVER_PORT = 6443


@dataclass(frozen=True)
class VMConfig:
    name: str
    vm_dir: Path
    cpus: int
    memory_mib: int
    ssh_port: int
    uplink_mac: str
    node_mac: str
    uuid: str
    machine_id: str
    switch_sock: Path
    accel: str
    api_port: int = 0  # forwarded to the guest's 6443 (the API server) when set

    @property
    def overlay(self) -> Path:
        return self.vm_dir / "disk.qcow2"

    @property
    def seed_image(self) -> Path:
        return self.vm_dir / "seed.img"

    @property
    def console_log(self) -> Path:
        return self.vm_dir / "console.log"

    @property
    def pidfile(self) -> Path:
        return self.vm_dir / "qemu.pid"

    @property
    def marker(self) -> str:
        """A string only this VM's qemu command line holds (its console log's absolute path)."""
        return str(self.console_log)


def create_overlay(image: Image, overlay: Path) -> None:
    """qcow2 overlay backed by the (read-only, shared) base image."""
    cmd = [
        hostdeps.program("qemu-img"),
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        str(image.disk),
        "-F",
        "raw",
        str(overlay),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"qemu-img could not create the overlay {overlay}: {proc.stderr.strip()}")


def kernel_cmdline(cfg: VMConfig) -> str:
    line = f"console=ttyS0 root=/dev/vda rw systemd.machine_id={cfg.machine_id} systemd.show_status=1"
    if cfg.accel != "kvm":
        # Under TCG the kernel's boot check finds the vCPUs' TSCs "unsynchronized" (their threads run at different
        # moments; the counters all follow the host's clock) and falls back to the HPET, a 32-bit counter that wraps
        # every 43 s: a vCPU starved longer than that on a loaded host loses the wrap, and the guest clock falls
        # behind (44-50 s on 2026-12-06, which preflight's clock check refused). The TSC never wraps.
        line += " tsc=reliable clocksource=tsc"
    return line


# The vCPU model under TCG: qemu's `max`. Westmere (x86-64-v2 with AES-NI and PCLMULQDQ, no AVX) was tried from
# 2026-12-07: on one VM it moved 150 MB over SSH in 8.3 s against 9.7-10.4 s and hashed twice as fast in Python, since
# under `max` OpenSSL, glibc and Go pick AVX2 paths that TCG emulates through helper calls
# (bench/results/lab-tcg-cpu-model-2026-12-07.json). But an idle guest's timers cost the host more CPU under it, and
# with five VMs that weighs more: the reference layout side by side on the same evening, the same commit, max then
# Westmere, took 1,227 s and 1,986 s for a fresh `up` (bench/results/lab-tcg-cpu-model-ab-1cp-3w-2026-12-07.json).
# The cause (same file, `why`): a Westmere guest's kernel isolates page tables against Meltdown (an Intel CPU; `max`
# under TCG is an AMD one), and each system call then flushes qemu's software TLB, ten times the cost. Westmere with
# mitigations=off on the kernel command line matched max's system calls and kept its faster hashing: not yet run on
# a whole cluster.
TCG_CPU_MODEL = "max"


def qemu_argv(cfg: VMConfig, image: Image, qemu: str = "qemu-system-x86_64") -> list[str]:
    """The full qemu command line of a VM (daemonized, serial console to a file)."""
    accel = ["-accel", "kvm", "-cpu", "host"] if cfg.accel == "kvm" else ["-accel", "tcg", "-cpu", TCG_CPU_MODEL]
    return [
        qemu,
        "-name",
        f"kubestrap-lab-{cfg.name}",
        "-machine",
        "q35",
        *accel,
        "-smp",
        str(cfg.cpus),
        "-m",
        str(cfg.memory_mib),
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        kernel_cmdline(cfg),
        "-drive",
        f"file={cfg.overlay},if=virtio,format=qcow2,discard=unmap",
        "-drive",
        f"file={cfg.seed_image},if=virtio,format=raw,readonly=on",
        "-netdev",
        uplink_netdev(cfg),
        "-device",
        f"virtio-net-pci,netdev=n0,mac={cfg.uplink_mac}",
        "-netdev",
        f"vde,id=c0,sock={cfg.switch_sock}",
        "-device",
        f"virtio-net-pci,netdev=c0,mac={cfg.node_mac}",
        "-smbios",
        f"type=1,uuid={cfg.uuid},product=kubestrap-lab",
        "-uuid",
        cfg.uuid,
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom",
        "-device",
        "virtio-rng-pci,rng=rng0",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        f"file:{cfg.console_log}",
        "-pidfile",
        str(cfg.pidfile),
        "-daemonize",
    ]


def uplink_netdev(cfg: VMConfig) -> str:
    """The user-mode uplink: SSH (and, on control planes, the API server) forwarded from 127.0.0.1."""
    forwards = [f"hostfwd=tcp:127.0.0.1:{cfg.ssh_port}-:22"]
    if cfg.api_port:
        forwards.append(f"hostfwd=tcp:127.0.0.1:{cfg.api_port}-:{API_SERVER_PORT}")
    return ",".join(["user", "id=n0", *forwards])


class PortInUse(LabError):
    """qemu could not bind a forwarded port, SSH or API (taken between allocation and start)."""


def start(cfg: VMConfig, image: Image) -> procs.ProcRecord:
    cfg.pidfile.unlink(missing_ok=True)
    cfg.console_log.unlink(missing_ok=True)
    argv = qemu_argv(cfg, image, hostdeps.program("qemu-system-x86_64"))
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.strip()
        if "hostfwd" in err or "forwarding rule" in err:
            ports = f"port {cfg.ssh_port}" + (f" or {cfg.api_port}" if cfg.api_port else "")
            raise PortInUse(f"{cfg.name}: {ports} is taken: {err}")
        raise LabError(f"qemu failed to start VM {cfg.name}: {err}")
    pid = procs.read_pidfile(cfg.pidfile, timeout=10)
    rec = procs.record(pid, cfg.marker) if pid else None
    if rec is None:
        raise LabError(f"VM {cfg.name} exited right after start; see its console log {cfg.console_log}")
    return rec
