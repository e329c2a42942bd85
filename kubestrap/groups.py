"""The inventory groups of every kubestrap inventory (hosts.yml, the lab's, molecule's): one place.

The playbooks name them in `hosts:`; Python code imports them from here. Standard library only:
molecule's inventory script (molecule/_shared/inventory.py) imports this module too.
"""

CLUSTER_GROUP = "k8s_cluster"
CONTROL_PLANE_GROUP = "k8s_control_plane"
WORKERS_GROUP = "k8s_workers"
NODE_GROUPS = (CONTROL_PLANE_GROUP, WORKERS_GROUP)  # the children of CLUSTER_GROUP
