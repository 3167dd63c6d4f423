"""An ALB in front of nginx hosts that serve TLS with a certificate from the team's AWS Private CA.

Traffic is encrypted on both hops: client to load balancer (an ACM certificate on the HTTPS listener) and
load balancer to host (an HTTPS target group; nginx on each host presents the Private CA certificate).
Hosts trust the CA bundle, so they also verify each other when they call one another directly.

The TLS material reaches the hosts through SSM Parameter Store, never through user data: the component
writes the full chain, the private key and the CA bundle into three SecureString parameters; each host
reads them at boot and every 15 minutes from a systemd timer (see `components/host_bootstrap.py`). A
routine `pulumi up` that rotates the certificate updates the parameters only, and the hosts pick the new
certificate up without being replaced.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

from components import x509
from components.host_bootstrap import (
    CERTIFICATE_PATH,
    PRIVATE_KEY_PATH,
    HostParameters,
    check_region,
    is_parameter_path,
    is_reserved_parameter_path,
    render_user_data,
)
from components.nginx_config import render_server_block

__all__ = [
    "DEFAULT_AMI_PARAMETER",
    "LISTENER_SSL_POLICY",
    "TRUST_CA_SCRIPT_PATH",
    "EncryptedBackend",
    "EncryptedBackendArgs",
]

DEFAULT_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
#: Set explicitly: listeners created through the API default to the old ELBSecurityPolicy-2016-08.
LISTENER_SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
#: The trust-ca script the hosts run, embedded in their user data.
TRUST_CA_SCRIPT_PATH = Path(__file__).resolve().parent.parent / "scripts" / "trust-ca"

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

_INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_HEALTH_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]*$")


class EncryptedBackendArgs(TypedDict):
    """Inputs of `EncryptedBackend`."""

    vpc_id: pulumi.Input[str]
    """The VPC of the load balancer, the hosts and the security groups."""
    alb_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets of the load balancer: at least two, in different availability zones."""
    host_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets of the hosts (private subnets with a route to SSM and the package repositories); hosts are
    spread over them round robin."""
    internal: bool
    """True for an internal load balancer (private IPs only), False for an internet-facing one."""
    ingress_cidrs: Sequence[str]
    """IPv4/IPv6 CIDRs allowed to reach the load balancer on 443 (and 80 with `http_redirect`). 0.0.0.0/0 and
    ::/0 are allowed only when `internal` is False; they never reach the hosts."""
    peer_security_group_ids: NotRequired[Sequence[pulumi.Input[str]]]
    """Security groups whose members may call the hosts directly on `backend_port` (host to host). The
    hosts of this fleet may always call each other."""
    host_count: int
    """Number of hosts (1 or more)."""
    instance_type: str
    """EC2 instance type of the hosts, for example 't3.small'."""
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
    region: str
    """AWS region of the stack; the hosts call SSM there."""
    ami_parameter: NotRequired[str]
    """SSM parameter holding the AMI id of the hosts. Default: the latest Amazon Linux 2023 (x86_64)."""
    tags: NotRequired[Mapping[str, str]]
    """Tags added to every resource that takes tags."""


@dataclass(frozen=True)
class _Settings:
    """`EncryptedBackendArgs` validated, defaults applied."""

    internal: bool
    ingress_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    peer_security_group_ids: tuple[pulumi.Input[str], ...]
    host_count: int
    instance_type: str
    backend_port: int
    health_check_path: str
    http_redirect: bool
    listener_certificate_arn: pulumi.Input[str] | None
    listener_domain_name: str | None
    private_ca_arn: pulumi.Input[str] | None
    parameter_prefix: str
    region: str
    ami_parameter: str
    tags: dict[str, str]


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


def _check_cidrs(cidrs: object, internal: bool) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if isinstance(cidrs, str) or not _is_plain_list(cidrs) or not cidrs:
        raise ValueError(f"ingress_cidrs must be a non-empty list of CIDRs such as ['10.0.0.0/16'], got {cidrs!r}")
    networks = []
    for cidr in cidrs:  # type: ignore[attr-defined]
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except (TypeError, ValueError):
            raise ValueError(
                f"ingress_cidrs entry {cidr!r} is not a CIDR: use a network address and prefix, "
                "such as '10.0.0.0/16' or 'fd00::/8' (no host bits set)"
            ) from None
        if network.prefixlen == 0 and internal:
            raise ValueError(
                f"ingress_cidrs entry {cidr!r} opens an internal load balancer to every address: list the "
                "networks that call it (0.0.0.0/0 and ::/0 are allowed only when internal is False)"
            )
        networks.append(network)
    return tuple(networks)


def _check_string_list(key: str, value: object, *, minimum: int, prefix: str) -> None:
    """Checks a plain list of ids; Outputs are checked by AWS at deployment."""
    if isinstance(value, str):
        raise ValueError(f"{key} must be a list of ids, got the string {value!r}")
    if not _is_plain_list(value):
        return
    if len(value) < minimum:  # type: ignore[arg-type]
        raise ValueError(f"{key} must list at least {minimum} id(s), got {value!r}")
    for item in value:  # type: ignore[attr-defined]
        if isinstance(item, str) and not item.startswith(prefix):
            raise ValueError(f"{key} entry {item!r} must be an id starting with {prefix!r}")


def _check_pem(key: str, value: object, marker: str) -> None:
    if isinstance(value, str) and marker not in value:
        raise ValueError(f"{key} must be PEM text containing {marker!r}")


def _validate(args: Mapping[str, Any]) -> _Settings:
    """Raises ValueError naming the argument and what is allowed, before any resource exists."""
    required = (
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
    missing = [key for key in required if args.get(key) is None]
    if missing:
        raise ValueError(f"EncryptedBackendArgs is missing required argument(s): {', '.join(missing)}")

    internal = _check_bool(args, "internal")
    ingress_cidrs = _check_cidrs(args["ingress_cidrs"], internal)
    host_count = _check_int(args, "host_count", 1, 100)
    backend_port = _check_int(args, "backend_port", 1, 65535, default=443)
    http_redirect = _check_bool(args, "http_redirect", default=False)

    if isinstance(args["vpc_id"], str) and not args["vpc_id"].startswith("vpc-"):
        raise ValueError(f"vpc_id must be a VPC id starting with 'vpc-', got {args['vpc_id']!r}")
    _check_string_list("alb_subnet_ids", args["alb_subnet_ids"], minimum=2, prefix="subnet-")
    _check_string_list("host_subnet_ids", args["host_subnet_ids"], minimum=1, prefix="subnet-")
    peers = args.get("peer_security_group_ids", ())
    if isinstance(peers, str) or not _is_plain_list(peers):
        raise ValueError(f"peer_security_group_ids must be a list of security group ids, got {peers!r}")
    _check_string_list("peer_security_group_ids", peers, minimum=0, prefix="sg-")

    instance_type = args["instance_type"]
    if not isinstance(instance_type, str) or not _INSTANCE_TYPE_RE.match(instance_type):
        raise ValueError(f"instance_type must be an EC2 instance type such as 't3.small', got {instance_type!r}")

    health_check_path = args.get("health_check_path", "/healthz")
    if not isinstance(health_check_path, str) or not _HEALTH_PATH_RE.match(health_check_path):
        raise ValueError(
            "health_check_path must start with '/' and contain only letters, digits and . _ ~ / -, "
            f"got {health_check_path!r}"
        )

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
    if domain_name is not None and (
        # ACM wants a fully qualified name: at least two labels.
        not isinstance(domain_name, str) or "." not in domain_name.strip(".") or not x509.is_dns_name(domain_name)
    ):
        raise ValueError(f"listener_domain_name must be a DNS name such as 'api.internal.example', got {domain_name!r}")

    prefix = args["parameter_prefix"]
    if not is_parameter_path(prefix) or len(prefix) > 900 or is_reserved_parameter_path(prefix):
        raise ValueError(
            "parameter_prefix must be an SSM parameter path such as '/pca-backend/dev' (starts with '/', no "
            f"trailing '/', letters, digits and . _ - / only, not starting with /aws or /ssm), got {prefix!r}"
        )
    region = check_region(args["region"])
    ami_parameter = args.get("ami_parameter", DEFAULT_AMI_PARAMETER)
    if not is_parameter_path(ami_parameter):
        raise ValueError(f"ami_parameter must be an SSM parameter name starting with '/', got {ami_parameter!r}")

    tags = args.get("tags", {})
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and not k.lower().startswith("aws:") for k, v in tags.items()
    ):
        raise ValueError(f"tags must map strings to strings (keys not starting with 'aws:'), got {tags!r}")

    _check_pem("full_chain_pem", args["full_chain_pem"], "-----BEGIN CERTIFICATE-----")
    _check_pem("ca_bundle_pem", args["ca_bundle_pem"], "-----BEGIN CERTIFICATE-----")
    _check_pem("private_key_pem", args["private_key_pem"], "PRIVATE KEY-----")

    return _Settings(
        internal=internal,
        ingress_cidrs=ingress_cidrs,
        peer_security_group_ids=tuple(peers),
        host_count=host_count,
        instance_type=instance_type,
        backend_port=backend_port,
        health_check_path=health_check_path,
        http_redirect=http_redirect,
        listener_certificate_arn=certificate_arn,
        listener_domain_name=domain_name,
        private_ca_arn=private_ca_arn,
        parameter_prefix=prefix,
        region=region,
        ami_parameter=ami_parameter,
        tags=dict(tags),
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
    - three SSM SecureString parameters: `<prefix>/full-chain`, `<prefix>/private-key`, `<prefix>/ca-bundle`;
    - an IAM role and instance profile for the hosts: ssm:GetParameter on those three parameters only, plus
      Session Manager;
    - `host_count` EC2 instances (IMDSv2 only, encrypted gp3 root volume) and their target group attachments.
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
    host_ids: pulumi.Output[list[str]]
    """EC2 instance ids of the hosts."""
    parameter_names: pulumi.Output[dict[str, str]]
    """Names of the SSM parameters, keyed full_chain, private_key and ca_bundle."""
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
        server_block = render_server_block(
            server_names=args["server_names"],
            certificate_path=CERTIFICATE_PATH,
            private_key_path=PRIVATE_KEY_PATH,
            port=settings.backend_port,
            health_check_path=settings.health_check_path,
        )
        user_data = render_user_data(
            region=settings.region,
            parameters=parameters,
            server_block=server_block,
            trust_ca_script=TRUST_CA_SCRIPT_PATH.read_text(encoding="utf-8"),
        )

        super().__init__("pca-backend:index:EncryptedBackend", name, None, opts)
        self._name = name
        self._settings = settings

        alb_group, backend_group = self._security_groups(args["vpc_id"])
        load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=settings.internal,
            subnets=args["alb_subnet_ids"],
            security_groups=[alb_group.id],
            drop_invalid_header_fields=True,
            tags=self._tags(f"{name}-alb"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        target_group = aws.lb.TargetGroup(
            f"{name}-targets",
            vpc_id=args["vpc_id"],
            target_type="instance",
            protocol="HTTPS",
            port=settings.backend_port,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                enabled=True,
                protocol="HTTPS",
                port="traffic-port",
                path=settings.health_check_path,
                matcher="200",
            ),
            tags=self._tags(f"{name}-targets"),
            opts=pulumi.ResourceOptions(parent=self),
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
            opts=pulumi.ResourceOptions(parent=self),
        )
        if settings.http_redirect:
            aws.lb.Listener(
                f"{name}-http-redirect",
                load_balancer_arn=load_balancer.arn,
                port=80,
                protocol="HTTP",
                default_actions=[
                    aws.lb.ListenerDefaultActionArgs(
                        type="redirect",
                        redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                            protocol="HTTPS", port="443", status_code="HTTP_301"
                        ),
                    )
                ],
                tags=self._tags(f"{name}-http-redirect"),
                opts=pulumi.ResourceOptions(parent=self),
            )

        stored = self._parameters(
            parameters,
            full_chain_pem=args["full_chain_pem"],
            private_key_pem=args["private_key_pem"],
            ca_bundle_pem=args["ca_bundle_pem"],
        )
        role, role_policy, profile = self._host_role(stored)
        instances = self._hosts(
            args["host_subnet_ids"],
            backend_group=backend_group,
            profile=profile,
            user_data=user_data,
            depends_on=[*stored, role_policy],
        )
        for index, instance in enumerate(instances):
            aws.lb.TargetGroupAttachment(
                f"{name}-target-{index}",
                target_group_arn=target_group.arn,
                target_id=instance.id,
                port=settings.backend_port,
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.alb_dns_name = load_balancer.dns_name
        self.https_url = (
            pulumi.Output.from_input(f"https://{settings.listener_domain_name}")
            if settings.listener_domain_name is not None
            else pulumi.Output.concat("https://", load_balancer.dns_name)
        )
        self.target_group_arn = target_group.arn
        self.alb_security_group_id = alb_group.id
        self.backend_security_group_id = backend_group.id
        self.host_ids = pulumi.Output.all(*[instance.id for instance in instances])
        self.parameter_names = pulumi.Output.from_input(
            {
                "full_chain": parameters.full_chain,
                "private_key": parameters.private_key,
                "ca_bundle": parameters.ca_bundle,
            }
        )
        self.listener_arn = listener.arn
        self.host_role_arn = role.arn
        self.register_outputs(
            {
                "alb_dns_name": self.alb_dns_name,
                "https_url": self.https_url,
                "target_group_arn": self.target_group_arn,
                "alb_security_group_id": self.alb_security_group_id,
                "backend_security_group_id": self.backend_security_group_id,
                "host_ids": self.host_ids,
                "parameter_names": self.parameter_names,
                "listener_arn": self.listener_arn,
                "host_role_arn": self.host_role_arn,
            }
        )

    def _tags(self, resource_name: str, **extra: str) -> dict[str, str]:
        return {**self._settings.tags, **extra, "Name": resource_name}

    def _security_groups(self, vpc_id: pulumi.Input[str]) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
        """The ALB and backend groups. Rules are standalone resources: the groups refer to each other."""
        name, settings = self._name, self._settings
        child = pulumi.ResourceOptions(parent=self)
        alb_group = aws.ec2.SecurityGroup(
            f"{name}-alb-sg",
            vpc_id=vpc_id,
            description="pca-backend load balancer: HTTPS from the allowed networks",
            tags=self._tags(f"{name}-alb-sg", **{"pca-backend:role": "alb"}),
            opts=child,
        )
        backend_group = aws.ec2.SecurityGroup(
            f"{name}-backend-sg",
            vpc_id=vpc_id,
            description="pca-backend hosts: TLS from the load balancer, the fleet and its peers",
            tags=self._tags(f"{name}-backend-sg", **{"pca-backend:role": "backend"}),
            opts=child,
        )

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
                    opts=child,
                )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-alb-out-backend",
            security_group_id=alb_group.id,
            ip_protocol="tcp",
            from_port=settings.backend_port,
            to_port=settings.backend_port,
            referenced_security_group_id=backend_group.id,
            description="Traffic and health checks to the hosts",
            opts=child,
        )

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
                opts=child,
            )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-backend-out-https",
            security_group_id=backend_group.id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
            description="HTTPS to SSM endpoints, package repositories and other fleets",
            opts=child,
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
                opts=child,
            )
        return alb_group, backend_group

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
            opts=pulumi.ResourceOptions(parent=self),
        )
        return certificate.arn

    def _parameters(
        self,
        names: HostParameters,
        *,
        full_chain_pem: pulumi.Input[str],
        private_key_pem: pulumi.Input[str],
        ca_bundle_pem: pulumi.Input[str],
    ) -> list[aws.ssm.Parameter]:
        """SecureString parameters (encrypted with the account's aws/ssm key) the hosts read."""
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
                value=value,
                tier=tier,
                description=f"pca-backend: nginx TLS {what} (read by the hosts' sync timer)",
                tags=self._tags(f"{self._name}-{suffix}"),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for suffix, parameter_name, value, tier, what in values
        ]

    def _host_role(
        self, stored: list[aws.ssm.Parameter]
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy, aws.iam.InstanceProfile]:
        """The hosts' role: read exactly the three parameters, plus Session Manager. No managed policy:
        AmazonSSMManagedInstanceCore would allow ssm:GetParameter(s) on every parameter."""
        name = self._name
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-host-role",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ec2.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            description="pca-backend hosts: read their TLS parameters, Session Manager",
            tags=self._tags(f"{name}-host-role"),
            opts=child,
        )
        policy = pulumi.Output.all(*[parameter.arn for parameter in stored]).apply(
            lambda arns: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "ReadTlsParameters",
                            "Effect": "Allow",
                            "Action": "ssm:GetParameter",
                            "Resource": sorted(arns),
                        },
                        {
                            "Sid": "SessionManager",
                            "Effect": "Allow",
                            "Action": list(SESSION_MANAGER_ACTIONS),
                            "Resource": "*",
                        },
                    ],
                }
            )
        )
        role_policy = aws.iam.RolePolicy(f"{name}-host-policy", role=role.id, policy=policy, opts=child)
        profile = aws.iam.InstanceProfile(
            f"{name}-host-profile", role=role.name, tags=self._tags(f"{name}-host-profile"), opts=child
        )
        return role, role_policy, profile

    def _hosts(
        self,
        host_subnet_ids: pulumi.Input[Sequence[str]],
        *,
        backend_group: aws.ec2.SecurityGroup,
        profile: aws.iam.InstanceProfile,
        user_data: str,
        depends_on: list[pulumi.Resource],
    ) -> list[aws.ec2.Instance]:
        name, settings = self._name, self._settings
        ami = aws.ssm.get_parameter_output(name=settings.ami_parameter, opts=pulumi.InvokeOptions(parent=self))
        instances = []
        for index in range(settings.host_count):
            subnet_id: pulumi.Input[str]
            if _is_plain_list(host_subnet_ids):
                subnet_id = host_subnet_ids[index % len(host_subnet_ids)]  # type: ignore[index,arg-type]
            else:
                # A list known only at deployment: apply computes the id, the instance is created here.
                subnet_id = pulumi.Output.from_input(host_subnet_ids).apply(partial(_round_robin, index=index))
            instances.append(
                aws.ec2.Instance(
                    f"{name}-host-{index}",
                    # insecure_value: an AMI id is not a secret (`value` would mark it as one).
                    ami=ami.insecure_value,
                    instance_type=settings.instance_type,
                    subnet_id=subnet_id,
                    vpc_security_group_ids=[backend_group.id],
                    iam_instance_profile=profile.name,
                    metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                        http_endpoint="enabled",
                        http_tokens="required",
                        http_put_response_hop_limit=1,
                    ),
                    root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                        encrypted=True, volume_type="gp3", delete_on_termination=True
                    ),
                    user_data=user_data,
                    # The user data holds parameter names only, so certificate rotation never changes it;
                    # it changes when the bootstrap itself does (script, nginx block, names). cloud-init runs
                    # user data at first boot only: an in-place update would stop and start the host and
                    # apply nothing, so a new host is the honest way to apply a new bootstrap.
                    user_data_replace_on_change=True,
                    monitoring=True,
                    tags=self._tags(f"{name}-host-{index}"),
                    volume_tags=self._tags(f"{name}-host-{index}"),
                    opts=pulumi.ResourceOptions(
                        parent=self,
                        depends_on=depends_on,
                        # The AMI parameter moves with every Amazon Linux release; following it would replace
                        # every host on a routine `pulumi up`. Roll hosts to a new AMI deliberately
                        # (`pulumi up --replace <urn>`).
                        ignore_changes=["ami"],
                    ),
                )
            )
        return instances


def _round_robin(subnet_ids: Sequence[str], index: int) -> str:
    if not subnet_ids:
        raise ValueError("host_subnet_ids must list at least one subnet id")
    return subnet_ids[index % len(subnet_ids)]
