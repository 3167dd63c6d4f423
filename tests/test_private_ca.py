"""The PrivateCa component under its own Pulumi mocks: what it registers for a root, a subordinate, a CRL and
ACM's permission, and what it refuses before registering anything."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import CertificateBuilder, Name, NameAttribute, random_serial_number
from cryptography.x509.oid import NameOID

from components import x509
from components.local.tls import self_signed_ca_pem
from components.private_ca import PrivateCa, PrivateCaArgs, subordinate_end_date
from tests.stack_harness import RecordingMocks, StackRun, run_under_mocks

ACCOUNT = "123456789012"
PARENT_ARN = f"arn:aws:acm-pca:us-east-1:{ACCOUNT}:certificate-authority/11111111-2222-3333-4444-555555555555"
#: The ARN the mocks give the CA the component creates (its resource is named `ca-authority`).
CA_ARN = f"arn:aws:acm-pca:us-east-1:{ACCOUNT}:certificate-authority/ca-authority"
CA_TYPE = "aws:acmpca/certificateAuthority:CertificateAuthority"
CERTIFICATE_TYPE = "aws:acmpca/certificate:Certificate"
ACTIVATION_TYPE = "aws:acmpca/certificateAuthorityCertificate:CertificateAuthorityCertificate"
PERMISSION_TYPE = "aws:acmpca/permission:Permission"
BUCKET_TYPE = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS_BLOCK_TYPE = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
OWNERSHIP_TYPE = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
POLICY_TYPE = "aws:s3/bucketPolicy:BucketPolicy"
COMPONENT_TYPE = "pca-backend:index:PrivateCa"
GET_CA = "aws:acmpca/getCertificateAuthority:getCertificateAuthority"
CSR_PEM = "-----BEGIN CERTIFICATE REQUEST-----\nCSR\n-----END CERTIFICATE REQUEST-----\n"
#: When the certificate the mocked CA certificate resource returns ends.
SIGNED_NOT_AFTER = datetime(2034, 1, 1, tzinfo=UTC)
#: What the mocked CA certificate resource returns as the signed certificate.
SIGNED_PEM = self_signed_ca_pem(ec.generate_private_key(ec.SECP256R1()), "Signed CA", SIGNED_NOT_AFTER)
#: What AWS reports as a CA's notAfter when the CA was read before its certificate was imported.
ZERO_TIME = "0001-01-01T00:00:00Z"
LISTENER_CERTIFICATE_TYPE = "aws:acm/certificate:Certificate"


@dataclass
class Parent:
    """The parent CA the invoke `getCertificateAuthority` describes."""

    certificate_pem: str
    not_after: datetime

    @classmethod
    def of(cls, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, years: float = 10) -> Parent:
        not_after = (datetime.now(UTC) + timedelta(days=365 * years)).replace(microsecond=0)
        return cls(self_signed_ca_pem(key, "Parent CA", not_after), not_after)


@pytest.fixture(scope="module")
def rsa_parent() -> Parent:
    return Parent.of(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_parent() -> Parent:
    return Parent.of(ec.generate_private_key(ec.SECP256R1()))


@dataclass
class Run(StackRun):
    parent: Parent | None = None


class _Mocks(RecordingMocks):
    run: Run

    def answer_resource(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        outputs: dict[str, Any] = {**inputs}
        resource_id = f"{name}_id"
        if typ == CA_TYPE:
            resource_id = f"arn:aws:acm-pca:us-east-1:{ACCOUNT}:certificate-authority/{name}"
            outputs.update(
                arn=resource_id,
                certificateSigningRequest=CSR_PEM,
                notAfter=ZERO_TIME,
            )
        elif typ == CERTIFICATE_TYPE:
            subordinate = "Subordinate" in str(inputs.get("templateArn"))
            chain = self.run.parent.certificate_pem if subordinate and self.run.parent else ""
            outputs.update(arn=f"{inputs['certificateAuthorityArn']}/certificate/1", certificate=SIGNED_PEM)
            outputs["certificateChain"] = chain
        elif typ == BUCKET_TYPE:
            outputs.update(bucket=f"{name}-bucket", arn=f"arn:aws:s3:::{name}-bucket")
            resource_id = f"{name}-bucket"
        return resource_id, outputs

    def answer_invoke(self, token: str, args: dict[str, Any]) -> Any:
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/test", "userId": "test", "id": ACCOUNT}
        if token == "aws:index/getRegion:getRegion":
            return {"name": "eu-west-1", "region": "eu-west-1", "id": "eu-west-1"}
        if token == GET_CA:
            assert self.run.parent is not None, "a root CA must not look up a parent"
            return {
                "arn": args.get("arn"),
                "certificate": self.run.parent.certificate_pem,
                "certificateChain": "",
                "notAfter": x509.iso_utc(self.run.parent.not_after),
                "status": "ACTIVE",
                "type": "ROOT",
                "usageMode": "GENERAL_PURPOSE",
                "id": args.get("arn"),
            }
        raise AssertionError(f"unexpected invoke {token}")


OUTPUTS = ("arn", "certificate_pem", "trust_bundle_pem", "usage_mode", "not_after", "crl_bucket_name")


@pytest.fixture
def run_ca() -> Callable[..., Run]:
    """`run_ca(args, parent=None, opts=None)` builds a PrivateCa under fresh mocks and resolves its outputs; an
    ACM private certificate (`listener`) is requested from its `acm_issuer_arn`, as the backend does."""

    def run(args: PrivateCaArgs, parent: Parent | None = None, opts: pulumi.ResourceOptions | None = None) -> Run:
        recorded = Run(stack="test", config={}, parent=parent)

        async def program() -> None:
            ca = PrivateCa("ca", args, opts)
            listener = aws.acm.Certificate(
                "listener", domain_name="backend.example.com", certificate_authority_arn=ca.acm_issuer_arn
            )
            for name in OUTPUTS:
                recorded.outputs[name] = await getattr(ca, name).future()
            recorded.outputs["acm_issuer_arn"] = await ca.acm_issuer_arn.future()
            await listener.urn.future()

        run_under_mocks(program, _Mocks(recorded))
        return recorded

    return run


def ca_args(**changes: Any) -> PrivateCaArgs:
    args: dict[str, Any] = {
        "ca_type": "ROOT",
        "subject": {"common_name": "Test Root CA", "organization": "Example Corp", "country": "DE"},
        "key_algorithm": "RSA_2048",
        "validity_years": 10,
        "usage_mode": "GENERAL_PURPOSE",
        "permanent_deletion_days": 30,
        "key_storage_security_standard": "FIPS_140_2_LEVEL_3_OR_HIGHER",
        "tags": {"Project": "pca-backend"},
    }
    args.update(changes)
    return args  # type: ignore[return-value]


def subordinate_args(**changes: Any) -> PrivateCaArgs:
    subordinate: dict[str, Any] = {
        "ca_type": "SUBORDINATE",
        "subject": {"common_name": "Test Issuing CA"},
        "parent_ca_arn": PARENT_ARN,
        "validity_years": 5,
    }
    return ca_args(**(subordinate | changes))


# --- ROOT --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_algorithm", "signing_algorithm"),
    [
        ("EC_prime256v1", "SHA256WITHECDSA"),
        ("EC_secp384r1", "SHA384WITHECDSA"),
        ("RSA_2048", "SHA256WITHRSA"),
        ("RSA_3072", "SHA256WITHRSA"),
        ("RSA_4096", "SHA256WITHRSA"),
    ],
)
def test_root_ca_configuration(run_ca: Callable[..., Run], key_algorithm: str, signing_algorithm: str) -> None:
    run = run_ca(ca_args(key_algorithm=key_algorithm))
    authority = run.one(CA_TYPE)
    assert authority.inputs["type"] == "ROOT", authority.urn
    configuration = authority.inputs["certificateAuthorityConfiguration"]
    assert configuration["keyAlgorithm"] == key_algorithm, authority.urn
    assert configuration["signingAlgorithm"] == signing_algorithm, authority.urn
    assert configuration["subject"] == {
        "commonName": "Test Root CA",
        "organization": "Example Corp",
        "country": "DE",
    }, authority.urn
    assert authority.inputs["usageMode"] == "GENERAL_PURPOSE", authority.urn
    assert authority.inputs["permanentDeletionTimeInDays"] == 30, authority.urn
    assert authority.inputs["keyStorageSecurityStandard"] == "FIPS_140_2_LEVEL_3_OR_HIGHER", authority.urn
    assert authority.inputs["tags"] == {"Project": "pca-backend", "Name": "Test Root CA"}, authority.urn
    assert "revocationConfiguration" not in authority.inputs, f"{authority.urn}: no CRL asked for"
    signed = run.one(CERTIFICATE_TYPE)
    assert signed.inputs["signingAlgorithm"] == signing_algorithm, f"{signed.urn}: a root signs with its own key"


def test_root_self_signs_with_the_root_template_for_years(run_ca: Callable[..., Run]) -> None:
    run = run_ca(ca_args(validity_years=12))
    authority = run.one(CA_TYPE)
    signed = run.one(CERTIFICATE_TYPE)
    assert signed.inputs["certificateAuthorityArn"] == CA_ARN
    assert signed.inputs["templateArn"] == "arn:aws:acm-pca:::template/RootCACertificate/V1", signed.urn
    assert signed.inputs["validity"] == {"type": "YEARS", "value": "12"}, signed.urn
    assert signed.inputs["certificateSigningRequest"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert signed.parent == authority.urn, signed.urn
    assert not any(token == GET_CA for token, _ in run.invokes), "a root looks up no parent"


def test_root_template_follows_the_partition(run_ca: Callable[..., Run], monkeypatch: pytest.MonkeyPatch) -> None:
    original = _Mocks.answer_invoke

    def gov_partition(self: _Mocks, token: str, args: dict[str, Any]) -> Any:
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws-us-gov", "dnsSuffix": "amazonaws.com", "id": "aws-us-gov"}
        return original(self, token, args)

    monkeypatch.setattr(_Mocks, "answer_invoke", gov_partition)
    signed = run_ca(ca_args()).one(CERTIFICATE_TYPE)
    assert signed.inputs["templateArn"] == "arn:aws-us-gov:acm-pca:::template/RootCACertificate/V1", signed.urn


def test_root_activation_imports_no_chain(run_ca: Callable[..., Run]) -> None:
    run = run_ca(ca_args())
    activation = run.one(ACTIVATION_TYPE)
    assert activation.inputs["certificate"] == SIGNED_PEM, activation.urn
    assert "certificateChain" not in activation.inputs, f"{activation.urn}: a root imports only its certificate"
    assert activation.inputs["certificateAuthorityArn"] == CA_ARN, activation.urn
    assert run.outputs["arn"] == CA_ARN
    assert run.outputs["certificate_pem"] == SIGNED_PEM
    assert run.outputs["trust_bundle_pem"] == SIGNED_PEM, "a root's trust bundle is its certificate"
    assert run.outputs["usage_mode"] == "GENERAL_PURPOSE"


@pytest.mark.parametrize("ca_type", ["ROOT", "SUBORDINATE"])
def test_not_after_is_read_from_the_activated_certificate(
    run_ca: Callable[..., Run], ec_parent: Parent, ca_type: str
) -> None:
    args = ca_args() if ca_type == "ROOT" else subordinate_args()
    run = run_ca(args, ec_parent if ca_type == "SUBORDINATE" else None)
    assert run.one(CA_TYPE)  # the mocked CA resource reports ZERO_TIME, as AWS does before a refresh
    assert run.outputs["not_after"] == x509.iso_utc(SIGNED_NOT_AFTER) == "2034-01-01T00:00:00Z", (
        f"not_after must come from the certificate that activated the CA, not the CA resource ({ZERO_TIME})"
    )


@pytest.mark.parametrize("protect", [True, False])
def test_protect_reaches_the_ca_and_its_bucket_but_not_the_acm_permission(
    run_ca: Callable[..., Run], protect: bool
) -> None:
    args = ca_args(crl={"expiration_days": 7}, acm_permission=True)
    run = run_ca(args, opts=pulumi.ResourceOptions(protect=protect))
    for type_ in (CA_TYPE, CERTIFICATE_TYPE, ACTIVATION_TYPE, BUCKET_TYPE, POLICY_TYPE, PUBLIC_ACCESS_BLOCK_TYPE):
        assert run.one(type_).protect is protect, run.one(type_).urn
    permission = run.one(PERMISSION_TYPE)
    assert permission.protect is False, f"{permission.urn}: turning caAcmPermission off must stay an update"


def test_unprotected_unless_asked(run_ca: Callable[..., Run]) -> None:
    assert run_ca(ca_args()).one(CA_TYPE).protect is False


def test_resources_are_children_of_the_component(run_ca: Callable[..., Run]) -> None:
    run = run_ca(ca_args(crl={"expiration_days": 7}, acm_permission=True))
    component = run.one(COMPONENT_TYPE)
    authority = run.one(CA_TYPE)
    assert authority.parent == component.urn
    for child in (run.one(CERTIFICATE_TYPE), run.one(ACTIVATION_TYPE), run.one(PERMISSION_TYPE)):
        assert child.parent == authority.urn, child.urn
    bucket = run.one(BUCKET_TYPE)
    assert bucket.parent == component.urn
    for child in (run.one(PUBLIC_ACCESS_BLOCK_TYPE), run.one(OWNERSHIP_TYPE), run.one(POLICY_TYPE)):
        assert child.parent == bucket.urn, child.urn


# --- SUBORDINATE -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parent_fixture", "signing_algorithm"), [("ec_parent", "SHA256WITHECDSA"), ("rsa_parent", "SHA256WITHRSA")]
)
@pytest.mark.parametrize("own_key", ["RSA_2048", "EC_secp384r1"])
def test_subordinate_is_signed_by_its_parent_with_the_parents_algorithm(
    run_ca: Callable[..., Run],
    request: pytest.FixtureRequest,
    parent_fixture: str,
    signing_algorithm: str,
    own_key: str,
) -> None:
    parent: Parent = request.getfixturevalue(parent_fixture)
    run = run_ca(subordinate_args(key_algorithm=own_key), parent)
    authority = run.one(CA_TYPE)
    assert authority.inputs["type"] == "SUBORDINATE", authority.urn
    configuration = authority.inputs["certificateAuthorityConfiguration"]
    assert configuration["keyAlgorithm"] == own_key, authority.urn
    assert configuration["signingAlgorithm"] == x509.signing_algorithm_for(own_key), f"{authority.urn}: for its issues"
    signed = run.one(CERTIFICATE_TYPE)
    assert signed.inputs["certificateAuthorityArn"] == PARENT_ARN, f"{signed.urn}: the parent signs"
    assert signed.inputs["signingAlgorithm"] == signing_algorithm, f"{signed.urn}: the parent's key decides"
    assert signed.inputs["templateArn"] == "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen0/V1"
    assert [args["arn"] for token, args in run.invokes if token == GET_CA] == [PARENT_ARN]


def test_subordinate_signed_by_a_p384_parent(run_ca: Callable[..., Run]) -> None:
    parent = Parent.of(ec.generate_private_key(ec.SECP384R1()))
    signed = run_ca(subordinate_args(), parent).one(CERTIFICATE_TYPE)
    assert signed.inputs["signingAlgorithm"] == "SHA384WITHECDSA", signed.urn


def test_subordinate_validity_counts_from_the_parents_start(run_ca: Callable[..., Run], rsa_parent: Parent) -> None:
    run = run_ca(subordinate_args(validity_years=5), rsa_parent)
    signed = run.one(CERTIFICATE_TYPE)
    validity = signed.inputs["validity"]
    assert validity["type"] == "END_DATE", signed.urn
    parent_start = x509.load_certificates(rsa_parent.certificate_pem)[0].not_valid_before_utc
    expected = parent_start.replace(year=parent_start.year + 5)
    assert validity["value"] == x509.iso_utc(expected), f"{signed.urn}: 5 years after the parent began, RFC 3339"
    assert expected < rsa_parent.not_after, f"{signed.urn}: must end before its parent"


def test_subordinate_end_date_ignores_the_clock(rsa_parent: Parent, monkeypatch: pytest.MonkeyPatch) -> None:
    import components.private_ca as module

    class Later(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + timedelta(days=40)

    today = subordinate_end_date(5, rsa_parent.certificate_pem)
    monkeypatch.setattr(module, "datetime", Later, raising=False)
    assert subordinate_end_date(5, rsa_parent.certificate_pem) == today


def _parent_pem(not_before: str, not_after: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = Name([NameAttribute(NameOID.COMMON_NAME, "Parent CA")])
    certificate = (
        CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(random_serial_number())
        .not_valid_before(x509.parse_iso_utc(not_before))
        .not_valid_after(x509.parse_iso_utc(not_after))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("parent_start", "years", "end"),
    [
        ("2026-11-28T04:15:00Z", 5, "2031-11-28T04:15:00Z"),
        ("2024-02-29T12:00:00Z", 5, "2029-02-28T12:00:00Z"),
        ("2024-02-29T12:00:00Z", 4, "2028-02-29T12:00:00Z"),
    ],
)
def test_subordinate_end_date_is_whole_calendar_years_after_the_parents_start(
    parent_start: str, years: int, end: str
) -> None:
    parent_pem = _parent_pem(parent_start, "2036-01-01T00:00:00Z")
    assert subordinate_end_date(years, parent_pem) == end


def test_subordinate_that_would_outlive_its_parent_fails(run_ca: Callable[..., Run]) -> None:
    parent = Parent.of(ec.generate_private_key(ec.SECP256R1()), years=3)
    with pytest.raises(ValueError, match="caValidityYears 5") as caught:
        run_ca(subordinate_args(validity_years=5), parent)
    message = str(caught.value)
    assert "not before its parent CA expires" in message
    assert x509.iso_utc(parent.not_after) in message
    assert "lower caValidityYears" in message


def test_subordinate_as_long_as_its_parent_fails(run_ca: Callable[..., Run]) -> None:
    parent = Parent.of(ec.generate_private_key(ec.SECP256R1()), years=3)
    with pytest.raises(ValueError, match=r"caValidityYears 3 .*not before its parent CA expires"):
        run_ca(subordinate_args(validity_years=3), parent)


def test_subordinate_imports_its_chain(run_ca: Callable[..., Run], ec_parent: Parent) -> None:
    run = run_ca(subordinate_args(), ec_parent)
    activation = run.one(ACTIVATION_TYPE)
    assert activation.inputs["certificate"] == SIGNED_PEM, activation.urn
    assert activation.inputs["certificateChain"] == ec_parent.certificate_pem, f"{activation.urn}: the parent chain"
    assert activation.inputs["certificateAuthorityArn"] == CA_ARN


def test_trust_bundle_is_the_certificate_then_the_chain(run_ca: Callable[..., Run], ec_parent: Parent) -> None:
    run = run_ca(subordinate_args(), ec_parent)
    bundle = run.outputs["trust_bundle_pem"]
    assert bundle == x509.join_pem(SIGNED_PEM, ec_parent.certificate_pem)
    assert bundle.index(SIGNED_PEM.splitlines()[1]) < bundle.index(ec_parent.certificate_pem.splitlines()[1])
    assert run.outputs["certificate_pem"] == SIGNED_PEM


# --- CRL ---------------------------------------------------------------------------------------------------


def test_crl_bucket_is_private_and_in_place_before_the_ca(run_ca: Callable[..., Run]) -> None:
    run = run_ca(ca_args(crl={"expiration_days": 14, "custom_cname": "crl.example.com"}))
    bucket = run.one(BUCKET_TYPE)
    assert bucket.inputs["forceDestroy"] is False, bucket.urn
    assert bucket.inputs["tags"]["Name"] == "Test Root CA CRL", bucket.urn
    block = run.one(PUBLIC_ACCESS_BLOCK_TYPE)
    assert block.inputs["bucket"] == "ca-crl-bucket", block.urn
    for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert block.inputs[flag] is True, f"{block.urn}: {flag}"
    ownership = run.one(OWNERSHIP_TYPE)
    assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}, ownership.urn
    policy_resource = run.one(POLICY_TYPE)
    assert block.urn in policy_resource.dependencies, f"{policy_resource.urn}: after the public access block"

    authority = run.one(CA_TYPE)
    for ready in (block, ownership, policy_resource):
        assert ready.urn in authority.dependencies, f"{authority.urn} must wait for {ready.urn}"
    crl = authority.inputs["revocationConfiguration"]["crlConfiguration"]
    assert crl == {
        "enabled": True,
        "expirationInDays": 14,
        "customCname": "crl.example.com",
        "s3BucketName": "ca-crl-bucket",
        "s3ObjectAcl": "BUCKET_OWNER_FULL_CONTROL",
    }, authority.urn
    assert run.outputs["crl_bucket_name"] == "ca-crl-bucket"


def test_crl_bucket_policy(run_ca: Callable[..., Run]) -> None:
    policy_resource = run_ca(ca_args(crl={"expiration_days": 7})).one(POLICY_TYPE)
    policy = json.loads(policy_resource.inputs["policy"])
    bucket_arn = "arn:aws:s3:::ca-crl-bucket"
    allow = next(statement for statement in policy["Statement"] if statement["Effect"] == "Allow")
    assert allow["Principal"] == {"Service": "acm-pca.amazonaws.com"}
    assert set(allow["Action"]) == {"s3:PutObject", "s3:PutObjectAcl", "s3:GetBucketAcl", "s3:GetBucketLocation"}
    assert allow["Resource"] == [bucket_arn, f"{bucket_arn}/*"]
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert allow["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:acm-pca:eu-west-1:{ACCOUNT}:certificate-authority/*"
    }
    deny = next(statement for statement in policy["Statement"] if statement["Effect"] == "Deny")
    assert deny["Principal"] == "*"
    assert deny["Action"] == "s3:*"
    assert deny["Resource"] == [bucket_arn, f"{bucket_arn}/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(policy["Statement"]) == 2, "nothing else is allowed"


def test_no_crl_no_bucket(run_ca: Callable[..., Run]) -> None:
    run = run_ca(ca_args(crl=None))
    for type_ in (BUCKET_TYPE, PUBLIC_ACCESS_BLOCK_TYPE, OWNERSHIP_TYPE, POLICY_TYPE):
        assert not run.of_type(type_), type_
    authority = run.one(CA_TYPE)
    assert "revocationConfiguration" not in authority.inputs, authority.urn
    assert run.outputs["crl_bucket_name"] is None


# --- ACM permission ----------------------------------------------------------------------------------------


def test_acm_permission(run_ca: Callable[..., Run]) -> None:
    run = run_ca(ca_args(acm_permission=True))
    permission = run.one(PERMISSION_TYPE)
    assert permission.inputs["principal"] == "acm.amazonaws.com", permission.urn
    assert sorted(permission.inputs["actions"]) == ["GetCertificate", "IssueCertificate", "ListPermissions"]
    assert permission.inputs["sourceAccount"] == ACCOUNT, permission.urn
    assert permission.inputs["certificateAuthorityArn"] == run.outputs["arn"], f"{permission.urn}: the active CA"
    assert run.one(ACTIVATION_TYPE).urn in permission.dependencies, f"{permission.urn}: only once the CA is active"


def test_acm_private_certificate_waits_for_the_acm_permission(run_ca: Callable[..., Run]) -> None:
    run = run_ca(ca_args(acm_permission=True))
    listener = run.one(LISTENER_CERTIFICATE_TYPE)
    assert listener.inputs["certificateAuthorityArn"] == CA_ARN, listener.urn
    assert run.outputs["acm_issuer_arn"] == CA_ARN
    permission = run.one(PERMISSION_TYPE)
    assert permission.urn in listener.dependencies, f"{listener.urn} must be requested after {permission.urn}"
    assert run.one(ACTIVATION_TYPE).urn in listener.dependencies, f"{listener.urn}: and after activation"


def test_without_acm_permission_the_issuer_arn_is_the_active_ca(run_ca: Callable[..., Run]) -> None:
    run = run_ca(ca_args())
    listener = run.one(LISTENER_CERTIFICATE_TYPE)
    assert listener.inputs["certificateAuthorityArn"] == CA_ARN, listener.urn
    assert run.one(ACTIVATION_TYPE).urn in listener.dependencies, listener.urn


def test_no_acm_permission_by_default(run_ca: Callable[..., Run]) -> None:
    assert not run_ca(ca_args()).of_type(PERMISSION_TYPE)


# --- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ca_type": "INTERMEDIATE"}, "ca_type 'INTERMEDIATE' is not allowed; allowed: ROOT, SUBORDINATE"),
        ({"ca_type": "SUBORDINATE"}, "parent_ca_arn is required for a SUBORDINATE CA"),
        ({"ca_type": "SUBORDINATE", "parent_ca_arn": ""}, "parent_ca_arn is required for a SUBORDINATE CA"),
        ({"parent_ca_arn": PARENT_ARN}, "parent_ca_arn is only for a SUBORDINATE CA"),
        ({"key_algorithm": "RSA_1024"}, "key_algorithm 'RSA_1024' is not supported; allowed: EC_prime256v1"),
        ({"usage_mode": "CHEAP"}, "allowed: GENERAL_PURPOSE, SHORT_LIVED_CERTIFICATE"),
        ({"permanent_deletion_days": 6}, "permanent_deletion_days must be from 7 to 30, got 6"),
        ({"permanent_deletion_days": 31}, "permanent_deletion_days must be from 7 to 30, got 31"),
        ({"validity_years": 0}, "validity_years must be at least 1, got 0"),
        ({"subject": {"common_name": ""}}, "subject.common_name is required"),
    ],
)
def test_invalid_args_fail_before_any_aws_resource(
    run_ca: Callable[..., Run], changes: dict[str, Any], message: str
) -> None:
    recorded: list[Run] = []
    original = _Mocks.__init__

    def remember(self: _Mocks, run: Run) -> None:
        original(self, run)
        recorded.append(run)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_Mocks, "__init__", remember)
        with pytest.raises(ValueError, match=r"^PrivateCa: ") as caught:
            run_ca(ca_args(**changes))
    assert message in str(caught.value)
    (run,) = recorded
    # The component registers itself (super().__init__) before it validates; no AWS resource may follow.
    assert {r.type_ for r in run.resources} <= {COMPONENT_TYPE}, "nothing may be created from invalid args"
    assert run.invokes == [], "nothing may be looked up either"


def test_every_problem_is_reported_at_once(run_ca: Callable[..., Run]) -> None:
    with pytest.raises(ValueError, match=r"^PrivateCa: ") as caught:
        run_ca(ca_args(ca_type="SUBORDINATE", key_algorithm="DSA", permanent_deletion_days=1))
    for message in ("parent_ca_arn is required", "key_algorithm 'DSA'", "permanent_deletion_days"):
        assert message in str(caught.value)


def test_subordinate_whose_end_has_passed_fails(run_ca: Callable[..., Run]) -> None:
    # A parent six years into a ten-year life: five years after its start is already a year ago.
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(days=6 * 365), now + timedelta(days=4 * 365)
    parent = Parent(_parent_pem(x509.iso_utc(start), x509.iso_utc(end)), end)
    with pytest.raises(ValueError, match=r"caValidityYears: .*has already passed.*raise caValidityYears"):
        run_ca(subordinate_args(validity_years=5), parent)
    run_ca(subordinate_args(validity_years=8), parent)  # ends in two years, before the parent: accepted
