"""HA control plane (cluster_api_vip): the files the roles render for three control planes behind a floating
address, judged by the REAL programs - kubeadm v1.36 (`kubeadm config validate`: the first control plane's
configuration with the VIP as controlPlaneEndpoint, the certificate upload configuration holding the certificate
key, the control-plane and worker JoinConfigurations) and Debian bookworm's haproxy (`haproxy -c`) and keepalived
(`keepalived --config-test`), fetched as .debs (tests/fixtures/debian_programs.py); what they say; and the tasks'
handling of the secrets (no_log, 0600 files, never an argument)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from fixtures import debian_programs
from helpers import ANSIBLE_PLAYBOOK, CORPUS, ROOT, ha_inventory, render_configs
from k8s_real import upstream_dir

VIP = "192.168.1.5"
CPS = {"k8s-cp": "192.168.1.10", "k8s-cp2": "192.168.1.8", "k8s-cp3": "192.168.1.9"}
WORKERS = {"k8s-worker1": "192.168.1.11", "k8s-worker2": "192.168.1.12", "k8s-worker3": "192.168.1.13"}
KEY = "a1" * 32  # the render playbook's stand-in certificate key
CP_TASK_FILES = [ROOT / "roles/kubeadm_join/tasks" / f"control_plane{part}.yml"
                 for part in ("", "_certs", "_cleanup", "_join", "_join_try")]
# keepalived's check looks the interface up on the machine it runs on: one of this machine's (not loopback)
IFACE = next((p.name for p in sorted(Path("/sys/class/net").iterdir()) if p.name != "lo" and (p / "device").exists()),
             next(p.name for p in sorted(Path("/sys/class/net").iterdir()) if p.name != "lo"))


def _inventory(dest: Path, control_planes: int, **settings: object) -> Path:
    return ha_inventory(dest, dict(list(CPS.items())[:control_planes]), WORKERS, **{"cluster_api_vip": VIP, **settings})


def _render(tmp: Path, control_planes: int, roles: dict | None = None, **settings: object) -> tuple[dict[str, list], Path]:
    """Render for *control_planes* control planes with cluster *settings* in the inventory and *roles*' settings as
    extra variables (the test playbook reads the roles' defaults as vars_files, above inventory variables)."""
    inv = _inventory(tmp / "inventory", control_planes, **settings)
    from kubestrap import validate
    assert [str(p) for p in validate.check_path(inv)] == []  # an inventory `check` accepts
    dest = tmp / "rendered"
    extra = tmp / "roles.json"
    extra.write_text(json.dumps({"api_lb_interface": IFACE, **(roles or {})}))
    return render_configs(dest, "-e", f"@{extra}", inventory=inv, playbook="render_ha_configs.yml"), dest


@pytest.fixture(scope="module")
def ha(tmp_path_factory) -> tuple[dict[str, list], Path]:
    return _render(tmp_path_factory.mktemp("ha"), 3)


@pytest.fixture(scope="module")
def kubeadm() -> str:
    return str(upstream_dir("kubernetes") / "kubeadm")


@pytest.fixture(scope="module")
def programs() -> debian_programs.Programs:
    return debian_programs.get()


def _doc(docs: list, kind: str) -> dict:
    return next(d for d in docs if d and d.get("kind") == kind)


def _validate(kubeadm: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kubeadm, "config", "validate", "--config", str(path)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


# --- kubeadm -----------------------------------------------------------------------------------------------
def test_real_kubeadm_accepts_every_rendered_ha_kubeadm_file(ha, kubeadm):
    _, dest = ha
    files = sorted(dest.glob("*.yaml"))
    assert [p.name for p in files] == [
        "k8s-cp-kubeadm-config.yaml", "k8s-cp-kubeadm-upload-certs.yaml", "k8s-cp2-kubeadm-join.yaml",
        "k8s-cp3-kubeadm-join.yaml", "k8s-worker1-kubeadm-join.yaml", "k8s-worker2-kubeadm-join.yaml",
        "k8s-worker3-kubeadm-join.yaml"]  # fmt: skip
    for path in files:
        done = _validate(kubeadm, path)
        assert (done.returncode, done.stdout.strip()) == (0, "ok"), f"{path.name}: {done.stderr}"


def test_init_names_the_floating_address_and_its_port_and_binds_the_api_server_to_its_own(ha):
    files, _ = ha
    docs = files["k8s-cp-kubeadm-config.yaml"]
    init, cluster = _doc(docs, "InitConfiguration"), _doc(docs, "ClusterConfiguration")
    assert cluster["controlPlaneEndpoint"] == f"{VIP}:8443"  # haproxy's port at the VIP
    assert init["localAPIEndpoint"] == {"advertiseAddress": CPS["k8s-cp"], "bindPort": 6443}
    assert VIP in cluster["apiServer"]["certSANs"]
    assert "certificateKey" not in init  # init uploads nothing; the join phase uploads for the joins it runs


def test_the_certificate_upload_file_holds_the_key_for_the_first_control_plane(ha):
    files, _ = ha
    docs = files["k8s-cp-kubeadm-upload-certs.yaml"]
    init, cluster = _doc(docs, "InitConfiguration"), _doc(docs, "ClusterConfiguration")
    assert init["certificateKey"] == KEY and init["nodeRegistration"]["name"] == "k8s-cp"
    assert init["localAPIEndpoint"]["advertiseAddress"] == CPS["k8s-cp"]
    pinned = yaml.safe_load((ROOT / "group_vars/all/versions.yml").read_text())["kubestrap_artifacts"]["kubeadm"]["version"]
    assert cluster["kubernetesVersion"] == f"v{pinned}" and cluster["controlPlaneEndpoint"] == f"{VIP}:8443"


def test_control_planes_join_through_the_vip_with_their_own_endpoint_and_the_key(ha):
    files, _ = ha
    for name in ("k8s-cp2", "k8s-cp3"):
        join = files[f"{name}-kubeadm-join.yaml"][0]
        assert join["controlPlane"] == {"localAPIEndpoint": {"advertiseAddress": CPS[name], "bindPort": 6443},
                                        "certificateKey": KEY}  # fmt: skip
        assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == f"{VIP}:8443"
        assert join["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": CPS[name]}]
    for name in WORKERS:
        join = files[f"{name}-kubeadm-join.yaml"][0]
        assert "controlPlane" not in join
        assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == f"{VIP}:8443"


def test_a_control_plane_join_gets_the_init_patches_and_timeouts(tmp_path):
    probe = {"failureThreshold": 60}
    patches = {"kube-apiserver": {"spec": {"containers": [{"name": "kube-apiserver", "livenessProbe": probe}]}}}
    files, _ = _render(tmp_path, 3, {"kubeadm_init_patches": patches, "kubeadm_init_control_plane_timeout": "15m0s",
                                        "kubeadm_init_api_call_timeout": "5m0s"})  # fmt: skip
    join = files["k8s-cp2-kubeadm-join.yaml"][0]
    assert join["patches"] == {"directory": "/etc/kubernetes/kubestrap/patches"}
    assert join["timeouts"]["controlPlaneComponentHealthCheck"] == "15m0s" and join["timeouts"]["kubernetesAPICall"] == "5m0s"
    assert join["timeouts"]["etcdAPICall"] == "5m0s"  # kubestrap's default: kubeadm's 2m0s ran out in the lab
    lab = yaml.safe_load((ROOT / "inventories/lab/group_vars/k8s_cluster/lab.yml").read_text())
    files, _ = _render(tmp_path / "lab", 3, {"kubeadm_join_etcd_api_call_timeout": lab["kubeadm_join_etcd_api_call_timeout"]})
    assert files["k8s-cp2-kubeadm-join.yaml"][0]["timeouts"]["etcdAPICall"] == "15m0s"
    assert "patches" not in files["k8s-worker1-kubeadm-join.yaml"][0]


# the kube-apiserver flags that name a file kubeadm does not write (kubestrap's settings)
APISERVER_FILE_FLAGS = ("encryption-provider-config", "audit-policy-file", "admission-control-config-file")


def _control_plane_files(tmp: Path, encryption_copy: Path) -> subprocess.CompletedProcess[str]:
    """kubeadm_init's entry point control_plane_files for k8s-cp2, in CHECK MODE on this machine (its paths are a
    node's), results as JSON lines (-v)."""
    inv = _inventory(tmp / "inventory", 3)
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inv), "--check", "-v", str(ROOT / "tests/playbooks/control_plane_files.yml"),
         "-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"encryption_copy={encryption_copy}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip


def test_every_file_the_api_server_reads_reaches_the_other_control_planes(ha, tmp_path):
    """kubeadm writes a joining control plane's static pods from the cluster's ClusterConfiguration but not the files
    they name: without them its API server exits at once and `kubeadm join --control-plane` times out in the kubelet's
    TLS bootstrap (the HA lab's first run). The entry point control_plane_files writes every one of them: the audit
    policy and admission configuration by one module run, the encryption configuration from the controller's copy."""
    files, _ = ha
    api = _doc(files["k8s-cp-kubeadm-config.yaml"], "ClusterConfiguration")["apiServer"]
    args = {arg["name"]: arg["value"] for arg in api["extraArgs"]}
    wanted = {args[flag] for flag in APISERVER_FILE_FLAGS}
    mounts = {volume["hostPath"] for volume in api["extraVolumes"]}
    assert len(wanted) == 3 and all(any(path.startswith(m + "/") for m in mounts) for path in wanted)

    copy = tmp_path / "encryption-config.yaml"
    copy.write_text("kind: EncryptionConfiguration\n")
    done = _control_plane_files(tmp_path, copy)
    assert done.returncode == 0, done.stdout[-3000:]
    results = {m.group("task"): json.loads(m.group("result")) for m in re.finditer(
        r"TASK \[kubeadm_init : (?P<task>[^\]]+)\][^\n]*\n(?:changed|ok): \[k8s-cp2\] => (?P<result>\{.*\})", done.stdout)}
    install = next(r for task, r in results.items() if task.startswith("Write the API server's directories"))
    written = {item["path"] for item in install["installed"]}
    assert set(install["directories"]) >= mounts, "every hostPath the static pod mounts exists"
    tasks = yaml.safe_load((ROOT / "roles/kubeadm_init/tasks/control_plane_files.yml").read_text())
    key_task = next(task for task in tasks if "ansible.builtin.copy" in task)
    assert key_task["no_log"] is True and key_task["ansible.builtin.copy"]["mode"] == "0600"
    assert key_task["ansible.builtin.copy"]["dest"] == "{{ kubeadm_init_encryption_config_path }}"
    assert args["encryption-provider-config"] == "/etc/kubernetes/encryption/config.yaml"  # that variable's default
    encryption = next(r for task, r in results.items() if task.startswith("Write the cluster's encryption"))
    assert encryption["changed"] is True and "censored" in encryption
    assert written | {args["encryption-provider-config"]} == wanted


def test_another_control_plane_without_the_controllers_key_copy_is_refused_before_anything_is_written(tmp_path):
    done = _control_plane_files(tmp_path, tmp_path / "no-such-copy.yaml")
    assert done.returncode == 2, done.stdout[-3000:]
    assert "k8s-cp2 needs the cluster's Secrets encryption configuration" in done.stdout
    assert "bootstrap.py up --phase control_plane" in done.stdout and "Never give this node a new key" in done.stdout
    assert "Write the API server's directories" not in done.stdout


def test_the_other_control_planes_get_the_api_servers_files_before_joining_and_on_every_later_run():
    """The pending control planes before `kubeadm join` (kubeadm_join tasks/control_plane.yml), the joined ones in a
    play of their own (playbooks/join.yml), which a cluster of one control plane never runs."""
    entry = {"name": "kubeadm_init", "tasks_from": "control_plane_files"}
    tasks = yaml.safe_load((ROOT / "roles/kubeadm_join/tasks/control_plane.yml").read_text())
    names = [task["name"] for task in tasks]
    first = next(i for i, task in enumerate(tasks) if task.get("ansible.builtin.include_role") == entry)
    joining = names.index("Join the control plane")
    assert first < joining and "when" not in tasks[first]
    plays = yaml.safe_load((ROOT / "playbooks/join.yml").read_text())
    joined = [play for play in plays
              if any(task.get("ansible.builtin.include_role") == entry for task in play.get("tasks", []))]
    assert [play["hosts"] for play in joined] == ["kubestrap_joined:&k8s_control_plane"]


# stand in for kubeadm and crictl in tests/playbooks/control_plane_join.yml. The join fails the way the HA lab's runs
# did (with a token-shaped string in its output), in the phase PHASE, JOIN_FAILS times, then succeeds; a join resumed
# (`--skip-phases`) fails RESUME_FAILS times (the Nth in the Nth phase of RESUME_PHASES, else PHASE), then succeeds.
# A failed join leaves an etcd member of the node (the file MEMBER), which its reset removes when RESET_REMOVES is 1
# (the real one cannot when it misses the cluster's configuration or etcd in time) and exits with RESET_EXIT. crictl
# finds the etcd container when ETCD_RUNNING is 1, and etcdctl in it lists the first control plane's member and the
# left one (IDs from the lab's run) and removes it (exit REMOVE_EXIT). Every call is recorded in RECORD.
FAILING_KUBEADM = """#!/bin/sh
# Test fixture (not kubeadm): a `kubeadm join` that fails JOIN_FAILS times (resumed: RESUME_FAILS times), and a
# `kubeadm reset` that records its call.
echo "$*" >> "$RECORD"
case "$1 $4" in
  "join --skip-phases")
        n=$(grep -c -- '--skip-phases' "$RECORD")
        if [ "$n" -gt "$RESUME_FAILS" ]; then echo "This node has joined"; exit 0; fi
        phase=$(echo "$RESUME_PHASES" | awk -v n="$n" '{print $n}')
        echo "error: error execution phase ${phase:-$PHASE}: context deadline exceeded" >&2
        exit 1 ;;
  "join "*)
        if [ "$(grep '^join' "$RECORD" | grep -v -c -- '--skip-phases')" -gt "$JOIN_FAILS" ]; then
          echo "This node has joined the cluster"; exit 0
        fi
        touch "$MEMBER"
        echo "[etcd] Creating static Pod manifest for etcd" >&2
        echo "token abcdef.0123456789abcdef in the output" >&2
        echo "error: error execution phase $PHASE: error creating local etcd static pod manifest file" >&2
        echo "To see the stack trace of this error execute with --v=5 or higher" >&2
        exit 1 ;;
  "reset "*) [ "$RESET_REMOVES" = 1 ] && rm -f "$MEMBER"
         [ "$RESET_EXIT" = 0 ] || echo "failed to remove the etcd member: context deadline exceeded" >&2
         exit "$RESET_EXIT" ;;
esac
exit 3
"""
FAKE_CRICTL = """#!/bin/sh
# Test fixture (not crictl, not etcdctl): the first control plane's etcd container and etcdctl in it.
case "$1" in
  ps) echo "crictl $*" >> "$RECORD"; [ "$ETCD_RUNNING" = 1 ] && echo 0123abcd; exit 0 ;;
  exec) shift 2; [ "$1" = etcdctl ] || exit 3 ;;
  *) exit 3 ;;
esac
shift 6  # etcdctl and its endpoint, certificates and timeout
echo "etcdctl $*" >> "$RECORD"
case "$1 $2" in
  "member list")
    left=""
    [ -e "$MEMBER" ] && left=',{"ID":8557499284951584928,"peerURLs":["https://10.0.0.12:2380"],"isLearner":true}'
    echo '{"header":{"cluster_id":1},"members":[{"ID":8008743163575342867,"name":"k8s-cp",'
    echo '"peerURLs":["https://10.0.0.11:2380"],"clientURLs":["https://10.0.0.11:2379"]}'"$left]}" ;;
  "member remove")
    [ "$REMOVE_EXIT" = 0 ] || { echo "etcdserver: request timed out" >&2; exit 1; }
    [ "$3" = 76c258429532d0a0 ] && rm -f "$MEMBER" ;;
  *) exit 3 ;;
esac
"""


def _failing_join(tmp: Path, join_fails: int, *extra: str, crictl: str = FAKE_CRICTL, path: tuple[str, ...] = (),
                  env_extra: dict[str, str] | None = None, **conditions: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    """tests/playbooks/control_plane_join.yml with FAILING_KUBEADM and *crictl* first on PATH (then *path*), a failed
    join resumed once unless *extra* says otherwise; the calls they recorded, each as its first two words ("join
    resume" for a join with --skip-phases)."""
    bindir = tmp / "bin"
    bindir.mkdir()
    for name, script in (("kubeadm", FAILING_KUBEADM), ("crictl", crictl)):
        (bindir / name).write_text(script)
        (bindir / name).chmod(0o755)
    record = tmp / "calls"
    record.touch()
    inventory = tmp / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"k8s-cp2": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, "node_ip": "10.0.0.12"}}}}))  # fmt: skip
    state = {"RESET_EXIT": 0, "RESET_REMOVES": 1, "ETCD_RUNNING": 1, "REMOVE_EXIT": 0, "PHASE": "etcd-join",
             "RESUME_FAILS": 99, "RESUME_PHASES": "", **conditions}  # fmt: skip
    env = {**os.environ, "PATH": os.pathsep.join([str(bindir), *path, os.environ["PATH"]]), "RECORD": str(record),
           "MEMBER": str(tmp / "member"), "JOIN_FAILS": str(join_fails), "ANSIBLE_NOCOLOR": "1",
           **{key: str(value) for key, value in state.items()}, **(env_extra or {})}  # fmt: skip
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), "-e", f"kubeadm_join_config_dir={tmp}",
                           "-e", "kubeadm_join_control_plane=k8s-cp2", "-e", "kubeadm_join_etcd_member_retries=1",
                           "-e", "kubeadm_join_etcd_member_delay=0", "-e", "kubeadm_join_control_plane_resumes=1",
                           "-e", "kubeadm_join_control_plane_resume_delay=0", *extra,
                           str(ROOT / "tests/playbooks/control_plane_join.yml")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)  # fmt: skip
    return done, ["join resume" if "--skip-phases" in call else " ".join(call.split()[:2])
                  for call in record.read_text().splitlines()]


LOOK = ["crictl ps", "etcdctl member"]  # the etcd container found, its members listed
TRY = ["join --config", "join resume"]  # a join that stops at etcd-join, resumed there once
# (times the join fails, conditions, extra arguments) -> (calls, how many tries the report names, what the report says)
JOIN_CASES = {
    "fails twice, undone twice": (2, {}, (), [*TRY, "reset --force", *LOOK] * 2, "twice", "undone"),
    "reset leaves the member: removed, then fails again": (
        2, {"RESET_REMOVES": 0}, (),
        [*TRY, "reset --force", *LOOK, "etcdctl member"] * 2, "twice", "undone"),
    "reset fails: no second try": (
        2, {"RESET_EXIT": 1}, (), [*TRY, "reset --force", *LOOK], "once",
        "It could not be undone (kubeadm reset: failed to remove the etcd member: context deadline exceeded)"),
    "member cannot be removed: no second try": (
        2, {"RESET_REMOVES": 0, "REMOVE_EXIT": 1}, (),
        [*TRY, "reset --force", *LOOK, "etcdctl member", "etcdctl member"], "once",
        "It could not be undone (etcd member 76c258429532d0a0 of this node could not be removed: etcdserver: request"
        " timed out)"),
    "no etcd running on the first control plane: no second try": (
        2, {"ETCD_RUNNING": 0}, (), [*TRY, "reset --force", "crictl ps"], "once",
        "It could not be undone (no running etcd container on k8s-cp2 to check its members)"),
    "one attempt only": (2, {}, ("-e", "kubeadm_join_control_plane_attempts=1"), [*TRY, "reset --force", *LOOK],
                         "once", "undone"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(JOIN_CASES))
def test_a_failed_control_plane_join_is_undone_and_says_what_to_do(tmp_path, case):
    """kubeadm_join's control_plane_join.yml: a failed `kubeadm join --control-plane` is followed by `kubeadm reset
    --force` on that node (the kubelet kubeconfig it leaves would make the next run skip the node), then etcd is asked
    on the first control plane for a member of the node the reset left (as it did in the HA lab) and that member is
    removed; only when both worked is the join tried once more. The failure names the host, kubeadm's last line (no
    token), whether the undo worked and what is left to do, and the command to run again."""
    join_fails, conditions, extra, calls, tries, said = JOIN_CASES[case]
    done, record = _failing_join(tmp_path, join_fails, *extra, **conditions)
    out = done.stdout
    assert done.returncode == 2, out[-3000:]
    assert record == calls
    assert f"kubeadm join as a control plane failed on k8s-cp2 ({tries}, then resumed 1 time(s) at the phase it stopped" \
           " in): error: error execution phase etcd-join: context deadline exceeded." in out
    report = out.split("failed on k8s-cp2 (")[1]
    assert "stack trace" not in report
    assert "abcdef.0123456789abcdef" not in out.split("TASK [kubeadm_join : Report the failed")[1]
    assert "run the command again (`bootstrap.py add-node k8s-cp2` joins this node alone)" in out
    if said == "undone":
        assert "It was undone (kubeadm reset there; no etcd member of the node is left)" in report
    else:
        assert said in " ".join(report.split())
        assert "run `kubeadm reset --force` on k8s-cp2 before anything else" in report
    assert (tmp_path / "member").exists() is (conditions.get("REMOVE_EXIT") == 1)  # the member is gone but there


def test_a_control_plane_join_that_fails_once_is_undone_and_succeeds_the_second_time(tmp_path):
    done, record = _failing_join(tmp_path, 1, RESET_REMOVES=0)
    assert done.returncode == 0, done.stdout[-3000:]
    # the member the reset left is removed (76c2... is the ID of the member list's learner) before the second try
    assert record == [*TRY, "reset --force", *LOOK, "etcdctl member", "join --config"]
    assert "etcdctl member remove 76c258429532d0a0" in (tmp_path / "calls").read_text()
    assert re.search(r"TASK \[kubeadm_join : Report the failed control-plane join\][ *]*\nskipping: ", done.stdout)
    assert "failed on k8s-cp2" not in done.stdout
    joins = re.findall(r"TASK \[kubeadm_join : Run kubeadm join as a control plane, resumed at the phase it stops in"
                       r" \(one node at a time\)\][ *]*\n(\w+):", done.stdout)
    assert joins == ["changed", "changed"]  # the first failed (judged after it), the second joined


UNDONE = ["join --config", "reset --force", *LOOK, "etcdctl member", "join --config"]  # undone, member removed, again
# phase the join stops in, times the resumed join fails, resumes allowed -> kubeadm calls made (the node joins)
RESUME_CASES = {
    "etcd-join, resumed once": ("etcd-join", 0, 3, ["join --config", "join resume"]),
    "etcd-join, resumed three times": ("etcd-join", 2, 3, ["join --config"] + ["join resume"] * 3),
    "wait-control-plane, resumed": ("wait-control-plane", 0, 3, ["join --config", "join resume"]),
    "kubelet-wait-bootstrap, resumed": ("kubelet-wait-bootstrap", 0, 3, ["join --config", "join resume"]),
    "control-plane-join (a sub-phase), resumed": ("control-plane-join/mark-control-plane", 0, 3,
                                                   ["join --config", "join resume"]),
    "no resumes: undone and tried again": ("etcd-join", 0, 0, UNDONE),
    "kubelet-start is not resumed": ("kubelet-start", 0, 3, UNDONE),
    "preflight is not resumed": ("preflight", 0, 3, UNDONE),
}  # fmt: skip
# the phases skipped when the join is resumed at a phase (kubeadm's order)
BEFORE = "preflight,control-plane-prepare,check-etcd"
SKIPPED = {"etcd-join": f"{BEFORE},kubelet-start",
           # kubelet-start again: its bootstrap kubeconfig is gone after a failed kubelet-wait-bootstrap
           "kubelet-wait-bootstrap": f"{BEFORE},etcd-join",
           # control-plane-join again: it reads the configuration kubeadm's closing message needs
           "wait-control-plane": f"{BEFORE},kubelet-start,etcd-join,kubelet-wait-bootstrap",
           "control-plane-join": f"{BEFORE},kubelet-start,etcd-join,kubelet-wait-bootstrap"}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_a_join_that_stops_at_etcd_join_or_later_is_resumed_there_and_keeps_its_etcd_member(tmp_path, case):
    """A control-plane join that stops at etcd-join or a later phase keeps what it did (the node's files, the etcd
    member it added, which may already hold a copy of the data) and is resumed at that phase: `kubeadm join --config
    FILE --skip-phases` of the phases before it, up to kubeadm_join_control_plane_resumes times, before it is undone.
    Earlier phases have added no member and are undone and tried again as before."""
    phase, resume_fails, resumes, calls = RESUME_CASES[case]
    done, record = _failing_join(tmp_path, 1, "-e", f"kubeadm_join_control_plane_resumes={resumes}",
                                 PHASE=phase, RESUME_FAILS=resume_fails, RESET_REMOVES=0)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert record == calls
    resumed = [call for call in (tmp_path / "calls").read_text().splitlines() if "--skip-phases" in call]
    skipped = SKIPPED.get(phase.split("/")[0])
    assert resumed == [f"join --config {tmp_path}/kubeadm-join.yaml --skip-phases {skipped}"] * len(resumed)
    assert (tmp_path / "member").exists() is bool(resumed)  # a resumed join keeps its member; an undone one has not
    assert "failed on k8s-cp2" not in done.stdout


def test_each_resume_starts_at_the_phase_the_one_before_stopped_in(tmp_path):
    """The HA lab's fifth run: a resume got past etcd-join (its member promoted) and stopped at kubelet-wait-bootstrap;
    the next resume starts there (with kubelet-start again, whose bootstrap kubeconfig the failed wait deleted), so
    the 2-s member lookup that failed before is not run again. A stop at wait-control-plane is resumed at
    control-plane-join."""
    done, record = _failing_join(tmp_path, 1, "-e", "kubeadm_join_control_plane_resumes=4", RESUME_FAILS=2,
                                 RESUME_PHASES="kubelet-wait-bootstrap wait-control-plane")  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert record == ["join --config"] + ["join resume"] * 3
    skipped = [call.split("--skip-phases ")[1] for call in (tmp_path / "calls").read_text().splitlines() if "--skip" in call]
    assert skipped == [SKIPPED["etcd-join"], SKIPPED["kubelet-wait-bootstrap"], SKIPPED["wait-control-plane"]]


def test_a_join_whose_resumes_all_fail_is_undone_and_the_report_says_so(tmp_path):
    done, record = _failing_join(tmp_path, 2, "-e", "kubeadm_join_control_plane_resumes=2", "-e",
                                 "kubeadm_join_control_plane_attempts=1")  # fmt: skip
    assert done.returncode == 2
    assert record == ["join --config", "join resume", "join resume", "reset --force", *LOOK]
    assert ("kubeadm join as a control plane failed on k8s-cp2 (once, then resumed 2 time(s) at the phase it stopped in):"
            " error: error execution phase etcd-join: context deadline exceeded. It was undone") in done.stdout


def test_real_kubeadm_knows_every_phase_a_resumed_join_skips_in_its_order(kubeadm, tmp_path):
    """The phase names and order the resume uses (roles/kubeadm_join/vars/main.yml) are the real kubeadm's: it refuses
    an unknown name in --skip-phases before it does anything (`invalid phase name: NAME`, the first unknown one), and
    lists its phases in order in `kubeadm join --help` (check-etcd, a hidden phase, is not listed there)."""
    phases = yaml.safe_load((ROOT / "roles/kubeadm_join/vars/main.yml").read_text())["__kubeadm_join_cp_phases"]
    join = tmp_path / "join.yaml"
    join.write_text(yaml.safe_dump({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration",
                                    "discovery": {"bootstrapToken": {"apiServerEndpoint": "192.0.2.1:6443",
                                                                     "token": "abcdef.0123456789abcdef",
                                                                     "unsafeSkipCAVerification": True}}}))  # fmt: skip
    done = subprocess.run([kubeadm, "join", "--config", str(join), "--skip-phases", ",".join([*phases, "kubestrap-probe"])],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "invalid phase name: kubestrap-probe" in done.stderr, done.stderr
    assert done.returncode != 0
    listed = subprocess.run([kubeadm, "join", "--help"], capture_output=True, text=True, timeout=120).stdout
    block = listed.split("executes the following phases:")[1].split("```")[1]
    top = [line.split()[0] for line in block.splitlines() if line.strip() and not line.startswith(" ")]
    assert [p for p in phases if p != "check-etcd"] == top
    assert phases.index("check-etcd") < phases.index("etcd-join")
    # the phases the resume names are among them, each phase run again before the one it is run again for
    join = yaml.safe_load((ROOT / "roles/kubeadm_join/tasks/control_plane_join_try.yml").read_text())[0]["kubestrap_kubeadm_join"]
    assert join["resume_from"] in phases
    assert all(phases.index(again) < phases.index(stopped) for stopped, again in join["rerun"].items())


# (file, text, replacement, what real kubeadm says)
REFUSED = {
    "misspelt controlPlane field": ("k8s-cp2-kubeadm-join.yaml", "localAPIEndpoint:", "localAPIEndpoints:",
                                    'unknown field "controlPlane.localAPIEndpoints"'),
    "a key that is no key (join)": ("k8s-cp2-kubeadm-join.yaml", f'"{KEY}"', '"not-a-key"', "controlPlane.certificateKey"),
    "a key that is no key (upload)": ("k8s-cp-kubeadm-upload-certs.yaml", f'"{KEY}"', '"not-a-key"', "certificateKey"),
    "misspelt upload field": ("k8s-cp-kubeadm-upload-certs.yaml", "certificateKey:", "certificatesKey:",
                              'unknown field "certificatesKey"'),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_real_kubeadm_refuses_a_broken_ha_file(ha, kubeadm, tmp_path, case):
    name, text, replacement, said = REFUSED[case]
    _, dest = ha
    content = (dest / name).read_text()
    assert text in content
    broken = tmp_path / name
    broken.write_text(content.replace(text, replacement, 1))
    done = _validate(kubeadm, broken)
    assert done.returncode != 0 and said in done.stderr, done.stderr


# --- haproxy and keepalived ----------------------------------------------------------------------------------
def _haproxy_check(programs: debian_programs.Programs, config: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """`haproxy -c` on *config*. haproxy resolves `user`/`group` while parsing, and the user Debian's package
    creates (haproxy) exists on the nodes, not here: those two lines name this machine's root instead (the test
    below checks that they name the package's user)."""
    text = config.read_text()
    assert "\n    user haproxy\n    group haproxy\n" in text
    local = tmp / config.name
    local.write_text(text.replace("user haproxy", "user root").replace("group haproxy", "group root"))
    return programs.run("haproxy", "-c", "-f", str(local))


def test_real_haproxy_accepts_every_control_plane_configuration(ha, programs, tmp_path):
    _, dest = ha
    for name in CPS:
        done = _haproxy_check(programs, dest / f"{name}-haproxy.cfg", tmp_path)
        assert done.returncode == 0 and "Configuration file is valid" in done.stdout, done.stdout + done.stderr
    # the user and group it names are the ones Debian's package creates
    assert re.search(r"adduser .*haproxy", programs.postinst("haproxy")), programs.postinst("haproxy")


def test_real_haproxy_refuses_a_broken_configuration(ha, programs, tmp_path):
    _, dest = ha
    broken = tmp_path / "broken" / "k8s-cp-haproxy.cfg"
    broken.parent.mkdir()
    broken.write_text((dest / "k8s-cp-haproxy.cfg").read_text().replace("http-check connect ssl", "http-check connekt ssl"))
    done = _haproxy_check(programs, broken, tmp_path)
    assert done.returncode != 0 and "connekt" in done.stdout + done.stderr


def test_haproxy_forwards_to_every_control_plane_health_checked_over_tls(ha):
    _, dest = ha
    text = (dest / "k8s-cp2-haproxy.cfg").read_text()
    assert "    bind :8443\n" in text and "    mode tcp\n" in text
    servers = re.findall(r"^\s+server (\S+) (\S+) check verify none$", text, re.M)
    assert servers == [(name, f"{ip}:6443") for name, ip in CPS.items()]
    for line in ("option httpchk", "http-check connect ssl", "http-check send meth GET uri /healthz",
                 "http-check expect status 200"):
        assert f"    {line}\n" in text
    # a check may take 10 s to answer (kubeadm's HA guide): without `timeout check` haproxy allows only the interval
    # (2 s), and in the HA lab every API server was taken out while a join kept them busy
    assert "    default-server inter 2s fall 3 rise 2\n" in text and "    timeout check 10s\n" in text


def test_real_keepalived_accepts_every_control_plane_configuration(ha, programs):
    _, dest = ha
    for name in CPS:
        done = programs.run("keepalived", "--config-test", "-f", str(dest / f"{name}-keepalived.conf"))
        assert done.returncode == 0, done.stdout + done.stderr


def test_real_keepalived_refuses_a_broken_configuration(ha, programs, tmp_path):
    _, dest = ha
    broken = tmp_path / "keepalived.conf"
    broken.write_text((dest / "k8s-cp-keepalived.conf").read_text().replace("virtual_router_id 51", "virtual_router_id 351"))
    done = programs.run("keepalived", "--config-test", "-f", str(broken))
    assert done.returncode != 0 and "351" in done.stdout + done.stderr


def test_keepalived_peers_by_unicast_with_the_others_and_ranks_by_position(ha):
    _, dest = ha
    priorities = []
    for name, ip in CPS.items():
        text = (dest / f"{name}-keepalived.conf").read_text()
        peers = re.search(r"unicast_peer \{\n(.*?)\n    \}", text, re.S).group(1).split()
        assert peers == [other for other in CPS.values() if other != ip]
        assert f"unicast_src_ip {ip}\n" in text and "check_unicast_src\n" in text
        assert f"{VIP}/24 dev {IFACE}" in text and f"interface {IFACE}\n" in text
        assert 'script "/usr/bin/systemctl is-active --quiet haproxy.service"' in text
        assert "auth_pass" not in text  # no VRRP password (cleartext on the wire); the peer list restricts
        priorities.append(int(re.search(r"priority (\d+)", text).group(1)))
    assert priorities == [150, 140, 130]


def test_one_control_plane_with_a_vip_is_valid_for_the_real_programs(tmp_path, kubeadm, programs):
    """Day one of growing 1 -> 3: one control plane behind the VIP (keepalived has no peer yet)."""
    files, dest = _render(tmp_path, 1, {"api_lb_vrrp_router_id": 77})
    text = (dest / "k8s-cp-keepalived.conf").read_text()
    assert "unicast_peer" not in text and "virtual_router_id 77\n" in text
    done = programs.run("keepalived", "--config-test", "-f", str(dest / "k8s-cp-keepalived.conf"))
    assert done.returncode == 0, done.stdout + done.stderr
    done = _haproxy_check(programs, dest / "k8s-cp-haproxy.cfg", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _doc(files["k8s-cp-kubeadm-config.yaml"], "ClusterConfiguration")["controlPlaneEndpoint"] == f"{VIP}:8443"
    assert _validate(kubeadm, dest / "k8s-cp-kubeadm-config.yaml").returncode == 0


def test_without_a_vip_nothing_changes_for_one_control_plane(tmp_path):
    """The single control plane's files as before HA existed: endpoint and port from cluster_api_endpoint /
    cluster_api_port, no VIP in the certificate, workers discover through it."""
    files = render_configs(tmp_path / "r", inventory=CORPUS / "base")
    cluster = _doc(files["k8s-cp-kubeadm-config.yaml"], "ClusterConfiguration")
    assert cluster["controlPlaneEndpoint"] == "192.168.1.10:6443"
    assert cluster["apiServer"]["certSANs"] == ["192.168.1.10", "k8s-cp"]
    assert files["k8s-worker1-kubeadm-join.yaml"][0]["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "192.168.1.10:6443"


# --- secrets in the tasks -------------------------------------------------------------------------------------
def _tasks(path: Path) -> list[dict]:
    found: list[dict] = []

    def walk(items: list) -> None:
        for task in items or []:
            if any(key in task for key in ("block", "rescue", "always")):
                for key in ("block", "rescue", "always"):
                    walk(task.get(key))
            else:
                found.append(task)
    walk(yaml.safe_load(path.read_text()))
    return found


def test_every_task_touching_the_token_or_the_key_hides_it_and_files_are_0600():
    tasks = [t for path in CP_TASK_FILES for t in _tasks(path)]
    secret = re.compile(r"cp_token_result|cp_key_result|__kubeadm_join_cp_token\b|__kubeadm_join_certificate_key|--upload-certs")
    touching = [t for t in tasks if secret.search(yaml.safe_dump({k: v for k, v in t.items() if k != "name"}))
                or t.get("ansible.builtin.template")]  # fmt: skip
    assert len(touching) >= 5
    for task in touching:
        assert task.get("no_log") is True, task["name"]
        if "ansible.builtin.template" in task:
            assert task["ansible.builtin.template"]["mode"] == "0600", task["name"]
    # no secret on a command line: every command's argv is made of fixed words and file paths
    for task in tasks:
        argv = (task.get("ansible.builtin.command") or {}).get("argv", [])
        assert not any("__kubeadm_join_cp_token " in str(a) or "certificate_key" in str(a) for a in argv), task["name"]
    # the files with the token and the key are removed, the Secret and the token deleted, also after a failure
    block = next(t for t in yaml.safe_load(CP_TASK_FILES[0].read_text()) if "always" in t)
    assert [t.get("ansible.builtin.import_tasks") for t in block["always"]] == ["control_plane_cleanup.yml"]
    cleanup = yaml.safe_load(CP_TASK_FILES[2].read_text())
    removed = [t["ansible.builtin.file"]["path"] for t in cleanup if "ansible.builtin.file" in t]
    assert [Path(p).name for p in removed] == ["kubeadm-join.yaml", "kubeadm-upload-certs.yaml"]
    deleting = [t["ansible.builtin.command"]["argv"] for t in cleanup if "ansible.builtin.command" in t]
    assert any("'delete', 'secret'" in str(argv) and "kubeadm_join_certs_secret" in str(argv) for argv in deleting)
    assert any(argv[:3] == ["kubeadm", "token", "delete"] for argv in deleting)


def test_the_journal_redacts_a_certificate_key():
    from kubestrap.redact import Redactor
    text = f"kubeadm join --certificate-key {KEY} and certificateKey: \"{KEY}\""
    assert KEY not in str(Redactor([]).obj(text))


def test_debian_programs_fixture_is_not_checked_in_copies():
    """The programs come from Debian's archive at test time; nothing of them is stored in the repository."""
    assert not list(ROOT.glob("tests/**/*.deb")) and shutil.which("dpkg-deb")


# --- the certificate upload, for real ---------------------------------------------------------------------------
def _task(name: str) -> dict:
    return next(t for path in CP_TASK_FILES for t in _tasks(path) if t["name"] == name)


def test_real_kubeadm_uploads_the_certificates_with_the_key_from_the_file_and_the_secret_is_deleted(tmp_path, kubeadm):
    """The upload step against the REAL kube-apiserver of tests/k8s_real.py: a key from REAL `kubeadm certs
    certificate-key`, the rendered upload file holding it, the task's own argv (`kubeadm init phase upload-certs
    --upload-certs --config FILE`; --kubeconfig added: the node's /etc/kubernetes/admin.conf is not here). kubeadm
    stores the certificates encrypted with the file's key (a joining control plane decrypts them with it: done here
    with AES-GCM as kubeadm does)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from k8s_real import started

    key = subprocess.run([kubeadm, "certs", "certificate-key"], capture_output=True, text=True, timeout=60,
                         check=True).stdout.strip()  # fmt: skip
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    _, dest = _render(tmp_path / "render", 3)
    with started(tmp_path / "plane") as plane:
        config = tmp_path / "kubeadm-upload-certs.yaml"
        text = (dest / "k8s-cp-kubeadm-upload-certs.yaml").read_text().replace(KEY, key)
        config.write_text(text + f"certificatesDir: {plane.pki}\n")  # the test control plane's certificates
        argv = [str(a).replace("{{ kubeadm_join_config_dir }}/kubeadm-upload-certs.yaml", str(config))
                for a in _task("Upload the control plane's certificates encrypted with the key (kubeadm-certs Secret; "
                               "kubeadm lets it expire after 2 h)")["ansible.builtin.command"]["argv"]]  # fmt: skip
        assert argv[:6] == ["kubeadm", "init", "phase", "upload-certs", "--upload-certs", "--config"] and key not in argv
        env = {**os.environ, "HOME": plane.home}
        done = subprocess.run([kubeadm, *argv[1:], "--kubeconfig", str(plane.kubeconfig)], capture_output=True,
                              text=True, env=env, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert key in done.stdout  # the key it used is the file's (kubeadm prints it: the task is no_log)
        kubectl = [plane.kubectl_bin, "--kubeconfig", str(plane.kubeconfig)]
        got = subprocess.run([*kubectl, "-n", "kube-system", "get", "secret", "kubeadm-certs", "-o", "json"],
                             capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
        data = json.loads(got.stdout)["data"]
        sealed = base64.b64decode(data["ca.crt"])
        plain = AESGCM(bytes.fromhex(key)).decrypt(sealed[:12], sealed[12:], None)
        assert plain == (plane.pki / "ca.crt").read_bytes()
        # (the role's cleanup of the Secret and of the token kubeadm made for it runs for real below)


# --- keepalived, for real: three "control planes" in network namespaces ----------------------------------------
def _ip(*argv: str, ns: str | None = None) -> None:
    command = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *argv]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)


def _holds_vip(ns: str) -> bool:
    done = subprocess.run(["ip", "netns", "exec", ns, "ip", "-o", "-4", "addr", "show", "dev", "eth0"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    return f" {VIP}/24 " in done.stdout


def _wait_holder(namespaces: dict[str, str], expected: str, seconds: int = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        holders = [name for name, ns in namespaces.items() if _holds_vip(ns)]
        if holders == [expected]:
            return
        time.sleep(0.5)
    raise AssertionError(f"{VIP} held by {holders} after {seconds} s, expected {expected} alone")


def test_real_keepalived_moves_the_vip_when_haproxy_stops_and_when_a_node_goes(tmp_path, programs):
    """The three rendered keepalived configurations RUN by Debian's keepalived, one per network namespace standing for
    a control-plane node (eth0 with its node_ip, all on one bridge, as on the node LAN): VRRP over unicast between
    them puts the VIP on the first control plane (highest priority); when its tracked haproxy stops the VIP moves
    to the second; when the second node goes away, to the third. Changed for this machine only: the tracked command
    (`systemctl is-active haproxy.service` stands for a file's presence: no systemd here) and keepalived's pid files."""
    tag = f"{os.getpid() % 100000}"
    bridge_ns = f"kst-br-{tag}"
    namespaces = {name: f"kst-{i}-{tag}" for i, name in enumerate(CPS)}
    _, dest = _render(tmp_path / "render", 3, {"api_lb_interface": "eth0"})
    processes: list[subprocess.Popen] = []
    try:
        _ip("netns", "add", bridge_ns)
        _ip("link", "add", "br0", "type", "bridge", ns=bridge_ns)
        _ip("link", "set", "br0", "up", ns=bridge_ns)
        for i, (name, ns) in enumerate(namespaces.items()):
            _ip("netns", "add", ns)
            _ip("link", "add", f"kst{i}-{tag}", "type", "veth", "peer", "name", f"kstp{i}-{tag}")
            _ip("link", "set", f"kst{i}-{tag}", "netns", ns)
            _ip("link", "set", f"kstp{i}-{tag}", "netns", bridge_ns)
            _ip("link", "set", f"kst{i}-{tag}", "name", "eth0", ns=ns)
            _ip("addr", "add", f"{CPS[name]}/24", "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)
            _ip("link", "set", f"kstp{i}-{tag}", "master", "br0", ns=bridge_ns)
            _ip("link", "set", f"kstp{i}-{tag}", "up", ns=bridge_ns)
        for name, ns in namespaces.items():
            up = tmp_path / f"{name}-haproxy-up"
            up.touch()
            text = (dest / f"{name}-keepalived.conf").read_text()
            tracked = 'script "/usr/bin/systemctl is-active --quiet haproxy.service"'
            assert tracked in text
            config = tmp_path / f"{name}-keepalived.conf"
            config.write_text(text.replace(tracked, f'script "/usr/bin/test -e {up}"'))
            pids = [f"--pid={tmp_path / f'{name}.pid'}", f"--vrrp_pid={tmp_path / f'{name}-vrrp.pid'}",
                    f"--checkers_pid={tmp_path / f'{name}-checkers.pid'}", f"--bfd_pid={tmp_path / f'{name}-bfd.pid'}"]
            processes.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, str(programs.root / "usr/sbin/keepalived"), "--dont-fork", "--log-console",
                 "--vrrp", "--use-file", str(config), *pids],
                env=programs.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))  # fmt: skip
        _wait_holder(namespaces, "k8s-cp")
        (tmp_path / "k8s-cp-haproxy-up").unlink()  # haproxy "stops" on the first control plane
        _wait_holder(namespaces, "k8s-cp2")
        processes[1].terminate()  # the second node goes away
        processes[1].wait(timeout=30)
        _wait_holder({n: ns for n, ns in namespaces.items() if n != "k8s-cp2"}, "k8s-cp3")
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        logs = [process.communicate(timeout=30)[0] for process in processes]
        for ns in [*namespaces.values(), bridge_ns]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    # keepalived's own account: each became MASTER in turn; the first gave the VIP up when its check failed
    assert not any("Defaulting to multicast" in log or "unknown keyword" in log.lower() for log in logs), logs
    for log in logs:
        assert "(kubestrap_api) Entering MASTER STATE" in log, log
    assert "(kubestrap_api) Entering FAULT STATE" in logs[0], logs[0]


def test_the_roles_certificate_step_and_cleanup_run_for_real_and_leave_nothing_behind(tmp_path, kubeadm):
    """kubeadm_join's control_plane_certs.yml and control_plane_cleanup.yml run by Ansible (tests/playbooks/
    control_plane_certs.yml) with the REAL kubeadm and kubectl against the REAL kube-apiserver of tests/k8s_real.py,
    a failed join between them: the token is minted, a key generated, the certificates uploaded with the key from
    the 0600 file; then, after the failure, the JoinConfiguration and the upload file are gone, the kubeadm-certs
    Secret deleted (it existed), the token deleted, and neither the token nor the key was printed."""
    from k8s_real import started

    token_re = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")
    with started(tmp_path / "plane") as plane:
        bindir = Path(kubeadm).parent
        env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "HOME": plane.home, "ANSIBLE_NOCOLOR": "1"}
        config_dir, record = tmp_path / "kubestrap", tmp_path / "record"
        config_dir.mkdir(mode=0o700)
        record.mkdir()
        node_vars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        inventory = tmp_path / "hosts.yml"
        inventory.write_text(json.dumps({"all": {
            "hosts": {"k8s-cp": {**node_vars, "node_ip": CPS["k8s-cp"]}, "k8s-cp2": {**node_vars, "node_ip": CPS["k8s-cp2"]}},
            "children": {"k8s_control_plane": {"hosts": {"k8s-cp": {}, "k8s-cp2": {}}}}}}))  # fmt: skip
        # (kubeadm refuses a loopback advertise address: the homelab's node_ip stand in, as in the rendered files)
        settings = tmp_path / "settings.json"
        settings.write_text(json.dumps({
            "kubeadm_join_control_plane": "k8s-cp", "kubeadm_join_admin_kubeconfig": str(plane.kubeconfig),
            "kubeadm_join_config_dir": str(config_dir), "kubeadm_join_certificates_dir": str(plane.pki),
            "kubeadm_join_kubectl_bin": plane.kubectl_bin, "cluster_api_vip": VIP, "record_dir": str(record)}))  # fmt: skip
        done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), "-e", f"@{settings}",
                               str(ROOT / "tests/playbooks/control_plane_certs.yml")],
                              capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)  # fmt: skip
        out = done.stdout + done.stderr
        assert done.returncode != 0 and "join failed (test)" in out, out[-3000:]
        for task in ("Mint a join token on the first control-plane node", "Upload the control plane's certificates",
                     "Delete the uploaded certificates", "Delete the control-plane joins' token"):
            assert re.search(rf"TASK \[kubeadm_join : {re.escape(task)}[^\]]*\][ *]*\nchanged: \[k8s-cp2 -> k8s-cp\]", out), \
                (task, out[-4000:])
        uploaded = json.loads((record / "uploaded.json").read_text())
        assert {"ca.crt", "ca.key", "sa.key", "sa.pub"} <= set(uploaded)  # the certificates were there, encrypted
        assert list(config_dir.iterdir()) == []  # JoinConfiguration and upload file removed
        secret = subprocess.run([plane.kubectl_bin, "--kubeconfig", str(plane.kubeconfig), "-n", "kube-system", "get",
                                 "secret", "kubeadm-certs"], capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
        assert "NotFound" in secret.stderr, secret.stdout + secret.stderr
        tokens = subprocess.run([kubeadm, "token", "list", "--kubeconfig", str(plane.kubeconfig)], capture_output=True,
                                text=True, env=env, timeout=60)  # fmt: skip
        assert tokens.returncode == 0 and not token_re.search(tokens.stdout), tokens.stdout
        assert not token_re.search(out), "a token was printed"
        assert not re.search(r"\b[0-9a-f]{64}\b", out), "a certificate key was printed"


# --- a half-joined node -------------------------------------------------------------------------------------------
def test_a_node_with_kubelet_conf_but_no_client_certificate_has_not_joined():
    """playbooks/join.yml grouped a node as joined by its kubelet kubeconfig, but the kubelet writes that before it
    has its client certificate (the HA lab's fifth run: kubelet.conf, no /var/lib/kubelet/pki, a kubelet that could no
    longer start): a node counts as joined only with the certificate too, so its join runs (a control plane's is
    undone and tried again: kubeadm's preflight refuses the files it left; a worker is reset first, see
    tests/test_worker_join.py). The paths are the role's."""
    import jinja2

    plays = yaml.safe_load((ROOT / "playbooks/join.yml").read_text())
    tasks = next(p for p in plays if p["name"] == "Find the nodes that have not joined yet")["tasks"]
    role_vars = yaml.safe_load((ROOT / "roles/kubeadm_join/vars/main.yml").read_text())
    look = next(t for t in tasks if t.get("register") == "join_kubelet_files")
    conf_path, cert_path = role_vars["__kubeadm_join_kubelet_conf"], role_vars["__kubeadm_join_kubelet_client_cert"]
    assert look["kubestrap_host_probe"]["paths"] == [conf_path, cert_path]
    # the control_plane phase renews certificates only on the control planes joined by the same test
    renewal = next(p for p in yaml.safe_load((ROOT / "playbooks/control_plane.yml").read_text())
                   if p.get("hosts") == "k8s_control_plane[1:]")  # fmt: skip
    assert renewal["tasks"][0]["ansible.builtin.stat"]["path"] == cert_path
    # both files are looked at on every node (kubeadm_join then goes by them: tests/test_worker_join.py)
    assert "when" not in look
    env = jinja2.Environment()
    key = env.from_string(next(t for t in tasks if "ansible.builtin.group_by" in t)["ansible.builtin.group_by"]["key"])
    groups = {"k8s_control_plane": ["cp1", "cp2"]}

    def grouped(host: str, conf: bool, has_cert: bool) -> str:
        # what the probe reports: the given paths that exist, in the given order
        present = [path for path, there in ((conf_path, conf), (cert_path, has_cert)) if there]
        facts = {"join_kubelet_files": {"present": present}, "inventory_hostname": host, "groups": groups}
        return key.render(**facts).strip()

    for host in ("cp2", "worker1"):
        assert grouped(host, conf=True, has_cert=True) == "kubestrap_joined"
        assert grouped(host, conf=True, has_cert=False) == "kubestrap_join_pending"  # the fifth run's node
        assert grouped(host, conf=False, has_cert=False) == "kubestrap_join_pending"
        assert grouped(host, conf=False, has_cert=True) == "kubestrap_join_pending"


def test_the_control_plane_join_is_not_run_again_once_the_kubelet_has_its_certificate(tmp_path):
    """The module's guard is the kubelet's client certificate, not kubelet.conf: with it, no kubeadm runs and
    nothing changes; with only kubelet.conf (here: none of it matters), the join runs."""
    cert = tmp_path / "kubelet-client-current.pem"
    cert.write_text("certificate")
    done, record = _failing_join(tmp_path, 0, "-e", f"__kubeadm_join_kubelet_client_cert={cert}")
    assert done.returncode == 0, done.stdout[-3000:]
    assert record == []
    assert re.search(r"TASK \[kubeadm_join : Run kubeadm join as a control plane, resumed at the phase it stops in"
                     r" \(one node at a time\)\][ *]*\nok: ", done.stdout)


def test_each_run_of_a_resumed_join_keeps_why_it_stopped_with_no_secret_in_it():
    """The lab's eighth run stopped nine times at etcd-join and kept only the last run's reason: each run's entry in
    the module's `runs` now carries its own last error line, a bootstrap token and a certificate key masked."""
    import importlib.util

    path = ROOT / "roles/kubeadm_join/library/kubestrap_kubeadm_join.py"
    spec = importlib.util.spec_from_file_location("kubestrap_kubeadm_join", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    token, key = "abcdef.0123456789abcdef", "0f" * 32
    stderr = (f"I1207 10:44:01 some progress\nerror: error execution phase etcd-join: token {token} key {key}: "
              "context deadline exceeded\nTo see the stack trace of this error execute with --v=5 or higher\n")
    line = module.last_error(stderr)
    assert line == "error: error execution phase etcd-join: token <token> key <key>: context deadline exceeded"
    assert module.last_error("") == ""
    source = path.read_text()
    assert '"error": last_error(err) if rc else ""' in source  # every run's entry carries it
