"""The upgrade's node work (issue 21 item 2) with the REAL programs (kubeadm, kubectl, kubelet v1.36.3, etcd and
kube-apiserver; kubestrap/lab/sources/build.py), without VMs:

- every flag roles/kube_upgrade passes to kubeadm and kubectl exists in the real programs' help;
- the `versions` and `plan` entry points against a real API server with Node objects whose status says kubelet
  versions and readiness (as kubelets report them): the report, the plan, the in-memory group of pending nodes, a
  refusal (skipped minor) that fails the play, and the Ready-at-target test the upgrade waits on;
- roles/kube_binaries, entry point `upgrade`: a staged pinned kubelet replaces an older one, nothing changes at the pin,
  a newer one is refused;
- the guard of `up` (roles/kube_binaries versions.yml): a joined node (kubelet.conf present) whose kubelet is older
  than the pin stops the phase with a message naming host, versions and `bootstrap.py upgrade`; a node that has not
  joined, or one at the pin, goes on;
- containerd, upgraded the same way (issue 21): the role's work for a `containerd upgrade` step and for a kubelet step
  that replaces containerd in its drained window, with the real kubectl against the real API server (drain, the wait
  for both pins and its message, uncordon, the resume), kubeadm, the included roles and systemd standing in; the
  containerd entry point's structure and the real ctr's flags; what a real containerd's CRI tells the kubelet, read as
  the pin; the `up` guard of roles/containerd (kubestrap_install's hold) asking the real containerd its version.

What stands in for something that cannot be real here: the "older kubelet" on a node is a two-line script printing
`Kubernetes v1.35.2` (no 1.35 kubelet is built on this machine); the VM lab runs the whole upgrade (not yet: it needs
a previous minor built from its Go module).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ARCH_MAP, ROLE_PATHS, ROOT
from k8s_real import started, upstream_dir

from kubestrap import upgrade

ROLE_TASKS = ROOT / "roles" / "kube_upgrade" / "tasks" / "main.yml"


@pytest.fixture(scope="module")
def kubernetes() -> Path:
    return upstream_dir("kubernetes")


def _real_version(kubernetes: Path) -> str:
    out = subprocess.run([kubernetes / "kubeadm", "version", "-o", "short"], capture_output=True, text=True, check=True).stdout
    return re.search(r"\d+\.\d+\.\d+", out).group(0)


def _tasks(tasks: list[dict]) -> list[dict]:
    """*tasks* with the tasks of their blocks (block, rescue, always) in their place."""
    flat = []
    for task in tasks:
        flat.append(task)
        for section in ("block", "rescue", "always"):
            flat += _tasks(task.get(section) or [])
    return flat


def _argvs(program_var: str) -> list[list[str]]:
    """The argv of every task of roles/kube_upgrade/tasks/main.yml that runs *program_var* (e.g. kube_upgrade_kubeadm)."""
    tasks = _tasks(yaml.safe_load(ROLE_TASKS.read_text()))
    argvs = [t["ansible.builtin.command"]["argv"] for t in tasks if "ansible.builtin.command" in t]
    return [argv for argv in argvs if program_var in argv[0]]


def _flags(argv: list[str]) -> list[str]:
    return [re.sub(r"=.*$", "", word) for word in argv if isinstance(word, str) and word.startswith("--")]


def _words(argv: list[str]) -> list[str]:
    """The subcommand words of *argv* (no flag, no template, no flag's value)."""
    words, skip = [], False
    for word in argv[1:]:
        if skip:
            skip = False
        elif word.startswith("--"):
            skip = "=" not in word and word in ("--kubeconfig",)
        elif "{{" not in word:
            words.append(word)
    return words


def test_every_kubeadm_flag_the_role_passes_exists(kubernetes):
    argvs = _argvs("kube_upgrade_kubeadm")
    assert sorted(tuple(_words(a)) for a in argvs) == [("upgrade", "apply"), ("upgrade", "node")]
    for argv in argvs:
        helped = subprocess.run([kubernetes / "kubeadm", *_words(argv), "--help"], capture_output=True, text=True,
                                check=True, timeout=60).stdout  # fmt: skip
        for flag in _flags(argv):
            assert re.search(rf"(^|\s){re.escape(flag)}[\s=]", helped, re.M), (argv, flag)
    apply = next(a for a in argvs if "apply" in a)
    assert "--yes" in apply and any(w.startswith("v{{") for w in apply)  # the version, with its v, and no prompt


def test_every_kubectl_flag_the_role_passes_exists(kubernetes):
    argvs = _argvs("kube_upgrade_kubectl")
    assert {tuple(_words(a))[:1] for a in argvs} == {("drain",), ("get",), ("uncordon",)}
    global_flags = subprocess.run([kubernetes / "kubectl", "options"], capture_output=True, text=True, check=True).stdout
    for argv in argvs:
        helped = subprocess.run([kubernetes / "kubectl", _words(argv)[0], "--help"], capture_output=True, text=True,
                                check=True, timeout=60).stdout  # fmt: skip
        for flag in _flags(argv):
            assert re.search(rf"(^|\s){re.escape(flag)}[\s=]", helped + global_flags, re.M), (argv, flag)
    drain = next(a for a in argvs if "drain" in a)
    assert {"--ignore-daemonsets", "--delete-emptydir-data", "--timeout"} <= set(_flags(drain))
    assert "--force" not in drain and "--disable-eviction" not in drain  # evictions, so PodDisruptionBudgets hold


@pytest.mark.parametrize("patches", [{"kube-apiserver0+strategic.yaml": {"metadata": {"name": "kube-apiserver"}}}, {}],
                         ids=["patches", "none"])
def test_every_control_plane_keeps_its_kubeadm_patches_through_the_upgrade(tmp_path, patches):
    """`kubeadm upgrade apply` (first control plane) and `kubeadm upgrade node` (another control plane) name the
    patches directory kubeadm_init/kubeadm_join wrote; a worker (no static pods) and a cluster without patches pass
    an empty --patches, which kubeadm takes as none. The role's own argv, rendered per host by Ansible."""
    tasks = {t["name"]: t["ansible.builtin.command"]["argv"] for t in _tasks(yaml.safe_load(ROLE_TASKS.read_text()))
             if "kube_upgrade_kubeadm" in str(t.get("ansible.builtin.command", {}).get("argv", [""])[0])}  # fmt: skip
    apply, node = (next(argv for name, argv in tasks.items() if word in name) for word in ("upgrade apply", "upgrade node"))
    out = tmp_path / "argv"
    out.mkdir()
    play = [{"name": "render", "ansible.builtin.copy": {
        "dest": f"{out}/{{{{ inventory_hostname }}}}.json", "mode": "0600",
        "content": "{{ {'apply': probe_apply, 'node': probe_node} | to_json }}"},
        "vars": {"probe_apply": apply, "probe_node": node, "__kube_upgrade_target": "1.36.3"}}]  # fmt: skip
    inventory = {"all": {"children": {"k8s_cluster": {"children": {
        "k8s_control_plane": {"hosts": {"cp1": LOCAL, "cp2": LOCAL}}, "k8s_workers": {"hosts": {"w1": LOCAL}}}}}}}  # fmt: skip
    defaults = yaml.safe_load((ROOT / "roles/kube_upgrade/defaults/main.yml").read_text())
    variables = {"kube_upgrade_patches_dir": defaults["kube_upgrade_patches_dir"], "kube_upgrade_kubeadm": "kubeadm",
                 "kubestrap_kubeadm_dir": "/etc/kubernetes/kubestrap", "kubeadm_init_patches": patches}  # fmt: skip
    _play(tmp_path, "argv", "all", play, inventory, variables)
    rendered = {host: json.loads((out / f"{host}.json").read_text()) for host in ("cp1", "cp2", "w1")}
    want = "--patches=/etc/kubernetes/kubestrap/patches" if patches else "--patches="
    assert rendered["cp1"]["apply"] == ["kubeadm", "upgrade", "apply", "v1.36.3", "--yes", want]
    assert rendered["cp2"]["node"] == ["kubeadm", "upgrade", "node", want]
    assert rendered["w1"]["node"] == ["kubeadm", "upgrade", "node", "--patches="]
    # the joining control plane writes its patches where `kubeadm upgrade node` reads them
    join = yaml.safe_load((ROOT / "roles/kubeadm_join/defaults/main.yml").read_text())["kubeadm_join_patches_dir"]
    assert join.replace("kubeadm_init_config_dir | default(kubestrap_kubeadm_dir)", "kubestrap_kubeadm_dir") == (
        "{{ kubestrap_kubeadm_dir }}/patches")


@pytest.mark.parametrize("step", ["apply", "node"])
def test_kubeadm_upgrade_is_tried_again_when_the_control_plane_does_not_answer(tmp_path, step):
    """The role's own tasks: a kubeadm that fails once (as when `upgrade node`'s 10-s client timeout or one of
    `upgrade apply`'s short etcd calls hits a busy control plane) and then succeeds is run twice and the step goes on;
    one that keeps failing stops after kube_upgrade_<step>_retries further tries."""
    [task] = [t for t in _tasks(yaml.safe_load(ROLE_TASKS.read_text())) if f"(kubeadm upgrade {step})" in t["name"]]
    task = {k: v for k, v in task.items() if k != "when"}
    calls = tmp_path / "calls"
    kubeadm = tmp_path / "kubeadm"
    kubeadm.write_text(f"#!/bin/sh\necho x >> {calls}\n[ $(wc -l < {calls}) -ge $FAILS_BEFORE_OK ] && exit 0\n"
                       "echo 'unable to fetch the kubeadm-config ConfigMap: Client.Timeout exceeded' >&2; exit 1\n")
    kubeadm.chmod(0o755)
    inventory = {"all": {"children": {"k8s_cluster": {"children": {"k8s_workers": {"hosts": {"w1": LOCAL}}}}}}}
    defaults = yaml.safe_load((ROOT / "roles/kube_upgrade/defaults/main.yml").read_text())
    retries = defaults[f"kube_upgrade_{step}_retries"]
    assert retries >= 1  # a failed try is tried again by default
    for fails_before_ok, ok in ((2, True), (9, False)):
        calls.write_text("")
        task["environment"] = {"FAILS_BEFORE_OK": str(fails_before_ok)}
        done = _play(tmp_path, step, "w1", [task], inventory, {
            "kube_upgrade_kubeadm": str(kubeadm), "kube_upgrade_patches_dir": "", f"kube_upgrade_{step}_retries": retries,
            f"kube_upgrade_{step}_delay": 0, "__kube_upgrade_target": "1.36.3"}, check=False)  # fmt: skip
        assert (done.returncode == 0) is ok, done.stdout[-3000:]
        assert len(calls.read_text().split()) == (2 if ok else 1 + retries)  # the first try and the further ones


def _play(tmp_path: Path, name: str, hosts: str, tasks: list[dict], inventory: dict, variables: dict,
          check: bool = True) -> subprocess.CompletedProcess[str]:
    book = tmp_path / f"{name}.yml"
    book.write_text(yaml.safe_dump([{"hosts": hosts, "gather_facts": False, "tasks": tasks}]))
    inv = tmp_path / f"{name}-hosts.yml"
    inv.write_text(yaml.safe_dump(inventory))
    env = {**os.environ, **ROLE_PATHS, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "HOME": str(tmp_path)}
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inv), str(book), "-e", json.dumps(variables)],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    if check:
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done


LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def _cluster_inventory() -> dict:
    return {"all": {"children": {"k8s_cluster": {"children": {
        "k8s_control_plane": {"hosts": {"cp1": LOCAL}},
        "k8s_workers": {"hosts": {"w1": LOCAL, "w2": LOCAL, "w3": LOCAL}}}}}}}  # fmt: skip


def _node(plane, name: str, kubelet: str, ready: bool, control_plane: bool = False, runtime: str = "",
          create: bool = True) -> None:
    """A Node whose status says what a kubelet at *kubelet* on a runtime *runtime* (`containerd://2.3.4`) reports."""
    labels = {"node-role.kubernetes.io/control-plane": ""} if control_plane else {}
    if create:
        plane.kubectl("create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "Node",
                                                              "metadata": {"name": name, "labels": labels}}))  # fmt: skip
    info = {"kubeletVersion": kubelet, **({"containerRuntimeVersion": runtime} if runtime else {})}
    status = {"status": {"nodeInfo": info, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady", "message": "test",
         "lastHeartbeatTime": "2026-12-01T00:00:00Z", "lastTransitionTime": "2026-12-01T00:00:00Z"}]}}  # fmt: skip
    plane.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def test_versions_and_plan_read_a_real_api_server(kubernetes, tmp_path):
    running = _real_version(kubernetes)  # the API server runs the built kube-apiserver
    minor = int(running.split(".")[1])
    with started(tmp_path / "cp") as plane:
        _node(plane, "cp1", f"v{running}", True, control_plane=True)
        _node(plane, "w1", f"v{running}", True)
        _node(plane, "w2", f"v1.{minor - 1}.7", True)
        _node(plane, "w3", f"v1.{minor - 1}.7", True)
        _node(plane, "stranger", f"v1.{minor - 2}.0", False)
        target = f"1.{minor + 1}.0"
        variables = {"kube_upgrade_kubectl": str(kubernetes / "kubectl"), "kubestrap_admin_kubeconfig": str(plane.kubeconfig),
                     "kube_upgrade_batch_size": 2, "kube_upgrade_preload_images": False,
                     "kubestrap_artifacts": {n: {"version": target} for n in ("kubeadm", "kubelet", "kubectl")}}  # fmt: skip
        out = tmp_path / "plan.json"
        keep = {"name": "keep", "ansible.builtin.copy": {"dest": str(out), "mode": "0600", "content": (
            "{{ {'cluster': kube_upgrade_cluster, 'plan': kube_upgrade_plan, 'pending': groups['kube_upgrade_pending']"
            " | default([])} | to_json }}")}}  # fmt: skip
        plan_tasks = [{"name": "plan", "ansible.builtin.include_role": {"name": "kube_upgrade", "tasks_from": "plan"}}, keep]
        _play(tmp_path, "plan", "cp1", plan_tasks, _cluster_inventory(), variables)
        got = json.loads(out.read_text())
        assert got["cluster"]["apiserver"] == f"v{running}"
        reported = {n["name"]: (n["kubelet"], n["ready"], n["control_plane"]) for n in got["cluster"]["nodes"]}
        assert reported == {"cp1": (f"v{running}", True, True), "w1": (f"v{running}", True, False),
                            "w2": (f"v1.{minor - 1}.7", True, False), "w3": (f"v1.{minor - 1}.7", True, False),
                            "stranger": (f"v1.{minor - 2}.0", False, False)}  # fmt: skip
        plan = got["plan"]
        assert [(s["action"], s["nodes"]) for s in plan["steps"]] == [(upgrade.APPLY, ["cp1"]), (upgrade.NODE, ["w1", "w2"]),
                                                                      (upgrade.NODE, ["w3"])]  # fmt: skip
        assert got["pending"] == ["cp1", "w1", "w2", "w3"]
        assert any("stranger is registered in the cluster but not in the inventory" in n for n in plan["notes"])

        # the policy refuses inside the playbook too (plain ansible-playbook): a skipped minor fails the plan play
        skipped = f"1.{minor + 2}.0"
        skip = {**variables, "kubestrap_artifacts": {n: {"version": skipped} for n in ("kubeadm", "kubelet", "kubectl")}}
        refused = _play(tmp_path, "refused", "cp1", plan_tasks, _cluster_inventory(), skip, check=False)
        assert refused.returncode != 0 and f"skips minor version(s) 1.{minor + 1}" in refused.stdout

        # what the upgrade waits for on a node: Ready with the kubelet at the target
        node = json.loads(plane.kubectl("get", "node", "w1", "-o", "json").stdout)
        assert upgrade.node_at(node, running) and not upgrade.node_at(node, target)
        down = json.loads(plane.kubectl("get", "node", "stranger", "-o", "json").stdout)
        assert not upgrade.node_at(down, f"1.{minor - 2}.0")


def _binaries_vars(tmp_path: Path, kubernetes: Path, pin: str) -> dict:
    """kube_binaries on this machine: bin dir and staging dir in *tmp_path*, the real 1.36 binaries staged at the
    artifact map's paths under the version *pin* claims."""
    staging, bin_dir = tmp_path / "staging", tmp_path / "bin"
    for name in ("kubeadm", "kubelet", "kubectl"):
        staged = staging / name / pin / "amd64" / name
        staged.parent.mkdir(parents=True, exist_ok=True)
        if not staged.exists():
            shutil.copy2(kubernetes / name, staged)
    bin_dir.mkdir(exist_ok=True)
    artifacts = {n: {"version": pin, "url": f"https://dl.k8s.io/release/v{{version}}/bin/linux/{{arch}}/{n}",
                     "sha256": {"amd64": "0" * 64}} for n in ("kubeadm", "kubelet", "kubectl")}  # fmt: skip
    return {"kubestrap_artifacts": artifacts, "kubestrap_node_staging_dir": str(staging), "kubestrap_arch_map": ARCH_MAP,
            "kube_binaries_bin_dir": str(bin_dir), "kube_binaries_kubelet_kubeconfig": str(tmp_path / "kubelet.conf"),
            "kube_binaries_tools": {}, "ansible_facts": {"architecture": "x86_64"}}  # fmt: skip


def _older_kubelet(path: Path, version: str = "1.35.2") -> None:
    path.write_text(f"#!/bin/sh\necho 'Kubernetes v{version}'\n")
    path.chmod(0o755)


def _upgrade_binaries(tmp_path: Path, variables: dict, names: list[str], check: bool = True):
    out = tmp_path / "upgraded.json"
    tasks = [{"name": "upgrade", "ansible.builtin.include_role": {"name": "kube_binaries", "tasks_from": "upgrade"},
              "vars": {"kube_binaries_upgrade_names": names}},
             {"name": "keep", "ansible.builtin.copy": {"dest": str(out), "mode": "0600",
                                                        "content": "{{ kube_binaries_upgraded | to_json }}"},
              "changed_when": False}]  # fmt: skip
    inventory = {"all": {"children": {"k8s_cluster": {"children": {"k8s_workers": {"hosts": {"w1": LOCAL}}}}}}}
    done = _play(tmp_path, "binaries", "w1", tasks, inventory, variables, check=check)
    return done, (json.loads(out.read_text()) if out.exists() and done.returncode == 0 else None)


def test_the_upgrade_entry_point_replaces_an_older_kubelet_and_leaves_the_pinned_kubeadm(kubernetes, tmp_path):
    pin = _real_version(kubernetes)
    variables = _binaries_vars(tmp_path, kubernetes, pin)
    bin_dir = Path(variables["kube_binaries_bin_dir"])
    _older_kubelet(bin_dir / "kubelet")
    shutil.copy2(kubernetes / "kubeadm", bin_dir / "kubeadm")
    kubeadm_before = (bin_dir / "kubeadm").stat().st_mtime_ns
    _first, upgraded = _upgrade_binaries(tmp_path, variables, ["kubeadm", "kubelet"])
    assert upgraded == ["kubelet"]
    assert f"v{pin}" in subprocess.run([bin_dir / "kubelet", "--version"], capture_output=True, text=True).stdout
    assert (bin_dir / "kubeadm").stat().st_mtime_ns == kubeadm_before
    again, upgraded = _upgrade_binaries(tmp_path, variables, ["kubeadm", "kubelet"])
    assert upgraded == [] and re.search(r"w1\s*:.*changed=0", again.stdout), again.stdout[-1500:]


def test_the_upgrade_entry_point_refuses_a_newer_binary(kubernetes, tmp_path):
    pin = _real_version(kubernetes)
    variables = _binaries_vars(tmp_path, kubernetes, pin)
    _older_kubelet(Path(variables["kube_binaries_bin_dir"]) / "kubelet", "1.99.0")
    done, _ = _upgrade_binaries(tmp_path, variables, ["kubelet"], check=False)
    assert done.returncode != 0 and "kubelet (v1.99.0, pinned v" in done.stdout and "does not downgrade" in done.stdout
    assert "1.99.0" in (Path(variables["kube_binaries_bin_dir"]) / "kubelet").read_text()


def _guard(tmp_path: Path, kubernetes: Path, pin: str, joined: bool):
    variables = _binaries_vars(tmp_path, kubernetes, pin)
    bin_dir = Path(variables["kube_binaries_bin_dir"])
    shutil.copy2(kubernetes / "kubelet", bin_dir / "kubelet")  # the real kubelet is the one running on the node
    conf = Path(variables["kube_binaries_kubelet_kubeconfig"])
    if joined:
        conf.write_text("apiVersion: v1\nkind: Config\n")
    elif conf.exists():
        conf.unlink()
    out = tmp_path / "current.json"
    tasks = [{"name": "versions", "ansible.builtin.include_role": {"name": "kube_binaries", "tasks_from": "versions"}},
             {"name": "keep", "ansible.builtin.copy": {"dest": str(out), "mode": "0600",
                                                        "content": "{{ kube_binaries_current | to_json }}"}}]  # fmt: skip
    # what the role's probe (tasks/main.yml) found: the installed kubelet, and its kubeconfig on a joined node
    variables["kube_binaries_probe"] = {"present": [str(bin_dir / "kubelet")] + ([str(conf)] if joined else [])}
    inventory = {"all": {"children": {"k8s_cluster": {"children": {"k8s_workers": {"hosts": {"w1": LOCAL}}}}}}}
    done = _play(tmp_path, "guard", "w1", tasks, inventory, variables, check=False)
    return done, (json.loads(out.read_text()) if done.returncode == 0 else None), bin_dir


def test_up_stops_on_a_joined_node_whose_kubelet_is_older_than_the_pin(kubernetes, tmp_path):
    running = _real_version(kubernetes)
    major, minor, patch = (int(p) for p in running.split("."))
    newer = f"{major}.{minor}.{patch + 1}"
    done, _, bin_dir = _guard(tmp_path, kubernetes, newer, joined=True)
    assert done.returncode != 0
    message = " ".join(done.stdout.split())
    assert f"w1 has joined the cluster ({tmp_path / 'kubelet.conf'} exists) and runs kubelet v{running}" in message
    assert f"the pin is v{newer}" in message and "Run `bootstrap.py upgrade -i INVENTORY`" in message
    assert "Nothing was changed on it" in message
    assert subprocess.run([bin_dir / "kubelet", "--version"], capture_output=True, text=True).stdout.strip().endswith(running)


def test_the_guard_lets_a_fresh_node_and_a_node_at_the_pin_through(kubernetes, tmp_path):
    running = _real_version(kubernetes)
    major, minor, patch = (int(p) for p in running.split("."))
    fresh, current, _ = _guard(tmp_path, kubernetes, f"{major}.{minor}.{patch + 1}", joined=False)
    assert fresh.returncode == 0, fresh.stdout[-3000:]
    assert current == []  # not joined: up installs the pinned kubelet as before
    at_pin, current, _ = _guard(tmp_path, kubernetes, running, joined=True)
    assert at_pin.returncode == 0, at_pin.stdout[-3000:]
    assert current == ["kubelet"]


# --- containerd upgraded the same way (issue 21): the plan and the node work of a runtime step ---
CONTAINERD_PIN = "2.3.4"  # the containerd these tests pin (group_vars/all/versions.yml's)
CONTAINERD_TASKS = ROOT / "roles" / "containerd" / "tasks"


def test_the_upgrade_includes_the_containerd_entry_point_which_installs_restarts_and_waits():
    tasks = _tasks(yaml.safe_load(ROLE_TASKS.read_text()))
    includes = [t["ansible.builtin.include_role"] for t in tasks if "ansible.builtin.include_role" in t]
    for include in includes:  # every entry point the role includes exists
        assert (ROOT / "roles" / include["name"] / "tasks" / f"{include['tasks_from']}.yml").is_file(), include
    [replace] = [t for t in tasks if t.get("ansible.builtin.include_role") == {"name": "containerd", "tasks_from": "upgrade"}]
    assert replace["when"] == "__kube_upgrade_containerd | bool"
    names = [t["name"] for t in tasks]
    # in the drained window: after the drain, before the kubelet's replacement and restart, the wait and the uncordon
    order = [next(i for i, n in enumerate(names) if n.startswith(p)) for p in (
        "Cordon and drain", "Replace containerd", "Put the pinned kubelet", "Restart the kubelet", "Wait until the node",
        "Uncordon")]  # fmt: skip
    assert order == sorted(order), names
    entry = yaml.safe_load((CONTAINERD_TASKS / "upgrade.yml").read_text())
    imported = [t["ansible.builtin.import_tasks"] for t in entry if "ansible.builtin.import_tasks" in t]
    assert imported == ["install.yml", "wait.yml"]  # the install `up` runs, then the wait for the pinned version
    [restart] = [t["ansible.builtin.systemd_service"] for t in entry if "ansible.builtin.systemd_service" in t]
    assert restart == {"name": "containerd", "enabled": True, "state": "restarted", "daemon_reload": True}
    wait = yaml.safe_load((CONTAINERD_TASKS / "wait.yml").read_text())
    assert any("containerd_version, '=='" in str(t.get("ansible.builtin.assert", {}).get("that")) for t in wait)
    # what that install takes is staged by the upgrade's artifacts phase, on every node, for the pins
    book = yaml.safe_load((ROOT / "playbooks" / "upgrade.yml").read_text())
    assert [p["ansible.builtin.import_playbook"] for p in book] == ["artifacts.yml", "upgrade_nodes.yml"]
    staged = yaml.safe_load((ROOT / "roles" / "artifacts" / "defaults" / "main.yml").read_text())["artifacts_node_items"]
    assert {"containerd", "runc", "cni_plugins", "crictl"} <= set(staged)


def test_the_containerd_wait_asks_the_real_ctr_with_flags_it_has():
    ctr = upstream_dir("containerd") / "ctr"
    wait = _tasks(yaml.safe_load((CONTAINERD_TASKS / "wait.yml").read_text()))
    [argv] = [t["ansible.builtin.command"]["argv"] for t in wait if "ansible.builtin.command" in t]
    helped = subprocess.run([ctr, "--help"], capture_output=True, text=True, check=True, timeout=60).stdout
    for flag in _flags(argv):
        assert re.search(rf"(^|\s){re.escape(flag)}[\s=,]", helped, re.M), flag
    assert "version" in _words(argv)
    version = subprocess.run([ctr, "--version"], capture_output=True, text=True, check=True, timeout=60).stdout
    assert upgrade.Version.parse(re.search(r"v?\d+\.\d+\.\d+", version).group(0), "ctr") == upgrade.Version(2, 3, 4)


def _standing_in(tasks: list[dict]) -> list[dict]:
    """roles/kube_upgrade/tasks/main.yml with what needs a real node replaced, each stand-in keeping its task's name
    and `when` and noting that it ran: kubeadm, the included roles and the systemd restarts. The containerd entry
    point's stand-in sets the Node's containerRuntimeVersion to probe_runtime_after[host] (what the restarted kubelet
    would report), the kubelet's to the target version. drain, the wait and uncordon are the role's own tasks."""
    out = []
    for task in tasks:
        task = dict(task)
        for section in ("block", "rescue", "always"):
            if section in task:
                task[section] = _standing_in(task[section])
        command = task.get("ansible.builtin.command", {}).get("argv", [""])
        stand_in = ("ansible.builtin.include_role" in task or "ansible.builtin.systemd_service" in task
                    or "kube_upgrade_kubeadm" in str(command[0]))
        if not stand_in:
            out.append(task)
            continue
        note = {"name": "note", "ansible.builtin.set_fact": {"probe_ran": "{{ probe_ran | default([]) + [probe_name] }}"},
                "vars": {"probe_name": task["name"]}}
        block = [note]
        include = task.get("ansible.builtin.include_role", {})
        patch = None
        if include.get("name") == "containerd":
            patch = ("{{ {'status': {'nodeInfo': {'containerRuntimeVersion': probe_runtime_after[inventory_hostname]}}}"
                     " | to_json }}")
        elif include.get("name") == "kube_binaries" and "__kube_upgrade_node_binaries" in str(task.get("vars")):
            patch = "{{ {'status': {'nodeInfo': {'kubeletVersion': 'v' ~ __kube_upgrade_target}}} | to_json }}"
        if patch:
            block.append({"name": "the node reports it", "delegate_to": "{{ kube_upgrade_first_control_plane }}",
                          "changed_when": True, "ansible.builtin.command": {"argv": [
                              "{{ kube_upgrade_kubectl }}", "--kubeconfig", "{{ kube_upgrade_admin_kubeconfig }}", "patch",
                              "node", "{{ inventory_hostname }}", "--subresource=status", "--type=merge", "-p", patch]}})
        out.append({"name": task["name"], "block": block, **({"when": task["when"]} if "when" in task else {})})
    return out


def _upgrade_node(tmp_path: Path, host: str, variables: dict, runtime_after: dict) -> tuple[subprocess.CompletedProcess, list]:
    """The plan play on cp1 (the role's entry point plan, real), then main.yml's tasks (with the stand-ins) on *host*."""
    probe = tmp_path / f"ran-{host}.json"
    keep = {"name": "keep", "ansible.builtin.copy": {"dest": str(probe), "mode": "0600",
                                                      "content": "{{ probe_ran | default([]) | to_json }}"}}
    tasks = [{"name": "the role's tasks", "block": _standing_in(yaml.safe_load(ROLE_TASKS.read_text())), "always": [keep]}]
    book = tmp_path / f"upgrade-{host}.yml"
    book.write_text(yaml.safe_dump([
        {"hosts": "cp1", "gather_facts": False, "tasks": [
            {"name": "plan", "ansible.builtin.include_role": {"name": "kube_upgrade", "tasks_from": "plan"}}]},
        {"hosts": host, "gather_facts": False, "tasks": tasks,
         "vars_files": [str(ROOT / "roles/kube_upgrade/defaults/main.yml"), str(ROOT / "roles/kube_upgrade/vars/main.yml")]},
    ]))  # fmt: skip
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump(_cluster_inventory()))
    env = {**os.environ, **ROLE_PATHS, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "HOME": str(tmp_path)}
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inv), str(book), "-e",
                           json.dumps({**variables, "probe_runtime_after": runtime_after})],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    return done, (json.loads(probe.read_text()) if probe.exists() else [])


def test_a_runtime_step_drains_replaces_containerd_restarts_the_kubelet_waits_and_uncordons(kubernetes, tmp_path):
    running = _real_version(kubernetes)
    minor = int(running.split(".")[1])
    with started(tmp_path / "cp") as plane:
        _node(plane, "cp1", f"v{running}", True, control_plane=True, runtime=f"containerd://{CONTAINERD_PIN}")
        _node(plane, "w1", f"v{running}", True, runtime="containerd://2.2.1")  # containerd only
        _node(plane, "w2", f"v1.{minor - 1}.7", True, runtime="containerd://v2.2.1")  # kubelet and containerd
        _node(plane, "w3", f"v{running}", True, runtime=f"containerd://{CONTAINERD_PIN}")  # at both pins
        artifacts = {n: {"version": running} for n in ("kubeadm", "kubelet", "kubectl")}
        variables = {"kube_upgrade_kubectl": str(kubernetes / "kubectl"), "kubestrap_admin_kubeconfig": str(plane.kubeconfig),
                     "kube_upgrade_preload_images": False, "kube_upgrade_ready_retries": 3, "kube_upgrade_ready_delay": 1,
                     "kubestrap_artifacts": {**artifacts, "containerd": {"version": CONTAINERD_PIN}}}  # fmt: skip
        after = {"w1": f"containerd://{CONTAINERD_PIN}", "w2": "containerd://2.2.1"}  # w2's containerd does not come back

        done, ran = _upgrade_node(tmp_path, "w1", variables, after)
        assert done.returncode == 0, done.stdout[-4000:]
        assert ran == ["Replace containerd and runc with the pinned ones and restart containerd (the plan names this node)",
                       "Restart the kubelet (its binary was replaced, the running one is not the target, or containerd was "
                       "replaced)"]  # no kubeadm, no kubelet replaced: a containerd step  # fmt: skip
        assert re.search(r"TASK \[Cordon and drain.*\n(.*\n)*?changed: \[w1 -> cp1\]", done.stdout), done.stdout[-3000:]
        node = json.loads(plane.kubectl("get", "node", "w1", "-o", "json").stdout)
        assert not node["spec"].get("unschedulable") and upgrade.node_at(node, running, CONTAINERD_PIN)  # uncordoned

        done, ran = _upgrade_node(tmp_path, "w2", variables, after)
        assert done.returncode != 0
        assert [r.split(" (")[0] for r in ran] == [
            "Put the pinned kubeadm in place", "Upgrade this node's kubeadm-managed configuration",
            "Replace containerd and runc with the pinned ones and restart containerd", "Put the pinned kubelet",
            "Restart the kubelet"]  # a kubelet step with containerd in its drained window  # fmt: skip
        message = " ".join(done.stdout.split())
        assert (f"w2 did not report Ready with kubelet v{running} and containerd {CONTAINERD_PIN} within 3 tries 1 s apart; "
                "the upgrade stops here and the node stays cordoned") in message  # fmt: skip
        assert json.loads(plane.kubectl("get", "node", "w2", "-o", "json").stdout)["spec"].get("unschedulable") is True

        # the next plan (a re-run) resumes at w2 (Ready, its kubelet now at the target): its containerd only
        cluster = upgrade.report(json.loads(plane.kubectl("version", "-o", "json").stdout),
                                 json.loads(plane.kubectl("get", "nodes", "-o", "json").stdout))
        plan = upgrade.plan_cluster(cluster, ["cp1"], ["w1", "w2", "w3"], variables["kubestrap_artifacts"])
        assert [(s.action, s.nodes, s.runtime_nodes) for s in plan.steps] == [(upgrade.RUNTIME, ("w2",), ("w2",))]
        assert plan.current == ["cp1", "w1", "w3"] and any("w2 is cordoned" in n for n in plan.notes)


# --- the guard of `up` for containerd (roles/containerd install.yml: kubestrap_install's hold) ---
def _containerd_bin() -> Path:
    return upstream_dir("containerd") / "containerd"


def _stand_in_containerd(path: Path, version: str) -> None:
    path.write_text(f"#!/bin/sh\necho 'containerd github.com/containerd/containerd/v2 v{version} 0123abc'\n")
    path.chmod(0o755)


def _containerd_guard(tmp_path: Path, installed: Path | None, staged: Path, pin: str, joined: bool = True,
                      upgrading: bool = False) -> tuple[subprocess.CompletedProcess, Path]:
    """roles/containerd's install task as `up` runs it (its hold, from install.yml and the role's vars), on a prefix
    in *tmp_path*: *installed* as bin/containerd there, *staged* in the staged archive, *pin* the containerd pin."""
    prefix = tmp_path / "usr-local"
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    if installed:
        shutil.copy2(installed, prefix / "bin" / "containerd")
    archive = tmp_path / "containerd.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(staged, "bin/containerd")
    marker = tmp_path / "kubelet.conf"
    if joined:
        marker.write_text("apiVersion: v1\n")
    [install] = yaml.safe_load((CONTAINERD_TASKS / "install.yml").read_text())
    hold = install["kubestrap_install"]["hold"]  # the task's own expression
    task = {"name": "install", "kubestrap_install": {"files": [{"src": str(archive), "dest": str(prefix), "archive": True}],
                                                     "hold": hold}}  # fmt: skip
    variables = {"kubestrap_artifacts": {"containerd": {"version": pin}}, "containerd_prefix": str(prefix),
                 "containerd_joined_marker": str(marker), "kubestrap_node_staging_dir": str(tmp_path),
                 "kubestrap_images": {"pause": "x"}, "kubestrap_arch_map": ARCH_MAP,
                 **({"__containerd_upgrading": True} if upgrading else {})}  # fmt: skip
    book = tmp_path / "guard.yml"
    book.write_text(yaml.safe_dump([{"hosts": "w1", "gather_facts": False, "tasks": [task], "vars_files": [
        str(ROOT / "roles/containerd/defaults/main.yml"), str(ROOT / "roles/containerd/vars/main.yml")]}]))
    inv = tmp_path / "guard-hosts.yml"
    workers = {"k8s_workers": {"hosts": {"w1": LOCAL}}}
    inv.write_text(yaml.safe_dump({"all": {"children": {"k8s_cluster": {"children": workers}}}}))
    env = {**os.environ, **ROLE_PATHS, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "HOME": str(tmp_path), "ANSIBLE_LIBRARY": str(ROOT / "playbooks" / "library")}
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inv), str(book), "-e", json.dumps(variables)],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    return done, prefix / "bin" / "containerd"


def test_up_stops_on_a_joined_node_whose_containerd_is_another_version_asking_the_real_containerd(tmp_path):
    real = _containerd_bin()
    running = re.search(r"v?(\d+\.\d+\.\d+)", subprocess.run([real, "--version"], capture_output=True, text=True,
                                                             check=True).stdout).group(1)  # fmt: skip
    major, minor, patch = (int(p) for p in running.split("."))
    newer = f"{major}.{minor}.{patch + 1}"
    staged = tmp_path / "staged-containerd"
    _stand_in_containerd(staged, newer)
    done, installed = _containerd_guard(tmp_path, real, staged, newer)  # the real containerd runs; the pin is newer
    assert done.returncode != 0
    message = " ".join(done.stdout.split())
    assert f"is v{running}, the staged one v{newer}, and {tmp_path / 'kubelet.conf'} exists: not replaced." in message
    assert "w1 has joined the cluster and `up` does not replace its containerd" in message
    assert "Run `bootstrap.py upgrade -i INVENTORY`" in message and "Nothing was written." in message
    assert installed.read_bytes() == real.read_bytes()


def test_the_containerd_guard_lets_a_fresh_node_the_pin_and_the_upgrade_through(tmp_path):
    real = _containerd_bin()
    older = tmp_path / "older-containerd"
    _stand_in_containerd(older, "2.2.1")
    done, installed = _containerd_guard(tmp_path / "fresh", older, real, "2.3.4", joined=False)  # not joined: as before
    assert done.returncode == 0 and installed.read_bytes() == real.read_bytes(), done.stdout[-3000:]
    done, installed = _containerd_guard(tmp_path / "upgrade", older, real, "2.3.4", upgrading=True)  # the entry point
    assert done.returncode == 0 and installed.read_bytes() == real.read_bytes(), done.stdout[-3000:]
    same = tmp_path / "same-version"
    _stand_in_containerd(same, "2.3.4")  # other bytes, the pinned version: repaired in place as before
    done, installed = _containerd_guard(tmp_path / "repair", same, real, "2.3.4")
    assert done.returncode == 0 and installed.read_bytes() == real.read_bytes(), done.stdout[-3000:]
    done, _ = _containerd_guard(tmp_path / "repair", None, real, "2.3.4")  # at the pin: nothing to do
    assert done.returncode == 0 and re.search(r"w1\s*:.*changed=0", done.stdout), done.stdout[-3000:]


def test_what_the_real_containerd_tells_the_kubelet_is_read_as_its_version(tmp_path):
    """A throw-away REAL containerd with its CRI plugin (root, state and socket of its own) asked by the REAL crictl for
    the runtime name and version the kubelet puts into status.nodeInfo.containerRuntimeVersion (`<name>://<version>`,
    the version as k8s.io/apimachinery's version parser prints it, without its `v`): the policy reads it as the pin."""
    base = Path(tempfile.mkdtemp(prefix="cri.", dir="/tmp"))  # a short path: the socket's name has a length limit
    config = base / "config.toml"
    config.write_text(f"""version = 3
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.snapshotter.v1.btrfs', 'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.devmapper', 'io.containerd.snapshotter.v1.aufs', 'io.containerd.snapshotter.v1.blockfile',
  'io.containerd.snapshotter.v1.erofs', 'io.containerd.differ.v1.erofs']
[ttrpc]
  address = '{base / "t.sock"}'
[debug]
  address = ''
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ['{base / "cni-bin"}']
  conf_dir = '{base / "cni-conf"}'
""")
    crictl = upstream_dir("cri-tools") / "crictl"
    log = (tmp_path / "containerd.log").open("wb")
    daemon = subprocess.Popen([_containerd_bin(), "--config", config, "--root", base / "root", "--state", base / "state",
                               "--address", base / "c.sock"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, answer = time.monotonic() + 60, None
        while answer is None or answer.returncode != 0:
            assert daemon.poll() is None and time.monotonic() < deadline, (tmp_path / "containerd.log").read_text()[-3000:]
            time.sleep(0.5)
            answer = subprocess.run([crictl, "--runtime-endpoint", f"unix://{base / 'c.sock'}", "version"],
                                    capture_output=True, text=True, timeout=30, cwd=tmp_path)  # fmt: skip
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        log.close()
        shutil.rmtree(base, ignore_errors=True)
    told = dict(re.findall(r"^(\w+):\s+(\S+)$", answer.stdout, re.M))  # RuntimeName:  containerd ...
    told = {"runtimeName": told.get("RuntimeName"), "runtimeVersion": told.get("RuntimeVersion", "")}
    assert told["runtimeName"] == "containerd", answer.stdout
    for reported in (f"{told['runtimeName']}://{told['runtimeVersion']}",  # as containerd says it
                     f"{told['runtimeName']}://{told['runtimeVersion'].removeprefix('v')}"):  # as the kubelet prints it
        assert upgrade.runtime_version(reported, "w1") == upgrade.Version.parse(CONTAINERD_PIN, "pin"), reported
        node = upgrade.Node("cp1", upgrade.CONTROL_PLANE, "1.36.4", runtime=reported)
        assert upgrade.plan("1.36.4", [node], "1.36.4", runtime=CONTAINERD_PIN).nothing_to_do


def test_the_upgrade_records_the_target_in_the_kubeadm_configuration_as_up_writes_it():
    """After `kubeadm upgrade apply` the first control plane's kubeadm configuration is written again by kubeadm_init's
    own entry point (the one its main.yml imports), so the `up` after an upgrade has nothing to write there; the
    kubelet unit names no version, so replacing the kubelet leaves nothing for `up` to rewrite and restart."""
    tasks = _tasks(yaml.safe_load(ROLE_TASKS.read_text()))
    names = [t["name"] for t in tasks]
    record = next(t for t in tasks if t.get("ansible.builtin.include_role", {}).get("tasks_from") == "config")
    assert record["ansible.builtin.include_role"]["name"] == "kubeadm_init" and record["when"] == "__kube_upgrade_apply | bool"
    assert names.index(record["name"]) == names.index("Upgrade the control plane to the target (kubeadm upgrade apply)") + 1
    init = yaml.safe_load((ROOT / "roles/kubeadm_init/tasks/main.yml").read_text())
    block = next(t for t in init if t["name"].startswith("Node-local files and kubeadm init"))["block"]
    assert block[0]["ansible.builtin.import_tasks"] == "config.yml"
    unit = (ROOT / "roles/kube_binaries/templates/kubelet.service.j2").read_text()
    assert "version" not in unit.replace("no version here", "")


def _admin_conf(server: str, cert: str) -> str:
    return (f"apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: {server}\n  name: homelab\n"
            f"users:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: {cert}\n")  # fmt: skip


def _store_as_up_does(tmp_path: Path, node_conf: Path, dest: Path, server: str) -> dict:
    """kubeadm_init's own two tasks (read the node's admin.conf, store it on the controller) as `up` runs them;
    returns the store task's result."""
    init = yaml.safe_load((ROOT / "roles/kubeadm_init/tasks/main.yml").read_text())
    read, store = (next(t for t in init if t["name"].startswith(start))
                   for start in ("Read the admin kubeconfig", "Store the admin kubeconfig on the controller"))  # fmt: skip
    store = {**store, "register": "stored", "no_log": False}
    keep = {"name": "keep", "ansible.builtin.copy": {"dest": str(tmp_path / "stored.json"), "mode": "0600",
                                                      "content": "{{ stored | to_json }}"}}  # fmt: skip
    return _local_play(tmp_path, "up-store", [read, store, keep], {
        "kubeadm_init_admin_kubeconfig": str(node_conf), "kubeadm_init_kubeconfig_dest": str(dest),
        "kubeadm_init_controller_server_url": server, "__kubeadm_init_apply": True}, tmp_path / "stored.json")


def _local_play(tmp_path: Path, name: str, tasks: list, variables: dict, result: Path | None = None) -> dict:
    book = tmp_path / f"{name}.yml"
    book.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = {**os.environ, **ROLE_PATHS, "ANSIBLE_LOCALHOST_WARNING": "false", "HOME": str(tmp_path)}
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-c", "local", "-i", "localhost,", str(book),
                           "-e", f"@{ROOT}/group_vars/all/cluster.yml",  # the cluster settings the roles' defaults read
                           "-e", json.dumps({"ansible_python_interpreter": sys.executable, **variables})],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return json.loads(result.read_text()) if result else {}


def test_after_the_upgrade_the_controllers_admin_kubeconfig_is_what_up_would_store(tmp_path):
    """`kubeadm upgrade apply` renews admin.conf's client certificate, so the `up` after the upgrade lab's sixth run
    changed the controller's copy (its one change). The upgrade now refreshes that copy right after the apply
    (kube_certs' kubeconfig entry point, keeping the copy's server URL): `up`'s own store task then has nothing to do,
    where without the refresh it rewrites the copy."""
    tasks = _tasks(yaml.safe_load(ROLE_TASKS.read_text()))
    names = [t["name"] for t in tasks]
    [refresh] = [t for t in tasks if t.get("ansible.builtin.include_role", {}).get("tasks_from") == "kubeconfig"]
    assert refresh["ansible.builtin.include_role"]["name"] == "kube_certs" and refresh["when"] == "__kube_upgrade_apply | bool"
    assert names.index(refresh["name"]) > names.index("Upgrade the control plane to the target (kubeadm upgrade apply)")

    server = "https://192.168.1.10:6443"
    node_conf, dest = tmp_path / "node-admin.conf", tmp_path / "secrets" / "admin.conf"
    node_conf.write_text(_admin_conf("https://10.0.0.1:6443", "UkVORVdFRA=="))  # after the apply: a new certificate
    dest.parent.mkdir(mode=0o700)
    for refreshed in (False, True):
        dest.write_text(_admin_conf(server, "T0xE"))  # the copy `up` stored before the upgrade
        if refreshed:
            _local_play(tmp_path, "refresh", [{**refresh, "when": True}],
                        {"kube_certs_admin_kubeconfig": str(node_conf), "kube_certs_kubeconfig_dest": str(dest)})
            assert dest.read_text() == _admin_conf(server, "UkVORVdFRA==") and dest.stat().st_mode & 0o777 == 0o600
        stored = _store_as_up_does(tmp_path, node_conf, dest, server)
        assert stored["changed"] is (not refreshed), (refreshed, stored)
