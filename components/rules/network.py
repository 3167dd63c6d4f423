"""CIDR blocks and the subnet arithmetic of the isolated network (`components/network.py`)."""

from __future__ import annotations

import ipaddress
from typing import TypeGuard

#: The VPC prefix lengths the isolated network accepts: AWS allows /16 to /28 for a VPC, and each of the two
#: subnets (one prefix length longer) must still be /28 or larger.
NETWORK_PREFIX_RANGE = (16, 26)


def is_cidr(text: object) -> TypeGuard[str]:
    """An IPv4 or IPv6 network in CIDR notation with no host bits set (`10.0.0.0/16`, `fd00::/8`)."""
    if not isinstance(text, str):
        return False
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        return False
    return True


def is_world(cidr: str) -> bool:
    """0.0.0.0/0 or ::/0: every address."""
    return is_cidr(cidr) and ipaddress.ip_network(cidr).prefixlen == 0


def ip_version(cidr: str) -> int:
    return ipaddress.ip_network(cidr, strict=True).version


def subnet_cidrs(cidr_block: str) -> list[str]:
    """The two halves of `cidr_block`; ValueError unless it is an IPv4 network from /16 to /26."""
    low, high = NETWORK_PREFIX_RANGE
    try:
        network = ipaddress.ip_network(cidr_block, strict=True)
    except (TypeError, ValueError):
        network = None
    if network is None or network.version != 4 or not low <= network.prefixlen <= high:
        raise ValueError(f"{cidr_block!r} must be an IPv4 network from /{low} to /{high}, such as 10.42.0.0/24")
    return [str(subnet) for subnet in network.subnets(prefixlen_diff=1)]
