"""Every manifest and custom resource the add-on roles render, sent to a REAL kube-apiserver (built from its Go
module, kubestrap/lab/sources/) with the upstream CRDs of the pinned charts installed (../shared/reference/crds/):
server-side validation with strict field checks (`kubectl apply --dry-run=server --validate=strict`), so an
unknown or misspelt field, a wrong type or an enum value a CRD does not allow is refused by upstream's own
schema, not by our reading of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.reference import REFERENCE

CRDS = REFERENCE / "crds"


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    from k8s_real import started

    with started(tmp_path_factory.mktemp("real-apiserver")) as plane:
        files = sorted(CRDS.glob("*/*.yaml"))
        assert files, f"no upstream CRDs under {CRDS}"
        for path in files:
            plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        plane.kubectl("wait", "--for=condition=Established", "--timeout=120s", "crd", "--all")
        yield plane


def _kinds_served(plane) -> set[tuple[str, str]]:
    group_versions = json.loads(plane.kubectl("get", "--raw", "/apis").stdout)
    served = set()
    for group in group_versions["groups"]:
        for version in group["versions"]:
            resources = json.loads(plane.kubectl("get", "--raw", f"/apis/{version['groupVersion']}").stdout)
            served |= {(version["groupVersion"], r["kind"]) for r in resources["resources"] if "/" not in r["name"]}
    core = json.loads(plane.kubectl("get", "--raw", "/api/v1").stdout)
    served |= {("v1", r["kind"]) for r in core["resources"] if "/" not in r["name"]}
    return served


def test_every_rendered_manifest_passes_the_real_api_servers_strict_validation(rendered, apiserver, tmp_path: Path):
    served = _kinds_served(apiserver)
    docs = [(name, doc) for name, doc in rendered.docs() if isinstance(doc, dict) and doc.get("kind")]
    assert docs, "nothing rendered"
    namespaces = sorted({doc["metadata"]["namespace"] for _, doc in docs if doc["metadata"].get("namespace")})
    for namespace in namespaces:
        apiserver.kubectl("create", "namespace", namespace, check=False)
    errors, checked = [], 0
    for name, doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in served:
            errors.append(f"{name}: {doc['apiVersion']} {doc['kind']} is served by no upstream CRD we have")
            continue
        done = apiserver.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                                 stdin=yaml.safe_dump(doc), check=False)  # fmt: skip
        checked += 1
        if done.returncode != 0:
            errors.append(f"{name} ({doc['kind']} {doc['metadata'].get('name')}): {done.stderr.strip()}")
    assert errors == [], "\n".join(errors)
    assert checked == len(docs)


def test_the_real_api_server_refuses_an_unknown_field_of_a_custom_resource(apiserver):
    """The check above can fail: a field the upstream CRD does not have is refused."""
    apiserver.kubectl("create", "namespace", "test-strict", check=False)
    pool = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": "strict", "namespace": "test-strict"},
            "spec": {"addresses": ["192.0.2.10-192.0.2.20"], "autoAsign": False}}  # fmt: skip
    done = apiserver.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                             stdin=yaml.safe_dump(pool), check=False)  # fmt: skip
    assert done.returncode != 0 and "autoAsign" in done.stderr, done.stderr
    pool["spec"]["autoAssign"] = pool["spec"].pop("autoAsign")
    ok = apiserver.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=yaml.safe_dump(pool))
    assert "dry run" in ok.stdout, ok.stdout
