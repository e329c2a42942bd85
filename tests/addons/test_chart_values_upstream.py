"""The Helm values every add-on role renders, checked against the upstream chart's own values.yaml and
values.schema.json (tests/addons/upstream_values.py), in the default and the maximal settings.

The upstream data is read-only reference data outside the repository: /work/shared/reference/charts/<chart>/
(../shared/reference/charts from the checkout), or the directory KUBESTRAP_REFERENCE_DIR names (its charts/).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import yaml

from tests.addons import upstream_values
from tests.addons.conftest import ROOT
from tests.fixtures import chart_keys
from tests.reference import REFERENCE

CHARTS = REFERENCE / "charts"
ALL_PINS = yaml.safe_load((ROOT / "group_vars" / "all" / "versions.yml").read_text())["kubestrap_charts"]
# Pinned charts with no reference data in ../shared/reference/charts/ (csi-driver-nfs, local-path-provisioner):
# checked below against the upstream keys confirmed at the pin instead (tests/fixtures/chart_keys.py).
CONFIRMED_ONLY = sorted(key for key, pin in ALL_PINS.items() if pin["chart"] in chart_keys.CONFIRMED)
PINS = {key: pin for key, pin in ALL_PINS.items() if key not in CONFIRMED_ONLY}

# Pins the reference data could not be fetched at (its VERSION file says why): the values would be checked
# against the nearest release it holds. None today; this must match exactly, so a new gap shows up here.
KNOWN_VERSION_GAPS: dict[str, tuple[str, str]] = {}

# Pinned charts the reference data does not hold: their rendered values may use only the key paths listed here,
# each confirmed upstream at the pin. prometheus-pushgateway 3.11.2 is the newest release found (the
# prometheus-community/helm-charts release tag prometheus-pushgateway-3.11.2, listed on newreleases.io); the keys
# were read in that repository's charts/prometheus-pushgateway/values.yaml (persistentVolume.storageClass is a
# commented-out key there) and templates/ (_helpers.tpl: extraArgs become the container args and the volume is
# mounted at persistentVolume.mountPath; pushgateway-pvc.yaml; servicemonitor.yaml) through the search tool.
# Bumping the pin means confirming the keys again and updating the version here.
WITHOUT_REFERENCE: dict[str, tuple[str, frozenset[str]]] = {
    "pushgateway": ("3.11.2", frozenset({
        "fullnameOverride", "serviceMonitor.enabled", "serviceMonitor.namespace", "serviceMonitor.honorLabels",
        "persistentVolume.enabled", "persistentVolume.size", "persistentVolume.storageClass",
        "persistentVolume.mountPath", "extraArgs",
    })),
}  # fmt: skip


def dotted_paths(values: dict, prefix: str = "") -> set[str]:
    """The dotted path of every leaf of a values map (a list is a leaf)."""
    paths: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        paths |= dotted_paths(value, path) if isinstance(value, dict) and value else {path}
    return paths



def needs_reference(test):
    """The upstream data travels with CI (../shared/reference); without it these tests fail, never skip."""

    def run(*args, **kwargs):
        assert CHARTS.is_dir(), f"no upstream chart reference data at {CHARTS} (set KUBESTRAP_REFERENCE_DIR)"
        return test(*args, **kwargs)

    return functools.wraps(test)(run)


def chart_dir(key: str) -> Path:
    return CHARTS / PINS[key]["chart"]


def values_of(rendered, key: str) -> dict:
    found = [vals for _, k, vals in rendered.releases() if k == key]
    assert len(found) == 1, f"{key}: rendered {len(found)} times"
    return found[0]


@needs_reference
def test_reference_data_for_every_pinned_chart():
    missing = [key for key in PINS if not (chart_dir(key) / "values.yaml").is_file()]
    assert missing == sorted(WITHOUT_REFERENCE)


def test_charts_without_reference_data_are_checked_at_their_pin():
    assert {key: str(PINS[key]["version"]) for key in WITHOUT_REFERENCE} == {
        key: version for key, (version, _) in WITHOUT_REFERENCE.items()
    }


@pytest.mark.parametrize("key", sorted(WITHOUT_REFERENCE))
def test_rendered_values_use_only_confirmed_keys(rendered, key):
    assert sorted(dotted_paths(values_of(rendered, key)) - WITHOUT_REFERENCE[key][1]) == []


def test_an_unconfirmed_key_is_reported(rendered_default):
    values = copy.deepcopy(values_of(rendered_default, "pushgateway"))
    values["persistentVolume"]["storageClassName"] = "longhorn"
    assert sorted(dotted_paths(values) - WITHOUT_REFERENCE["pushgateway"][1]) == ["persistentVolume.storageClassName"]


@needs_reference
def test_pinned_versions_against_the_reference_data():
    gaps = {}
    for key, pin in PINS.items():
        if key in WITHOUT_REFERENCE:
            continue
        fetched = upstream_values.fetched_version(chart_dir(key))
        if fetched != str(pin["version"]):
            gaps[key] = (str(pin["version"]), fetched)
    assert gaps == KNOWN_VERSION_GAPS


@needs_reference
@pytest.mark.parametrize("key", sorted(set(PINS) - set(WITHOUT_REFERENCE)))
def test_rendered_values_match_the_upstream_chart(rendered, key):
    assert upstream_values.check_values(values_of(rendered, key), chart_dir(key)) == []


# --- charts checked against the upstream keys confirmed at the pin (tests/fixtures/chart_keys.py) ------------


def confirmed_dir(key: str, tmp_path: Path) -> Path:
    return chart_keys.write_reference(ALL_PINS[key]["chart"], tmp_path / ALL_PINS[key]["chart"])


@needs_reference
def test_confirmed_keys_only_where_there_is_no_reference_data():
    assert CONFIRMED_ONLY == ["local_path", "nfs_csi"]
    assert [key for key in CONFIRMED_ONLY if (chart_dir_of := CHARTS / ALL_PINS[key]["chart"]).is_dir()
            and (chart_dir_of / "values.yaml").is_file()] == []  # fmt: skip


def test_confirmed_keys_were_read_at_the_pins():
    assert {key: chart_keys.CONFIRMED[ALL_PINS[key]["chart"]]["version"] for key in CONFIRMED_ONLY} == {
        key: str(ALL_PINS[key]["version"]) for key in CONFIRMED_ONLY}  # fmt: skip


@pytest.mark.parametrize("key", CONFIRMED_ONLY)
def test_rendered_values_use_only_confirmed_upstream_keys(rendered, key, tmp_path):
    assert upstream_values.check_values(values_of(rendered, key), confirmed_dir(key, tmp_path)) == []


def test_a_key_the_nfs_chart_lacks_is_reported(rendered_default, tmp_path):
    values = copy.deepcopy(values_of(rendered_default, "nfs_csi"))
    values["storageClass"]["reclaimPolicyy"] = values["storageClass"].pop("reclaimPolicy")
    values["controller"]["replica"] = 2
    values["storageClass"]["parameters"]["anything"] = "x"  # parameters: documented without a default, free-form
    assert upstream_values.check_values(values, confirmed_dir("nfs_csi", tmp_path)) == [
        "controller.replica: unknown key (not in upstream values.yaml)",
        "storageClass.reclaimPolicyy: unknown key (not in upstream values.yaml)",
    ]


def test_a_key_the_local_path_chart_lacks_is_reported(rendered_default, tmp_path):
    values = copy.deepcopy(values_of(rendered_default, "local_path"))
    values["storageClass"]["default"] = True
    values["nodePathMap"] = "/opt/local-path-provisioner"
    assert upstream_values.check_values(values, confirmed_dir("local_path", tmp_path)) == [
        "nodePathMap: str where the chart has a list",
        "storageClass.default: unknown key (not in upstream values.yaml)",
    ]


# --- negative tests: misspelt keys and wrong types are reported with their dotted path --------------


@needs_reference
def test_misspelt_top_level_key(rendered_default):
    values = copy.deepcopy(values_of(rendered_default, "cilium"))
    values["l2Announcments"] = {"enabled": True}
    assert upstream_values.check_values(values, chart_dir("cilium")) == [
        "l2Announcments: unknown key (not in upstream values.yaml)"
    ]


@needs_reference
def test_misspelt_nested_key(rendered_default):
    values = copy.deepcopy(values_of(rendered_default, "longhorn"))
    values["defaultSettings"]["defaultReplicaCuont"] = values["defaultSettings"].pop("defaultReplicaCount")
    assert upstream_values.check_values(values, chart_dir("longhorn")) == [
        "defaultSettings.defaultReplicaCuont: unknown key (not in upstream values.yaml)"
    ]


@needs_reference
def test_misspelt_key_in_a_subchart(rendered_default):
    values = copy.deepcopy(values_of(rendered_default, "kube_prometheus_stack"))
    values["grafana"]["adminPasword"] = values["grafana"].pop("adminPassword")
    values["kube-state-metrics"] = {"replicas": 1, "replicaz": 1}
    assert upstream_values.check_values(values, chart_dir("kube_prometheus_stack")) == [
        "grafana.adminPasword: unknown key (not in upstream values.yaml)",
        "kube-state-metrics.replicaz: unknown key (not in upstream values.yaml)",
    ]


@needs_reference
def test_scalar_where_the_chart_has_a_map(rendered_default):
    values = copy.deepcopy(values_of(rendered_default, "longhorn"))
    values["persistence"] = "longhorn"
    assert upstream_values.check_values(values, chart_dir("longhorn")) == ["persistence: str where the chart has a map"]


@needs_reference
def test_map_where_the_chart_has_a_scalar(rendered_default):
    values = copy.deepcopy(values_of(rendered_default, "argocd"))
    values["fullnameOverride"] = {"name": "argocd"}
    assert upstream_values.check_values(values, chart_dir("argocd")) == ["fullnameOverride: dict where the chart has a str"]


@needs_reference
def test_schema_type_errors(rendered_default):
    values = copy.deepcopy(values_of(rendered_default, "cilium"))
    values["operator"]["replicas"] = "two"
    values["ipam"]["mode"] = 7
    assert upstream_values.check_values(values, chart_dir("cilium")) == [
        "ipam.mode: 7 is not of type 'string' (values.schema.json)",
        "operator.replicas: 'two' is not of type 'integer' (values.schema.json)",
    ]


@needs_reference
def test_schema_error_in_a_list_item(rendered_default):
    values = copy.deepcopy(values_of(rendered_default, "cilium"))
    values["ciliumEndpointSlice"] = {"rateLimits": [{"nodes": 0, "limit": 10, "burst": "twenty"}]}
    errors = upstream_values.check_values(values, chart_dir("cilium"))
    assert len(errors) == 1 and errors[0].startswith("ciliumEndpointSlice.rateLimits[0]: "), errors


@needs_reference
def test_schema_of_a_subchart(rendered_default):
    values = copy.deepcopy(values_of(rendered_default, "metallb"))
    values["frr-k8s"] = {"frrk8s": {"logLevel": "verbose"}}
    assert upstream_values.check_values(values, chart_dir("metallb")) == [
        "frr-k8s.frrk8s.logLevel: 'verbose' is not one of ['all', 'debug', 'info', 'warn', 'error', 'none'] (values.schema.json)"
    ]


# --- the checker's rules on a small chart of its own -------------------------------------------------

SAMPLE_VALUES = """\
_internal_defaults_do_not_set:
  replicaCount:
  service:
    # -- documented but not set
    # loadBalancerIP: ""
    #   nested: true
    type: ClusterIP
  podLabels: {}
  podAnnotations:
    example.com/scrape: "true"
  ports:
    - name: http
      port: 80
  extraVolumes: []
  # @schema additionalProperties:true
  config:
    level: info
meshConfig:
  enablePrometheusMerge: true
child:
  fromParent: 1
"""


@pytest.fixture
def sample_chart(tmp_path: Path) -> Path:
    (tmp_path / "VERSION").write_text("chart: sample\nfetched: 1.0.0\n")
    (tmp_path / "values.yaml").write_text(SAMPLE_VALUES)
    (tmp_path / "subcharts" / "child").mkdir(parents=True)
    (tmp_path / "subcharts" / "child" / "values.yaml").write_text("image:\n  tag: v1\n")
    return tmp_path


def test_sample_chart_accepts(sample_chart):
    values = {
        "replicaCount": 3,  # an upstream null declares the key
        "service": {"type": "LoadBalancer", "loadBalancerIP": "10.0.0.1"},  # commented-out key
        "podLabels": {"team": "x"},  # empty map: free-form
        "podAnnotations": {"team": "x"},  # FREE_FORM, whatever upstream's example
        "ports": [{"name": "https", "port": 443}],
        "extraVolumes": [{"name": "v", "emptyDir": {}}],  # empty example list: items not checked
        "config": {"anything": {"goes": True}},  # @schema additionalProperties:true
        "meshConfig": {"accessLogFile": "/dev/stdout"},  # FREE_FORM
        "child": {"enabled": True, "global": {"x": 1}, "fromParent": 2, "image": {"tag": "v2"}},
    }
    assert upstream_values.check_values(values, sample_chart) == []
    assert upstream_values.fetched_version(sample_chart) == "1.0.0"


def test_sample_chart_rejects(sample_chart):
    values = {
        "service": {"typ": "LoadBalancer"},
        "ports": [{"name": "https", "prot": 443}, "x"],
        "child": {"image": {"tga": "v2"}},
        "extra": 1,
    }
    assert upstream_values.check_values(values, sample_chart) == [
        "service.typ: unknown key (not in upstream values.yaml)",
        "ports[0].prot: unknown key (not in upstream values.yaml)",
        "ports[1]: str where the chart has a map",
        "child.image.tga: unknown key (not in upstream values.yaml)",
        "extra: unknown key (not in upstream values.yaml)",
    ]
