"""The issuer's own PKCS#10 reader and signature verifier (components/issuer), against CSRs `cryptography` builds:
valid ones of every allowed key and hash, tampered ones, weak keys, refused algorithms and odd encodings."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from components.issuer import csr, der, signatures
from tests.issuer_fixtures import (
    HASHES,
    KEY_KINDS,
    build_csr,
    csr_der,
    der_extension_request,
    der_integer,
    der_name,
    der_oid,
    der_san,
    der_utf8,
    key,
    pem,
    request_info,
    sign_request,
    spki,
)
from tests.issuer_fixtures import der as encode

NAMES = ("ip-10-0-1-23.ec2.internal", "api.internal.example")
ADDRESSES = ("10.0.1.23",)


def _refused(pem_text: str, rule: str) -> str:
    with pytest.raises(csr.CsrRefused) as refused:
        csr.read_pem(pem_text)
    assert refused.value.rule == rule, refused.value.message
    return refused.value.message


# --- what a valid request yields ---------------------------------------------------------------------------


@pytest.mark.parametrize("hash_name", list(HASHES))
@pytest.mark.parametrize("kind", KEY_KINDS)
def test_valid_requests_of_every_allowed_key_and_hash_are_read_and_verified(kind: str, hash_name: str) -> None:
    private_key = key(kind)
    pem_text = build_csr(
        private_key, common_name=NAMES[0], dns_names=NAMES, ip_addresses=ADDRESSES, hash_name=hash_name
    )
    request = csr.read_pem(pem_text)
    assert request.common_names == (NAMES[0],)
    assert request.dns_names == NAMES
    assert request.ip_addresses == ADDRESSES
    assert request.other_name_types == ()
    assert request.der == csr_der(pem_text)
    numbers = private_key.public_key().public_numbers()
    if kind.startswith("ec"):
        assert isinstance(request.key, csr.EcKey)
        assert (request.key.x, request.key.y) == (numbers.x, numbers.y)
        assert request.key.curve.name == {"ec-p256": "P-256", "ec-p384": "P-384"}[kind]
        assert request.signature_algorithm == f"ecdsa-with-{hash_name}"
    else:
        assert isinstance(request.key, csr.RsaKey)
        assert (request.key.modulus, request.key.exponent) == (numbers.n, numbers.e)
        assert request.signature_algorithm == f"{hash_name}WithRSAEncryption"
    # What AWS receives is the very DER that was read.
    assert x509.load_pem_x509_csr(request.pem.encode()).is_signature_valid
    assert csr_der(request.pem) == request.der


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p384"])
def test_many_fresh_ec_keys_verify_and_their_tampered_requests_do_not(kind: str) -> None:
    """ECDSA is the hand-written part: exercise it over many keys and nonces, both ways."""
    for index in range(12):
        private_key = key(kind, index)
        pem_text = build_csr(private_key, dns_names=[f"host{index}.example"], hash_name=list(HASHES)[index % 3])
        assert csr.read_pem(pem_text).dns_names == (f"host{index}.example",)
        tampered = csr_der(pem_text).replace(f"host{index}".encode(), f"hosx{index}".encode())
        _refused(pem(tampered), "csr-signature")


def test_a_request_without_extensions_or_attributes_is_read() -> None:
    info = encode(0x30, der_integer(0), der_name(("2.5.4.3", der_utf8("a.example"))), spki(key("ec-p256")))
    request = csr.read_pem(sign_request(key("ec-p256"), info))
    assert (request.common_names, request.dns_names, request.ip_addresses) == (("a.example",), (), ())


def test_other_subject_attributes_and_name_types_are_reported_for_the_issuer_to_refuse() -> None:
    pem_text = build_csr(
        key("ec-p256"),
        common_name="a.example",
        dns_names=["a.example"],
        uris=["spiffe://example/host"],
        extra_subject=[x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Platform Admins")],
    )
    request = csr.read_pem(pem_text)
    assert request.subject == (("2.5.4.3", "a.example"), ("2.5.4.10", ""))
    assert request.other_name_types == ("uniformResourceIdentifier",)


def test_extensions_other_than_the_san_are_ignored() -> None:
    pem_text = build_csr(
        key("ec-p256"),
        dns_names=["a.example"],
        extensions=[
            x509.BasicConstraints(ca=True, path_length=None),
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
        ],
    )
    assert csr.read_pem(pem_text).dns_names == ("a.example",)


# --- tampering -------------------------------------------------------------------------------------------------


def test_a_name_changed_after_signing_fails_the_signature() -> None:
    for kind in ("ec-p384", "rsa-2048"):
        request_der = csr_der(build_csr(key(kind), dns_names=["good.example"]))
        message = _refused(pem(request_der.replace(b"good.example", b"evil.example"[:12])), "csr-signature")
        assert "does not verify" in message


@pytest.mark.parametrize("kind", ["ec-p256", "rsa-2048"])
def test_a_flipped_signature_bit_fails(kind: str) -> None:
    request_der = bytearray(csr_der(build_csr(key(kind), dns_names=["a.example"])))
    request_der[-5] ^= 0x01  # inside the signature (for ECDSA: inside s)
    _refused(pem(bytes(request_der)), "csr-signature")


@pytest.mark.parametrize("kind", ["ec-p256", "rsa-2048"])
def test_a_request_signed_by_another_key_fails(kind: str) -> None:
    """Someone else's public key with my signature: the requester does not hold the key it asks a certificate for."""
    victim, signer = key(kind, 1), key(kind, 2)
    info = request_info(signer, der_name(("2.5.4.3", der_utf8("a.example"))), public_key_info=spki(victim))
    _refused(sign_request(signer, info), "csr-signature")


def test_a_bleichenbacher_forgery_with_garbage_after_the_digest_fails() -> None:
    """e = 3 and a signature whose cube starts with valid PKCS#1 padding and digest, then garbage: a verifier that
    parses the block (instead of comparing it whole) accepts it (Bleichenbacher 2006)."""
    private_key = key("rsa-e3")
    numbers = private_key.public_key().public_numbers()
    info = request_info(private_key, der_name(("2.5.4.3", der_utf8("forged.example"))))
    digest = hashes.Hash(hashes.SHA256())
    digest.update(info)
    prefix = b"\x00\x01" + b"\xff" * 8 + b"\x00" + bytes.fromhex("3031300d060960864801650304020105000420")
    prefix += digest.finalize()
    size = (numbers.n.bit_length() + 7) // 8
    target = int.from_bytes(prefix + b"\x00" * (size - len(prefix)), "big")
    root = _integer_cube_root(target) + 1
    assert pow(root, 3, numbers.n).to_bytes(size, "big").startswith(prefix), "the forgery itself is wrong"
    algorithm = encode(0x30, der_oid("1.2.840.113549.1.1.11"), encode(0x05))
    forged = encode(0x30, info, algorithm, encode(0x03, b"\x00" + root.to_bytes(size, "big")))
    _refused(pem(forged), "csr-signature")
    # The same request signed properly is accepted: the refusal is the forgery's.
    assert csr.read_pem(sign_request(private_key, info)).common_names == ("forged.example",)


def _integer_cube_root(value: int) -> int:
    low, high = 0, 1 << (value.bit_length() // 3 + 2)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if middle**3 <= value else (low, middle - 1)
    return low


# --- keys and algorithms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "rule", "words"),
    [
        ("rsa-1024", "key-size", "1024 bits"),
        ("rsa-1536", "key-size", "1536 bits"),
        ("ec-p521", "key-type", "1.3.132.0.35"),
        ("ec-secp256k1", "key-type", "1.3.132.0.10"),
        ("ed25519", "key-type", "1.3.101.112"),
        ("dsa-2048", "key-type", "1.2.840.10040.4.1"),
    ],
)
def test_weak_or_unsupported_keys_are_refused(kind: str, rule: str, words: str) -> None:
    hash_name = None if kind == "ed25519" else "sha256"
    message = _refused(build_csr(key(kind), dns_names=["a.example"], hash_name=hash_name), rule)
    assert words in message


def test_rsa_keys_above_4096_bits_are_refused() -> None:
    assert "8192 bits" in _refused(build_csr(key("rsa-8192"), dns_names=["a.example"]), "key-size")


@pytest.mark.parametrize(
    ("name", "algorithm_oid"), [("sha1", "1.2.840.113549.1.1.5"), ("sha224", "1.2.840.113549.1.1.14")]
)
def test_sha1_and_sha224_signatures_are_refused(name: str, algorithm_oid: str) -> None:
    """`cryptography` no longer signs with SHA-1: the request is assembled by hand (the algorithm is refused
    before any signature is looked at)."""
    private_key = key("rsa-2048")
    info = request_info(private_key, der_name(("2.5.4.3", der_utf8("a.example"))))
    signature = private_key.sign(info, padding.PKCS1v15(), hashes.SHA256())
    algorithm = encode(0x30, der_oid(algorithm_oid), encode(0x05))
    message = _refused(pem(encode(0x30, info, algorithm, encode(0x03, b"\x00" + signature))), "signature-algorithm")
    assert algorithm_oid in message, name


def test_rsa_pss_signatures_are_refused() -> None:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example")])
    )
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    request = builder.sign(key("rsa-2048"), hashes.SHA256(), rsa_padding=pss)
    pem_text = request.public_bytes(serialization.Encoding.PEM).decode()
    assert "1.2.840.113549.1.1.10" in _refused(pem_text, "signature-algorithm")


def test_an_ecdsa_signature_algorithm_on_an_rsa_key_is_refused() -> None:
    private_key = key("rsa-2048")
    info = request_info(private_key, der_name(("2.5.4.3", der_utf8("a.example"))))
    signature = private_key.sign(info, padding.PKCS1v15(), hashes.SHA256())
    request_der = encode(0x30, info, encode(0x30, der_oid("1.2.840.10045.4.3.2")), encode(0x03, b"\x00" + signature))
    assert "RSA 2048" in _refused(pem(request_der), "signature-algorithm")


def test_a_compressed_ec_point_is_refused() -> None:
    private_key = key("ec-p256")
    public = private_key.public_key()
    compressed = public.public_bytes(
        serialization.Encoding.X962,
        serialization.PublicFormat.CompressedPoint,
    )
    algorithm = encode(0x30, der_oid("1.2.840.10045.2.1"), der_oid("1.2.840.10045.3.1.7"))
    info = request_info(
        private_key, der_name(), public_key_info=encode(0x30, algorithm, encode(0x03, b"\0" + compressed))
    )
    assert "uncompressed" in _refused(sign_request(private_key, info), "key-type")


def test_a_point_off_the_curve_is_refused() -> None:
    private_key = key("ec-p256")
    numbers = private_key.public_key().public_numbers()
    point = b"\x04" + numbers.x.to_bytes(32, "big") + ((numbers.y + 1) % signatures.P256.p).to_bytes(32, "big")
    algorithm = encode(0x30, der_oid("1.2.840.10045.2.1"), der_oid("1.2.840.10045.3.1.7"))
    info = request_info(private_key, der_name(), public_key_info=encode(0x30, algorithm, encode(0x03, b"\0" + point)))
    assert "not a point" in _refused(sign_request(private_key, info), "key-type")


# --- odd encodings ---------------------------------------------------------------------------------------------


def _good_der() -> bytes:
    return csr_der(build_csr(key("ec-p256"), common_name="a.example", dns_names=["a.example"]))


def _reencode_outer_length(request_der: bytes, header: bytes) -> bytes:
    """The request with its outer SEQUENCE header replaced by `header` (same content)."""
    element = der.parse(request_der)
    return header + element.content


def test_indefinite_length_ber_is_refused() -> None:
    request_der = _good_der()
    content = der.parse(request_der).content
    assert "indefinite" in _refused(pem(b"\x30\x80" + content + b"\x00\x00"), "csr-malformed")


def test_a_length_not_in_its_shortest_form_is_refused() -> None:
    content = der.parse(_good_der()).content
    padded = b"\x30\x83" + len(content).to_bytes(3, "big")
    assert "shortest form" in _refused(pem(_reencode_outer_length(_good_der(), padded)), "csr-malformed")


def test_bytes_after_the_request_are_refused() -> None:
    assert "after the outer element" in _refused(pem(_good_der() + b"\x00"), "csr-malformed")


def test_a_truncated_request_is_refused() -> None:
    _refused(pem(_good_der()[:-10]), "csr-malformed")


def test_a_padded_integer_is_refused() -> None:
    private_key = key("ec-p256")
    info = encode(0x30, encode(0x02, b"\x00\x00"), der_name(), spki(private_key), encode(0xA0))
    assert "shortest form" in _refused(sign_request(private_key, info), "csr-malformed")


def test_an_explicit_critical_false_is_refused() -> None:
    private_key = key("ec-p256")
    extension = encode(
        0x30, der_oid("2.5.29.17"), encode(0x01, b"\x00"), encode(0x04, encode(0x30, encode(0x82, b"a.example")))
    )
    info = request_info(private_key, der_name(), [der_extension_request(extension)])
    assert "critical FALSE" in _refused(sign_request(private_key, info), "csr-malformed")


def test_two_san_extensions_are_refused() -> None:
    """One reader could take the first SAN and another the last: the request must not be ambiguous."""
    private_key = key("ec-p256")
    info = request_info(
        private_key,
        der_name(),
        [der_extension_request(der_san(encode(0x82, b"mine.example")), der_san(encode(0x82, b"yours.example")))],
    )
    assert "appears twice" in _refused(sign_request(private_key, info), "csr-malformed")


def test_two_extension_requests_are_refused() -> None:
    private_key = key("ec-p256")
    attributes = [der_extension_request(der_san(encode(0x82, b"a.example")))] * 2
    info = request_info(private_key, der_name(), attributes)
    assert "more than one" in _refused(sign_request(private_key, info), "csr-malformed")


def test_other_attributes_are_refused() -> None:
    """Microsoft's legacy extension request (1.3.6.1.4.1.311.2.1.14) could carry a SAN some CA honours."""
    private_key = key("ec-p256")
    legacy = encode(
        0x30, der_oid("1.3.6.1.4.1.311.2.1.14"), encode(0x31, encode(0x30, der_san(encode(0x82, b"x.example"))))
    )
    info = request_info(private_key, der_name(), [legacy])
    assert "1.3.6.1.4.1.311.2.1.14" in _refused(sign_request(private_key, info), "csr-malformed")


def test_a_bmpstring_common_name_is_refused() -> None:
    private_key = key("ec-p256")
    subject = der_name(("2.5.4.3", encode(0x1E, "a.example".encode("utf-16-be"))))
    assert "0x1e" in _refused(sign_request(private_key, request_info(private_key, subject)), "csr-malformed")


def test_a_malformed_ip_address_in_the_san_is_refused() -> None:
    private_key = key("ec-p256")
    info = request_info(private_key, der_name(), [der_extension_request(der_san(encode(0x87, b"\x0a\x00\x00")))])
    assert "4 or 16 bytes" in _refused(sign_request(private_key, info), "csr-malformed")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "found 0"),
        ("not a csr", "outside"),
        ("junk\n{csr}", "outside"),
        ("{csr}{csr}", "found 2"),
        ("-----BEGIN CERTIFICATE REQUEST-----\nMII*\n-----END CERTIFICATE REQUEST-----\n", "base64"),
    ],
)
def test_pem_that_is_not_exactly_one_request_block_is_refused(text: str, words: str) -> None:
    pem_text = build_csr(key("ec-p256"), dns_names=["a.example"])
    assert words in _refused(text.replace("{csr}", pem_text), "csr-malformed")


def test_the_new_certificate_request_label_is_refused() -> None:
    pem_text = build_csr(key("ec-p256"), dns_names=["a.example"]).replace(
        "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"
    )
    _refused(pem_text, "csr-malformed")


# --- the DER reader on its own -----------------------------------------------------------------------------------


def test_object_identifiers_decode_every_arc() -> None:
    assert der.oid(der.parse(der_oid("1.2.840.113549.1.9.14")), "x") == "1.2.840.113549.1.9.14"
    assert der.oid(der.parse(der_oid("2.999.3")), "x") == "2.999.3"
    with pytest.raises(der.DerError, match="shortest form"):
        der.oid(der.parse(b"\x06\x03\x2a\x80\x01"), "x")


def test_integers_are_twos_complement() -> None:
    assert der.integer(der.parse(b"\x02\x02\x00\x80"), "x") == 128
    assert der.integer(der.parse(b"\x02\x01\xff"), "x") == -1
    with pytest.raises(der.DerError, match="shortest form"):
        der.integer(der.parse(b"\x02\x02\xff\x80"), "x")


@pytest.mark.parametrize(
    ("encoded", "iso"),
    [
        (b"\x17\x0d491231235959Z", "2049-12-31T23:59:59Z"),
        (b"\x17\x0d500101000000Z", "1950-01-01T00:00:00Z"),
        (b"\x18\x0f20991231235959Z", "2099-12-31T23:59:59Z"),
    ],
)
def test_times_follow_rfc_5280(encoded: bytes, iso: str) -> None:
    assert der.time(der.parse(encoded), "x") == iso


def test_high_tag_numbers_are_refused() -> None:
    with pytest.raises(der.DerError, match="high tag"):
        der.parse(b"\x1f\x81\x00\x00")


def test_pem_round_trips() -> None:
    request_der = _good_der()
    assert der.pem_blocks(der.pem(request_der, "CERTIFICATE REQUEST"), "CERTIFICATE REQUEST") == [request_der]
    assert re.fullmatch(r"[A-Za-z0-9+/=\n-]+[A-Z -]+-----\n", der.pem(request_der, "X").split("-----BEGIN X-----\n")[1])
    assert base64.b64decode("".join(der.pem(request_der, "X").splitlines()[1:-1])) == request_der


def test_ec_and_rsa_verifiers_accept_signatures_made_by_cryptography_directly() -> None:
    message = b"the issuer verifies what cryptography signs"
    ec_key = key("ec-p384")
    signature = der.parse(ec_key.sign(message, ec.ECDSA(hashes.SHA512())))
    r, s = (der.integer(element, "x") for element in signature.children())
    numbers = ec_key.public_key().public_numbers()
    assert signatures.verify_ecdsa(signatures.P384, numbers.x, numbers.y, r, s, message, "sha512")
    assert not signatures.verify_ecdsa(signatures.P384, numbers.x, numbers.y, r, s, message + b"!", "sha512")
    rsa_key: rsa.RSAPrivateKey = key("rsa-3072")
    rsa_numbers = rsa_key.public_key().public_numbers()
    rsa_signature = rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA384())
    assert signatures.verify_rsa_pkcs1v15(rsa_numbers.n, rsa_numbers.e, rsa_signature, message, "sha384")
    assert not signatures.verify_rsa_pkcs1v15(rsa_numbers.n, rsa_numbers.e, rsa_signature, message, "sha256")
