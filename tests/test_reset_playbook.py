"""playbooks/reset.yml keeps kubeadm's documented order for removing a node: drain, reset the node
(its kubelet stops), then delete the Node object. Deleting first let the still-running kubelet
register the Node again, and the next `add-node` of that name was refused by kubeadm join (seen on
the lab: 'a Node with name ... already exists'). The e2e's reset/add-node scenario runs it for real; here
`reset --node` drains and deletes with real kubectl on the REAL kube-apiserver (tests/k8s_real.py)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from helpers import ANSIBLE_PLAYBOOK, CLUSTER, ROOT, with_cluster_defaults


def _index(plays: list[dict], predicate) -> int:
    return next(i for i, play in enumerate(plays) if predicate(play))


def test_node_objects_are_deleted_only_after_the_nodes_were_reset():
    plays = yaml.safe_load((ROOT / "playbooks" / "reset.yml").read_text())

    def runs(argv_word: str):
        def found(play: dict) -> bool:
            return any(argv_word in (t.get("ansible.builtin.command", {}).get("argv") or []) for t in play.get("tasks", []))

        return found

    drain = _index(plays, runs("drain"))
    reset = _index(plays, lambda play: any(r.get("role") == "node_reset" for r in play.get("roles", [])))
    delete = _index(plays, runs("delete"))
    assert drain < reset < delete


def test_a_full_reset_removes_the_kubeconfig_of_the_inventorys_cluster(tmp_path):
    """cluster_name is set for k8s_cluster (as inventories do); the controller play must still find
    <secrets>/<that name>/admin.conf (it looked under the default name and left the file: seen on the lab)."""
    import os
    import subprocess
    import sys

    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    local = {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": local, "children": {"k8s_cluster": {"children": {
        "k8s_control_plane": {"hosts": {"cp1": {"ansible_host": "192.0.2.10", "node_ip": "192.0.2.10"}}},
        "k8s_workers": {"hosts": {}}}}}}}))  # fmt: skip
    (inv / "group_vars" / "k8s_cluster.yml").write_text("cluster_name: lab\n")
    secrets = tmp_path / "secrets"
    kubeconfig = secrets / "lab" / "admin.conf"
    kubeconfig.parent.mkdir(parents=True)
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KUBESTRAP_SECRETS_DIR=str(secrets),
               ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))  # fmt: skip
    done = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inv), "--limit", "localhost",
         str(ROOT / "playbooks" / "reset.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert not kubeconfig.exists(), done.stdout[-2000:]


def _gone_inventory(tmp_path: Path, port: int) -> Path:
    import sys

    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    local = {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": local, "children": {"k8s_cluster": {"children": {
        "k8s_control_plane": {"hosts": {"cp1": {"ansible_host": "192.0.2.10", "node_ip": "192.0.2.10"}}},
        "k8s_workers": {"hosts": {
            "w1": {"ansible_host": "192.0.2.11", "node_ip": "192.0.2.11"},
            "w2": {"ansible_host": "127.0.0.1", "ansible_port": port, "node_ip": "192.0.2.12"}}}}}}}}))  # fmt: skip
    (inv / "group_vars" / "k8s_cluster.yml").write_text("cluster_name: lab\n")
    return inv


def _playbook(tmp_path: Path, inv: Path, *args: str, env: dict[str, str] | None = None):
    import os
    import subprocess

    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KUBESTRAP_SECRETS_DIR=str(tmp_path / "secrets"),
               ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), **(env or {}))  # fmt: skip
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inv), *args, str(ROOT / "playbooks" / "reset.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_gone_node_is_left_out_of_the_reset_play(tmp_path):
    """`reset --node w2 --gone` runs nothing on w2: the reset play matches no host, drain/delete stay
    on the first control plane; without --gone w2 is reset as usual."""
    inv = _gone_inventory(tmp_path, 9)
    gone = _playbook(tmp_path, inv, "--list-hosts", "-e", "kubestrap_node_scope=w2", "-e", "kubestrap_reset_gone=true")
    normal = _playbook(tmp_path, inv, "--list-hosts", "-e", "kubestrap_node_scope=w2")
    assert gone.returncode == 0 and normal.returncode == 0, gone.stderr + normal.stderr

    def hosts_of(listing: str, play: str) -> list[str]:
        block = listing.split(f"): {play}\t")[1].split("play #")[0]  # "play #N (pattern): NAME\tTAGS"
        return [line.strip() for line in block.split("hosts (")[1].splitlines()[1:] if line.strip()]

    assert hosts_of(gone.stdout, "Reset the nodes") == []
    assert hosts_of(normal.stdout, "Reset the nodes") == ["w2"]
    assert hosts_of(gone.stdout, "Delete the reset nodes from the cluster (reset --node)") == ["cp1"]


def test_a_gone_node_that_still_answers_is_refused(tmp_path):
    """--gone is refused while the machine answers on its SSH port (it must be reset, not forgotten);
    a closed port lets the run go on."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        inv = _gone_inventory(tmp_path, port)
        extra = ["-e", "kubestrap_node_scope=w2", "-e", "kubestrap_reset_gone=true", "--limit", "localhost"]
        refused = _playbook(tmp_path, inv, *extra)
    assert refused.returncode != 0
    assert f"w2 still answers on 127.0.0.1:{port}, so it is not gone" in refused.stdout, refused.stdout[-3000:]
    closed = _playbook(tmp_path, inv, *extra)  # the listener is closed now: connection refused
    assert closed.returncode == 0, closed.stdout[-3000:]


# --- what reset removes on a node: what the manifest lists, never what was there before kubestrap ----------


class FakeNode:
    """A node as a temporary root directory: reset runs on it over a local connection, with node_reset's
    locations pointed into the directory (kubeadm absent, so `kubeadm reset` is skipped)."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "w1-root"
        self.root.mkdir()

    def p(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def make(self, *paths: str) -> None:
        for path in paths:
            target = self.p(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.endswith("/"):
                target.mkdir(exist_ok=True)
            else:
                target.write_text(f"{path}\n")

    def manifest(self, role: str, installed: list[str], kept: list[str]) -> None:
        target = self.p(f"/var/lib/kubestrap/manifest/{role}.json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"role": role, "installed": [str(self.p(x)) for x in installed],
                                      "kept": [str(self.p(x)) for x in kept]}))  # fmt: skip

    def hostvars(self) -> dict:
        import sys

        return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False,
                "ansible_host": "127.0.0.1", "node_ip": "192.0.2.11",
                "node_reset_kubeadm": str(self.p("/usr/local/bin/kubeadm")),
                "node_reset_manifest_dir": str(self.p("/var/lib/kubestrap/manifest")),
                "node_reset_legacy_marker": str(self.p("/etc/systemd/system/containerd.service")),
                "node_reset_legacy_paths": [str(self.p(x)) for x in ("/opt/cni/bin", "/etc/containerd")],
                "node_reset_always_paths": [str(self.p(x)) for x in ("/etc/kubestrap", "/var/lib/kubestrap")]}  # fmt: skip


def _node_inventory(tmp_path: Path, node: FakeNode) -> Path:
    import sys

    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    local = {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": local, "children": {"k8s_cluster": {"children": {
        "k8s_control_plane": {"hosts": {"cp1": {"ansible_host": "192.0.2.10", "node_ip": "192.0.2.10"}}},
        "k8s_workers": {"hosts": {"w1": node.hostvars()}}}}}}}))  # fmt: skip
    (inv / "group_vars" / "k8s_cluster.yml").write_text("cluster_name: lab\n")
    secrets = tmp_path / "secrets" / "lab"
    secrets.mkdir(parents=True)
    for name in ("admin.conf", "grafana-admin-password", "argocd-admin-password"):
        (secrets / name).write_text("secret\n")
    return inv


def test_reset_removes_what_the_manifest_lists_and_keeps_what_was_there_before(tmp_path):
    node = FakeNode(tmp_path)
    node.make("/usr/local/bin/containerd", "/etc/containerd/config.toml", "/opt/cni/bin/bridge",
              "/var/lib/containerd/", "/etc/kubestrap/addons/kube-prometheus-stack.values.yaml")  # fmt: skip
    node.manifest("containerd", installed=["/usr/local/bin/containerd", "/etc/containerd"], kept=["/opt/cni/bin"])
    inv = _node_inventory(tmp_path, node)
    done = _playbook(tmp_path, inv, "-e", "kubestrap_node_scope=w1", "--limit", "w1,localhost")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert not node.p("/usr/local/bin/containerd").exists() and not node.p("/etc/containerd").exists()
    assert node.p("/opt/cni/bin/bridge").exists(), "a directory that was there before kubestrap is kept"
    assert node.p("/var/lib/containerd").exists(), "a path no manifest lists is not removed"
    assert not node.p("/etc/kubestrap").exists(), "the add-on values (Grafana's password) are removed"
    assert not node.p("/var/lib/kubestrap").exists(), "the manifests go last"
    assert (tmp_path / "secrets/lab/grafana-admin-password").exists(), "reset --node keeps the controller side"
    again = _playbook(tmp_path, inv, "-e", "kubestrap_node_scope=w1", "--limit", "w1,localhost")
    assert again.returncode == 0 and "changed=0" in again.stdout.split("PLAY RECAP")[1].split("w1")[1].splitlines()[0]


# A stand-in for systemctl: logs its arguments; every unit it is asked about is loaded, active and enabled.
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$KUBESTRAP_TEST_SYSTEMCTL_LOG"
case "$1" in
  show) printf 'LoadState=loaded\\nActiveState=active\\nSubState=running\\nUnitFileState=enabled\\n' ;;
  is-enabled) echo enabled ;;
esac
exit 0
"""


def test_reset_stops_a_timer_kubestrap_installed_before_its_service_and_removes_both(tmp_path):
    """The serving certificate approver's timer (kubeadm_join) must not outlive its unit file: a timer left
    running keeps starting a service whose unit and program are gone."""
    node = FakeNode(tmp_path)
    units = [f"/etc/systemd/system/kubestrap-approve-serving-csrs.{kind}" for kind in ("timer", "service")]
    program = "/usr/local/sbin/kubestrap-approve-serving-csrs"
    node.make(*units, program)
    node.manifest("kubeadm_join", installed=[*units, program], kept=[])
    inv = _node_inventory(tmp_path, node)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "systemctl").write_text(FAKE_SYSTEMCTL)
    (fake_bin / "systemctl").chmod(0o755)
    log = tmp_path / "systemctl.log"
    import os

    done = _playbook(tmp_path, inv, "-e", "kubestrap_node_scope=w1", "--limit", "w1,localhost",
                     "-e", json.dumps({"node_reset_systemd_dir": str(node.p("/etc/systemd/system"))}),
                     env={"PATH": f"{fake_bin}:{os.environ['PATH']}", "KUBESTRAP_TEST_SYSTEMCTL_LOG": str(log)})  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    calls = log.read_text().splitlines()
    timer, service = "kubestrap-approve-serving-csrs.timer", "kubestrap-approve-serving-csrs.service"
    assert f"stop {timer}" in calls and f"disable {timer}" in calls, calls
    assert calls.index(f"stop {timer}") < calls.index(f"stop {service}"), calls
    assert calls[-1] == "daemon-reload", "systemd forgets the units once they are gone"
    assert not any(node.p(path).exists() for path in [*units, program])


def test_a_node_without_manifest_installed_by_an_older_kubestrap_gets_the_old_list_with_a_warning(tmp_path):
    node = FakeNode(tmp_path)
    node.make("/etc/systemd/system/containerd.service", "/opt/cni/bin/bridge", "/etc/containerd/config.toml")
    node.p("/etc/systemd/system/containerd.service").write_text("Description=containerd container runtime (kubestrap)\n")
    inv = _node_inventory(tmp_path, node)
    done = _playbook(tmp_path, inv, "-e", "kubestrap_node_scope=w1", "--limit", "w1,localhost")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert not node.p("/opt/cni/bin").exists() and not node.p("/etc/containerd").exists()
    assert "was installed before kubestrap recorded what it installs" in done.stdout


def test_a_node_kubestrap_never_installed_keeps_its_runtime(tmp_path):
    """No manifest and no kubestrap containerd unit: nothing but kubestrap's own directories is removed."""
    node = FakeNode(tmp_path)
    node.make("/opt/cni/bin/bridge", "/etc/containerd/config.toml", "/var/lib/kubestrap/")
    inv = _node_inventory(tmp_path, node)
    done = _playbook(tmp_path, inv, "-e", "kubestrap_node_scope=w1", "--limit", "w1,localhost")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert node.p("/opt/cni/bin/bridge").exists() and node.p("/etc/containerd/config.toml").exists()
    assert not node.p("/var/lib/kubestrap").exists()


def test_a_full_reset_removes_the_clusters_secrets_directory(tmp_path):
    """Generated passwords (Grafana, Argo CD) and the admin kubeconfig go with the cluster; another cluster's stay."""
    node = FakeNode(tmp_path)
    inv = _node_inventory(tmp_path, node)
    other = tmp_path / "secrets" / "other"
    other.mkdir()
    (other / "admin.conf").write_text("another cluster\n")
    known_hosts = tmp_path / "secrets" / "lab" / "ssh" / "known_hosts"
    known_hosts.parent.mkdir()
    known_hosts.write_text("192.0.2.10 ssh-ed25519 AAAA\n")
    done = _playbook(tmp_path, inv, "--limit", "localhost")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "secrets" / "lab").iterdir()) == ["ssh"], "the machines' host keys stay"
    assert known_hosts.exists()
    assert (other / "admin.conf").exists()


def test_a_plain_reset_shows_nothing_alarming(tmp_path):
    """The --gone guards (refusals) run only with --gone: a plain reset does not print them as skipped tasks."""
    inv = _gone_inventory(tmp_path, 9)
    done = _playbook(tmp_path, inv, "--limit", "localhost")
    assert done.returncode == 0, done.stdout[-3000:]
    tasks = [line for line in done.stdout.splitlines() if line.startswith("TASK [")]
    assert tasks and not [t for t in tasks if "Refuse" in t or "still answers" in t], tasks


# --- drain and delete against the REAL kube-apiserver ---------------------------------------------------------

AUDIT_NODES = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources: [{group: "", resources: [nodes]}]
  - level: None
"""


def test_reset_node_drains_then_deletes_only_its_node_on_the_real_api_server(tmp_path):
    """`reset --node w1` with the playbook's own kubectl commands (REAL kubectl, REAL kube-apiserver of
    tests/k8s_real.py; the first control plane over a local connection, its admin kubeconfig the control
    plane's): w1 is cordoned by the drain before its Node object is deleted, and cp1's Node stays."""
    import os

    from k8s_real import started

    policy = tmp_path / "audit-policy.yaml"
    policy.write_text(AUDIT_NODES)
    audit = tmp_path / "audit.log"
    with started(tmp_path / "plane", apiserver_args=(f"--audit-policy-file={policy}", f"--audit-log-path={audit}")) as plane:
        for name in ("cp1", "w1"):
            plane.kubectl("create", "-f", "-", stdin=f"apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n")
        node = FakeNode(tmp_path)
        inv = _node_inventory(tmp_path, node)
        hosts = yaml.safe_load((inv / "hosts.yml").read_text())
        control_plane = hosts["all"]["children"]["k8s_cluster"]["children"]["k8s_control_plane"]["hosts"]["cp1"]
        control_plane.update({k: v for k, v in node.hostvars().items() if k.startswith("ansible_")},
                             kubestrap_admin_kubeconfig=str(plane.kubeconfig))  # fmt: skip
        (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
        kubectl_only = tmp_path / "kubectl-bin"  # the real kubectl on PATH, not the built kubeadm beside it
        kubectl_only.mkdir()
        (kubectl_only / "kubectl").symlink_to(plane.kubectl_bin)
        done = _playbook(tmp_path, inv, "-e", "kubestrap_node_scope=w1", "--limit", "cp1,w1,localhost",
                         env={"PATH": f"{kubectl_only}:{os.environ['PATH']}", "HOME": plane.home})  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        assert "TASK [Drain the nodes" in done.stdout and "changed: [cp1] => (item=w1)" in done.stdout, done.stdout[-3000:]
        assert plane.kubectl("get", "nodes", "-o", "name").stdout == "node/cp1\n"
        events = [json.loads(line) for line in audit.read_text().splitlines()]
        on_w1 = [e["verb"] for e in events if e.get("objectRef", {}).get("name") == "w1" and e["verb"] in ("patch", "delete")
                 and e["responseStatus"]["code"] < 300]  # fmt: skip
        assert on_w1 == ["patch", "delete"], on_w1  # cordoned (spec.unschedulable) first, then deleted
        assert not [e for e in events if e.get("objectRef", {}).get("name") == "cp1" and e["verb"] in ("patch", "delete")]


def test_reset_removes_the_configured_staging_and_state_directories_the_state_last():
    """Whatever kubestrap_node_staging_dir and kubestrap_node_state_dir say (their one definition), reset removes
    them; the state directory (the manifests reset reads) goes last."""
    defaults = yaml.safe_load((ROOT / "roles" / "node_reset" / "defaults" / "main.yml").read_text())
    always = [with_cluster_defaults(path) for path in defaults["node_reset_always_paths"]]
    assert CLUSTER["kubestrap_node_staging_dir"] in always
    assert always[-1] == CLUSTER["kubestrap_node_state_dir"]
