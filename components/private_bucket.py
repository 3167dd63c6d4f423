"""What makes an S3 bucket of this program private: every public access blocked, ACLs disabled, and its policy.

The CA's CRL bucket (`components/private_ca.py`) and the fleet's host-payload bucket (`components/host_fleet.py`)
are both private; the policy pack holds every bucket of a stack to the same guards.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

__all__ = ["deny_insecure_transport", "private_bucket_guards"]


def deny_insecure_transport(bucket_arn: str) -> dict[str, Any]:
    """The bucket policy statement that refuses every request to the bucket and its objects not made over TLS
    (`aws:SecureTransport` is false for a plain-HTTP request):
    https://repost.aws/knowledge-center/s3-bucket-policy-for-config-rule"""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def private_bucket_guards(prefix: str, bucket: aws.s3.Bucket, policy: pulumi.Input[str]) -> list[pulumi.Resource]:
    """The public access block (all four flags), ownership controls (BucketOwnerEnforced: the bucket owner owns
    every object, access is IAM and the bucket policy only) and `policy` of `bucket`, as its children named
    `<prefix>-public-access-block`, `<prefix>-ownership` and `<prefix>-policy`. The policy waits for the block, so
    it is never in place while public access is still possible. Returns them: what must exist before the bucket
    is used. https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html
    """
    under_bucket = pulumi.ResourceOptions(parent=bucket)
    public_access_block = aws.s3.BucketPublicAccessBlock(
        f"{prefix}-public-access-block",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=under_bucket,
    )
    ownership = aws.s3.BucketOwnershipControls(
        f"{prefix}-ownership",
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=under_bucket,
    )
    bucket_policy = aws.s3.BucketPolicy(
        f"{prefix}-policy",
        bucket=bucket.id,
        policy=policy,
        opts=pulumi.ResourceOptions(parent=bucket, depends_on=[public_access_block]),
    )
    return [public_access_block, ownership, bucket_policy]
