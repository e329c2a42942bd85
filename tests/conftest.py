"""Shared pytest configuration; helpers for tests live in tests/helpers.py."""
