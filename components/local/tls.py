"""A throw-away PKI for tests and benches: root CA -> subordinate CA -> leaf, as an AWS Private CA hierarchy.

The leaf carries DNS and IP subjectAltNames. Every file is written under the directory the caller gives;
no key leaves it.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LEAF_DNS_NAME", "Pki", "make_pki", "self_signed_ca_pem"]

LEAF_DNS_NAME = "backend.internal.test"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


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
