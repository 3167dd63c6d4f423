"""PKCS#10 certification requests (RFC 2986): read one strictly, check its key, verify its signature.

What the issuer takes from a request: the subject's attributes (it allows a common name only), the names of its
subjectAltName extension, its public key and whether the request's signature verifies under that key (which
proves the requester holds the private key). Extensions other than the SAN are read only to refuse duplicates:
the CA's template decides them, and AWS's base templates copy only the subject and the SAN from a CSR
(https://docs.aws.amazon.com/privateca/latest/userguide/template-definitions.html).

Refusals are `CsrRefused(rule, message)`; the rule ids are part of the issuer's HTTP contract.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from . import der, signatures

_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_CURVES = {"1.2.840.10045.3.1.7": signatures.P256, "1.3.132.0.34": signatures.P384}
#: Signature algorithm OIDs: (key family, hash). RSA-PSS, SHA-1 and SHA-224 are refused.
_SIGNATURE_ALGORITHMS = {
    "1.2.840.113549.1.1.11": ("rsa", "sha256"),
    "1.2.840.113549.1.1.12": ("rsa", "sha384"),
    "1.2.840.113549.1.1.13": ("rsa", "sha512"),
    "1.2.840.10045.4.3.2": ("ec", "sha256"),
    "1.2.840.10045.4.3.3": ("ec", "sha384"),
    "1.2.840.10045.4.3.4": ("ec", "sha512"),
}
_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
_SUBJECT_ALT_NAME = "2.5.29.17"
COMMON_NAME = "2.5.4.3"
#: GeneralName choices (RFC 5280 section 4.2.1.6) by context tag number, for messages.
_GENERAL_NAME_TYPES = {
    0: "otherName",
    1: "rfc822Name",
    2: "dNSName",
    3: "x400Address",
    4: "directoryName",
    5: "ediPartyName",
    6: "uniformResourceIdentifier",
    7: "iPAddress",
    8: "registeredID",
}
#: RSA moduli the issuer accepts, in bits: 2048 at least (NIST SP 800-131A), 4096 at most (the largest RSA key
#: AWS Private CA lists, https://docs.aws.amazon.com/privateca/latest/userguide/supported-algorithms.html).
RSA_BITS = (2048, 4096)
#: Public exponents: odd, at least 3, at most 256 bits (bounds the cost of verifying).
_MAX_EXPONENT_BITS = 256


class CsrRefused(ValueError):
    """The request is refused; `rule` names the check that refused it."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class RsaKey:
    modulus: int
    exponent: int

    def describe(self) -> str:
        return f"RSA {self.modulus.bit_length()}"


@dataclass(frozen=True)
class EcKey:
    curve: signatures.Curve
    x: int
    y: int

    def describe(self) -> str:
        return f"EC {self.curve.name}"


@dataclass(frozen=True)
class CertificationRequest:
    """A request whose signature verified under its own key, and what the issuer checks in it."""

    der: bytes
    """The request as AWS will receive it (the DER that was read, re-encoded as PEM for IssueCertificate)."""
    subject: tuple[tuple[str, str], ...]
    """The subject's attributes in order: (OID, value); values of types other than strings are shown as ''."""
    dns_names: tuple[str, ...]
    """dNSName entries of the subjectAltName extension, as written."""
    ip_addresses: tuple[str, ...]
    """iPAddress entries of the subjectAltName extension, in their canonical text form."""
    other_name_types: tuple[str, ...]
    """Names of the other GeneralName types the SAN holds (such as 'uniformResourceIdentifier')."""
    key: RsaKey | EcKey
    signature_algorithm: str
    """Such as 'ecdsa-with-sha384' or 'sha256WithRSAEncryption'."""

    @property
    def common_names(self) -> tuple[str, ...]:
        return tuple(value for oid, value in self.subject if oid == COMMON_NAME)

    @property
    def pem(self) -> str:
        return der.pem(self.der, "CERTIFICATE REQUEST")


def read_pem(text: str) -> CertificationRequest:
    """Exactly one PEM `CERTIFICATE REQUEST` block, read and verified."""
    try:
        blocks = der.pem_blocks(text, "CERTIFICATE REQUEST")
    except der.DerError as error:
        raise CsrRefused("csr-malformed", f"the CSR is not PEM: {error}") from None
    if len(blocks) != 1:
        raise CsrRefused("csr-malformed", f"expected one CERTIFICATE REQUEST PEM block, found {len(blocks)}")
    return read_der(blocks[0])


def read_der(data: bytes) -> CertificationRequest:
    """A DER PKCS#10 request: parsed strictly, its key checked, its signature verified. Raises `CsrRefused`."""
    try:
        info, algorithm, signature = der.sequence(der.parse(data), "CertificationRequest", lengths=(3,))
        info_fields = der.sequence(info, "CertificationRequestInfo", lengths=(3, 4))
        if der.integer(info_fields[0], "version") != 0:
            raise der.DerError("version must be 0 (v1)")
        subject = _subject(info_fields[1])
        key = _public_key(info_fields[2])
        extensions = _extensions(info_fields[3]) if len(info_fields) == 4 else {}
        san = extensions.get(_SUBJECT_ALT_NAME)
        dns_names, ip_addresses, other_types = _general_names(san) if san is not None else ((), (), ())
        family, hash_name, algorithm_name = _signature_algorithm(algorithm)
        signature_bytes = der.bit_string_bytes(signature, "signature")
    except der.DerError as error:
        raise CsrRefused("csr-malformed", f"the CSR is not a DER PKCS#10 request: {error}") from None
    if (family == "rsa") != isinstance(key, RsaKey):
        raise CsrRefused("signature-algorithm", f"a {key.describe()} key cannot make a {algorithm_name} signature")
    if not _verifies(key, signature_bytes, info.encoded, hash_name):
        raise CsrRefused(
            "csr-signature", "the CSR's signature does not verify under its own public key (altered or forged)"
        )
    return CertificationRequest(
        der=data,
        subject=subject,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        other_name_types=other_types,
        key=key,
        signature_algorithm=algorithm_name,
    )


def _subject(element: der.Element) -> tuple[tuple[str, str], ...]:
    attributes = []
    for rdn in element.expect(der.SEQUENCE, "subject").children():
        members = rdn.expect(der.SET, "subject RDN").children()
        if not members:
            raise der.DerError("empty RDN in the subject")
        for member in members:
            oid_element, value = der.sequence(member, "subject attribute", lengths=(2,))
            oid = der.oid(oid_element, "subject attribute type")
            if oid == COMMON_NAME:
                attributes.append((oid, der.text(value, "commonName")))
            else:
                attributes.append((oid, ""))
    return tuple(attributes)


def _public_key(element: der.Element) -> RsaKey | EcKey:
    algorithm, bits = der.sequence(element, "subjectPublicKeyInfo", lengths=(2,))
    algorithm_fields = der.sequence(algorithm, "public key algorithm", lengths=(1, 2))
    key_oid = der.oid(algorithm_fields[0], "public key algorithm")
    key_bytes = der.bit_string_bytes(bits, "subjectPublicKey")
    if key_oid == _RSA_ENCRYPTION:
        if len(algorithm_fields) != 2:
            raise der.DerError("rsaEncryption parameters must be NULL")
        der.null(algorithm_fields[1], "rsaEncryption parameters")
        modulus_element, exponent_element = der.sequence(der.parse(key_bytes), "RSAPublicKey", lengths=(2,))
        return _rsa_key(
            der.positive_integer(modulus_element, "modulus"), der.positive_integer(exponent_element, "exponent")
        )
    if key_oid == _EC_PUBLIC_KEY:
        if len(algorithm_fields) != 2 or algorithm_fields[1].tag != der.OBJECT_IDENTIFIER:
            raise CsrRefused("key-type", "EC keys must name their curve (namedCurve): P-256 or P-384")
        curve_oid = der.oid(algorithm_fields[1], "namedCurve")
        curve = _CURVES.get(curve_oid)
        if curve is None:
            raise CsrRefused("key-type", f"EC curve {curve_oid} is not allowed: use P-256 or P-384")
        return _ec_key(curve, key_bytes)
    raise CsrRefused("key-type", f"key algorithm {key_oid} is not allowed: use EC P-256, EC P-384 or RSA >= 2048")


def _rsa_key(modulus: int, exponent: int) -> RsaKey:
    bits = modulus.bit_length()
    if not RSA_BITS[0] <= bits <= RSA_BITS[1]:
        raise CsrRefused("key-size", f"an RSA key of {bits} bits is not allowed: {RSA_BITS[0]} to {RSA_BITS[1]}")
    if exponent < 3 or exponent % 2 == 0 or exponent.bit_length() > _MAX_EXPONENT_BITS or modulus % 2 == 0:
        raise CsrRefused("key-size", "the RSA key is not valid (its modulus must be odd, its exponent odd and >= 3)")
    return RsaKey(modulus, exponent)


def _ec_key(curve: signatures.Curve, point: bytes) -> EcKey:
    size = (curve.p.bit_length() + 7) // 8
    if len(point) != 1 + 2 * size or point[0] != 0x04:
        raise CsrRefused("key-type", f"the {curve.name} public key must be an uncompressed point")
    x = int.from_bytes(point[1 : 1 + size], "big")
    y = int.from_bytes(point[1 + size :], "big")
    if not curve.contains(x, y):
        raise CsrRefused("key-type", f"the public key is not a point of {curve.name}")
    return EcKey(curve, x, y)


def _extensions(element: der.Element) -> dict[str, der.Element]:
    """The extensions of the request's extensionRequest attribute, by OID; other attributes are refused."""
    if element.tag != 0xA0:
        raise der.DerError("attributes must be the [0] element of CertificationRequestInfo")
    extensions: dict[str, der.Element] = {}
    seen_request = False
    for attribute in element.children():
        type_element, values = der.sequence(attribute, "attribute", lengths=(2,))
        attribute_oid = der.oid(type_element, "attribute type")
        if attribute_oid != _EXTENSION_REQUEST:
            # Only extensionRequest is read; another (such as Microsoft's legacy extension request) could carry
            # extensions that some CA honours and this reader would not see.
            raise der.DerError(f"attribute {attribute_oid} is not allowed (only extensionRequest)")
        if seen_request:
            raise der.DerError("more than one extensionRequest attribute")
        seen_request = True
        (value,) = _exactly_one(values.expect(der.SET, "extensionRequest values").children(), "extensionRequest")
        for extension in value.expect(der.SEQUENCE, "Extensions").children():
            fields = der.sequence(extension, "Extension", lengths=(2, 3))
            extension_oid = der.oid(fields[0], "extension id")
            if len(fields) == 3 and not der.boolean(fields[1], "critical"):
                raise der.DerError("critical FALSE must be omitted in DER (it is the default)")
            if extension_oid in extensions:
                raise der.DerError(f"extension {extension_oid} appears twice")
            extensions[extension_oid] = fields[-1].expect(der.OCTET_STRING, "extnValue")
    return extensions


def _exactly_one(elements: list[der.Element], what: str) -> list[der.Element]:
    if len(elements) != 1:
        raise der.DerError(f"{what} must have exactly one value, found {len(elements)}")
    return elements


def _general_names(extension_value: der.Element) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    names = der.parse(extension_value.content).expect(der.SEQUENCE, "subjectAltName").children()
    if not names:
        raise der.DerError("empty subjectAltName")
    dns_names: list[str] = []
    ip_addresses: list[str] = []
    other_types: list[str] = []
    for name in names:
        if name.tag & 0xC0 != 0x80:
            raise der.DerError("a GeneralName must be context-tagged")
        number = name.tag & 0x1F
        if name.tag == 0x82:
            try:
                dns_names.append(name.content.decode("ascii"))
            except UnicodeDecodeError:
                raise der.DerError("dNSName is not IA5 text") from None
        elif name.tag == 0x87:
            if len(name.content) not in (4, 16):
                raise der.DerError("iPAddress must be 4 or 16 bytes")
            ip_addresses.append(str(ipaddress.ip_address(name.content)))
        elif number in _GENERAL_NAME_TYPES:
            other_types.append(_GENERAL_NAME_TYPES[number])
        else:
            raise der.DerError(f"unknown GeneralName [{number}]")
    return tuple(dns_names), tuple(ip_addresses), tuple(other_types)


def _signature_algorithm(element: der.Element) -> tuple[str, str, str]:
    fields = der.sequence(element, "signatureAlgorithm", lengths=(1, 2))
    algorithm_oid = der.oid(fields[0], "signature algorithm")
    known = _SIGNATURE_ALGORITHMS.get(algorithm_oid)
    if known is None:
        raise CsrRefused(
            "signature-algorithm",
            f"signature algorithm {algorithm_oid} is not allowed: RSA PKCS#1 v1.5 or ECDSA, with SHA-256/384/512",
        )
    family, hash_name = known
    if len(fields) == 2:
        # RFC 4055 section 5: NULL (or absent) for RSA; RFC 5758 section 3.2: absent for ECDSA.
        if family == "ec":
            raise der.DerError("ECDSA signature algorithms take no parameters")
        der.null(fields[1], "signature algorithm parameters")
    name = f"ecdsa-with-{hash_name}" if family == "ec" else f"{hash_name}WithRSAEncryption"
    return family, hash_name, name


def _verifies(key: RsaKey | EcKey, signature: bytes, message: bytes, hash_name: str) -> bool:
    if isinstance(key, RsaKey):
        return signatures.verify_rsa_pkcs1v15(key.modulus, key.exponent, signature, message, hash_name)
    try:
        r_element, s_element = der.sequence(der.parse(signature), "ECDSA signature", lengths=(2,))
        r, s = der.positive_integer(r_element, "r"), der.positive_integer(s_element, "s")
    except der.DerError:
        return False
    return signatures.verify_ecdsa(key.curve, key.x, key.y, r, s, message, hash_name)
