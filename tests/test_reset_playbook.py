"""playbooks/reset.yml keeps kubeadm's documented order for removing a node: drain, reset the node
(its kubelet stops), then delete the Node object. Deleting first let the still-running kubelet
register the Node again, and the next `add-node` of that name was refused by kubeadm join (seen on
the lab: 'a Node with name ... already exists'). The e2e's reset/add-node scenario runs it for real."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


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
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv), "--limit", "localhost",
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


def _playbook(tmp_path: Path, inv: Path, *args: str):
    import os
    import subprocess
    import sys

    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), KUBESTRAP_SECRETS_DIR=str(tmp_path / "secrets"),
               ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))  # fmt: skip
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv), *args, str(ROOT / "playbooks" / "reset.yml")],
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
