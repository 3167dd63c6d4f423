"""An ALB in front of nginx hosts that serve TLS with a certificate from the team's AWS Private CA.

Traffic is encrypted on both hops: client to load balancer (an ACM certificate on the HTTPS listener) and
load balancer to host (an HTTPS target group; nginx on each host presents the Private CA certificate).
Hosts trust the CA bundle, so they also verify each other when they call one another directly.

`EncryptedBackend` composes three concerns, each its own component:

- the load balancer and its listeners (`components/load_balancer.py`);
- the host fleet: role, host payload bucket, launch template (a bootstrap that runs the pinned payload), Auto
  Scaling group, expiry alarm (`components/host_fleet.py`);
- how key material reaches the hosts: the `key_delivery` the caller chooses (`components/key_delivery.py`), e.g.
  `SsmKeyDelivery` (`components/ssm_key_delivery.py`): SSM SecureString parameters under a customer-managed
  KMS key, which the hosts read at boot and every 15 minutes. The delivery describes the hosts' software as a
  payload; the fleet stores it and pins it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import pulumi
import pulumi_aws as aws

from components.arguments import ArgumentsError, Problems, is_plain_list
from components.host_fleet import (
    CERTIFICATE_METRIC_NAME,
    CERTIFICATE_METRIC_NAMESPACE,
    DEFAULT_AMI_PARAMETER,
    FLEET_SETTINGS_KEYS,
    HEALTH_CHECK_GRACE_SECONDS,
    FleetOnlyArgs,
    HostFleet,
    HostFleetArgs,
    HostFleetSettings,
)
from components.host_fleet import validate as validate_fleet
from components.key_delivery import HostSupply, KeyDelivery
from components.load_balancer import LISTENER_SSL_POLICY, LOAD_BALANCER_KEYS, BackendLoadBalancer, LoadBalancerArgs
from components.load_balancer import validate as validate_load_balancer
from components.ssm_key_delivery import TLS_GATE_SCRIPT_PATH, TRUST_CA_SCRIPT_PATH

__all__ = [
    "CERTIFICATE_METRIC_NAME",
    "CERTIFICATE_METRIC_NAMESPACE",
    "DEFAULT_AMI_PARAMETER",
    "HEALTH_CHECK_GRACE_SECONDS",
    "LISTENER_SSL_POLICY",
    "TLS_GATE_SCRIPT_PATH",
    "TRUST_CA_SCRIPT_PATH",
    "EncryptedBackend",
    "EncryptedBackendArgs",
]


class EncryptedBackendArgs(LoadBalancerArgs, FleetOnlyArgs):
    """Inputs of `EncryptedBackend`: the load balancer's (`LoadBalancerArgs`, with what it shares with the fleet),
    the fleet's own (`FleetOnlyArgs`), and the key delivery."""

    key_delivery: KeyDelivery
    """How the certificate and key reach the hosts: e.g. `SsmKeyDelivery(...)` (one certificate for the fleet,
    through SSM Parameter Store)."""


#: The component's outputs (class annotations below), registered when it is built.
_OUTPUTS = (
    "alb_dns_name",
    "https_url",
    "target_group_arn",
    "alb_security_group_id",
    "backend_security_group_id",
    "auto_scaling_group_name",
    "certificate_alarm_arn",
    "listener_arn",
    "host_role_arn",
)


def _validate(args: EncryptedBackendArgs) -> None:
    """Raises ArgumentsError listing every argument of the load balancer and the fleet that is wrong."""
    problems = Problems()
    problems.collect(lambda: validate_load_balancer(_load_balancer_args(args)))
    problems.collect(lambda: validate_fleet(_fleet_settings(args)))
    problems.raise_if_any()


#: The argument names `subnet_placement_problems` reports under (settings pass their own).
ARGUMENT_NAMES = {"vpc_id": "vpc_id", "alb_subnet_ids": "alb_subnet_ids", "host_subnet_ids": "host_subnet_ids"}


def describe_subnets(subnet_ids: Sequence[str], opts: pulumi.InvokeOptions | None = None) -> dict[str, tuple[str, str]]:
    """(Availability Zone, VPC ID) of each subnet, as EC2 describes it (a synchronous invoke per subnet)."""
    described = {}
    for subnet in dict.fromkeys(subnet_ids):
        found = aws.ec2.get_subnet(id=subnet, opts=opts)
        described[subnet] = (found.availability_zone or "", found.vpc_id or "")
    return described


def subnet_placement_problems(
    vpc_id: str | None,
    alb_subnet_ids: Sequence[str],
    host_subnet_ids: Sequence[str],
    described: Mapping[str, tuple[str, str]],
    names: Mapping[str, str] = ARGUMENT_NAMES,
) -> list[tuple[str, str]]:
    """(name, problem) for each subnet out of place: not in `vpc_id`, a load balancer in fewer than two zones, a
    host subnet in a zone the load balancer does not serve. An ALB routes only to targets in its own zones: "If you
    register targets in an Availability Zone but do not enable the Availability Zone, these registered targets do
    not receive traffic."
    https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/how-elastic-load-balancing-works.html
    `described` is `describe_subnets`' answer; a subnet missing from it is not judged, and without the load
    balancer's subnets (e.g. Outputs, not known yet) no zone is."""
    problems: list[tuple[str, str]] = []
    listed = {"alb_subnet_ids": alb_subnet_ids, "host_subnet_ids": host_subnet_ids}
    if vpc_id:
        problems += [
            (names[key], f"{subnet!r} is in {described[subnet][1]}, not in {names['vpc_id']} {vpc_id}")
            for key, subnets in listed.items()
            for subnet in subnets
            if subnet in described and described[subnet][1] not in ("", vpc_id)
        ]
    zones = {subnet: zone for subnet, (zone, _) in described.items() if zone}
    alb_zones = sorted({zones[subnet] for subnet in alb_subnet_ids if subnet in zones})
    if alb_subnet_ids and all(subnet in zones for subnet in alb_subnet_ids) and len(alb_zones) < 2:
        problems.append(
            (
                names["alb_subnet_ids"],
                f"are all in {', '.join(alb_zones)}: an Application Load Balancer needs subnets in at least two "
                "Availability Zones",
            )
        )
    for subnet in host_subnet_ids:
        zone = zones.get(subnet)
        if zone is not None and alb_zones and zone not in alb_zones:
            problems.append(
                (
                    names["host_subnet_ids"],
                    f"{subnet!r} is in {zone}, where the load balancer has no subnet ({names['alb_subnet_ids']} are "
                    f"in {', '.join(alb_zones)}), so it would send no traffic to the hosts there: add a subnet of "
                    f"{zone} to {names['alb_subnet_ids']}, or give the hosts subnets in the load balancer's zones",
                )
            )
    return problems


def _check_placement(args: EncryptedBackendArgs, opts: pulumi.ResourceOptions | None) -> None:
    """Subnets given as plain IDs are looked up; Outputs (a network this program creates) are consistent by
    construction."""
    alb_subnets, host_subnets = args["alb_subnet_ids"], args["host_subnet_ids"]
    if not is_plain_list(alb_subnets) or not is_plain_list(host_subnets):
        return
    alb = [subnet for subnet in cast(Sequence[Any], alb_subnets) if isinstance(subnet, str)]
    hosts = [subnet for subnet in cast(Sequence[Any], host_subnets) if isinstance(subnet, str)]
    if len(alb) < len(cast(Sequence[Any], alb_subnets)):
        alb = []  # some are not known yet: the load balancer's zones cannot be judged
    if not alb + hosts:
        return
    invoke = pulumi.InvokeOptions(parent=opts.parent if opts else None, provider=opts.provider if opts else None)
    vpc_id = args["vpc_id"] if isinstance(args["vpc_id"], str) else None
    problems = subnet_placement_problems(vpc_id, alb, hosts, describe_subnets(alb + hosts, invoke))
    if problems:
        raise ArgumentsError([f"{name}: {problem}" for name, problem in problems])


def _load_balancer_args(args: EncryptedBackendArgs) -> LoadBalancerArgs:
    return cast(LoadBalancerArgs, {key: value for key, value in args.items() if key in LOAD_BALANCER_KEYS})


def _fleet_settings(args: EncryptedBackendArgs) -> HostFleetSettings:
    return cast(HostFleetSettings, {key: value for key, value in args.items() if key in FLEET_SETTINGS_KEYS})


class EncryptedBackend(pulumi.ComponentResource):
    """An application load balancer forwarding HTTPS to nginx hosts that serve a Private CA certificate.

    Creates a `BackendLoadBalancer` and a `HostFleet` (which holds what `key_delivery` creates), both named like
    this component, so every resource keeps the name it had when this component created them all itself; their
    `aliases` keep the URNs they had then, so stacks deployed before the split see no replacement.
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
    certificate_alarm_arn: pulumi.Output[str]
    """ARN of the certificate-expiry alarm."""
    listener_arn: pulumi.Output[str]
    """ARN of the HTTPS listener."""
    host_role_arn: pulumi.Output[str]
    """ARN of the IAM role of the hosts."""

    def __init__(self, name: str, args: EncryptedBackendArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Everything is validated before the component registers: bad input creates nothing.
        _validate(args)
        _check_placement(args, opts)
        delivery = args["key_delivery"]
        delivery.check(validate_fleet(_fleet_settings(args)).hosts)

        super().__init__("pca-backend:index:EncryptedBackend", name, None, opts)
        moved = pulumi.ResourceOptions(parent=self, transformations=[self._keep_urns_from_before_the_split])
        load_balancer = BackendLoadBalancer(name, _load_balancer_args(args), moved)
        fleet_args: dict[str, Any] = {
            **_fleet_settings(args),
            "target_group_arn": load_balancer.target_group_arn,
            "load_balancer_security_group_id": load_balancer.security_group_id,
            "key_delivery": delivery,
        }
        fleet = HostFleet(name, cast(HostFleetArgs, fleet_args), moved)

        #: What the key delivery created for the hosts (for `SsmKeyDelivery`, an `SsmKeyParameters`).
        self.key_delivery: HostSupply = fleet.key_delivery
        self.alb_dns_name = load_balancer.dns_name
        self.https_url = load_balancer.https_url
        self.target_group_arn = load_balancer.target_group_arn
        self.alb_security_group_id = load_balancer.security_group_id
        self.backend_security_group_id = fleet.security_group_id
        self.auto_scaling_group_name = fleet.auto_scaling_group_name
        self.certificate_alarm_arn = fleet.certificate_alarm_arn
        self.listener_arn = load_balancer.listener_arn
        self.host_role_arn = fleet.host_role_arn
        self.register_outputs({output: getattr(self, output) for output in _OUTPUTS})

    def _keep_urns_from_before_the_split(
        self, args: pulumi.ResourceTransformationArgs
    ) -> pulumi.ResourceTransformationResult | None:
        """Every AWS resource below this component used to be its direct child: an alias with this component as
        parent is the URN it had then, so the engine moves its state instead of replacing it."""
        if not isinstance(args.resource, pulumi.CustomResource):
            return None
        moved = pulumi.ResourceOptions(aliases=[pulumi.Alias(parent=self)])
        return pulumi.ResourceTransformationResult(args.props, pulumi.ResourceOptions.merge(args.opts, moved))
