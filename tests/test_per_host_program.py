"""The real `__main__.py` in the per-host mode (`hostCertificates: per-host`) under Pulumi mocks: the shipped
`per-host` stack (its own SHORT_LIVED_CERTIFICATE subordinate) and `dev` moved to the mode (the pki stack's CA).

What every stack is held to (the outputs contract, the policy pack, the no-clock rule, hardened hosts, the alarm
inside the renewal window) is tests/test_program.py, which runs the `per-host` stack too; here is what only the
per-host mode promises: an issuer behind a function URL with AWS_IAM auth that only the host role may invoke, a
least-privilege issuer role, hosts that read no parameter and no key, no Certificate resource, the group's name known
to the issuer and the group waiting for it, the agent and the issuer's URL in the payload, and a preview that plans
while the URLs and ARNs are unknown.
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import pytest
from pulumi.runtime import settings as pulumi_settings

from components import x509
from components.host_agent import AGENT_CONFIG_PATH, AGENT_PATH
from components.issuer import contract
from tests.stack_harness import (
    CERTIFICATE_TYPE,
    MOCK_PRIVATE_KEY,
    PKI_CA_ARN,
    PKI_ROOT_PEM,
    PROJECT,
    RecordingMocks,
    Registration,
    StackRun,
    _Mocks,
    run_stack,
)
from tests.test_program import _recorded, check_resources

#: `dev` (caMode stack: the pki stack's general-purpose root) moved to the per-host mode: its SSM writers go.
DEV_PER_HOST = {f"{PROJECT}:hostCertificates": "per-host", f"{PROJECT}:parameterWriterArns": []}
CASES = {"per-host": ("per-host", {}), "dev-per-host": ("dev", DEV_PER_HOST)}


@functools.cache
def _cached(case: str) -> StackRun:
    stack, overrides = CASES[case]
    try:
        return run_stack(stack, overrides)
    finally:
        pulumi_settings.ROOT.set(None)


@pytest.fixture(params=sorted(CASES))
def run(request: pytest.FixtureRequest) -> StackRun:
    return _cached(request.param)


def _named(run: StackRun, type_: str, name: str) -> Registration:
    (found,) = [resource for resource in run.of_type(type_) if resource.name == name]
    return found


def _host_role_arn(run: StackRun) -> str:
    return str(_named(run, "aws:iam/role:Role", "backend-host-role").outputs["arn"])


def _statements(run: StackRun, policy_name: str) -> list[dict[str, Any]]:
    policy = _named(run, "aws:iam/rolePolicy:RolePolicy", policy_name)
    return list(json.loads(policy.inputs["policy"])["Statement"])


def _ca_arn(run: StackRun) -> str:
    if run.stack == "dev":
        return PKI_CA_ARN
    return str(run.one("aws:acmpca/certificateAuthority:CertificateAuthority").outputs["arn"])


def test_the_issuer_is_a_function_behind_a_url_with_aws_iam_auth(run: StackRun) -> None:
    function = run.one("aws:lambda/function:Function")
    url = run.one("aws:lambda/functionUrl:FunctionUrl")
    assert url.inputs["authorizationType"] == "AWS_IAM", url.urn
    assert url.inputs["functionName"] == function.outputs["name"], url.urn
    assert run.outputs["issuerFunctionUrl"] == url.outputs["functionUrl"]
    assert run.outputs["issuerFunctionName"] == function.outputs["name"]
    assert run.outputs["issuerLogGroupName"] == run.one("aws:cloudwatch/logGroup:LogGroup").outputs["name"]
    # The stack's settings: the issuer's defaults here.
    assert function.inputs["reservedConcurrentExecutions"] == 10, function.urn
    assert run.one("aws:cloudwatch/logGroup:LogGroup").inputs["retentionInDays"] == 365


def test_only_the_host_role_may_invoke_and_only_through_the_url(run: StackRun) -> None:
    permissions = {p.inputs["action"]: p for p in run.of_type("aws:lambda/permission:Permission")}
    assert set(permissions) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}, run.stack
    for permission in permissions.values():
        assert permission.inputs["principal"] == _host_role_arn(run), permission.urn
    assert permissions["lambda:InvokeFunctionUrl"].inputs["functionUrlAuthType"] == "AWS_IAM"
    assert permissions["lambda:InvokeFunction"].inputs["invokedViaFunctionUrl"] is True


def test_the_issuers_role_issues_with_the_stacks_template_from_the_stacks_ca_only(run: StackRun) -> None:
    statements = {s["Sid"]: s for s in _statements(run, "backend-issuer-policy")}
    assert set(statements) == {
        "IssueWithTheFleetTemplateOnly",
        "ReadIssuedCertificatesAndTheCa",
        "DescribeTheCallingInstance",
        "WriteItsOwnLogs",
    }, run.stack
    issue = statements["IssueWithTheFleetTemplateOnly"]
    assert (issue["Action"], issue["Resource"]) == ("acm-pca:IssueCertificate", _ca_arn(run))
    template = "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1"
    assert issue["Condition"] == {"StringEquals": {"acm-pca:TemplateArn": template}}
    assert statements["ReadIssuedCertificatesAndTheCa"]["Resource"] == _ca_arn(run)
    environment = run.one("aws:lambda/function:Function").inputs["environment"]["variables"]
    assert (environment[contract.ENV_TEMPLATE_ARN], environment[contract.ENV_CA_ARN]) == (template, _ca_arn(run))
    # The stack's certValidityDays (dev: 30), else a week, the per-host mode's default.
    assert environment[contract.ENV_VALIDITY_DAYS] == str(run.config[f"{PROJECT}:certValidityDays"] or 7)
    assert json.loads(environment[contract.ENV_SERVICE_NAMES]) == run.config[f"{PROJECT}:certNames"]


def test_the_hosts_read_no_parameter_and_no_key(run: StackRun) -> None:
    assert [s["Sid"] for s in _statements(run, "backend-host-policy")] == [
        "ReadHostPayloads",
        "ReportCertificateDays",
        "SessionManager",
    ], run.stack
    assert not run.of_type("aws:ssm/parameter:Parameter"), "no private-key parameter (no parameter at all)"
    assert not run.of_type("aws:kms/key:Key"), "no KMS key"
    assert not run.of_type(CERTIFICATE_TYPE), "no Certificate resource: each host asks the issuer"
    everything = json.dumps([resource.inputs for resource in run.resources], default=str)
    assert MOCK_PRIVATE_KEY not in everything
    assert "PRIVATE KEY-----" not in everything, "no key material in any input"
    assert not {"certificateArn", "certificatePem", "parameterNames"} & set(run.outputs)


def test_the_group_has_the_name_the_issuer_admits_and_waits_for_the_issuer(run: StackRun) -> None:
    group = run.one("aws:autoscaling/group:Group")
    name = f"pca-backend-pca-backend-{run.stack}"
    assert group.inputs["name"] == name == run.outputs["autoScalingGroupName"], group.urn
    environment = run.one("aws:lambda/function:Function").inputs["environment"]["variables"]
    assert environment[contract.ENV_AUTO_SCALING_GROUP] == name
    assert environment[contract.ENV_HOST_ROLE_ARN] == _host_role_arn(run)
    issuer = run.one("pca-backend:index:PerHostIssuer")
    children = {resource.urn for resource in run.resources if resource.parent == issuer.urn}
    assert children <= set(group.dependencies), f"{group.urn} must wait for the whole issuer"


def test_the_payload_carries_the_agent_and_the_issuers_url(run: StackRun) -> None:
    content = run.one("aws:s3/bucketObjectv2:BucketObjectv2").inputs["content"]
    assert f"cat >{AGENT_PATH} <<" in content
    config = json.loads(content.split(f"cat >{AGENT_CONFIG_PATH} <<'", 1)[1].split("\n", 1)[1].split("\n}\n")[0] + "}")
    assert config["issuer_url"] == run.outputs["issuerFunctionUrl"]
    assert config["service_names"] == run.config[f"{PROJECT}:certNames"]
    assert config["key_algorithm"] == run.config[f"{PROJECT}:certKeyAlgorithm"]
    assert config["metric_backend"] == f"pca-backend-{run.stack}"
    user_data = base64.b64decode(run.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"]).decode()
    assert "lambda-url" not in user_data, "the URL is in the payload; the launch template pins its digest"


def test_the_policy_pack_passes(run: StackRun) -> None:
    assert check_resources(_recorded(run)) == [], run.stack


class _PreviewMocks(_Mocks):
    """A first `pulumi preview`: AWS has computed nothing yet, so every output but the inputs is unknown (the pki
    stack's outputs and the invokes are known: the engine reads them before the program runs)."""

    def answer_resource(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        if typ == "pulumi:pulumi:StackReference":
            return super().answer_resource(typ, name, inputs)
        return None, dict(inputs)


def _unknown(value: Any) -> bool:
    return type(value).__name__ == "Unknown"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_first_preview_plans_while_urls_and_arns_are_unknown(case: str) -> None:
    stack, overrides = CASES[case]
    mocks: type[RecordingMocks] = _PreviewMocks
    try:
        run = run_stack(stack, overrides, mocks=mocks, preview=True)
    finally:
        pulumi_settings.ROOT.set(None)
    payload = run.one("aws:s3/bucketObjectv2:BucketObjectv2")
    assert _unknown(payload.inputs["content"]), "the agent's configuration waits for the function URL"
    assert _unknown(run.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"])
    # What is known is planned as it will be: the group's name, the issuer's settings, the URL's auth type.
    assert run.one("aws:autoscaling/group:Group").inputs["name"] == f"pca-backend-pca-backend-{stack}"
    assert run.one("aws:lambda/functionUrl:FunctionUrl").inputs["authorizationType"] == "AWS_IAM"
    environment = run.one("aws:lambda/function:Function").inputs["environment"]["variables"]
    assert environment[contract.ENV_AUTO_SCALING_GROUP] == f"pca-backend-pca-backend-{stack}"
    for permission in run.of_type("aws:lambda/permission:Permission"):
        assert _unknown(permission.inputs["principal"]), "the host role's ARN is not known yet"
    assert not run.of_type(CERTIFICATE_TYPE)


def test_the_dev_stack_moved_to_the_mode_pins_the_pki_root() -> None:
    run = _cached("dev-per-host")
    user_data = base64.b64decode(run.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"]).decode()

    for pin in x509.sha256_fingerprints(PKI_ROOT_PEM):
        assert f"\n{pin}\n" in user_data
