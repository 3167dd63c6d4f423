"""Lint the GitHub workflows and hold them to their security and ordering promises.

Both linters run offline: check-jsonschema validates against its vendored copy of the GitHub workflow schema,
and zizmor runs with `--offline` at the `auditor` persona (its strictest: every finding counts).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
PULL_REQUEST = WORKFLOWS / "pull-request.yml"
DEPLOY = WORKFLOWS / "deploy.yml"
RENEW = WORKFLOWS / "renew.yml"
ALL_WORKFLOWS = sorted(WORKFLOWS.glob("*.yml"))
UV_LOCK = ROOT / "uv.lock"
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


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_github_schema(path):
    result = run_tool(
        sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)
    )
    assert result.returncode == 0, f"check-jsonschema {path.name}:\n{result.stdout}\n{result.stderr}"


def test_zizmor_has_no_findings():
    zizmor = BIN / "zizmor"
    assert zizmor.exists(), f"zizmor is not installed next to {sys.executable}"
    result = run_tool(str(zizmor), "--offline", "--persona", "auditor", *map(str, ALL_WORKFLOWS))
    assert result.returncode == 0, f"zizmor findings:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_granted_per_job_only(path):
    workflow = load(path)
    assert workflow["permissions"] == {}, f"{path.name}: top-level permissions must be empty"
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {name} must declare its permissions"
        uses_aws = bool(steps_using(job, "aws-actions/configure-aws-credentials"))
        has_id_token = job["permissions"].get("id-token") == "write"
        assert uses_aws == has_id_token, f"{path.name}: job {name}: id-token: write exactly where AWS is used"


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_checkouts_do_not_persist_credentials_and_third_party_actions_are_pinned(path):
    for name, job in load(path)["jobs"].items():
        for step in steps_using(job, "actions/checkout"):
            assert step["with"]["persist-credentials"] is False, f"{path.name}: job {name}"
        for step in job.get("steps", []):
            uses = step.get("uses")
            if uses is not None:
                assert SHA_PIN.match(uses), f"{path.name}: job {name}: {uses} is not pinned to a commit"
    assert "zizmor: ignore" not in path.read_text(), f"{path.name}: no finding is waived"


def locked_version(package: str) -> str:
    (version,) = [
        entry["version"] for entry in tomllib.loads(UV_LOCK.read_text())["package"] if entry["name"] == package
    ]
    return str(version)


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_pulumi_actions_and_the_cli_are_pinned_to_the_versions_the_program_is_tested_with(path):
    """pulumi/actions at a release's commit (its tag in a comment); the CLI at the Python SDK's locked version."""
    lines = path.read_text().splitlines()
    steps = [step for job in load(path)["jobs"].values() for step in steps_using(job, "pulumi/actions")]
    for step in steps:
        line = next(line for line in lines if f"uses: {step['uses']}" in line)
        assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), f"{path.name}: {line.strip()}: tag comment"
        assert str(step.get("with", {}).get("pulumi-version")) == locked_version("pulumi"), (
            f"{path.name}: pulumi/actions installs the CLI at pulumi-version: {locked_version('pulumi')} "
            "(the Python SDK's version in uv.lock), not the newest"
        )
    if "pulumi " in path.read_text():
        assert steps, f"{path.name} runs pulumi, so it installs the pinned CLI with pulumi/actions"


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_aws_uses_oidc_role_from_a_variable_and_state_from_variables(path):
    text = path.read_text()
    assert "aws-access-key-id" not in text, "no long-lived AWS keys"
    assert "aws-secret-access-key" not in text, "no long-lived AWS keys"
    for name, job in load(path)["jobs"].items():
        for step in steps_using(job, "aws-actions/configure-aws-credentials"):
            assert step["with"]["role-to-assume"].startswith("${{ vars."), f"{path.name}: job {name}"
        for step in steps_using(job, "pulumi/actions"):
            if "command" not in step.get("with", {}):
                continue  # install-only: the CLI then runs in `run` steps (held to the same rules below)
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


# --- renew.yml: the daily renewal and drift report ---------------------------------------------------------

CERTIFICATE_TYPE = "pulumi-python:dynamic/pki:Certificate"
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]
ENCRYPTED = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "v1:c2VjcmV0"}
FAKE_PULUMI = """\
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["stack", "export"]:
    shutil.copyfile(os.environ["FAKE_STATE"], args[args.index("--file") + 1])
elif args[:1] == ["up"]:
    if os.environ.get("FAKE_UP_FAILS"):
        sys.exit("error: IssueCertificate: AccessDeniedException")
    shutil.copyfile(os.environ["FAKE_STATE_AFTER_UP"], os.environ["FAKE_STATE"])
elif args[:1] == ["preview"]:
    sys.exit(int(os.environ.get("FAKE_PREVIEW_STATUS", "0")))
"""


def stacks_with_a_certificate() -> set[str]:
    """Stacks whose `pulumi up` renews a certificate: a backend in the shared mode (per-host hosts renew their own),
    except the local one."""
    stacks = set()
    for path in (ROOT / "stacks").glob("Pulumi.*.yaml"):
        stack = path.name.split(".")[1]
        config = yaml.safe_load(path.read_text())["config"]
        shared = config.get(f"{PROJECT}:hostCertificates", "shared") == "shared"
        if stack != "local" and config.get(f"{PROJECT}:backendEnabled", True) and shared:
            stacks.add(stack)
    return stacks


def certificate_urn(stack: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{CERTIFICATE_TYPE}::{name}"


def stack_state(stack: str, certificates: dict[str, float], renew_before_days: int = 20) -> dict[str, Any]:
    """A `pulumi stack export` document: one Certificate per name expiring in that many days, and an SSM parameter."""
    now = datetime.now(UTC)
    resources: list[dict[str, Any]] = [
        {
            "urn": certificate_urn(stack, name),
            "type": CERTIFICATE_TYPE,
            "inputs": {"common_name": "backend.example.com", "renew_before_days": renew_before_days},
            "outputs": {
                "not_after": (now + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "private_key_pem": ENCRYPTED,
            },
        }
        for name, days in certificates.items()
    ]
    resources.append(
        {
            "urn": f"urn:pulumi:{stack}::{PROJECT}::aws:ssm/parameter:Parameter::backend-full-chain",
            "type": "aws:ssm/parameter:Parameter",
            "inputs": {},
            "outputs": {},
        }
    )
    return {"version": 3, "deployment": {"resources": resources}}


@dataclass
class JobRun:
    steps: list[tuple[str, int, str]]  # name, exit status (-1: skipped), output
    pulumi_calls: list[list[str]]
    summary: str

    @property
    def failed(self) -> bool:
        return any(status > 0 for _, status, _ in self.steps)

    def step(self, prefix: str) -> tuple[int, str]:
        (found,) = [(status, output) for name, status, output in self.steps if name.startswith(prefix)]
        return found

    def calls(self, command: str) -> list[list[str]]:
        return [call for call in self.pulumi_calls if call[:1] == [command]]


def run_renew_job(
    tmp_path: Path,
    stack: str,
    before: dict[str, Any],
    after_up: dict[str, Any] | None = None,
    up_fails: bool = False,
    preview_status: int = 0,
) -> JobRun:
    """renew.yml's `run` steps after the CLI is installed, in order, as the runner evaluates their `if`s,
    against a fake `pulumi` that serves the given state and records its arguments."""
    job = load(RENEW)["jobs"]["renew"]
    steps = job["steps"]
    cli = next(index for index, step in enumerate(steps) if str(step.get("uses", "")).startswith("pulumi/actions@"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(f"#!{sys.executable}\n{FAKE_PULUMI}")
    (bin_dir / "pulumi").chmod(0o755)
    (bin_dir / "python3").symlink_to(sys.executable)
    state, state_after = tmp_path / "state.json", tmp_path / "state-after-up.json"
    state.write_text(json.dumps(before))
    state_after.write_text(json.dumps(after_up or before))
    runner_temp, summary, log = tmp_path / "runner-temp", tmp_path / "summary.md", tmp_path / "pulumi.log"
    runner_temp.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_STEP_SUMMARY": str(summary),
        "FAKE_PULUMI_LOG": str(log),
        "FAKE_STATE": str(state),
        "FAKE_STATE_AFTER_UP": str(state_after),
        "FAKE_PREVIEW_STATUS": str(preview_status),
        **({"FAKE_UP_FAILS": "1"} if up_fails else {}),
        **{key: value for key, value in job["env"].items() if "${{" not in str(value)},
        "STACK": stack,
    }
    outputs: dict[str, dict[str, str]] = {}
    results: list[tuple[str, int, str]] = []
    for index, step in enumerate(steps[cli + 1 :]):
        failed = any(status > 0 for _, status, _ in results)
        condition = str(step.get("if", "success()")).removeprefix("${{").removesuffix("}}").strip()
        if condition == "!cancelled()":
            runs = True
        elif condition == "success()":
            runs = not failed
        else:
            match = re.fullmatch(r"steps\.(\w+)\.outputs\.(\w+) == '(\w+)'", condition)
            assert match, f"the test does not know how the runner evaluates `if: {condition}`"
            runs = not failed and outputs.get(match[1], {}).get(match[2]) == match[3]
        name = step.get("name", f"step {index}")
        if not runs:
            results.append((name, -1, ""))
            continue
        output_file = runner_temp / f"output-{index}"
        output_file.touch()
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=ROOT,
            env={**env, "GITHUB_OUTPUT": str(output_file)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if "id" in step:
            outputs[step["id"]] = dict(line.split("=", 1) for line in output_file.read_text().splitlines())
        results.append((name, result.returncode, result.stdout + result.stderr))
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return JobRun(results, calls, summary.read_text() if summary.exists() else "")


def test_renew_runs_daily_for_every_stack_with_a_certificate():
    workflow = load(RENEW)
    (schedule,) = workflow["on"]["schedule"]
    minute, hour, *rest = schedule["cron"].split()
    assert rest == ["*", "*", "*"], f"daily: {schedule['cron']}"
    assert minute.isdigit(), schedule["cron"]
    assert hour.isdigit(), schedule["cron"]
    matrix = workflow["jobs"]["renew"]["strategy"]["matrix"]["include"]
    assert {entry["stack"] for entry in matrix} == stacks_with_a_certificate() == {"dev", "prod"}
    assert workflow["jobs"]["renew"]["strategy"]["fail-fast"] is False, "one stack's failure must not hide another's"
    assert workflow["concurrency"]["cancel-in-progress"] is False, "never cancel a running pulumi up"


def test_renew_has_minimal_permissions_and_the_deploy_workflows_oidc_role_and_state():
    renew = load(RENEW)["jobs"]["renew"]
    assert renew["permissions"] == {"contents": "read", "id-token": "write"}
    (aws,) = steps_using(renew, "aws-actions/configure-aws-credentials")
    (deploy_aws,) = steps_using(load(DEPLOY)["jobs"]["prod"], "aws-actions/configure-aws-credentials")
    assert aws["with"] == deploy_aws["with"]
    assert renew["env"]["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert "PULUMI_CONFIG_PASSPHRASE" not in renew["env"], "the passphrase goes only to steps that run pulumi"
    pulumi_steps = [step for step in renew["steps"] if "pulumi " in step.get("run", "")]
    assert len(pulumi_steps) == 4, [step.get("name") for step in pulumi_steps]
    for step in pulumi_steps:
        assert step["env"] == {"PULUMI_CONFIG_PASSPHRASE": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"}, step["name"]
    assert renew["environment"] == "${{ matrix.environment }}"
    environments = {entry["stack"]: entry["environment"] for entry in renew["strategy"]["matrix"]["include"]}
    assert environments["dev"] == "dev"
    # prod's renewal runs without the approval `production` asks for, in its own environment, and says why.
    assert environments["prod"] == "production-renewal"
    text = RENEW.read_text()
    assert "runs unattended" in text
    assert "ONLY because this job can change nothing but the certificate" in text
    for step in renew["steps"]:
        if "pulumi up" in step.get("run", ""):
            assert "--policy-pack policy" in step["run"], "the guardrails apply to renewals too"


def test_renew_applies_only_the_certificates_inside_their_window_and_their_dependents(tmp_path):
    before = stack_state("prod", {"backend-certificate": 12, "other-certificate": 50})
    after = stack_state("prod", {"backend-certificate": 60, "other-certificate": 50})
    run = run_renew_job(tmp_path, "prod", before, after_up=after)
    assert not run.failed, run.steps
    (up,) = run.calls("up")
    targets = [up[i + 1] for i, arg in enumerate(up) if arg == "--target"]
    assert targets == [certificate_urn("prod", "backend-certificate")], up
    assert "--target-dependents" in up, up
    assert "--refresh" not in up, up
    assert "--yes" in up, up
    assert up[up.index("--stack") + 1] == "prod", up
    (preview,) = run.calls("preview")
    assert "--expect-no-changes" in preview, preview
    assert "--refresh" in preview, preview
    assert "ciphertext" not in "".join(output for _, _, output in run.steps), "state is never printed"
    assert "| `backend-certificate` |" in run.summary, run.summary
    assert "1 to renew" in run.summary, run.summary


def test_renew_changes_nothing_when_no_certificate_is_due(tmp_path):
    run = run_renew_job(tmp_path, "dev", stack_state("dev", {"backend-certificate": 25}, renew_before_days=10))
    assert not run.failed, run.steps
    assert run.calls("up") == []
    assert run.step("Renew")[0] == -1, "the renewal step is skipped"
    assert len(run.calls("preview")) == 1


def test_renew_fails_loudly_when_a_certificate_could_not_be_renewed(tmp_path):
    before = stack_state("prod", {"backend-certificate": 3})
    run = run_renew_job(tmp_path, "prod", before, up_fails=True)
    assert run.failed
    status, output = run.step("Fail unless every certificate")
    assert status == 1, output
    assert "::error title=Certificate not renewed::URGENT" in output, output
    assert "backend-certificate could not be renewed" in run.summary, run.summary
    assert len(run.calls("preview")) == 1, "drift is still reported"


def test_renew_reports_drift_as_a_failure(tmp_path):
    state = stack_state("dev", {"backend-certificate": 25}, renew_before_days=10)
    run = run_renew_job(tmp_path, "dev", state, preview_status=255)
    assert run.step("Report drift")[0] == 255
    assert run.failed


def test_readme_states_the_schedule_the_renew_workflow_has():
    minute, hour, *_ = load(RENEW)["on"]["schedule"][0]["cron"].split()
    readme = (ROOT / "README.md").read_text()
    assert f"runs daily ({int(hour):02d}:{int(minute):02d} UTC" in readme, "README's Operating section"
