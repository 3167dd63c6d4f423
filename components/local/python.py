"""Other Python interpreters on this machine: the hosts' (Amazon Linux 2023's python3 is 3.9) and Lambda's
(the issuer's runtime), to run code as it runs there. For tests and benches."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["find_python"]


def _version(interpreter: str) -> tuple[int, int] | None:
    try:
        result = subprocess.run(
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except OSError:
        return None
    major, _, minor = result.stdout.strip().partition(".")
    return (int(major), int(minor)) if result.returncode == 0 and major.isdigit() and minor.isdigit() else None


def _candidates(version: str, override: str) -> list[str]:
    candidates = [os.environ[override]] if os.environ.get(override) else []
    pyenv_roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        answer = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30, check=False)
        pyenv_roots.insert(0, answer.stdout.strip())
    for root in filter(None, pyenv_roots):
        # Newest patch release first.
        found = sorted(Path(root, "versions").glob(f"{version}*/bin/python{version}"), key=lambda p: p.parts)
        candidates += [str(path) for path in reversed(found)]
    on_path = shutil.which(f"python{version}")
    return [*candidates, on_path] if on_path else candidates


@functools.cache
def find_python(major: int, minor: int, *, override: str) -> str | None:
    """Path of a working Python `major.minor`, or None: the environment variable `override` first, then pyenv's
    versions (newest first), then `python<major>.<minor>` on PATH."""
    for candidate in _candidates(f"{major}.{minor}", override):
        if _version(candidate) == (major, minor):
            return candidate
    return None
