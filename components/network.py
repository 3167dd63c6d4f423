"""An isolated VPC with two subnets in two availability zones, for stacks that bring no network of their own.

The local stack uses it against the emulator. It has no internet or NAT route and no VPC endpoints, so on AWS
it suits a lab only: hosts there cannot reach SSM or package repositories. Real environments pass `vpcId` and
subnet IDs of a network that has those routes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

from components.rules.network import subnet_cidrs


class NetworkArgs(TypedDict):
    cidr_block: str
    """The VPC's CIDR; split into two equal subnets."""
    tags: NotRequired[Mapping[str, str]]


class Network(pulumi.ComponentResource):
    """Creates an `aws.ec2.Vpc` and two `aws.ec2.Subnet`s (one per availability zone)."""

    vpc_id: pulumi.Output[str]
    """The VPC's ID."""
    subnet_ids: pulumi.Output[list[str]]
    """The two subnets' IDs, in two availability zones."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        try:
            cidrs = subnet_cidrs(args["cidr_block"])
        except ValueError as error:
            raise ValueError(f"cidr_block {error}") from None
        super().__init__("pca-backend:index:Network", name, None, opts)
        tags = dict(args.get("tags", {}))
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args["cidr_block"],
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**tags, "Name": f"{name} VPC"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        zones = aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOutputOptions(parent=self)).names
        subnets = [
            aws.ec2.Subnet(
                f"{name}-subnet-{index}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zones[index],
                tags={**tags, "Name": f"{name} subnet {index}"},
                opts=pulumi.ResourceOptions(parent=vpc),
            )
            for index, cidr in enumerate(cidrs)
        ]
        self.vpc_id = vpc.id
        self.subnet_ids = pulumi.Output.all(*(subnet.id for subnet in subnets))
        self.register_outputs({"vpc_id": self.vpc_id, "subnet_ids": self.subnet_ids})
