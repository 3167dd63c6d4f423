"""The two entry points: `make up` without the Pulumi CLI, and `.ci/run` being exactly `make test`."""

from __future__ import annotations

import os
import shutil
import subprocess
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
