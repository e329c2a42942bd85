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
