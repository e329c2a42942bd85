"""The tracker's per-host counts: a no_log result arrives censored (no "changed" flag), so the
playbook's own stats decide; the journal's changed counts must match what Ansible reports."""

from __future__ import annotations

from kubestrap.tracker import PhaseTracker as Tracker


def test_a_censored_no_log_change_is_counted_from_the_playbook_stats():
    tracker = Tracker("join")
    tracker.feed({"event": "runner_on_ok", "event_data": {"host": "cp1", "task": "Mint a short-lived join token",
                                                           "res": {"censored": "the output has been hidden"}}})
    tracker.feed({"event": "runner_on_ok", "event_data": {"host": "w4", "task": "Join", "res": {"changed": True}}})
    assert tracker.host("cp1").changed == 0
    tracker.feed({"event": "playbook_on_stats", "event_data": {"changed": {"cp1": 1, "w4": 1}, "ok": {"cp1": 4, "w4": 9}}})
    assert tracker.host("cp1").changed == 1
    assert tracker.host("w4").changed == 1


def test_stats_never_lower_a_count():
    tracker = Tracker("join")
    tracker.feed({"event": "runner_on_ok", "event_data": {"host": "cp1", "task": "t", "res": {"changed": True}}})
    tracker.feed({"event": "playbook_on_stats", "event_data": {"changed": {}}})
    assert tracker.host("cp1").changed == 1
