"""Preflight (read-only) notices a container runtime kubestrap did not install: Docker, a distribution's or
hand-installed containerd, CRI-O, Podman's socket. It refuses the node, naming the host, what it found and
the override (preflight_allow_foreign_runtime), and with the override it lets the node through with a
warning. The containerd kubestrap installed (its manifest on the node says so) does not trip it: a second
`up` must pass. The real preflight role runs on "nodes" that are temporary root directories (local
connection, the runtime locations pointed into the directory); the other checks' results are not
looked at here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import ANSIBLE_PLAYBOOK, ARCH_MAP, ROOT, with_cluster_defaults

DEFAULTS = yaml.safe_load((ROOT / "roles/preflight/defaults/main.yml").read_text())
MARKERS = [with_cluster_defaults(path) for path in DEFAULTS["preflight_kubestrap_runtime_markers"]]


def _rooted(root: Path, path: str) -> str:
    return str(root / path.lstrip("/"))


def _node(tmp: Path, name: str, present: list[str], allow: bool = False) -> dict:
    root = tmp / name
    for path in present:
        target = Path(_rooted(root, path))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("")
    return {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, "node_ip": "127.0.0.1",
        "preflight_allow_foreign_runtime": allow, "kubestrap_arch_map": ARCH_MAP,
        "preflight_runtimes": {name: [_rooted(root, p) for p in paths] for name, paths in DEFAULTS["preflight_runtimes"].items()},
        "preflight_kubestrap_runtime_markers": [_rooted(root, p) for p in MARKERS],
    }  # fmt: skip


def _preflight(tmp: Path, nodes: dict[str, dict]) -> tuple[dict, dict]:
    """Each node's check results and the message of the final check (empty when the node passed)."""
    (tmp / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"k8s_cluster": {"children": {
        "k8s_workers": {"hosts": nodes}}}}}}))  # fmt: skip
    play = [{"name": "Preflight", "hosts": "k8s_cluster", "gather_facts": False, "roles": [{"role": "preflight"}]}]
    (tmp / "play.yml").write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_LIBRARY=str(ROOT / "playbooks" / "library"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"), ANSIBLE_CACHE_PLUGIN="memory")  # fmt: skip
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(tmp / "hosts.yml"), str(tmp / "play.yml")],
        capture_output=True, text=True, env=env, cwd=tmp, timeout=300,
    )  # fmt: skip
    out = json.loads(proc.stdout)
    tasks = {t["task"]["name"].split(" : ")[-1]: t["hosts"] for t in out["plays"][0]["tasks"]}
    probe = next(hosts for name, hosts in tasks.items() if name.startswith("Look at the node"))
    judged = next(iter(next(hosts for name, hosts in tasks.items() if name.startswith("Compare the nodes")).values()))
    assert set(probe) == set(nodes) and all(not r.get("failed") for r in probe.values()), probe
    results = judged["hosts"]
    final = tasks["Stop this node if a check failed"]
    verdicts = {host: r.get("msg", "") if r.get("failed") else "" for host, r in final.items()}
    return results, {"verdicts": verdicts, "warnings": judged["runtime_warnings"], "shown": judged.get("warnings", [])}


def test_a_runtime_kubestrap_did_not_install_is_refused_unless_allowed(tmp_path: Path):
    results, said = _preflight(tmp_path, {
        "fresh": _node(tmp_path, "fresh", []),
        "docker": _node(tmp_path, "docker", ["/run/docker.sock", "/usr/bin/dockerd"]),
        "distro-containerd": _node(tmp_path, "distro-containerd", ["/usr/bin/containerd", "/run/containerd/containerd.sock"]),
        "crio": _node(tmp_path, "crio", ["/run/crio/crio.sock"]),
        "podman": _node(tmp_path, "podman", ["/run/podman/podman.sock"]),
        "ours": _node(tmp_path, "ours", ["/usr/local/bin/containerd", "/run/containerd/containerd.sock",
                                         "/var/lib/kubestrap/manifest/containerd.json"]),
        "allowed": _node(tmp_path, "allowed", ["/run/docker.sock"], allow=True),
    })  # fmt: skip
    runtime = {host: r["runtime"] for host, r in results.items()}
    assert runtime["fresh"]["ok"] and runtime["ours"]["ok"], runtime
    for host, name in (("docker", "docker"), ("distro-containerd", "containerd"), ("crio", "cri-o"), ("podman", "podman")):
        assert not runtime[host]["ok"] and name in runtime[host]["detail"], runtime[host]
    assert str(tmp_path / "docker/run/docker.sock") in runtime["docker"]["detail"]
    assert runtime["allowed"]["ok"] and "docker" in runtime["allowed"]["detail"], runtime["allowed"]
    # the refusal names the host, what was found and the override; kubestrap's own containerd passes
    refusal = said["verdicts"]["docker"]
    assert "preflight failed on docker" in refusal and "runtime = docker (" in refusal, refusal
    assert "preflight_allow_foreign_runtime: true" in refusal, refusal
    assert "runtime =" not in said["verdicts"]["ours"] and "runtime =" not in said["verdicts"]["fresh"]
    assert "WARNING: allowed runs a container runtime kubestrap did not install: docker" in said["warnings"]["allowed"]
    assert set(said["warnings"]) == {"allowed"}  # only the node let through is warned about
    assert said["warnings"]["allowed"] in said["shown"]  # and Ansible shows it as a warning
