"""What AWS accepts: ARN and ID shapes, ACM PCA enums and templates, quotas and limits, one definition each."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeGuard
from urllib.parse import urlsplit

from components.rules.names import has_control_characters
from components.rules.network import ip_version


@dataclass(frozen=True)
class Shape:
    """A rule for one kind of string: the pattern it must match whole, and what it is, for messages."""

    pattern: re.Pattern[str]
    what: str

    def __call__(self, text: object) -> TypeGuard[str]:
        return isinstance(text, str) and self.pattern.fullmatch(text) is not None


# --- ARNs, partitions and regions --------------------------------------------------------------------------

#: A partition name's shape: `aws`, `aws-cn`, `aws-us-gov`, `aws-iso-b`, ... (never `awsfoo`). Which partitions
#: exist, and which regions each has, is botocore's data (`components.settings.botocore_regions`).
PARTITION = r"aws(?:-[a-z]+)*"
#: arn:partition:service:region:account-id:resource
#: (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html).
_ARN = re.compile(r"arn:(?P<partition>[^:]*):(?P<service>[^:]*):(?P<region>[^:]*):(?P<account>[^:]*):(?P<resource>.+)")


@dataclass(frozen=True)
class Arn:
    partition: str
    service: str
    region: str
    """Empty for global resources (IAM) and ACM PCA templates."""
    account: str
    resource: str


def parse_arn(text: object) -> Arn | None:
    """The six fields of an ARN, or None when `text` is not one (each setting's own shape says what it must be)."""
    match = _ARN.fullmatch(text) if isinstance(text, str) else None
    return Arn(**match.groupdict()) if match else None


def arn_placement_problem(arn: str, *, partition: str, region: str, regional: bool) -> str | None:
    """Why `arn` cannot be used by a stack in `region` (of `partition`), or None.

    ARNs never cross partitions. A regional resource (`regional`: a KMS key, an ACM certificate, an SNS topic, a
    CA) is used by this stack's resources in its own region: KMS keys, ACM certificates and CAs are regional
    (https://docs.aws.amazon.com/acm/latest/userguide/acm-regions.html), and the stack calls them there."""
    parsed = parse_arn(arn)
    if parsed is None:
        return None  # the setting's own shape reports it
    if parsed.partition != partition:
        return (
            f"{arn!r} is in partition {parsed.partition}, not {partition}, the partition of aws:region {region}: "
            "an ARN is only valid in its own partition"
        )
    if regional and parsed.region != region:
        return (
            f"{arn!r} is in {parsed.region}, not in {region} (aws:region): the stack uses it from its own region; "
            f"use one in {region}"
        )
    return None


def region_problem(region: str, regions: Mapping[str, str]) -> str | None:
    """Why `region` is not one of `regions` (region name -> partition, as botocore ships them), or None."""
    if region in regions:
        return None
    scores = {name: difflib.SequenceMatcher(None, region, name).ratio() for name in regions}
    best = max(scores.values(), default=0.0)
    closest = sorted(name for name, score in scores.items() if score == best and score >= 0.75)
    hint = f"did you mean {' or '.join(closest)}? " if closest else ""
    return (
        f"{region!r} is not a region AWS has; {hint}(a region newer than the installed boto3 needs a newer boto3, "
        "which ships the list)"
    )


# --- ACM Private CA ---------------------------------------------------------------------------------------

#: ACM PCA key algorithms (the `KeyAlgorithm` enum), in the order we document them.
KEY_ALGORITHMS: tuple[str, ...] = ("EC_prime256v1", "EC_secp384r1", "RSA_2048", "RSA_3072", "RSA_4096")
USAGE_MODES = ("GENERAL_PURPOSE", "SHORT_LIVED_CERTIFICATE")
KEY_STORAGE_STANDARDS = ("FIPS_140_2_LEVEL_3_OR_HIGHER", "FIPS_140_2_LEVEL_2_OR_HIGHER")
#: A SHORT_LIVED_CERTIFICATE CA issues certificates valid for 7 days at most.
SHORT_LIVED_MAX_DAYS = 7
#: How long the certificate provider keeps retrying calls AWS throttles (`certThrottleRetryMinutes`).
DEFAULT_THROTTLE_RETRY_MINUTES = 10
MAX_THROTTLE_RETRY_MINUTES = 120
#: `PermanentDeletionTimeInDays`: the restore window after a CA is deleted.
PERMANENT_DELETION_DAYS_RANGE = (7, 30)
#: `ExpirationInDays` of a CRL.
CRL_EXPIRATION_DAYS_RANGE = (1, 5000)
#: ACM PCA's limits on an ARN (CA, certificate, template) and on IssueCertificate's `Csr`, in bytes (the API's
#: `Arn` and `CsrBlob` shapes: https://docs.aws.amazon.com/privateca/latest/APIReference/API_IssueCertificate.html).
ARN_MAX = 200
CSR_MAX_BYTES = 32768

DEFAULT_TEMPLATE = "EndEntityServerAuthCertificate/V1"
#: The templates that sign a root CA's own certificate and a subordinate CA's certificate.
ROOT_CA_TEMPLATE = "RootCACertificate/V1"
SUBORDINATE_CA_TEMPLATE = "SubordinateCACertificate_PathLen0/V1"
_CA_ARN = re.compile(
    rf"^arn:(?P<partition>{PARTITION}):acm-pca:(?P<region>[a-z0-9-]+):\d{{12}}:certificate-authority/[0-9a-f-]+$",
    re.ASCII,
)
_CERTIFICATE_ARN = re.compile(
    rf"^(?P<ca_arn>arn:{PARTITION}:acm-pca:[a-z0-9-]+:\d{{12}}:certificate-authority/[0-9a-f-]+)/certificate/[0-9a-f]+$",
    re.ASCII,
)
_TEMPLATE_ARN = re.compile(rf"^arn:{PARTITION}:acm-pca:::template/(?P<name>[A-Za-z0-9_]+/V\d+)$")
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_]+/V\d+$")
#: CA templates sign certificate authorities, never a server.
_CA_TEMPLATE_PREFIXES = ("RootCACertificate", "SubordinateCACertificate")


def unsupported_key_algorithm(key_algorithm: object) -> str:
    return f"key_algorithm {key_algorithm!r} is not supported; allowed: {', '.join(KEY_ALGORITHMS)}"


def parse_ca_arn(text: object) -> re.Match[str] | None:
    """The match of an ACM PCA certificate-authority ARN (groups `partition` and `region`), or None."""
    return _CA_ARN.fullmatch(text) if isinstance(text, str) and len(text) <= ARN_MAX else None


def issuing_ca_arn(certificate_arn: object) -> str | None:
    """The ARN of the CA that issued an ACM PCA certificate, from the certificate's ARN
    (`<CA ARN>/certificate/<id>`), or None when it is not one."""
    if not isinstance(certificate_arn, str) or len(certificate_arn) > ARN_MAX:
        return None
    match = _CERTIFICATE_ARN.fullmatch(certificate_arn)
    return match["ca_arn"] if match else None


#: A certificate serial as RevokeCertificate takes it: hex bytes separated by colons, at most 128 characters (the
#: API's `String128`); X.509 serials are at most 20 bytes (RFC 5280, 4.1.2.2).
is_certificate_serial = Shape(
    re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){0,42}", re.ASCII), "a serial number (colon-separated hex bytes)"
)


def template_arn_for(template: str, partition: str = "aws") -> str:
    """Normalise a template name or ARN to an ARN; ValueError for a malformed one or a CA template."""
    match = _TEMPLATE_ARN.fullmatch(template)
    if match:
        name = match["name"]
    elif _TEMPLATE_NAME.fullmatch(template):
        name = template
    else:
        raise ValueError(
            f"{template!r} is not an ACM PCA template; use a name like {DEFAULT_TEMPLATE!r} "
            f"or an ARN like 'arn:{partition}:acm-pca:::template/{DEFAULT_TEMPLATE}'"
        )
    if name.startswith(_CA_TEMPLATE_PREFIXES):
        raise ValueError(f"{name!r} signs certificate authorities; use an end-entity template")
    return template_arn(name, partition)


def template_arn(name: str, partition: str = "aws") -> str:
    """The ARN of the ACM PCA template `name` (such as `RootCACertificate/V1`)."""
    return f"arn:{partition}:acm-pca:::template/{name}"


def short_lived_problem(name: str, validity_days: int, usage_mode: str) -> str | None:
    """Why `validity_days` (called `name`) is too long for a CA in `usage_mode`, or None."""
    if usage_mode == "SHORT_LIVED_CERTIFICATE" and validity_days > SHORT_LIVED_MAX_DAYS:
        return (
            f"{name} is {validity_days} but a SHORT_LIVED_CERTIFICATE CA issues certificates of at most "
            f"{SHORT_LIVED_MAX_DAYS} days"
        )
    return None


def renew_before_range(validity_days: int) -> tuple[int, int]:
    """The renew-before days a certificate valid for `validity_days` accepts, both ends included: from 0 (renew
    only once expired) to one day less than its validity (a longer window would replace it on every update).
    Empty (low > high) when `validity_days` is not positive."""
    return 0, validity_days - 1


#: The shortest default renewal window, in days: a window of 0 days would replace a certificate only once it has
#: expired, and the expiry alarm (at least a day) must fit inside the window, below its start.
MIN_RENEWAL_WINDOW_DAYS = 2
#: The shortest validity that leaves that window and a day of life before it (`certValidityDays`).
MIN_VALIDITY_DAYS = MIN_RENEWAL_WINDOW_DAYS + 1


def renew_before_days(validity_days: int, renew_before: int | None) -> int:
    """`renew_before`, or when it is None the default: a third of `validity_days` (30 of 90), as cert-manager
    renews at two thirds of a certificate's life, and never less than `MIN_RENEWAL_WINDOW_DAYS` while the
    validity leaves room for it (at most one day less than the validity)."""
    if renew_before is not None:
        return renew_before
    return max(0, min(validity_days - 1, max(MIN_RENEWAL_WINDOW_DAYS, validity_days // 3)))


def renewal_due(not_after: datetime, renew_before: int, now: datetime) -> bool:
    """Whether a certificate that expires at `not_after` is inside its renewal window at `now`: the provider's
    `diff` replaces it from then on, and the renewal workflow (`scripts/renewal-check`) targets exactly those."""
    return now >= not_after - timedelta(days=renew_before)


# --- ACM, EC2, ELB ------------------------------------------------------------------------------------------

is_acm_certificate_arn = Shape(
    re.compile(rf"arn:{PARTITION}:acm:[a-z0-9-]+:\d{{12}}:certificate/[0-9a-f-]+"), "an ACM certificate ARN"
)
#: EC2 resource IDs: a prefix and 8 (older resources) or 17 lower-case hex digits.
_RESOURCE_ID = "^{prefix}-(?:[0-9a-f]{{8}}|[0-9a-f]{{17}})$"
is_instance_type = Shape(re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9]+"), "an EC2 instance type such as t3.micro")
is_region = Shape(re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}"), "an AWS region name such as us-east-1 or eu-west-1")
#: A StackReference name.
is_stack_name = Shape(
    re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}"), "a stack name (stack, project/stack or org/project/stack)"
)
#: The public parameters that name the latest Amazon Linux 2023 AMI for each architecture
#: (https://docs.aws.amazon.com/linux/al2023/ug/ec2.html#launch-from-ssm).
AL2023_AMI_PARAMETERS: Mapping[str, str] = {
    "x86_64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    "arm64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
}
#: The AMI parameter the hosts boot from by default on an x86_64 instance type.
AL2023_AMI_PARAMETER = AL2023_AMI_PARAMETERS["x86_64"]
#: An instance type's family: series letters, generation, then options; a `g` among the options means AWS
#: Graviton, an arm64 processor (`t4g`, `m7g`, `c6gn`, `im4gn`, `x2gd`, `g5g`), and `a1` is the first Graviton
#: (https://docs.aws.amazon.com/ec2/latest/instancetypes/instance-type-names.html).
_INSTANCE_FAMILY = re.compile(r"(?P<series>[a-z]+?)(?P<generation>\d+)(?P<options>[a-z-]*)")
_ARCHITECTURE_MARKS = {"arm64": ("arm64", "aarch64"), "x86_64": ("x86_64", "amd64")}
#: How many hosts one fleet may have (the Auto Scaling group's desired capacity and minimum).
HOST_COUNT_RANGE = (1, 50)
#: The group's maximum: room for an instance refresh that launches a whole new fleet beside the old one.
HOST_MAX_COUNT = 2 * HOST_COUNT_RANGE[1]
#: An instance refresh's MinHealthyPercentage.
MIN_HEALTHY_PERCENT_RANGE = (0, 100)
#: The certificate-expiry alarm's threshold: at most a year of days left.
EXPIRY_ALARM_DAYS_MAX = 365
#: Root volume sizes: Amazon Linux 2023's AMI is 8 GiB; gp3 volumes go up to 16384 GiB.
ROOT_VOLUME_GIB_RANGE = (8, 16384)
#: ALB health-check paths: at most 1024 characters (ELB API reference, TargetGroup HealthCheckPath).
HEALTH_CHECK_PATH_MAX = 1024
_HEALTH_PATH = re.compile(r"^/[A-Za-z0-9._~/-]*$")
#: CloudWatch Logs' allowed retentions in days (PutRetentionPolicy,
#: https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)  # fmt: skip
#: A Lambda function's reserved concurrency: AWS keeps 100 of an account's (default 1000) executions unreserved.
RESERVED_CONCURRENCY_RANGE = (1, 900)
#: "Inbound or outbound rules per security group": 60 by default, counted separately for IPv4 and IPv6; a
#: rule that references a security group counts once for each
#: (https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html#vpc-limits-security-groups).
SECURITY_GROUP_RULES_MAX = 60


def is_resource_id(text: object, prefix: str) -> TypeGuard[str]:
    """An EC2 ID such as `vpc-0a1b2c3d4e5f60718`, `subnet-...` or `sg-...` (prefix without the dash)."""
    return isinstance(text, str) and bool(re.fullmatch(_RESOURCE_ID.format(prefix=re.escape(prefix)), text))


def resource_id_allowed(prefix: str) -> str:
    """What `is_resource_id(..., prefix)` accepts, for an error message: `subnet- and 8 or 17 hex digits`."""
    return f"{prefix}- and 8 or 17 hex digits"


def instance_architecture(instance_type: str) -> str:
    """`arm64` for an AWS Graviton instance type, else `x86_64` (Intel and AMD)."""
    family = instance_type.split(".", 1)[0]
    match = _INSTANCE_FAMILY.fullmatch(family)
    return "arm64" if family == "a1" or (match is not None and "g" in match["options"]) else "x86_64"


def ami_parameter_architecture(name: str) -> str | None:
    """The architecture an AMI parameter's name says it is for (`...-arm64`, `..._x86_64`), or None when its
    name does not say."""
    last = name.rsplit("/", 1)[-1].lower()
    found = [arch for arch, marks in _ARCHITECTURE_MARKS.items() if any(mark in last for mark in marks)]
    return found[0] if len(found) == 1 else None


def normalised_url_path(path: str) -> str | None:
    """The path nginx matches its locations against: `//` merged (`merge_slashes`), `.` segments dropped and `..`
    segments resolved (https://nginx.org/en/docs/http/ngx_http_core_module.html#location); None when `..` climbs
    above the root, which nginx answers with 400."""
    kept: list[str] = []
    segments = path.split("/")[1:]
    for segment in segments:
        if segment == "..":
            if not kept:
                return None
            kept.pop()
        elif segment not in ("", "."):
            kept.append(segment)
    trailing = bool(kept) and segments[-1] in ("", ".", "..")
    return "/" + "/".join(kept) + ("/" if trailing else "")


def health_check_path_problem(path: object) -> str | None:
    """What is wrong with a load balancer health-check path that nginx answers itself, or None.

    `/` is refused: nginx's `location /` serves the application, so the check would never reach it. The path
    must already be in the form nginx normalises requests to: nginx answers the check from an exact-match
    location, which a path with `//`, `.` or `..` segments never matches."""
    if not isinstance(path, str) or not _HEALTH_PATH.fullmatch(path):
        return f"{path!r} must be an absolute URL path of letters, digits and . _ ~ / - such as /healthz"
    if len(path) > HEALTH_CHECK_PATH_MAX:
        return f"is {len(path)} characters long; at most {HEALTH_CHECK_PATH_MAX}"
    normalised = normalised_url_path(path)
    if normalised is None:
        return f"{path!r} climbs above the root with '..' (nginx answers 400); use a path such as /healthz"
    if normalised == "/":
        return "'/' is the application's own location; use a path of its own such as /healthz"
    if normalised != path:
        return (
            f"{path!r} is not in the form nginx matches ('//', '.' and '..' are resolved first), so its exact-match "
            f"location would never answer; use {normalised!r}"
        )
    return None


def security_group_rules_problem(cidrs: Sequence[str], ports: int) -> str | None:
    """Whether `ports` rules for each CIDR fit in one security group, or what exceeds the quota."""
    for version in (4, 6):
        count = sum(1 for cidr in cidrs if ip_version(cidr) == version) * ports
        if count > SECURITY_GROUP_RULES_MAX:
            return (
                f"needs {count} IPv{version} rules in one security group ({ports} per CIDR); AWS allows "
                f"{SECURITY_GROUP_RULES_MAX} by default: merge CIDRs into larger blocks"
            )
    return None


# --- IAM, KMS, SNS ------------------------------------------------------------------------------------------

# AWS's `\w` in IAM and STS patterns is ASCII (letters, digits, underscore): "upper and lowercase alphanumeric
# characters" (https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html, RoleName). Python's
# `\w` also matches other scripts' letters and digits, so every pattern here is compiled with re.ASCII.
is_iam_role_arn = Shape(
    re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}", re.ASCII),
    "an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
)
is_iam_principal_arn = Shape(
    re.compile(r"arn:aws[a-z-]*:iam::\d{12}:(?:role|user)/[\w+=,.@/-]{1,512}", re.ASCII), "an IAM role or user ARN"
)
is_kms_key_arn = Shape(
    re.compile(rf"arn:{PARTITION}:kms:[a-z0-9-]+:\d{{12}}:key/[A-Za-z0-9-]+"),
    "a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)",
)
is_sns_topic_arn = Shape(
    re.compile(rf"arn:{PARTITION}:sns:[a-z0-9-]+:\d{{12}}:[A-Za-z0-9_-]{{1,256}}(?:\.fifo)?"),
    "an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)",
)
#: sts:AssumeRole's RoleSessionName (2-64) and ExternalId (2-1224) alphabets
#: (https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html).
is_role_session_name = Shape(re.compile(r"[\w+=,.@-]{2,64}", re.ASCII), "2-64 letters, digits or +=,.@_- (ASCII)")
is_external_id = Shape(re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII), "2-1224 letters, digits or +=,.@:/_- (ASCII)")
#: A shared-config profile name: non-empty, no whitespace.
is_profile_name = Shape(re.compile(r"\S+"), "an AWS profile name (no spaces)")
#: What each shape is, for messages ("... is not <what>").
IAM_ROLE_ARN = is_iam_role_arn.what
ROLE_SESSION_NAME = is_role_session_name.what
EXTERNAL_ID = is_external_id.what
PROFILE_NAME = is_profile_name.what


# --- SSM, endpoints, tags ----------------------------------------------------------------------------------

# SSM parameter names: a fully qualified path of letters, digits and . _ - /; AWS reserves names starting
# with "aws" or "ssm" (any case). 1011 characters is AWS's maximum for a full name.
_PARAMETER_NAME = re.compile(r"^(?:/[A-Za-z0-9_.-]+)+$")
_RESERVED_PARAMETER_PREFIX = re.compile(r"^/?(?:aws|ssm)", re.IGNORECASE)
#: The longest parameter prefix: room is left for the `/full-chain`-style names appended under it.
PARAMETER_PREFIX_MAX = 900
#: "Parameter hierarchies are limited to a maximum depth of fifteen levels", the parameter's own name included
#: (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html).
PARAMETER_LEVELS_MAX = 15
#: The largest parameter value: 4 KB in the Standard tier, 8 KB in the Advanced tier (which Intelligent-Tiering
#: switches to), in characters
#: (https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html).
PARAMETER_VALUE_MAX = {"Standard": 4096, "Advanced": 8192}
#: IssueCertificate's `Csr`: at most 32,768 bytes
#: (https://docs.aws.amazon.com/privateca/latest/APIReference/API_IssueCertificate.html).
ISSUE_CERTIFICATE_CSR_MAX = 32768


def is_parameter_path(name: object) -> TypeGuard[str]:
    """An SSM parameter path: `/` then segments of letters, digits and . _ - (no trailing `/`)."""
    return isinstance(name, str) and bool(_PARAMETER_NAME.fullmatch(name))


def is_reserved_parameter_path(name: str) -> bool:
    """AWS reserves parameter names starting with `aws` or `ssm`, in any case."""
    return bool(_RESERVED_PARAMETER_PREFIX.match(name))


def parameter_prefix_problem(prefix: object) -> str | None:
    """What is wrong with an SSM path under which this stack writes parameters, or None."""
    if not is_parameter_path(prefix):
        return f"{prefix!r} must look like /team/app (starts with /, no trailing /, letters, digits and _ . - /)"
    assert isinstance(prefix, str)
    if is_reserved_parameter_path(prefix):
        return f"{prefix!r} starts with aws or ssm, which AWS reserves"
    if len(prefix) > PARAMETER_PREFIX_MAX:
        return f"is {len(prefix)} characters long; at most {PARAMETER_PREFIX_MAX}"
    levels = prefix.count("/")
    if levels + 1 > PARAMETER_LEVELS_MAX:
        return (
            f"{prefix!r} has {levels} levels and the parameters under it (such as /full-chain) one more; Parameter "
            f"Store allows {PARAMETER_LEVELS_MAX} levels: at most {PARAMETER_LEVELS_MAX - 1} in the prefix"
        )
    return None


def endpoint_url_problem(url: str) -> str | None:
    """What is wrong with an API endpoint override, or None.

    Plain `http://` only to a loopback address (a local emulator): anywhere else requests and credentials
    would cross the network unencrypted."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # an unbalanced IPv6 bracket, a port that is not a number
        return f"{url!r} is not an http(s) URL like http://127.0.0.1:5000 (scheme, host, optional port, no path)"
    if "@" in parts.netloc:  # not echoed: it may hold a secret
        return (
            "is not a usable http(s) URL: it has credentials in it (user:password@host); AWS credentials come from "
            "the credential chain, never from a URL"
        )
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or port == 0
        or any(char.isspace() for char in url)
        or has_control_characters(url)
    ):
        return f"{url!r} is not an http(s) URL like http://127.0.0.1:5000 (scheme, host, optional port, no path)"
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return f"{url!r} is plain http to a host that is not loopback; use https (http only for a local emulator)"
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: Tag limits common to EC2, ELB, ACM, SSM and IAM: 50 user tags, keys of 128 and values of 256 characters,
#: no key starting with `aws:` (https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html).
TAGS_MAX = 50
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256


def tag_problems(tags: object) -> list[str]:
    """Everything wrong with a tag map (each problem names the key), or []."""
    if not isinstance(tags, Mapping):
        return [f"must map tag keys to values, got {tags!r}"]
    problems = []
    if len(tags) > TAGS_MAX:
        problems.append(f"has {len(tags)} tags; AWS allows {TAGS_MAX} per resource")
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            problems.append(f"{key!r}: keys and values must be strings")
        elif not key or len(key) > TAG_KEY_MAX or len(value) > TAG_VALUE_MAX:
            problems.append(f"{key!r}: keys are 1-{TAG_KEY_MAX} characters, values at most {TAG_VALUE_MAX}")
        elif key.lower().startswith("aws:"):
            problems.append(f"{key!r}: keys starting with aws: are reserved for AWS")
        elif has_control_characters(key) or has_control_characters(value):
            problems.append(f"{key!r}: keys and values must not contain control characters")
    return problems
