"""A CA known at preview, checked before anything is created: `caStack`'s outputs and `caParentArn`'s CA.

Settings cannot see these CAs; `components.ca_source` reads them when the program starts (a StackReference's
outputs are known at preview, a CA by ARN is a read) and refuses, naming the setting, a CA in another partition or
region, a short-lived CA behind a 30-day certificate or an ACM listener certificate, a certificate or subordinate
that would outlive its CA, and a chain too large for the hosts' parameters. As in the settings sweep, the real
`__main__.py` runs under mocks, the error is a `pulumi.RunError`, and nothing is created: the only registration
is the StackReference read itself.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from components.settings_error import StackSettingsError
from tests.stack_harness import ACCOUNT, PKI_CA_ARN, PKI_ROOT_PEM, StackRun, _Mocks
from tests.test_settings_sweep import run_program_keeping_resources

NOW = dt.datetime.now(dt.UTC)
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=4096)
_EC = ec.generate_private_key(ec.SECP256R1())


def ca_pem(
    common_name: str = "Example Root",
    *,
    started: dt.timedelta = dt.timedelta(hours=1),
    ends: dt.timedelta = dt.timedelta(days=3650),
    big: bool = False,
) -> str:
    """A self-signed CA certificate that began `started` ago and ends in `ends`; `big`: RSA-4096 with a long
    subject (about 2 KB of PEM)."""
    key = _RSA if big else _EC
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if big:
        attributes += [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "O" * 64),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "U" * 64),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "L" * 128),
        ]
    name = x509.Name(attributes)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - started)
        .not_valid_after(NOW + ends)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def other_region_arn(region: str = "eu-west-1", partition: str = "aws") -> str:
    return f"arn:{partition}:acm-pca:{region}:{ACCOUNT}:certificate-authority/11111111-2222-3333-4444-555555555555"


def mocks_with(stack_outputs: dict[str, Any] | None = None, parent: dict[str, Any] | None = None) -> Any:
    """`_Mocks` whose referenced stack exports `stack_outputs` on top of the pki stack's (None values removed),
    and whose getCertificateAuthority answers `parent` on top of the default."""

    class Mocks(_Mocks):
        def answer_resource(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
            resource_id, outputs = super().answer_resource(typ, name, inputs)
            if typ == "pulumi:pulumi:StackReference" and stack_outputs is not None:
                merged = {**outputs["outputs"], **stack_outputs}
                outputs["outputs"] = {key: value for key, value in merged.items() if value is not None}
            return resource_id, outputs

        def answer_invoke(self, token: str, args: dict[str, Any]) -> Any:
            answer = super().answer_invoke(token, args)
            if token == "aws:acmpca/getCertificateAuthority:getCertificateAuthority" and parent is not None:
                answer = {**answer, **parent}
            return answer

    def make(run: StackRun) -> _Mocks:
        return Mocks(run)

    return make


@dataclass(frozen=True)
class KnownCaCase:
    id: str
    stack: str
    overrides: dict[str, Any]
    mocks: Any
    setting: str
    says: str


def case(case_id: str, stack: str, setting: str, says: str, *, mocks: Any, **overrides: Any) -> KnownCaCase:
    return KnownCaCase(case_id, stack, {f"pca-backend:{k}": v for k, v in overrides.items()}, mocks, setting, says)


#: Four 2-KB CA certificates: a chain no parameter holds.
BIG_CHAIN = "".join(ca_pem(f"Chain {index}", big=True) for index in range(4))
#: Three: the chain fits the ca-bundle parameter, the backend certificate with it does not.
NEARLY_FULL_CHAIN = "".join(ca_pem(f"Chain {index}", big=True) for index in range(3))
#: Two, under this stack's own subordinate certificate.
TWO_BIG_CERTIFICATES = "".join(ca_pem(f"Chain {index}", big=True) for index in range(2))

#: The dev stack in the per-host mode (it has no SSM writers then).
PER_HOST_DEV: dict[str, Any] = {"hostCertificates": "per-host", "parameterWriterArns": []}

CASES = [
    # --- partition and region of the CA read through caStack ---------------------------------------------------
    case(
        "stack-ca-other-region",
        "dev",
        "caStack",
        "is in eu-west-1, not in us-east-1",
        mocks=mocks_with({"caArn": other_region_arn()}),
    ),
    case(
        "stack-ca-other-partition",
        "dev",
        "caStack",
        "partition aws-cn, not aws",
        mocks=mocks_with({"caArn": other_region_arn("cn-north-1", "aws-cn")}),
    ),
    case(
        "parent-stack-ca-other-region",
        "prod",
        "caStack",
        "is in us-west-2, not in us-east-1",
        mocks=mocks_with({"caArn": other_region_arn("us-west-2")}),
    ),
    case("stack-ca-missing", "dev", "caStack", "exports no caArn", mocks=mocks_with({"caArn": None})),
    # --- what a short-lived CA cannot issue ---------------------------------------------------------------------
    case(
        "stack-ca-short-lived-30-days",
        "dev",
        "certValidityDays",
        "at most 7 days",
        mocks=mocks_with({"caUsageMode": "SHORT_LIVED_CERTIFICATE"}),
    ),
    case(
        "stack-ca-short-lived-acm",
        "dev",
        "albDomainName",
        "ACM cannot issue",
        mocks=mocks_with({"caUsageMode": "SHORT_LIVED_CERTIFICATE"}),
        certValidityDays=7,
    ),
    case(
        "parent-short-lived",
        "prod",
        "caStack",
        "never a CA certificate",
        mocks=mocks_with({"caUsageMode": "SHORT_LIVED_CERTIFICATE"}),
    ),
    # --- nothing outlives its CA ---------------------------------------------------------------------------------
    case(
        "stack-ca-ends-before-certificate",
        "dev",
        "certValidityDays",
        "after the issuing CA expires",
        mocks=mocks_with({"caTrustBundlePem": ca_pem(ends=dt.timedelta(days=20))}),
    ),
    case(
        "subordinate-outlives-parent",
        "prod",
        "caValidityYears",
        "cannot outlive its parent",
        mocks=mocks_with(),
        caValidityYears=10,
    ),
    case(
        "subordinate-already-ended",
        "prod",
        "caValidityYears",
        "has already passed",
        mocks=mocks_with(
            {"caTrustBundlePem": ca_pem(started=dt.timedelta(days=3 * 366), ends=dt.timedelta(days=3000))}
        ),
        caValidityYears=2,
    ),
    case(
        "certificate-outlives-late-subordinate",
        "prod",
        "certValidityDays",
        "after the issuing CA expires",
        mocks=mocks_with(
            {"caTrustBundlePem": ca_pem(started=dt.timedelta(days=4 * 365), ends=dt.timedelta(days=2000))}
        ),
        certValidityDays=400,
    ),
    case(
        "subordinate-of-arn-outlives-parent",
        "prod",
        "caValidityYears",
        "cannot outlive its parent",
        mocks=mocks_with(parent={"certificate": ca_pem(ends=dt.timedelta(days=3 * 365))}),
        caStack="",
        caParentArn=PKI_CA_ARN,
    ),
    # --- chains the hosts' parameters cannot hold ----------------------------------------------------------------
    case(
        "stack-ca-chain-too-big",
        "dev",
        "caStack",
        "ca-bundle parameter holds at most 8,192",
        mocks=mocks_with({"caTrustBundlePem": BIG_CHAIN}),
    ),
    case(
        "stack-ca-full-chain-too-big",
        "dev",
        "certNames",
        "full-chain parameter holds at most 8,192",
        mocks=mocks_with({"caTrustBundlePem": NEARLY_FULL_CHAIN}),
        certNames=[f"backend-{index}.dev.internal.example.com" for index in range(12)],
    ),
    case(
        "parent-chain-too-big-for-subordinate",
        "prod",
        "certNames",
        "full-chain parameter holds at most 8,192",
        mocks=mocks_with({"caTrustBundlePem": TWO_BIG_CERTIFICATES}),
        certNames=[f"backend-{index}.prod.internal.example.com" for index in range(20)],
    ),
    # --- the per-host mode: each host's certificate against the CA it reads ---------------------------------------
    case(
        "per-host-stack-ca-short-lived-14-days",
        "dev",
        "certValidityDays",
        "at most 7 days",
        mocks=mocks_with({"caUsageMode": "SHORT_LIVED_CERTIFICATE"}),
        **PER_HOST_DEV,
        certValidityDays=14,
    ),
    case(
        "per-host-stack-ca-ends-first",
        "dev",
        "certValidityDays",
        "after the issuing CA expires",
        mocks=mocks_with({"caTrustBundlePem": ca_pem(ends=dt.timedelta(days=5))}),
        **PER_HOST_DEV,
    ),
]


@pytest.mark.parametrize("known", CASES, ids=[known.id for known in CASES])
def test_a_ca_known_at_preview_is_checked_before_anything_is_created(known: KnownCaCase) -> None:
    run, error = run_program_keeping_resources(known.stack, known.overrides, known.mocks)
    created = [resource.urn for resource in run.resources if resource.type_ != "pulumi:pulumi:StackReference"]
    assert created == [], f"{known.id}: registered {created} before refusing"
    assert isinstance(error, StackSettingsError), f"{known.id}: expected StackSettingsError, got {error!r}"
    assert isinstance(error, pulumi.RunError)
    mine = [problem for problem in error.problems if problem.startswith(f"{known.setting}: ")]
    assert any(known.says in problem for problem in mine), f"{known.id}: {error.problems}"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_shipped_stacks_pass_with_the_pki_stack_they_read(stack: str) -> None:
    """The control: the same CA checks let the shipped stacks through with the pki stack's outputs."""
    run, error = run_program_keeping_resources(stack, {}, mocks_with())
    assert error is None, f"{stack}: {error!r}"
    assert len(run.resources) > 5


def test_the_pki_mock_is_what_the_checks_read() -> None:
    """The cases above change one output each on top of these: a ten-year root in us-east-1."""
    assert PKI_CA_ARN.startswith("arn:aws:acm-pca:us-east-1:")
    assert "BEGIN CERTIFICATE" in PKI_ROOT_PEM


def test_a_per_host_stack_keeps_no_chain_in_a_parameter_so_a_big_chain_passes() -> None:
    """The shared mode refuses a chain its parameters cannot hold (stack-ca-chain-too-big above); the per-host mode
    stores none: the hosts get their chain from the issuer and pin the CAs in the launch template."""
    overrides = {f"pca-backend:{key}": value for key, value in PER_HOST_DEV.items()}
    run, error = run_program_keeping_resources("dev", overrides, mocks_with({"caTrustBundlePem": BIG_CHAIN}))
    assert error is None, repr(error)
    assert run.of_type("pca-backend:index:PerHostIssuer"), "the per-host stack deploys"
