#!/usr/bin/env python3
"""Benchmark (not a test): how the controller side (bootstrap.py + Ansible) scales with the number of hosts.

N lightweight hosts are systemd-nspawn machines booted from the lab's base image (read-only, each with a
tmpfs overlay: `--volatile=overlay`), each running its own sshd on 127.0.0.1:<port> with its own host key;
they share the machine's kernel and network, so nothing is loaded into the kernel and no host interface is
made. For each N (default 4, 8, 16, 32) it times the read-only commands users run most and one phase that
only reads (preflight through `up --phase preflight`):

    check (offline)   check --hosts   plan   plan --hosts   up --phase preflight

recording wall time and the controller's CPU time (user+system of bootstrap.py and everything it ran), and
the exit codes: the hosts are containers sharing one address, so preflight's verdicts (duplicate addresses,
no swap control) are not the point, its cost is. Figures go to bench/results/scaling-nspawn.json with the
commit and the machine's load. Needs root, systemd-nspawn (Debian systemd-container) and the lab image
(`bootstrap.py lab up` builds it). It raises fs.inotify.max_user_instances for the run (the machines'
systemd instances share root's limit) and restores it afterwards.

    .venv/bin/python bench/scaling_bench.py [--counts 4,8,16,32]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubestrap.lab.image import ensure_image  # noqa: E402
from kubestrap.lab.recipe import default_recipe  # noqa: E402

BASE_PORT = 23000
BOOT_SECONDS = 600
COMMANDS = {
    "check": ["check"],
    "check --hosts": ["check", "--hosts"],
    "plan": ["plan"],
    "plan --hosts": ["plan", "--hosts"],
    "up --phase preflight": ["up", "--phase", "preflight"],
}


def _ssh_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


class Machines:
    """N nspawn machines from one read-only root tree, started together and stopped together."""

    def __init__(self, work: Path, tree: Path, count: int) -> None:
        self.work, self.tree, self.count = work, tree, count
        self.processes: list[subprocess.Popen] = []
        self.client_key = work / "client"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(self.client_key)],
                       check=True)  # fmt: skip

    def port(self, index: int) -> int:
        return BASE_PORT + index

    def start(self) -> None:
        for index in range(self.count):
            own = self.work / f"m{index}"
            own.mkdir()
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"m{index}", "-f", str(own / "host")],
                           check=True)  # fmt: skip
            shutil.copy(f"{self.client_key}.pub", own / "authorized_keys")
            (own / "port.conf").write_text(f"Port {self.port(index)}\nListenAddress 127.0.0.1\n")
            log = open(own / "console.log", "wb")  # noqa: SIM115 - held for the machine's lifetime
            self.processes.append(subprocess.Popen(
                ["systemd-nspawn", "-D", str(self.tree), "--volatile=overlay", "--register=no", "--keep-unit",
                 "-M", f"ksbench{index}", f"--bind-ro={own / 'host'}:/etc/ssh/ssh_host_ed25519_key",
                 f"--bind-ro={own / 'port.conf'}:/etc/ssh/sshd_config.d/zz-bench.conf",
                 f"--bind-ro={own / 'authorized_keys'}:/root/.ssh/authorized_keys", "-b"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
            log.close()
        deadline = time.monotonic() + BOOT_SECONDS
        waiting = set(range(self.count))
        while waiting and time.monotonic() < deadline:
            waiting = {i for i in waiting if not _ssh_ready(self.port(i))}
            time.sleep(1)
        if waiting:
            raise SystemExit(f"machines {sorted(waiting)} had no sshd after {BOOT_SECONDS}s (see {self.work}/m*/console.log)")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def inventory(self, path: Path) -> Path:
        common = {"ansible_host": "127.0.0.1", "ansible_user": "root",
                  "ansible_ssh_private_key_file": str(self.client_key)}  # fmt: skip
        hosts = {f"m{i}": {**common, "ansible_port": self.port(i), "node_ip": f"10.77.0.{10 + i}"}
                 for i in range(self.count)}  # fmt: skip
        names = list(hosts)
        tree = {"all": {"children": {"k8s_cluster": {"children": {
            "k8s_control_plane": {"hosts": {names[0]: hosts[names[0]]}},
            "k8s_workers": {"hosts": {n: hosts[n] for n in names[1:]}}}}}}}  # fmt: skip
        (path / "group_vars").mkdir(parents=True)
        (path / "hosts.yml").write_text(json.dumps(tree, indent=1))
        (path / "group_vars" / "k8s_cluster.yml").write_text(
            "cluster_name: bench\ncluster_node_network: 10.77.0.0/24\nmetallb_address_pool: 10.77.0.200-10.77.0.210\n")
        return path


def _timed(argv: list[str], env: dict[str, str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last = (done.stdout.strip().splitlines() or done.stderr.strip().splitlines() or [""])[-1]
    return {"seconds": round(wall, 2), "controller_cpu_seconds": round(cpu, 2), "exit": done.returncode,
            "last_line": last[:200]}


def measure(count: int, tree: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"kubestrap-scaling-{count}-"))
    machines = Machines(work, tree, count)
    try:
        booted = time.monotonic()
        machines.start()
        boot = time.monotonic() - booted
        inventory = machines.inventory(work / "inventory")
        env = {**os.environ, "KUBESTRAP_RUNS_DIR": str(work / "runs"), "KUBESTRAP_SECRETS_DIR": str(work / "secrets"),
               "ANSIBLE_HOST_KEY_CHECKING": "False"}  # fmt: skip
        figures = {"hosts": count, "boot_seconds": round(boot, 1), "commands": {}}
        for label, args in COMMANDS.items():
            argv = [sys.executable, str(ROOT / "bootstrap.py"), *args, "-i", str(inventory)]
            figures["commands"][label] = _timed(argv, env)
            print(f"  N={count} {label}: {figures['commands'][label]}", flush=True)
        return figures
    finally:
        machines.stop()
        shutil.rmtree(work, ignore_errors=True)


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_PER_MACHINE = 32  # systemd, journald, logind, ... of each machine; they all count for root


def raise_inotify_limit(count: int) -> int | None:
    """The machines' systemd instances share root's inotify instance limit (Debian: 128), so at ~16 machines
    their services fail with "Failed to create inotify object: Too many open files" and sshd never starts.
    Raise it for the run; return the old value to restore (None when it was high enough)."""
    old = int(INOTIFY_INSTANCES.read_text())
    wanted = 256 + INOTIFY_PER_MACHINE * count
    if old >= wanted:
        return None
    INOTIFY_INSTANCES.write_text(f"{wanted}\n")
    return old


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="4,8,16,32", help="host counts, comma separated (default 4,8,16,32)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "scaling-nspawn.json"))
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn"):
        print("error: needs root and systemd-nspawn (apt-get install systemd-container)", file=sys.stderr)
        return 2
    image = ensure_image(default_recipe(), log=print)
    counts = [int(c) for c in args.counts.split(",")]
    old_inotify = raise_inotify_limit(max(counts))
    tree = Path(tempfile.mkdtemp(prefix="kubestrap-scaling-root-"))
    subprocess.run(["mount", "-o", "loop,ro", str(image.disk), str(tree)], check=True)
    results: dict = {"written": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                     "load_before": os.getloadavg()[0], "runs": []}  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    results["commit"] = commit.stdout.strip()
    try:
        for count in counts:
            results["runs"].append(measure(count, tree))
    finally:
        subprocess.run(["umount", str(tree)], check=False)
        tree.rmdir()
        if old_inotify is not None:
            INOTIFY_INSTANCES.write_text(f"{old_inotify}\n")
    runs = results["runs"]
    if len(runs) > 1:
        first, last = runs[0], runs[-1]
        results["ratio_last_to_first"] = {
            label: round(last["commands"][label]["seconds"] / max(first["commands"][label]["seconds"], 0.01), 2)
            for label in COMMANDS}  # fmt: skip
    results["load_after"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
