"""A real Kubernetes control plane on loopback, for tests and local use.

Runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler built
from source by ``hack/build-controlplane.sh``. There is no kubelet and no
container runtime: nodes and pod status are expected to come from a
simulated kubelet, for which this module prepares the TLS material
(``kubelet_serving_cert_file`` & co.) so that the apiserver can reach it over
HTTPS for ``pods/log``, ``exec``, ``attach`` and ``portforward``.

Only the standard library and ``cryptography`` are used here on purpose:
this module must stay importable without kopf or the kubesweep engine.

Example::

    with ControlPlane(tmpdir, bin_dir) as cp:
        subprocess.run(["kubectl", "--kubeconfig", cp.kubeconfig, "get", "ns"])
"""

from __future__ import annotations

import atexit
import base64
import datetime as _dt
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "ControlPlane",
    "ControlPlaneError",
    "DEFAULT_KUBE_VERSION",
    "build_binaries",
    "build_script",
    "default_bin_dir",
    "kube_version",
    "repo_root",
]

#: Used only when hack/controlplane/go.mod cannot be found (installed package).
DEFAULT_KUBE_VERSION = "v1.36.3"

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"  # virtual: allocated, never contacted
KUBERNETES_SERVICE_IP = "10.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


# --------------------------------------------------------------------------
# Locating the build script and the binaries
# --------------------------------------------------------------------------


def repo_root() -> Path | None:
    """The source checkout this module lives in, if it is one."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "hack" / "controlplane" / "go.mod").is_file():
            return parent
    return None


def build_script() -> Path:
    env = os.environ.get("KUBESWEEP_BUILD_SCRIPT")
    if env:
        return Path(env)
    root = repo_root()
    if root is None:
        raise ControlPlaneError(
            "hack/build-controlplane.sh not found (not a source checkout); "
            "set KUBESWEEP_BUILD_SCRIPT or KUBESWEEP_BIN_DIR"
        )
    return root / "hack" / "build-controlplane.sh"


def kube_version() -> str:
    """The Kubernetes release pinned in hack/controlplane/go.mod."""
    root = repo_root()
    if root is not None:
        text = (root / "hack" / "controlplane" / "go.mod").read_text()
        m = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", text, re.M)
        if m:
            return m.group(1)
    return DEFAULT_KUBE_VERSION


def default_bin_dir() -> Path:
    """``$KUBESWEEP_BIN_DIR``, else the build script's output directory."""
    env = os.environ.get("KUBESWEEP_BIN_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("KUBESWEEP_CACHE") or str(Path.home() / ".cache" / "kubesweep")
    return Path(cache) / f"bin-{kube_version()}"


def build_binaries(
    *, force: bool = False, stream: IO[str] | None = None, timeout: float | None = None
) -> Path:
    """Run hack/build-controlplane.sh (fast when already built); return the bin dir.

    With ``$KUBESWEEP_BIN_DIR`` set, nothing is built: that directory is
    checked and returned.
    """
    if os.environ.get("KUBESWEEP_BIN_DIR"):
        bin_dir = Path(os.environ["KUBESWEEP_BIN_DIR"])
        missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
        if missing:
            raise ControlPlaneError(f"KUBESWEEP_BIN_DIR={bin_dir} lacks {', '.join(missing)}")
        return bin_dir
    cmd = ["bash", str(build_script())] + (["--force"] if force else [])
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=stream if stream is not None else None,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise ControlPlaneError(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise ControlPlaneError(f"{' '.join(cmd)} printed no bin directory")
    return Path(lines[-1])


# --------------------------------------------------------------------------
# PKI
# --------------------------------------------------------------------------


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


@dataclass
class _CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str, days: int = 365) -> "_CA":
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _dt.timedelta(minutes=5))
            .not_valid_after(_now() + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    def issue(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        days: int = 365,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _dt.timedelta(minutes=5))
            .not_valid_after(_now() + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together while picking)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """preexec_fn: have Linux SIGKILL the child if the parent dies first."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    log_file: IO[bytes] = field(repr=False)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            data = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(data[-lines:])


# --------------------------------------------------------------------------
# The control plane
# --------------------------------------------------------------------------


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler on 127.0.0.1.

    Everything lives under ``workdir``: ``pki/``, ``etcd/``, ``logs/<name>.log``,
    per-component kubeconfigs and the admin ``kubeconfig``.

    Attributes available after :meth:`start`:
      ``server``, ``kubeconfig``, ``ca_file``, ``admin_cert_file``,
      ``admin_key_file``, ``kubelet_ca_file`` (the CA the apiserver trusts for
      kubelet serving certs), ``kubelet_serving_cert_file`` /
      ``kubelet_serving_key_file`` (a serving cert for 127.0.0.1/localhost,
      signed by that CA), ``kubelet_client_ca_file`` (the CA that signed the
      apiserver's kubelet client cert; a simulated kubelet should require
      client certs verified against it), ``etcd_url``, ``log_dir``.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        bin_dir: str | os.PathLike[str] | None = None,
        *,
        extra_args: Mapping[str, Sequence[str]] | None = None,
        controllers: str = "*",
        start_timeout: float = 120.0,
        verbosity: int = 1,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.bin_dir = Path(bin_dir) if bin_dir is not None else default_bin_dir()
        self.extra_args = {k: list(v) for k, v in (extra_args or {}).items()}
        self.controllers = controllers
        self.start_timeout = start_timeout
        self.verbosity = verbosity

        self.pki_dir = self.workdir / "pki"
        self.log_dir = self.workdir / "logs"
        self.etcd_dir = self.workdir / "etcd"
        self.kubeconfig = self.workdir / "kubeconfig"

        self._procs: list[_Proc] = []
        self._lock = threading.Lock()
        self._atexit_registered = False
        self.startup_seconds: float | None = None

        self.server: str = ""
        self.etcd_url: str = ""
        self.apiserver_port = 0
        self.controller_manager_port = 0
        self.scheduler_port = 0

    # -- context manager -------------------------------------------------

    def __enter__(self) -> "ControlPlane":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- public API --------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.alive() for p in self._procs)

    def start(self) -> "ControlPlane":
        if self._procs:
            raise ControlPlaneError("already started")
        missing = [b for b in BINARIES if not os.access(self.bin_dir / b, os.X_OK)]
        if missing:
            raise ControlPlaneError(
                f"{self.bin_dir} lacks {', '.join(missing)}; run hack/build-controlplane.sh "
                "(or python -m kubesweep.devcluster build)"
            )
        t0 = time.monotonic()
        for d in (self.workdir, self.pki_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._pick_ports()
            self._make_pki()
            self._write_kubeconfigs()
            self._start_etcd()
            self._wait_etcd()
            self._start_apiserver()
            self._wait_http(
                "kube-apiserver", f"{self.server}/readyz", self._admin_ssl_context(), want_body=b"ok"
            )
            self._start_controller_manager()
            self._start_scheduler()
            insecure = self._insecure_ssl_context()
            self._wait_http(
                "kube-controller-manager",
                f"https://127.0.0.1:{self.controller_manager_port}/healthz",
                insecure,
                want_body=b"ok",
            )
            self._wait_http(
                "kube-scheduler",
                f"https://127.0.0.1:{self.scheduler_port}/healthz",
                insecure,
                want_body=b"ok",
            )
            self._wait_http(
                "default ServiceAccount",
                f"{self.server}/api/v1/namespaces/default/serviceaccounts/default",
                self._admin_ssl_context(),
            )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every process (newest first), SIGKILL what is left after timeout."""
        with self._lock:
            procs, self._procs = self._procs, []
        for p in reversed(procs):
            if p.alive():
                try:
                    p.popen.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                p.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(timeout=timeout)
            p.log_file.close()

    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG pointing at the admin kubeconfig."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def issue_kubelet_serving_cert(
        self,
        name: str,
        ip_addresses: Sequence[str] = ("127.0.0.1",),
        dns_names: Sequence[str] = (),
        *,
        stem: str | None = None,
    ) -> tuple[Path, Path]:
        """Another kubelet serving cert (for other node names/IPs); returns (cert, key) paths.

        It is signed by the CA given to the apiserver as --kubelet-certificate-authority.
        """
        cert, key = self._kubelet_ca.issue(
            f"system:node:{name}",
            organizations=["system:nodes"],
            server=True,
            dns_names=["localhost", name, *dns_names],
            ip_addresses=ip_addresses,
        )
        stem = stem or f"kubelet-{name}"
        c = _write(self.pki_dir / f"{stem}.crt", _pem_cert(cert))
        k = _write(self.pki_dir / f"{stem}.key", _pem_key(key), 0o600)
        return c, k

    def issue_client_cert(
        self, name: str, common_name: str, organizations: Sequence[str] = ()
    ) -> tuple[Path, Path]:
        """A client cert signed by the cluster CA (the apiserver's --client-ca-file)."""
        cert, key = self._ca.issue(common_name, organizations=organizations, client=True)
        c = _write(self.pki_dir / f"{name}.crt", _pem_cert(cert))
        k = _write(self.pki_dir / f"{name}.key", _pem_key(key), 0o600)
        return c, k

    def write_kubeconfig(self, path: str | os.PathLike[str], cert: Path, key: Path) -> Path:
        """A kubeconfig for this cluster authenticating with the given client cert."""
        return self._write_kubeconfig(Path(path), "user", cert, key)

    # -- set-up steps --------------------------------------------------------

    def _pick_ports(self) -> None:
        (
            self.etcd_client_port,
            self.etcd_peer_port,
            self.apiserver_port,
            self.controller_manager_port,
            self.scheduler_port,
        ) = _free_ports(5)
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.etcd_url = f"http://127.0.0.1:{self.etcd_client_port}"

    def _make_pki(self) -> None:
        pki = self.pki_dir
        self._ca = _CA.create("kubesweep-devcluster-ca")
        self.ca_file = _write(pki / "ca.crt", _pem_cert(self._ca.cert))
        self.ca_key_file = _write(pki / "ca.key", _pem_key(self._ca.key), 0o600)

        cert, key = self._ca.issue(
            "kube-apiserver",
            server=True,
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ip_addresses=["127.0.0.1", KUBERNETES_SERVICE_IP],
        )
        self.apiserver_cert_file = _write(pki / "apiserver.crt", _pem_cert(cert))
        self.apiserver_key_file = _write(pki / "apiserver.key", _pem_key(key), 0o600)

        def client(name: str, cn: str, orgs: Sequence[str] = ()) -> tuple[Path, Path]:
            c, k = self._ca.issue(cn, organizations=orgs, client=True)
            return (
                _write(pki / f"{name}.crt", _pem_cert(c)),
                _write(pki / f"{name}.key", _pem_key(k), 0o600),
            )

        self.admin_cert_file, self.admin_key_file = client(
            "admin", "kubesweep-admin", ["system:masters"]
        )
        self._kcm_cert = client("kube-controller-manager", "system:kube-controller-manager")
        self._sched_cert = client("kube-scheduler", "system:kube-scheduler")
        # The apiserver's client cert towards kubelets (pods/log, exec, ...).
        self.apiserver_kubelet_client_cert_file, self.apiserver_kubelet_client_key_file = client(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["kubeadm:cluster-admins"]
        )
        self.kubelet_client_ca_file = self.ca_file

        # Kubelet serving certs get their own CA: --kubelet-certificate-authority.
        self._kubelet_ca = _CA.create("kubesweep-devcluster-kubelet-ca")
        self.kubelet_ca_file = _write(pki / "kubelet-ca.crt", _pem_cert(self._kubelet_ca.cert))
        self.kubelet_ca_key_file = _write(pki / "kubelet-ca.key", _pem_key(self._kubelet_ca.key), 0o600)
        self.kubelet_serving_cert_file, self.kubelet_serving_key_file = self.issue_kubelet_serving_cert(
            "kubelet", stem="kubelet-serving"
        )

        # Front proxy (aggregation layer / request-header authentication): the
        # apiserver publishes this CA in kube-system/extension-apiserver-
        # authentication, which the controller-manager's and scheduler's
        # delegated authentication read.
        self._front_proxy_ca = _CA.create("kubesweep-devcluster-front-proxy-ca")
        self.front_proxy_ca_file = _write(pki / "front-proxy-ca.crt", _pem_cert(self._front_proxy_ca.cert))
        c, k = self._front_proxy_ca.issue("front-proxy-client", client=True)
        self.front_proxy_client_cert_file = _write(pki / "front-proxy-client.crt", _pem_cert(c))
        self.front_proxy_client_key_file = _write(pki / "front-proxy-client.key", _pem_key(k), 0o600)

        # ServiceAccount token signing key pair (RSA: the apiserver signs RS256).
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sa_key_file = _write(pki / "sa.key", _pem_key(sa), 0o600)
        self.sa_pub_file = _write(
            pki / "sa.pub",
            sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def _write_kubeconfig(self, path: Path, user: str, cert: Path, key: Path) -> Path:
        b64 = lambda p: base64.b64encode(Path(p).read_bytes()).decode()  # noqa: E731
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubesweep-dev",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(self.ca_file),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": b64(cert),
                        "client-key-data": b64(key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "kubesweep-dev",
                    "context": {"cluster": "kubesweep-dev", "user": user, "namespace": "default"},
                }
            ],
            "current-context": "kubesweep-dev",
        }
        # JSON is YAML: kubectl and every client library read it.
        return _write(path, json.dumps(cfg, indent=2).encode(), 0o600)

    def _write_kubeconfigs(self) -> None:
        self._write_kubeconfig(self.kubeconfig, "admin", self.admin_cert_file, self.admin_key_file)
        self.controller_manager_kubeconfig = self._write_kubeconfig(
            self.workdir / "kube-controller-manager.kubeconfig", "kube-controller-manager", *self._kcm_cert
        )
        self.scheduler_kubeconfig = self._write_kubeconfig(
            self.workdir / "kube-scheduler.kubeconfig", "kube-scheduler", *self._sched_cert
        )

    def _spawn(self, name: str, args: list[str]) -> _Proc:
        log_path = self.log_dir / f"{name}.log"
        log_file = open(log_path, "ab")
        argv = [str(self.bin_dir / name), *args, *self.extra_args.get(name, [])]
        log_file.write(f"### {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        log_file.flush()
        in_main_thread = threading.current_thread() is threading.main_thread()
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            # Own process group: a Ctrl-C in the terminal reaches only us, and
            # we stop the children in order. PDEATHSIG is tied to the creating
            # thread, so it is only used from the main thread.
            start_new_session=True,
            preexec_fn=_die_with_parent if in_main_thread and sys.platform == "linux" else None,
        )
        proc = _Proc(name, popen, log_path, log_file)
        with self._lock:
            self._procs.append(proc)
        return proc

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self._spawn(
            "etcd",
            [
                "--name=kubesweep",
                f"--data-dir={self.etcd_dir}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=kubesweep={peer}",
                "--initial-cluster-state=new",
                # Throw-away test data: durability is not worth the fsyncs.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

    def _start_apiserver(self) -> None:
        pki = self.pki_dir
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={pki / 'apiserver-generated'}",
                f"--tls-cert-file={self.apiserver_cert_file}",
                f"--tls-private-key-file={self.apiserver_key_file}",
                f"--client-ca-file={self.ca_file}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                # The "kubernetes" Service's endpoints would be 127.0.0.1, which
                # Endpoints validation rejects; nothing here routes to it anyway.
                "--endpoint-reconciler-type=none",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={self.sa_pub_file}",
                f"--service-account-signing-key-file={self.sa_key_file}",
                f"--kubelet-client-certificate={self.apiserver_kubelet_client_cert_file}",
                f"--kubelet-client-key={self.apiserver_kubelet_client_key_file}",
                f"--kubelet-certificate-authority={self.kubelet_ca_file}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--requestheader-client-ca-file={self.front_proxy_ca_file}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={self.front_proxy_client_cert_file}",
                f"--proxy-client-key-file={self.front_proxy_client_key_file}",
                "--profiling=false",
                f"--v={self.verbosity}",
            ],
        )

    def _start_controller_manager(self) -> None:
        kc = self.controller_manager_kubeconfig
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.controller_manager_port}",
                f"--cert-dir={self.pki_dir / 'kcm-generated'}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",  # default 20/s: 200 Jobs would take 20 s to get pods
                "--leader-elect=false",
                f"--controllers={self.controllers}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.sa_key_file}",
                f"--root-ca-file={self.ca_file}",
                f"--cluster-signing-cert-file={self.ca_file}",
                f"--cluster-signing-key-file={self.ca_key_file}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--profiling=false",
                f"--v={self.verbosity}",
            ],
        )

    def _start_scheduler(self) -> None:
        kc = self.scheduler_kubeconfig
        self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.scheduler_port}",
                f"--cert-dir={self.pki_dir / 'scheduler-generated'}",
                "--leader-elect=false",
                "--profiling=false",
                f"--v={self.verbosity}",
            ],
        )

    # -- waiting -------------------------------------------------------------

    def _admin_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.admin_cert_file), str(self.admin_key_file))
        return ctx

    @staticmethod
    def _insecure_ssl_context() -> ssl.SSLContext:
        # Controller-manager and scheduler serve self-signed certs from their
        # --cert-dir; only their /healthz is read, on loopback.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _check_alive(self, waiting_for: str) -> None:
        for p in list(self._procs):
            if not p.alive():
                raise ControlPlaneError(
                    f"{p.name} exited with code {p.popen.returncode} while waiting for "
                    f"{waiting_for}; last lines of {p.log_path}:\n{p.log_tail()}"
                )

    def _deadline_error(self, what: str, last: str) -> ControlPlaneError:
        tails = "\n".join(f"--- {p.name} ({p.log_path}):\n{p.log_tail(15)}" for p in self._procs)
        return ControlPlaneError(
            f"timed out after {self.start_timeout:.0f}s waiting for {what} (last: {last})\n{tails}"
        )

    def _wait_etcd(self) -> None:
        url = f"{self.etcd_url}/health"
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive("etcd")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    body = json.loads(r.read() or b"{}")
                    if body.get("health") == "true":
                        return
                    last = str(body)
            except (OSError, ValueError) as e:
                last = str(e)
            time.sleep(0.1)
        raise self._deadline_error("etcd", last)

    def _wait_http(
        self, what: str, url: str, ctx: ssl.SSLContext, want_body: bytes | None = None
    ) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive(what)
            try:
                with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
                    body = r.read()
                    if r.status == 200 and (want_body is None or body.strip() == want_body):
                        return
                    last = f"HTTP {r.status}: {body[:200]!r}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}: {e.read()[:300]!r}"
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        raise self._deadline_error(what, last)
