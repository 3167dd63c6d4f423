"""Who is calling, from what AWS attests, and which names are that instance's own. Pure functions: the handler
fetches what AWS says and passes it in.

The caller. A function URL with AWS_IAM auth authenticates the SigV4 signature and passes the signer's identity
in `requestContext.authorizer.iam` (payload format 2.0,
https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads); the request body never says
who is calling. Credentials an instance gets from its instance profile are a session of the profile's role whose
session name is the instance ID: IAM's principal key values give `aws:userid` = `role-id:ec2-instance-id` for "a
role assigned to an Amazon EC2 instance"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html#principaltable), so the
session's ARN is `arn:aws:sts::<account>:assumed-role/<role name>/<instance id>` (the ARN of an assumed-role
session ends in its session name: https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html).
Only EC2 can create such a session when the role trusts only `ec2.amazonaws.com` (the fleet's host role does),
so a session name that is an instance ID names the instance that holds the credentials.

The instance's names. What DescribeInstances reports: its private DNS name(s) and private IPv4 address(es), on
every network interface; the resource name `<instance id>.<domain>` when its A record is enabled; and, under a
VPC whose DHCP options set a custom `domain-name`, the same host labels under that domain (the name the instance
gives itself, https://docs.aws.amazon.com/vpc/latest/userguide/DHCPOptionSetConcepts.html). Service names the
stack configures are added by the caller.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .contract import Refused

#: EC2 instance IDs: `i-` and 8 (older) or 17 lower-case hex digits.
INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_ROLE_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/(?:[\w+=,.@-]+/)*(?P<name>[\w+=,.@-]{1,64})"
)
# Role paths are not part of a session ARN: `assumed-role/<name>/<session>`.
_SESSION_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):sts::(?P<account>\d{12}):assumed-role/(?P<role>[\w+=,.@-]{1,64})"
    r"/(?P<session>[\w+=,.@-]{2,64})"
)
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
#: The system tag Auto Scaling puts on the instances it launches; keys starting with `aws:` cannot be written by
#: users (https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html, "aws: prefix").
GROUP_TAG = "aws:autoscaling:groupName"


@dataclass(frozen=True)
class HostRole:
    """The fleet's host role, from its ARN."""

    partition: str
    account: str
    name: str

    @classmethod
    def parse(cls, arn: str) -> HostRole:
        match = _ROLE_ARN.fullmatch(arn)
        if match is None:
            raise ValueError(f"{arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        return cls(match["partition"], match["account"], match["name"])


def caller_instance(event: Mapping[str, Any], role: HostRole) -> tuple[str, str]:
    """`(instance ID, caller ARN)` of a request signed with `role`'s instance-profile credentials; `Refused` (403)
    for anyone else."""
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
    iam = authorizer.get("iam") if isinstance(authorizer, Mapping) else None
    if not isinstance(iam, Mapping) or not isinstance(iam.get("userArn"), str):
        raise Refused(403, "caller-not-iam", "the request carries no IAM identity: call the function URL with SigV4")
    caller = str(iam["userArn"])
    session = _SESSION_ARN.fullmatch(caller)
    if session is None:
        raise Refused(403, "caller-not-host-role", f"{caller} is not a session of the fleet's host role")
    if session["account"] != role.account or iam.get("accountId") != role.account:
        raise Refused(403, "caller-account", f"{caller} belongs to another account than the fleet's")
    if session["partition"] != role.partition or session["role"] != role.name:
        raise Refused(403, "caller-not-host-role", f"{caller} is not a session of the fleet's host role")
    instance_id = session["session"]
    if not INSTANCE_ID.fullmatch(instance_id):
        raise Refused(
            403,
            "session-not-instance",
            f"{caller} is a session of the host role but not an instance's (its session name is not an instance ID)",
        )
    return instance_id, caller


def check_membership(instance: Mapping[str, Any] | None, instance_id: str, group: str) -> None:
    """`Refused` (403) unless DescribeInstances' `instance` is running and a member of the Auto Scaling `group`."""
    if instance is None or instance.get("InstanceId") != instance_id:
        raise Refused(403, "instance-not-found", f"{instance_id} is not an instance of this account and region")
    state = (instance.get("State") or {}).get("Name")
    if state != "running":
        raise Refused(403, "instance-not-running", f"{instance_id} is {state or 'in no known state'}, not running")
    tags = {tag.get("Key"): tag.get("Value") for tag in instance.get("Tags") or ()}
    if tags.get(GROUP_TAG) != group:
        raise Refused(403, "instance-not-in-group", f"{instance_id} is not a member of the fleet's Auto Scaling group")


def instance_names(instance: Mapping[str, Any], dhcp_domains: Iterable[str] = ()) -> frozenset[str]:
    """The DNS names (lower case) and IPv4 addresses that are the instance's own (see the module docstring)."""
    dns: set[str] = set()
    addresses: set[str] = set()

    def add_dns(name: object) -> None:
        if isinstance(name, str) and name:
            dns.add(name.lower().rstrip("."))

    def add_address(address: object) -> None:
        if isinstance(address, str) and address:
            addresses.add(str(ipaddress.IPv4Address(address)))

    add_dns(instance.get("PrivateDnsName"))
    add_address(instance.get("PrivateIpAddress"))
    for interface in instance.get("NetworkInterfaces") or ():
        add_dns(interface.get("PrivateDnsName"))
        add_address(interface.get("PrivateIpAddress"))
        for private in interface.get("PrivateIpAddresses") or ():
            add_dns(private.get("PrivateDnsName"))
            add_address(private.get("PrivateIpAddress"))
    options = instance.get("PrivateDnsNameOptions") or {}
    aws_domains = {name.partition(".")[2] for name in dns if "." in name}
    if options.get("EnableResourceNameDnsARecord") or options.get("HostnameType") == "resource-name":
        dns.update(f"{instance['InstanceId']}.{domain}" for domain in aws_domains)
    labels = {name.partition(".")[0] for name in dns}
    for domain in dhcp_domains:
        domain = domain.lower().rstrip(".")
        if all(_DNS_LABEL.fullmatch(label) for label in domain.split(".")):
            dns.update(f"{label}.{domain}" for label in labels)
    return frozenset(dns | addresses)


def dhcp_domain_names(dhcp_options: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The `domain-name` values of a DescribeDhcpOptions entry (several may be given, separated by spaces)."""
    domains: list[str] = []
    for configuration in (dhcp_options or {}).get("DhcpConfigurations") or ():
        if configuration.get("Key") == "domain-name":
            for value in configuration.get("Values") or ():
                domains += str(value.get("Value", "")).split()
    return tuple(domains)


def refused_names(requested: Iterable[str], allowed: frozenset[str]) -> list[str]:
    """The requested names (DNS names compared case-insensitively, IP addresses in canonical form) not allowed."""
    refused = []
    for name in requested:
        try:
            canonical = str(ipaddress.ip_address(name))
        except ValueError:
            canonical = name.lower()
        if canonical not in allowed:
            refused.append(name)
    return refused
