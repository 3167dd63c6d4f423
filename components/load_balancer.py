"""The backend's application load balancer: its security group, HTTPS listener (TLS 1.3), optional HTTP redirect,
listener certificate and the HTTPS target group the hosts register with.

The hosts and the security group rules that let this load balancer reach them belong to the host fleet
(`components/host_fleet.py`); `EncryptedBackend` wires the two.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

from components.arguments import (
    Problems,
    check_backend_port,
    check_bool,
    check_health_check_path,
    check_id_list,
    check_tags,
    check_vpc_id,
    is_plain_list,
    missing,
    tagged,
)
from components.rules import aws as aws_rules
from components.rules.names import acm_domain_name_problem
from components.rules.network import is_cidr, is_world

__all__ = ["LISTENER_SSL_POLICY", "BackendLoadBalancer", "LoadBalancerArgs"]

#: Set explicitly: listeners created through the API default to the old ELBSecurityPolicy-2016-08.
LISTENER_SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
#: Defaults of the arguments the load balancer shares with the fleet (the targets' port and health check).
DEFAULT_BACKEND_PORT = 443
DEFAULT_HEALTH_CHECK_PATH = "/healthz"


class BackendArgs(TypedDict):
    """Arguments the load balancer and the host fleet share."""

    vpc_id: pulumi.Input[str]
    """The VPC of the load balancer, the hosts and the security groups."""
    backend_port: NotRequired[int]
    """Port nginx serves TLS on (the target group port). Default 443."""
    health_check_path: NotRequired[str]
    """Path of the load balancer's HTTPS health check; nginx answers it with 200. Default '/healthz'."""
    tags: NotRequired[Mapping[str, str]]
    """Tags added to every resource that takes tags."""


class LoadBalancerArgs(BackendArgs):
    """Inputs of `BackendLoadBalancer`."""

    alb_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets of the load balancer: at least two, in different availability zones."""
    internal: bool
    """True for an internal load balancer (private IPs only), False for an internet-facing one."""
    ingress_cidrs: Sequence[str]
    """IPv4/IPv6 CIDRs allowed to reach the load balancer on 443 (and 80 with `http_redirect`). 0.0.0.0/0 and
    ::/0 are allowed only when `internal` is False; they never reach the hosts."""
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


LOAD_BALANCER_KEYS = frozenset(LoadBalancerArgs.__annotations__)
_REQUIRED = ("vpc_id", "alb_subnet_ids", "internal", "ingress_cidrs")


@dataclass(frozen=True)
class _Settings:
    """`LoadBalancerArgs` validated, defaults applied."""

    internal: bool
    ingress_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    backend_port: int
    health_check_path: str
    http_redirect: bool
    listener_certificate_arn: pulumi.Input[str] | None
    listener_domain_name: str | None
    private_ca_arn: pulumi.Input[str] | None
    tags: dict[str, str]


def shared_defaults(args: Mapping[str, Any]) -> dict[str, Any]:
    """`args` with the defaults of the arguments the load balancer and the fleet share."""
    defaults = {"backend_port": DEFAULT_BACKEND_PORT, "health_check_path": DEFAULT_HEALTH_CHECK_PATH, "tags": {}}
    return {**defaults, **{key: value for key, value in args.items() if value is not None}}


def _check_cidrs(
    cidrs: object, internal: bool, ports: int
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if isinstance(cidrs, str) or not is_plain_list(cidrs) or not cidrs:
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


def _check_listener_certificate(args: Mapping[str, Any]) -> None:
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
    problem = acm_domain_name_problem(domain_name) if domain_name is not None else None
    if problem is not None:
        raise ValueError(f"listener_domain_name {problem}")


def validate(raw: Mapping[str, Any]) -> _Settings:
    """Raises ArgumentsError listing every argument that is wrong and what is allowed, before any resource."""
    problems = Problems()
    problems.collect(lambda: missing(raw, _REQUIRED, "LoadBalancerArgs"))
    problems.raise_if_any()
    args = {"http_redirect": False, **shared_defaults(raw)}
    internal = problems.collect(lambda: check_bool(args, "internal"))
    http_redirect = problems.collect(lambda: check_bool(args, "http_redirect"))
    ingress = problems.collect(lambda: _check_cidrs(args["ingress_cidrs"], bool(internal), 2 if http_redirect else 1))
    problems.collect(lambda: check_vpc_id(args))
    problems.collect(
        lambda: check_id_list("alb_subnet_ids", args["alb_subnet_ids"], minimum=2, prefix="subnet", kind="a subnet ID")
    )
    backend_port = problems.collect(lambda: check_backend_port(args))
    health_check_path = problems.collect(lambda: check_health_check_path(args))
    problems.collect(lambda: _check_listener_certificate(args))
    tags = problems.collect(lambda: check_tags(args))
    problems.raise_if_any()
    return _Settings(
        internal=internal,
        ingress_cidrs=ingress,
        backend_port=backend_port,
        health_check_path=health_check_path,
        http_redirect=http_redirect,
        listener_certificate_arn=args.get("listener_certificate_arn"),
        listener_domain_name=args.get("listener_domain_name"),
        private_ca_arn=args.get("private_ca_arn"),
        tags=tags,
    )


class BackendLoadBalancer(pulumi.ComponentResource):
    """An application load balancer that forwards HTTPS to an HTTPS target group.

    Creates:
    - a security group (`<name>-alb-sg`, tagged `pca-backend:role=alb`) with standalone ingress rules: 443, and 80
      with `http_redirect`, from `ingress_cidrs`. Its egress to the targets is the fleet's to add;
    - the load balancer (drops invalid header fields), an HTTPS target group with an HTTPS health check, an HTTPS
      listener (TLS 1.3 policy) and optionally an HTTP listener that only redirects to HTTPS;
    - optionally an ACM private certificate for the listener, issued by `private_ca_arn`.
    """

    dns_name: pulumi.Output[str]
    """DNS name of the load balancer."""
    https_url: pulumi.Output[str]
    """https:// URL of the service: `listener_domain_name` when given and not a wildcard, else the load balancer's
    DNS name."""
    target_group_arn: pulumi.Output[str]
    """ARN of the HTTPS target group."""
    security_group_id: pulumi.Output[str]
    """Security group of the load balancer."""
    listener_arn: pulumi.Output[str]
    """ARN of the HTTPS listener."""

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        settings = validate(args)
        super().__init__("pca-backend:index:BackendLoadBalancer", name, None, opts)
        self._name, self._settings = name, settings

        group = aws.ec2.SecurityGroup(
            f"{name}-alb-sg",
            vpc_id=args["vpc_id"],
            description="pca-backend load balancer: HTTPS from the allowed networks",
            tags=self._tags(f"{name}-alb-sg", **{"pca-backend:role": "alb"}),
            opts=self._child(),
        )
        self._ingress_rules(group)
        load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=settings.internal,
            subnets=args["alb_subnet_ids"],
            security_groups=[group.id],
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

        self.dns_name = load_balancer.dns_name
        # A wildcard names no one host: the load balancer's own name is then the URL.
        domain_name = settings.listener_domain_name
        self.https_url = (
            pulumi.Output.from_input(f"https://{domain_name}")
            if domain_name is not None and not domain_name.startswith("*.")
            else pulumi.Output.concat("https://", load_balancer.dns_name)
        )
        self.target_group_arn = target_group.arn
        self.security_group_id = group.id
        self.listener_arn = listener.arn
        self.register_outputs(
            {
                "dns_name": self.dns_name,
                "https_url": self.https_url,
                "target_group_arn": self.target_group_arn,
                "security_group_id": self.security_group_id,
                "listener_arn": self.listener_arn,
            }
        )

    def _tags(self, resource_name: str, **extra: str) -> dict[str, str]:
        return tagged(self._settings.tags, resource_name, **extra)

    def _child(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _ingress_rules(self, group: aws.ec2.SecurityGroup) -> None:
        name, settings = self._name, self._settings
        listener_ports = [443, 80] if settings.http_redirect else [443]
        for port in listener_ports:
            for index, network in enumerate(settings.ingress_cidrs):
                is_ipv4 = network.version == 4
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-alb-in-{port}-{index}",
                    security_group_id=group.id,
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    cidr_ipv4=str(network) if is_ipv4 else None,
                    cidr_ipv6=None if is_ipv4 else str(network),
                    description=f"Port {port} from {network}",
                    opts=self._child(),
                )

    def _listener_certificate_arn(self) -> pulumi.Input[str]:
        settings = self._settings
        if settings.listener_certificate_arn is not None:
            return settings.listener_certificate_arn
        # An ACM private certificate: ACM renews it only if the CA grants acm.amazonaws.com its permission
        # (see LoadBalancerArgs.private_ca_arn).
        certificate = aws.acm.Certificate(
            f"{self._name}-listener-cert",
            domain_name=settings.listener_domain_name,
            certificate_authority_arn=settings.private_ca_arn,
            tags=self._tags(f"{self._name}-listener-cert"),
            opts=self._child(),
        )
        return certificate.arn
