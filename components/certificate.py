"""A certificate issued by AWS Private CA from a CSR: a Pulumi dynamic resource and its provider.

The provider does what operators otherwise do by hand with `openssl req` and `aws acm-pca issue-certificate` /
`get-certificate`: it generates a key and CSR (or takes the user's CSR), issues the certificate, waits for it,
keeps the key a Pulumi secret, replaces the certificate before it expires, and revokes it when it is deleted.

Pulumi stores this provider in the state, pickled, and runs that stored copy on `pulumi destroy`. So the
provider object carries no state of its own (no client, no credential). AWS is reached through
`components.pca_client`, which keeps one client per region, endpoint and identity for the whole provider
process; the identity is the stack's (`profile`, `assume_role_*` inputs: names and ARNs, never a credential).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi.dynamic
from botocore.exceptions import BotoCoreError, ClientError
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, UpdateResult

from components import pca_client, x509
from components.pca_client import Target, error_code
from components.rules import aws as aws_rules

# Shared with settings (components/rules); importable from here for existing callers.
from components.rules.aws import (
    DEFAULT_TEMPLATE as DEFAULT_TEMPLATE,
)
from components.rules.aws import (
    DEFAULT_THROTTLE_RETRY_MINUTES as DEFAULT_THROTTLE_RETRY_MINUTES,
)
from components.rules.aws import (
    MAX_THROTTLE_RETRY_MINUTES as MAX_THROTTLE_RETRY_MINUTES,
)
from components.rules.aws import (
    SHORT_LIVED_MAX_DAYS as SHORT_LIVED_MAX_DAYS,
)
from components.rules.aws import (
    template_arn_for as template_arn_for,
)
from components.rules.names import SUBJECT_FIELD_LIMITS

#: Pulumi's marker for a value not known until apply (a property of a resource that does not exist yet).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

DEFAULT_KEY_ALGORITHM = "EC_prime256v1"
DEFAULT_VALIDITY_DAYS = 90
#: A century: far beyond any CA's life, and far from `datetime`'s limits.
MAX_VALIDITY_DAYS = 36500
#: X.509's upper bound on a common name (RFC 5280, ub-common-name).
MAX_COMMON_NAME_LENGTH = SUBJECT_FIELD_LIMITS["common_name"]

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
#: Inputs that say how to manage the certificate, not what it is: `diff` updates them in place.
SETTING_INPUTS = (
    "renew_before_days",
    "revoke_on_delete",
    "region",
    "endpoint_url",
    "profile",
    "assume_role_arn",
    "assume_role_session_name",
    "assume_role_external_id",
    "throttle_retry_minutes",
)
_ROLE_INPUTS = ("assume_role_arn", "assume_role_session_name", "assume_role_external_id")
#: How the provider reaches AWS; the CA is read again when one of them changes.
ACCESS_INPUTS = ("ca_arn", "region", "endpoint_url", "profile", *_ROLE_INPUTS)
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


# Bounded waiting: GetCertificate answers RequestInProgressException until the CA has issued.
ISSUE_WAIT_SECONDS = 300.0
POLL_INITIAL_DELAY = 0.5
POLL_MAX_DELAY = 8.0
#: How long `check` trusts what it read of a CA: one read serves every certificate of a preview or `up`.
CA_CACHE_SECONDS = 60.0


class CertificateArgs(TypedDict):
    """Inputs of `Certificate`. Names are part of the public schema: stacks, policies and tests use them."""

    ca_arn: pulumi.Input[str]
    """ARN of the issuing AWS Private CA (it must be ACTIVE: depend on its activation)."""
    common_name: pulumi.Input[str]
    """Subject common name (at most 64 characters); it is also put in the SANs, since TLS clients only look
    there."""
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
    """ACM PCA endpoint override, for a local emulator."""
    profile: NotRequired[pulumi.Input[str | None]]
    """AWS shared-config profile to call AWS with (the stack's `aws:profile`); default: the credential chain."""
    assume_role_arn: NotRequired[pulumi.Input[str | None]]
    """Role to assume with those credentials (the stack's first `aws:assumeRoles` entry), e.g. to issue from
    a CA shared from another account."""
    assume_role_session_name: NotRequired[pulumi.Input[str | None]]
    """Session name for the assumed role (default `pulumi-certificate-provider`)."""
    assume_role_external_id: NotRequired[pulumi.Input[str | None]]
    """External ID the role's trust policy asks for."""
    throttle_retry_minutes: NotRequired[pulumi.Input[float | None]]
    """How long a call AWS throttles is retried (default 10); other errors fail at once."""


def _is_unknown(value: Any) -> bool:
    return value == UNKNOWN or (isinstance(value, list) and any(item == UNKNOWN for item in value))


# ---------------------------------------------------------------------------------------------------------
# AWS calls
# ---------------------------------------------------------------------------------------------------------


class _CertificateAuthority(TypedDict):
    key_algorithm: str
    usage_mode: str
    status: str
    not_after: datetime | None


_ca_lock = threading.Lock()
_ca_locks: dict[tuple[Target, str], threading.Lock] = {}
_ca_cache: dict[tuple[Target, str], tuple[float, _CertificateAuthority | Exception]] = {}


def _throttle_budget(props: dict[str, Any]) -> float:
    minutes = props.get("throttle_retry_minutes")
    if not isinstance(minutes, int | float) or isinstance(minutes, bool) or minutes <= 0:
        minutes = DEFAULT_THROTTLE_RETRY_MINUTES
    return float(minutes) * 60


def describe_ca(props: dict[str, Any], *, max_age: float = 0.0) -> _CertificateAuthority:
    """What the certificate depends on from its CA: key algorithm, usage mode, state and expiry.

    With `max_age`, an answer (or error) read less than that many seconds ago by this process is reused, and
    concurrent callers for one CA wait for a single DescribeCertificateAuthority.
    """
    key = (Target.of(props), str(props["ca_arn"]))
    with _ca_lock:
        lock = _ca_locks.setdefault(key, threading.Lock())
    with lock:
        cached = _ca_cache.get(key)
        if max_age > 0 and cached is not None and time.monotonic() - cached[0] < max_age:
            outcome = cached[1]
        else:
            try:
                outcome = _read_ca(key[0], key[1], 0 if max_age > 0 else _throttle_budget(props))
            except (ClientError, BotoCoreError) as error:
                outcome = error
            _ca_cache[key] = (time.monotonic(), outcome)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _read_ca(target: Target, ca_arn: str, throttle_budget: float) -> _CertificateAuthority:
    answer = pca_client.call(target, "DescribeCertificateAuthority", throttle_budget, CertificateAuthorityArn=ca_arn)
    ca = answer["CertificateAuthority"]
    not_after = ca.get("NotAfter")
    return {
        "key_algorithm": ca["CertificateAuthorityConfiguration"]["KeyAlgorithm"],
        "usage_mode": ca.get("UsageMode", "GENERAL_PURPOSE"),
        "status": ca.get("Status", ""),
        "not_after": not_after.astimezone(UTC) if not_after else None,
    }


def forget_cached_cas() -> None:
    """Forget what `check` read of CAs, as a new provider process would (tests and benches)."""
    with _ca_lock:
        _ca_cache.clear()
        _ca_locks.clear()


def validity_problem(validity_days: int, ca: _CertificateAuthority, now: datetime) -> str | None:
    """Why `validity_days` does not fit the CA, or None when it does."""
    short_lived = aws_rules.short_lived_problem("validity_days", validity_days, ca["usage_mode"])
    if short_lived is not None:
        return short_lived
    if ca["not_after"] is not None and now + timedelta(days=validity_days) >= ca["not_after"]:
        return (
            f"validity_days is {validity_days} but the CA certificate expires on "
            f"{x509.iso_utc(ca['not_after'])}; a certificate must expire before its issuer"
        )
    return None


def _fetch_certificate(props: dict[str, Any], certificate_arn: str, *, wait: bool = True) -> dict[str, str]:
    """GetCertificate, waiting (bounded) while the CA is still issuing; the outputs derived from it."""
    target, budget, arn = Target.of(props), _throttle_budget(props), certificate_arn
    deadline = time.monotonic() + ISSUE_WAIT_SECONDS
    delay = POLL_INITIAL_DELAY
    while True:
        try:
            answer = pca_client.call(
                target, "GetCertificate", budget, CertificateAuthorityArn=props["ca_arn"], CertificateArn=arn
            )
            break
        except ClientError as error:
            if not wait or error_code(error) != "RequestInProgressException":
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


def _revoke(props: dict[str, Any], serial: str) -> None:
    pca_client.call(
        Target.of(props),
        "RevokeCertificate",
        _throttle_budget(props),
        CertificateAuthorityArn=props["ca_arn"],
        CertificateSerial=serial,
        RevocationReason="CESSATION_OF_OPERATION",
    )


# ---------------------------------------------------------------------------------------------------------
# check: a normaliser, then one rule per input (each yields (property, reason) and may normalise its input)
# ---------------------------------------------------------------------------------------------------------

Problems = Iterator[tuple[str, str]]


def _normalised(news: dict[str, Any]) -> dict[str, Any]:
    """The inputs with defaults filled in; what `diff`, `create` and `update` see."""
    inputs = {key: value for key, value in news.items() if key != "__provider"}
    inputs.setdefault("subject_alternative_names", [])
    inputs.setdefault("revoke_on_delete", True)
    for key, default in (
        ("key_algorithm", DEFAULT_KEY_ALGORITHM),
        ("validity_days", DEFAULT_VALIDITY_DAYS),
        ("template_arn", DEFAULT_TEMPLATE),
        ("throttle_retry_minutes", DEFAULT_THROTTLE_RETRY_MINUTES),
    ):
        if inputs.get(key) in (None, ""):
            inputs[key] = default
    for key in ("csr_pem", "region", "endpoint_url", "profile", *_ROLE_INPUTS):
        inputs[key] = inputs.get(key) or None
    for key in ("validity_days", "renew_before_days", "throttle_retry_minutes"):
        value = inputs.get(key)
        if isinstance(value, float) and value.is_integer():
            inputs[key] = int(value)  # Pulumi's wire format carries numbers as floats: 30.0 is 30
    inputs.setdefault("renew_before_days", None)
    return inputs


def _ca_arn_rule(inputs: dict[str, Any]) -> Problems:
    ca_arn = inputs.get("ca_arn")
    if not ca_arn:
        yield "ca_arn", "ca_arn is required: the ARN of an ACM Private CA"
        return
    if _is_unknown(ca_arn):
        return
    match = aws_rules.parse_ca_arn(str(ca_arn))
    if not match:
        yield (
            "ca_arn",
            (f"ca_arn {ca_arn!r} is not a CA ARN (arn:aws:acm-pca:<region>:<account>:certificate-authority/<id>)"),
        )
    elif inputs["region"] is None:
        inputs["region"] = match["region"]
    elif not _is_unknown(inputs["region"]) and inputs["region"] != match["region"]:
        yield "region", f"region {inputs['region']!r} differs from the CA's region {match['region']!r}"


def _names_rule(inputs: dict[str, Any]) -> Problems:
    common_name, sans = inputs.get("common_name"), inputs["subject_alternative_names"]
    if not isinstance(sans, list) and not _is_unknown(sans):
        yield "subject_alternative_names", "subject_alternative_names must be a list of names"
        return
    if isinstance(sans, list) and None in sans:
        yield (
            "subject_alternative_names",
            (
                f"subject_alternative_names has an empty (null) entry at position {sans.index(None)}; "
                "every entry must be a DNS name or an IP address"
            ),
        )
        return
    if _is_unknown(common_name) or _is_unknown(sans):
        return
    if common_name is None or not str(common_name).strip():
        yield "common_name", "common_name is required: a DNS name or an IP address"
        return
    cn = str(common_name).strip().rstrip(".").lower()
    if len(cn) > MAX_COMMON_NAME_LENGTH:
        yield (
            "common_name",
            (
                f"common_name {cn!r} is {len(cn)} characters; X.509 allows at most {MAX_COMMON_NAME_LENGTH} in a "
                "common name: use a shorter common_name and put this name in subject_alternative_names"
            ),
        )
        return
    try:
        x509.SubjectNames.parse(str(common_name), [])
    except ValueError as error:
        yield "common_name", f"common_name: {error}"
        return
    try:
        names = x509.SubjectNames.parse(str(common_name), [str(name) for name in sans])
    except ValueError as error:
        yield "subject_alternative_names", f"subject_alternative_names: {error}"
        return
    inputs["common_name"] = cn
    inputs["subject_alternative_names"] = sorted(names.as_set() - {cn})


def _key_algorithm_rule(inputs: dict[str, Any]) -> Problems:
    key_algorithm = inputs["key_algorithm"]
    if not _is_unknown(key_algorithm) and key_algorithm not in x509.KEY_ALGORITHMS:
        yield "key_algorithm", x509.unsupported_key_algorithm(key_algorithm)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _days_rule(inputs: dict[str, Any]) -> Problems:
    validity, renew_before = inputs["validity_days"], inputs["renew_before_days"]
    for key, value in (("validity_days", validity), ("renew_before_days", renew_before)):
        if not _is_unknown(value) and value is not None and not _is_whole(value):
            yield key, f"{key} must be a whole number of days, got {value!r}"
    if not _is_whole(validity):
        return
    if validity <= 0:
        yield "validity_days", f"validity_days must be positive, got {validity}"
    elif validity > MAX_VALIDITY_DAYS:
        yield "validity_days", f"validity_days must be at most {MAX_VALIDITY_DAYS} (a century), got {validity}"
    inputs["renew_before_days"] = renew_before = aws_rules.renew_before_days(validity, renew_before)
    low, high = aws_rules.renew_before_range(validity)
    if _is_whole(renew_before) and not low <= renew_before <= high:
        yield (
            "renew_before_days",
            f"renew_before_days must be at least {low} and less than validity_days ({validity}), got {renew_before}",
        )


def _template_rule(inputs: dict[str, Any]) -> Problems:
    if _is_unknown(inputs["template_arn"]):
        return
    match = aws_rules.parse_ca_arn(str(inputs.get("ca_arn") or ""))
    try:
        inputs["template_arn"] = template_arn_for(str(inputs["template_arn"]), match["partition"] if match else "aws")
    except ValueError as error:
        yield "template_arn", f"template_arn: {error}"


def _revoke_on_delete_rule(inputs: dict[str, Any]) -> Problems:
    if not isinstance(inputs["revoke_on_delete"], bool) and not _is_unknown(inputs["revoke_on_delete"]):
        yield "revoke_on_delete", "revoke_on_delete must be true or false"


def _csr_rule(inputs: dict[str, Any]) -> Problems:
    csr_pem = inputs["csr_pem"]
    if csr_pem is None or _is_unknown(csr_pem):
        return
    try:
        csr = x509.parse_csr(str(csr_pem))
    except ValueError as error:
        yield "csr_pem", f"csr_pem is not usable: {error}"
        return
    inputs["key_algorithm"] = csr.key_algorithm
    common_name, sans = inputs.get("common_name"), inputs["subject_alternative_names"]
    if isinstance(common_name, str) and isinstance(sans, list) and not _is_unknown(sans):
        asked = {common_name, *sans}
        in_csr = {*csr.names, *([csr.common_name.lower()] if csr.common_name else [])}
        if csr.common_name is not None and csr.common_name.lower() != common_name:
            yield "csr_pem", f"csr_pem has common name {csr.common_name!r} but common_name is {common_name!r}"
        elif in_csr != asked:
            wanted = sorted(asked)
            yield (
                "csr_pem",
                f"csr_pem names {sorted(in_csr)} differ from common_name and subject_alternative_names {wanted}",
            )


def _identity_rule(inputs: dict[str, Any]) -> Problems:
    formats = (
        ("profile", aws_rules.is_profile_name, aws_rules.PROFILE_NAME),
        ("assume_role_arn", aws_rules.is_iam_role_arn, aws_rules.IAM_ROLE_ARN),
        ("assume_role_session_name", aws_rules.is_role_session_name, aws_rules.ROLE_SESSION_NAME),
        ("assume_role_external_id", aws_rules.is_external_id, aws_rules.EXTERNAL_ID),
    )
    for key, rule, what in formats:
        value = inputs[key]
        if value is not None and not _is_unknown(value) and not rule(value):
            yield key, f"{key} {value!r} is not {what}"
    if inputs["assume_role_arn"] is None:
        for key in ("assume_role_session_name", "assume_role_external_id"):
            if inputs[key] is not None and not _is_unknown(inputs[key]):
                yield key, f"{key} is set but assume_role_arn is not: set the role to assume, or unset {key}"


def _throttle_rule(inputs: dict[str, Any]) -> Problems:
    minutes = inputs["throttle_retry_minutes"]
    if _is_unknown(minutes):
        return
    number = isinstance(minutes, int | float) and not isinstance(minutes, bool)
    if not number or not 0 < minutes <= MAX_THROTTLE_RETRY_MINUTES:
        yield (
            "throttle_retry_minutes",
            (
                f"throttle_retry_minutes must be a number of minutes above 0 and at most {MAX_THROTTLE_RETRY_MINUTES}, "
                f"got {minutes!r}"
            ),
        )


#: In order: the CA ARN sets the region and partition, the names are normalised before the CSR is compared.
_RULES = (
    _ca_arn_rule,
    _names_rule,
    _key_algorithm_rule,
    _days_rule,
    _template_rule,
    _revoke_on_delete_rule,
    _csr_rule,
    _identity_rule,
    _throttle_rule,
)


def _ca_problem(inputs: dict[str, Any]) -> tuple[str, str] | None:
    """Check the request against the CA itself, when the CA can be read now (`create` checks again)."""
    try:
        ca = describe_ca(inputs, max_age=CA_CACHE_SECONDS)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return ("ca_arn", f"ca_arn {inputs['ca_arn']!r}: no such certificate authority")
        return None  # access denied, throttled, a server error: not a verdict on the inputs
    except BotoCoreError:
        return None  # no credentials, unknown profile, endpoint unreachable
    problem = validity_problem(inputs["validity_days"], ca, datetime.now(UTC))
    return ("validity_days", problem) if problem else None


# ---------------------------------------------------------------------------------------------------------
# the provider
# ---------------------------------------------------------------------------------------------------------


class CertificateProvider(pulumi.dynamic.ResourceProvider):
    """CRUD for `Certificate` against ACM PCA. Stateless: see the module docstring."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = _normalised(news)
        failures = [CheckFailure(prop, reason) for rule in _RULES for prop, reason in rule(inputs)]
        if not failures and not any(_is_unknown(inputs.get(key)) for key in (*ACCESS_INPUTS, "validity_days")):
            problem = _ca_problem(inputs)
            if problem:
                failures.append(CheckFailure(*problem))
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in IDENTITY_INPUTS if olds.get(key) != news.get(key)]
        renew_before = news.get("renew_before_days")
        if (
            olds.get("not_after")
            and isinstance(renew_before, int)
            and "not_after" not in replaces
            and aws_rules.renewal_due(x509.parse_iso_utc(olds["not_after"]), renew_before, datetime.now(UTC))
        ):
            replaces.append("not_after")
        # State written before an input existed lacks it: the default is no change.
        defaults = {"throttle_retry_minutes": DEFAULT_THROTTLE_RETRY_MINUTES, "revoke_on_delete": True}
        in_place = [
            key for key in SETTING_INPUTS if olds.get(key, defaults.get(key)) != news.get(key, defaults.get(key))
        ]
        return DiffResult(
            changes=bool(replaces or in_place),
            replaces=replaces,
            stables=["certificate_arn"] if not replaces else [],
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        ca = describe_ca(props)
        if ca["status"] != "ACTIVE":
            raise ValueError(
                f"the CA {props['ca_arn']} is {ca['status']}; it issues certificates only when ACTIVE "
                "(activate it, or make the certificate depend on the CA's activation)"
            )
        problem = validity_problem(int(props["validity_days"]), ca, datetime.now(UTC))
        if problem:
            raise ValueError(problem)
        key_pem, csr_pem = _key_and_csr(props)
        # A fresh token per create(): every attempt inside this call (throttled, 5xx) reuses it, so AWS answers
        # a retry with the first certificate; another create() with the same CSR must get a new certificate,
        # not the one (maybe revoked since) that AWS would return for a token reused within 5 minutes.
        certificate_arn = pca_client.call(
            Target.of(props),
            "IssueCertificate",
            _throttle_budget(props),
            CertificateAuthorityArn=props["ca_arn"],
            Csr=csr_pem.encode(),
            SigningAlgorithm=x509.signing_algorithm_for(ca["key_algorithm"]),
            TemplateArn=props["template_arn"],
            Validity={"Value": int(props["validity_days"]), "Type": "DAYS"},
            IdempotencyToken=secrets.token_hex(16),
        )["CertificateArn"]
        outs = _collect_issued(props, certificate_arn, csr_pem)
        return CreateResult(certificate_arn, {**props, **outs, "private_key_pem": key_pem})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            outs = _fetch_certificate(props, id_, wait=False)
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                return ReadResult("", {})  # AWS says it does not exist: let `refresh` drop it
            if error_code(error) == "RequestInProgressException":
                return ReadResult(id_, props)  # not an answer about the certificate: keep it as stored
            raise
        # GetCertificate returns issued, expired and revoked certificates alike: it exists.
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
            _revoke(props, props["serial"])
        except ClientError as error:
            if error_code(error) in ("RequestAlreadyProcessedException", "ResourceNotFoundException"):
                return  # already revoked, or the certificate or its CA no longer exists
            if error_code(error) != "InvalidStateException":
                raise
            _explain_invalid_state(id_, props, error)


def _key_and_csr(props: dict[str, Any]) -> tuple[str, str]:
    """`(private_key_pem, csr_pem)`: the supplied CSR (and no key), or a new key and its CSR."""
    if props.get("csr_pem"):
        return "", str(props["csr_pem"])
    names = x509.SubjectNames.parse(props["common_name"], props["subject_alternative_names"])
    key = x509.generate_private_key(props["key_algorithm"])
    return x509.private_key_pem(key), x509.build_csr(key, props["common_name"], names)


def _public_der(item: cx509.Certificate | cx509.CertificateSigningRequest) -> bytes:
    return item.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _collect_issued(props: dict[str, Any], certificate_arn: str, csr_pem: str) -> dict[str, str]:
    """Fetch what was just issued; if it cannot be used, revoke it before failing, so none is left valid."""
    outs: dict[str, str] = {}
    try:
        outs = _fetch_certificate(props, certificate_arn)
        leaf = x509.load_certificates(outs["certificate_pem"])[0]
        if _public_der(leaf) != _public_der(cx509.load_pem_x509_csr(csr_pem.encode())):
            raise ValueError(f"{certificate_arn} does not carry the public key of the CSR that was sent")
    except Exception as error:
        if not outs:
            raise RuntimeError(
                f"IssueCertificate issued {certificate_arn}, then fetching it failed ({error}); its serial is "
                "unknown, so it was not revoked: revoke it once GetCertificate returns it "
                "(aws acm-pca get-certificate, then aws acm-pca revoke-certificate)"
            ) from error
        try:
            _revoke(props, outs["serial"])
        except (ClientError, BotoCoreError) as revoke_error:
            raise RuntimeError(
                f"{error}; revoking {certificate_arn} (serial {outs['serial']}) failed too: {revoke_error}"
            ) from error
        raise RuntimeError(f"{error}; the certificate was revoked") from error
    return outs


def _explain_invalid_state(id_: str, props: dict[str, Any], error: ClientError) -> None:
    """RevokeCertificate said the CA's state forbids it: fail if the certificate stays valid, else return."""
    status = describe_ca(props)["status"]
    if status in ("DELETED", "EXPIRED"):
        return  # the CA no longer vouches for anything it issued
    if status == "DISABLED":
        raise RuntimeError(
            f"cannot revoke {id_}: its CA {props['ca_arn']} is DISABLED and revocation needs the CA enabled. "
            "Enable it (aws acm-pca update-certificate-authority --status ACTIVE) and run again, or set "
            "revoke_on_delete: false on this certificate (pulumi up) to delete it without revoking; it then "
            f"stays valid until {props.get('not_after')}"
        ) from error
    raise error


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
            "profile": None,
            "assume_role_arn": None,
            "assume_role_session_name": None,
            "assume_role_external_id": None,
            "throttle_retry_minutes": DEFAULT_THROTTLE_RETRY_MINUTES,
            **args,
            **dict.fromkeys(OUTPUTS),
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["private_key_pem"])
        opts = pulumi.ResourceOptions.merge(opts, secret)
        super().__init__(CertificateProvider(), resource_name, props, opts)
