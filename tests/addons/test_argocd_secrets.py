"""Argo CD's admin password (issue 16): bcrypt with a random salt, yet stable across runs (the hash is kept
next to the password and reused while it matches), and the password files live in the cluster's secrets
directory (kubestrap_secrets_dir), the one the run journal's redactor reads."""

from __future__ import annotations

import importlib.util
import stat
import warnings

import yaml

from .conftest import ROOT, Rendered, render

PLUGIN = ROOT / "roles" / "argocd" / "filter_plugins" / "argocd_bcrypt.py"


def _plugin():
    spec = importlib.util.spec_from_file_location("argocd_bcrypt_plugin", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _verifies(password: str, hashed: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, hashed) == hashed


def test_salt_is_random_not_derived_from_the_password():
    bcrypt = _plugin().argocd_bcrypt
    first, second = bcrypt("same password"), bcrypt("same password")
    assert first != second
    assert first[7:29] != second[7:29]  # the salts differ
    assert _verifies("same password", first) and _verifies("same password", second)


def test_a_stored_hash_is_reused_while_it_matches_the_password():
    bcrypt = _plugin().argocd_bcrypt
    stored = bcrypt("s3cret")
    assert bcrypt("s3cret", stored) == stored
    fresh = bcrypt("changed", stored)  # the password file was edited: a new hash
    assert fresh != stored and _verifies("changed", fresh)
    assert _verifies("s3cret", bcrypt("s3cret", "not a bcrypt hash"))


def test_password_files_default_to_the_secrets_directory_setting():
    defaults = yaml.safe_load((ROOT / "roles" / "argocd" / "defaults" / "main.yml").read_text())
    assert defaults["argocd_admin_password_file"] == "{{ kubestrap_secrets_dir }}/argocd-admin-password"
    assert defaults["argocd_admin_password_hash_file"] == "{{ argocd_admin_password_file }}.bcrypt"
    monitoring = yaml.safe_load((ROOT / "roles" / "monitoring" / "defaults" / "main.yml").read_text())
    assert monitoring["monitoring_grafana_admin_password_file"] == "{{ kubestrap_secrets_dir }}/grafana-admin-password"


def test_rerender_keeps_the_hash_and_stores_it_privately(tmp_path_factory):
    secrets = tmp_path_factory.mktemp("secrets") / "cluster"
    overrides = {"argocd_admin_password_file": str(secrets / "argocd-admin-password")}
    first = Rendered(render(tmp_path_factory.mktemp("argocd1"), overrides, roles=["argocd"]))
    second = Rendered(render(tmp_path_factory.mktemp("argocd2"), overrides, roles=["argocd"]))
    key = lambda r: r.values["argocd"]["argocd"]["configs"]["secret"]["argocdServerAdminPassword"]  # noqa: E731
    assert key(first) == key(second)
    password = (secrets / "argocd-admin-password").read_text().strip()
    assert _verifies(password, key(first))
    stored = secrets / "argocd-admin-password.bcrypt"
    assert stored.read_text().strip() == key(first)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and stat.S_IMODE(secrets.stat().st_mode) == 0o700
