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
