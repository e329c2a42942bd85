import ipaddress
import json
import re
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from kubestrap.lab import podnet, seed, state, vm
from kubestrap.lab.errors import LabError
from kubestrap.lab.image import Image
from kubestrap.lab.procs import ProcRecord
from kubestrap.lab.state import LabState, VMState


def test_state_round_trip(tmp_path):
    st = LabState(
        "lab",
        "10.77.0.0/24",
        "tcg",
        ProcRecord(10, 20, "/s"),
        "/inv/hosts.yml",
        [VMState("a", "worker", "10.77.0.11", 1, 2048, 2222, "m1", "m2", "u", "id", ["k8s_workers"], ProcRecord(11, 21, "/c"))],
    )
    state.save(tmp_path, st)
    assert state.load(tmp_path) == st
    state.remove(tmp_path)
    assert state.load(tmp_path) is None


def test_seed_files_match_nics_by_mac_and_carry_identity():
    files = seed.seed_files(
        seed.SeedData("node1", "ssh-ed25519 AAAA lab\n", "52:54:aa:00:00:01", "52:54:aa:00:00:02", "10.77.0.12", "10.77.0.0/24")
    )
    assert files["hostname"] == "node1\n"
    assert files["authorized_keys"] == "ssh-ed25519 AAAA lab\n"
    node = files["network/20-kubestrap-node.network"]
    assert "MACAddress=52:54:aa:00:00:02" in node and "Address=10.77.0.12/24" in node
    assert "Gateway" not in node
    assert "MACAddress=52:54:aa:00:00:01" in files["network/10-kubestrap-uplink.network"]


def test_seed_brings_the_lab_pod_network_a_range_per_node_and_routes_to_the_others():
    lab_ips = ("10.77.0.10", "10.77.0.11", "10.77.0.12")
    files = seed.seed_files(seed.SeedData("node1", "k", "52:54:aa:00:00:01", "52:54:aa:00:00:02", "10.77.0.12",
                                          "10.77.0.0/24", lab_ips))  # fmt: skip
    conf = json.loads(files[f"cni/{podnet.CONFLIST_NAME}"])
    bridge = conf["plugins"][0]
    assert conf["cniVersion"] == "1.0.0" and [p["type"] for p in conf["plugins"]] == ["bridge", "portmap"]
    assert bridge["ipam"] == {"type": "host-local", "ranges": [[{"subnet": "10.244.12.0/24"}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}  # fmt: skip
    node = files["network/20-kubestrap-node.network"]
    routes = re.findall(r"\[Route\]\nDestination=(\S+)\nGateway=(\S+)\n", node)
    assert routes == [("10.244.10.0/24", "10.77.0.10"), ("10.244.11.0/24", "10.77.0.11")]
    # every range lies in the pod CIDR the lab's cluster runs with (kubestrap's default, which the lab says again)
    default = yaml.safe_load((ROOT / "group_vars/all/cluster.yml").read_text())["cluster_pod_cidr"]
    lab = yaml.safe_load((ROOT / "inventories/lab/group_vars/k8s_cluster/lab.yml").read_text())["cluster_pod_cidr"]
    assert podnet.POD_CIDR == default == lab
    assert all(ipaddress.ip_network(podnet.pod_range("10.77.0.0/24", ip)).subnet_of(ipaddress.ip_network(lab))
               for ip in lab_ips)  # fmt: skip
    with pytest.raises(LabError, match="no /24 pod range"):
        podnet.pod_range("10.77.0.0/16", "10.77.1.10")


def cfg(accel="tcg", api_port=0):
    return vm.VMConfig(
        "node1",
        Path("/lab/vms/node1"),
        2,
        2048,
        40022,
        "52:54:aa:00:00:01",
        "52:54:aa:00:00:02",
        "11111111-2222-3333-4444-555555555555",
        "0" * 32,
        Path("/lab/switch"),
        accel,
        api_port,
    )


def test_qemu_argv_networks_stay_off_host_networks():
    argv = vm.qemu_argv(cfg(), Image(Path("/img")))
    joined = " ".join(argv)
    assert "user,id=n0,hostfwd=tcp:127.0.0.1:40022-:22" in joined
    assert "vde,id=c0,sock=/lab/switch" in joined
    assert "virtio-net-pci,netdev=c0,mac=52:54:aa:00:00:02" in joined
    assert "tap" not in joined and "bridge" not in joined
    assert "type=1,uuid=11111111-2222-3333-4444-555555555555" in joined
    assert "systemd.machine_id=" + "0" * 32 in joined
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert "-daemonize" in argv and f"file:{cfg().console_log}" in argv
    assert cfg().marker in joined  # the PID check finds its marker in the command line


def test_qemu_argv_forwards_the_api_server_port_of_a_control_plane():
    joined = " ".join(vm.qemu_argv(cfg(api_port=40443), Image(Path("/img"))))
    assert "user,id=n0,hostfwd=tcp:127.0.0.1:40022-:22,hostfwd=tcp:127.0.0.1:40443-:6443" in joined
    assert ":6443" not in " ".join(vm.qemu_argv(cfg(), Image(Path("/img"))))


def test_qemu_argv_kvm():
    argv = vm.qemu_argv(cfg("kvm"), Image(Path("/img")))
    assert argv[argv.index("-accel") + 1] == "kvm"


def test_tcg_guests_keep_time_on_the_tsc_not_the_wrapping_hpet():
    """Under TCG the guest kernel would demote the TSC and count time on the 32-bit HPET, which loses 43 s at every
    wrap a starved vCPU misses (guest clocks 44-50 s behind on a loaded host, refused by preflight's clock check)."""
    tcg = vm.qemu_argv(cfg(), Image(Path("/img")))
    assert "tsc=reliable clocksource=tsc" in tcg[tcg.index("-append") + 1]
    kvm = vm.qemu_argv(cfg(accel="kvm"), Image(Path("/img")))
    assert "tsc=" not in kvm[kvm.index("-append") + 1]  # a KVM guest has kvm-clock
