"""The Python that runs the host-side scripts: Amazon Linux 2023's python3 is 3.9 for the release's life.

`host_python()` finds a real 3.9 interpreter (pyenv's, or `python3.9` on PATH; `HOST_PYTHON` overrides).
When there is none the test cannot prove anything about 3.9: it fails under CI (CI=true) and is skipped with
the reason elsewhere, never passed silently.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HOST_PYTHON_VERSION = (3, 9)
INTERPRETERS = ["current", "host-3.9"]
"""Parameter ids for tests that run a host script under this interpreter and under the hosts' 3.9."""


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


def _candidates() -> list[str]:
    candidates = []
    if os.environ.get("HOST_PYTHON"):
        candidates.append(os.environ["HOST_PYTHON"])
    pyenv_roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        answer = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30, check=False)
        pyenv_roots.insert(0, answer.stdout.strip())
    for root in filter(None, pyenv_roots):
        # Newest 3.9.x first.
        versions = sorted(Path(root, "versions").glob("3.9*/bin/python3.9"), key=lambda p: p.parts, reverse=True)
        candidates += [str(path) for path in versions]
    if shutil.which("python3.9"):
        candidates.append(str(shutil.which("python3.9")))
    return candidates


@functools.lru_cache(maxsize=1)
def find_host_python() -> str | None:
    """Path of a working Python 3.9 interpreter, or None."""
    for candidate in _candidates():
        if _version(candidate) == HOST_PYTHON_VERSION:
            return candidate
    return None


def host_python() -> str:
    """Python 3.9 for the calling test; fails under CI and skips elsewhere when there is none."""
    found = find_host_python()
    if found is None:
        reason = (
            "no Python 3.9 interpreter found (pyenv versions 3.9.x, python3.9 on PATH or HOST_PYTHON): "
            "cannot check that the host-side scripts run on Amazon Linux 2023's python3"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def interpreter_for(param: str) -> str:
    """`sys.executable` for "current", Python 3.9 for "host-3.9" (see INTERPRETERS)."""
    return sys.executable if param == "current" else host_python()
