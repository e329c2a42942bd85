"""Where the lab's cluster gets its artifacts: the internet (the pins as they are) or the local mirror.

`lab up --artifacts auto` (the default) asks the release hosts whether they answer; when one does not, the lab
uses its local mirror (kubestrap/lab/mirror.py) and writes the settings for it beside the lab's inventory,
`group_vars/k8s_cluster/local-mirror.yml`, which says at its top what runs from it and what is off. With the
internet the file is removed and `up` runs the whole platform with the defaults.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubestrap.groups import CLUSTER_GROUP
from kubestrap.lab import inventory, mirror

CHOICES = ("auto", "internet", "local")
SETTINGS_FILE = "local-mirror.yml"
# What a cluster with the defaults downloads from (the controller: binaries, charts) or pulls from (the nodes:
# images). Any HTTP answer counts, an error status too: the host is there.
RELEASE_HOSTS = ("https://dl.k8s.io/", "https://github.com/", "https://registry.k8s.io/v2/", "https://quay.io/v2/")
PROBE_SECONDS = 5.0


def settings_path(inventory_file: Path) -> Path:
    """The settings file of the lab whose inventory is *inventory_file* (a group_vars folder beside it)."""
    return inventory_file.parent / "group_vars" / CLUSTER_GROUP / SETTINGS_FILE


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_SECONDS):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def unreachable(hosts: tuple[str, ...] = RELEASE_HOSTS) -> list[str]:
    """The release hosts that do not answer (asked at once, PROBE_SECONDS each)."""
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        answers = list(pool.map(_answers, hosts))
    return [host for host, ok in zip(hosts, answers, strict=True) if not ok]


def apply(choice: str, inventory_file: Path, log: Callable[[str], None]) -> str:
    """Write or remove the lab's local-mirror settings for *choice*; return what the lab uses ("internet"/"local")."""
    target = settings_path(inventory_file)
    if choice == "auto":
        missing = unreachable()
        choice = "local" if missing else "internet"
        if missing:
            log(f"artifacts: {', '.join(missing)} not reachable: the lab uses its local mirror (programs built from "
                "their Go modules; Cilium and the add-ons off); `--artifacts internet` overrides")  # fmt: skip
    if choice == "internet":
        if target.exists():
            target.unlink()
            log(f"artifacts: from the internet (the pins); removed {target}")
        return choice
    log("artifacts: the local mirror (building what the cache lacks: the first time takes a while)")
    built, _ = mirror.build(lambda message: log(f"artifacts: {message}"))
    if inventory.write(target, built.settings_text()):
        log(f"artifacts: wrote {target}")
    return choice
