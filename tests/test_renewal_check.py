"""scripts/renewal-check: the date arithmetic behind the daily renewal workflow (.github/workflows/renew.yml)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RENEWAL_CHECK = ROOT / "scripts" / "renewal-check"
CERTIFICATE_TYPE = "pulumi-python:dynamic/pki:Certificate"
URN = f"urn:pulumi:prod::pca-backend::{CERTIFICATE_TYPE}::backend-certificate"


def certificate(not_after: str, renew_before_days: int | None = 20, urn: str = URN, **extra: Any) -> dict[str, Any]:
    inputs = {} if renew_before_days is None else {"renew_before_days": renew_before_days}
    return {"urn": urn, "type": CERTIFICATE_TYPE, "inputs": inputs, "outputs": {"not_after": not_after}, **extra}


def check(tmp_path: Path, command: str, resources: list[dict[str, Any]], now: str, *extra: str):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 3, "deployment": {"resources": resources}}))
    return subprocess.run(
        [sys.executable, str(RENEWAL_CHECK), command, "--state", str(state), "--now", now, *extra],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("now", "due"),
    [
        ("2026-02-09T23:59:59Z", False),  # one second before not_after - 20 days
        ("2026-02-10T00:00:00Z", True),  # the provider's diff replaces from this instant (now >= renew_at)
        ("2026-03-01T12:00:00Z", True),  # already expired: still renewed
    ],
)
def test_due_lists_exactly_the_certificates_inside_their_window(tmp_path, now, due):
    targets, output = tmp_path / "targets", tmp_path / "github-output"
    result = check(
        tmp_path,
        "due",
        [certificate("2026-03-02T00:00:00Z")],
        now,
        "--targets-file",
        str(targets),
        "--github-output",
        str(output),
    )
    assert result.returncode == 0, result.stderr
    assert targets.read_text() == (f"{URN}\n" if due else "")
    assert output.read_text() == f"due={'true' if due else 'false'}\n"
    assert "2026-02-10 00:00" in result.stdout, "the table shows when the window opens"


def test_due_ignores_other_resources_and_old_certificates_pending_deletion(tmp_path):
    targets = tmp_path / "targets"
    resources = [
        certificate("2026-01-02T00:00:00Z", urn=URN.replace("backend-certificate", "old"), delete=True),
        {"urn": "urn:pulumi:prod::pca-backend::aws:ssm/parameter:Parameter::p", "type": "aws:ssm/parameter:Parameter"},
        certificate("2026-06-01T00:00:00Z"),
    ]
    result = check(tmp_path, "due", resources, "2026-01-01T00:00:00Z", "--targets-file", str(targets))
    assert result.returncode == 0, result.stderr
    assert targets.read_text() == ""
    assert "`old`" not in result.stdout


def test_renew_before_days_falls_back_to_the_outputs(tmp_path):
    resource = certificate("2026-03-02T00:00:00Z", renew_before_days=None)
    resource["outputs"]["renew_before_days"] = 30
    targets = tmp_path / "targets"
    result = check(tmp_path, "due", [resource], "2026-01-31T00:00:00Z", "--targets-file", str(targets))
    assert result.returncode == 0, result.stderr
    assert targets.read_text() == f"{URN}\n"


def test_verify_fails_while_a_certificate_is_inside_its_window(tmp_path):
    summary = tmp_path / "summary.md"
    result = check(
        tmp_path, "verify", [certificate("2026-03-02T00:00:00Z")], "2026-02-20T00:00:00Z", "--summary", str(summary)
    )
    assert result.returncode == 1
    assert result.stdout.startswith("::error title=Certificate not renewed::"), result.stdout
    assert "in 10.0 days" in result.stdout
    assert "URGENT" not in result.stdout, "10 days left is above the default alarm (7)"
    assert "could not be renewed" in summary.read_text()


def test_verify_says_urgent_within_the_alarm_days(tmp_path):
    result = check(
        tmp_path, "verify", [certificate("2026-03-02T00:00:00Z")], "2026-02-27T00:00:00Z", "--alarm-days", "5"
    )
    assert result.returncode == 1
    assert "::URGENT: " in result.stdout, result.stdout
    assert "in 3.0 days" in result.stdout


def test_verify_passes_once_renewed(tmp_path):
    result = check(tmp_path, "verify", [certificate("2026-05-01T00:00:00Z")], "2026-02-27T00:00:00Z")
    assert result.returncode == 0, result.stdout
    assert "::error" not in result.stdout


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ([certificate("2026-05-01T00:00:00")], "has no time zone"),
        ([certificate("next week")], "is not an ISO 8601"),
        ([certificate("2026-05-01T00:00:00Z", renew_before_days=None)], "no readable renew_before_days"),
    ],
)
def test_unreadable_state_is_refused_with_the_reason(tmp_path, resources, message):
    result = check(tmp_path, "due", resources, "2026-02-27T00:00:00Z")
    assert result.returncode == 2
    assert message in result.stderr, result.stderr


def test_a_file_that_is_not_a_stack_export_is_refused(tmp_path):
    state = tmp_path / "state.json"
    state.write_text("{}")
    result = subprocess.run(
        [sys.executable, str(RENEWAL_CHECK), "due", "--state", str(state)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "pulumi stack export" in result.stderr


def test_verify_fails_while_an_old_certificate_is_pending_deletion_next_to_its_replacement(tmp_path):
    """A renewal that issued the new certificate but failed before the parameters changed (and the old one was
    revoked): the new certificate is outside its window, yet hosts may still serve the old one."""
    summary = tmp_path / "summary.md"
    resources = [
        certificate("2026-03-02T00:00:00Z", delete=True),  # the old one, still in the state
        certificate("2026-05-31T00:00:00Z"),  # its replacement
    ]
    result = check(tmp_path, "verify", resources, "2026-02-20T00:00:00Z", "--summary", str(summary))
    assert result.returncode == 1, result.stdout
    assert result.stdout.startswith("::error title=Certificate renewal unfinished::"), result.stdout
    assert URN in result.stdout
    assert f"pulumi up --target '{URN}' --target-dependents" in result.stdout
    assert "renewed only half way" in summary.read_text()


def test_due_targets_an_unfinished_renewal(tmp_path):
    targets, output = tmp_path / "targets", tmp_path / "github-output"
    resources = [certificate("2026-03-02T00:00:00Z", delete=True), certificate("2026-05-31T00:00:00Z")]
    result = check(
        tmp_path,
        "due",
        resources,
        "2026-02-20T00:00:00Z",
        "--targets-file",
        str(targets),
        "--github-output",
        str(output),
    )
    assert result.returncode == 0, result.stderr
    assert targets.read_text() == f"{URN}\n"
    assert output.read_text() == "due=true\n"
    assert "did not finish" in result.stdout


def test_a_certificate_deleted_from_the_program_is_not_an_unfinished_renewal(tmp_path):
    """Pending deletion without a replacement: the program dropped it; nothing to renew."""
    other = URN.replace("backend-certificate", "retired")
    resources = [certificate("2026-03-02T00:00:00Z", urn=other, delete=True), certificate("2026-05-31T00:00:00Z")]
    result = check(tmp_path, "verify", resources, "2026-02-20T00:00:00Z")
    assert result.returncode == 0, result.stdout
