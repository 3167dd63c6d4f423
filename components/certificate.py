"""A certificate issued by AWS Private CA from a CSR: a Pulumi dynamic resource and its provider.

The provider does what operators otherwise do by hand with `openssl req` and `aws acm-pca issue-certificate` /
`get-certificate`: it generates a key and CSR (or takes the user's CSR), issues the certificate, waits for it,
keeps the key a Pulumi secret, replaces the certificate before it expires, and revokes it when it is deleted.

Pulumi never calls these methods with Python values: the engine starts the SDK's provider host
(`python -m pulumi.dynamic`) and talks gRPC to it. Every number arrives as a float, a value not known at
preview as a `pulumi.output.Unknown` object (in `check` and `diff`), a null as a missing key, and `diff`,
`update`, `read` and `delete` get the stored *outputs*, which an older version of this provider may have
written. So every method starts from one normaliser (`normalised`) and trusts nothing else about its input.

Pulumi stores this provider in the state, pickled, and runs that stored copy on `pulumi destroy`. So the
provider object carries no state of its own (no client, no credential). AWS is reached through
`components.pca_client`, which keeps one client per region, endpoint and identity for the whole provider
process; the identity is the stack's (`profile`, `assume_role_*` inputs: names and ARNs, never a credential).
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi.dynamic
from botocore.exceptions import BotoCoreError, ClientError
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, UpdateResult
from pulumi.output import Unknown

from components import pca_client, x509
from components.pca_client import IdempotencyToken, OutcomeUnknown, Target, error_code
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

#: Pulumi's marker for a value not known until apply (a property of a resource that does not exist yet): what
#: the engine sends on the wire, and what `normalised` turns every `pulumi.output.Unknown` object into.
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
INPUTS = (*IDENTITY_INPUTS, *SETTING_INPUTS)
_ROLE_INPUTS = ("assume_role_arn", "assume_role_session_name", "assume_role_external_id")
#: How the provider reaches AWS; the CA is read again when one of them changes.
ACCESS_INPUTS = ("ca_arn", "region", "endpoint_url", "profile", *_ROLE_INPUTS)
#: Inputs that are numbers: the wire makes them floats, `normalised` makes whole ones ints again.
NUMBER_INPUTS = ("validity_days", "renew_before_days", "throttle_retry_minutes")
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
#: What a missing or null input means. String inputs also take theirs when empty.
DEFAULTS: Mapping[str, Any] = {
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
}
_STRING_INPUTS = (
    "key_algorithm",
    "template_arn",
    "csr_pem",
    "region",
    "endpoint_url",
    "profile",
    *_ROLE_INPUTS,
)


# Bounded waiting: GetCertificate answers RequestInProgressException until the CA has issued.
ISSUE_WAIT_SECONDS = 300.0
POLL_INITIAL_DELAY = 0.5
POLL_MAX_DELAY = 8.0
#: How long what was read of a CA is trusted: one read serves every certificate of a preview or `up`
#: (`check` and `create` alike).
CA_CACHE_SECONDS = 60.0
#: Where to look for a certificate whose IssueCertificate outcome is unknown: the CA's audit report lists
#: every certificate it issued (ARN, serial, subject, issue time).
AUDIT_REPORT_GUIDE = "https://docs.aws.amazon.com/privateca/latest/userguide/PcaAuditReport.html"


class CertificateError(RuntimeError):
    """A failure the provider explains: what happened, to which certificate or CA, and what to do."""


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
    """Whether `normalised` marked the value as not known yet: the whole value, or one element of a list."""
    return value == UNKNOWN or (isinstance(value, list) and any(item == UNKNOWN for item in value))


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------------------
# one normaliser, for every method
# ---------------------------------------------------------------------------------------------------------


def _marked(value: Any) -> Any:
    """`pulumi.output.Unknown` objects replaced by `UNKNOWN`, in lists and maps too."""
    if isinstance(value, Unknown):
        return UNKNOWN
    if isinstance(value, list):
        return [_marked(item) for item in value]
    if isinstance(value, dict):
        return {key: _marked(item) for key, item in value.items()}
    return value


def normalised(props: Mapping[str, Any] | None) -> dict[str, Any]:
    """Props as every method of the provider sees them, whichever door they came through.

    - `pulumi.output.Unknown` objects (what the host hands `check` and `diff` at preview) become `UNKNOWN`, in
      lists too, so that one test (`_is_unknown`) recognises a value not known yet;
    - whole floats of the number inputs become ints (the wire carries every number as a float: 30.0 is 30);
    - a missing or null input takes its default (the wire drops nulls; state written before an input existed
      lacks it), and so does an empty string input; `renew_before_days` defaults to a third of a known
      validity and `region` to the CA's;
    - the engine's own keys (`__provider`; Pulumi reserves every `__` key) are dropped. Other keys stay: `check`
      refuses those that are not inputs, and the stored outputs are what `diff`, `read` and `delete` work on.
    """
    values = {key: _marked(value) for key, value in (props or {}).items() if not key.startswith("__")}
    for key, default in DEFAULTS.items():
        value = values.get(key)
        if value is None or (key in _STRING_INPUTS and value == ""):
            values[key] = list(default) if isinstance(default, list) else default
    for key in NUMBER_INPUTS:
        value = values[key]
        if isinstance(value, float) and value.is_integer():
            values[key] = int(value)
    validity = values["validity_days"]
    if values["renew_before_days"] is None and _is_whole(validity) and validity > 0:
        values["renew_before_days"] = aws_rules.renew_before_days(validity, None)
    issuer = aws_rules.parse_ca_arn(values.get("ca_arn"))
    if values["region"] is None and issuer:
        values["region"] = issuer["region"]
    return values


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


def _throttle_budget(props: Mapping[str, Any]) -> float:
    minutes = props.get("throttle_retry_minutes")
    if not isinstance(minutes, int | float) or isinstance(minutes, bool) or not 0 < minutes <= 10**6:
        minutes = DEFAULT_THROTTLE_RETRY_MINUTES
    return float(minutes) * 60


def _deadline(props: Mapping[str, Any]) -> float:
    """When retries of throttled calls stop: one budget for everything one method does."""
    return time.monotonic() + _throttle_budget(props)


def describe_ca(
    props: Mapping[str, Any], *, max_age: float = 0.0, deadline: float | None = None, reuse_errors: bool = False
) -> _CertificateAuthority:
    """What the certificate depends on from its CA: key algorithm, usage mode, state and expiry.

    With `max_age`, an answer read less than that many seconds ago by this process is reused (an error too, with
    `reuse_errors`), and concurrent callers for one CA wait for a single DescribeCertificateAuthority. `deadline`
    bounds the retries of a throttled read (default: the props' budget, from now).
    """
    target = Target.of(props)
    key = (target, str(props["ca_arn"]))
    with _ca_lock:
        lock = _ca_locks.setdefault(key, threading.Lock())
    with lock:
        cached = _ca_cache.get(key)
        fresh = max_age > 0 and cached is not None and time.monotonic() - cached[0] < max_age
        if cached is not None and fresh and (reuse_errors or not isinstance(cached[1], Exception)):
            outcome = cached[1]
        else:
            try:
                outcome = _read_ca(target, key[1], _deadline(props) if deadline is None else deadline)
            except (ClientError, BotoCoreError) as error:
                outcome = error
            _ca_cache[key] = (time.monotonic(), outcome)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _read_ca(target: Target, ca_arn: str, deadline: float) -> _CertificateAuthority:
    answer = pca_client.call(target, "DescribeCertificateAuthority", deadline, CertificateAuthorityArn=ca_arn)
    ca = answer["CertificateAuthority"]
    not_after = ca.get("NotAfter")
    return {
        "key_algorithm": ca["CertificateAuthorityConfiguration"]["KeyAlgorithm"],
        "usage_mode": ca.get("UsageMode", "GENERAL_PURPOSE"),
        "status": ca.get("Status", ""),
        "not_after": not_after.astimezone(UTC) if not_after else None,
    }


def forget_cached_cas() -> None:
    """Forget what was read of CAs, as a new provider process would (tests and benches)."""
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


def _fetch_certificate(
    props: Mapping[str, Any], certificate_arn: str, *, deadline: float, wait: bool = True
) -> dict[str, str]:
    """GetCertificate, waiting (bounded) while the CA is still issuing; the outputs derived from it."""
    target = Target.of(props)
    started = time.monotonic()
    wait_until = min(started + ISSUE_WAIT_SECONDS, max(deadline, started))
    delay = POLL_INITIAL_DELAY
    while True:
        try:
            answer = pca_client.call(
                target,
                "GetCertificate",
                deadline,
                CertificateAuthorityArn=props["ca_arn"],
                CertificateArn=certificate_arn,
            )
            break
        except ClientError as error:
            if not wait or error_code(error) != "RequestInProgressException":
                raise
            if time.monotonic() + delay > wait_until:
                raise TimeoutError(
                    f"{certificate_arn} was still being issued after {time.monotonic() - started:.0f} seconds"
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


def _revoke(props: Mapping[str, Any], serial: str, deadline: float) -> None:
    pca_client.call(
        Target.of(props),
        "RevokeCertificate",
        deadline,
        CertificateAuthorityArn=props["ca_arn"],
        CertificateSerial=serial,
        RevocationReason="CESSATION_OF_OPERATION",
    )


def _where(props: Mapping[str, Any]) -> str:
    """Where and as whom the provider calls AWS, for messages (names only, never a credential)."""
    place = f"endpoint {props['endpoint_url']}" if props.get("endpoint_url") else f"region {props.get('region')}"
    who = [f"profile {props['profile']}"] if props.get("profile") else []
    who += [f"role {props['assume_role_arn']}"] if props.get("assume_role_arn") else []
    return f"ACM PCA at {place}" + (f" as {', '.join(who)}" if who else "")


@contextmanager
def _explained(action: str, props: Mapping[str, Any]) -> Iterator[None]:
    """What botocore raises when AWS cannot be reached at all (no connection, no credentials, no such profile),
    as an error that says which call, where and as whom."""
    try:
        yield
    except BotoCoreError as error:
        raise CertificateError(f"{action}: could not call {_where(props)}: {error}") from error


# ---------------------------------------------------------------------------------------------------------
# check: one rule per input (each yields (property, reason) and may normalise its input)
# ---------------------------------------------------------------------------------------------------------

Problems = Iterator[tuple[str, str]]


def _keys_rule(inputs: dict[str, Any]) -> Problems:
    for key in sorted(set(inputs) - set(INPUTS)):
        if key in OUTPUTS:
            yield key, f"{key} is an output of the certificate, set by the provider; it cannot be an input"
            continue
        close = difflib.get_close_matches(key, INPUTS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"the inputs are {', '.join(INPUTS)}"
        yield key, f"{key!r} is not an input of Certificate; {hint}"


def _ca_arn_rule(inputs: dict[str, Any]) -> Problems:
    ca_arn = inputs.get("ca_arn")
    if ca_arn is None or ca_arn == "":
        yield "ca_arn", "ca_arn is required: the ARN of an ACM Private CA"
    elif not _is_unknown(ca_arn) and not aws_rules.parse_ca_arn(ca_arn):
        yield (
            "ca_arn",
            f"ca_arn {ca_arn!r} is not a CA ARN (arn:aws:acm-pca:<region>:<account>:certificate-authority/<id>)",
        )


def _region_rule(inputs: dict[str, Any]) -> Problems:
    region = inputs["region"]
    if region is None or _is_unknown(region):
        return
    if not aws_rules.is_region(region):
        yield "region", f"region {region!r} is not {aws_rules.is_region.what}"
        return
    issuer = aws_rules.parse_ca_arn(inputs.get("ca_arn"))
    if issuer and region != issuer["region"]:
        yield "region", f"region {region!r} differs from the CA's region {issuer['region']!r}"


def _name_problem(name: str) -> str | None:
    try:
        x509.SubjectNames.parse(name, [])
    except ValueError as error:
        return str(error)
    return None


def _names_rule(inputs: dict[str, Any]) -> Problems:
    common_name, sans = inputs.get("common_name"), inputs["subject_alternative_names"]
    if not isinstance(sans, list) and not _is_unknown(sans):
        yield "subject_alternative_names", "subject_alternative_names must be a list of names"
        return
    entries: list[Any] = sans if isinstance(sans, list) else []
    for index, name in enumerate(entries):
        if name is None or (isinstance(name, str) and not name.strip()):
            yield (
                "subject_alternative_names",
                (
                    f"subject_alternative_names has an empty ({'null' if name is None else 'blank'}) entry at "
                    f"position {index}; every entry must be a DNS name or an IP address"
                ),
            )
            return
        if not isinstance(name, str):
            yield (
                "subject_alternative_names",
                f"subject_alternative_names entry {index} is {name!r}, not a string: a DNS name or an IP address",
            )
            return
    if common_name is None or (isinstance(common_name, str) and not common_name.strip()):
        yield "common_name", "common_name is required: a DNS name or an IP address"
        return
    if not isinstance(common_name, str):
        yield "common_name", f"common_name must be a string, a DNS name or an IP address, got {common_name!r}"
        return
    cn = common_name.strip().rstrip(".").lower()
    if not _is_unknown(common_name):
        if len(cn) > MAX_COMMON_NAME_LENGTH:
            yield (
                "common_name",
                (
                    f"common_name {cn!r} is {len(cn)} characters; X.509 allows at most {MAX_COMMON_NAME_LENGTH} "
                    "in a common name: use a shorter common_name and put this name in subject_alternative_names"
                ),
            )
            return
        problem = _name_problem(common_name)
        if problem:
            yield "common_name", f"common_name: {problem}"
            return
    for name in entries:
        problem = None if name == UNKNOWN else _name_problem(name)
        if problem:
            yield "subject_alternative_names", f"subject_alternative_names: {problem}"
            return
    if _is_unknown(common_name) or _is_unknown(sans):
        return  # known names are checked; the set is normalised once every name is known
    names = x509.SubjectNames.parse(common_name, entries)
    inputs["common_name"] = cn
    inputs["subject_alternative_names"] = sorted(names.as_set() - {cn})


def _key_algorithm_rule(inputs: dict[str, Any]) -> Problems:
    key_algorithm = inputs["key_algorithm"]
    if not _is_unknown(key_algorithm) and key_algorithm not in x509.KEY_ALGORITHMS:
        yield "key_algorithm", x509.unsupported_key_algorithm(key_algorithm)


def _days_rule(inputs: dict[str, Any]) -> Problems:
    validity, renew_before = inputs["validity_days"], inputs["renew_before_days"]
    for key, value in (("validity_days", validity), ("renew_before_days", renew_before)):
        if not _is_unknown(value) and value is not None and not _is_whole(value):
            yield key, f"{key} must be a whole number of days, got {value!r}"
    if not _is_whole(validity):
        return
    if validity <= 0:
        yield "validity_days", f"validity_days must be positive, got {validity}"
        return  # the renewal window is measured against a validity that makes sense
    if validity > MAX_VALIDITY_DAYS:
        yield "validity_days", f"validity_days must be at most {MAX_VALIDITY_DAYS} (a century), got {validity}"
    inputs["renew_before_days"] = renew_before = aws_rules.renew_before_days(validity, renew_before)
    low, high = aws_rules.renew_before_range(validity)
    if _is_whole(renew_before) and not low <= renew_before <= high:
        yield (
            "renew_before_days",
            f"renew_before_days must be at least {low} and less than validity_days ({validity}), got {renew_before}",
        )


def _template_rule(inputs: dict[str, Any]) -> Problems:
    template = inputs["template_arn"]
    if _is_unknown(template):
        return
    if not isinstance(template, str) or len(template) > aws_rules.ARN_MAX:
        yield "template_arn", f"template_arn must be a template name or ARN of at most {aws_rules.ARN_MAX} characters"
        return
    issuer = aws_rules.parse_ca_arn(inputs.get("ca_arn"))
    try:
        inputs["template_arn"] = template_arn_for(template, issuer["partition"] if issuer else "aws")
    except ValueError as error:
        yield "template_arn", f"template_arn: {error}"


def _revoke_on_delete_rule(inputs: dict[str, Any]) -> Problems:
    if not isinstance(inputs["revoke_on_delete"], bool) and not _is_unknown(inputs["revoke_on_delete"]):
        yield "revoke_on_delete", "revoke_on_delete must be true or false"


def _csr_rule(inputs: dict[str, Any]) -> Problems:
    csr_pem = inputs["csr_pem"]
    if csr_pem is None or _is_unknown(csr_pem):
        return
    if not isinstance(csr_pem, str):
        yield "csr_pem", f"csr_pem must be a PEM certificate signing request, got {type(csr_pem).__name__}"
        return
    size = len(csr_pem.encode())
    if size > aws_rules.CSR_MAX_BYTES:
        yield "csr_pem", f"csr_pem is {size} bytes; IssueCertificate takes a CSR of at most {aws_rules.CSR_MAX_BYTES}"
        return
    try:
        csr = x509.parse_csr(csr_pem)
    except ValueError as error:
        yield "csr_pem", f"csr_pem is not usable: {error}"
        return
    inputs["key_algorithm"] = csr.key_algorithm
    common_name, sans = inputs.get("common_name"), inputs["subject_alternative_names"]
    if (
        isinstance(common_name, str)
        and not _is_unknown(common_name)
        and isinstance(sans, list)
        and not _is_unknown(sans)
    ):
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


_size_keys: dict[str, x509.PrivateKey] = {}
_size_keys_lock = threading.Lock()


def _generated_csr_size(common_name: str, names: list[str], key_algorithm: str) -> int | None:
    """The size in bytes of the CSR `create` would generate, when it may exceed IssueCertificate's limit; None
    when it certainly does not (a generous bound on the DER of the names, a key and a signature, as PEM)."""
    bound = (sum(len(name) + 16 for name in [common_name, *names]) + 2200) * 3 // 2
    if bound <= aws_rules.CSR_MAX_BYTES:
        return None
    with _size_keys_lock:  # one key per algorithm and process, only for such long name lists
        key = _size_keys.get(key_algorithm) or _size_keys.setdefault(
            key_algorithm, x509.generate_private_key(key_algorithm)
        )
    subject = x509.SubjectNames.parse(common_name, names)
    return len(x509.build_csr(key, common_name, subject).encode())


def _generated_csr_rule(inputs: dict[str, Any]) -> Problems:
    common_name, sans, key_algorithm = (
        inputs.get("common_name"),
        inputs["subject_alternative_names"],
        inputs["key_algorithm"],
    )
    if inputs["csr_pem"] is not None or key_algorithm not in x509.KEY_ALGORITHMS:
        return
    if not isinstance(common_name, str) or not isinstance(sans, list) or not all(isinstance(n, str) for n in sans):
        return
    if _is_unknown(common_name) or _is_unknown(sans):
        return
    try:
        size = _generated_csr_size(common_name, sans, key_algorithm)
    except ValueError:
        return  # a name the names rule refuses
    if size is not None and size > aws_rules.CSR_MAX_BYTES:
        yield (
            "subject_alternative_names",
            (
                f"the CSR for these {len(sans) + 1} names would be {size} bytes; IssueCertificate takes a CSR of at "
                f"most {aws_rules.CSR_MAX_BYTES}: spread the names over several certificates"
            ),
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


def _endpoint_rule(inputs: dict[str, Any]) -> Problems:
    url = inputs["endpoint_url"]
    if url is None or _is_unknown(url):
        return
    if not isinstance(url, str):
        yield "endpoint_url", f"endpoint_url must be a URL like http://127.0.0.1:5000, got {url!r}"
        return
    problem = aws_rules.endpoint_url_problem(url)
    if problem is not None:
        yield "endpoint_url", f"endpoint_url {problem}"


#: In order: unknown keys first; the CA ARN sets the partition, the names are normalised before the CSR is
#: compared, and the size of a generated CSR is known once the names and the key algorithm are.
_RULES = (
    _keys_rule,
    _ca_arn_rule,
    _region_rule,
    _names_rule,
    _key_algorithm_rule,
    _days_rule,
    _template_rule,
    _revoke_on_delete_rule,
    _csr_rule,
    _generated_csr_rule,
    _identity_rule,
    _throttle_rule,
    _endpoint_rule,
)


def _problems(inputs: dict[str, Any]) -> list[tuple[str, str]]:
    """Every rule's verdict on `inputs` (normalised), which the rules normalise further."""
    return [problem for rule in _RULES for problem in rule(inputs)]


def _require_valid(action: str, inputs: dict[str, Any]) -> None:
    """`create` and `update` hold their inputs to `check`'s rules: the engine always checks first, a direct caller
    may not, and a value not known yet can never be acted on."""
    problems = _problems(inputs)
    problems += [(key, f"{key} is not known yet") for key in INPUTS if _is_unknown(inputs.get(key))]
    if problems:
        raise CertificateError(f"{action} refused its inputs: " + "; ".join(reason for _, reason in problems))


def _ca_problem(inputs: dict[str, Any]) -> tuple[str, str] | None:
    """Check the request against the CA itself, when the CA can be read now (`create` checks again)."""
    try:
        ca = describe_ca(inputs, max_age=CA_CACHE_SECONDS, deadline=time.monotonic(), reuse_errors=True)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return ("ca_arn", f"ca_arn {inputs['ca_arn']!r}: no such certificate authority")
        return None  # access denied, throttled, a server error: not a verdict on the inputs
    except BotoCoreError:
        return None  # no credentials, unknown profile, endpoint unreachable
    problem = validity_problem(inputs["validity_days"], ca, datetime.now(UTC))
    return ("validity_days", problem) if problem else None


# ---------------------------------------------------------------------------------------------------------
# what the state says of a certificate (it may be damaged, or written by an older version)
# ---------------------------------------------------------------------------------------------------------


def _issuing_ca(action: str, id_: str, props: Mapping[str, Any]) -> str:
    """The CA that issued the certificate `id_`: its ARN is the first part of the certificate's."""
    ca_arn = aws_rules.issuing_ca_arn(id_)
    if ca_arn is None:
        raise CertificateError(
            f"{action}: the resource ID {id_!r} is not an ACM PCA certificate ARN (<CA ARN>/certificate/<id>), so "
            f"the state does not say which certificate this is (stored ca_arn: {props.get('ca_arn')!r}). If no such "
            "certificate exists, remove the resource from the state with `pulumi state delete <URN>`"
        )
    return ca_arn


def _stored_leaf(props: Mapping[str, Any]) -> cx509.Certificate | None:
    pem = props.get("certificate_pem")
    try:
        return x509.load_certificates(pem)[0] if isinstance(pem, str) else None
    except (ValueError, IndexError):
        return None


def _stored_expiry(props: Mapping[str, Any]) -> datetime | None:
    """`not_after`, or the stored certificate's own expiry when `not_after` cannot be read; None if neither."""
    text = props.get("not_after")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")) if isinstance(text, str) else None
    except ValueError:
        moment = None
    if moment is not None and moment.tzinfo is not None:
        return moment.astimezone(UTC)
    leaf = _stored_leaf(props)
    return x509.not_after(leaf) if leaf is not None else None


def _stored_serial(props: Mapping[str, Any]) -> str | None:
    """`serial` as RevokeCertificate takes it, or the stored certificate's own; None if neither is readable."""
    serial = props.get("serial")
    if isinstance(serial, str) and aws_rules.is_certificate_serial(serial):
        return serial
    leaf = _stored_leaf(props)
    return x509.colon_hex(leaf.serial_number) if leaf is not None else None


# ---------------------------------------------------------------------------------------------------------
# the provider
# ---------------------------------------------------------------------------------------------------------


class CertificateProvider(pulumi.dynamic.ResourceProvider):
    """CRUD for `Certificate` against ACM PCA. Stateless: see the module docstring."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = normalised(news)
        failures = [CheckFailure(prop, reason) for prop, reason in _problems(inputs)]
        if not failures and not any(_is_unknown(inputs.get(key)) for key in (*ACCESS_INPUTS, "validity_days")):
            problem = _ca_problem(inputs)
            if problem:
                failures.append(CheckFailure(*problem))
        return CheckResult(inputs, failures)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        old, new = normalised(olds), normalised(news)
        replaces = [key for key in IDENTITY_INPUTS if old[key] != new[key]]
        renew_before = new["renew_before_days"]
        if _is_whole(renew_before):  # unknown at this preview: the in-place diff below shows it changes
            expiry = _stored_expiry(old)
            if expiry is None and not replaces:
                raise CertificateError(
                    f"diff: the state of {id_} has no readable expiry (not_after {old.get('not_after')!r}, and no "
                    "readable certificate_pem), so whether it is due for renewal is unknown: run `pulumi refresh` "
                    "to read the certificate again from AWS"
                )
            if expiry is not None and aws_rules.renewal_due(expiry, renew_before, datetime.now(UTC)):
                replaces.append("not_after")
        in_place = [key for key in SETTING_INPUTS if old[key] != new[key]]
        return DiffResult(
            changes=bool(replaces or in_place),
            replaces=replaces,
            stables=["certificate_arn"] if not replaces else [],
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = normalised(props)
        _require_valid("create", inputs)
        deadline = _deadline(inputs)  # one budget bounds the whole create()
        with _explained("create", inputs):
            ca = describe_ca(inputs, max_age=CA_CACHE_SECONDS, deadline=deadline)
            if ca["status"] != "ACTIVE":
                raise CertificateError(
                    f"the CA {inputs['ca_arn']} is {ca['status']}; it issues certificates only when ACTIVE "
                    "(activate it, or make the certificate depend on the CA's activation)"
                )
            problem = validity_problem(inputs["validity_days"], ca, datetime.now(UTC))
            if problem:
                raise CertificateError(problem)
            key_pem, csr_pem = _key_and_csr(inputs)
            certificate_arn = _issue(inputs, ca, csr_pem, deadline)
            outs = _collect_issued(inputs, certificate_arn, csr_pem, deadline)
        return CreateResult(
            certificate_arn, {**{key: inputs[key] for key in INPUTS}, **outs, "private_key_pem": key_pem}
        )

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        inputs = normalised(props)
        inputs["ca_arn"] = _issuing_ca("read", id_, inputs)
        with _explained("read", inputs):
            try:
                outs = _fetch_certificate(inputs, id_, deadline=_deadline(inputs), wait=False)
            except ClientError as error:
                if error_code(error) == "ResourceNotFoundException":
                    return ReadResult("", {})  # AWS says it does not exist: let `refresh` drop it
                if error_code(error) == "RequestInProgressException":
                    return ReadResult(id_, props)  # not an answer about the certificate: keep it as stored
                raise
        # GetCertificate returns issued, expired and revoked certificates alike: it exists.
        stored = {key: value for key, value in props.items() if not key.startswith("__")}
        return ReadResult(id_, {**stored, "ca_arn": inputs["ca_arn"], **outs})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        old, new = normalised(olds), normalised(news)
        changed = [key for key in IDENTITY_INPUTS if old[key] != new[key]]
        if changed:
            raise CertificateError(
                f"update of {id_} cannot change {', '.join(changed)}: that needs another certificate, which only a "
                "replacement issues (diff asks Pulumi for one). Nothing was changed"
            )
        _require_valid("update", new)
        stored = {key: value for key, value in olds.items() if not key.startswith("__")}
        return UpdateResult({**stored, **{key: new[key] for key in SETTING_INPUTS}})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        inputs = normalised(props)
        if inputs["revoke_on_delete"] is False:
            return
        expiry = _stored_expiry(inputs)
        if expiry is not None and expiry <= datetime.now(UTC):
            return  # expired: no client accepts it any more, and CRLs drop expired entries anyway
        inputs["ca_arn"] = _issuing_ca("delete", id_, inputs)
        deadline = _deadline(inputs)
        with _explained("delete", inputs):
            serial = _stored_serial(inputs) or _serial_from_aws(id_, inputs, deadline)
            if serial is None:
                return  # AWS does not know the certificate, or it has expired
            try:
                _revoke(inputs, serial, deadline)
            except ClientError as error:
                if error_code(error) in ("RequestAlreadyProcessedException", "ResourceNotFoundException"):
                    return  # already revoked, or the certificate or its CA no longer exists
                if error_code(error) != "InvalidStateException":
                    raise
                _explain_invalid_state(id_, inputs, error, deadline)


def _serial_from_aws(id_: str, props: Mapping[str, Any], deadline: float) -> str | None:
    """The serial of a certificate whose state lost it, from GetCertificate; None when there is nothing to revoke."""
    try:
        outs = _fetch_certificate(props, id_, deadline=deadline, wait=False)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return None
        raise CertificateError(
            f"delete: the state of {id_} has no readable serial and GetCertificate failed ({error}), so it was not "
            f"revoked: revoke it with aws acm-pca get-certificate --certificate-authority-arn {props['ca_arn']} "
            f"--certificate-arn {id_} (for its serial), then aws acm-pca revoke-certificate "
            f"--certificate-authority-arn {props['ca_arn']} --certificate-serial <serial> "
            "--revocation-reason CESSATION_OF_OPERATION"
        ) from error
    if x509.parse_iso_utc(outs["not_after"]) <= datetime.now(UTC):
        return None
    return outs["serial"]


def _key_and_csr(props: Mapping[str, Any]) -> tuple[str, str]:
    """`(private_key_pem, csr_pem)`: the supplied CSR (and no key), or a new key and its CSR."""
    if props.get("csr_pem"):
        return "", str(props["csr_pem"])
    names = x509.SubjectNames.parse(props["common_name"], props["subject_alternative_names"])
    key = x509.generate_private_key(props["key_algorithm"])
    return x509.private_key_pem(key), x509.build_csr(key, props["common_name"], names)


def _issue(props: Mapping[str, Any], ca: _CertificateAuthority, csr_pem: str, deadline: float) -> str:
    """IssueCertificate; its ARN. The token is new for each create(): every attempt inside this call (throttled,
    5xx, no answer) reuses it while AWS matches it, so AWS answers a retry with the first certificate; another
    create() with the same CSR must get a new certificate, not the one (maybe revoked since) that AWS would
    return for a token reused within 5 minutes."""
    token = IdempotencyToken()
    try:
        answer = pca_client.call(
            Target.of(props),
            "IssueCertificate",
            deadline,
            token=token,
            CertificateAuthorityArn=props["ca_arn"],
            Csr=csr_pem.encode(),
            SigningAlgorithm=x509.signing_algorithm_for(ca["key_algorithm"]),
            TemplateArn=props["template_arn"],
            Validity={"Value": int(props["validity_days"]), "Type": "DAYS"},
        )
    except OutcomeUnknown as unknown:
        raise CertificateError(_unknown_outcome(props, unknown)) from unknown.cause
    return str(answer["CertificateArn"])


def _unknown_outcome(props: Mapping[str, Any], unknown: OutcomeUnknown) -> str:
    """What to tell the operator when AWS may have issued a certificate that nothing tracks."""
    ca_arn, token = props["ca_arn"], unknown.token
    first = x509.iso_utc(token.first_sent_at) if token.first_sent_at else "?"
    last = x509.iso_utc(token.last_sent_at) if token.last_sent_at else "?"
    cause = f" (last error: {unknown.cause})" if unknown.cause else ""
    return (
        f"IssueCertificate from CA {ca_arn} for {props['common_name']} {unknown.reason}{cause}, after an attempt "
        f"that got no answer: AWS may have issued a certificate for idempotency token {token.value}, requested "
        f"between {first} and {last}, that no state tracks. The provider stopped rather than risk a second one. "
        f"Find it in the CA's audit report (aws acm-pca create-certificate-authority-audit-report "
        f"--certificate-authority-arn {ca_arn} --s3-bucket-name <bucket> --audit-report-response-format JSON; "
        f"{AUDIT_REPORT_GUIDE}): a certificate for CN={props['common_name']} issued in that interval. Revoke it "
        f"with aws acm-pca revoke-certificate --certificate-authority-arn {ca_arn} --certificate-serial <serial> "
        "--revocation-reason CESSATION_OF_OPERATION, then run pulumi up again"
    )


def _public_der(item: cx509.Certificate | cx509.CertificateSigningRequest) -> bytes:
    return item.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _collect_issued(props: Mapping[str, Any], certificate_arn: str, csr_pem: str, deadline: float) -> dict[str, str]:
    """Fetch what was just issued; if it cannot be used, revoke it before failing, so none is left valid."""
    outs: dict[str, str] = {}
    ca_arn = props["ca_arn"]
    try:
        outs = _fetch_certificate(props, certificate_arn, deadline=deadline)
        leaf = x509.load_certificates(outs["certificate_pem"])[0]
        if _public_der(leaf) != _public_der(cx509.load_pem_x509_csr(csr_pem.encode())):
            raise ValueError(f"{certificate_arn} does not carry the public key of the CSR that was sent")
    except Exception as error:
        if not outs:
            raise CertificateError(
                f"IssueCertificate issued {certificate_arn} from CA {ca_arn}, then fetching it failed ({error}); its "
                "serial is unknown, so it was not revoked: revoke it once GetCertificate returns it "
                f"(aws acm-pca get-certificate --certificate-authority-arn {ca_arn} --certificate-arn "
                f"{certificate_arn} for its serial, then aws acm-pca revoke-certificate --certificate-authority-arn "
                f"{ca_arn} --certificate-serial <serial> --revocation-reason CESSATION_OF_OPERATION)"
            ) from error
        try:
            _revoke(props, outs["serial"], deadline)
        except (ClientError, BotoCoreError) as revoke_error:
            raise CertificateError(
                f"{error}; revoking {certificate_arn} (serial {outs['serial']}) failed too: {revoke_error}. Revoke it "
                f"with aws acm-pca revoke-certificate --certificate-authority-arn {ca_arn} --certificate-serial "
                f"{outs['serial']} --revocation-reason CESSATION_OF_OPERATION"
            ) from error
        raise CertificateError(f"{error}; the certificate was revoked") from error
    return outs


def _explain_invalid_state(id_: str, props: Mapping[str, Any], error: ClientError, deadline: float) -> None:
    """RevokeCertificate said the CA's state forbids it: fail if the certificate stays valid, else return."""
    status = describe_ca(props, deadline=deadline)["status"]
    if status in ("DELETED", "EXPIRED"):
        return  # the CA no longer vouches for anything it issued
    if status == "DISABLED":
        raise CertificateError(
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
            **DEFAULTS,
            "subject_alternative_names": [],
            **args,
            **dict.fromkeys(OUTPUTS),
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["private_key_pem"])
        opts = pulumi.ResourceOptions.merge(opts, secret)
        super().__init__(CertificateProvider(), resource_name, props, opts)
