"""Each add-on chart names its resources after the role's release name setting, so a release name other than the
default still gives the names the roles wait for (helm_release_wait_for) and the addresses other roles derive
(Falcosidekick -> Alertmanager, Loki and Talon (its webhook output); MetalLB -> Prometheus' ServiceAccount; Alloy -> Loki).

Without an override the charts build their names from the release name AND the chart name unless one contains the
other (kube-prometheus-stack, argo-cd, cert-manager, loki, alloy, metallb, falco, argo-rollouts: a release `kps` gave
`kps-kube-prometheus-stack-alertmanager`, not the `kps-alertmanager` Falcosidekick was pointed at), and Falco Talon
names its Deployment after the chart alone (its `falco-talon.name`). Read at the pins: each chart's
templates/_helpers.tpl through the search tool; the keys are in the reference values (test_chart_values_upstream.py
checks every rendered key against them)."""

from __future__ import annotations

import pytest

from tests.addons.conftest import Rendered, render

# (role, chart key, the values key naming the resources, the role's release name setting)
NAMED = [
    ("argocd", "argocd", "fullnameOverride", "argocd_release_name"),
    ("argo_rollouts", "argo_rollouts", "fullnameOverride", "argo_rollouts_release_name"),
    ("cert_manager", "cert_manager", "fullnameOverride", "cert_manager_release_name"),
    ("falco", "falco", "fullnameOverride", "falco_release_name"),
    ("falco", "falco_talon", "nameOverride", "falco_talon_release_name"),
    ("metallb", "metallb", "fullnameOverride", "metallb_release_name"),
    ("monitoring", "kube_prometheus_stack", "fullnameOverride", "monitoring_kps_release_name"),
    ("monitoring", "loki", "fullnameOverride", "monitoring_loki_release_name"),
    ("monitoring", "alloy", "fullnameOverride", "monitoring_alloy_release_name"),
    ("monitoring", "pushgateway", "fullnameOverride", "monitoring_pushgateway_release_name"),
    ("local_path", "local_path", "fullnameOverride", "local_path_release_name"),
]
CUSTOM = {setting: f"hl-{key.replace('_', '-')}"[:26] for _, key, _, setting in NAMED}


@pytest.fixture(scope="module")
def rendered_names(tmp_path_factory) -> Rendered:
    """Every release renamed, everything switched on (local-path too)."""
    return Rendered(render(tmp_path_factory.mktemp("release-names"), {
        **CUSTOM, "addons_enabled": {"cilium": True, "metallb": True, "cert_manager": True, "longhorn": True,
                                     "istio": True, "argocd": True, "argo_rollouts": True, "falco": True,
                                     "monitoring": True, "nfs_csi": False, "local_path": True}}))  # fmt: skip


@pytest.mark.parametrize(("role", "key", "name_key", "setting"), NAMED, ids=[n[1] for n in NAMED])
def test_each_chart_names_its_resources_after_the_release_setting(rendered_names, role, key, name_key, setting):
    assert rendered_names.values[role][key][name_key] == CUSTOM[setting]


def test_the_derived_addresses_follow_the_renamed_releases(rendered_names):
    sidekick = rendered_names.values["falco"]["falco"]["falcosidekick"]["config"]
    assert sidekick["alertmanager"]["hostport"].startswith(f"http://{CUSTOM['monitoring_kps_release_name']}-alertmanager.")
    assert sidekick["loki"]["hostport"].startswith(f"http://{CUSTOM['monitoring_loki_release_name']}-gateway.")
    assert sidekick["webhook"]["address"] == f"http://{CUSTOM['falco_talon_release_name']}:2803"
    metallb = rendered_names.values["metallb"]["metallb"]["prometheus"]
    assert metallb["serviceAccount"] == f"{CUSTOM['monitoring_kps_release_name']}-prometheus"


def test_the_default_names_are_the_release_names_the_charts_gave_before(rendered_default):
    """With the default release names the override names what the charts named already (each release name contains
    its chart's name, or argo-cd's nameOverride `argocd`): an existing cluster keeps its resources."""
    expected = {"argocd": "argocd", "argo_rollouts": "argo-rollouts", "cert_manager": "cert-manager", "falco": "falco",
                "falco_talon": "falco-talon", "metallb": "metallb", "kube_prometheus_stack": "kube-prometheus-stack",
                "loki": "loki", "alloy": "alloy", "pushgateway": "pushgateway"}  # fmt: skip
    for role, key, name_key, _ in NAMED:
        if key in expected:
            assert rendered_default.values[role][key][name_key] == expected[key], key
