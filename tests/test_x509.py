"""components/x509.py without AWS or Pulumi: names, keys, CSRs, serials, times and PEM bundles."""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from components import x509

# --- names -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "example.com",
        "backend.dev.internal.example.com",
        "localhost",
        "ip-10-0-0-1.ec2.internal",
        "Backend.Example.COM",
        "example.com.",
        "*.example.com",
        "*.ec2.internal",
        "xn--bcher-kva.example",
        "a" * 63 + ".example.com",
        ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61]),
    ],
)
def test_dns_names_accepted(name: str) -> None:
    assert x509.is_dns_name(name)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("*", "a wildcard alone"),
        ("*.com", "a wildcard needs two labels under it"),
        ("*.*.example.com", "one wildcard label only"),
        ("a.*.example.com", "the wildcard leads"),
        ("*example.com", "a partial wildcard"),
        ("www*.example.com", "a partial wildcard"),
        ("a" * 64 + ".example.com", "a label over 63 characters"),
        (".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62]), "254 characters"),
        ("under_score.example.com", "underscores"),
        ("_acme-challenge.example.com", "underscores"),
        ("-lead.example.com", "a leading hyphen"),
        ("trail-.example.com", "a trailing hyphen"),
        ("a..example.com", "an empty label"),
        (".example.com", "an empty first label"),
        (" example.com", "surrounding space"),
        ("example.com ", "surrounding space"),
        ("exa mple.com", "a space"),
        ("bücher.example", "non-ASCII (use the xn-- form)"),
        ("example.com/path", "a slash"),
        (".", "only a dot"),
    ],
)
def test_dns_names_refused(name: str, why: str) -> None:
    assert not x509.is_dns_name(name), why


def test_wildcards_can_be_refused() -> None:
    assert x509.is_dns_name("*.example.com", allow_wildcard=True)
    assert not x509.is_dns_name("*.example.com", allow_wildcard=False)
    assert x509.is_dns_name("www.example.com", allow_wildcard=False)


@pytest.mark.parametrize("address", ["10.0.0.1", "127.0.0.1", "::1", "2001:db8::1", "2001:DB8:0:0:0:0:0:1"])
def test_ip_addresses(address: str) -> None:
    assert x509.is_ip_address(address)


@pytest.mark.parametrize("text", ["10.0.0.256", "10.0.0", "example.com", "", "10.0.0.1/32", "::g"])
def test_not_ip_addresses(text: str) -> None:
    assert not x509.is_ip_address(text)


def test_subject_names_include_the_common_name_first() -> None:
    names = x509.SubjectNames.parse("backend.example.com", ["api.example.com", "10.0.0.5"])
    assert names.dns_names == ("backend.example.com", "api.example.com")
    assert names.ip_addresses == ("10.0.0.5",)
    assert names.as_set() == {"backend.example.com", "api.example.com", "10.0.0.5"}


def test_subject_names_are_normalised_and_deduplicated() -> None:
    names = x509.SubjectNames.parse(
        "Backend.Example.com.",
        ["backend.example.com", "BACKEND.EXAMPLE.COM", " api.example.com ", "", "2001:DB8:0:0::1", "2001:db8::1"],
    )
    assert names.dns_names == ("backend.example.com", "api.example.com")
    assert names.ip_addresses == ("2001:db8::1",)


def test_subject_names_accept_an_ip_common_name_and_no_extra_names() -> None:
    names = x509.SubjectNames.parse("10.0.0.5", [])
    assert (names.dns_names, names.ip_addresses) == ((), ("10.0.0.5",))


def test_subject_names_become_general_names() -> None:
    names = x509.SubjectNames.parse("backend.example.com", ["*.ec2.internal", "::1"])
    assert names.general_names() == [
        cx509.DNSName("backend.example.com"),
        cx509.DNSName("*.ec2.internal"),
        cx509.IPAddress(ipaddress.ip_address("::1")),
    ]


@pytest.mark.parametrize("bad", ["under_score.example.com", "not a name", "*.com"])
def test_subject_names_refuse_a_bad_name_by_value(bad: str) -> None:
    with pytest.raises(ValueError, match=r"is neither a DNS name .* nor an IP address") as caught:
        x509.SubjectNames.parse("backend.example.com", [bad])
    assert repr(bad) in str(caught.value)


def test_subject_names_need_at_least_one_name() -> None:
    with pytest.raises(ValueError, match="at least one DNS name or IP address is required"):
        x509.SubjectNames.parse("", ["", "  "])


# --- keys --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> dict[str, x509.PrivateKey]:
    """One key per algorithm, generated once (RSA-4096 takes a moment)."""
    return {algorithm: x509.generate_private_key(algorithm) for algorithm in x509.KEY_ALGORITHMS}


EXPECTED_KEYS: dict[str, tuple[type, str | int]] = {
    "EC_prime256v1": (ec.EllipticCurvePrivateKey, "secp256r1"),
    "EC_secp384r1": (ec.EllipticCurvePrivateKey, "secp384r1"),
    "RSA_2048": (rsa.RSAPrivateKey, 2048),
    "RSA_3072": (rsa.RSAPrivateKey, 3072),
    "RSA_4096": (rsa.RSAPrivateKey, 4096),
}


def test_every_key_algorithm_is_covered() -> None:
    assert set(EXPECTED_KEYS) == set(x509.KEY_ALGORITHMS) == set(x509.SIGNING_ALGORITHMS)


@pytest.mark.parametrize("algorithm", x509.KEY_ALGORITHMS)
def test_generate_private_key(keys: dict[str, x509.PrivateKey], algorithm: str) -> None:
    key = keys[algorithm]
    key_type, size = EXPECTED_KEYS[algorithm]
    assert isinstance(key, key_type)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert key.curve.name == size
    else:
        assert key.key_size == size
        assert key.public_key().public_numbers().e == 65537


@pytest.mark.parametrize("algorithm", x509.KEY_ALGORITHMS)
def test_key_algorithm_of_round_trip(keys: dict[str, x509.PrivateKey], algorithm: str) -> None:
    assert x509.key_algorithm_of(keys[algorithm].public_key()) == algorithm


@pytest.mark.parametrize("algorithm", ["RSA_1024", "EC_secp521r1", "ED25519", "rsa_2048", ""])
def test_generate_private_key_refuses_other_algorithms(algorithm: str) -> None:
    with pytest.raises(ValueError, match="is not supported; allowed: EC_prime256v1, EC_secp384r1, RSA_2048"):
        x509.generate_private_key(algorithm)


@pytest.mark.parametrize(
    "public_key",
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP521R1()).public_key(), id="P-521"),
        # A weak key on purpose: it must be refused.
        pytest.param(lambda: rsa.generate_private_key(65537, 1024).public_key(), id="RSA-1024"),  # noqa: S505
        pytest.param(lambda: ed25519.Ed25519PrivateKey.generate().public_key(), id="Ed25519"),
        pytest.param(lambda: "not a key", id="a string"),
    ],
)
def test_key_algorithm_of_refuses_other_keys(public_key) -> None:
    with pytest.raises(ValueError, match="the key type is not supported; allowed: EC_prime256v1"):
        x509.key_algorithm_of(public_key())


@pytest.mark.parametrize("algorithm", ["EC_prime256v1", "RSA_2048"])
def test_private_key_pem_is_unencrypted_pkcs8(keys: dict[str, x509.PrivateKey], algorithm: str) -> None:
    pem = x509.private_key_pem(keys[algorithm])
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    loaded = serialization.load_pem_private_key(pem.encode(), password=None)
    assert loaded.public_key() == keys[algorithm].public_key()


@pytest.mark.parametrize(
    ("algorithm", "signing"),
    [
        ("EC_prime256v1", "SHA256WITHECDSA"),
        ("EC_secp384r1", "SHA384WITHECDSA"),
        ("RSA_2048", "SHA256WITHRSA"),
        ("RSA_3072", "SHA256WITHRSA"),
        ("RSA_4096", "SHA256WITHRSA"),
    ],
)
def test_signing_algorithm_for(algorithm: str, signing: str) -> None:
    assert x509.signing_algorithm_for(algorithm) == signing


@pytest.mark.parametrize("algorithm", ["RSA_1024", "EC_secp521r1", "", "SHA256WITHRSA"])
def test_signing_algorithm_for_unknown(algorithm: str) -> None:
    with pytest.raises(ValueError, match="is not supported; allowed:") as caught:
        x509.signing_algorithm_for(algorithm)
    assert repr(algorithm) in str(caught.value)
    assert ", ".join(x509.KEY_ALGORITHMS) in str(caught.value)


# --- CSRs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", x509.KEY_ALGORITHMS)
def test_build_csr_and_parse_csr_round_trip(keys: dict[str, x509.PrivateKey], algorithm: str) -> None:
    names = x509.SubjectNames.parse("backend.example.com", ["*.ec2.internal", "10.0.0.5", "::1"])
    pem = x509.build_csr(keys[algorithm], "backend.example.com", names)
    assert pem.startswith("-----BEGIN CERTIFICATE REQUEST-----\n")

    info = x509.parse_csr(pem)
    assert info.common_name == "backend.example.com"
    assert info.names == {"backend.example.com", "*.ec2.internal", "10.0.0.5", "::1"}
    assert info.key_algorithm == algorithm

    csr = cx509.load_pem_x509_csr(pem.encode())
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    assert csr.public_key() == keys[algorithm].public_key()
    san = csr.extensions.get_extension_for_class(cx509.SubjectAlternativeName)
    assert san.critical is False


def test_parse_csr_without_san_or_common_name(keys: dict[str, x509.PrivateKey]) -> None:
    csr = cx509.CertificateSigningRequestBuilder().subject_name(cx509.Name([])).sign(keys["RSA_2048"], hashes.SHA256())
    info = x509.parse_csr(csr.public_bytes(serialization.Encoding.PEM).decode())
    assert (info.common_name, info.names, info.key_algorithm) == (None, set(), "RSA_2048")


def test_parse_csr_lowercases_dns_names(keys: dict[str, x509.PrivateKey]) -> None:
    csr = (
        cx509.CertificateSigningRequestBuilder()
        .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "Backend.Example.com")]))
        .add_extension(cx509.SubjectAlternativeName([cx509.DNSName("Backend.Example.com")]), critical=False)
        .sign(keys["EC_prime256v1"], hashes.SHA256())
    )
    info = x509.parse_csr(csr.public_bytes(serialization.Encoding.PEM).decode())
    assert info.names == {"backend.example.com"}
    assert info.common_name == "Backend.Example.com"


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not a csr",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "-----BEGIN CERTIFICATE REQUEST-----\nMOCK\n-----END CERTIFICATE REQUEST-----\n",
    ],
)
def test_parse_csr_rejects_garbage(garbage: str) -> None:
    with pytest.raises(ValueError, match="not a PEM certificate signing request"):
        x509.parse_csr(garbage)


def test_parse_csr_rejects_a_certificate(keys: dict[str, x509.PrivateKey]) -> None:
    key = keys["EC_prime256v1"]
    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "not a csr")])
    now = datetime.now(UTC)
    certificate = (
        cx509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(ValueError, match="not a PEM certificate signing request"):
        x509.parse_csr(certificate.public_bytes(serialization.Encoding.PEM).decode())


@pytest.mark.parametrize("algorithm", ["EC_prime256v1", "RSA_2048"])
def test_parse_csr_rejects_a_tampered_csr(keys: dict[str, x509.PrivateKey], algorithm: str) -> None:
    """Names changed after signing (same length, so the DER still parses): the signature no longer verifies."""
    names = x509.SubjectNames.parse("tamper-me.example.com", [])
    pem = x509.build_csr(keys[algorithm], "tamper-me.example.com", names)
    der = cx509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)
    assert der.count(b"tamper-me") == 2, "the CN and the SAN"
    tampered = cx509.load_der_x509_csr(der.replace(b"tamper-me", b"tamper-us"))
    tampered_pem = tampered.public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(ValueError, match="its signature does not verify against its own public key"):
        x509.parse_csr(tampered_pem)


def test_parse_csr_rejects_an_unsupported_key() -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    csr = cx509.CertificateSigningRequestBuilder().subject_name(cx509.Name([])).sign(key, hashes.SHA256())
    with pytest.raises(ValueError, match="the key type is not supported"):
        x509.parse_csr(csr.public_bytes(serialization.Encoding.PEM).decode())


# --- serials, times, PEM -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serial", "text"),
    [
        (0, "00"),
        (1, "01"),
        (0x0F, "0F"),
        # An integer has no leading zero byte: 0x00FF is the byte FF (the DER encoding's sign byte is not shown).
        (0x00FF, "FF"),
        (0x80, "80"),
        (0x0100, "01:00"),
        (0xABCDEF, "AB:CD:EF"),
        (0x0A0B, "0A:0B"),
        (2**159 - 1, ":".join(["7F"] + ["FF"] * 19)),
    ],
)
def test_colon_hex(serial: int, text: str) -> None:
    assert x509.colon_hex(serial) == text


def test_colon_hex_is_upper_case_bytes_of_a_real_serial() -> None:
    serial = cx509.random_serial_number()
    text = x509.colon_hex(serial)
    assert text == text.upper()
    assert int(text.replace(":", ""), 16) == serial
    assert all(len(byte) == 2 for byte in text.split(":"))


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC), "2030-01-02T03:04:05Z"),
        (datetime(2030, 1, 2, 3, 4, 5, 999999, tzinfo=UTC), "2030-01-02T03:04:05Z"),
        (datetime(2030, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))), "2030-01-02T03:04:05Z"),
        (datetime(2029, 12, 31, 23, 0, 0, tzinfo=timezone(timedelta(hours=-5))), "2030-01-01T04:00:00Z"),
    ],
)
def test_iso_utc(moment: datetime, text: str) -> None:
    assert x509.iso_utc(moment) == text


def test_iso_utc_round_trip() -> None:
    moment = datetime(2031, 6, 30, 12, 0, 1, tzinfo=UTC)
    assert x509.parse_iso_utc(x509.iso_utc(moment)) == moment
    parsed = x509.parse_iso_utc("2035-06-01T00:00:00Z")
    assert parsed == datetime(2035, 6, 1, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(0)
    assert x509.parse_iso_utc("2035-06-01T02:00:00+02:00") == parsed
    assert x509.iso_utc(x509.parse_iso_utc("2035-06-01T02:00:00+02:00")) == "2035-06-01T00:00:00Z"


def test_not_after_and_load_certificates(keys: dict[str, x509.PrivateKey]) -> None:
    key = keys["EC_prime256v1"]
    end = datetime(2031, 1, 1, tzinfo=UTC)
    pems = []
    for common_name in ("one", "two"):
        name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        certificate = (
            cx509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(cx509.random_serial_number())
            .not_valid_before(end - timedelta(days=30))
            .not_valid_after(end)
            .sign(key, hashes.SHA256())
        )
        pems.append(certificate.public_bytes(serialization.Encoding.PEM).decode())
    loaded = x509.load_certificates(x509.join_pem(pems))
    assert [c.subject.rfc4514_string() for c in loaded] == ["CN=one", "CN=two"]
    assert x509.not_after(loaded[0]) == end
    assert x509.load_certificates("") == []
    assert x509.load_certificates("  \n") == []


def test_join_pem() -> None:
    first = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----"
    second = "\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n\n"
    third = "-----BEGIN CERTIFICATE-----\nCCC\n-----END CERTIFICATE-----\n"
    joined = x509.join_pem(first, [second, "", "  \n"], "", third)
    assert joined == f"{first}\n{second.strip()}\n{third}"
    assert joined.count("-----BEGIN CERTIFICATE-----") == 3
    assert "\n\n" not in joined
    assert joined.endswith("-----END CERTIFICATE-----\n")


def test_join_pem_of_nothing() -> None:
    assert x509.join_pem() == ""
    assert x509.join_pem("", [], ["", " "]) == ""


def test_sha256_fingerprints_are_what_openssl_prints(tmp_path: Path, keys: dict[str, x509.PrivateKey]) -> None:
    key = keys["EC_prime256v1"]
    pems = []
    for common_name in ("root", "subordinate"):
        name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        certificate = (
            cx509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(cx509.random_serial_number())
            .not_valid_before(datetime(2030, 1, 1, tzinfo=UTC)).not_valid_after(datetime(2031, 1, 1, tzinfo=UTC))
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        pems.append(certificate.public_bytes(serialization.Encoding.PEM).decode())
    fingerprints = x509.sha256_fingerprints("# a comment\n" + x509.join_pem(pems))

    assert len(fingerprints) == 2
    for pem, fingerprint in zip(pems, fingerprints, strict=True):
        der = cx509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
        assert fingerprint == hashlib.sha256(der).hexdigest()
        path = tmp_path / "ca.pem"
        path.write_text(pem)
        openssl = subprocess.run(
            ["openssl", "x509", "-in", str(path), "-noout", "-fingerprint", "-sha256"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert openssl.stdout.strip().split("=", 1)[1].replace(":", "").lower() == fingerprint


@pytest.mark.parametrize(
    "bundle", ["", "not PEM", "-----BEGIN CERTIFICATE-----\nbm90\n-----END CERTIFICATE-----\n", None]
)
def test_sha256_fingerprints_need_a_certificate(bundle: object) -> None:
    with pytest.raises(ValueError, match=r"."):
        x509.sha256_fingerprints(bundle)  # type: ignore[arg-type]
