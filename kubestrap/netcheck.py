"""Sizing and sanity of the cluster's networks and API endpoint: pure functions, no inventory.

Each returns (key, message) pairs; the caller names the file.
"""

from __future__ import annotations

import ipaddress
import math

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Finding = tuple[str, str]

# kube-controller-manager gives every node one block of the pod CIDR (--node-cidr-mask-size; our
# kubeadm configuration keeps its defaults) and Cilium's Kubernetes IPAM uses that block.
NODE_BLOCK_PREFIX = {4: 24, 6: 64}
# The service CIDR holds the API server's ClusterIP (first address), CoreDNS (tenth address, as
# kubeadm sets it) and one ClusterIP per Service of every add-on (dozens with monitoring, Istio
# and Argo CD): at least 256 addresses.
SERVICE_MIN_PREFIX = {4: 24, 6: 120}


def families(node: IPNetwork | None, pod: IPNetwork | None, svc: IPNetwork | None) -> list[Finding]:
    """Dual-stack is not supported: pod and service networks share the node network's family."""
    reference_key, reference = ("cluster_node_network", node) if node is not None else ("cluster_pod_cidr", pod)
    if reference is None:
        return []
    found = []
    for key, net in (("cluster_pod_cidr", pod), ("cluster_service_cidr", svc)):
        if net is not None and key != reference_key and net.version != reference.version:
            found.append((key, f"{net} is IPv{net.version} while {reference_key} {reference} is "
                               f"IPv{reference.version}; dual-stack and mixed IP families are not supported: "
                               f"use IPv{reference.version} networks for nodes, pods and services"))
    return found


def service_size(svc: IPNetwork) -> list[Finding]:
    smallest = SERVICE_MIN_PREFIX[svc.version]
    if svc.prefixlen <= smallest:
        return []
    return [("cluster_service_cidr",
             f"{svc} has {svc.num_addresses} addresses: the API server takes the first, CoreDNS the tenth "
             f"and every add-on Service one more (dozens); use a /{smallest} or larger "
             f"(the default is 10.96.0.0/12)")]


def pod_blocks(pod: IPNetwork, nodes: int) -> list[Finding]:
    """The pod CIDR must hold one per-node block for every node of the inventory."""
    block = NODE_BLOCK_PREFIX[pod.version]
    needed = block - math.ceil(math.log2(max(nodes, 1)))
    if pod.prefixlen > block:
        return [("cluster_pod_cidr",
                 f"{pod} is smaller than the /{block} block kube-controller-manager gives each node; "
                 f"use a /{needed} or larger (the default 10.244.0.0/16 leaves room to grow)")]
    blocks = 2 ** (block - pod.prefixlen)
    if blocks >= nodes:
        return []
    return [("cluster_pod_cidr",
             f"{pod} holds {blocks} per-node /{block} block{'s' if blocks != 1 else ''} but the inventory has "
             f"{nodes} nodes, each needing its own; use a /{needed} or larger "
             f"(the default 10.244.0.0/16 leaves room to grow)")]


def node_address(ip: IPAddress, net: IPNetwork) -> str | None:
    """A node_ip must be a host address of the node network (not its network or broadcast address)."""
    if ip not in net or net.num_addresses <= 2:
        return None
    if ip == net.network_address:
        return f"{ip} is the network address of cluster_node_network {net}; give the node one of its host addresses"
    if net.version == 4 and ip == net.broadcast_address:
        return f"{ip} is the broadcast address of cluster_node_network {net}; give the node one of its host addresses"
    return None


_USE_INSTEAD = "use the control-plane node's node_ip, or a DNS name or VIP that reaches it"


def endpoint_name(name: str) -> str | None:
    if name == "localhost" or name.endswith(".localhost"):
        return f"{name!r} is a loopback address: every node would reach itself, not the API server; {_USE_INSTEAD}"
    return None


def endpoint_address(ip: IPAddress, node: IPNetwork | None, svc: IPNetwork | None,
                     workers: dict[IPAddress, str]) -> str | None:
    if node is not None and ip.version != node.version:
        return (f"{ip} is IPv{ip.version} while cluster_node_network {node} is IPv{node.version}; dual-stack and "
                f"mixed IP families are not supported: {_USE_INSTEAD}")
    if ip.is_loopback:
        return f"{ip} is a loopback address: every node would reach itself, not the API server; {_USE_INSTEAD}"
    if ip.is_unspecified or ip.is_multicast:
        return f"{ip} is not an address nodes can reach; {_USE_INSTEAD}"
    if svc is not None and ip.version == svc.version and ip in svc:
        return (f"{ip} is inside cluster_service_cidr {svc}: those addresses are virtual and exist only once "
                f"the cluster runs; {_USE_INSTEAD}")
    if ip in workers:
        return (f"{ip} is the node_ip of the worker {workers[ip]}, but the API server runs on the control-plane "
                f"node; {_USE_INSTEAD}")
    return None
