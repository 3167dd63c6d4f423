"""The Python of the issuer's Lambda runtime (`python3.13`), to run the function's code as Lambda would.

`lambda_python()` finds a 3.13 interpreter (pyenv's, `python3.13` on PATH, or `LAMBDA_PYTHON`); without one the
test cannot prove the code runs there: it fails under CI (CI=true) and is skipped with the reason elsewhere, as
tests/host_python.py does for the hosts' 3.9.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from components.per_host_issuer import RUNTIME

LAMBDA_PYTHON_VERSION = tuple(int(part) for part in RUNTIME.removeprefix("python").split("."))


def _version(interpreter: str) -> tuple[int, ...] | None:
    try:
        answer = subprocess.run(
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except OSError:
        return None
    text = answer.stdout.strip()
    return tuple(int(part) for part in text.split(".")) if answer.returncode == 0 and text else None


@functools.lru_cache(maxsize=1)
def find_lambda_python() -> str | None:
    wanted = ".".join(map(str, LAMBDA_PYTHON_VERSION))
    candidates = [os.environ.get("LAMBDA_PYTHON", "")]
    for root in (os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")):
        if root:
            candidates += sorted(map(str, Path(root, "versions").glob(f"{wanted}*/bin/python{wanted}")), reverse=True)
    candidates.append(shutil.which(f"python{wanted}") or "")
    return next((path for path in candidates if path and _version(path) == LAMBDA_PYTHON_VERSION), None)


def lambda_python() -> str:
    found = find_lambda_python()
    if found is None:
        version = RUNTIME.removeprefix("python")
        reason = f"no Python {version} (pyenv, PATH or LAMBDA_PYTHON): cannot run the issuer as Lambda does"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found
