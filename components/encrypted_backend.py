"""An ALB in front of nginx hosts that serve TLS with a certificate from the team's AWS Private CA.

Traffic is encrypted on both hops: client to load balancer (an ACM certificate on the HTTPS listener) and
load balancer to host (an HTTPS target group; nginx on each host presents the Private CA certificate).
Hosts trust the CA bundle, so they also verify each other when they call one another directly.

`EncryptedBackend` composes three concerns, each its own component:

- the load balancer and its listeners (`components/load_balancer.py`);
- the host fleet: role, launch template, Auto Scaling group, expiry alarm (`components/host_fleet.py`);
- how key material reaches the hosts: the `key_delivery` the caller chooses (`components/key_delivery.py`), e.g.
  `SsmKeyDelivery` (`components/ssm_key_delivery.py`): SSM SecureString parameters under a customer-managed
  KMS key, which the hosts read at boot and every 15 minutes.
"""

from __future__ import annotations

from typing import Any, cast

import pulumi

from components.arguments import Problems
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
from components.ssm_key_delivery import TRUST_CA_SCRIPT_PATH, VERIFY_TLS_SCRIPT_PATH

__all__ = [
    "CERTIFICATE_METRIC_NAME",
    "CERTIFICATE_METRIC_NAMESPACE",
    "DEFAULT_AMI_PARAMETER",
    "HEALTH_CHECK_GRACE_SECONDS",
    "LISTENER_SSL_POLICY",
    "TRUST_CA_SCRIPT_PATH",
    "VERIFY_TLS_SCRIPT_PATH",
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
