"""The certificate provider driven as the Pulumi engine drives it: through the SDK's provider host, over gRPC.

Pulumi never calls `CertificateProvider` methods with Python values. The engine starts the SDK's host
(`python -m pulumi.dynamic`, which prints its port), configures it, then sends protobuf Structs: every number a
float, every value not known at preview the UNKNOWN sentinel string, secrets stripped (the host answers
Configure with `acceptSecrets: false`). The host deserializes them (`rpc.deserialize_properties`, which drops
keys whose value is null and, in Check and Diff, turns the sentinel into `pulumi.output.Unknown` objects), picks
the provider out of the `__provider` property and calls it.

This module is that door:

- `registered(...)` runs `Certificate(...)` under `pulumi.runtime.set_mocks` (at preview or at up) and returns
  the Struct the SDK sent in RegisterResource, serialized by the SDK's own `rpc.serialize_properties` (with the
  `__provider` property `serialize_provider` made, a secret);
- `ProviderHost` starts the host as a subprocess and exposes its RPCs;
- `Engine` sequences them as the engine does: Check then Create; Check then Diff against the stored *outputs*,
  then Update or a create-before-delete replacement; Read on refresh; Delete with the stored outputs.

Calls that fail come back as `DoorError` with the gRPC status code and details (the host puts the formatted
Python exception there).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components.certificate import Certificate, CertificateArgs
from tests.stack_harness import reset_runtime

ROOT = Path(__file__).resolve().parent.parent
CERTIFICATE_TYPE = "pulumi-python:dynamic/pki:Certificate"
#: What the engine sends for a value it does not know yet (pulumi.runtime.rpc.UNKNOWN).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
#: Pulumi's signature key and the signature of a secret value (sdk/go/common/resource/properties.go).
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
PROVIDER_KEY = "__provider"


# ---------------------------------------------------------------------------------------------------------
# Structs: what travels on the wire
# ---------------------------------------------------------------------------------------------------------


def _plain(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {key: _plain(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    return None if kind == "null_value" else getattr(value, str(kind))


def to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python (numbers are floats, as on the wire; NaN and infinities too, which JSON lacks)."""
    return {key: _plain(value) for key, value in struct.fields.items()}


def to_struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(dict(values))
    return struct


def _strip_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return _strip_secrets(value.get("value"))
        return {key: _strip_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strip_secrets(item) for item in value]
    return value


def for_provider(struct: struct_pb2.Struct) -> struct_pb2.Struct:
    """What the engine sends a provider that answered Configure with `acceptSecrets: false`: secrets unwrapped."""
    return to_struct(_strip_secrets(to_dict(struct)))


def has_unknowns(value: Any) -> bool:
    if isinstance(value, struct_pb2.Struct):
        value = to_dict(value)
    if isinstance(value, dict):
        return any(has_unknowns(item) for item in value.values())
    if isinstance(value, list):
        return any(has_unknowns(item) for item in value)
    return value == UNKNOWN


def without(struct: struct_pb2.Struct, *keys: str) -> struct_pb2.Struct:
    return to_struct({key: value for key, value in to_dict(struct).items() if key not in keys})


def replaced(struct: struct_pb2.Struct, **values: Any) -> struct_pb2.Struct:
    return to_struct({**to_dict(struct), **values})


# ---------------------------------------------------------------------------------------------------------
# what Certificate registers
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Registration:
    """One RegisterResource (or ReadResource) request as the engine receives it, and the mock's answer."""

    type_: str
    name: str
    properties: struct_pb2.Struct
    """`request.object`: the inputs as the SDK serialized them (secrets still wrapped)."""
    additional_secret_outputs: list[str]
    property_dependencies: dict[str, list[str]]
    dependencies: list[str]
    parent: str
    urn: str
    custom: bool = True
    protect: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    outputs: struct_pb2.Struct = field(default_factory=struct_pb2.Struct)
    """What the mock answered: the resource's outputs."""
    read: bool = False
    """A ReadResource (e.g. a StackReference), not a registration."""


class _Capture(pulumi_mocks.MockMonitor):
    """A mock monitor that keeps each RegisterResource request's Struct as the SDK serialized it."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registration(
                    type_=request.type,
                    name=request.name,
                    properties=_copy(request.object),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    property_dependencies={
                        key: list(value.urns) for key, value in request.propertyDependencies.items()
                    },
                    dependencies=list(request.dependencies),
                    parent=request.parent,
                    urn=response.urn,
                    custom=bool(request.custom),
                    protect=bool(request.protect),
                    ignore_changes=list(request.ignoreChanges),
                    outputs=_copy(response.object),
                )
            )
        return response

    def ReadResource(self, request: Any) -> Any:
        response = super().ReadResource(request)
        self.registrations.append(
            Registration(
                type_=request.type,
                name=request.name,
                properties=_copy(request.properties),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                property_dependencies={},
                dependencies=list(request.dependencies),
                parent=request.parent,
                urn=response.urn,
                outputs=_copy(response.properties),
                read=True,
            )
        )
        return response


def _copy(struct: struct_pb2.Struct) -> struct_pb2.Struct:
    copied = struct_pb2.Struct()
    copied.CopyFrom(struct)
    return copied


class EchoMocks(pulumi.runtime.Mocks):
    """Every resource's outputs are its inputs; at preview its ID is unknown, as the engine plans a create."""

    def __init__(self, preview: bool) -> None:
        self.preview = preview

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        return ("" if self.preview else f"{args.name}_id"), dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        raise AssertionError(f"unexpected invoke {args.token}")


def unknown_output() -> pulumi.Output[Any]:
    """An output whose value is not known (a property of a resource that does not exist yet, at preview).

    Call it inside a program body (`registered`'s `args`), where the SDK's event loop runs."""
    loop = asyncio.get_event_loop()
    value, known, secret = loop.create_future(), loop.create_future(), loop.create_future()
    value.set_result(None)
    known.set_result(False)
    secret.set_result(False)
    return pulumi.Output(set(), value, known, secret)


def run_capturing(
    body: Callable[[], Any], mocks: pulumi.runtime.Mocks, *, preview: bool, project: str = "door", stack: str = "test"
) -> list[Registration]:
    """Run `body` (which creates resources) under `mocks`; every RegisterResource request, serialized."""
    monitor = _Capture(mocks)
    reset_runtime()
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)

    async def program() -> None:
        body()

    try:
        _sync_await(run_pulumi_func(lambda: _sync_await(program())))
    finally:
        reset_runtime()
    return monitor.registrations


def registered(
    args: Callable[[], Mapping[str, Any]] | Mapping[str, Any],
    *,
    preview: bool = False,
    opts: pulumi.ResourceOptions | None = None,
    name: str = "certificate",
) -> Registration:
    """The RegisterResource request `Certificate(name, args, opts)` sends. `args` may be a callable, called
    inside the program (needed for `unknown_output()`); it may hold what `CertificateArgs` does not allow, as a
    program that ignores the type hints would."""

    def body() -> None:
        given: Any = dict(args() if callable(args) else args)
        certificate_args: CertificateArgs = given
        Certificate(name, certificate_args, opts)

    [registration] = run_capturing(body, EchoMocks(preview), preview=preview)
    assert registration.type_ == CERTIFICATE_TYPE
    return registration


# ---------------------------------------------------------------------------------------------------------
# the provider host
# ---------------------------------------------------------------------------------------------------------


class DoorError(Exception):
    """A provider RPC that failed: its gRPC status and details (for a Python exception, its traceback)."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method}: {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details

    @property
    def last_line(self) -> str:
        """The line that says what went wrong: the exception the provider raised, as Python prints it."""
        lines = [line for line in self.details.strip().splitlines() if line.strip()]
        return lines[-1] if lines else ""


@dataclass
class CheckAnswer:
    inputs: struct_pb2.Struct
    failures: list[tuple[str, str]]


@dataclass
class DiffAnswer:
    changes: int
    replaces: list[str]
    delete_before_replace: bool

    @property
    def has_changes(self) -> bool:
        return self.changes == provider_pb2.DiffResponse.DIFF_SOME


class PluginProcess:
    """A Pulumi plugin the engine runs as a subprocess: it prints the port of its gRPC server on stdout."""

    def __init__(self, argv: list[str], cwd: Path, env: Mapping[str, str]) -> None:
        self._argv, self._cwd, self._env = argv, cwd, dict(env)
        self._process: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()

    def start(self) -> grpc.Channel:
        self._process = subprocess.Popen(
            self._argv, cwd=self._cwd, stdout=subprocess.PIPE, stderr=self._stderr, env=self._env
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"{' '.join(self._argv)} did not print its port: {line!r}\n{self.stderr()}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{int(line)}")
        return self.channel

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._stderr.close()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")


class ProviderHost:
    """`python -m pulumi.dynamic` in a subprocess, run from the project root as the engine runs it from the
    program's directory; the environment is the test's (the session's fake AWS credentials)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.plugin = PluginProcess(
            [sys.executable, "-m", "pulumi.dynamic"], ROOT, env if env is not None else os.environ
        )
        self._stub: Any = None

    def start(self) -> ProviderHost:
        self._stub = provider_pb2_grpc.ResourceProviderStub(self.plugin.start())
        self.accepts_secrets = self.configure()
        return self

    def stop(self) -> None:
        self.plugin.stop()

    def __enter__(self) -> ProviderHost:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=600)
        except grpc.RpcError as error:
            raise DoorError(method, error.code(), error.details() or "") from None

    # -- the RPCs, with what the engine puts in each request ---------------------------------------------

    def configure(self) -> bool:
        """The engine offers secrets and resource references; the answer says whether the host takes secrets."""
        answer = self._call(
            "Configure",
            provider_pb2.ConfigureRequest(args=struct_pb2.Struct(), acceptSecrets=True, acceptResources=True),
        )
        return bool(answer.acceptSecrets)

    def check(self, urn: str, olds: struct_pb2.Struct, news: struct_pb2.Struct) -> CheckAnswer:
        answer = self._call(
            "Check",
            provider_pb2.CheckRequest(urn=urn, olds=for_provider(olds), news=for_provider(news), randomSeed=b"\0" * 32),
        )
        return CheckAnswer(answer.inputs, [(failure.property, failure.reason) for failure in answer.failures])

    def diff(self, urn: str, id_: str, olds: struct_pb2.Struct, news: struct_pb2.Struct) -> DiffAnswer:
        answer = self._call(
            "Diff", provider_pb2.DiffRequest(id=id_, urn=urn, olds=for_provider(olds), news=for_provider(news))
        )
        return DiffAnswer(answer.changes, list(answer.replaces), bool(answer.deleteBeforeReplace))

    def create(self, urn: str, properties: struct_pb2.Struct) -> tuple[str, struct_pb2.Struct]:
        answer = self._call(
            "Create", provider_pb2.CreateRequest(urn=urn, properties=for_provider(properties), timeout=600)
        )
        return answer.id, answer.properties

    def read(
        self, urn: str, id_: str, properties: struct_pb2.Struct, inputs: struct_pb2.Struct
    ) -> tuple[str, struct_pb2.Struct]:
        answer = self._call(
            "Read",
            provider_pb2.ReadRequest(id=id_, urn=urn, properties=for_provider(properties), inputs=for_provider(inputs)),
        )
        return answer.id, answer.properties

    def update(
        self, urn: str, id_: str, olds: struct_pb2.Struct, news: struct_pb2.Struct, old_inputs: struct_pb2.Struct
    ) -> struct_pb2.Struct:
        answer = self._call(
            "Update",
            provider_pb2.UpdateRequest(
                id=id_,
                urn=urn,
                olds=for_provider(olds),
                news=for_provider(news),
                old_inputs=for_provider(old_inputs),
                timeout=600,
            ),
        )
        return answer.properties

    def delete(self, urn: str, id_: str, properties: struct_pb2.Struct, old_inputs: struct_pb2.Struct) -> None:
        self._call(
            "Delete",
            provider_pb2.DeleteRequest(
                id=id_, urn=urn, properties=for_provider(properties), old_inputs=for_provider(old_inputs), timeout=600
            ),
        )


# ---------------------------------------------------------------------------------------------------------
# the engine's sequences
# ---------------------------------------------------------------------------------------------------------

URN = f"urn:pulumi:test::door::{CERTIFICATE_TYPE}::certificate"


@dataclass
class Stored:
    """A resource in the state: its ID, its checked inputs and its outputs, as the engine stores them."""

    id: str
    inputs: struct_pb2.Struct
    outputs: struct_pb2.Struct

    @property
    def out(self) -> dict[str, Any]:
        return to_dict(self.outputs)


@dataclass
class Plan:
    """What a preview (or the planning half of `up`) decided for one resource."""

    operation: str
    """"create", "same", "update" or "replace"."""
    inputs: struct_pb2.Struct
    replaces: list[str] = field(default_factory=list)


class CheckFailed(AssertionError):
    def __init__(self, failures: list[tuple[str, str]]) -> None:
        super().__init__(f"Check failed: {failures}")
        self.failures = failures


class Engine:
    """The engine's side of a deployment, one resource at a time, against one provider host."""

    def __init__(self, host: ProviderHost, urn: str = URN) -> None:
        self.host = host
        self.urn = urn

    def plan(self, news: struct_pb2.Struct, state: Stored | None = None) -> Plan:
        """Check the program's inputs against the stored inputs, then Diff against the stored outputs."""
        checked = self.host.check(self.urn, state.inputs if state else struct_pb2.Struct(), news)
        if checked.failures:
            raise CheckFailed(checked.failures)
        if state is None:
            return Plan("create", checked.inputs)
        diff = self.host.diff(self.urn, state.id, state.outputs, checked.inputs)
        if not diff.has_changes:
            return Plan("same", checked.inputs)
        return Plan("replace" if diff.replaces else "update", checked.inputs, diff.replaces)

    def preview(self, news: struct_pb2.Struct, state: Stored | None = None) -> Plan:
        return self.plan(news, state)

    def up(self, news: struct_pb2.Struct, state: Stored | None = None) -> tuple[Plan, Stored]:
        assert not has_unknowns(news), "the engine sends no unknowns outside a preview"
        plan = self.plan(news, state)
        if plan.operation == "create":
            id_, outputs = self.host.create(self.urn, plan.inputs)
            return plan, Stored(id_, plan.inputs, outputs)
        assert state is not None
        if plan.operation == "same":
            return plan, Stored(state.id, plan.inputs, state.outputs)
        if plan.operation == "update":
            outputs = self.host.update(self.urn, state.id, state.outputs, plan.inputs, state.inputs)
            return plan, Stored(state.id, plan.inputs, outputs)
        # create before delete: the new certificate first, then the old one is deleted (revoked)
        id_, outputs = self.host.create(self.urn, plan.inputs)
        self.host.delete(self.urn, state.id, state.outputs, state.inputs)
        return plan, Stored(id_, plan.inputs, outputs)

    def refresh(self, state: Stored) -> Stored | None:
        """Read: None when the provider says the resource is gone."""
        id_, outputs = self.host.read(self.urn, state.id, state.outputs, state.inputs)
        return Stored(id_, state.inputs, outputs) if id_ else None

    def destroy(self, state: Stored) -> None:
        self.host.delete(self.urn, state.id, state.outputs, state.inputs)
