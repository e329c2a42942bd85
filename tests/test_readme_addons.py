"""The README's add-on table (section "Add-ons") says what group_vars/all says: every switch of addons_enabled with
its default, and every pinned chart of kubestrap_charts at its version, each under one add-on."""

from __future__ import annotations

import re

import yaml
from helpers import ROOT


def _table() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n### Add-ons\n", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_the_readme_lists_every_addon_with_its_default_and_pinned_charts():
    switches = yaml.safe_load((ROOT / "group_vars/all/addons.yml").read_text())["addons_enabled"]
    charts = yaml.safe_load((ROOT / "group_vars/all/versions.yml").read_text())["kubestrap_charts"]
    rows = _table()
    assert {row[0].strip("`") for row in rows} == set(switches)
    listed = []
    for name, default, pinned, _what in rows:
        assert default == ("on" if switches[name.strip("`")] else "off"), name
        for entry in pinned.split(", "):
            chart, version = entry.rsplit(" ", 1)
            listed.append((chart, version))
    assert sorted(listed) == sorted((c["chart"], str(c["version"])) for c in charts.values())
    assert all(re.fullmatch(r"v?\d+\.\d+\.\d+", version) for _, version in listed)
