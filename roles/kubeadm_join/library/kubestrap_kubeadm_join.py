#!/usr/bin/python
"""Ansible module kubestrap_kubeadm_join: a control plane's `kubeadm join`, resumed at the phase it stopped in."""

from __future__ import annotations

import os
import re
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: kubestrap_kubeadm_join
short_description: Run a control plane's kubeadm join, resuming it at the phase it stopped in
description:
  - Runs I(argv) (C(kubeadm join --config FILE)) unless I(creates) exists. When kubeadm stops in a phase at or after
    I(resume_from), the join is run again with C(--skip-phases) of the phases before the one it stopped in, but for
    the one I(rerun) names for it, up to I(resumes) times, each resume starting where the one before stopped. The
    node's files and the etcd member the join added are kept.
  - A join whose preflight could not read the kubeadm-config ConfigMap (nothing is written before that) is run again
    from the start, up to I(config_fetch_retries) times.
  - Never fails by itself; the caller judges C(rc) (and undoes the join).
options:
  argv: {description: The join command., type: list, elements: str, required: true}
  creates: {description: A file a joined node has; when it exists nothing is run., type: path, required: true}
  phases: {description: kubeadm join's phases in the order it runs them., type: list, elements: str, required: true}
  resume_from: {description: The first phase a join is resumed at., type: str, required: true}
  rerun:
    description: For a phase a join stopped in, an earlier phase the resume runs again (not skipped).
    type: dict
    default: {}
  resumes: {description: Resumes at most (0 none)., type: int, required: true}
  delay: {description: Seconds before each resume., type: int, default: 0}
  config_fetch_retries: {description: Runs from the start again after a failed kubeadm-config read., type: int, default: 0}
  config_fetch_delay: {description: Seconds before each such run., type: int, default: 0}
"""

EXAMPLES = r"""
- name: Join as a control plane
  kubestrap_kubeadm_join:
    argv: [kubeadm, join, --config, /etc/kubernetes/kubestrap/kubeadm-join.yaml]
    creates: /var/lib/kubelet/pki/kubelet-client-current.pem
    phases: [preflight, control-plane-prepare, check-etcd, kubelet-start, etcd-join, kubelet-wait-bootstrap,
             control-plane-join, wait-control-plane]
    resume_from: etcd-join
    rerun: {kubelet-wait-bootstrap: kubelet-start, wait-control-plane: control-plane-join}
    resumes: 3
    delay: 20
"""

RETURN = r"""
rc: {description: Exit code of the last run (0 joined)., type: int, returned: always}
stdout: {description: Output of the last run., type: str, returned: always}
stderr: {description: Errors of the last run., type: str, returned: always}
runs:
  description:
    - Each run, in order, with the phases it skipped, the phase it stopped in (none when it joined), seconds, and the
      last line of its errors (a bootstrap token shown as <token>, a certificate key as <key>).
  type: list
  returned: always
resumes: {description: How many runs were resumes., type: int, returned: always}
"""

PHASE = re.compile(r"error execution phase ([a-z-]+)")
CONFIG_FETCH = "unable to fetch the kubeadm-config ConfigMap"
SECRETS = ((re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b"), "<token>"), (re.compile(r"\b[0-9a-f]{64}\b"), "<key>"))


def stopped_in(stderr: str) -> str:
    """The top-level phase kubeadm names in its failure line (`error execution phase control-plane-join/NAME`)."""
    found = PHASE.findall(stderr)
    return found[-1] if found else ""


def last_error(stderr: str) -> str:
    """The last line of a run's errors but kubeadm's stack-trace hint, bootstrap tokens and certificate keys masked:
    each run of a resumed join keeps why it stopped (the lab's eighth run kept only the last run's)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and "stack trace of this error" not in line]
    line = lines[-1][-400:] if lines else ""
    for pattern, mask in SECRETS:
        line = pattern.sub(mask, line)
    return line


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "argv": {"type": "list", "elements": "str", "required": True},
            "creates": {"type": "path", "required": True},
            "phases": {"type": "list", "elements": "str", "required": True},
            "resume_from": {"type": "str", "required": True},
            "rerun": {"type": "dict", "default": {}},
            "resumes": {"type": "int", "required": True},
            "delay": {"type": "int", "default": 0},
            "config_fetch_retries": {"type": "int", "default": 0},
            "config_fetch_delay": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    params = module.params
    if os.path.exists(params["creates"]):
        module.exit_json(changed=False, rc=0, stdout="", stderr="", runs=[], resumes=0,
                         msg=f"{params['creates']} exists: the node has joined")  # fmt: skip
    if module.check_mode:
        module.exit_json(changed=True, rc=0, stdout="", stderr="", runs=[], resumes=0)
    phases: list[str] = params["phases"]
    first = phases.index(params["resume_from"])
    skip: list[str] = []
    runs: list[dict] = []
    resumes = fetch_retries = 0
    while True:
        argv = params["argv"] + (["--skip-phases", ",".join(skip)] if skip else [])
        started = time.monotonic()
        rc, out, err = module.run_command(argv)
        phase = stopped_in(err) if rc else ""
        runs.append({"skipped": list(skip), "stopped_in": phase or None, "rc": rc,
                     "seconds": round(time.monotonic() - started, 1), "error": last_error(err) if rc else ""})  # fmt: skip
        if rc == 0:
            break
        if not skip and CONFIG_FETCH in err and fetch_retries < params["config_fetch_retries"]:
            fetch_retries += 1
            time.sleep(params["config_fetch_delay"])
        elif phase in phases and phases.index(phase) >= first and resumes < params["resumes"]:
            resumes += 1
            skip = [done for done in phases[: phases.index(phase)] if done != params["rerun"].get(phase)]
            time.sleep(params["delay"])
        else:
            break
    module.exit_json(changed=True, rc=rc, stdout=out, stderr=err, runs=runs, resumes=resumes)


if __name__ == "__main__":
    main()
