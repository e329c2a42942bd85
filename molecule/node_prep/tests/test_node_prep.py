"""node_prep on lab VMs, checked after a reboot (side_effect): the state must persist."""

import pytest

MODULES = ["overlay", "br_netfilter", "iscsi_tcp", "dm_crypt", "nfs"]
SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
    "fs.inotify.max_user_watches": 524288,
    # what the kubelet's protectKernelDefaults requires
    "vm.overcommit_memory": 1,
    "vm.panic_on_oom": 0,
    "kernel.panic": 10,
    "kernel.panic_on_oops": 1,
    "kernel.keys.root_maxkeys": 1000000,
    "kernel.keys.root_maxbytes": 25000000,
}
NODES = {"cp1": "10.77.0.10", "w1": "10.77.0.11"}


def test_swap_is_off_after_reboot(host):
    swaps = host.file("/proc/swaps").content_string.strip().splitlines()
    assert len(swaps) == 1, swaps  # only the header line
    fstab = host.file("/etc/fstab").content_string
    assert "# kubestrap: swap off for kubelet: /swapfile none swap sw 0 0" in fstab
    assert host.run("systemctl is-enabled swap.target").stdout.strip() == "masked"


@pytest.mark.parametrize("module", MODULES)
def test_module_loaded_after_reboot(host, module):
    loaded = {line.split()[0] for line in host.file("/proc/modules").content_string.splitlines()}
    release = host.run("uname -r").stdout.strip()
    builtin = host.run(f"cat /lib/modules/{release}/modules.builtin").stdout
    assert module in loaded or f"/{module}.ko" in builtin
    assert module in host.file("/etc/modules-load.d/kubestrap.conf").content_string.split()


@pytest.mark.parametrize(("name", "value"), SYSCTLS.items())
def test_sysctl_live_after_reboot(host, name, value):
    with host.sudo():
        assert host.sysctl(name) == value
    assert f"{name}={value}" in host.file("/etc/sysctl.d/90-kubestrap.conf").content_string.replace(" ", "")


@pytest.mark.parametrize("package", ["conntrack", "socat", "ebtables", "open-iscsi", "nfs-common", "cryptsetup", "dmsetup"])
def test_package_installed(host, package):
    assert host.package(package).is_installed


def test_iscsid_running_and_enabled(host):
    iscsid = host.service("iscsid")
    assert iscsid.is_running
    assert iscsid.is_enabled


def test_time_sync_running(host):
    timesyncd = host.service("systemd-timesyncd")
    assert timesyncd.is_running
    assert timesyncd.is_enabled


def test_hostname_and_hosts_file(host):
    name = host.backend.get_hostname()
    assert host.run("hostname").stdout.strip() == name
    # /etc/hosts as node_prep left it (snapshot taken by side_effect right before the reboot,
    # because the lab's seed service rewrites /etc/hosts at boot)
    hosts = host.file("/root/hosts.before-reboot").content_string
    for node, ip in NODES.items():
        assert f"{ip} {node}" in hosts.splitlines()
    assert f"127.0.1.1 {name}" not in hosts
    # every node's name resolved to its cluster address
    resolved = dict(line.split()[::-1][:2] for line in host.file("/root/getent.before-reboot").content_string.splitlines())
    assert resolved == {node: ip for node, ip in NODES.items()}


def test_multipathd_keeps_off_longhorn_devices(host):
    if host.backend.get_hostname() != "w1":
        assert not host.file("/etc/multipath.conf").exists
        return
    conf = host.file("/etc/multipath.conf").content_string
    assert 'devnode "^sd[a-z0-9]+"' in conf
    with host.sudo():
        shown = host.run("multipathd show config").stdout
    assert "^sd[a-z0-9]+" in shown
