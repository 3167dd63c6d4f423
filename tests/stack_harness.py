"""Run the real `__main__.py` for a stack file under `pulumi.runtime.set_mocks` and record what it does.

Config comes from `stacks/Pulumi.<stack>.yaml` merged over the `config:` defaults of `Pulumi.yaml`, as the CLI
merges them. A monitor subclass records every RegisterResource request (type, name, inputs, parent,
dependencies, additional secret outputs, ignored changes) so tests can hold the program to its promises, and the stack's
exports are resolved with their secretness. `StackRun.engine_urns` and `StackRun.alias_urns` give the URNs the engine
would form, so a test can follow a resource moved into another component back to its earlier URN.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import runpy
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components.local.tls import self_signed_ca_pem
from components.x509 import generate_private_key, private_key_pem

ROOT = Path(__file__).resolve().parent.parent
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]
STACKS = sorted(path.name[len("Pulumi.") : -len(".yaml")] for path in (ROOT / "stacks").glob("Pulumi.*.yaml"))
ACCOUNT = "123456789012"
MOCK_AMI = "ami-0123456789abcdef0"
#: What the mocked dynamic certificate returns as its key (made per run): tests look for it where it must never be.
MOCK_PRIVATE_KEY = private_key_pem(generate_private_key("EC_prime256v1"))
CERTIFICATE_TYPE = "pulumi-python:dynamic/pki:Certificate"
MOCK_CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMOCK\n-----END CERTIFICATE REQUEST-----\n"


_MOCK_CA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def _self_signed_pem(common_name: str, days: int) -> str:
    """Cached: a resource's certificate is in state, the same on every run (tests/test_program.py runs twice)."""
    return self_signed_ca_pem(_MOCK_CA_KEY, common_name, dt.datetime.now(dt.UTC) + dt.timedelta(days=days))


#: A root as the `pki` stack would export it (generated once per test session).
PKI_ROOT_PEM = _self_signed_pem("Mocked pki root", 3650)
PKI_CA_ARN = f"arn:aws:acm-pca:us-east-1:{ACCOUNT}:certificate-authority/11111111-2222-3333-4444-555555555555"


@dataclass
class Registration:
    type_: str
    name: str
    urn: str
    custom: bool
    inputs: dict[str, Any]
    parent: str
    dependencies: list[str]
    additional_secret_outputs: list[str]
    protect: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    """The `ignore_changes` option as the engine receives it (camelCase input names)."""
    aliases: list[dict[str, Any]] = field(default_factory=list)
    """The `aliases` option: `{"urn": ...}` or an alias spec's fields (`parent` a URN of this run); see
    `StackRun.engine_urns` for the URNs they name."""
    delete_before_replace: bool = False
    replace_on_changes: list[str] = field(default_factory=list)
    retain_on_delete: bool = False
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    """Input name -> URNs of the resources its value came from, as the engine receives them."""
    outputs: dict[str, Any] = field(default_factory=dict)
    """What the mocks answered for the resource (its inputs and what AWS would add, e.g. a bucket's name)."""


@dataclass
class StackRun:
    stack: str
    config: dict[str, Any]
    resources: list[Registration] = field(default_factory=list)
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    logs: list[str] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Registration]:
        return [resource for resource in self.resources if resource.type_ == type_]

    def one(self, type_: str) -> Registration:
        found = self.of_type(type_)
        assert len(found) == 1, f"{self.stack}: expected one {type_}, found {[r.urn for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(resource for resource in self.resources if resource.urn == urn)

    def engine_urns(self) -> dict[str, str]:
        """Each registration's URN as the engine forms it, by the URN the mocks gave it.

        The mock monitor prefixes a type with its parent's type only (and keeps the stack's); the engine prefixes it
        with the parent's whole type chain, the root stack's excepted: `urn:pulumi:<stack>::<project>::
        Grandparent$Parent$aws:...::<name>`. Aliases and states of real stacks use the engine's form.
        """
        urns: dict[str, str] = {}
        for resource in self.resources:  # a parent registers before its children
            parent = urns.get(resource.parent, "")  # the root stack is no URN's prefix
            urns[resource.urn] = _engine_urn(parent, resource.type_, resource.name, self.stack)
        return urns

    def alias_urns(self, resource: Registration, engine_urns: dict[str, str]) -> list[str]:
        """The engine URNs `resource`'s aliases name: the URNs it had before a rename or a move."""
        named = []
        for alias in resource.aliases:
            if "urn" in alias:
                named.append(alias["urn"])
                continue
            parent = "" if alias["no_parent"] else engine_urns.get(alias["parent"] or resource.parent, "")
            type_, name = alias["type"] or resource.type_, alias["name"] or resource.name
            named.append(_engine_urn(parent, type_, name, alias["stack"] or self.stack, alias["project"] or PROJECT))
        return named


def _engine_urn(parent: str, type_: str, name: str, stack: str, project: str = PROJECT) -> str:
    qualified = f"{parent.split('::')[2]}${type_}" if parent else type_
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


def stack_config(stack: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Full config keys (`namespace:key`) as the CLI would give the program: project defaults, then the stack."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    config: dict[str, Any] = {
        f"{PROJECT}:{key}": spec["default"] for key, spec in project.get("config", {}).items() if "default" in spec
    }
    stack_file = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()) or {}
    config.update(stack_file.get("config", {}))
    config.update(overrides or {})
    return config


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that keep what every resource and invoke was given; subclasses say what AWS would answer."""

    def __init__(self, run: StackRun) -> None:
        self.run = run
        self.inputs: dict[tuple[str, str], dict[str, Any]] = {}
        self.outputs: dict[tuple[str, str], dict[str, Any]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        self.inputs[(args.typ, args.name)] = inputs
        resource_id, outputs = self.answer_resource(args.typ, args.name, inputs)
        self.outputs[(args.typ, args.name)] = outputs
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        self.run.invokes.append((args.token, dict(args.args)))
        return self.answer_invoke(args.token, dict(args.args))

    def answer_resource(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        return f"{name}_id", {**inputs}

    def answer_invoke(self, token: str, args: dict[str, Any]) -> Any:
        raise AssertionError(f"unexpected invoke {token}")


class _Mocks(RecordingMocks):
    """AWS as this project's program sees it, with the pki stack's outputs behind every StackReference."""

    def answer_resource(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        outputs: dict[str, Any] = {**inputs}
        resource_id = f"{name}_id"
        if typ == "pulumi:pulumi:StackReference":
            outputs = {
                "name": inputs["name"],
                "outputs": {
                    "caArn": PKI_CA_ARN,
                    "caTrustBundlePem": PKI_ROOT_PEM,
                    "caUsageMode": "GENERAL_PURPOSE",
                    "caCertificatePem": PKI_ROOT_PEM,
                },
                "secretOutputNames": [],
            }
            resource_id = inputs["name"]
        elif typ == "aws:acmpca/certificateAuthority:CertificateAuthority":
            # From the name alone (str hash() changes with every process): the same ARN on every run.
            authority_id = hashlib.sha256(name.encode()).hexdigest()[:32]
            arn = f"arn:aws:acm-pca:us-east-1:{ACCOUNT}:certificate-authority/{authority_id}"
            outputs.update(
                arn=arn,
                certificateSigningRequest=MOCK_CSR,
                # What AWS reports for a CA read before its certificate was imported, until a refresh.
                notAfter="0001-01-01T00:00:00Z",
                usageMode=inputs.get("usageMode", "GENERAL_PURPOSE"),
            )
            resource_id = arn
        elif typ == "aws:acmpca/certificate:Certificate":
            outputs.update(
                arn=f"{inputs['certificateAuthorityArn']}/certificate/{name}",
                certificate=_self_signed_pem(f"mock {name}", 365),
                certificateChain=PKI_ROOT_PEM if "Subordinate" in str(inputs.get("templateArn")) else "",
            )
        elif typ == CERTIFICATE_TYPE:
            outputs.update(
                certificate_arn=f"{inputs['ca_arn']}/certificate/{name}",
                certificate_pem="-----BEGIN CERTIFICATE-----\nMOCK-LEAF\n-----END CERTIFICATE-----\n",
                certificate_chain_pem=PKI_ROOT_PEM,
                full_chain_pem="-----BEGIN CERTIFICATE-----\nMOCK-LEAF\n-----END CERTIFICATE-----\n" + PKI_ROOT_PEM,
                private_key_pem=MOCK_PRIVATE_KEY,
                serial="0A:0B",
                not_after="2030-01-01T00:00:00Z",
            )
        elif typ == "aws:s3/bucket:Bucket":
            bucket = f"{name}-bucket"
            outputs.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}")
            resource_id = bucket
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            outputs.update(dnsName=f"internal-{name}-123.us-east-1.elb.amazonaws.com", arn=f"arn:aws:elb:{name}")
        elif typ == "aws:acm/certificate:Certificate":
            outputs.update(arn=f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/{name}")
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            outputs.update(latestVersion=1)
        elif typ == "aws:ssm/parameter:Parameter":
            outputs.update(arn=f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter{inputs.get('name', name)}")
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            # A name_prefix, as AWS completes it.
            log_group = inputs.get("name") or f"{inputs.get('namePrefix', name)}{_suffix(name)}"
            outputs.update(name=log_group, arn=f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{log_group}")
        elif typ == "aws:lambda/function:Function":
            function = f"{name}-{_suffix(name)}"
            outputs.update(name=function, arn=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{function}")
        elif typ == "aws:lambda/functionUrl:FunctionUrl":
            url_id = hashlib.sha256(name.encode()).hexdigest()[:32]
            outputs.update(functionUrl=f"https://{url_id}.lambda-url.us-east-1.on.aws/")
        else:
            outputs.setdefault("arn", f"arn:aws:mock:us-east-1:{ACCOUNT}:{name}")
        return resource_id, outputs

    def answer_invoke(self, token: str, args: dict[str, Any]) -> Any:
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/mock", "userId": "mock", "id": ACCOUNT}
        if token == "aws:iam/getSessionContext:getSessionContext":
            return {"arn": args.get("arn"), "issuerArn": args.get("arn"), "id": args.get("arn")}
        if token == "aws:index/getRegion:getRegion":
            return {"name": "us-east-1", "region": "us-east-1", "id": "us-east-1"}
        if token == "aws:ec2/getSubnet:getSubnet":
            # The stack files' subnet IDs end in 1, 2, 3: zones a, b, c, in the stack's VPC.
            subnet = args["id"]
            zone = "us-east-1" + "abcdef"[(int(subnet[-1], 16) - 1) % 6]
            return {"id": subnet, "availabilityZone": zone, "vpcId": self.run.config.get(f"{PROJECT}:vpcId")}
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": ["us-east-1a", "us-east-1b"], "zoneIds": ["use1-az1", "use1-az2"], "id": "us-east-1"}
        if token == "aws:ssm/getParameter:getParameter":
            value = MOCK_AMI
            return {"name": args.get("name"), "value": value, "insecureValue": value, "type": "String", "id": "x"}
        if token == "aws:acmpca/getCertificateAuthority:getCertificateAuthority":
            return {
                "arn": args.get("arn"),
                "certificate": PKI_ROOT_PEM,
                "certificateChain": "",
                "notAfter": "2035-06-01T00:00:00Z",
                "status": "ACTIVE",
                "type": "ROOT",
                "usageMode": "GENERAL_PURPOSE",
                "id": args.get("arn"),
            }
        if token == "aws:iam/getPolicyDocument:getPolicyDocument":
            return {"json": json.dumps({"Version": "2012-10-17", "Statement": []}), "id": "doc"}
        return {}


def _suffix(name: str) -> str:
    """The random suffix AWS or Pulumi adds to a generated name, here from the name alone (the same on every run)."""
    return hashlib.sha256(name.encode()).hexdigest()[:7]


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """Records each registration with what only the request carries: parent, dependencies, secret outputs,
    ignored changes."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recorder = mocks

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self._record(request, response.urn, list(request.additionalSecretOutputs))
        return response

    def ReadResource(self, request: Any) -> Any:  # StackReference is read, not registered
        response = super().ReadResource(request)
        self._record(request, response.urn, [])
        return response

    def _record(self, request: Any, urn: str, additional_secret_outputs: list[str]) -> None:
        timeouts = getattr(request, "customTimeouts", None)
        self.recorder.run.resources.append(
            Registration(
                type_=request.type,
                name=request.name,
                urn=urn,
                custom=bool(getattr(request, "custom", True)),
                inputs=self.recorder.inputs[(request.type, request.name)],
                outputs=self.recorder.outputs.get((request.type, request.name), {}),
                parent=request.parent,
                dependencies=list(request.dependencies),
                additional_secret_outputs=additional_secret_outputs,
                protect=bool(getattr(request, "protect", False)),
                ignore_changes=list(getattr(request, "ignoreChanges", [])),
                aliases=[_alias(alias) for alias in getattr(request, "aliases", [])],
                delete_before_replace=bool(getattr(request, "deleteBeforeReplace", False)),
                replace_on_changes=list(getattr(request, "replaceOnChanges", [])),
                retain_on_delete=bool(getattr(request, "retainOnDelete", False)),
                custom_timeouts={
                    key: getattr(timeouts, key) for key in ("create", "update", "delete") if getattr(timeouts, key, "")
                },
                property_dependencies={
                    prop: list(dependencies.urns)
                    for prop, dependencies in getattr(request, "propertyDependencies", {}).items()
                },
            )
        )


def _alias(alias: Any) -> dict[str, Any]:
    """An `aliases` entry of a request: `{"urn": ...}`, or the spec's fields (empty: the resource's own)."""
    if alias.WhichOneof("alias") == "urn":
        return {"urn": alias.urn}
    spec = alias.spec
    return {
        "name": spec.name,
        "type": spec.type,
        "stack": spec.stack,
        "project": spec.project,
        "parent": spec.parentUrn,
        "no_parent": spec.noParent,
    }


def _config_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_stack(
    stack: str,
    overrides: dict[str, Any] | None = None,
    mocks: type[RecordingMocks] | None = None,
    preview: bool = False,
) -> StackRun:
    """Run this project's `__main__.py` for `stack` under mocks (`mocks`: the program's, by default); raise what the
    program raises. `preview`: as `pulumi preview` runs it, where what the mocks do not answer is unknown."""
    return run_program(
        ROOT / "__main__.py",
        project=PROJECT,
        stack=stack,
        config=stack_config(stack, overrides),
        mocks=mocks,
        preview=preview,
    )


def reset_runtime() -> None:
    """Forget the previous run. `set_mocks` leaves `SETTINGS.outputs` (the apply tasks `wait_for_rpcs` awaits) in
    place, so a run that failed in an apply would fail again inside the next run; `ROOT` is the stack."""
    pulumi_settings.SETTINGS.outputs.clear()
    pulumi_settings.SETTINGS.rpc_manager.clear()
    pulumi_settings.ROOT.set(None)


def run_under_mocks(
    body: Callable[[], Awaitable[None]],
    mocks: RecordingMocks,
    *,
    project: str = PROJECT,
    stack: str = "test",
    preview: bool = False,
) -> StackRun:
    """Run `body` (which creates resources) under `mocks` and a recording monitor; `mocks.run` is returned."""
    reset_runtime()
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=_RecordingMonitor(mocks))
    try:
        _sync_await(run_pulumi_func(lambda: _sync_await(body())))
    finally:
        reset_runtime()
    return mocks.run


def run_program(
    program: Path,
    *,
    project: str,
    stack: str,
    config: dict[str, Any],
    mocks: type[RecordingMocks] | None = None,
    preview: bool = False,
) -> StackRun:
    """Run a Pulumi Python program file under mocks (`mocks`: the program's, by default) with the given full config
    keys (`namespace:key`)."""
    run = StackRun(stack=stack, config=config)
    pulumi.runtime.set_all_config({key: _config_value(value) for key, value in config.items()})

    async def main() -> None:
        root = pulumi_settings.get_root_resource()
        assert root is not None
        runpy.run_path(str(program), run_name="__main__")
        exported: dict[str, pulumi.Output[Any]] = {
            key: pulumi.Output.from_input(value)
            for key, value in root.outputs.items()  # type: ignore[attr-defined]
        }
        for key, output in exported.items():
            run.outputs[key] = await output.future()
            if await output.is_secret():
                run.secret_outputs.add(key)

    sys.path.insert(0, str(ROOT))
    try:
        return run_under_mocks(main, (mocks or _Mocks)(run), project=project, stack=stack, preview=preview)
    finally:
        sys.path.remove(str(ROOT))
