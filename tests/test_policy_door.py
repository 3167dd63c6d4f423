"""The policy pack through the engine's door: its own analyzer server (tests/analyzer_host.py), fed what the
engine sends, at preview (unknowns) and at up.

Each stack's real program runs under mocks as the engine would see it: at preview every computed output is
unknown (a CA's ARN, a load balancer's DNS name) and only StackReferences are read; at up the mocks answer.
The certificate goes through its provider's door (tests/provider_host.py) as the engine sends it there: the
analyzer gets the *checked* inputs Check returned, and at up the outputs Create returned, against moto.
"""

from __future__ import annotations

import copy
import json
import runpy
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
from google.protobuf import struct_pb2
from pulumi.runtime.proto import analyzer_pb2

from components.local.emulator import RecordingProxy, create_active_ca
from policy import guardrails
from tests.analyzer_host import AnalyzedResource, AnalyzerHost, Diagnostic
from tests.provider_host import (
    CERTIFICATE_TYPE,
    SECRET_SIG,
    SIG_KEY,
    UNKNOWN,
    EchoMocks,
    Engine,
    ProviderHost,
    Registration,
    registered,
    run_capturing,
    to_dict,
    to_struct,
    unknown_output,
)
from tests.stack_harness import PROJECT, ROOT, STACKS, StackRun, _Mocks, stack_config

CA_TYPE = "aws:acmpca/certificateAuthority:CertificateAuthority"
STACK_REFERENCE = "pulumi:pulumi:StackReference"


@pytest.fixture(scope="module")
def ca_arn(pca_proxy_session: RecordingProxy) -> str:
    return create_active_ca(pca_proxy_session.endpoint_url, common_name="Policy Door CA")[0]


@pytest.fixture(scope="module", params=[True, False], ids=["preview", "up"])
def analyzer(request: pytest.FixtureRequest) -> Iterator[AnalyzerHost]:
    with AnalyzerHost(stack="door", dry_run=request.param) as started:
        started.configure()
        yield started


@pytest.fixture(scope="module")
def preview_analyzer() -> Iterator[AnalyzerHost]:
    with AnalyzerHost(stack="door", dry_run=True) as started:
        started.configure()
        yield started


# ---------------------------------------------------------------------------------------------------------
# the program as the engine sees it
# ---------------------------------------------------------------------------------------------------------


class _EngineMocks(_Mocks):
    """The stack harness's AWS, with the CA the certificate issues from in moto. At preview, as the engine plans
    a create, a resource's outputs are its inputs and everything it computes (ARN, ID, DNS name) is unknown."""

    def __init__(self, run: StackRun, *, preview: bool, ca_arn: str) -> None:
        super().__init__(run)
        self.preview = preview
        self.ca_arn = ca_arn

    def answer_resource(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        resource_id, outputs = super().answer_resource(typ, name, inputs)
        outputs = copy.deepcopy(outputs)
        if typ == STACK_REFERENCE:  # read at preview too
            outputs["outputs"]["caArn"] = self.ca_arn
            return resource_id, outputs
        if self.preview:
            return "", dict(inputs)
        if typ == CA_TYPE:
            outputs["arn"], resource_id = self.ca_arn, self.ca_arn
        return resource_id, outputs


def run_program(stack: str, *, preview: bool, ca_arn: str, endpoint: str) -> list[Registration]:
    """Every RegisterResource and ReadResource of the real `__main__.py` for `stack`, serialized by the SDK."""
    config = stack_config(stack)
    backend = config.get("pca-backend:backendEnabled", True) not in (False, "false")
    if backend and config.get("pca-backend:hostCertificates", "shared") == "shared":
        # The certificate provider calls the proxy; the stack's ACM PCA endpoint must be the same (settings refuse
        # a stack that would create its CA at one endpoint and issue at another). Only a shared backend has one.
        endpoints = [{**entry, "acmpca": endpoint} for entry in config.get("aws:endpoints", [{}])]
        config.update({"pca-backend:awsEndpointUrl": endpoint, "aws:endpoints": endpoints})
    pulumi.runtime.set_all_config(
        {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}
    )
    mocks = _EngineMocks(StackRun(stack=stack, config=config), preview=preview, ca_arn=ca_arn)
    sys.path.insert(0, str(ROOT))
    try:
        return run_capturing(
            lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"),
            mocks,
            preview=preview,
            project=PROJECT,
            stack=stack,
        )
    finally:
        sys.path.remove(str(ROOT))


def _secret_outputs(outputs: struct_pb2.Struct, secret: list[str]) -> struct_pb2.Struct:
    """The engine keeps `additional_secret_outputs` secret in the state, and sends them so (KeepSecrets)."""
    values = to_dict(outputs)
    for key in secret:
        if key in values:
            values[key] = {SIG_KEY: SECRET_SIG, "value": values[key]}
    return to_struct(values)


@dataclass
class Deployment:
    analyzed: list[AnalyzedResource]
    """What `Analyze` got, per resource: checked inputs."""
    stack: list[AnalyzedResource]
    """What `AnalyzeStack` got: every resource's outputs."""


def deployment(registrations: list[Registration], engine: Engine, *, preview: bool) -> Deployment:
    analyzed, stack = [], []
    for registration in registrations:
        inputs, outputs = registration.properties, registration.outputs
        if registration.type_ == CERTIFICATE_TYPE:
            engine.urn = registration.urn
            if preview:
                inputs = outputs = engine.preview(registration.properties).inputs
            else:
                _, state = engine.up(registration.properties)
                inputs, outputs = state.inputs, state.outputs
        elif preview:
            outputs = inputs
        outputs = _secret_outputs(outputs, registration.additional_secret_outputs)

        def described(properties: struct_pb2.Struct, registration: Registration = registration) -> AnalyzedResource:
            return AnalyzedResource(
                urn=registration.urn,
                type_=registration.type_,
                name=registration.name,
                properties=properties,
                additional_secret_outputs=registration.additional_secret_outputs,
                protect=registration.protect,
                ignore_changes=registration.ignore_changes,
                parent=registration.parent,
                dependencies=registration.dependencies,
                property_dependencies=registration.property_dependencies,
            )

        if not registration.read:
            analyzed.append(described(inputs))
        stack.append(described(outputs))
    return Deployment(analyzed, stack)


def violations(diagnostics: list[Diagnostic]) -> list[str]:
    return [f"{d.policy}: {d.urn}: {d.message}" for d in diagnostics if d.mandatory]


# ---------------------------------------------------------------------------------------------------------
# the pack as the engine loads it
# ---------------------------------------------------------------------------------------------------------


def test_the_engine_gets_every_policy_as_mandatory(analyzer: AnalyzerHost) -> None:
    info = analyzer.info()
    assert info.name == guardrails.PACK_NAME
    levels = {policy.name: policy.enforcementLevel for policy in info.policies}
    assert levels == dict.fromkeys((policy.name for policy in guardrails.ALL_POLICIES), analyzer_pb2.MANDATORY)
    assert analyzer.plugin_version()


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_passes_the_pack_through_the_door(
    analyzer: AnalyzerHost, provider_host: ProviderHost, pca_proxy: RecordingProxy, ca_arn: str, stack: str
) -> None:
    preview = analyzer.dry_run
    registrations = run_program(stack, preview=preview, ca_arn=ca_arn, endpoint=pca_proxy.endpoint_url)
    deployed = deployment(registrations, Engine(provider_host), preview=preview)
    found = [diagnostic for resource in deployed.analyzed for diagnostic in analyzer.analyze(resource)]
    found += analyzer.analyze_stack(deployed.stack)
    assert violations(found) == [], stack
    # What a preview cannot know is skipped with an advisory, never reported as a violation.
    assert all("during preview" in d.message for d in found), [d.message for d in found]
    if not preview:
        assert found == []
    certificates = [resource for resource in deployed.analyzed if resource.type_ == CERTIFICATE_TYPE]
    if certificates and preview and any(r.type_ == CA_TYPE for r in registrations):
        # The first preview of a stack that creates its CA: the certificate's CA is not known yet.
        assert to_dict(certificates[0].properties)["ca_arn"] == UNKNOWN


# ---------------------------------------------------------------------------------------------------------
# what the pack must still see through the door: violations, at preview and at up
# ---------------------------------------------------------------------------------------------------------


def registrations_of(body: Callable[[], None], *, preview: bool) -> list[Registration]:
    return run_capturing(body, EchoMocks(preview), preview=preview)


def analyze_all(analyzer: AnalyzerHost, registrations: list[Registration]) -> list[Diagnostic]:
    found = []
    for registration in registrations:
        found += analyzer.analyze(
            AnalyzedResource(
                registration.urn,
                registration.type_,
                registration.name,
                registration.properties,
                registration.additional_secret_outputs,
            )
        )
    return found


def test_a_plaintext_target_group_is_reported(analyzer: AnalyzerHost) -> None:
    def body() -> None:
        aws.lb.TargetGroup(
            "plain", protocol="HTTP", port=80, vpc_id="vpc-0123456789abcdef0", health_check={"protocol": "HTTP"}
        )

    found = violations(analyze_all(analyzer, registrations_of(body, preview=analyzer.dry_run)))
    assert [line.split(":", 1)[0] for line in found] == ["alb-target-groups-https", "alb-target-groups-https"]


def test_ports_that_arrive_as_floats_are_still_read_as_ports(analyzer: AnalyzerHost) -> None:
    """Every number crosses the wire as a float: 22 is 22.0, and SSH is still found."""

    def body() -> None:
        aws.ec2.SecurityGroup(
            "ssh",
            vpc_id="vpc-0123456789abcdef0",
            ingress=[{"protocol": "tcp", "from_port": 20, "to_port": 25, "cidr_blocks": ["0.0.0.0/0"]}],
        )

    [registration] = registrations_of(body, preview=analyzer.dry_run)
    assert to_dict(registration.properties)["ingress"][0]["fromPort"] == 20.0
    found = violations(analyze_all(analyzer, [registration]))
    assert any(line.startswith("no-ssh-ingress:") and "ports 20-25" in line for line in found), found
    assert any(line.startswith("no-public-ingress-except-alb-https:") for line in found), found


def test_unknown_values_are_skipped_not_reported(preview_analyzer: AnalyzerHost) -> None:
    """At preview: a whole input unknown, and one element of a list."""

    def body() -> None:
        aws.lb.TargetGroup("later", protocol=unknown_output(), port=443, vpc_id="vpc-0123456789abcdef0")
        aws.ec2.SecurityGroup(
            "later",
            vpc_id="vpc-0123456789abcdef0",
            ingress=[
                {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["10.0.0.0/8", unknown_output()]}
            ],
        )

    registrations = registrations_of(body, preview=True)
    [group] = [registration for registration in registrations if registration.type_ == guardrails.SECURITY_GROUP_TYPE]
    assert to_dict(group.properties)["ingress"][0]["cidrBlocks"] == ["10.0.0.0/8", UNKNOWN]
    found = analyze_all(preview_analyzer, registrations)
    # The target group's health check protocol is known to be missing: that is still a violation.
    assert [line.split(":", 1)[0] for line in violations(found)] == ["alb-target-groups-https"]


def test_a_certificate_without_a_secret_key_is_reported(analyzer: AnalyzerHost, ca_arn: str) -> None:
    """`Certificate` always marks its key secret; a resource of its type registered without that option (another
    program's, or an edited copy) is what the policy is for."""
    registration = registered({"ca_arn": ca_arn, "common_name": "app.internal.example.com"}, preview=analyzer.dry_run)
    assert "private_key_pem" in registration.additional_secret_outputs
    registration.additional_secret_outputs = []
    found = violations(analyze_all(analyzer, [registration]))
    assert [line.split(":", 1)[0] for line in found] == ["certificate-private-key-secret"]
    clean = registered({"ca_arn": ca_arn, "common_name": "app.internal.example.com"}, preview=analyzer.dry_run)
    assert violations(analyze_all(analyzer, [clean])) == []


def test_a_secret_reaches_the_pack_unwrapped_and_is_never_echoed(analyzer: AnalyzerHost) -> None:
    def body() -> None:
        aws.ssm.Parameter("key", name="/app/private-key", type="String", value=pulumi.Output.secret("PRIVATE-KEY"))

    [registration] = registrations_of(body, preview=analyzer.dry_run)
    assert to_dict(registration.properties)["value"][SIG_KEY] == SECRET_SIG
    found = violations(analyze_all(analyzer, [registration]))
    assert [line.split(":", 1)[0] for line in found] == ["ssm-parameters-secure-string"]
    assert "PRIVATE-KEY" not in found[0]
