"""The tracker's per-host counts: a no_log result arrives censored (no "changed" flag), so the
playbook's own stats decide; the journal's changed counts must match what Ansible reports."""

from __future__ import annotations

from pathlib import Path

from kubestrap import runner
from kubestrap.journal import Journal
from kubestrap.phases import Phase
from kubestrap.redact import Redactor
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


def test_a_failure_a_rescue_handled_is_no_failure_once_ansible_says_so():
    """A control-plane join that failed once, was undone by its block's rescue and joined the second time (the HA lab):
    Ansible reports the first failure as it happens but counts it as rescued, and the playbook succeeds; the phase
    must not be reported failed for it. A failure that stands (the host's last) stays."""
    tracker = Tracker("join")
    first = {"host": "cp2", "task": "Run kubeadm join as a control plane", "res": {"msg": "non-zero return code", "rc": 1}}
    tracker.feed({"event": "runner_on_failed", "event_data": first})
    tracker.feed({"event": "runner_on_ok", "event_data": {"host": "cp2", "task": "again", "res": {"changed": True}}})
    tracker.feed({"event": "runner_on_failed", "event_data": {**first, "host": "cp3"}})
    tracker.feed({"event": "runner_on_failed", "event_data": {**first, "host": "cp3", "task": "Report the failed join"}})
    assert [f.host for f in tracker.failures] == ["cp2", "cp3", "cp3"]  # as they happen
    tracker.feed({"event": "playbook_on_stats", "event_data": {"changed": {"cp2": 1}, "failures": {"cp3": 1},
                                                               "rescued": {"cp2": 1, "cp3": 1}}})  # fmt: skip
    assert [(f.host, f.task) for f in tracker.failures] == [("cp3", "Report the failed join")]
    assert [(f.host, f.task) for f in tracker.rescued] == [("cp2", first["task"]), ("cp3", first["task"])]
    assert tracker.host("cp2").status == "changed" and tracker.host("cp2").failed == 0
    assert tracker.host("cp3").status == "failed" and tracker.totals()["failed"] == 1


def failure_of(res: dict) -> str:
    tracker = Tracker("join")
    tracker.feed({"event": "runner_on_failed", "event_data": {"host": "w4", "task": "Run kubeadm join", "res": res}})
    return tracker.failures[0].message


def test_a_failed_command_is_explained_by_its_error_line_not_by_ansibles_generic_words():
    # what kubeadm join printed when a Node of that name was still registered (seen on the lab)
    res = {
        "msg": "non-zero return code",
        "rc": 1,
        "stdout": "[preflight] Running pre-flight checks",
        "stderr": 'error execution phase kubelet-start: a Node with name "w4" and status "Ready" already exists in '
                  "the cluster. You must delete the existing Node or change the name of this new joining Node\n"
                  "To see the stack trace of this error execute with --v=5 or higher",
    }  # fmt: skip
    message = failure_of(res)
    assert message.startswith("non-zero return code (1): error execution phase kubelet-start: a Node with name")
    assert "stack trace" not in message


def test_a_specific_module_message_is_kept_and_a_bare_output_uses_its_last_line():
    assert failure_of({"msg": "disk /dev/sdz is missing", "stderr": "noise"}) == "disk /dev/sdz is missing"
    assert failure_of({"msg": "non-zero return code", "rc": 2, "stderr": "one\ntwo"}) == "non-zero return code (2): two"
    assert failure_of({}) == "no message"
    assert failure_of({"censored": "hidden"}).startswith("output hidden by no_log")


def test_a_lost_host_is_named_in_one_readable_sentence(tmp_path: Path):
    # what Ansible 2.19 reported for a worker VM killed mid-phase (seen on the lab): its message ends
    # in "over ssh: " and SSH's empty output
    tracker = Tracker("node_prep")
    lost = 'Task failed: Data could not be sent to remote host "127.0.0.1". Make sure this host can be reached over ssh: '
    tracker.feed({"event": "runner_on_unreachable",
                  "event_data": {"host": "w2", "task": "Gather facts", "res": {"msg": lost, "unreachable": True}}})
    outcome = runner.PhaseOutcome(Phase("node_prep", Path("node_prep.yml"), "node_prep"), tracker, 9.0, "failed", 4)
    journal = Journal("up", Redactor(), base=tmp_path)
    message = runner.failure_message(outcome, "bootstrap.py up", journal)
    journal.close()
    assert message.startswith("host w2 unreachable in phase node_prep (task 'Gather facts'): Task failed:")
    assert "reached over ssh. Check that the host is up" in message
    assert "--from-phase node_prep" in message


def test_a_loop_task_is_explained_by_its_failed_item_not_by_ansibles_loop_summary():
    # a reset of a worker whose VM had died (seen on the lab): Ansible's message is "All items completed"
    refused = "Task failed: Failed to connect to the host via ssh: ssh: connect to host 127.0.0.1 port 35351: Connection refused"
    res = {"msg": "All items completed", "unreachable": True, "results": [
        {"unreachable": True, "msg": refused, "item": "/usr/local/bin/kubeadm", "_ansible_item_label": "/usr/local/bin/kubeadm"},
        {"unreachable": True, "msg": refused, "item": "/etc/kubernetes/kubelet.conf"},
    ]}  # fmt: skip
    assert failure_of(res) == f"{refused} (item /usr/local/bin/kubeadm)"
    failed = {"msg": "One or more items failed", "results": [{"changed": False, "item": "a"},
              {"failed": True, "msg": "non-zero return code", "rc": 3, "stderr": "error: no such unit",
               "item": "b"}]}  # fmt: skip
    assert failure_of(failed) == "non-zero return code (3): error: no such unit (item b)"
    assert failure_of({"msg": "All items completed", "results": [{"censored": "hidden", "failed": True}]}).startswith(
        "output hidden by no_log")


def test_a_long_message_keeps_its_closing_advice_and_shortens_the_list_in_the_middle():
    # what the artifacts role said when the mirror was unreachable for every download (seen on the lab):
    # the list of URLs is long, the advice naming the setting to fix comes last
    items = " ".join(f"[kubeadm-{i} 1.36.4 (amd64), file kubeadm-{i} from https://dl.example.invalid/v1.36.4/bin/"
                     f"linux/amd64/kubeadm-{i}: Request failed: <urlopen error [Errno -2] Name or service not known>]"
                     for i in range(12))
    advice = ("A checksum mismatch means the file differs from the pin: fix the mirror (kubestrap_artifacts_base_url) "
              "or, if the pin itself is wrong, the sha256 in group_vars/all/versions.yml. Nothing unverified was kept "
              "in /home/me/.cache/kubestrap/artifacts.")
    msg = f"Artifact download or verification failed on the controller; nothing was staged on any node. {items} {advice}"
    message = failure_of({"msg": msg, "failed": True})
    assert len(message) <= 700
    assert message.endswith(advice)
    assert message.startswith("Artifact download or verification failed on the controller; nothing was staged")
    assert "kubeadm-0 1.36.4" in message  # the first item stays, the rest of the list is shortened
    assert " … " in message
    assert failure_of({"msg": "short and whole"}) == "short and whole"


def test_a_long_error_line_of_a_program_keeps_its_end():
    line = "error: " + "x" * 600 + " Run `apt-get update` first."
    message = failure_of({"msg": "non-zero return code", "rc": 100, "stderr": line})
    assert message.endswith("Run `apt-get update` first.")
    assert len(message) <= 500
