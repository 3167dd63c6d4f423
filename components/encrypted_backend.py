"""An ALB in front of nginx hosts that serve TLS with a certificate from the team's AWS Private CA.

Traffic is encrypted on both hops: client to load balancer (an ACM certificate on the HTTPS listener) and
load balancer to host (an HTTPS target group; nginx on each host presents the Private CA certificate).
Hosts trust the CA bundle, so they also verify each other when they call one another directly.

The TLS material reaches the hosts through SSM Parameter Store, never through user data: the component
writes the full chain, the private key and the CA bundle into three SecureString parameters encrypted with
a customer-managed KMS key whose policy lets only the hosts decrypt them; each host reads them at boot and
every 15 minutes from a systemd timer (see `components/host_bootstrap.py`). A routine `pulumi up` that
rotates the certificate updates the parameters only, and the hosts pick the new certificate up without
being replaced.

Hosts run in an Auto Scaling group launched from a launch template. A new boot script or AMI is a new
launch template version, which the group rolls out through an instance refresh that keeps
`min_healthy_percent` of the hosts in service. The AMI changes only when asked: it is `ami_id`, or the one
`ami_parameter` named at the first deployment, kept from then on. Each host reports the days left on the
certificate it serves (CloudWatch metric `PcaBackend/CertificateDaysToExpiry`, dimension `Backend`); an alarm
fires well before any served certificate expires.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict, TypeVar

import pulumi
import pulumi_aws as aws

from components import x509
from components.host_bootstrap import (
    CERTIFICATE_PATH,
    METRIC_DIMENSION,
    METRIC_NAME,
    METRIC_NAMESPACE,
    METRIC_PUT_ACTION,
    PARAMETER_READ_ACTION,
    PRIVATE_KEY_PATH,
    HostParameters,
    check_region,
    pack_user_data,
    render_user_data,
)
from components.nginx_config import render_server_block
from components.rules import aws as aws_rules
from components.rules.names import is_fqdn
from components.rules.network import is_cidr, is_world

__all__ = [
    "CERTIFICATE_METRIC_NAME",
    "CERTIFICATE_METRIC_NAMESPACE",
    "DEFAULT_AMI_PARAMETER",
    "LISTENER_SSL_POLICY",
    "TLS_GATE_SCRIPT_PATH",
    "TRUST_CA_SCRIPT_PATH",
    "EncryptedBackend",
    "EncryptedBackendArgs",
]

DEFAULT_AMI_PARAMETER = aws_rules.AL2023_AMI_PARAMETER
#: Set explicitly: listeners created through the API default to the old ELBSecurityPolicy-2016-08.
LISTENER_SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
#: The trust-ca and host gate scripts the hosts run, embedded in their user data.
TRUST_CA_SCRIPT_PATH = Path(__file__).resolve().parent.parent / "scripts" / "trust-ca"
TLS_GATE_SCRIPT_PATH = TRUST_CA_SCRIPT_PATH.with_name("tls-gate")
#: Stands in for the CA fingerprints while the CA bundle is not known yet: the rest of the boot script is
#: checked before any resource is created.
_STAND_IN_PIN = "0" * 64
#: The metric every host's sync script reports (components/host_bootstrap.py renders it): the days left on the
#: certificate nginx serves, with one dimension `Backend` = the backend's name.
CERTIFICATE_METRIC_NAMESPACE = METRIC_NAMESPACE
CERTIFICATE_METRIC_NAME = METRIC_NAME
#: Root volume of the Amazon Linux 2023 AMIs.
ROOT_DEVICE_NAME = "/dev/xvda"
#: Seconds a new host has to install nginx and its certificate before failed ELB health checks count.
HEALTH_CHECK_GRACE_SECONDS = 300

# What the SSM agent needs for Session Manager (AWS Systems Manager user guide, "Create a custom IAM role
# for Session Manager", plus the ec2messages actions the agent uses for its command channel). It is the
# part of AmazonSSMManagedInstanceCore hosts need, without that policy's ssm:GetParameter(s) on "*".
SESSION_MANAGER_ACTIONS = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
)

# Key management without use: what the account's administrators keep on the parameter key. The AWS default
# key policy gives the account "kms:*", which lets any IAM policy in the account grant kms:Decrypt; this list
# leaves out Encrypt, Decrypt, ReEncrypt*, GenerateDataKey* so only the key policy's own statements can.
# https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html ("Allows key administrators
# to administer the KMS key").
KEY_ADMINISTRATION_ACTIONS = (
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
)
# Parameter Store calls Encrypt (Standard tier) or GenerateDataKey (Advanced tier, envelope encryption) on
# PutParameter, and Decrypt on GetParameter --with-decryption; the encryption context is always
# {"PARAMETER_ARN": "<the parameter's ARN>"}.
# https://docs.aws.amazon.com/kms/latest/developerguide/services-parameter-store.html
PARAMETER_WRITER_ACTIONS = ("kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt")
PARAMETER_ARN_CONTEXT = "kms:EncryptionContext:PARAMETER_ARN"
#: A deleted key can be restored (CancelKeyDeletion) for this many days, the most KMS allows.
KEY_DELETION_WINDOW_DAYS = 30
# Cost of the key: $1/month, plus $1/month per rotated generation of key material KMS keeps, and $0.03 per
# 10,000 requests beyond the account's free 20,000 a month (https://aws.amazon.com/kms/pricing/).

# Used in the KMS alias (alias/pca-backend/<name>), the alarm's name and the metric dimension.
_BACKEND_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: EC2 resource ids: the prefix, then 8 (older) or 17 hexadecimal digits.


class EncryptedBackendArgs(TypedDict):
    """Inputs of `EncryptedBackend`."""

    vpc_id: pulumi.Input[str]
    """The VPC of the load balancer, the hosts and the security groups."""
    alb_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets of the load balancer: at least two, in different availability zones."""
    host_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets of the hosts (private subnets with a route to SSM and the package repositories); the Auto
    Scaling group spreads the hosts over them."""
    internal: bool
    """True for an internal load balancer (private IPs only), False for an internet-facing one."""
    ingress_cidrs: Sequence[str]
    """IPv4/IPv6 CIDRs allowed to reach the load balancer on 443 (and 80 with `http_redirect`). 0.0.0.0/0 and
    ::/0 are allowed only when `internal` is False; they never reach the hosts."""
    peer_security_group_ids: NotRequired[Sequence[pulumi.Input[str]]]
    """Security groups whose members may call the hosts directly on `backend_port` (host to host). The
    hosts of this fleet may always call each other."""
    host_count: int
    """Number of hosts: the Auto Scaling group's desired capacity (1 to 100)."""
    host_min_count: NotRequired[int]
    """The group's minimum size (at most `host_count`). Default: `host_count`."""
    host_max_count: NotRequired[int]
    """The group's maximum size (at least `host_count`, at most 100). Default: room for the extra hosts an
    instance refresh launches, `host_count` times (`min_healthy_percent` + 100, at most 200) percent,
    rounded up; with no scaling policy the group still runs `host_count` hosts."""
    min_healthy_percent: NotRequired[int]
    """Share of `host_count` (0 to 100) an instance refresh keeps in service while it replaces hosts; the
    refresh may launch up to `min_healthy_percent + 100` percent (at most 200) meanwhile. Default 100: new
    hosts come up and pass health checks before old ones go."""
    instance_type: str
    """EC2 instance type of the hosts, for example 't3.small'."""
    root_volume_gib: NotRequired[int]
    """Size of the hosts' encrypted gp3 root volume in GiB (8 to 16384; at least the AMI's). Default: the
    AMI's own size."""
    backend_port: NotRequired[int]
    """Port nginx serves TLS on (the target group port). Default 443."""
    health_check_path: NotRequired[str]
    """Path of the load balancer's HTTPS health check; nginx answers it with 200. Default '/healthz'."""
    http_redirect: NotRequired[bool]
    """Add an HTTP listener on port 80 whose only action is a 301 redirect to HTTPS. Default False."""
    listener_certificate_arn: NotRequired[pulumi.Input[str]]
    """ARN of an ACM certificate for the HTTPS listener. Give this, or `listener_domain_name` with
    `private_ca_arn`."""
    listener_domain_name: NotRequired[str]
    """Domain name of an ACM private certificate the component requests from `private_ca_arn` for the
    listener; also the host name of `https_url`."""
    private_ca_arn: NotRequired[pulumi.Input[str]]
    """ARN of the AWS Private CA that issues the listener's ACM private certificate. ACM renews that
    certificate only if the CA grants `acm.amazonaws.com` the IssueCertificate, GetCertificate and
    ListPermissions permissions (`aws.acmpca.Permission`, created once next to the CA); without them
    renewal fails."""
    server_names: Sequence[str]
    """nginx `server_name` values of the hosts (the names on the backend certificate)."""
    full_chain_pem: pulumi.Input[str]
    """The backend certificate followed by its intermediates (PEM)."""
    private_key_pem: pulumi.Input[str]
    """The backend certificate's private key (PEM); treated as a secret whatever is passed."""
    ca_bundle_pem: pulumi.Input[str]
    """The CA certificates (PEM) the hosts trust."""
    parameter_prefix: str
    """SSM parameter path under which `full-chain`, `private-key` and `ca-bundle` are written, for example
    '/pca-backend/dev'."""
    parameter_kms_key_arn: NotRequired[pulumi.Input[str]]
    """ARN of an existing symmetric KMS key for the parameters instead of the key the component creates.
    Its key policy must let the host role decrypt and the deploying identity encrypt and decrypt."""
    parameter_writer_arns: NotRequired[Sequence[str]]
    """IAM role or user ARNs the created key lets write (and read back) the parameters. Default: the
    identity running `pulumi up` (for an assumed role, the role)."""
    backend_name: NotRequired[str]
    """The backend's name: the metric dimension `Backend` its hosts report under, and part of the key alias
    and alarm name; letters, digits, '-' and '_' (at most 64). Default: `parameter_prefix` without the
    leading '/', other characters turned into '-' ('/pca-backend/dev' gives 'pca-backend-dev')."""
    certificate_alarm_days: NotRequired[int]
    """The alarm fires when any host serves a certificate with fewer days left than this (1 to 365).
    Default 14."""
    alarm_topic_arn: NotRequired[pulumi.Input[str]]
    """SNS topic the alarm notifies (on alarm and on recovery). Default: none."""
    region: str
    """AWS region of the stack; the hosts call SSM and CloudWatch there."""
    ami_id: NotRequired[str]
    """AMI of the hosts ('ami-' and 8 or 17 hex digits); `ami_parameter` is then not read. Changing it is how
    the hosts move to a new AMI: a new launch template version, rolled out by instance refresh. Default: the
    AMI `ami_parameter` names at the first deployment, kept from then on."""
    ami_parameter: NotRequired[str]
    """SSM parameter naming the AMI when `ami_id` is not given; the AMI it names when the launch template is
    created is kept (later releases published in it change nothing). Default: the latest Amazon Linux 2023
    (x86_64)."""
    tags: NotRequired[Mapping[str, str]]
    """Tags added to every resource that takes tags."""


@dataclass(frozen=True)
class _Fleet:
    """The Auto Scaling group's sizes and rollout preference."""

    desired: int
    minimum: int
    maximum: int
    min_healthy_percent: int

    @property
    def max_healthy_percent(self) -> int:
        return self.max_healthy_for(self.min_healthy_percent)

    @staticmethod
    def max_healthy_for(min_healthy_percent: int) -> int:
        # AWS: 100 to 200, and at most 100 above the minimum (API_InstanceMaintenancePolicy, Amazon EC2
        # Auto Scaling API reference).
        return min(200, min_healthy_percent + 100)


_T = TypeVar("_T")


@dataclass(frozen=True)
class _Settings:
    """`EncryptedBackendArgs` validated, defaults applied."""

    internal: bool
    ingress_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    peer_security_group_ids: tuple[pulumi.Input[str], ...]
    fleet: _Fleet
    instance_type: str
    root_volume_gib: int | None
    backend_port: int
    health_check_path: str
    http_redirect: bool
    listener_certificate_arn: pulumi.Input[str] | None
    listener_domain_name: str | None
    private_ca_arn: pulumi.Input[str] | None
    parameter_prefix: str
    parameter_kms_key_arn: pulumi.Input[str] | None
    parameter_writer_arns: tuple[str, ...]
    backend_name: str
    certificate_alarm_days: int
    alarm_topic_arn: pulumi.Input[str] | None
    region: str
    ami_id: str | None
    ami_parameter: str
    tags: dict[str, str]


_REQUIRED = (
    "vpc_id",
    "alb_subnet_ids",
    "host_subnet_ids",
    "internal",
    "ingress_cidrs",
    "host_count",
    "instance_type",
    "server_names",
    "full_chain_pem",
    "private_key_pem",
    "ca_bundle_pem",
    "parameter_prefix",
    "region",
)


def _is_plain_list(value: object) -> bool:
    return isinstance(value, list | tuple)


def _check_bool(args: Mapping[str, Any], key: str, default: bool | None = None) -> bool:
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be True or False, got {value!r}")
    return value


def _check_int(args: Mapping[str, Any], key: str, low: int, high: int, default: int | None = None) -> int:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be an integer from {low} to {high}, got {value!r}")
    return value


def _check_cidrs(
    cidrs: object, internal: bool, ports: int
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if isinstance(cidrs, str) or not _is_plain_list(cidrs) or not cidrs:
        raise ValueError(f"ingress_cidrs must be a non-empty list of CIDRs such as ['10.0.0.0/16'], got {cidrs!r}")
    for cidr in cidrs:  # type: ignore[attr-defined]
        if not is_cidr(cidr):
            raise ValueError(
                f"ingress_cidrs entry {cidr!r} is not a CIDR: use a network address and prefix, "
                "such as '10.0.0.0/16' or 'fd00::/8' (no host bits set)"
            )
        if is_world(cidr) and internal:
            raise ValueError(
                f"ingress_cidrs entry {cidr!r} opens an internal load balancer to every address: list the "
                "networks that call it (0.0.0.0/0 and ::/0 are allowed only when internal is False)"
            )
    problem = aws_rules.security_group_rules_problem(cidrs, ports)  # type: ignore[arg-type]
    if problem is not None:
        raise ValueError(f"ingress_cidrs {problem}")
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)  # type: ignore[attr-defined]


def _check_id_list(key: str, value: object, *, minimum: int, prefix: str, kind: str) -> None:
    """Checks a plain list of EC2 IDs (`prefix` without the dash, as settings do); a list that is an Output, or
    an entry that is one (not known until deployment), is checked by AWS at deployment."""
    if isinstance(value, str):
        raise ValueError(f"{key} must be a list of ids, got the string {value!r}")
    if not _is_plain_list(value):
        return
    if len(value) < minimum:  # type: ignore[arg-type]
        raise ValueError(f"{key} must list at least {minimum} id(s), got {value!r}")
    for item in value:  # type: ignore[attr-defined]
        if isinstance(item, str) and not aws_rules.is_resource_id(item, prefix):
            raise ValueError(f"{key} entry {item!r} must be {kind} ({aws_rules.resource_id_allowed(prefix)})")


def _check_pem(key: str, value: object, marker: str) -> None:
    if isinstance(value, str) and marker not in value:
        raise ValueError(f"{key} must be PEM text containing {marker!r}")


def _check_arn(key: str, value: object, rule: Callable[[object], bool], example: str) -> None:
    """A plain string must pass `rule`; an Output is checked by AWS at deployment."""
    if isinstance(value, str) and not rule(value):
        raise ValueError(f"{key} must be an ARN such as {example!r}, got {value!r}")


def _normalise(args: Mapping[str, Any]) -> dict[str, Any]:
    """`args` with every optional argument present (its default applied); names what is missing."""
    missing = [key for key in _REQUIRED if args.get(key) is None]
    if missing:
        raise ValueError(f"EncryptedBackendArgs is missing required argument(s): {', '.join(missing)}")
    prefix = args["parameter_prefix"]
    host_count = args["host_count"]
    defaults: dict[str, Any] = {
        "peer_security_group_ids": (),
        "host_min_count": host_count,
        "min_healthy_percent": 100,
        "backend_port": 443,
        "health_check_path": "/healthz",
        "http_redirect": False,
        "parameter_writer_arns": (),
        "backend_name": re.sub(r"[^A-Za-z0-9_-]", "-", prefix.strip("/"))[:64] if isinstance(prefix, str) else prefix,
        "certificate_alarm_days": 14,
        "ami_parameter": DEFAULT_AMI_PARAMETER,
        "tags": {},
    }
    return {**defaults, **{key: value for key, value in args.items() if value is not None}}


def _network_rules(args: Mapping[str, Any]) -> None:
    if isinstance(args["vpc_id"], str) and not aws_rules.is_resource_id(args["vpc_id"], "vpc"):
        raise ValueError(f"vpc_id must be a VPC id of {aws_rules.resource_id_allowed('vpc')}, got {args['vpc_id']!r}")
    _check_id_list("alb_subnet_ids", args["alb_subnet_ids"], minimum=2, prefix="subnet", kind="a subnet ID")
    _check_id_list("host_subnet_ids", args["host_subnet_ids"], minimum=1, prefix="subnet", kind="a subnet ID")
    peers = args["peer_security_group_ids"]
    if isinstance(peers, str) or not _is_plain_list(peers):
        raise ValueError(f"peer_security_group_ids must be a list of security group ids, got {peers!r}")
    _check_id_list("peer_security_group_ids", peers, minimum=0, prefix="sg", kind="a security group ID")
    if len(peers) + 2 > aws_rules.SECURITY_GROUP_RULES_MAX:
        raise ValueError(
            f"peer_security_group_ids lists {len(peers)} groups; with the load balancer and the fleet that exceeds "
            f"AWS's {aws_rules.SECURITY_GROUP_RULES_MAX} rules per security group"
        )


def _fleet_rules(args: Mapping[str, Any]) -> _Fleet:
    desired = _check_int(args, "host_count", *aws_rules.HOST_COUNT_RANGE)
    minimum = _check_int(args, "host_min_count", 0, aws_rules.HOST_COUNT_RANGE[1])
    if minimum > desired:
        raise ValueError(f"host_min_count must be at most host_count ({desired}), got {minimum}")
    # AWS's range for an instance refresh's MinHealthyPercentage.
    min_healthy = _check_int(args, "min_healthy_percent", *aws_rules.MIN_HEALTHY_PERCENT_RANGE)
    headroom = -(-desired * _Fleet.max_healthy_for(min_healthy) // 100)
    maximum = _check_int(args, "host_max_count", 1, aws_rules.HOST_MAX_COUNT, default=headroom)
    if maximum < desired:
        raise ValueError(f"host_max_count must be at least host_count ({desired}), got {maximum}")
    instance_type = args["instance_type"]
    if not aws_rules.is_instance_type(instance_type):
        raise ValueError(f"instance_type must be an EC2 instance type such as 't3.small', got {instance_type!r}")
    return _Fleet(desired=desired, minimum=minimum, maximum=maximum, min_healthy_percent=min_healthy)


def _listener_rules(args: Mapping[str, Any]) -> None:
    health_check_path = args["health_check_path"]
    health_check_problem = aws_rules.health_check_path_problem(health_check_path)
    if health_check_problem is not None:
        raise ValueError(f"health_check_path {health_check_problem}")
    certificate_arn = args.get("listener_certificate_arn")
    domain_name = args.get("listener_domain_name")
    private_ca_arn = args.get("private_ca_arn")
    if certificate_arn is not None and (domain_name is not None or private_ca_arn is not None):
        raise ValueError(
            "give exactly one listener certificate source: listener_certificate_arn, or "
            "listener_domain_name together with private_ca_arn (not both)"
        )
    if certificate_arn is None and (domain_name is None or private_ca_arn is None):
        raise ValueError(
            "give exactly one listener certificate source: listener_certificate_arn (an ACM certificate), "
            "or listener_domain_name together with private_ca_arn (an ACM private certificate)"
        )
    if domain_name is not None and not (isinstance(domain_name, str) and is_fqdn(domain_name)):
        raise ValueError(
            "listener_domain_name must be a DNS name of two labels or more (no wildcard) such as "
            f"'api.internal.example', got {domain_name!r}"
        )


def _parameter_rules(args: Mapping[str, Any]) -> None:
    prefix = args["parameter_prefix"]
    prefix_problem = aws_rules.parameter_prefix_problem(prefix)
    if prefix_problem is not None:
        raise ValueError(f"parameter_prefix {prefix_problem}")
    _check_arn(
        "parameter_kms_key_arn",
        args.get("parameter_kms_key_arn"),
        aws_rules.is_kms_key_arn,
        "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    )
    writers = args["parameter_writer_arns"]
    if isinstance(writers, str) or not _is_plain_list(writers):
        raise ValueError(f"parameter_writer_arns must be a list of IAM role or user ARNs, got {writers!r}")
    for writer in writers:
        if not isinstance(writer, str) or not aws_rules.is_iam_principal_arn(writer):
            raise ValueError(
                "parameter_writer_arns entries must be IAM role or user ARNs such as "
                f"'arn:aws:iam::123456789012:role/deploy', got {writer!r}"
            )
    if writers and args.get("parameter_kms_key_arn") is not None:
        raise ValueError(
            "parameter_writer_arns applies to the key the component creates; with parameter_kms_key_arn, "
            "grant writers in that key's own policy"
        )
    _check_pem("full_chain_pem", args["full_chain_pem"], "-----BEGIN CERTIFICATE-----")
    _check_pem("ca_bundle_pem", args["ca_bundle_pem"], "-----BEGIN CERTIFICATE-----")
    _check_pem("private_key_pem", args["private_key_pem"], "PRIVATE KEY-----")


def _monitoring_rules(args: Mapping[str, Any]) -> int:
    name = args["backend_name"]
    if not isinstance(name, str) or not _BACKEND_NAME_RE.match(name):
        raise ValueError(
            "backend_name must be 1 to 64 letters, digits, '-' or '_' (it defaults to parameter_prefix "
            f"with '/' turned into '-'), got {name!r}"
        )
    _check_arn(
        "alarm_topic_arn",
        args.get("alarm_topic_arn"),
        aws_rules.is_sns_topic_arn,
        "arn:aws:sns:us-east-1:123456789012:ops",
    )
    return _check_int(args, "certificate_alarm_days", 1, aws_rules.EXPIRY_ALARM_DAYS_MAX)


def _host_image_rules(args: Mapping[str, Any]) -> tuple[str, str | None, str]:
    region = check_region(args["region"])
    ami_id = args.get("ami_id")
    if ami_id is not None and (not isinstance(ami_id, str) or not aws_rules.is_resource_id(ami_id, "ami")):
        raise ValueError(
            "ami_id must be an AMI id: 'ami-' followed by 8 or 17 lowercase hexadecimal digits, such as "
            f"'ami-0123456789abcdef0', got {ami_id!r}"
        )
    ami_parameter = args["ami_parameter"]
    if not aws_rules.is_parameter_path(ami_parameter):
        raise ValueError(f"ami_parameter must be an SSM parameter name starting with '/', got {ami_parameter!r}")
    return region, ami_id, ami_parameter


def _tag_rules(args: Mapping[str, Any]) -> dict[str, str]:
    tags = args["tags"]
    tag_problems = aws_rules.tag_problems(tags)
    if tag_problems:
        raise ValueError("tags " + "; ".join(tag_problems))
    return dict(tags)


def _validate(raw: Mapping[str, Any]) -> _Settings:
    """Raises ValueError listing every argument that is wrong and what is allowed, before any resource exists."""
    args = _normalise(raw)
    problems: list[str] = []

    def collect(rule: Callable[[], _T]) -> _T:
        """The rule's result; a problem is recorded and the caller's placeholder is never used (we raise)."""
        try:
            return rule()
        except ValueError as error:
            problems.append(str(error))
            return None  # type: ignore[return-value]

    internal = collect(lambda: _check_bool(args, "internal"))
    http_redirect = collect(lambda: _check_bool(args, "http_redirect"))
    ingress_cidrs = collect(lambda: _check_cidrs(args["ingress_cidrs"], bool(internal), 2 if http_redirect else 1))
    collect(lambda: _network_rules(args))
    fleet = collect(lambda: _fleet_rules(args))
    root_volume_gib = collect(
        lambda: (
            _check_int(args, "root_volume_gib", *aws_rules.ROOT_VOLUME_GIB_RANGE) if "root_volume_gib" in args else None
        )
    )
    backend_port = collect(lambda: _check_int(args, "backend_port", 1, 65535))
    collect(lambda: _listener_rules(args))
    collect(lambda: _parameter_rules(args))
    alarm_days = collect(lambda: _monitoring_rules(args))
    image = collect(lambda: _host_image_rules(args))
    tags = collect(lambda: _tag_rules(args))
    if problems:
        raise ValueError("; ".join(problems))
    region, ami_id, ami_parameter = image
    return _Settings(
        internal=internal,
        ingress_cidrs=ingress_cidrs,
        peer_security_group_ids=tuple(args["peer_security_group_ids"]),
        fleet=fleet,
        instance_type=args["instance_type"],
        root_volume_gib=root_volume_gib,
        backend_port=backend_port,
        health_check_path=args["health_check_path"],
        http_redirect=http_redirect,
        listener_certificate_arn=args.get("listener_certificate_arn"),
        listener_domain_name=args.get("listener_domain_name"),
        private_ca_arn=args.get("private_ca_arn"),
        parameter_prefix=args["parameter_prefix"],
        parameter_kms_key_arn=args.get("parameter_kms_key_arn"),
        parameter_writer_arns=tuple(args["parameter_writer_arns"]),
        backend_name=args["backend_name"],
        certificate_alarm_days=alarm_days,
        alarm_topic_arn=args.get("alarm_topic_arn"),
        region=region,
        ami_id=ami_id,
        ami_parameter=ami_parameter,
        tags=tags,
    )


def _render_boot_script(
    args: Mapping[str, Any], settings: _Settings, parameters: HostParameters
) -> str | pulumi.Output[str]:
    """The hosts' boot script: parameter names, nginx block, trust-ca, the host gate and the SHA-256 fingerprints of
    the CA bundle's certificates (the only CAs hosts accept); never key material. An output when the bundle is."""
    server_block = render_server_block(
        server_names=args["server_names"],
        certificate_path=CERTIFICATE_PATH,
        private_key_path=PRIVATE_KEY_PATH,
        port=settings.backend_port,
        health_check_path=settings.health_check_path,
    )
    render = functools.partial(
        render_user_data,
        region=settings.region,
        parameters=parameters,
        server_block=server_block,
        trust_ca_script=TRUST_CA_SCRIPT_PATH.read_text(encoding="utf-8"),
        tls_gate_script=TLS_GATE_SCRIPT_PATH.read_text(encoding="utf-8"),
        # The alarm's dimension: every host of this backend reports under the same name.
        metric_backend=settings.backend_name,
    )
    bundle = args["ca_bundle_pem"]
    if isinstance(bundle, str):
        try:
            fingerprints = x509.sha256_fingerprints(bundle)
        except ValueError as error:
            raise ValueError(f"ca_bundle_pem must be PEM CA certificates: {error}") from None
        return render(ca_fingerprints=fingerprints)
    # Known once the CA is: everything but the pins is checked now, before any resource is created.
    render(ca_fingerprints=[_STAND_IN_PIN])
    return pulumi.Output.from_input(bundle).apply(lambda pem: render(ca_fingerprints=x509.sha256_fingerprints(pem)))


def _statement(sid: str, principal: Any, actions: Sequence[str], condition: Any = None) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": principal},
        "Action": list(actions),
        "Resource": "*",
    }
    if condition is not None:
        statement["Condition"] = condition
    return statement


def _parameter_condition(parameter_arns: Sequence[str], region: str) -> dict[str, Any]:
    """Only through SSM in this region, only for these parameters (SSM's encryption context)."""
    return {
        "StringEquals": {
            PARAMETER_ARN_CONTEXT: sorted(parameter_arns),
            "kms:ViaService": f"ssm.{region}.amazonaws.com",
        }
    }


def _key_policy(
    *, partition: str, account: str, region: str, names: Sequence[str], writers: Sequence[str], host_role_arn: str
) -> str:
    """The parameter key's policy: administrators manage it, writers write, hosts decrypt; nobody else uses it.

    No statement gives the account `kms:*` (the AWS default): that would let any IAM policy in the account
    grant kms:Decrypt on the key, which is what the AWS-managed aws/ssm key allows today.
    """
    parameter_arns = [f"arn:{partition}:ssm:{region}:{account}:parameter{name}" for name in names]
    condition = _parameter_condition(parameter_arns, region)
    statements = [
        _statement("KeyAdministration", f"arn:{partition}:iam::{account}:root", KEY_ADMINISTRATION_ACTIONS),
        _statement("DeployerWritesTheParameters", sorted(set(writers)), PARAMETER_WRITER_ACTIONS, condition),
        _statement("HostsReadTheirParameters", host_role_arn, ["kms:Decrypt"], condition),
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def _host_policy(parameter_arns: Sequence[str], key_arn: str, region: str) -> str:
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadTlsParameters",
            "Effect": "Allow",
            # What the host sync calls: one GetParameters for all three (one consistent set).
            "Action": PARAMETER_READ_ACTION,
            "Resource": sorted(parameter_arns),
        },
        {
            "Sid": "DecryptTlsParameters",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": key_arn,
            "Condition": _parameter_condition(parameter_arns, region),
        },
        {
            # PutMetricData has no resource-level permissions; the namespace condition key narrows it.
            # https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/iam-cw-condition-keys-namespace.html
            "Sid": "ReportCertificateDays",
            "Effect": "Allow",
            "Action": METRIC_PUT_ACTION,
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": CERTIFICATE_METRIC_NAMESPACE}},
        },
        {"Sid": "SessionManager", "Effect": "Allow", "Action": list(SESSION_MANAGER_ACTIONS), "Resource": "*"},
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


#: The component's outputs (class annotations below), registered when it is built.
_OUTPUTS = (
    "alb_dns_name",
    "https_url",
    "target_group_arn",
    "alb_security_group_id",
    "backend_security_group_id",
    "auto_scaling_group_name",
    "parameter_names",
    "parameter_key_arn",
    "certificate_alarm_arn",
    "listener_arn",
    "host_role_arn",
)


class EncryptedBackend(pulumi.ComponentResource):
    """An application load balancer forwarding HTTPS to nginx hosts that serve a Private CA certificate.

    Creates:
    - two security groups with standalone rules: `alb` (443, and 80 with `http_redirect`, from
      `ingress_cidrs`; egress only to the backend group on `backend_port`) and `backend` (`backend_port` from
      the ALB group, from itself and from each peer group; egress 443 for SSM and package repositories;
      no SSH: use Session Manager);
    - the load balancer, an HTTPS target group with an HTTPS health check, an HTTPS listener (TLS 1.3 policy)
      and optionally an HTTP listener that only redirects to HTTPS;
    - optionally an ACM private certificate for the listener, issued by `private_ca_arn`;
    - a customer-managed KMS key (rotation on, 30-day deletion window) and its alias, unless
      `parameter_kms_key_arn` is given;
    - three SSM SecureString parameters under that key: `<prefix>/full-chain`, `<prefix>/private-key`,
      `<prefix>/ca-bundle`;
    - an IAM role and instance profile for the hosts: ssm:GetParameters on those three parameters only,
      kms:Decrypt of them only, cloudwatch:PutMetricData in the `PcaBackend` namespace only, Session Manager;
    - a launch template (IMDSv2 only, encrypted gp3 root volume, the boot script as user data) and an Auto
      Scaling group of `host_count` hosts registered with the target group, rolled by instance refresh;
    - a CloudWatch alarm on the lowest `CertificateDaysToExpiry` any host reports.
    """

    alb_dns_name: pulumi.Output[str]
    """DNS name of the load balancer."""
    https_url: pulumi.Output[str]
    """https:// URL of the service: `listener_domain_name` when given, else the load balancer's DNS name."""
    target_group_arn: pulumi.Output[str]
    """ARN of the HTTPS target group of the hosts."""
    alb_security_group_id: pulumi.Output[str]
    """Security group of the load balancer."""
    backend_security_group_id: pulumi.Output[str]
    """Security group of the hosts; add it to another fleet's peer list to let it call these hosts."""
    auto_scaling_group_name: pulumi.Output[str]
    """Name of the hosts' Auto Scaling group."""
    parameter_names: pulumi.Output[dict[str, str]]
    """Names of the SSM parameters, keyed full_chain, private_key and ca_bundle."""
    parameter_key_arn: pulumi.Output[str]
    """ARN of the KMS key the parameters are encrypted with."""
    certificate_alarm_arn: pulumi.Output[str]
    """ARN of the certificate-expiry alarm."""
    listener_arn: pulumi.Output[str]
    """ARN of the HTTPS listener."""
    host_role_arn: pulumi.Output[str]
    """ARN of the IAM role of the hosts."""

    def __init__(self, name: str, args: EncryptedBackendArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Everything is validated and rendered before the component registers: bad input creates nothing.
        settings = _validate(args)
        parameters = HostParameters(
            full_chain=f"{settings.parameter_prefix}/full-chain",
            private_key=f"{settings.parameter_prefix}/private-key",
            ca_bundle=f"{settings.parameter_prefix}/ca-bundle",
        )
        user_data = _render_boot_script(args, settings, parameters)

        super().__init__("pca-backend:index:EncryptedBackend", name, None, opts)
        self._name = name
        self._settings = settings

        alb_group, backend_group = self._security_groups(args["vpc_id"])
        load_balancer, target_group, listener = self._load_balancer(args, alb_group)
        role = self._host_role()
        key_arn = self._parameter_key(parameters, role)
        stored = self._parameters(
            parameters,
            key_arn=key_arn,
            full_chain_pem=args["full_chain_pem"],
            private_key_pem=args["private_key_pem"],
            ca_bundle_pem=args["ca_bundle_pem"],
        )
        role_policy, profile = self._host_permissions(role, stored, key_arn)
        group = self._hosts(
            args["host_subnet_ids"],
            backend_group=backend_group,
            target_group=target_group,
            profile=profile,
            user_data=user_data,
            depends_on=[*stored, role_policy],
        )
        alarm = self._certificate_alarm()

        self.alb_dns_name = load_balancer.dns_name
        self.https_url = (
            pulumi.Output.from_input(f"https://{settings.listener_domain_name}")
            if settings.listener_domain_name is not None
            else pulumi.Output.concat("https://", load_balancer.dns_name)
        )
        self.target_group_arn = target_group.arn
        self.alb_security_group_id = alb_group.id
        self.backend_security_group_id = backend_group.id
        self.auto_scaling_group_name = group.name
        self.parameter_names = pulumi.Output.from_input(
            {
                "full_chain": parameters.full_chain,
                "private_key": parameters.private_key,
                "ca_bundle": parameters.ca_bundle,
            }
        )
        self.parameter_key_arn = pulumi.Output.from_input(key_arn)
        self.certificate_alarm_arn = alarm.arn
        self.listener_arn = listener.arn
        self.host_role_arn = role.arn
        self.register_outputs({output: getattr(self, output) for output in _OUTPUTS})

    def _tags(self, resource_name: str, **extra: str) -> dict[str, str]:
        return {**self._settings.tags, **extra, "Name": resource_name}

    def _child(self, **options: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **options)

    def _security_groups(self, vpc_id: pulumi.Input[str]) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
        """The ALB and backend groups. Rules are standalone resources: the groups refer to each other."""
        name = self._name
        alb_group = aws.ec2.SecurityGroup(
            f"{name}-alb-sg",
            vpc_id=vpc_id,
            description="pca-backend load balancer: HTTPS from the allowed networks",
            tags=self._tags(f"{name}-alb-sg", **{"pca-backend:role": "alb"}),
            opts=self._child(),
        )
        backend_group = aws.ec2.SecurityGroup(
            f"{name}-backend-sg",
            vpc_id=vpc_id,
            description="pca-backend hosts: TLS from the load balancer, the fleet and its peers",
            tags=self._tags(f"{name}-backend-sg", **{"pca-backend:role": "backend"}),
            opts=self._child(),
        )
        self._alb_rules(alb_group, backend_group)
        self._backend_rules(alb_group, backend_group)
        return alb_group, backend_group

    def _alb_rules(self, alb_group: aws.ec2.SecurityGroup, backend_group: aws.ec2.SecurityGroup) -> None:
        name, settings = self._name, self._settings
        listener_ports = [443, 80] if settings.http_redirect else [443]
        for port in listener_ports:
            for index, network in enumerate(settings.ingress_cidrs):
                is_ipv4 = network.version == 4
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-alb-in-{port}-{index}",
                    security_group_id=alb_group.id,
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    cidr_ipv4=str(network) if is_ipv4 else None,
                    cidr_ipv6=None if is_ipv4 else str(network),
                    description=f"Port {port} from {network}",
                    opts=self._child(),
                )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-alb-out-backend",
            security_group_id=alb_group.id,
            ip_protocol="tcp",
            from_port=settings.backend_port,
            to_port=settings.backend_port,
            referenced_security_group_id=backend_group.id,
            description="Traffic and health checks to the hosts",
            opts=self._child(),
        )

    def _backend_rules(self, alb_group: aws.ec2.SecurityGroup, backend_group: aws.ec2.SecurityGroup) -> None:
        name, settings = self._name, self._settings
        sources: list[tuple[str, pulumi.Input[str], str]] = [
            ("alb", alb_group.id, "From the load balancer"),
            ("self", backend_group.id, "Host to host within the fleet"),
        ]
        sources += [
            (f"peer-{index}", peer, "Host to host from a peer fleet")
            for index, peer in enumerate(settings.peer_security_group_ids)
        ]
        for suffix, source, description in sources:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-backend-in-{suffix}",
                security_group_id=backend_group.id,
                ip_protocol="tcp",
                from_port=settings.backend_port,
                to_port=settings.backend_port,
                referenced_security_group_id=source,
                description=description,
                opts=self._child(),
            )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-backend-out-https",
            security_group_id=backend_group.id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
            description="HTTPS to SSM endpoints, CloudWatch, package repositories and other fleets",
            opts=self._child(),
        )
        if settings.backend_port != 443:
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-backend-out-fleet",
                security_group_id=backend_group.id,
                ip_protocol="tcp",
                from_port=settings.backend_port,
                to_port=settings.backend_port,
                referenced_security_group_id=backend_group.id,
                description="Host to host within the fleet",
                opts=self._child(),
            )

    def _load_balancer(
        self, args: Mapping[str, Any], alb_group: aws.ec2.SecurityGroup
    ) -> tuple[aws.lb.LoadBalancer, aws.lb.TargetGroup, aws.lb.Listener]:
        name, settings = self._name, self._settings
        load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=settings.internal,
            subnets=args["alb_subnet_ids"],
            security_groups=[alb_group.id],
            drop_invalid_header_fields=True,
            tags=self._tags(f"{name}-alb"),
            opts=self._child(),
        )
        target_group = aws.lb.TargetGroup(
            f"{name}-targets",
            vpc_id=args["vpc_id"],
            target_type="instance",
            protocol="HTTPS",
            port=settings.backend_port,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                enabled=True, protocol="HTTPS", port="traffic-port", path=settings.health_check_path, matcher="200"
            ),
            tags=self._tags(f"{name}-targets"),
            opts=self._child(),
        )
        listener = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=load_balancer.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=LISTENER_SSL_POLICY,
            certificate_arn=self._listener_certificate_arn(),
            default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)],
            tags=self._tags(f"{name}-https"),
            opts=self._child(),
        )
        if settings.http_redirect:
            redirect = aws.lb.ListenerDefaultActionRedirectArgs(protocol="HTTPS", port="443", status_code="HTTP_301")
            aws.lb.Listener(
                f"{name}-http-redirect",
                load_balancer_arn=load_balancer.arn,
                port=80,
                protocol="HTTP",
                default_actions=[aws.lb.ListenerDefaultActionArgs(type="redirect", redirect=redirect)],
                tags=self._tags(f"{name}-http-redirect"),
                opts=self._child(),
            )
        return load_balancer, target_group, listener

    def _listener_certificate_arn(self) -> pulumi.Input[str]:
        settings = self._settings
        if settings.listener_certificate_arn is not None:
            return settings.listener_certificate_arn
        # An ACM private certificate: ACM renews it only if the CA grants acm.amazonaws.com its permission
        # (see EncryptedBackendArgs.private_ca_arn).
        certificate = aws.acm.Certificate(
            f"{self._name}-listener-cert",
            domain_name=settings.listener_domain_name,
            certificate_authority_arn=settings.private_ca_arn,
            tags=self._tags(f"{self._name}-listener-cert"),
            opts=self._child(),
        )
        return certificate.arn

    def _host_role(self) -> aws.iam.Role:
        name = self._name
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        return aws.iam.Role(
            f"{name}-host-role",
            assume_role_policy=json.dumps(trust),
            description="pca-backend hosts: read their TLS parameters, report certificate expiry, Session Manager",
            tags=self._tags(f"{name}-host-role"),
            opts=self._child(),
        )

    def _parameter_key(self, names: HostParameters, role: aws.iam.Role) -> pulumi.Input[str]:
        """ARN of the key that encrypts the parameters: the given one, or a new customer-managed key.

        With the AWS-managed aws/ssm key, every principal of the account allowed ssm:GetParameter on a
        parameter can decrypt it; this key's policy names who may (see `_key_policy`).
        """
        settings = self._settings
        if settings.parameter_kms_key_arn is not None:
            return settings.parameter_kms_key_arn
        invoke = pulumi.InvokeOptions(parent=self)
        caller = aws.get_caller_identity_output(opts=invoke)
        writers: list[pulumi.Input[str]] = list(settings.parameter_writer_arns)
        if not writers:
            # For an assumed role, the role itself (the session's ARN changes with every session).
            writers = [aws.iam.get_session_context_output(arn=caller.arn, opts=invoke).issuer_arn]
        policy = pulumi.Output.all(
            partition=aws.get_partition_output(opts=invoke).partition,
            account=caller.account_id,
            writers=writers,
            host_role_arn=role.arn,
        ).apply(
            lambda values: _key_policy(
                region=settings.region,
                names=[names.full_chain, names.private_key, names.ca_bundle],
                **values,
            )
        )
        key = aws.kms.Key(
            f"{self._name}-parameter-key",
            description=f"pca-backend {settings.backend_name}: TLS parameters under {settings.parameter_prefix}",
            key_usage="ENCRYPT_DECRYPT",
            customer_master_key_spec="SYMMETRIC_DEFAULT",
            enable_key_rotation=True,
            deletion_window_in_days=KEY_DELETION_WINDOW_DAYS,
            policy=policy,
            tags=self._tags(f"{self._name}-parameter-key"),
            opts=self._child(),
        )
        aws.kms.Alias(
            f"{self._name}-parameter-key-alias",
            name=f"alias/pca-backend/{settings.backend_name}",
            target_key_id=key.key_id,
            opts=self._child(),
        )
        return key.arn

    def _parameters(
        self,
        names: HostParameters,
        *,
        key_arn: pulumi.Input[str],
        full_chain_pem: pulumi.Input[str],
        private_key_pem: pulumi.Input[str],
        ca_bundle_pem: pulumi.Input[str],
    ) -> list[aws.ssm.Parameter]:
        """SecureString parameters, encrypted with the parameter key, that the hosts read."""
        values: list[tuple[str, str, pulumi.Input[str], str, str]] = [
            ("full-chain", names.full_chain, full_chain_pem, "Intelligent-Tiering", "certificate and chain"),
            # Secret whatever the caller passed: the key must never show in state or previews in the clear.
            ("private-key", names.private_key, pulumi.Output.secret(private_key_pem), "Standard", "private key"),
            ("ca-bundle", names.ca_bundle, ca_bundle_pem, "Intelligent-Tiering", "CA bundle"),
        ]
        # Intelligent-Tiering: a chain or bundle of several RSA certificates can exceed the 4 KB of a
        # Standard parameter; SSM then stores it as Advanced.
        return [
            aws.ssm.Parameter(
                f"{self._name}-{suffix}",
                name=parameter_name,
                type="SecureString",
                key_id=key_arn,
                value=value,
                tier=tier,
                description=f"pca-backend: nginx TLS {what} (read by the hosts' sync timer)",
                tags=self._tags(f"{self._name}-{suffix}"),
                opts=self._child(),
            )
            for suffix, parameter_name, value, tier, what in values
        ]

    def _host_permissions(
        self, role: aws.iam.Role, stored: list[aws.ssm.Parameter], key_arn: pulumi.Input[str]
    ) -> tuple[aws.iam.RolePolicy, aws.iam.InstanceProfile]:
        """Read exactly the three parameters, report the certificate metric, Session Manager. No managed
        policy: AmazonSSMManagedInstanceCore would allow ssm:GetParameter(s) on every parameter."""
        name, region = self._name, self._settings.region
        policy = pulumi.Output.all(key_arn, *[parameter.arn for parameter in stored]).apply(
            lambda values: _host_policy(values[1:], values[0], region)
        )
        role_policy = aws.iam.RolePolicy(f"{name}-host-policy", role=role.id, policy=policy, opts=self._child())
        profile = aws.iam.InstanceProfile(
            f"{name}-host-profile", role=role.name, tags=self._tags(f"{name}-host-profile"), opts=self._child()
        )
        return role_policy, profile

    def _launch_template(
        self,
        *,
        backend_group: aws.ec2.SecurityGroup,
        profile: aws.iam.InstanceProfile,
        user_data: str | pulumi.Output[str],
    ) -> aws.ec2.LaunchTemplate:
        """Every host's definition. A changed boot script or AMI is a new version (the template itself stays)."""
        name, settings = self._name, self._settings
        image_id: pulumi.Input[str]
        if settings.ami_id is not None:
            # Asked for: a changed ami_id is a new version, rolled out by the group's instance refresh.
            image_id, ignore_changes = settings.ami_id, None
        else:
            # The public parameter moves with every Amazon Linux release (about every two weeks). Its value is
            # used when the template is created; afterwards Pulumi keeps the image_id from state, so a later
            # `pulumi up` does not roll the hosts, and a new boot script is a new version on the same AMI.
            # https://www.pulumi.com/docs/iac/concepts/options/ignorechanges/
            # insecure_value: an AMI id is not a secret.
            ami = aws.ssm.get_parameter_output(name=settings.ami_parameter, opts=pulumi.InvokeOptions(parent=self))
            image_id, ignore_changes = ami.insecure_value, ["image_id"]
        return aws.ec2.LaunchTemplate(
            f"{name}-hosts",
            description="pca-backend host: nginx serving the Private CA certificate from SSM",
            image_id=image_id,
            instance_type=settings.instance_type,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            vpc_security_group_ids=[backend_group.id],
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=ROOT_DEVICE_NAME,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        encrypted="true",
                        volume_type="gp3",
                        volume_size=settings.root_volume_gib,
                        delete_on_termination="true",
                    ),
                )
            ],
            # ip-name: hosts are ip-10-0-1-23.<region>.compute.internal (ec2.internal in us-east-1), the names
            # the backend certificate's EC2 wildcard covers, so host-to-host TLS verifies.
            private_dns_name_options=aws.ec2.LaunchTemplatePrivateDnsNameOptionsArgs(hostname_type="ip-name"),
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            user_data=pulumi.Output.from_input(user_data).apply(pack_user_data),
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type="volume", tags=self._tags(f"{name}-host"))
            ],
            update_default_version=True,
            tags=self._tags(f"{name}-hosts"),
            opts=self._child(ignore_changes=ignore_changes),
        )

    def _hosts(
        self,
        host_subnet_ids: pulumi.Input[Sequence[str]],
        *,
        backend_group: aws.ec2.SecurityGroup,
        target_group: aws.lb.TargetGroup,
        profile: aws.iam.InstanceProfile,
        user_data: str | pulumi.Output[str],
        depends_on: list[pulumi.Resource],
    ) -> aws.autoscaling.Group:
        name, fleet = self._name, self._settings.fleet
        template = self._launch_template(backend_group=backend_group, profile=profile, user_data=user_data)
        return aws.autoscaling.Group(
            f"{name}-hosts",
            vpc_zone_identifiers=host_subnet_ids,
            desired_capacity=fleet.desired,
            min_size=fleet.minimum,
            max_size=fleet.maximum,
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=template.id,
                # A pinned version number (not $Latest): a new one is a change the group rolls out.
                version=template.latest_version.apply(lambda version: str(int(version))),
            ),
            target_group_arns=[target_group.arn],
            # A host that fails the load balancer's HTTPS health check is replaced, not only one whose EC2
            # status check fails.
            health_check_type="ELB",
            health_check_grace_period=HEALTH_CHECK_GRACE_SECONDS,
            # On creation `pulumi up` waits (wait_for_capacity_timeout, 10 minutes) until this many hosts pass the
            # target group's health check: a boot that cannot serve fails the update loudly, and hosts this group
            # replaces (an earlier deployment's) are deleted only after the new ones serve. Later rollouts are the
            # instance refresh's, which keeps `min_healthy_percent` serving.
            min_elb_capacity=fleet.minimum,
            # A new launch template version (boot script, AMI) always starts a refresh; "tag" also rolls the
            # hosts when the tags they are launched with change.
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=fleet.min_healthy_percent,
                    max_healthy_percentage=fleet.max_healthy_percent,
                ),
                triggers=["tag"],
            ),
            tags=[
                aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
                for key, value in self._tags(f"{name}-host").items()
            ],
            opts=self._child(depends_on=depends_on),
        )

    def _certificate_alarm(self) -> aws.cloudwatch.MetricAlarm:
        """Fires when the lowest days-to-expiry any host reports drops below the threshold, or nobody reports."""
        name, settings = self._name, self._settings
        actions = [settings.alarm_topic_arn] if settings.alarm_topic_arn is not None else []
        return aws.cloudwatch.MetricAlarm(
            f"{name}-certificate-expiry",
            alarm_description=(
                f"pca-backend {settings.backend_name}: a host serves a certificate that expires in less than "
                f"{settings.certificate_alarm_days} days, or no host has reported for an hour. Run `pulumi up` "
                "(it renews the certificate) and check the hosts' pca-backend-tls-sync journal."
            ),
            namespace=CERTIFICATE_METRIC_NAMESPACE,
            metric_name=CERTIFICATE_METRIC_NAME,
            dimensions={METRIC_DIMENSION: settings.backend_name},
            statistic="Minimum",
            # Hosts report every 15 minutes: an hour holds about four reports from each.
            period=3600,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            threshold=settings.certificate_alarm_days,
            comparison_operator="LessThanThreshold",
            # No report at all means no host runs its sync: nothing then proves the served certificate is valid.
            treat_missing_data="breaching",
            alarm_actions=actions,
            ok_actions=actions,
            tags=self._tags(f"{name}-certificate-expiry"),
            opts=self._child(),
        )
