"""The e2e's run journals outlive pytest's basetemp (tests/e2e/e2e_support.keep_runs): scripts/test points
KUBESTRAP_E2E_KEEP_RUNS outside the clone, so a landing's journals can be turned into figures afterwards
(`bench/cluster_bench.py --from-runs`); the lock and the fact cache are not kept."""

from __future__ import annotations

import sys

from helpers import ROOT

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import e2e_support


def test_the_journals_are_copied_without_the_lock_and_the_facts(tmp_path):
    runs = tmp_path / "runs"
    for name, text in {"20261207T202004Z-up/events.jsonl": "{}\n", "20261207T202004Z-up/summary.json": "{}",
                       "20261207T202004Z-up/phases/artifacts.json": "{}", "locks/run.lock": "",
                       "facts/e2e-cp": "{}"}.items():  # fmt: skip
        (runs / name).parent.mkdir(parents=True, exist_ok=True)
        (runs / name).write_text(text)
    (runs / "latest").symlink_to(runs / "20261207T202004Z-up")
    kept = e2e_support.keep_runs(runs, "e2e", keep=str(tmp_path / "kept"))
    assert kept == tmp_path / "kept" / "e2e"
    assert sorted(str(p.relative_to(kept)) for p in kept.rglob("*")) == [
        "20261207T202004Z-up", "20261207T202004Z-up/events.jsonl", "20261207T202004Z-up/phases",
        "20261207T202004Z-up/phases/artifacts.json", "20261207T202004Z-up/summary.json"]
    # a second copy replaces the first; without a target nothing is copied
    (runs / "20261207T202004Z-up" / "summary.json").write_text('{"result": "ok"}')
    e2e_support.keep_runs(runs, "e2e", keep=str(tmp_path / "kept"))
    assert (kept / "20261207T202004Z-up" / "summary.json").read_text() == '{"result": "ok"}'
    assert e2e_support.keep_runs(runs, "e2e", keep="") is None


def test_scripts_test_keeps_them_outside_the_clone():
    script = (ROOT / "scripts" / "test").read_text()
    assert 'export KUBESTRAP_E2E_KEEP_RUNS="$kept/' in script
    assert 'kept="${KUBESTRAP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubestrap}/ci-runs"' in script
