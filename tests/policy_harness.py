"""Run the guardrail policy pack against resources recorded by `pulumi.runtime.set_mocks`.

The pack normally runs inside the Pulumi engine. Here each recorded resource is turned into the argument
objects pulumi_policy builds for the engine (`ResourceValidationArgs`, `StackValidationArgs`), and every
policy of `policy/guardrails.py` is called on it, so a mocked stack can be held to the same rules.

Stack policies see a resource's `outputs` when the recording has them (as the engine passes outputs), else its
inputs. Resources are linked to a bucket by name (the Private CA's `revocationConfiguration.crlConfiguration.
s3BucketName` or a public access block's `bucket` equal to the bucket's `bucket` output: with mocks,
`new_resource` should return for an S3 bucket an id and `bucket` output equal to its name, as AWS does) or through
the property dependencies a recorded resource carries (`property_dependencies`, as the engine passes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from policy.guardrails import RESOURCE_POLICIES, STACK_POLICIES

STACK = "test"
PROJECT = "pca-backend"


@dataclass
class RecordedResource:
    """One resource as `pulumi.runtime.Mocks.new_resource` saw it."""

    type_: str
    """The type token, e.g. `aws:lb/listener:Listener` (the mock's `args.typ`)."""
    name: str
    """The logical name (the mock's `args.name`)."""
    props: dict[str, Any] = field(default_factory=dict)
    """The inputs under Pulumi's camelCase wire names (the mock's `args.inputs`)."""
    additional_secret_outputs: list[str] = field(default_factory=list)
    """The `additional_secret_outputs` resource option, e.g. `["private_key_pem"]`."""
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    """Input name -> `urn` of each recorded resource its value came from (what the engine's property dependencies
    say), e.g. a public access block's `bucket` -> the bucket."""
    outputs: dict[str, Any] | None = None
    """What the resource's provider answered (stack policies see outputs); None: stack policies see `props`."""

    @property
    def urn(self) -> str:
        return f"urn:pulumi:{STACK}::{PROJECT}::{self.type_}::{self.name}"


def _options(resource: RecordedResource) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(resource.additional_secret_outputs),
    )


def resource_args(resource: RecordedResource) -> ResourceValidationArgs:
    """The arguments the engine would hand a resource policy for this resource."""
    return ResourceValidationArgs(
        resource.type_,
        unknown_checking_proxy(dict(resource.props)),
        resource.urn,
        resource.name,
        _options(resource),
        None,
    )


def stack_args(resources: list[RecordedResource]) -> StackValidationArgs:
    """The arguments the engine would hand a stack policy for these resources."""
    policy_resources = [
        PolicyResource(
            r.type_,
            unknown_checking_proxy(dict(r.props if r.outputs is None else r.outputs)),
            r.urn,
            r.name,
            _options(r),
            None,
            None,
            [],
            {},
        )
        for r in resources
    ]
    by_urn = {resource.urn: resource for resource in policy_resources}
    for recorded, resource in zip(resources, policy_resources, strict=True):
        for prop, urns in recorded.property_dependencies.items():
            resource.property_dependencies[prop] = [by_urn[urn] for urn in urns if urn in by_urn]
    return StackValidationArgs(policy_resources)


def check_resources(resources: list[RecordedResource]) -> list[str]:
    """Every violation of the guardrail pack, as `"<policy>: <type>::<name>: <message>"` lines.

    An empty list means the resources pass. A policy that cannot run because a value is unknown is
    skipped for that resource, as `pulumi preview` does (it reports an advisory instead).
    """
    violations: list[str] = []
    for resource in resources:
        args = resource_args(resource)
        for policy in RESOURCE_POLICIES:

            def report(
                message: str,
                urn: str | None = None,
                _policy: str = policy.name,
                _subject: str = f"{resource.type_}::{resource.name}",
            ) -> None:
                violations.append(f"{_policy}: {_subject}: {message}")

            try:
                policy.validate(args, report)
            except (UnknownValueError, _NotApplicableError):
                continue

    by_urn = {r.urn: r for r in resources}
    s_args = stack_args(resources)
    for stack_policy in STACK_POLICIES:

        def report_stack(message: str, urn: str | None = None, _p: str = stack_policy.name) -> None:
            where = by_urn.get(urn) if urn else None
            subject = f"{where.type_}::{where.name}" if where else "stack"
            violations.append(f"{_p}: {subject}: {message}")

        try:
            stack_policy.validate(s_args, report_stack)
        except (UnknownValueError, _NotApplicableError):
            continue
    return violations
