"""The per-host issuer against the local emulator: a fleet of instances launched by an Auto Scaling group (so they
carry its system tag), and the function URL events AWS would deliver for them (payload format 2.0). For tests and
benches; nothing here runs in AWS.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import boto3

from components.issuer.contract import (
    ENV_AUTO_SCALING_GROUP,
    ENV_CA_ARN,
    ENV_HOST_ROLE_ARN,
    ENV_SERVICE_NAMES,
    ENV_TEMPLATE_ARN,
    ENV_VALIDITY_DAYS,
)

#: moto's account.
ACCOUNT = "123456789012"
#: An AMI id moto knows.
MOTO_AMI = "ami-12c6146b"
#: The template the issuer signs with in tests and benches (the program's default).
TEMPLATE_ARN = "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1"


@dataclass(frozen=True)
class Fleet:
    """Instances an Auto Scaling group launched into one subnet of a VPC, and its names."""

    group: str
    vpc_id: str
    subnet_id: str
    instance_ids: tuple[str, ...]


def create_fleet(
    endpoint_url: str, *, size: int = 2, dhcp_domain: str | None = None, region: str = "us-east-1"
) -> Fleet:
    """A VPC (with a DHCP options set naming `dhcp_domain`, if given), a subnet, a launch template and an Auto
    Scaling group of `size` running instances. Names are unique, so many fleets can share one emulator."""
    session = boto3.session.Session()
    ec2: Any = session.client("ec2", region_name=region, endpoint_url=endpoint_url)
    autoscaling: Any = session.client("autoscaling", region_name=region, endpoint_url=endpoint_url)
    suffix = uuid.uuid4().hex[:12]
    vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    if dhcp_domain:
        options = ec2.create_dhcp_options(DhcpConfigurations=[{"Key": "domain-name", "Values": [dhcp_domain]}])
        ec2.associate_dhcp_options(DhcpOptionsId=options["DhcpOptions"]["DhcpOptionsId"], VpcId=vpc_id)
    template_id = ec2.create_launch_template(
        LaunchTemplateName=f"issuer-fleet-{suffix}",
        LaunchTemplateData={"ImageId": MOTO_AMI, "InstanceType": "t3.micro"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    group = f"issuer-fleet-{suffix}"
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=group,
        MinSize=size,
        MaxSize=size,
        DesiredCapacity=size,
        VPCZoneIdentifier=subnet_id,
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": "$Latest"},
    )
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    return Fleet(group, vpc_id, subnet_id, tuple(instance["InstanceId"] for instance in described["Instances"]))


def issuer_environment(
    *, ca_arn: str, fleet: Fleet, host_role_arn: str, service_names: Sequence[str] = (), **overrides: str
) -> dict[str, str]:
    """The issuer function's environment as `PerHostIssuer` sets it, for `fleet` and 7-day certificates from
    `ca_arn`; `overrides` replace entries by their variable name."""
    return {
        ENV_CA_ARN: ca_arn,
        ENV_TEMPLATE_ARN: TEMPLATE_ARN,
        ENV_VALIDITY_DAYS: "7",
        ENV_HOST_ROLE_ARN: host_role_arn,
        ENV_AUTO_SCALING_GROUP: fleet.group,
        ENV_SERVICE_NAMES: json.dumps(list(service_names)),
        **overrides,
    }


def instance_session_arn(role_name: str, instance_id: str, account: str = ACCOUNT) -> str:
    """The ARN AWS gives the instance-profile session of `role_name` on `instance_id`."""
    return f"arn:aws:sts::{account}:assumed-role/{role_name}/{instance_id}"


def function_url_event(
    body: str | bytes,
    *,
    user_arn: str | None,
    account: str = ACCOUNT,
    method: str = "POST",
    path: str = "/",
    content_type: str = "application/json",
    base64_encoded: bool = False,
) -> dict[str, Any]:
    """What Lambda passes the function for a SigV4-signed call to its URL (payload format 2.0,
    https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads). `user_arn` None: no IAM
    context (as for a URL whose auth type is NONE)."""
    raw = body if isinstance(body, bytes) else body.encode()
    context: dict[str, Any] = {
        "accountId": account,
        "apiId": "abcdefghijklmnopqrstuvwxyz012345",
        "domainName": "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws",
        "domainPrefix": "abcdefghijklmnopqrstuvwxyz012345",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.10", "userAgent": "t"},
        "requestId": str(uuid.uuid4()),
        "routeKey": "$default",
        "stage": "$default",
        "time": "07/Dec/2026:10:00:00 +0000",
        "timeEpoch": 1796637600000,
    }
    if user_arn is not None:
        session = user_arn.rsplit("/", 1)[-1]
        context["authorizer"] = {
            "iam": {
                "accessKey": "ASIAEXAMPLEEXAMPLE00",
                "accountId": account,
                "callerId": f"AROAEXAMPLEEXAMPLE0:{session}",
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": user_arn,
                "userId": f"AROAEXAMPLEEXAMPLE0:{session}",
            }
        }
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": content_type, "host": context["domainName"], "x-amz-date": "20261207T100000Z"},
        "requestContext": context,
        "body": base64.b64encode(raw).decode() if base64_encoded else raw.decode(errors="replace"),
        "isBase64Encoded": base64_encoded,
    }


def csr_body(csr_pem: str) -> str:
    """The request body the host agent sends."""
    return json.dumps({"csr": csr_pem})


class CountingSession(boto3.session.Session):
    """A session whose clients count every AWS call they make, by operation (botocore's `before-call` event)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.events.register("before-call", self._count)

    def _count(self, model: Any, **_kwargs: Any) -> None:
        self.calls[model.name] += 1

    def take(self) -> dict[str, int]:
        """The calls counted so far, and start counting afresh."""
        taken = dict(self.calls)
        self.calls.clear()
        return taken


class LambdaContext:
    """The parts of Lambda's context object the issuer reads."""

    def __init__(self, remaining_seconds: float = 30.0) -> None:
        self.remaining_seconds = remaining_seconds
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining_seconds * 1000)
