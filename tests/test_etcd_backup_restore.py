"""etcd backup and restore (issue 21 item 3) with the REAL etcd, etcdctl and etcdutl v3.6.8 (kubestrap/lab/sources/
build.py) and etcd client certificates made by the REAL kubeadm, as on a control-plane node.

etcd runs with TLS on 127.0.0.1 with kubeadm's etcd-server certificate; the roles' own task files run on this
machine with the programs on PATH instead of inside the etcd container (their command prefix, `__etcd_backup_exec`
/ `__etcd_restore_exec`, is empty here; on a node it is `crictl exec <etcd>` / `ctr run <etcd image>`):
roles/etcd_backup snapshot.yml (etcdctl snapshot save with the healthcheck client certificate, etcdutl snapshot
status, the 0600 archive) and roles/etcd_restore data.yml (etcdutl snapshot status, snapshot restore into a fresh
data directory). A restarted etcd on the restored directory holds the key written before the snapshot and not the
one written after; a file that is no snapshot is refused by the same tasks and by the CLI's check.
The control-plane stop/swap/start around them (static pods, crictl, kubectl) needs a node: not run here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ROLE_PATHS, ROOT, wait_until
from k8s_real import free_port, upstream_dir

from kubestrap import backups


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> dict[str, Path]:
    found = {"etcd": upstream_dir("etcd") / "etcd", "etcdctl": upstream_dir("etcdctl") / "etcdctl",
             "etcdutl": upstream_dir("etcdutl") / "etcdutl", "kubeadm": upstream_dir("kubernetes") / "kubeadm"}  # fmt: skip
    pki = tmp_path_factory.mktemp("pki") / "pki"
    subprocess.run([found["kubeadm"], "init", "phase", "certs", "etcd-ca", "--cert-dir", str(pki)], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    for cert in ("etcd-server", "etcd-healthcheck-client"):
        subprocess.run([found["kubeadm"], "init", "phase", "certs", cert, "--cert-dir", str(pki)], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
    return {**found, "pki": pki}


class Etcd:
    def __init__(self, programs: dict[str, Path], data_dir: Path, log: Path):
        self.programs, self.data_dir = programs, data_dir
        self.port, peer = free_port(), free_port()
        etcd = programs["pki"] / "etcd"
        self.url = f"https://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([
            programs["etcd"], "--name", "cp", "--data-dir", str(data_dir),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"cp=http://127.0.0.1:{peer}", "--unsafe-no-fsync",
            "--client-cert-auth", "--trusted-ca-file", str(etcd / "ca.crt"),
            "--cert-file", str(etcd / "server.crt"), "--key-file", str(etcd / "server.key"),
        ], stdout=log.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip
        self.peer = peer
        wait_until(lambda: self.ctl("endpoint", "health", check=False).returncode == 0, timeout=60)

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        etcd = self.programs["pki"] / "etcd"
        return subprocess.run([self.programs["etcdctl"], "--endpoints", self.url, "--cacert", str(etcd / "ca.crt"),
                               "--cert", str(etcd / "healthcheck-client.crt"), "--key", str(etcd / "healthcheck-client.key"),
                               *args], capture_output=True, text=True, timeout=30, check=check)  # fmt: skip

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _play(tmp_path: Path, role: str, tasks_from: str, variables: dict,
          programs: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    book = tmp_path / f"{role}-{tasks_from}.yml"
    book.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "run", "ansible.builtin.include_role": {"name": role, "tasks_from": tasks_from}},
        {"name": "facts", "ansible.builtin.copy": {
            "dest": str(tmp_path / "facts.json"), "mode": "0600",
            "content": "{{ {'backup': etcd_backup_snapshot | default(None), "
                       "'restore': etcd_restore_snapshot_info | default(None)} | to_json }}"}},
    ]}]))  # fmt: skip
    path = os.pathsep.join(str(programs[p].parent) for p in ("etcdctl", "etcdutl")) + os.pathsep + os.environ["PATH"]
    env = {**os.environ, **ROLE_PATHS, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "PATH": path}
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(book), "-e",
                           json.dumps({"ansible_python_interpreter": sys.executable,
                                       "kubestrap_node_state_dir": str(tmp_path / "state"), **variables})],
                          capture_output=True, text=True, timeout=180, env=env)  # fmt: skip


def test_backup_tasks_snapshot_and_restore_tasks_bring_back_what_was_there(programs, tmp_path):
    data = tmp_path / "var-lib-etcd"
    etcd = Etcd(programs, data, tmp_path / "etcd.log")
    try:
        etcd.ctl("put", "/registry/configmaps/default/before", "kept")
        (tmp_path / "encryption").mkdir()
        (tmp_path / "encryption" / "config.yaml").write_text("kind: EncryptionConfiguration\n")
        archive = tmp_path / "backup" / "local-etcd-1.tar.gz"
        archive.parent.mkdir()
        etcd_pki = programs["pki"] / "etcd"
        done = _play(tmp_path, "etcd_backup", "snapshot", {
            "__etcd_backup_exec": [], "__etcd_backup_archive": str(archive), "etcd_backup_endpoint": etcd.url,
            "etcd_backup_etcd_ca": str(etcd_pki / "ca.crt"),
            "etcd_backup_etcd_cert": str(etcd_pki / "healthcheck-client.crt"),
            "etcd_backup_etcd_key": str(etcd_pki / "healthcheck-client.key"), "etcd_backup_data_dir": str(data),
            "etcd_backup_pki_dir": str(programs["pki"]),
            "etcd_backup_encryption_config": str(tmp_path / "encryption" / "config.yaml"),
        }, programs)  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:]
        etcd.ctl("put", "/registry/configmaps/default/after", "lost")
    finally:
        etcd.stop()
    facts = json.loads((tmp_path / "facts.json").read_text())["backup"]
    assert facts["totalKey"] >= 1 and facts["revision"] >= 2 and facts["archive_size"] == archive.stat().st_size
    assert archive.stat().st_mode & 0o777 == 0o600
    assert not (data / "kubestrap-snapshot.db").exists()  # removed from etcd's data directory
    with tarfile.open(archive) as opened:
        names = opened.getnames()
    assert {"etcd/snapshot.db", "encryption/config.yaml", "pki/etcd/ca.key", "pki/etcd/server.key"} <= set(names)
    assert backups.check(archive) == "archive"  # the CLI's own check accepts it

    # restore: the same archive's snapshot, unpacked as the restore role does, into a fresh data directory
    work = tmp_path / "restore"
    work.mkdir()
    with tarfile.open(archive) as opened:
        opened.extract("etcd/snapshot.db", work, filter="data")
    peer = free_port()
    member = {"name": "cp", "peer_url": f"http://127.0.0.1:{peer}", "initial_cluster": f"cp=http://127.0.0.1:{peer}"}
    restored = tmp_path / "var-lib-etcd.restored"
    done = _play(tmp_path, "etcd_restore", "data", {
        "__etcd_restore_exec": [], "__etcd_restore_file": str(work / "etcd" / "snapshot.db"), "__etcd_restore_member": member,
        "__etcd_restore_new_dir": str(restored), "etcd_restore_snapshot": str(archive), "kubestrap_secrets_dir": str(tmp_path),
        "kubestrap_admin_kubeconfig": "/nonexistent", "kubestrap_kubeadm_dir": str(tmp_path),
    }, programs)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert json.loads((tmp_path / "facts.json").read_text())["restore"]["revision"] == facts["revision"]
    again = Etcd(programs, restored, tmp_path / "etcd-restored.log")
    try:
        assert again.ctl("get", "/registry/configmaps/default/before", "--print-value-only").stdout.strip() == "kept"
        assert again.ctl("get", "/registry/configmaps/default/after", "--print-value-only").stdout.strip() == ""
    finally:
        again.stop()


def test_a_file_that_is_no_snapshot_is_refused_before_anything_changes(programs, tmp_path):
    bogus = tmp_path / "etcd" / "snapshot.db"
    bogus.parent.mkdir()
    bogus.write_bytes(b"not a bbolt database" * 100)
    with pytest.raises(backups.BadSnapshot, match="is not an etcd snapshot"):
        backups.check(bogus)
    done = _play(tmp_path, "etcd_restore", "data", {
        "__etcd_restore_exec": [], "__etcd_restore_file": str(bogus), "__etcd_restore_member": {},
        "__etcd_restore_new_dir": str(tmp_path / "new"), "etcd_restore_snapshot": str(bogus),
        "kubestrap_secrets_dir": str(tmp_path), "kubestrap_admin_kubeconfig": "/nonexistent",
        "kubestrap_kubeadm_dir": str(tmp_path),
    }, programs)  # fmt: skip
    assert done.returncode != 0
    assert "is not an etcd snapshot etcdutl can read" in done.stdout and "nothing was stopped or changed" in done.stdout
    assert not (tmp_path / "new").exists()


# stands in for crictl on the first control plane (tests/playbooks/control_plane_join.yml): `ps` finds "the etcd
# container", `exec ID etcdctl ARGS` runs the REAL etcdctl with the role's arguments, its endpoint swapped for the
# test etcd's (the role names etcd's https://127.0.0.1:2379 on a node)
CRICTL_TO_REAL_ETCDCTL = """#!/bin/sh
# Test fixture (not crictl): the etcd container's etcdctl is the real etcdctl on this machine.
case "$1" in
  ps) echo 0123abcd; exit 0 ;;
  exec) shift 3 ;;
  *) exit 3 ;;
esac
echo "etcdctl $*" >> "$RECORD"
shift  # --endpoints=https://127.0.0.1:2379
exec etcdctl --endpoints="$ETCD_URL" "$@"
"""


def test_a_control_plane_joins_etcd_member_the_reset_left_is_removed_with_the_real_etcdctl(programs, tmp_path):
    """kubeadm_join's undo of a failed control-plane join (tasks/etcd_member_remove.yml): the member the join added
    (a learner with the node's peer URL, as kubeadm adds it) is still in the REAL etcd after the reset, as in the HA
    lab's third run; the role's etcdctl calls (member list as JSON, member remove by hex ID, with the health-check
    client certificate) take it out, and the join is tried again. The first control plane's own member stays."""
    from test_ha_control_plane import _failing_join

    etcd = Etcd(programs, tmp_path / "var-lib-etcd", tmp_path / "etcd.log")
    try:
        added = json.loads(etcd.ctl("member", "add", "k8s-cp2", "--learner", "--peer-urls=https://10.0.0.12:2380",
                                    "--write-out=json").stdout)  # fmt: skip
        left = f"{added['member']['ID']:x}"
        done, _ = _failing_join(tmp_path, 1, "-e", f"kubeadm_join_certificates_dir={programs['pki']}",
                                crictl=CRICTL_TO_REAL_ETCDCTL, path=(str(programs["etcdctl"].parent),),
                                env_extra={"ETCD_URL": etcd.url}, RESET_REMOVES=0)  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:]
        calls = (tmp_path / "calls").read_text().splitlines()
        # the join (resumed once at etcd-join, in vain) is undone, the member removed, the join tried again
        assert [call.split()[0] for call in calls] == ["join", "join", "reset", "etcdctl", "etcdctl", "join"]
        assert calls[4].endswith(f"member remove {left}")
        members = json.loads(etcd.ctl("member", "list", "--write-out=json").stdout)["members"]
        assert [member["name"] for member in members] == ["cp"]  # the learner is gone, the first member stays
    finally:
        etcd.stop()
