"""The helm the test artifact mirror ships (`linux-amd64/helm`, tests/fixtures/artifact_mirror.py helm_zipapp())
runs as it must on a node: one file outside the repository, the system python3 and its standard library only,
against the session's API server double (`control_plane`, tests/conftest.py; namespace test-zipapp)."""

from __future__ import annotations

import json
import subprocess
import zipfile

from tests.fixtures.artifact_mirror import content_sources, helm_zipapp, helm_zipapp_sources


def test_zipapp_is_reproducible_and_covered_by_the_content_key():
    first = helm_zipapp()
    assert first.startswith(b"#!/usr/bin/env python3\n") and first == helm_zipapp()
    sources = helm_zipapp_sources()
    assert {"__main__.py", "kubeadm_double.py", "validator.py", "models/charts/metallb-0.16.1.yml"} <= set(sources)
    assert set(sources.values()) <= set(content_sources().values())


def test_shipped_helm_runs_outside_the_repository(control_plane, tmp_path):
    helm = tmp_path / "bin" / "helm"
    helm.parent.mkdir()
    helm.write_bytes(helm_zipapp())
    helm.chmod(0o755)
    with zipfile.ZipFile(helm) as archive:
        assert sorted(archive.namelist()) == sorted(helm_zipapp_sources())
    env = {"PATH": f"{helm.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}  # no PYTHONPATH, no venv

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["helm", *args, "--kubeconfig", str(control_plane.kubeconfig)],
                              capture_output=True, text=True, cwd=tmp_path, env=env, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    assert run("version", "--short").stdout == "v3.21.4+g4f1f4b8\n"
    assert json.loads(run("list", "-n", "test-zipapp", "-o", "json").stdout) == []
    # a chart whose model (models/charts/) and CRD models (models/) come from the zip
    (tmp_path / "values.yaml").write_text("speaker:\n  frr:\n    enabled: false\n")
    run("upgrade", "--install", "metallb", "metallb", "--repo", "https://metallb.github.io/metallb", "--version", "0.16.1",
        "-n", "test-zipapp", "--create-namespace", "-f", str(tmp_path / "values.yaml"))  # fmt: skip
    listed = json.loads(run("list", "-A", "-o", "json").stdout)
    assert [(r["chart"], r["status"]) for r in listed if r["namespace"] == "test-zipapp"] == [("metallb-0.16.1", "deployed")]
    control_plane.kubectl("-n", "test-zipapp", "rollout", "status", "deployment/metallb-controller", "--timeout=10s")
    control_plane.kubectl("get", "crd", "ipaddresspools.metallb.io")
