#!/usr/bin/python
"""Ansible module kubestrap_backup_archive: the files a restore needs packed into one private (0600) tar.gz."""

from __future__ import annotations

import os
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: kubestrap_backup_archive
short_description: Pack files and directories into one gzip-compressed tar archive, mode 0600
description:
  - Writes I(dest) through a temporary file created 0600 in its directory and renamed into place, so the
    archive (it holds the etcd snapshot, the encryption-at-rest key and the cluster's private keys) is never
    readable by others, not even while it is written.
  - Each member of I(members) is stored under its archive name; a directory is stored with everything under it.
  - A missing source fails the module, naming it; nothing is written then.
options:
  dest: {description: The archive to write (its directory must exist)., type: path, required: true}
  members:
    description: Archive name -> file or directory on the node.
    type: dict
    required: true
"""

RETURN = r"""
size: {description: The archive's size in bytes., type: int, returned: success}
members: {description: The archive names written, in order., type: list, returned: success}
"""


def main() -> None:
    module = AnsibleModule(argument_spec={"dest": {"type": "path", "required": True},
                                          "members": {"type": "dict", "required": True}})  # fmt: skip
    dest: str = module.params["dest"]
    members: dict[str, str] = {str(k): str(v) for k, v in module.params["members"].items()}
    missing = [path for path in members.values() if not os.path.exists(path)]
    if missing:
        module.fail_json(msg=f"cannot back up {', '.join(missing)}: not on this node")
    directory = os.path.dirname(dest) or "."
    fd, scratch = tempfile.mkstemp(prefix=".backup-", dir=directory)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
            for name in sorted(members):
                archive.add(members[name], arcname=name, recursive=True)
        os.chmod(scratch, 0o600)
        os.replace(scratch, dest)
    except OSError as exc:
        module.fail_json(msg=f"cannot write {dest}: {exc}")
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
    module.exit_json(changed=True, size=os.path.getsize(dest), members=sorted(members))


if __name__ == "__main__":
    main()
