import pytest

from kubestrap.lab import alloc
from kubestrap.lab.errors import LabError


def test_node_ips_start_at_dot_ten():
    assert alloc.node_ips("10.77.0.0/24", 4) == ["10.77.0.10", "10.77.0.11", "10.77.0.12", "10.77.0.13"]


def test_node_ips_refuse_a_network_too_small():
    with pytest.raises(LabError, match="no room for 10 VMs"):
        alloc.node_ips("10.77.0.0/28", 10)


def test_node_ips_refuse_garbage():
    with pytest.raises(LabError, match="not an IPv4 network"):
        alloc.node_ips("10.77.0.300/24", 1)


@pytest.mark.parametrize("ip", ["10.77.1.5", "10.77.0.0", "10.77.0.255", "nope"])
def test_check_node_ip_rejects(ip):
    with pytest.raises(LabError):
        alloc.check_node_ip("10.77.0.0/24", ip)


def test_mac_is_locally_administered_unicast_and_deterministic():
    mac = alloc.mac_for("lab", "vm1", 0)
    assert mac == alloc.mac_for("lab", "vm1", 0)
    first = int(mac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b1
    assert len(mac.split(":")) == 6


def test_macs_unique_per_vm_and_nic():
    macs = alloc.allocate_macs("lab", [f"vm{i}" for i in range(50)])
    flat = [m for pair in macs.values() for m in pair]
    assert len(set(flat)) == 100


def test_mac_collisions_are_resolved(monkeypatch):
    calls = iter(["52:54:00:00:00:01", "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"])
    monkeypatch.setattr(alloc, "mac_for", lambda *_a, **_k: next(calls))
    assert alloc.allocate_macs("lab", ["a"], taken=[]) == {"a": ("52:54:00:00:00:01", "52:54:00:00:00:02")}


def test_free_port_skips_excluded_ports():
    probes = iter([2222, 2223, 2224])
    assert alloc.free_port(exclude={2222, 2223}, probe=lambda: next(probes)) == 2224


def test_free_port_gives_up_with_a_message():
    with pytest.raises(LabError, match="free TCP port"):
        alloc.free_port(exclude={1}, probe=lambda: 1, tries=3)


def test_real_free_port_is_bindable():
    import socket

    port = alloc.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_ids_are_unique_and_well_formed():
    ids = {alloc.new_machine_id() for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert alloc.new_uuid() != alloc.new_uuid()


def test_port_is_free_sees_a_bound_port():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        assert alloc.port_is_free(taken) is False
    assert alloc.port_is_free(alloc.free_port()) is True


def test_a_restarted_vm_keeps_its_ports_when_they_are_free():
    import socket

    from kubestrap.lab.lab import pick_port

    free = alloc.free_port()
    ports: set[int] = set()
    assert pick_port(free, ports) == free and ports == {free}
    assert pick_port(free, ports) != free  # already handed out in this lab
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        assert pick_port(taken, set()) != taken  # something else took it meanwhile
    assert pick_port(0, set()) > 0
