"""Unit tests of the helm contract double (tests/doubles/helm)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.addons.conftest import ROOT

HELM = ROOT / "tests" / "doubles" / "helm"
REPO = "https://helm.cilium.io/"


@pytest.fixture
def helm(tmp_path):
    env = {**os.environ, "HELM_DOUBLE_STATE_DIR": str(tmp_path / "state")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(HELM), *args], capture_output=True, text=True, env=env, check=False)

    return run


def values_file(tmp_path: Path, values: dict, name: str = "values.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def install(helm, tmp_path, values, *extra, version="1.20.2", name="cilium"):
    return helm(
        "upgrade", "--install", name, "cilium", "--repo", REPO, "--version", version, "--namespace", "kube-system",
        "--create-namespace", "--kubeconfig", "/etc/kubernetes/admin.conf", "-f", values_file(tmp_path, values),
        "--wait", "--timeout", "10m", *extra,
    )  # fmt: skip


def test_says_which_program_it_stands_for():
    head = HELM.read_text().splitlines()[:3]
    assert head[0].startswith("#!") and "helm v3.21.4" in head[1]
    assert os.access(HELM, os.X_OK)


def test_version(helm):
    out = helm("version")
    assert out.returncode == 0 and 'Version:"v3.21.4"' in out.stdout
    assert helm("version", "--short").stdout.startswith("v3.21.4+g")


def test_list_is_empty_json_at_first(helm):
    out = helm("list", "-n", "kube-system", "-o", "json")
    assert out.returncode == 0 and json.loads(out.stdout) == []


def test_install_then_upgrade_then_list_and_get_values(helm, tmp_path):
    first = install(helm, tmp_path, {"kubeProxyReplacement": True, "operator": {"replicas": 1}})
    assert first.returncode == 0, first.stderr
    assert 'Release "cilium" does not exist. Installing it now.' in first.stdout and "REVISION: 1" in first.stdout
    second = install(helm, tmp_path, {"kubeProxyReplacement": True, "operator": {"replicas": 2}})
    assert second.returncode == 0 and 'Release "cilium" has been upgraded. Happy Helming!' in second.stdout
    listed = json.loads(helm("list", "--namespace", "kube-system", "--output", "json", "--all").stdout)
    assert [(r["name"], r["chart"], r["status"], r["revision"]) for r in listed] == [("cilium", "cilium-1.20.2", "deployed", "2")]
    assert json.loads(helm("list", "-n", "other", "-o", "json").stdout) == []
    got = helm("get", "values", "cilium", "-n", "kube-system", "-o", "json")
    assert got.returncode == 0 and json.loads(got.stdout) == {"kubeProxyReplacement": True, "operator": {"replicas": 2}}


def test_rejects_unknown_flags(helm, tmp_path):
    out = install(helm, tmp_path, {}, "--reuse-valuez")
    assert out.returncode == 1 and out.stderr.strip() == "Error: unknown flag: --reuse-valuez"
    out = helm("list", "-x")
    assert out.returncode == 1 and "unknown shorthand flag: 'x' in -x" in out.stderr


def test_rejects_unknown_commands(helm):
    out = helm("repo", "add", "cilium", REPO)
    assert out.returncode == 1 and out.stderr.startswith('Error: unknown command "repo" for "helm"')


def test_rejects_unknown_chart_version(helm, tmp_path):
    out = install(helm, tmp_path, {}, version="1.19.0")
    assert out.returncode == 1 and 'chart "cilium" version "1.19.0" not found in https://helm.cilium.io/ repository' in out.stderr
    assert json.loads(helm("list", "-n", "kube-system", "-o", "json").stdout) == []


def test_rejects_values_keys_absent_from_the_chart_model(helm, tmp_path):
    out = install(helm, tmp_path, {"hubble": {"relay": {"enbled": True}}})
    assert out.returncode == 1
    assert "values don't meet the specifications" in out.stderr
    assert "- at '/hubble/relay': additional properties 'enbled' not allowed" in out.stderr


def test_upgrade_without_install_of_a_missing_release_fails(helm, tmp_path):
    out = helm("upgrade", "cilium", "cilium", "--repo", REPO, "--version", "1.20.2", "-n", "kube-system",
               "-f", values_file(tmp_path, {}))  # fmt: skip
    assert out.returncode == 1 and 'UPGRADE FAILED: "cilium" has no deployed releases' in out.stderr


def test_rejects_bad_timeout_and_missing_values_file(helm, tmp_path):
    out = install(helm, tmp_path, {}, "--timeout", "ten minutes")
    assert out.returncode == 1 and "invalid duration" in out.stderr
    out = helm("upgrade", "--install", "cilium", "cilium", "--version", "1.20.2", "-f", str(tmp_path / "missing.yaml"))
    assert out.returncode == 1 and "no such file or directory" in out.stderr


def test_get_values_of_a_missing_release_fails(helm):
    out = helm("get", "values", "nope", "-n", "kube-system", "-o", "json")
    assert out.returncode == 1 and out.stderr.strip() == "Error: release: not found"
