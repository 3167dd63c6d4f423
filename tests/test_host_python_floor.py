"""The static side of the hosts' Python floor: `make lint` holds host-side scripts to Python 3.9.

The runtime side is in test_trust_ca.py, test_tls_gate.py, test_verify_tls.py and test_cert_agent.py (each test runs
under a real 3.9 too).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HOST_SCRIPTS = ["scripts/trust-ca", "scripts/tls-gate", "scripts/verify-tls", "scripts/cert-agent"]


def _makefile_host_scripts() -> list[str]:
    match = re.search(r"^HOST_SCRIPTS := (.+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert match, "Makefile defines HOST_SCRIPTS"
    return match.group(1).split()


def _mypy_at_39(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--python-version", "3.9", "--scripts-are-modules", "--no-incremental",
         str(path)],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
    )  # fmt: skip


def test_lint_checks_every_host_script_at_python_39() -> None:
    assert _makefile_host_scripts() == HOST_SCRIPTS
    lint = (REPO / "Makefile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "$(UV) run mypy --python-version 3.9 --scripts-are-modules $(HOST_SCRIPTS)" in lint
    ruff = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]
    assert ruff["per-file-target-version"] == dict.fromkeys(HOST_SCRIPTS, "py39")


def test_the_39_check_catches_zip_strict(tmp_path: Path) -> None:
    """The bug that kept the CA out of every host's trust store fails the lint command."""
    source = (REPO / "scripts/trust-ca").read_text()
    call = "zip(anchor_names(args.name, len(certificates), family), certificates)"
    assert call in source
    broken = tmp_path / "trust-ca"
    broken.write_text(source.replace(call, call[:-1] + ", strict=True)"))
    result = _mypy_at_39(broken)
    assert result.returncode == 1, result.stdout
    assert 'No overload variant of "zip"' in result.stdout


@pytest.mark.parametrize("script", HOST_SCRIPTS)
def test_host_scripts_pass_the_39_check(script: str) -> None:
    result = _mypy_at_39(REPO / script)
    assert result.returncode == 0, result.stdout


def test_the_sync_scripts_inline_python_passes_the_39_check(tmp_path: Path) -> None:
    """The rendered sync script pipes SSM's answer through python3: that code is host-side too."""
    from components.host_bootstrap import _SPLIT_PARAMETERS_PY

    program = tmp_path / "split_parameters.py"
    program.write_text(_SPLIT_PARAMETERS_PY)
    result = _mypy_at_39(program)
    assert result.returncode == 0, result.stdout
