"""How large a CSR, a certificate and a chain get, estimated from names and key algorithms before any exists.

AWS caps what the stack sends and stores: IssueCertificate takes a CSR of at most 32,768 bytes and a Parameter
Store value holds at most 8 KB (`components.rules.aws`). Settings refuse names that cannot fit before anything is
created, so the estimates here are upper bounds: every length below is the largest DER encoding the field can have
(DER is a tag, a length and the content; the certificate's extensions are those ACM PCA's end-entity templates
write, with room to spare). tests/test_rules.py holds them against CSRs and certificates built with `cryptography`.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class KeySize:
    public_key_info: int
    """DER size of the SubjectPublicKeyInfo."""
    signature: int
    """DER size of the largest signature BIT STRING this key makes."""


#: ACM PCA's key algorithms: P-256 and P-384 keys sign ECDSA (r and s each at most one byte longer than the curve);
#: RSA signatures are as long as the modulus.
KEY_SIZES: dict[str, KeySize] = {
    "EC_prime256v1": KeySize(91, 75),
    "EC_secp384r1": KeySize(120, 107),
    "RSA_2048": KeySize(294, 261),
    "RSA_3072": KeySize(422, 389),
    "RSA_4096": KeySize(550, 517),
}
#: The largest key, for a signer that is not known.
LARGEST_KEY = "RSA_4096"
#: AlgorithmIdentifier of the signature (sha256WithRSAEncryption with its NULL is the longest used here).
_SIGNATURE_ALGORITHM = 15
#: version, a serial of up to 20 bytes, and a validity of two GeneralizedTimes.
_VERSION, _SERIAL, _VALIDITY = 5, 23, 36
#: basicConstraints, keyUsage, extKeyUsage (server and client auth), subject and authority key identifiers,
#: plus room for a template's policies or access descriptions.
_FIXED_EXTENSIONS = 17 + 17 + 31 + 31 + 33 + 160
#: A CRL distribution point: `http://<host>/crl/<CA id>.crl` inside its nesting.
_CRL_POINT_OVERHEAD = 24 + len("http:///crl/.crl") + 36
#: PKCS#10: the version, and the extensionRequest attribute's OID (1.2.840.113549.1.9.14).
_CSR_VERSION, _EXTENSION_REQUEST = 3, 11
#: Every attribute type in a subject is a 3-byte OID (2.5.4.x).
_ATTRIBUTE_TYPE = 5


def tlv(content: int) -> int:
    """Size of a DER tag-length-value whose content is `content` bytes."""
    if content < 0x80:
        return 2 + content
    return 2 + (content.bit_length() + 7) // 8 + content


def name_size(values: Sequence[str]) -> int:
    """Size of an X.509 Name with one attribute per value (CN, O, OU, C, ST, L as ACM PCA writes them)."""
    attributes = sum(tlv(tlv(_ATTRIBUTE_TYPE + tlv(len(value.encode())))) for value in values)
    return tlv(attributes)


def _san_size(names: Sequence[str]) -> int:
    """The subjectAltName extension: a dNSName per DNS name, an iPAddress per address."""
    general_names = 0
    for name in names:
        try:
            general_names += tlv(len(ipaddress.ip_address(name).packed))
        except ValueError:
            general_names += tlv(len(name.encode()))
    return tlv(_ATTRIBUTE_TYPE + tlv(tlv(general_names)))


def certificate_size(
    *,
    subject: Sequence[str],
    issuer: Sequence[str],
    key_algorithm: str,
    issuer_key_algorithm: str,
    names: Sequence[str] = (),
    crl_host_length: int = 0,
) -> int:
    """Upper bound of a certificate's DER size: `subject` and `issuer` are their attribute values, `names` the
    SANs, `crl_host_length` the length of the CRL distribution point's host (0: no CRL)."""
    extensions = _FIXED_EXTENSIONS + (_san_size(names) if names else 0)
    if crl_host_length:
        extensions += _CRL_POINT_OVERHEAD + crl_host_length
    to_be_signed = tlv(
        _VERSION
        + _SERIAL
        + _SIGNATURE_ALGORITHM
        + name_size(issuer)
        + _VALIDITY
        + name_size(subject)
        + KEY_SIZES[key_algorithm].public_key_info
        + tlv(tlv(extensions))
    )
    return tlv(to_be_signed + _SIGNATURE_ALGORITHM + KEY_SIZES[issuer_key_algorithm].signature)


def csr_size(*, common_name: str, names: Sequence[str], key_algorithm: str) -> int:
    """Upper bound of a CSR's DER size: subject CN `common_name`, SANs `names` and the common name (the
    certificate provider puts it in the SANs too, as clients ignore the CN), signed by its own key."""
    sans = list(dict.fromkeys([common_name, *names]))
    # [0] { SEQUENCE { extensionRequest, SET { Extensions { subjectAltName } } } }
    attributes = tlv(tlv(_EXTENSION_REQUEST + tlv(tlv(_san_size(sans)))))
    info = tlv(_CSR_VERSION + name_size([common_name]) + KEY_SIZES[key_algorithm].public_key_info + attributes)
    return tlv(info + _SIGNATURE_ALGORITHM + KEY_SIZES[key_algorithm].signature)


def pem_size(der_size: int, label: str = "CERTIFICATE") -> int:
    """Characters of the PEM of `der_size` bytes: base64 in lines of 64, between BEGIN and END lines."""
    base64 = 4 * math.ceil(der_size / 3)
    return len(f"-----BEGIN {label}-----\n") + base64 + math.ceil(base64 / 64) + len(f"-----END {label}-----\n")
