"""The backend's hosts: nginx on Amazon Linux 2023 in an Auto Scaling group behind the load balancer's target group.

Hosts launch from a launch template. A new payload, new CA pins or a new AMI is a new launch template version, which
the group rolls out through an instance refresh that keeps `min_healthy_percent` of the hosts in service. The AMI
changes only when asked: it is `ami_id`, or the one `ami_parameter` named at the first deployment, kept from then on.
Each host reports the days left on the certificate it serves (CloudWatch metric
`PcaBackend/CertificateDaysToExpiry`, dimension `Backend`); an alarm fires well before any served certificate
expires.

How the certificate and key reach the hosts is not the fleet's: it is the `key_delivery` its caller chooses
(`components/key_delivery.py`), which gives the fleet the hosts' software as a `HostPayload`, the SHA-256
fingerprints of the CA certificates they may trust, the host role's statements for the delivery and what the hosts
must wait for. The fleet stores the payload in its own private bucket under a content-addressed key
(`hosts/<sha256>.sh`); the launch template carries only a small bootstrap that writes the pins, downloads that
object, checks its SHA-256 and runs it. EC2's 16 KB user-data limit therefore bounds only the bootstrap and its pins,
not the software.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

from components.arguments import (
    Problems,
    check_arn,
    check_backend_port,
    check_health_check_path,
    check_id_list,
    check_int,
    check_tags,
    check_vpc_id,
    is_plain_list,
    missing,
    tagged,
)
from components.host_bootstrap import (
    CERTIFICATE_PATH,
    METRIC_DIMENSION,
    METRIC_NAME,
    METRIC_NAMESPACE,
    METRIC_PUT_ACTION,
    PAYLOAD_KEY_PREFIX,
    PAYLOAD_READ_ACTION,
    PRIVATE_KEY_PATH,
    PackedPayload,
    check_region,
    pack_payload,
    pack_user_data,
    render_bootstrap,
)
from components.key_delivery import FleetIdentity, HostContext, HostSupply, KeyDelivery
from components.load_balancer import BackendArgs, shared_defaults
from components.nginx_config import render_server_block
from components.private_bucket import deny_insecure_transport, private_bucket_guards
from components.rules import aws as aws_rules

__all__ = [
    "CERTIFICATE_METRIC_NAME",
    "CERTIFICATE_METRIC_NAMESPACE",
    "DEFAULT_AMI_PARAMETER",
    "HEALTH_CHECK_GRACE_SECONDS",
    "FleetOnlyArgs",
    "HostFleet",
    "HostFleetArgs",
    "HostFleetSettings",
    "payload_bucket_policy",
]

DEFAULT_AMI_PARAMETER = aws_rules.AL2023_AMI_PARAMETER
#: The metric every host's sync script reports (components/host_bootstrap.py renders it): the days left on the
#: certificate nginx serves, with one dimension `Backend` = the backend's name.
CERTIFICATE_METRIC_NAMESPACE = METRIC_NAMESPACE
CERTIFICATE_METRIC_NAME = METRIC_NAME
#: Root volume of the Amazon Linux 2023 AMIs.
ROOT_DEVICE_NAME = "/dev/xvda"
#: Seconds a new host has to install nginx and its certificate before failed ELB health checks count.
HEALTH_CHECK_GRACE_SECONDS = 300

# What the SSM agent needs for Session Manager (AWS Systems Manager user guide, "Create a custom IAM role
# for Session Manager", plus the ec2messages actions the agent uses for its command channel). It is the
# part of AmazonSSMManagedInstanceCore hosts need, without that policy's ssm:GetParameter(s) on "*".
SESSION_MANAGER_ACTIONS = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
)

# Used in the alarm's name, the metric dimension and the names a delivery gives what it creates per backend.
_BACKEND_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class FleetOnlyArgs(TypedDict):
    """The fleet's own arguments; `HostFleetSettings` adds those it shares with the load balancer."""

    host_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets of the hosts (private subnets with a route to SSM and the package repositories); the Auto
    Scaling group spreads the hosts over them."""
    peer_security_group_ids: NotRequired[Sequence[pulumi.Input[str]]]
    """Security groups whose members may call the hosts directly on `backend_port` (host to host). The
    hosts of this fleet may always call each other."""
    host_count: int
    """Number of hosts: the Auto Scaling group's desired capacity (1 to 50)."""
    host_min_count: NotRequired[int]
    """The group's minimum size (at most `host_count`). Default: `host_count`."""
    host_max_count: NotRequired[int]
    """The group's maximum size (at least `host_count`, at most 100). Default: room for the extra hosts an
    instance refresh, or the replacement of an unhealthy host, launches before the hosts they replace go:
    `host_count` times (`min_healthy_percent` + 100, at most 200, at least 110) percent, rounded up; with no
    scaling policy the group still runs `host_count` hosts."""
    min_healthy_percent: NotRequired[int]
    """Share of `host_count` (0 to 100) an instance refresh keeps in service while it replaces hosts; the
    refresh may launch up to `min_healthy_percent + 100` percent (at most 200) meanwhile. Default 100: new
    hosts come up and pass health checks before old ones go."""
    instance_type: str
    """EC2 instance type of the hosts, for example 't3.small'."""
    root_volume_gib: NotRequired[int]
    """Size of the hosts' encrypted gp3 root volume in GiB (8 to 16384; at least the AMI's). Default: the
    AMI's own size."""
    server_names: Sequence[str]
    """nginx `server_name` values of the hosts (the names on the backend certificate)."""
    backend_name: str
    """The backend's name: the metric dimension `Backend` its hosts report under, and part of the alarm's name
    and of what the key delivery names per backend (e.g. the KMS alias); letters, digits, '-' and '_' (at most
    64)."""
    certificate_alarm_days: NotRequired[int]
    """The alarm fires when any host serves a certificate with fewer days left than this (1 to 365).
    Default 14."""
    alarm_topic_arn: NotRequired[pulumi.Input[str]]
    """SNS topic the alarm notifies (on alarm and on recovery). Default: none."""
    region: str
    """AWS region of the stack; the hosts call AWS there."""
    ami_id: NotRequired[str]
    """AMI of the hosts ('ami-' and 8 or 17 hex digits); `ami_parameter` is then not read. Changing it is how
    the hosts move to a new AMI: a new launch template version, rolled out by instance refresh. Default: the
    AMI `ami_parameter` names at the first deployment, kept from then on."""
    ami_parameter: NotRequired[str]
    """SSM parameter naming the AMI when `ami_id` is not given; the AMI it names when the launch template is
    created is kept (later releases published in it change nothing). Default: the latest Amazon Linux 2023
    (x86_64)."""


class HostFleetSettings(BackendArgs, FleetOnlyArgs):
    """What a caller chooses for the hosts (`EncryptedBackendArgs` holds these too)."""


class HostFleetArgs(HostFleetSettings):
    """Inputs of `HostFleet`: the settings, the load balancer it serves, and how key material reaches the hosts."""

    target_group_arn: pulumi.Input[str]
    """The HTTPS target group the hosts register with."""
    load_balancer_security_group_id: pulumi.Input[str]
    """The load balancer's security group: the fleet lets it reach the hosts on `backend_port`, both ways
    (its egress to the fleet's group, the fleet's ingress from it)."""
    key_delivery: KeyDelivery
    """How the certificate and key reach the hosts, e.g. `SsmKeyDelivery`."""


FLEET_SETTINGS_KEYS = frozenset(HostFleetSettings.__annotations__)
_REQUIRED = (
    "vpc_id",
    "host_subnet_ids",
    "host_count",
    "instance_type",
    "server_names",
    "backend_name",
    "region",
)


@dataclass(frozen=True)
class _Sizes:
    """The Auto Scaling group's sizes and rollout preference."""

    desired: int
    minimum: int
    maximum: int
    min_healthy_percent: int

    @property
    def max_healthy_percent(self) -> int:
        return self.max_healthy_for(self.min_healthy_percent)

    @property
    def replacement_max_healthy_percent(self) -> int:
        return self.replacement_max_healthy_for(self.min_healthy_percent)

    @staticmethod
    def max_healthy_for(min_healthy_percent: int) -> int:
        # AWS: 100 to 200, and at most 100 above the minimum (API_InstanceMaintenancePolicy, Amazon EC2
        # Auto Scaling API reference).
        return min(200, min_healthy_percent + 100)

    @staticmethod
    def replacement_max_healthy_for(min_healthy_percent: int) -> int:
        """The instance maintenance policy's upper bound: a host that fails its health check is replaced by one
        launched first (its minimum is 100%), so the group needs room above the desired capacity: the refresh's,
        and at least 110% (AWS rounds up to one instance)."""
        return max(110, _Sizes.max_healthy_for(min_healthy_percent))


@dataclass(frozen=True)
class _Settings:
    """`HostFleetSettings` validated, defaults applied."""

    peer_security_group_ids: tuple[pulumi.Input[str], ...]
    sizes: _Sizes
    instance_type: str
    root_volume_gib: int | None
    backend_port: int
    backend_name: str
    certificate_alarm_days: int
    alarm_topic_arn: pulumi.Input[str] | None
    ami_id: str | None
    ami_parameter: str
    tags: dict[str, str]
    hosts: HostContext


def _check_network(args: Mapping[str, Any]) -> tuple[pulumi.Input[str], ...]:
    check_id_list("host_subnet_ids", args["host_subnet_ids"], minimum=1, prefix="subnet", kind="a subnet ID")
    peers = args["peer_security_group_ids"]
    if isinstance(peers, str) or not is_plain_list(peers):
        raise ValueError(f"peer_security_group_ids must be a list of security group ids, got {peers!r}")
    check_id_list("peer_security_group_ids", peers, minimum=0, prefix="sg", kind="a security group ID")
    if len(peers) + 2 > aws_rules.SECURITY_GROUP_RULES_MAX:
        raise ValueError(
            f"peer_security_group_ids lists {len(peers)} groups; with the load balancer and the fleet that exceeds "
            f"AWS's {aws_rules.SECURITY_GROUP_RULES_MAX} rules per security group"
        )
    return tuple(peers)


def _check_sizes(args: Mapping[str, Any]) -> _Sizes:
    desired = check_int(args, "host_count", *aws_rules.HOST_COUNT_RANGE)
    minimum = check_int(args, "host_min_count", 0, aws_rules.HOST_COUNT_RANGE[1], default=desired)
    if minimum > desired:
        raise ValueError(f"host_min_count must be at most host_count ({desired}), got {minimum}")
    # AWS's range for an instance refresh's MinHealthyPercentage.
    min_healthy = check_int(args, "min_healthy_percent", *aws_rules.MIN_HEALTHY_PERCENT_RANGE)
    # Room for the hosts a refresh or a replacement launches before the hosts they replace go.
    headroom = -(-desired * _Sizes.replacement_max_healthy_for(min_healthy) // 100)
    maximum = check_int(args, "host_max_count", 1, aws_rules.HOST_MAX_COUNT, default=headroom)
    if maximum < desired:
        raise ValueError(f"host_max_count must be at least host_count ({desired}), got {maximum}")
    instance_type = args["instance_type"]
    if not aws_rules.is_instance_type(instance_type):
        raise ValueError(f"instance_type must be an EC2 instance type such as 't3.small', got {instance_type!r}")
    return _Sizes(desired=desired, minimum=minimum, maximum=maximum, min_healthy_percent=min_healthy)


def _check_monitoring(args: Mapping[str, Any]) -> int:
    name = args["backend_name"]
    if not isinstance(name, str) or not _BACKEND_NAME_RE.match(name):
        raise ValueError(f"backend_name must be 1 to 64 letters, digits, '-' or '_', got {name!r}")
    check_arn(
        "alarm_topic_arn",
        args.get("alarm_topic_arn"),
        aws_rules.is_sns_topic_arn,
        "arn:aws:sns:us-east-1:123456789012:ops",
    )
    return check_int(args, "certificate_alarm_days", 1, aws_rules.EXPIRY_ALARM_DAYS_MAX)


def _check_image(args: Mapping[str, Any]) -> tuple[str | None, str]:
    ami_id = args.get("ami_id")
    if ami_id is not None and (not isinstance(ami_id, str) or not aws_rules.is_resource_id(ami_id, "ami")):
        raise ValueError(
            "ami_id must be an AMI id: 'ami-' followed by 8 or 17 lowercase hexadecimal digits, such as "
            f"'ami-0123456789abcdef0', got {ami_id!r}"
        )
    ami_parameter = args["ami_parameter"]
    if not aws_rules.is_parameter_path(ami_parameter):
        raise ValueError(f"ami_parameter must be an SSM parameter name starting with '/', got {ami_parameter!r}")
    return ami_id, ami_parameter


def validate(raw: Mapping[str, Any]) -> _Settings:
    """`HostFleetSettings` checked, defaults applied; raises ArgumentsError listing every problem, before any
    resource exists."""
    problems = Problems()
    problems.collect(lambda: missing(raw, _REQUIRED, "HostFleetArgs"))
    problems.raise_if_any()
    defaults = {
        "peer_security_group_ids": (),
        "min_healthy_percent": 100,
        "certificate_alarm_days": 14,
        "ami_parameter": DEFAULT_AMI_PARAMETER,
    }
    args = {**defaults, **shared_defaults(raw)}
    problems.collect(lambda: check_vpc_id(args))
    peers = problems.collect(lambda: _check_network(args))
    sizes = problems.collect(lambda: _check_sizes(args))
    root_volume_gib = problems.collect(
        lambda: (
            check_int(args, "root_volume_gib", *aws_rules.ROOT_VOLUME_GIB_RANGE) if "root_volume_gib" in args else None
        )
    )
    backend_port = problems.collect(lambda: check_backend_port(args))
    health_check_path = problems.collect(lambda: check_health_check_path(args))
    alarm_days = problems.collect(lambda: _check_monitoring(args))
    region = problems.collect(lambda: check_region(args["region"]))
    image = problems.collect(lambda: _check_image(args))
    tags = problems.collect(lambda: check_tags(args))
    server_block = problems.collect(
        lambda: (
            render_server_block(
                server_names=args["server_names"],
                certificate_path=CERTIFICATE_PATH,
                private_key_path=PRIVATE_KEY_PATH,
                port=backend_port,
                health_check_path=health_check_path,
            )
            if backend_port is not None and health_check_path is not None
            else None
        )
    )
    problems.raise_if_any()
    ami_id, ami_parameter = image
    return _Settings(
        peer_security_group_ids=peers,
        sizes=sizes,
        instance_type=args["instance_type"],
        root_volume_gib=root_volume_gib,
        backend_port=backend_port,
        backend_name=args["backend_name"],
        certificate_alarm_days=alarm_days,
        alarm_topic_arn=args.get("alarm_topic_arn"),
        ami_id=ami_id,
        ami_parameter=ami_parameter,
        tags=tags,
        hosts=HostContext(
            region=region,
            backend_name=args["backend_name"],
            server_block=server_block,
            certificate_alarm_days=alarm_days,
        ),
    )


class HostFleet(pulumi.ComponentResource):
    """nginx hosts in an Auto Scaling group, registered with the load balancer's target group.

    Creates:
    - the hosts' security group (`<name>-backend-sg`, tagged `pca-backend:role=backend`) with standalone rules:
      `backend_port` from the load balancer's group, from itself and from each peer group; egress 443 for AWS
      endpoints and package repositories; no SSH (use Session Manager). It also adds the load balancer group's
      egress to this group on `backend_port`;
    - an IAM role and instance profile for the hosts, with one inline policy: the key delivery's statements,
      s3:GetObject on the payloads (`hosts/*` of the payload bucket) only, cloudwatch:PutMetricData in the
      `PcaBackend` namespace only, and Session Manager (no managed policy);
    - what the key delivery creates (as a child of the fleet);
    - the host payload bucket (`<name>-host-payloads`: private, public access blocked, ACLs disabled
      (BucketOwnerEnforced), SSE-S3 by default, a policy that refuses requests without TLS; emptied on destroy: it
      holds only generated payloads) and the payload object `hosts/<sha256>.sh` (`<name>-host-payload`), kept in the
      bucket when a newer payload replaces it (retain_on_delete), so a host launched from an older launch template
      version still boots;
    - a launch template (IMDSv2 only, encrypted gp3 root volume, the bootstrap as user data: pins, payload address
      and SHA-256) and an Auto Scaling group of `host_count` hosts registered with the target group, rolled by
      instance refresh, which waits for the payload object;
    - a CloudWatch alarm on the lowest `CertificateDaysToExpiry` any host reports.
    """

    security_group_id: pulumi.Output[str]
    """Security group of the hosts; add it to another fleet's peer list to let it call these hosts."""
    auto_scaling_group_name: pulumi.Output[str]
    """Name of the hosts' Auto Scaling group."""
    host_role_arn: pulumi.Output[str]
    """ARN of the IAM role of the hosts."""
    certificate_alarm_arn: pulumi.Output[str]
    """ARN of the certificate-expiry alarm."""
    payload_bucket_name: pulumi.Output[str]
    """Name of the bucket holding the hosts' payloads (`hosts/<sha256>.sh`)."""

    def __init__(self, name: str, args: HostFleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Everything is validated before the component registers: bad input creates nothing.
        settings = validate(args)
        delivery = args["key_delivery"]
        delivery.check(settings.hosts)
        super().__init__("pca-backend:index:HostFleet", name, None, opts)
        self._name, self._settings = name, settings
        #: How the fleet's role, launch template and alarm describe the way these hosts get their key material.
        self._texts = delivery.texts

        group = self._security_group(args)
        role = self._host_role()
        # A delivery that must know the group before it exists (its issuer checks callers belong to the group,
        # and the hosts' payload carries the issuer's address) gets a name derived from the backend's.
        group_name = f"pca-backend-{settings.backend_name}" if delivery.needs_auto_scaling_group_name else None
        #: How the key material reaches these hosts (what the delivery created).
        self.key_delivery = delivery.deliver(
            name,
            FleetIdentity(
                hosts=settings.hosts, host_role_arn=role.arn, auto_scaling_group_name=group_name, tags=settings.tags
            ),
            pulumi.ResourceOptions(parent=self),
        )
        bucket, bucket_guards = self._payload_bucket()
        packed = pulumi.Output.from_input(self.key_delivery.payload).apply(pack_payload)
        payload = self._payload_object(bucket, bucket_guards, packed)
        role_policy, profile = self._host_permissions(role, bucket)
        user_data = _user_data(settings.hosts.region, payload, packed, self.key_delivery)
        auto_scaling_group = self._hosts(
            args, group=group, profile=profile, name=group_name, user_data=user_data, wait_for=[role_policy, payload]
        )
        alarm = self._certificate_alarm()

        self.security_group_id = group.id
        self.auto_scaling_group_name = auto_scaling_group.name
        self.host_role_arn = role.arn
        self.certificate_alarm_arn = alarm.arn
        self.payload_bucket_name = bucket.bucket
        self.register_outputs(
            {
                "security_group_id": self.security_group_id,
                "auto_scaling_group_name": self.auto_scaling_group_name,
                "host_role_arn": self.host_role_arn,
                "certificate_alarm_arn": self.certificate_alarm_arn,
                "payload_bucket_name": self.payload_bucket_name,
            }
        )

    def _tags(self, resource_name: str, **extra: str) -> dict[str, str]:
        return tagged(self._settings.tags, resource_name, **extra)

    def _child(self, **options: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **options)

    def _security_group(self, args: HostFleetArgs) -> aws.ec2.SecurityGroup:
        """The hosts' group; its rules (and the load balancer's egress to it) are standalone resources."""
        name, settings = self._name, self._settings
        group = aws.ec2.SecurityGroup(
            f"{name}-backend-sg",
            vpc_id=args["vpc_id"],
            description="pca-backend hosts: TLS from the load balancer, the fleet and its peers",
            tags=self._tags(f"{name}-backend-sg", **{"pca-backend:role": "backend"}),
            opts=self._child(),
        )
        load_balancer_group = args["load_balancer_security_group_id"]
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-alb-out-backend",
            security_group_id=load_balancer_group,
            ip_protocol="tcp",
            from_port=settings.backend_port,
            to_port=settings.backend_port,
            referenced_security_group_id=group.id,
            description="Traffic and health checks to the hosts",
            opts=self._child(),
        )
        sources: list[tuple[str, pulumi.Input[str], str]] = [
            ("alb", load_balancer_group, "From the load balancer"),
            ("self", group.id, "Host to host within the fleet"),
        ]
        sources += [
            (f"peer-{index}", peer, "Host to host from a peer fleet")
            for index, peer in enumerate(settings.peer_security_group_ids)
        ]
        for suffix, source, description in sources:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-backend-in-{suffix}",
                security_group_id=group.id,
                ip_protocol="tcp",
                from_port=settings.backend_port,
                to_port=settings.backend_port,
                referenced_security_group_id=source,
                description=description,
                opts=self._child(),
            )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-backend-out-https",
            security_group_id=group.id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
            description="HTTPS to SSM endpoints, CloudWatch, package repositories and other fleets",
            opts=self._child(),
        )
        if settings.backend_port != 443:
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-backend-out-fleet",
                security_group_id=group.id,
                ip_protocol="tcp",
                from_port=settings.backend_port,
                to_port=settings.backend_port,
                referenced_security_group_id=group.id,
                description="Host to host within the fleet",
                opts=self._child(),
            )
        return group

    def _host_role(self) -> aws.iam.Role:
        name = self._name
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        return aws.iam.Role(
            f"{name}-host-role",
            assume_role_policy=json.dumps(trust),
            description=self._texts.host_role,
            tags=self._tags(f"{name}-host-role"),
            opts=self._child(),
        )

    def _host_permissions(
        self, role: aws.iam.Role, bucket: aws.s3.Bucket
    ) -> tuple[aws.iam.RolePolicy, aws.iam.InstanceProfile]:
        """The delivery's statements, the payloads, the certificate metric, Session Manager. No managed policy:
        AmazonSSMManagedInstanceCore would allow ssm:GetParameter(s) on every parameter."""
        name = self._name
        policy = pulumi.Output.all(self.key_delivery.host_policy_statements, bucket.arn).apply(
            lambda values: json.dumps(
                {"Version": "2012-10-17", "Statement": [*values[0], *_fleet_statements(payloads_bucket_arn=values[1])]}
            )
        )
        role_policy = aws.iam.RolePolicy(f"{name}-host-policy", role=role.id, policy=policy, opts=self._child())
        profile = aws.iam.InstanceProfile(
            f"{name}-host-profile", role=role.name, tags=self._tags(f"{name}-host-profile"), opts=self._child()
        )
        return role_policy, profile

    def _payload_bucket(self) -> tuple[aws.s3.Bucket, list[pulumi.Resource]]:
        """A private bucket for the hosts' payloads; returns it and what must be in place before anything is put in
        it. Named by Pulumi (the resource name and a random suffix, kept in state)."""
        name = f"{self._name}-host-payloads"
        bucket = aws.s3.Bucket(
            name,
            # Only generated, content-addressed payloads live here (retained objects included): `pulumi destroy`
            # empties it rather than failing on them.
            force_destroy=True,
            tags=self._tags(name),
            opts=self._child(),
        )
        guards = private_bucket_guards(
            name, bucket, bucket.arn.apply(lambda arn: json.dumps(payload_bucket_policy(arn)))
        )
        # SSE-S3, set explicitly: the hosts need no KMS permission to read the payloads
        # (https://docs.aws.amazon.com/AmazonS3/latest/userguide/default-bucket-encryption.html).
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=pulumi.ResourceOptions(parent=bucket),
        )
        return bucket, [*guards, encryption]

    def _payload_object(
        self, bucket: aws.s3.Bucket, guards: Sequence[pulumi.Resource], packed: pulumi.Output[PackedPayload]
    ) -> aws.s3.BucketObjectv2:
        """The payload under its content address. A new payload has a new key, so the object is replaced; the
        replaced one stays in the bucket (retain_on_delete) for hosts launched from an older launch template
        version, e.g. by an instance refresh that rolls back."""
        return aws.s3.BucketObjectv2(
            f"{self._name}-host-payload",
            bucket=bucket.bucket,
            key=packed.apply(lambda payload: payload.key),
            content=packed.apply(lambda payload: payload.script),
            content_type="text/x-shellscript",
            tags=self._tags(f"{self._name}-host-payload"),
            opts=self._child(retain_on_delete=True, depends_on=list(guards)),
        )

    def _launch_template(
        self, *, group: aws.ec2.SecurityGroup, profile: aws.iam.InstanceProfile, user_data: pulumi.Output[str]
    ) -> aws.ec2.LaunchTemplate:
        """Every host's definition. A changed bootstrap (payload, pins) or AMI is a new version (the template itself
        stays)."""
        name, settings = self._name, self._settings
        image_id: pulumi.Input[str]
        if settings.ami_id is not None:
            # Asked for: a changed ami_id is a new version, rolled out by the group's instance refresh.
            image_id, ignore_changes = settings.ami_id, None
        else:
            # The public parameter moves with every Amazon Linux release (about every two weeks). Its value is
            # used when the template is created; afterwards Pulumi keeps the image_id from state, so a later
            # `pulumi up` does not roll the hosts, and a new payload is a new version on the same AMI.
            # https://www.pulumi.com/docs/iac/concepts/options/ignorechanges/
            # insecure_value: an AMI id is not a secret.
            ami = aws.ssm.get_parameter_output(name=settings.ami_parameter, opts=pulumi.InvokeOptions(parent=self))
            image_id, ignore_changes = ami.insecure_value, ["image_id"]
        return aws.ec2.LaunchTemplate(
            f"{name}-hosts",
            description=self._texts.launch_template,
            image_id=image_id,
            instance_type=settings.instance_type,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            vpc_security_group_ids=[group.id],
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=ROOT_DEVICE_NAME,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        encrypted="true",
                        volume_type="gp3",
                        volume_size=settings.root_volume_gib,
                        delete_on_termination="true",
                    ),
                )
            ],
            # ip-name: hosts are ip-10-0-1-23.<region>.compute.internal (ec2.internal in us-east-1), the names
            # the backend certificate's EC2 wildcard covers, so host-to-host TLS verifies.
            private_dns_name_options=aws.ec2.LaunchTemplatePrivateDnsNameOptionsArgs(hostname_type="ip-name"),
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            user_data=user_data,
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type="volume", tags=self._tags(f"{name}-host"))
            ],
            update_default_version=True,
            tags=self._tags(f"{name}-hosts"),
            opts=self._child(ignore_changes=ignore_changes),
        )

    def _hosts(
        self,
        args: HostFleetArgs,
        *,
        group: aws.ec2.SecurityGroup,
        profile: aws.iam.InstanceProfile,
        name: str | None,
        user_data: pulumi.Output[str],
        wait_for: Sequence[pulumi.Resource],
    ) -> aws.autoscaling.Group:
        sizes = self._settings.sizes
        template = self._launch_template(group=group, profile=profile, user_data=user_data)
        return aws.autoscaling.Group(
            f"{self._name}-hosts",
            # None: Pulumi names the group (the resource name and a random suffix).
            name=name,
            vpc_zone_identifiers=args["host_subnet_ids"],
            desired_capacity=sizes.desired,
            min_size=sizes.minimum,
            max_size=sizes.maximum,
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=template.id,
                # A pinned version number (not $Latest): a new one is a change the group rolls out.
                version=template.latest_version.apply(lambda version: str(int(version))),
            ),
            target_group_arns=[args["target_group_arn"]],
            # A host that fails the load balancer's HTTPS health check is replaced, not only one whose EC2
            # status check fails.
            health_check_type="ELB",
            health_check_grace_period=HEALTH_CHECK_GRACE_SECONDS,
            # On creation `pulumi up` waits (wait_for_capacity_timeout, 10 minutes) until this many hosts pass the
            # target group's health check: a boot that cannot serve fails the update loudly, and hosts this group
            # replaces (an earlier deployment's) are deleted only after the new ones serve. Later rollouts are the
            # instance refresh's, which keeps `min_healthy_percent` serving.
            min_elb_capacity=sizes.minimum,
            # One launch that fails while creation waits for capacity (an EC2 capacity error in one zone, a host
            # that boots too slowly) does not fail the deployment: the group launches another and `pulumi up` goes
            # on waiting until min_elb_capacity hosts serve or the timeout passes.
            ignore_failed_scaling_activities=True,
            # A new launch template version (payload, pins, AMI) always starts a refresh; "tag" also rolls the
            # hosts when the tags they are launched with change. A refresh that fails (its hosts never pass the
            # health check) is rolled back by AWS, which replaces the hosts it launched with the group's earlier
            # configuration (auto_rollback; allowed because the version is pinned and the image is an AMI ID):
            # https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-rollback.html
            # Known limit: the AWS provider sets the group's new version before it starts the refresh, so the
            # "earlier configuration" may already be the new one (terraform-provider-aws#34189): the hosts that
            # still serve are kept either way (min_healthy_percent), and the README says how to roll back for sure.
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=sizes.min_healthy_percent,
                    max_healthy_percentage=sizes.max_healthy_percent,
                    auto_rollback=True,
                ),
                triggers=["tag"],
            ),
            # A host that fails its health check is replaced launch-before-terminate: the replacement serves before
            # the unhealthy host goes (by default AWS terminates first, leaving a one-host fleet with none).
            # https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-instance-maintenance-policy.html
            instance_maintenance_policy=aws.autoscaling.GroupInstanceMaintenancePolicyArgs(
                min_healthy_percentage=100, max_healthy_percentage=sizes.replacement_max_healthy_percent
            ),
            tags=[
                aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
                for key, value in self._tags(f"{self._name}-host").items()
            ],
            # The hosts download their payload and read what the delivery provides at boot, with the role's
            # permissions: all must exist before the first host starts (and a new payload before the group rolls).
            opts=self._child(depends_on=[*self.key_delivery.wait_for, *wait_for]),
        )

    def _certificate_alarm(self) -> aws.cloudwatch.MetricAlarm:
        """Fires when the lowest days-to-expiry any host reports drops below the threshold, or nobody reports."""
        name, settings = self._name, self._settings
        actions = [settings.alarm_topic_arn] if settings.alarm_topic_arn is not None else []
        return aws.cloudwatch.MetricAlarm(
            f"{name}-certificate-expiry",
            alarm_description=(
                f"pca-backend {settings.backend_name}: a host serves a certificate that expires in less than "
                f"{settings.certificate_alarm_days} days, or no host has reported for an hour. "
                f"{self._texts.expiry_alarm_advice}"
            ),
            namespace=CERTIFICATE_METRIC_NAMESPACE,
            metric_name=CERTIFICATE_METRIC_NAME,
            dimensions={METRIC_DIMENSION: settings.backend_name},
            statistic="Minimum",
            # Hosts report every 15 minutes: an hour holds about four reports from each.
            period=3600,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            threshold=settings.certificate_alarm_days,
            comparison_operator="LessThanThreshold",
            # No report at all means no host runs its sync: nothing then proves the served certificate is valid.
            treat_missing_data="breaching",
            alarm_actions=actions,
            ok_actions=actions,
            tags=self._tags(f"{name}-certificate-expiry"),
            opts=self._child(),
        )


def _user_data(
    region: str, payload: aws.s3.BucketObjectv2, packed: pulumi.Output[PackedPayload], supply: HostSupply
) -> pulumi.Output[str]:
    """The launch template's user data: the bootstrap for the payload object (its bucket and key, read from the
    object so the template follows it) and the delivery's pins."""
    return pulumi.Output.all(payload.bucket, payload.key, packed, supply.ca_fingerprints).apply(
        lambda values: pack_user_data(
            render_bootstrap(
                region=region, bucket=values[0], key=values[1], sha256=values[2].sha256, ca_fingerprints=values[3]
            )
        )
    )


def payload_bucket_policy(bucket_arn: str) -> dict[str, Any]:
    """Refuse every request to the bucket that does not come over TLS. The hosts' role reads the payloads through its
    own policy; nothing here grants access."""
    return {"Version": "2012-10-17", "Statement": [deny_insecure_transport(bucket_arn)]}


def _fleet_statements(*, payloads_bucket_arn: str) -> list[dict[str, Any]]:
    """What every host needs whatever the delivery: read its payload, report the certificate metric, Session
    Manager."""
    return [
        {
            # The bootstrap's one S3 call, on the payloads only: every version a launch template may still name.
            "Sid": "ReadHostPayloads",
            "Effect": "Allow",
            "Action": PAYLOAD_READ_ACTION,
            "Resource": f"{payloads_bucket_arn}/{PAYLOAD_KEY_PREFIX}*",
        },
        {
            # PutMetricData has no resource-level permissions; the namespace condition key narrows it.
            # https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/iam-cw-condition-keys-namespace.html
            "Sid": "ReportCertificateDays",
            "Effect": "Allow",
            "Action": METRIC_PUT_ACTION,
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": CERTIFICATE_METRIC_NAMESPACE}},
        },
        {"Sid": "SessionManager", "Effect": "Allow", "Action": list(SESSION_MANAGER_ACTIONS), "Resource": "*"},
    ]
