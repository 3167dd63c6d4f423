"""The issuer's reading of what AWS says about a caller and its instance (components/issuer/identity.py), on
DescribeInstances records shaped as AWS documents them: what moto does not model (secondary addresses with
their own DNS names, resource-based host names, several DHCP domains)."""

from __future__ import annotations

from typing import Any

import pytest

from components.issuer import identity
from components.issuer.contract import Refused

INSTANCE = "i-0abc123def4567890"


def _instance(**overrides: Any) -> dict[str, Any]:
    """An instance with two interfaces, the first with a secondary address (DescribeInstances' shape)."""
    return {
        "InstanceId": INSTANCE,
        "State": {"Name": "running"},
        "Tags": [{"Key": identity.GROUP_TAG, "Value": "fleet"}],
        "PrivateDnsName": "ip-10-0-1-23.eu-west-1.compute.internal",
        "PrivateIpAddress": "10.0.1.23",
        "VpcId": "vpc-0123456789abcdef0",
        "PrivateDnsNameOptions": {"HostnameType": "ip-name", "EnableResourceNameDnsARecord": False},
        "NetworkInterfaces": [
            {
                "PrivateDnsName": "ip-10-0-1-23.eu-west-1.compute.internal",
                "PrivateIpAddress": "10.0.1.23",
                "PrivateIpAddresses": [
                    {"Primary": True, "PrivateIpAddress": "10.0.1.23",
                     "PrivateDnsName": "ip-10-0-1-23.eu-west-1.compute.internal"},
                    {"Primary": False, "PrivateIpAddress": "10.0.1.99",
                     "PrivateDnsName": "ip-10-0-1-99.eu-west-1.compute.internal"},
                ],
            },
            {"PrivateIpAddress": "10.0.2.7", "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.2.7"}]},
        ],
        **overrides,
    }  # fmt: skip


def test_every_interface_and_secondary_address_counts() -> None:
    assert identity.instance_names(_instance()) == {
        "ip-10-0-1-23.eu-west-1.compute.internal",
        "ip-10-0-1-99.eu-west-1.compute.internal",
        "10.0.1.23",
        "10.0.1.99",
        "10.0.2.7",
    }


@pytest.mark.parametrize(
    "options",
    [{"HostnameType": "ip-name", "EnableResourceNameDnsARecord": True}, {"HostnameType": "resource-name"}],
)
def test_the_resource_name_counts_when_aws_resolves_it(options: dict[str, Any]) -> None:
    names = identity.instance_names(_instance(PrivateDnsNameOptions=options))
    assert f"{INSTANCE}.eu-west-1.compute.internal" in names


def test_the_resource_name_does_not_count_when_aws_does_not_resolve_it() -> None:
    assert not any(name.startswith("i-") for name in identity.instance_names(_instance()))


def test_custom_dhcp_domains_give_the_same_host_labels() -> None:
    options = {
        "DhcpConfigurations": [
            {"Key": "domain-name", "Values": [{"Value": "corp.example.com lab.example"}]},
            {"Key": "domain-name-servers", "Values": [{"Value": "AmazonProvidedDNS"}]},
        ]
    }
    domains = identity.dhcp_domain_names(options)
    assert domains == ("corp.example.com", "lab.example")
    names = identity.instance_names(_instance(), [*domains, "not a domain!", "Upper.Example."])
    assert {"ip-10-0-1-23.corp.example.com", "ip-10-0-1-99.lab.example", "ip-10-0-1-23.upper.example"} <= names
    assert not any("not a domain" in name for name in names)


def test_requested_names_compare_case_insensitively_and_addresses_canonically() -> None:
    allowed = identity.instance_names(_instance())
    assert identity.refused_names(["IP-10-0-1-23.EU-WEST-1.compute.internal", "10.0.1.99"], allowed) == []
    assert identity.refused_names(["ip-10-0-1-24.eu-west-1.compute.internal", "10.0.1.023"], allowed) == [
        "ip-10-0-1-24.eu-west-1.compute.internal",
        "10.0.1.023",
    ]


def test_the_host_role_arn_may_have_a_path() -> None:
    role = identity.HostRole.parse("arn:aws:iam::123456789012:role/pca-backend/dev/host-role")
    assert (role.account, role.name) == ("123456789012", "host-role")
    with pytest.raises(ValueError, match="not an IAM role ARN"):
        identity.HostRole.parse("arn:aws:iam::123456789012:user/alice")


def test_a_session_of_the_host_role_in_another_partition_is_refused() -> None:
    role = identity.HostRole.parse("arn:aws:iam::123456789012:role/host-role")
    iam = {"userArn": f"arn:aws-cn:sts::123456789012:assumed-role/host-role/{INSTANCE}", "accountId": "123456789012"}
    with pytest.raises(Refused) as refused:
        identity.caller_instance({"requestContext": {"authorizer": {"iam": iam}}}, role)
    assert refused.value.rule == "caller-not-host-role"
    iam["userArn"] = iam["userArn"].replace("aws-cn", "aws")
    assert identity.caller_instance({"requestContext": {"authorizer": {"iam": iam}}}, role)[0] == INSTANCE


@pytest.mark.parametrize(
    ("instance", "rule"),
    [
        (None, "instance-not-found"),
        (_instance(InstanceId="i-0000000000000000f"), "instance-not-found"),
        (_instance(State={"Name": "pending"}), "instance-not-running"),
        (_instance(State={"Name": "shutting-down"}), "instance-not-running"),
        (_instance(Tags=[]), "instance-not-in-group"),
        (_instance(Tags=[{"Key": "aws:autoscaling:groupName", "Value": "other"}]), "instance-not-in-group"),
        (_instance(Tags=[{"Key": "autoscaling:groupName", "Value": "fleet"}]), "instance-not-in-group"),
    ],
)
def test_membership_needs_a_running_instance_with_the_groups_system_tag(instance: Any, rule: str) -> None:
    with pytest.raises(Refused) as refused:
        identity.check_membership(instance, INSTANCE, "fleet")
    assert (refused.value.status, refused.value.rule) == (403, rule)
    identity.check_membership(_instance(), INSTANCE, "fleet")
