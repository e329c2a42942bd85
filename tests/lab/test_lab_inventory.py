from pathlib import Path

import yaml

from kubestrap.lab import inventory
from kubestrap.lab.state import LabState, VMState


def vm(name, role, ip, port, api_port=0):
    return VMState(name, role, ip, 1, 2048, port, "52:54:00:00:00:01", "52:54:00:00:00:02", "u", "m", api_port=api_port)


def lab_state():
    return LabState(
        "lab",
        "10.77.0.0/24",
        vms=[vm("lab-cp", "control_plane", "10.77.0.10", 40001), vm("lab-worker1", "worker", "10.77.0.11", 40002)],
    )


def test_inventory_shape_and_host_vars(tmp_path):
    key = tmp_path / "id_ed25519"
    data = yaml.safe_load(inventory.render_text(lab_state(), key))
    groups = data["all"]["children"]["k8s_cluster"]["children"]
    assert set(groups) == {"k8s_control_plane", "k8s_workers"}
    cp = groups["k8s_control_plane"]["hosts"]["lab-cp"]
    assert cp == {
        "ansible_host": "127.0.0.1",
        "ansible_port": 40001,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(key.resolve()),
        # the VMs emulate AES-NI: AES-GCM first (their sshd decrypts it fastest); OpenSSH's other ciphers stay
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                   "-o Ciphers=^aes128-gcm@openssh.com",
        "ansible_host_key_checking": False,  # the lab's VMs get new host keys on every boot
        "node_ip": "10.77.0.10",
    }
    assert groups["k8s_workers"]["hosts"]["lab-worker1"]["node_ip"] == "10.77.0.11"
    assert Path(cp["ansible_ssh_private_key_file"]).is_absolute()


def test_empty_group_still_present():
    st = lab_state()
    st.vms = st.vms[:1]
    data = yaml.safe_load(inventory.render_text(st, Path("/k")))
    assert data["all"]["children"]["k8s_cluster"]["children"]["k8s_workers"] == {"hosts": {}}


def test_write_only_when_content_changes(tmp_path):
    path = tmp_path / "inv" / "hosts.yml"
    text = inventory.render_text(lab_state(), tmp_path / "k")
    assert inventory.write(path, text) is True
    mtime = path.stat().st_mtime_ns
    assert inventory.write(path, text) is False
    assert path.stat().st_mtime_ns == mtime
    assert inventory.write(path, text + "# x\n") is True


def test_control_plane_with_forwarded_api_port_gets_a_reachable_kubeconfig_address(tmp_path):
    st = lab_state()
    st.vms[0] = vm("lab-cp", "control_plane", "10.77.0.10", 40001, api_port=40443)
    groups = yaml.safe_load(inventory.render_text(st, tmp_path / "k"))["all"]["children"]["k8s_cluster"]["children"]
    cp = groups["k8s_control_plane"]["hosts"]["lab-cp"]
    # host variables of kubeadm_init (the inventory check refuses cluster-level settings on one host)
    assert cp["kubeadm_init_controller_server_url"] == "https://127.0.0.1:40443"
    assert cp["kubeadm_init_cert_sans"] == ["127.0.0.1"]
    assert "kubeadm_init_controller_server_url" not in groups["k8s_workers"]["hosts"]["lab-worker1"]


def test_the_generated_lab_inventory_passes_the_inventory_check(tmp_path):
    """What `lab up` writes must be accepted by `bootstrap.py up`'s offline check (a cluster-level
    setting as a host variable is refused there)."""
    import shutil

    from kubestrap import validate

    root = Path(__file__).resolve().parents[2]
    st = lab_state()
    st.vms[0] = vm("lab-cp", "control_plane", "10.77.0.10", 40001, api_port=40443)
    inv = tmp_path / "lab"
    shutil.copytree(root / "inventories" / "lab" / "group_vars", inv / "group_vars")
    inventory.write(inv / "hosts.yml", inventory.render_text(st, tmp_path / "k"))
    assert list(validate.check_path(inv)) == []
