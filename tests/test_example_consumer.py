"""examples/consumer: a second project that issues from the pki stack's CA with this project's provider."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.stack_harness import CERTIFICATE_TYPE, FAKE_PRIVATE_KEY, PKI_CA_ARN, PKI_ROOT_PEM, StackRun, run_program

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "consumer"


def _run() -> StackRun:
    project = yaml.safe_load((EXAMPLE / "Pulumi.yaml").read_text())
    config = {
        f"{project['name']}:{key}": spec["default"] for key, spec in project["config"].items() if "default" in spec
    }
    config.update(yaml.safe_load((EXAMPLE / "Pulumi.dev.yaml").read_text())["config"])
    return run_program(EXAMPLE / "__main__.py", project=project["name"], stack="dev", config=config)


def test_consumer_issues_from_the_referenced_ca() -> None:
    run = _run()
    reference = run.one("pulumi:pulumi:StackReference")
    assert reference.inputs["name"] == "organization/pca-backend/pki", reference.urn
    certificate = run.one(CERTIFICATE_TYPE)
    assert certificate.inputs["ca_arn"] == PKI_CA_ARN, certificate.urn
    assert reference.urn in certificate.dependencies, certificate.urn
    assert certificate.inputs["common_name"] == "payments.dev.internal.example.com", certificate.urn
    assert certificate.inputs["subject_alternative_names"] == ["payments.dev.svc.internal.example.com"]
    assert certificate.inputs["validity_days"] == 30, certificate.urn
    assert "private_key_pem" in certificate.additional_secret_outputs, certificate.urn


def test_consumer_keeps_the_key_secret_and_out_of_outputs() -> None:
    run = _run()
    assert run.outputs["caTrustBundlePem"] == PKI_ROOT_PEM
    for name, value in run.outputs.items():
        assert FAKE_PRIVATE_KEY not in str(value), f"output {name} leaks the key"
    version = run.one("aws:secretsmanager/secretVersion:SecretVersion")
    secret_string = version.inputs["secretString"]
    assert "4dabf18193072939515e22adb298388d" in secret_string, f"{version.urn}: the key must stay a secret"
    assert secret_string["value"] == FAKE_PRIVATE_KEY, version.urn
