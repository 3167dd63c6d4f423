"""The policy pack driven as the Pulumi engine drives it: its own gRPC analyzer server, fed what the engine sends.

For a Python policy pack the engine runs `python -u -m pulumi.policy <engine address> .` in the pack's directory
(the `pulumi-analyzer-policy-python` shim); `policy/__main__.py` builds the `PolicyPack`, whose servicer
(pulumi_policy) prints its port and serves the Analyzer service. The engine then asks GetAnalyzerInfo and calls:

- `Analyze` for each resource it is about to create or update, with the resource's *checked inputs* (what its
  provider's Check returned) marshalled with unknowns kept (the UNKNOWN sentinel at preview), secrets kept (as
  Pulumi's secret signature objects) and internal `__` keys skipped, plus the resource options;
- `AnalyzeStack` once at the end, with every resource's *outputs* marshalled the same way, with parents,
  dependencies and property dependencies.

This module starts that server and sends those requests (sdk/go/common/resource/plugin/analyzer_plugin.go in
pulumi/pulumi is the engine's side).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from tests.provider_host import SECRET_SIG, SIG_KEY, PluginProcess, to_dict, to_struct

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "policy"


def _skip_internal(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return {SIG_KEY: SECRET_SIG, "value": _skip_internal(value.get("value"))}
        return {key: _skip_internal(item) for key, item in value.items() if not key.startswith("__")}
    if isinstance(value, list):
        return [_skip_internal(item) for item in value]
    return value


def for_analyzer(struct: struct_pb2.Struct) -> struct_pb2.Struct:
    """What the engine sends an analyzer: unknowns and secrets kept, internal `__` keys (`__provider`) skipped."""
    return to_struct(_skip_internal(to_dict(struct)))


@dataclass
class AnalyzedResource:
    """One resource as the engine describes it to the analyzer."""

    urn: str
    type_: str
    name: str
    properties: struct_pb2.Struct
    """Checked inputs for `Analyze`, outputs for `AnalyzeStack`, as the engine holds them."""
    additional_secret_outputs: list[str] = field(default_factory=list)
    protect: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    parent: str = ""
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)

    def options(self) -> analyzer_pb2.AnalyzerResourceOptions:
        return analyzer_pb2.AnalyzerResourceOptions(
            protect=self.protect,
            ignoreChanges=self.ignore_changes,
            additionalSecretOutputs=self.additional_secret_outputs,
            parent=self.parent,
        )


@dataclass
class Diagnostic:
    policy: str
    message: str
    mandatory: bool
    urn: str


class AnalyzerHost:
    """The policy pack's analyzer server in a subprocess, started as the engine starts it."""

    def __init__(self, *, stack: str, dry_run: bool, project: str = "pca-backend") -> None:
        self.stack, self.project, self.dry_run = stack, project, dry_run
        env = {
            **os.environ,
            "PULUMI_PROJECT": project,
            "PULUMI_STACK": stack,
            "PULUMI_DRY_RUN": "true" if dry_run else "false",
        }
        # The engine's address is only used to log a failure of the pack's own program.
        self.plugin = PluginProcess([sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."], POLICY_DIR, env)
        self._stub: Any = None

    def start(self) -> AnalyzerHost:
        self._stub = analyzer_pb2_grpc.AnalyzerStub(self.plugin.start())
        self._stub.ConfigureStack(
            analyzer_pb2.AnalyzerStackConfigureRequest(stack=self.stack, project=self.project, dry_run=self.dry_run),
            timeout=60,
        )
        return self

    def stop(self) -> None:
        self.plugin.stop()

    def __enter__(self) -> AnalyzerHost:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- the RPCs -------------------------------------------------------------------------------------------

    def plugin_version(self) -> str:
        return str(self._stub.GetPluginInfo(empty_pb2.Empty(), timeout=60).version)

    def info(self) -> analyzer_pb2.AnalyzerInfo:
        return self._stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=60)

    def configure(self) -> None:
        """The stack's policy configuration (`pulumi preview --policy-pack-config`): none, as CI runs it."""
        self._stub.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig={}), timeout=60)

    def analyze(self, resource: AnalyzedResource) -> list[Diagnostic]:
        answer = self._stub.Analyze(
            analyzer_pb2.AnalyzeRequest(
                urn=resource.urn,
                type=resource.type_,
                name=resource.name,
                properties=for_analyzer(resource.properties),
                options=resource.options(),
            ),
            timeout=60,
        )
        return _diagnostics(answer)

    def analyze_stack(self, resources: list[AnalyzedResource]) -> list[Diagnostic]:
        request = analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(
                    urn=resource.urn,
                    type=resource.type_,
                    name=resource.name,
                    properties=for_analyzer(resource.properties),
                    options=resource.options(),
                    parent=resource.parent,
                    dependencies=resource.dependencies,
                    propertyDependencies={
                        key: analyzer_pb2.AnalyzerPropertyDependencies(urns=urns)
                        for key, urns in resource.property_dependencies.items()
                        if urns
                    },
                )
                for resource in resources
            ]
        )
        return _diagnostics(self._stub.AnalyzeStack(request, timeout=120))


def _diagnostics(answer: analyzer_pb2.AnalyzeResponse) -> list[Diagnostic]:
    return [
        Diagnostic(
            diagnostic.policyName,
            diagnostic.message,
            diagnostic.enforcementLevel == analyzer_pb2.MANDATORY,
            diagnostic.urn,
        )
        for diagnostic in answer.diagnostics
    ]
