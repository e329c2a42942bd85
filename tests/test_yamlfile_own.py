"""yamlfile.load_own: the fast loader for the repository's own YAML (every command reads the roles' argument specs)
reads them exactly as the strict loader does, and a broken file is still one line naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT

from kubestrap import schema, yamlfile

OWN = sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")) + sorted((ROOT / "playbooks").glob("*.yml"))


def test_the_repositorys_own_files_read_the_same_as_with_the_strict_loader():
    assert len(OWN) > 40
    for path in OWN:
        assert yamlfile.load_own(path) == yamlfile.load(path), path


def test_the_settings_the_inventory_check_knows_come_from_the_fast_loader(monkeypatch: pytest.MonkeyPatch):
    fast = schema.role_specs()
    monkeypatch.setattr(yamlfile, "load_own", yamlfile.load)
    assert fast == schema.role_specs() and len(fast) > 400


def test_a_broken_file_is_one_line_with_file_and_line(tmp_path: Path):
    broken = tmp_path / "argument_specs.yml"
    broken.write_text("argument_specs:\n  main:\n    options: [unclosed\n")
    with pytest.raises(yamlfile.YamlError) as caught:
        yamlfile.load_own(broken)
    message = str(caught.value)
    assert message.startswith(f"{broken}:") and "\n" not in message
    assert message.split(":")[1].isdigit()
