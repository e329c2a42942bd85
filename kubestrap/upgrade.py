"""The upgrade policy of `bootstrap.py upgrade` and `plan --upgrade`: from the versions the cluster reports (the API
server's, each node's kubelet) and the pinned target, either an ordered plan or a refusal that says what to do.

Pure Python, no host contacted: the CLI feeds it what playbooks/upgrade_versions.yml read from the cluster, and the
filter kubestrap_upgrade_plan (filter_plugins/upgrade_plan.py) gives playbooks/upgrade.yml the same answer.

The rules, from the upstream Version Skew Policy (kubernetes.io/releases/version-skew-policy, read 2026-12):
- kube-apiserver is upgraded one minor version at a time: minors are never skipped, even with one instance.
- a kubelet must never be newer than the kube-apiserver it talks to;
- a kubelet may be at most three minor versions older than the kube-apiserver (two for kubelets older than 1.25);
- kubelets are upgraded only after the API servers they talk to run the new version, and a node is drained before
  a minor kubelet upgrade (in-place minor kubelet upgrades are not supported);
- kubectl is supported within one minor version of kube-apiserver (kubestrap upgrades it with the node's kubelet).
kubeadm adds: `kubeadm upgrade apply` on one control plane first, `kubeadm upgrade node` on every other node after
it, no downgrades. The order here: the first control plane (apply), the other control planes one at a time (node),
then the workers in batches. A node already at the target is listed as current and gets no step (a re-run resumes).

The container runtime goes the same way (issue 21): kubestrap pins one containerd (kubestrap_artifacts.containerd);
a node whose kubelet is at the target but whose containerd (status.nodeInfo.containerRuntimeVersion,
`containerd://X.Y.Z`) is not the pin gets a step of its own (RUNTIME: drained, containerd replaced and restarted,
the kubelet restarted, uncordoned once Ready), in the same order; a node that gets a kubelet step anyway has its
containerd replaced in the same drained window (Step.runtime_nodes). A containerd newer than the pin is refused (no
downgrade, as for kubelets), and so is a runtime that is not containerd (kubestrap installs containerd only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

CONTROL_PLANE, WORKER = "control-plane", "worker"
APPLY, NODE = "kubeadm upgrade apply", "kubeadm upgrade node"
# A step for nodes whose kubelet is at the target but whose containerd is not the pin.
RUNTIME = "containerd upgrade"
# How a kubelet names a containerd runtime in status.nodeInfo.containerRuntimeVersion (`containerd://2.3.4`).
CONTAINERD_SCHEME = "containerd://"
# kubelets may trail the API server by this many minors (the skew policy; older kubelets by LEGACY_MAX_BEHIND)
MAX_KUBELET_BEHIND, LEGACY_MAX_BEHIND, LEGACY_BEFORE_MINOR = 3, 2, 25

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")


class Refused(Exception):
    """The upgrade would break the skew policy or cannot be done by kubestrap: one actionable message."""


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str, what: str) -> Version:
        """`v1.36.3`, `1.36.3` or with a build/pre-release suffix (`v1.36.3-rc.1`, `v1.36.3+vendor`)."""
        found = _VERSION.match(str(text).strip())
        if not found:
            raise Refused(f"{what} reports version {text!r}, which is not vX.Y.Z: kubestrap cannot plan an upgrade "
                          "from it; check the cluster with `bootstrap.py status`")
        return cls(*(int(part) for part in found.groups()))

    @property
    def minor_line(self) -> str:
        return f"{self.major}.{self.minor}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True)
class Node:
    """A node as the cluster reports it: kubelet version, Ready; *managed*: in the inventory (kubestrap upgrades it);
    *runtime*: its containerRuntimeVersion (`containerd://2.3.4`; read only when the plan is given a containerd pin)."""

    name: str
    role: str
    kubelet: str
    ready: bool = True
    managed: bool = True
    runtime: str = ""


@dataclass(frozen=True)
class Step:
    number: int
    action: str
    nodes: tuple[str, ...]
    role: str
    versions_from: tuple[str, ...]
    version_to: str
    # the members whose containerd is replaced in this step's drained window, from which versions, to which
    runtime_nodes: tuple[str, ...] = ()
    runtime_from: tuple[str, ...] = ()
    runtime_to: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.number, "action": self.action, "nodes": list(self.nodes), "role": self.role,
                "from": list(self.versions_from), "to": self.version_to, "runtime_nodes": list(self.runtime_nodes),
                "runtime_from": list(self.runtime_from), "runtime_to": self.runtime_to}


@dataclass
class Plan:
    apiserver: str
    target: str
    steps: list[Step] = field(default_factory=list)
    runtime: str = ""  # the pinned containerd ('' when the plan does not look at the runtime)
    current: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return not self.steps

    @property
    def pending(self) -> list[str]:
        """The nodes the steps change, in order."""
        return [name for step in self.steps for name in step.nodes]

    def as_dict(self) -> dict[str, Any]:
        return {"apiserver": self.apiserver, "target": self.target, "runtime": self.runtime,
                "steps": [s.as_dict() for s in self.steps],
                "pending": self.pending, "current": self.current, "notes": self.notes,
                "nothing_to_do": self.nothing_to_do}


def oldest_supported_kubelet(apiserver: Version) -> int:
    """The oldest kubelet minor an API server of *apiserver*'s minor supports (same major)."""
    oldest = apiserver.minor - MAX_KUBELET_BEHIND
    return oldest if oldest >= LEGACY_BEFORE_MINOR else max(apiserver.minor - LEGACY_MAX_BEHIND, oldest)


def _supports(apiserver: Version, kubelet: Version) -> bool:
    """Whether an API server at *apiserver* supports a kubelet at *kubelet* (the skew policy's kubelet rules)."""
    if kubelet.major != apiserver.major or kubelet > apiserver:
        return False
    behind = MAX_KUBELET_BEHIND if kubelet.minor >= LEGACY_BEFORE_MINOR else LEGACY_MAX_BEHIND
    return apiserver.minor - kubelet.minor <= behind


def plan(apiserver: str, nodes: list[Node], target: str, batch_size: int = 1, first_control_plane: str | None = None,
         runtime: str | None = None) -> Plan:
    """The ordered upgrade of *nodes* from the API server's version *apiserver* to *target*, or Refused.

    *nodes* in the order to work in (the inventory's); *first_control_plane* runs `kubeadm upgrade apply` (default:
    the first managed control-plane node); workers go in batches of *batch_size*. *runtime*: the pinned containerd
    version; given, each managed node's containerd is brought to it as well (None: the runtime is not looked at)."""
    if batch_size < 1:
        raise Refused(f"batch size {batch_size}: upgrade workers in batches of at least 1 (--batch-size N)")
    running = Version.parse(apiserver, "the API server")
    wanted = Version.parse(target, "the pinned kubeadm/kubelet (group_vars/all/versions.yml)")
    kubelets = {n.name: Version.parse(n.kubelet, f"node {n.name}'s kubelet") for n in nodes}
    _refuse_version_jump(running, wanted)
    managed = [n for n in nodes if n.managed]
    _refuse_broken_nodes(managed, kubelets, wanted)
    pin = Version.parse(runtime, "the pinned containerd (kubestrap_artifacts.containerd)") if runtime is not None else None
    runtimes = _runtimes(managed, pin) if pin else {}
    _refuse_skew(nodes, kubelets, running, wanted)
    control = [n for n in managed if n.role == CONTROL_PLANE]
    if not control:
        raise Refused("no control-plane node of the inventory is registered in the cluster: `kubeadm upgrade apply` "
                      "runs on the first one (k8s_control_plane); check the inventory against `bootstrap.py status`")
    first = next((n for n in control if n.name == first_control_plane), None) if first_control_plane else control[0]
    if first is None:
        raise Refused(f"the first control-plane node {first_control_plane} is not registered in the cluster: "
                      "`kubeadm upgrade apply` runs there; check the inventory against `bootstrap.py status`")

    def kubelet_due(n: Node) -> bool:
        return kubelets[n.name] != wanted

    def runtime_due(n: Node) -> bool:
        return bool(pin) and runtimes[n.name] != pin

    result = Plan(str(running), str(wanted), runtime=str(pin) if pin else "")
    result.current = [n.name for n in managed if not kubelet_due(n) and not runtime_due(n)
                      and not (n is first and running != wanted)]
    result.notes = _notes(nodes, kubelets, running)
    steps: list[tuple[str, list[Node], str]] = []
    if running != wanted:
        steps.append((APPLY, [first], CONTROL_PLANE))
    elif kubelet_due(first) or runtime_due(first):
        steps.append((NODE if kubelet_due(first) else RUNTIME, [first], CONTROL_PLANE))
    steps += [(NODE if kubelet_due(n) else RUNTIME, [n], CONTROL_PLANE) for n in control
              if n is not first and (kubelet_due(n) or runtime_due(n))]
    workers = [n for n in managed if n.role != CONTROL_PLANE and (kubelet_due(n) or runtime_due(n))]
    # a batch is what the workers' play runs at once (its serial, in the inventory's order): one step whose action
    # applies to every member, `kubeadm upgrade node` when one of them needs its kubelet upgraded (on a member already
    # at the target it only rewrites the same kubelet configuration)
    for i in range(0, len(workers), batch_size):
        batch = workers[i:i + batch_size]
        steps.append((NODE if any(kubelet_due(n) for n in batch) else RUNTIME, batch, WORKER))
    for number, (action, members, role) in enumerate(steps, start=1):
        versions = sorted({kubelets[n.name] for n in members} | ({running} if action == APPLY else set()))
        replaced = [n for n in members if runtime_due(n)]
        result.steps.append(Step(number, action, tuple(n.name for n in members), role,
                                 tuple(str(v) for v in versions), str(wanted),
                                 tuple(n.name for n in replaced),
                                 tuple(str(v) for v in sorted({runtimes[n.name] for n in replaced})),
                                 str(pin) if replaced else ""))
    return result


def runtime_version(reported: str, name: str) -> Version:
    """The containerd version of a node's containerRuntimeVersion (`containerd://2.3.4`), or Refused: kubestrap
    installs and upgrades containerd only."""
    text = str(reported or "").strip()
    if not text:
        raise Refused(f"node {name} reports no container runtime (status.nodeInfo.containerRuntimeVersion is empty): "
                      "kubestrap upgrades containerd with the kubelet and needs its version; check the node with "
                      f"`kubectl get node {name} -o wide` (is its kubelet running?)")
    if not text.startswith(CONTAINERD_SCHEME):
        raise Refused(f"node {name} runs the container runtime {text!r}, not containerd: kubestrap installs and upgrades "
                      f"containerd only (roles/containerd). Move the node to containerd (`bootstrap.py reset --node {name}`, "
                      "then `bootstrap.py up` joins it again with the pinned containerd) or take it out of the inventory")
    return Version.parse(text[len(CONTAINERD_SCHEME):], f"node {name}'s containerd")


def _runtimes(managed: list[Node], pin: Version) -> dict[str, Version]:
    """Each managed node's containerd version; refuses a runtime that is not containerd and a containerd newer than
    the pin (kubestrap does not downgrade it)."""
    runtimes = {n.name: runtime_version(n.runtime, n.name) for n in managed}
    newer = [n for n in managed if runtimes[n.name] > pin]
    if newer:
        names = ", ".join(f"{n.name} (containerd {runtimes[n.name]})" for n in newer)
        raise Refused(f"{names} run(s) a containerd newer than the pinned {pin}: kubestrap does not downgrade containerd; "
                      f"pin {max(runtimes[n.name] for n in newer)} (kubestrap_artifacts.containerd with its checksums in "
                      "group_vars/all/versions.yml)")
    return runtimes


def _refuse_version_jump(running: Version, wanted: Version) -> None:
    if wanted.major != running.major:
        raise Refused(f"the pinned version {wanted} is of another major version than the running API server {running}: "
                      "kubestrap upgrades within one major version only")
    if wanted < running:
        raise Refused(f"the pinned version {wanted} is older than the running API server {running}: kubestrap does not "
                      f"downgrade (kubeadm does not support it); pin {running} or newer (kubestrap_artifacts.kubeadm, "
                      ".kubelet, .kubectl with their checksums in group_vars/all/versions.yml)")
    if wanted.minor > running.minor + 1:
        skipped = [f"{running.major}.{m}" for m in range(running.minor + 1, wanted.minor)]
        raise Refused(f"the pinned version {wanted} skips minor version(s) {', '.join(skipped)} of the running API server "
                      f"{running}: the API server is upgraded one minor at a time. Pin the newest {skipped[0]}.x first "
                      "(kubestrap_artifacts.kubeadm, .kubelet, .kubectl in group_vars/all/versions.yml), run "
                      f"`bootstrap.py upgrade`, then pin {wanted} and run it again")


def _refuse_broken_nodes(managed: list[Node], kubelets: dict[str, Version], wanted: Version) -> None:
    newer = [n for n in managed if kubelets[n.name] > wanted]
    if newer:
        names = ", ".join(f"{n.name} (kubelet {kubelets[n.name]})" for n in newer)
        raise Refused(f"{names} run(s) a kubelet newer than the pinned {wanted}: kubestrap does not downgrade a kubelet; "
                      "pin the newer version in group_vars/all/versions.yml")
    down = [n.name for n in managed if not n.ready]
    if down:
        raise Refused(f"{', '.join(down)} {'is' if len(down) == 1 else 'are'} NotReady: an upgrade stops at a node "
                      "that does not come back and goes on only once it is Ready again. Bring it back (on the node: "
                      "`systemctl status kubelet`, `journalctl -u kubelet`), or remove it (`bootstrap.py reset --node "
                      "NAME`, then take it out of the inventory), then run the upgrade again")


def _refuse_skew(nodes: list[Node], kubelets: dict[str, Version], running: Version, wanted: Version) -> None:
    """Every kubelet that is not upgraded yet must be supported by the API server at *wanted* (while the workers
    wait their turn, and for good on nodes kubestrap does not manage)."""
    stale = [n for n in nodes if kubelets[n.name] != wanted and not _supports(wanted, kubelets[n.name])
             and kubelets[n.name] <= wanted]
    if stale:
        names = ", ".join(f"{n.name} (kubelet {kubelets[n.name]})" for n in stale)
        oldest = f"{wanted.major}.{oldest_supported_kubelet(wanted)}"
        unmanaged = [n.name for n in stale if not n.managed]
        how = (f"upgrade them by hand or remove them from the cluster first ({', '.join(unmanaged)} not in the inventory)"
               if unmanaged else
               f"bring every kubelet to the API server's version first: pin {running} (the running version) and run "
               f"`bootstrap.py upgrade`, then pin {wanted}")
        raise Refused(f"{names}: an API server at {wanted} supports kubelets from {oldest} on (a kubelet may trail it "
                      f"by at most {MAX_KUBELET_BEHIND} minor versions, and never be newer); {how}")
    ahead = [n for n in nodes if not n.managed and kubelets[n.name] > wanted]
    if ahead:
        raise Refused(f"{', '.join(n.name for n in ahead)} (not in the inventory) run(s) a kubelet newer than the pinned "
                      f"{wanted}: a kubelet must never be newer than the API server; pin a version not older than it")


def _notes(nodes: list[Node], kubelets: dict[str, Version], running: Version) -> list[str]:
    notes = []
    for n in nodes:
        if kubelets[n.name] > running:
            notes.append(f"{n.name}'s kubelet {kubelets[n.name]} is newer than the API server {running} (outside the skew "
                         "policy): the first step brings the API server to the pin")
        if not n.managed:
            notes.append(f"{n.name} is registered in the cluster but not in the inventory: kubestrap does not upgrade it"
                         + ("" if n.ready else " (it is NotReady)"))
    return notes


# --- what the cluster reports (playbooks/upgrade_versions.yml, the kube_upgrade role's `versions` entry point) ---
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


def report(version_doc: dict[str, Any], nodes_doc: dict[str, Any]) -> dict[str, Any]:
    """The few facts the policy needs from `kubectl version -o json` and `kubectl get nodes -o json`: the API server's
    gitVersion and, per Node, its kubelet version, container runtime (`containerd://2.3.4`), Ready condition and
    control-plane label."""
    server = (version_doc or {}).get("serverVersion") or {}
    nodes = []
    for item in (nodes_doc or {}).get("items") or []:
        meta, status = item.get("metadata") or {}, item.get("status") or {}
        ready = next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"), "Unknown")
        info = status.get("nodeInfo") or {}
        nodes.append({"name": str(meta.get("name", "")), "kubelet": str(info.get("kubeletVersion", "")),
                      "runtime": str(info.get("containerRuntimeVersion", "")), "ready": ready == "True",
                      "control_plane": CONTROL_PLANE_LABEL in (meta.get("labels") or {}),
                      "schedulable": not (item.get("spec") or {}).get("unschedulable", False)})
    return {"apiserver": str(server.get("gitVersion", "")), "nodes": nodes}


def pinned_target(artifacts: dict[str, Any]) -> str:
    """The version kubestrap upgrades to: the one pin of kubeadm, kubelet and kubectl (group_vars/all/versions.yml)."""
    pins = {name: str(((artifacts or {}).get(name) or {}).get("version", "")) for name in ("kubeadm", "kubelet", "kubectl")}
    if len(set(pins.values())) != 1 or not pins["kubeadm"]:
        shown = ", ".join(f"{name} {version or '(none)'}" for name, version in pins.items())
        raise Refused(f"kubestrap_artifacts pins {shown}: an upgrade needs one version for the three (kubeadm, kubelet and "
                      "kubectl of the same release, with their checksums, in group_vars/all/versions.yml)")
    return pins["kubeadm"]


def pinned_runtime(artifacts: dict[str, Any]) -> str | None:
    """The containerd version kubestrap runs (kubestrap_artifacts.containerd), or None when none is pinned."""
    version = str(((artifacts or {}).get("containerd") or {}).get("version", "") or "")
    return version or None


def nodes_of(cluster: dict[str, Any], control_plane: list[str], workers: list[str]) -> list[Node]:
    """The cluster's nodes as the policy takes them, in the inventory's order (control planes, then workers), then
    the nodes only the cluster knows; the inventory's groups give the role of the nodes it holds."""
    reported = {str(n["name"]): n for n in cluster.get("nodes") or []}
    order = [*control_plane, *workers]
    names = [n for n in order if n in reported] + sorted(set(reported) - set(order))
    nodes = []
    for name in names:
        entry = reported[name]
        role = (CONTROL_PLANE if name in control_plane else WORKER if name in workers
                else CONTROL_PLANE if entry.get("control_plane") else WORKER)
        nodes.append(Node(name, role, str(entry.get("kubelet", "")), bool(entry.get("ready", False)), name in order,
                          str(entry.get("runtime", ""))))
    return nodes


def plan_cluster(cluster: dict[str, Any], control_plane: list[str], workers: list[str], artifacts: dict[str, Any],
                 batch_size: int = 1) -> Plan:
    """plan() on what the cluster reported (report()) for the inventory's nodes and pins; the first control-plane
    node of the inventory runs `kubeadm upgrade apply`; with a containerd pin (kubestrap_artifacts.containerd), each
    node's containerd is brought to it too."""
    if not cluster.get("apiserver"):
        raise Refused("the API server did not report its version: is the cluster up? (`bootstrap.py status`)")
    target = pinned_target(artifacts)
    nodes = nodes_of(cluster, control_plane, workers)
    unjoined = [n for n in [*control_plane, *workers] if n not in {node.name for node in nodes}]
    result = plan(cluster["apiserver"], nodes, target, batch_size, control_plane[0] if control_plane else None,
                  pinned_runtime(artifacts))
    result.notes += [f"{name} is in the inventory but not registered in the cluster: `bootstrap.py up` joins it at "
                     f"{target} once the control plane runs it" for name in unjoined]
    result.notes += [f"{n['name']} is cordoned (unschedulable): if an interrupted upgrade left it so, "
                     f"`kubectl uncordon {n['name']}`" for n in cluster.get("nodes") or [] if n.get("schedulable") is False]
    return result


def node_at(node_doc: dict[str, Any], target: str, runtime: str | None = None) -> bool:
    """Whether a Node (`kubectl get node NAME -o json`) reports Ready with its kubelet at *target* (and, given
    *runtime*, its containerd at that version): what the upgrade waits for on each node before it uncordons it."""
    status = (node_doc or {}).get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    info = status.get("nodeInfo") or {}
    try:
        at = ready and Version.parse(str(info.get("kubeletVersion", "")), "the node") == Version.parse(target, "the target")
        if at and runtime:
            at = runtime_version(str(info.get("containerRuntimeVersion", "")), "the node") == Version.parse(runtime, "the pin")
        return at
    except Refused:
        return False
