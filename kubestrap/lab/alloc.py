"""Allocation of per-VM identities: node IPs, MAC addresses, SSH ports, uuids and machine-ids."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import uuid
from collections.abc import Callable, Iterable

from kubestrap.lab.errors import LabError

DEFAULT_NETWORK = "10.77.0.0/24"
FIRST_HOST_OFFSET = 10  # VMs at .10, .11, ...


def node_ips(network: str, count: int, first_offset: int = FIRST_HOST_OFFSET) -> list[str]:
    """``count`` consecutive addresses of ``network`` starting at host offset ``first_offset``."""
    try:
        net = ipaddress.IPv4Network(network)
    except ValueError as exc:
        raise LabError(f"lab network {network!r} is not an IPv4 network like 10.77.0.0/24: {exc}") from None
    last = first_offset + count - 1
    if count < 0 or last >= net.num_addresses - 1:
        raise LabError(f"lab network {network} has no room for {count} VMs starting at offset {first_offset}")
    return [str(net.network_address + first_offset + i) for i in range(count)]


def check_node_ip(network: str, address: str) -> None:
    """LabError unless ``address`` is a usable host address of ``network``."""
    net = ipaddress.IPv4Network(network)
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise LabError(f"node_ip {address!r} is not an IPv4 address") from None
    if ip not in net or ip in (net.network_address, net.broadcast_address):
        raise LabError(f"node_ip {address} is not a host address of the lab network {network}")


def mac_for(lab_id: str, vm: str, nic: int, attempt: int = 0) -> str:
    """Deterministic locally administered unicast MAC for (lab, vm, nic)."""
    digest = hashlib.sha256(f"{lab_id}/{vm}/{nic}/{attempt}".encode()).digest()
    return "52:54:" + ":".join(f"{b:02x}" for b in digest[:4])


def allocate_macs(lab_id: str, vms: Iterable[str], taken: Iterable[str] = ()) -> dict[str, tuple[str, str]]:
    """(uplink MAC, node MAC) per VM, unique across the lab and ``taken``."""
    used = {m.lower() for m in taken}
    result: dict[str, tuple[str, str]] = {}
    for vm in vms:
        pair: list[str] = []
        for nic in (0, 1):
            attempt = 0
            mac = mac_for(lab_id, vm, nic, attempt)
            while mac in used:
                attempt += 1
                mac = mac_for(lab_id, vm, nic, attempt)
            used.add(mac)
            pair.append(mac)
        result[vm] = (pair[0], pair[1])
    return result


def os_free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True if ``port`` on 127.0.0.1 can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(exclude: Iterable[int] = (), probe: Callable[[], int] = os_free_port, tries: int = 50) -> int:
    """A free port not in ``exclude`` (ports of this lab already handed out)."""
    excluded = set(exclude)
    for _ in range(tries):
        port = probe()
        if port not in excluded:
            return port
    raise LabError("could not find a free TCP port on 127.0.0.1 for SSH forwarding")


def new_machine_id() -> str:
    return uuid.uuid4().hex


def new_uuid() -> str:
    return str(uuid.uuid4())
