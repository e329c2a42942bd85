"""Per-VM seed disk: a tiny ext4 image (label KSEED) the base image applies at boot."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubestrap.lab import guest, hostdeps, podnet
from kubestrap.lab.errors import LabError


@dataclass(frozen=True)
class SeedData:
    hostname: str
    authorized_key: str
    uplink_mac: str
    node_mac: str
    node_ip: str
    network: str
    lab_ips: tuple[str, ...] = ()  # every VM's node IP: the pod network routes to the others' pod ranges


def seed_files(data: SeedData) -> dict[str, str]:
    """Relative path -> content of the seed disk (host keys are added by ``build``): the node network with a
    route to each other VM's pod range, and this VM's CNI configuration (kubestrap/lab/podnet.py)."""
    prefix = ipaddress.IPv4Network(data.network).prefixlen
    routes = podnet.routes(data.network, data.node_ip, list(data.lab_ips))
    return {
        "hostname": data.hostname + "\n",
        "authorized_keys": data.authorized_key.strip() + "\n",
        "network/10-kubestrap-uplink.network": guest.uplink_network(data.uplink_mac),
        "network/20-kubestrap-node.network": guest.node_network(data.node_mac, f"{data.node_ip}/{prefix}", routes),
        f"cni/{podnet.CONFLIST_NAME}": podnet.conflist(podnet.pod_range(data.network, data.node_ip)),
    }


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"{what} failed ({' '.join(cmd)}): {proc.stderr.strip() or proc.stdout.strip()}")


def build(data: SeedData, vm_dir: Path) -> Path:
    """Write ``vm_dir/seed.img``; the SSH host key is made once per VM and kept in ``vm_dir``."""
    content = vm_dir / "seed"
    shutil.rmtree(content, ignore_errors=True)
    (content / "network").mkdir(parents=True)
    (content / "cni").mkdir()
    for rel, text in seed_files(data).items():
        (content / rel).write_text(text)
    host_key = vm_dir / "ssh_host_ed25519_key"
    if not host_key.exists():
        _run(
            [hostdeps.program("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", data.hostname, "-f", str(host_key)],
            f"generating the SSH host key of {data.hostname}",
        )
    shutil.copyfile(host_key, content / host_key.name)
    shutil.copyfile(host_key.with_suffix(".pub"), content / (host_key.name + ".pub"))
    image = vm_dir / "seed.img"
    image.unlink(missing_ok=True)
    _run(
        [hostdeps.program("mkfs.ext4"), "-q", "-F", "-L", guest.SEED_LABEL, "-d", str(content), str(image), "4M"],
        f"writing the seed disk of {data.hostname}",
    )
    return image
