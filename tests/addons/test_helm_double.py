"""The helm contract double (tests/doubles/helm) against the session's API server double (`control_plane`,
tests/conftest.py): strict about charts, versions, values keys and flags, with helm's messages; releases
stored as helm 3 stores them (Secrets), the chart's workloads created through the API. Each test works in a
namespace of its own (test-helm-<test>)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.addons.conftest import ROOT

HELM = ROOT / "tests" / "doubles" / "helm"
REPO = "https://helm.cilium.io/"


class Helm:
    """The helm double run with the admin kubeconfig of the shared control plane, in one namespace."""

    def __init__(self, cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(HELM), *args, "--kubeconfig", str(self.cluster.kubeconfig)],
            capture_output=True, text=True, check=False, env={**os.environ, "HOME": self.cluster.home},
        )  # fmt: skip

    def install(self, tmp: Path, values: dict, *extra: str, version: str = "1.20.2") -> subprocess.CompletedProcess[str]:
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        return self(
            "upgrade", "--install", "cilium", "cilium", "--repo", REPO, "--version", version, "--namespace", self.namespace,
            "--create-namespace", "-f", str(path), "--wait", "--timeout", "10m", *extra,
        )  # fmt: skip

    def releases(self) -> list[dict]:
        out = self("list", "-n", self.namespace, "-o", "json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


@pytest.fixture
def helm(control_plane, request) -> Helm:
    return Helm(control_plane, "test-helm-" + re.sub(r"[^a-z0-9]+", "-", request.node.name[len("test_") :])[:40].strip("-"))


def test_says_which_program_it_stands_for():
    head = HELM.read_text().splitlines()[:3]
    assert head[0] == "#!/usr/bin/env python3" and "helm v3.21.4" in head[1]
    assert os.access(HELM, os.X_OK)


def test_version(helm):
    out = helm("version")
    assert out.returncode == 0 and 'Version:"v3.21.4"' in out.stdout
    assert helm("version", "--short").stdout.startswith("v3.21.4+g")


def test_list_is_empty_at_first(helm):
    assert helm.releases() == []
    table = helm("list", "-n", helm.namespace)
    assert table.returncode == 0 and table.stdout == "NAME\tNAMESPACE\tREVISION\tUPDATED\tSTATUS\tCHART\tAPP VERSION\n"


def test_install_then_upgrade_then_list_and_get_values(helm, tmp_path):
    first = helm.install(tmp_path, {"kubeProxyReplacement": True, "operator": {"replicas": 1}})
    assert first.returncode == 0, first.stderr
    assert 'Release "cilium" does not exist. Installing it now.' in first.stdout and "REVISION: 1" in first.stdout
    second = helm.install(tmp_path, {"kubeProxyReplacement": True, "operator": {"replicas": 2}})
    assert second.returncode == 0 and 'Release "cilium" has been upgraded. Happy Helming!' in second.stdout
    listed = json.loads(helm("list", "--namespace", helm.namespace, "--output", "json", "--all").stdout)
    assert [(r["name"], r["namespace"], r["chart"], r["status"], r["revision"]) for r in listed] == [
        ("cilium", helm.namespace, "cilium-1.20.2", "deployed", "2")
    ]
    assert sorted(listed[0]) == ["app_version", "chart", "name", "namespace", "revision", "status", "updated"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} \+0000 UTC", listed[0]["updated"])
    assert helm.releases() == listed
    assert json.loads(helm("list", "-n", "test-helm-elsewhere", "-o", "json").stdout) == []
    got = helm("get", "values", "cilium", "-n", helm.namespace, "-o", "json")
    assert got.returncode == 0 and json.loads(got.stdout) == {"kubeProxyReplacement": True, "operator": {"replicas": 2}}
    # stored where helm 3 stores releases, and the chart's workloads made through the API, ready
    secrets = helm.cluster.kubectl("-n", helm.namespace, "get", "secrets", "-l", "owner=helm", "-o", "json").stdout
    labels = {s["metadata"]["name"]: s["metadata"]["labels"] for s in json.loads(secrets)["items"]}
    assert {name: label["status"] for name, label in labels.items()} == {
        "sh.helm.release.v1.cilium.v1": "superseded",
        "sh.helm.release.v1.cilium.v2": "deployed",
    }
    operator = json.loads(helm.cluster.kubectl("-n", helm.namespace, "get", "deployment", "cilium-operator", "-o", "json").stdout)
    assert operator["spec"]["replicas"] == 2 and operator["status"]["readyReplicas"] == 2
    helm.cluster.kubectl("-n", helm.namespace, "rollout", "status", "daemonset/cilium", "--timeout=10s")


def test_list_all_namespaces_keeps_releases_of_the_same_name_apart(helm, tmp_path):
    other = Helm(helm.cluster, helm.namespace + "-b")
    assert helm.install(tmp_path, {}).returncode == 0 and other.install(tmp_path, {}).returncode == 0
    assert other.install(tmp_path, {"operator": {"replicas": 1}}).returncode == 0
    listed = json.loads(helm("list", "-A", "-o", "json").stdout)
    mine = [(r["namespace"], r["name"], r["revision"]) for r in listed if r["namespace"].startswith(helm.namespace)]
    assert mine == [(helm.namespace, "cilium", "1"), (other.namespace, "cilium", "2")]


def test_rejects_unknown_flags(helm, tmp_path):
    out = helm.install(tmp_path, {}, "--reuse-valuez")
    assert out.returncode == 1 and out.stderr.strip() == "Error: unknown flag: --reuse-valuez"
    out = helm("list", "-x")
    assert out.returncode == 1 and "unknown shorthand flag: 'x' in -x" in out.stderr


def test_rejects_unknown_commands(helm):
    out = helm("repo", "add", "cilium", REPO)
    assert out.returncode == 1 and out.stderr.startswith('Error: unknown command "repo" for "helm"')


def test_rejects_unknown_chart_and_version(helm, tmp_path):
    out = helm.install(tmp_path, {}, version="1.19.0")
    assert out.returncode == 1
    assert out.stderr.strip() == 'Error: chart "cilium" version "1.19.0" not found in https://helm.cilium.io/ repository'
    out = helm("upgrade", "--install", "x", "ciliun", "--repo", REPO, "--version", "1.20.2", "-n", helm.namespace)
    assert out.returncode == 1 and out.stderr.strip() == 'Error: chart "ciliun" not found in https://helm.cilium.io/ repository'
    assert helm.releases() == []


def test_rejects_values_keys_absent_from_the_chart_model(helm, tmp_path):
    out = helm.install(tmp_path, {"hubble": {"relay": {"enbled": True}}})
    assert out.returncode == 1
    assert "values don't meet the specifications of the schema(s) in the following chart(s):\ncilium:" in out.stderr
    assert "- at '/hubble/relay': additional properties 'enbled' not allowed" in out.stderr
    assert helm.releases() == []


def test_upgrade_without_install_of_a_missing_release_fails(helm, tmp_path):
    (tmp_path / "values.yaml").write_text("{}\n")
    out = helm("upgrade", "cilium", "cilium", "--repo", REPO, "--version", "1.20.2", "-n", helm.namespace,
               "-f", str(tmp_path / "values.yaml"))  # fmt: skip
    assert out.returncode == 1 and 'UPGRADE FAILED: "cilium" has no deployed releases' in out.stderr


def test_rejects_bad_timeout_missing_values_file_and_missing_namespace(helm, tmp_path):
    out = helm.install(tmp_path, {}, "--timeout", "ten minutes")
    assert out.returncode == 1 and 'time: invalid duration "ten minutes"' in out.stderr
    out = helm("upgrade", "--install", "cilium", "cilium", "--version", "1.20.2", "-f", str(tmp_path / "missing.yaml"))
    assert out.returncode == 1 and "no such file or directory" in out.stderr
    out = helm("upgrade", "--install", "cilium", "cilium", "--version", "1.20.2", "-n", helm.namespace)
    assert out.returncode == 1 and f'namespaces "{helm.namespace}" not found' in out.stderr


def test_get_values_of_a_missing_release_fails(helm):
    out = helm("get", "values", "nope", "-n", helm.namespace, "-o", "json")
    assert out.returncode == 1 and out.stderr.strip() == "Error: release: not found"
