"""node_prep decides from its one probe run (kubestrap_host_probe in tasks/main.yml) which tasks have work:
the hostname already set, a swap entry left in /etc/fstab, an /etc/hosts read whole (its edits:
tests/test_node_prep_etc_hosts.py), sysctls whose live value differs (roles/node_prep/vars).
Each decision is evaluated by Ansible with the role's own expressions; the fstab edit runs the role's pattern."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import ANSIBLE_PLAYBOOK, ROOT

ROLE = ROOT / "roles" / "node_prep"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
FSTAB = """# /etc/fstab
UUID=1234 / ext4 errors=remount-ro 0 1
/swapfile none swap sw 0 0
# /dev/sdb1 none swap sw 0 0
"""


def _play(tmp: Path, tasks: list[dict], extra: dict) -> dict:
    """Run *tasks* on localhost with the role's defaults and vars and *extra*; task name -> its result."""
    play = [{"name": "Decide", "hosts": "localhost", "gather_facts": False,
             "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")], "tasks": tasks}]  # fmt: skip
    (tmp / "play.yml").write_text(json.dumps(play))
    (tmp / "extra.json").write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra}))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOCALHOST_WARNING="false")
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-c", "local", "-i", "localhost,", "-e", f"@{tmp / 'extra.json'}", str(tmp / "play.yml")],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return {t["task"]["name"]: t["hosts"]["localhost"] for t in json.loads(proc.stdout)["plays"][0]["tasks"]}


def _decisions(tmp: Path, files: dict, sysctls: dict) -> dict:
    shown = ["__node_prep_hostname_set", "__node_prep_fstab_has_swap", "__node_prep_hosts_read",
             "__node_prep_sysctls_live", "__node_prep_sysctls_wanted"]
    tasks = [{"name": name, "ansible.builtin.debug": {"msg": "{{ " + name + " }}"}} for name in shown]
    probe = {"files": {"/proc/swaps": None, "/etc/fstab": None, "/etc/hostname": None, "/proc/sys/kernel/hostname": None,
                       "/etc/hosts": None, **files}, "sysctls": sysctls}  # fmt: skip
    results = _play(tmp, tasks, {"node_prep_probe": probe, "inventory_hostname": "node1"})
    return {name: results[name]["msg"] for name in shown}


def _live(**changes: str | None) -> dict:
    wanted = {**DEFAULTS["node_prep_sysctls"]}
    return {key: (changes[key] if key in changes else str(value)) for key, value in wanted.items()}


def test_a_node_already_named_and_tuned_has_nothing_to_do(tmp_path):
    got = _decisions(tmp_path, {"/etc/hostname": "node1\n", "/proc/sys/kernel/hostname": "node1\n",
                                "/etc/fstab": FSTAB.replace("/swapfile", "# /swapfile"),
                                "/etc/hosts": "127.0.0.1 localhost\n127.0.1.1 node10\n"}, _live())  # fmt: skip
    assert got["__node_prep_hostname_set"] is True
    assert got["__node_prep_fstab_has_swap"] is False
    assert got["__node_prep_hosts_read"] is True
    assert got["__node_prep_sysctls_live"] == got["__node_prep_sysctls_wanted"]


def test_a_fresh_node_has_work_in_each(tmp_path):
    key = next(iter(DEFAULTS["node_prep_sysctls"]))
    got = _decisions(tmp_path, {"/etc/hostname": "debian\n", "/proc/sys/kernel/hostname": "node1\n", "/etc/fstab": FSTAB,
                                "/etc/hosts": "127.0.0.1 localhost\n127.0.1.1\tnode1 node1.lab\n"},
                     _live(**{key: "-1"}))  # fmt: skip
    assert got["__node_prep_hostname_set"] is False  # the static name differs
    assert got["__node_prep_fstab_has_swap"] is True
    assert got["__node_prep_sysctls_live"] != got["__node_prep_sysctls_wanted"]


def test_unreadable_files_and_missing_sysctl_keys_count_as_work(tmp_path):
    key = next(iter(DEFAULTS["node_prep_sysctls"]))
    got = _decisions(tmp_path, {}, _live(**{key: None}))
    assert got["__node_prep_hostname_set"] is False
    assert got["__node_prep_fstab_has_swap"] is True and got["__node_prep_hosts_read"] is False
    assert got["__node_prep_sysctls_live"] != got["__node_prep_sysctls_wanted"]


def test_multi_value_sysctls_compare_as_sysctl_prints_them(tmp_path):
    """`sysctl -n` and /proc/sys separate values with a tab; the settings with spaces: the same values."""
    extra = {"node_prep_sysctls_extra": {"net.ipv4.ping_group_range": "0 2147483647"}}
    tasks = [{"name": "same", "ansible.builtin.debug": {"msg": "{{ __node_prep_sysctls_live == __node_prep_sysctls_wanted }}"}}]
    live = {**_live(), "net.ipv4.ping_group_range": "0\t2147483647"}
    probe = {"files": {}, "sysctls": live}
    assert _play(tmp_path, tasks, {**extra, "node_prep_probe": probe})["same"]["msg"] is True


def test_the_fstab_edit_comments_out_exactly_the_swap_entries_the_probe_saw(tmp_path):
    fstab = tmp_path / "fstab"
    fstab.write_text(FSTAB)
    swap = yaml.safe_load((ROLE / "tasks" / "swap.yml").read_text())
    edit = next(t for t in swap if "ansible.builtin.replace" in t)
    assert edit["when"] == "__node_prep_fstab_has_swap | bool"
    task = {"name": "edit", "ansible.builtin.replace": {**edit["ansible.builtin.replace"], "path": str(fstab)}}
    assert _play(tmp_path, [task], {"node_prep_probe": {"files": {}, "sysctls": {}}})["edit"]["changed"] is True
    assert fstab.read_text() == FSTAB.replace(
        "/swapfile none swap sw 0 0", "# kubestrap: swap off for kubelet: /swapfile none swap sw 0 0")
    got = _decisions(tmp_path, {"/etc/fstab": fstab.read_text()}, _live())
    assert got["__node_prep_fstab_has_swap"] is False  # the next run has nothing to edit


def test_nfs_common_joins_the_one_apt_run_only_while_the_nfs_addon_is_on(tmp_path):
    """The NFS CSI driver's package is folded into the existing package install (no task of its own, no module run
    while the add-on is off), once even when Longhorn wants it too."""
    tasks = [{"name": "packages", "ansible.builtin.debug": {"msg": "{{ __node_prep_packages }}"}},
             {"name": "recorded", "ansible.builtin.debug": {"msg": "{{ __node_prep_state.packages }}"}}]
    probe = {"units": {"chrony.service": {"load": "loaded", "file": "enabled", "active": "active"}}}
    base = DEFAULTS["node_prep_packages"]
    got = {}
    for name, flags in {"off": {"longhorn": False, "nfs_csi": False}, "nfs": {"longhorn": False, "nfs_csi": True},
                        "both": {"longhorn": True, "nfs_csi": True}}.items():  # fmt: skip
        results = _play(tmp_path, tasks, {"addons_enabled": flags, "node_prep_probe": probe})
        assert results["packages"]["msg"] == results["recorded"]["msg"]
        got[name] = results["packages"]["msg"]
    assert got["off"] == base
    assert got["nfs"] == [*base, "nfs-common"]
    assert got["both"] == [*base, *DEFAULTS["node_prep_longhorn_packages"]]
    assert got["both"].count("nfs-common") == 1


def test_the_swap_units_to_mask_come_from_the_probes_list(tmp_path):
    """swap.yml masks, in one `systemctl mask`, the swap units and swap.target the probe listed unmasked (and
    swap.target when systemd does not list it): no listing task of its own, one module run fewer on every node."""
    swap = yaml.safe_load((ROLE / "tasks" / "swap.yml").read_text())
    mask = next(t for t in swap if t["name"].startswith("Mask swap units"))
    assert [t["name"] for t in swap if "systemctl" in str(t) and t is not mask] == []
    shown = {"name": "argv", "ansible.builtin.debug": {"msg": mask["ansible.builtin.command"]["argv"]},
             "vars": mask["vars"], "when": mask["when"]}
    units = [{"unit": "dev-vda3.swap", "load": "loaded", "active": "active", "sub": "active"},
             {"unit": "swapfile.swap", "load": "masked", "active": "inactive", "sub": "dead"},
             {"unit": "swap.target", "load": "loaded", "active": "active", "sub": "active"},
             {"unit": "network.target", "load": "loaded", "active": "active", "sub": "active"}]
    probe = {"files": {}, "sysctls": {}, "unit_list": units}
    assert _play(tmp_path, [shown], {"node_prep_probe": probe})["argv"]["msg"] == [
        "systemctl", "mask", "--", "dev-vda3.swap", "swap.target"]
    done = [{**u, "load": "masked"} if u["unit"] != "network.target" else u for u in units]
    assert _play(tmp_path, [shown], {"node_prep_probe": {**probe, "unit_list": done}})["argv"].get("skipped") is True
    assert _play(tmp_path, [shown], {"node_prep_probe": {**probe, "unit_list": []}})["argv"]["msg"] == [
        "systemctl", "mask", "--", "swap.target"]
