"""A real Kubernetes control plane for pytest: etcd + kube-apiserver (+ kube-controller-manager on request)
built from their Go modules (kubestrap/lab/sources/build.py), run as processes on 127.0.0.1, in the style of
controller-runtime's envtest.

Throw-away certificates (a CA, the API server's serving certificate for 127.0.0.1/localhost, an admin
client certificate in system:masters, a service-account key pair) are made with `cryptography` in the
control plane's directory; etcd listens on plain HTTP on 127.0.0.1 with fsync off (test data). The admin
kubeconfig works with real kubectl. Without kube-controller-manager nothing reconciles: no namespace
deletion, no garbage collection, no Deployment status.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
SERVICE_CIDR = "10.96.0.0/12"
READY_SECONDS = 90


def upstream_dir(program: str) -> Path:
    """The binary directory of *program*, built (or found in the cache) by kubestrap/lab/sources/build.py."""
    from kubestrap.lab.sources import build
    target, _seconds, _cached = build.build(build.PROGRAMS[program], log=lambda message: print(message, file=sys.stderr))
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _name(common: str, org: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _certificate(subject: x509.Name, key, issuer: x509.Name, issuer_key, *, ca: bool = False,
                 sans: list[x509.GeneralName] | None = None, server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))  # fmt: skip
    if ca:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), True)
    else:
        usage = [x509.ExtendedKeyUsageOID.SERVER_AUTH] if server else [x509.ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_pki(pki: Path) -> None:
    """CA, API server serving cert, admin client cert and service-account keys under *pki* (0600 keys)."""
    pki.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("kubestrap-test-ca")
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default",
                                                              "kubernetes.default.svc")]  # fmt: skip
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "10.96.0.1")]
    server = _certificate(_name("kube-apiserver"), server_key, ca_name, ca_key, sans=sans, server=True)
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _certificate(_name("kubestrap-test-admin", "system:masters"), admin_key, ca_name, ca_key)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files = {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM), "ca.key": _pem_key(ca_key),
        "apiserver.crt": server.public_bytes(serialization.Encoding.PEM), "apiserver.key": _pem_key(server_key),
        "admin.crt": admin.public_bytes(serialization.Encoding.PEM), "admin.key": _pem_key(admin_key),
        "sa.key": _pem_key(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo),
    }  # fmt: skip
    for name, data in files.items():
        path = pki / name
        path.write_bytes(data)
        path.chmod(0o600 if name.endswith(".key") else 0o644)


def write_client_kubeconfig(pki: Path, server: str, path: Path, common_name: str, *organizations: str) -> Path:
    """A kubeconfig at *path* whose user is a client certificate of *pki*'s CA for CN=*common_name*,
    O=*organizations* (say CN=system:node:NAME, O=system:nodes: a kubelet's identity), embedded with its key."""
    import base64

    import yaml

    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                         *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations)])  # fmt: skip
    cert = _certificate(subject, key, ca.subject, ca_key)
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server,
                                                  "certificate-authority-data": b64((pki / "ca.crt").read_bytes())}}],
        "users": [{"name": common_name, "user": {"client-certificate-data": b64(cert.public_bytes(serialization.Encoding.PEM)),
                                                 "client-key-data": b64(_pem_key(key))}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": common_name}}],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) under *base*; `kubeconfig` is the admin's. *apiserver_args*
    are added to kube-apiserver's command line (say the configuration files a node's API server reads)."""

    def __init__(self, base: Path, controllers: bool = False, apiserver_args: tuple[str, ...] = ()) -> None:
        self.base = base
        self.apiserver_args = tuple(apiserver_args)
        self.pki = base / "pki"
        self.port = free_port()
        self.etcd_port = free_port()
        self.controllers = controllers
        self.kubernetes = upstream_dir("kubernetes")
        self.etcd_bin = upstream_dir("etcd") / "etcd"
        self.kubectl_bin = str(self.kubernetes / "kubectl")
        self.processes: list[tuple[str, subprocess.Popen]] = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.base / "admin.conf"

    @property
    def home(self) -> str:
        """$HOME for kubectl (its discovery cache) and the programs the tests run against this control plane."""
        return str(self.base / "home")

    def _start(self, name: str, argv: list[str]) -> None:
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115 - held open for the process's lifetime
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)  # fmt: skip
        log.close()
        self.processes.append((name, process))

    def logs(self, name: str, tail: int = 4000) -> str:
        path = self.base / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def start(self) -> None:
        write_pki(self.pki)
        (self.base / "home").mkdir(parents=True, exist_ok=True)
        self._write_kubeconfig()
        self._start("etcd", [
            str(self.etcd_bin), "--name", "test", "--data-dir", str(self.base / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{free_port()}", "--unsafe-no-fsync",
            "--log-level", "warn",
        ])  # fmt: skip
        self._start("kube-apiserver", self.apiserver_argv(self.port, *self.apiserver_args))
        self.wait_ready()
        if self.controllers:
            pki = self.pki
            self._start("kube-controller-manager", [
                str(self.kubernetes / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}", "--bind-address=127.0.0.1", "--secure-port=0",
                "--leader-elect=false", f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}", "--use-service-account-credentials=false",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route,-persistentvolume-binder",
            ])  # fmt: skip

    def apiserver_argv(self, port: int, *extra: str) -> list[str]:
        """kube-apiserver's command line on this control plane's etcd and certificates, serving on *port*."""
        pki = self.pki
        return [
            str(self.kubernetes / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", f"--secure-port={port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=RBAC,Node",
            "--allow-privileged=true", "--advertise-address=127.0.0.1", *extra,
        ]  # fmt: skip

    def _write_kubeconfig(self) -> None:
        import yaml

        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url,
                                                      "certificate-authority": str(self.pki / "ca.crt")}}],
            "users": [{"name": "admin", "user": {"client-certificate": str(self.pki / "admin.crt"),
                                                 "client-key": str(self.pki / "admin.key")}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        }  # fmt: skip
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def wait_ready(self) -> None:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        deadline = time.monotonic() + READY_SECONDS
        last = ""
        while time.monotonic() < deadline:
            for name, process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode}):\n{self.logs(name)}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=context, timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise RuntimeError(f"kube-apiserver not ready after {READY_SECONDS}s ({last}):\n{self.logs('kube-apiserver')}")

    def client_kubeconfig(self, common_name: str, *organizations: str) -> Path:
        """A kubeconfig of this control plane for a client certificate of its CA (write_client_kubeconfig)."""
        name = common_name.replace(":", "-")
        return write_client_kubeconfig(self.pki, self.url, self.base / f"{name}.conf", common_name, *organizations)

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None,
                kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Real kubectl with the admin kubeconfig (or *kubeconfig*)."""
        done = subprocess.run([self.kubectl_bin, "--kubeconfig", str(kubeconfig or self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": self.home},
                              input=stdin)  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done

    def stop(self) -> None:
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()


@contextmanager
def started(base: Path, controllers: bool = False, apiserver_args: tuple[str, ...] = ()) -> Iterator[ControlPlane]:
    plane = ControlPlane(base, controllers, apiserver_args)
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
