"""Names a certificate, nginx and an X.509 subject accept: one definition each."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import TypeGuard


def shown(value: object, limit: int = 80) -> str:
    """`repr(value)`, cut to about `limit` characters with its full length said, for messages."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters as text"
    return f"{text[:limit]}... ({size})"


_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# nginx `server_name`: one DNS label may also hold `_` (nginx's conventional catch-all name, some internal zones).
_SERVER_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_SERVER_NAME = re.compile(rf"^(?:\*\.)?{_SERVER_LABEL}(?:\.{_SERVER_LABEL})*$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
#: C0 and C1 control characters and DEL: never allowed in a name, a subject field or anything rendered.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: Upper bounds of X.509 subject attributes (RFC 5280 Appendix A.1, `ub-*`); ACM PCA's ASN1Subject enforces
#: the same lengths (https://docs.aws.amazon.com/privateca/latest/APIReference/API_ASN1Subject.html).
SUBJECT_FIELD_LIMITS: Mapping[str, int] = {
    "common_name": 64,
    "organization": 64,
    "organizational_unit": 64,
    "country": 2,
    "state": 128,
    "locality": 128,
}


#: The longest DNS name (RFC 1035: 255 octets on the wire, 253 characters as text).
DNS_NAME_MAX = 253


def is_dns_name(name: str, *, allow_wildcard: bool = True) -> bool:
    """True for an RFC 1123 host name (one label, like `localhost`, or more), optionally with one leading `*.`
    label (then at least two labels after it) and one trailing dot.

    The last label may not be all digits (RFC 1123 section 2.1), so a mistyped IPv4 address such as `10.0.0.256`
    is not taken for a name.
    """
    if not isinstance(name, str) or not name or len(name) > DNS_NAME_MAX or name != name.strip():
        return False
    labels = name.removesuffix(".").lower().split(".")
    if allow_wildcard and labels[0] == "*":
        labels = labels[1:]
        if len(labels) < 2:
            return False
    return all(_DNS_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


#: ACM puts a certificate's first domain name in its common name, which RFC 5280 limits to 64 characters
#: (https://docs.aws.amazon.com/acm/latest/APIReference/API_RequestCertificate.html, `DomainName`).
ACM_DOMAIN_NAME_MAX = 64


def acm_domain_name_problem(name: object) -> str | None:
    """What is wrong with a domain name ACM requests a certificate for, or None: two labels or more, an optional
    leading `*.` wildcard label, no trailing dot, at most 64 characters (ACM's `DomainName`)."""
    if not isinstance(name, str) or not is_dns_name(name) or "." not in name.strip("."):
        return f"{name!r} is not a DNS name of two labels or more such as api.example.com (or *.dev.example.com)"
    if name.endswith("."):
        return f"{name!r} ends with a dot; ACM takes domain names with no trailing dot: {name.rstrip('.')!r}"
    if len(name) > ACM_DOMAIN_NAME_MAX:
        return (
            f"is {len(name)} characters long; ACM makes it the certificate's common name, which X.509 limits to "
            f"at most {ACM_DOMAIN_NAME_MAX}"
        )
    return None


def is_fqdn(name: str) -> bool:
    """A domain name ACM issues a certificate for (`acm_domain_name_problem`)."""
    return acm_domain_name_problem(name) is None


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


#: EC2's per-instance private DNS domains (`ip-10-0-1-5.ec2.internal`, `...<region>.compute.internal`).
EC2_INSTANCE_DOMAINS = (".ec2.internal", ".compute.internal")


def service_name_problem(name: object) -> str | None:
    """Why `name` cannot be a fleet-wide service name of the per-host mode, or None. Every host of the fleet may
    put a service name in its certificate, so it must name the service, never one host: no IP address, no
    wildcard (it would cover other hosts' names), no EC2 instance name; a DNS name of two labels or more, no
    trailing dot. One rule for the settings, the issuer's component and the agent's payload."""
    if not isinstance(name, str):
        return f"{shown(name)} is not a DNS name"
    if is_ip_address(name):
        return (
            f"{shown(name)} is an IP address, which belongs to one host (each host's certificate carries its own "
            "private IPv4); a service name is a DNS name any host of the fleet may carry"
        )
    if name.endswith("."):
        return f"{shown(name)} ends with a dot: write {shown(name.removesuffix('.'))}"
    if not is_dns_name(name, allow_wildcard=False) or "." not in name:
        return (
            f"{shown(name)} is not a DNS name of two labels or more without a wildcard, such as api.internal.example "
            "(any host may carry it, and a wildcard would cover other hosts' names)"
        )
    if name.lower().endswith(EC2_INSTANCE_DOMAINS):
        return (
            f"{shown(name)} is an EC2 instance name: any host may claim a service name, so it would let any host "
            "impersonate that instance (each host's certificate carries its own EC2 name)"
        )
    return None


def is_certificate_name(name: str) -> bool:
    """A name a certificate can carry in its SANs: a DNS name (wildcard allowed) or an IP address."""
    return is_ip_address(name) or is_dns_name(name)


def is_server_name(name: object) -> TypeGuard[str]:
    """A value nginx's `server_name` takes without interpreting it: DNS-like labels (with `_`), an optional
    leading `*.`, or an IPv4 address. No IPv6: nginx matches the Host header, which brackets an IPv6 literal."""
    return isinstance(name, str) and len(name) <= 253 and bool(_SERVER_NAME.fullmatch(name))


def has_control_characters(text: str) -> bool:
    return bool(_CONTROL.search(text))


def subject_field_problem(field: str, value: str) -> str | None:
    """What is wrong with an X.509 subject field's value (`field` one of `SUBJECT_FIELD_LIMITS`), or None."""
    limit = SUBJECT_FIELD_LIMITS[field]
    if field == "country" and not _COUNTRY.fullmatch(value):
        return f"{value!r} must be a two-letter ISO 3166 code such as US or DE"
    if has_control_characters(value):
        return f"{value!r} contains control characters (newlines, tabs, ...); use printable text"
    if value != value.strip():
        return f"{value!r} starts or ends with spaces"
    if len(value) > limit:
        return f"is {len(value)} characters long; X.509 allows at most {limit}"
    return None
