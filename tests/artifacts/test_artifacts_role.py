"""The `artifacts` phase playbook end to end on this machine (no VM): a local "node" over the
local connection, a local HTTP mirror with small stand-in files, and private cache/staging dirs.

Proves: verified files land in the controller cache and the node staging dir (only what the node
needs), a re-run changes nothing, and a checksum mismatch stops the play before any node changes,
names the file and both hashes, and leaves nothing from the bad file in the cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ROOT

PLAYBOOK = ROOT / "playbooks" / "artifacts.yml"
NODE_ITEMS = ["cni_plugins", "containerd", "crictl", "kubeadm", "kubectl", "kubelet", "runc"]
CP_ITEMS = ["cilium_cli", "helm"]


def pinned() -> dict:
    return yaml.safe_load((ROOT / "group_vars" / "all" / "versions.yml").read_text())["kubestrap_artifacts"]


def url_path(entry: dict) -> str:
    url = entry["url"].replace("{version}", entry["version"]).replace("{arch}", "amd64")
    return re.sub(r"^https?://", "", url)


@pytest.fixture
def fake_mirror(http_server, tmp_path: Path):
    """Every pinned artifact as a small distinct file on the local server, with a matching override."""
    artifacts = {}
    for name, entry in pinned().items():
        data = f"stand-in for {name} {entry['version']}\n".encode() * 64
        http_server.put(url_path(entry), data)
        artifacts[name] = {
            "version": entry["version"],
            "url": entry["url"],
            "sha256": {"amd64": hashlib.sha256(data).hexdigest()},
        }
    override = tmp_path / "override.yml"
    cache = tmp_path / "controller-cache"
    staging = tmp_path / "node-staging"
    override.write_text(
        yaml.safe_dump(
            {
                "kubestrap_artifacts_base_url": http_server.url,
                "kubestrap_architectures": ["amd64"],
                "kubestrap_artifacts": artifacts,
                "artifacts_controller_cache_dir": str(cache),
                "artifacts_node_staging_dir": str(staging),
                # the binaries only: the cluster images are tests/artifacts/test_image_preload.py's
                "artifacts_images_enabled": False,
            }
        )
    )
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "k8s_cluster": {
                            "children": {
                                "k8s_control_plane": {
                                    "hosts": {
                                        "node1": {
                                            "ansible_connection": "local",
                                            "ansible_python_interpreter": sys.executable,
                                            "ansible_become": False,
                                            "node_ip": "127.0.0.1",
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        )
    )
    return {
        "server": http_server,
        "override": override,
        "inventory": inventory,
        "cache": cache,
        "staging": staging,
        "artifacts": artifacts,
    }


def run_playbook(mirror: dict, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_CACHE_PLUGIN="memory",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(mirror["cache"].parent / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(mirror["cache"].parent / "ansible-remote"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return subprocess.run(
        [
            ANSIBLE_PLAYBOOK,
            "-i",
            str(mirror["inventory"]),
            "-e",
            f"@{mirror['override']}",
            *extra,
            str(PLAYBOOK),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def recap(output: str) -> dict[str, int]:
    match = re.search(r"node1\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert match, output[-3000:]
    return dict(zip(["ok", "changed", "unreachable", "failed"], map(int, match.groups()), strict=True))


def files(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_fetch_stage_and_rerun_changes_nothing(fake_mirror):
    first = run_playbook(fake_mirror)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert recap(first.stdout)["changed"] > 0

    expected = []
    for name in sorted(NODE_ITEMS + CP_ITEMS):
        entry = fake_mirror["artifacts"][name]
        expected.append(f"{name}/{entry['version']}/amd64/{url_path(entry).rsplit('/', 1)[1]}")
    assert files(fake_mirror["cache"]) == sorted(expected)
    assert files(fake_mirror["staging"]) == sorted(expected)  # node1 is the first control plane
    for rel in expected:
        assert (fake_mirror["staging"] / rel).read_bytes() == (fake_mirror["cache"] / rel).read_bytes()

    served = len(fake_mirror["server"].requests)
    second = run_playbook(fake_mirror)
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second.stdout)["changed"] == 0
    assert len(fake_mirror["server"].requests) == served  # verified cache: nothing downloaded again

    # a staged file that went missing (and its directory) is found missing and sent again, alone
    lost = fake_mirror["staging"] / expected[0]
    lost.unlink()
    lost.parent.rmdir()
    third = run_playbook(fake_mirror)
    assert third.returncode == 0, third.stdout[-4000:]
    assert recap(third.stdout)["changed"] == 1  # one archive with it alone, unpacked (its directory comes with it)
    assert files(fake_mirror["staging"]) == sorted(expected)


def test_checksum_mismatch_stops_before_any_node_change(fake_mirror):
    entry = fake_mirror["artifacts"]["kubelet"]
    bad = b"this is not the kubelet you pinned\n"
    fake_mirror["server"].put(url_path(entry), bad)

    result = run_playbook(fake_mirror)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    # the message names the file, the expected and the actual hash
    assert "kubelet" in out
    assert entry["sha256"]["amd64"] in out
    assert hashlib.sha256(bad).hexdigest() in out
    assert "nothing was staged on any node" in out
    # nothing reached the node, nothing from the bad file is in the cache, no temporary leftovers
    assert files(fake_mirror["staging"]) == []
    assert not any(p.startswith("kubelet/") for p in files(fake_mirror["cache"]))
    assert not any(".part" in p or "tmp" in p for p in files(fake_mirror["cache"]))
    assert recap(result.stdout)["failed"] == 1


def test_a_mirror_install_refuses_images_without_digest_before_any_node_change(fake_mirror):
    # with a mirror the cluster images come too (the default); these have no digest pinned or recorded here
    result = run_playbook(fake_mirror, "-e", "artifacts_images_enabled=true", "-e", "kubestrap_images_lock={}")
    assert result.returncode != 0
    assert "have no digest" in result.stdout and "registry.k8s.io/kube-apiserver:v" in result.stdout
    assert "bootstrap.py artifacts fetch" in result.stdout
    assert files(fake_mirror["staging"]) == [] and files(fake_mirror["cache"]) == []


def test_bring_your_own_cni_gets_no_cilium_cli(fake_mirror):
    """With Cilium off (a cluster bringing its own CNI) the first control plane gets helm only: the Cilium CLI is
    neither downloaded nor staged (the VM lab's offline mirror does not build it)."""
    cilium = pinned()["cilium_cli"]
    done = run_playbook(fake_mirror, "-e", '{"addons_enabled": {"cilium": false}}')
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert not [r for r in fake_mirror["server"].requests if url_path(cilium) in str(r)]
    staged = files(fake_mirror["staging"])
    assert not [f for f in staged if f.startswith("cilium_cli/")], staged
    assert [f for f in staged if f.startswith("helm/")], staged


def test_a_mirror_on_the_controllers_disk_works_as_a_file_url(fake_mirror):
    """kubestrap_artifacts_base_url may be a file:// URL (the VM lab's local mirror is a directory): the same files
    are fetched, verified and staged, nothing over HTTP."""
    override = yaml.safe_load(fake_mirror["override"].read_text())
    override["kubestrap_artifacts_base_url"] = fake_mirror["server"].root.as_uri()
    fake_mirror["override"].write_text(yaml.safe_dump(override))
    done = run_playbook(fake_mirror)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert fake_mirror["server"].requests == []
    expected = []
    for name in sorted(NODE_ITEMS + CP_ITEMS):
        entry = fake_mirror["artifacts"][name]
        expected.append(f"{name}/{entry['version']}/amd64/{url_path(entry).rsplit('/', 1)[1]}")
    assert files(fake_mirror["staging"]) == sorted(expected)
