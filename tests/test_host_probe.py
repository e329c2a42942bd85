"""playbooks/library/kubestrap_host_probe.py: one module run answers a phase's read-only questions."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

from helpers import ANSIBLE, ROOT

LIBRARY = ROOT / "playbooks" / "library"
_spec = importlib.util.spec_from_file_location("kubestrap_host_probe", LIBRARY / "kubestrap_host_probe.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:19C8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000 100 0 0 10 0
   1: 0100007F:0016 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000 100 0 0 10 0
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000
"""


def test_only_listening_sockets_count_from_both_tables():
    # 0x19C8 = 6600 listens; 0x0016 = 22 is an established connection in tcp but listens in tcp6
    assert probe.listening_ports([TCP, TCP6]) == [22, 6600]


def test_a_module_loaded_or_built_in_is_not_missing_whatever_its_dashes():
    proc_modules = "overlay 151552 0 - Live 0x0\nbr_netfilter 32768 0 - Live 0x0\n"
    builtin = "kernel/drivers/md/dm-crypt.ko\nkernel/fs/nfs/nfs.ko\n"
    wanted = ["overlay", "br-netfilter", "dm_crypt", "nfs", "iscsi_tcp"]
    assert probe.missing_modules(wanted, proc_modules, builtin) == ["iscsi_tcp"]


def test_a_sysctl_key_names_its_proc_file_as_sysctl_reads_it():
    assert probe.sysctl_path("net.ipv4.ip_forward") == "/proc/sys/net/ipv4/ip_forward"
    assert probe.sysctl_path("net.ipv4.conf.eth0/100.rp_filter") == "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"


def test_memory_in_mib_from_meminfo():
    assert probe.memtotal_mb("MemTotal:        2030112 kB\nMemFree: 1 kB\n") == 1982
    assert probe.memtotal_mb("") == 0


def test_one_run_on_this_machine_reads_paths_files_ports_and_hardware(tmp_path):
    there = tmp_path / "there"
    there.write_text("abc\n")
    args = {"paths": [str(there), str(tmp_path / "absent")], "globs": [f"{tmp_path}/th*", f"{tmp_path}/none*"],
            "files": [str(there), str(tmp_path / "absent")],
            "modules": ["no_such_module_x"], "listening": True, "hardware": True,
            "sysctls": ["kernel.ostype", "net.ipv4.no_such_key_x"]}  # fmt: skip
    env = dict(os.environ, ANSIBLE_LIBRARY=str(LIBRARY), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))  # fmt: skip
    proc = subprocess.run(
        [ANSIBLE, "localhost", "-c", "local", "-e",
         f"ansible_python_interpreter={sys.executable}", "-m", "kubestrap_host_probe", "-a", json.dumps(args)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert result["changed"] is False
    assert result["present"] == [str(there)]
    assert result["matched"] == [f"{tmp_path}/th*"]
    assert result["files"] == {str(there): "abc\n", str(tmp_path / "absent"): None}
    assert result["modules_missing"] == ["no_such_module_x"]
    assert result["sysctls"] == {"kernel.ostype": "Linux", "net.ipv4.no_such_key_x": None}
    assert all(isinstance(port, int) for port in result["tcp_listening"])
    assert result["hardware"]["vcpus"] == os.cpu_count() and result["hardware"]["memtotal_mb"] > 0


def test_interfaces_from_ip_output_with_secondary_addresses_and_peer_names():
    output = ("1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
              "2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\\       valid_lft forever\n"
              "2: eth0    inet 10.0.0.11/24 scope global secondary eth0\\       valid_lft forever\n"
              "7: veth1@if6    inet 169.254.1.1/32 scope global veth1\\       valid_lft forever\n")  # fmt: skip
    macs = {"lo": "00:00:00:00:00:00", "eth0": "52:54:00:aa:bb:01", "veth1": "aa:bb:cc:dd:ee:ff"}
    assert probe.ipv4_interfaces(output, macs.get) == {
        "lo": {"mac": "00:00:00:00:00:00", "ipv4": ["127.0.0.1"]},
        "eth0": {"mac": "52:54:00:aa:bb:01", "ipv4": ["10.0.0.5", "10.0.0.11"]},
        "veth1": {"mac": "aa:bb:cc:dd:ee:ff", "ipv4": ["169.254.1.1"]},
    }
    assert probe.architecture("i686") == "i386" and probe.architecture("aarch64") == "aarch64"


def test_facts_and_interfaces_of_this_machine_as_setup_names_them(tmp_path):
    """preflight's facts replace its setup run: later phases read ansible_facts.architecture, os_family,
    distribution and distribution_version from the fact cache."""
    env = dict(os.environ, ANSIBLE_LIBRARY=str(LIBRARY), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))  # fmt: skip
    ran = {}
    for module, args in (("kubestrap_host_probe", {"facts": True, "interfaces": True}),
                         ("ansible.builtin.setup", {"gather_subset": ["!all", "!min", "distribution", "platform"]})):
        proc = subprocess.run(
            [ANSIBLE, "localhost", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", "-m", module,
             "-a", json.dumps(args)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        ran[module] = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    ours, setup = ran["kubestrap_host_probe"], ran["ansible.builtin.setup"]["ansible_facts"]
    for fact in ("distribution", "distribution_version", "distribution_major_version", "distribution_release",
                 "os_family", "architecture", "kernel", "hostname", "system"):
        assert ours["ansible_facts"][f"ansible_{fact}"] == setup[f"ansible_{fact}"], fact
    assert ours["uid"] == os.geteuid() and abs(ours["clock"] - time.time()) < 120
    assert "127.0.0.1" in ours["interfaces"]["lo"]["ipv4"]


def test_distribution_named_as_setup_names_it_from_os_release():
    debian = probe.os_release('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
                              'VERSION_CODENAME=bookworm\nID=debian\n')  # fmt: skip
    assert probe.distribution_facts(debian, "12.11\n") == {
        "distribution": "Debian", "distribution_version": "12.11", "distribution_major_version": "12",
        "distribution_minor_version": "11", "distribution_release": "bookworm", "os_family": "Debian"}  # fmt: skip
    ubuntu = probe.os_release('NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n')
    assert probe.distribution_facts(ubuntu, "trixie/sid\n") == {
        "distribution": "Ubuntu", "distribution_version": "24.04", "distribution_major_version": "24",
        "distribution_minor_version": "04", "distribution_release": "noble", "os_family": "Debian"}  # fmt: skip
    rocky = probe.distribution_facts(probe.os_release('ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n'), None)
    assert (rocky["distribution"], rocky["os_family"], rocky["distribution_major_version"]) == ("Rocky", "RedHat", "9")


# `systemctl show --property=LoadState,UnitFileState,ActiveState -- chrony.service ntp.service swap.target` as systemd
# 252 (Debian 12) prints it: one block per unit in the given order, its properties in systemd's own order
SHOW = """LoadState=loaded
ActiveState=active
UnitFileState=enabled

LoadState=not-found
ActiveState=inactive
UnitFileState=

LoadState=masked
ActiveState=inactive
UnitFileState=masked
"""
# `systemctl list-units --all --type=swap,target --output=json` (a few of its entries)
LISTED = [{"unit": "dev-vda3.swap", "load": "loaded", "active": "inactive", "sub": "dead", "description": "/dev/vda3"},
          {"unit": "swap.target", "load": "masked", "active": "inactive", "sub": "dead", "description": "swap.target"}]


def test_unit_states_from_systemctl_show_in_the_given_order():
    names = ["chrony.service", "ntp.service", "swap.target"]
    assert probe.unit_states(names, SHOW) == {
        "chrony.service": {"load": "loaded", "file": "enabled", "active": "active"},
        "ntp.service": {"load": "not-found", "file": "", "active": "inactive"},
        "swap.target": {"load": "masked", "file": "masked", "active": "inactive"}}
    # systemctl said nothing (no systemd, no bus): nothing is taken for loaded
    assert probe.unit_states(["chrony.service"], "") == {"chrony.service": {"load": "unknown", "file": "", "active": ""}}


def test_one_run_asks_systemctl_once_for_the_units_and_once_for_the_unit_types(tmp_path, monkeypatch):
    """probe() with a script standing in for systemctl (this machine runs no systemd): the arguments it was given
    and what the module returns from its output."""
    calls = tmp_path / "calls"
    systemctl = tmp_path / "systemctl"
    systemctl.write_text("#!/bin/sh\n# Test fixture (not systemctl): records its arguments, prints systemd 252's output.\n"
                         f'echo "$*" >> {calls}\n'
                         f"case \"$2\" in show) printf '%s' '{SHOW}' ;; list-units) echo '{json.dumps(LISTED)}' ;; esac\n")
    systemctl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    options = {name: spec["default"] for name, spec in probe.OPTIONS.items()}
    got = probe.probe({**options, "units": ["chrony.service", "ntp.service", "swap.target"],
                       "unit_types": ["swap", "target"]})  # fmt: skip
    assert calls.read_text().splitlines() == [
        "--no-pager show --property=LoadState,UnitFileState,ActiveState -- chrony.service ntp.service swap.target",
        "--no-pager list-units --all --type=swap,target --output=json"]
    assert got["units"]["swap.target"]["load"] == "masked" and got["units"]["chrony.service"]["load"] == "loaded"
    assert got["unit_list"] == LISTED
    calls.write_text("")
    none = probe.probe(options)  # nothing asked: systemctl is not run
    assert (none["units"], none["unit_list"], calls.read_text()) == ({}, [], "")


def test_installed_packages_from_dpkg_query_output():
    listed = "containerd installed\nrunc config-files\ncontainerd.io not-installed\n"
    assert probe.installed_packages(["containerd.io", "runc", "containerd", "docker.io"], listed) == ["containerd"]


def test_one_run_asks_this_machines_real_dpkg_for_the_packages():
    """This machine is a Debian: its dpkg-query has dpkg installed and knows no package of a made-up name."""
    options = {name: spec["default"] for name, spec in probe.OPTIONS.items()}
    got = probe.probe({**options, "packages": ["no-such-package-kubestrap", "dpkg"]})
    assert got["packages_installed"] == ["dpkg"]
