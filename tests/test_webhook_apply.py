"""The webhook wait of metallb and cert_manager is one task file (helm_release's entry point webhook_apply):
it polls the webhook Service's endpoints until they have an address, then applies the manifest with retries,
reporting a change only when kubectl created or configured something. kubectl is a stand-in here that
answers as `kubectl get endpoints -o jsonpath` and `kubectl apply` do (no endpoints yet: empty output)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ROLE_PATHS, ROOT

KUBECTL = """#!{python}
import os, sys
state = os.environ["FAKE_KUBECTL_STATE"]
open(state + ".log", "a").write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[3] == "get":
    polls = int(open(state).read()) + 1 if os.path.exists(state) else 1
    open(state, "w").write(str(polls))
    ready = polls >= int(os.environ["FAKE_READY_AFTER"])
    print("10.0.0.5" if ready else "", end="")
elif sys.argv[3] == "apply":
    print(os.environ["FAKE_APPLY_OUT"])
"""


def _run(tmp: Path, ready_after: int, apply_out: str = "", manifest: str = "/etc/test/crs.yaml"):
    kubectl = tmp / "kubectl"
    kubectl.write_text(KUBECTL.format(python=sys.executable))
    kubectl.chmod(0o755)
    env = {**os.environ, **ROLE_PATHS, "FAKE_KUBECTL_STATE": str(tmp / "state"), "FAKE_READY_AFTER": str(ready_after),
           "FAKE_APPLY_OUT": apply_out, "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"), "ANSIBLE_NOCOWS": "1",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}  # fmt: skip
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"webhook_kubectl={kubectl}", "-e", f"webhook_manifest={manifest}",
         str(ROOT / "tests" / "playbooks" / "webhook_apply.yml")],
        capture_output=True, text=True, env=env, cwd=tmp, check=False, timeout=300,
    )  # fmt: skip
    log = (tmp / "state.log").read_text().splitlines() if (tmp / "state.log").exists() else []
    return proc, log


GET = ("--kubeconfig /etc/test/admin.conf get endpoints/test-webhook --namespace test-ns "
       "--output jsonpath={.subsets[*].addresses[*].ip}")
APPLY = "--kubeconfig /etc/test/admin.conf apply --filename /etc/test/crs.yaml"


def test_waits_for_the_endpoints_then_applies_and_reports_the_change(tmp_path: Path):
    proc, log = _run(tmp_path, ready_after=2, apply_out="ipaddresspool.metallb.io/default created")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert log == [GET, GET, APPLY]
    assert "changed=1" in proc.stdout


def test_an_unchanged_apply_is_no_change(tmp_path: Path):
    proc, log = _run(tmp_path, ready_after=1, apply_out="clusterissuer.cert-manager.io/selfsigned unchanged")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert log == [GET, APPLY]
    assert "changed=0" in proc.stdout


def test_no_endpoints_fails_after_the_retries_without_applying(tmp_path: Path):
    proc, log = _run(tmp_path, ready_after=99)
    assert proc.returncode != 0
    assert log == [GET] * 4  # the first try and 3 retries
    assert "Wait until the webhook service has endpoints" in proc.stdout


def test_without_a_manifest_it_only_waits(tmp_path: Path):
    proc, log = _run(tmp_path, ready_after=1, manifest="")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert log == [GET]


@pytest.mark.parametrize(("role", "service", "manifest"), [
    ("metallb", "metallb-webhook-service", "{{ metallb_manifest_dir }}/metallb-pool.yaml"),
    ("cert_manager", "{{ cert_manager_release_name }}-webhook", "cert-manager-issuer.yaml"),
])  # fmt: skip
def test_metallb_and_cert_manager_use_the_shared_task_file(role: str, service: str, manifest: str):
    tasks = yaml.safe_load((ROOT / "roles" / role / "tasks" / "main.yml").read_text())
    shared = [t for t in tasks if (t.get("ansible.builtin.include_role") or {}).get("tasks_from") == "webhook_apply.yml"]
    assert len(shared) == 1
    assert shared[0]["vars"]["helm_release_webhook_service"] == service
    assert manifest in shared[0]["vars"]["helm_release_webhook_manifest"]
    assert "endpoints/" not in (ROOT / "roles" / role / "tasks" / "main.yml").read_text()
