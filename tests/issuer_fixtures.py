"""CSRs for the issuer's tests, built with `cryptography` (which the issuer itself never imports).

`build_csr` makes ordinary requests; `der_*` helpers and `sign_request` make requests byte by byte (odd subjects,
duplicate extensions, compressed points...) that still carry a valid signature, so a test of one rule is not
refused by another.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

KEY_KINDS = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096")
HASHES: dict[str, hashes.SHA256 | hashes.SHA384 | hashes.SHA512] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


@functools.cache
def key(kind: str, index: int = 0) -> Any:
    """A private key of `kind` (see KEY_KINDS, plus weak or unusual kinds), generated once per session and index."""
    del index  # part of the cache key: several distinct keys of one kind
    if kind == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ec-p521":
        return ec.generate_private_key(ec.SECP521R1())
    if kind == "ec-secp256k1":
        return ec.generate_private_key(ec.SECP256K1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "dsa-2048":
        return dsa.generate_private_key(2048)
    if kind == "rsa-e3":
        return rsa.generate_private_key(public_exponent=3, key_size=2048)
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa-")))
    raise ValueError(kind)


def build_csr(
    private_key: Any,
    *,
    common_name: str | None = None,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    hash_name: str | None = "sha256",
    extra_subject: Sequence[x509.NameAttribute] = (),
    extensions: Sequence[x509.ExtensionType] = (),
    uris: Sequence[str] = (),
) -> str:
    """PEM of a CSR for these names, signed by `private_key`."""
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([*attributes, *extra_subject]))
    general_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    general_names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
    general_names += [x509.UniformResourceIdentifier(uri) for uri in uris]
    if general_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    algorithm = HASHES[hash_name] if hash_name else None
    return builder.sign(private_key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def csr_der(pem: str) -> bytes:
    return x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)


# --- DER, byte by byte -----------------------------------------------------------------------------------------


def der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der(tag: int, *contents: bytes) -> bytes:
    content = b"".join(contents)
    return bytes([tag]) + der_length(len(content)) + content


def der_oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray()
    for value in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        body += bytes(reversed(chunk))
    return der(0x06, bytes(body))


def der_utf8(text: str) -> bytes:
    return der(0x0C, text.encode())


def der_integer(value: int) -> bytes:
    return der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def der_name(*attributes: tuple[str, bytes]) -> bytes:
    """A subject of one RDN per (OID, encoded value)."""
    return der(0x30, *[der(0x31, der(0x30, der_oid(oid), value)) for oid, value in attributes])


def der_extension_request(*extensions: bytes) -> bytes:
    """The extensionRequest attribute holding `extensions` (each an encoded Extension)."""
    return der(0x30, der_oid("1.2.840.113549.1.9.14"), der(0x31, der(0x30, *extensions)))


def der_san(*general_names: bytes) -> bytes:
    """A subjectAltName Extension of encoded GeneralNames (e.g. `der(0x82, b"host.example")`)."""
    return der(0x30, der_oid("2.5.29.17"), der(0x04, der(0x30, *general_names)))


def spki(private_key: Any) -> bytes:
    return bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def request_info(
    private_key: Any, subject: bytes, attributes: Sequence[bytes] = (), *, public_key_info: bytes | None = None
) -> bytes:
    """A CertificationRequestInfo: version 0, `subject`, the key's SubjectPublicKeyInfo, `[0]` attributes."""
    return der(0x30, der_integer(0), subject, public_key_info or spki(private_key), der(0xA0, *attributes))


def sign_request(private_key: Any, info: bytes, hash_name: str = "sha256") -> str:
    """PEM of the request `info` signed by `private_key` (ECDSA or RSA PKCS#1 v1.5)."""
    algorithm = HASHES[hash_name]
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        signature = private_key.sign(info, ec.ECDSA(algorithm))
        algorithm_id = der(0x30, der_oid({"sha256": "1.2.840.10045.4.3.2", "sha384": "1.2.840.10045.4.3.3",
                                          "sha512": "1.2.840.10045.4.3.4"}[hash_name]))  # fmt: skip
    else:
        signature = private_key.sign(info, padding.PKCS1v15(), algorithm)
        algorithm_id = der(0x30, der_oid({"sha256": "1.2.840.113549.1.1.11", "sha384": "1.2.840.113549.1.1.12",
                                          "sha512": "1.2.840.113549.1.1.13"}[hash_name]), der(0x05))  # fmt: skip
    return pem(der(0x30, info, algorithm_id, der(0x03, b"\x00" + signature)))


def pem(request_der: bytes) -> str:
    """PEM of any bytes, well-formed DER or not (`cryptography` would refuse to load the odd ones)."""
    body = base64.b64encode(request_der).decode()
    lines = "\n".join(body[index : index + 64] for index in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{lines}\n-----END CERTIFICATE REQUEST-----\n"
