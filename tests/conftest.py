"""Shared pytest configuration; helpers for tests live in tests/helpers.py. Tests that need a cluster start the
REAL control plane of tests/k8s_real.py (one per module or session where they only add objects; the add-on tests
share `real_cluster`, tests/addons/conftest.py)."""

from __future__ import annotations
