#!/usr/bin/python
"""Ansible module kubestrap_versions: run installed programs' version commands and compare with the pins."""

from __future__ import annotations

import re
import subprocess

DOCUMENTATION = r"""
module: kubestrap_versions
short_description: Check in one module run that installed programs report their pinned versions
description:
  - Runs each program's version command (no shell) and takes the first C(X.Y.Z) of its output; a loop of
    M(ansible.builtin.command) costs a module start on the node per program (seconds each on small or emulated
    machines).
  - Fails, naming each program whose command failed or whose version differs, when I(expect) is given.
  - Changes nothing; supports check mode.
options:
  programs:
    description: Program name -> its version command (argv; the first item is the program's path).
    type: dict
    required: true
  expect:
    description: Program name -> the version it must report (without a leading v); omitted, nothing is compared.
    type: dict
    default: {}
  timeout: {description: Seconds each command may take., type: int, default: 60}
"""

EXAMPLES = r"""
- name: Check that the installed binaries report the pinned versions
  kubestrap_versions:
    programs:
      kubeadm: [/usr/local/bin/kubeadm, version, -o, short]
      kubelet: [/usr/local/bin/kubelet, --version]
    expect: {kubeadm: 1.36.3, kubelet: 1.36.3}
"""

RETURN = r"""
versions:
  description: Program name -> the version it reports ('' when its command failed or printed none).
  type: dict
  returned: always
problems: {description: "One line per program that failed or differs from I(expect).", type: list, returned: always}
"""

VERSION = re.compile(r"[0-9]+[.][0-9]+[.][0-9]+")


def version_of(argv: list[str], timeout: int) -> tuple[str, str]:
    """(version, '') or ('', why it has none)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "", str(exc)
    if done.returncode != 0:
        return "", f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"
    found = VERSION.search(done.stdout)
    return (found.group(0), "") if found else ("", f"no version in its output {done.stdout.strip()[:100]!r}")


def check(programs: dict[str, list[str]], expect: dict[str, str], timeout: int) -> dict:
    versions, problems = {}, []
    for name, argv in programs.items():
        version, why = version_of([str(a) for a in argv], timeout)
        versions[name] = version
        wanted = str(expect.get(name, "")).lstrip("v")
        if why:
            problems.append(f"{name} ({argv[0]}): {why}")
        elif wanted and version != wanted:
            problems.append(f"{name} ({argv[0]}) reports {version}, not the pinned {wanted}")
    return {"changed": False, "versions": versions, "problems": problems}


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "programs": {"type": "dict", "required": True},
            "expect": {"type": "dict", "default": {}},
            "timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    result = check(module.params["programs"], module.params["expect"], module.params["timeout"])
    if result["problems"] and module.params["expect"]:
        module.fail_json(msg="; ".join(result["problems"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
