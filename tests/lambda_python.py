"""The Python of the issuer's Lambda runtime (`python3.13`), to run the function's code as Lambda would.

`lambda_python()` finds a 3.13 interpreter (pyenv's, `python3.13` on PATH, or `LAMBDA_PYTHON`); without one the
test cannot prove the code runs there: it fails under CI (CI=true) and is skipped with the reason elsewhere, as
tests/host_python.py does for the hosts' 3.9.
"""

from __future__ import annotations

from components.local.python import find_python
from components.per_host_issuer import RUNTIME
from tests.host_python import required

LAMBDA_PYTHON_VERSION = tuple(int(part) for part in RUNTIME.removeprefix("python").split("."))


def lambda_python() -> str:
    major, minor = LAMBDA_PYTHON_VERSION
    return required(
        find_python(major, minor, override="LAMBDA_PYTHON"),
        f"no Python {major}.{minor} (pyenv, PATH or LAMBDA_PYTHON): cannot run the issuer as Lambda does",
    )
