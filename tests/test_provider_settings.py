"""The settings that reach the certificate provider: the stack's AWS identity and the throttling budget.

The provider must issue as the rest of the stack deploys (`aws:profile`, the first `aws:assumeRoles` entry), and
only names and ARNs reach it: never a credential.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pulumi.runtime import settings as pulumi_settings

from components.settings import AwsIdentity, SettingsError, parse_settings
from tests.stack_harness import CERTIFICATE_TYPE, run_stack

ACM_ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/0123abcd-0000-0000-0000-000000000000"
BACKEND: dict[str, Any] = {
    "vpcId": "vpc-0123456789abcdef0",
    "albSubnetIds": ["subnet-0a0a0a0a", "subnet-0b0b0b0b"],
    "hostSubnetIds": ["subnet-0c0c0c0c"],
    "albIngressCidrs": ["10.0.0.0/16"],
    "albCertificateArn": ACM_ARN,
    # Who writes the TLS parameters (a stack that creates their key names them; see test_program.py).
    "parameterWriterArns": ["arn:aws:iam::123456789012:role/deploy"],
}
ROLE = {
    "roleArn": "arn:aws:iam::111122223333:role/certificate-issuer",
    "sessionName": "pulumi-dev",
    "externalId": "pki-shared-ca",
}


def parse(aws: dict[str, Any] | None = None, **raw: Any) -> Any:
    return parse_settings({**BACKEND, **raw}, stack="dev", project="pca-backend", region="eu-west-1", aws=aws)


def test_no_aws_identity_means_the_default_chain() -> None:
    assert parse().aws_identity == AwsIdentity()
    assert parse({"profile": None, "assumeRoles": None}).aws_identity == AwsIdentity()


def test_profile_and_first_role_become_the_identity() -> None:
    identity = parse({"profile": "deploy", "assumeRoles": [ROLE]}).aws_identity
    assert identity == AwsIdentity("deploy", ROLE["roleArn"], "pulumi-dev", "pki-shared-ca")


def test_a_role_chain_is_refused_with_what_to_do_instead() -> None:
    """The certificate provider assumes one role: with a chain it would issue as another identity than the stack
    deploys as (issue 14). A shared-config profile holds a chain both providers follow."""
    second = {"roleArn": "arn:aws:iam::444455556666:role/next"}
    with pytest.raises(SettingsError) as caught:
        parse({"assumeRoles": [ROLE, second]})
    (problem,) = caught.value.problems
    assert problem.startswith("aws:assumeRoles: has 2 entries (a role chain)")
    assert "aws:profile" in problem


@pytest.mark.parametrize(
    "roles", [[{"roleArn": "not-an-arn"}], [{"sessionName": "x"}], "arn:aws:iam::111122223333:role/x", [["x"]]]
)
def test_a_bad_assume_roles_setting_is_refused_by_name(roles: Any) -> None:
    with pytest.raises(SettingsError) as caught:
        parse({"assumeRoles": roles})
    assert any(problem.startswith("aws:assumeRoles:") for problem in caught.value.problems)


def test_throttle_budget_setting() -> None:
    assert parse().certificate.throttle_retry_minutes == 10
    assert parse(certThrottleRetryMinutes="30").certificate.throttle_retry_minutes == 30
    for bad in (0, 121, "soon"):
        with pytest.raises(SettingsError) as caught:
            parse(certThrottleRetryMinutes=bad)
        assert any(problem.startswith("certThrottleRetryMinutes:") for problem in caught.value.problems)


@pytest.fixture
def clean_mocks() -> Iterator[None]:
    yield
    pulumi_settings.ROOT.set(None)


def test_the_program_passes_the_stacks_identity_to_the_certificate(clean_mocks: None) -> None:
    run = run_stack(
        "dev",
        {"aws:profile": "deploy", "aws:assumeRoles": [ROLE], "pca-backend:certThrottleRetryMinutes": 30},
    )
    inputs = run.one(CERTIFICATE_TYPE).inputs
    assert inputs["profile"] == "deploy"
    assert inputs["assume_role_arn"] == ROLE["roleArn"]
    assert inputs["assume_role_session_name"] == "pulumi-dev"
    assert inputs["assume_role_external_id"] == "pki-shared-ca"
    assert inputs["throttle_retry_minutes"] == 30
    assert not any("secret" in key or "access_key" in key for key in inputs)
