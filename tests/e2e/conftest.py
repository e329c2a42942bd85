"""Fixtures of the end-to-end test (tests/e2e/e2e_support.py does the work)."""

from __future__ import annotations

import pytest
from e2e_support import start_cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    yield from start_cluster(tmp_path_factory)
