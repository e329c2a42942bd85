"""Shared pytest configuration; helpers for tests live in tests/helpers.py."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    """ONE control plane of the kubeadm/kubelet/kube-apiserver doubles for the session (tests/k8s_double_cluster.py),
    shared by the tests that only add objects to a cluster: the add-on phase, the helm double and helm_release
    tests, the API server tests. Each keeps to namespaces of its own; those of tests other than the add-on phase
    are named test-*."""
    from k8s_double_cluster import started

    with started(tmp_path_factory.mktemp("control-plane")) as cluster:
        yield cluster
