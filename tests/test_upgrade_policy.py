"""The upgrade policy (issue 21 item 2): kubestrap/upgrade.py decides from the versions the cluster reports and the pin
whether and in which order an upgrade runs, or refuses with what to do (the Kubernetes version skew policy)."""

from __future__ import annotations

import pytest

from kubestrap import upgrade
from kubestrap.upgrade import APPLY, CONTROL_PLANE, NODE, RUNTIME, WORKER, Node, Refused, Version


def cluster(cp: str = "1.35.4", *workers: str, cps: tuple[str, ...] = ()) -> list[Node]:
    nodes = [Node("cp1", CONTROL_PLANE, cp)]
    nodes += [Node(f"cp{i}", CONTROL_PLANE, v) for i, v in enumerate(cps, start=2)]
    nodes += [Node(f"w{i}", WORKER, v) for i, v in enumerate(workers, start=1)]
    return nodes


def rows(plan: upgrade.Plan) -> list[tuple[int, str, tuple[str, ...], tuple[str, ...], str]]:
    return [(s.number, s.action, s.nodes, s.versions_from, s.version_to) for s in plan.steps]


@pytest.mark.parametrize(("text", "parsed"), [
    ("v1.36.3", Version(1, 36, 3)), ("1.36.3", Version(1, 36, 3)), (" v1.35.0\n", Version(1, 35, 0)),
    ("v1.36.0-rc.1", Version(1, 36, 0)), ("v1.36.4+vendor.2", Version(1, 36, 4)),
])  # fmt: skip
def test_versions_are_read_as_the_cluster_writes_them(text, parsed):
    assert Version.parse(text, "x") == parsed


@pytest.mark.parametrize("text", ["", "v1.36", "latest", "1.x.3", "v1.36.3.1"])
def test_an_unreadable_version_is_refused_naming_who_reported_it(text):
    with pytest.raises(Refused, match="node w9's kubelet reports version"):
        upgrade.plan("1.35.0", [*cluster("1.35.0"), Node("w9", WORKER, text)], "1.36.4")


def test_a_minor_upgrade_orders_first_control_plane_then_workers_one_at_a_time():
    plan = upgrade.plan("v1.35.4", cluster("v1.35.4", "v1.35.4", "v1.35.2", "v1.35.4"), "1.36.4")
    assert rows(plan) == [
        (1, APPLY, ("cp1",), ("1.35.4",), "1.36.4"),
        (2, NODE, ("w1",), ("1.35.4",), "1.36.4"),
        (3, NODE, ("w2",), ("1.35.2",), "1.36.4"),
        (4, NODE, ("w3",), ("1.35.4",), "1.36.4"),
    ]
    assert plan.current == [] and plan.pending == ["cp1", "w1", "w2", "w3"] and not plan.nothing_to_do
    assert [s.role for s in plan.steps] == [CONTROL_PLANE, WORKER, WORKER, WORKER]


@pytest.mark.parametrize(("size", "batches"), [
    (1, [("w1",), ("w2",), ("w3",), ("w4",), ("w5",)]),
    (2, [("w1", "w2"), ("w3", "w4"), ("w5",)]),
    (3, [("w1", "w2", "w3"), ("w4", "w5")]),
    (5, [("w1", "w2", "w3", "w4", "w5")]),
    (9, [("w1", "w2", "w3", "w4", "w5")]),
])  # fmt: skip
def test_workers_go_in_batches_of_the_given_size(size, batches):
    plan = upgrade.plan("1.35.4", cluster("1.35.4", *["1.35.4"] * 5), "1.36.4", batch_size=size)
    assert [s.nodes for s in plan.steps[1:]] == batches
    assert all(s.action == NODE for s in plan.steps[1:])


@pytest.mark.parametrize("size", [0, -1])
def test_a_batch_size_under_one_is_refused(size):
    with pytest.raises(Refused, match="batches of at least 1"):
        upgrade.plan("1.35.4", cluster("1.35.4", "1.35.4"), "1.36.4", batch_size=size)


def test_other_control_planes_follow_the_first_one_at_a_time_before_any_worker():
    plan = upgrade.plan("1.35.4", cluster("1.35.4", "1.35.4", "1.35.4", cps=("1.35.4", "1.35.3")), "1.36.4", batch_size=2)
    assert rows(plan) == [
        (1, APPLY, ("cp1",), ("1.35.4",), "1.36.4"),
        (2, NODE, ("cp2",), ("1.35.4",), "1.36.4"),
        (3, NODE, ("cp3",), ("1.35.3",), "1.36.4"),
        (4, NODE, ("w1", "w2"), ("1.35.4",), "1.36.4"),
    ]


def test_the_named_first_control_plane_runs_apply():
    plan = upgrade.plan("1.35.4", cluster("1.35.4", cps=("1.35.4",)), "1.36.4", first_control_plane="cp2")
    assert [(s.action, s.nodes) for s in plan.steps] == [(APPLY, ("cp2",)), (NODE, ("cp1",))]
    with pytest.raises(Refused, match="first control-plane node cp9 is not registered"):
        upgrade.plan("1.35.4", cluster("1.35.4"), "1.36.4", first_control_plane="cp9")


def test_a_patch_upgrade_is_planned_like_a_minor_one():
    plan = upgrade.plan("1.36.3", cluster("1.36.3", "1.36.3"), "1.36.4")
    assert rows(plan) == [(1, APPLY, ("cp1",), ("1.36.3",), "1.36.4"), (2, NODE, ("w1",), ("1.36.3",), "1.36.4")]


def test_apply_shows_both_the_api_server_and_the_kubelet_it_starts_from():
    plan = upgrade.plan("1.35.4", cluster("1.35.1", "1.35.4"), "1.36.4")
    assert plan.steps[0].versions_from == ("1.35.1", "1.35.4")


def test_a_cluster_at_the_target_has_nothing_to_do_and_is_no_error():
    plan = upgrade.plan("v1.36.4", cluster("v1.36.4", "v1.36.4", "v1.36.4"), "1.36.4")
    assert plan.nothing_to_do and plan.steps == [] and plan.current == ["cp1", "w1", "w2"]
    assert plan.as_dict()["nothing_to_do"] is True


def test_a_rerun_resumes_skipping_the_nodes_already_at_the_target():
    """The first control plane and w1 were upgraded, w2 stopped the run: the next run starts at w2."""
    plan = upgrade.plan("1.36.4", cluster("1.36.4", "1.36.4", "1.35.4", "1.35.4"), "1.36.4", batch_size=2)
    assert rows(plan) == [(1, NODE, ("w2", "w3"), ("1.35.4",), "1.36.4")]
    assert plan.current == ["cp1", "w1"]


def test_an_api_server_at_the_target_with_its_kubelet_behind_gets_upgrade_node():
    """A run stopped between `kubeadm upgrade apply` and the first control plane's kubelet."""
    plan = upgrade.plan("1.36.4", cluster("1.35.4", "1.35.4"), "1.36.4")
    assert rows(plan) == [(1, NODE, ("cp1",), ("1.35.4",), "1.36.4"), (2, NODE, ("w1",), ("1.35.4",), "1.36.4")]
    assert plan.current == []


def test_the_first_control_plane_is_not_current_while_its_api_server_is_behind():
    plan = upgrade.plan("1.35.4", cluster("1.36.4", "1.36.4"), "1.36.4")
    assert rows(plan) == [(1, APPLY, ("cp1",), ("1.35.4", "1.36.4"), "1.36.4")]
    assert plan.current == ["w1"]
    assert any("newer than the API server 1.35.4" in note for note in plan.notes)


@pytest.mark.parametrize(("running", "target"), [("1.36.4", "1.36.3"), ("1.36.0", "1.35.9"), ("1.36.4", "1.30.0")])
def test_a_downgrade_is_refused(running, target):
    with pytest.raises(Refused, match=f"pinned version {target} is older than the running API server {running}.*does not "
                                      f"downgrade.*pin {running} or newer"):
        upgrade.plan(running, cluster(running), target)


@pytest.mark.parametrize(("running", "target", "skipped", "first"), [
    ("1.34.2", "1.36.4", "1.35", "1.35"),
    ("1.33.0", "1.36.0", "1.34, 1.35", "1.34"),
])  # fmt: skip
def test_skipping_a_minor_is_refused_naming_the_minor_to_pin_first(running, target, skipped, first):
    with pytest.raises(Refused) as refused:
        upgrade.plan(running, cluster(running), target)
    message = str(refused.value)
    assert f"skips minor version(s) {skipped}" in message
    assert f"Pin the newest {first}.x first" in message and "bootstrap.py upgrade" in message


def test_another_major_version_is_refused():
    with pytest.raises(Refused, match="another major version"):
        upgrade.plan("1.36.4", cluster("1.36.4"), "2.0.0")


@pytest.mark.parametrize(("kubelet", "allowed"), [
    ("1.35.0", True), ("1.34.9", True), ("1.33.0", True),  # 1, 2 and 3 minors behind a 1.36 API server
    ("1.32.9", False),  # 4 behind: outside the policy once the API server is at 1.36
])  # fmt: skip
def test_a_kubelet_left_too_far_behind_the_new_api_server_is_refused(kubelet, allowed):
    nodes = [*cluster("1.35.4", "1.35.4"), Node("old", WORKER, kubelet)]
    if allowed:
        assert upgrade.plan("1.35.4", nodes, "1.36.4").pending[-1] == "old"
        return
    with pytest.raises(Refused) as refused:
        upgrade.plan("1.35.4", nodes, "1.36.4")
    message = str(refused.value)
    assert "old (kubelet 1.32.9)" in message and "supports kubelets from 1.33 on" in message
    assert "pin 1.35.4 (the running version) and run `bootstrap.py upgrade`, then pin 1.36.4" in message


def test_kubelets_older_than_1_25_may_trail_by_two_minors_only():
    assert upgrade.oldest_supported_kubelet(Version(1, 36, 0)) == 33
    assert upgrade.oldest_supported_kubelet(Version(1, 27, 0)) == 25  # 1.24 would be 3 behind: only 2 allowed below 1.25
    assert upgrade.oldest_supported_kubelet(Version(1, 26, 0)) == 24
    upgrade.plan("1.25.9", [*cluster("1.25.9"), Node("w", WORKER, "1.24.0")], "1.26.0")  # 2 behind 1.26: allowed
    with pytest.raises(Refused, match=r"w \(kubelet 1.24.0\)"):
        upgrade.plan("1.26.9", [*cluster("1.26.9"), Node("w", WORKER, "1.24.0")], "1.27.0")  # 3 behind, < 1.25: no


def test_a_kubelet_newer_than_the_pin_is_refused():
    with pytest.raises(Refused, match=r"w1 \(kubelet 1.37.0\) run\(s\) a kubelet newer than the pinned 1.36.4.*does not "
                                      "downgrade"):
        upgrade.plan("1.36.4", cluster("1.36.4", "1.37.0"), "1.36.4")


def test_a_node_that_is_not_ready_stops_the_upgrade_until_it_is_back():
    nodes = [Node("cp1", CONTROL_PLANE, "1.36.4"), Node("w1", WORKER, "1.36.4", ready=False), Node("w2", WORKER, "1.35.4")]
    with pytest.raises(Refused, match=r"w1 is NotReady: an upgrade stops at a node that does not come back.*journalctl -u "
                                      "kubelet.*run the upgrade again"):
        upgrade.plan("1.36.4", nodes, "1.36.4")


def test_nodes_outside_the_inventory_are_not_upgraded_but_must_stay_within_the_skew():
    outside = Node("foreign", WORKER, "1.35.0", ready=False, managed=False)
    plan = upgrade.plan("1.35.4", [*cluster("1.35.4", "1.35.4"), outside], "1.36.4")
    assert plan.pending == ["cp1", "w1"] and "foreign" not in plan.current
    assert any("foreign is registered in the cluster but not in the inventory" in n and "NotReady" in n for n in plan.notes)
    with pytest.raises(Refused, match=r"foreign \(kubelet 1.32.0\).*by hand.*not in the inventory"):
        upgrade.plan("1.35.4", [*cluster("1.35.4"), Node("foreign", WORKER, "1.32.0", managed=False)], "1.36.4")
    with pytest.raises(Refused, match=r"foreign \(not in the inventory\).*newer than the pinned 1.35.9"):
        upgrade.plan("1.35.4", [*cluster("1.35.4"), Node("foreign", WORKER, "1.36.0", managed=False)], "1.35.9")


def test_a_cluster_without_an_inventory_control_plane_is_refused():
    with pytest.raises(Refused, match="no control-plane node of the inventory is registered"):
        upgrade.plan("1.35.4", [Node("w1", WORKER, "1.35.4")], "1.36.4")


def test_the_plan_as_json():
    plan = upgrade.plan("1.35.4", cluster("1.35.4", "1.36.4", "1.35.4"), "1.36.4")
    assert plan.as_dict() == {
        "apiserver": "1.35.4", "target": "1.36.4", "pending": ["cp1", "w2"], "current": ["w1"], "notes": [
            "w1's kubelet 1.36.4 is newer than the API server 1.35.4 (outside the skew policy): the first step brings "
            "the API server to the pin"],
        "nothing_to_do": False, "runtime": "", "steps": [
            {"step": 1, "action": APPLY, "nodes": ["cp1"], "role": CONTROL_PLANE, "from": ["1.35.4"], "to": "1.36.4",
             "runtime_nodes": [], "runtime_from": [], "runtime_to": ""},
            {"step": 2, "action": NODE, "nodes": ["w2"], "role": WORKER, "from": ["1.35.4"], "to": "1.36.4",
             "runtime_nodes": [], "runtime_from": [], "runtime_to": ""}],
    }  # fmt: skip


def test_the_report_reads_what_kubectl_prints():
    version = {"clientVersion": {"gitVersion": "v1.36.4"}, "serverVersion": {"gitVersion": "v1.35.4", "minor": "35"}}
    nodes = {"items": [
        {"metadata": {"name": "cp1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
         "status": {"nodeInfo": {"kubeletVersion": "v1.35.4", "containerRuntimeVersion": "containerd://2.3.4"},
                    "conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "w1"}, "spec": {"unschedulable": True},
         "status": {"nodeInfo": {"kubeletVersion": "v1.35.2"}, "conditions": [{"type": "Ready", "status": "Unknown"}]}},
    ]}  # fmt: skip
    assert upgrade.report(version, nodes) == {"apiserver": "v1.35.4", "nodes": [
        {"name": "cp1", "kubelet": "v1.35.4", "runtime": "containerd://2.3.4", "ready": True, "control_plane": True,
         "schedulable": True},
        {"name": "w1", "kubelet": "v1.35.2", "runtime": "", "ready": False, "control_plane": False,
         "schedulable": False}]}  # fmt: skip
    assert upgrade.report({}, {}) == {"apiserver": "", "nodes": []}


PINS = {name: {"version": "1.36.4"} for name in ("kubeadm", "kubelet", "kubectl")}


def test_the_target_is_the_one_pin_of_kubeadm_kubelet_and_kubectl():
    assert upgrade.pinned_target(PINS) == "1.36.4"
    with pytest.raises(Refused, match=r"pins kubeadm 1\.36\.4, kubelet 1\.36\.3, kubectl 1\.36\.4: an upgrade needs one version"):
        upgrade.pinned_target({**PINS, "kubelet": {"version": "1.36.3"}})
    with pytest.raises(Refused, match=r"kubectl \(none\)"):
        upgrade.pinned_target({k: v for k, v in PINS.items() if k != "kubectl"})


def test_the_inventory_gives_order_roles_and_what_is_managed():
    reported = {"apiserver": "v1.35.4", "nodes": [
        {"name": "zz", "kubelet": "v1.35.4", "ready": True, "control_plane": True},
        {"name": "w2", "kubelet": "v1.35.4", "ready": True, "control_plane": False, "schedulable": False},
        {"name": "w1", "kubelet": "v1.35.4", "ready": True, "control_plane": False},
        {"name": "cp1", "kubelet": "v1.35.4", "ready": True, "control_plane": False}]}  # fmt: skip
    nodes = upgrade.nodes_of(reported, ["cp1"], ["w1", "w2", "w3"])
    assert [(n.name, n.role, n.managed) for n in nodes] == [
        ("cp1", CONTROL_PLANE, True), ("w1", WORKER, True), ("w2", WORKER, True), ("zz", CONTROL_PLANE, False)]
    plan = upgrade.plan_cluster(reported, ["cp1"], ["w1", "w2", "w3"], PINS, batch_size=2)
    assert [s.nodes for s in plan.steps] == [("cp1",), ("w1", "w2")]
    assert any("w3 is in the inventory but not registered" in n for n in plan.notes)
    assert any("w2 is cordoned" in n and "kubectl uncordon w2" in n for n in plan.notes)
    with pytest.raises(Refused, match="API server did not report its version"):
        upgrade.plan_cluster({"nodes": []}, ["cp1"], [], PINS)


def test_node_at_wants_ready_and_the_target_kubelet():
    node = {"status": {"nodeInfo": {"kubeletVersion": "v1.36.4"}, "conditions": [{"type": "Ready", "status": "True"}]}}
    assert upgrade.node_at(node, "1.36.4")
    assert not upgrade.node_at(node, "1.36.5")
    assert not upgrade.node_at({"status": {**node["status"], "conditions": [{"type": "Ready", "status": "False"}]}}, "1.36.4")
    assert not upgrade.node_at({}, "1.36.4")


# --- containerd, upgraded the same way (issue 21: "containerd upgrades the same way") ---
CTR = "2.3.4"  # the containerd pin of these tests


def runtimes(kubelet: str, **containerd: str) -> list[Node]:
    """cp1, cp2, w1, w2, w3 with their kubelets at *kubelet*; containerd at CTR unless given (`w2="2.2.1"`)."""
    names = [("cp1", CONTROL_PLANE), ("cp2", CONTROL_PLANE), ("w1", WORKER), ("w2", WORKER), ("w3", WORKER)]
    return [Node(name, role, kubelet, runtime=f"containerd://{containerd.get(name, CTR)}") for name, role in names]


def runtime_rows(plan: upgrade.Plan) -> list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], str]]:
    return [(s.action, s.nodes, s.runtime_nodes, s.runtime_from, s.runtime_to) for s in plan.steps]


def test_nodes_with_the_kubelet_at_the_target_and_an_old_containerd_get_a_runtime_step_in_the_same_order():
    plan = upgrade.plan("1.36.4", runtimes("1.36.4", cp1="2.2.1", cp2="v2.3.0", w1="2.2.1", w3="2.3.3"), "1.36.4",
                        batch_size=2, runtime=CTR)
    assert runtime_rows(plan) == [
        (RUNTIME, ("cp1",), ("cp1",), ("2.2.1",), CTR),  # the first control plane, then the others one at a time
        (RUNTIME, ("cp2",), ("cp2",), ("2.3.0",), CTR),
        (RUNTIME, ("w1", "w3"), ("w1", "w3"), ("2.2.1", "2.3.3"), CTR),  # workers in batches; w2 is at the pins
    ]
    assert [s.role for s in plan.steps] == [CONTROL_PLANE, CONTROL_PLANE, WORKER]
    assert plan.current == ["w2"] and plan.pending == ["cp1", "cp2", "w1", "w3"] and plan.runtime == CTR
    assert all(s.versions_from == ("1.36.4",) and s.version_to == "1.36.4" for s in plan.steps)


def test_a_node_that_gets_a_kubelet_step_replaces_containerd_in_the_same_drained_window():
    plan = upgrade.plan("1.35.4", runtimes("1.35.4", cp1="2.2.1", w1="2.2.1"), "1.36.4", runtime=CTR)
    assert runtime_rows(plan) == [
        (APPLY, ("cp1",), ("cp1",), ("2.2.1",), CTR),
        (NODE, ("cp2",), (), (), ""),  # containerd already at the pin: the kubelet only
        (NODE, ("w1",), ("w1",), ("2.2.1",), CTR),
        (NODE, ("w2",), (), (), ""),
        (NODE, ("w3",), (), (), ""),
    ]
    assert plan.steps[0].as_dict()["runtime_nodes"] == ["cp1"] and plan.steps[0].as_dict()["runtime_to"] == CTR


def test_a_worker_batch_is_one_step_in_the_inventory_order_whatever_each_member_needs():
    """The workers' play runs a batch at once (its serial): a batch with a kubelet to upgrade is a `kubeadm upgrade node`
    step for all its members, the ones whose containerd is behind named in runtime_nodes."""
    plan = upgrade.plan("1.36.4", [*runtimes("1.36.4")[:2], Node("w1", WORKER, "1.36.4", runtime="containerd://2.2.1"),
                                   Node("w2", WORKER, "1.35.4", runtime=f"containerd://{CTR}")], "1.36.4", batch_size=2,
                        runtime=CTR)
    assert runtime_rows(plan) == [(NODE, ("w1", "w2"), ("w1",), ("2.2.1",), CTR)]


def test_kubelets_and_runtimes_at_the_pins_have_nothing_to_do():
    plan = upgrade.plan("1.36.4", runtimes("1.36.4"), "1.36.4", runtime=CTR)
    assert plan.nothing_to_do and plan.current == ["cp1", "cp2", "w1", "w2", "w3"]
    assert upgrade.plan("1.36.4", runtimes("1.36.4", w1="2.2.1"), "1.36.4", runtime=CTR).pending == ["w1"]


def test_a_rerun_after_a_runtime_step_failed_resumes_at_that_node():
    """cp1, cp2 and w1 got containerd 2.3.4, w2 did not come back Ready: refused until it is; then it resumes at w2."""
    nodes = runtimes("1.36.4", w2="2.2.1", w3="2.2.1")
    with pytest.raises(Refused, match="w2 is NotReady"):
        upgrade.plan("1.36.4", [n if n.name != "w2" else Node("w2", WORKER, "1.36.4", False, runtime=n.runtime)
                                for n in nodes], "1.36.4", runtime=CTR)
    plan = upgrade.plan("1.36.4", nodes, "1.36.4", runtime=CTR)
    assert plan.pending == ["w2", "w3"] and plan.current == ["cp1", "cp2", "w1"]


def test_a_containerd_newer_than_the_pin_is_refused_naming_the_node_and_both_versions():
    with pytest.raises(Refused, match=r"w3 \(containerd 2\.4\.0\) run\(s\) a containerd newer than the pinned 2\.3\.4: "
                                      r"kubestrap does not downgrade containerd; pin 2\.4\.0 \(kubestrap_artifacts\.containerd"):
        upgrade.plan("1.35.4", runtimes("1.35.4", w3="2.4.0"), "1.36.4", runtime=CTR)


@pytest.mark.parametrize(("reported", "message"), [
    ("cri-o://1.36.1", r"node w2 runs the container runtime 'cri-o://1\.36\.1', not containerd: kubestrap installs and "
                       r"upgrades containerd only.*reset --node w2"),
    ("docker://28.1.1", r"'docker://28\.1\.1', not containerd"),
    ("", r"node w2 reports no container runtime \(status\.nodeInfo\.containerRuntimeVersion is empty\)"),
    ("containerd://1.7", r"node w2's containerd reports version '1\.7', which is not vX\.Y\.Z"),
])  # fmt: skip
def test_a_runtime_that_is_not_a_readable_containerd_is_refused(reported, message):
    nodes = [Node(n.name, n.role, n.kubelet, runtime=reported) if n.name == "w2" else n for n in runtimes("1.36.4")]
    with pytest.raises(Refused, match=message):
        upgrade.plan("1.36.4", nodes, "1.36.4", runtime=CTR)
    assert upgrade.plan("1.36.4", nodes, "1.36.4").nothing_to_do  # without a containerd pin the runtime is not read


def test_nodes_outside_the_inventory_keep_their_runtime():
    foreign = Node("foreign", WORKER, "1.36.4", managed=False, runtime="cri-o://1.36.1")
    plan = upgrade.plan("1.36.4", [*runtimes("1.36.4"), foreign], "1.36.4", runtime=CTR)
    assert plan.nothing_to_do and "foreign" not in plan.current


def test_the_runtime_pin_comes_from_the_containerd_artifact():
    assert upgrade.pinned_runtime({**PINS, "containerd": {"version": CTR}}) == CTR
    assert upgrade.pinned_runtime(PINS) is None
    reported = {"apiserver": "v1.36.4", "nodes": [
        {"name": "cp1", "kubelet": "v1.36.4", "ready": True, "runtime": "containerd://2.2.1"},
        {"name": "w1", "kubelet": "v1.36.4", "ready": True, "runtime": "containerd://v2.3.4"}]}  # fmt: skip
    plan = upgrade.plan_cluster(reported, ["cp1"], ["w1"], {**PINS, "containerd": {"version": CTR}})
    assert runtime_rows(plan) == [(RUNTIME, ("cp1",), ("cp1",), ("2.2.1",), CTR)] and plan.current == ["w1"]
    assert upgrade.plan_cluster(reported, ["cp1"], ["w1"], PINS).nothing_to_do


def test_node_at_wants_the_pinned_containerd_when_given_one():
    node = {"status": {"nodeInfo": {"kubeletVersion": "v1.36.4", "containerRuntimeVersion": "containerd://2.3.4"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}
    assert upgrade.node_at(node, "1.36.4", CTR) and upgrade.node_at(node, "1.36.4")
    assert not upgrade.node_at(node, "1.36.4", "2.3.5")
    other = {"status": {**node["status"], "nodeInfo": {"kubeletVersion": "v1.36.4", "containerRuntimeVersion": "cri-o://2.3.4"}}}
    assert not upgrade.node_at(other, "1.36.4", CTR) and upgrade.node_at(other, "1.36.4")
