"""The provider as Pulumi stores it: pickled with dill into the state, and run from there on `pulumi destroy`.

So the pickle must stay small and stable (the class by reference, not by value), carry no credential or
endpoint, and load and work in a fresh process that has only the project on its path.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.dynamic.dynamic import serialize_provider

from components import certificate, pca_client
from components.certificate import Certificate, CertificateProvider
from components.local.emulator import FAKE_AWS_ENVIRONMENT, RecordingProxy, create_active_ca

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: What `python -m pulumi.dynamic` does with the `__provider` property (pulumi/dynamic/__main__.py), then the
#: two calls a `pulumi up` makes. Props come on stdin so nothing depends on argv length.
_FRESH_PROCESS = """
import base64, json, sys
import dill
request = json.load(sys.stdin)
provider = dill.loads(base64.b64decode(request["provider"]))
checked = provider.check({}, request["props"])
if checked.failures:
    raise SystemExit("check failed: " + repr([(f.property, f.reason) for f in checked.failures]))
created = provider.create(checked.inputs)
print(json.dumps({
    "module": type(provider).__module__,
    "id": created.id,
    "serial": created.outs["serial"],
    "has_key": bool(created.outs["private_key_pem"]),
}))
"""


@pytest.fixture(scope="module")
def serialized() -> str:
    return serialize_provider(CertificateProvider())


def test_the_pickled_provider_is_small_and_by_reference(serialized: str) -> None:
    raw = base64.b64decode(serialized)
    assert len(serialized) < 2048, f"{len(serialized)} bytes: is the class pickled by value?"
    assert b"components.certificate" in raw
    assert b"CertificateProvider" in raw
    # By value, dill would embed the methods' code; by reference, none of it.
    assert b"describe_certificate_authority" not in raw
    assert serialize_provider(CertificateProvider()) == serialized, "the pickle must be stable between runs"


def test_the_pickled_provider_holds_no_credential_or_endpoint(serialized: str) -> None:
    raw = base64.b64decode(serialized).lower()
    forbidden = [
        b"aws_access_key",
        b"aws_secret",
        b"session_token",
        b"botocore",
        b"boto3",
        b"http://",
        b"https://",
        b"127.0.0.1",
        b"endpoint",
        *(value.lower().encode() for value in FAKE_AWS_ENVIRONMENT.values()),
    ]
    assert [word for word in forbidden if word in raw] == []


def test_the_pickle_holds_no_client_or_credential_after_use(serialized: str, pca_proxy: RecordingProxy) -> None:
    """The process-wide clients, rates and assumed-role credentials live in module globals, never in the pickle."""
    ca_arn, _ = create_active_ca(pca_proxy.endpoint_url, common_name="Serialization Cache CA")
    provider = CertificateProvider()
    props = {
        "ca_arn": ca_arn,
        "common_name": "cached.internal.example.com",
        "endpoint_url": pca_proxy.endpoint_url,
        "assume_role_arn": "arn:aws:iam::123456789012:role/certificate-issuer",
    }
    checked = provider.check({}, props)
    assert checked.failures == []
    created = provider.create(checked.inputs)
    assert pca_client._clients, "the create above built a shared client"
    signer = pca_proxy.calls("IssueCertificate")[-1].access_key_id

    after = serialize_provider(provider)
    assert after == serialized
    raw = base64.b64decode(after)
    assert signer.encode() not in raw
    assert b"certificate-issuer" not in raw
    assert created.id.encode() not in raw
    assert vars(provider) == {}


def test_the_pickled_provider_works_in_a_fresh_process(serialized: str, pca_proxy: RecordingProxy) -> None:
    ca_arn, _ = create_active_ca(pca_proxy.endpoint_url, common_name="Serialization Test CA")
    pca_proxy.reset()
    request: dict[str, Any] = {
        "provider": serialized,
        "props": {
            "ca_arn": ca_arn,
            "common_name": "fresh.internal.example.com",
            "subject_alternative_names": ["10.0.9.9"],
            "validity_days": 30,
            "endpoint_url": pca_proxy.endpoint_url,
        },
    }
    # The child sees the session's fake credentials (set by the moto fixtures) and nothing of ours but the
    # project directory: no test module is imported there.
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["module"] == "components.certificate"
    assert answer["id"].startswith(f"{ca_arn}/certificate/")
    assert answer["has_key"] is True
    [issue] = pca_proxy.bodies("IssueCertificate")
    assert issue["Validity"] == {"Value": 30, "Type": "DAYS"}
    assert answer["serial"].count(":") >= 1
    assert answer["serial"] == answer["serial"].upper()


def test_certificate_registers_the_private_key_as_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inspect the options `Certificate` hands to `pulumi.dynamic.Resource` (no engine, no global mocks)."""
    seen: dict[str, Any] = {}

    def record(_self: Any, provider: Any, name: str, props: dict[str, Any], opts: Any = None) -> None:
        seen.update(provider=provider, name=name, props=props, opts=opts)

    monkeypatch.setattr(pulumi.dynamic.Resource, "__init__", record)
    caller_opts = pulumi.ResourceOptions(protect=True, additional_secret_outputs=["certificate_pem"])
    Certificate("web", {"ca_arn": "arn", "common_name": "web.example.com"}, caller_opts)

    assert isinstance(seen["provider"], CertificateProvider)
    assert "private_key_pem" in seen["opts"].additional_secret_outputs
    assert "certificate_pem" in seen["opts"].additional_secret_outputs  # the caller's options are kept
    assert seen["opts"].protect is True
    assert all(seen["props"][key] is None for key in certificate.OUTPUTS)  # outputs declared, filled by create
