"""Preflight's shape, which is what makes it scale with the number of nodes: per node one probe task (one module
run answering every question, judged there against the node's settings) and the stop, with the checks that
compare nodes (machine-id, product_uuid, MAC) judged once on the controller over every node's probe
(roles/preflight/action_plugins). Here: the judging on synthetic probes (every single-node check, the
cross-node ones, identities remembered from an earlier run for add-node), and the real role on nodes that
are this machine: the tasks each node runs, sudo that fails, a node that never answers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import ANSIBLE_PLAYBOOK, ARCH_MAP, CLUSTER, ROOT, with_cluster_defaults

PLUGINS = ROOT / "roles" / "preflight" / "action_plugins"
DEFAULTS = yaml.safe_load((ROOT / "roles/preflight/defaults/main.yml").read_text())
MARKERS = [with_cluster_defaults(path) for path in DEFAULTS["preflight_kubestrap_runtime_markers"]]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, PLUGINS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


probe_plugin = _load("kubestrap_preflight_probe")
verdict_plugin = _load("kubestrap_preflight_verdict")

SETTINGS = {
    "node_ip": "10.0.0.11", "min_cpus": 2, "min_memory_mb": 1700, "supported_os": DEFAULTS["preflight_supported_os"],
    "architectures": ["amd64"], "arch_map": ARCH_MAP, "min_kernel": "5.10", "max_clock_skew": 30, "ports": [10250, 6443],
    "runtimes": DEFAULTS["preflight_runtimes"], "runtime_markers": MARKERS,
    "allow_foreign_runtime": False,
}  # fmt: skip


def _probe(**over) -> dict:
    """A kubestrap_host_probe result of a healthy Debian 12 node owning 10.0.0.11 (as a second address)."""
    base = {
        "ansible_facts": {"ansible_distribution": "Debian", "ansible_distribution_version": "12.8",
                          "ansible_distribution_major_version": "12", "ansible_architecture": "x86_64",
                          "ansible_kernel": "6.1.0-27-amd64", "ansible_hostname": "node1"},
        "present": ["/sys/fs/cgroup/cgroup.controllers"], "files": {"/etc/machine-id": "0123456789abcdef\n"},
        "hardware": {"vcpus": 2, "memtotal_mb": 1900, "product_uuid": "4c4c4544-0001"},
        "interfaces": {"lo": {"mac": "00:00:00:00:00:00", "ipv4": ["127.0.0.1"]},
                       "eth0": {"mac": "52:54:00:aa:bb:01", "ipv4": ["10.0.0.5", "10.0.0.11"]}},
        "tcp_listening": [22], "clock": 1000.0, "uid": 0,
    }  # fmt: skip
    for key, value in over.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return base


OK_SUDO = {"ok": True, "detail": ""}


def _judge(probe: dict, sudo: dict = OK_SUDO, window: tuple[float, float] = (999.5, 1000.5), **settings) -> dict:
    return probe_plugin.judge(probe, {**SETTINGS, **settings}, sudo, window)["results"]


def test_a_healthy_node_passes_every_single_node_check():
    results = _judge(_probe())
    assert {check: r["ok"] for check, r in results.items() if not r["ok"]} == {}
    assert list(results) == ["ssh", "sudo", "os", "arch", "kernel", "cgroup_v2", "cpu", "memory", "node_ip",
                             "machine_id", "product_uuid", "mac", "clock", "ports", "runtime"]  # fmt: skip
    assert results["node_ip"]["detail"] == "10.0.0.11 on eth0" and results["mac"]["detail"] == "52:54:00:aa:bb:01"
    assert results["os"]["detail"] == "Debian 12.8" and results["arch"]["detail"] == "amd64"
    assert results["ssh"]["detail"] == "node1" and results["ports"]["detail"] == "free"


def test_each_single_node_check_fails_with_what_is_wrong():
    bad = _judge(
        _probe(ansible_facts={"ansible_distribution": "CentOS", "ansible_distribution_major_version": "9",
                              "ansible_distribution_version": "9.3", "ansible_architecture": "aarch64",
                              "ansible_kernel": "4.19.0-20-arm64"},
               present=[], files={"/etc/machine-id": ""}, hardware={"vcpus": 1, "memtotal_mb": 800},
               interfaces={"eth0": {"mac": "52:54:00:aa:bb:01", "ipv4": ["10.0.0.5"]}},
               tcp_listening=[22, 6443, 10250], clock=1100.0),
        sudo={"ok": False, "detail": "sudo: a password is required"},
    )  # fmt: skip
    assert {check for check, r in bad.items() if not r["ok"]} == {
        "sudo", "os", "arch", "kernel", "cgroup_v2", "cpu", "memory", "node_ip", "machine_id", "clock", "ports"}
    assert bad["sudo"]["detail"] == "sudo: a password is required"
    assert bad["os"]["detail"] == "CentOS 9.3" and bad["arch"]["detail"] == "arm64"
    assert bad["cgroup_v2"]["detail"] == "cgroup v1: boot with systemd.unified_cgroup_hierarchy=1"
    assert bad["cpu"]["detail"] == "1 (min 2)" and bad["memory"]["detail"] == "800 MiB (min 1700)"
    assert bad["node_ip"]["detail"] == "10.0.0.11 on no interface" and bad["mac"]["detail"] == ""
    assert bad["clock"]["detail"] == "skew 100s" and bad["ports"]["detail"] == "in use: 6443,10250"
    assert bad["machine_id"]["detail"] == "/etc/machine-id is empty"


def test_the_clock_is_judged_against_the_controllers_window_and_ports_are_ignored_once_joined():
    assert _judge(_probe(clock=1029.0), window=(998.0, 999.0))["clock"] == {"ok": True, "detail": "skew 30s"}
    assert _judge(_probe(clock=960.0), window=(998.0, 999.0))["clock"] == {"ok": False, "detail": "skew 38s"}
    joined = _judge(_probe(present=["/sys/fs/cgroup/cgroup.controllers", "/etc/kubernetes/kubelet.conf"],
                           tcp_listening=[6443, 10250]))  # fmt: skip
    assert joined["ports"] == {"ok": True, "detail": "joined"}
    assert _judge(_probe(tcp_listening=[6443]), ports=[10250])["ports"]["ok"]  # a worker does not need 6443


def test_foreign_runtimes_are_refused_unless_allowed_and_kubestraps_own_containerd_passes():
    docker = _probe(present=["/sys/fs/cgroup/cgroup.controllers", "/run/docker.sock"])
    assert _judge(docker)["runtime"] == {"ok": False, "detail": "docker (/run/docker.sock) not installed by kubestrap; "
                                         "remove it or set preflight_allow_foreign_runtime: true"}  # fmt: skip
    assert _judge(docker, allow_foreign_runtime=True)["runtime"] == {"ok": True, "detail": "allowed: docker (/run/docker.sock)"}
    ours = _probe(present=["/usr/local/bin/containerd", "/var/lib/kubestrap/manifest/containerd.json"])
    assert _judge(ours)["runtime"] == {"ok": True, "detail": "none"}


def _node(name: str, machine_id: str, uuid: str, mac: str, **results) -> dict:
    checks = {"ssh": {"ok": True, "detail": name}, "machine_id": {"ok": True, "detail": machine_id[:8]},
              "product_uuid": {"ok": True, "detail": uuid[:8]}, "mac": {"ok": True, "detail": mac}, **results}  # fmt: skip
    return {"results": checks, "identity": {"machine_id": machine_id, "product_uuid": uuid, "mac": mac},
            "foreign_runtimes": []}  # fmt: skip


def test_shared_identities_are_found_across_nodes_and_name_the_others():
    probes = {
        "cp": _node("cp", "aaaa1111", "u-1", "52:00:00:00:00:01"),
        "w1": _node("w1", "aaaa1111", "", "52:00:00:00:00:02"),  # cloned image: same machine-id as cp
        "w2": _node("w2", "bbbb2222", "", "52:00:00:00:00:03"),  # product_uuid unknown on w1 and w2: not "shared"
        "w3": _node("w3", "cccc3333", "u-3", "52:00:00:00:00:03"),  # same MAC as w2
        "w4": _node("w4", "aaaa1111", "u-4", "52:00:00:00:00:04"),
    }
    judged = verdict_plugin.verdict(probes, {}, ["cp", "w1", "w2", "w3", "w4"])
    hosts = judged["hosts"]
    assert hosts["cp"]["machine_id"] == {"ok": False, "detail": "shared with w1,w4"}
    assert hosts["w1"]["machine_id"] == {"ok": False, "detail": "shared with cp,w4"}
    assert hosts["w2"]["mac"] == {"ok": False, "detail": "shared with w3"} and hosts["w2"]["machine_id"]["ok"]
    assert all(hosts[h]["product_uuid"]["ok"] for h in probes)
    assert set(judged["failures"]) == {"cp", "w1", "w2", "w3", "w4"}
    assert judged["failures"]["w3"] == ("preflight failed on w3: mac = shared with w2. Fix these on the host (or the "
                                        "inventory), then run `bootstrap.py check --hosts` again.")  # fmt: skip
    clean = verdict_plugin.verdict({"cp": probes["cp"], "w2": probes["w2"]}, {}, ["cp", "w2"])
    assert clean["failures"] == {} and clean["hosts"]["cp"] == probes["cp"]["results"]


def test_a_new_node_is_compared_with_the_identities_remembered_from_earlier_runs():
    """add-node probes only the new node; the others' identities come from the fact cache."""
    cached = {"cp": {"machine_id": "aaaa1111", "product_uuid": "u-1", "mac": "52:00:00:00:00:01"},
              "w1": {"machine_id": "bbbb2222", "product_uuid": "u-2", "mac": "52:00:00:00:00:02"}}  # fmt: skip
    new = {"w9": _node("w9", "bbbb2222", "u-9", "52:00:00:00:00:09")}
    judged = verdict_plugin.verdict(new, cached, ["cp", "w1", "w9"])
    assert list(judged["hosts"]) == ["w9"] and judged["hosts"]["w9"]["machine_id"]["detail"] == "shared with w1"


def test_single_node_failures_and_warnings_reach_the_verdict():
    failing = _node("w1", "bbbb2222", "u-2", "m2", cpu={"ok": False, "detail": "1 (min 2)"},
                    runtime={"ok": False, "detail": "docker (/run/docker.sock) not installed by kubestrap; ..."})  # fmt: skip
    podman = "podman (/run/podman/podman.sock)"
    allowed = {**_node("w2", "cccc3333", "u-3", "m3", runtime={"ok": True, "detail": f"allowed: {podman}"}),
               "foreign_runtimes": [podman]}  # fmt: skip
    judged = verdict_plugin.verdict({"w1": failing, "w2": allowed}, {}, ["w1", "w2"])
    assert judged["failures"]["w1"].startswith("preflight failed on w1: cpu = 1 (min 2); runtime = docker (")
    assert list(judged["runtime_warnings"]) == ["w2"]
    assert judged["runtime_warnings"]["w2"].startswith("WARNING: w2 runs a container runtime kubestrap did not "
                                                        "install: podman (/run/podman/podman.sock).")  # fmt: skip


# --- the real role on nodes that are this machine -------------------------------------------------------------
def _run(tmp: Path, nodes: dict[str, dict], play_hosts: str = "k8s_cluster", **env_extra: str) -> dict:
    # no group_vars/all outside playbooks/: the cluster settings the role reads come with the inventory
    settings = {key: CLUSTER[key] for key in ("kubestrap_arch_map", "kubestrap_node_state_dir", "kubestrap_node_staging_dir")}
    (tmp / "hosts.yml").write_text(yaml.safe_dump({"all": {"vars": settings,
                                                            "children": {"k8s_cluster": {"children": {
        "k8s_control_plane": {"hosts": {n: v for n, v in nodes.items() if n.startswith("cp")}},
        "k8s_workers": {"hosts": {n: v for n, v in nodes.items() if not n.startswith("cp")}}}}}}}))  # fmt: skip
    play = [{"name": "Preflight", "hosts": play_hosts, "gather_facts": False, "roles": [{"role": "preflight"}]}]
    (tmp / "play.yml").write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_LIBRARY=str(ROOT / "playbooks" / "library"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
               ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_SHOW_CUSTOM_STATS="1",
               **{"ANSIBLE_CACHE_PLUGIN": "memory", **env_extra})  # fmt: skip
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp / "hosts.yml"), str(tmp / "play.yml")],
                          capture_output=True, text=True, env=env, cwd=tmp, timeout=300)  # fmt: skip
    return json.loads(proc.stdout)


LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "node_ip": "127.0.0.1",
         "preflight_min_cpus_control_plane": 1, "preflight_min_memory_mb_control_plane": 1}  # fmt: skip


def test_each_node_runs_one_probe_and_the_stop_and_the_comparison_runs_once(tmp_path: Path):
    out = _run(tmp_path, {"cp1": dict(LOCAL), "w1": dict(LOCAL), "w2": dict(LOCAL)})
    tasks = [(t["task"]["name"].split(" : ")[-1], t["hosts"]) for t in out["plays"][0]["tasks"]]
    per_host = {host: [name for name, hosts in tasks if host in hosts] for host in ("cp1", "w1", "w2")}
    for host, names in per_host.items():
        # the role's argument check, the probe and the stop; the comparison once, on the first node
        assert len(names) == (4 if host == "cp1" else 3), (host, names)
        assert names[0].startswith("Validating arguments") and names[1].startswith("Look at the node")
        assert names[-1] == "Stop this node if a check failed"
    compare = [hosts for name, hosts in tasks if name.startswith("Compare the nodes")]
    assert len(compare) == 1 and list(compare[0]) == ["cp1"]
    probe = next(hosts for name, hosts in tasks if name.startswith("Look at the node"))
    # the probe ran as a bare Python program, not as a module (no module_utils to unpack and compile on the node)
    assert {host: r["probe"]["via"] for host, r in probe.items()} == {"cp1": "python", "w1": "python", "w2": "python"}
    facts = probe["w1"]["ansible_facts"]
    # what later phases read from the fact cache, and the identity add-node compares against
    assert facts["ansible_architecture"] and facts["ansible_os_family"] and facts["ansible_distribution_version"]
    assert facts["preflight_machine_id"] == Path("/etc/machine-id").read_text().strip()
    assert facts["preflight_mac"] == probe["w1"]["identity"]["mac"]
    # three nodes on one machine: the same machine-id, each named by the others
    judged = compare[0]["cp1"]["hosts"]
    assert judged["w1"]["machine_id"] == {"ok": False, "detail": "shared with cp1,w2"}
    assert judged["cp1"]["node_ip"]["ok"] and judged["cp1"]["sudo"]["ok"], judged["cp1"]
    stop = next(hosts for name, hosts in tasks if name == "Stop this node if a check failed")
    assert all(r.get("failed") for r in stop.values())
    assert "preflight failed on w2: " in stop["w2"]["msg"] and "machine_id = shared with cp1,w1" in stop["w2"]["msg"]
    assert out["stats"]["cp1"]["ok"] >= 3 and out["global_custom_stats"]["kubestrap_preflight"].keys() == {"cp1", "w1", "w2"}


def test_failing_sudo_is_reported_and_the_rest_still_checked_and_a_silent_node_is_unreachable(tmp_path: Path):
    # every become attempt fails, as sudo asking for a password does (another user: become to oneself is skipped)
    nosudo = {**LOCAL, "ansible_become_exe": "/bin/false", "ansible_become_user": "nobody"}
    silent = {"ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_user": "nobody", "node_ip": "127.0.0.1",
              "preflight_connect_timeout": 2}  # fmt: skip
    out = _run(tmp_path, {"cp1": dict(LOCAL), "w1": nosudo, "w2": silent})
    tasks = {t["task"]["name"].split(" : ")[-1]: t["hosts"] for t in out["plays"][0]["tasks"]}
    probe = next(hosts for name, hosts in tasks.items() if name.startswith("Look at the node"))
    assert probe["w2"].get("unreachable") and "no SSH answer within 2s" in probe["w2"]["msg"], probe["w2"]
    judged = next(iter(next(h for n, h in tasks.items() if n.startswith("Compare the nodes")).values()))["hosts"]
    assert set(judged) == {"cp1", "w1"}  # the silent node left the play
    assert judged["w1"]["sudo"]["ok"] is False and judged["w1"]["sudo"]["detail"], judged["w1"]["sudo"]
    assert judged["w1"]["cgroup_v2"]["detail"] and judged["w1"]["os"]["detail"] == judged["cp1"]["os"]["detail"]
    assert "sudo = " in tasks["Stop this node if a check failed"]["w1"]["msg"]


def test_add_node_compares_the_new_node_with_the_identities_cached_by_earlier_runs(tmp_path: Path):
    """Only the new node is in the play (add-node's scope); the control plane's identity comes from the fact cache
    an earlier preflight wrote, so a clone of it is caught; an earlier preflight's facts are what this one writes."""
    cache = tmp_path / "facts"
    first = _run(tmp_path, {"cp1": dict(LOCAL), "w9": dict(LOCAL)}, play_hosts="cp1",
                 ANSIBLE_CACHE_PLUGIN="jsonfile", ANSIBLE_CACHE_PLUGIN_CONNECTION=str(cache))  # fmt: skip
    earlier = {t["task"]["name"].split(" : ")[-1]: t["hosts"] for t in first["plays"][0]["tasks"]}
    alone = next(iter(next(h for n, h in earlier.items() if n.startswith("Compare the nodes")).values()))["hosts"]
    assert alone["cp1"]["machine_id"]["ok"], alone  # w9 was not probed yet and has no cached identity
    stored = json.loads(next(cache.glob("*cp1")).read_text())  # Ansible 2.19: s1_cp1, {"__payload__": "<json>"}
    cached = json.loads(stored["__payload__"]) if "__payload__" in stored else stored
    assert cached["preflight_machine_id"] == Path("/etc/machine-id").read_text().strip()
    assert cached["ansible_architecture"] and cached["ansible_os_family"]
    out = _run(tmp_path, {"cp1": dict(LOCAL), "w9": dict(LOCAL)}, play_hosts="w9",
               ANSIBLE_CACHE_PLUGIN="jsonfile", ANSIBLE_CACHE_PLUGIN_CONNECTION=str(cache))  # fmt: skip
    tasks = {t["task"]["name"].split(" : ")[-1]: t["hosts"] for t in out["plays"][0]["tasks"]}
    judged = next(iter(next(h for n, h in tasks.items() if n.startswith("Compare the nodes")).values()))["hosts"]
    assert list(judged) == ["w9"] and judged["w9"]["machine_id"] == {"ok": False, "detail": "shared with cp1"}
    assert "machine_id = shared with cp1" in tasks["Stop this node if a check failed"]["w9"]["msg"]
