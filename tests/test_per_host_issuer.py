"""The PerHostIssuer component under Pulumi mocks (no AWS, no Pulumi CLI): the function and its code, its URL
with AWS_IAM auth, invoke permissions for the host role only, a least-privilege role, its log group; arguments
checked before anything is created."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pulumi
import pytest

from components import per_host_issuer
from components.issuer import contract
from components.per_host_issuer import HANDLER, RUNTIME, PerHostIssuer, PerHostIssuerArgs, handler_files
from tests.stack_harness import RecordingMocks, StackRun, run_under_mocks

ACCOUNT = "123456789012"
REGION = "eu-west-1"
CA_ARN = f"arn:aws:acm-pca:{REGION}:{ACCOUNT}:certificate-authority/11111111-2222-3333-4444-555555555555"
HOST_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/pca-backend/dev-host-role"
LOG_GROUP = "/aws/lambda/pca-backend-issuer-20261207"
LOG_GROUP_ARN = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{LOG_GROUP}"
FUNCTION_URL = "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws/"
SERVER_AUTH_TEMPLATE = "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1"
FUNCTION = "aws:lambda/function:Function"
PERMISSION = "aws:lambda/permission:Permission"


class _Mocks(RecordingMocks):
    """What AWS answers for the component's resources: ARNs, the log group's generated name, the URL."""

    def answer_resource(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        outputs = {**inputs}
        if typ == "aws:cloudwatch/logGroup:LogGroup":
            outputs.update(name=LOG_GROUP, arn=LOG_GROUP_ARN)
        elif typ == "aws:iam/role:Role":
            outputs["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{name}-1a2b3c"
        elif typ == FUNCTION:
            outputs.update(name=f"{name}-1a2b3c", arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}-1a2b3c")
        elif typ == "aws:lambda/functionUrl:FunctionUrl":
            outputs["functionUrl"] = FUNCTION_URL
        return f"{name}_id", outputs


def _args(**changes: Any) -> PerHostIssuerArgs:
    args: dict[str, Any] = {
        "ca_arn": CA_ARN,
        "validity_days": 7,
        "ca_usage_mode": "SHORT_LIVED_CERTIFICATE",
        "host_role_arn": HOST_ROLE_ARN,
        "auto_scaling_group_name": "pca-backend-dev-hosts",
        "service_names": ["api.internal.example", "API.internal.example"],
        "region": REGION,
        "tags": {"team": "platform"},
    }
    args.update(changes)
    return {key: value for key, value in args.items() if value is not None}  # type: ignore[return-value]


@pytest.fixture
def deploy() -> Callable[..., StackRun]:
    """`deploy(args)` runs a program with one PerHostIssuer named `issuer` and resolves its outputs."""

    def run(args: PerHostIssuerArgs) -> StackRun:
        recorded = StackRun(stack="test", config={})

        async def program() -> None:
            issuer = PerHostIssuer("issuer", args)
            for output in ("function_url", "function_arn", "function_name", "log_group_name"):
                recorded.outputs[output] = await getattr(issuer, output).future()
            await issuer.urn.future()

        run_under_mocks(program, _Mocks(recorded))
        return recorded

    return run


def _policy(run: StackRun) -> dict[str, Any]:
    return json.loads(run.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])


def _statement(run: StackRun, sid: str) -> dict[str, Any]:
    return next(statement for statement in _policy(run)["Statement"] if statement["Sid"] == sid)


# --- what is deployed -----------------------------------------------------------------------------------------------


def test_the_function_runs_the_issuer_package_on_python_3_13(deploy: Callable[..., StackRun]) -> None:
    run = deploy(_args())
    function = run.one(FUNCTION)
    assert (function.inputs["runtime"], function.inputs["handler"]) == (RUNTIME, HANDLER) == ("python3.13", HANDLER)
    assert function.inputs["architectures"] == ["arm64"]
    assert function.inputs["reservedConcurrentExecutions"] == 10
    assert function.inputs["timeout"] == 30
    code = function.inputs["code"]
    assert isinstance(code, pulumi.AssetArchive), function.urn
    assert {path: getattr(asset, "text", None) for path, asset in code.assets.items()} == handler_files()
    assert set(handler_files()) >= {"issuer/__init__.py", "issuer/handler.py", "issuer/csr.py", "issuer/der.py"}
    component = run.one("pca-backend:index:PerHostIssuer")
    assert all(resource.parent == component.urn for resource in run.resources if resource is not component)


def test_the_function_is_configured_through_its_environment(deploy: Callable[..., StackRun]) -> None:
    variables = deploy(_args(signing_algorithm="SHA384WITHECDSA")).one(FUNCTION).inputs["environment"]["variables"]
    assert variables == {
        contract.ENV_CA_ARN: CA_ARN,
        contract.ENV_TEMPLATE_ARN: SERVER_AUTH_TEMPLATE,
        contract.ENV_VALIDITY_DAYS: "7",
        contract.ENV_HOST_ROLE_ARN: HOST_ROLE_ARN,
        contract.ENV_AUTO_SCALING_GROUP: "pca-backend-dev-hosts",
        contract.ENV_SERVICE_NAMES: '["api.internal.example"]',
        contract.ENV_SIGNING_ALGORITHM: "SHA384WITHECDSA",
    }
    default = deploy(_args()).one(FUNCTION).inputs["environment"]["variables"]
    assert contract.ENV_SIGNING_ALGORITHM not in default, "without one, the function reads the CA's"


def test_the_environment_the_component_writes_is_what_the_handler_reads(deploy: Callable[..., StackRun]) -> None:
    from components.issuer.handler import IssuerConfig

    variables = deploy(_args(template_arn="EndEntityCertificate/V1")).one(FUNCTION).inputs["environment"]["variables"]
    config = IssuerConfig.from_environment(variables)
    assert config.template_arn == "arn:aws:acm-pca:::template/EndEntityCertificate/V1"
    assert (config.host_role.name, config.auto_scaling_group, config.validity_days) == (
        "dev-host-role",
        "pca-backend-dev-hosts",
        7,
    )
    assert config.service_names == {"api.internal.example"}


def test_the_url_uses_aws_iam_auth_and_is_an_output(deploy: Callable[..., StackRun]) -> None:
    run = deploy(_args())
    url = run.one("aws:lambda/functionUrl:FunctionUrl")
    assert url.inputs["authorizationType"] == "AWS_IAM"
    assert url.inputs["functionName"] == "issuer-function-1a2b3c"
    assert run.outputs == {
        "function_url": FUNCTION_URL,
        "function_arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:issuer-function-1a2b3c",
        "function_name": "issuer-function-1a2b3c",
        "log_group_name": LOG_GROUP,
    }


def test_only_the_host_role_may_invoke_and_only_through_the_url(deploy: Callable[..., StackRun]) -> None:
    permissions = {permission.inputs["action"]: permission.inputs for permission in deploy(_args()).of_type(PERMISSION)}
    assert set(permissions) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    for inputs in permissions.values():
        assert inputs["principal"] == HOST_ROLE_ARN
        assert inputs["function"] == "issuer-function-1a2b3c"
        assert "sourceAccount" not in inputs
        assert "principalOrgId" not in inputs
    assert permissions["lambda:InvokeFunctionUrl"]["functionUrlAuthType"] == "AWS_IAM"
    assert permissions["lambda:InvokeFunction"]["invokedViaFunctionUrl"] is True


def test_the_role_may_issue_with_the_configured_template_only(deploy: Callable[..., StackRun]) -> None:
    run = deploy(_args())
    statement = _statement(run, "IssueWithTheFleetTemplateOnly")
    assert statement == {
        "Sid": "IssueWithTheFleetTemplateOnly",
        "Effect": "Allow",
        "Action": "acm-pca:IssueCertificate",
        "Resource": CA_ARN,
        "Condition": {"StringEquals": {"acm-pca:TemplateArn": SERVER_AUTH_TEMPLATE}},
    }


def test_the_role_is_least_privilege(deploy: Callable[..., StackRun]) -> None:
    run = deploy(_args())
    policy = _policy(run)
    granted = {
        (action, statement["Resource"])
        for statement in policy["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    assert granted == {
        ("acm-pca:IssueCertificate", CA_ARN),
        ("acm-pca:GetCertificate", CA_ARN),
        ("acm-pca:DescribeCertificateAuthority", CA_ARN),
        ("ec2:DescribeInstances", "*"),
        ("ec2:DescribeVpcs", "*"),
        ("ec2:DescribeDhcpOptions", "*"),
        ("logs:CreateLogStream", f"{LOG_GROUP_ARN}:*"),
        ("logs:PutLogEvents", f"{LOG_GROUP_ARN}:*"),
    }
    assert all(statement["Effect"] == "Allow" for statement in policy["Statement"])
    describe = _statement(run, "DescribeTheCallingInstance")
    assert describe["Condition"] == {"StringEquals": {"aws:RequestedRegion": REGION}}
    trust = json.loads(run.one("aws:iam/role:Role").inputs["assumeRolePolicy"])
    assert trust["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    assert not run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"), "no managed policy"


def test_the_function_logs_to_its_own_group_with_a_retention(deploy: Callable[..., StackRun]) -> None:
    run = deploy(_args(log_retention_days=90))
    group = run.one("aws:cloudwatch/logGroup:LogGroup")
    assert group.inputs["retentionInDays"] == 90
    assert group.inputs["namePrefix"] == "/aws/lambda/pca-backend-issuer-"
    logging_config = run.one(FUNCTION).inputs["loggingConfig"]
    assert logging_config["logGroup"] == LOG_GROUP
    assert logging_config["logFormat"] == "JSON"
    assert deploy(_args()).one("aws:cloudwatch/logGroup:LogGroup").inputs["retentionInDays"] == 365


def test_the_function_waits_for_its_permissions(deploy: Callable[..., StackRun]) -> None:
    run = deploy(_args())
    assert run.one("aws:iam/rolePolicy:RolePolicy").urn in run.one(FUNCTION).dependencies


def test_reserved_concurrency_and_timeout_are_configurable(deploy: Callable[..., StackRun]) -> None:
    function = deploy(_args(reserved_concurrency=3, timeout_seconds=60)).one(FUNCTION)
    assert (function.inputs["reservedConcurrentExecutions"], function.inputs["timeout"]) == (3, 60)


def test_every_taggable_resource_carries_the_tags(deploy: Callable[..., StackRun]) -> None:
    run = deploy(_args())
    taggable = [
        r for r in run.resources if r.type_ in (FUNCTION, "aws:iam/role:Role", "aws:cloudwatch/logGroup:LogGroup")
    ]
    assert len(taggable) == 3
    for resource in taggable:
        assert resource.inputs["tags"] == {"team": "platform", "Name": resource.name}, resource.urn


def test_unknown_inputs_at_preview_do_not_break_the_component() -> None:
    """At preview the host role (created in the same program) and a StackReference's CA are unknown: everything is
    still registered, with the values that depend on them unknown."""
    recorded = StackRun(stack="test", config={})

    async def program() -> None:
        loop = asyncio.get_running_loop()
        value, known = loop.create_future(), loop.create_future()
        value.set_result(None)
        known.set_result(False)
        unknown: pulumi.Output[str] = pulumi.Output(set(), value, known)
        issuer = PerHostIssuer("issuer", _args(ca_arn=unknown, host_role_arn=unknown))
        await issuer.urn.future()

    run_under_mocks(program, _Mocks(recorded))
    assert len(recorded.of_type(PERMISSION)) == 2
    assert all("principal" not in permission.inputs for permission in recorded.of_type(PERMISSION))
    assert "policy" not in recorded.one("aws:iam/rolePolicy:RolePolicy").inputs
    variables = recorded.one(FUNCTION).inputs["environment"]["variables"]
    assert contract.ENV_CA_ARN not in variables
    assert variables[contract.ENV_AUTO_SCALING_GROUP] == "pca-backend-dev-hosts"


# --- the code archive ------------------------------------------------------------------------------------------------


def test_the_same_code_gives_the_same_archive_and_changed_code_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = handler_files(), handler_files()
    assert first == second
    copy = tmp_path / "issuer"
    copy.mkdir()
    for path, text in first.items():
        (copy / Path(path).name).write_text(text.replace("\n", "\r\n"), encoding="utf-8", newline="")
    (copy / "notes.txt").write_text("not code")
    monkeypatch.setattr(per_host_issuer, "_HANDLER_PACKAGE", copy)
    assert handler_files() == first, "CRLF checkouts and non-Python files change nothing"
    (copy / "handler.py").write_text(first["issuer/handler.py"] + "# changed\n")
    assert handler_files() != first


def test_the_archive_holds_the_issuer_package_only() -> None:
    """Its modules only (what they may import is checked by running them: see the last test)."""
    paths = handler_files()
    assert all(path.startswith("issuer/") and path.endswith(".py") and path.count("/") == 1 for path in paths)


# --- validation -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"ca_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/x"}, "ca_arn must be an ACM PCA"),
        ({"template_arn": "RootCACertificate/V1"}, "template_arn"),
        ({"template_arn": "not a template"}, "template_arn"),
        ({"validity_days": 0}, "validity_days must be an integer from 1 to 365"),
        ({"validity_days": "7"}, "validity_days must be an integer"),
        ({"validity_days": 30}, "SHORT_LIVED_CERTIFICATE CA issues certificates of at most 7 days"),
        ({"ca_usage_mode": "CHEAP"}, "ca_usage_mode must be one of"),
        ({"signing_algorithm": "SHA1WITHRSA"}, "signing_algorithm must be one of"),
        ({"host_role_arn": "arn:aws:iam::123456789012:user/alice"}, "host_role_arn must be an IAM role ARN"),
        ({"auto_scaling_group_name": ""}, "auto_scaling_group_name must be"),
        ({"auto_scaling_group_name": "x" * 256}, "auto_scaling_group_name must be"),
        ({"service_names": "api.internal.example"}, "service_names must be a list"),
        ({"service_names": ["*.internal.example"]}, "without a wildcard"),
        ({"service_names": ["10.0.0.1"]}, "'10.0.0.1' is an IP address"),
        ({"service_names": ["ip-10-0-1-23.ec2.internal"]}, "impersonate that instance"),
        ({"service_names": ["ip-10-0-1-23.eu-west-1.compute.internal"]}, "impersonate that instance"),
        ({"region": "Ireland"}, "region must be"),
        ({"log_retention_days": 10}, "log_retention_days must be one of 1, 3, 5"),
        ({"reserved_concurrency": 0}, "reserved_concurrency must be an integer from 1 to 900"),
        ({"timeout_seconds": 5}, "timeout_seconds must be an integer from 10 to 900"),
        ({"tags": {"aws:owner": "x"}}, "reserved for AWS"),
    ],
)
def test_bad_arguments_are_refused_by_name_before_anything_is_created(
    deploy: Callable[..., StackRun], change: dict[str, Any], words: str
) -> None:
    recorded = StackRun(stack="test", config={})

    async def program() -> None:
        PerHostIssuer("issuer", _args(**change))

    with pytest.raises(ValueError, match="PerHostIssuer") as refused:
        run_under_mocks(program, _Mocks(recorded))
    assert words in str(refused.value)
    assert recorded.resources == [], "nothing may be created for bad input"


def test_missing_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="missing required argument\\(s\\): host_role_arn, region"):
        per_host_issuer._validate(_args(host_role_arn=None, region=None))


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValueError, match="PerHostIssuer") as refused:
        per_host_issuer._validate(_args(validity_days=0, region="x", reserved_concurrency=-1))
    assert all(key in str(refused.value) for key in ("validity_days", "region", "reserved_concurrency"))


def test_without_a_usage_mode_a_longer_validity_is_left_to_the_function(deploy: Callable[..., StackRun]) -> None:
    variables = deploy(_args(validity_days=30, ca_usage_mode=None)).one(FUNCTION).inputs["environment"]["variables"]
    assert variables[contract.ENV_VALIDITY_DAYS] == "30"


# --- the code on Lambda's runtime ------------------------------------------------------------------------------------


def _boto3_only_path(tmp_path: Path) -> Path:
    """A directory holding boto3 and what it needs, as Lambda's managed runtime provides them, and nothing else."""
    import boto3

    site = Path(boto3.__file__).resolve().parent.parent
    only = tmp_path / "runtime"
    only.mkdir()
    for package in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py"):
        (only / package).symlink_to(site / package)
    return only


_RUN_AS_LAMBDA = """
import json, sys
import issuer.handler
assert "cryptography" not in sys.modules and "components" not in sys.modules and "pulumi" not in sys.modules


class Context:
    def get_remaining_time_in_millis(self):
        return 30000


print(json.dumps(issuer.handler.handler(json.load(sys.stdin), Context())))
"""


@pytest.mark.parametrize("interpreter", ["lambda-runtime", "current"])
def test_the_archive_issues_on_lambdas_python_with_boto3_only(tmp_path: Path, pca_proxy: Any, interpreter: str) -> None:
    """The archive's files alone, unpacked as Lambda unpacks them, issue a certificate on Python 3.13 (Lambda's
    runtime) and on this interpreter, with boto3 and nothing else importable (no `cryptography`, no `components`)."""
    from components.local.emulator import create_active_ca
    from components.local.issuer import create_fleet, csr_body, function_url_event, instance_session_arn
    from tests.issuer_fixtures import build_csr, key
    from tests.lambda_python import lambda_python

    python = lambda_python() if interpreter == "lambda-runtime" else sys.executable
    task = tmp_path / "task"
    archive = tmp_path / "code.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path, text in handler_files().items():
            zipped.writestr(path, text)
    zipfile.ZipFile(archive).extractall(task)

    fleet = create_fleet(pca_proxy.endpoint_url, size=1)
    ca_arn, _ = create_active_ca(pca_proxy.endpoint_url, usage_mode="SHORT_LIVED_CERTIFICATE")
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=pca_proxy.endpoint_url)
    instance = ec2.describe_instances(InstanceIds=list(fleet.instance_ids))["Reservations"][0]["Instances"][0]
    csr_pem = build_csr(
        key("ec-p384"), dns_names=[instance["PrivateDnsName"]], ip_addresses=[instance["PrivateIpAddress"]]
    )
    event = function_url_event(csr_body(csr_pem), user_arn=instance_session_arn("dev-host-role", fleet.instance_ids[0]))
    environment = {
        "PYTHONPATH": f"{task}:{_boto3_only_path(tmp_path)}",
        "PATH": "/usr/bin:/bin",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": pca_proxy.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        contract.ENV_CA_ARN: ca_arn,
        contract.ENV_TEMPLATE_ARN: SERVER_AUTH_TEMPLATE,
        contract.ENV_VALIDITY_DAYS: "7",
        contract.ENV_HOST_ROLE_ARN: f"arn:aws:iam::{ACCOUNT}:role/dev-host-role",
        contract.ENV_AUTO_SCALING_GROUP: fleet.group,
    }
    answer = subprocess.run(
        [python, "-S", "-c", _RUN_AS_LAMBDA], input=json.dumps(event), env=environment, cwd=tmp_path,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, f"{python}: {answer.stderr}"
    response = json.loads(answer.stdout.strip().splitlines()[-1])
    assert response["statusCode"] == 200, f"{python}: {response}"
    assert json.loads(response["body"])["certificate"].startswith("-----BEGIN CERTIFICATE-----")
