"""Guardrail policies for the pca-backend Pulumi program.

Every policy here is a plain `pulumi_policy` object so tests (and the mock-based stack checks in
`tests/policy_harness.py`) can call `policy.validate(args, report_violation)` without running the pack.

Policies see a resource's *inputs* under Pulumi's camelCase property names (`healthCheck.protocol`,
`defaultActions[].redirect.protocol`, `metadataOptions.httpTokens`, ...). Dynamic-provider resources keep
the names the program used (`private_key_pem`). Stack policies see the resources' *outputs*.

Unknown values (not yet computed during `pulumi preview`) are never flagged: a policy only reports what it
can see is wrong. Missing values are flagged when AWS's default for them is the insecure choice.

Rules that need a convention:

* Public ingress: a rule open to the whole internet (any IPv4 or IPv6 network with prefix length 0, e.g.
  `0.0.0.0/0` or `::/0`) is allowed only for TCP port 443 exactly, and only on a resource tagged
  `pca-backend:role=alb` (`ALB_ROLE_TAG_KEY` / `ALB_ROLE_TAG_VALUE`): the load balancer's security group
  (inline `ingress`) or an `aws.vpc.SecurityGroupIngressRule` carrying that tag. The legacy
  `aws.ec2.SecurityGroupRule` has no tags, so it may never be open to the internet.
* SSM parameters: every `aws.ssm.Parameter` must be `SecureString`. Guessing from a parameter's name which
  ones hold key material misses the next one; encrypting a public certificate as well costs nothing.
* Private keys of `pulumi-python:dynamic/pki:Certificate`: see `certificate_private_key_secret`.
* S3 buckets: every bucket the stack creates has, in the same stack, a public access block with all four flags
  True and a bucket policy that denies every request without TLS (`aws:SecureTransport` false). A block or policy
  belongs to a bucket when its `bucket` is the bucket's name or, while names are unknown (preview), when the engine
  says its `bucket` came from that bucket (property dependencies).
* KMS keys: no key policy statement may allow `kms:CreateGrant`, by name or by a wildcard such as `kms:Create*` or
  `kms:*` (the AWS default key policy has both), unless it is limited to grants AWS services create for their
  resources (`kms:GrantIsForAWSResource` true). Whoever may create grants may grant themselves Decrypt: the
  key's own use statements and their conditions would protect nothing. A key without a policy gets AWS's default.
* Lambda (the per-host issuer): a function URL authenticates with IAM (`AWS_IAM`, never `NONE`); a Lambda
  permission names its principal (never `*`), a permission to invoke a function URL names the `AWS_IAM` auth type,
  and one for an AWS service principal names a source ARN or account.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

PACK_NAME = "pca-backend-guardrails"
ALB_ROLE_TAG_KEY = "pca-backend:role"
ALB_ROLE_TAG_VALUE = "alb"
TLS13_MARKER = "TLS13"
CERTIFICATE_TYPE = "pulumi-python:dynamic/pki:Certificate"
CERTIFICATE_SECRET_OUTPUTS = ("private_key_pem", "privateKeyPem")

TARGET_GROUP_TYPES = frozenset({"aws:lb/targetGroup:TargetGroup", "aws:alb/targetGroup:TargetGroup"})
LISTENER_TYPES = frozenset({"aws:lb/listener:Listener", "aws:alb/listener:Listener"})
SECURITY_GROUP_TYPE = "aws:ec2/securityGroup:SecurityGroup"
VPC_INGRESS_RULE_TYPE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EC2_RULE_TYPE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INSTANCE_TYPE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE_TYPE = "aws:ec2/launchTemplate:LaunchTemplate"
LAUNCH_CONFIGURATION_TYPE = "aws:ec2/launchConfiguration:LaunchConfiguration"
AUTOSCALING_GROUP_TYPE = "aws:autoscaling/group:Group"
VOLUME_TYPE = "aws:ebs/volume:Volume"
PUBLIC_ACCESS_BLOCK_TYPE = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY_TYPE = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_TYPES = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
BUCKET_ACL_TYPES = frozenset({"aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2"})
CERTIFICATE_AUTHORITY_TYPE = "aws:acmpca/certificateAuthority:CertificateAuthority"
SSM_PARAMETER_TYPE = "aws:ssm/parameter:Parameter"
KMS_KEY_POLICY_TYPES = frozenset({"aws:kms/key:Key", "aws:kms/keyPolicy:KeyPolicy"})
LAMBDA_FUNCTION_URL_TYPE = "aws:lambda/functionUrl:FunctionUrl"
LAMBDA_PERMISSION_TYPE = "aws:lambda/permission:Permission"

PUBLIC_ACCESS_BLOCK_FLAGS = (
    "blockPublicAcls",
    "blockPublicPolicy",
    "ignorePublicAcls",
    "restrictPublicBuckets",
)
PUBLIC_CANNED_ACLS = frozenset({"public-read", "public-read-write", "authenticated-read"})
PUBLIC_GRANTEE_URIS = frozenset(
    {
        "http://acs.amazonaws.com/groups/global/AllUsers",
        "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
    }
)
ALL_PROTOCOLS = frozenset({"-1", "all"})
TCP_PROTOCOLS = frozenset({"tcp", "6"})


class _Unknown:
    """Marks a value Pulumi cannot know yet (preview); policies skip it rather than guess."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Any = _Unknown()


def _is_unknown(value: Any) -> bool:
    # The second test covers values recorded through `pulumi.runtime.set_mocks`.
    return value is UNKNOWN or type(value).__name__ == "Unknown"


def _get(value: Any, *path: str | int) -> Any:
    """Walk `path` into props: None when a step is missing, `UNKNOWN` when a step is not known yet."""
    for key in path:
        if value is None or _is_unknown(value):
            return value
        try:
            if isinstance(key, int):
                value = value[key] if isinstance(value, (list, tuple)) or _is_sequence(value) else None
            elif isinstance(value, Mapping):
                value = value.get(key)
            else:
                return None
        except UnknownValueError:
            return UNKNOWN
        except (IndexError, KeyError, TypeError):
            return None
    return UNKNOWN if _is_unknown(value) else value


def _is_sequence(value: Any) -> bool:
    if isinstance(value, (str, bytes, Mapping)):
        return False
    return hasattr(value, "__len__") and hasattr(value, "__getitem__")


def _items(value: Any) -> Iterator[Any]:
    """Elements of a list property, each either a value or `UNKNOWN`; nothing for a missing list."""
    if value is None or _is_unknown(value) or not _is_sequence(value):
        return
    for index in range(len(value)):
        yield _get(value, index)


def _known(value: Any) -> bool:
    return value is not None and not _is_unknown(value)


def _lower(value: Any) -> str | None:
    return str(value).lower() if _known(value) else None


def _as_bool(value: Any) -> bool | None:
    """True/False for booleans and the strings launch templates use; None when missing or unknown."""
    if not _known(value):
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


def _policy(name: str, description: str, validate: Any) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


# --- load balancing ---------------------------------------------------------------------------------------


def _validate_target_group(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in TARGET_GROUP_TYPES:
        return
    props = args.props
    if _lower(_get(props, "targetType")) == "lambda":
        return  # Lambda targets have no protocol.
    protocol = _get(props, "protocol")
    if protocol is None:
        report_violation(
            "Target group has no protocol, so traffic from the load balancer to the hosts would not be "
            "required to use TLS. Set protocol='HTTPS'.",
            None,
        )
    elif _known(protocol) and str(protocol).upper() != "HTTPS":
        report_violation(
            f"Target group protocol is {protocol!r}: traffic from the load balancer to the hosts must be "
            "encrypted. Set protocol='HTTPS' (with port 443 on the nginx hosts).",
            None,
        )
    health_protocol = _get(props, "healthCheck", "protocol")
    if health_protocol is None:
        report_violation(
            "Target group health check has no protocol, and AWS defaults it to HTTP. "
            "Set health_check={'protocol': 'HTTPS', ...}.",
            None,
        )
    elif _known(health_protocol) and str(health_protocol).upper() != "HTTPS":
        report_violation(
            f"Target group health check protocol is {health_protocol!r}; health checks must use TLS too. "
            "Set health_check={'protocol': 'HTTPS', ...}.",
            None,
        )


target_groups_https = _policy(
    "alb-target-groups-https",
    "Load balancer target groups send traffic and health checks to the hosts over HTTPS only "
    "(Lambda target groups have no protocol and are exempt).",
    _validate_target_group,
)


def _listener_protocol(props: Any) -> Any:
    protocol = _get(props, "protocol")
    # An ALB listener without a protocol is an HTTP listener.
    return "HTTP" if protocol is None else protocol


def _validate_listener_plaintext(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in LISTENER_TYPES:
        return
    protocol = _listener_protocol(args.props)
    if not _known(protocol):
        return
    protocol = str(protocol).upper()
    if protocol in ("HTTPS", "TLS"):
        return
    if protocol != "HTTP":
        report_violation(
            f"Listener protocol is {protocol!r}, which carries traffic unencrypted. "
            "Use an HTTPS listener (or TLS on a network load balancer).",
            None,
        )
        return
    actions = list(_items(_get(args.props, "defaultActions")))
    if not actions:
        report_violation(
            "HTTP listener has no default action. An HTTP listener may only redirect to HTTPS: set "
            "default_actions=[{'type': 'redirect', 'redirect': {'protocol': 'HTTPS', 'port': '443', "
            "'status_code': 'HTTP_301'}}].",
            None,
        )
        return
    for index, action in enumerate(actions):
        action_type = _get(action, "type")
        redirect_protocol = _get(action, "redirect", "protocol")
        if not _known(action_type):
            continue
        if str(action_type).lower() != "redirect":
            report_violation(
                f"HTTP listener default action {index} is {action_type!r}, which serves plaintext traffic. "
                "An HTTP listener may only redirect to HTTPS: use type='redirect' with "
                "redirect={'protocol': 'HTTPS', 'port': '443', 'status_code': 'HTTP_301'}.",
                None,
            )
        elif redirect_protocol is None or (_known(redirect_protocol) and str(redirect_protocol) != "HTTPS"):
            shown = "not set (it then keeps HTTP)" if redirect_protocol is None else repr(redirect_protocol)
            report_violation(
                f"HTTP listener default action {index} redirects with protocol {shown}. "
                "Set redirect={'protocol': 'HTTPS', 'port': '443', 'status_code': 'HTTP_301'}.",
                None,
            )


listeners_no_plaintext = _policy(
    "listeners-no-plaintext",
    "Load balancer listeners are HTTPS/TLS; an HTTP listener is allowed only when every default action "
    "redirects to HTTPS.",
    _validate_listener_plaintext,
)


def _validate_listener_tls13(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in LISTENER_TYPES:
        return
    protocol = _listener_protocol(args.props)
    if not _known(protocol) or str(protocol).upper() not in ("HTTPS", "TLS"):
        return
    ssl_policy = _get(args.props, "sslPolicy")
    if ssl_policy is None:
        report_violation(
            f"{str(protocol).upper()} listener has no ssl_policy, so it gets the AWS default, which may "
            "allow old TLS versions. Set ssl_policy='ELBSecurityPolicy-TLS13-1-2-2021-06' "
            "(or another TLS13 policy).",
            None,
        )
    elif _known(ssl_policy) and TLS13_MARKER not in str(ssl_policy).upper():
        report_violation(
            f"Listener ssl_policy {ssl_policy!r} is not a TLS 1.3 policy. "
            "Set ssl_policy='ELBSecurityPolicy-TLS13-1-2-2021-06' "
            "(or another policy with TLS13 in its name).",
            None,
        )


listeners_tls13 = _policy(
    "listeners-tls13-policy",
    "HTTPS and TLS listeners use an ELB security policy that supports TLS 1.3 (name contains 'TLS13').",
    _validate_listener_tls13,
)


# --- security groups --------------------------------------------------------------------------------------


class _IngressRule:
    """One ingress rule, whatever resource shape it came from."""

    def __init__(self, label: str, protocol: Any, from_port: Any, to_port: Any, cidrs: list[Any]) -> None:
        self.label = label
        self.protocol = protocol
        self.from_port = from_port
        self.to_port = to_port
        self.cidrs = cidrs

    def all_protocols(self) -> bool:
        return _known(self.protocol) and str(self.protocol).lower() in ALL_PROTOCOLS

    def is_tcp(self) -> bool:
        return _known(self.protocol) and str(self.protocol).lower() in TCP_PROTOCOLS

    def covers_port(self, port: int) -> bool | None:
        """True/False when known; None while the protocol or ports are unknown."""
        if self.all_protocols():
            return True
        if not _known(self.protocol):
            return None
        if not self.is_tcp():
            return False
        if not (_known(self.from_port) and _known(self.to_port)):
            return None
        return int(self.from_port) <= port <= int(self.to_port)

    def only_https(self) -> bool | None:
        if self.all_protocols():
            return False
        if not _known(self.protocol):
            return None
        if not self.is_tcp():
            return False
        if not (_known(self.from_port) and _known(self.to_port)):
            return None
        return int(self.from_port) == 443 and int(self.to_port) == 443

    def internet_sources(self) -> list[str]:
        return [str(cidr) for cidr in self.cidrs if _known(cidr) and _is_whole_internet(str(cidr))]


def _is_whole_internet(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


def _cidr_list(*values: Any) -> list[Any]:
    cidrs: list[Any] = []
    for value in values:
        if _is_sequence(value):
            cidrs.extend(_items(value))
        elif value is not None:
            cidrs.append(value)
    return cidrs


def _ingress_rules(args: ResourceValidationArgs) -> list[_IngressRule]:
    props = args.props
    if args.resource_type == SECURITY_GROUP_TYPE:
        return [
            _IngressRule(
                f"ingress rule {index}",
                _get(rule, "protocol"),
                _get(rule, "fromPort"),
                _get(rule, "toPort"),
                _cidr_list(_get(rule, "cidrBlocks"), _get(rule, "ipv6CidrBlocks")),
            )
            for index, rule in enumerate(_items(_get(props, "ingress")))
            if _known(rule)
        ]
    if args.resource_type == VPC_INGRESS_RULE_TYPE:
        return [
            _IngressRule(
                "ingress rule",
                _get(props, "ipProtocol"),
                _get(props, "fromPort"),
                _get(props, "toPort"),
                _cidr_list(_get(props, "cidrIpv4"), _get(props, "cidrIpv6")),
            )
        ]
    if args.resource_type == EC2_RULE_TYPE and _lower(_get(props, "type")) == "ingress":
        return [
            _IngressRule(
                "ingress rule",
                _get(props, "protocol"),
                _get(props, "fromPort"),
                _get(props, "toPort"),
                _cidr_list(_get(props, "cidrBlocks"), _get(props, "ipv6CidrBlocks")),
            )
        ]
    return []


def _has_alb_role_tag(args: ResourceValidationArgs) -> bool:
    if args.resource_type == EC2_RULE_TYPE:
        return False  # This resource cannot carry tags.
    return _get(args.props, "tags", ALB_ROLE_TAG_KEY) == ALB_ROLE_TAG_VALUE


def _validate_public_ingress(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    tagged_alb = _has_alb_role_tag(args)
    for rule in _ingress_rules(args):
        sources = rule.internet_sources()
        if not sources:
            continue
        only_https = rule.only_https()
        if only_https is None:
            continue
        where = ", ".join(sources)
        if not only_https:
            report_violation(
                f"{rule.label.capitalize()} opens more than TCP 443 to the internet ({where}). "
                "Only the load balancer may be reachable from the internet, and only on TCP 443: narrow the "
                "rule to protocol='tcp', from_port=443, to_port=443, or use a private CIDR or a security "
                "group as the source.",
                None,
            )
        elif not tagged_alb:
            report_violation(
                f"{rule.label.capitalize()} opens TCP 443 to the internet ({where}) on a resource that is "
                "not the load balancer's. Hosts must only accept traffic from the load balancer's "
                "security group. "
                f"If this is the load balancer's rule, tag it {ALB_ROLE_TAG_KEY}={ALB_ROLE_TAG_VALUE} "
                "(aws.ec2.SecurityGroup or aws.vpc.SecurityGroupIngressRule; aws.ec2.SecurityGroupRule "
                "cannot be tagged, so use aws.vpc.SecurityGroupIngressRule).",
                None,
            )


no_public_ingress = _policy(
    "no-public-ingress-except-alb-https",
    f"Ingress from the whole internet (0.0.0.0/0, ::/0) is allowed only on TCP 443 and only on resources "
    f"tagged {ALB_ROLE_TAG_KEY}={ALB_ROLE_TAG_VALUE} (the load balancer's security group or its rules).",
    _validate_public_ingress,
)


def _validate_no_ssh(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for rule in _ingress_rules(args):
        if rule.covers_port(22):
            if rule.all_protocols():
                what = "all protocols and ports"
            else:  # covers_port() returned True, so both ports are known.
                what = f"ports {int(rule.from_port)}-{int(rule.to_port)}"
            report_violation(
                f"{rule.label.capitalize()} allows SSH (TCP 22) through {what}. Use SSM Session Manager "
                "for shell access instead: remove the rule or narrow its port range so it excludes 22.",
                None,
            )


no_ssh_ingress = _policy(
    "no-ssh-ingress",
    "No security group rule allows ingress on TCP port 22, whether by port range or by allowing all protocols.",
    _validate_no_ssh,
)


# --- instances, launch templates, Auto Scaling groups and volumes -----------------------------------------
#
# Hosts are checked wherever they are defined: an instance, a launch template, or a launch configuration.


def _validate_imdsv2(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in (INSTANCE_TYPE, LAUNCH_TEMPLATE_TYPE, LAUNCH_CONFIGURATION_TYPE):
        return
    if (
        args.resource_type == INSTANCE_TYPE
        and _get(args.props, "metadataOptions") is None
        and _known(_get(args.props, "launchTemplate"))
    ):
        return  # The launch template's own metadata options apply and are checked there.
    if _lower(_get(args.props, "metadataOptions", "httpEndpoint")) == "disabled":
        return  # No metadata service at all is stricter than IMDSv2.
    tokens = _get(args.props, "metadataOptions", "httpTokens")
    if _is_unknown(tokens):
        return
    if tokens is None or str(tokens).lower() != "required":
        shown = "not set (AWS then allows IMDSv1)" if tokens is None else repr(tokens)
        report_violation(
            f"metadata_options.http_tokens is {shown}. Require IMDSv2 so a request forgery on the host "
            "cannot read the instance role's credentials: "
            "set metadata_options={'http_tokens': 'required', ...}.",
            None,
        )


imdsv2_required = _policy(
    "imdsv2-required",
    "EC2 instances, launch templates and launch configurations require IMDSv2 "
    "(metadata_options.http_tokens='required').",
    _validate_imdsv2,
)


def _instance_volume_gaps(props: Any, what: str) -> list[str]:
    """Violations of an instance's or launch configuration's root and EBS block devices."""
    gaps = []
    root = _get(props, "rootBlockDevice")
    if root is None and _known(_get(props, "launchTemplate")):
        pass  # The launch template's block device mappings apply and are checked there.
    elif _known(root) or root is None:
        encrypted = _get(root, "encrypted")
        if not _is_unknown(encrypted) and _as_bool(encrypted) is not True:
            gaps.append(
                f"{what} root volume is not encrypted (root_block_device.encrypted is not True; "
                "whether AWS encrypts it otherwise depends on an account setting). "
                "Set root_block_device={'encrypted': True, ...}."
            )
    for index, device in enumerate(_items(_get(props, "ebsBlockDevices"))):
        encrypted = _get(device, "encrypted")
        if _known(device) and not _is_unknown(encrypted) and _as_bool(encrypted) is not True:
            name = _get(device, "deviceName")
            gaps.append(
                f"{what} EBS block device {index} ({name or 'unnamed'}) is not encrypted. "
                "Set encrypted=True on every ebs_block_devices entry."
            )
    return gaps


def _launch_template_volume_gaps(props: Any) -> list[str]:
    mappings = _get(props, "blockDeviceMappings")
    if _is_unknown(mappings):
        return []
    ebs_mappings = [(index, m) for index, m in enumerate(_items(mappings)) if _known(_get(m, "ebs"))]
    if not ebs_mappings:
        return [
            "Launch template has no EBS block device mapping, so whether its hosts' root volume is encrypted "
            "depends on the AMI and an account setting. Map the root device with "
            "block_device_mappings=[{'device_name': '/dev/xvda', 'ebs': {'encrypted': 'true', ...}}]."
        ]
    gaps = []
    for index, mapping in ebs_mappings:
        encrypted = _get(mapping, "ebs", "encrypted")
        if not _is_unknown(encrypted) and _as_bool(encrypted) is not True:
            name = _get(mapping, "deviceName")
            gaps.append(
                f"Launch template block device mapping {index} ({name or 'unnamed'}) is not encrypted. "
                "Set ebs={'encrypted': 'true', ...}."
            )
    return gaps


def _validate_encrypted_volumes(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = args.props
    if args.resource_type == VOLUME_TYPE:
        encrypted = _get(props, "encrypted")
        gaps = (
            []
            if _is_unknown(encrypted) or _as_bool(encrypted) is True
            else ["EBS volume is not encrypted. Set encrypted=True."]
        )
    elif args.resource_type == INSTANCE_TYPE:
        gaps = _instance_volume_gaps(props, "Instance")
    elif args.resource_type == LAUNCH_CONFIGURATION_TYPE:
        gaps = _instance_volume_gaps(props, "Launch configuration")
    elif args.resource_type == LAUNCH_TEMPLATE_TYPE:
        gaps = _launch_template_volume_gaps(props)
    else:
        gaps = []
    for message in gaps:
        report_violation(message, None)


encrypted_volumes = _policy(
    "ebs-volumes-encrypted",
    "Instance and launch configuration root and EBS block devices, launch template EBS mappings (a template "
    "must map at least one) and EBS volumes are encrypted.",
    _validate_encrypted_volumes,
)


def _validate_autoscaling_group(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != AUTOSCALING_GROUP_TYPE:
        return
    props = args.props
    if _known(_get(props, "launchConfiguration")):
        report_violation(
            "Auto Scaling group launches from a launch configuration, which AWS no longer develops and which "
            "cannot roll hosts through a launch template version. Use launch_template={'id': ..., 'version': ...}.",
            None,
        )
    targets = _get(props, "targetGroupArns")
    serves_traffic = _is_unknown(targets) or any(True for _ in _items(targets))
    health_check_type = _get(props, "healthCheckType")
    if serves_traffic and not _is_unknown(health_check_type) and str(health_check_type or "EC2").upper() != "ELB":
        shown = (
            "not set (AWS then uses EC2 status checks only)" if health_check_type is None else repr(health_check_type)
        )
        report_violation(
            f"Auto Scaling group behind a load balancer has health_check_type {shown}: a host whose HTTPS health "
            "check fails would stay in service, and an instance refresh would count it healthy. "
            "Set health_check_type='ELB' with a health_check_grace_period.",
            None,
        )


autoscaling_groups_behind_load_balancers = _policy(
    "autoscaling-groups-elb-health-checked",
    "Auto Scaling groups launch from launch templates (checked by the IMDSv2 and volume policies), and those "
    "attached to target groups replace hosts that fail the load balancer's health check (health_check_type ELB).",
    _validate_autoscaling_group,
)


# --- S3 (CRL bucket) --------------------------------------------------------------------------------------


def _public_access_block_gaps(props: Any) -> list[str]:
    """The flags of a public access block that are known not to be True."""
    gaps = []
    for flag in PUBLIC_ACCESS_BLOCK_FLAGS:
        value = _get(props, flag)
        if not _is_unknown(value) and _as_bool(value) is not True:
            gaps.append(flag)
    return gaps


def _validate_public_access_block(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != PUBLIC_ACCESS_BLOCK_TYPE:
        return
    gaps = _public_access_block_gaps(args.props)
    if gaps:
        report_violation(
            f"Bucket public access block leaves {', '.join(gaps)} off. Set block_public_acls, "
            "block_public_policy, ignore_public_acls and restrict_public_buckets all to True.",
            None,
        )


s3_public_access_block_strict = _policy(
    "s3-public-access-block-all-true",
    "Every S3 bucket public access block sets all four flags to True.",
    _validate_public_access_block,
)


def _validate_public_acls(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = args.props
    if args.resource_type in BUCKET_TYPES or args.resource_type in BUCKET_ACL_TYPES:
        acl = _lower(_get(props, "acl"))
        if acl in PUBLIC_CANNED_ACLS:
            report_violation(
                f"Bucket ACL {acl!r} makes objects readable outside this account. "
                "Remove the ACL (use bucket policies) or set acl='private'.",
                None,
            )
        grants = list(_items(_get(props, "grants")))
        grants += list(_items(_get(props, "accessControlPolicy", "grants")))
        for grant in grants:
            uri = _get(grant, "uri")
            if not _known(uri):
                uri = _get(grant, "grantee", "uri")
            if _known(uri) and str(uri) in PUBLIC_GRANTEE_URIS:
                report_violation(
                    f"Bucket ACL grants access to {uri}, i.e. to everyone. Remove that grant.",
                    None,
                )
    elif args.resource_type == CERTIFICATE_AUTHORITY_TYPE:
        object_acl = _get(props, "revocationConfiguration", "crlConfiguration", "s3ObjectAcl")
        if _known(object_acl) and str(object_acl).upper() == "PUBLIC_READ":
            report_violation(
                "Private CA writes its CRL with s3_object_acl='PUBLIC_READ', which the bucket's public "
                "access block rejects and which would make the bucket public. "
                "Set s3_object_acl='BUCKET_OWNER_FULL_CONTROL'.",
                None,
            )


no_public_s3_acls = _policy(
    "no-public-s3-acls",
    "No S3 bucket or bucket ACL grants public-read or authenticated-read, and the Private CA does not write "
    "its CRL with a PUBLIC_READ object ACL.",
    _validate_public_acls,
)


def _dependency_urns(resource: PolicyResource, prop: str, types: Iterable[str]) -> set[str]:
    wanted = set(types)
    return {dep.urn for dep in resource.property_dependencies.get(prop, []) if dep.resource_type in wanted}


def _validate_crl_buckets(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    blocks = [r for r in args.resources if r.resource_type == PUBLIC_ACCESS_BLOCK_TYPE]
    for ca in args.resources:
        if ca.resource_type != CERTIFICATE_AUTHORITY_TYPE:
            continue
        crl = _get(ca.props, "revocationConfiguration", "crlConfiguration")
        if not _known(crl) or _as_bool(_get(crl, "enabled")) is False:
            continue
        bucket_name = _get(crl, "s3BucketName")
        bucket_urns = _dependency_urns(ca, "revocationConfiguration", BUCKET_TYPES)
        if bucket_name is None and not bucket_urns:
            continue
        matching = [
            block
            for block in blocks
            if (_known(bucket_name) and _get(block.props, "bucket") == bucket_name)
            or (bucket_urns & _dependency_urns(block, "bucket", BUCKET_TYPES))
        ]
        if not matching:
            if not _known(bucket_name) and not bucket_urns:
                continue  # Not knowable during this preview.
            if not _known(bucket_name) and any(_is_unknown(_get(b.props, "bucket")) for b in blocks):
                continue  # A block whose bucket is still unknown may be this one.
            shown = bucket_name if _known(bucket_name) else "its CRL bucket"
            report_violation(
                f"Private CA {ca.name} publishes its CRL to {shown}, but this stack has no "
                "aws.s3.BucketPublicAccessBlock for that bucket. Add one with block_public_acls, "
                "block_public_policy, ignore_public_acls and restrict_public_buckets all True.",
                ca.urn,
            )
            continue
        for block in matching:
            gaps = _public_access_block_gaps(block.props)
            if gaps:
                report_violation(
                    f"The public access block of Private CA {ca.name}'s CRL bucket leaves "
                    f"{', '.join(gaps)} off. Set all four flags to True.",
                    block.urn,
                )


crl_bucket_public_access_blocked = StackValidationPolicy(
    name="crl-bucket-public-access-blocked",
    description="Every S3 bucket a Private CA publishes its CRL to has a public access block with all four "
    "flags True in the same stack.",
    validate=_validate_crl_buckets,
    enforcement_level=EnforcementLevel.MANDATORY,
)


def _bucket_attachments(
    args: StackValidationArgs, bucket: PolicyResource, types: Iterable[str]
) -> tuple[list[PolicyResource], bool]:
    """The resources of `types` whose `bucket` is `bucket`, and whether that can be known yet: False while the
    bucket's name is unknown and nothing links a candidate to it, or a candidate's own `bucket` is unknown."""
    wanted = set(types)
    name = _get(bucket.props, "bucket")
    candidates = [r for r in args.resources if r.resource_type in wanted]
    matching = [
        r
        for r in candidates
        if (_known(name) and _get(r.props, "bucket") == name)
        or bucket.urn in _dependency_urns(r, "bucket", BUCKET_TYPES)
    ]
    if matching:
        return matching, True
    linked = any(r.property_dependencies.get("bucket") for r in candidates)
    undecided = any(
        _is_unknown(_get(r.props, "bucket")) and not r.property_dependencies.get("bucket") for r in candidates
    )
    return [], (_known(name) or linked) and not undecided


def _shown(bucket: PolicyResource) -> str:
    name = _get(bucket.props, "bucket")
    return f"{bucket.name} ({name})" if _known(name) else bucket.name


def _validate_buckets_blocked(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for bucket in args.resources:
        if bucket.resource_type not in BUCKET_TYPES:
            continue
        blocks, decidable = _bucket_attachments(args, bucket, [PUBLIC_ACCESS_BLOCK_TYPE])
        if not blocks and decidable:
            report_violation(
                f"S3 bucket {_shown(bucket)} has no aws.s3.BucketPublicAccessBlock in this stack. Add one with "
                "block_public_acls, block_public_policy, ignore_public_acls and restrict_public_buckets all True.",
                bucket.urn,
            )
        for block in blocks:
            gaps = _public_access_block_gaps(block.props)
            if gaps:
                report_violation(
                    f"The public access block of S3 bucket {_shown(bucket)} leaves {', '.join(gaps)} off. "
                    "Set all four flags to True.",
                    block.urn,
                )


s3_buckets_public_access_blocked = StackValidationPolicy(
    name="s3-buckets-public-access-blocked",
    description="Every S3 bucket the stack creates has a public access block with all four flags True in the same "
    "stack.",
    validate=_validate_buckets_blocked,
    enforcement_level=EnforcementLevel.MANDATORY,
)


def _denies_insecure_transport(statement: Any) -> bool:
    """A statement that refuses every S3 request made without TLS, to everyone, on the bucket's objects."""
    if not isinstance(statement, Mapping) or statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if principal != "*" and not (isinstance(principal, Mapping) and _as_list(principal.get("AWS")) == ["*"]):
        return False
    if not any(
        _allows([action], "s3:GetObject") and _allows([action], "s3:PutObject")
        for action in _as_list(statement.get("Action"))
    ):
        return False
    if not any(resource == "*" or str(resource).endswith("/*") for resource in _as_list(statement.get("Resource"))):
        return False
    condition = statement.get("Condition")
    secure = condition.get("Bool", {}).get("aws:SecureTransport") if isinstance(condition, Mapping) else None
    return str(secure).lower() == "false"


def _tls_only(policy: Any) -> bool | None:
    """Whether a bucket policy (JSON text) denies requests without TLS; None while it is unknown."""
    if not _known(policy):
        return None
    try:
        document = json.loads(str(policy))
    except ValueError:
        return False
    statements = document.get("Statement") if isinstance(document, Mapping) else None
    return any(_denies_insecure_transport(statement) for statement in _as_list(statements))


def _validate_buckets_tls_only(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for bucket in args.resources:
        if bucket.resource_type not in BUCKET_TYPES:
            continue
        policies, decidable = _bucket_attachments(args, bucket, [BUCKET_POLICY_TYPE])
        verdicts = [_tls_only(_get(policy.props, "policy")) for policy in policies]
        inline = _get(bucket.props, "policy")  # the bucket's own (deprecated) policy argument
        if inline is not None:
            verdicts.append(_tls_only(inline))
        if True in verdicts or None in verdicts or not (verdicts or decidable):
            continue  # denied, or not knowable during this preview
        report_violation(
            f"S3 bucket {_shown(bucket)} accepts requests without TLS: no bucket policy in this stack denies them. "
            'Add an aws.s3.BucketPolicy statement {"Effect": "Deny", "Principal": "*", "Action": "s3:*", '
            '"Resource": [<bucket ARN>, "<bucket ARN>/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}.',
            bucket.urn,
        )


s3_buckets_tls_only = StackValidationPolicy(
    name="s3-buckets-tls-only",
    description="Every S3 bucket the stack creates has a bucket policy that denies requests made without TLS "
    "(aws:SecureTransport false).",
    validate=_validate_buckets_tls_only,
    enforcement_level=EnforcementLevel.MANDATORY,
)


# --- secrets ----------------------------------------------------------------------------------------------


def _validate_ssm_secure_string(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != SSM_PARAMETER_TYPE:
        return
    parameter_type = _get(args.props, "type")
    if _is_unknown(parameter_type):
        return
    if parameter_type != "SecureString":
        name = _get(args.props, "name")
        shown = repr(name) if _known(name) else args.name
        report_violation(
            f"SSM parameter {shown} has type {parameter_type!r}. Every parameter this program writes "
            "(certificates, private keys, chains) must be encrypted: set type='SecureString'.",
            None,
        )


ssm_parameters_secure_string = _policy(
    "ssm-parameters-secure-string",
    "Every SSM parameter the program creates is a SecureString.",
    _validate_ssm_secure_string,
)


def _validate_certificate_key_secret(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The Certificate's `private_key_pem` output is registered as secret.

    What this can see: `args.opts.additional_secret_outputs`, the list the program passed as
    `ResourceOptions(additional_secret_outputs=[...])`. The engine encrypts those outputs in state and masks
    them in previews, which is how a dynamic provider's generated key becomes secret (returning
    `Output.secret` from `create` does not work). Python dynamic resources do not rename properties, so the
    expected entry is `private_key_pem`; `privateKeyPem` is accepted too.

    What it cannot see: pulumi_policy hands `validate` the inputs with secrets already unwrapped, and it
    never sees outputs, so it cannot prove the value in state is encrypted, nor that a copy of the key
    (e.g. in an SSM parameter value or a stack output) stays secret. The SecureString rule covers SSM; stack
    outputs stay a code-review matter. It also flags a private key passed *into* the resource as plain input.
    """
    if args.resource_type != CERTIFICATE_TYPE:
        return
    secret_outputs = set(args.opts.additional_secret_outputs or [])
    if not secret_outputs.intersection(CERTIFICATE_SECRET_OUTPUTS):
        report_violation(
            "Certificate's private_key_pem output is not marked secret, so the private key would be stored "
            "in plaintext in the state file and shown in previews. Create the resource with "
            "ResourceOptions(additional_secret_outputs=['private_key_pem']).",
            None,
        )
    for key in CERTIFICATE_SECRET_OUTPUTS:
        value = _get(args.props, key)
        if _known(value) and str(value).strip():
            report_violation(
                f"Certificate receives private key material as input {key!r}. The key is generated by the "
                "provider; pass private_key_pem=None so it is only ever an output.",
                None,
            )


certificate_private_key_secret = _policy(
    "certificate-private-key-secret",
    "pki Certificate resources register private_key_pem in additional_secret_outputs and never take a "
    "private key as input.",
    _validate_certificate_key_secret,
)


# --- KMS ----------------------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _allows(patterns: Any, action: str) -> bool:
    """Whether an IAM action element (a string or a list, wildcards `*` and `?`, any case) names `action`."""
    return any(fnmatch.fnmatchcase(action.lower(), str(pattern).lower()) for pattern in _as_list(patterns))


def _only_for_aws_resources(statement: Mapping[str, Any]) -> bool:
    """The statement's grants must be for AWS services' resources (`kms:GrantIsForAWSResource` true)."""
    condition = statement.get("Condition")
    if not isinstance(condition, Mapping):
        return False
    for operator, keys in condition.items():
        if not str(operator).startswith("Bool") or not isinstance(keys, Mapping):
            continue
        for key, value in keys.items():
            if str(key).lower() == "kms:grantisforawsresource" and all(
                str(v).lower() == "true" for v in _as_list(value)
            ):
                return True
    return False


def _grant_paths(policy: str) -> list[str]:
    """The Sids (or positions) of the policy's statements that let someone create grants on the key."""
    try:
        document = json.loads(policy)
    except (TypeError, ValueError):
        return []
    statements = document.get("Statement", []) if isinstance(document, Mapping) else []
    found = []
    for index, statement in enumerate(_as_list(statements)):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        if "NotAction" in statement:
            grants = not _allows(statement["NotAction"], "kms:CreateGrant")
        else:
            grants = _allows(statement.get("Action", []), "kms:CreateGrant")
        if grants and not _only_for_aws_resources(statement):
            found.append(str(statement.get("Sid") or f"statement {index}"))
    return found


def _validate_kms_grant_path(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in KMS_KEY_POLICY_TYPES:
        return
    policy = _get(args.props, "policy")
    if _is_unknown(policy):
        return
    if policy is None:
        report_violation(
            "KMS key has no policy, so AWS gives it the default key policy: the account gets kms:* (including "
            "kms:CreateGrant), and any IAM policy of the account can then grant the key's use. Set a policy that "
            "names each administrative action and who may use the key.",
            None,
        )
        return
    paths = _grant_paths(str(policy))
    if paths:
        report_violation(
            f"KMS key policy statement(s) {', '.join(paths)} allow kms:CreateGrant (by name or through a wildcard "
            "such as kms:Create* or kms:*): whoever holds it can grant themselves kms:Decrypt without the key "
            "policy's conditions. Name the administrative actions instead, or limit grants with the condition "
            "kms:GrantIsForAWSResource = true.",
            None,
        )


kms_keys_no_grant_path = _policy(
    "kms-keys-no-grant-path",
    "KMS key policies allow kms:CreateGrant (by name or wildcard) to no one, except for AWS services' grants "
    "(kms:GrantIsForAWSResource), so the use statements cannot be bypassed; a key always has its own policy.",
    _validate_kms_grant_path,
)


# --- Lambda (the per-host issuer) ---------------------------------------------------------------------------


def _validate_function_url_auth(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != LAMBDA_FUNCTION_URL_TYPE:
        return
    auth = _get(args.props, "authorizationType")
    if _is_unknown(auth) or str(auth).upper() == "AWS_IAM":
        return
    shown = "not set" if auth is None else repr(auth)
    report_violation(
        f"Lambda function URL authorization_type is {shown}: with NONE anyone on the internet who learns the URL "
        "can call the function (the URL is public, https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html). "
        "Set authorization_type='AWS_IAM' and grant lambda:InvokeFunctionUrl to the callers that need it.",
        None,
    )


lambda_function_urls_iam_auth = _policy(
    "lambda-function-urls-iam-auth",
    "Lambda function URLs authenticate their callers with IAM (authorization_type AWS_IAM): a URL with NONE is "
    "callable by anyone on the internet.",
    _validate_function_url_auth,
)


def _validate_lambda_permission(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A resource-based permission names who may call (an account, a role, a service: never "*"); a permission to
    invoke a function URL names the URL's auth type (AWS_IAM: without it the statement also grants an unauthenticated
    URL); a service principal is limited to the caller's resource or account (`aws:SourceArn` / `aws:SourceAccount`,
    the confused-deputy guard AWS recommends: https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html)."""
    if args.resource_type != LAMBDA_PERMISSION_TYPE:
        return
    props = args.props
    principal, action = _get(props, "principal"), _get(props, "action")
    if _known(principal) and "*" in str(principal):
        report_violation(
            f"Lambda permission grants {action!r} to principal {principal!r}: every AWS account (or everyone, through "
            "a public URL) may then call the function. Name the principal: an account ID, a role ARN or a service.",
            None,
        )
    if _known(action) and _allows(action, "lambda:InvokeFunctionUrl"):
        auth = _get(props, "functionUrlAuthType")
        if not _is_unknown(auth) and str(auth).upper() != "AWS_IAM":
            shown = "not set" if auth is None else repr(auth)
            report_violation(
                f"Lambda permission for lambda:InvokeFunctionUrl has function_url_auth_type {shown}: set "
                "function_url_auth_type='AWS_IAM' so the grant holds only for requests IAM authenticated.",
                None,
            )
    if _known(principal) and str(principal).endswith(".amazonaws.com"):
        source_arn, source_account = _get(props, "sourceArn"), _get(props, "sourceAccount")
        if not _is_unknown(source_arn) and not _is_unknown(source_account) and not (source_arn or source_account):
            report_violation(
                f"Lambda permission lets the service {principal!r} invoke the function on behalf of any account's "
                "resources. Set source_arn (the calling resource) or source_account.",
                None,
            )


lambda_permissions_named_principal = _policy(
    "lambda-permissions-named-principal",
    "Lambda permissions name their principal (never *), give function URL invocations the AWS_IAM auth type, and "
    "limit AWS service principals to a source ARN or account.",
    _validate_lambda_permission,
)


RESOURCE_POLICIES: list[ResourceValidationPolicy] = [
    target_groups_https,
    listeners_no_plaintext,
    listeners_tls13,
    no_public_ingress,
    no_ssh_ingress,
    imdsv2_required,
    encrypted_volumes,
    autoscaling_groups_behind_load_balancers,
    s3_public_access_block_strict,
    no_public_s3_acls,
    ssm_parameters_secure_string,
    certificate_private_key_secret,
    kms_keys_no_grant_path,
    lambda_function_urls_iam_auth,
    lambda_permissions_named_principal,
]
STACK_POLICIES: list[StackValidationPolicy] = [
    crl_bucket_public_access_blocked,
    s3_buckets_public_access_blocked,
    s3_buckets_tls_only,
]
ALL_POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [*RESOURCE_POLICIES, *STACK_POLICIES]
