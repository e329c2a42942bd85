"""A worker joins when its kubelet has no client certificate, not merely no kubeconfig: the kubelet writes
/etc/kubernetes/kubelet.conf before it has its certificate, so a join that stopped in between (interrupted, or
kubeadm's TLS-bootstrap wait ran out and deleted the bootstrap kubeconfig, as in the HA lab's fifth run) left a node
whose kubelet can never start, which the next run took for joined. Now such a node is reset (`kubeadm reset
--force`, kubeadm's way back: its preflight refuses the files left) and joins again; a node with the certificate is
left alone, with no kubeadm call and nothing changed.

kubeadm_join's main tasks run by Ansible (tests/playbooks/worker_join.yml) with scripts standing in for kubeadm and
kubectl (a real join would turn this machine into a node)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ROOT

# stand in for kubeadm: `join` leaves kubelet.conf and, unless STOP_HALF_WAY is 1, the client certificate; `reset`
# removes both; `token delete` succeeds. Every call is recorded in RECORD.
KUBEADM = """#!/bin/sh
# Test fixture (not kubeadm): records its calls; join writes the kubelet's files, reset removes them.
echo "$*" >> "$RECORD"
case "$1" in
  join) [ "$2 $3" = "--config /dev/stdin" ] && cat > "$RECORD.stdin"  # the JoinConfiguration, kept for the test
        touch "$CONF"
        [ "$STOP_HALF_WAY" = 1 ] && {
          echo "error: error execution phase kubelet-wait-bootstrap: token abcdef.0123456789abcdef" >&2
          echo "To see the stack trace of this error execute with --v=5 or higher" >&2; exit 1; }
        touch "$CERT"; echo "This node has joined the cluster" ;;
  reset) rm -f "$CONF" "$CERT" ;;
  token) ;;
  *) exit 3 ;;
esac
"""
KUBECTL = """#!/bin/sh
# Test fixture (not kubectl): the node is registered.
echo "kubectl $3 $4" >> "$RECORD"  # after --kubeconfig FILE: get node NAME
echo "node/$5"
"""


def _join(tmp: Path, conf: bool, cert: bool, stop_half_way: bool = False,
          found: dict[str, bool] | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    for name, script in (("kubeadm", KUBEADM), ("kubectl", KUBECTL)):
        (bindir / name).write_text(script)
        (bindir / name).chmod(0o755)
    files = {"CONF": tmp / "kubelet.conf", "CERT": tmp / "pki" / "kubelet-client-current.pem"}
    files["CERT"].parent.mkdir(exist_ok=True)
    for key, present in (("CONF", conf), ("CERT", cert)):
        if present:
            files[key].write_text("kubelet file")
    record = tmp / "calls"
    record.write_text("")
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = tmp / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {
        "k8s_control_plane": {"hosts": {"k8s-cp": {**local, "node_ip": "10.0.0.11"}}},
        "k8s_workers": {"hosts": {"k8s-worker1": {**local, "node_ip": "10.0.0.21"}}}}}}))  # fmt: skip
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "RECORD": str(record),
           "STOP_HALF_WAY": "1" if stop_half_way else "0", "ANSIBLE_NOCOLOR": "1",
           **{key: str(path) for key, path in files.items()}}  # fmt: skip
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), "-e", f"kubeadm_join_config_dir={tmp}",
                           "-e", f"__kubeadm_join_kubelet_conf={files['CONF']}",
                           "-e", f"__kubeadm_join_kubelet_client_cert={files['CERT']}",
                           "-e", "kubeadm_join_approve_serving_csr=false", "-e", "kubeadm_join_admin_kubeconfig=/dev/null",
                           *(["-e", json.dumps({"kubeadm_join_kubelet_found": found})] if found is not None else []),
                           str(ROOT / "tests/playbooks/worker_join.yml")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)  # fmt: skip
    calls = [" ".join(call.split()[:2]) for call in record.read_text().splitlines()]
    return done, calls


def _recap(done: subprocess.CompletedProcess) -> dict[str, int]:
    line = re.search(r"^k8s-worker1\s*:(.*)$", done.stdout, re.M)
    assert line, done.stdout[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.group(1))}


JOIN = ["join --config", "token delete", "kubectl get"]
TOKEN = "abcdef.0123456789abcdef"  # the token tests/playbooks/worker_join.yml stands in with


@pytest.mark.parametrize(("conf", "cert", "calls"), [
    (False, False, JOIN),  # a fresh node
    (True, False, ["reset --force", *JOIN]),  # kubelet.conf without a certificate: reset, then join
])  # fmt: skip
def test_a_worker_without_the_kubelets_certificate_joins_after_a_reset_of_what_a_stopped_join_left(tmp_path, conf,
                                                                                                     cert, calls):
    done, record = _join(tmp_path, conf, cert)
    assert done.returncode == 0, done.stdout[-3000:]
    assert record == calls
    assert (tmp_path / "pki" / "kubelet-client-current.pem").exists()
    # the JoinConfiguration reached kubeadm on its standard input, with the token; no file on the node held it
    given = yaml.safe_load((tmp_path / "calls.stdin").read_text())
    assert given["kind"] == "JoinConfiguration" and given["nodeRegistration"]["name"] == "k8s-worker1"
    assert given["discovery"]["bootstrapToken"]["token"] == TOKEN
    assert [p.name for p in tmp_path.iterdir() if p.is_file() and TOKEN in p.read_text()] == ["calls.stdin"]
    assert TOKEN not in done.stdout  # the task's input is hidden with its output (no_log)


def test_a_worker_whose_kubelet_has_its_certificate_is_left_alone(tmp_path):
    done, record = _join(tmp_path, conf=True, cert=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert record == []
    assert _recap(done)["changed"] == 0


def test_a_join_that_stops_half_way_is_joined_by_the_next_run(tmp_path):
    """The first run's join stops after the kubelet wrote kubelet.conf (kubeadm's failure is the run's); the next run
    resets the node and joins it."""
    done, record = _join(tmp_path, conf=False, cert=False, stop_half_way=True)
    assert done.returncode != 0, done.stdout[-3000:]
    # the failure names the node and kubeadm's last line, with the token masked and kubeadm's hint left out
    failure = re.search(r"fatal: \[k8s-worker1\]: FAILED! =>.*?msg: (.*?)(?:\n\S|\Z)", done.stdout, re.S)
    assert failure, done.stdout[-3000:]
    message = " ".join(failure.group(1).split())
    assert "kubeadm join failed on k8s-worker1 (exit 1, after 1 attempt(s))" in message, message
    assert "error execution phase kubelet-wait-bootstrap: token <token>" in message, message
    assert TOKEN not in done.stdout and "stack trace" not in message
    assert record == ["join --config", "token delete"]
    assert (tmp_path / "kubelet.conf").exists() and not (tmp_path / "pki" / "kubelet-client-current.pem").exists()
    again, record = _join(tmp_path, conf=True, cert=False)
    assert again.returncode == 0, again.stdout[-3000:]
    assert record == ["reset --force", *JOIN]


@pytest.mark.parametrize(("found", "calls"), [
    ({"conf": False, "cert": False}, JOIN),
    ({"conf": True, "cert": False}, ["reset --force", *JOIN]),
    ({"conf": True, "cert": True}, []),
])  # fmt: skip
def test_the_role_goes_by_what_the_join_playbook_found_and_does_not_look_again(tmp_path, found, calls):
    """playbooks/join.yml looks at both files before it mints the token and hands that to the role: the role's own
    two looks (a module run each) are skipped, and what it does follows the findings, whatever is on disk now."""
    done, record = _join(tmp_path, conf=False, cert=False, found=found)
    assert done.returncode == 0, done.stdout[-3000:]
    assert record == calls
    for look in ("Look for the kubelet's client certificate", "Look for a kubelet kubeconfig without it"):
        assert re.search(rf"TASK \[kubeadm_join : {re.escape(look)}.*\]\s*\*+\s*skipping: \[k8s-worker1\]", done.stdout), look


def test_the_join_playbook_hands_both_looks_to_the_role():
    """join.yml looks at both kubelet files in one module run on every node and hands what it found to the role."""
    plays = yaml.safe_load((ROOT / "playbooks" / "join.yml").read_text())
    find = next(play for play in plays if play["name"] == "Find the nodes that have not joined yet")
    looks = [task for task in find["tasks"] if "register" in task]
    assert [task["register"] for task in looks] == ["join_kubelet_files"]
    assert "when" not in looks[0]  # looked at on every node: the role needs both
    role_vars = yaml.safe_load((ROOT / "roles/kubeadm_join/vars/main.yml").read_text())
    conf, cert = role_vars["__kubeadm_join_kubelet_conf"], role_vars["__kubeadm_join_kubelet_client_cert"]
    assert looks[0]["kubestrap_host_probe"] == {"paths": [conf, cert]}
    join = next(play for play in plays if play["name"] == "Join the pending nodes")
    assert join["roles"][0]["vars"]["kubeadm_join_kubelet_found"] == {
        "conf": f"{{{{ '{conf}' in join_kubelet_files.present }}}}",
        "cert": f"{{{{ '{cert}' in join_kubelet_files.present }}}}"}
