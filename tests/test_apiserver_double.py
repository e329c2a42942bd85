"""The kube-apiserver double (tests/doubles/kubeadm) driven by REAL kubectl 1.36 on the session's control plane
(`control_plane`, tests/conftest.py): discovery refuses unknown types, OpenAPI v3 lets kubectl ask for strict
server-side field validation of custom resources, client-side apply reports created/unchanged, rollout status
reads workload status, and a deleted CustomResourceDefinition takes its custom resources along. Namespaces
test-api-*."""

from __future__ import annotations

import json

import pytest

GROUP = "test.kubestrap.dev"


def crd(plural: str, kind: str) -> str:
    return f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.{GROUP}}}
spec:
  group: {GROUP}
  names: {{kind: {kind}, listKind: {kind}List, plural: {plural}, singular: {kind.lower()}}}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {{type: integer}}
"""


def widget(namespace: str, name: str, spec: str = "{size: 3}") -> str:
    return f"apiVersion: {GROUP}/v1\nkind: Widget\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"


def deployment(namespace: str, name: str) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: main, image: registry.example/{name}:1}}]}}
"""


@pytest.fixture(scope="module")
def api(control_plane):
    """The shared control plane with namespace test-api and the Widget CustomResourceDefinition."""
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: test-api}\n---\n"
    control_plane.kubectl("apply", "-f", "-", stdin=namespace + crd("widgets", "Widget"))
    return control_plane


def test_unknown_resource_types_are_refused_like_the_real_server(api):
    out = api.kubectl("get", "frobnicators", check=False)
    assert out.returncode == 1 and out.stderr.strip() == 'error: the server doesn\'t have a resource type "frobnicators"'
    out = api.kubectl("get", "--raw", "/apis/apps/v1/namespaces/test-api/frobnicators", check=False)
    assert out.returncode == 1 and "the server could not find the requested resource" in out.stderr
    gizmo = "apiVersion: test.example/v1\nkind: Gizmo\nmetadata: {name: g, namespace: test-api}\n"
    out = api.kubectl("apply", "-f", "-", stdin=gizmo, check=False)
    assert out.returncode == 1
    assert out.stderr == (
        'error: resource mapping not found for name: "g" namespace: "test-api" from "STDIN": no matches for kind "Gizmo" '
        'in version "test.example/v1"\nensure CRDs are installed first\n'
    )


def test_apply_reports_created_then_unchanged(api):
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: test-api-apply}\n"
    assert api.kubectl("apply", "-f", "-", stdin=namespace).stdout == "namespace/test-api-apply created\n"
    assert api.kubectl("apply", "-f", "-", stdin=namespace).stdout == "namespace/test-api-apply unchanged\n"
    w1 = widget("test-api-apply", "w1")
    assert api.kubectl("apply", "-f", "-", stdin=w1).stdout == f"widget.{GROUP}/w1 created\n"
    assert api.kubectl("apply", "-f", "-", stdin=w1).stdout == f"widget.{GROUP}/w1 unchanged\n"
    resized = widget("test-api-apply", "w1", "{size: 4}")
    assert api.kubectl("apply", "-f", "-", stdin=resized).stdout == f"widget.{GROUP}/w1 configured\n"
    got = json.loads(api.kubectl("-n", "test-api-apply", "get", "widget", "w1", "-o", "json").stdout)
    assert got["spec"] == {"size": 4} and got["metadata"]["generation"] == 2


def test_unknown_field_of_a_custom_resource_is_refused_by_strict_field_validation(api):
    typo = widget("test-api", "w2", "{size: 3, colour: red}")
    out = api.kubectl("apply", "-f", "-", stdin=typo, check=False)
    assert out.returncode == 1
    assert 'Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.colour"' in (
        out.stderr
    )
    assert api.kubectl("-n", "test-api", "get", "widget", "w2", check=False).returncode == 1
    wrong_type = widget("test-api", "w2", "{size: three}")
    out = api.kubectl("apply", "-f", "-", stdin=wrong_type, check=False)
    assert out.returncode == 1 and out.stderr == (
        'The Widget "w2" is invalid: spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"\n'
    )
    ignored = api.kubectl("apply", "--validate=false", "-f", "-", stdin=typo)  # fieldValidation=Ignore: pruned
    assert ignored.stdout == f"widget.{GROUP}/w2 created\n"
    assert json.loads(api.kubectl("-n", "test-api", "get", "widget", "w2", "-o", "json").stdout)["spec"] == {"size": 3}


def test_rollout_status_follows_the_workload_status(api):
    api.kubectl("apply", "-f", "-", stdin=deployment("test-api", "ready") + "---\n" + deployment("test-api", "unready"))
    status = {
        "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
    }  # fmt: skip
    api.kubectl("-n", "test-api", "patch", "deployment", "ready", "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": status}))  # fmt: skip
    done = api.kubectl("-n", "test-api", "rollout", "status", "deployment/ready", "--timeout=10s")
    assert done.stdout == 'deployment "ready" successfully rolled out\n'
    stuck = api.kubectl("-n", "test-api", "rollout", "status", "deployment/unready", "--timeout=2s", check=False)
    assert stuck.returncode == 1 and stuck.stderr.strip() == "error: timed out waiting for the condition"


def test_deleting_a_crd_deletes_its_custom_resources(api):
    gadgets = crd("gadgets", "Gadget")
    api.kubectl("apply", "-f", "-", stdin=gadgets)
    gadget = widget("test-api", "g1").replace("kind: Widget", "kind: Gadget")
    api.kubectl("apply", "-f", "-", stdin=gadget)
    assert api.kubectl("-n", "test-api", "get", "gadgets", "-o", "name").stdout == f"gadget.{GROUP}/g1\n"
    deleted = api.kubectl("delete", "crd", f"gadgets.{GROUP}")
    assert deleted.stdout == f'customresourcedefinition.apiextensions.k8s.io "gadgets.{GROUP}" deleted\n'
    gone = api.kubectl("get", "--raw", f"/apis/{GROUP}/v1/namespaces/test-api/gadgets", check=False)
    assert gone.returncode == 1 and "the server could not find the requested resource" in gone.stderr
    api.kubectl("apply", "-f", "-", stdin=gadgets)  # defined again: the old custom resources are not back
    listed = api.kubectl("get", "--raw", f"/apis/{GROUP}/v1/namespaces/test-api/gadgets")
    assert json.loads(listed.stdout)["items"] == []
