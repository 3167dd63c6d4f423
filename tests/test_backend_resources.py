"""The backend's registered resources, held to a record of what the `dev` and `prod` stacks registered before the
backend was split into components (tests/fixtures/backend_resources.json).

Each resource is compared under the URN it had in the record: its own URN, or the URN one of its `aliases` names
(a resource moved into a component keeps its state only through such an alias; without one, the engine would
create the resource anew and delete the old one). Compared: type, name, every input, dependencies (followed
through aliases too) and the options the engine applies (protect, ignore_changes, additional secret outputs,
delete before replace, replace on changes, retain on delete, custom timeouts). Components that only group
resources may be added; a custom resource may not appear or disappear unannounced.

A change made on purpose is listed in INTENDED_CHANGES with its reason, a resource added on purpose in
INTENDED_ADDITIONS with its reason; nothing else may differ.

The record was written from the code before the split (`python -m tests.test_backend_resources`): do not
rewrite it to make a difference pass; list the difference instead.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings

from tests.stack_harness import StackRun, run_stack

RECORD = Path(__file__).resolve().parent / "fixtures" / "backend_resources.json"
RECORDED_STACKS = ("dev", "prod")
#: Every resource of the backend lives under this component (before the split, directly).
BACKEND_TYPE = "pca-backend:index:EncryptedBackend"
#: Longer input strings (the packed user data) are recorded by digest, to keep the record readable.
LONG_STRING = 2000
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----\n?", re.DOTALL)

#: (stack, type, name) -> {compared field or input name: why it changed}. Inputs are named as the engine
#: receives them (camelCase); options by their field name below (`dependencies`, `protect`, ...).
_KEY_POLICY = {
    "policy": "KeyAdministration names each administrative action (kms:Create* held kms:CreateGrant, a path to "
    "Decrypt); DeployerWritesTheParameters names the stack's parameterWriterArns, not whoever ran pulumi up",
}
_SAFE_ROLLOUTS = {
    "instanceRefresh": "preferences.autoRollback: a failed instance refresh rolls back",
    "instanceMaintenancePolicy": "an unhealthy host is replaced by one launched first (100% to 200%)",
    "ignoreFailedScalingActivities": "one failed launch while creation waits for capacity does not fail the update",
}
_BOOTSTRAP = {
    "userData": "a small bootstrap (plain text, no gzip): it pins the SHA-256 fingerprints of the stack's CA "
    "certificates (the host gate refuses any other anchor), downloads the host payload from S3 and runs it only if "
    "its SHA-256 is the one it carries; the host software (with verify-tls again) moved into that payload",
    "dependencies": "the user data names the payload object (its bucket, key and digest) and pins the CA bundle, so "
    "the launch template waits for both",
}
_PAYLOAD_READ = {
    "policy": "statement ReadHostPayloads: s3:GetObject on hosts/* of the payload bucket, the bootstrap's one call",
    "dependencies": "the statement names the payload bucket's ARN",
}
_WAITS_FOR_PAYLOAD = {
    "dependencies": "the group waits for the payload object its hosts download at boot",
}
INTENDED_CHANGES: Mapping[tuple[str, str, str], Mapping[str, str]] = {
    (stack, type_, name): changes
    for stack in RECORDED_STACKS
    for type_, name, changes in (
        ("aws:kms/key:Key", "backend-parameter-key", _KEY_POLICY),
        ("aws:autoscaling/group:Group", "backend-hosts", {**_SAFE_ROLLOUTS, **_WAITS_FOR_PAYLOAD}),
        ("aws:ec2/launchTemplate:LaunchTemplate", "backend-hosts", _BOOTSTRAP),
        ("aws:iam/rolePolicy:RolePolicy", "backend-host-policy", _PAYLOAD_READ),
    )
}
#: (stack, type, name) -> why the resource was added after the split.
_PAYLOAD_BUCKET = "the hosts' payloads live in a private bucket per backend (the user data only pins them)"
INTENDED_ADDITIONS: Mapping[tuple[str, str, str], str] = {
    (stack, type_, name): reason
    for stack in RECORDED_STACKS
    for type_, name, reason in (
        ("aws:s3/bucket:Bucket", "backend-host-payloads", _PAYLOAD_BUCKET),
        (
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "backend-host-payloads-public-access-block",
            "the payload bucket blocks every form of public access",
        ),
        (
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
            "backend-host-payloads-ownership",
            "the payload bucket has ACLs disabled (BucketOwnerEnforced)",
        ),
        (
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "backend-host-payloads-encryption",
            "the payload bucket encrypts by default (SSE-S3), set explicitly",
        ),
        (
            "aws:s3/bucketPolicy:BucketPolicy",
            "backend-host-payloads-policy",
            "the payload bucket refuses requests without TLS (aws:SecureTransport)",
        ),
        (
            "aws:s3/bucketObjectv2:BucketObjectv2",
            "backend-host-payload",
            "the host software, content-addressed (hosts/<sha256>.sh), retained when a newer payload replaces it",
        ),
    )
}


def _normalise(value: Any) -> Any:
    """A JSON-comparable form: PEM blocks (generated per test session) by their label, secrets marked, long
    strings by digest."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return {"<secret>": _normalise(value.get("value"))}
        return {key: _normalise(item) for key, item in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_normalise(item) for item in value]
    if isinstance(value, str):
        text = _PEM.sub(lambda match: f"<PEM {match.group(1)}>", value)
        if len(text) > LONG_STRING:
            return f"<{len(text)} characters, sha256 {hashlib.sha256(text.encode()).hexdigest()}>"
        return text
    return value


def _in_backend(urn: str) -> bool:
    return BACKEND_TYPE in urn.split("::")[2]


def snapshot(run: StackRun, known: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """The backend's resources of `run`, keyed by engine URN; with `known` (the record's URNs), a resource whose
    aliases name one of them is keyed by that one: the URN whose state it takes over."""
    engine_urns = run.engine_urns()
    identities = {}
    for resource in run.resources:
        earlier = [urn for urn in run.alias_urns(resource, engine_urns) if known is not None and urn in known]
        identities[resource.urn] = earlier[0] if earlier else engine_urns[resource.urn]
    resources: dict[str, dict[str, Any]] = {}
    for resource in run.resources:
        identity = identities[resource.urn]
        if not _in_backend(identity):
            continue
        resources[identity] = {
            "type": resource.type_,
            "name": resource.name,
            "custom": resource.custom,
            "inputs": _normalise(resource.inputs),
            "dependencies": sorted({identities.get(urn, urn) for urn in resource.dependencies}),
            "protect": resource.protect,
            "ignore_changes": sorted(resource.ignore_changes),
            "additional_secret_outputs": sorted(resource.additional_secret_outputs),
            "delete_before_replace": resource.delete_before_replace,
            "replace_on_changes": sorted(resource.replace_on_changes),
            "retain_on_delete": resource.retain_on_delete,
            "custom_timeouts": resource.custom_timeouts,
        }
    return resources


def _run(stack: str) -> StackRun:
    try:
        return run_stack(stack)
    finally:
        pulumi_settings.ROOT.set(None)


def _differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Field (or input) name -> (recorded, now) for everything that differs between two records of a resource."""
    differing: dict[str, tuple[Any, Any]] = {}
    for field in before.keys() | after.keys():
        if field == "inputs":
            continue
        if before.get(field) != after.get(field):
            differing[field] = (before.get(field), after.get(field))
    inputs_before, inputs_after = before.get("inputs", {}), after.get("inputs", {})
    for key in inputs_before.keys() | inputs_after.keys():
        if inputs_before.get(key) != inputs_after.get(key):
            differing[key] = (inputs_before.get(key), inputs_after.get(key))
    return differing


@pytest.mark.parametrize("stack", RECORDED_STACKS)
def test_the_backend_registers_what_it_registered_before_the_split(stack: str) -> None:
    recorded: dict[str, dict[str, Any]] = json.loads(RECORD.read_text())[stack]
    now = snapshot(_run(stack), known=set(recorded))

    missing = sorted(set(recorded) - set(now))
    assert not missing, f"{stack}: resources gone, or moved without an alias to their earlier URN: {missing}"
    added = {urn: (now[urn]["type"], now[urn]["name"]) for urn in set(now) - set(recorded) if now[urn]["custom"]}
    unannounced = sorted(urn for urn, (type_, name) in added.items() if (stack, type_, name) not in INTENDED_ADDITIONS)
    assert not unannounced, f"{stack}: resources that were not there before the split: {unannounced}"
    listed = {(type_, name) for (listed_stack, type_, name) in INTENDED_ADDITIONS if listed_stack == stack}
    assert listed == set(added.values()), f"{stack}: INTENDED_ADDITIONS names resources the stack does not add"

    unexpected: dict[str, dict[str, tuple[Any, Any]]] = {}
    for urn, before in recorded.items():
        intended = INTENDED_CHANGES.get((stack, before["type"], before["name"]), {})
        differing = {key: values for key, values in _differences(before, now[urn]).items() if key not in intended}
        if differing:
            unexpected[urn] = differing
    assert not unexpected, f"{stack}: changed without being listed in INTENDED_CHANGES: {unexpected}"


def test_every_intended_change_is_a_change() -> None:
    """An entry of INTENDED_CHANGES that no longer differs is stale: it would hide a later regression."""
    record = json.loads(RECORD.read_text())
    stale = []
    for (stack, type_, name), fields in INTENDED_CHANGES.items():
        recorded = record[stack]
        (urn,) = [urn for urn, resource in recorded.items() if (resource["type"], resource["name"]) == (type_, name)]
        now = snapshot(_run(stack), known=set(recorded))
        differing = _differences(recorded[urn], now[urn])
        stale += [(stack, name, field) for field in fields if field not in differing]
    assert not stale, f"listed as changed but equal to the record: {stale}"


def record() -> None:
    """Write the record from the code as it is now (see the module docstring before using this)."""
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.write_text(json.dumps({stack: snapshot(_run(stack)) for stack in RECORDED_STACKS}, indent=1) + "\n")


if __name__ == "__main__":
    record()
    sys.exit(0)
