"""`kubeadm join` is tried again only when its preflight could not read the kubeadm-config ConfigMap in time
(kubeadm's fixed 10 s client timeout against a busy API server, before anything is written; seen on the lab when
the control plane was starved): any other failure, a wrong token for one, stops at once with kubeadm's message."""

from __future__ import annotations

import jinja2
import yaml
from helpers import ROOT

TASKS = ROOT / "roles" / "kubeadm_join" / "tasks" / "main.yml"
TIMEOUT = ('error execution phase preflight: unable to fetch the kubeadm-config ConfigMap: failed to get config map: '
           'Get "https://10.77.0.10:6443/api/v1/namespaces/kube-system/configmaps/kubeadm-config?timeout=10s": '
           'net/http: request canceled (Client.Timeout exceeded while awaiting headers)')  # fmt: skip
BAD_TOKEN = ('error execution phase preflight: couldn\'t validate the identity of the API Server: could not find a JWS '
             'signature in the cluster-info ConfigMap for token ID "abcdef"')  # fmt: skip


def _join_task() -> dict:
    join = next(t for t in yaml.safe_load(TASKS.read_text()) if t.get("name") == "Join the node")
    return next(t for t in join["block"] if t.get("name", "").startswith("Run kubeadm join"))


def _stops(result: dict) -> bool:
    expression = _join_task()["until"]
    return jinja2.Environment().compile_expression(expression)(kubeadm_join_run=result)


def test_only_the_config_fetch_timeout_is_tried_again():
    task = _join_task()
    assert task["register"] == "kubeadm_join_run" and task["retries"] == "{{ kubeadm_join_config_fetch_retries }}"
    assert _stops({"rc": 0, "stderr": ""})
    assert _stops({"changed": False, "skipped": True})  # `creates` found kubelet.conf: no rc at all
    assert not _stops({"rc": 1, "stderr": TIMEOUT})
    assert _stops({"rc": 1, "stderr": BAD_TOKEN})
    defaults = yaml.safe_load((ROOT / "roles" / "kubeadm_join" / "defaults" / "main.yml").read_text())
    assert 0 < defaults["kubeadm_join_config_fetch_retries"] <= 3  # bounded
