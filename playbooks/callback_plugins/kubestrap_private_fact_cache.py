"""Callback kubestrap_private_fact_cache: the fact cache of plain `ansible-playbook` runs stays private.

ansible.cfg keeps gathered facts in a jsonfile cache (fact_caching_connection = .runs/facts): every host's
addresses, disks, OS and more. Ansible creates that directory 0755 (with the umask) as soon as
ansible-playbook starts, before it reads the playbook, and writes each host's file 0644. bootstrap.py keeps
its runs 0700/0600 (kubestrap/journal.py); this callback does the same for runs of the playbooks in this
directory with plain ansible-playbook (site.yml, add_node.yml, reset.yml, or one phase's playbook):

- when a playbook starts (before its first play, so before any fact is written): the cache directory 0700,
  and any file in it that others or the group could read (an earlier run's) 0600;
- when it ends: the files written meanwhile 0600 (Ansible writes them 0644 each time; the 0700 directory
  keeps them from others in between).

It adds no task, so the runs' changed counts stay as they were, and it works whatever --tags or --limit
select. Under bootstrap.py (ansible-runner, its own 0700 cache) it finds nothing to change. A cache plugin
other than a file-based one (memory, redis) is left alone. Being next to the playbooks, Ansible loads it
by itself (adjacent callback_plugins directory; CALLBACK_NEEDS_ENABLED is False).
"""

from __future__ import annotations

import os
import stat
from typing import Any

from ansible import constants as C
from ansible.plugins.cache import BaseFileCacheModule
from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import cache_loader

DOCUMENTATION = """
    name: kubestrap_private_fact_cache
    type: aggregate
    short_description: Keep a file-based fact cache 0700 (directory) and 0600 (files)
    description:
      - When a playbook starts, makes the fact cache directory 0700 (Ansible creates it 0755 at start-up, before any
        fact is written) and its files readable by their owner only; when it ends, the files written meanwhile 0600.
    requirements:
      - a file-based fact cache plugin (jsonfile); others are left alone
"""


def _cache_dir() -> str | None:
    """The directory of the configured fact cache when it is file-based (as the cache plugin itself reads it)."""
    plugin_class = cache_loader.get(C.CACHE_PLUGIN, class_only=True)  # a proxy of the class: issubclass() refuses it
    if plugin_class is None or BaseFileCacheModule not in plugin_class.__mro__:
        return None  # memory, redis, ...: not a directory (and not instantiated here: redis would connect)
    plugin = cache_loader.get(C.CACHE_PLUGIN)
    try:
        source = plugin.get_option("_uri")
    except KeyError:
        source = C.CACHE_PLUGIN_CONNECTION
    return os.path.expanduser(os.path.expandvars(source)) if source else None


def _not_a_cache(directory: str) -> str:
    """Why *directory* does not look like a fact cache of this user's ('' when it does): a cache set to a shared
    or busy directory (/tmp, a home directory) must not be made 0700."""
    info = os.stat(directory)
    if info.st_uid != os.geteuid():
        return "it belongs to another user"
    if info.st_mode & stat.S_ISVTX:
        return "it is a shared (sticky) directory"
    with os.scandir(directory) as entries:
        if any(not entry.is_file(follow_symlinks=False) for entry in entries):
            return "it holds more than cache files"
    return ""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kubestrap_private_fact_cache"
    CALLBACK_NEEDS_ENABLED = False

    def _private(self, files_only: bool) -> None:
        try:
            directory = _cache_dir()
            if not directory or not os.path.isdir(directory) or os.path.islink(directory):
                return
            refused = _not_a_cache(directory)
            if refused:
                self._display.warning(f"kubestrap leaves the fact cache {directory} as it is: {refused}")
                return
            if not files_only and stat.S_IMODE(os.stat(directory).st_mode) != 0o700:
                os.chmod(directory, 0o700)
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False) and stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode) & 0o077:
                        os.chmod(entry.path, 0o600)
        except Exception as exc:  # a callback must never break the run: say it and go on
            self._display.warning(f"kubestrap could not make the fact cache private ({exc}); check its permissions")

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._private(files_only=False)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._private(files_only=True)
