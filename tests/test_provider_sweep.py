"""Bad inputs and damaged state through the engine's door: refused by name, never a raw exception.

Every case goes through the SDK's provider host over gRPC (tests/provider_host.py), as Pulumi sends it:

- bad *inputs* (what a program passes to `Certificate`) must come back from Check as a CheckFailure on the input
  at fault, whose reason names it; Check itself never fails;
- damaged *state* (what Diff, Read, Update and Delete get) must get the safe behaviour (derive what is missing
  from what is left) or fail with the provider's own `CertificateError`, which says what to do. The host formats
  any exception with its traceback; what matters is which exception: never a `KeyError`, `TypeError`,
  `AttributeError`, `IndexError`, a library's `ValueError` or botocore's `ParamValidationError`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from components import certificate
from components.certificate import CertificateProvider
from components.local.emulator import GET, REVOKE, RecordingProxy, create_active_ca, free_port
from tests.provider_host import (
    URN,
    DoorError,
    Engine,
    ProviderHost,
    Stored,
    registered,
    replaced,
    to_dict,
    to_struct,
    without,
)

ROLE = "arn:aws:iam::123456789012:role/certificate-issuer"
#: Exceptions that mean the provider did not see a case coming.
RAW = ("KeyError", "TypeError", "AttributeError", "IndexError", "ValueError", "ParamValidationError", "UnboundLocal")


@pytest.fixture(scope="module")
def ca_arn(pca_proxy_session: RecordingProxy) -> str:
    return create_active_ca(pca_proxy_session.endpoint_url, common_name="Sweep CA")[0]


def good(ca_arn: str, proxy: RecordingProxy) -> dict[str, Any]:
    return {
        "ca_arn": ca_arn,
        "common_name": "app.internal.example.com",
        "subject_alternative_names": ["api.internal.example.com", "10.0.1.17"],
        "endpoint_url": proxy.endpoint_url,
    }


def exceptions_in(details: str) -> list[str]:
    """The exception class of each exception in a formatted traceback (the chain included), in order."""
    return re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)):", details, flags=re.MULTILINE)


def assert_explained(error: DoorError, *fragments: str) -> None:
    """The provider failed on purpose: its last exception is a CertificateError saying `fragments`, and no
    exception in the chain is one it did not see coming."""
    raised = exceptions_in(error.details)
    assert raised, error.details
    assert raised[-1] == "components.certificate.CertificateError", error.details
    assert not [name for name in raised if name.rsplit(".", 1)[-1].startswith(RAW)], error.details
    for fragment in fragments:
        assert fragment in error.last_line, error.last_line


# ---------------------------------------------------------------------------------------------------------
# bad inputs: one CheckFailure, on the input at fault, naming it
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    id: str
    key: str
    value: Any
    blamed: str = ""
    """The input the failure is on (default: `key`)."""
    says: str = ""
    """A fragment the reason must hold (default: the blamed input's name)."""
    extra: tuple[tuple[str, Any], ...] = ()


def _csr(names: list[str], common_name: str = "app.internal.example.com", key: Any = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    general: list[cx509.GeneralName] = []
    for name in names:
        try:
            general.append(cx509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(cx509.DNSName(name))
    builder = cx509.CertificateSigningRequestBuilder().subject_name(
        cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if general:
        builder = builder.add_extension(cx509.SubjectAlternativeName(general), critical=False)
    signing = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, signing).public_bytes(serialization.Encoding.PEM).decode()


def _tampered_csr() -> str:
    pem = _csr(["app.internal.example.com"], key=rsa.generate_private_key(65537, 2048))
    der = bytearray(cx509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return cx509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()


#: Over 32,768 bytes of names: a generated CSR would exceed what IssueCertificate takes.
MANY_NAMES = [f"host-{index:04d}.a-rather-long-subdomain.internal.example.com" for index in range(700)]
ROLE_EXTRA = (("assume_role_arn", ROLE),)

BAD_INPUTS: list[Bad] = [
    # endpoint_url: not a URL, not http(s), not a string, credentials, a bad port, not loopback over http
    *[
        Bad(f"endpoint-{index}", "endpoint_url", value)
        for index, value in enumerate(
            [
                "not a url",
                "ftp://127.0.0.1:5000",
                "file:///etc/passwd",
                "unix:///var/run/moto.sock",
                "127.0.0.1:5000",
                "https://",
                "http://127.0.0.1:99999",
                "http://127.0.0.1:0",
                "http://127.0.0.1:port",
                "http://[::1",
                "http://127.0.0.1:5000/path",
                "http://127.0.0.1:5000/?x=1",
                "http://127.0.0.1:5000#top",
                "http://127.0.0.1 :5000",
                "http://127.0.0.1:5000\n",
                "http://10.0.0.5:5000",
                "http://acm-pca.internal",
                5000,
                True,
                ["http://127.0.0.1:5000"],
                {"url": "http://127.0.0.1:5000"},
            ]
        )
    ],
    Bad("endpoint-credentials", "endpoint_url", "http://user:secret@127.0.0.1:5000", says="credentials"),
    Bad("endpoint-password-only", "endpoint_url", "http://:secret@127.0.0.1:5000", says="credentials"),
    # ca_arn
    *[
        Bad(f"ca-arn-{index}", "ca_arn", value)
        for index, value in enumerate(
            [
                "",
                "not-an-arn",
                5,
                True,
                ["arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/0123abcd"],
                {"arn": "x"},
                "arn:aws:acm:us-east-1:123456789012:certificate/0123abcd-0000-0000-0000-000000000000",
                "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/0123abcd/certificate/ff",
                "arn:aws:acm-pca:us-east-1:١٢٣٤٥٦٧٨٩٠١٢:certificate-authority/0123abcd",  # Arabic-Indic digits
                "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/" + "0" * 200,
                "ARN:AWS:ACM-PCA:US-EAST-1:123456789012:CERTIFICATE-AUTHORITY/0123ABCD",
                "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/ 0123abcd",
            ]
        )
    ],
    # region
    Bad("region-other", "region", "eu-west-1", says="differs from the CA's region"),
    Bad("region-shape", "region", "not a region"),
    Bad("region-upper", "region", "US-EAST-1"),
    Bad("region-space", "region", "us-east-1 "),
    Bad("region-number", "region", 5),
    # common_name
    *[
        Bad(f"common-name-{index}", "common_name", value)
        for index, value in enumerate(
            [
                "   ",
                5,
                5.5,
                True,
                ["app.internal.example.com"],
                {"name": "x"},
                "bad_name.example.com",
                "café.example.com",
                "*.com",
                "a..b.example.com",
                "-leading.example.com",
                f"{'a' * 40}.{'b' * 20}.example.com",  # longer than X.509's 64 characters
                "app.internal\n.example.com",
            ]
        )
    ],
    # subject_alternative_names
    *[
        Bad(f"sans-{index}", "subject_alternative_names", value)
        for index, value in enumerate(
            [
                "api.internal.example.com",
                {"name": "api.internal.example.com"},
                5,
                [5],
                [True],
                [None],
                ["api.internal.example.com", None],
                [""],
                ["   "],
                [["nested.example.com"]],
                ["10.0.0.256"],
                ["fd00::17::1"],
                ["10.0.0.1/24"],
                ["a b.example.com"],
                [f"{'x' * 64}.example.com"],
                ["*.*.example.com"],
                ["ünicode.example.com"],
            ]
        )
    ],
    Bad("sans-too-many-for-a-csr", "subject_alternative_names", MANY_NAMES, says="32768"),
    # numbers
    *[
        Bad(f"validity-{index}", "validity_days", value)
        for index, value in enumerate([0, -5, 1.5, "30", True, [30], 36501, 1e300, float("inf"), float("nan")])
    ],
    *[
        Bad(f"renew-before-{index}", "renew_before_days", value)
        for index, value in enumerate([-1, 90, 120, 1.5, "10", True, [10], float("nan")])
    ],
    *[
        Bad(f"throttle-{index}", "throttle_retry_minutes", value)
        for index, value in enumerate([0, -1, 121, "5", True, [5], float("inf"), float("nan")])
    ],
    # key algorithm, template, revoke_on_delete
    *[
        Bad(f"key-algorithm-{index}", "key_algorithm", value)
        for index, value in enumerate(["ED25519", "RSA_1024", "rsa_2048", "EC_secp521r1", 5, ["RSA_2048"]])
    ],
    *[
        Bad(f"template-{index}", "template_arn", value)
        for index, value in enumerate(
            [
                "EndEntity",
                5,
                ["EndEntityCertificate/V1"],
                "RootCACertificate/V1",
                "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen0/V1",
                "arn:aws:acm:::template/EndEntityCertificate/V1",
                "arn:aws:acm-pca:::template/" + "A" * 200 + "/V1",
            ]
        )
    ],
    *[Bad(f"revoke-{index}", "revoke_on_delete", value) for index, value in enumerate(["yes", "false", 1, 0, [True]])],
    # csr_pem
    Bad("csr-garbage", "csr_pem", "-----BEGIN CERTIFICATE REQUEST-----\nbm90\n-----END CERTIFICATE REQUEST-----"),
    Bad("csr-number", "csr_pem", 5),
    Bad("csr-list", "csr_pem", ["x"]),
    Bad("csr-bad-signature", "csr_pem", _tampered_csr(), says="signature"),
    Bad("csr-ed25519", "csr_pem", _csr(["app.internal.example.com"], key=ed25519.Ed25519PrivateKey.generate())),
    Bad("csr-other-names", "csr_pem", _csr(["other.example.com"], common_name="other.example.com")),
    Bad("csr-too-large", "csr_pem", _csr(MANY_NAMES), says="32768"),
    # identity: names and ARNs AWS accepts are ASCII
    *[
        Bad(f"profile-{index}", "profile", value)
        for index, value in enumerate(["two words", "tab\there", 5, ["default"]])
    ],
    *[
        Bad(f"role-{index}", "assume_role_arn", value)
        for index, value in enumerate(
            [
                "arn:aws:iam::123:role/x",
                "arn:aws:iam::123456789012:user/deploy",
                "arn:aws:iam::123456789012:role/rôle",
                "arn:aws:iam::123456789012:role/роль",
                "arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:role/deploy",
                5,
            ]
        )
    ],
    *[
        Bad(f"session-{index}", "assume_role_session_name", value, extra=ROLE_EXTRA)
        for index, value in enumerate(["a b", "déploiement", "部署会话", "x", "s" * 65, 5])
    ],
    *[
        Bad(f"external-id-{index}", "assume_role_external_id", value, extra=ROLE_EXTRA)
        for index, value in enumerate(["a b", "clé-externe", "x", "e" * 1225, 5])
    ],
    Bad("session-without-role", "assume_role_session_name", "deploy", says="assume_role_arn is not"),
    Bad("external-id-without-role", "assume_role_external_id", "pki-shared-ca", says="assume_role_arn is not"),
    # inputs that do not exist: the closest one is named
    Bad("unknown-validity", "validity", 30, says="did you mean validity_days?"),
    Bad("unknown-common-names", "common_names", ["a.example.com"], says="did you mean common_name?"),
    Bad("unknown-renew-before", "renew_before", 10, says="did you mean renew_before_days?"),
    Bad("unknown-endpoint", "endpoint", "http://127.0.0.1:5000", says="did you mean endpoint_url?"),
    Bad("unknown-camel-case", "caArn", "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/x", says="ca_arn"),
    Bad("unknown-revoke", "revoke_on_destroy", False, says="did you mean revoke_on_delete?"),
    Bad("unknown-anything", "colour", "blue", says="the inputs are ca_arn"),
]


def test_the_sweep_is_large_and_covers_every_input() -> None:
    assert len(BAD_INPUTS) >= 90
    assert len({case.id for case in BAD_INPUTS}) == len(BAD_INPUTS)
    blamed = {case.blamed or case.key for case in BAD_INPUTS}
    assert set(certificate.INPUTS) <= blamed | {"ca_arn"}, set(certificate.INPUTS) - blamed


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda case: case.id)
def test_a_bad_input_is_refused_by_name(
    provider_host: ProviderHost, ca_arn: str, pca_proxy: RecordingProxy, case: Bad
) -> None:
    props = {**good(ca_arn, pca_proxy), **dict(case.extra), case.key: case.value}
    answer = provider_host.check(URN, to_struct({}), registered(props).properties)  # a DoorError here fails the test
    blamed = case.blamed or case.key
    assert [prop for prop, _ in answer.failures] == [blamed], answer.failures
    [(_, reason)] = answer.failures
    assert (case.says or blamed) in reason, reason
    assert "Traceback" not in reason


def test_an_output_passed_as_an_input_is_refused(pca_proxy: RecordingProxy, ca_arn: str) -> None:
    """`Certificate` never sends its outputs as inputs (it registers them as null); a direct caller might."""
    result = CertificateProvider().check({}, {**good(ca_arn, pca_proxy), "private_key_pem": "-----BEGIN"})
    [failure] = result.failures
    assert failure.property == "private_key_pem"
    assert failure.reason.startswith("private_key_pem is an output of the certificate, set by the provider")


def test_empty_strings_mean_the_default(provider_host: ProviderHost, ca_arn: str, pca_proxy: RecordingProxy) -> None:
    """Not a silent acceptance: an empty string is how a program leaves a string input unset."""
    props = {**good(ca_arn, pca_proxy), "key_algorithm": "", "template_arn": "", "profile": "", "region": ""}
    answer = provider_host.check(URN, to_struct({}), registered(props).properties)
    assert answer.failures == []
    checked = to_dict(answer.inputs)
    assert checked["key_algorithm"] == "EC_prime256v1"
    assert checked["template_arn"] == "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1"
    assert checked["region"] == "us-east-1"
    assert "profile" not in checked


def test_an_unreachable_endpoint_fails_create_naming_it(engine: Engine, ca_arn: str, pca_proxy: RecordingProxy) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    inputs = registered({**good(ca_arn, pca_proxy), "endpoint_url": closed}).properties
    plan = engine.preview(inputs)  # the CA cannot be read now: check skips those checks, create makes them
    assert plan.operation == "create"
    with pytest.raises(DoorError) as failed:
        engine.up(inputs)
    assert_explained(failed.value, closed, "create: could not call ACM PCA")


def test_an_unknown_profile_fails_create_naming_it(engine: Engine, ca_arn: str, pca_proxy: RecordingProxy) -> None:
    inputs = registered({**good(ca_arn, pca_proxy), "profile": "no-such-profile"}).properties
    with pytest.raises(DoorError) as failed:
        engine.up(inputs)
    assert_explained(failed.value, "no-such-profile")


# ---------------------------------------------------------------------------------------------------------
# damaged state: the safe behaviour, or a CertificateError that says what to do
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def deployed(engine: Engine, ca_arn: str, pca_proxy: RecordingProxy) -> Stored:
    _, state = engine.up(registered(good(ca_arn, pca_proxy)).properties)
    pca_proxy.reset()
    return state


def damaged(state: Stored, *, drop: tuple[str, ...] = (), **values: Any) -> Stored:
    outputs = replaced(without(state.outputs, *drop), **values)
    return Stored(state.id, state.inputs, outputs)


@pytest.mark.parametrize(
    ("drop", "values"),
    [
        ((), {"not_after": "next week"}),
        ((), {"not_after": "2030-01-01T00:00:00"}),  # no time zone: not what the provider writes
        ((), {"not_after": 5}),
        ((), {"not_after": None}),
        (("not_after",), {}),
    ],
    ids=["words", "naive", "number", "null", "missing"],
)
def test_diff_reads_the_expiry_from_the_stored_certificate_when_not_after_is_damaged(
    engine: Engine, ca_arn: str, pca_proxy: RecordingProxy, deployed: Stored, drop: tuple[str, ...], values: Any
) -> None:
    plan = engine.preview(registered(good(ca_arn, pca_proxy)).properties, damaged(deployed, drop=drop, **values))
    assert plan.operation == "same"


def test_diff_without_any_readable_expiry_says_to_refresh(
    engine: Engine, ca_arn: str, pca_proxy: RecordingProxy, deployed: Stored
) -> None:
    broken = damaged(deployed, not_after="next week", certificate_pem="not a certificate")
    with pytest.raises(DoorError) as failed:
        engine.preview(registered(good(ca_arn, pca_proxy)).properties, broken)
    assert_explained(failed.value, "no readable expiry", "pulumi refresh")
    refreshed = engine.refresh(broken)  # ...which repairs it from AWS
    assert refreshed is not None
    assert engine.preview(registered(good(ca_arn, pca_proxy)).properties, refreshed).operation == "same"


@pytest.mark.parametrize("id_", ["", "not-an-arn", "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/ab"])
def test_read_of_an_id_that_is_not_a_certificate_arn_says_so(engine: Engine, deployed: Stored, id_: str) -> None:
    with pytest.raises(DoorError) as failed:
        engine.refresh(Stored(id_, deployed.inputs, deployed.outputs))
    assert_explained(failed.value, "is not an ACM PCA certificate ARN", "pulumi state delete")


@pytest.mark.parametrize(
    ("drop", "values"),
    [(("ca_arn",), {}), ((), {"ca_arn": None}), ((), {"ca_arn": 5}), ((), {"ca_arn": "not-an-arn"})],
    ids=["missing", "null", "number", "garbage"],
)
def test_read_takes_the_ca_from_the_certificate_arn(
    engine: Engine, pca_proxy: RecordingProxy, deployed: Stored, drop: tuple[str, ...], values: Any
) -> None:
    refreshed = engine.refresh(damaged(deployed, drop=drop, **values))
    assert refreshed is not None
    assert refreshed.out["ca_arn"] == deployed.out["ca_arn"]  # repaired
    assert refreshed.out["serial"] == deployed.out["serial"]
    assert pca_proxy.bodies(GET)[0]["CertificateAuthorityArn"] == deployed.out["ca_arn"]


DAMAGED_FOR_DELETE = [
    (("serial",), {}),
    ((), {"serial": None}),
    ((), {"serial": "not a serial"}),
    ((), {"serial": 5}),
    (("serial", "certificate_pem"), {}),
    (("ca_arn",), {}),
    ((), {"ca_arn": None}),
    (("ca_arn", "serial", "certificate_pem", "not_after"), {}),
    ((), {"not_after": "garbage"}),
    ((), {"revoke_on_delete": "false"}),  # not a boolean: the safe default, revoke
    ((), {"revoke_on_delete": None}),
]


@pytest.mark.parametrize(
    ("drop", "values"),
    DAMAGED_FOR_DELETE,
    ids=[
        "no-serial",
        "null-serial",
        "garbage-serial",
        "number-serial",
        "no-serial-no-pem",
        "no-ca",
        "null-ca",
        "almost-nothing",
        "garbage-not-after",
        "revoke-on-delete-string",
        "revoke-on-delete-null",
    ],
)
def test_delete_of_damaged_state_still_revokes_the_right_certificate(
    engine: Engine, pca_proxy: RecordingProxy, deployed: Stored, drop: tuple[str, ...], values: Any
) -> None:
    engine.destroy(damaged(deployed, drop=drop, **values))
    [revoke] = pca_proxy.bodies(REVOKE)
    assert revoke["CertificateSerial"] == deployed.out["serial"]
    assert revoke["CertificateAuthorityArn"] == deployed.out["ca_arn"]


def test_delete_of_a_certificate_aws_does_not_know_is_quiet(
    engine: Engine, pca_proxy: RecordingProxy, deployed: Stored
) -> None:
    pca_proxy.inject(GET, error_type="ResourceNotFoundException")
    engine.destroy(damaged(deployed, drop=("serial", "certificate_pem")))
    assert pca_proxy.calls(REVOKE) == []


def test_delete_that_cannot_learn_the_serial_says_how_to_revoke(
    engine: Engine, pca_proxy: RecordingProxy, deployed: Stored
) -> None:
    pca_proxy.inject(GET, error_type="AccessDeniedException")
    with pytest.raises(DoorError) as failed:
        engine.destroy(damaged(deployed, drop=("serial", "certificate_pem")))
    assert_explained(failed.value, "no readable serial", "aws acm-pca revoke-certificate", deployed.id)


@pytest.mark.parametrize("id_", ["", "not-an-arn"])
def test_delete_of_an_id_that_is_not_a_certificate_arn_says_so(engine: Engine, deployed: Stored, id_: str) -> None:
    with pytest.raises(DoorError) as failed:
        engine.destroy(Stored(id_, deployed.inputs, deployed.outputs))
    assert_explained(failed.value, "is not an ACM PCA certificate ARN")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ca_arn", "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/0000aaaa-0000-0000-0000-000000000000"),
        ("common_name", "other.internal.example.com"),
        ("subject_alternative_names", ["other.internal.example.com"]),
        ("csr_pem", _csr(["app.internal.example.com"])),
        ("validity_days", 30),
    ],
)
def test_update_refuses_what_diff_replaces(provider_host: ProviderHost, deployed: Stored, key: str, value: Any) -> None:
    """The engine only updates what diff updates in place; a direct Update must not rewrite the certificate's
    identity (a CA that did not issue it, names it does not carry) into the state."""
    news = replaced(deployed.inputs, **{key: value})
    with pytest.raises(DoorError) as failed:
        provider_host.update(URN, deployed.id, deployed.outputs, news, deployed.inputs)
    assert_explained(failed.value, f"cannot change {key}", "replacement", "Nothing was changed")


@pytest.mark.parametrize(
    ("key", "value"),
    [("throttle_retry_minutes", 0), ("endpoint_url", "ftp://x"), ("assume_role_arn", "arn:aws:iam::1:role/x")],
)
def test_update_checks_the_settings_it_takes(
    provider_host: ProviderHost, deployed: Stored, key: str, value: Any
) -> None:
    news = replaced(deployed.inputs, **{key: value})
    with pytest.raises(DoorError) as failed:
        provider_host.update(URN, deployed.id, deployed.outputs, news, deployed.inputs)
    assert_explained(failed.value, "update refused its inputs", key)
