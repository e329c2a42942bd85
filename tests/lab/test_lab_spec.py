from pathlib import Path

import pytest

from kubestrap.lab.errors import LabError
from kubestrap.lab.spec import LabSpec, VMSpec, assign_node_ips, default_vms, validate, vms_from_json


def spec(*vms, network="10.77.0.0/24"):
    return LabSpec("lab", Path("/tmp/x"), tuple(vms), network)


def test_default_lab_is_one_control_plane_and_three_workers():
    vms = default_vms("lab", 3)
    assert [v.name for v in vms] == ["lab-cp", "lab-worker1", "lab-worker2", "lab-worker3"]
    assert [v.role for v in vms] == ["control_plane", "worker", "worker", "worker"]
    assert vms[0].cpus == 2
    assert all(v.memory_mib == 2048 for v in vms)


def test_default_lab_refuses_negative_workers():
    with pytest.raises(LabError, match="--workers"):
        default_vms("lab", -1)


def test_node_ips_explicit_kept_and_others_fill_lowest_free():
    s = spec(VMSpec("a"), VMSpec("b", node_ip="10.77.0.10"), VMSpec("c"))
    assert assign_node_ips(s) == {"a": "10.77.0.11", "b": "10.77.0.10", "c": "10.77.0.12"}


def test_duplicate_node_ips_are_refused():
    with pytest.raises(LabError, match="unique"):
        assign_node_ips(spec(VMSpec("a", node_ip="10.77.0.20"), VMSpec("b", node_ip="10.77.0.20")))


def test_node_ip_outside_network_is_refused():
    with pytest.raises(LabError, match="not a host address"):
        assign_node_ips(spec(VMSpec("a", node_ip="192.168.1.5")))


@pytest.mark.parametrize("name", ["Lab_CP", "-x", "x-", "a" * 64, "with space"])
def test_invalid_hostnames_are_refused(name):
    with pytest.raises(LabError, match="not a valid hostname"):
        validate(spec(VMSpec(name)))


def test_duplicate_names_are_refused():
    with pytest.raises(LabError, match="repeated: a"):
        validate(spec(VMSpec("a"), VMSpec("a")))


def test_vms_from_molecule_platforms():
    vms = vms_from_json(
        {
            "vms": [
                {"name": "cp1", "groups": ["k8s_control_plane"], "node_ip": "10.77.0.10", "memory": "1536"},
                {"name": "w1", "groups": ["k8s_workers"], "cpus": 1, "image": "ignored"},
                {"name": "other"},
            ]
        }
    )
    assert [(v.name, v.role, v.node_ip, v.cpus, v.memory_mib) for v in vms] == [
        ("cp1", "control_plane", "10.77.0.10", 2, 1536),
        ("w1", "worker", None, 1, 2048),
        ("other", "", None, 2, 2048),
    ]
    assert vms[0].groups == ("k8s_control_plane",)


@pytest.mark.parametrize(
    "data, message",
    [
        ({}, "non-empty list 'vms'"),
        ({"vms": [{"cpus": 1}]}, "needs a name"),
        ({"vms": [{"name": "a", "memory": "lots"}]}, "memory of a must be a whole number"),
        ({"vms": [{"name": "a", "cpus": 0}]}, "cpus of a must be positive"),
    ],
)
def test_bad_spec_documents(data, message):
    with pytest.raises(LabError, match=message):
        vms_from_json(data)
