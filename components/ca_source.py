"""Where a stack's CA comes from: created here (root or subordinate) or read from another stack.

A CA this stack does not create is known at preview: `caStack`'s outputs (the engine reads the other stack's state
before the program runs) or `caParentArn`'s CA (a read). What settings could not check is checked here against
it, before any resource is created: its partition and region, its usage mode, its end, the size of the chain it
adds. A problem is raised as `StackSettingsError`, which Pulumi prints as the list of problems alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pulumi
import pulumi_aws as aws
from cryptography import x509 as crypto_x509
from pulumi.runtime.sync_await import _sync_await

from components import x509
from components.private_ca import PrivateCa, subordinate_end_date
from components.rules import aws as aws_rules
from components.rules import sizes
from components.rules.names import DNS_NAME_MAX
from components.settings import CaSettings, full_chain_problem
from components.settings_error import StackSettingsError

#: Outputs a CA-owning stack exports and `caMode: stack` consumers require (README: "Stack outputs").
CA_ARN_OUTPUT = "caArn"
CA_TRUST_BUNDLE_OUTPUT = "caTrustBundlePem"
CA_USAGE_MODE_OUTPUT = "caUsageMode"
#: Exported only when the CA publishes a CRL: certificates it issues then carry a distribution point.
CA_CRL_BUCKET_OUTPUT = "caCrlBucketName"

_T = TypeVar("_T")


@dataclass(frozen=True)
class CaSource:
    arn: pulumi.Output[str]
    """The CA's ARN; when this stack creates the CA, it resolves only after activation."""
    trust_bundle_pem: pulumi.Output[str]
    usage_mode: pulumi.Output[str]
    acm_issuer_arn: pulumi.Output[str]
    """The ARN to give ACM for private certificates: when this stack grants ACM its permission on the CA, it
    resolves only once that permission exists (PrivateCa.acm_issuer_arn)."""
    private_ca: PrivateCa | None
    """The CA component when this stack owns the CA, else None."""

    def validity_days(self, asked: int) -> pulumi.Output[int]:
        """`asked`, or a preview-time error naming the setting when the CA cannot issue that long."""

        def check(usage_mode: str) -> int:
            problem = aws_rules.short_lived_problem("certValidityDays", asked, usage_mode)
            if problem is not None:
                raise StackSettingsError([problem])
            return asked

        return self.usage_mode.apply(check)


@dataclass(frozen=True)
class KnownCa:
    """A CA this stack reads, as known at preview."""

    setting: str
    """The setting that names it: caStack or caParentArn."""
    arn: object
    trust_bundle_pem: object
    """The CA's certificate, then its chain up to the root."""
    usage_mode: object
    crl: bool
    """Whether certificates it issues carry a CRL distribution point."""


def resolve_ca(ca: CaSettings) -> CaSource:
    """Create the CA this stack owns, or reference the one another stack owns (`caMode: stack`); a CA or parent
    read at preview is checked first (`known_ca_problems`)."""
    reference = pulumi.StackReference("ca-stack", stack_name=ca.stack) if ca.stack else None
    known = _read_stack_ca(reference) if reference is not None else _read_parent_ca(ca.parent_arn)
    if known is not None:
        problems = known_ca_problems(ca, known, datetime.now(UTC))
        if problems:
            raise StackSettingsError(problems)
    if ca.mode == "stack":
        assert reference is not None  # settings guarantee caStack with caMode stack
        arn = reference.require_output(CA_ARN_OUTPUT)
        return CaSource(
            arn=arn,
            trust_bundle_pem=reference.require_output(CA_TRUST_BUNDLE_OUTPUT),
            usage_mode=reference.require_output(CA_USAGE_MODE_OUTPUT),
            acm_issuer_arn=arn,
            private_ca=None,
        )
    parent_arn = ca.parent_arn or (reference.require_output(CA_ARN_OUTPUT) if reference else None)
    private_ca = PrivateCa(
        "ca",
        ca.private_ca_args(parent_arn),
        # A CA is long-lived: `pulumi destroy` and replacements stop at it unless caProtect is false.
        opts=pulumi.ResourceOptions(protect=ca.protect),
    )
    return CaSource(
        private_ca.arn, private_ca.trust_bundle_pem, private_ca.usage_mode, private_ca.acm_issuer_arn, private_ca
    )


def _now(awaitable: Awaitable[_T]) -> _T:
    """Wait for `awaitable` while the program runs, as the SDK's synchronous invokes do: the values read here
    are known at preview, and checking them before any resource is registered is the point."""
    return _sync_await(awaitable)


def _read_stack_ca(reference: pulumi.StackReference) -> KnownCa | None:
    """`caStack`'s CA from its outputs, or None while they are unknown (the certificate provider checks the CA
    again when it issues)."""
    if not _now(reference.outputs.is_known()):
        return None
    read: Mapping[str, Any] | None = _now(reference.outputs.future())
    outputs = read or {}
    return KnownCa(
        setting="caStack",
        arn=outputs.get(CA_ARN_OUTPUT),
        trust_bundle_pem=outputs.get(CA_TRUST_BUNDLE_OUTPUT),
        usage_mode=outputs.get(CA_USAGE_MODE_OUTPUT),
        crl=bool(outputs.get(CA_CRL_BUCKET_OUTPUT)),
    )


def _read_parent_ca(parent_arn: str | None) -> KnownCa | None:
    """`caParentArn`'s CA, read from AWS (DescribeCertificateAuthority and GetCertificateAuthorityCertificate)."""
    if not parent_arn:
        return None
    parent = aws.acmpca.get_certificate_authority(arn=parent_arn)
    crl = any(
        crl_configuration.enabled
        for configuration in parent.revocation_configurations or []
        for crl_configuration in configuration.crl_configurations or []
    )
    return KnownCa(
        setting="caParentArn",
        arn=parent_arn,
        trust_bundle_pem=x509.join_pem(parent.certificate or "", parent.certificate_chain or ""),
        usage_mode=parent.usage_mode,
        crl=crl,
    )


def known_ca_problems(ca: CaSettings, known: KnownCa, now: datetime) -> list[str]:
    """Everything about a CA read at preview that this stack's settings cannot work with (each problem names
    the setting to change), or []: `caMode: stack` issues from it, `caMode: subordinate` is signed by it."""
    required = {CA_ARN_OUTPUT: known.arn, CA_TRUST_BUNDLE_OUTPUT: known.trust_bundle_pem}
    required[CA_USAGE_MODE_OUTPUT] = known.usage_mode
    missing = [name for name, value in required.items() if not isinstance(value, str) or not value]
    if missing:
        return [
            f"{known.setting}: {ca.stack!r} exports no {', '.join(missing)}; caStack must name a stack of this "
            "project that owns a CA (caMode root or subordinate), deployed"
        ]
    arn, usage_mode, bundle = str(known.arn), str(known.usage_mode), str(known.trust_bundle_pem)
    try:
        certificates = x509.load_certificates(bundle)
    except ValueError:
        certificates = []
    if not certificates:
        return [f"{known.setting}: the CA's certificate ({CA_TRUST_BUNDLE_OUTPUT}) is not PEM certificates"]
    requirements = ca.requirements
    problems: list[str] = []
    if aws_rules.parse_ca_arn(arn) is None:
        problems.append(f"{known.setting}: the CA's ARN {arn!r} is not an ACM PCA certificate authority ARN")
    else:
        placement = aws_rules.arn_placement_problem(
            arn, partition=requirements.partition, region=requirements.region, regional=True
        )
        if placement is not None:
            problems.append(f"{known.setting}: the CA it names: {placement}")
    if ca.mode == "stack":
        problems += _issuing_problems(ca, known, x509.not_after(certificates[0]), now, usage_mode=usage_mode)
        problems += _chain_problems(ca, known, bundle, issuer=certificates[0])
    else:
        problems += _parent_problems(ca, known, usage_mode, bundle, now)
    return problems


def _issuing_problems(
    ca: CaSettings, known: KnownCa, ca_end: datetime, now: datetime, *, usage_mode: str | None
) -> list[str]:
    """The backend certificate issued by a CA that ends at `ca_end`, in `usage_mode` (None: a CA this stack
    creates, whose usage mode settings checked)."""
    requirements = ca.requirements
    days = requirements.certificate_days
    if days is None:
        return []
    problems = []
    short_lived = aws_rules.short_lived_problem("certValidityDays", days, usage_mode or "")
    if short_lived is not None:
        problems.append(f"certValidityDays: {short_lived} ({known.setting}'s CA is {usage_mode})")
    if requirements.acm_domain_name and usage_mode == "SHORT_LIVED_CERTIFICATE":
        problems.append(
            f"albDomainName: ACM cannot issue from {known.setting}'s CA, a SHORT_LIVED_CERTIFICATE CA; use "
            "albCertificateArn"
        )
    if now + timedelta(days=days) > ca_end:
        left = max(0, (ca_end - now).days)
        problems.append(
            f"certValidityDays: {days} days from now is after the issuing CA expires ({x509.iso_utc(ca_end)}), and "
            f"AWS issues nothing past its CA's expiry: at most {left} days"
            + (" (raise caValidityYears to give the CA a longer life)" if ca.mode == "subordinate" else "")
        )
    return problems


def _chain_problems(
    ca: CaSettings, known: KnownCa, chain_pem: str, *, issuer: crypto_x509.Certificate | None
) -> list[str]:
    """The hosts' parameters hold the CA chain (ca-bundle) and the certificate with it (full-chain). `issuer`:
    the CA that issues the backend certificate, None when it is the subordinate this stack creates, whose own
    certificate (estimated) goes in front of `chain_pem`, its parent's."""
    requirements = ca.requirements
    if not requirements.chain_in_parameters:
        return []  # the per-host mode stores no chain in a parameter
    limit = aws_rules.PARAMETER_VALUE_MAX["Advanced"]
    own_size = requirements.own_certificate_size if issuer is None else 0
    ca_chain_size = own_size + len(chain_pem)
    if ca_chain_size > limit:
        return [
            f"{known.setting}: the CA chain would be {ca_chain_size:,} characters; the hosts' ca-bundle parameter "
            f"holds at most {limit:,} (Parameter Store's advanced tier)"
        ]
    if requirements.certificate_days is None:
        return []
    if issuer is None:
        issuer_values = [value for value in vars(ca.subject).values() if value]
        issuer_key, crl_host = ca.key_algorithm, requirements.crl_host_length
    else:
        issuer_values = [str(attribute.value) for attribute in issuer.subject]
        crl_host = DNS_NAME_MAX if known.crl else 0
        try:
            issuer_key = x509.key_algorithm_of(issuer.public_key())
        except ValueError:
            issuer_key = sizes.LARGEST_KEY
    problem = full_chain_problem(
        leaf_common_name=requirements.certificate_common_name,
        leaf_names=requirements.certificate_names,
        leaf_key_algorithm=requirements.certificate_key_algorithm,
        issuer=issuer_values,
        issuer_key_algorithm=issuer_key,
        crl_host_length=crl_host,
        ca_chain_size=ca_chain_size,
    )
    return [f"certNames: {problem}"] if problem else []


def _parent_problems(ca: CaSettings, known: KnownCa, usage_mode: str, bundle: str, now: datetime) -> list[str]:
    """A subordinate this stack creates, signed by `known`: it must end before its parent and after today."""
    if usage_mode == "SHORT_LIVED_CERTIFICATE":
        return [
            f"{known.setting}: the parent CA is a SHORT_LIVED_CERTIFICATE CA, which signs certificates of at most "
            f"{aws_rules.SHORT_LIVED_MAX_DAYS} days, never a CA certificate: use a GENERAL_PURPOSE parent"
        ]
    try:
        end = x509.parse_iso_utc(subordinate_end_date(ca.validity_years, bundle))
    except ValueError as error:
        return [f"caValidityYears: {error}"]
    if end <= now:
        return [
            f"caValidityYears: the subordinate CA would end on {x509.iso_utc(end)}, which has already passed (the "
            "end is counted from its parent CA's start): raise caValidityYears, keeping it before the parent's expiry"
        ]
    return _issuing_problems(ca, known, end, now, usage_mode=None) + _chain_problems(ca, known, bundle, issuer=None)
