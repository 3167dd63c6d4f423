"""Shared helpers for the data-plane tests: a throw-away PKI, free ports and a real nginx process.

The PKI mirrors an AWS Private CA hierarchy: a root CA, a subordinate CA that issues the leaves, and a leaf
with DNS and IP subjectAltNames. Everything is written under a pytest tmp_path; no key leaves it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components.nginx_config import render_server_block, render_standalone_conf

REPO = Path(__file__).resolve().parent.parent
TRUST_CA = REPO / "scripts" / "trust-ca"
VERIFY_TLS = REPO / "scripts" / "verify-tls"
LEAF_DNS_NAME = "backend.internal.test"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def require_binary(name: str) -> str:
    """Path of `name`; fails (not skips) the test when missing: CI installs every binary these tests use."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH; install it (Debian: nginx-light, openssl, tcpdump, wrk)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after 10s")


# --- PKI -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Files of one test PKI. `ca_bundle` holds the root only, as on a host's trust store."""

    ca_bundle: Path
    fullchain: Path  # leaf, then the subordinate CA: what nginx serves
    leaf_key: Path
    leaf_cert: Path
    not_after: datetime.datetime


def _new_key(key_type: str) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"key_type must be 'ec' or 'rsa', got {key_type!r}")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Data plane tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_certificate(
    subject: str,
    key: PrivateKey,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    now: datetime.datetime,
    not_after: datetime.datetime | None = None,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after or now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def self_signed_ca_pem(key: PrivateKey, common_name: str, not_after: datetime.datetime) -> str:
    """A self-signed CA certificate (PEM) that ends at `not_after`, as a parent CA would present it."""
    now = datetime.datetime.now(datetime.UTC)
    return _pem(_ca_certificate(common_name, key, _name(common_name), key, now, not_after)).decode()


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def make_pki(
    directory: Path,
    *,
    key_type: str = "ec",
    dns_names: Sequence[str] = (LEAF_DNS_NAME,),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    days: int = 90,
) -> Pki:
    """Root CA -> subordinate CA -> leaf (`key_type` "ec" = P-256 or "rsa" = 2048 bits for all three)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    root_key, sub_key, leaf_key = _new_key(key_type), _new_key(key_type), _new_key(key_type)
    root = _ca_certificate("Test Root CA", root_key, _name("Test Root CA"), root_key, now)
    subordinate = _ca_certificate("Test Subordinate CA", sub_key, root.subject, root_key, now)
    san = [x509.DNSName(name) for name in dns_names] + [
        x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses
    ]
    not_after = now + datetime.timedelta(days=days)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0] if dns_names else "backend"))
        .issuer_name(subordinate.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(sub_key.public_key()), critical=False)
        .sign(sub_key, hashes.SHA256())
    )
    pki = Pki(
        ca_bundle=directory / "ca-bundle.pem",
        fullchain=directory / "fullchain.pem",
        leaf_key=directory / "leaf.key",
        leaf_cert=directory / "leaf.pem",
        not_after=not_after,
    )
    pki.ca_bundle.write_bytes(_pem(root))
    pki.fullchain.write_bytes(_pem(leaf) + _pem(subordinate))
    pki.leaf_cert.write_bytes(_pem(leaf))
    pki.leaf_key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pki.leaf_key.chmod(0o600)
    return pki


# --- nginx -----------------------------------------------------------------------------------------------


def write_standalone_conf(workdir: Path, server_blocks: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(render_standalone_conf(server_block=server_blocks, workdir=str(workdir)))
    return conf


def tls_server_block(pki: Pki, port: int, listen_address: str = "127.0.0.1", **options: object) -> str:
    return render_server_block(
        server_names=[LEAF_DNS_NAME],
        certificate_path=str(pki.fullchain),
        private_key_path=str(pki.leaf_key),
        port=port,
        listen_address=listen_address,
        **options,  # type: ignore[arg-type]
    )


def plain_http_server_block(port: int, listen_address: str) -> str:
    """A cleartext twin of the TLS server, for the capture control test only."""
    return (
        "server {\n"
        f"    listen {listen_address}:{port};\n"
        "    location / {\n"
        "        default_type application/json;\n"
        '        return 200 \'{"status":"ok"}\\n\';\n'
        "    }\n"
        "}\n"
    )


def nginx_test_config(conf: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a standalone conf; the caller asserts on returncode and stderr."""
    nginx = require_binary("nginx")
    return subprocess.run(
        [nginx, "-t", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # nginx: fast shutdown of master and workers
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def running_nginx(conf: Path, ports: Sequence[int] = (), netns: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """nginx in the foreground from `conf`; waits until it listens and always stops it.

    In a network namespace the ports are unreachable from here, so readiness is the pid file, which nginx
    writes only after it has bound every listening socket.
    """
    nginx = require_binary("nginx")
    command = [nginx, "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"]
    if netns is not None:
        command = [require_binary("ip"), "netns", "exec", netns, *command]
    pid_file = conf.parent / "nginx.pid"
    pid_file.unlink(missing_ok=True)
    error_log = conf.parent / "error.log"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            if netns is None:
                for port in ports:
                    wait_for_port(port, process)
            else:
                deadline = time.monotonic() + 10
                while not pid_file.exists():
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"nginx did not start in {netns}: {process.returncode}")
                    time.sleep(0.05)
        except RuntimeError as error:
            stop_process(process)
            stderr = process.stderr.read().decode() if process.stderr else ""
            log = error_log.read_text() if error_log.exists() else ""
            raise RuntimeError(f"{error}\nnginx stderr: {stderr}\nerror.log: {log}") from None
        yield process
    finally:
        stop_process(process)
        if process.stderr:
            process.stderr.close()


def run(command: Sequence[str | os.PathLike[str]], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout, check=False)
