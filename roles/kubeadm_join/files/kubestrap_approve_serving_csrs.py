#!/usr/bin/python3
"""kubestrap-approve-serving-csrs: approve the kubelet serving certificate requests nodes make for themselves.

With serverTLSBootstrap a kubelet asks the cluster CA for its serving certificate through a
CertificateSigningRequest (signer kubernetes.io/kubelet-serving), and again before that certificate
expires (about yearly); nothing in Kubernetes approves these. kubestrap installs this program on the
first control-plane node with a systemd timer and runs it once per `up`; the filter kubelet_serving_csrs
(roles/kubeadm_join/filter_plugins), which approves a node's first request right after init or join,
imports its decision from this file, so both follow the same rules.

A pending request (no Approved, Denied or Failed condition) is approved only when
- its signer is kubernetes.io/kubelet-serving,
- it was made by system:node:NAME in group system:nodes, and the Node NAME exists,
- its subject is exactly CN=system:node:NAME, O=system:nodes,
- its usages include server auth and are within digital signature, key encipherment, server auth,
- it asks for at least one subject alternative name, DNS names and IP addresses only, every DNS name
  the node's name or one of its Hostname/InternalDNS/ExternalDNS addresses, every IP address one of its
  InternalIP/ExternalIP addresses (the Node's status.addresses).
Any other pending request stays pending and is named with the reason. The request's self-signature is
not checked here: the API server refuses a request whose signature does not verify when it is created,
and its spec cannot change afterwards.

Output: one line per pending request on stderr (approved, or left pending and why), then ONE line of
JSON on stdout: {"approved": [names], "left_pending": {name: reason}}. Exit status 0 when it ran
(requests left pending included), 1 when kubectl failed (nothing read, or an approval not written).
Standard library only: it runs with the node's own python3.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import ipaddress
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

SIGNER = "kubernetes.io/kubelet-serving"
USAGES = frozenset({"digital signature", "key encipherment", "server auth"})
DNS_ADDRESS_TYPES = frozenset({"Hostname", "InternalDNS", "ExternalDNS"})
IP_ADDRESS_TYPES = frozenset({"InternalIP", "ExternalIP"})
API = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
PROGRAM = "kubestrap-approve-serving-csrs"

# --- reading a PKCS#10 request (RFC 2986): just the subject and the requested subject alternative names

_OID_CN = "2.5.4.3"
_OID_O = "2.5.4.10"
_OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
_OID_SUBJECT_ALT_NAME = "2.5.29.17"
_SEQUENCE, _SET, _OID, _OCTETS, _BOOLEAN = 0x30, 0x31, 0x06, 0x04, 0x01
_ATTRIBUTES = 0xA0  # [0] IMPLICIT SET OF Attribute
_SAN_DNS, _SAN_IP = 0x82, 0x87  # GeneralName [2] dNSName, [7] iPAddress
_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii"}  # UTF8String, PrintableString, IA5String


class Request(NamedTuple):
    """What a certificate request asks for."""

    common_names: list[str]
    organizations: list[str]
    dns_names: list[str]
    ip_addresses: list[str]
    other_names: int  # subject alternative names that are neither DNS names nor IP addresses


def _tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, content, end) of the DER element at data[pos]."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos : pos + length], pos + length


def _children(content: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(content):
        tag, body, pos = _tlv(content, pos)
        out.append((tag, body))
    return out


def _only(data: bytes, tag: int) -> bytes:
    found, body, end = _tlv(data, 0)
    if found != tag or end != len(data):
        raise ValueError(f"expected DER tag {tag:#x}, found {found:#x}")
    return body


def _oid(body: bytes) -> str:
    arcs, value = [], 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise ValueError("empty object identifier")
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))


def parse_request(request: str) -> Request:
    """The subject and subject alternative names of spec.request (base64 of a PEM PKCS#10 request)."""
    try:
        text = base64.b64decode(request, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("spec.request is not base64 of a PEM block") from None
    match = re.search(r"-----BEGIN CERTIFICATE REQUEST-----(.*?)-----END CERTIFICATE REQUEST-----", text, re.S)
    if not match:
        raise ValueError("no PEM CERTIFICATE REQUEST block")
    try:
        der = base64.b64decode("".join(match.group(1).split()), validate=True)
    except binascii.Error:
        raise ValueError("the PEM block is not base64") from None
    info = _children(_only(der, _SEQUENCE))
    if not info or info[0][0] != _SEQUENCE:
        raise ValueError("not a PKCS#10 request")
    fields = _children(info[0][1])  # version, subject, subjectPKInfo, [0] attributes
    if len(fields) < 3 or fields[1][0] != _SEQUENCE:
        raise ValueError("not a PKCS#10 request")
    common_names: list[str] = []
    organizations: list[str] = []
    for rdn_tag, rdn in _children(fields[1][1]):
        if rdn_tag != _SET:
            raise ValueError("malformed subject")
        for _, pair in _children(rdn):
            (oid_tag, oid), (value_tag, value) = _children(pair)[:2]
            if oid_tag != _OID or value_tag not in _STRINGS:
                raise ValueError("unsupported subject attribute")
            target = {_OID_CN: common_names, _OID_O: organizations}.get(_oid(oid))
            if target is not None:
                target.append(value.decode(_STRINGS[value_tag]))
    dns_names: list[str] = []
    ip_addresses: list[str] = []
    other = 0
    attributes = fields[3][1] if len(fields) > 3 and fields[3][0] == _ATTRIBUTES else b""
    for _, attribute in _children(attributes):
        (oid_tag, oid), (values_tag, values) = _children(attribute)[:2]
        if oid_tag != _OID or values_tag != _SET or _oid(oid) != _OID_EXTENSION_REQUEST:
            continue
        for _, extensions in _children(values):
            for _, extension in _children(extensions):
                parts = _children(extension)
                if parts[0][0] != _OID or _oid(parts[0][1]) != _OID_SUBJECT_ALT_NAME:
                    continue
                if parts[-1][0] != _OCTETS:
                    raise ValueError("malformed subjectAltName extension")
                for name_tag, name in _children(_only(parts[-1][1], _SEQUENCE)):
                    if name_tag == _SAN_DNS:
                        dns_names.append(name.decode("ascii"))
                    elif name_tag == _SAN_IP:
                        ip_addresses.append(str(ipaddress.ip_address(name)))
                    else:
                        other += 1
    return Request(common_names, organizations, dns_names, ip_addresses, other)


# --- the decision


class Identity(NamedTuple):
    """The DNS names and IP addresses a node's serving certificate may carry."""

    names: frozenset[str]
    ips: frozenset[str]


def identity(name: str, names: Iterable[str], ips: Iterable[str]) -> Identity:
    """An Identity from a node name, its DNS names and its IP addresses (any notation)."""
    return Identity(frozenset({name, *names}), frozenset(str(ipaddress.ip_address(ip)) for ip in ips))


def node_identities(node_list: Mapping[str, Any]) -> dict[str, Identity]:
    """Node name -> Identity, from `kubectl get nodes -o json` (status.addresses)."""
    out = {}
    for node in node_list.get("items") or []:
        name = node["metadata"]["name"]
        addresses = (node.get("status") or {}).get("addresses") or []
        ips = []
        for address in addresses:
            if address.get("type") in IP_ADDRESS_TYPES:
                try:
                    ips.append(str(ipaddress.ip_address(address.get("address", ""))))
                except ValueError:
                    continue
        names = [a.get("address", "") for a in addresses if a.get("type") in DNS_ADDRESS_TYPES]
        out[name] = identity(name, filter(None, names), ips)
    return out


def state(csr: Mapping[str, Any]) -> str:
    """'approved', 'denied', 'failed' or 'pending'."""
    conditions = (csr.get("status") or {}).get("conditions") or []
    for kind in ("Denied", "Failed", "Approved"):
        if any(c.get("type") == kind and c.get("status", "True") == "True" for c in conditions):
            return kind.lower()
    return "pending"


def requester(csr: Mapping[str, Any]) -> str:
    """The node name a request was made by ('' when not a node's user name)."""
    username = (csr.get("spec") or {}).get("username") or ""
    return username[len("system:node:") :] if username.startswith("system:node:") else ""


def refusal(csr: Mapping[str, Any], nodes: Mapping[str, Identity]) -> str:
    """Why this pending request must not be approved ('' when it may be)."""
    spec = csr.get("spec") or {}
    if spec.get("signerName") != SIGNER:
        return f"signer {spec.get('signerName')} is not {SIGNER}"
    node = requester(csr)
    if not node:
        return f"requested by {spec.get('username')}, not by a node (system:node:NAME)"
    if node not in nodes:
        return f"requested by system:node:{node}, but there is no Node {node}"
    own = nodes[node]
    if "system:nodes" not in (spec.get("groups") or []):
        return "requestor is not in group system:nodes"
    usages = set(spec.get("usages") or [])
    if "server auth" not in usages or not usages <= USAGES:
        return f"usages {sorted(usages)} are not a serving certificate's"
    try:
        request = parse_request(spec.get("request") or "")
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        return f"unreadable request ({exc})"
    expected = f"system:node:{node}"
    if request.common_names != [expected] or request.organizations != ["system:nodes"]:
        return f"subject CN={request.common_names} O={request.organizations} is not CN={expected} O=system:nodes"
    if request.other_names:
        return "asks for names other than DNS names and IP addresses"
    if not request.dns_names and not request.ip_addresses:
        return "no subject alternative names"
    if not set(request.dns_names) <= own.names:
        return f"DNS names {sorted(set(request.dns_names) - own.names)} are not this node's"
    if not set(request.ip_addresses) <= own.ips:
        return f"IP addresses {sorted(set(request.ip_addresses) - own.ips)} are not this node's"
    return ""


def approval(csr: Mapping[str, Any]) -> dict[str, Any]:
    """The request with an Approved condition added: the body for its /approval subresource."""
    body = copy.deepcopy(dict(csr))
    status = body["status"] = body.get("status") or {}
    status["conditions"] = [*(status.get("conditions") or []), {
        "type": "Approved", "status": "True", "reason": "KubestrapApproved",
        "message": f"kubestrap: serving certificate of {requester(csr)} for its own names and addresses",
    }]  # fmt: skip
    return body


def plan(csr_list: Mapping[str, Any], nodes: Mapping[str, Identity]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(requests to approve, {name: reason} of the pending ones left pending) of `kubectl get csr -o json`."""
    approve, left = [], {}
    for csr in csr_list.get("items") or []:
        if state(csr) != "pending":
            continue
        reason = refusal(csr, nodes)
        if reason:
            left[csr["metadata"]["name"]] = reason
        else:
            approve.append(csr)
    return approve, left


# --- the program


def _kubectl(args: argparse.Namespace, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [args.kubectl, "--kubeconfig", args.kubeconfig, f"--request-timeout={args.timeout}s", *argv]
    try:
        return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=args.timeout * 2, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(command, 1, "", str(exc))


def _read(args: argparse.Namespace, *argv: str) -> dict[str, Any]:
    done = _kubectl(args, "get", *argv, "-o", "json")
    if done.returncode != 0:
        raise RuntimeError(f"kubectl get {' '.join(argv)} failed (waited at most {args.timeout * 2} s): {done.stderr.strip()}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Approve the kubelet serving certificate requests nodes make for themselves (see the source)."
    )
    parser.add_argument("--kubectl", default="kubectl", help="kubectl program (default: kubectl on PATH)")
    parser.add_argument("--kubeconfig", default="/etc/kubernetes/admin.conf", help="kubeconfig with the rights to approve")
    parser.add_argument("--timeout", type=int, default=30, help="seconds per API request (default 30)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be approved, approve nothing")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(f"{PROGRAM}: {line}", file=sys.stderr)

    try:
        csrs = _read(args, "certificatesigningrequests")
        nodes = node_identities(_read(args, "nodes"))
    except (RuntimeError, ValueError) as exc:
        say(str(exc))
        return 1
    approve, left = plan(csrs, nodes)
    approved, failed = [], False
    for csr in approve:
        name = csr["metadata"]["name"]
        what = f"{name} (serving certificate of {requester(csr)})"
        if args.dry_run:
            say(f"would approve {what}")
            continue
        done = _kubectl(args, "replace", "--raw", f"{API}/{name}/approval", "-f", "-", stdin=json.dumps(approval(csr)))
        if done.returncode == 0:
            approved.append(name)
            say(f"approved {what}")
            continue
        now = _kubectl(args, "get", "certificatesigningrequests", name, "-o", "json")
        if now.returncode == 0 and state(json.loads(now.stdout)) != "pending":
            say(f"{what} was decided by someone else meanwhile")  # a concurrent run of this program, or a person
            continue
        say(f"could not approve {what}: {done.stderr.strip()}")
        failed = True
    for name, reason in sorted(left.items()):
        say(f"left pending {name}: {reason}")
    print(json.dumps({"approved": approved, "left_pending": left}, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
