"""Dashboards and alerts that work on day one, checked on the rendered values (no upstream image runs here, so no
live scrape target is checked): while monitoring is on, every add-on chart's ServiceMonitors, PodMonitors,
PrometheusRules and Grafana dashboard ConfigMaps are switched on, kube-prometheus-stack's Prometheus selects each
of them (labels and namespaces, as prometheus-operator reads its selectors) and Grafana's dashboard sidecar matches
each dashboard ConfigMap's label; while it is off none is on (their CRDs are not there). Plus the Alertmanager
receiver, the Pushgateway and the in-cluster addresses the other roles derive from the monitoring role's names.

MONITORS and DASHBOARDS say, per chart, where its values switch an object on and where its labels and namespace
come from: read from each chart's values.yaml (../shared/reference/charts) and, where a chart fixes a label or a
namespace in a template, from that template (noted on the entry)."""

from __future__ import annotations

import copy
import re
import stat
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.addons.conftest import MAXIMAL, ROOT, Rendered, render

MONITORING_DEFAULTS = yaml.safe_load((ROOT / "roles" / "monitoring" / "defaults" / "main.yml").read_text())
PROMETHEUS_KINDS = {"ServiceMonitor": "serviceMonitor", "PodMonitor": "podMonitor", "PrometheusRule": "rule"}


def role_default(role: str, name: str) -> Any:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())[name]


def dig(values: dict, path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


@dataclass(frozen=True)
class Monitor:
    role: str  # role rendering the release
    key: str  # chart key in kubestrap_charts
    kind: str  # ServiceMonitor, PodMonitor or PrometheusRule
    switches: tuple[str, ...]  # values paths that must all be true for the chart to create it
    labels: str = ""  # values path of the extra labels the chart puts on it
    namespace: str = ""  # values path overriding its namespace (else the release's)


@dataclass(frozen=True)
class Dashboards:
    role: str
    key: str
    switches: tuple[str, ...]
    label: str = ""  # values path of the label key (with label_value), or of a label map (without)
    label_value: str = ""
    fixed: tuple[str, str] | None = None  # label the chart's template sets (no value for it)
    namespace: str = ""


M, D = Monitor, Dashboards
MONITORS = [
    M("cilium", "cilium", "ServiceMonitor", ("prometheus.enabled", "prometheus.serviceMonitor.enabled"),
      "prometheus.serviceMonitor.labels"),
    M("cilium", "cilium", "ServiceMonitor", ("operator.prometheus.enabled", "operator.prometheus.serviceMonitor.enabled"),
      "operator.prometheus.serviceMonitor.labels"),
    M("cilium", "cilium", "ServiceMonitor", ("hubble.metrics.enabled", "hubble.metrics.serviceMonitor.enabled"),
      "hubble.metrics.serviceMonitor.labels"),
    M("cilium", "cilium", "ServiceMonitor", ("envoy.prometheus.serviceMonitor.enabled",),
      "envoy.prometheus.serviceMonitor.labels"),
    M("metallb", "metallb", "ServiceMonitor", ("prometheus.serviceMonitor.enabled",),
      "prometheus.serviceMonitor.controller.additionalLabels"),
    M("metallb", "metallb", "ServiceMonitor", ("prometheus.serviceMonitor.enabled",),
      "prometheus.serviceMonitor.speaker.additionalLabels"),
    M("metallb", "metallb", "PrometheusRule", ("prometheus.prometheusRule.enabled",),
      "prometheus.prometheusRule.additionalLabels"),
    M("cert_manager", "cert_manager", "ServiceMonitor", ("prometheus.enabled", "prometheus.servicemonitor.enabled"),
      "prometheus.servicemonitor.labels"),
    M("longhorn", "longhorn", "ServiceMonitor", ("metrics.serviceMonitor.enabled",), "metrics.serviceMonitor.additionalLabels"),
    *[M("argocd", "argocd", "ServiceMonitor", (f"{c}.metrics.enabled", f"{c}.metrics.serviceMonitor.enabled"),
        f"{c}.metrics.serviceMonitor.additionalLabels", f"{c}.metrics.serviceMonitor.namespace")
      for c in ("controller", "server", "repoServer", "applicationSet", "notifications")],
    M("argo_rollouts", "argo_rollouts", "ServiceMonitor",
      ("controller.metrics.enabled", "controller.metrics.serviceMonitor.enabled"),
      "controller.metrics.serviceMonitor.additionalLabels", "controller.metrics.serviceMonitor.namespace"),
    M("falco", "falco", "ServiceMonitor", ("metrics.enabled", "serviceMonitor.create"), "serviceMonitor.labels"),
    M("falco", "falco", "ServiceMonitor", ("falcosidekick.enabled", "falcosidekick.serviceMonitor.enabled"),
      "falcosidekick.serviceMonitor.additionalLabels"),
    M("falco", "falco", "PrometheusRule", ("falcosidekick.enabled", "falcosidekick.prometheusRules.enabled")),
    M("falco", "falco_talon", "ServiceMonitor", ("serviceMonitor.enabled",), "serviceMonitor.additionalLabels"),
    M("monitoring", "loki", "ServiceMonitor", ("monitoring.serviceMonitor.enabled",), "monitoring.serviceMonitor.labels",
      "monitoring.namespace"),
    M("monitoring", "loki", "PrometheusRule", ("monitoring.rules.enabled",), "monitoring.rules.labels", "monitoring.namespace"),
    M("monitoring", "loki", "PrometheusRule", ("monitoring.alerts.enabled",), "monitoring.alerts.labels", "monitoring.namespace"),
    M("monitoring", "alloy", "ServiceMonitor", ("serviceMonitor.enabled",), "serviceMonitor.additionalLabels"),
    M("monitoring", "pushgateway", "ServiceMonitor", ("serviceMonitor.enabled",), "serviceMonitor.additionalLabels",
      "serviceMonitor.namespace"),
]  # fmt: skip
DASHBOARDS = [
    D("cilium", "cilium", ("dashboards.enabled",), "dashboards.label", "dashboards.labelValue", namespace="dashboards.namespace"),
    D("cilium", "cilium", ("operator.dashboards.enabled",), "operator.dashboards.label", "operator.dashboards.labelValue",
      namespace="operator.dashboards.namespace"),
    D("cilium", "cilium", ("hubble.metrics.enabled", "hubble.metrics.dashboards.enabled"), "hubble.metrics.dashboards.label",
      "hubble.metrics.dashboards.labelValue", namespace="hubble.metrics.dashboards.namespace"),
    # the falcosecurity charts set grafana_dashboard: "1" in their dashboard ConfigMap templates
    D("falco", "falco", ("grafana.dashboards.enabled",), fixed=("grafana_dashboard", "1"),
      namespace="grafana.dashboards.configMaps.falco.namespace"),
    D("falco", "falco", ("falcosidekick.enabled", "falcosidekick.grafana.dashboards.enabled"), fixed=("grafana_dashboard", "1"),
      namespace="falcosidekick.grafana.dashboards.configMaps.falcosidekick.namespace"),
    D("falco", "falco_talon", ("grafana.dashboards.enabled",), fixed=("grafana_dashboard", "1"),
      namespace="grafana.dashboards.configMaps.talon.namespace"),
    D("monitoring", "loki", ("monitoring.dashboards.enabled",), "monitoring.dashboards.labels", namespace="monitoring.namespace"),
]  # fmt: skip

# Release namespace of each chart key: the role default naming it.
NAMESPACE_VARS = {
    "cilium": ("cilium", "cilium_namespace"), "metallb": ("metallb", "metallb_namespace"),
    "cert_manager": ("cert_manager", "cert_manager_namespace"), "longhorn": ("longhorn", "longhorn_namespace"),
    "argocd": ("argocd", "argocd_namespace"), "argo_rollouts": ("argo_rollouts", "argo_rollouts_namespace"),
    "falco": ("falco", "falco_namespace"), "falco_talon": ("falco", "falco_namespace"),
    "loki": ("monitoring", "monitoring_namespace"), "alloy": ("monitoring", "monitoring_namespace"),
    "pushgateway": ("monitoring", "monitoring_namespace"), "kube_prometheus_stack": ("monitoring", "monitoring_namespace"),
}  # fmt: skip


def values(rendered: Rendered, role: str, key: str) -> dict:
    return rendered.values[role][key]


def release_namespace(key: str, overrides: dict) -> str:
    role, var = NAMESPACE_VARS[key]
    return overrides.get(var, role_default(role, var))


def switched_on(vals: dict, switches: tuple[str, ...]) -> bool:
    return all(bool(dig(vals, path)) for path in switches)


def selector_matches(selector: dict | None, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against a label set; {} matches everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, vals = expr["key"], expr["operator"], expr.get("values") or []
        if (op == "In" and labels.get(key) not in vals) or (op == "NotIn" and key in labels and labels[key] in vals) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def prometheus_selectors(kps: dict, kind: str, release: str) -> tuple[dict, dict | None]:
    """(object selector, namespace selector) of kube-prometheus-stack's Prometheus for *kind*, as the chart hands them
    to prometheus-operator: with <kind>SelectorNilUsesHelmValues true (the chart default) an empty selector becomes
    `release: <release name>`; an empty namespace selector selects every namespace."""
    spec = dig(kps, "prometheus.prometheusSpec") or {}
    prefix = PROMETHEUS_KINDS[kind]
    selector = spec.get(f"{prefix}Selector") or {}
    if not selector and spec.get(f"{prefix}SelectorNilUsesHelmValues", True):
        selector = {"matchLabels": {"release": release}}
    return selector, spec.get(f"{prefix}NamespaceSelector") or {}


def unselected(rendered: Rendered, overrides: dict) -> list[str]:
    """Every monitor or rule the rendered values switch on that the Prometheus would not pick up."""
    kps = values(rendered, "monitoring", "kube_prometheus_stack")
    release = overrides.get("monitoring_kps_release_name", MONITORING_DEFAULTS["monitoring_kps_release_name"])
    missed = []
    for m in MONITORS:
        vals = values(rendered, m.role, m.key)
        if not switched_on(vals, m.switches):
            continue
        labels = {str(k): str(v) for k, v in (dig(vals, m.labels) or {}).items()} if m.labels else {}
        namespace = (dig(vals, m.namespace) if m.namespace else None) or release_namespace(m.key, overrides)
        selector, ns_selector = prometheus_selectors(kps, m.kind, release)
        in_namespace = selector_matches(ns_selector, {"kubernetes.io/metadata.name": namespace})
        if not selector_matches(selector, labels) or not in_namespace:
            missed.append(f"{m.key} {m.kind} {'+'.join(m.switches)} in {namespace} with labels {labels}")
    return missed


def unmatched_dashboards(rendered: Rendered, overrides: dict) -> list[str]:
    """Every dashboard ConfigMap the rendered values switch on that Grafana's sidecar would not load."""
    sidecar = dig(values(rendered, "monitoring", "kube_prometheus_stack"), "grafana.sidecar.dashboards") or {}
    label, wanted = sidecar.get("label"), str(sidecar.get("labelValue", ""))
    search = sidecar.get("searchNamespace")
    missed = []
    for d in DASHBOARDS:
        vals = values(rendered, d.role, d.key)
        if not switched_on(vals, d.switches):
            continue
        if d.fixed:
            labels = {d.fixed[0]: d.fixed[1]}
        elif d.label_value:
            labels = {str(dig(vals, d.label)): str(dig(vals, d.label_value))}
        else:
            labels = {str(k): str(v) for k, v in (dig(vals, d.label) or {}).items()}
        namespace = (dig(vals, d.namespace) if d.namespace else None) or release_namespace(d.key, overrides)
        in_reach = search == "ALL" or namespace in (search if isinstance(search, list) else str(search or "").split(","))
        if not sidecar.get("enabled") or label not in labels or (wanted and labels[label] != wanted) or not in_reach:
            missed.append(f"{d.key} dashboards {'+'.join(d.switches)} in {namespace} with labels {labels}")
    return missed


@pytest.fixture(scope="module")
def rendered_off(tmp_path_factory) -> Rendered:
    """Monitoring off, everything else as by default."""
    return Rendered(render(tmp_path_factory.mktemp("monitoring-off"), {"addons_enabled": {**MAXIMAL["addons_enabled"],
                                                                                           "monitoring": False}}))


CUSTOM = {
    "monitoring_namespace": "observability", "monitoring_kps_release_name": "kps", "monitoring_loki_release_name": "logs",
    "monitoring_alertmanager_webhook_url": "https://ntfy.homelab.lan/kubestrap-alerts", "monitoring_storage_class": "fast",
    "monitoring_pushgateway_persistence": True,
}  # fmt: skip


@pytest.fixture(scope="module")
def rendered_custom(tmp_path_factory) -> Rendered:
    """Other monitoring names and namespace, a webhook receiver URL."""
    return Rendered(render(tmp_path_factory.mktemp("monitoring-custom"), CUSTOM))


def overrides_of(name: str) -> dict:
    return {"default": {}, "maximal": MAXIMAL}[name]


# --- monitors, rules and dashboards ---------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["default", "maximal"])
def test_every_monitor_rule_and_dashboard_is_switched_on(request, config):
    rendered = request.getfixturevalue(f"rendered_{'max' if config == 'maximal' else 'default'}")
    everything = (*MONITORS, *DASHBOARDS)
    off = [f"{o.key} {o.switches}" for o in everything if not switched_on(values(rendered, o.role, o.key), o.switches)]
    assert off == []


@pytest.mark.parametrize("config", ["default", "maximal"])
def test_prometheus_selects_every_monitor_and_rule(request, config):
    rendered = request.getfixturevalue(f"rendered_{'max' if config == 'maximal' else 'default'}")
    assert unselected(rendered, overrides_of(config)) == []


@pytest.mark.parametrize("config", ["default", "maximal"])
def test_grafana_sidecar_loads_every_dashboard(request, config):
    rendered = request.getfixturevalue(f"rendered_{'max' if config == 'maximal' else 'default'}")
    assert unmatched_dashboards(rendered, overrides_of(config)) == []


def test_selectors_and_sidecar_with_other_monitoring_names(rendered_custom):
    assert unselected(rendered_custom, CUSTOM) == []
    assert unmatched_dashboards(rendered_custom, CUSTOM) == []


def test_the_checks_fail_on_the_chart_defaults(rendered_default):
    """With the chart's own ServiceMonitor selector default (a `release` label required) no add-on ServiceMonitor is
    picked up, rules outside a restricted namespace selector are missed, and a sidecar label value other than the
    charts' misses every dashboard: the checks above can fail."""
    broken = copy.deepcopy(rendered_default)
    kps = broken.values["monitoring"]["kube_prometheus_stack"]
    kps["prometheus"]["prometheusSpec"]["serviceMonitorSelectorNilUsesHelmValues"] = True
    kps["prometheus"]["prometheusSpec"]["ruleNamespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    expected = [m for m in MONITORS if m.kind == "ServiceMonitor" or (m.kind == "PrometheusRule" and m.role != "monitoring")]
    assert len(unselected(broken, {})) == len(expected)
    kps["grafana"]["sidecar"]["dashboards"]["labelValue"] = "true"
    assert len(unmatched_dashboards(broken, {})) == len(DASHBOARDS)


def test_nothing_is_switched_on_while_monitoring_is_off(rendered_off):
    """Without monitoring the prometheus-operator CRDs are not installed: a chart creating a ServiceMonitor would fail."""
    on = [f"{m.key} {m.kind} {m.switches}" for m in MONITORS if m.role != "monitoring"
          and any(bool(dig(values(rendered_off, m.role, m.key), s)) for s in m.switches
                  if s.endswith(("serviceMonitor.enabled", "servicemonitor.enabled", "serviceMonitor.create",
                                 "prometheusRule.enabled", "prometheusRules.enabled")))]
    on += [f"{d.key} dashboards" for d in DASHBOARDS
           if d.role != "monitoring" and switched_on(values(rendered_off, d.role, d.key), d.switches)]
    assert on == []
    sidekick = values(rendered_off, "falco", "falco")["falcosidekick"]["config"]
    assert "loki" not in sidekick and "alertmanager" not in sidekick


# --- addresses derived from the monitoring role's names -----------------------------------------------------------


def test_falcosidekick_forwards_to_loki_and_alertmanager(rendered_default):
    config = values(rendered_default, "falco", "falco")["falcosidekick"]["config"]
    ns, kps, loki = (MONITORING_DEFAULTS[k] for k in ("monitoring_namespace", "monitoring_kps_release_name",
                                                      "monitoring_loki_release_name"))
    assert config["loki"]["hostport"] == f"http://{loki}-gateway.{ns}.svc.cluster.local:80"
    assert config["alertmanager"]["hostport"] == f"http://{kps}-alertmanager.{ns}.svc.cluster.local:9093"
    assert config["alertmanager"]["endpoint"] == "/api/v2/alerts"  # Alertmanager serves no v1 API any more
    metallb = values(rendered_default, "metallb", "metallb")["prometheus"]
    assert (metallb["namespace"], metallb["serviceAccount"]) == (ns, f"{kps}-prometheus")


def test_addresses_follow_other_monitoring_names(rendered_custom):
    config = values(rendered_custom, "falco", "falco")["falcosidekick"]["config"]
    assert config["loki"]["hostport"] == "http://logs-gateway.observability.svc.cluster.local:80"
    assert config["alertmanager"]["hostport"] == "http://kps-alertmanager.observability.svc.cluster.local:9093"
    metallb = values(rendered_custom, "metallb", "metallb")["prometheus"]
    assert (metallb["namespace"], metallb["serviceAccount"]) == ("observability", "kps-prometheus")
    pushgateway = values(rendered_custom, "monitoring", "pushgateway")
    assert pushgateway["serviceMonitor"]["namespace"] == "observability"
    assert pushgateway["persistentVolume"]["storageClass"] == "fast"


# --- Pushgateway -----------------------------------------------------------------------------------------------


def test_pushgateway_keeps_its_metrics_on_the_monitoring_storage_class(rendered_default):
    pushgateway = values(rendered_default, "monitoring", "pushgateway")
    assert pushgateway["fullnameOverride"] == "pushgateway" and pushgateway["serviceMonitor"]["honorLabels"] is True
    volume = pushgateway["persistentVolume"]
    assert volume["enabled"] is True and volume["storageClass"] == "longhorn" and volume["size"] == "2Gi"
    assert f"--persistence.file={volume['mountPath']}/pushgateway.data" in pushgateway["extraArgs"]


# --- Alertmanager ------------------------------------------------------------------------------------------------


def alertmanager(rendered: Rendered) -> dict:
    return values(rendered, "monitoring", "kube_prometheus_stack")["alertmanager"]["config"]


def test_default_receiver_is_null_and_quiet(rendered_default):
    config = alertmanager(rendered_default)
    assert config["receivers"] == [{"name": "null"}]
    assert config["route"]["receiver"] == "null"
    assert [r["receiver"] for r in config["route"]["routes"]] == ["null"]
    assert config["route"]["routes"][0]["matchers"] == ['alertname =~ "Watchdog|InfoInhibitor"']
    assert any(rule["source_matchers"] == ["alertname = InfoInhibitor"] for rule in config["inhibit_rules"])
    assert not (rendered_default.out / "secrets" / "alertmanager-webhook-url").exists()


def test_slack_receiver_from_the_setting(rendered_max):
    config = alertmanager(rendered_max)
    url = MAXIMAL["monitoring_alertmanager_webhook_url"]
    notify = next(r for r in config["receivers"] if r["name"] == "notify")
    assert notify == {"name": "notify", "slack_configs": [{"api_url": url, "send_resolved": True}]}
    assert config["route"]["routes"][0]["receiver"] == "null"  # Watchdog and InfoInhibitor first
    assert config["route"]["routes"][1] == {"receiver": "notify", "matchers": ['severity =~ "warning|critical"']}
    kept = rendered_max.out / "secrets" / "alertmanager-webhook-url"  # where the run journal's redactor reads it
    assert kept.read_text().strip() == url and stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_webhook_receiver(rendered_custom):
    notify = next(r for r in alertmanager(rendered_custom)["receivers"] if r["name"] == "notify")
    assert notify["webhook_configs"] == [{"url": CUSTOM["monitoring_alertmanager_webhook_url"], "send_resolved": True}]


def test_receiver_url_from_the_secrets_file(tmp_path):
    secrets = tmp_path / "given"
    secrets.mkdir()
    (secrets / "url").write_text("https://ntfy.homelab.lan/from-the-file\n")
    rendered = Rendered(render(tmp_path / "render", {"monitoring_alertmanager_webhook_url_file": str(secrets / "url")},
                               roles=["monitoring"]))  # fmt: skip
    notify = next(r for r in alertmanager(rendered)["receivers"] if r["name"] == "notify")
    assert notify["webhook_configs"][0]["url"] == "https://ntfy.homelab.lan/from-the-file"


def test_a_bad_receiver_url_is_refused_without_showing_it(tmp_path):
    with pytest.raises(AssertionError) as failed:
        render(tmp_path, {"monitoring_alertmanager_webhook_url": "hooks.example/no-scheme secret-part"}, roles=["monitoring"])
    assert "is not one http(s):// URL" in str(failed.value)
    assert "secret-part" not in str(failed.value)


SECRET_VARS = ("monitoring_alertmanager_webhook_url", "monitoring_alertmanager_url")
SECRET_IN_TEMPLATE = re.compile(r"\{\{[^}]*\b(monitoring_alertmanager_webhook_url|monitoring_alertmanager_url)\b(?!_file)")


def test_tasks_handling_the_receiver_url_hide_it():
    """Every task of the monitoring role that reads, writes or renders the URL runs with no_log (an assert only names
    it in its condition, never in its message), and kube-prometheus-stack's values reach helm with helm_release_no_log."""
    tasks_dir = ROOT / "roles" / "monitoring" / "tasks"
    exposed, checked = [], 0
    for path in sorted(tasks_dir.glob("*.yml")):
        for task in yaml.safe_load(path.read_text()):
            if "ansible.builtin.assert" in task:
                assert not SECRET_IN_TEMPLATE.search(str(task["ansible.builtin.assert"].get("fail_msg", "")))
                continue
            text = yaml.safe_dump({k: v for k, v in task.items() if k not in ("name", "when")})
            if any(v in text for v in SECRET_VARS) or "values-kube_prometheus_stack" in text:
                checked += 1
                if task.get("no_log") is not True:
                    exposed.append(f"{path.name}: {task.get('name')}")
            if "monitoring_helm_values.kube_prometheus_stack" in text:
                checked += 1
                if task.get("vars", {}).get("helm_release_no_log") is not True:
                    exposed.append(f"{path.name}: {task.get('name')}")
    assert exposed == [] and checked >= 4


def test_monitoring_defaults_are_the_fallbacks_of_the_other_roles():
    """falco and metallb read the monitoring role's names with fallbacks equal to its defaults."""
    found = 0
    for role in ("falco", "metallb"):
        text = (ROOT / "roles" / role / "defaults" / "main.yml").read_text()
        for name, fallback in re.findall(r"(monitoring_\w+) \| default\(('[^']*')\)", text):
            found += 1
            assert yaml.safe_load(fallback) == MONITORING_DEFAULTS[name], (role, name, fallback)
    assert found >= 5


# --- Istio: its charts ship no monitors, the istio role applies its own -------------------------------------------


def _istio_monitors(rendered: Rendered) -> dict[str, dict]:
    docs = rendered.manifests["istio-peer-authentication.yaml"]
    return {doc["kind"]: doc for doc in docs if doc and doc["kind"] != "PeerAuthentication"}


@pytest.mark.parametrize("name", ["default", "maximal"])
def test_istiod_and_every_envoy_are_scraped_while_monitoring_is_on(request, name):
    rendered = request.getfixturevalue({"default": "rendered_default", "maximal": "rendered_max"}[name])
    monitors = _istio_monitors(rendered)
    assert set(monitors) == {"ServiceMonitor", "PodMonitor"}
    kps = values(rendered, "monitoring", "kube_prometheus_stack")
    release = overrides_of(name).get("monitoring_kps_release_name", MONITORING_DEFAULTS["monitoring_kps_release_name"])
    for kind, doc in monitors.items():  # Prometheus selects them where they live, with the labels they carry
        selector, ns_selector = prometheus_selectors(kps, kind, release)
        assert selector_matches(selector, doc["metadata"].get("labels") or {}), kind
        assert selector_matches(ns_selector, {"kubernetes.io/metadata.name": doc["metadata"]["namespace"]}), kind
    istiod = monitors["ServiceMonitor"]["spec"]
    assert istiod["selector"] == {"matchLabels": {"app": "istiod"}} and istiod["endpoints"][0]["port"] == "http-monitoring"
    envoy = monitors["PodMonitor"]["spec"]
    assert envoy["namespaceSelector"] == {"any": True}
    assert envoy["podMetricsEndpoints"][0] == {"port": "http-envoy-prom", "path": "/stats/prometheus", "interval": "30s"}


def test_istio_applies_no_monitor_while_monitoring_is_off(rendered_off):
    assert _istio_monitors(rendered_off) == {}
    assert [doc["kind"] for doc in rendered_off.manifests["istio-peer-authentication.yaml"] if doc] == ["PeerAuthentication"]


# --- the verify phase looks for each of them ---------------------------------------------------------------------


def test_verify_looks_for_a_scrape_target_of_every_chart_with_monitors():
    """roles/verify's verify_prometheus_expected has an entry for every chart whose ServiceMonitors or PodMonitors
    the roles switch on: by its release namespace's setting, or in the monitoring namespace by its release name (the
    start of its monitors' names), so a new add-on with monitors cannot be left out of the live check."""
    expected = yaml.safe_load((ROOT / "roles" / "verify" / "defaults" / "main.yml").read_text())["verify_prometheus_expected"]
    namespaces = " ".join(str(e["namespace"]) for e in expected)
    monitors = " ".join(str(e.get("monitor", "")) for e in expected)
    for m in MONITORS:
        if m.kind == "PrometheusRule":
            continue
        role, var = NAMESPACE_VARS[m.key]
        if role == "monitoring":
            assert f"monitoring_{m.key}_release_name" in monitors, m
        else:
            assert var in namespaces, m
