"""Stack settings: the one place project config is read, validated and turned into typed values.

`parse_settings` is pure (a mapping of config keys to values in, `Settings` out) so every rule is tested without
Pulumi; `load_settings` feeds it from `pulumi.Config`. Every error names the setting and what is allowed, and
all of them are reported together, before any resource exists.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components import x509
from components.certificate import (
    DEFAULT_TEMPLATE,
    DEFAULT_THROTTLE_RETRY_MINUTES,
    MAX_THROTTLE_RETRY_MINUTES,
    ROLE_ARN,
    SHORT_LIVED_MAX_DAYS,
    template_arn_for,
)
from components.network import subnet_cidrs

CA_MODES = ("root", "subordinate", "stack")
USAGE_MODES = ("GENERAL_PURPOSE", "SHORT_LIVED_CERTIFICATE")
KEY_STORAGE_STANDARDS = ("FIPS_140_2_LEVEL_3_OR_HIGHER", "FIPS_140_2_LEVEL_2_OR_HIGHER")
AL2023_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
_CA_ARN = re.compile(r"^arn:aws[a-z-]*:acm-pca:[a-z0-9-]+:\d{12}:certificate-authority/[0-9a-f-]+$")
_ACM_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$")
_STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}$")
_SG_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
_IAM_PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
_AMI_ID = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
_SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")


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


@dataclass(frozen=True)
class CertificateSettings:
    common_name: str | None
    """None: the first of `names`, else the hosts' private DNS wildcard."""
    names: tuple[str, ...]
    key_algorithm: str
    validity_days: int
    renew_before_days: int | None
    template: str
    throttle_retry_minutes: int = DEFAULT_THROTTLE_RETRY_MINUTES
    """How long the provider retries calls AWS throttles (`certThrottleRetryMinutes`)."""


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
    """Who the created key lets write the parameters; empty: the identity running `pulumi up`."""
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


def ec2_private_dns_wildcard(region: str) -> str:
    """`*.ec2.internal` in us-east-1, `*.<region>.compute.internal` elsewhere: EC2's default private DNS."""
    return "*.ec2.internal" if region == "us-east-1" else f"*.{region}.compute.internal"


class _Reader:
    """Typed access to raw config that records every problem instead of stopping at the first."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.raw.get(key)
        if value is None or value == "":
            return default
        if not isinstance(value, str):
            self.problem(key, f"must be a string, got {value!r}")
            return default
        return value

    def choice(self, key: str, allowed: Sequence[str], default: str) -> str:
        value = self.string(key, default) or default
        if value not in allowed:
            self.problem(key, f"{value!r} is not allowed; allowed: {', '.join(allowed)}")
            return default
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(key, f"must be a whole number from {low} to {high}, got {value!r}")
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
            self.problem(key, f"must be true or false, got {value!r}")
            return default
        return value

    def strings(self, key: str, check: Callable[[str], bool] | None = None, what: str = "") -> tuple[str, ...]:
        value = self.raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(key, f"must be a list of strings, got {value!r}")
            return ()
        if check is not None:
            for item in value:
                if not check(item):
                    self.problem(key, f"{item!r} is not {what}")
        return tuple(value)


def _is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        return False
    return True


def _is_certificate_name(name: str) -> bool:
    return x509.is_ip_address(name) or x509.is_dns_name(name)


def _is_security_group_id(text: str) -> bool:
    return bool(_SG_ID.match(text))


def _is_world(cidr: str) -> bool:
    return _is_cidr(cidr) and ipaddress.ip_network(cidr).prefixlen == 0


def parse_settings(
    raw: Mapping[str, Any], *, stack: str, project: str, region: str | None, aws: Mapping[str, Any] | None = None
) -> Settings:
    """Validate config (project keys without their namespace) into `Settings`, or raise `SettingsError`.

    `aws` holds the `aws:` provider settings that matter here: `profile` and `assumeRoles`.
    """
    read = _Reader(raw)
    aws_identity = _parse_aws_identity(read, aws or {})
    if not region:
        read.problem("aws:region", "is required (e.g. us-east-1)")
        region = "us-east-1"

    ca = _parse_ca(read, stack=stack, project=project)
    backend_enabled = read.boolean("backendEnabled", True)
    certificate = _parse_certificate(read, ca) if backend_enabled else None
    backend = _parse_backend(read, ca, certificate) if backend_enabled and certificate else None

    endpoint_url = read.string("awsEndpointUrl")
    if endpoint_url and not re.match(r"^https?://[^\s/]+(:\d+)?/?$", endpoint_url):
        read.problem("awsEndpointUrl", f"{endpoint_url!r} is not an http(s) URL like http://127.0.0.1:5000")
    prefix = read.string("parameterPrefix", f"/{project}/{stack}") or f"/{project}/{stack}"
    if not re.match(r"^(/[A-Za-z0-9_.-]+)+$", prefix):
        read.problem("parameterPrefix", f"{prefix!r} must look like /team/app (letters, digits, _ . -)")

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
    )


def _parse_aws_identity(read: _Reader, provider_settings: Mapping[str, Any]) -> AwsIdentity:
    profile = provider_settings.get("profile") or None
    if profile is not None and not isinstance(profile, str):
        read.problem("aws:profile", f"must be a profile name, got {profile!r}")
        profile = None
    roles = provider_settings.get("assumeRoles") or []
    if not isinstance(roles, list) or not all(isinstance(role, dict) for role in roles):
        read.problem(
            "aws:assumeRoles", f"must be a list of objects with roleArn (and sessionName, externalId), got {roles!r}"
        )
        return AwsIdentity(profile)
    if not roles:
        return AwsIdentity(profile)
    if len(roles) > 1:
        read.warnings.append(
            f"aws:assumeRoles has {len(roles)} entries; the certificate provider assumes only the first "
            f"({roles[0].get('roleArn')!r}), so it issues as that role, not as the last role of the chain"
        )
    first = {key: value or None for key, value in roles[0].items()}
    role_arn, session_name, external_id = first.get("roleArn"), first.get("sessionName"), first.get("externalId")
    if not isinstance(role_arn, str) or not ROLE_ARN.match(role_arn):
        read.problem(
            "aws:assumeRoles", f"roleArn {role_arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
        )
    for key, value in (("sessionName", session_name), ("externalId", external_id)):
        if value is not None and not isinstance(value, str):
            read.problem("aws:assumeRoles", f"{key} must be a string, got {value!r}")
    return AwsIdentity(profile, role_arn, session_name, external_id)


def _parse_ca(read: _Reader, *, stack: str, project: str) -> CaSettings:
    mode = read.choice("caMode", CA_MODES, "root")
    ca_stack = read.string("caStack")
    parent_arn = read.string("caParentArn")
    if ca_stack and not _STACK_NAME.match(ca_stack):
        read.problem("caStack", f"{ca_stack!r} is not a stack name (stack, project/stack or org/project/stack)")
    if parent_arn and not _CA_ARN.match(parent_arn):
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

    usage_mode = read.choice("caUsageMode", USAGE_MODES, "GENERAL_PURPOSE")
    crl_enabled = read.boolean("caCrlEnabled", False)
    if crl_enabled and usage_mode == "SHORT_LIVED_CERTIFICATE":
        read.problem(
            "caCrlEnabled",
            "short-lived certificates expire within 7 days; a SHORT_LIVED_CERTIFICATE CA has no CRL",
        )
    acm_permission = read.boolean("caAcmPermission", False)
    if acm_permission and usage_mode == "SHORT_LIVED_CERTIFICATE":
        read.problem("caAcmPermission", "ACM cannot issue from a SHORT_LIVED_CERTIFICATE CA; use GENERAL_PURPOSE")
    return CaSettings(
        mode=mode,
        subject=CaSubject(
            common_name=read.string("caCommonName", f"{project} {stack} CA") or "",
            organization=read.string("caOrganization"),
            organizational_unit=read.string("caOrganizationalUnit"),
            country=_country(read),
            state=read.string("caState"),
            locality=read.string("caLocality"),
        ),
        key_algorithm=read.choice("caKeyAlgorithm", x509.KEY_ALGORITHMS, "RSA_2048"),
        validity_years=_validity_years(read, mode),
        usage_mode=usage_mode,
        permanent_deletion_days=read.integer("caPermanentDeletionDays", 30, 7, 30),
        key_storage_security_standard=read.choice(
            "caKeyStorageSecurityStandard", KEY_STORAGE_STANDARDS, KEY_STORAGE_STANDARDS[0]
        ),
        crl_enabled=crl_enabled,
        crl_expiration_days=read.integer("caCrlExpirationDays", 7, 1, 5000),
        crl_custom_cname=read.string("caCrlCustomCname"),
        acm_permission=acm_permission,
        protect=read.boolean("caProtect", True),
        stack=ca_stack,
        parent_arn=parent_arn,
    )


def _validity_years(read: _Reader, mode: str) -> int:
    """caValidityYears; 0 (the default) means 10 for a root and 5 for a subordinate, which must expire before
    its root and so leaves room for one rotation under it."""
    years = read.integer("caValidityYears", 0, 0, 30)
    return years or (5 if mode == "subordinate" else 10)


def _country(read: _Reader) -> str | None:
    country = read.string("caCountry")
    if country is not None and not re.match(r"^[A-Z]{2}$", country):
        read.problem("caCountry", f"{country!r} must be a two-letter ISO 3166 code such as US or DE")
    return country


def _parse_certificate(read: _Reader, ca: CaSettings) -> CertificateSettings:
    names = read.strings(
        "certNames",
        _is_certificate_name,
        "a DNS name or IP address",
    )
    common_name = read.string("certCommonName")
    if common_name is not None and not _is_certificate_name(common_name):
        read.problem("certCommonName", f"{common_name!r} is not a DNS name or IP address")
    short_lived = ca.usage_mode == "SHORT_LIVED_CERTIFICATE"
    # 0 (the default) means 90 days, or the most a SHORT_LIVED_CERTIFICATE CA allows.
    validity = read.integer("certValidityDays", 0, 0, 3650) or (SHORT_LIVED_MAX_DAYS if short_lived else 90)
    if short_lived and validity > SHORT_LIVED_MAX_DAYS:
        read.problem(
            "certValidityDays",
            f"is {validity} but caUsageMode SHORT_LIVED_CERTIFICATE allows at most {SHORT_LIVED_MAX_DAYS} days",
        )
    # 0 (the default) leaves it to the provider: a third of the validity.
    renew_before = read.integer("certRenewBeforeDays", 0, 0, max(validity - 1, 0)) or None
    throttle_minutes = read.integer(
        "certThrottleRetryMinutes", DEFAULT_THROTTLE_RETRY_MINUTES, 1, MAX_THROTTLE_RETRY_MINUTES
    )
    template = read.string("certTemplate", DEFAULT_TEMPLATE) or DEFAULT_TEMPLATE
    try:
        template_arn_for(template)
    except ValueError as error:
        read.problem("certTemplate", str(error))
    return CertificateSettings(
        common_name=common_name,
        names=names,
        key_algorithm=read.choice("certKeyAlgorithm", x509.KEY_ALGORITHMS, "EC_prime256v1"),
        validity_days=validity,
        renew_before_days=renew_before,
        template=template,
        throttle_retry_minutes=throttle_minutes,
    )


def _parse_backend(read: _Reader, ca: CaSettings, certificate: CertificateSettings) -> BackendSettings:
    network_cidr = read.string("networkCidr")
    vpc_id = read.string("vpcId")
    alb_subnets = read.strings("albSubnetIds", lambda s: s.startswith("subnet-"), "a subnet ID (subnet-...)")
    host_subnets = read.strings("hostSubnetIds", lambda s: s.startswith("subnet-"), "a subnet ID (subnet-...)")
    if network_cidr:
        try:
            subnet_cidrs(network_cidr)
        except ValueError:
            read.problem(
                "networkCidr", f"{network_cidr!r} must be an IPv4 network from /16 to /26, such as 10.42.0.0/24"
            )
        if vpc_id or alb_subnets or host_subnets:
            read.problem("networkCidr", "creates a VPC; it cannot be combined with vpcId, albSubnetIds, hostSubnetIds")
    else:
        if not vpc_id:
            read.problem("vpcId", "is required when backendEnabled is true and networkCidr is not set")
        if len(alb_subnets) < 2:
            read.problem("albSubnetIds", "an ALB needs subnets in at least two availability zones")
        if not host_subnets:
            read.problem("hostSubnetIds", "at least one subnet for the backend hosts is required")
    internal = read.boolean("albInternal", True)
    cidrs = read.strings("albIngressCidrs", _is_cidr, "a CIDR block such as 10.0.0.0/16")
    if not cidrs:
        read.problem("albIngressCidrs", "at least one CIDR allowed to reach the load balancer on 443 is required")
    if internal and any(_is_world(cidr) for cidr in cidrs):
        read.problem("albIngressCidrs", "0.0.0.0/0 and ::/0 are not allowed on an internal load balancer")
    certificate_arn = read.string("albCertificateArn")
    domain_name = read.string("albDomainName")
    if certificate_arn and not _ACM_ARN.match(certificate_arn):
        read.problem("albCertificateArn", f"{certificate_arn!r} is not an ACM certificate ARN")
    if domain_name and not x509.is_dns_name(domain_name):
        read.problem("albDomainName", f"{domain_name!r} is not a DNS name")
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
    if not re.match(r"^/[A-Za-z0-9._~/-]*$", health_path):
        read.problem("healthCheckPath", f"{health_path!r} must be an absolute URL path such as /healthz")
    host_count = read.integer("hostCount", 2, 1, 50)
    return BackendSettings(
        network_cidr=network_cidr,
        vpc_id=vpc_id or "",
        alb_subnet_ids=alb_subnets,
        host_subnet_ids=host_subnets,
        alb_internal=internal,
        alb_ingress_cidrs=cidrs,
        peer_security_group_ids=read.strings("peerSecurityGroupIds", _is_security_group_id, "a security group ID"),
        host_count=host_count,
        instance_type=read.string("instanceType", "t3.micro") or "t3.micro",
        http_redirect=read.boolean("httpRedirect", True),
        health_check_path=health_path,
        alb_certificate_arn=certificate_arn,
        alb_domain_name=domain_name,
        ami_parameter=read.string("amiParameter", AL2023_AMI_PARAMETER) or AL2023_AMI_PARAMETER,
        host_ami_id=_host_ami_id(read),
        **_parse_fleet(read, host_count),
        **_parse_parameter_key(read),
        **_parse_expiry_alarm(read, certificate),
    )


def _host_ami_id(read: _Reader) -> str | None:
    ami_id = read.string("hostAmiId")
    if ami_id and not _AMI_ID.match(ami_id):
        read.problem(
            "hostAmiId",
            f"{ami_id!r} is not an AMI id: 'ami-' followed by 8 or 17 lowercase hexadecimal digits, such as "
            "ami-0123456789abcdef0; empty: the AMI amiParameter names at the first deployment, kept",
        )
    return ami_id


def _parse_fleet(read: _Reader, host_count: int) -> dict[str, Any]:
    """The Auto Scaling group around hostCount: min <= hostCount <= max. hostMinCount 0 means hostCount;
    hostMaxCount 0 leaves room for the hosts an instance refresh launches beside the old ones."""
    minimum = read.integer("hostMinCount", 0, 0, 50) or host_count
    maximum = read.integer("hostMaxCount", 0, 0, 100) or None
    if minimum > host_count:
        read.problem("hostMinCount", f"is {minimum} but must be at most hostCount ({host_count}); 0 means hostCount")
    if maximum is not None and maximum < host_count:
        read.problem("hostMaxCount", f"is {maximum} but must be at least hostCount ({host_count})")
    return {
        "host_min_count": minimum,
        "host_max_count": maximum,
        # AWS's range for an instance refresh's MinHealthyPercentage.
        "host_min_healthy_percent": read.integer("hostMinHealthyPercent", 100, 0, 100),
        "host_root_volume_gib": _root_volume_gib(read),
    }


def _root_volume_gib(read: _Reader) -> int | None:
    """hostRootVolumeGiB: 0 (the default) keeps the AMI's size; else 8 (Amazon Linux 2023's) to 16384 (gp3)."""
    size = read.integer("hostRootVolumeGiB", 0, 0, 16384)
    if 0 < size < 8:
        read.problem("hostRootVolumeGiB", f"is {size} but must be 0 (the AMI's size) or from 8 to 16384")
    return size or None


def _parse_parameter_key(read: _Reader) -> dict[str, Any]:
    key_arn = read.string("parameterKmsKeyArn")
    if key_arn and not _KMS_KEY_ARN.match(key_arn):
        read.problem(
            "parameterKmsKeyArn", f"{key_arn!r} is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)"
        )
    writers = read.strings(
        "parameterWriterArns", lambda arn: bool(_IAM_PRINCIPAL_ARN.match(arn)), "an IAM role or user ARN"
    )
    if key_arn and writers:
        read.problem(
            "parameterWriterArns",
            "only applies to the key the stack creates; grant writers in parameterKmsKeyArn's policy",
        )
    return {"parameter_kms_key_arn": key_arn, "parameter_writer_arns": writers}


def _parse_expiry_alarm(read: _Reader, certificate: CertificateSettings) -> dict[str, Any]:
    """certExpiryAlarmDays must fall inside the renewal window: a fleet waiting for its next `pulumi up` in
    that window is healthy. 0 (the default) means 14, or half the window when that is shorter."""
    window = certificate.renew_before_days or certificate.validity_days // 3
    days = read.integer("certExpiryAlarmDays", 0, 0, 365)
    if days and days >= window:
        read.problem(
            "certExpiryAlarmDays",
            f"is {days} but must be less than the renewal window ({window} days, certRenewBeforeDays or a third of "
            "certValidityDays): certificates waiting in that window for the next pulumi up would raise the alarm",
        )
    topic = read.string("certExpiryAlarmTopicArn")
    if topic and not _SNS_TOPIC_ARN.match(topic):
        read.problem(
            "certExpiryAlarmTopicArn", f"{topic!r} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)"
        )
    return {"cert_expiry_alarm_days": days or min(14, max(1, window // 2)), "cert_expiry_alarm_topic_arn": topic}


def load_settings() -> Settings:
    """Read the current stack's config (project namespace and `aws:region`)."""
    import pulumi

    project, stack = pulumi.get_project(), pulumi.get_stack()
    config = pulumi.Config()
    raw: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        # Pulumi hands every value over as a string: lists as JSON, scalars as text that `_Reader` parses.
        value = config.get_object(key) if key in LIST_KEYS else config.get(key)
        if value is not None:
            raw[key] = value
    aws_config = pulumi.Config("aws")
    aws = {"profile": aws_config.get("profile"), "assumeRoles": aws_config.get_object("assumeRoles")}
    return parse_settings(raw, stack=stack, project=project, region=aws_config.get("region"), aws=aws)


#: The settings that are lists (`type: array` in Pulumi.yaml).
LIST_KEYS = frozenset(
    {"certNames", "albSubnetIds", "hostSubnetIds", "albIngressCidrs", "peerSecurityGroupIds", "parameterWriterArns"}
)

#: Every project setting. Tests check that Pulumi.yaml declares exactly these.
CONFIG_KEYS = (
    "caMode",
    "caStack",
    "caParentArn",
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
    "backendEnabled",
    "certCommonName",
    "certNames",
    "certKeyAlgorithm",
    "certValidityDays",
    "certRenewBeforeDays",
    "certTemplate",
    "certThrottleRetryMinutes",
    "networkCidr",
    "vpcId",
    "albSubnetIds",
    "hostSubnetIds",
    "albInternal",
    "albIngressCidrs",
    "peerSecurityGroupIds",
    "hostCount",
    "instanceType",
    "httpRedirect",
    "healthCheckPath",
    "albCertificateArn",
    "albDomainName",
    "amiParameter",
    "hostAmiId",
    "hostMinCount",
    "hostMaxCount",
    "hostMinHealthyPercent",
    "hostRootVolumeGiB",
    "parameterKmsKeyArn",
    "parameterWriterArns",
    "certExpiryAlarmDays",
    "certExpiryAlarmTopicArn",
    "awsEndpointUrl",
    "parameterPrefix",
)
