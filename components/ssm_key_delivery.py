"""Key delivery `shared`: one certificate for the fleet, through SSM Parameter Store under a customer-managed KMS key.

`pulumi up` writes the full chain, the private key and the CA bundle into three SecureString parameters encrypted
with a KMS key whose policy lets only the hosts decrypt them (and the named writers write them); each host reads
them at boot and every 15 minutes from a systemd timer. The hosts' software (the sync, its timer, the host gate,
trust-ca, verify-tls, the nginx server block) is the delivery's `HostPayload` (`host_bootstrap.render_shared_payload`),
which holds the parameters' names, never their values. A routine `pulumi up` that rotates the certificate updates the
parameters only, and the hosts pick the new certificate up without being replaced. See `components/key_delivery.py`
for how a delivery plugs into the fleet.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

from components.arguments import Problems, check_arn, check_pem, is_plain_list, missing, tagged
from components.host_bootstrap import (
    PARAMETER_READ_ACTION,
    HostParameters,
    check_bootstrap,
    render_install_script,
    render_shared_payload,
)
from components.host_payload import HostPayload
from components.key_delivery import DeliveryTexts, FleetIdentity, HostContext, ca_fingerprints, ca_fingerprints_of
from components.rules import aws as aws_rules

__all__ = [
    "KEY_ADMINISTRATION_ACTIONS",
    "TLS_GATE_SCRIPT_PATH",
    "TRUST_CA_SCRIPT_PATH",
    "VERIFY_TLS_SCRIPT_PATH",
    "SsmKeyDelivery",
    "SsmKeyDeliveryArgs",
    "SsmKeyParameters",
]

#: The repository's scripts the hosts get in their payload: trust-ca, the host gate and verify-tls.
TRUST_CA_SCRIPT_PATH = Path(__file__).resolve().parent.parent / "scripts" / "trust-ca"
TLS_GATE_SCRIPT_PATH = TRUST_CA_SCRIPT_PATH.with_name("tls-gate")
VERIFY_TLS_SCRIPT_PATH = TRUST_CA_SCRIPT_PATH.with_name("verify-tls")
#: Stands in for the CA fingerprints while the CA bundle is not known yet (see `SsmKeyDelivery.check`).
_STAND_IN_PIN = "0" * 64

# Key management without use: what the account's administrators (IAM policies of the account) may do on the
# parameter key, each action named. The AWS default key policy gives the account "kms:*", and its key
# administrators' statement "kms:Create*", which includes kms:CreateGrant: an administrator could grant
# themselves Decrypt with no encryption-context condition and read the private key. So no wildcard here, no
# CreateGrant, and none of Encrypt, Decrypt, ReEncrypt*, GenerateDataKey*: only the key policy's own statements
# let anyone use the key. RevokeGrant and ListGrants stay (they take access away, or show it).
# https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html ("Allows key administrators to
# administer the KMS key"); the resource each action applies to:
# https://docs.aws.amazon.com/kms/latest/developerguide/kms-api-permissions-reference.html
KEY_ADMINISTRATION_ACTIONS = (
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:PutKeyPolicy",
    "kms:ListKeyPolicies",
    "kms:GetKeyRotationStatus",
    "kms:EnableKeyRotation",
    "kms:DisableKeyRotation",
    "kms:ListKeyRotations",
    "kms:RotateKeyOnDemand",
    "kms:UpdateKeyDescription",
    "kms:EnableKey",
    "kms:DisableKey",
    "kms:ListResourceTags",
    "kms:TagResource",
    "kms:UntagResource",
    # Aliases need the permission on the key too (and on the alias, which IAM policies grant).
    "kms:CreateAlias",
    "kms:UpdateAlias",
    "kms:DeleteAlias",
    "kms:ListGrants",
    "kms:RevokeGrant",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
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

_REQUIRED = ("full_chain_pem", "private_key_pem", "ca_bundle_pem", "parameter_prefix")


class SsmKeyDeliveryArgs(TypedDict):
    """Inputs of `SsmKeyDelivery`."""

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
    """ARN of an existing symmetric KMS key for the parameters instead of the key the delivery creates.
    Its key policy must let the host role decrypt and the deploying identity encrypt and decrypt."""
    parameter_writer_arns: NotRequired[Sequence[str]]
    """IAM role or user ARNs the created key lets write (and read back) the parameters: every identity that runs
    `pulumi up` on the stack (people, the deploy and renewal pipelines' role). Required when the delivery creates
    the key: naming whoever runs `pulumi up` would change the key policy with every identity and lock the others
    out of the parameters."""


class SsmKeyDelivery:
    """Delivery `shared` (see `components/key_delivery.py`): pass it as `key_delivery` to `EncryptedBackend`.

    Its arguments are checked here, when it is made; `deliver` creates an `SsmKeyParameters` component.
    """

    needs_auto_scaling_group_name = False
    texts = DeliveryTexts(
        host_role="pca-backend hosts: read their TLS parameters, report certificate expiry, Session Manager",
        launch_template="pca-backend host: nginx serving the Private CA certificate from SSM",
        expiry_alarm_advice="Run `pulumi up` (it renews the certificate) and check the hosts' pca-backend-tls-sync "
        "journal.",
    )

    def __init__(self, args: SsmKeyDeliveryArgs) -> None:
        self.args = _validate(args)
        prefix = self.args["parameter_prefix"]
        self.parameters = HostParameters(
            full_chain=f"{prefix}/full-chain", private_key=f"{prefix}/private-key", ca_bundle=f"{prefix}/ca-bundle"
        )

    @property
    def parameter_names(self) -> dict[str, str]:
        """Names of the SSM parameters, keyed full_chain, private_key and ca_bundle."""
        return {
            "full_chain": self.parameters.full_chain,
            "private_key": self.parameters.private_key,
            "ca_bundle": self.parameters.ca_bundle,
        }

    def check(self, hosts: HostContext) -> None:
        # The payload is known now (names, nginx block, scripts): rendered in full, as the fleet will.
        render_install_script(_payload(hosts, self.parameters))
        bundle = self.args["ca_bundle_pem"]
        # Not known yet (the CA is created or read in this deployment): one stand-in pin, so that the bootstrap is
        # checked before any resource is created all the same.
        pins = ca_fingerprints(bundle) if isinstance(bundle, str) else [_STAND_IN_PIN]
        check_bootstrap(region=hosts.region, ca_fingerprints=pins)

    def deliver(self, name: str, fleet: FleetIdentity, opts: pulumi.ResourceOptions) -> SsmKeyParameters:
        return SsmKeyParameters(name, self, fleet, opts)


def _validate(raw: SsmKeyDeliveryArgs) -> dict[str, Any]:
    """The arguments with defaults applied; raises ArgumentsError listing every problem."""
    problems = Problems()
    problems.collect(lambda: missing(raw, _REQUIRED, "SsmKeyDeliveryArgs"))
    problems.raise_if_any()
    args: dict[str, Any] = {"parameter_writer_arns": (), **{key: v for key, v in raw.items() if v is not None}}
    prefix_problem = aws_rules.parameter_prefix_problem(args["parameter_prefix"])
    if prefix_problem is not None:
        problems.found.append(f"parameter_prefix {prefix_problem}")
    problems.collect(
        lambda: check_arn(
            "parameter_kms_key_arn",
            args.get("parameter_kms_key_arn"),
            aws_rules.is_kms_key_arn,
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        )
    )
    problems.collect(lambda: _check_writers(args))
    problems.collect(lambda: check_pem("full_chain_pem", args["full_chain_pem"], "-----BEGIN CERTIFICATE-----"))
    problems.collect(lambda: check_pem("ca_bundle_pem", args["ca_bundle_pem"], "-----BEGIN CERTIFICATE-----"))
    problems.collect(lambda: check_pem("private_key_pem", args["private_key_pem"], "PRIVATE KEY-----"))
    problems.raise_if_any()
    args["parameter_writer_arns"] = tuple(args["parameter_writer_arns"])
    return args


def _check_writers(args: Mapping[str, Any]) -> None:
    writers = args["parameter_writer_arns"]
    if isinstance(writers, str) or not is_plain_list(writers):
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
    if not writers and args.get("parameter_kms_key_arn") is None:
        raise ValueError(
            "parameter_writer_arns must name the IAM roles or users that run `pulumi up` (e.g. the deploy role): "
            "the key this component creates lets only them write the parameters, whoever runs `pulumi up`"
        )


def _payload(hosts: HostContext, parameters: HostParameters) -> HostPayload:
    """The hosts' software: parameter names, nginx block, trust-ca, the host gate and verify-tls; never key
    material (the CA pins are not in it: the fleet's bootstrap writes them from the launch template)."""
    return render_shared_payload(
        region=hosts.region,
        parameters=parameters,
        server_block=hosts.server_block,
        trust_ca_script=TRUST_CA_SCRIPT_PATH.read_text(encoding="utf-8"),
        tls_gate_script=TLS_GATE_SCRIPT_PATH.read_text(encoding="utf-8"),
        verify_tls_script=VERIFY_TLS_SCRIPT_PATH.read_text(encoding="utf-8"),
        # The alarm's dimension: every host of this backend reports under the same name.
        metric_backend=hosts.backend_name,
    )


class SsmKeyParameters(pulumi.ComponentResource):
    """What `SsmKeyDelivery` creates for a fleet, and what it gives the fleet (`key_delivery.HostSupply`).

    Creates:
    - a customer-managed KMS key (rotation on, 30-day deletion window) and its alias
      `alias/pca-backend/<backend name>`, unless `parameter_kms_key_arn` is given;
    - three SSM SecureString parameters under that key: `<prefix>/full-chain`, `<prefix>/private-key`,
      `<prefix>/ca-bundle`.
    The host role may read exactly those three and decrypt them only through SSM (`host_policy_statements`).
    It gives the fleet the hosts' software (`payload`: the sync, its units, the host gate, trust-ca, verify-tls and
    the nginx block) and the SHA-256 fingerprints of the CA bundle's certificates (`ca_fingerprints`), which the
    fleet pins in the launch template.
    """

    key_arn: pulumi.Output[str]
    """ARN of the KMS key the parameters are encrypted with."""
    parameter_names: pulumi.Output[dict[str, str]]
    """Names of the SSM parameters, keyed full_chain, private_key and ca_bundle."""

    def __init__(
        self, name: str, delivery: SsmKeyDelivery, fleet: FleetIdentity, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        payload = _payload(fleet.hosts, delivery.parameters)
        ca_fingerprints = ca_fingerprints_of(delivery.args["ca_bundle_pem"])
        super().__init__("pca-backend:index:SsmKeyParameters", name, None, opts)
        self._name, self._args, self._fleet = name, delivery.args, fleet
        parameters = delivery.parameters

        key_arn = self._parameter_key(parameters)
        stored = self._parameters(parameters, key_arn)
        region = fleet.hosts.region

        self.payload: pulumi.Input[HostPayload] = payload
        self.ca_fingerprints: pulumi.Input[Sequence[str]] = ca_fingerprints
        self.host_policy_statements: pulumi.Output[list[dict[str, Any]]] = pulumi.Output.all(
            key_arn, *[parameter.arn for parameter in stored]
        ).apply(lambda values: _host_statements(values[1:], values[0], region))
        self.wait_for: list[pulumi.Resource] = list(stored)
        self.key_arn = pulumi.Output.from_input(key_arn)
        self.parameter_names = pulumi.Output.from_input(delivery.parameter_names)
        self.register_outputs({"key_arn": self.key_arn, "parameter_names": self.parameter_names})

    def _tags(self, resource_name: str) -> dict[str, str]:
        return tagged(self._fleet.tags, resource_name)

    def _child(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _parameter_key(self, names: HostParameters) -> pulumi.Input[str]:
        """ARN of the key that encrypts the parameters: the given one, or a new customer-managed key.

        With the AWS-managed aws/ssm key, every principal of the account allowed ssm:GetParameter on a
        parameter can decrypt it; this key's policy names who may (see `_key_policy`).
        """
        args, hosts = self._args, self._fleet.hosts
        if args.get("parameter_kms_key_arn") is not None:
            return args["parameter_kms_key_arn"]
        invoke = pulumi.InvokeOptions(parent=self)
        # The account only: who runs `pulumi up` never shapes the policy (the writers are named).
        account = aws.get_caller_identity_output(opts=invoke).account_id
        policy = pulumi.Output.all(
            partition=aws.get_partition_output(opts=invoke).partition,
            account=account,
            writers=list(args["parameter_writer_arns"]),
            host_role_arn=self._fleet.host_role_arn,
        ).apply(
            lambda values: _key_policy(
                region=hosts.region,
                names=[names.full_chain, names.private_key, names.ca_bundle],
                **values,
            )
        )
        key = aws.kms.Key(
            f"{self._name}-parameter-key",
            description=f"pca-backend {hosts.backend_name}: TLS parameters under {args['parameter_prefix']}",
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
            name=f"alias/pca-backend/{hosts.backend_name}",
            target_key_id=key.key_id,
            opts=self._child(),
        )
        return key.arn

    def _parameters(self, names: HostParameters, key_arn: pulumi.Input[str]) -> list[aws.ssm.Parameter]:
        """SecureString parameters, encrypted with the parameter key, that the hosts read."""
        args = self._args
        values: list[tuple[str, str, pulumi.Input[str], str, str]] = [
            ("full-chain", names.full_chain, args["full_chain_pem"], "Intelligent-Tiering", "certificate and chain"),
            # Secret whatever the caller passed: the key must never show in state or previews in the clear.
            (
                "private-key",
                names.private_key,
                pulumi.Output.secret(args["private_key_pem"]),
                "Standard",
                "private key",
            ),
            ("ca-bundle", names.ca_bundle, args["ca_bundle_pem"], "Intelligent-Tiering", "CA bundle"),
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


def _host_statements(parameter_arns: Sequence[str], key_arn: str, region: str) -> list[dict[str, Any]]:
    """What the host role needs for this delivery: read exactly the three parameters, decrypt them through SSM."""
    return [
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
    ]
