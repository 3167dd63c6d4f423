"""Lint the GitHub workflows and hold them to their security and ordering promises.

Both linters run offline: check-jsonschema validates against its vendored copy of the GitHub workflow schema,
and zizmor runs with `--offline` at the `auditor` persona (its strictest: every finding counts).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
PULL_REQUEST = WORKFLOWS / "pull-request.yml"
DEPLOY = WORKFLOWS / "deploy.yml"
BIN = Path(sys.executable).parent
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(path: Path) -> dict[str, Any]:
    workflow = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as True.
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job.get("steps", []) if str(step.get("uses", "")).startswith(f"{action}@")]


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.parametrize("path", [PULL_REQUEST, DEPLOY], ids=lambda p: p.name)
def test_workflow_matches_github_schema(path):
    result = run_tool(
        sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)
    )
    assert result.returncode == 0, f"check-jsonschema {path.name}:\n{result.stdout}\n{result.stderr}"


def test_zizmor_has_no_findings():
    zizmor = BIN / "zizmor"
    assert zizmor.exists(), f"zizmor is not installed next to {sys.executable}"
    result = run_tool(str(zizmor), "--offline", "--persona", "auditor", str(PULL_REQUEST), str(DEPLOY))
    assert result.returncode == 0, f"zizmor findings:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("path", [PULL_REQUEST, DEPLOY], ids=lambda p: p.name)
def test_permissions_are_granted_per_job_only(path):
    workflow = load(path)
    assert workflow["permissions"] == {}, f"{path.name}: top-level permissions must be empty"
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {name} must declare its permissions"
        uses_aws = bool(steps_using(job, "aws-actions/configure-aws-credentials"))
        has_id_token = job["permissions"].get("id-token") == "write"
        assert uses_aws == has_id_token, f"{path.name}: job {name}: id-token: write exactly where AWS is used"


@pytest.mark.parametrize("path", [PULL_REQUEST, DEPLOY], ids=lambda p: p.name)
def test_checkouts_do_not_persist_credentials_and_third_party_actions_are_pinned(path):
    for name, job in load(path)["jobs"].items():
        for step in steps_using(job, "actions/checkout"):
            assert step["with"]["persist-credentials"] is False, f"{path.name}: job {name}"
        for step in job.get("steps", []):
            uses = step.get("uses")
            if uses is None or uses.startswith("pulumi/actions@"):
                continue  # pulumi/actions is tag-pinned with a documented zizmor ignore.
            assert SHA_PIN.match(uses), f"{path.name}: job {name}: {uses} is not pinned to a commit"


@pytest.mark.parametrize("path", [PULL_REQUEST, DEPLOY], ids=lambda p: p.name)
def test_aws_uses_oidc_role_from_a_variable_and_state_from_variables(path):
    text = path.read_text()
    assert "aws-access-key-id" not in text, "no long-lived AWS keys"
    assert "aws-secret-access-key" not in text, "no long-lived AWS keys"
    for name, job in load(path)["jobs"].items():
        for step in steps_using(job, "aws-actions/configure-aws-credentials"):
            assert step["with"]["role-to-assume"].startswith("${{ vars."), f"{path.name}: job {name}"
        for step in steps_using(job, "pulumi/actions"):
            assert step["with"]["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}", f"{path.name}: job {name}"
            assert step["with"]["policyPacks"] == "policy", f"{path.name}: job {name}: policy pack applied"
            passphrase = step["env"]["PULUMI_CONFIG_PASSPHRASE"]
            assert passphrase == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}", f"{path.name}: job {name}"


def test_pull_request_tests_then_previews_every_stack_with_a_comment():
    workflow = load(PULL_REQUEST)
    assert set(workflow["on"]) == {"pull_request"}
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert "github.event.pull_request.number" in workflow["concurrency"]["group"]

    test = workflow["jobs"]["test"]
    assert any(step.get("run") == "make test" for step in test["steps"])

    preview = workflow["jobs"]["preview"]
    assert preview["needs"] == "test"
    assert preview["strategy"]["matrix"]["stack"] == ["pki", "dev", "prod"]
    assert preview["permissions"] == {"contents": "read", "pull-requests": "write", "id-token": "write"}
    (pulumi,) = steps_using(preview, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["edit-pr-comment"] is True


def test_deploy_goes_pki_then_dev_then_prod_behind_production_environment():
    workflow = load(DEPLOY)
    assert workflow["on"] == {"push": {"branches": ["main"]}}
    assert workflow["concurrency"]["cancel-in-progress"] is False, "never cancel a running pulumi up"

    jobs = workflow["jobs"]
    assert jobs["pki"]["needs"] == "test"
    assert jobs["dev"]["needs"] == "pki"
    assert jobs["prod"]["needs"] == "dev"
    assert jobs["prod"]["environment"] == "production"
    for stack in ("pki", "dev", "prod"):
        (pulumi,) = steps_using(jobs[stack], "pulumi/actions")
        assert pulumi["with"]["command"] == "up", stack
        assert pulumi["with"]["stack-name"] == stack
        assert jobs[stack]["permissions"] == {"contents": "read", "id-token": "write"}, stack
