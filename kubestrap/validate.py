"""Offline validation of an inventory and its settings. Nothing here contacts a host.

Each problem is one line naming the file and the key, so a person can go straight to it.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubestrap import inventory as inv_mod
from kubestrap import netcheck, paths, schema, spec_check
from kubestrap.inventory import CLUSTER_GROUP, CONTROL_PLANE_GROUP, WORKERS_GROUP, Inventory
from kubestrap.netcheck import IPAddress, IPNetwork

# Control-plane node counts etcd's quorum tolerates a failure with best (an even count adds a member and no
# tolerance); more than one needs the floating API address (cluster_api_vip, keepalived + haproxy).
CONTROL_PLANE_COUNTS = (1, 3, 5, 7)
# What else listens on a kubeadm control-plane node (haproxy's cluster_api_lb_port must not be one of them).
_CONTROL_PLANE_PORTS = {2379: "etcd's clients", 2380: "etcd's peers", 2381: "etcd's metrics", 10250: "the kubelet",
                        10256: "kube-proxy's health check", 10257: "kube-controller-manager",
                        10259: "kube-scheduler"}  # fmt: skip

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PINNED_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
_SECURE_CHART_URL = re.compile(r"^(https|oci)://\S+$")
_HTTPS_URL = re.compile(r"^https://[^\s/]+\S*$")
# Helm refuses release names longer than 53 characters; kube-prometheus-stack cuts its resource names at 26.
_RELEASE_NAME_LIMITS = {"monitoring_kps_release_name": 26}
_RELEASE_NAME_LIMIT = 53
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True)
class Problem:
    source: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.key}: {self.message}"


class _Checker:
    def __init__(self, inv: Inventory, roles_dir: Path) -> None:
        self.inv = inv
        self.problems: list[Problem] = []
        self.specs = schema.known_settings(roles_dir)
        self.cluster_names = {name for name, spec in self.specs.items() if spec.cluster_level}
        self.settings = inv.cluster_settings()
        self.orphans = [layer for layer in inv.layers if _orphan(inv, layer)]

    def add(self, source: Path | str | None, key: str, message: str) -> None:
        where = paths.display(source) if isinstance(source, Path) else (source or paths.display(self.inv.hosts_file))
        self.problems.append(Problem(where, key, message))

    def setting(self, key: str) -> tuple[Any, Path | None]:
        return self.settings.get(key, (None, None))

    # --- names and types -------------------------------------------------------------------
    def vars_files_in_use(self) -> None:
        """A group_vars/host_vars file named after no group or host is ignored by Ansible."""
        for layer in self.orphans:
            if layer.scope == "group_vars":
                known, what = [*self.inv.children, "all"], "group"
            else:
                known, what = list(self.inv.hosts), "host"
            hint = difflib.get_close_matches(layer.target, known, n=1, cutoff=0.6)
            tail = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.add(layer.source, layer.target,
                     f"no {what} {layer.target!r} in {self.inv.hosts_file.name}, so Ansible ignores this file; "
                     f"name it after a {what}{tail} or remove it")

    def names_and_types(self) -> None:
        """Every layer, the documented defaults included, against the declared specs."""
        for layer in self.inv.layers:
            if layer in self.orphans:
                continue
            for key, value in layer.values.items():
                self._check_name_and_type(layer.source, str(key), value)
                if layer.scope != "defaults" and key in self.cluster_names:
                    self._check_placement(layer, str(key))
        for host in self.inv.hosts.values():
            for key, value in host.vars.items():
                self._check_name_and_type(host.source, f"{host.name}.{key}", value, name=str(key))
                if key in self.cluster_names:
                    self.add(host.source, f"{host.name}.{key}",
                             f"cluster-level setting set on one host; set it in "
                             f"{self._cluster_vars_hint()} instead")

    def _cluster_vars_hint(self) -> str:
        return paths.display(self.inv.hosts_file.parent / "group_vars" / f"{CLUSTER_GROUP}.yml")

    def _check_placement(self, layer: inv_mod.VarLayer, key: str) -> None:
        """A cluster-level setting belongs where it reaches every node and wins over its documented
        default (every cluster-level setting has one in group_vars/all/): inventory.precedence decides."""
        rank = inv_mod.precedence(layer)
        if rank is None:
            why = f"cluster-level setting set for {layer.target!r} only; set it in {self._cluster_vars_hint()}"
        elif rank < inv_mod.DEFAULTS_RANK:
            why = ("ignored by Ansible: the playbook-level group_vars/all/ defaults take precedence over "
                   f"this place; set it in {self._cluster_vars_hint()}")
        else:
            return
        self.add(layer.source, key, why)

    def _check_name_and_type(self, source: Path, key: str, value: Any, name: str | None = None) -> None:
        name = name or key
        spec = self.specs.get(name)
        if spec is None and name in schema.RENAMED:
            new = schema.RENAMED[name]
            self.add(source, key, f"renamed to {new!r} (one name per setting); write {new} instead"
                                  + (f", in {self._cluster_vars_hint()}" if new in self.cluster_names else ""))
            return
        if spec is None:
            hint = difflib.get_close_matches(name, list(self.specs), n=1, cutoff=0.75)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else (
                f" (declared settings: {schema.SETTINGS_SPEC} and roles/*/meta/argument_specs.yml)")
            self.add(source, key, f"unknown setting{suggestion}")
            return
        prefix = key[: len(key) - len(name)]
        for where, message in spec_check.check(name, value, spec):
            self.add(source, prefix + where, message)

    # --- groups and hosts ------------------------------------------------------------------
    def groups(self) -> None:
        src = self.inv.hosts_file
        for group in (CLUSTER_GROUP, CONTROL_PLANE_GROUP, WORKERS_GROUP):
            if group not in self.inv.children:
                self.add(src, group, f"group missing (expected {CLUSTER_GROUP} with children "
                                     f"{CONTROL_PLANE_GROUP} and {WORKERS_GROUP})")
        cluster = self.inv.group_hosts(CLUSTER_GROUP)
        cps, workers = self.inv.control_plane, self.inv.workers
        in_cluster, placed = set(cluster), {*cps, *workers}
        for host in [*cps, *workers]:
            if host not in in_cluster:
                self.add(src, host, f"host is not inside the {CLUSTER_GROUP} group")
        for host in cluster:
            if host not in placed:
                self.add(src, host, f"host is in {CLUSTER_GROUP} but in neither {CONTROL_PLANE_GROUP} nor "
                                    f"{WORKERS_GROUP}, so nothing would set it up; move it under one of them")
        if CONTROL_PLANE_GROUP in self.inv.children:
            if not cps:
                self.add(src, CONTROL_PLANE_GROUP, "needs at least one control-plane node")
            elif len(cps) not in CONTROL_PLANE_COUNTS:
                self.add(src, CONTROL_PLANE_GROUP,
                         f"{len(cps)} control-plane nodes ({', '.join(cps)}); etcd needs an odd number of them "
                         f"({', '.join(map(str, CONTROL_PLANE_COUNTS))}): an even count tolerates no more failed "
                         f"nodes than one fewer; move one to {WORKERS_GROUP} or add one")
        if WORKERS_GROUP in self.inv.children and not workers:
            self.add(src, WORKERS_GROUP, "needs at least one worker node")
        for host in sorted(set(cps) & set(workers)):
            self.add(src, host, f"host is in both {CONTROL_PLANE_GROUP} and {WORKERS_GROUP}; pick one")

    def hosts(self, node_net: IPNetwork | None) -> dict[IPAddress, str]:
        seen: dict[IPAddress, str] = {}
        for name in self.inv.group_hosts(CLUSTER_GROUP):
            host = self.inv.hosts[name]
            if not _DNS_LABEL.match(name):
                self.add(host.source, name, "node name must be a lowercase DNS label "
                                            "(a-z, 0-9, '-'), as Kubernetes requires")
            raw, source = inv_mod.host_value(self.inv, name, "node_ip")
            key = f"{name}.node_ip"
            if raw is None:
                self.add(host.source, key, "missing: the address this node talks to the cluster on")
                continue
            try:
                ip = ipaddress.ip_address(str(raw))
            except ValueError:
                self.add(source, key, f"not a valid IP address: {raw!r}")
                continue
            if ip in seen:
                self.add(source, key, f"{ip} is also the node_ip of {seen[ip]}")
            seen.setdefault(ip, name)
            if node_net is not None and (ip.version != node_net.version or ip not in node_net):
                self.add(source, key, f"{ip} is outside cluster_node_network {node_net}")
            elif node_net is not None:
                wrong = netcheck.node_address(ip, node_net)
                if wrong:
                    self.add(source, key, wrong)
        return seen

    # --- networks --------------------------------------------------------------------------
    def network(self, key: str) -> IPNetwork | None:
        raw, source = self.setting(key)
        if raw in (None, ""):
            self.add(source, key, "must be set to a network in CIDR form")
            return None
        try:
            return ipaddress.ip_network(str(raw), strict=True)
        except ValueError as exc:
            self.add(source, key, f"not a valid network in CIDR form ({exc})")
            return None

    def networks(self) -> tuple[IPNetwork | None, IPNetwork | None]:
        """The node and service networks, after checking all three networks."""
        node = self.network("cluster_node_network")
        pod = self.network("cluster_pod_cidr")
        svc = self.network("cluster_service_cidr")
        findings = netcheck.families(node, pod, svc)
        if not findings:
            named = [("cluster_pod_cidr", pod), ("cluster_service_cidr", svc), ("cluster_node_network", node)]
            for i, (key_a, net_a) in enumerate(named):
                for key_b, net_b in named[i + 1:]:
                    if net_a is not None and net_b is not None and net_a.overlaps(net_b):
                        findings.append((key_a, f"{net_a} overlaps {key_b} {net_b}"))
            if svc is not None:
                findings += netcheck.service_size(svc)
            if pod is not None:
                findings += netcheck.pod_blocks(pod, len(self.inv.group_hosts(CLUSTER_GROUP)))
        reported: set[str] = set()
        for key, message in findings:
            if key not in reported:  # one problem per network: the first one found
                reported.add(key)
                self.add(self.setting(key)[1], key, message)
        return node, (None if "cluster_service_cidr" in reported else svc)

    def api_endpoint(self, node_ips: dict[IPAddress, str], node_net: IPNetwork | None,
                     svc: IPNetwork | None) -> IPAddress | None:
        raw, source = self.setting("cluster_api_endpoint")
        if raw in (None, ""):
            cps = self.inv.control_plane
            if cps:
                value, _ = inv_mod.host_value(self.inv, cps[0], "node_ip")
                try:
                    return ipaddress.ip_address(str(value))
                except ValueError:
                    return None
            return None
        try:
            ip = ipaddress.ip_address(str(raw))
        except ValueError:
            if not _DNS_NAME.match(str(raw)):
                self.add(source, "cluster_api_endpoint", f"neither an IP address nor a DNS name: {raw!r}")
            else:
                wrong_name = netcheck.endpoint_name(str(raw))
                if wrong_name:
                    self.add(source, "cluster_api_endpoint", wrong_name)
            return None
        worker_names = set(self.inv.workers) - set(self.inv.control_plane)
        workers = {addr: host for addr, host in node_ips.items() if host in worker_names}
        wrong = netcheck.endpoint_address(ip, node_net, svc, workers)
        if wrong:
            self.add(source, "cluster_api_endpoint", wrong)
        return ip

    def api_vip(self, node_ips: dict[IPAddress, str], node_net: IPNetwork | None) -> IPAddress | None:
        """The floating API address (keepalived + haproxy on the control-plane nodes): required with more than
        one control-plane node; inside the node network, no node's address; the endpoint agrees with it."""
        raw, source = self.setting("cluster_api_vip")
        key = "cluster_api_vip"
        cps = self.inv.control_plane
        if raw in (None, ""):
            if len(cps) > 1 and len(cps) in CONTROL_PLANE_COUNTS:  # an even count is refused on its own
                self.add(self.inv.hosts_file, key,
                         f"must be set with {len(cps)} control-plane nodes ({', '.join(cps)}): a free address in "
                         f"cluster_node_network that keepalived moves to a working control plane; set it in "
                         f"{paths.display(self.inv.path / 'group_vars' / 'k8s_cluster.yml')}")
            return None
        try:
            ip = ipaddress.ip_address(str(raw))
        except ValueError:
            self.add(source, key, f"must be an IP address (keepalived holds it on the node LAN), got {raw!r}")
            return None
        if node_net is not None and (ip.version != node_net.version or ip not in node_net):
            self.add(source, key, f"{ip} is outside cluster_node_network {node_net}: keepalived can only move an "
                                  "address of the nodes' own LAN; pick a free one inside it")
            return ip
        if node_net is not None and ip in (node_net.network_address, node_net.broadcast_address):
            self.add(source, key, f"{ip} is the network or broadcast address of {node_net}; pick a free host address")
            return ip
        if ip in node_ips:
            self.add(source, key, f"{ip} is the node_ip of {node_ips[ip]}; the floating address must be one no node "
                                  "has: pick a free address in cluster_node_network")
            return ip
        endpoint, endpoint_src = self.setting("cluster_api_endpoint")
        if endpoint not in (None, ""):
            try:
                other = ipaddress.ip_address(str(endpoint))
            except ValueError:
                other = None  # a DNS name: it must resolve to the VIP (not checked offline)
            if other is not None and other != ip:
                self.add(endpoint_src, "cluster_api_endpoint",
                         f"{other} differs from cluster_api_vip {ip}: with a floating address the controlPlaneEndpoint "
                         "is that address (or a DNS name for it); leave cluster_api_endpoint empty or set it to "
                         f"{ip}")
        lb_port, lb_src = self.setting("cluster_api_lb_port")
        api_port, _ = self.setting("cluster_api_port")
        if isinstance(lb_port, int) and lb_port == api_port:
            self.add(lb_src, "cluster_api_lb_port",
                     f"{lb_port} is also cluster_api_port: haproxy listens on cluster_api_lb_port on every control "
                     "plane beside the API server on cluster_api_port; pick another port (default 8443)")
        elif isinstance(lb_port, int) and lb_port in _CONTROL_PLANE_PORTS:
            self.add(lb_src, "cluster_api_lb_port",
                     f"{lb_port} is the port of {_CONTROL_PLANE_PORTS[lb_port]} on every control-plane node, where "
                     "haproxy listens too; pick another port (default 8443)")
        return ip

    def scalars(self) -> None:
        repo, source = self.setting("argocd_app_of_apps_repo")
        if isinstance(repo, str) and repo and not spec_check.is_template(repo) and not _HTTPS_URL.match(repo):
            self.add(source, "argocd_app_of_apps_repo", f"must be an https:// Git URL (Argo CD is documented to read "
                                                        f"the repository over HTTPS), or empty for no app-of-apps; "
                                                        f"got {repo!r}")
        name, source = self.setting("cluster_name")
        if isinstance(name, str) and not _DNS_LABEL.match(name):
            self.add(source, "cluster_name", f"must be a lowercase DNS label, got {name!r}")
        domain, source = self.setting("cluster_dns_domain")
        if isinstance(domain, str) and not _DNS_NAME.match(domain):
            self.add(source, "cluster_dns_domain", f"not a valid DNS domain: {domain!r}")

    def release_names(self) -> None:
        """Each add-on's Helm release name: the roles name the chart's resources after it (their readiness waits and the
        addresses other roles derive use it whole), so it must be a DNS label a chart keeps as it is."""
        for key in sorted(k for k in self.specs if k.endswith("_release_name") and not k.startswith("helm_release_")):
            name, source = self.setting(key)
            if not isinstance(name, str) or spec_check.is_template(name):
                continue
            limit = _RELEASE_NAME_LIMITS.get(key, _RELEASE_NAME_LIMIT)
            if not _DNS_LABEL.match(name) or len(name) > limit:
                why = ("the chart cuts its resource names there" if key in _RELEASE_NAME_LIMITS
                       else "Helm's limit for a release name")
                self.add(source, key, f"must be a lowercase DNS label (a-z, 0-9, '-') of at most {limit} characters "
                                      f"({why}), got {name!r}")

    def metallb(self, node_net: IPNetwork | None, node_ips: dict[IPAddress, str],
                endpoint: IPAddress | None, vip: IPAddress | None = None) -> None:
        flags = self.setting("addons_enabled")[0]
        enabled = flags.get("metallb", False) if isinstance(flags, dict) else False
        raw, source = self.setting("metallb_address_pool")
        key = "metallb_address_pool"
        if raw in (None, ""):
            if enabled is True:
                self.add(source, key, "must be set while addons_enabled.metallb is true")
            return
        if not isinstance(raw, str):
            return
        try:
            first, last = _parse_pool(raw)
        except ValueError as exc:
            self.add(source, key, str(exc))
            return
        if node_net is not None and (first not in node_net or last not in node_net):
            self.add(source, key, f"{raw} is not inside cluster_node_network {node_net}")
        for ip, host in sorted(node_ips.items(), key=lambda item: (item[0].version, item[0])):
            if ip.version == first.version and first <= ip <= last:
                self.add(source, key, f"{raw} contains {ip}, the node_ip of {host}")
        if endpoint is not None and endpoint.version == first.version and first <= endpoint <= last \
                and endpoint not in node_ips:
            self.add(source, key, f"{raw} contains the API endpoint {endpoint}")
        if vip is not None and vip != endpoint and vip.version == first.version and first <= vip <= last \
                and vip not in node_ips:
            self.add(source, key, f"{raw} contains cluster_api_vip {vip}: MetalLB would hand the floating API address "
                                  "to a Service; keep the pool and the VIP apart")

    def _enabled(self, addon: str) -> bool:
        flags = self.setting("addons_enabled")[0]
        return isinstance(flags, dict) and flags.get(addon) is True

    def _role_value(self, key: str, default: Any) -> Any:
        """A role variable as the inventory sets it, else its role default (a wrong type is the spec's to report)."""
        value = self.setting(key)[0]
        return default if value is None else value

    def alerting(self) -> None:
        """The Alertmanager receiver URL, a secret: one http(s) URL, refused without being shown."""
        url, source = self.setting("monitoring_alertmanager_webhook_url")
        if not isinstance(url, str) or not url.strip() or spec_check.is_template(url):
            return
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url.strip()):
            self.add(source, "monitoring_alertmanager_webhook_url",
                     "must be one http:// or https:// URL (the Alertmanager receiver; the value is a secret and is not "
                     "shown here), or empty for no receiver")

    def storage(self) -> None:
        """The storage add-ons: the NAS of nfs_csi, local-path never the default beside Longhorn, and the monitoring
        data on a class that exists."""
        nfs_on = self._enabled("nfs_csi")
        server, source = self.setting("nfs_csi_server")
        if isinstance(server, str) and not spec_check.is_template(server):
            if not server:
                if nfs_on:
                    self.add(source, "nfs_csi_server", "must be set while addons_enabled.nfs_csi is true: the IP address "
                                                       "or DNS name of the NAS holding the nfs-csi volumes")
            elif (problem := _nas_problem(server)) is not None:
                self.add(source, "nfs_csi_server", problem)
        export, source = self.setting("nfs_csi_export_path")
        if isinstance(export, str) and not spec_check.is_template(export) and not export.startswith("/"):
            self.add(source, "nfs_csi_export_path", f"must be the absolute path of the export on the NAS (starting with "
                                                    f"/), got {export!r}")
        nfs_annotations = _dig(self.setting("nfs_csi_extra_values")[0], "storageClass", "annotations")
        if isinstance(nfs_annotations, dict) and \
                str(nfs_annotations.get(DEFAULT_CLASS_ANNOTATION, "")).lower() == "true":
            self.add(self.setting("nfs_csi_extra_values")[1], "nfs_csi_extra_values.storageClass.annotations",
                     "kubestrap keeps the NAS-backed class out of the default (one NAS is a single point of failure); "
                     f"drop {DEFAULT_CLASS_ANNOTATION}")
        self._local_path()
        self._monitoring_class()

    def _local_path(self) -> None:
        if self._enabled("longhorn"):
            for key, value in (("local_path_default_storage_class", self.setting("local_path_default_storage_class")[0]),
                               ("local_path_extra_values.storageClass.defaultClass",
                                _dig(self.setting("local_path_extra_values")[0], "storageClass", "defaultClass"))):
                if value is True:
                    self.add(self.setting(key.split(".", 1)[0])[1], key,
                             "the local-path StorageClass cannot be the cluster default while addons_enabled.longhorn is "
                             "true (Longhorn's class is; two defaults make every claim without a class ambiguous): set it "
                             "to false, or turn Longhorn off")
        node_path, source = self.setting("local_path_node_path")
        if isinstance(node_path, str) and not spec_check.is_template(node_path) and \
                (not node_path.startswith("/") or node_path.strip("/") == ""):
            self.add(source, "local_path_node_path", f"must be an absolute directory other than / (each volume is a "
                                                     f"directory under it on its node), got {node_path!r}")

    def _monitoring_class(self) -> None:
        """monitoring_storage_class naming the class of an add-on that is off: the volumes would never bind."""
        wanted, source = self.setting("monitoring_storage_class")
        if not isinstance(wanted, str) or not wanted or spec_check.is_template(wanted):
            return
        owners = {str(self._role_value("nfs_csi_storage_class", "nfs-csi")): "nfs_csi",
                  str(self._role_value("local_path_storage_class", "local-path")): "local_path",
                  "longhorn": "longhorn"}  # fmt: skip
        addon = owners.get(wanted)
        if addon is not None and not self._enabled(addon):
            self.add(source, "monitoring_storage_class",
                     f"{wanted!r} is the StorageClass of the {addon} add-on, which is off: Prometheus' and Loki's volumes "
                     f"would never bind; set addons_enabled.{addon}: true, or name a class the cluster has")

    # --- versions --------------------------------------------------------------------------
    def _charts(self) -> None:
        charts, source = self.setting("kubestrap_charts")
        if isinstance(charts, dict):
            for name, chart in charts.items():
                for key, message in _chart_problems(str(name), chart):
                    self.add(source, key, message)
        base, base_src = self.setting("kubestrap_charts_repo_base_url")
        if isinstance(base, str) and base and not _SECURE_CHART_URL.match(base):
            self.add(base_src, "kubestrap_charts_repo_base_url",
                     f"must be an https:// or oci:// URL (over plain http:// anyone on the path can swap the "
                     f"charts), got {base!r}")

    def versions(self) -> None:
        arts, source = self.setting("kubestrap_artifacts")
        arches, _ = self.setting("kubestrap_architectures")
        known_arches = self.specs["kubestrap_architectures"].choices if "kubestrap_architectures" in self.specs else ()
        if isinstance(arches, list):  # a wrong architecture is reported once, by the spec check
            arches = [a for a in arches if isinstance(a, str) and (not known_arches or a in known_arches)]
        base, base_src = self.setting("kubestrap_artifacts_base_url")
        if base not in (None, "") and not re.match(r"^(https?|file)://\S+$", str(base)):
            self.add(base_src, "kubestrap_artifacts_base_url", f"must be an http(s):// or file:// URL, got {base!r}")
        if not isinstance(arts, dict) or not isinstance(arches, list):
            return
        for name, art in arts.items():
            key = f"kubestrap_artifacts.{name}"
            if not isinstance(art, dict):
                self.add(source, key, "must be a mapping with version, url and sha256")
                continue
            for field in sorted(set(art) - {"version", "url", "sha256"}):
                self.add(source, f"{key}.{field}", "unknown field (an artifact has version, url, sha256)")
            version = art.get("version")
            if not isinstance(version, str) or not _PINNED_VERSION.match(version):
                self.add(source, f"{key}.version", f"must be a pinned version such as \"1.2.3\" (quoted), got {version!r}")
            url = art.get("url")
            if not isinstance(url, str) or not re.match(r"^https?://", url):
                self.add(source, f"{key}.url", f"must be an http(s) URL pattern, got {url!r}")
            elif "{version}" not in url and str(version) not in url:
                self.add(source, f"{key}.url", "must contain {version} so the download matches the pinned version")
            sums = art.get("sha256") or {}
            if not isinstance(sums, dict):
                self.add(source, f"{key}.sha256", "must map each architecture to a sha256")
                continue
            for arch in arches:
                digest = sums.get(arch)
                if digest is None:
                    self.add(source, f"{key}.sha256.{arch}", "missing: every version needs a checksum per architecture")
                elif not isinstance(digest, str) or not _SHA256.match(digest):
                    self.add(source, f"{key}.sha256.{arch}", "must be 64 lowercase hex characters")
        self._charts()
        for setting in ("kubestrap_images", "kubestrap_addon_images"):
            images, img_src = self.setting(setting)
            for name, ref in (images.items() if isinstance(images, dict) else []):
                problem = _image_problem(ref)
                if problem:
                    self.add(img_src, f"{setting}.{name}", problem)
        self._cluster_images()
        self._kubeadm_extras()

    def _kubeadm_extras(self) -> None:
        """kubeadm_init_extra_args and kubeadm_init_patches name components and targets kubeadm knows; the cipher
        suites let the API server start (HTTP/2 needs an AES-128-GCM suite) and suit the certificates' key type."""
        suites, suites_src = self.setting("kubeadm_init_tls_cipher_suites")
        algorithm = str(self.setting("kubeadm_init_key_algorithm")[0] or "RSA-2048")
        if isinstance(suites, list) and suites:
            kind = "ECDSA" if algorithm.startswith("ECDSA") else "RSA"
            if not {f"TLS_ECDHE_{k}_WITH_AES_128_GCM_SHA256" for k in ("RSA", "ECDSA")} & set(suites):
                self.add(suites_src, "kubeadm_init_tls_cipher_suites",
                         "needs TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: the "
                         "API server's HTTP/2 refuses to start without one")  # fmt: skip
            elif not any(f"_ECDHE_{kind}_" in str(suite) for suite in suites):
                self.add(suites_src, "kubeadm_init_tls_cipher_suites",
                         f"has no TLS_ECDHE_{kind}_ suite for the {algorithm} certificates (kubeadm_init_key_algorithm): "
                         "TLS 1.2 clients could not connect")  # fmt: skip
        for key, known in (("kubeadm_init_extra_args", KUBEADM_COMPONENTS), ("kubeadm_init_patches", KUBEADM_PATCH_TARGETS)):
            value, source = self.setting(key)
            if not isinstance(value, dict):
                continue  # absent, or a wrong type the role's spec reports
            for name, entry in value.items():
                if name not in known:
                    self.add(source, f"{key}.{name}", f"unknown: one of {', '.join(known)}")
                elif not isinstance(entry, dict):
                    self.add(source, f"{key}.{name}", f"must be a mapping, got {spec_check.describe(entry)}")
                elif key == "kubeadm_init_extra_args":
                    for flag, flag_value in entry.items():
                        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", str(flag)) or isinstance(flag_value, (dict, list)):
                            hint = "e.g. leader-elect-lease-duration: 60s"
                            self.add(source, f"{key}.{name}.{flag}",
                                     f"must be a flag name without leading dashes mapped to one value, {hint}")  # fmt: skip

    def _cluster_images(self) -> None:
        """The images list against the pins (kubestrap/images.py says what must agree)."""
        from kubestrap import images as images_mod

        names = ("kubestrap_cluster_images", "kubestrap_cluster_images_from_kubeadm", "kubestrap_artifacts",
                 "kubestrap_images", images_mod.LOCK_KEY, "addons_enabled")  # fmt: skip
        values = {name: self.setting(name)[0] for name in names}
        pause = (values["kubestrap_images"] or {}).get("pause") if isinstance(values["kubestrap_images"], dict) else None
        if _image_problem(pause):  # already reported; no second line about it
            values["kubestrap_images"] = {}
        for key, message in images_mod.problems(values):
            source = self.setting(key.split(".", 1)[0])[1] or self.setting("kubestrap_cluster_images")[1]
            self.add(source, key, message)


# kubeadm's ClusterConfiguration components with extraArgs, and the targets of its patches
KUBEADM_COMPONENTS = ("apiServer", "controllerManager", "scheduler", "etcd")
KUBEADM_PATCH_TARGETS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kubeletconfiguration")


DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _nas_problem(raw: str) -> str | None:
    """Why *raw* cannot name an NFS server every node mounts from (None: an IP address or a DNS name will do)."""
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        name = raw.lower().rstrip(".")
        if not _DNS_NAME.match(name) or name.rsplit(".", 1)[-1].isdigit():  # a top-level label is never all digits
            return (f"neither an IP address nor a DNS name: {raw!r} (write the NAS's address alone, without a scheme, "
                    "port or path)")
        if name == "localhost" or name.endswith(".localhost"):
            return f"{raw!r} is a loopback name: every node would mount from itself; name the NAS"
        return None
    if ip.is_loopback or ip.is_unspecified or ip.is_multicast:
        return f"{ip} is not an address of a NAS the nodes can reach; write the NAS's own address"
    return None


def _orphan(inv: Inventory, layer: inv_mod.VarLayer) -> bool:
    if layer.scope == "group_vars":
        return layer.target not in inv.children and layer.target not in ("all", "ungrouped")
    return layer.scope == "host_vars" and layer.target not in inv.hosts


def _image_problem(ref: Any) -> str | None:
    """An image reference is pinned by a tag (not latest), a sha256 digest, or both (name:tag@sha256:...)."""
    if not isinstance(ref, str):
        return f"must be an image reference pinned to a tag or digest, got {spec_check.describe(ref)}"
    name, at, digest = ref.partition("@")
    if at and not _DIGEST.match(digest):
        return f"digest must be sha256: and 64 lowercase hex characters, got {digest!r} in {ref!r}"
    tag = name.rsplit("/", 1)[-1].partition(":")[2]
    if at and not tag:
        return None
    if not tag or (tag == "latest" and not at) or not _TAG.match(tag):
        return f"must be pinned to a tag or digest (not latest), got {ref!r}"
    return None


def _chart_problems(name: str, chart: Any) -> Iterator[tuple[str, str]]:
    key = f"kubestrap_charts.{name}"
    if not isinstance(chart, dict):
        yield key, "must be a mapping with chart, version and repo"
        return
    for field in sorted(set(chart) - {"chart", "version", "repo"}):
        yield f"{key}.{field}", "unknown field (a chart has chart, version, repo)"
    if not isinstance(chart.get("chart"), str) or not chart.get("chart"):
        yield f"{key}.chart", "must name the chart in its repository"
    version = chart.get("version")
    if not isinstance(version, str) or not _PINNED_VERSION.match(version):
        yield f"{key}.version", f"must be a pinned chart version such as \"1.2.3\" (quoted), got {version!r}"
    repo = chart.get("repo")
    if not isinstance(repo, str) or not _SECURE_CHART_URL.match(repo):
        yield f"{key}.repo", (f"must be an https:// or oci:// repository URL (over plain http:// anyone on the path "
                              f"can swap the chart), got {repo!r}")


def _parse_pool(raw: str) -> tuple[IPAddress, IPAddress]:
    if "-" in raw:
        left, _, right = raw.partition("-")
        try:
            first, last = ipaddress.ip_address(left.strip()), ipaddress.ip_address(right.strip())
        except ValueError:
            raise ValueError(f"not a valid range FIRST-LAST of IP addresses: {raw!r}") from None
        if first.version != last.version or first > last:
            raise ValueError(f"range {raw!r} must go from a lower to a higher address of one IP family")
        return first, last
    try:
        net = ipaddress.ip_network(raw, strict=True)
    except ValueError:
        raise ValueError(f"neither FIRST-LAST nor a CIDR: {raw!r}") from None
    return net[0], net[-1]


def check(inv: Inventory, roles_dir: Path = paths.ROLES_DIR) -> list[Problem]:
    """All problems of *inv*, in a stable order (empty when the inventory is good)."""
    c = _Checker(inv, roles_dir)
    c.groups()
    c.vars_files_in_use()
    c.names_and_types()
    node_net, svc_net = c.networks()
    node_ips = c.hosts(node_net)
    endpoint = c.api_endpoint(node_ips, node_net, svc_net)
    vip = c.api_vip(node_ips, node_net)
    c.scalars()
    c.release_names()
    c.metallb(node_net, node_ips, endpoint, vip)
    c.storage()
    c.alerting()
    c.versions()
    return _dedupe(c.problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


class Invalid(Exception):
    """An inventory that cannot be used: one line per problem (loading errors are problems too)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load(path: Path, roles_dir: Path = paths.ROLES_DIR, defaults_dir: Path = paths.DEFAULTS_DIR) -> Inventory:
    """The inventory at *path*, read once and checked: the one pass every command makes; Invalid if bad."""
    try:
        inv = inv_mod.load(path, defaults_dir=defaults_dir)
    except inv_mod.InventoryError as exc:
        raise Invalid([str(exc)]) from None
    problems = check(inv, roles_dir)
    if problems:
        raise Invalid([str(problem) for problem in problems])
    return inv


def check_path(path: Path, roles_dir: Path = paths.ROLES_DIR,
               defaults_dir: Path = paths.DEFAULTS_DIR) -> Iterator[str]:
    """Load and check; yield one line per problem (loading errors are problems too)."""
    try:
        load(path, roles_dir, defaults_dir)
    except Invalid as exc:
        yield from exc.problems
