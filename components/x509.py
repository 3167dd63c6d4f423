"""Pure X.509 helpers shared by the PrivateCA component and the certificate provider.

Nothing here talks to AWS or Pulumi: key and CSR generation, name validation, parsing what ACM PCA returns,
and the mapping from a CA's key algorithm to the signing algorithm it must use.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

# The name and algorithm rules are shared with settings and the renderers; imported here so that
# `x509.is_dns_name` and friends keep working for every caller (and for providers pickled in old state).
from components.rules.aws import KEY_ALGORITHMS, unsupported_key_algorithm
from components.rules.names import is_dns_name, is_ip_address

__all__ = [
    "KEY_ALGORITHMS",
    "SIGNING_ALGORITHMS",
    "CsrInfo",
    "PrivateKey",
    "SubjectNames",
    "build_csr",
    "colon_hex",
    "generate_private_key",
    "is_dns_name",
    "is_ip_address",
    "iso_utc",
    "join_pem",
    "key_algorithm_of",
    "load_certificates",
    "not_after",
    "parse_csr",
    "parse_iso_utc",
    "private_key_pem",
    "sha256_fingerprints",
    "signing_algorithm_for",
    "unsupported_key_algorithm",
]

#: The signing algorithm a CA uses with each of its key algorithms. SHA-256 for P-256 and RSA keys is what
#: every TLS client accepts; P-384 pairs with SHA-384 as NIST SP 800-57 recommends.
SIGNING_ALGORITHMS: dict[str, str] = {
    "EC_prime256v1": "SHA256WITHECDSA",
    "EC_secp384r1": "SHA384WITHECDSA",
    "RSA_2048": "SHA256WITHRSA",
    "RSA_3072": "SHA256WITHRSA",
    "RSA_4096": "SHA256WITHRSA",
}


def signing_algorithm_for(key_algorithm: str) -> str:
    """The ACM PCA `SigningAlgorithm` that matches a CA's `KeyAlgorithm`."""
    try:
        return SIGNING_ALGORITHMS[key_algorithm]
    except KeyError:
        raise ValueError(unsupported_key_algorithm(key_algorithm)) from None


@dataclass(frozen=True)
class SubjectNames:
    """The names a certificate must carry: DNS names and IP addresses, normalised and de-duplicated."""

    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]

    @classmethod
    def parse(cls, common_name: str, alternative_names: Iterable[str]) -> SubjectNames:
        """Split and validate names; the common name is always a SAN too (clients ignore the CN).

        Raises ValueError naming the offending value. IPs are only valid as SANs, not as the common name's
        only form of identity, but RFC 6125 clients match them in the SAN, so an IP common name is allowed.
        """
        dns: list[str] = []
        ips: list[str] = []
        for raw in [common_name, *alternative_names]:
            name = str(raw).strip()
            if not name:
                continue
            if is_ip_address(name):
                normalised = str(ipaddress.ip_address(name))
                if normalised not in ips:
                    ips.append(normalised)
            elif is_dns_name(name):
                lowered = name.rstrip(".").lower()
                if lowered not in dns:
                    dns.append(lowered)
            else:
                raise ValueError(
                    f"{name!r} is neither a DNS name (letters, digits and hyphens in dot-separated labels "
                    "of at most 63 characters, optionally starting with '*.') nor an IP address"
                )
        if not dns and not ips:
            raise ValueError("at least one DNS name or IP address is required")
        return cls(tuple(dns), tuple(ips))

    def general_names(self) -> list[x509.GeneralName]:
        return [
            *(x509.DNSName(name) for name in self.dns_names),
            *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in self.ip_addresses),
        ]

    def as_set(self) -> set[str]:
        return {*self.dns_names, *self.ip_addresses}


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def generate_private_key(key_algorithm: str) -> PrivateKey:
    """A new private key for one of `KEY_ALGORITHMS`."""
    if key_algorithm == "EC_prime256v1":
        return ec.generate_private_key(ec.SECP256R1())
    if key_algorithm == "EC_secp384r1":
        return ec.generate_private_key(ec.SECP384R1())
    if key_algorithm.startswith("RSA_") and key_algorithm in KEY_ALGORITHMS:
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_algorithm[4:]))
    raise ValueError(unsupported_key_algorithm(key_algorithm))


def key_algorithm_of(public_key: object) -> str:
    """The ACM PCA name of a public key's algorithm, or ValueError for anything else."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        names = {"secp256r1": "EC_prime256v1", "secp384r1": "EC_secp384r1"}
        if public_key.curve.name in names:
            return names[public_key.curve.name]
    if isinstance(public_key, rsa.RSAPublicKey) and f"RSA_{public_key.key_size}" in KEY_ALGORITHMS:
        return f"RSA_{public_key.key_size}"
    raise ValueError(f"the key type is not supported; allowed: {', '.join(KEY_ALGORITHMS)}")


def private_key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def build_csr(key: PrivateKey, common_name: str, names: SubjectNames) -> str:
    """A PEM CSR with the common name as subject and every name as a SAN."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .add_extension(x509.SubjectAlternativeName(names.general_names()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class CsrInfo:
    common_name: str | None
    names: set[str]
    key_algorithm: str


def parse_csr(csr_pem: str) -> CsrInfo:
    """Parse and verify a PEM CSR; ValueError if it is malformed, badly signed or uses an unsupported key."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as error:
        raise ValueError(f"not a PEM certificate signing request ({error})") from None
    if not csr.is_signature_valid:
        raise ValueError("its signature does not verify against its own public key")
    common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(common_names[0].value) if common_names else None
    names: set[str] = set()
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        names.update(name.lower() for name in san.get_values_for_type(x509.DNSName))
        names.update(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return CsrInfo(common_name, names, key_algorithm_of(csr.public_key()))


def colon_hex(serial: int) -> str:
    """A serial number as upper-case, colon-separated hex bytes (`openssl x509 -serial` style with colons)."""
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return ":".join(f"{byte:02X}" for byte in raw)


def load_certificates(pem: str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, in order."""
    return x509.load_pem_x509_certificates(pem.encode()) if pem.strip() else []


def sha256_fingerprints(bundle_pem: str) -> list[str]:
    """The SHA-256 fingerprint (of the DER encoding: lowercase hex, no colons) of every certificate in a PEM bundle,
    in order: what a host pins (`openssl x509 -outform DER | sha256sum` prints the same).

    Raises ValueError when the text holds no certificate or one that does not parse.
    """
    certificates = load_certificates(bundle_pem) if isinstance(bundle_pem, str) else []
    if not certificates:
        raise ValueError("the CA bundle holds no PEM certificate")
    return [certificate.fingerprint(hashes.SHA256()).hex() for certificate in certificates]


def not_after(certificate: x509.Certificate) -> datetime:
    return certificate.not_valid_after_utc


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, second precision: the form `not_after` is exported in."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_iso_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def join_pem(*parts: str | Sequence[str]) -> str:
    """Concatenate PEM blocks with exactly one newline between them and a trailing newline."""
    flat: list[str] = []
    for part in parts:
        flat.extend([part] if isinstance(part, str) else part)
    return "".join(block.strip() + "\n" for block in flat if block and block.strip())
