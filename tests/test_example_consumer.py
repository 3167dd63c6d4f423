"""examples/consumer: a second project that issues from the pki stack's CA with this project's provider."""

from __future__ import annotations

import os
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.project_tools import uv_binary
from tests.stack_harness import CERTIFICATE_TYPE, MOCK_PRIVATE_KEY, PKI_CA_ARN, PKI_ROOT_PEM, StackRun, run_program

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "consumer"


def git_status() -> str:
    """What git would list in the repository (untracked and changed files), ignoring what .gitignore ignores."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


@pytest.fixture(scope="module", autouse=True)
def leaves_no_file_git_would_list() -> Iterator[None]:
    """Every test here uses the example as a user would; none may leave a file behind that git lists."""
    before = git_status()
    yield
    assert git_status() == before, "using examples/consumer left files git lists (add them to .gitignore?)"


def run_uv(*args: str) -> subprocess.CompletedProcess[str]:
    # Offline: the versions are the repository's own, which its sync already put in uv's cache.
    env = {key: value for key, value in os.environ.items() if key not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}}
    return subprocess.run(
        [uv_binary(), *args, "--offline", "--directory", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def locked_versions(lock: Path) -> dict[str, str]:
    return {entry["name"]: entry["version"] for entry in tomllib.loads(lock.read_text())["package"]}


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
        assert MOCK_PRIVATE_KEY not in str(value), f"output {name} leaks the key"
    version = run.one("aws:secretsmanager/secretVersion:SecretVersion")
    secret_string = version.inputs["secretString"]
    assert "4dabf18193072939515e22adb298388d" in secret_string, f"{version.urn}: the key must stay a secret"
    assert secret_string["value"] == MOCK_PRIVATE_KEY, version.urn


def test_consumer_has_a_readme_that_says_how_to_use_it() -> None:
    readme = (EXAMPLE / "README.md").read_text()
    for command in ("uv sync --locked", "pulumi up", "uv lock"):
        assert command in readme, f"examples/consumer/README.md does not say `{command}`"
    for output in ("certificateArn", "keySecretArn", "caTrustBundlePem"):
        assert output in readme, f"examples/consumer/README.md does not name the output {output}"


def test_consumer_lock_matches_its_pyproject_and_the_projects_own_versions() -> None:
    checked = run_uv("lock", "--check")
    assert checked.returncode == 0, f"examples/consumer/uv.lock is stale: {checked.stderr}"
    consumer, project = locked_versions(EXAMPLE / "uv.lock"), locked_versions(ROOT / "uv.lock")
    assert {"pulumi", "pulumi-aws", "pca-encrypted-backend"} <= set(consumer), sorted(consumer)
    differ = {
        name: (version, project[name]) for name, version in consumer.items() if project.get(name, version) != version
    }
    assert not differ, (
        f"examples/consumer/uv.lock and uv.lock disagree {differ}: in examples/consumer run "
        "`cp ../../uv.lock uv.lock && uv lock`"
    )


def test_consumer_installs_from_its_lock_and_imports_the_library() -> None:
    synced = run_uv("sync", "--locked", "--quiet")
    assert synced.returncode == 0, synced.stderr
    python = EXAMPLE / ".venv" / "bin" / "python"
    imported = subprocess.run(
        [str(python), "-c", "import components.certificate, pulumi_aws; print(components.certificate.__file__)"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert Path(imported.stdout.strip()) == ROOT / "components" / "certificate.py", "the editable install of ../.."
