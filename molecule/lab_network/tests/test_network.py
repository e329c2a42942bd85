"""Verify the lab network: every VM reaches every other VM on its node IP over the vde switch."""

import json
import os
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

# the whole inventory directory: molecule's hosts plus the linked group_vars and _shared/inventory.py
INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "inventory")
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(str(INVENTORY))
HOSTS = RUNNER.get_hosts("k8s_cluster")


def node_ip(name):
    return RUNNER.get_variables(name)["node_ip"]


@pytest.mark.parametrize("name", HOSTS)
def test_owns_node_ip_on_a_nic_other_than_the_uplink(name):
    host = RUNNER.get_host(name)
    addrs = json.loads(host.check_output("ip -j -4 addr show"))
    owners = [a["ifname"] for a in addrs for i in a["addr_info"] if i["local"] == node_ip(name)]
    uplinks = [a["ifname"] for a in addrs for i in a["addr_info"] if i["local"] == "10.0.2.15"]
    assert len(owners) == 1, addrs
    assert owners != uplinks


@pytest.mark.parametrize("name", HOSTS)
def test_reaches_every_peer_on_its_node_ip(name):
    host = RUNNER.get_host(name)
    for peer in HOSTS:
        if peer == name:
            continue
        ip = node_ip(peer)
        script = f"import socket; s = socket.create_connection(('{ip}', 22), 5); print(s.recv(64).decode())"
        banner = host.check_output(f'python3 -c "{script}"')
        assert banner.startswith("SSH-2.0-OpenSSH"), f"{name} -> {peer} ({ip}): {banner!r}"
        route = host.check_output(f"ip -4 route get {ip}")
        assert "via" not in route, f"{name} reaches {peer} through a gateway: {route}"


def test_identities_differ():
    ids = {n: RUNNER.get_host(n).file("/etc/machine-id").content_string.strip() for n in HOSTS}
    names = {n: RUNNER.get_host(n).check_output("hostname") for n in HOSTS}
    uuids = {n: RUNNER.get_host(n).file("/sys/class/dmi/id/product_uuid").content_string.strip() for n in HOSTS}
    macs = {n: RUNNER.get_host(n).check_output("cat /sys/class/net/*/address | sort | tr '\\n' ' '") for n in HOSTS}
    assert len(HOSTS) == 2
    assert names == {n: n for n in HOSTS}
    assert len(set(ids.values())) == len(HOSTS), ids
    assert all(len(i) == 32 for i in ids.values()), ids
    assert len(set(uuids.values())) == len(HOSTS), uuids
    assert len(set(macs.values())) == len(HOSTS), macs


@pytest.mark.parametrize("name", HOSTS)
def test_converge_saw_the_cluster_defaults(name):
    content = RUNNER.get_host(name).file("/etc/kubestrap-lab-network").content_string
    assert f"node_ip={node_ip(name)}\n" in content
    assert "cluster_name=homelab\n" in content  # repository group_vars/all, linked by the scenario
