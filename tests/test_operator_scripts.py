"""The operator scripts as the README's "Operator scripts" section shows them.

Each script runs directly (its shebang, the `python3` on PATH) and through the project's environment, and
says the same both ways; each synopsis in the README lists exactly the options the script's `--help` lists.
`local-backend`'s demo says why the certificate moto issues differs from the one requested.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from components.local.process import free_port, stop_process, wait_for_port
from tests.project_tools import load_script

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(path for path in (ROOT / "scripts").iterdir() if path.is_file())
PROJECT_PYTHON = ROOT / ".venv" / "bin" / "python"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def run(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def help_options(script: Path) -> set[str]:
    """The options the script's argparse usage line lists (not those its prose mentions)."""
    result = run([str(PROJECT_PYTHON), str(script), "--help"])
    assert result.returncode == 0, result.stderr
    usage = result.stdout.split("\n\n", 1)[0]
    assert usage.startswith(f"usage: {script.name} "), usage
    return set(OPTION.findall(usage)) - {"--help"}


def readme_synopses() -> dict[str, str]:
    """Script name -> the code span that opens its bullet in the README's "Operator scripts" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Operator scripts\n", 1)[1].split("\n## ", 1)[0]
    return {name: span for span, name in re.findall(r"^- `(([\w-]+)[^`]*)`", section, flags=re.MULTILINE)}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_script_runs_directly_and_through_the_project_environment(script: Path) -> None:
    through_venv = run([str(PROJECT_PYTHON), str(script), "--help"])
    assert through_venv.returncode == 0, through_venv.stderr
    # Directly, as the README's `scripts/NAME` runs it: the shebang's `python3` is whatever PATH has first.
    directly = run([str(script), "--help"])
    assert directly.returncode == 0, f"scripts/{script.name} --help: {directly.stderr}"
    # And with a Python that has none of the project's packages (-S: no site-packages at all).
    bare = run([sys.executable, "-S", str(script), "--help"])
    assert bare.returncode == 0, f"python3 scripts/{script.name} --help, without the project's packages: {bare.stderr}"
    assert directly.stdout == through_venv.stdout == bare.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_readme_synopsis_lists_exactly_the_options_of_the_scripts_help(script: Path) -> None:
    synopses = readme_synopses()
    assert script.name in synopses, f"the README's Operator scripts section has no bullet for {script.name}"
    documented = set(OPTION.findall(synopses[script.name]))
    actual = help_options(script)
    assert documented == actual, (
        f"{script.name}: only in --help: {sorted(actual - documented)}; "
        f"only in the README: {sorted(documented - actual)}"
    )


def test_every_script_the_readme_documents_exists() -> None:
    assert sorted(readme_synopses()) == sorted(path.name for path in SCRIPTS)


# --- local-backend's demo: what the certificate says, and why ----------------------------------------------


@pytest.fixture(scope="module")
def local_backend() -> ModuleType:
    return load_script("local-backend")


def test_validity_note_says_why_a_certificate_differs_from_the_request(local_backend: ModuleType) -> None:
    assert local_backend.validity_note(7.0, 7, emulator_is_moto=True) == "(7 days, as requested)"
    moto = local_backend.validity_note(365.0, 7, emulator_is_moto=True)
    assert moto.startswith("(365 days; 7 requested): moto, the local emulator, ignores the requested validity"), moto
    assert "AWS Private CA issues what is requested" in moto, moto
    other = local_backend.validity_note(30.0, 90, emulator_is_moto=False)
    assert other == "(30 days; 90 requested): the CA did not issue the validity requested", other


def test_is_moto_tells_moto_from_another_server(local_backend: ModuleType, moto_endpoint: str) -> None:
    assert local_backend.is_moto(moto_endpoint)
    with subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port := free_port())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as other:
        try:
            wait_for_port(port, other)
            assert not local_backend.is_moto(f"http://127.0.0.1:{port}")
        finally:
            stop_process(other)
    assert not local_backend.is_moto(f"http://127.0.0.1:{free_port()}"), "nothing listens there"


def test_demo_line_says_moto_ignored_the_validity(moto_endpoint: str, tmp_path: Path) -> None:
    """The README's demo against moto: the log line names the 365 days moto issued and the 7 requested."""
    stderr_path = tmp_path / "local-backend.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "local-backend"), "--endpoint-url", moto_endpoint, "--port", str(free_port())],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.startswith("{"), stderr_path.read_text()
    finally:
        stop_process(process, grace=30)
        if process.stdout:
            process.stdout.close()
    (issued,) = [line for line in stderr_path.read_text().splitlines() if "issued arn:" in line]
    # moto reports every CA as short-lived, so local-backend asks for the short-lived cap of 7 days.
    assert "(365 days; 7 requested): moto, the local emulator, ignores the requested validity" in issued, issued
