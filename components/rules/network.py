"""CIDR blocks and the subnet arithmetic of the isolated network (`components/network.py`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
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


#: Ranges that are never a VPC's and never the source of traffic to a load balancer: AWS refuses them as VPC
#: CIDR blocks (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-cidr-blocks.html), and packets from them do not
#: cross a network (RFC 6890 special-purpose registries).
SPECIAL_RANGES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "'this network', only a source before a host has an address"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved, with the broadcast address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
)


def special_range(cidr: str) -> str | None:
    """`'<range> (<what>)'` when the network `cidr` lies inside one of `SPECIAL_RANGES`, else None."""
    network = ipaddress.ip_network(cidr, strict=True)
    for text, what in SPECIAL_RANGES:
        special = ipaddress.ip_network(text)
        if network.version == special.version and network.subnet_of(special):  # type: ignore[arg-type]
            return f"{text} ({what})"
    return None


def overlap_problems(cidrs: Sequence[str]) -> list[str]:
    """Each pair of `cidrs` that are the same network written differently, or one inside the other, compared as
    networks, not as text: a security group rule for the smaller one adds nothing. Texts that are not CIDRs, and
    the same text listed twice, are left to their own rules."""
    networks = [(text, ipaddress.ip_network(text, strict=True)) for text in dict.fromkeys(cidrs) if is_cidr(text)]
    problems = []
    for index, (text, network) in enumerate(networks):
        for other_text, other in networks[:index]:
            if network.version != other.version:
                continue
            if network == other:
                problems.append(f"{text!r} and {other_text!r} are the same network; list it once")
            elif network.subnet_of(other):  # type: ignore[arg-type]
                problems.append(f"{text!r} lies inside {other_text}; list only {other_text}")
            elif other.subnet_of(network):  # type: ignore[arg-type]
                problems.append(f"{other_text!r} lies inside {text}; list only {text}")
    return problems


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
    special = special_range(cidr_block)
    if special is not None:
        raise ValueError(
            f"{cidr_block!r} lies in {special}, which AWS does not allow for a VPC; use a private range such as "
            "10.42.0.0/24"
        )
    return [str(subnet) for subnet in network.subnets(prefixlen_diff=1)]
