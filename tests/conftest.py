"""Shared pytest configuration; helpers for tests live in tests/helpers.py."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    """ONE control plane of the kubeadm/kubelet/kube-apiserver doubles for the session (tests/k8s_double_cluster.py),
    shared by the tests that only add objects to a cluster of the doubles: the API server double's tests, the
    helm zipapp test (the add-on phase and helm_release tests run on the real API server: `real_cluster`,
    tests/addons/conftest.py). Each keeps to namespaces of its own, named test-*."""
    from k8s_double_cluster import started

    with started(tmp_path_factory.mktemp("control-plane")) as cluster:
        yield cluster
