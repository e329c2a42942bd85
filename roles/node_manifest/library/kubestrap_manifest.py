#!/usr/bin/python
"""Ansible module kubestrap_manifest: record on a node which paths a kubestrap role installs."""

from __future__ import annotations

import json
import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: kubestrap_manifest
short_description: Record on the node which paths a kubestrap role installs
description:
  - Run before the role installs anything. Each path of I(paths) that does not exist yet is recorded as
    C(installed) (the role is about to create it); a path that already exists and is not recorded as
    installed is recorded as C(kept) (it was there before kubestrap, e.g. a distribution's /opt/cni/bin).
  - Entries already in the manifest keep their side, so a second run changes nothing. C(bootstrap.py reset)
    removes the C(installed) paths only.
options:
  path: {description: The manifest file (JSON)., type: path, required: true}
  role: {description: The role the manifest belongs to., type: str, required: true}
  paths: {description: Absolute paths the role installs (files or directories)., type: list, elements: path, required: true}
  adopt_marker:
    description:
      - A file the role itself writes that names kubestrap (its systemd unit). When there is no manifest yet and this
        file exists, the node was set up by a kubestrap that recorded no manifests: the paths already there are
        recorded as installed, not kept.
    type: path
"""

EXAMPLES = r"""
- name: Record what this role installs
  kubestrap_manifest:
    path: /var/lib/kubestrap/manifest/containerd.json
    role: containerd
    paths: [/usr/local/bin/containerd, /opt/cni/bin]
"""

RETURN = r"""
installed: {description: Paths kubestrap installed (reset removes them)., type: list, returned: always}
kept: {description: Paths that existed before kubestrap (reset leaves them)., type: list, returned: always}
"""

ABOUT = (
    "Written by kubestrap before the role installed anything. `bootstrap.py reset` removes the installed "
    "paths; the kept paths existed before kubestrap and are left alone."
)


def _read(module: AnsibleModule, path: str) -> tuple[set[str], set[str]]:
    if not os.path.exists(path):
        return set(), set()
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return set(data["installed"]), set(data["kept"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        module.fail_json(msg=f"cannot read the kubestrap manifest {path} ({err}); remove it only if you know which "
                             "of its paths kubestrap installed, then run again")  # fmt: skip
        raise  # unreachable: fail_json exits


def _names_kubestrap(marker: str | None) -> bool:
    """Whether the marker file exists and mentions kubestrap (a unit an older kubestrap wrote)."""
    if not marker:
        return False
    try:
        with open(marker, encoding="utf-8", errors="replace") as handle:
            return "kubestrap" in handle.read(65536)
    except OSError:
        return False


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "role": {"type": "str", "required": True},
            "paths": {"type": "list", "elements": "path", "required": True},
            "adopt_marker": {"type": "path"},
        },
        supports_check_mode=True,
    )
    path, role = module.params["path"], module.params["role"]
    wanted = [os.path.normpath(p) for p in module.params["paths"]]
    relative = [p for p in wanted if not os.path.isabs(p)]
    if relative:
        module.fail_json(msg=f"the {role} manifest takes absolute paths only, got {', '.join(relative)}")
    adopt = not os.path.exists(path) and _names_kubestrap(module.params["adopt_marker"])
    installed, kept = _read(module, path)
    for entry in wanted:
        if entry in installed or entry in kept:
            continue
        (kept if os.path.lexists(entry) and not adopt else installed).add(entry)
    content = json.dumps({"about": ABOUT, "role": role, "installed": sorted(installed), "kept": sorted(kept)}, indent=2) + "\n"
    old = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            old = handle.read()
    changed = old != content
    if changed and not module.check_mode:
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        temp = os.path.join(directory, f".{os.path.basename(path)}.tmp")
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(temp, 0o644)
        module.atomic_move(temp, path)
    diff = {"before": old or "", "after": content}
    module.exit_json(changed=changed, installed=sorted(installed), kept=sorted(kept), diff=diff)


if __name__ == "__main__":
    main()
