"""Stack settings: the one place project config is read, validated and turned into typed values.

`parse_settings` is pure (a mapping of config keys to values, the `aws:` provider settings and the regions AWS has
in, `Settings` out) so every rule is tested without Pulumi; `load_settings` feeds it from `pulumi.Config` and
botocore's region list, and raises its error as a `pulumi.RunError`. Every error names the setting and what is
allowed, and all of them are reported together, before any resource exists; a key the project does not declare is
refused with the closest known key, and a setting the stack's mode ignores is refused too. The rules themselves
live in `components/rules`, shared with the components; what a CA read at preview must allow
(`CaRequirements`) is checked in `components.ca_source` once it is known.

Settings also build each component's typed arguments (`CaSettings.private_ca_args`, `Settings.certificate_args`,
`network_args`, `backend_args`, and the key delivery's: `ssm_key_delivery_args` in the `shared` mode,
`per_host_delivery_args` in the `per-host` mode), so `__main__.py` only wires components together. Adding a
setting is its `Pulumi.yaml` entry, its line in `DECLARED`, its field and rule here, and its argument.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from components.issuer.contract import MAX_BODY_BYTES
from components.rules import aws as aws_rules
from components.rules import names, network, sizes
from components.rules.aws import AL2023_AMI_PARAMETER, KEY_STORAGE_STANDARDS, SHORT_LIVED_MAX_DAYS, USAGE_MODES
from components.rules.names import shown

if TYPE_CHECKING:  # the argument types only: settings stay importable without Pulumi
    import pulumi

    from components.certificate import CertificateArgs
    from components.encrypted_backend import EncryptedBackendArgs
    from components.key_delivery import KeyDelivery
    from components.network import NetworkArgs
    from components.per_host_delivery import PerHostDeliveryArgs
    from components.private_ca import PrivateCaArgs
    from components.ssm_key_delivery import SsmKeyDeliveryArgs

__all__ = [
    "AL2023_AMI_PARAMETER",
    "CONFIG_KEYS",
    "DECLARED",
    "DEFAULTS",
    "HOST_CERTIFICATE_MODES",
    "LIST_KEYS",
    "PER_HOST_VALIDITY_DAYS_RANGE",
    "SHORT_LIVED_MAX_DAYS",
    "BackendSettings",
    "CaRequirements",
    "CaSettings",
    "CaSubject",
    "CertificateSettings",
    "IssuerSettings",
    "Settings",
    "SettingsError",
    "botocore_regions",
    "ec2_private_dns_wildcard",
    "full_chain_problem",
    "load_settings",
    "parse_settings",
]

CA_MODES = ("root", "subordinate", "stack")
#: `hostCertificates`: one certificate for the fleet through SSM (`shared`), or a key and a certificate per host from
#: the per-host issuer (`per-host`).
HOST_CERTIFICATE_MODES = ("shared", "per-host")
#: certValidityDays in the per-host mode: each host renews at a third of its certificate's life, and the expiry alarm
#: (whole days, at least 1) must sit inside that window, so at least 4 days; at most a year (the issuer's limit).
PER_HOST_VALIDITY_DAYS_RANGE = (4, 365)
#: Hosts renew their own certificates when this share of its life or less is left (scripts/cert-agent).
PER_HOST_RENEWAL_SHARE = 3
#: The longest EC2 private DNS name a host can have (IMDS `local-hostname` of `ip-name` hosts), less its domain.
_LONGEST_EC2_HOST_LABEL = "ip-255-255-255-255"


class SettingsError(ValueError):
    """One or more settings are wrong; the message lists each with what is allowed."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid stack configuration:\n  - " + "\n  - ".join(self.problems))


@dataclass(frozen=True)
class CaSubject:
    common_name: str
    organization: str | None = None
    organizational_unit: str | None = None
    country: str | None = None
    state: str | None = None
    locality: str | None = None


@dataclass(frozen=True)
class CaRequirements:
    """What a CA known only at preview must allow: the CA `caStack` provides (caMode stack) or the parent that
    signs this stack's subordinate (`caStack` or `caParentArn`). `components.ca_source` checks it before creating
    anything, and refuses naming the setting at fault."""

    partition: str
    region: str
    """The stack's region: the certificate provider and the subordinate's signing call use the CA there."""
    chain_in_parameters: bool = True
    """Whether the CA chain and the certificate with it are stored in SSM parameters (shared mode), whose size is
    limited; the per-host mode stores neither."""
    certificate_days: int | None = None
    """The backend certificate's validity (None: no backend): it must end before the CA does."""
    certificate_common_name: str = ""
    certificate_names: tuple[str, ...] = ()
    """The names on the backend certificate (its common name first), for the size of its chain."""
    certificate_key_algorithm: str = "EC_prime256v1"
    acm_domain_name: bool = False
    """albDomainName asks ACM for a certificate from the CA, which a SHORT_LIVED_CERTIFICATE CA cannot give."""
    own_certificate_size: int = 0
    """caMode subordinate: the estimated PEM size of this stack's CA certificate, between the backend
    certificate and the parent's chain; 0 otherwise."""
    crl_host_length: int = 0
    """The longest CRL distribution point host the backend certificate can carry (0: no CRL known)."""


@dataclass(frozen=True)
class CaSettings:
    """Where the CA comes from and, when this stack creates it, how."""

    mode: str
    """root: create a root CA; subordinate: create one signed by a parent; stack: use another stack's CA."""
    subject: CaSubject
    key_algorithm: str
    validity_years: int
    usage_mode: str
    permanent_deletion_days: int
    key_storage_security_standard: str
    crl_enabled: bool
    crl_expiration_days: int
    crl_custom_cname: str | None
    acm_permission: bool
    protect: bool
    """Protect the CA (and its CRL bucket) this stack creates against deletion and replacement."""
    stack: str | None
    """The StackReference that provides the CA (mode stack) or the parent CA (mode subordinate)."""
    parent_arn: str | None
    requirements: CaRequirements = CaRequirements("aws", "us-east-1")
    """What the CA or parent read at preview must allow (set by `parse_settings`)."""

    def private_ca_args(self, parent_arn: pulumi.Input[str] | None) -> PrivateCaArgs:
        """`PrivateCaArgs` of the CA this stack creates (modes root and subordinate); `parent_arn` resolves
        `caParentArn` or `caStack`'s CA."""
        return {
            "ca_type": "ROOT" if self.mode == "root" else "SUBORDINATE",
            "subject": {
                "common_name": self.subject.common_name,
                "organization": self.subject.organization,
                "organizational_unit": self.subject.organizational_unit,
                "country": self.subject.country,
                "state": self.subject.state,
                "locality": self.subject.locality,
            },
            "key_algorithm": self.key_algorithm,
            "validity_years": self.validity_years,
            "usage_mode": self.usage_mode,
            "permanent_deletion_days": self.permanent_deletion_days,
            "key_storage_security_standard": self.key_storage_security_standard,
            "parent_ca_arn": parent_arn,
            "crl": {"expiration_days": self.crl_expiration_days, "custom_cname": self.crl_custom_cname}
            if self.crl_enabled
            else None,
            "acm_permission": self.acm_permission,
        }


@dataclass(frozen=True)
class CertificateSettings:
    common_name: str | None
    """None: the first of `names`, else the hosts' private DNS wildcard."""
    names: tuple[str, ...]
    key_algorithm: str
    validity_days: int
    renew_before_days: int | None
    template: str
    throttle_retry_minutes: int = aws_rules.DEFAULT_THROTTLE_RETRY_MINUTES
    """How long the provider retries calls AWS throttles (`certThrottleRetryMinutes`)."""

    def server_names(self, region: str) -> list[str]:
        """The names on the certificate and in nginx: the hosts' own EC2 names first, so host-to-host TLS
        verifies out of the box, then `certNames`."""
        wildcard = ec2_private_dns_wildcard(region)
        # nginx takes the names without the trailing dot of a fully qualified name.
        return [wildcard, *(name.removesuffix(".") for name in self.names if name != wildcard)]

    def subject_common_name(self, region: str) -> str:
        """certCommonName, else the first of certNames, else the hosts' EC2 wildcard."""
        return self.common_name or (self.names[0] if self.names else self.server_names(region)[0])


@dataclass(frozen=True)
class IssuerSettings:
    """The per-host issuer (`hostCertificates: per-host`): the Lambda function hosts ask for their certificates."""

    reserved_concurrency: int
    """`issuerReservedConcurrency`: the function's reserved concurrent executions."""
    log_retention_days: int
    """`issuerLogRetentionDays`: how long its log group keeps each decision."""


@dataclass(frozen=True)
class AwsIdentity:
    """The stack's AWS identity, for the certificate provider: `aws:profile` and the first `aws:assumeRoles`
    entry, so certificates are issued as the rest of the stack is deployed (names and ARNs, no credential)."""

    profile: str | None = None
    assume_role_arn: str | None = None
    assume_role_session_name: str | None = None
    assume_role_external_id: str | None = None


@dataclass(frozen=True)
class BackendSettings:
    network_cidr: str | None
    """Create an isolated VPC with this CIDR instead of using vpc_id and the subnet IDs."""
    vpc_id: str
    alb_subnet_ids: tuple[str, ...]
    host_subnet_ids: tuple[str, ...]
    alb_internal: bool
    alb_ingress_cidrs: tuple[str, ...]
    peer_security_group_ids: tuple[str, ...]
    host_count: int
    instance_type: str
    http_redirect: bool
    health_check_path: str
    alb_certificate_arn: str | None
    alb_domain_name: str | None
    ami_parameter: str
    host_ami_id: str | None
    """The hosts' AMI; None: the one amiParameter names at the first deployment, kept from then on."""
    host_min_count: int
    """The Auto Scaling group's minimum size (hostCount is its desired capacity)."""
    host_max_count: int | None
    """None: the backend's default, room for the hosts an instance refresh adds."""
    host_min_healthy_percent: int
    """Share of hostCount an instance refresh keeps in service."""
    host_root_volume_gib: int | None
    """Root volume size; None: the AMI's own."""
    parameter_kms_key_arn: str | None
    """An existing KMS key for the TLS parameters; None: the stack creates one."""
    parameter_writer_arns: tuple[str, ...]
    """Who the created key lets write the parameters: `parameterWriterArns`, else the `aws:assumeRoles` role;
    empty only with `parameterKmsKeyArn`."""
    cert_expiry_alarm_days: int
    cert_expiry_alarm_topic_arn: str | None


@dataclass(frozen=True)
class Settings:
    region: str
    ca: CaSettings
    certificate: CertificateSettings | None
    """None when the stack deploys no backend (the `pki` stack)."""
    backend: BackendSettings | None
    endpoint_url: str | None
    """ACM PCA endpoint for the certificate provider (the local emulator); None on AWS."""
    parameter_prefix: str
    warnings: tuple[str, ...] = ()
    """Legal but risky combinations, for the program to log."""
    aws_identity: AwsIdentity = AwsIdentity()
    host_certificates: str = "shared"
    """`hostCertificates`: `shared` (one certificate for the fleet, delivered through SSM) or `per-host`."""
    issuer: IssuerSettings | None = None
    """The per-host issuer's settings; None unless `hostCertificates` is `per-host`."""

    def _parts(self) -> tuple[CertificateSettings, BackendSettings]:
        if self.certificate is None or self.backend is None:
            raise ValueError("backendEnabled is false: this stack has no certificate or backend")
        return self.certificate, self.backend

    def server_names(self) -> list[str]:
        """The names on the backend certificate and in nginx: the hosts' own EC2 names first, so host-to-host TLS
        verifies out of the box, then `certNames`."""
        certificate, _ = self._parts()
        return certificate.server_names(self.region)

    def _shared(self) -> None:
        if self.host_certificates != "shared":
            raise ValueError("hostCertificates is per-host: each host gets its own certificate from the issuer")

    def certificate_args(self, *, ca_arn: pulumi.Input[str], validity_days: pulumi.Input[int]) -> CertificateArgs:
        """`CertificateArgs` of the backend certificate (shared mode); `validity_days` as the CA source confirmed
        it."""
        certificate, _ = self._parts()
        self._shared()
        names_ = self.server_names()
        return {
            "ca_arn": ca_arn,
            "common_name": certificate.subject_common_name(self.region),
            "subject_alternative_names": names_,
            "key_algorithm": certificate.key_algorithm,
            "validity_days": validity_days,
            "renew_before_days": certificate.renew_before_days,
            "template_arn": certificate.template,
            "region": self.region,
            "endpoint_url": self.endpoint_url,
            # Issue as the stack's AWS identity (aws:profile, first aws:assumeRoles entry): names, no credential.
            "profile": self.aws_identity.profile,
            "assume_role_arn": self.aws_identity.assume_role_arn,
            "assume_role_session_name": self.aws_identity.assume_role_session_name,
            "assume_role_external_id": self.aws_identity.assume_role_external_id,
            "throttle_retry_minutes": certificate.throttle_retry_minutes,
        }

    def network_args(self) -> NetworkArgs | None:
        """`NetworkArgs` of the isolated network, or None when the stack uses an existing VPC."""
        _, backend = self._parts()
        return {"cidr_block": backend.network_cidr} if backend.network_cidr else None

    def backend_args(
        self,
        *,
        acm_issuer_arn: pulumi.Input[str],
        key_delivery: KeyDelivery,
        network_ids: tuple[pulumi.Input[str], pulumi.Input[Sequence[str]]] | None = None,
    ) -> EncryptedBackendArgs:
        """`EncryptedBackendArgs` of the backend. `acm_issuer_arn` is the CA ARN given to ACM for an `albDomainName`
        certificate; `key_delivery` how the hosts get their key material (see `ssm_key_delivery_args`);
        `network_ids` is the created network's (VPC ID, subnet IDs)."""
        _, backend = self._parts()
        args: EncryptedBackendArgs = {
            "vpc_id": network_ids[0] if network_ids else backend.vpc_id,
            "alb_subnet_ids": network_ids[1] if network_ids else list(backend.alb_subnet_ids),
            "host_subnet_ids": network_ids[1] if network_ids else list(backend.host_subnet_ids),
            "internal": backend.alb_internal,
            "ingress_cidrs": list(backend.alb_ingress_cidrs),
            "peer_security_group_ids": list(backend.peer_security_group_ids),
            "host_count": backend.host_count,
            "instance_type": backend.instance_type,
            "health_check_path": backend.health_check_path,
            "http_redirect": backend.http_redirect,
            "server_names": self.server_names(),
            "backend_name": self.backend_name,
            "region": self.region,
            "ami_parameter": backend.ami_parameter,
            "host_min_count": backend.host_min_count,
            "min_healthy_percent": backend.host_min_healthy_percent,
            "certificate_alarm_days": backend.cert_expiry_alarm_days,
            "key_delivery": key_delivery,
        }
        # Unset settings leave the component's defaults in place.
        if backend.host_ami_id is not None:
            args["ami_id"] = backend.host_ami_id
        if backend.host_max_count is not None:
            args["host_max_count"] = backend.host_max_count
        if backend.host_root_volume_gib is not None:
            args["root_volume_gib"] = backend.host_root_volume_gib
        if backend.cert_expiry_alarm_topic_arn is not None:
            args["alarm_topic_arn"] = backend.cert_expiry_alarm_topic_arn
        if backend.alb_certificate_arn:
            args["listener_certificate_arn"] = backend.alb_certificate_arn
        else:
            args["listener_domain_name"] = backend.alb_domain_name or ""
            args["private_ca_arn"] = acm_issuer_arn
        return args

    def ssm_key_delivery_args(
        self,
        *,
        ca_bundle_pem: pulumi.Input[str],
        full_chain_pem: pulumi.Input[str],
        private_key_pem: pulumi.Input[str],
    ) -> SsmKeyDeliveryArgs:
        """`SsmKeyDeliveryArgs` (shared mode): the backend certificate's material, the parameters' path and their
        key."""
        _, backend = self._parts()
        self._shared()
        args: SsmKeyDeliveryArgs = {
            "full_chain_pem": full_chain_pem,
            "private_key_pem": private_key_pem,
            "ca_bundle_pem": ca_bundle_pem,
            "parameter_prefix": self.parameter_prefix,
            "parameter_writer_arns": list(backend.parameter_writer_arns),
        }
        if backend.parameter_kms_key_arn is not None:
            args["parameter_kms_key_arn"] = backend.parameter_kms_key_arn
        return args

    def per_host_delivery_args(
        self, *, ca_arn: pulumi.Input[str], ca_bundle_pem: pulumi.Input[str]
    ) -> PerHostDeliveryArgs:
        """`PerHostDeliveryArgs` (`hostCertificates: per-host`): the CA, what each host's certificate carries
        (`certNames` are the fleet-wide service names, `certValidityDays` each host's validity, `certTemplate`,
        `certKeyAlgorithm`) and the issuer's settings."""
        certificate, _ = self._parts()
        if self.issuer is None:
            raise ValueError("hostCertificates is shared: this stack has no per-host issuer")
        args: PerHostDeliveryArgs = {
            "ca_arn": ca_arn,
            "ca_bundle_pem": ca_bundle_pem,
            # In the stack's partition: the issuer's role may issue with this template ARN only.
            "template_arn": aws_rules.template_arn_for(certificate.template, self.ca.requirements.partition),
            "validity_days": certificate.validity_days,
            "service_names": list(certificate.names),
            "key_algorithm": certificate.key_algorithm,
            "reserved_concurrency": self.issuer.reserved_concurrency,
            "log_retention_days": self.issuer.log_retention_days,
        }
        if self.ca.mode != "stack":
            # The usage mode a CA this stack creates is asked for (a CA read at preview was checked then).
            args["ca_usage_mode"] = self.ca.usage_mode
        return args

    @property
    def backend_name(self) -> str:
        """The backend's name (metric dimension, alarm, KMS alias): `parameterPrefix` without its leading '/', other
        characters than letters, digits, '-' and '_' turned into '-' ('/pca-backend/dev' gives 'pca-backend-dev')."""
        return re.sub(r"[^A-Za-z0-9_-]", "-", self.parameter_prefix.strip("/"))[:64]


def ec2_private_dns_wildcard(region: str) -> str:
    """`*.ec2.internal` in us-east-1, `*.<region>.compute.internal` elsewhere: EC2's default private DNS."""
    return "*.ec2.internal" if region == "us-east-1" else f"*.{region}.compute.internal"


#: The longest value any setting takes (an external ID is 1,224 characters): longer text is refused before any
#: rule, so no message repeats kilobytes of it.
VALUE_LENGTH_MAX = 2048
#: A whole number as Pulumi hands it over: ASCII digits only (Python's int() also takes Arabic-Indic or fullwidth
#: digits), and few enough of them that int() never refuses the text (it does past 4,300 digits).
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")


def _kind(value: object) -> str:
    return {list: "a list", dict: "a map", bool: "a boolean"}.get(type(value), f"a {type(value).__name__}")


class _Reader:
    """Typed access to raw config that records every problem instead of stopping at the first."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def refused(self, key: str) -> bool:
        """Whether a problem names `key` already."""
        return any(problem.startswith(f"{key}: ") for problem in self.problems)

    def given(self, key: str) -> bool:
        """Whether the stack sets `key` to something other than its Pulumi.yaml default (which Pulumi hands over
        as if the stack had set it)."""
        value = self.raw.get(key)
        if value is None or value == "" or value == []:
            return False
        return _comparable(value) != _comparable(DEFAULTS.get(key))

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.raw.get(key)
        if value is None or value == "":
            return default
        problem = text_problem(value)
        if problem is not None:
            self.problem(key, problem)
            return default
        return value

    def choice(self, key: str, allowed: Sequence[str], default: str) -> str:
        value = self.string(key, default) or default
        if value not in allowed:
            self.problem(key, f"{shown(value)} is not allowed; allowed: {', '.join(allowed)}")
            return default
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value.strip()):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(key, f"must be a whole number from {low} to {high} (digits 0-9), got {shown(value)}")
            return default
        if not low <= value <= high:
            self.problem(key, f"must be from {low} to {high}, got {value}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {shown(value)}")
            return default
        return value

    def strings(self, key: str, check: Callable[[str], bool] | None = None, what: str = "") -> tuple[str, ...]:
        value = self.raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(key, f"must be a list of strings, got {shown(value)}")
            return ()
        too_long = [item for item in value if len(item) > VALUE_LENGTH_MAX]
        if too_long:
            self.problem(key, f"{shown(too_long[0])} is longer than any value a setting takes ({VALUE_LENGTH_MAX})")
            return ()
        if check is not None:
            for item in value:
                if not check(item):
                    self.problem(key, f"{shown(item)} is not {what}")
        duplicates = sorted({item for item in value if value.count(item) > 1})
        if duplicates:
            self.problem(key, f"lists {', '.join(map(shown, duplicates))} more than once; list each once")
        return tuple(value)


def text_problem(value: object) -> str | None:
    """Why `value` is not usable text for a string setting, or None."""
    if not isinstance(value, str):
        return f"must be a string, got {_kind(value)}: {shown(value)}"
    if len(value) > VALUE_LENGTH_MAX:
        return f"is {len(value)} characters long; no setting takes more than {VALUE_LENGTH_MAX}"
    if names.has_control_characters(value):
        # Values reach X.509 subjects, nginx configuration and shell scripts: no newline may split them.
        return f"{shown(value)} contains control characters (newlines, tabs, ...); use printable text"
    return None


def _comparable(value: object) -> object:
    """A setting's value as it compares with its default: Pulumi hands scalars over as text."""
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        if _WHOLE_NUMBER.fullmatch(value.strip()):
            return int(value)
    return value


def _check(read: _Reader, key: str, problem: str | None) -> None:
    if problem is not None:
        read.problem(key, problem)


def parse_settings(
    raw: Mapping[str, Any],
    *,
    stack: str,
    project: str,
    region: object,
    aws: Mapping[str, Any] | None = None,
    regions: Mapping[str, str] | None = None,
) -> Settings:
    """Validate config (project keys without their namespace) into `Settings`, or raise `SettingsError`.

    `aws` holds the stack's `aws:` provider settings (keys without the namespace, structured values decoded).
    `regions` maps each region AWS has to its partition; None: the regions botocore ships (`botocore_regions`).
    """
    read = _Reader(raw)
    for key in raw:
        if key not in CONFIG_KEYS:
            read.problem(key, _unknown_key(key, project))
    region_known, partition = _parse_region(read, region, botocore_regions() if regions is None else regions)
    # Rules that need a region run with us-east-1 while aws:region is wrong; its own problem is reported.
    region = region_known or "us-east-1"

    ca = _parse_ca(read, stack=stack, project=project)
    backend_enabled = read.boolean("backendEnabled", True)
    mode = read.choice("hostCertificates", HOST_CERTIFICATE_MODES, "shared") if backend_enabled else "shared"
    per_host = mode == "per-host"
    certificate = _parse_certificate(read, ca, region, per_host=per_host) if backend_enabled else None

    # The certificate provider's endpoint and identity: the shared mode's (the per-host mode has no provider).
    shared = backend_enabled and not per_host
    endpoint_url = read.string("awsEndpointUrl") if shared else None
    endpoint_problem = aws_rules.endpoint_url_problem(endpoint_url) if endpoint_url else None
    _check(read, "awsEndpointUrl", endpoint_problem)
    aws_identity = (
        _parse_aws_identity(read, aws or {}, endpoint_url, compare_endpoints=endpoint_problem is None)
        if shared
        else AwsIdentity()
    )
    backend = (
        _parse_backend(read, ca, certificate, aws_identity, per_host=per_host)
        if backend_enabled and certificate
        else None
    )
    issuer = _parse_issuer(read) if backend_enabled and per_host else None
    _refuse_what_does_not_apply(read, ca, backend_enabled, backend, per_host=per_host)
    default_prefix = f"/{project}/{stack}"
    prefix = (read.string("parameterPrefix", default_prefix) or default_prefix) if shared else default_prefix
    _check(read, "parameterPrefix", aws_rules.parameter_prefix_problem(prefix))

    if region_known:
        _check_placement(read, ca, certificate, backend, aws_identity, partition=partition, region=region)
    if certificate is not None and per_host:
        _check_host_request_fits(read, certificate, region)
    elif certificate is not None:
        _check_certificate_fits(read, ca, certificate, region)
    ca = replace(ca, requirements=_ca_requirements(ca, certificate, backend, partition, region, per_host=per_host))

    if read.problems:
        raise SettingsError(read.problems)
    return Settings(
        region=region,
        ca=ca,
        certificate=certificate,
        backend=backend,
        endpoint_url=endpoint_url,
        parameter_prefix=prefix,
        warnings=tuple(read.warnings),
        aws_identity=aws_identity,
        host_certificates=mode,
        issuer=issuer,
    )


#: Settings of a CA this stack creates (caMode root or subordinate); a stack that reads its CA uses it as it is.
_CA_CREATION_KEYS = (
    "caCommonName",
    "caOrganization",
    "caOrganizationalUnit",
    "caCountry",
    "caState",
    "caLocality",
    "caKeyAlgorithm",
    "caValidityYears",
    "caUsageMode",
    "caPermanentDeletionDays",
    "caKeyStorageSecurityStandard",
    "caCrlEnabled",
    "caCrlExpirationDays",
    "caCrlCustomCname",
    "caAcmPermission",
    "caProtect",
)
#: Settings of the CRL, when caCrlEnabled publishes one.
_CRL_KEYS = ("caCrlExpirationDays", "caCrlCustomCname")


#: Settings of the shared mode only (one certificate issued by the provider, delivered through SSM), and why none
#: applies to the per-host mode.
_SHARED_ONLY_KEYS: Mapping[str, str] = {
    "certCommonName": "each host's certificate has its own EC2 name as its common name",
    "certRenewBeforeDays": "each host renews its own certificate when a third of its life is left",
    "certThrottleRetryMinutes": "it sets the certificate provider's retries, and each host retries the issuer with "
    "its own bounded back-off",
    "parameterKmsKeyArn": "no key material goes through SSM Parameter Store: each host makes its own key",
    "parameterWriterArns": "no key material goes through SSM Parameter Store: each host makes its own key",
    "parameterPrefix": "no key material goes through SSM Parameter Store: each host makes its own key",
    "awsEndpointUrl": "it is the certificate provider's endpoint, and the per-host mode has no certificate provider",
}
#: Settings of the per-host mode only: the per-host issuer's.
_PER_HOST_ONLY_KEYS = ("issuerReservedConcurrency", "issuerLogRetentionDays")


def _refuse_what_does_not_apply(
    read: _Reader, ca: CaSettings, backend_enabled: bool, backend: BackendSettings | None, *, per_host: bool
) -> None:
    """A setting the stack's mode ignores is refused, not silently dropped: whoever wrote it expects an effect."""
    if backend_enabled and per_host:
        for key, reason in _SHARED_ONLY_KEYS.items():
            if read.given(key):
                read.problem(
                    key, f"applies only to hostCertificates shared, and this stack is per-host: {reason}; remove it"
                )
    elif backend_enabled:
        for key in (key for key in _PER_HOST_ONLY_KEYS if read.given(key)):
            read.problem(
                key,
                "applies only to the per-host issuer, and hostCertificates is shared: remove it, or set "
                "hostCertificates: per-host",
            )
    if ca.mode == "stack":
        for key in (key for key in _CA_CREATION_KEYS if read.given(key)):
            read.problem(
                key,
                "applies only to a CA this stack creates, and caMode is stack, which uses caStack's CA as it is: "
                "remove it here (set it on the stack that owns the CA)",
            )
    elif not ca.crl_enabled:
        for key in (key for key in _CRL_KEYS if read.given(key)):
            read.problem(key, "applies only to a published CRL, and caCrlEnabled is false: remove it or enable the CRL")
    if not backend_enabled:
        backend_keys = (key for key in CONFIG_KEYS if not key.startswith("ca") and key != "backendEnabled")
        for key in (key for key in backend_keys if read.given(key)):
            read.problem(
                key,
                "applies only to the certificate and backend, and backendEnabled is false (a CA-only stack): remove it",
            )
    if backend is not None and backend.host_ami_id and read.given("amiParameter"):
        read.problem("amiParameter", "names the hosts' AMI only while hostAmiId is empty, and hostAmiId is set")


def _crl_host_length(ca: CaSettings, region: str) -> int:
    """The longest host a certificate's CRL distribution point can name: the custom CNAME, or the bucket's S3
    host (a bucket name has at most 63 characters); 0 without a CRL."""
    if not ca.crl_enabled:
        return 0
    return len(ca.crl_custom_cname or f"{'b' * 63}.s3.{region}.amazonaws.com.cn")


def full_chain_problem(
    *,
    leaf_common_name: str,
    leaf_names: Sequence[str],
    leaf_key_algorithm: str,
    issuer: Sequence[str],
    issuer_key_algorithm: str,
    crl_host_length: int,
    ca_chain_size: int,
) -> str | None:
    """Why the backend certificate with the CA chain (`ca_chain_size` characters of PEM) would not fit the hosts'
    full-chain parameter, or None. Shared with `components.ca_source`, which knows the CA chain at preview."""
    leaf = sizes.pem_size(
        sizes.certificate_size(
            subject=[leaf_common_name],
            issuer=issuer,
            key_algorithm=leaf_key_algorithm,
            issuer_key_algorithm=issuer_key_algorithm,
            names=leaf_names,
            crl_host_length=crl_host_length,
        )
    )
    limit = aws_rules.PARAMETER_VALUE_MAX["Advanced"]
    if leaf + ca_chain_size <= limit:
        return None
    return (
        f"the certificate's full chain would be about {leaf + ca_chain_size:,} characters (the certificate about "
        f"{leaf:,} with {len(leaf_names)} names, the CA certificates {ca_chain_size:,}); the hosts' full-chain "
        f"parameter holds at most {limit:,} (Parameter Store's advanced tier): use fewer or shorter names"
    )


def _check_certificate_fits(read: _Reader, ca: CaSettings, certificate: CertificateSettings, region: str) -> None:
    """The backend certificate's CSR fits IssueCertificate, and its full chain a parameter, estimated from what
    settings know: the names, the key algorithms and, for a CA this stack creates, its subject. The chain of a CA
    read at preview is added by `components.ca_source`."""
    common_name = certificate.subject_common_name(region).removesuffix(".")
    leaf_names = list(dict.fromkeys([common_name, *certificate.server_names(region)]))
    csr = sizes.pem_size(
        sizes.csr_size(common_name=common_name, names=leaf_names, key_algorithm=certificate.key_algorithm),
        "CERTIFICATE REQUEST",
    )
    if csr > aws_rules.ISSUE_CERTIFICATE_CSR_MAX:
        read.problem(
            "certNames",
            f"the certificate request for these {len(leaf_names)} names would be about {csr:,} bytes; "
            f"IssueCertificate takes at most {aws_rules.ISSUE_CERTIFICATE_CSR_MAX:,}: use fewer or shorter names",
        )
    subject = [value for value in vars(ca.subject).values() if value]
    if ca.mode == "root":
        issuer, issuer_key, ca_chain = subject, ca.key_algorithm, _own_certificate_size(ca, issuer=subject)
    elif ca.mode == "subordinate":
        # The parent's part of the chain is added once the parent is known.
        issuer, issuer_key, ca_chain = subject, ca.key_algorithm, _own_certificate_size(ca, issuer=["P"])
    else:
        issuer, issuer_key, ca_chain = ["C"], "EC_prime256v1", 0  # the least a CA can be: the rest once known
    _check(
        read,
        "certNames",
        full_chain_problem(
            leaf_common_name=common_name,
            leaf_names=leaf_names,
            leaf_key_algorithm=certificate.key_algorithm,
            issuer=issuer,
            issuer_key_algorithm=issuer_key,
            crl_host_length=_crl_host_length(ca, region) if ca.mode != "stack" else 0,
            ca_chain_size=ca_chain,
        ),
    )


def _check_host_request_fits(read: _Reader, certificate: CertificateSettings, region: str) -> None:
    """Each host's request fits what the per-host issuer reads (`contract.MAX_BODY_BYTES`): a CSR for the longest
    EC2 name of the region (its common name), every service name and a private IPv4, as the agent sends it (JSON)."""
    host = f"{_LONGEST_EC2_HOST_LABEL}.{ec2_private_dns_wildcard(region).removeprefix('*.')}"
    request_names = [host, *certificate.names, "255.255.255.255"]
    der = sizes.csr_size(common_name=host, names=request_names, key_algorithm=certificate.key_algorithm)
    pem = sizes.pem_size(der, "CERTIFICATE REQUEST")
    # JSON writes each line end of the PEM (one per 64 base64 characters, and the BEGIN and END lines) as `\n`.
    line_ends = math.ceil(4 * math.ceil(der / 3) / 64) + 2
    body = len(json.dumps({"csr": ""})) + pem + line_ends
    if body > MAX_BODY_BYTES:
        read.problem(
            "certNames",
            f"each host's request for these {len(certificate.names)} service names would be about {body:,} bytes; "
            f"the per-host issuer reads at most {MAX_BODY_BYTES:,}: use fewer or shorter names",
        )


def _own_certificate_size(ca: CaSettings, *, issuer: Sequence[str]) -> int:
    """PEM size of the CA certificate this stack creates (a root signs its own; a parent's key is the largest
    until known)."""
    subject = [value for value in vars(ca.subject).values() if value]
    root = ca.mode == "root"
    return sizes.pem_size(
        sizes.certificate_size(
            subject=subject,
            issuer=issuer,
            key_algorithm=ca.key_algorithm,
            issuer_key_algorithm=ca.key_algorithm if root else sizes.LARGEST_KEY,
            # A subordinate's certificate may name its parent's CRL, which is not known here.
            crl_host_length=0 if root else names.DNS_NAME_MAX,
        )
    )


def _ca_requirements(
    ca: CaSettings,
    certificate: CertificateSettings | None,
    backend: BackendSettings | None,
    partition: str,
    region: str,
    *,
    per_host: bool = False,
) -> CaRequirements:
    if certificate is None:
        return CaRequirements(partition, region)
    common_name = certificate.subject_common_name(region).removesuffix(".")
    return CaRequirements(
        partition=partition,
        region=region,
        # The per-host mode stores no chain in a parameter.
        chain_in_parameters=not per_host,
        certificate_days=certificate.validity_days,
        certificate_common_name=common_name,
        certificate_names=tuple(dict.fromkeys([common_name, *certificate.server_names(region)])),
        certificate_key_algorithm=certificate.key_algorithm,
        acm_domain_name=bool(backend and backend.alb_domain_name),
        own_certificate_size=_own_certificate_size(ca, issuer=["P"]) if ca.mode == "subordinate" else 0,
        crl_host_length=_crl_host_length(ca, region) if ca.mode == "subordinate" else 0,
    )


def botocore_regions() -> dict[str, str]:
    """Every region botocore knows, with its partition (botocore's endpoint data: aws, aws-cn, aws-us-gov, the
    aws-iso partitions, aws-eusc). Imported here, not at the top: settings stay importable without boto3."""
    from botocore.loaders import create_loader

    endpoints = create_loader().load_data("endpoints")
    return {region: partition["partition"] for partition in endpoints["partitions"] for region in partition["regions"]}


def _parse_region(read: _Reader, region: object, regions: Mapping[str, str]) -> tuple[str | None, str]:
    """aws:region and its partition: a region AWS has, as botocore lists them; (None, "aws") when it is not."""
    if region is None or region == "":
        read.problem("aws:region", "is required (e.g. us-east-1)")
        return None, "aws"
    problem = text_problem(region) or (
        None if aws_rules.is_region(region) else f"{shown(region)} is not {aws_rules.is_region.what}"
    )
    if problem is None:
        assert isinstance(region, str)
        problem = aws_rules.region_problem(region, regions)
        if problem is None:
            return region, regions[region]
    read.problem("aws:region", problem)
    return None, "aws"


def _check_placement(
    read: _Reader,
    ca: CaSettings,
    certificate: CertificateSettings | None,
    backend: BackendSettings | None,
    identity: AwsIdentity,
    *,
    partition: str,
    region: str,
) -> None:
    """Every ARN setting in the stack's partition, and the regional ones (KMS key, ACM certificate, SNS topic,
    parent CA) in its region. The CA read through caStack is checked once known (`components.ca_source`)."""
    arns: list[tuple[str, str | None, bool]] = [("caParentArn", ca.parent_arn, True)]
    if certificate is not None and certificate.template.startswith("arn:"):
        arns.append(("certTemplate", certificate.template, False))
    if backend is not None:
        arns += [
            ("albCertificateArn", backend.alb_certificate_arn, True),
            ("parameterKmsKeyArn", backend.parameter_kms_key_arn, True),
            ("certExpiryAlarmTopicArn", backend.cert_expiry_alarm_topic_arn, True),
            *(("parameterWriterArns", writer, False) for writer in backend.parameter_writer_arns),
        ]
    arns.append(("aws:assumeRoles", identity.assume_role_arn, False))
    for key, arn, regional in arns:
        # An ARN its own rule refused is not also placed.
        if arn and not read.refused(key):
            _check(
                read, key, aws_rules.arn_placement_problem(arn, partition=partition, region=region, regional=regional)
            )


#: The AWS provider's identity and transport settings that the certificate provider does not read, and what to
#: set instead: the environment, which both providers read (botocore and the AWS provider's SDK).
_PROVIDER_ONLY_SETTINGS: Mapping[str, str] = {
    **dict.fromkeys(
        ("accessKey", "secretKey", "token"),
        "put the keys in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), which both "
        "providers read, or better use aws:profile or aws:assumeRoles",
    ),
    "assumeRoleWithWebIdentity": "set AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE (and AWS_ROLE_SESSION_NAME) in the "
    "environment: both providers' default credential chains assume the role from them",
    "sharedCredentialsFiles": "set AWS_SHARED_CREDENTIALS_FILE in the environment, which both providers read",
    "sharedConfigFiles": "set AWS_CONFIG_FILE in the environment, which both providers read",
    "customCaBundle": "set AWS_CA_BUNDLE in the environment, which both providers read",
    "httpProxy": "set HTTP_PROXY in the environment, which both providers read",
    "httpsProxy": "set HTTPS_PROXY in the environment, which both providers read",
    "noProxy": "set NO_PROXY in the environment, which both providers read",
    "useFipsEndpoint": "set AWS_USE_FIPS_ENDPOINT=true in the environment, which both providers read",
    "useDualstackEndpoint": "set AWS_USE_DUALSTACK_ENDPOINT=true in the environment, which both providers read",
    "ec2MetadataServiceEndpoint": "set AWS_EC2_METADATA_SERVICE_ENDPOINT in the environment, which both providers read",
    "ec2MetadataServiceEndpointMode": "set AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE in the environment, which both "
    "providers read",
}
#: The `aws:assumeRoles` entry keys the certificate provider uses. `duration` is accepted too: it only sets how
#: long a session lasts, and the provider refreshes its own before it expires.
_ROLE_KEYS = ("roleArn", "sessionName", "externalId", "duration")
#: Entry keys that change what the AWS provider's session may do or how it is marked: the certificate provider's
#: session would carry none of it.
_ROLE_SESSION_KEYS = ("policy", "policyArns", "tags", "transitiveTagKeys", "sourceIdentity")


def _parse_aws_identity(
    read: _Reader, provider: Mapping[str, Any], endpoint_url: str | None, *, compare_endpoints: bool
) -> AwsIdentity:
    """The stack's identity for the certificate provider: aws:profile and one aws:assumeRoles entry. Everything
    else that decides who the AWS provider is, or where it calls, is refused: the stack must never deploy as one
    identity and issue certificates as another."""
    for key, instead in _PROVIDER_ONLY_SETTINGS.items():
        value = provider.get(key)
        if value not in (None, "", [], {}, False, "false"):
            read.problem(
                f"aws:{key}",
                f"the certificate provider does not read it, so the stack would deploy with it and issue "
                f"certificates without it; {instead}",
            )
    profile = provider.get("profile") or None
    if profile is not None:
        problem = text_problem(profile) or (
            None if aws_rules.is_profile_name(profile) else f"{shown(profile)} is not {aws_rules.PROFILE_NAME}"
        )
        if problem is not None:
            read.problem("aws:profile", problem)
            profile = None
    role = _assumed_role(read, provider.get("assumeRoles"))
    if compare_endpoints:
        _check_endpoints(read, provider.get("endpoints"), endpoint_url, role_assumed=role is not None)
    return AwsIdentity(profile, *(role or (None, None, None)))


def _assumed_role(read: _Reader, roles: object) -> tuple[str, str | None, str | None] | None:
    """(roleArn, sessionName, externalId) of the one aws:assumeRoles entry, or None."""
    if roles is None or roles == "" or roles == []:
        return None
    if not isinstance(roles, list) or not all(isinstance(role, dict) for role in roles):
        read.problem(
            "aws:assumeRoles",
            f"must be a list of objects with roleArn (and sessionName, externalId), got {shown(roles)}",
        )
        return None
    if len(roles) > 1:
        read.problem(
            "aws:assumeRoles",
            f"has {len(roles)} entries (a role chain); the certificate provider assumes one role, so it would issue "
            "as another identity than the stack deploys as: put the chain in a shared-config profile (role_arn with "
            "source_profile) and set aws:profile, which both providers read",
        )
        return None
    entry: dict[str, Any] = roles[0]
    for key in entry:
        if key in _ROLE_SESSION_KEYS:
            read.problem(
                "aws:assumeRoles",
                f"{key} shapes the AWS provider's session only; the certificate provider's session would carry none "
                "of it: attach the restriction to the role itself, or drop it",
            )
        elif key not in _ROLE_KEYS:
            closest = difflib.get_close_matches(key, (*_ROLE_KEYS, *_ROLE_SESSION_KEYS), n=1, cutoff=0.6)
            hint = f"did you mean {closest[0]}?" if closest else f"allowed: {', '.join(_ROLE_KEYS)}"
            read.problem("aws:assumeRoles", f"{shown(key)} is not an assumeRoles key; {hint}")
    role_arn, session_name, external_id = (entry.get(key) or None for key in ("roleArn", "sessionName", "externalId"))
    if not aws_rules.is_iam_role_arn(role_arn):
        read.problem("aws:assumeRoles", f"roleArn {shown(role_arn)} is not {aws_rules.IAM_ROLE_ARN}")
        return None
    for key, value, rule, what in (
        ("sessionName", session_name, aws_rules.is_role_session_name, aws_rules.ROLE_SESSION_NAME),
        ("externalId", external_id, aws_rules.is_external_id, aws_rules.EXTERNAL_ID),
    ):
        if value is not None and not rule(value):
            read.problem("aws:assumeRoles", f"{key} {shown(value)} is not {what}")
    return role_arn, session_name, external_id


def _check_endpoints(read: _Reader, endpoints: object, endpoint_url: str | None, *, role_assumed: bool) -> None:
    """aws:endpoints and awsEndpointUrl send both providers to the same ACM PCA (and STS, to assume the role):
    the certificate provider calls awsEndpointUrl for both."""
    services: dict[str, str] = {}
    if isinstance(endpoints, list):
        for entry in endpoints:
            if isinstance(entry, dict):
                services.update({key: value for key, value in entry.items() if isinstance(value, str) and value})
    elif endpoints not in (None, "", []):
        read.problem("aws:endpoints", f"must be a list of maps of service to URL, got {shown(endpoints)}")
        return
    wanted = (endpoint_url or "").rstrip("/")
    checked = ["acmpca", *(["sts"] if role_assumed and wanted else [])]
    for service in checked:
        url = services.get(service, "").rstrip("/")
        if url == wanted:
            continue
        provider_side = f"{service} is {url}" if url else f"has no {service} entry (AWS's own endpoint)"
        read.problem(
            "aws:endpoints",
            f"{provider_side} but the certificate provider calls {wanted or 'AWS'} (awsEndpointUrl): the stack would "
            f"create its resources at one {service} and issue at another; give {service} and awsEndpointUrl the same "
            "URL, or neither",
        )


def _unknown_key(key: str, project: str) -> str:
    closest = difflib.get_close_matches(key, CONFIG_KEYS, n=1, cutoff=0.6)
    hint = f"did you mean {closest[0]}?" if closest else "see README.md, Configuration reference"
    return f"is not a {project} setting; {hint}"


def _parse_ca(read: _Reader, *, stack: str, project: str) -> CaSettings:
    mode, ca_stack, parent_arn = _parse_ca_source(read)
    usage = _parse_ca_usage(read)
    return CaSettings(
        mode=mode,
        subject=CaSubject(
            common_name=_subject_field(read, "caCommonName", "common_name", f"{project} {stack} CA") or "",
            organization=_subject_field(read, "caOrganization", "organization"),
            organizational_unit=_subject_field(read, "caOrganizationalUnit", "organizational_unit"),
            country=_subject_field(read, "caCountry", "country"),
            state=_subject_field(read, "caState", "state"),
            locality=_subject_field(read, "caLocality", "locality"),
        ),
        key_algorithm=read.choice("caKeyAlgorithm", aws_rules.KEY_ALGORITHMS, "RSA_2048"),
        validity_years=_validity_years(read, mode),
        usage_mode=usage["usage_mode"],
        permanent_deletion_days=read.integer("caPermanentDeletionDays", 30, *aws_rules.PERMANENT_DELETION_DAYS_RANGE),
        key_storage_security_standard=read.choice(
            "caKeyStorageSecurityStandard", KEY_STORAGE_STANDARDS, KEY_STORAGE_STANDARDS[0]
        ),
        crl_enabled=usage["crl_enabled"],
        crl_expiration_days=read.integer("caCrlExpirationDays", 7, *aws_rules.CRL_EXPIRATION_DAYS_RANGE),
        crl_custom_cname=usage["crl_custom_cname"],
        acm_permission=usage["acm_permission"],
        protect=read.boolean("caProtect", True),
        stack=ca_stack,
        parent_arn=parent_arn,
    )


def _parse_ca_source(read: _Reader) -> tuple[str, str | None, str | None]:
    """caMode and where a stack or subordinate CA comes from: (mode, caStack, caParentArn)."""
    mode = read.choice("caMode", CA_MODES, "root")
    ca_stack = read.string("caStack")
    parent_arn = read.string("caParentArn")
    if ca_stack and not aws_rules.is_stack_name(ca_stack):
        read.problem("caStack", f"{ca_stack!r} is not a stack name (stack, project/stack or org/project/stack)")
    if parent_arn and not aws_rules.parse_ca_arn(parent_arn):
        read.problem("caParentArn", f"{parent_arn!r} is not an ACM PCA certificate authority ARN")
    if mode == "root" and (ca_stack or parent_arn):
        read.problem(
            "caMode",
            "is root (this stack creates its own root CA) but caStack/caParentArn is also set; "
            "use caMode stack to reference another stack's CA, or subordinate to be signed by it",
        )
    if mode == "stack" and not ca_stack:
        read.problem(
            "caStack",
            "is required when caMode is stack (the stack that owns the CA, e.g. org/pca-backend/pki)",
        )
    if mode == "stack" and parent_arn:
        read.problem("caParentArn", "is only used with caMode subordinate")
    if mode == "subordinate" and bool(ca_stack) == bool(parent_arn):
        read.problem("caMode", "subordinate needs exactly one parent: caStack (a stack's CA) or caParentArn")
    return mode, ca_stack, parent_arn


def _parse_ca_usage(read: _Reader) -> dict[str, Any]:
    """caUsageMode and what depends on it: the CRL and ACM's permission to renew."""
    usage_mode = read.choice("caUsageMode", USAGE_MODES, "GENERAL_PURPOSE")
    crl_enabled = read.boolean("caCrlEnabled", False)
    if crl_enabled and usage_mode == "SHORT_LIVED_CERTIFICATE":
        read.problem(
            "caCrlEnabled",
            "short-lived certificates expire within 7 days; a SHORT_LIVED_CERTIFICATE CA has no CRL",
        )
    crl_cname = read.string("caCrlCustomCname")
    if crl_cname and not names.is_dns_name(crl_cname, allow_wildcard=False):
        read.problem("caCrlCustomCname", f"{crl_cname!r} is not a DNS name such as crl.example.com (no scheme)")
    acm_permission = read.boolean("caAcmPermission", False)
    if acm_permission and usage_mode == "SHORT_LIVED_CERTIFICATE":
        read.problem("caAcmPermission", "ACM cannot issue from a SHORT_LIVED_CERTIFICATE CA; use GENERAL_PURPOSE")
    return {
        "usage_mode": usage_mode,
        "crl_enabled": crl_enabled,
        "crl_custom_cname": crl_cname,
        "acm_permission": acm_permission,
    }


def _subject_field(read: _Reader, key: str, field: str, default: str | None = None) -> str | None:
    value = read.string(key, default)
    if value is not None:
        _check(read, key, names.subject_field_problem(field, value))
    return value


def _validity_years(read: _Reader, mode: str) -> int:
    """caValidityYears; 0 (the default) means 10 for a root and 5 for a subordinate, which must expire before
    its root and so leaves room for one rotation under it."""
    years = read.integer("caValidityYears", 0, 0, 30)
    return years or (5 if mode == "subordinate" else 10)


def _is_backend_name(name: str) -> bool:
    """A name the certificate carries and nginx serves: a DNS name or an IPv4 address."""
    return names.is_certificate_name(name) and names.is_server_name(name.removesuffix("."))


_BACKEND_NAME = "a DNS name or IPv4 address (nginx cannot serve an IPv6 literal as a server name)"


def _parse_certificate(read: _Reader, ca: CaSettings, region: str, *, per_host: bool = False) -> CertificateSettings:
    if per_host:
        return _parse_host_certificates(read, ca)
    cert_names = read.strings("certNames", _is_backend_name, _BACKEND_NAME)
    common_name = read.string("certCommonName")
    if common_name is not None and not _is_backend_name(common_name):
        read.problem("certCommonName", f"{shown(common_name)} is not {_BACKEND_NAME}")
    # The subject CN is certCommonName, else the first of certNames: either way X.509's 64 characters apply.
    subject_cn, cn_key = (common_name, "certCommonName") if common_name else (next(iter(cert_names), None), "certNames")
    if subject_cn and len(subject_cn) > names.SUBJECT_FIELD_LIMITS["common_name"]:
        read.problem(
            cn_key,
            f"{shown(subject_cn)} would be the certificate's common name, which X.509 limits to "
            f"{names.SUBJECT_FIELD_LIMITS['common_name']} characters; set a shorter certCommonName",
        )
    validity = _validity_days(read, ca)
    # 0 (the default) leaves it to the provider: a third of the validity, at least two days.
    low, high = aws_rules.MIN_RENEWAL_WINDOW_DAYS, validity - 1
    renew_before = read.integer("certRenewBeforeDays", 0, 0, max(0, high)) or None
    if renew_before is not None and renew_before < low:
        read.problem(
            "certRenewBeforeDays",
            f"is {renew_before} but must be 0 (a third of certValidityDays) or from {low} to {high}: the expiry "
            "alarm (at least a day) must fit inside the renewal window",
        )
    throttle_minutes = read.integer(
        "certThrottleRetryMinutes", aws_rules.DEFAULT_THROTTLE_RETRY_MINUTES, 1, aws_rules.MAX_THROTTLE_RETRY_MINUTES
    )
    return CertificateSettings(
        common_name=common_name,
        names=cert_names,
        key_algorithm=read.choice("certKeyAlgorithm", aws_rules.KEY_ALGORITHMS, "EC_prime256v1"),
        validity_days=validity,
        renew_before_days=renew_before,
        template=_template(read),
        throttle_retry_minutes=throttle_minutes,
    )


def _parse_host_certificates(read: _Reader, ca: CaSettings) -> CertificateSettings:
    """What each host's own certificate carries in the per-host mode: `certNames` are the fleet-wide service names
    any host may put in it (beside its EC2 name and private IPv4), `certValidityDays` its validity (default 7),
    `certKeyAlgorithm` the key the host makes, `certTemplate` the template the issuer issues with."""
    service_names = read.strings("certNames")
    for name in service_names:
        _check(read, "certNames", names.service_name_problem(name))
    return CertificateSettings(
        common_name=None,
        names=service_names,
        key_algorithm=read.choice("certKeyAlgorithm", aws_rules.KEY_ALGORITHMS, "EC_prime256v1"),
        validity_days=_validity_days(read, ca, per_host=True),
        renew_before_days=None,
        template=_template(read),
    )


def _template(read: _Reader) -> str:
    """certTemplate: an end-entity template, by name or ARN."""
    template = read.string("certTemplate", aws_rules.DEFAULT_TEMPLATE) or aws_rules.DEFAULT_TEMPLATE
    try:
        aws_rules.template_arn_for(template)
    except ValueError as error:
        read.problem("certTemplate", str(error))
    return template


def _validity_days(read: _Reader, ca: CaSettings, *, per_host: bool = False) -> int:
    """certValidityDays: 0 (the default) means 90 days, or the most a SHORT_LIVED_CERTIFICATE CA allows. Long
    enough for a renewal window of days, short enough to end before a CA this stack creates (one it reads is
    checked once known, in `components.ca_source`)."""
    short_lived = ca.usage_mode == "SHORT_LIVED_CERTIFICATE"
    if per_host:
        low, high = PER_HOST_VALIDITY_DAYS_RANGE
        validity = read.integer("certValidityDays", 0, 0, high) or SHORT_LIVED_MAX_DAYS
    else:
        validity = read.integer("certValidityDays", 0, 0, 3650) or (SHORT_LIVED_MAX_DAYS if short_lived else 90)
    _check(read, "certValidityDays", aws_rules.short_lived_problem("certValidityDays", validity, ca.usage_mode))
    if per_host and validity < low:
        read.problem(
            "certValidityDays",
            f"is {validity} but must be at least {low} (or 0 for the default, {SHORT_LIVED_MAX_DAYS}) with "
            "hostCertificates per-host: each host renews its certificate when a third of its life is left, and the "
            "expiry alarm (at least a day) must sit inside that window",
        )
        return low
    if not per_host and validity < aws_rules.MIN_VALIDITY_DAYS:
        read.problem(
            "certValidityDays",
            f"is {validity} but must be at least {aws_rules.MIN_VALIDITY_DAYS} (or 0 for the default): a "
            f"{aws_rules.MIN_RENEWAL_WINDOW_DAYS}-day renewal window, in which the next pulumi up replaces the "
            "certificate and the expiry alarm fits, and a day of life before it",
        )
        return aws_rules.MIN_VALIDITY_DAYS
    # A CA certificate of N years lasts at least N x 365 days; a subordinate's counts from its parent's start,
    # so it may end sooner (checked against the parent once known).
    ca_days = 365 * ca.validity_years
    if ca.mode != "stack" and validity >= ca_days:
        read.problem(
            "certValidityDays",
            f"is {validity}: the certificate would outlive the CA this stack creates, which caValidityYears "
            f"({ca.validity_years}) makes last about {ca_days} days, and AWS issues nothing past its CA's expiry: "
            f"lower certValidityDays below {ca_days} or raise caValidityYears",
        )
    return validity


def _parse_backend(
    read: _Reader, ca: CaSettings, certificate: CertificateSettings, aws_identity: AwsIdentity, *, per_host: bool
) -> BackendSettings:
    network_settings = _parse_network(read)
    ingress = _parse_ingress(read)
    listener = _parse_listener(read, ca)
    image = _parse_host_image(read)
    host_count = read.integer("hostCount", 2, *aws_rules.HOST_COUNT_RANGE)
    return BackendSettings(
        **network_settings,
        **ingress,
        **listener,
        **image,
        host_count=host_count,
        host_ami_id=_host_ami_id(read),
        **_parse_fleet(read, host_count),
        # The per-host mode puts no key material in SSM: no parameter key, no writers.
        **(
            {"parameter_kms_key_arn": None, "parameter_writer_arns": ()}
            if per_host
            else _parse_parameter_key(read, aws_identity)
        ),
        **_parse_expiry_alarm(read, certificate, per_host=per_host),
    )


def _parse_network(read: _Reader) -> dict[str, Any]:
    """networkCidr (a VPC this stack creates) or an existing vpcId with its subnets."""
    network_cidr = read.string("networkCidr")
    vpc_id = read.string("vpcId")
    subnet = f"a subnet ID ({aws_rules.resource_id_allowed('subnet')})"
    alb_subnets = read.strings("albSubnetIds", lambda text: aws_rules.is_resource_id(text, "subnet"), subnet)
    host_subnets = read.strings("hostSubnetIds", lambda text: aws_rules.is_resource_id(text, "subnet"), subnet)
    if vpc_id and not aws_rules.is_resource_id(vpc_id, "vpc"):
        read.problem("vpcId", f"{vpc_id!r} is not a VPC ID ({aws_rules.resource_id_allowed('vpc')})")
    if network_cidr:
        try:
            network.subnet_cidrs(network_cidr)
        except ValueError as error:
            read.problem("networkCidr", str(error))
        if vpc_id or alb_subnets or host_subnets:
            read.problem("networkCidr", "creates a VPC; it cannot be combined with vpcId, albSubnetIds, hostSubnetIds")
    else:
        if not vpc_id and not read.refused("vpcId"):
            read.problem("vpcId", "is required when backendEnabled is true and networkCidr is not set")
        if len(alb_subnets) < 2:
            read.problem("albSubnetIds", "an ALB needs subnets in at least two availability zones")
        if not host_subnets:
            read.problem("hostSubnetIds", "at least one subnet for the backend hosts is required")
    return {
        "network_cidr": network_cidr,
        "vpc_id": vpc_id or "",
        "alb_subnet_ids": alb_subnets,
        "host_subnet_ids": host_subnets,
    }


def _parse_ingress(read: _Reader) -> dict[str, Any]:
    """Who may reach the load balancer (albIngressCidrs) and the hosts (peerSecurityGroupIds)."""
    internal = read.boolean("albInternal", True)
    http_redirect = read.boolean("httpRedirect", True)
    cidrs = read.strings("albIngressCidrs", network.is_cidr, "a CIDR block such as 10.0.0.0/16")
    if not cidrs:
        read.problem("albIngressCidrs", "at least one CIDR allowed to reach the load balancer on 443 is required")
    if internal and any(network.is_world(cidr) for cidr in cidrs):
        read.problem("albIngressCidrs", "0.0.0.0/0 and ::/0 are not allowed on an internal load balancer")
    if all(network.is_cidr(cidr) for cidr in cidrs):
        # One rule per CIDR and listener port (443, and 80 with httpRedirect).
        _check(read, "albIngressCidrs", aws_rules.security_group_rules_problem(cidrs, 2 if http_redirect else 1))
        # On an internal load balancer a world CIDR is refused above: not "list only 0.0.0.0/0" too.
        compared = [cidr for cidr in cidrs if not (internal and network.is_world(cidr))]
        for problem in network.overlap_problems(compared):
            read.problem("albIngressCidrs", problem)
        for cidr in cidrs:
            special = network.special_range(cidr)
            if special is not None:
                read.problem(
                    "albIngressCidrs", f"{cidr!r} lies in {special}: no client reaches a load balancer from there"
                )
    sg = f"a security group ID ({aws_rules.resource_id_allowed('sg')})"
    peers = read.strings("peerSecurityGroupIds", lambda text: aws_rules.is_resource_id(text, "sg"), sg)
    # The hosts' group also admits the load balancer's group and itself.
    rules_max = aws_rules.SECURITY_GROUP_RULES_MAX
    if len(peers) + 2 > rules_max:
        read.problem(
            "peerSecurityGroupIds",
            f"lists {len(peers)} groups; with the load balancer and the fleet itself that exceeds AWS's "
            f"{rules_max} rules per security group: at most {rules_max - 2}",
        )
    return {
        "alb_internal": internal,
        "http_redirect": http_redirect,
        "alb_ingress_cidrs": cidrs,
        "peer_security_group_ids": peers,
    }


def _parse_listener(read: _Reader, ca: CaSettings) -> dict[str, Any]:
    """The HTTPS listener's certificate (exactly one source) and the target group's health check."""
    certificate_arn = read.string("albCertificateArn")
    domain_name = read.string("albDomainName")
    if certificate_arn and not aws_rules.is_acm_certificate_arn(certificate_arn):
        read.problem("albCertificateArn", f"{certificate_arn!r} is not an ACM certificate ARN")
    if domain_name:
        _check(read, "albDomainName", names.acm_domain_name_problem(domain_name))
    if bool(certificate_arn) == bool(domain_name):
        read.problem(
            "albCertificateArn",
            "set exactly one of albCertificateArn (an existing ACM certificate) or albDomainName "
            "(an ACM private certificate from the private CA)",
        )
    if domain_name and ca.usage_mode == "SHORT_LIVED_CERTIFICATE":
        read.problem("albDomainName", "ACM cannot issue from a SHORT_LIVED_CERTIFICATE CA; use albCertificateArn")
    if domain_name and ca.mode != "stack" and not ca.acm_permission:
        read.warnings.append(
            "caAcmPermission is false while albDomainName asks ACM for a private certificate: ACM issues it "
            "but cannot renew it, so it expires unless renewed by hand (AWS Private CA user guide, 'Assign "
            "certificate renewal permissions to ACM'; terraform-provider-aws#46693)"
        )
    health_path = read.string("healthCheckPath", "/healthz") or "/healthz"
    _check(read, "healthCheckPath", aws_rules.health_check_path_problem(health_path))
    return {"alb_certificate_arn": certificate_arn, "alb_domain_name": domain_name, "health_check_path": health_path}


def _parse_host_image(read: _Reader) -> dict[str, Any]:
    """The hosts' instance type and the SSM parameter that names their AMI: by default Amazon Linux 2023 of the
    type's architecture; an explicit parameter whose name says another architecture is refused (the hosts would
    never boot)."""
    instance_type = read.string("instanceType", "t3.micro") or "t3.micro"
    if not aws_rules.is_instance_type(instance_type):
        read.problem("instanceType", f"{shown(instance_type)} is not an EC2 instance type such as t3.micro")
    architecture = aws_rules.instance_architecture(instance_type)
    default = aws_rules.AL2023_AMI_PARAMETERS[architecture]
    ami_parameter = read.string("amiParameter", default) or default
    if not aws_rules.is_parameter_path(ami_parameter):
        read.problem("amiParameter", f"{shown(ami_parameter)} is not an SSM parameter name such as {default}")
    elif aws_rules.ami_parameter_architecture(ami_parameter) not in (None, architecture):
        processor = "an arm64 (Graviton)" if architecture == "arm64" else "an x86_64 (Intel or AMD)"
        read.problem(
            "amiParameter",
            f"names an AMI for {aws_rules.ami_parameter_architecture(ami_parameter)}, but instanceType "
            f"{instance_type} is {processor} type: leave amiParameter empty for {default}, or pick an instance "
            "type of the AMI's architecture",
        )
    return {"instance_type": instance_type, "ami_parameter": ami_parameter}


def _host_ami_id(read: _Reader) -> str | None:
    ami_id = read.string("hostAmiId")
    if ami_id and not aws_rules.is_resource_id(ami_id, "ami"):
        read.problem(
            "hostAmiId",
            f"{ami_id!r} is not an AMI id: 'ami-' followed by 8 or 17 lowercase hexadecimal digits, such as "
            "ami-0123456789abcdef0; empty: the AMI amiParameter names at the first deployment, kept",
        )
    return ami_id


def _parse_fleet(read: _Reader, host_count: int) -> dict[str, Any]:
    """The Auto Scaling group around hostCount: min <= hostCount <= max. hostMinCount 0 means hostCount;
    hostMaxCount 0 leaves room for the hosts an instance refresh launches beside the old ones."""
    minimum = read.integer("hostMinCount", 0, 0, aws_rules.HOST_COUNT_RANGE[1]) or host_count
    maximum = read.integer("hostMaxCount", 0, 0, aws_rules.HOST_MAX_COUNT) or None
    if minimum > host_count:
        read.problem("hostMinCount", f"is {minimum} but must be at most hostCount ({host_count}); 0 means hostCount")
    if maximum is not None and maximum < host_count:
        read.problem("hostMaxCount", f"is {maximum} but must be at least hostCount ({host_count})")
    return {
        "host_min_count": minimum,
        "host_max_count": maximum,
        # AWS's range for an instance refresh's MinHealthyPercentage.
        "host_min_healthy_percent": read.integer("hostMinHealthyPercent", 100, *aws_rules.MIN_HEALTHY_PERCENT_RANGE),
        "host_root_volume_gib": _root_volume_gib(read),
    }


def _root_volume_gib(read: _Reader) -> int | None:
    """hostRootVolumeGiB: 0 (the default) keeps the AMI's size; else 8 (Amazon Linux 2023's) to 16384 (gp3)."""
    low, high = aws_rules.ROOT_VOLUME_GIB_RANGE
    size = read.integer("hostRootVolumeGiB", 0, 0, high)
    if 0 < size < low:
        read.problem("hostRootVolumeGiB", f"is {size} but must be 0 (the AMI's size) or from {low} to {high}")
    return size or None


def _parse_parameter_key(read: _Reader, aws_identity: AwsIdentity) -> dict[str, Any]:
    """The parameters' KMS key, and who its policy lets write them: `parameterWriterArns`, else the role the stack
    deploys as (`aws:assumeRoles`), never whoever happens to run `pulumi up` (that would change the policy with
    every identity and deny the others, e.g. the renewal pipeline after a person's `pulumi up`)."""
    key_arn = read.string("parameterKmsKeyArn")
    if key_arn and not aws_rules.is_kms_key_arn(key_arn):
        read.problem(
            "parameterKmsKeyArn", f"{key_arn!r} is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)"
        )
    writers = read.strings("parameterWriterArns", aws_rules.is_iam_principal_arn, "an IAM role or user ARN")
    if key_arn and writers:
        read.problem(
            "parameterWriterArns",
            "only applies to the key the stack creates; grant writers in parameterKmsKeyArn's policy",
        )
    if not key_arn and not writers:
        if aws_identity.assume_role_arn:
            writers = (aws_identity.assume_role_arn,)
        else:
            read.problem(
                "parameterWriterArns",
                "is required when the stack creates the parameters' KMS key (parameterKmsKeyArn empty) and deploys "
                "without aws:assumeRoles: list the IAM roles or users that run pulumi up on this stack (e.g. the CI "
                "deploy role); the key lets only them write the hosts' TLS parameters",
            )
    return {"parameter_kms_key_arn": key_arn, "parameter_writer_arns": writers}


def _parse_expiry_alarm(read: _Reader, certificate: CertificateSettings, *, per_host: bool) -> dict[str, Any]:
    """certExpiryAlarmDays must fall inside the renewal window: a fleet waiting for its next `pulumi up` in that
    window (shared mode), or hosts waiting for their next timer run (per-host mode: a third of the validity), are
    healthy. 0 (the default) means 14, or half the window (rounded down, at least 1) when that is shorter."""
    days = read.integer("certExpiryAlarmDays", 0, 0, aws_rules.EXPIRY_ALARM_DAYS_MAX)
    validity = certificate.validity_days
    if per_host:
        default = min(14, max(1, validity // (2 * PER_HOST_RENEWAL_SHARE)))
        if days and days * PER_HOST_RENEWAL_SHARE >= validity:
            read.problem(
                "certExpiryAlarmDays",
                f"is {days} but must be less than the hosts' renewal window (a third of certValidityDays: "
                f"{validity / PER_HOST_RENEWAL_SHARE:.1f} days): each host renews when a third of its certificate's "
                "life is left, so hosts waiting for their next renewal would raise the alarm",
            )
    else:
        window = aws_rules.renew_before_days(validity, certificate.renew_before_days)
        default = min(14, max(1, window // 2))
        if days and days >= window:
            read.problem(
                "certExpiryAlarmDays",
                f"is {days} but must be less than the renewal window ({window} days, certRenewBeforeDays or a third "
                "of certValidityDays): certificates waiting in that window for the next pulumi up would raise the "
                "alarm",
            )
    topic = read.string("certExpiryAlarmTopicArn")
    if topic and not aws_rules.is_sns_topic_arn(topic):
        read.problem(
            "certExpiryAlarmTopicArn", f"{topic!r} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)"
        )
    return {"cert_expiry_alarm_days": days or default, "cert_expiry_alarm_topic_arn": topic}


def _parse_issuer(read: _Reader) -> IssuerSettings:
    """The per-host issuer's reserved concurrency and log retention (CloudWatch Logs' own values)."""
    retention = read.integer("issuerLogRetentionDays", 365, 1, aws_rules.LOG_RETENTION_DAYS[-1])
    if retention not in aws_rules.LOG_RETENTION_DAYS:
        read.problem(
            "issuerLogRetentionDays",
            f"is {retention} but CloudWatch Logs keeps logs for one of "
            f"{', '.join(map(str, aws_rules.LOG_RETENTION_DAYS))} days",
        )
        retention = 365
    return IssuerSettings(
        reserved_concurrency=read.integer("issuerReservedConcurrency", 10, *aws_rules.RESERVED_CONCURRENCY_RANGE),
        log_retention_days=retention,
    )


def load_settings() -> Settings:
    """Read the current stack's config (the project namespace and the `aws:` provider settings) and parse it with
    the regions botocore ships. Wrong settings raise `StackSettingsError`, a `pulumi.RunError`: Pulumi prints
    the list of problems alone and stops, before any resource."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    from components.settings_error import StackSettingsError

    project, stack = pulumi.get_project(), pulumi.get_stack()
    # Every key given, known or not: a misspelt setting is refused rather than silently ignored.
    given = {*runtime_config.CONFIG.get(), *(runtime_config.get_config_env() or {})}
    raw: dict[str, Any] = {}
    provider: dict[str, Any] = {}
    for full_key in sorted(given):
        namespace, _, key = full_key.partition(":")
        if namespace == project:
            raw[key] = _structured(pulumi.Config().get(key), list_expected=key in LIST_KEYS)
        elif namespace == "aws":
            provider[key] = _structured(pulumi.Config("aws").get(key), list_expected=False)
    try:
        settings = parse_settings(
            raw,
            stack=stack,
            project=project,
            region=provider.pop("region", None),
            aws=provider,
            regions=botocore_regions(),
        )
        _check_subnet_placement(settings)
    except SettingsError as error:
        raise StackSettingsError(error.problems) from None
    return settings


def _check_subnet_placement(settings: Settings) -> None:
    """The configured subnets as AWS describes them (a look-up, so not in the pure `parse_settings`): in `vpcId`, the
    load balancer's in two zones or more, the hosts' in the load balancer's zones. Before any resource exists."""
    backend = settings.backend
    if backend is None or backend.network_cidr:
        return  # no backend, or a network this stack creates (consistent by construction)
    from components.encrypted_backend import describe_subnets, subnet_placement_problems

    names = {"vpc_id": "vpcId", "alb_subnet_ids": "albSubnetIds", "host_subnet_ids": "hostSubnetIds"}
    alb, hosts = backend.alb_subnet_ids, backend.host_subnet_ids
    found = subnet_placement_problems(backend.vpc_id, alb, hosts, describe_subnets([*alb, *hosts]), names)
    if found:
        raise SettingsError([f"{name}: {problem}" for name, problem in found])


def _structured(value: str | None, *, list_expected: bool) -> Any:
    """A value as Pulumi hands it over (text; lists and maps as JSON), decoded where it is structured: a list
    setting's JSON, or any list or map, which a scalar setting then refuses by name (a string setting would
    otherwise take the JSON text itself, and a CA be named `["Example Root"]`)."""
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        decoded = json.loads(value)
        if list_expected or isinstance(decoded, (list, dict)):
            return decoded
    return value


#: Every project setting with its type and default in Pulumi.yaml (a test holds them equal). Pulumi hands the
#: defaults over as if the stack had set them: a setting counts as set when its value differs from its default.
_DECLARATIONS: Mapping[str, tuple[str, object]] = {
    "caMode": ("string", "root"),
    "caStack": ("string", ""),
    "caParentArn": ("string", ""),
    "caCommonName": ("string", ""),
    "caOrganization": ("string", ""),
    "caOrganizationalUnit": ("string", ""),
    "caCountry": ("string", ""),
    "caState": ("string", ""),
    "caLocality": ("string", ""),
    "caKeyAlgorithm": ("string", "RSA_2048"),
    "caValidityYears": ("integer", 0),
    "caUsageMode": ("string", "GENERAL_PURPOSE"),
    "caPermanentDeletionDays": ("integer", 30),
    "caKeyStorageSecurityStandard": ("string", "FIPS_140_2_LEVEL_3_OR_HIGHER"),
    "caCrlEnabled": ("boolean", False),
    "caCrlExpirationDays": ("integer", 7),
    "caCrlCustomCname": ("string", ""),
    "caAcmPermission": ("boolean", False),
    "caProtect": ("boolean", True),
    "backendEnabled": ("boolean", True),
    "hostCertificates": ("string", "shared"),
    "certCommonName": ("string", ""),
    "certNames": ("array", []),
    "certKeyAlgorithm": ("string", "EC_prime256v1"),
    "certValidityDays": ("integer", 0),
    "certRenewBeforeDays": ("integer", 0),
    "certTemplate": ("string", "EndEntityServerAuthCertificate/V1"),
    "certThrottleRetryMinutes": ("integer", 10),
    "networkCidr": ("string", ""),
    "vpcId": ("string", ""),
    "albSubnetIds": ("array", []),
    "hostSubnetIds": ("array", []),
    "albInternal": ("boolean", True),
    "albIngressCidrs": ("array", []),
    "peerSecurityGroupIds": ("array", []),
    "hostCount": ("integer", 2),
    "instanceType": ("string", "t3.micro"),
    "httpRedirect": ("boolean", True),
    "healthCheckPath": ("string", "/healthz"),
    "albCertificateArn": ("string", ""),
    "albDomainName": ("string", ""),
    "amiParameter": ("string", ""),
    "hostAmiId": ("string", ""),
    "hostMinCount": ("integer", 0),
    "hostMaxCount": ("integer", 0),
    "hostMinHealthyPercent": ("integer", 100),
    "hostRootVolumeGiB": ("integer", 0),
    "parameterKmsKeyArn": ("string", ""),
    "parameterWriterArns": ("array", []),
    "certExpiryAlarmDays": ("integer", 0),
    "certExpiryAlarmTopicArn": ("string", ""),
    "issuerReservedConcurrency": ("integer", 10),
    "issuerLogRetentionDays": ("integer", 365),
    "awsEndpointUrl": ("string", ""),
    "parameterPrefix": ("string", ""),
}
#: Every project setting and its type in Pulumi.yaml.
DECLARED: Mapping[str, str] = {key: kind for key, (kind, _) in _DECLARATIONS.items()}
#: Every project setting and its default in Pulumi.yaml.
DEFAULTS: Mapping[str, object] = {key: default for key, (_, default) in _DECLARATIONS.items()}
#: Every project setting.
CONFIG_KEYS = tuple(DECLARED)
#: The settings that are lists (`type: array` in Pulumi.yaml).
LIST_KEYS = frozenset(key for key, kind in DECLARED.items() if kind == "array")
