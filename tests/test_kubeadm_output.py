"""filter_plugins/kubeadm_output.py: what a failed kubeadm command said, for the failure messages of the tasks whose
results are hidden (no_log) because a bootstrap token or a certificate key is in reach: kubeadm init, a worker's
join, a token's deletion."""

from __future__ import annotations

import sys

from helpers import ROOT

sys.path.insert(0, str(ROOT / "filter_plugins"))
from kubeadm_output import FilterModule, kubeadm_error

TOKEN = "abcdef.0123456789abcdef"
KEY = "0f" * 32


def test_the_last_lines_with_tokens_and_keys_masked_and_the_stack_trace_hint_left_out():
    stderr = ("[preflight] Running pre-flight checks\n\n"
              f"error execution phase preflight: couldn't validate the identity of the API Server: token {TOKEN}\n"
              f"certificate key {KEY} refused\n"
              "To see the stack trace of this error execute with --v=5 or higher\n")  # fmt: skip
    said = kubeadm_error({"rc": 1, "stderr": stderr, "stdout": "ignored while stderr says something"})
    assert said == ("[preflight] Running pre-flight checks / error execution phase preflight: couldn't validate the "
                    "identity of the API Server: token <token> / certificate key <key> refused")
    assert kubeadm_error({"stderr": stderr}, lines=1) == "certificate key <key> refused"


def test_a_token_inside_a_longer_word_is_masked_too():
    assert TOKEN not in kubeadm_error(f"x_{TOKEN}_y")


def test_stdout_when_stderr_is_empty_and_a_word_for_no_output():
    assert kubeadm_error({"rc": 1, "stderr": "  \n", "stdout": f"kubeadm join 10.0.0.1:6443 --token {TOKEN}"}) == (
        "kubeadm join 10.0.0.1:6443 --token <token>")
    assert kubeadm_error({"rc": 1}) == "no output"
    assert kubeadm_error({"rc": 1}, empty="nothing") == "nothing"


def test_the_filter_name():
    assert FilterModule().filters() == {"kubestrap_kubeadm_error": kubeadm_error}
