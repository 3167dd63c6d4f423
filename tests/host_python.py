"""The Python that runs the host-side scripts: Amazon Linux 2023's python3 is 3.9 for the release's life.

`host_python()` finds a real 3.9 interpreter (pyenv's, or `python3.9` on PATH; `HOST_PYTHON` overrides).
When there is none the test cannot prove anything about 3.9: it fails under CI (CI=true) and is skipped with
the reason elsewhere, never passed silently.
"""

from __future__ import annotations

import os
import sys

import pytest

from components.local.python import find_python

HOST_PYTHON_VERSION = (3, 9)
INTERPRETERS = ["current", "host-3.9"]
"""Parameter ids for tests that run a host script under this interpreter and under the hosts' 3.9."""


def find_host_python() -> str | None:
    """Path of a working Python 3.9 interpreter, or None."""
    return find_python(*HOST_PYTHON_VERSION, override="HOST_PYTHON")


def required(found: str | None, reason: str) -> str:
    """`found`; without it the test cannot prove anything: it fails under CI (CI=true) and is skipped elsewhere."""
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def host_python() -> str:
    """Python 3.9 for the calling test; fails under CI and skips elsewhere when there is none."""
    return required(
        find_host_python(),
        "no Python 3.9 interpreter found (pyenv versions 3.9.x, python3.9 on PATH or HOST_PYTHON): "
        "cannot check that the host-side scripts run on Amazon Linux 2023's python3",
    )


def interpreter_for(param: str) -> str:
    """`sys.executable` for "current", Python 3.9 for "host-3.9" (see INTERPRETERS)."""
    return sys.executable if param == "current" else host_python()
