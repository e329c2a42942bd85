#!/usr/bin/env python3
"""Extra molecule inventory source for lab VMs (linked as ``hosts`` by each scenario).

Adds what molecule's own inventory lacks so roles see the shape of a real cluster:
``node_ip`` per host and the ``k8s_cluster`` group with children ``k8s_control_plane`` and
``k8s_workers``. Host data comes from the lab state that ``create.yml`` leaves in the scenario's
ephemeral directory; before ``create`` it yields only the groups. Standard library only (the
group names come from kubestrap/groups.py, which is too).
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: this is molecule/_shared/
from kubestrap.groups import CLUSTER_GROUP, NODE_GROUPS

CHILDREN = list(NODE_GROUPS)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--host":
        print("{}")
        return 0
    groups = {CLUSTER_GROUP: {"children": CHILDREN}}
    for child in CHILDREN:
        groups[child] = {"hosts": []}
    hostvars = {}
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    state_file = Path(ephemeral, "lab", "state.json") if ephemeral else None
    if state_file is not None and state_file.is_file():
        try:
            vms = json.loads(state_file.read_text()).get("vms", [])
        except ValueError:
            vms = []
        for vm in vms:
            hostvars[vm["name"]] = {"node_ip": vm["node_ip"]}
            for group in vm.get("groups") or ["ungrouped"]:
                groups.setdefault(group, {"hosts": []})["hosts"].append(vm["name"])
    print(json.dumps({**groups, "_meta": {"hostvars": hostvars}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
