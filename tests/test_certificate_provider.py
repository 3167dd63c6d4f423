"""`CertificateProvider` called directly, as Pulumi's dynamic-provider host calls it, against moto's server.

Requests go through a `RecordingProxy` (components/local/emulator.py): moto ignores the template, signing algorithm,
validity and idempotency token, so those are asserted on what the provider *sent*; throttling, in-progress and
5xx answers are injected by the proxy because moto never produces them.
"""

from __future__ import annotations

import base64
import ipaddress
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import ClientError
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from components import certificate, pca_client
from components import x509 as pki
from components.certificate import UNKNOWN, CertificateError, CertificateProvider
from components.local.emulator import DESCRIBE, GET, ISSUE, REVOKE, RecordingProxy, create_active_ca, free_port
from components.local.emulator import pca_client as emulator_client

provider = CertificateProvider()


# ---------------------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Polling and back-off in milliseconds (the bounds are unchanged); each test starts as a fresh provider
    process does: no client, no learnt rate, nothing read of any CA."""
    monkeypatch.setattr(certificate, "POLL_INITIAL_DELAY", 0.01)
    monkeypatch.setattr(certificate, "POLL_MAX_DELAY", 0.02)
    monkeypatch.setattr(pca_client, "TRANSIENT_BACKOFF", 0.001)
    pca_client.forget()
    certificate.forget_cached_cas()


@pytest.fixture(scope="module")
def rsa_ca(pca_proxy_session: RecordingProxy) -> tuple[str, str]:
    return create_active_ca(pca_proxy_session.endpoint_url, common_name="Provider Tests RSA CA")


@pytest.fixture(scope="module")
def ec_ca(pca_proxy_session: RecordingProxy) -> tuple[str, str]:
    return create_active_ca(
        pca_proxy_session.endpoint_url, key_algorithm="EC_prime256v1", common_name="Provider Tests EC CA"
    )


@pytest.fixture(scope="module")
def short_lived_ca(pca_proxy_session: RecordingProxy) -> tuple[str, str]:
    return create_active_ca(
        pca_proxy_session.endpoint_url, usage_mode="SHORT_LIVED_CERTIFICATE", common_name="Short-lived CA"
    )


def news(ca_arn: str, proxy: RecordingProxy, **overrides: Any) -> dict[str, Any]:
    """Inputs as a program would give them (before `check`)."""
    return {
        "ca_arn": ca_arn,
        "common_name": "app.internal.example.com",
        "subject_alternative_names": ["api.internal.example.com", "10.0.1.17", "fd00::17"],
        "endpoint_url": proxy.endpoint_url,
        **overrides,
    }


def checked(ca_arn: str, proxy: RecordingProxy, **overrides: Any) -> dict[str, Any]:
    result = provider.check({}, news(ca_arn, proxy, **overrides))
    assert result.failures == [], [(f.property, f.reason) for f in result.failures]
    assert result.inputs is not None
    return result.inputs


def create(ca_arn: str, proxy: RecordingProxy, **overrides: Any) -> tuple[str, dict[str, Any]]:
    result = provider.create(checked(ca_arn, proxy, **overrides))
    assert result.outs is not None
    return result.id, result.outs


def failures_of(props: dict[str, Any]) -> dict[str, str]:
    """`check`'s failures as {property: reason}."""
    return {failure.property: failure.reason for failure in provider.check({}, props).failures}


def leaf_of(outs: dict[str, Any]) -> cx509.Certificate:
    return cx509.load_pem_x509_certificate(outs["certificate_pem"].encode())


def make_csr(common_name: str, names: list[cx509.GeneralName], key: Any = None) -> tuple[str, Any]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = cx509.CertificateSigningRequestBuilder().subject_name(
        cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if names:
        builder = builder.add_extension(cx509.SubjectAlternativeName(names), critical=False)
    signing_hash = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, signing_hash)
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


def public_der(key_or_cert: Any) -> bytes:
    public_key = key_or_cert.public_key()
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# ---------------------------------------------------------------------------------------------------------
# issuing: what the certificate is, and what was asked of the CA
# ---------------------------------------------------------------------------------------------------------


def test_leaf_verifies_against_the_ca(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], tmp_path: Path) -> None:
    ca_arn, ca_pem = rsa_ca
    # moto only adds key usage, EKU and the authority key identifier for EndEntityCertificate/V1; with the
    # default EndEntityServerAuthCertificate/V1 its leaf carries just the SAN and strict RFC 5280 validation
    # (cryptography's verifier, `openssl verify -x509_strict`) rejects it. Real ACM PCA fills both templates.
    _, outs = create(ca_arn, pca_proxy, template_arn="EndEntityCertificate/V1")
    leaf = leaf_of(outs)
    ca_certificate = cx509.load_pem_x509_certificate(ca_pem.encode())

    verifier = (
        PolicyBuilder()
        .store(Store([ca_certificate]))
        .time(datetime.now(UTC))
        .build_server_verifier(cx509.DNSName("api.internal.example.com"))
    )
    chain = verifier.verify(leaf, [])
    assert chain[-1] == ca_certificate

    (tmp_path / "ca.pem").write_text(ca_pem)
    (tmp_path / "leaf.pem").write_text(outs["certificate_pem"])
    (tmp_path / "full.pem").write_text(outs["full_chain_pem"])
    for args in (["-x509_strict"], ["-purpose", "sslserver"]):
        verified = subprocess.run(
            ["openssl", "verify", *args, "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "leaf.pem")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr

    assert pki.load_certificates(outs["certificate_chain_pem"]) == [ca_certificate]
    assert pki.load_certificates(outs["full_chain_pem"]) == [leaf, ca_certificate]
    assert outs["certificate_arn"].startswith(f"{ca_arn}/certificate/")


@pytest.mark.parametrize(
    ("key_algorithm", "key_type", "size"),
    [
        ("EC_prime256v1", ec.EllipticCurvePrivateKey, 256),
        ("EC_secp384r1", ec.EllipticCurvePrivateKey, 384),
        ("RSA_2048", rsa.RSAPrivateKey, 2048),
        ("RSA_3072", rsa.RSAPrivateKey, 3072),
        ("RSA_4096", rsa.RSAPrivateKey, 4096),
    ],
)
def test_generated_key_matches_certificate_and_names(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], key_algorithm: str, key_type: type, size: int
) -> None:
    certificate_arn, outs = create(rsa_ca[0], pca_proxy, key_algorithm=key_algorithm)
    leaf = leaf_of(outs)
    key = serialization.load_pem_private_key(outs["private_key_pem"].encode(), password=None)

    assert isinstance(key, key_type)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    assert key.key_size == size
    assert public_der(key) == public_der(leaf)
    assert certificate_arn == outs["certificate_arn"]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "app.internal.example.com"
    san = leaf.extensions.get_extension_for_class(cx509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(cx509.DNSName)) == {"app.internal.example.com", "api.internal.example.com"}
    assert set(san.get_values_for_type(cx509.IPAddress)) == {
        ipaddress.ip_address("10.0.1.17"),
        ipaddress.ip_address("fd00::17"),
    }
    assert outs["serial"] == pki.colon_hex(leaf.serial_number)
    assert outs["not_after"] == pki.iso_utc(leaf.not_valid_after_utc)


@pytest.mark.parametrize(
    ("ca_key_algorithm", "signing_algorithm"),
    [("RSA_2048", "SHA256WITHRSA"), ("EC_prime256v1", "SHA256WITHECDSA"), ("EC_secp384r1", "SHA384WITHECDSA")],
)
def test_request_carries_validity_template_and_the_cas_signing_algorithm(
    pca_proxy: RecordingProxy, ca_key_algorithm: str, signing_algorithm: str
) -> None:
    # moto ignores all three (its certificates last 365 days, signed SHA512WITHRSA): read them from the request.
    ca_arn, _ = create_active_ca(pca_proxy.endpoint_url, key_algorithm=ca_key_algorithm)
    pca_proxy.reset()
    create(ca_arn, pca_proxy, validity_days=45, template_arn="EndEntityServerAuthCertificate/V1")

    [request] = pca_proxy.bodies(ISSUE)
    assert request["CertificateAuthorityArn"] == ca_arn
    assert request["Validity"] == {"Value": 45, "Type": "DAYS"}
    assert request["TemplateArn"] == "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1"
    assert request["SigningAlgorithm"] == signing_algorithm
    assert 1 <= len(request["IdempotencyToken"]) <= 36  # the API's limit


def test_each_create_gets_its_own_idempotency_token(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    # AWS answers a token it saw in the last 5 minutes with that request's certificate (maybe revoked since):
    # two creates with the same CSR (a replacement, a re-create after a failed up) need two tokens.
    csr_pem, _ = make_csr("app.internal.example.com", [cx509.DNSName("app.internal.example.com")])
    same = {"csr_pem": csr_pem, "subject_alternative_names": []}
    create(rsa_ca[0], pca_proxy, **same)
    create(rsa_ca[0], pca_proxy, **same)

    first, second = (body["IdempotencyToken"] for body in pca_proxy.bodies(ISSUE))
    assert first != second
    assert {body["Csr"] for body in pca_proxy.bodies(ISSUE)} == {base64.b64encode(csr_pem.encode()).decode()}


def test_supplied_csr_is_signed_and_no_key_is_returned(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    names = [cx509.DNSName("db.internal.example.com"), cx509.IPAddress(ipaddress.ip_address("10.0.2.5"))]
    csr_pem, key = make_csr("db.internal.example.com", names, rsa.generate_private_key(65537, 2048))

    inputs = checked(
        rsa_ca[0], pca_proxy, common_name="db.internal.example.com", subject_alternative_names=["10.0.2.5"]
    )
    inputs_with_csr = checked(
        rsa_ca[0],
        pca_proxy,
        common_name="db.internal.example.com",
        subject_alternative_names=["10.0.2.5"],
        csr_pem=csr_pem,
        key_algorithm="EC_prime256v1",
    )
    assert inputs["key_algorithm"] == "EC_prime256v1"  # the default
    assert inputs_with_csr["key_algorithm"] == "RSA_2048"  # the CSR's key wins over the input

    outs = provider.create(inputs_with_csr).outs
    assert outs is not None
    assert outs["private_key_pem"] == ""
    assert public_der(leaf_of(outs)) == public_der(key)
    [request] = pca_proxy.bodies(ISSUE)
    assert base64.b64decode(request["Csr"]).decode() == csr_pem


def test_read_keeps_a_revoked_certificate(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    # moto files a revocation under `format(serial, "X")` cut into pairs, which misplaces the colons when that
    # hex has an odd length ("ABC" -> "AB:C" where RevokeCertificate sends "0A:BC"): take a serial it can match.
    for _ in range(20):
        certificate_arn, outs = create(rsa_ca[0], pca_proxy)
        if len(outs["serial"].replace(":", "").lstrip("0")) % 2 == 0:
            break
    read = provider.read(certificate_arn, outs)
    assert read.id == certificate_arn
    assert read.outs == outs

    provider.delete(certificate_arn, outs)
    # AWS's GetCertificate returns revoked certificates; moto answers RequestInProgressException instead.
    # Neither means "gone": the certificate stays in the state.
    assert provider.read(certificate_arn, outs).id == certificate_arn


def test_read_keeps_a_certificate_on_request_in_progress(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    certificate_arn, outs = create(rsa_ca[0], pca_proxy)
    pca_proxy.in_progress()
    read = provider.read(certificate_arn, outs)
    assert (read.id, read.outs) == (certificate_arn, outs)
    assert [call.injected for call in pca_proxy.calls(GET)][-1] is True


def test_read_drops_a_certificate_aws_says_does_not_exist(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    certificate_arn, outs = create(rsa_ca[0], pca_proxy)
    pca_proxy.inject(GET, error_type="ResourceNotFoundException")
    assert provider.read(certificate_arn, outs).id == ""


# ---------------------------------------------------------------------------------------------------------
# diff and update
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def state(pca_proxy_session: RecordingProxy, rsa_ca: tuple[str, str]) -> dict[str, Any]:
    """Checked inputs plus outputs, as Pulumi stores them (no issuing needed to exercise `diff`)."""
    inputs = checked(rsa_ca[0], pca_proxy_session)
    not_after = datetime.now(UTC) + timedelta(days=90)
    outputs = dict.fromkeys(certificate.OUTPUTS, "x") | {"not_after": pki.iso_utc(not_after)}
    return inputs | outputs


def test_diff_without_changes(pca_proxy: RecordingProxy, state: dict[str, Any]) -> None:
    inputs = {key: value for key, value in state.items() if key not in certificate.OUTPUTS}
    result = provider.diff("arn", state, inputs)
    assert pca_proxy.requests == []  # diff never calls AWS
    assert result.changes is False
    assert result.replaces == []
    assert result.delete_before_replace is False


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ca_arn", "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/0000aaaa-0000-0000-0000-000000000000"),
        ("common_name", "other.internal.example.com"),
        ("subject_alternative_names", ["api.internal.example.com"]),
        ("key_algorithm", "RSA_2048"),
        ("validity_days", 30),
        ("template_arn", "arn:aws:acm-pca:::template/EndEntityCertificate/V1"),
        ("csr_pem", "-----BEGIN CERTIFICATE REQUEST-----"),
    ],
)
def test_diff_replaces_on_each_identity_input(state: dict[str, Any], key: str, value: Any) -> None:
    assert key in certificate.IDENTITY_INPUTS
    result = provider.diff("arn", state, {**state, key: value})
    assert result.changes is True
    assert result.replaces == [key]
    # Create the new certificate before revoking the old one: a server is never left without one.
    assert result.delete_before_replace is False


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("renew_before_days", 10),
        ("revoke_on_delete", False),
        ("endpoint_url", "http://127.0.0.1:1"),
        ("profile", "pki-issuer"),
        ("assume_role_arn", "arn:aws:iam::111122223333:role/certificate-issuer"),
        ("assume_role_session_name", "deploy"),
        ("assume_role_external_id", "pki-external-id"),
        ("throttle_retry_minutes", 30),
    ],
)
def test_diff_updates_settings_in_place(state: dict[str, Any], key: str, value: Any) -> None:
    result = provider.diff("arn", state, {**state, key: value})
    assert result.changes is True
    assert result.replaces == []
    assert result.stables == ["certificate_arn"]


def test_diff_of_state_written_before_the_identity_and_budget_inputs(state: dict[str, Any]) -> None:
    """A certificate created by an older provider has none of the new inputs: their defaults change nothing."""
    new_inputs = ("profile", *certificate._ROLE_INPUTS, "throttle_retry_minutes")
    older = {key: value for key, value in state.items() if key not in new_inputs}
    inputs = {key: value for key, value in state.items() if key not in certificate.OUTPUTS}
    assert inputs["throttle_retry_minutes"] == 10
    assert provider.diff("arn", older, inputs).changes is False


def test_diff_renews_inside_the_renewal_window(state: dict[str, Any]) -> None:
    expiring = {**state, "not_after": pki.iso_utc(datetime.now(UTC) + timedelta(days=29))}
    result = provider.diff("arn", expiring, {**state, "renew_before_days": 30})
    assert result.changes is True
    assert result.replaces == ["not_after"]
    assert result.delete_before_replace is False


def test_diff_does_not_renew_outside_the_renewal_window(state: dict[str, Any]) -> None:
    fresh = {**state, "not_after": pki.iso_utc(datetime.now(UTC) + timedelta(days=31))}
    result = provider.diff("arn", fresh, {**state, "renew_before_days": 30})
    assert result.replaces == []
    assert result.changes is False


def test_update_keeps_the_certificate_and_takes_new_settings(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]
) -> None:
    certificate_arn, outs = create(rsa_ca[0], pca_proxy)
    new_inputs = checked(rsa_ca[0], pca_proxy, renew_before_days=5, revoke_on_delete=False)
    pca_proxy.reset()

    updated = provider.update(certificate_arn, outs, new_inputs).outs
    assert updated is not None
    for key in certificate.OUTPUTS:
        assert updated[key] == outs[key], key
    assert updated["renew_before_days"] == 5
    assert updated["revoke_on_delete"] is False
    assert pca_proxy.requests == []  # nothing re-issued


# ---------------------------------------------------------------------------------------------------------
# delete
# ---------------------------------------------------------------------------------------------------------


def test_delete_revokes_with_the_serial_and_ca(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    certificate_arn, outs = create(rsa_ca[0], pca_proxy)
    provider.delete(certificate_arn, outs)

    [request] = pca_proxy.bodies(REVOKE)
    assert request["CertificateAuthorityArn"] == rsa_ca[0]
    assert request["CertificateSerial"] == outs["serial"]
    assert request["CertificateSerial"] == pki.colon_hex(leaf_of(outs).serial_number)
    assert request["RevocationReason"] == "CESSATION_OF_OPERATION"

    # moto accepts a second revocation of the same serial; AWS answers RequestAlreadyProcessedException (below).
    provider.delete(certificate_arn, outs)
    assert len(pca_proxy.calls(REVOKE)) == 2


@pytest.mark.parametrize("error_type", ["RequestAlreadyProcessedException", "ResourceNotFoundException"])
def test_delete_is_quiet_when_nothing_is_left_to_revoke(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], error_type: str
) -> None:
    certificate_arn, outs = create(rsa_ca[0], pca_proxy)
    pca_proxy.inject(REVOKE, error_type=error_type)
    provider.delete(certificate_arn, outs)
    assert [call.injected for call in pca_proxy.calls(REVOKE)] == [True]


def test_delete_is_quiet_when_the_ca_was_deleted(pca_proxy: RecordingProxy) -> None:
    ca_arn, _ = create_active_ca(pca_proxy.endpoint_url, common_name="Deleted CA")
    certificate_arn, outs = create(ca_arn, pca_proxy)
    emulator_client(pca_proxy.endpoint_url).delete_certificate_authority(CertificateAuthorityArn=ca_arn)
    provider.delete(certificate_arn, outs)  # moto: InvalidStateException
    assert pca_proxy.calls(REVOKE)[-1].status == 400


def test_delete_under_a_disabled_ca_fails_and_says_how_to_proceed(pca_proxy: RecordingProxy) -> None:
    ca_arn, _ = create_active_ca(pca_proxy.endpoint_url, common_name="Disabled CA")
    certificate_arn, outs = create(ca_arn, pca_proxy)
    emulator_client(pca_proxy.endpoint_url).update_certificate_authority(
        CertificateAuthorityArn=ca_arn, Status="DISABLED"
    )
    with pytest.raises(RuntimeError) as raised:
        provider.delete(certificate_arn, outs)
    message = str(raised.value)
    assert certificate_arn in message
    assert "DISABLED" in message
    assert "revocation needs the CA enabled" in message
    assert "revoke_on_delete: false" in message
    assert pca_proxy.calls(REVOKE)[-1].status == 400  # moto: InvalidStateException


def test_delete_reports_an_invalid_state_of_an_active_ca(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    certificate_arn, outs = create(rsa_ca[0], pca_proxy)
    pca_proxy.inject(REVOKE, error_type="InvalidStateException")
    with pytest.raises(ClientError):
        provider.delete(certificate_arn, outs)


@pytest.mark.parametrize("error_type", ["AccessDeniedException", "ValidationException"])
def test_delete_propagates_other_errors(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], error_type: str) -> None:
    certificate_arn, outs = create(rsa_ca[0], pca_proxy)
    pca_proxy.inject(REVOKE, error_type=error_type)
    with pytest.raises(ClientError) as raised:
        provider.delete(certificate_arn, outs)
    assert raised.value.response["Error"]["Code"] == error_type


def test_delete_without_revoke_on_delete_calls_nothing(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    certificate_arn, outs = create(rsa_ca[0], pca_proxy, revoke_on_delete=False)
    pca_proxy.reset()
    provider.delete(certificate_arn, outs)
    assert pca_proxy.requests == []


def test_delete_of_an_expired_certificate_calls_nothing(pca_proxy: RecordingProxy, state: dict[str, Any]) -> None:
    expired = {**state, "endpoint_url": pca_proxy.endpoint_url}
    expired["not_after"] = pki.iso_utc(datetime.now(UTC) - timedelta(seconds=1))
    provider.delete("arn", expired)
    assert pca_proxy.requests == []


# ---------------------------------------------------------------------------------------------------------
# throttling, transient errors and slow issuance
# ---------------------------------------------------------------------------------------------------------


def test_throttled_issue_is_retried_with_the_same_idempotency_token(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]
) -> None:
    pca_proxy.throttle(ISSUE, times=3)
    _, outs = create(rsa_ca[0], pca_proxy)

    calls = pca_proxy.calls(ISSUE)
    assert [call.injected for call in calls] == [True, True, True, False]
    assert len({call.body["IdempotencyToken"] for call in calls}) == 1
    assert len({call.body["Csr"] for call in calls}) == 1  # the same key, not a new one per attempt
    assert leaf_of(outs)


def test_throttled_get_certificate_is_retried(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    pca_proxy.throttle(GET, times=3)
    _, outs = create(rsa_ca[0], pca_proxy)
    assert [call.injected for call in pca_proxy.calls(GET)] == [True, True, True, False]
    assert len(pca_proxy.calls(ISSUE)) == 1
    assert leaf_of(outs)


@pytest.mark.parametrize("status", [500, 503])
def test_transient_server_errors_are_retried(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], status: int) -> None:
    pca_proxy.server_error(ISSUE, status=status, times=2)
    pca_proxy.server_error(GET, status=status, times=2)
    create(rsa_ca[0], pca_proxy)
    assert len(pca_proxy.calls(ISSUE)) == 3
    assert len({body["IdempotencyToken"] for body in pca_proxy.bodies(ISSUE)}) == 1
    assert len(pca_proxy.calls(GET)) == 3


def test_create_waits_while_the_certificate_is_being_issued(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    pca_proxy.in_progress(times=4)
    _, outs = create(rsa_ca[0], pca_proxy)
    assert [call.injected for call in pca_proxy.calls(GET)] == [True, True, True, True, False]
    assert len(pca_proxy.calls(ISSUE)) == 1
    assert leaf_of(outs)


def test_create_gives_up_after_issue_wait_seconds(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(certificate, "ISSUE_WAIT_SECONDS", 0.3)
    pca_proxy.in_progress(times=None)
    with pytest.raises(RuntimeError, match=r"certificate/.* was still being issued after 0 seconds") as raised:
        create(rsa_ca[0], pca_proxy)
    # Its serial is only in the certificate, which never came: the error names the certificate to revoke.
    assert "it was not revoked" in str(raised.value)
    assert isinstance(raised.value.__cause__, TimeoutError)
    attempts = len(pca_proxy.calls(GET))
    assert 2 <= attempts <= 0.3 / 0.01 + 1  # polled, but never more often than the initial delay allows
    assert len(pca_proxy.calls(ISSUE)) == 1


@pytest.mark.parametrize("target", [ISSUE, GET])
def test_persistent_throttling_is_bounded_by_time(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], target: str
) -> None:
    pca_proxy.throttle(target, times=None)
    inputs = checked(rsa_ca[0], pca_proxy, throttle_retry_minutes=0.03)  # 1.8 s
    with pytest.raises((ClientError, RuntimeError)) as raised:
        provider.create(inputs)
    error = raised.value if isinstance(raised.value, ClientError) else raised.value.__cause__
    assert isinstance(error, ClientError)
    assert error.response["Error"]["Code"] == "ThrottlingException"
    calls = pca_proxy.calls(target)
    assert len(calls) > 9  # more than botocore's old fixed attempt count, for as long as the budget lasts
    assert 1.5 <= calls[-1].at - calls[0].at < 5
    assert len(pca_proxy.calls(ISSUE)) == (len(calls) if target == ISSUE else 1)
    assert len({body["IdempotencyToken"] for body in pca_proxy.bodies(ISSUE)}) == 1


@pytest.mark.parametrize("error_type", ["AccessDeniedException", "ValidationException", "LimitExceededException"])
def test_other_errors_fail_at_once(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], error_type: str) -> None:
    pca_proxy.inject(ISSUE, error_type=error_type, times=None)
    with pytest.raises(ClientError) as raised:
        create(rsa_ca[0], pca_proxy)
    assert raised.value.response["Error"]["Code"] == error_type
    assert len(pca_proxy.calls(ISSUE)) == 1


def test_concurrent_creates_under_a_persistent_quota_all_succeed(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]
) -> None:
    count = 16
    inputs = [checked(rsa_ca[0], pca_proxy, common_name=f"host{index}.internal.example.com") for index in range(count)]
    pca_proxy.reset()
    pca_proxy.quota(ISSUE, 2.0, burst=1)  # far below the 25/s the provider starts from
    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(provider.create, inputs))

    assert len({result.id for result in results}) == count
    issued = [call for call in pca_proxy.calls(ISSUE) if not call.injected]
    assert len(issued) == count  # a fleet of N issues N certificates, never more
    refused = sum(call.injected for call in pca_proxy.calls(ISSUE))
    assert refused > 0, "the quota was never reached"
    # The shared rate learns the quota: few requests are refused (independent back-off per call, before,
    # had each create refused about three times).
    assert refused < 2 * count


# ---------------------------------------------------------------------------------------------------------
# one client and one rate per process; one read of each CA per check burst
# ---------------------------------------------------------------------------------------------------------


def test_one_client_serves_every_call_of_every_resource(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    real_client: Any = pca_client.boto3.session.Session.client

    def counting_client(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
        built.append(service)
        return real_client(self, service, *args, **kwargs)

    monkeypatch.setattr(pca_client.boto3.session.Session, "client", counting_client)
    first_arn, first = create(rsa_ca[0], pca_proxy, common_name="one.internal.example.com")
    second_arn, second = create(rsa_ca[0], pca_proxy, common_name="two.internal.example.com")
    provider.read(first_arn, first)
    provider.delete(second_arn, second)
    assert built == ["acm-pca"]
    assert pca_client.client(pca_client.Target.of(first)) is pca_client.client(pca_client.Target.of(second))


def test_create_makes_one_describe_one_issue_and_one_get(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    inputs = checked(rsa_ca[0], pca_proxy)
    certificate.forget_cached_cas()  # as a create in a provider process that did not check it
    pca_proxy.reset()
    provider.create(inputs)
    assert [call.target for call in pca_proxy.requests] == [DESCRIBE, ISSUE, GET]


def test_create_reuses_what_check_read_of_the_ca(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    inputs = checked(rsa_ca[0], pca_proxy)
    pca_proxy.reset()
    provider.create(inputs)
    assert [call.target for call in pca_proxy.requests] == [ISSUE, GET]


def test_concurrent_creates_read_a_shared_ca_once(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    inputs = [checked(rsa_ca[0], pca_proxy, common_name=f"host{index}.internal.example.com") for index in range(12)]
    certificate.forget_cached_cas()
    pca_proxy.reset()
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(provider.create, inputs))
    assert len({result.id for result in results}) == 12
    assert len(pca_proxy.calls(DESCRIBE)) == 1
    assert len(pca_proxy.calls(ISSUE)) == 12


def test_create_reads_the_ca_again_after_a_failed_read(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    """A failed read is not reused by create(): it retries within its own budget."""
    inputs = checked(rsa_ca[0], pca_proxy)
    certificate.forget_cached_cas()
    pca_proxy.reset()
    pca_proxy.inject(DESCRIBE, error_type="AccessDeniedException")
    with pytest.raises(ClientError):
        provider.create(inputs)
    provider.create(inputs)
    assert [call.injected for call in pca_proxy.calls(DESCRIBE)] == [True, False]


def test_check_reads_a_shared_ca_once_for_many_certificates(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    props = [news(rsa_ca[0], pca_proxy, common_name=f"host{index}.internal.example.com") for index in range(40)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda one: provider.check({}, one), props))
    assert all(result.failures == [] for result in results)
    assert len(pca_proxy.calls(DESCRIBE)) == 1


# ---------------------------------------------------------------------------------------------------------
# check: every bad input fails on its own property, naming the input and what is allowed
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "-leading-hyphen.example.com",
        "under_score.example.com",
        "double..dot.example.com",
        "a b.example.com",
        f"{'x' * 64}.example.com",
        "*.com",
        "*.*.example.com",
        "caf\u00e9.example.com",
    ],
)
def test_check_rejects_invalid_dns_names(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], name: str) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, subject_alternative_names=[name]))
    assert set(failures) == {"subject_alternative_names"}
    assert repr(name) in failures["subject_alternative_names"]
    assert "DNS name" in failures["subject_alternative_names"]
    assert "IP address" in failures["subject_alternative_names"]


def test_check_blames_common_name_for_an_invalid_common_name(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]
) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, common_name="bad_name.example.com"))
    assert set(failures) == {"common_name"}
    assert "'bad_name.example.com'" in failures["common_name"]
    assert "DNS name" in failures["common_name"]


@pytest.mark.parametrize("address", ["10.0.0.256", "300.1.2.3", "1.2.3.4.5", "fd00::17::1", "10.0.0.1/24"])
def test_check_rejects_invalid_ip_addresses(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], address: str) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, subject_alternative_names=[address]))
    assert set(failures) == {"subject_alternative_names"}
    assert repr(address) in failures["subject_alternative_names"]
    assert "IP address" in failures["subject_alternative_names"]


@pytest.mark.parametrize("common_name", [None, "", "   "])
def test_check_requires_a_name(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], common_name: str | None) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, common_name=common_name, subject_alternative_names=[]))
    assert set(failures) == {"common_name"}
    assert "common_name is required" in failures["common_name"]
    assert "DNS name or an IP address" in failures["common_name"]


def test_check_requires_a_list_of_alternative_names(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, subject_alternative_names="a.example.com"))
    assert set(failures) == {"subject_alternative_names"}
    assert "must be a list" in failures["subject_alternative_names"]


@pytest.mark.parametrize("validity", [0, -5])
def test_check_rejects_non_positive_validity(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], validity: int) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, validity_days=validity))
    assert "validity_days" in failures
    assert f"validity_days must be positive, got {validity}" == failures["validity_days"]


@pytest.mark.parametrize("validity", [1.5, "30", True, [30]])
def test_check_rejects_non_integer_validity(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], validity: Any) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, validity_days=validity))
    assert set(failures) == {"validity_days"}
    assert failures["validity_days"] == f"validity_days must be a whole number of days, got {validity!r}"


def test_check_accepts_a_whole_float_validity(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    # Pulumi's wire format carries numbers as floats: 30.0 is 30.
    inputs = checked(rsa_ca[0], pca_proxy, validity_days=30.0)
    assert inputs["validity_days"] == 30
    assert isinstance(inputs["validity_days"], int)
    assert inputs["renew_before_days"] == 10


def test_check_rejects_validity_beyond_the_cas_expiry(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    # moto's CA certificates last 365 days.
    failures = failures_of(news(rsa_ca[0], pca_proxy, validity_days=400))
    assert set(failures) == {"validity_days"}
    assert "validity_days is 400" in failures["validity_days"]
    assert "must expire before its issuer" in failures["validity_days"]


def test_describe_ca_of_moto_server_does_not_echo_usage_mode(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]
) -> None:
    """Why the proxy corrects UsageMode: moto reports SHORT_LIVED_CERTIFICATE for every CA."""
    upstream = emulator_client(pca_proxy.upstream).describe_certificate_authority(CertificateAuthorityArn=rsa_ca[0])
    assert upstream["CertificateAuthority"]["UsageMode"] == "SHORT_LIVED_CERTIFICATE"
    proxied = certificate.describe_ca({"ca_arn": rsa_ca[0], "endpoint_url": pca_proxy.endpoint_url})
    assert proxied["usage_mode"] == "GENERAL_PURPOSE"


def test_check_rejects_more_than_seven_days_on_a_short_lived_ca(
    pca_proxy: RecordingProxy, short_lived_ca: tuple[str, str]
) -> None:
    failures = failures_of(news(short_lived_ca[0], pca_proxy, validity_days=8))
    assert set(failures) == {"validity_days"}
    assert "validity_days is 8" in failures["validity_days"]
    assert "SHORT_LIVED_CERTIFICATE" in failures["validity_days"]
    assert "at most 7 days" in failures["validity_days"]
    assert checked(short_lived_ca[0], pca_proxy, validity_days=7)["renew_before_days"] == 2


def test_validity_problem() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    general: certificate._CertificateAuthority = {
        "key_algorithm": "RSA_2048",
        "usage_mode": "GENERAL_PURPOSE",
        "status": "ACTIVE",
        "not_after": now + timedelta(days=100),
    }
    short_lived: certificate._CertificateAuthority = {**general, "usage_mode": "SHORT_LIVED_CERTIFICATE"}
    assert certificate.validity_problem(99, general, now) is None
    assert "expire before its issuer" in (certificate.validity_problem(100, general, now) or "")
    assert certificate.validity_problem(365, {**general, "not_after": None}, now) is None
    assert certificate.validity_problem(7, short_lived, now) is None
    assert "at most 7 days" in (certificate.validity_problem(8, short_lived, now) or "")


@pytest.mark.parametrize("key_algorithm", ["ED25519", "RSA_1024", "EC_secp521r1", "rsa_2048"])
def test_check_rejects_unknown_key_algorithms(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], key_algorithm: str
) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, key_algorithm=key_algorithm))
    assert set(failures) == {"key_algorithm"}
    assert repr(key_algorithm) in failures["key_algorithm"]
    assert "allowed: EC_prime256v1, EC_secp384r1, RSA_2048, RSA_3072, RSA_4096" in failures["key_algorithm"]


def test_check_rejects_a_malformed_csr(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    bad = "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----\n"
    failures = failures_of(news(rsa_ca[0], pca_proxy, csr_pem=bad))
    assert set(failures) == {"csr_pem"}
    assert "csr_pem is not usable: not a PEM certificate signing request" in failures["csr_pem"]


def test_check_rejects_a_csr_with_a_bad_signature(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    csr_pem, _ = make_csr(
        "app.internal.example.com", [cx509.DNSName("app.internal.example.com")], rsa.generate_private_key(65537, 2048)
    )
    der = bytearray(cx509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the RSA signature
    tampered = cx509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    failures = failures_of(news(rsa_ca[0], pca_proxy, csr_pem=tampered, subject_alternative_names=[]))
    assert set(failures) == {"csr_pem"}
    assert "signature does not verify" in failures["csr_pem"]


def test_check_rejects_a_csr_with_an_unsupported_key(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    csr_pem, _ = make_csr(
        "app.internal.example.com", [cx509.DNSName("app.internal.example.com")], ed25519.Ed25519PrivateKey.generate()
    )
    failures = failures_of(news(rsa_ca[0], pca_proxy, csr_pem=csr_pem, subject_alternative_names=[]))
    assert set(failures) == {"csr_pem"}
    assert "allowed: EC_prime256v1" in failures["csr_pem"]


def test_check_rejects_a_csr_whose_common_name_disagrees(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    csr_pem, _ = make_csr("other.example.com", [cx509.DNSName("other.example.com")])
    failures = failures_of(news(rsa_ca[0], pca_proxy, csr_pem=csr_pem, subject_alternative_names=[]))
    assert set(failures) == {"csr_pem"}
    assert "'other.example.com'" in failures["csr_pem"]
    assert "common_name is 'app.internal.example.com'" in failures["csr_pem"]


def test_check_rejects_a_csr_whose_alternative_names_disagree(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]
) -> None:
    csr_pem, _ = make_csr("app.internal.example.com", [cx509.DNSName("app.internal.example.com")])
    failures = failures_of(news(rsa_ca[0], pca_proxy, csr_pem=csr_pem, subject_alternative_names=["10.0.1.17"]))
    assert set(failures) == {"csr_pem"}
    assert "differ from common_name and subject_alternative_names" in failures["csr_pem"]
    assert "'10.0.1.17'" in failures["csr_pem"]


@pytest.mark.parametrize(
    "ca_arn",
    [
        "",
        "not-an-arn",
        "arn:aws:acm:us-east-1:123456789012:certificate/0123abcd-0000-0000-0000-000000000000",
        "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/0123abcd/certificate/ff",
    ],
)
def test_check_rejects_a_bad_ca_arn(pca_proxy: RecordingProxy, ca_arn: str) -> None:
    failures = failures_of(news(ca_arn, pca_proxy))
    assert set(failures) == {"ca_arn"}
    assert "ca_arn" in failures["ca_arn"]
    assert "arn:aws:acm-pca:<region>:<account>:certificate-authority/<id>" in failures["ca_arn"] or (
        failures["ca_arn"] == "ca_arn is required: the ARN of an ACM Private CA"
    )
    assert pca_proxy.requests == []


def test_check_reports_a_missing_ca(pca_proxy: RecordingProxy) -> None:
    missing = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/00000000-0000-0000-0000-000000000000"
    failures = failures_of(news(missing, pca_proxy))
    assert failures == {"ca_arn": f"ca_arn {missing!r}: no such certificate authority"}


@pytest.mark.parametrize(
    "template", ["EndEntity", "arn:aws:acm-pca:::template/", "arn:aws:acm:::template/EndEntityCertificate/V1", "x/V1/y"]
)
def test_check_rejects_a_malformed_template(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], template: str) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, template_arn=template))
    assert set(failures) == {"template_arn"}
    assert repr(template) in failures["template_arn"]
    assert "'EndEntityServerAuthCertificate/V1'" in failures["template_arn"]


@pytest.mark.parametrize(
    "template", ["RootCACertificate/V1", "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen0/V1"]
)
def test_check_rejects_a_ca_template(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], template: str) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, template_arn=template))
    assert set(failures) == {"template_arn"}
    assert "signs certificate authorities; use an end-entity template" in failures["template_arn"]


def test_check_normalises_template_names_to_arns(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    assert checked(rsa_ca[0], pca_proxy)["template_arn"] == (
        "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1"
    )
    gov = "arn:aws-us-gov:acm-pca:us-gov-west-1:123456789012:certificate-authority/0123abcd-0000-0000-0000-00000000000"
    result = provider.check({}, news(gov, pca_proxy, endpoint_url=UNKNOWN))
    assert result.inputs is not None
    assert result.inputs["template_arn"] == "arn:aws-us-gov:acm-pca:::template/EndEntityServerAuthCertificate/V1"
    assert result.inputs["region"] == "us-gov-west-1"


@pytest.mark.parametrize(("validity", "renew_before"), [(90, 90), (90, 120), (90, -1), (7, 7)])
def test_check_rejects_renew_before_not_below_validity(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], validity: int, renew_before: int
) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, validity_days=validity, renew_before_days=renew_before))
    assert set(failures) == {"renew_before_days"}
    assert failures["renew_before_days"] == (
        f"renew_before_days must be at least 0 and less than validity_days ({validity}), got {renew_before}"
    )


def test_check_rejects_a_region_that_contradicts_the_ca_arn(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, region="eu-west-1"))
    assert failures == {"region": "region 'eu-west-1' differs from the CA's region 'us-east-1'"}


def test_check_rejects_a_non_boolean_revoke_on_delete(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, revoke_on_delete="yes"))
    assert failures == {"revoke_on_delete": "revoke_on_delete must be true or false"}


def test_check_fills_defaults(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    inputs = checked(
        rsa_ca[0],
        pca_proxy,
        common_name="App.Internal.Example.com.",
        subject_alternative_names=["app.internal.example.com", "10.0.1.17"],
    )
    assert inputs["common_name"] == "app.internal.example.com"
    assert inputs["subject_alternative_names"] == ["10.0.1.17"]
    assert inputs["key_algorithm"] == "EC_prime256v1"
    assert inputs["validity_days"] == 90
    assert inputs["renew_before_days"] == 30
    assert inputs["revoke_on_delete"] is True
    assert inputs["region"] == "us-east-1"
    assert inputs["csr_pem"] is None


@pytest.mark.parametrize(
    ("key", "value", "calls_aws"),
    [
        ("ca_arn", UNKNOWN, False),
        ("endpoint_url", UNKNOWN, False),
        ("region", UNKNOWN, False),
        ("validity_days", UNKNOWN, False),
        ("profile", UNKNOWN, False),
        ("assume_role_arn", UNKNOWN, False),
        ("assume_role_session_name", UNKNOWN, False),
        ("assume_role_external_id", UNKNOWN, False),
        ("throttle_retry_minutes", UNKNOWN, True),
        ("common_name", UNKNOWN, True),
        ("subject_alternative_names", UNKNOWN, True),
        ("subject_alternative_names", ["api.internal.example.com", UNKNOWN], True),
        ("key_algorithm", UNKNOWN, True),
        ("template_arn", UNKNOWN, True),
        ("renew_before_days", UNKNOWN, True),
        ("csr_pem", UNKNOWN, True),
        ("revoke_on_delete", UNKNOWN, True),
    ],
)
def test_check_tolerates_unknown_values_during_preview(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], key: str, value: Any, calls_aws: bool
) -> None:
    result = provider.check({}, {**news(rsa_ca[0], pca_proxy), key: value})
    assert result.failures == [], [(f.property, f.reason) for f in result.failures]
    assert result.inputs is not None
    assert result.inputs[key] == value
    assert bool(pca_proxy.requests) is calls_aws
    assert all(call.target == DESCRIBE for call in pca_proxy.requests)


def test_check_ignores_the_provider_marker(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    inputs = checked(rsa_ca[0], pca_proxy, __provider="serialized-provider")
    assert "__provider" not in inputs


# ---------------------------------------------------------------------------------------------------------
# what only real AWS shows: CA states, unreadable CAs, certificates issued but unusable, name limits
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["DISABLED", "PENDING_CERTIFICATE"])
def test_create_refuses_a_ca_that_is_not_active(pca_proxy: RecordingProxy, status: str) -> None:
    # moto issues from any CA; AWS refuses with InvalidStateException. The provider refuses first, by name.
    ca_arn, _ = create_active_ca(pca_proxy.endpoint_url, common_name=f"{status} CA")
    inputs = checked(ca_arn, pca_proxy)
    certificate.forget_cached_cas()  # what check read is trusted for CA_CACHE_SECONDS: read the CA again
    pca_proxy.reset()
    pca_proxy.respond(
        DESCRIBE,
        {"CertificateAuthority": {"Status": status, "CertificateAuthorityConfiguration": {"KeyAlgorithm": "RSA_2048"}}},
    )
    with pytest.raises(CertificateError, match=f"is {status}; it issues certificates only when ACTIVE"):
        provider.create(inputs)
    assert pca_proxy.calls(ISSUE) == []


def test_create_revokes_a_certificate_it_cannot_use(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    _, other = create(rsa_ca[0], pca_proxy, common_name="other.internal.example.com")
    pca_proxy.reset()
    # GetCertificate hands back a certificate for another key than the CSR's: unusable, and valid until revoked.
    pca_proxy.respond(
        GET, {"Certificate": other["certificate_pem"], "CertificateChain": other["certificate_chain_pem"]}
    )
    with pytest.raises(RuntimeError, match=r"does not carry the public key of the CSR.*the certificate was revoked"):
        create(rsa_ca[0], pca_proxy)
    [revoked] = pca_proxy.bodies(REVOKE)
    assert revoked["CertificateSerial"] == other["serial"]
    assert len(pca_proxy.calls(ISSUE)) == 1


@pytest.mark.parametrize("error_type", ["AccessDeniedException", "ThrottlingException", "InternalFailure"])
def test_check_skips_the_ca_checks_when_aws_refuses_to_answer(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], error_type: str
) -> None:
    pca_proxy.inject(
        DESCRIBE, error_type=error_type, status=500 if error_type == "InternalFailure" else 400, times=None
    )
    assert failures_of(news(rsa_ca[0], pca_proxy, validity_days=400)) == {}  # create() checks again


def test_check_skips_the_ca_checks_without_credentials(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setattr("botocore.credentials.InstanceMetadataProvider.load", lambda _self: None)
    monkeypatch.setattr("botocore.credentials.ContainerProvider.load", lambda _self: None)
    assert failures_of(news(rsa_ca[0], pca_proxy)) == {}
    assert pca_proxy.requests == []


def test_check_skips_the_ca_checks_when_the_endpoint_is_unreachable(rsa_ca: tuple[str, str]) -> None:
    props = {
        "ca_arn": rsa_ca[0],
        "common_name": "app.internal.example.com",
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
    }
    assert failures_of(props) == {}


def test_check_refuses_a_common_name_longer_than_x509_allows(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]
) -> None:
    long_name = f"{'a' * 40}.{'b' * 20}.example.com"  # 73 characters, every label valid
    failures = failures_of(news(rsa_ca[0], pca_proxy, common_name=long_name))
    assert set(failures) == {"common_name"}
    assert "73 characters" in failures["common_name"]
    assert "at most 64" in failures["common_name"]
    assert "subject_alternative_names" in failures["common_name"]
    # ... while the same name is fine as an alternative name.
    assert failures_of(news(rsa_ca[0], pca_proxy, subject_alternative_names=[long_name])) == {}


@pytest.mark.parametrize("sans", [[None], ["api.internal.example.com", None]])
def test_check_refuses_a_null_name(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], sans: list[Any]) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, subject_alternative_names=sans))
    assert set(failures) == {"subject_alternative_names"}
    assert f"position {sans.index(None)}" in failures["subject_alternative_names"]


@pytest.mark.parametrize("validity", [36501, 10**9, 1e300])
def test_check_refuses_an_absurd_validity(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], validity: Any) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, validity_days=validity))
    assert set(failures) == {"validity_days"}
    assert "validity_days must be at most 36500" in failures["validity_days"]


@pytest.mark.parametrize(
    ("overrides", "prop", "fragment"),
    [
        ({"assume_role_arn": "arn:aws:iam::123:role/x"}, "assume_role_arn", "is not an IAM role ARN"),
        ({"assume_role_arn": "arn:aws:iam::123456789012:user/x"}, "assume_role_arn", "is not an IAM role ARN"),
        ({"assume_role_session_name": "deploy"}, "assume_role_session_name", "assume_role_arn is not"),
        ({"assume_role_external_id": "abc"}, "assume_role_external_id", "assume_role_arn is not"),
        (
            {"assume_role_arn": "arn:aws:iam::123456789012:role/x", "assume_role_session_name": "a b"},
            "assume_role_session_name",
            "2-64 letters",
        ),
        ({"profile": "two words"}, "profile", "is not an AWS profile name"),
        ({"throttle_retry_minutes": 0}, "throttle_retry_minutes", "above 0 and at most 120"),
        ({"throttle_retry_minutes": "5"}, "throttle_retry_minutes", "above 0 and at most 120"),
        ({"throttle_retry_minutes": 121}, "throttle_retry_minutes", "above 0 and at most 120"),
    ],
)
def test_check_refuses_bad_identity_and_budget_inputs(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], overrides: dict[str, Any], prop: str, fragment: str
) -> None:
    failures = failures_of(news(rsa_ca[0], pca_proxy, **overrides))
    assert set(failures) == {prop}
    assert fragment in failures[prop]


# ---------------------------------------------------------------------------------------------------------
# the stack's AWS identity: a profile, a role assumed through STS
# ---------------------------------------------------------------------------------------------------------


def test_calls_are_signed_with_the_assumed_roles_credentials(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]
) -> None:
    # moto keeps the role's account (the CA's) for the keys it hands out, so the CA is visible to the role.
    role = {
        "assume_role_arn": "arn:aws:iam::123456789012:role/certificate-issuer",
        "assume_role_session_name": "pulumi-deploy",
        "assume_role_external_id": "pki-external-id",
    }
    certificate_arn, outs = create(rsa_ca[0], pca_proxy, **role)
    provider.delete(certificate_arn, outs)

    pca_calls = [call for call in pca_proxy.requests if call.target.startswith("ACMPrivateCA.")]
    assert [call.target for call in pca_calls] == [DESCRIBE, ISSUE, GET, REVOKE]  # create reuses check's read
    signers = {call.access_key_id for call in pca_calls}
    assert len(signers) == 1
    [signer] = signers
    assert signer.startswith("ASIA")  # temporary credentials from STS, not the environment's "testing"
    sts_calls = [call for call in pca_proxy.requests if call.target == ""]
    assert len(sts_calls) == 1  # AssumeRole once, for every call of both operations
    assert sts_calls[0].access_key_id == "testing"  # signed with the source credentials


def test_calls_use_the_named_profile(
    pca_proxy: RecordingProxy, rsa_ca: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[pki-issuer]\naws_access_key_id = AKIAPKIISSUER0000001\naws_secret_access_key = x\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    create(rsa_ca[0], pca_proxy, profile="pki-issuer")
    assert {call.access_key_id for call in pca_proxy.calls(ISSUE)} == {"AKIAPKIISSUER0000001"}


def test_an_unknown_profile_fails_create_but_not_check(pca_proxy: RecordingProxy, rsa_ca: tuple[str, str]) -> None:
    inputs = checked(rsa_ca[0], pca_proxy, profile="no-such-profile")
    with pytest.raises(Exception, match="no-such-profile"):
        provider.create(inputs)


def test_assumed_role_credentials_are_refreshable(pca_proxy: RecordingProxy) -> None:
    """botocore refreshes them before they expire (an hour by default), so a long `pulumi up` keeps working."""
    target = pca_client.Target(
        "us-east-1", pca_proxy.endpoint_url, pca_client.Identity(role_arn="arn:aws:iam::123456789012:role/issuer")
    )
    credentials = pca_client._new_session(target).get_credentials()
    assert isinstance(credentials, RefreshableCredentials)
    assert credentials.method == "assume-role"
    assert str(credentials.get_frozen_credentials().access_key).startswith("ASIA")
    assert len([call for call in pca_proxy.requests if call.target == ""]) == 1  # AssumeRole, via the endpoint
