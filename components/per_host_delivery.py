"""Key delivery `per-host`: each host makes its own key and gets its own certificate from the per-host issuer.

No private key exists outside the host that uses it: not in Pulumi state, not in SSM, not in user data. Each host
runs the certificate agent (`scripts/cert-agent`, rendered by `components.host_agent.render_agent_payload`): at boot
and every 15 minutes it makes a key on the host when none is installed or a third of the certificate's life or less
is left, and sends a CSR for its own names, signed with its instance role's credentials, to the issuer's function URL
(`components/per_host_issuer.py`: a Lambda function with AWS_IAM auth that checks who asks and for which names before
it signs). The hosts' payload carries the function URL, the service names and the key algorithm; the launch template
pins the SHA-256 fingerprints of the CA bundle, so a host accepts only chains to the stack's CA. See
`components/key_delivery.py` for how a delivery plugs into the fleet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

import pulumi

from components.arguments import Problems, check_pem, check_tags, missing
from components.host_agent import AGENT_UNIT, render_agent_config, render_agent_payload
from components.host_bootstrap import check_bootstrap, render_install_script
from components.host_payload import HostPayload
from components.key_delivery import DeliveryTexts, FleetIdentity, HostContext, ca_fingerprints, ca_fingerprints_of
from components.per_host_issuer import (
    DEFAULT_LOG_RETENTION_DAYS,
    DEFAULT_RESERVED_CONCURRENCY,
    PerHostIssuer,
    PerHostIssuerArgs,
    check_args,
)
from components.rules import aws as aws_rules

__all__ = ["DEFAULT_VALIDITY_DAYS", "PerHostDelivery", "PerHostDeliveryArgs", "PerHostSupply", "stand_in_issuer_url"]

#: Validity of each host's certificate when none is asked for: a week, the most a SHORT_LIVED_CERTIFICATE CA issues.
DEFAULT_VALIDITY_DAYS = aws_rules.SHORT_LIVED_MAX_DAYS
#: The agent renews a certificate once this share of its life or less is left (scripts/cert-agent).
RENEWAL_SHARE = 1 / 3
DEFAULT_KEY_ALGORITHM = "EC_prime256v1"
#: Stands in for the CA fingerprints while the CA bundle is not known yet (see `PerHostDelivery.check`).
_STAND_IN_PIN = "0" * 64
#: The arguments are checked when the delivery is made, before the fleet's region and role exist: these stand in.
_STAND_IN_REGION = "us-east-1"
_STAND_IN_ROLE_ARN = "arn:aws:iam::123456789012:role/stand-in"
_STAND_IN_GROUP = "pca-backend-stand-in"
_REQUIRED = ("ca_arn", "ca_bundle_pem")


def stand_in_issuer_url(region: str) -> str:
    """A function URL of the form AWS gives (`https://<url-id>.lambda-url.<region>.on.aws/`,
    https://docs.aws.amazon.com/lambda/latest/dg/urls-configuration.html): the hosts' payload is rendered with it
    before the issuer exists, so everything but the URL is checked before any resource is created."""
    return f"https://{'0' * 32}.lambda-url.{region}.on.aws/"


class PerHostDeliveryArgs(TypedDict):
    """Inputs of `PerHostDelivery`."""

    ca_arn: pulumi.Input[str]
    """ARN of the ACM PCA certificate authority that signs the hosts' certificates."""
    ca_bundle_pem: pulumi.Input[str]
    """The CA certificates (PEM) the hosts trust: the launch template pins their SHA-256 fingerprints, and the host
    gate installs only certificates that chain to them."""
    ca_usage_mode: NotRequired[str]
    """The CA's usage mode when known here ('GENERAL_PURPOSE' or 'SHORT_LIVED_CERTIFICATE'): a validity longer than
    the CA issues is refused before anything is created. The issuer checks it again against the CA."""
    template_arn: NotRequired[str]
    """ACM PCA end-entity template every host certificate is issued with, as a name or an ARN; the issuer's role may
    issue with it only. Default: EndEntityServerAuthCertificate/V1."""
    validity_days: NotRequired[int]
    """Validity of each host's certificate in days (1 to 365; at most 7 on a SHORT_LIVED_CERTIFICATE CA). The agent
    renews it when a third of it is left, so the fleet's `certificate_alarm_days` must be less than a third of it.
    Default 7."""
    service_names: NotRequired[Sequence[str]]
    """Fleet-wide DNS names every host may put in its certificate besides its own EC2 name and private IPv4, such as
    the name clients call the fleet by (no wildcards, no per-instance EC2 names). Default: none."""
    key_algorithm: NotRequired[str]
    """The key each host makes: EC_prime256v1, EC_secp384r1, RSA_2048, RSA_3072 or RSA_4096. Default EC_prime256v1."""
    reserved_concurrency: NotRequired[int]
    """Reserved concurrent executions of the issuer (1 to 900): bounds what a misbehaving fleet can spend.
    Default 10."""
    log_retention_days: NotRequired[int]
    """Days the issuer's decisions are kept in its log group (one of CloudWatch Logs' retention values). Default 365."""
    tags: NotRequired[Mapping[str, str]]
    """Tags added to the issuer's resources, over the fleet's."""


@dataclass(frozen=True)
class PerHostSupply:
    """What `PerHostDelivery` gives the fleet (`key_delivery.HostSupply`): the issuer it created, and from it the
    hosts' payload (the agent and the issuer's URL), the CA pins, no role statements, and the issuer to wait for."""

    issuer: PerHostIssuer
    """The issuer the hosts call (its function URL, function and log group)."""
    payload: pulumi.Input[HostPayload]
    """The agent's payload, rendered once the function URL is known."""
    ca_fingerprints: pulumi.Input[Sequence[str]]
    """SHA-256 fingerprints of the CA bundle's certificates."""
    host_policy_statements: Sequence[Mapping[str, Any]] = ()
    """None: the issuer's resource-based policy lets the host role invoke its URL, which suffices within one account
    ("If the principal making the request is in the same AWS account as the function URL, then the principal must
    either have lambda:InvokeFunctionUrl and lambda:InvokeFunction permissions in their identity-based policy, OR have
    permissions granted to them in the function's resource-based policy",
    https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html). No SSM parameter, no KMS key: nothing to read."""
    wait_for: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """The issuer: its function, URL and invoke permissions exist before the first host asks."""


class PerHostDelivery:
    """Delivery `per-host` (see `components/key_delivery.py`): pass it as `key_delivery` to `EncryptedBackend`.

    Its arguments are checked here, when it is made (with the issuer's and the agent's own rules); `check` renders
    the hosts' whole payload with a stand-in function URL; `deliver` creates a `PerHostIssuer` (`<name>-issuer`) for
    the fleet's host role and Auto Scaling group. One delivery serves one fleet: its issuer admits that fleet's
    hosts only.
    """

    needs_auto_scaling_group_name = True
    texts = DeliveryTexts(
        host_role="pca-backend hosts: ask the per-host issuer for their certificates, report certificate expiry, "
        "Session Manager",
        launch_template="pca-backend host: nginx serving a certificate for a key made on the host, from the per-host "
        "issuer",
        expiry_alarm_advice=f"The hosts renew their own certificates (pulumi up does not): read the agent's journal "
        f"on a host (journalctl -u {AGENT_UNIT}: the issuer's answer and its rule) and the issuer's log group (stack "
        "output issuerLogGroupName).",
    )

    def __init__(self, args: PerHostDeliveryArgs) -> None:
        self.args = _validate(args)
        self._issuer: PerHostIssuer | None = None

    @property
    def issuer(self) -> PerHostIssuer:
        """The issuer `deliver` created (its `function_url`, `function_name`, `log_group_name`)."""
        if self._issuer is None:
            raise RuntimeError("PerHostDelivery.issuer exists once the fleet has called deliver")
        return self._issuer

    def check(self, hosts: HostContext) -> None:
        # Everything but the function URL is known now: the payload is rendered in full with a stand-in URL.
        render_install_script(self._payload(hosts, stand_in_issuer_url(hosts.region)))
        bundle = self.args["ca_bundle_pem"]
        # Not known yet (the CA is created or read in this deployment): one stand-in pin, so that the bootstrap is
        # checked before any resource is created all the same.
        pins = ca_fingerprints(bundle) if isinstance(bundle, str) else [_STAND_IN_PIN]
        check_bootstrap(region=hosts.region, ca_fingerprints=pins)
        validity, alarm_days = self.args["validity_days"], hosts.certificate_alarm_days
        if alarm_days is not None and alarm_days >= validity * RENEWAL_SHARE:
            raise ValueError(
                f"certificate_alarm_days is {alarm_days} but must be less than a third of validity_days "
                f"({validity * RENEWAL_SHARE:.1f} of {validity} days): each host renews its certificate when a third "
                "of its life is left, so the hosts would report fewer days than the threshold and the alarm would "
                "never stop firing"
            )

    def deliver(self, name: str, fleet: FleetIdentity, opts: pulumi.ResourceOptions) -> PerHostSupply:
        if self._issuer is not None:
            raise ValueError(
                "a PerHostDelivery serves one fleet (its issuer admits that fleet's hosts only): make one per fleet"
            )
        if fleet.auto_scaling_group_name is None:
            raise ValueError("the per-host issuer needs the Auto Scaling group's name before the group exists")
        hosts = fleet.hosts
        issuer = PerHostIssuer(
            f"{name}-issuer",
            _issuer_args(
                self.args,
                host_role_arn=fleet.host_role_arn,
                auto_scaling_group_name=fleet.auto_scaling_group_name,
                region=hosts.region,
                tags={**fleet.tags, **self.args["tags"]},
            ),
            opts,
        )
        self._issuer = issuer
        return PerHostSupply(
            issuer=issuer,
            payload=issuer.function_url.apply(lambda url: self._payload(hosts, url)),
            ca_fingerprints=ca_fingerprints_of(self.args["ca_bundle_pem"]),
            wait_for=(issuer,),
        )

    def _payload(self, hosts: HostContext, issuer_url: str) -> HostPayload:
        """The agent, its configuration and units, the gate, trust-ca, verify-tls and the nginx block; no key
        material (the pins are the fleet's bootstrap's)."""
        return render_agent_payload(
            region=hosts.region,
            issuer_url=issuer_url,
            server_block=hosts.server_block,
            service_names=self.args["service_names"],
            # The alarm's dimension: every host of this backend reports under the same name.
            metric_backend=hosts.backend_name,
            key_algorithm=self.args["key_algorithm"],
        )


def _issuer_args(
    args: Mapping[str, Any],
    *,
    host_role_arn: pulumi.Input[str],
    auto_scaling_group_name: str,
    region: str,
    tags: Mapping[str, str],
) -> PerHostIssuerArgs:
    """The issuer's arguments: the delivery's, and the fleet's role, group, region and tags."""
    issuer_args: PerHostIssuerArgs = {
        "ca_arn": args["ca_arn"],
        "template_arn": args["template_arn"],
        "validity_days": args["validity_days"],
        "host_role_arn": host_role_arn,
        "auto_scaling_group_name": auto_scaling_group_name,
        "service_names": list(args["service_names"]),
        "region": region,
        "log_retention_days": args["log_retention_days"],
        "reserved_concurrency": args["reserved_concurrency"],
        "tags": dict(tags),
    }
    if args.get("ca_usage_mode") is not None:
        issuer_args["ca_usage_mode"] = args["ca_usage_mode"]
    return issuer_args


def _validate(raw: PerHostDeliveryArgs) -> dict[str, Any]:
    """The arguments with defaults applied; raises ArgumentsError listing every problem, checked with the rules of the
    issuer and of the agent (the fleet's region and role stand in until `deliver`)."""
    problems = Problems()
    problems.collect(lambda: missing(raw, _REQUIRED, "PerHostDeliveryArgs"))
    problems.raise_if_any()
    args: dict[str, Any] = {
        "template_arn": aws_rules.DEFAULT_TEMPLATE,
        "validity_days": DEFAULT_VALIDITY_DAYS,
        "service_names": (),
        "key_algorithm": DEFAULT_KEY_ALGORITHM,
        "reserved_concurrency": DEFAULT_RESERVED_CONCURRENCY,
        "log_retention_days": DEFAULT_LOG_RETENTION_DAYS,
        "tags": {},
        **{key: value for key, value in raw.items() if value is not None},
    }
    problems.collect(lambda: check_pem("ca_bundle_pem", args["ca_bundle_pem"], "-----BEGIN CERTIFICATE-----"))
    if isinstance(args["ca_bundle_pem"], str) and not problems.found:
        problems.collect(lambda: ca_fingerprints(args["ca_bundle_pem"]))
    problems.collect(lambda: check_tags(args))
    # The issuer's own rules: CA ARN, template, validity (and the CA's usage mode), service names, concurrency,
    # retention.
    problems.collect(
        lambda: check_args(
            _issuer_args(
                args,
                host_role_arn=_STAND_IN_ROLE_ARN,
                auto_scaling_group_name=_STAND_IN_GROUP,
                region=_STAND_IN_REGION,
                tags={},
            )
        )
    )
    # The agent's: the key algorithm, the service names as the hosts put them in their CSRs.
    problems.collect(
        lambda: render_agent_config(
            region=_STAND_IN_REGION,
            issuer_url=stand_in_issuer_url(_STAND_IN_REGION),
            service_names=args["service_names"],
            metric_backend="stand-in",
            key_algorithm=args["key_algorithm"],
        )
    )
    problems.raise_if_any()
    args["service_names"] = tuple(args["service_names"])
    return args
