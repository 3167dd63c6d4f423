"""Unit tests for the guardrail policies: each policy passes a good resource and flags a bad one.

Policies are called the way the engine calls them: with real `ResourceValidationArgs` /
`StackValidationArgs` whose props go through pulumi_policy's unknown-checking proxy.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi_policy import (
    PolicyResource,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_NUMBER_VALUE, UNKNOWN_STRING_VALUE

from components.x509 import generate_private_key, private_key_pem
from policy import guardrails
from tests.policy_harness import RecordedResource, check_resources, resource_args, stack_args

TG = "aws:lb/targetGroup:TargetGroup"
LISTENER = "aws:lb/listener:Listener"
SG = "aws:ec2/securityGroup:SecurityGroup"
VPC_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EC2_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
LAUNCH_CONFIGURATION = "aws:ec2/launchConfiguration:LaunchConfiguration"
ASG = "aws:autoscaling/group:Group"
VOLUME = "aws:ebs/volume:Volume"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET = "aws:s3/bucketV2:BucketV2"
BUCKET_ACL = "aws:s3/bucketAclV2:BucketAclV2"
CA = "aws:acmpca/certificateAuthority:CertificateAuthority"
SSM = "aws:ssm/parameter:Parameter"
CERT = "pulumi-python:dynamic/pki:Certificate"

ALB_TAGS = {guardrails.ALB_ROLE_TAG_KEY: guardrails.ALB_ROLE_TAG_VALUE}
HTTPS_REDIRECT = {
    "type": "redirect",
    "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"},
}
ALL_FLAGS = {flag: True for flag in guardrails.PUBLIC_ACCESS_BLOCK_FLAGS}


class Collector:
    """A `report_violation` callback that keeps what it is told."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str | None]] = []

    def __call__(self, message: str, urn: str | None = None) -> None:
        self.found.append((message, urn))

    @property
    def messages(self) -> list[str]:
        return [message for message, _ in self.found]


def run(
    policy: ResourceValidationPolicy,
    type_: str,
    props: dict[str, Any],
    secret_outputs: list[str] | None = None,
) -> list[str]:
    """Violations `policy` reports for one resource."""
    resource = RecordedResource(type_, "subject", props, secret_outputs or [])
    collector = Collector()
    policy.validate(resource_args(resource), collector)
    return collector.messages


def assert_one(messages: list[str], needle: str) -> None:
    """Exactly one violation, and it mentions `needle` (what is wrong or how to fix it)."""
    assert len(messages) == 1, messages
    assert needle in messages[0], messages


def run_stack(policy: StackValidationPolicy, resources: list[RecordedResource]) -> list[tuple[str, str | None]]:
    collector = Collector()
    policy.validate(stack_args(resources), collector)
    return collector.found


def test_pack_lists_every_policy_once_with_descriptions():
    names = [p.name for p in guardrails.ALL_POLICIES]
    assert len(names) == len(set(names)), names
    for policy in guardrails.ALL_POLICIES:
        assert policy.description, policy.name
        assert policy.enforcement_level == guardrails.EnforcementLevel.MANDATORY, policy.name


# --- target groups ----------------------------------------------------------------------------------------


def test_target_group_https_passes():
    props = {"protocol": "HTTPS", "port": 443, "healthCheck": {"protocol": "HTTPS", "path": "/healthz"}}
    assert run(guardrails.target_groups_https, TG, props) == []
    assert run(guardrails.target_groups_https, "aws:alb/targetGroup:TargetGroup", props) == []


def test_target_group_lambda_has_no_protocol_and_passes():
    assert run(guardrails.target_groups_https, TG, {"targetType": "lambda"}) == []


def test_target_group_http_fails_with_fix():
    messages = run(guardrails.target_groups_https, TG, {"protocol": "HTTP", "healthCheck": {"protocol": "HTTP"}})
    assert len(messages) == 2, messages
    assert all("HTTPS" in m for m in messages), messages


def test_target_group_missing_health_check_protocol_fails():
    messages = run(guardrails.target_groups_https, TG, {"protocol": "HTTPS"})
    assert_one(messages, "health check")


def test_target_group_unknown_protocol_is_not_flagged():
    props = {"protocol": UNKNOWN_STRING_VALUE, "healthCheck": {"protocol": UNKNOWN_STRING_VALUE}}
    assert run(guardrails.target_groups_https, TG, props) == []


# --- listeners --------------------------------------------------------------------------------------------


def test_https_listener_with_tls13_policy_passes():
    props = {"protocol": "HTTPS", "port": 443, "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06"}
    assert run(guardrails.listeners_no_plaintext, LISTENER, props) == []
    assert run(guardrails.listeners_tls13, LISTENER, props) == []


def test_http_listener_redirecting_to_https_passes():
    props = {"protocol": "HTTP", "port": 80, "defaultActions": [HTTPS_REDIRECT]}
    assert run(guardrails.listeners_no_plaintext, LISTENER, props) == []
    assert run(guardrails.listeners_tls13, LISTENER, props) == []


def test_http_listener_forwarding_fails():
    props = {
        "protocol": "HTTP",
        "defaultActions": [HTTPS_REDIRECT, {"type": "forward", "targetGroupArn": "x"}],
    }
    messages = run(guardrails.listeners_no_plaintext, LISTENER, props)
    assert_one(messages, "'forward'")


def test_http_listener_redirect_without_https_fails():
    props = {"defaultActions": [{"type": "redirect", "redirect": {"port": "443"}}]}
    messages = run(guardrails.listeners_no_plaintext, LISTENER, props)
    assert_one(messages, "protocol")


def test_tcp_listener_fails():
    assert run(guardrails.listeners_no_plaintext, "aws:alb/listener:Listener", {"protocol": "TCP"})


def test_https_listener_with_old_policy_fails():
    props = {"protocol": "HTTPS", "sslPolicy": "ELBSecurityPolicy-2016-08"}
    messages = run(guardrails.listeners_tls13, LISTENER, props)
    assert_one(messages, "TLS13")
    assert run(guardrails.listeners_tls13, LISTENER, {"protocol": "HTTPS"}), "missing ssl_policy"


# --- security groups --------------------------------------------------------------------------------------


def ingress(from_port: int, to_port: int, cidr: str = "0.0.0.0/0", protocol: str = "tcp") -> dict[str, Any]:
    return {"protocol": protocol, "fromPort": from_port, "toPort": to_port, "cidrBlocks": [cidr]}


def test_alb_group_open_on_443_passes():
    ipv6_443 = {"protocol": "tcp", "fromPort": 443, "toPort": 443, "ipv6CidrBlocks": ["::/0"]}
    props = {"tags": ALB_TAGS, "ingress": [ingress(443, 443), ipv6_443]}
    assert run(guardrails.no_public_ingress, SG, props) == []


def test_host_group_open_to_internet_on_443_fails():
    messages = run(guardrails.no_public_ingress, SG, {"ingress": [ingress(443, 443)]})
    assert_one(messages, guardrails.ALB_ROLE_TAG_KEY)


def test_alb_group_open_to_internet_on_80_fails_but_private_cidr_passes():
    assert run(guardrails.no_public_ingress, SG, {"tags": ALB_TAGS, "ingress": [ingress(80, 80)]})
    assert run(guardrails.no_public_ingress, SG, {"ingress": [ingress(0, 65535, "10.0.0.0/16")]}) == []


def test_vpc_ingress_rule_ipv6_everything_fails_and_tagged_443_passes():
    bad = {"ipProtocol": "-1", "cidrIpv6": "::/0", "securityGroupId": "sg-1"}
    assert run(guardrails.no_public_ingress, VPC_INGRESS, bad)
    good = {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0", "tags": ALB_TAGS}
    assert run(guardrails.no_public_ingress, VPC_INGRESS, good) == []


def test_ec2_security_group_rule_can_never_be_public():
    props = {
        "type": "ingress",
        "protocol": "tcp",
        "fromPort": 443,
        "toPort": 443,
        "cidrBlocks": ["0.0.0.0/0"],
    }
    assert run(guardrails.no_public_ingress, EC2_RULE, props)
    assert run(guardrails.no_public_ingress, EC2_RULE, props | {"type": "egress"}) == []


def test_public_ingress_with_unknown_ports_is_not_flagged():
    props = {"ingress": [ingress(0, 0) | {"fromPort": UNKNOWN_NUMBER_VALUE}]}
    assert run(guardrails.no_public_ingress, SG, props) == []


@pytest.mark.parametrize(
    ("type_", "props"),
    [
        (SG, {"ingress": [ingress(22, 22, "10.0.0.0/8")]}),
        (SG, {"ingress": [ingress(0, 0, "10.0.0.0/8", protocol="-1")]}),
        (
            VPC_INGRESS,
            {"ipProtocol": "tcp", "fromPort": 20, "toPort": 30, "referencedSecurityGroupId": "sg-1"},
        ),
        (VPC_INGRESS, {"ipProtocol": "-1", "cidrIpv4": "10.0.0.0/8"}),
        (
            EC2_RULE,
            {"type": "ingress", "protocol": "6", "fromPort": 0, "toPort": 1024, "cidrBlocks": ["10.0.0.0/8"]},
        ),
    ],
)
def test_ssh_reachable_fails(type_, props):
    messages = run(guardrails.no_ssh_ingress, type_, props)
    assert_one(messages, "SSH")


@pytest.mark.parametrize(
    ("type_", "props"),
    [
        (SG, {"ingress": [ingress(443, 443, "10.0.0.0/8"), ingress(23, 1024)]}),
        (SG, {"ingress": [ingress(22, 22, protocol="udp")]}),
        (
            VPC_INGRESS,
            {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "referencedSecurityGroupId": "sg"},
        ),
        (
            EC2_RULE,
            {"type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]},
        ),
    ],
)
def test_no_ssh_passes(type_, props):
    assert run(guardrails.no_ssh_ingress, type_, props) == []


# --- instances and volumes --------------------------------------------------------------------------------


GOOD_INSTANCE = {
    "metadataOptions": {"httpTokens": "required", "httpEndpoint": "enabled"},
    "rootBlockDevice": {"encrypted": True, "volumeSize": 8},
    "ebsBlockDevices": [{"deviceName": "/dev/sdf", "encrypted": True}],
}


def test_instance_with_imdsv2_and_encrypted_disks_passes():
    assert run(guardrails.imdsv2_required, INSTANCE, GOOD_INSTANCE) == []
    assert run(guardrails.encrypted_volumes, INSTANCE, GOOD_INSTANCE) == []


def test_instance_without_imdsv2_fails():
    assert run(guardrails.imdsv2_required, INSTANCE, {"metadataOptions": {"httpTokens": "optional"}})
    messages = run(guardrails.imdsv2_required, INSTANCE, {})
    assert_one(messages, "http_tokens")


def test_launch_template_imdsv2():
    assert run(guardrails.imdsv2_required, LAUNCH_TEMPLATE, {"metadataOptions": {"httpTokens": "required"}}) == []
    assert run(guardrails.imdsv2_required, LAUNCH_TEMPLATE, {"metadataOptions": {}})


def test_instance_with_unencrypted_disks_fails():
    props = GOOD_INSTANCE | {
        "rootBlockDevice": {"volumeSize": 8},
        "ebsBlockDevices": [{"deviceName": "/dev/sdf", "encrypted": False}],
    }
    messages = run(guardrails.encrypted_volumes, INSTANCE, props)
    assert len(messages) == 2, messages
    assert "root" in messages[0], messages
    assert "/dev/sdf" in messages[1], messages


def test_unknown_encryption_is_not_flagged():
    props = GOOD_INSTANCE | {"rootBlockDevice": {"encrypted": UNKNOWN_BOOLEAN_VALUE}}
    assert run(guardrails.encrypted_volumes, INSTANCE, props) == []


def test_volumes_and_launch_template_mappings():
    assert run(guardrails.encrypted_volumes, VOLUME, {"encrypted": True, "size": 10}) == []
    assert run(guardrails.encrypted_volumes, VOLUME, {"size": 10})
    good = {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}}]}
    assert run(guardrails.encrypted_volumes, LAUNCH_TEMPLATE, good) == []
    bad = {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": 8}}]}
    assert run(guardrails.encrypted_volumes, LAUNCH_TEMPLATE, bad)


def test_launch_template_without_an_ebs_mapping_fails():
    """Hosts from a template without a root mapping get whatever encryption the AMI and account default give."""
    messages = run(guardrails.encrypted_volumes, LAUNCH_TEMPLATE, {"metadataOptions": {"httpTokens": "required"}})
    assert_one(messages, "no EBS block device mapping")
    instance_store_only = {"blockDeviceMappings": [{"deviceName": "/dev/sdb", "virtualName": "ephemeral0"}]}
    assert_one(run(guardrails.encrypted_volumes, LAUNCH_TEMPLATE, instance_store_only), "/dev/xvda")
    unknown = {"blockDeviceMappings": UNKNOWN_STRING_VALUE}
    assert run(guardrails.encrypted_volumes, LAUNCH_TEMPLATE, unknown) == []


GOOD_LAUNCH_CONFIGURATION = {
    "metadataOptions": {"httpTokens": "required"},
    "rootBlockDevice": {"encrypted": True},
}


def test_launch_configuration_hosts_are_checked_like_instances():
    assert run(guardrails.imdsv2_required, LAUNCH_CONFIGURATION, GOOD_LAUNCH_CONFIGURATION) == []
    assert run(guardrails.encrypted_volumes, LAUNCH_CONFIGURATION, GOOD_LAUNCH_CONFIGURATION) == []
    assert_one(run(guardrails.imdsv2_required, LAUNCH_CONFIGURATION, {}), "http_tokens")
    bad_root = GOOD_LAUNCH_CONFIGURATION | {"rootBlockDevice": {"volumeSize": 8}}
    assert_one(run(guardrails.encrypted_volumes, LAUNCH_CONFIGURATION, bad_root), "Launch configuration root volume")


GOOD_GROUP = {
    "launchTemplate": {"id": "lt-1", "version": "3"},
    "targetGroupArns": ["arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/backend/1"],
    "healthCheckType": "ELB",
    "healthCheckGracePeriod": 300,
}


def test_autoscaling_group_behind_a_load_balancer_passes():
    assert run(guardrails.autoscaling_groups_behind_load_balancers, ASG, GOOD_GROUP) == []
    # Not behind a load balancer: EC2 status checks are all there is.
    batch = {"launchTemplate": {"id": "lt-1"}, "healthCheckType": "EC2"}
    assert run(guardrails.autoscaling_groups_behind_load_balancers, ASG, batch) == []
    unknown = GOOD_GROUP | {"healthCheckType": UNKNOWN_STRING_VALUE}
    assert run(guardrails.autoscaling_groups_behind_load_balancers, ASG, unknown) == []


@pytest.mark.parametrize(
    ("props", "needle"),
    [
        ({k: v for k, v in GOOD_GROUP.items() if k != "healthCheckType"}, "not set"),
        (GOOD_GROUP | {"healthCheckType": "EC2"}, "'EC2'"),
        (GOOD_GROUP | {"targetGroupArns": UNKNOWN_STRING_VALUE, "healthCheckType": "EC2"}, "health_check_type"),
        (
            {k: v for k, v in GOOD_GROUP.items() if k != "launchTemplate"} | {"launchConfiguration": "lc-1"},
            "launch configuration",
        ),
    ],
)
def test_autoscaling_group_violations(props: dict[str, Any], needle: str):
    assert_one(run(guardrails.autoscaling_groups_behind_load_balancers, ASG, props), needle)


# --- S3 ---------------------------------------------------------------------------------------------------


def test_public_access_block_all_true_passes_and_gap_fails():
    assert run(guardrails.s3_public_access_block_strict, PAB, {"bucket": "crl", **ALL_FLAGS}) == []
    messages = run(
        guardrails.s3_public_access_block_strict,
        PAB,
        {"bucket": "crl", **ALL_FLAGS} | {"blockPublicPolicy": False},
    )
    assert_one(messages, "blockPublicPolicy")


def test_public_acls_fail():
    assert run(guardrails.no_public_s3_acls, BUCKET, {"bucket": "crl"}) == []
    assert run(guardrails.no_public_s3_acls, "aws:s3/bucket:Bucket", {"acl": "public-read"})
    grant = {
        "grantee": {"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AllUsers"},
        "permission": "READ",
    }
    assert run(guardrails.no_public_s3_acls, BUCKET_ACL, {"accessControlPolicy": {"grants": [grant]}})
    assert run(guardrails.no_public_s3_acls, BUCKET_ACL, {"acl": "private"}) == []


def ca_props(bucket: str = "crl-bucket", object_acl: str = "BUCKET_OWNER_FULL_CONTROL") -> dict[str, Any]:
    crl = {"enabled": True, "expirationInDays": 7, "s3BucketName": bucket, "s3ObjectAcl": object_acl}
    return {"type": "ROOT", "revocationConfiguration": {"crlConfiguration": crl}}


def test_ca_public_read_crl_objects_fail():
    assert run(guardrails.no_public_s3_acls, CA, ca_props()) == []
    assert run(guardrails.no_public_s3_acls, CA, ca_props(object_acl="PUBLIC_READ"))


def test_crl_bucket_with_full_public_access_block_passes():
    resources = [
        RecordedResource(CA, "root-ca", ca_props()),
        RecordedResource(BUCKET, "crl", {"bucket": "crl-bucket"}),
        RecordedResource(PAB, "crl-block", {"bucket": "crl-bucket", **ALL_FLAGS}),
    ]
    assert run_stack(guardrails.crl_bucket_public_access_blocked, resources) == []


def test_crl_bucket_without_public_access_block_fails_on_the_ca():
    resources = [
        RecordedResource(CA, "root-ca", ca_props()),
        RecordedResource(PAB, "other-block", {"bucket": "another-bucket", **ALL_FLAGS}),
    ]
    found = run_stack(guardrails.crl_bucket_public_access_blocked, resources)
    assert len(found) == 1, found
    assert "crl-bucket" in found[0][0], found
    assert found[0][1] == resources[0].urn, found


def test_crl_bucket_with_partial_public_access_block_fails_on_the_block():
    block = RecordedResource(PAB, "crl-block", {"bucket": "crl-bucket", **ALL_FLAGS, "ignorePublicAcls": False})
    found = run_stack(guardrails.crl_bucket_public_access_blocked, [RecordedResource(CA, "ca", ca_props()), block])
    assert len(found) == 1, found
    assert "ignorePublicAcls" in found[0][0], found
    assert found[0][1] == block.urn, found


def test_crl_bucket_matched_through_property_dependencies_when_names_are_unknown():
    """During a first preview the auto-named bucket's name is unknown; the engine's dependencies link them."""
    bucket = RecordedResource(BUCKET, "crl", {"bucket": UNKNOWN_STRING_VALUE})
    ca = RecordedResource(CA, "ca", ca_props(bucket=UNKNOWN_STRING_VALUE))
    block = RecordedResource(PAB, "crl-block", {"bucket": UNKNOWN_STRING_VALUE, **ALL_FLAGS, "blockPublicAcls": False})
    args = stack_args([bucket, ca, block])
    bucket_res, ca_res, block_res = args.resources
    ca_res.property_dependencies["revocationConfiguration"] = [bucket_res]
    block_res.property_dependencies["bucket"] = [bucket_res]
    collector = Collector()
    guardrails.crl_bucket_public_access_blocked.validate(StackValidationArgs(args.resources), collector)
    found = collector.found
    assert [urn for _, urn in found] == [block.urn], found
    assert isinstance(block_res, PolicyResource)


def test_crl_disabled_is_not_checked():
    props = ca_props()
    props["revocationConfiguration"]["crlConfiguration"]["enabled"] = False
    assert run_stack(guardrails.crl_bucket_public_access_blocked, [RecordedResource(CA, "ca", props)]) == []


# --- every bucket: public access blocked, TLS only -----------------------------------------------------------

S3_BUCKET = "aws:s3/bucket:Bucket"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"


def _tls_only_policy(bucket: str = "payloads", **changes: Any) -> str:
    statement = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        **changes,
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _guarded_bucket(policy: str | None = None, **flags: bool) -> list[RecordedResource]:
    return [
        RecordedResource(S3_BUCKET, "payloads", {"bucket": "payloads"}),
        RecordedResource(PAB, "payloads-block", {"bucket": "payloads", **ALL_FLAGS, **flags}),
        RecordedResource(
            BUCKET_POLICY, "payloads-policy", {"bucket": "payloads", "policy": policy or _tls_only_policy()}
        ),
    ]


def _bucket_findings(resources: list[RecordedResource]) -> list[tuple[str, str | None, str]]:
    return [
        (policy.name, urn, message)
        for policy in (guardrails.s3_buckets_public_access_blocked, guardrails.s3_buckets_tls_only)
        for message, urn in run_stack(policy, resources)
    ]


def test_a_bucket_with_its_block_and_a_tls_only_policy_passes() -> None:
    assert _bucket_findings(_guarded_bucket()) == []
    # The same denial written otherwise: every AWS principal, a JSON boolean, the objects only.
    other = _tls_only_policy(
        Principal={"AWS": "*"}, Condition={"Bool": {"aws:SecureTransport": False}}, Resource="arn:aws:s3:::payloads/*"
    )
    assert _bucket_findings(_guarded_bucket(other)) == []


def test_a_bucket_without_a_public_access_block_fails_on_the_bucket() -> None:
    bucket, _, policy = _guarded_bucket()
    (found,) = _bucket_findings([bucket, policy])
    assert found[:2] == ("s3-buckets-public-access-blocked", bucket.urn), found
    assert "payloads" in found[2], found
    assert "restrict_public_buckets all True" in found[2], found


def test_a_partial_public_access_block_fails_on_the_block() -> None:
    resources = _guarded_bucket(blockPublicPolicy=False)
    (found,) = _bucket_findings(resources)
    assert found[:2] == ("s3-buckets-public-access-blocked", resources[1].urn), found
    assert "blockPublicPolicy" in found[2], found


@pytest.mark.parametrize(
    "policy",
    [
        None,
        _tls_only_policy(Effect="Allow"),
        _tls_only_policy(Principal={"AWS": "arn:aws:iam::123456789012:root"}),
        _tls_only_policy(Action="s3:GetObject"),
        _tls_only_policy(Resource="arn:aws:s3:::payloads"),
        _tls_only_policy(Condition={"Bool": {"aws:SecureTransport": "true"}}),
        "not json",
    ],
)
def test_a_bucket_that_accepts_requests_without_tls_fails(policy: str | None) -> None:
    bucket, block, policy_resource = _guarded_bucket(policy)
    resources = [bucket, block] if policy is None else [bucket, block, policy_resource]
    (found,) = _bucket_findings(resources)
    assert found[:2] == ("s3-buckets-tls-only", bucket.urn), found
    assert "aws:SecureTransport" in found[2], found


def test_a_bucket_whose_own_policy_denies_insecure_transport_passes() -> None:
    bucket = RecordedResource(S3_BUCKET, "legacy", {"bucket": "legacy", "policy": _tls_only_policy("legacy")})
    block = RecordedResource(PAB, "legacy-block", {"bucket": "legacy", **ALL_FLAGS})
    assert _bucket_findings([bucket, block]) == []


def test_unknown_policies_and_names_are_not_judged() -> None:
    bucket, block, policy = _guarded_bucket(UNKNOWN_STRING_VALUE)
    assert _bucket_findings([bucket, block, policy]) == []
    # A first preview: the auto-named bucket's name is unknown, and nothing links the block or policy to it yet.
    unnamed = RecordedResource(S3_BUCKET, "fresh", {"bucket": UNKNOWN_STRING_VALUE})
    unlinked_block = RecordedResource(PAB, "fresh-block", {"bucket": UNKNOWN_STRING_VALUE, **ALL_FLAGS})
    assert _bucket_findings([unnamed, unlinked_block]) == []


def test_buckets_are_matched_through_property_dependencies_when_names_are_unknown() -> None:
    unnamed = RecordedResource(S3_BUCKET, "fresh", {"bucket": UNKNOWN_STRING_VALUE})
    block = RecordedResource(
        PAB,
        "fresh-block",
        {"bucket": UNKNOWN_STRING_VALUE, **ALL_FLAGS, "ignorePublicAcls": False},
        property_dependencies={"bucket": [unnamed.urn]},
    )
    policy = RecordedResource(
        BUCKET_POLICY,
        "fresh-policy",
        {"bucket": UNKNOWN_STRING_VALUE, "policy": _tls_only_policy(Effect="Allow")},
        property_dependencies={"bucket": [unnamed.urn]},
    )
    found = sorted(_bucket_findings([unnamed, block, policy]))
    assert [(name, urn) for name, urn, _ in found] == [
        ("s3-buckets-public-access-blocked", block.urn),
        ("s3-buckets-tls-only", unnamed.urn),
    ], found


def test_stack_policies_see_outputs_when_the_recording_has_them() -> None:
    """An auto-named bucket has no `bucket` input; the engine hands stack policies its outputs, with the name."""
    bucket = RecordedResource(S3_BUCKET, "auto", {}, outputs={"bucket": "auto-0a1b2c3"})
    block = RecordedResource(PAB, "auto-block", {"bucket": "auto-0a1b2c3", **ALL_FLAGS})
    assert [urn for _, urn, _ in _bucket_findings([bucket, block])] == [bucket.urn], "no TLS-only policy"
    assert _bucket_findings([RecordedResource(S3_BUCKET, "auto", {}), block]) == [], "name unknown: not judged"


# --- secrets ----------------------------------------------------------------------------------------------


def test_ssm_parameters_must_be_secure_string():
    props = {"name": "/pca-backend/dev/tls/key", "type": "SecureString", "value": "k"}
    assert run(guardrails.ssm_parameters_secure_string, SSM, props) == []
    messages = run(guardrails.ssm_parameters_secure_string, SSM, props | {"type": "String"})
    assert_one(messages, "SecureString")


def test_certificate_private_key_marked_secret_passes():
    props = {
        "ca_arn": "arn:aws:acm-pca:eu-west-1:1:certificate-authority/x",
        "common_name": "backend.internal",
    }
    assert run(guardrails.certificate_private_key_secret, CERT, props, ["private_key_pem"]) == []
    assert (
        run(
            guardrails.certificate_private_key_secret,
            CERT,
            props | {"private_key_pem": None},
            ["private_key_pem"],
        )
        == []
    )


def test_certificate_private_key_not_secret_fails():
    messages = run(guardrails.certificate_private_key_secret, CERT, {"common_name": "backend.internal"})
    assert_one(messages, "additional_secret_outputs")


def test_certificate_private_key_as_input_fails():
    props = {"common_name": "b", "private_key_pem": private_key_pem(generate_private_key("EC_prime256v1"))}
    messages = run(guardrails.certificate_private_key_secret, CERT, props, ["private_key_pem"])
    assert_one(messages, "input")


# --- harness ----------------------------------------------------------------------------------------------


def test_check_resources_passes_a_compliant_stack_and_names_violations():
    good = [
        RecordedResource(TG, "backend-tg", {"protocol": "HTTPS", "healthCheck": {"protocol": "HTTPS"}}),
        RecordedResource(LISTENER, "http", {"protocol": "HTTP", "defaultActions": [HTTPS_REDIRECT]}),
        RecordedResource(SG, "alb-sg", {"tags": ALB_TAGS, "ingress": [ingress(443, 443)]}),
        RecordedResource(INSTANCE, "nginx-0", GOOD_INSTANCE),
        RecordedResource(CA, "root-ca", ca_props()),
        RecordedResource(PAB, "crl-block", {"bucket": "crl-bucket", **ALL_FLAGS}),
        RecordedResource(CERT, "backend-cert", {"common_name": "b"}, ["private_key_pem"]),
        RecordedResource("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": "10.0.0.0/16"}),
    ]
    assert check_resources(good) == []

    bad = [*good[:-1], RecordedResource(SG, "host-sg", {"ingress": [ingress(22, 22)]})]
    violations = check_resources(bad)
    assert any(v.startswith(f"no-ssh-ingress: {SG}::host-sg: ") for v in violations), violations
    assert any(v.startswith("no-public-ingress-except-alb-https: ") for v in violations), violations

    no_block = [r for r in good if r.type_ != PAB]
    assert [v.split(":")[0] for v in check_resources(no_block)] == ["crl-bucket-public-access-blocked"]


# --- KMS key policies ---------------------------------------------------------------------------------------

KMS_KEY = "aws:kms/key:Key"
KMS_KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"


def _key_policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(sid: str, actions: Any, **extra: Any) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": actions,
        "Resource": "*",
        **extra,
    }


AWS_DEFAULT_ADMINISTRATORS = [
    "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*", "kms:Revoke*",
    "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand",
]  # fmt: skip


@pytest.mark.parametrize(
    "statement",
    [
        _allow("EnableIAMUserPermissions", "kms:*"),
        _allow("KeyAdministration", AWS_DEFAULT_ADMINISTRATORS),
        _allow("Named", ["kms:DescribeKey", "kms:CreateGrant"]),
        _allow("AnyCase", "KMS:creategrant"),
        _allow("Everything", "*"),
        _allow("Question", "kms:Create?rant"),
        {"Sid": "AllButDecrypt", "Effect": "Allow", "Principal": "*", "NotAction": ["kms:Decrypt"], "Resource": "*"},
        _allow("WrongCondition", "kms:CreateGrant", Condition={"Bool": {"kms:GrantIsForAWSResource": "false"}}),
    ],
    ids=lambda statement: statement["Sid"],
)
def test_a_key_policy_that_lets_someone_create_grants_fails(statement: dict[str, Any]) -> None:
    for type_ in (KMS_KEY, KMS_KEY_POLICY):
        assert_one(run(guardrails.kms_keys_no_grant_path, type_, {"policy": _key_policy(statement)}), statement["Sid"])


def test_a_key_policy_naming_its_administrative_actions_passes() -> None:
    from components.ssm_key_delivery import KEY_ADMINISTRATION_ACTIONS

    policy = _key_policy(
        _allow("KeyAdministration", list(KEY_ADMINISTRATION_ACTIONS)),
        _allow("Use", ["kms:Decrypt"], Condition={"StringEquals": {"kms:ViaService": "ssm.us-east-1.amazonaws.com"}}),
        _allow("Attachments", ["kms:CreateGrant"], Condition={"Bool": {"kms:GrantIsForAWSResource": "true"}}),
        {"Sid": "DenyGrants", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*"},
    )  # fmt: skip
    assert run(guardrails.kms_keys_no_grant_path, KMS_KEY, {"policy": policy}) == []


def test_a_key_without_a_policy_gets_the_default_and_fails() -> None:
    assert_one(run(guardrails.kms_keys_no_grant_path, KMS_KEY, {"description": "x"}), "default key policy")


def test_an_unknown_key_policy_is_not_flagged() -> None:
    assert run(guardrails.kms_keys_no_grant_path, KMS_KEY, {"policy": UNKNOWN_STRING_VALUE}) == []


# --- Lambda (the per-host issuer) -----------------------------------------------------------------------------------

FUNCTION_URL = "aws:lambda/functionUrl:FunctionUrl"
LAMBDA_PERMISSION = "aws:lambda/permission:Permission"
HOST_ROLE = "arn:aws:iam::123456789012:role/backend-host-role"


def test_a_function_url_with_aws_iam_auth_passes() -> None:
    props = {"functionName": "issuer", "authorizationType": "AWS_IAM"}
    assert run(guardrails.lambda_function_urls_iam_auth, FUNCTION_URL, props) == []
    assert (
        run(guardrails.lambda_function_urls_iam_auth, FUNCTION_URL, {"authorizationType": UNKNOWN_STRING_VALUE}) == []
    )


@pytest.mark.parametrize("props", [{"authorizationType": "NONE"}, {"functionName": "issuer"}])
def test_a_function_url_anyone_can_call_fails(props: dict[str, Any]) -> None:
    assert_one(run(guardrails.lambda_function_urls_iam_auth, FUNCTION_URL, props), "authorization_type='AWS_IAM'")


def test_permissions_naming_the_host_role_pass() -> None:
    url = {
        "action": "lambda:InvokeFunctionUrl",
        "function": "issuer",
        "principal": HOST_ROLE,
        "functionUrlAuthType": "AWS_IAM",
    }
    through_url = {
        "action": "lambda:InvokeFunction",
        "function": "issuer",
        "principal": HOST_ROLE,
        "invokedViaFunctionUrl": True,
    }
    service = {"action": "lambda:InvokeFunction", "principal": "s3.amazonaws.com", "sourceArn": "arn:aws:s3:::b"}
    for props in (url, through_url, service, {**url, "principal": UNKNOWN_STRING_VALUE}):
        assert run(guardrails.lambda_permissions_named_principal, LAMBDA_PERMISSION, props) == [], props


@pytest.mark.parametrize(
    ("props", "said"),
    [
        ({"action": "lambda:InvokeFunction", "principal": "*"}, "Name the principal"),
        (
            {"action": "lambda:InvokeFunctionUrl", "principal": "*", "functionUrlAuthType": "AWS_IAM"},
            "Name the principal",
        ),
        ({"action": "lambda:InvokeFunctionUrl", "principal": HOST_ROLE}, "function_url_auth_type not set"),
        (
            {"action": "lambda:InvokeFunctionUrl", "principal": HOST_ROLE, "functionUrlAuthType": "NONE"},
            "function_url_auth_type 'NONE'",
        ),
        ({"action": "lambda:*", "principal": HOST_ROLE}, "function_url_auth_type not set"),
        ({"action": "lambda:InvokeFunction", "principal": "events.amazonaws.com"}, "Set source_arn"),
    ],
)
def test_permissions_that_grant_more_than_one_named_caller_fail(props: dict[str, Any], said: str) -> None:
    assert_one(run(guardrails.lambda_permissions_named_principal, LAMBDA_PERMISSION, props), said)


def test_the_lambda_policies_run_in_the_pack() -> None:
    """`check_resources` (what the program tests use) runs every resource policy, the new ones included."""
    url = RecordedResource(FUNCTION_URL, "issuer-url", {"authorizationType": "NONE"})
    permission = RecordedResource(LAMBDA_PERMISSION, "anyone", {"action": "lambda:InvokeFunction", "principal": "*"})
    violations = "\n".join(check_resources([url, permission]))
    assert "lambda-function-urls-iam-auth" in violations, violations
    assert "lambda-permissions-named-principal" in violations, violations
