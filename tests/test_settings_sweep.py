"""A sweep of bad settings through the real `__main__.py` under mocks, as a new user would write them.

For every case: the program refuses it with `SettingsError`, the message names the setting and says what is
allowed, and **no resource at all** was registered: nothing is created (or half-created) from a bad stack file.
A rule that only a component or the certificate provider enforces would fail here, after the CA or the
certificate was registered, under an argument's name instead of the setting's.
"""

from __future__ import annotations

import runpy
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pytest

from components.settings import CONFIG_KEYS, SettingsError
from tests.stack_harness import PROJECT, ROOT, StackRun, _config_value, _Mocks, run_under_mocks, stack_config

CA_ARN = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555"
ACM_ARN = "arn:aws:acm:us-east-1:123456789012:certificate/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
VPC = "vpc-0a1b2c3d4e5f60718"
SUBNET = "subnet-0a1b2c3d4e5f60711"
KMS_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROLE = "arn:aws:iam::123456789012:role/deploy"
LONG_LABEL = "a" * 63
#: Two-label names longer than X.509's 64-character common name, yet valid DNS names.
LONG_NAME = f"{LONG_LABEL}.example.com"
ROLE_B = "arn:aws:iam::123456789012:role/next"
X86_AMI = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
ARM_AMI = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
LOCAL_URL = "http://127.0.0.1:5000"
#: The local stack's endpoints with one service moved elsewhere.
LOCAL_ENDPOINTS = {
    service: LOCAL_URL
    for service in ("acm", "acmpca", "autoscaling", "cloudwatch", "ec2", "elbv2", "iam", "kms", "s3", "ssm", "sts")
}
#: Names that make the certificate and its chain larger than a parameter's 8 KB (and the CSR than 32 KB).
MANY_NAMES = [f"host-{index:03d}.{LONG_LABEL}.{LONG_LABEL}.example.com" for index in range(40)]
HUGE_NAMES = [f"h{index:03d}.{LONG_LABEL}.{LONG_LABEL}.{LONG_LABEL}.example.com" for index in range(160)]


@dataclass(frozen=True)
class Case:
    id: str
    stack: str
    overrides: dict[str, Any]
    setting: str
    """The setting the message must name (`key: ...`)."""
    allowed: str
    """What the message must say is allowed (or why the value is refused)."""


def bad(case_id: str, stack: str, setting: str, allowed: str, **overrides: Any) -> Case:
    """A case whose overrides are project keys (`aws_region` stands for `aws:region`)."""
    full = {(f"aws:{key[4:]}" if key.startswith("aws_") else f"{PROJECT}:{key}"): v for key, v in overrides.items()}
    return Case(case_id, stack, full, setting, allowed)


def cidrs(count: int, version: int = 4) -> list[str]:
    if version == 4:
        return [f"10.{index // 256}.{index % 256}.0/24" for index in range(count)]
    return [f"fd00:{index:x}::/64" for index in range(count)]


CASES = [
    # --- types -------------------------------------------------------------------------------------------
    bad("host-count-word", "dev", "hostCount", "whole number from 1 to 50", hostCount="two"),
    bad("host-count-float", "dev", "hostCount", "whole number from 1 to 50", hostCount=2.5),
    bad("crl-enabled-yes", "pki", "caCrlEnabled", "true or false", caCrlEnabled="yes"),
    bad("protect-maybe", "pki", "caProtect", "true or false", caProtect="maybe"),
    bad("alb-internal-maybe", "dev", "albInternal", "true or false", albInternal="maybe"),
    bad("http-redirect-number", "dev", "httpRedirect", "true or false", httpRedirect=1),
    bad("backend-enabled-no", "dev", "backendEnabled", "true or false", backendEnabled="no"),
    bad("validity-years-word", "pki", "caValidityYears", "whole number from 0 to 30", caValidityYears="ten"),
    bad("subnets-as-string", "dev", "albSubnetIds", "a list of strings", albSubnetIds=f"{SUBNET},{SUBNET}"),
    bad("names-as-mapping", "dev", "certNames", "a list of strings", certNames={"name": "a.example.com"}),
    bad("names-not-strings", "dev", "certNames", "a list of strings", certNames=[1, 2]),
    # --- ranges ------------------------------------------------------------------------------------------
    bad("host-count-zero", "dev", "hostCount", "from 1 to 50", hostCount=0),
    bad("host-count-51", "dev", "hostCount", "from 1 to 50", hostCount=51),
    bad("host-count-100", "dev", "hostCount", "from 1 to 50", hostCount=100),
    bad("validity-years-31", "pki", "caValidityYears", "from 0 to 30", caValidityYears=31),
    bad("deletion-days-6", "pki", "caPermanentDeletionDays", "from 7 to 30", caPermanentDeletionDays=6),
    bad("deletion-days-31", "pki", "caPermanentDeletionDays", "from 7 to 30", caPermanentDeletionDays=31),
    bad("crl-days-0", "pki", "caCrlExpirationDays", "from 1 to 5000", caCrlExpirationDays=0),
    bad("crl-days-5001", "pki", "caCrlExpirationDays", "from 1 to 5000", caCrlExpirationDays=5001),
    bad("cert-days-negative", "dev", "certValidityDays", "from 0 to 3650", certValidityDays=-1),
    bad("cert-days-3651", "dev", "certValidityDays", "from 0 to 3650", certValidityDays=3651),
    bad("renew-equals-validity", "dev", "certRenewBeforeDays", "from 0 to 29", certRenewBeforeDays=30),
    # --- malformed IDs, ARNs, CIDRs and names ------------------------------------------------------------
    bad("vpc-id-short", "dev", "vpcId", "vpc- and 8 or 17 hex digits", vpcId="vpc-123"),
    bad("vpc-id-is-subnet", "dev", "vpcId", "vpc- and 8 or 17 hex digits", vpcId=SUBNET),
    bad("subnet-id-junk", "dev", "albSubnetIds", "subnet- and 8 or 17 hex", albSubnetIds=[SUBNET, "subnet-xyz"]),
    bad("host-subnet-is-sg", "dev", "hostSubnetIds", "subnet- and 8 or 17 hex", hostSubnetIds=["sg-0a1b2c3d"]),
    bad("peer-sg-short", "dev", "peerSecurityGroupIds", "sg- and 8 or 17 hex digits", peerSecurityGroupIds=["sg-12"]),
    bad("parent-arn-acm", "prod", "caParentArn", "ACM PCA certificate authority ARN", caStack="", caParentArn=ACM_ARN),
    bad("ca-stack-four-parts", "dev", "caStack", "org/project/stack", caStack="org/pca-backend/pki/extra"),
    bad(
        "alb-cert-arn-pca",
        "dev",
        "albCertificateArn",
        "ACM certificate ARN",
        albDomainName="",
        albCertificateArn=CA_ARN,
    ),
    bad("alb-domain-one-label", "dev", "albDomainName", "two labels or more", albDomainName="backend"),
    bad("alb-domain-space", "dev", "albDomainName", "two labels or more", albDomainName="back end.example.com"),
    bad("network-host-bits", "local", "networkCidr", "IPv4 network from /16 to /26", networkCidr="10.42.0.1/24"),
    bad("network-too-big", "local", "networkCidr", "IPv4 network from /16 to /26", networkCidr="10.0.0.0/8"),
    bad("network-ipv6", "local", "networkCidr", "IPv4 network from /16 to /26", networkCidr="fd00::/64"),
    bad(
        "ingress-prefix-33", "dev", "albIngressCidrs", "CIDR block such as 10.0.0.0/16", albIngressCidrs=["10.0.0.0/33"]
    ),
    bad("ingress-host-bits", "dev", "albIngressCidrs", "CIDR block such as", albIngressCidrs=["10.20.0.1/16"]),
    bad("name-underscore", "dev", "certNames", "a DNS name or IPv4 address", certNames=["under_score.example.com"]),
    bad("name-bad-ipv4", "dev", "certNames", "a DNS name or IPv4 address", certNames=["10.0.0.256"]),
    bad("name-ipv6", "local", "certNames", "nginx cannot serve an IPv6 literal", certNames=["localhost", "::1"]),
    bad("common-name-space", "dev", "certCommonName", "a DNS name or IPv4 address", certCommonName="bad name"),
    bad("template-ca", "dev", "certTemplate", "use an end-entity template", certTemplate="RootCACertificate/V1"),
    bad("template-malformed", "dev", "certTemplate", "EndEntityServerAuthCertificate/V1", certTemplate="EndEntity V1"),
    bad("cert-key-ed25519", "dev", "certKeyAlgorithm", "allowed: EC_prime256v1", certKeyAlgorithm="ED25519"),
    bad("ca-key-rsa1024", "pki", "caKeyAlgorithm", "allowed: EC_prime256v1", caKeyAlgorithm="RSA_1024"),
    bad("ca-mode-unknown", "pki", "caMode", "allowed: root, subordinate, stack", caMode="intermediate"),
    bad("usage-mode-unknown", "pki", "caUsageMode", "GENERAL_PURPOSE, SHORT_LIVED_CERTIFICATE", caUsageMode="CHEAP"),
    bad(
        "key-storage-unknown",
        "pki",
        "caKeyStorageSecurityStandard",
        "FIPS_140_2_LEVEL_2",
        caKeyStorageSecurityStandard="X",
    ),
    bad("country-three-letters", "pki", "caCountry", "two-letter ISO 3166 code", caCountry="USA"),
    bad("instance-type-space", "dev", "instanceType", "EC2 instance type such as t3.micro", instanceType="t3 micro"),
    bad("ami-parameter-ami-id", "dev", "amiParameter", "SSM parameter name", amiParameter="ami-0123456789abcdef0"),
    bad("prefix-reserved", "dev", "parameterPrefix", "which AWS reserves", parameterPrefix="/aws/pca"),
    bad("prefix-relative", "dev", "parameterPrefix", "must look like /team/app", parameterPrefix="team/app"),
    bad("endpoint-http-remote", "local", "awsEndpointUrl", "use https", awsEndpointUrl="http://10.0.0.5:5000"),
    bad("endpoint-ftp", "local", "awsEndpointUrl", "http(s) URL like", awsEndpointUrl="ftp://127.0.0.1"),
    bad("endpoint-http-on-aws", "dev", "awsEndpointUrl", "use https", awsEndpointUrl="http://acm-pca.internal:80"),
    bad("region-malformed", "dev", "aws:region", "AWS region name such as", aws_region="us-east"),
    bad("region-missing", "dev", "aws:region", "is required", aws_region=""),
    bad(
        "crl-cname-url", "pki", "caCrlCustomCname", "DNS name such as crl.example.com", caCrlCustomCname="http://crl.x"
    ),
    # --- contradictions ----------------------------------------------------------------------------------
    bad("root-with-stack", "local", "caMode", "use caMode stack", caStack="organization/pca-backend/pki"),
    bad("stack-without-stack", "dev", "caStack", "required when caMode is stack", caStack=""),
    bad("subordinate-two-parents", "prod", "caMode", "exactly one parent", caParentArn=CA_ARN),
    bad("stack-with-parent-arn", "dev", "caParentArn", "only used with caMode subordinate", caParentArn=CA_ARN),
    bad(
        "crl-short-lived",
        "pki",
        "caCrlEnabled",
        "has no CRL",
        caUsageMode="SHORT_LIVED_CERTIFICATE",
        caAcmPermission=False,
    ),
    bad(
        "acm-short-lived",
        "pki",
        "caAcmPermission",
        "use GENERAL_PURPOSE",
        caUsageMode="SHORT_LIVED_CERTIFICATE",
        caCrlEnabled=False,
    ),
    bad("domain-short-lived", "local", "albDomainName", "use albCertificateArn", caUsageMode="SHORT_LIVED_CERTIFICATE"),
    bad(
        "short-lived-30-days",
        "local",
        "certValidityDays",
        "at most 7 days",
        caUsageMode="SHORT_LIVED_CERTIFICATE",
        certValidityDays=30,
        albDomainName="",
        albCertificateArn=ACM_ARN,
    ),
    bad("both-listener-certificates", "dev", "albCertificateArn", "set exactly one of", albCertificateArn=ACM_ARN),
    bad("no-listener-certificate", "dev", "albCertificateArn", "set exactly one of", albDomainName=""),
    bad("network-and-vpc", "local", "networkCidr", "cannot be combined with vpcId", vpcId=VPC),
    bad("no-vpc", "dev", "vpcId", "is required when backendEnabled is true", vpcId=""),
    bad("one-alb-subnet", "dev", "albSubnetIds", "at least two availability zones", albSubnetIds=[SUBNET]),
    bad("no-host-subnet", "dev", "hostSubnetIds", "at least one subnet", hostSubnetIds=[]),
    bad("no-ingress", "dev", "albIngressCidrs", "at least one CIDR", albIngressCidrs=[]),
    bad(
        "world-on-internal",
        "dev",
        "albIngressCidrs",
        "not allowed on an internal load balancer",
        albIngressCidrs=["0.0.0.0/0"],
    ),
    bad("world6-on-internal", "dev", "albIngressCidrs", "not allowed on an internal", albIngressCidrs=["::/0"]),
    # --- lengths ------------------------------------------------------------------------------------------
    bad("ca-cn-65", "pki", "caCommonName", "X.509 allows at most 64", caCommonName="C" * 65),
    bad("ca-org-100", "pki", "caOrganization", "X.509 allows at most 64", caOrganization="O" * 100),
    bad("ca-ou-65", "pki", "caOrganizationalUnit", "X.509 allows at most 64", caOrganizationalUnit="U" * 65),
    bad("ca-locality-129", "pki", "caLocality", "X.509 allows at most 128", caLocality="L" * 129),
    bad("ca-state-129", "pki", "caState", "X.509 allows at most 128", caState="S" * 129),
    bad("cert-cn-long", "dev", "certCommonName", "limits to 64 characters", certCommonName=LONG_NAME),
    bad("cert-first-name-long", "dev", "certNames", "set a shorter certCommonName", certNames=[LONG_NAME]),
    bad("health-path-long", "dev", "healthCheckPath", "at most 1024", healthCheckPath="/" + "h" * 1100),
    # --- control characters ----------------------------------------------------------------------------------
    bad("ca-cn-newline", "pki", "caCommonName", "control characters", caCommonName="Root\nCA"),
    bad("ca-org-tab", "pki", "caOrganization", "control characters", caOrganization="Example\tCorp"),
    bad("ca-state-nul", "pki", "caState", "control characters", caState="Bavaria\x00"),
    bad("ca-cn-trailing-space", "pki", "caCommonName", "starts or ends with spaces", caCommonName="Root CA "),
    # --- injection into what is rendered into nginx or shell ------------------------------------------------
    bad("health-root", "dev", "healthCheckPath", "use a path of its own such as /healthz", healthCheckPath="/"),
    bad("health-semicolon", "dev", "healthCheckPath", "absolute URL path", healthCheckPath="/healthz; return 200"),
    bad("health-brace", "dev", "healthCheckPath", "control characters", healthCheckPath="/healthz}\nserver{"),
    bad("health-variable", "dev", "healthCheckPath", "absolute URL path", healthCheckPath="/$host"),
    bad("name-semicolon", "dev", "certNames", "a DNS name or IPv4", certNames=["a.example.com;include /etc/passwd"]),
    bad("cn-command", "dev", "certCommonName", "a DNS name or IPv4 address", certCommonName="$(reboot).example.com"),
    bad("prefix-command", "dev", "parameterPrefix", "must look like /team/app", parameterPrefix="/pca/$(id)"),
    bad("prefix-quote", "dev", "parameterPrefix", "must look like /team/app", parameterPrefix="/pca/dev'; rm -rf /"),
    bad("ami-semicolon", "dev", "amiParameter", "SSM parameter name", amiParameter="/aws/x; curl example.invalid"),
    bad("instance-type-newline", "dev", "instanceType", "control characters", instanceType="t3.micro\nrunas"),
    bad(
        "endpoint-backtick", "local", "awsEndpointUrl", "http(s) URL like", awsEndpointUrl="http://127.0.0.1:5000/`id`"
    ),
    bad("region-command", "dev", "aws:region", "AWS region name", aws_region="us-east-1;id"),
    # --- limits AWS enforces ----------------------------------------------------------------------------------
    bad("ingress-200", "dev", "albIngressCidrs", "AWS allows 60", albIngressCidrs=cidrs(200), albInternal=False),
    bad("ingress-31-with-redirect", "dev", "albIngressCidrs", "needs 62 IPv4 rules", albIngressCidrs=cidrs(31)),
    bad(
        "ingress6-61", "dev", "albIngressCidrs", "needs 61 IPv6 rules", albIngressCidrs=cidrs(61, 6), httpRedirect=False
    ),
    bad(
        "peers-59", "dev", "peerSecurityGroupIds", "at most 58", peerSecurityGroupIds=[f"sg-{i:08x}" for i in range(59)]
    ),
    bad(
        "ingress-duplicate",
        "dev",
        "albIngressCidrs",
        "list each once",
        albIngressCidrs=["10.20.0.0/16", "10.20.0.0/16"],
    ),
    # --- settings the Auto Scaling, KMS, alarm and provider-identity work added ------------------------------
    bad("host-min-over-count", "dev", "hostMinCount", "at most hostCount", hostMinCount=3),
    bad("host-min-51", "dev", "hostMinCount", "from 0 to 50", hostMinCount=51),
    bad("host-max-under-count", "dev", "hostMaxCount", "at least hostCount", hostMaxCount=1),
    bad("host-max-101", "dev", "hostMaxCount", "from 0 to 100", hostMaxCount=101),
    bad("healthy-percent-101", "dev", "hostMinHealthyPercent", "from 0 to 100", hostMinHealthyPercent=101),
    bad("root-volume-4", "dev", "hostRootVolumeGiB", "from 8 to 16384", hostRootVolumeGiB=4),
    bad("kms-key-alias", "dev", "parameterKmsKeyArn", "is not a KMS key ARN", parameterKmsKeyArn="alias/aws/ssm"),
    bad(
        "writer-short-account",
        "dev",
        "parameterWriterArns",
        "an IAM role or user ARN",
        parameterWriterArns=["arn:aws:iam::1234:role/ci"],
    ),
    bad(
        "writer-with-own-key",
        "dev",
        "parameterWriterArns",
        "only applies to the key the stack creates",
        parameterKmsKeyArn=KMS_ARN,
        parameterWriterArns=[ROLE],
    ),
    bad("alarm-days-400", "dev", "certExpiryAlarmDays", "from 0 to 365", certExpiryAlarmDays=400),
    bad(
        "alarm-days-outside-window",
        "dev",
        "certExpiryAlarmDays",
        "less than the renewal window",
        certExpiryAlarmDays=20,
    ),
    bad(
        "alarm-topic-bad",
        "dev",
        "certExpiryAlarmTopicArn",
        "is not an SNS topic ARN",
        certExpiryAlarmTopicArn="ops-alarms",
    ),
    bad("throttle-zero", "dev", "certThrottleRetryMinutes", "from 1 to 120", certThrottleRetryMinutes=0),
    bad("throttle-121", "dev", "certThrottleRetryMinutes", "from 1 to 120", certThrottleRetryMinutes=121),
    bad("profile-space", "dev", "aws:profile", "no spaces", aws_profile="my profile"),
    bad(
        "assume-role-bad-arn",
        "dev",
        "aws:assumeRoles",
        "is not an IAM role ARN",
        aws_assumeRoles=[{"roleArn": "deploy"}],
    ),
    bad(
        "assume-role-session",
        "dev",
        "aws:assumeRoles",
        "2-64 letters",
        aws_assumeRoles=[{"roleArn": ROLE, "sessionName": "x"}],
    ),
    bad(
        "assume-role-not-list",
        "dev",
        "aws:assumeRoles",
        "must be a list of objects",
        aws_assumeRoles="arn:aws:iam::123456789012:role/x",
    ),
    # --- unknown keys ------------------------------------------------------------------------------------------
    bad("unknown-ca-modee", "pki", "caModee", "did you mean caMode?", caModee="root"),
    bad("unknown-hostcount", "dev", "hostcount", "did you mean hostCount?", hostcount=3),
    bad("unknown-vpcID", "dev", "vpcID", "did you mean vpcId?", vpcID=VPC),
    bad("unknown-ingress", "dev", "albIngressCidr", "did you mean albIngressCidrs?", albIngressCidr=["10.0.0.0/8"]),
    bad("unknown-unrelated", "dev", "wholly", "Configuration reference", wholly="x"),
    # === issue 14, section 1 ===================================================================================
    # --- partition and region: a region AWS has; every ARN in the stack's partition, the regional ones in its region
    bad("region-typo", "dev", "aws:region", "not a region AWS has", aws_region="us-eest-1"),
    bad("region-unknown-number", "dev", "aws:region", "not a region AWS has", aws_region="eu-west-9"),
    bad(
        "kms-other-region",
        "dev",
        "parameterKmsKeyArn",
        "is in eu-west-1, not in us-east-1 (aws:region)",
        parameterKmsKeyArn=KMS_ARN.replace("us-east-1", "eu-west-1"),
    ),
    bad(
        "kms-other-partition",
        "dev",
        "parameterKmsKeyArn",
        "partition aws-cn, not aws",
        parameterKmsKeyArn=KMS_ARN.replace("arn:aws:", "arn:aws-cn:"),
    ),
    bad(
        "kms-partition-look-alike",
        "dev",
        "parameterKmsKeyArn",
        "is not a KMS key ARN",
        parameterKmsKeyArn=KMS_ARN.replace("arn:aws:", "arn:awsfoo:"),
    ),
    bad(
        "listener-cert-other-region",
        "dev",
        "albCertificateArn",
        "is in eu-west-1, not in us-east-1",
        albDomainName="",
        albCertificateArn=ACM_ARN.replace("us-east-1", "eu-west-1"),
    ),
    bad(
        "listener-cert-gov",
        "dev",
        "albCertificateArn",
        "partition aws-us-gov, not aws",
        albDomainName="",
        albCertificateArn=ACM_ARN.replace("arn:aws:", "arn:aws-us-gov:"),
    ),
    bad(
        "topic-other-region",
        "dev",
        "certExpiryAlarmTopicArn",
        "is in us-west-2, not in us-east-1",
        certExpiryAlarmTopicArn="arn:aws:sns:us-west-2:123456789012:ops",
    ),
    bad(
        "writer-other-partition",
        "dev",
        "parameterWriterArns",
        "partition aws-cn, not aws",
        parameterWriterArns=["arn:aws-cn:iam::123456789012:role/ci"],
    ),
    bad(
        "writer-partition-look-alike",
        "dev",
        "parameterWriterArns",
        "partition awsfoo, not aws",
        parameterWriterArns=["arn:awsfoo:iam::123456789012:role/ci"],
    ),
    bad(
        "parent-other-region",
        "prod",
        "caParentArn",
        "is in eu-central-1, not in us-east-1",
        caStack="",
        caParentArn=CA_ARN.replace("us-east-1", "eu-central-1"),
    ),
    bad(
        "parent-partition-look-alike",
        "prod",
        "caParentArn",
        "is not an ACM PCA certificate authority ARN",
        caStack="",
        caParentArn=CA_ARN.replace("arn:aws:", "arn:awsfoo:"),
    ),
    bad(
        "role-other-partition",
        "dev",
        "aws:assumeRoles",
        "partition aws-us-gov, not aws",
        aws_assumeRoles=[{"roleArn": "arn:aws-us-gov:iam::123456789012:role/deploy"}],
    ),
    bad(
        "template-other-partition",
        "dev",
        "certTemplate",
        "partition aws-cn, not aws",
        certTemplate="arn:aws-cn:acm-pca:::template/EndEntityCertificate/V1",
    ),
    bad(
        "china-region-with-aws-arns",
        "local",
        "albCertificateArn",
        "partition aws, not aws-cn",
        aws_region="cn-north-1",
        albDomainName="",
        albCertificateArn=ACM_ARN.replace("us-east-1", "cn-north-1"),
    ),
    # --- instance architecture: the AMI parameter is of the instance type's architecture ---------------------
    bad(
        "graviton-x86-ami",
        "dev",
        "amiParameter",
        "t4g.micro is an arm64 (Graviton)",
        instanceType="t4g.micro",
        amiParameter=X86_AMI,
    ),
    bad("graviton-m7g-x86-ami", "dev", "amiParameter", "arm64", instanceType="m7g.large", amiParameter=X86_AMI),
    bad("graviton-c6gn-x86-ami", "dev", "amiParameter", "arm64", instanceType="c6gn.xlarge", amiParameter=X86_AMI),
    bad("graviton-a1-x86-ami", "dev", "amiParameter", "arm64", instanceType="a1.large", amiParameter=X86_AMI),
    bad("x86-arm-ami", "dev", "amiParameter", "t3.micro is an x86_64", instanceType="t3.micro", amiParameter=ARM_AMI),
    # --- windows that collapse: a renewal window of days, the alarm inside it, no certificate outliving its CA --
    bad("cert-days-2", "dev", "certValidityDays", "at least 3", certValidityDays=2),
    bad("cert-days-1", "dev", "certValidityDays", "at least 3", certValidityDays=1),
    bad(
        "renew-before-1",
        "dev",
        "certRenewBeforeDays",
        "must be 0 (a third of certValidityDays) or from 2 to 29",
        certRenewBeforeDays=1,
    ),
    bad(
        "cert-outlives-root",
        "local",
        "certValidityDays",
        "would outlive the CA",
        caValidityYears=1,
        certValidityDays=400,
    ),
    bad(
        "cert-outlives-subordinate",
        "prod",
        "certValidityDays",
        "would outlive the CA",
        caValidityYears=1,
        certValidityDays=366,
    ),
    # --- identity: what the certificate provider would not honour is refused, with what to do instead --------
    bad(
        "static-access-key", "dev", "aws:accessKey", "AWS_ACCESS_KEY_ID", aws_accessKey="AKIAEXAMPLE", aws_secretKey="x"
    ),
    bad("static-secret-key", "dev", "aws:secretKey", "AWS_SECRET_ACCESS_KEY", aws_secretKey="wJalrXUtnFEMI"),
    bad("static-token", "dev", "aws:token", "AWS_SESSION_TOKEN", aws_token="FwoGZXIvYXdz"),
    bad(
        "web-identity",
        "dev",
        "aws:assumeRoleWithWebIdentity",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        aws_assumeRoleWithWebIdentity={"roleArn": ROLE, "webIdentityTokenFile": "/var/run/token"},
    ),
    bad(
        "shared-credentials-files",
        "dev",
        "aws:sharedCredentialsFiles",
        "AWS_SHARED_CREDENTIALS_FILE",
        aws_sharedCredentialsFiles=["/home/ci/.aws/credentials"],
    ),
    bad(
        "shared-config-files",
        "dev",
        "aws:sharedConfigFiles",
        "AWS_CONFIG_FILE",
        aws_sharedConfigFiles=["/home/ci/.aws/config"],
    ),
    bad(
        "role-chain",
        "dev",
        "aws:assumeRoles",
        "a shared-config profile",
        aws_assumeRoles=[{"roleArn": ROLE}, {"roleArn": ROLE_B}],
    ),
    bad(
        "role-session-policy",
        "dev",
        "aws:assumeRoles",
        "policyArns",
        aws_assumeRoles=[{"roleArn": ROLE, "policyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}],
    ),
    bad(
        "role-session-tags",
        "dev",
        "aws:assumeRoles",
        "tags",
        aws_assumeRoles=[{"roleArn": ROLE, "tags": {"team": "pki"}}],
    ),
    bad(
        "role-key-misspelt",
        "dev",
        "aws:assumeRoles",
        "did you mean roleArn",
        aws_assumeRoles=[{"rolearn": ROLE}],
    ),
    bad(
        "acmpca-endpoint-elsewhere",
        "local",
        "aws:endpoints",
        "acmpca",
        aws_endpoints=[{**LOCAL_ENDPOINTS, "acmpca": "http://127.0.0.1:5001"}],
    ),
    bad(
        "acmpca-endpoint-missing",
        "local",
        "aws:endpoints",
        "acmpca",
        aws_endpoints=[{key: url for key, url in LOCAL_ENDPOINTS.items() if key != "acmpca"}],
    ),
    bad(
        "sts-endpoint-elsewhere-with-role",
        "local",
        "aws:endpoints",
        "sts",
        aws_endpoints=[{**LOCAL_ENDPOINTS, "sts": "http://127.0.0.1:5001"}],
        aws_assumeRoles=[{"roleArn": ROLE}],
    ),
    bad("custom-ca-bundle", "dev", "aws:customCaBundle", "AWS_CA_BUNDLE", aws_customCaBundle="/etc/pki/corp.pem"),
    bad("fips-endpoints", "dev", "aws:useFipsEndpoint", "AWS_USE_FIPS_ENDPOINT", aws_useFipsEndpoint=True),
    bad("https-proxy", "dev", "aws:httpsProxy", "HTTPS_PROXY", aws_httpsProxy="http://proxy.internal:3128"),
    # --- types and sizes: refused by name, never a traceback, never a CN of ["..."] -----------------------------
    bad("ca-cn-list", "pki", "caCommonName", "must be a string", caCommonName=["Example Root"]),
    bad("ca-org-map", "pki", "caOrganization", "must be a string", caOrganization={"name": "Example"}),
    bad("instance-type-list", "dev", "instanceType", "must be a string", instanceType=["t3.micro"]),
    bad("prefix-list", "dev", "parameterPrefix", "must be a string", parameterPrefix=["/a", "/b"]),
    bad("host-count-arabic-digits", "dev", "hostCount", "whole number from 1 to 50", hostCount="\u0661\u0662"),
    bad("host-count-fullwidth-digits", "dev", "hostCount", "whole number from 1 to 50", hostCount="\uff12"),
    bad("host-count-superscript", "dev", "hostCount", "whole number from 1 to 50", hostCount="\u00b2"),
    bad("host-count-5000-digits", "dev", "hostCount", "whole number from 1 to 50", hostCount="9" * 5000),
    bad("validity-5000-digits", "dev", "certValidityDays", "from 0 to 3650", certValidityDays="-" + "9" * 5000),
    bad("vpc-id-5000", "dev", "vpcId", "characters long", vpcId="vpc-" + "0" * 5000),
    bad("region-list", "dev", "aws:region", "must be a string", aws_region=["us-east-1"]),
    bad("profile-list", "dev", "aws:profile", "must be a string", aws_profile=["deploy"]),
    bad("names-overflow-chain", "dev", "certNames", "8,192", certNames=MANY_NAMES),
    bad("names-overflow-csr", "dev", "certNames", "32,768", certNames=HUGE_NAMES),
    # --- AWS's own formats --------------------------------------------------------------------------------------
    bad("alb-domain-trailing-dot", "dev", "albDomainName", "no trailing dot", albDomainName="backend.dev.example.com."),
    bad("alb-domain-65", "dev", "albDomainName", "at most 64", albDomainName=f"{LONG_LABEL}.ab"),
    bad("prefix-16-levels", "dev", "parameterPrefix", "15 levels", parameterPrefix="/l" * 15),
    bad(
        "ingress-overlap",
        "dev",
        "albIngressCidrs",
        "inside 10.20.0.0/16",
        albIngressCidrs=["10.20.0.0/16", "10.20.1.0/24"],
    ),
    bad(
        "ingress-same-network-other-text",
        "dev",
        "albIngressCidrs",
        "the same network",
        albIngressCidrs=["fd00::/64", "fd00:0:0:0::/64"],
    ),
    bad(
        "ingress-world-and-more",
        "dev",
        "albIngressCidrs",
        "inside 0.0.0.0/0",
        albInternal=False,
        albIngressCidrs=["0.0.0.0/0", "10.0.0.0/8"],
    ),
    bad("ingress-loopback", "dev", "albIngressCidrs", "loopback", albIngressCidrs=["127.0.0.0/8"]),
    bad("ingress-link-local", "dev", "albIngressCidrs", "link-local", albIngressCidrs=["169.254.0.0/16"]),
    bad("ingress-multicast6", "dev", "albIngressCidrs", "multicast", albIngressCidrs=["ff00::/8"]),
    bad("network-multicast", "local", "networkCidr", "multicast", networkCidr="224.0.0.0/24"),
    bad("network-link-local", "local", "networkCidr", "link-local", networkCidr="169.254.0.0/24"),
    bad("network-loopback", "local", "networkCidr", "loopback", networkCidr="127.0.0.0/24"),
    bad("network-reserved", "local", "networkCidr", "reserved", networkCidr="240.0.0.0/24"),
    bad("health-dot-dot", "dev", "healthCheckPath", "use '/admin'", healthCheckPath="/healthz/../admin"),
    bad("health-double-slash", "dev", "healthCheckPath", "use '/healthz'", healthCheckPath="//healthz"),
    bad("health-dot", "dev", "healthCheckPath", "use '/healthz'", healthCheckPath="/./healthz"),
    bad("health-above-root", "dev", "healthCheckPath", "above the root", healthCheckPath="/../healthz"),
    # --- settings that do not apply to the stack's mode -----------------------------------------------------------
    bad("stack-mode-protect", "dev", "caProtect", "caMode is stack", caProtect=False),
    bad("stack-mode-crl", "dev", "caCrlEnabled", "caMode is stack", caCrlEnabled=True),
    bad("stack-mode-ca-name", "dev", "caCommonName", "caMode is stack", caCommonName="Dev CA"),
    bad("stack-mode-usage", "dev", "caUsageMode", "caMode is stack", caUsageMode="SHORT_LIVED_CERTIFICATE"),
    bad("stack-mode-years", "dev", "caValidityYears", "caMode is stack", caValidityYears=5),
    bad("stack-mode-acm", "dev", "caAcmPermission", "caMode is stack", caAcmPermission=True),
    bad("stack-mode-key", "dev", "caKeyAlgorithm", "caMode is stack", caKeyAlgorithm="EC_secp384r1"),
    bad(
        "crl-cname-without-crl",
        "local",
        "caCrlCustomCname",
        "caCrlEnabled is false",
        caCrlCustomCname="crl.example.com",
    ),
    bad("crl-days-without-crl", "local", "caCrlExpirationDays", "caCrlEnabled is false", caCrlExpirationDays=30),
    bad("pki-host-count", "pki", "hostCount", "backendEnabled is false", hostCount=3),
    bad("pki-cert-names", "pki", "certNames", "backendEnabled is false", certNames=["a.example.com"]),
    bad("pki-vpc", "pki", "vpcId", "backendEnabled is false", vpcId=VPC),
    bad("pki-listener", "pki", "albDomainName", "backendEnabled is false", albDomainName="api.example.com"),
    bad("pki-prefix", "pki", "parameterPrefix", "backendEnabled is false", parameterPrefix="/pki/tls"),
    bad("pki-endpoint", "pki", "awsEndpointUrl", "backendEnabled is false", awsEndpointUrl=LOCAL_URL),
    bad(
        "ami-parameter-with-ami-id",
        "dev",
        "amiParameter",
        "hostAmiId is set",
        hostAmiId="ami-0123456789abcdef0",
        amiParameter=ARM_AMI,
    ),
    # === issue 15: hostCertificates per-host =====================================================================
    # --- the mode itself ----------------------------------------------------------------------------------------
    bad("mode-unknown", "per-host", "hostCertificates", "allowed: shared, per-host", hostCertificates="perhost"),
    bad("mode-list", "per-host", "hostCertificates", "must be a string", hostCertificates=["per-host"]),
    bad("pki-mode", "pki", "hostCertificates", "backendEnabled is false", hostCertificates="per-host"),
    bad("pki-issuer", "pki", "issuerReservedConcurrency", "backendEnabled is false", issuerReservedConcurrency=5),
    # --- what the shared mode does not have: the issuer's settings ------------------------------------------------
    bad(
        "shared-issuer-concurrency",
        "dev",
        "issuerReservedConcurrency",
        "hostCertificates is shared",
        issuerReservedConcurrency=20,
    ),
    bad("shared-issuer-logs", "dev", "issuerLogRetentionDays", "hostCertificates is shared", issuerLogRetentionDays=30),
    # --- what the per-host mode does not have: the shared certificate, its provider and its parameters ----------
    bad("per-host-cn", "per-host", "certCommonName", "its own EC2 name", certCommonName="backend.example.com"),
    bad("per-host-renew-before", "per-host", "certRenewBeforeDays", "a third of its life", certRenewBeforeDays=2),
    bad(
        "per-host-throttle",
        "per-host",
        "certThrottleRetryMinutes",
        "this stack is per-host",
        certThrottleRetryMinutes=5,
    ),
    bad(
        "per-host-kms-key",
        "per-host",
        "parameterKmsKeyArn",
        "no key material goes through SSM",
        parameterKmsKeyArn=KMS_ARN,
    ),
    bad("per-host-writers", "per-host", "parameterWriterArns", "this stack is per-host", parameterWriterArns=[ROLE]),
    bad("per-host-prefix", "per-host", "parameterPrefix", "this stack is per-host", parameterPrefix="/team/app"),
    bad("per-host-endpoint", "per-host", "awsEndpointUrl", "no certificate provider", awsEndpointUrl=LOCAL_URL),
    # --- certNames: fleet-wide service names every host may carry -------------------------------------------------
    bad(
        "service-name-ip",
        "per-host",
        "certNames",
        "is an IP address, which belongs to one host",
        certNames=["10.40.0.5"],
    ),
    bad("service-name-wildcard", "per-host", "certNames", "without a wildcard", certNames=["*.internal.example.com"]),
    bad(
        "service-name-ec2", "per-host", "certNames", "is an EC2 instance name", certNames=["ip-10-40-0-5.ec2.internal"]
    ),
    bad(
        "service-name-compute",
        "per-host",
        "certNames",
        "impersonate that instance",
        certNames=["ip-10-40-0-5.eu-west-1.compute.internal"],
    ),
    bad("service-name-dot", "per-host", "certNames", "ends with a dot", certNames=["api.internal.example."]),
    bad("service-name-one-label", "per-host", "certNames", "two labels or more", certNames=["backend"]),
    bad(
        "service-names-overflow",
        "per-host",
        "certNames",
        "the per-host issuer reads at most 16,384",
        certNames=HUGE_NAMES[:100],
    ),
    # --- each host's certificate and the alarm inside the hosts' renewal window ----------------------------------
    bad("per-host-days-3", "per-host", "certValidityDays", "at least 4", certValidityDays=3),
    bad("per-host-days-short-lived", "per-host", "certValidityDays", "at most 7 days", certValidityDays=8),
    bad("per-host-days-366", "per-host", "certValidityDays", "from 0 to 365", certValidityDays=366),
    bad("per-host-alarm-outside", "per-host", "certExpiryAlarmDays", "hosts' renewal window", certExpiryAlarmDays=3),
    bad(
        "per-host-alarm-at-window",
        "per-host",
        "certExpiryAlarmDays",
        "a third of certValidityDays: 10.0 days",
        caUsageMode="GENERAL_PURPOSE",
        certValidityDays=30,
        certExpiryAlarmDays=10,
    ),
    bad("per-host-key-ed25519", "per-host", "certKeyAlgorithm", "allowed: EC_prime256v1", certKeyAlgorithm="ED25519"),
    bad(
        "per-host-template-ca",
        "per-host",
        "certTemplate",
        "use an end-entity template",
        certTemplate="RootCACertificate/V1",
    ),
    # --- the issuer ------------------------------------------------------------------------------------------------
    bad("issuer-concurrency-0", "per-host", "issuerReservedConcurrency", "from 1 to 900", issuerReservedConcurrency=0),
    bad(
        "issuer-concurrency-901",
        "per-host",
        "issuerReservedConcurrency",
        "from 1 to 900",
        issuerReservedConcurrency=901,
    ),
    bad(
        "issuer-concurrency-word",
        "per-host",
        "issuerReservedConcurrency",
        "whole number from 1 to 900",
        issuerReservedConcurrency="ten",
    ),
    bad("issuer-logs-2", "per-host", "issuerLogRetentionDays", "one of 1, 3, 5, 7", issuerLogRetentionDays=2),
    bad("issuer-logs-4000", "per-host", "issuerLogRetentionDays", "from 1 to 3653", issuerLogRetentionDays=4000),
]


def run_program_keeping_resources(
    stack: str, overrides: dict[str, Any], mocks: Callable[[StackRun], _Mocks] = _Mocks
) -> tuple[StackRun, BaseException | None]:
    """Run `__main__.py` as `tests.stack_harness.run_stack` does, but keep what was registered when it raises;
    `mocks` answers as AWS and the referenced stacks would."""
    config = stack_config(stack, overrides)
    run = StackRun(stack=stack, config=config)
    pulumi.runtime.set_all_config({key: _config_value(value) for key, value in config.items()})

    async def main() -> None:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    sys.path.insert(0, str(ROOT))
    try:
        run_under_mocks(main, mocks(run), project=PROJECT, stack=stack)
    except Exception as error:  # handed to the test, which says what it expected
        return run, error
    finally:
        sys.path.remove(str(ROOT))
    return run, None


def test_the_sweep_is_wide_and_its_cases_distinct() -> None:
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES), "case ids repeat"
    settings = {(case.stack, repr(sorted(case.overrides.items()))) for case in CASES}
    assert len(settings) == len(CASES), "two cases try the same bad settings"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_setting_is_refused_before_any_resource(case: Case) -> None:
    run, error = run_program_keeping_resources(case.stack, case.overrides)
    assert run.resources == [], f"{case.id}: registered {[r.urn for r in run.resources]} before refusing"
    assert isinstance(error, SettingsError), f"{case.id}: expected SettingsError, got {error!r}"
    # Pulumi prints a RunError as its message alone: no traceback, no program text around the list of problems.
    assert isinstance(error, pulumi.RunError), f"{case.id}: {type(error).__mro__} is not a pulumi.RunError"
    mine = [problem for problem in error.problems if problem.startswith(f"{case.setting}: ")]
    assert mine, f"{case.id}: no problem names {case.setting}: {error.problems}"
    assert any(case.allowed in problem for problem in mine), f"{case.id}: {mine} does not say {case.allowed!r}"
    assert str(error).startswith("invalid stack configuration:")
    # A value of kilobytes is cut in messages, never repeated whole.
    assert all(len(problem) < 700 for problem in error.problems), f"{case.id}: {max(map(len, error.problems))} chars"


@pytest.mark.parametrize("stack", ["dev", "local", "per-host"])
def test_the_unchanged_stack_files_register_resources(stack: str) -> None:
    """The control: the same runner records resources for good stack files, so an empty list above means the
    program stopped at the settings, not that nothing is ever recorded."""
    run, error = run_program_keeping_resources(stack, {})
    assert error is None, f"{stack}: {error!r}"
    assert len(run.resources) > 5, f"{stack}: the runner recorded {len(run.resources)} resources"


def test_unknown_keys_are_all_sweep_keys_that_are_not_settings() -> None:
    unknown = {case.setting for case in CASES if case.id.startswith("unknown-")}
    assert not unknown & set(CONFIG_KEYS)


def test_pulumi_prints_the_list_of_problems_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Pulumi's Python language host (`pulumi-language-python-exec`) does with what the program raises: a
    `pulumi.RunError` is logged as its message alone; any other exception as its traceback, with the program's
    text, which buries the problems. The settings error takes the first branch."""
    logged: list[str] = []
    monkeypatch.setattr(pulumi.log, "error", lambda message, *args, **kwargs: logged.append(message))
    run, error = run_program_keeping_resources("dev", {f"{PROJECT}:hostCount": 0, f"{PROJECT}:vpcId": "vpc-1"})
    assert error is not None
    assert run.resources == []
    try:
        raise error
    except pulumi.RunError as raised:  # the language host's own two branches
        pulumi.log.error(str(raised))
    except Exception:
        pulumi.log.error(traceback.format_exc())
    assert len(logged) == 1
    assert logged[0].startswith("invalid stack configuration:\n  - ")
    assert "hostCount: must be from 1 to 50, got 0" in logged[0]
    assert "vpcId: 'vpc-1' is not a VPC ID" in logged[0]
    assert "Traceback" not in logged[0]
