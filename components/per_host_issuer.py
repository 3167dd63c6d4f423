"""The per-host issuer: a Lambda function behind a function URL (AWS_IAM auth) that signs each host's own CSR.

The function's code is `components/issuer/` (standard library and boto3 only); see `components/issuer/handler.py`
for what it checks. This component deploys it with least privilege: it may issue only with the configured
template (IAM condition key `acm-pca:TemplateArn`), read certificates and the CA, describe instances, and write its
own log group; only the fleet's host role may invoke its URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

from components.issuer import contract
from components.rules import aws as aws_rules
from components.rules.names import has_control_characters, service_name_problem

__all__ = [
    "HANDLER",
    "RUNTIME",
    "PerHostIssuer",
    "PerHostIssuerArgs",
    "check_args",
    "handler_archive",
    "handler_files",
]

#: Lambda's managed Python runtime the function runs on (it ships boto3).
RUNTIME = "python3.13"
#: The function's code inside its archive: the package `components/issuer` as a top-level `issuer` package.
HANDLER = "issuer.handler.handler"
_HANDLER_PACKAGE = Path(__file__).resolve().parent / "issuer"
#: CloudWatch Logs' allowed retentions in days (components.rules.aws).
LOG_RETENTION_DAYS = aws_rules.LOG_RETENTION_DAYS
DEFAULT_LOG_RETENTION_DAYS = 365
DEFAULT_RESERVED_CONCURRENCY = 10
#: Reserved concurrency: AWS keeps 100 of an account's (default 1000) executions unreserved.
RESERVED_CONCURRENCY_RANGE = aws_rules.RESERVED_CONCURRENCY_RANGE
DEFAULT_TIMEOUT_SECONDS = 30
#: Below 10 s there is no time to wait for a certificate; Lambda's maximum is 900.
TIMEOUT_RANGE = (10, 900)
#: 256 MB: verifying an ECDSA P-384 signature in pure Python takes a few milliseconds of a full vCPU, and Lambda
#: gives CPU in proportion to memory.
MEMORY_MB = 256
#: Validity of a per-host certificate: at least a day, at most a year (the host renews at a third of it).
VALIDITY_DAYS_RANGE = (1, 365)
#: Auto Scaling group names: 1 to 255 characters (CreateAutoScalingGroup).
_GROUP_NAME_MAX = 255
_SIGNING_ALGORITHMS = ("SHA256WITHECDSA", "SHA384WITHECDSA", "SHA512WITHECDSA", "SHA256WITHRSA", "SHA384WITHRSA",
                       "SHA512WITHRSA")  # fmt: skip


class PerHostIssuerArgs(TypedDict):
    """Inputs of `PerHostIssuer`."""

    ca_arn: pulumi.Input[str]
    """ARN of the ACM PCA certificate authority that signs the hosts' certificates (an Output is accepted)."""
    template_arn: NotRequired[str]
    """ACM PCA end-entity template every certificate is issued with, as a name ('EndEntityServerAuthCertificate/V1')
    or an ARN; the function's role may issue with this template only. Default: EndEntityServerAuthCertificate/V1
    (TLS server authentication)."""
    validity_days: int
    """Validity of each host certificate in days (1 to 365; at most 7 on a SHORT_LIVED_CERTIFICATE CA)."""
    ca_usage_mode: NotRequired[str]
    """The CA's usage mode when known here ('GENERAL_PURPOSE' or 'SHORT_LIVED_CERTIFICATE'): a validity too long
    for it is refused before anything is created. The function checks it again against the CA itself."""
    signing_algorithm: NotRequired[str]
    """ACM PCA signing algorithm (such as 'SHA256WITHRSA'). Default: the one matching the CA's key algorithm, read
    from the CA."""
    host_role_arn: pulumi.Input[str]
    """ARN of the fleet's host role: the only principal allowed to invoke the function URL, and the only role whose
    instance sessions the function serves. Its trust policy must trust `ec2.amazonaws.com` only (then a session
    name that is an instance ID can only come from EC2)."""
    auto_scaling_group_name: str
    """Name of the fleet's Auto Scaling group (a plain, deterministic name): only running instances carrying its
    system tag `aws:autoscaling:groupName` get certificates."""
    service_names: NotRequired[Sequence[str]]
    """Fleet-wide DNS names (no wildcards, no per-instance EC2 names) any host may put in its certificate, such as
    the name clients call the fleet by. Default: none."""
    region: str
    """AWS region of the fleet and the function: the function may describe instances in this region only."""
    log_retention_days: NotRequired[int]
    """Days the function's decisions are kept in its log group (one of CloudWatch Logs' values). Default 365."""
    reserved_concurrency: NotRequired[int]
    """Reserved concurrent executions: bounds what the function (hence a misbehaving fleet) can spend, and
    reserves that much of the account's concurrency for it (1 to 900). Default 10."""
    timeout_seconds: NotRequired[int]
    """Function timeout (10 to 900); the function waits for a certificate until 2 s before it. Default 30."""
    tags: NotRequired[Mapping[str, str]]
    """Tags added to every resource that takes tags."""


@dataclass(frozen=True)
class _Settings:
    template_arn: str
    validity_days: int
    signing_algorithm: str | None
    auto_scaling_group_name: str
    service_names: tuple[str, ...]
    region: str
    log_retention_days: int
    reserved_concurrency: int
    timeout_seconds: int
    tags: dict[str, str]


def handler_files() -> dict[str, str]:
    """The function's code: every module of `components/issuer`, under `issuer/` in the archive, by path.

    Text with `\\n` line ends whatever the checkout's (read in universal-newline mode), so the same code gives the
    same archive on every machine.
    """
    return {f"issuer/{path.name}": path.read_text(encoding="utf-8") for path in sorted(_HANDLER_PACKAGE.glob("*.py"))}


def handler_archive() -> pulumi.AssetArchive:
    """`handler_files()` as a Pulumi archive (Pulumi zips it with sorted entries and a fixed timestamp)."""
    return pulumi.AssetArchive({path: pulumi.StringAsset(text) for path, text in handler_files().items()})


class PerHostIssuer(pulumi.ComponentResource):
    """The issuer hosts call to get a certificate for a key they generated themselves.

    Creates:
    - a CloudWatch log group (`/aws/lambda/pca-backend-issuer-...`) with `log_retention_days`;
    - the function's IAM role and inline policy: acm-pca:IssueCertificate on the CA only when
      `acm-pca:TemplateArn` is the configured template; acm-pca:GetCertificate and DescribeCertificateAuthority
      on the CA; ec2:DescribeInstances, DescribeVpcs and DescribeDhcpOptions in `region`; logs:CreateLogStream
      and PutLogEvents on its own log group;
    - the function (Python 3.13, arm64, code from `components/issuer`, JSON logs to that group, reserved
      concurrency);
    - a function URL with auth type AWS_IAM;
    - two resource-based permissions for the host role only: lambda:InvokeFunctionUrl (auth type AWS_IAM) and
      lambda:InvokeFunction through the URL only (function URLs created since October 2025 need both:
      https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html).
    """

    function_url: pulumi.Output[str]
    """HTTPS URL of the issuer (the function URL): hosts POST their CSR to it, SigV4-signed for service `lambda`."""
    function_arn: pulumi.Output[str]
    """ARN of the function."""
    function_name: pulumi.Output[str]
    """Name of the function."""
    log_group_name: pulumi.Output[str]
    """Log group holding one JSON line per decision (instance, caller, names, rule)."""

    def __init__(self, name: str, args: PerHostIssuerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        settings = _validate(args)  # bad input creates nothing
        super().__init__("pca-backend:index:PerHostIssuer", name, None, opts)
        self._name = name
        self._settings = settings

        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name_prefix="/aws/lambda/pca-backend-issuer-",
            retention_in_days=settings.log_retention_days,
            tags=self._tags(f"{name}-logs"),
            opts=self._child(),
        )
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            description="pca-backend per-host issuer: issue with one template, describe the calling instance",
            tags=self._tags(f"{name}-role"),
            opts=self._child(),
        )
        policy = pulumi.Output.all(args["ca_arn"], log_group.arn).apply(
            lambda values: json.dumps(
                _function_policy(
                    ca_arn=values[0],
                    log_group_arn=values[1],
                    template_arn=settings.template_arn,
                    region=settings.region,
                )
            )
        )
        role_policy = aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy, opts=self._child())
        function = aws.lambda_.Function(
            f"{name}-function",
            description="pca-backend per-host issuer: signs a fleet host's own CSR after checking who is asking",
            runtime=RUNTIME,
            handler=HANDLER,
            code=handler_archive(),
            architectures=["arm64"],
            memory_size=MEMORY_MB,
            timeout=settings.timeout_seconds,
            reserved_concurrent_executions=settings.reserved_concurrency,
            role=role.arn,
            environment={"variables": _environment(args, settings)},
            logging_config={
                "log_format": "JSON",
                "log_group": log_group.name,
                "application_log_level": "INFO",
                "system_log_level": "WARN",
            },
            tags=self._tags(f"{name}-function"),
            # Its permissions must exist before its first request.
            opts=self._child(depends_on=[role_policy]),
        )
        url = aws.lambda_.FunctionUrl(
            f"{name}-url",
            function_name=function.name,
            authorization_type="AWS_IAM",
            invoke_mode="BUFFERED",
            opts=self._child(),
        )
        aws.lambda_.Permission(
            f"{name}-host-invokes-url",
            statement_id="HostRoleInvokesTheUrl",
            action="lambda:InvokeFunctionUrl",
            function=function.name,
            principal=args["host_role_arn"],
            function_url_auth_type="AWS_IAM",
            opts=self._child(),
        )
        aws.lambda_.Permission(
            f"{name}-host-invokes-through-url",
            statement_id="HostRoleInvokesThroughTheUrlOnly",
            action="lambda:InvokeFunction",
            function=function.name,
            principal=args["host_role_arn"],
            invoked_via_function_url=True,
            opts=self._child(),
        )

        self.function_url = url.function_url
        self.function_arn = function.arn
        self.function_name = function.name
        self.log_group_name = log_group.name
        self.register_outputs(
            {
                "function_url": self.function_url,
                "function_arn": self.function_arn,
                "function_name": self.function_name,
                "log_group_name": self.log_group_name,
            }
        )

    def _tags(self, resource_name: str) -> dict[str, str]:
        return {**self._settings.tags, "Name": resource_name}

    def _child(self, **options: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **options)


def _environment(args: PerHostIssuerArgs, settings: _Settings) -> dict[str, pulumi.Input[str]]:
    environment: dict[str, pulumi.Input[str]] = {
        contract.ENV_CA_ARN: args["ca_arn"],
        contract.ENV_TEMPLATE_ARN: settings.template_arn,
        contract.ENV_VALIDITY_DAYS: str(settings.validity_days),
        contract.ENV_HOST_ROLE_ARN: args["host_role_arn"],
        contract.ENV_AUTO_SCALING_GROUP: settings.auto_scaling_group_name,
        contract.ENV_SERVICE_NAMES: json.dumps(list(settings.service_names)),
    }
    if settings.signing_algorithm is not None:
        environment[contract.ENV_SIGNING_ALGORITHM] = settings.signing_algorithm
    return environment


def _function_policy(*, ca_arn: str, log_group_arn: str, template_arn: str, region: str) -> dict[str, Any]:
    """The function's permissions, and nothing more (see the class docstring)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "IssueWithTheFleetTemplateOnly",
                "Effect": "Allow",
                "Action": "acm-pca:IssueCertificate",
                "Resource": ca_arn,
                # The condition key AWS documents for IssueCertificate (Service Authorization Reference, AWS Private
                # CA: https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsprivatecertificateauthority.html)
                "Condition": {"StringEquals": {"acm-pca:TemplateArn": template_arn}},
            },
            {
                "Sid": "ReadIssuedCertificatesAndTheCa",
                "Effect": "Allow",
                "Action": ["acm-pca:GetCertificate", "acm-pca:DescribeCertificateAuthority"],
                "Resource": ca_arn,
            },
            {
                # EC2's Describe actions support no resource-level permissions: "*", limited to the fleet's region.
                "Sid": "DescribeTheCallingInstance",
                "Effect": "Allow",
                "Action": ["ec2:DescribeInstances", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestedRegion": region}},
            },
            {
                "Sid": "WriteItsOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{log_group_arn}:*",
            },
        ],
    }


# --- validation ---------------------------------------------------------------------------------------------------

_REQUIRED = ("ca_arn", "validity_days", "host_role_arn", "auto_scaling_group_name", "region")


def check_args(args: PerHostIssuerArgs) -> None:
    """Raise ValueError naming every argument `PerHostIssuer` would refuse, without creating anything: what a caller
    that builds the arguments (a key delivery) checks before any resource is registered."""
    _validate(args)


def _validate(args: Mapping[str, Any]) -> _Settings:
    """Every problem with `args`, naming the argument and what is allowed, raised before any resource exists."""
    missing = [key for key in _REQUIRED if args.get(key) is None]
    if missing:
        raise ValueError(f"PerHostIssuerArgs is missing required argument(s): {', '.join(missing)}")
    problems: list[str] = []
    ca_arn = args["ca_arn"]
    if isinstance(ca_arn, str) and aws_rules.parse_ca_arn(ca_arn) is None:
        problems.append(
            "ca_arn must be an ACM PCA certificate authority ARN such as "
            f"'arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/<id>', got {ca_arn!r}"
        )
    template_arn = ""
    try:
        template_arn = aws_rules.template_arn_for(args.get("template_arn", aws_rules.DEFAULT_TEMPLATE))
    except ValueError as error:
        problems.append(f"template_arn: {error}")
    validity = _integer(args, "validity_days", *VALIDITY_DAYS_RANGE, problems=problems)
    usage_mode = args.get("ca_usage_mode")
    if usage_mode is not None and usage_mode not in aws_rules.USAGE_MODES:
        problems.append(f"ca_usage_mode must be one of {', '.join(aws_rules.USAGE_MODES)}, got {usage_mode!r}")
    elif usage_mode is not None and validity is not None:
        problem = aws_rules.short_lived_problem("validity_days", validity, usage_mode)
        if problem:
            problems.append(problem)
    signing = args.get("signing_algorithm")
    if signing is not None and signing not in _SIGNING_ALGORITHMS:
        problems.append(f"signing_algorithm must be one of {', '.join(_SIGNING_ALGORITHMS)}, got {signing!r}")
    role_arn = args["host_role_arn"]
    if isinstance(role_arn, str) and not aws_rules.is_iam_role_arn(role_arn):
        problems.append(f"host_role_arn must be {aws_rules.IAM_ROLE_ARN}, got {role_arn!r}")
    group = args["auto_scaling_group_name"]
    if not isinstance(group, str) or not group or len(group) > _GROUP_NAME_MAX or has_control_characters(group):
        problems.append(
            f"auto_scaling_group_name must be the fleet's group name as a plain string (1 to {_GROUP_NAME_MAX} "
            f"characters), got {group!r}"
        )
    service_names = _service_names(args.get("service_names", ()), problems)
    region = args["region"]
    if not aws_rules.is_region(region):
        problems.append(f"region must be {aws_rules.is_region.what}, got {region!r}")
    retention = args.get("log_retention_days", DEFAULT_LOG_RETENTION_DAYS)
    if isinstance(retention, bool) or retention not in LOG_RETENTION_DAYS:
        problems.append(
            f"log_retention_days must be one of {', '.join(map(str, LOG_RETENTION_DAYS))}, got {retention!r}"
        )
    concurrency = _integer(
        args,
        "reserved_concurrency",
        *RESERVED_CONCURRENCY_RANGE,
        default=DEFAULT_RESERVED_CONCURRENCY,
        problems=problems,
    )
    timeout = _integer(args, "timeout_seconds", *TIMEOUT_RANGE, default=DEFAULT_TIMEOUT_SECONDS, problems=problems)
    tags = args.get("tags", {})
    tag_problems = aws_rules.tag_problems(tags)
    if tag_problems:
        problems.append("tags " + "; ".join(tag_problems))
    if problems or validity is None or concurrency is None or timeout is None:
        raise ValueError("PerHostIssuer: " + "; ".join(problems))
    return _Settings(
        template_arn=template_arn,
        validity_days=validity,
        signing_algorithm=signing,
        auto_scaling_group_name=group,
        service_names=service_names,
        region=region,
        log_retention_days=retention,
        reserved_concurrency=concurrency,
        timeout_seconds=timeout,
        tags=dict(tags),
    )


def _integer(
    args: Mapping[str, Any], key: str, low: int, high: int, *, problems: list[str], default: int | None = None
) -> int | None:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(f"{key} must be an integer from {low} to {high}, got {value!r}")
        return None
    return value


def _service_names(names: object, problems: list[str]) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        problems.append(f"service_names must be a list of DNS names, got {names!r}")
        return ()
    accepted: list[str] = []
    for name in names:
        problem = service_name_problem(name)
        if problem is not None:
            problems.append(f"service_names entry {problem}")
        else:
            accepted.append(name.lower())
    return tuple(dict.fromkeys(accepted))
