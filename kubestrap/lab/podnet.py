"""The lab's pod network: a CNI the lab's nodes can run offline, brought by the lab (its own, not kubestrap's).

kubestrap's CNI is Cilium, whose images no offline lab has. A lab without them runs the cluster with Cilium off
("bring your own CNI", kube-proxy on) and gives each VM, through its seed disk, what a user would bring: the CNI
reference plugins kubestrap installs (bridge + host-local) configured with a per-node pod range, and a route to every
other node's range over the lab switch. Node .N of the lab network gets the N-th /24 of the pod CIDR.
"""

from __future__ import annotations

import ipaddress
import json

from kubestrap.lab.errors import LabError

# kubestrap's default cluster_pod_cidr (group_vars/all/cluster.yml); inventories/lab says it again, and a test
# keeps the three equal
POD_CIDR = "10.244.0.0/16"
RANGE_PREFIX = 24
CONFLIST_NAME = "10-kubestrap-lab.conflist"


def pod_range(network: str, node_ip: str, pod_cidr: str = POD_CIDR) -> str:
    """The pod range of the node at *node_ip* (its host offset in *network* picks the /24 of *pod_cidr*)."""
    net, pods = ipaddress.IPv4Network(network), ipaddress.IPv4Network(pod_cidr)
    offset = int(ipaddress.IPv4Address(node_ip)) - int(net.network_address)
    ranges = 2 ** (RANGE_PREFIX - pods.prefixlen) if pods.prefixlen <= RANGE_PREFIX else 0
    if not 0 < offset < ranges:
        raise LabError(f"node {node_ip} has no /{RANGE_PREFIX} pod range in {pod_cidr} (host offset {offset})")
    first = int(pods.network_address) + (offset << (32 - RANGE_PREFIX))
    return str(ipaddress.IPv4Network((first, RANGE_PREFIX)))


def conflist(node_range: str) -> str:
    """The CNI configuration of one node: a bridge (pods' gateway, masquerading what leaves the node) with
    host-local addresses from *node_range*, and portmap for hostPorts."""
    bridge = {
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": True,
        "ipMasq": True,
        "hairpinMode": True,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": node_range}]], "routes": [{"dst": "0.0.0.0/0"}]},
    }
    plugins = [bridge, {"type": "portmap", "capabilities": {"portMappings": True}}]
    return json.dumps({"cniVersion": "1.0.0", "name": "kubestrap-lab", "plugins": plugins}, indent=2) + "\n"


def routes(network: str, node_ip: str, all_ips: list[str], pod_cidr: str = POD_CIDR) -> list[tuple[str, str]]:
    """(pod range, via node IP) for every other node of the lab."""
    return [(pod_range(network, ip, pod_cidr), ip) for ip in all_ips if ip != node_ip]
