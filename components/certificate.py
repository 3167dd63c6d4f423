"""A certificate issued by AWS Private CA from a CSR: a Pulumi dynamic resource and its provider.

The provider does what operators otherwise do by hand with `openssl req` and `aws acm-pca issue-certificate` /
`get-certificate`: it generates a key and CSR (or takes the user's CSR), issues the certificate, waits for it,
keeps the key a Pulumi secret, replaces the certificate before it expires, and revokes it when it is deleted.

Pulumi stores this provider in the state, pickled, and runs that stored copy on `pulumi destroy`. So the
provider object carries no state of its own (no client, no credential): every method builds its boto3 client
from the default credential chain and the resource's `region` / `endpoint_url`.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import boto3
import pulumi
import pulumi.dynamic
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, UpdateResult

from components import x509

if TYPE_CHECKING:
    from mypy_boto3_acm_pca import ACMPCAClient

#: Pulumi's marker for a value not known until apply (a property of a resource that does not exist yet).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

DEFAULT_TEMPLATE = "EndEntityServerAuthCertificate/V1"
DEFAULT_KEY_ALGORITHM = "EC_prime256v1"
DEFAULT_VALIDITY_DAYS = 90
SHORT_LIVED_MAX_DAYS = 7

#: Inputs whose change means a different certificate: `diff` replaces on any of them.
IDENTITY_INPUTS = (
    "ca_arn",
    "common_name",
    "subject_alternative_names",
    "key_algorithm",
    "validity_days",
    "template_arn",
    "csr_pem",
)
#: Outputs; `private_key_pem` is a secret (see `Certificate`).
OUTPUTS = (
    "certificate_arn",
    "certificate_pem",
    "certificate_chain_pem",
    "full_chain_pem",
    "private_key_pem",
    "serial",
    "not_after",
)

_CA_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):acm-pca:(?P<region>[a-z0-9-]+):\d{12}:certificate-authority/[0-9a-f-]+$"
)
_TEMPLATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm-pca:::template/(?P<name>[A-Za-z0-9_]+/V\d+)$")
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_]+/V\d+$")
#: CA templates sign certificate authorities, never a server: refuse them here.
_CA_TEMPLATE_PREFIXES = ("RootCACertificate", "SubordinateCACertificate")

# Bounded waiting and retrying. AWS's default quotas are 25 IssueCertificate/s and 75 GetCertificate/s; an
# unbounded retry loop can issue (and bill) thousands of certificates, so every loop here has a ceiling.
ISSUE_WAIT_SECONDS = 300.0
POLL_INITIAL_DELAY = 0.5
POLL_MAX_DELAY = 8.0
_RETRY_CONFIG = BotoConfig(retries={"max_attempts": 8, "mode": "standard"}, connect_timeout=10, read_timeout=60)


class CertificateArgs(TypedDict):
    """Inputs of `Certificate`. Names are part of the public schema: stacks, policies and tests use them."""

    ca_arn: pulumi.Input[str]
    """ARN of the issuing AWS Private CA (it must be ACTIVE: depend on its activation)."""
    common_name: pulumi.Input[str]
    """Subject common name; it is also put in the SANs, since TLS clients only look there."""
    subject_alternative_names: NotRequired[pulumi.Input[list[str]]]
    """More DNS names (a leading `*.` allowed) and IP addresses."""
    key_algorithm: NotRequired[pulumi.Input[str]]
    """EC_prime256v1 (default), EC_secp384r1, RSA_2048, RSA_3072 or RSA_4096. Ignored with `csr_pem`."""
    validity_days: NotRequired[pulumi.Input[int]]
    """Days the certificate is valid (default 90); at most 7 on a SHORT_LIVED_CERTIFICATE CA."""
    template_arn: NotRequired[pulumi.Input[str]]
    """ACM PCA template: an ARN or a name like `EndEntityServerAuthCertificate/V1` (the default)."""
    renew_before_days: NotRequired[pulumi.Input[int | None]]
    """A `pulumi up` this many days or fewer before expiry replaces the certificate. Default: a third of
    `validity_days` (30 of 90), as cert-manager renews at two thirds of a certificate's life."""
    csr_pem: NotRequired[pulumi.Input[str | None]]
    """A CSR to have signed instead of generating a key; then `private_key_pem` is empty."""
    revoke_on_delete: NotRequired[pulumi.Input[bool]]
    """Revoke the certificate when the resource is deleted or replaced (default true)."""
    region: NotRequired[pulumi.Input[str | None]]
    """AWS region of the CA; defaults to the region in `ca_arn`."""
    endpoint_url: NotRequired[pulumi.Input[str | None]]
    """ACM PCA endpoint override, for a local emulator. Credentials always come from the environment."""


def _client(props: dict[str, Any]) -> ACMPCAClient:
    return boto3.session.Session().client(
        "acm-pca",
        region_name=props.get("region") or None,
        endpoint_url=props.get("endpoint_url") or None,
        config=_RETRY_CONFIG,
    )


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _is_unknown(value: Any) -> bool:
    return value == UNKNOWN or (isinstance(value, list) and any(item == UNKNOWN for item in value))


def template_arn_for(template: str, partition: str = "aws") -> str:
    """Normalise a template name or ARN to an ARN; ValueError for a malformed one or a CA template."""
    match = _TEMPLATE_ARN.match(template)
    if match:
        name = match["name"]
    elif _TEMPLATE_NAME.match(template):
        name = template
    else:
        raise ValueError(
            f"{template!r} is not an ACM PCA template; use a name like {DEFAULT_TEMPLATE!r} "
            f"or an ARN like 'arn:{partition}:acm-pca:::template/{DEFAULT_TEMPLATE}'"
        )
    if name.startswith(_CA_TEMPLATE_PREFIXES):
        raise ValueError(f"{name!r} signs certificate authorities; use an end-entity template")
    return f"arn:{partition}:acm-pca:::template/{name}"


class _CertificateAuthority(TypedDict):
    key_algorithm: str
    usage_mode: str
    status: str
    not_after: datetime | None


def describe_ca(props: dict[str, Any]) -> _CertificateAuthority:
    """What the certificate depends on from its CA: key algorithm, usage mode, state and expiry."""
    ca = _client(props).describe_certificate_authority(CertificateAuthorityArn=props["ca_arn"])["CertificateAuthority"]
    not_after = ca.get("NotAfter")
    return {
        "key_algorithm": ca["CertificateAuthorityConfiguration"]["KeyAlgorithm"],
        "usage_mode": ca.get("UsageMode", "GENERAL_PURPOSE"),
        "status": ca.get("Status", ""),
        "not_after": not_after.astimezone(UTC) if not_after else None,
    }


def validity_problem(validity_days: int, ca: _CertificateAuthority, now: datetime) -> str | None:
    """Why `validity_days` does not fit the CA, or None when it does."""
    if ca["usage_mode"] == "SHORT_LIVED_CERTIFICATE" and validity_days > SHORT_LIVED_MAX_DAYS:
        return (
            f"validity_days is {validity_days} but the CA is in SHORT_LIVED_CERTIFICATE mode, which issues "
            f"certificates of at most {SHORT_LIVED_MAX_DAYS} days"
        )
    if ca["not_after"] is not None and now + timedelta(days=validity_days) >= ca["not_after"]:
        return (
            f"validity_days is {validity_days} but the CA certificate expires on "
            f"{x509.iso_utc(ca['not_after'])}; a certificate must expire before its issuer"
        )
    return None


class CertificateProvider(pulumi.dynamic.ResourceProvider):
    """CRUD for `Certificate` against ACM PCA. Stateless: see the module docstring."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = {key: value for key, value in news.items() if key != "__provider"}
        failures: list[CheckFailure] = []

        def fail(prop: str, reason: str) -> None:
            failures.append(CheckFailure(prop, reason))

        inputs.setdefault("subject_alternative_names", [])
        inputs.setdefault("revoke_on_delete", True)
        for key, default in (
            ("key_algorithm", DEFAULT_KEY_ALGORITHM),
            ("validity_days", DEFAULT_VALIDITY_DAYS),
            ("template_arn", DEFAULT_TEMPLATE),
        ):
            if inputs.get(key) in (None, ""):
                inputs[key] = default
        for key in ("csr_pem", "region", "endpoint_url"):
            inputs[key] = inputs.get(key) or None

        ca_arn = inputs.get("ca_arn")
        partition = "aws"
        if not ca_arn:
            fail("ca_arn", "ca_arn is required: the ARN of an ACM Private CA")
        elif not _is_unknown(ca_arn):
            match = _CA_ARN.match(str(ca_arn))
            if not match:
                fail(
                    "ca_arn",
                    f"ca_arn {ca_arn!r} is not a CA ARN "
                    "(arn:aws:acm-pca:<region>:<account>:certificate-authority/<id>)",
                )
            else:
                partition = match["partition"]
                if inputs["region"] is None:
                    inputs["region"] = match["region"]
                elif not _is_unknown(inputs["region"]) and inputs["region"] != match["region"]:
                    fail(
                        "region",
                        f"region {inputs['region']!r} differs from the CA's region {match['region']!r}",
                    )

        common_name = inputs.get("common_name")
        sans = inputs["subject_alternative_names"]
        names: x509.SubjectNames | None = None
        if not isinstance(sans, list) and not _is_unknown(sans):
            fail("subject_alternative_names", "subject_alternative_names must be a list of names")
        elif not _is_unknown(common_name) and not _is_unknown(sans):
            if common_name is None or not str(common_name).strip():
                fail("common_name", "common_name is required: a DNS name or an IP address")
            else:
                try:
                    x509.SubjectNames.parse(str(common_name), [])
                except ValueError as error:
                    fail("common_name", f"common_name: {error}")
                else:
                    try:
                        names = x509.SubjectNames.parse(str(common_name), [str(name) for name in sans])
                    except ValueError as error:
                        fail("subject_alternative_names", f"subject_alternative_names: {error}")
                    else:
                        cn = str(common_name).strip().rstrip(".").lower()
                        inputs["common_name"] = cn
                        inputs["subject_alternative_names"] = sorted(names.as_set() - {cn})

        key_algorithm = inputs["key_algorithm"]
        if not _is_unknown(key_algorithm) and key_algorithm not in x509.KEY_ALGORITHMS:
            fail("key_algorithm", x509.unsupported_key_algorithm(key_algorithm))

        for key in ("validity_days", "renew_before_days"):
            value = inputs.get(key)
            if _is_unknown(value) or (key == "renew_before_days" and value is None):
                continue
            if isinstance(value, float) and value.is_integer():
                value = inputs[key] = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                fail(key, f"{key} must be a whole number of days, got {value!r}")
        validity = inputs["validity_days"]
        # Without a usable validity (unknown in a preview, or invalid) the default stays None, not missing.
        inputs.setdefault("renew_before_days", None)
        if inputs["renew_before_days"] is None and isinstance(validity, int):
            inputs["renew_before_days"] = validity // 3
        renew_before = inputs["renew_before_days"]
        if isinstance(validity, int) and validity <= 0:
            fail("validity_days", f"validity_days must be positive, got {validity}")
        if isinstance(renew_before, int) and isinstance(validity, int) and not 0 <= renew_before < validity:
            fail(
                "renew_before_days",
                f"renew_before_days must be at least 0 and less than validity_days ({validity}), got {renew_before}",
            )

        if not _is_unknown(inputs["template_arn"]):
            try:
                inputs["template_arn"] = template_arn_for(str(inputs["template_arn"]), partition)
            except ValueError as error:
                fail("template_arn", f"template_arn: {error}")

        if not isinstance(inputs["revoke_on_delete"], bool) and not _is_unknown(inputs["revoke_on_delete"]):
            fail("revoke_on_delete", "revoke_on_delete must be true or false")

        csr_pem = inputs["csr_pem"]
        if csr_pem is not None and not _is_unknown(csr_pem):
            try:
                csr = x509.parse_csr(str(csr_pem))
            except ValueError as error:
                fail("csr_pem", f"csr_pem is not usable: {error}")
            else:
                inputs["key_algorithm"] = csr.key_algorithm
                if names is not None:
                    problem = _csr_names_problem(csr, inputs["common_name"], names)
                    if problem:
                        fail("csr_pem", problem)

        if not failures and not any(
            _is_unknown(inputs[key]) for key in ("ca_arn", "validity_days", "region", "endpoint_url")
        ):
            ca_problem = self._ca_problem(inputs)
            if ca_problem:
                fail(*ca_problem)
        return CheckResult(inputs, failures)

    @staticmethod
    def _ca_problem(inputs: dict[str, Any]) -> tuple[str, str] | None:
        """Check the request against the CA itself, when the CA can be read (it may not exist yet)."""
        try:
            ca = describe_ca(inputs)
        except ClientError as error:
            if _error_code(error) == "ResourceNotFoundException":
                return ("ca_arn", f"ca_arn {inputs['ca_arn']!r}: no such certificate authority")
            # Not readable right now (permissions, a transient error): `create` checks again.
            return None
        problem = validity_problem(inputs["validity_days"], ca, datetime.now(UTC))
        return ("validity_days", problem) if problem else None

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in IDENTITY_INPUTS if olds.get(key) != news.get(key)]
        renew_before = news.get("renew_before_days")
        if olds.get("not_after") and isinstance(renew_before, int) and "not_after" not in replaces:
            renew_at = x509.parse_iso_utc(olds["not_after"]) - timedelta(days=renew_before)
            if datetime.now(UTC) >= renew_at:
                replaces.append("not_after")
        in_place = [
            key
            for key in ("renew_before_days", "revoke_on_delete", "region", "endpoint_url")
            if olds.get(key) != news.get(key)
        ]
        return DiffResult(
            changes=bool(replaces or in_place),
            replaces=replaces,
            stables=["certificate_arn"] if not replaces else [],
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        client = _client(props)
        ca = describe_ca(props)
        problem = validity_problem(int(props["validity_days"]), ca, datetime.now(UTC))
        if problem:
            raise ValueError(problem)

        key_pem = ""
        csr_pem = props.get("csr_pem")
        if not csr_pem:
            names = x509.SubjectNames.parse(props["common_name"], props["subject_alternative_names"])
            key = x509.generate_private_key(props["key_algorithm"])
            key_pem = x509.private_key_pem(key)
            csr_pem = x509.build_csr(key, props["common_name"], names)

        request = {
            "CertificateAuthorityArn": props["ca_arn"],
            "Csr": csr_pem.encode(),
            "SigningAlgorithm": x509.signing_algorithm_for(ca["key_algorithm"]),
            "TemplateArn": props["template_arn"],
            "Validity": {"Value": int(props["validity_days"]), "Type": "DAYS"},
        }
        # Same request, same token: a retried call (ours or botocore's) returns the first certificate
        # instead of issuing and billing a second one.
        token = hashlib.sha256(repr(sorted(request.items())).encode()).hexdigest()[:36]
        certificate_arn = client.issue_certificate(**request, IdempotencyToken=token)["CertificateArn"]
        outs = _fetch_certificate(client, props["ca_arn"], certificate_arn)
        return CreateResult(certificate_arn, {**props, **outs, "private_key_pem": key_pem})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            outs = _fetch_certificate(_client(props), props["ca_arn"], id_, wait=False)
        except ClientError as error:
            if _error_code(error) in ("ResourceNotFoundException", "RequestInProgressException"):
                # Gone, or revoked (AWS answers revoked certificates as not found): let `refresh` drop it.
                return ReadResult("", {})
            raise
        return ReadResult(id_, {**props, **outs})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Only settings that do not change the certificate get here; identity changes replace.
        return UpdateResult({**olds, **news, **{key: olds.get(key) for key in OUTPUTS}})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        if not props.get("revoke_on_delete", True):
            return
        not_after = props.get("not_after")
        if not_after and x509.parse_iso_utc(not_after) <= datetime.now(UTC):
            return  # expired: no client accepts it any more, and CRLs drop expired entries anyway
        try:
            _client(props).revoke_certificate(
                CertificateAuthorityArn=props["ca_arn"],
                CertificateSerial=props["serial"],
                RevocationReason="CESSATION_OF_OPERATION",
            )
        except ClientError as error:
            # Already revoked, the certificate or CA gone, or the CA disabled or deleted: nothing left to do.
            if _error_code(error) not in (
                "RequestAlreadyProcessedException",
                "ResourceNotFoundException",
                "InvalidStateException",
            ):
                raise


def _csr_names_problem(csr: x509.CsrInfo, common_name: str, names: x509.SubjectNames) -> str | None:
    asked = names.as_set()
    in_csr = set(csr.names)
    if csr.common_name:
        in_csr.add(csr.common_name.lower())
    if csr.common_name is not None and csr.common_name.lower() != common_name:
        return f"csr_pem has common name {csr.common_name!r} but common_name is {common_name!r}"
    if in_csr != asked:
        return f"csr_pem names {sorted(in_csr)} differ from common_name and subject_alternative_names {sorted(asked)}"
    return None


def _fetch_certificate(client: ACMPCAClient, ca_arn: str, certificate_arn: str, *, wait: bool = True) -> dict[str, str]:
    """GetCertificate, waiting (bounded) while the CA is still issuing; the outputs derived from it."""
    deadline = time.monotonic() + ISSUE_WAIT_SECONDS
    delay = POLL_INITIAL_DELAY
    while True:
        try:
            answer = client.get_certificate(CertificateAuthorityArn=ca_arn, CertificateArn=certificate_arn)
            break
        except ClientError as error:
            if not wait or _error_code(error) != "RequestInProgressException":
                raise
            if time.monotonic() + delay > deadline:
                raise TimeoutError(
                    f"{certificate_arn} was still being issued after {ISSUE_WAIT_SECONDS:.0f} seconds"
                ) from error
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX_DELAY)
    certificate_pem = x509.join_pem(answer["Certificate"])
    chain_pem = x509.join_pem(answer.get("CertificateChain", ""))
    leaf = x509.load_certificates(certificate_pem)[0]
    return {
        "certificate_arn": certificate_arn,
        "certificate_pem": certificate_pem,
        "certificate_chain_pem": chain_pem,
        "full_chain_pem": x509.join_pem(certificate_pem, chain_pem),
        "serial": x509.colon_hex(leaf.serial_number),
        "not_after": x509.iso_utc(x509.not_after(leaf)),
    }


class Certificate(pulumi.dynamic.Resource, module="pki", name="Certificate"):
    """A server certificate from AWS Private CA; `private_key_pem` is always a Pulumi secret."""

    certificate_arn: pulumi.Output[str]
    """ARN of the issued certificate (also the resource ID)."""
    certificate_pem: pulumi.Output[str]
    """The leaf certificate, PEM."""
    certificate_chain_pem: pulumi.Output[str]
    """The issuing chain from the CA up to (as AWS returns it) the root, PEM."""
    full_chain_pem: pulumi.Output[str]
    """Leaf then chain: what a TLS server presents."""
    private_key_pem: pulumi.Output[str]
    """PKCS#8 private key, PEM; a secret. Empty when `csr_pem` was supplied."""
    serial: pulumi.Output[str]
    """Serial number, colon-separated upper-case hex (what RevokeCertificate takes)."""
    not_after: pulumi.Output[str]
    """Expiry, ISO 8601 UTC."""

    def __init__(self, resource_name: str, args: CertificateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {
            "subject_alternative_names": [],
            "key_algorithm": DEFAULT_KEY_ALGORITHM,
            "validity_days": DEFAULT_VALIDITY_DAYS,
            "template_arn": DEFAULT_TEMPLATE,
            "renew_before_days": None,
            "csr_pem": None,
            "revoke_on_delete": True,
            "region": None,
            "endpoint_url": None,
            **args,
            **dict.fromkeys(OUTPUTS),
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["private_key_pem"])
        opts = pulumi.ResourceOptions.merge(opts, secret)
        super().__init__(CertificateProvider(), resource_name, props, opts)
