"""The two entry points: `make up` without the Pulumi CLI, and `.ci/run` being exactly `make test`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_make_up_without_pulumi_says_how_to_get_it(tmp_path: Path) -> None:
    make = shutil.which("make")
    assert make, "make is required"
    # No pulumi anywhere, and an installer address on loopback that refuses: no traffic leaves the machine.
    path = os.pathsep.join(
        directory for directory in os.environ["PATH"].split(os.pathsep) if not (Path(directory) / "pulumi").exists()
    )
    result = subprocess.run(
        [make, "-C", str(ROOT), "up", f"PULUMI={tmp_path / 'pulumi'}", "PULUMI_INSTALLER=http://127.0.0.1:9/"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": path},
        check=False,
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert "could not install the Pulumi CLI" in result.stderr, result.stderr
    assert "Install it with:" in result.stderr, result.stderr
    assert "pulumi up" not in result.stdout, "nothing may be deployed without the CLI"


def test_ci_runs_make_test_and_nothing_else() -> None:
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "exec make test", commands
    assert all(not command.startswith(("make", "uv", "pytest")) for command in commands[:-1]), commands


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    fence = readme.index("```sh")
    assert readme[fence + 1].startswith("make up"), readme[fence + 1]
    assert readme[fence + 2].startswith("make test"), readme[fence + 2]
    assert readme[fence + 3] == "```", "exactly two set-up commands"
    assert fence < 3, "the commands come first"


FAKE_PULUMI = """\
import os, sys
with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1:2] == ["destroy"]:
    sys.exit(int(os.environ.get("FAKE_DESTROY_STATUS", "0")))
"""


def make_down(tmp_path: Path, pulumi: Path, **env: str) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    assert make, "make is required"
    return subprocess.run(
        [
            make,
            "-s",
            "-C",
            str(ROOT),
            "down",
            f"PULUMI={pulumi}",
            f"LOCAL_DIR={tmp_path / 'local'}",
            f"STATE_DIR={tmp_path / 'state'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FAKE_PULUMI_LOG": str(tmp_path / "pulumi.log"), **env},
        check=False,
    )


def fake_pulumi(tmp_path: Path) -> Path:
    pulumi = tmp_path / "pulumi"
    pulumi.write_text(f"#!{sys.executable}\n{FAKE_PULUMI}")
    pulumi.chmod(0o755)
    return pulumi


def test_make_down_with_nothing_up_says_so_and_claims_nothing(tmp_path: Path) -> None:
    result = make_down(tmp_path, fake_pulumi(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "no local backend was running",
        f"no local stack state in {tmp_path / 'state'}: nothing to destroy",
        "no AWS emulator started by make up was running",
    ]
    assert not (tmp_path / "pulumi.log").exists(), "nothing to destroy, so pulumi is not run"


def test_make_down_stops_and_destroys_what_make_up_started(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (tmp_path / "state").mkdir()
    backend = subprocess.Popen(["sleep", "300"])
    emulator = subprocess.Popen(["sleep", "300"])
    try:
        (local / "backend.pid").write_text(f"{backend.pid}\n")
        (local / "emulator.pid").write_text(f"{emulator.pid}\n")
        result = make_down(tmp_path, fake_pulumi(tmp_path))
        assert result.returncode == 0, result.stderr
        assert backend.wait(timeout=10) is not None
        assert emulator.wait(timeout=10) is not None
    finally:
        backend.kill()
        emulator.kill()
    assert result.stdout.splitlines() == [
        f"stopped the local backend (pid {backend.pid})",
        f"destroyed the local stack (its state stays in {tmp_path / 'state'})",
        f"stopped the AWS emulator (pid {emulator.pid})",
    ], result.stdout
    calls = (tmp_path / "pulumi.log").read_text().splitlines()
    assert calls == ["stack select --non-interactive local", "destroy --yes --non-interactive --stack local"]
    assert not (local / "backend.pid").exists()
    assert not (local / "emulator.pid").exists()


def test_make_down_fails_and_says_so_when_the_stack_was_not_destroyed(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    result = make_down(tmp_path, fake_pulumi(tmp_path), FAKE_DESTROY_STATUS="1")
    assert result.returncode != 0
    assert "the local stack was NOT destroyed" in result.stderr, result.stderr
    assert "destroyed the local stack" not in result.stdout, result.stdout

    missing = make_down(tmp_path, tmp_path / "no-such-pulumi")
    assert missing.returncode != 0
    assert "is not installed: the local stack was NOT destroyed" in missing.stderr, missing.stderr


def test_make_lint_runs_mypy_once_over_the_program_scripts_and_examples() -> None:
    make = shutil.which("make")
    assert make, "make is required"
    dry_run = subprocess.run(
        [make, "-n", "-C", str(ROOT), "lint"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    # The one run at the project's Python; the host scripts get a second check at 3.9 (test_host_python_floor).
    (mypy,) = [line for line in dry_run.splitlines() if " mypy " in f"{line} " and "--python-version" not in line]
    words = mypy.split()
    assert "." in words, mypy
    for program in [*(ROOT / "scripts").iterdir(), *(ROOT / "examples").glob("*/__main__.py")]:
        assert str(program.relative_to(ROOT)) in words, f"{program.name} is not type-checked: {mypy}"


def readme_commands() -> list[str]:
    """Every command the README shows: lines of its ```sh blocks (continuations joined) and inline code."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].strip()
            if command:
                commands.append(command)
    commands += re.findall(r"`([^`\n]+)`", text)
    return commands


def test_readme_commands_work_after_the_set_up_without_uv_on_path() -> None:
    # `make` installs uv privately when it is not on PATH, so a README command that starts with uv would fail.
    commands = readme_commands()
    assert not [command for command in commands if command.startswith("uv ")], "uv may not be on PATH"
    without_uv = os.pathsep.join(
        directory for directory in os.environ["PATH"].split(os.pathsep) if not (Path(directory) / "uv").exists()
    )
    programs = sorted({command.split()[1] for command in commands if command.startswith(".venv/bin/python ")})
    assert "scripts/local-backend" in programs, programs
    for program in programs:
        assert (ROOT / program).is_file(), f"the README runs {program}, which does not exist"
        result = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), program, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PATH": without_uv},
            check=False,
        )
        assert result.returncode == 0, f"{program} --help: {result.stderr}"


def test_readme_cites_only_files_the_project_has() -> None:
    cited = {
        token
        for command in readme_commands()
        for token in command.split()
        # A path (dir/file.ext) or a document (*.md); bare names like backend.json are files the commands write.
        if re.fullmatch(r"[\w.-]*/[\w./-]+\.(md|py|ya?ml|toml|json)|[\w.-]+\.md", token)
    }
    assert "components/certificate.py" in cited, cited
    missing = sorted(token for token in cited if not (ROOT / token).exists())
    assert not missing, f"the README cites files the project does not have: {missing}"
