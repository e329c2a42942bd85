#!/usr/bin/env python3
"""Benchmark (not a test): how the controller side (bootstrap.py + Ansible) scales with the number of hosts.

N lightweight hosts are systemd-nspawn machines booted from the lab's base image (read-only, each with a
tmpfs overlay: `--volatile=overlay`), each running its own sshd with its own host keys (rsa, ecdsa, ed25519,
as a stock Debian sshd) on its own loopback address, port 22, as a cluster's hosts are reached
(127.0.1.<i+1>:22; 127.0.0.1:<23000+i> instead where this machine already listens on port 22); they share the
machine's kernel and network, so nothing is loaded into the kernel and no host interface is
made. For each N (default 4, 8, 16, 32) it times the read-only commands users run most and one phase that
only reads (preflight through `up --phase preflight`):

    check (offline)   check --hosts   plan   plan --hosts   up --phase preflight

recording wall time and CPU time: the controller's (user+system of bootstrap.py and everything it waited for,
as before; and, where the machine has a cpuacct/cgroup v2 hierarchy to make groups in, the controller's
group with the SSH ControlPersist masters it leaves behind), the hosts' (every process of the N machines:
sshd, sudo, the modules' Python) and the whole machine's (/proc/stat, so other load shows), and the exit
codes: the hosts are containers sharing one address, so preflight's verdicts (duplicate addresses, no swap
control) are not the point, its cost is. The machines share the controller's cores, so the hosts' CPU is
part of every wall time here.

`--baseline DIR` (a checkout of an older commit, e.g. `git worktree add /tmp/old COMMIT`) times that
checkout's bootstrap.py on the same machines too, each command right before this checkout's, each checkout
with its own HOME (no SSH master shared between them), runs and secrets directories: before/after figures
under the same load. Figures go to bench/results/scaling-nspawn.json with the commit and the machine's load;
the file's earlier results move to its `history` list (newest first), nothing is dropped. Needs root,
systemd-nspawn (Debian systemd-container) and the lab image (`bootstrap.py lab up` builds it). It raises
fs.inotify.max_user_instances for the run (the machines' systemd instances share root's limit) and restores
it afterwards.

    .venv/bin/python bench/scaling_bench.py [--counts 4,8,16,32] [--baseline DIR] [--label TEXT]
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
CLK_TCK = os.sysconf("SC_CLK_TCK")
BOOT_SECONDS = 600
HOST_KEY_TYPES = ("rsa", "ecdsa", "ed25519")
COMMANDS = {
    "check": ["check"],
    "check --hosts": ["check", "--hosts"],
    "plan": ["plan"],
    "plan --hosts": ["plan", "--hosts"],
    "up --phase preflight": ["up", "--phase", "preflight"],
}


def _ssh_ready(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _can_listen(address: str, port: int) -> bool:
    """Whether a socket can listen on *address*:*port* here (not when a daemon holds the port on every address)."""
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            return True
    except OSError:
        return False


class CpuGroup:
    """A cgroup whose CPU time (all its processes, also the exited ones) can be read: cgroup v1's cpuacct
    hierarchy, else a cgroup v2 directory (cpu.stat is there without any controller). None when neither can be
    made (not root, a read-only /sys/fs/cgroup)."""

    def __init__(self, path: Path, read: str) -> None:
        self.path, self.read_file = path, read

    @classmethod
    def make(cls, name: str) -> CpuGroup | None:
        for base, read in ((Path("/sys/fs/cgroup/cpuacct"), "cpuacct.usage"), (Path("/sys/fs/cgroup"), "cpu.stat")):
            if not (base / read).exists() and not (base / "cgroup.procs").exists():
                continue
            path = base / name
            try:
                path.mkdir(exist_ok=True)
                if (path / read).exists():
                    return cls(path, read)
            except OSError:
                continue
        return None

    @property
    def kind(self) -> str:
        return "cgroup v1 cpuacct" if self.read_file == "cpuacct.usage" else "cgroup v2 cpu.stat"

    def seconds(self) -> float:
        text = (self.path / self.read_file).read_text()
        if self.read_file == "cpuacct.usage":
            return int(text) / 1e9
        return next(int(line.split()[1]) for line in text.splitlines() if line.startswith("usage_usec")) / 1e6

    def wrap(self, argv: list[str]) -> list[str]:
        """*argv* started inside the group (so are all its children, daemonized SSH masters included)."""
        return ["sh", "-c", f'echo $$ > {self.path / "cgroup.procs"} && exec "$@"', "sh", *argv]

    def remove(self) -> None:
        """Remove the group once its last process has exited (the SSH masters end with their machines)."""
        for _ in range(20):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.5)


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy since boot (all cores, from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user/nice
    return (sum(fields) - idle - guest) / CLK_TCK


class Machines:
    """N nspawn machines from one read-only root tree, started together and stopped together."""

    def __init__(self, work: Path, tree: Path, count: int, group: CpuGroup | None = None) -> None:
        self.work, self.tree, self.count, self.group = work, tree, count, group
        self.processes: list[subprocess.Popen] = []
        self.client_key = work / "client"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(self.client_key)],
                       check=True)  # fmt: skip
        self.own_addresses = _can_listen("127.0.1.1", 22)

    def address(self, index: int) -> tuple[str, int]:
        """Where machine *index*'s sshd listens: its own loopback address on port 22 (the hosts of a cluster
        share the port, which the host-key scan relies on), else 127.0.0.1 and a port of its own."""
        return (f"127.0.1.{index + 1}", 22) if self.own_addresses else ("127.0.0.1", BASE_PORT + index)

    def start(self) -> None:
        for index in range(self.count):
            own = self.work / f"m{index}"
            own.mkdir()
            for kind in HOST_KEY_TYPES:  # the three a stock Debian sshd offers (each one a key exchange to scan)
                subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"m{index}", "-f", str(own / kind)],
                               check=True)  # fmt: skip
            shutil.copy(f"{self.client_key}.pub", own / "authorized_keys")
            address, port = self.address(index)
            # HostKey adds up across files: the lab image's own drop-in names the ed25519 key only
            keys = "".join(f"HostKey /etc/ssh/ssh_host_{kind}_key\n" for kind in HOST_KEY_TYPES if kind != "ed25519")
            (own / "port.conf").write_text(f"Port {port}\nListenAddress {address}\n{keys}")
            log = open(own / "console.log", "wb")  # noqa: SIM115 - held for the machine's lifetime
            wrap = self.group.wrap if self.group else (lambda argv: argv)
            self.processes.append(subprocess.Popen(wrap(
                ["systemd-nspawn", "-D", str(self.tree), "--volatile=overlay", "--register=no", "--keep-unit",
                 "-M", f"ksbench{index}", *(f"--bind-ro={own / kind}:/etc/ssh/ssh_host_{kind}_key" for kind in HOST_KEY_TYPES),
                 f"--bind-ro={own / 'port.conf'}:/etc/ssh/sshd_config.d/zz-bench.conf",
                 f"--bind-ro={own / 'authorized_keys'}:/root/.ssh/authorized_keys", "-b"]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
            log.close()
        deadline = time.monotonic() + BOOT_SECONDS
        waiting = set(range(self.count))
        while waiting and time.monotonic() < deadline:
            waiting = {i for i in waiting if not _ssh_ready(*self.address(i))}
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
        common = {"ansible_user": "root", "ansible_ssh_private_key_file": str(self.client_key)}
        hosts = {f"m{i}": {**common, "ansible_host": self.address(i)[0], "ansible_port": self.address(i)[1],
                           "node_ip": f"10.77.0.{10 + i}"}
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


SETTLE_SECONDS = 2  # after a command, for its last SSH sessions on the hosts to end before the next one


def _timed(argv: list[str], env: dict[str, str], cwd: Path, hosts: CpuGroup | None, controller: CpuGroup | None) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    group_before = controller.seconds() if controller else 0.0
    hosts_before = hosts.seconds() if hosts else 0.0
    busy_before = machine_busy_seconds()
    started = time.monotonic()
    done = subprocess.run(controller.wrap(argv) if controller else argv, env=env, capture_output=True, text=True,
                          cwd=cwd, stdin=subprocess.DEVNULL)  # fmt: skip
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = machine_busy_seconds() - busy_before
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last = (done.stdout.strip().splitlines() or done.stderr.strip().splitlines() or [""])[-1]
    figures = {"seconds": round(wall, 2), "controller_cpu_seconds": round(cpu, 2), "exit": done.returncode,
               "last_line": last[:200]}  # fmt: skip
    if controller:  # with the SSH masters, which outlive the command and are not its children
        figures["controller_group_cpu_seconds"] = round(controller.seconds() - group_before, 2)
    if hosts:
        figures["hosts_cpu_seconds"] = round(hosts.seconds() - hosts_before, 2)
    figures["machine_busy_cpu_seconds"] = round(busy, 2)  # everything: controller, hosts and anything else
    time.sleep(SETTLE_SECONDS)
    return figures


def measure(count: int, tree: Path, baseline: Path | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"kubestrap-scaling-{count}-"))
    hosts_group, controller_group = CpuGroup.make(f"kubestrap-bench-hosts-{os.getpid()}"), \
        CpuGroup.make(f"kubestrap-bench-controller-{os.getpid()}")  # fmt: skip
    machines = Machines(work, tree, count, hosts_group)
    checkouts = {"baseline": baseline, "this": ROOT} if baseline else {"this": ROOT}
    try:
        booted = time.monotonic()
        machines.start()
        boot = time.monotonic() - booted
        inventory = machines.inventory(work / "inventory")
        envs = {}
        for name in checkouts:  # each checkout its own HOME (SSH masters), runs and secrets (recorded keys)
            (work / name / "home").mkdir(parents=True)
            envs[name] = {**os.environ, "HOME": str(work / name / "home"),
                          "KUBESTRAP_RUNS_DIR": str(work / name / "runs"), "KUBESTRAP_SECRETS_DIR": str(work / name / "secrets"),
                          "ANSIBLE_HOST_KEY_CHECKING": "False"}  # fmt: skip
        figures: dict = {"hosts": count, "boot_seconds": round(boot, 1), "commands": {},
                         "hosts_reached_as": "own loopback address, port 22" if machines.own_addresses
                         else "127.0.0.1, a port each"}  # fmt: skip
        if hosts_group:
            figures["cpu_accounting"] = hosts_group.kind
        if baseline:
            figures["baseline_commands"] = {}
        for label, args in COMMANDS.items():
            for name, checkout in checkouts.items():
                argv = [sys.executable, str(checkout / "bootstrap.py"), *args, "-i", str(inventory)]
                timed = _timed(argv, envs[name], checkout, hosts_group, controller_group)
                figures["commands" if name == "this" else "baseline_commands"][label] = timed
                print(f"  N={count} {name} {label}: {timed}", flush=True)
        return figures
    finally:
        machines.stop()
        shutil.rmtree(work, ignore_errors=True)
        for group in (hosts_group, controller_group):
            if group:
                group.remove()


def per_added_host(runs: list[dict], which: str = "commands") -> dict:
    """What each host beyond the first count costs, per command: wall seconds and CPU seconds (controller,
    hosts), from the first and last counts measured."""
    first, last = runs[0], runs[-1]
    added = last["hosts"] - first["hosts"]
    if added <= 0 or which not in first:
        return {}
    costs = {}
    for label in COMMANDS:
        a, b = first[which][label], last[which][label]
        costs[label] = {key: round((b[key] - a[key]) / added, 3) for key in
                        ("seconds", "controller_cpu_seconds", "hosts_cpu_seconds") if key in a and key in b}  # fmt: skip
    return costs


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
    parser.add_argument("--baseline", type=Path, help="a checkout of an older commit, timed on the same machines")
    parser.add_argument("--label", default="", help="what this run is (recorded as its conditions)")
    args = parser.parse_args()
    if args.baseline and not (args.baseline / "bootstrap.py").is_file():
        parser.error(f"--baseline {args.baseline}: no bootstrap.py there")
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
    if args.label:
        results["conditions"] = args.label
    if args.baseline:
        old = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=args.baseline)
        results["baseline"] = {"path": str(args.baseline), "commit": old.stdout.strip() or "?"}
    try:
        for count in counts:
            results["runs"].append(measure(count, tree, args.baseline))
    finally:
        subprocess.run(["umount", str(tree)], check=False)
        tree.rmdir()
        if old_inotify is not None:
            INOTIFY_INSTANCES.write_text(f"{old_inotify}\n")
    runs = results["runs"]
    if len(runs) > 1:
        first, last = runs[0], runs[-1]
        for key, which in (("ratio_last_to_first", "commands"), ("baseline_ratio_last_to_first", "baseline_commands")):
            if which in first:
                results[key] = {
                    label: round(last[which][label]["seconds"] / max(first[which][label]["seconds"], 0.01), 2)
                    for label in COMMANDS}  # fmt: skip
        results["per_added_host"] = {"this": per_added_host(runs)}
        if args.baseline:
            results["per_added_host"]["baseline"] = per_added_host(runs, "baseline_commands")
    results["load_after"] = os.getloadavg()[0]
    out = Path(args.out)
    if out.exists():  # keep every earlier result: the previous one heads the history
        earlier = json.loads(out.read_text())
        history = earlier.pop("history", [])
        results["history"] = [earlier, *history]
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
