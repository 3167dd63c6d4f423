"""The tools `make` installs for the project, as the tests find them."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def uv_binary() -> str:
    """The uv `make python-deps` uses: on PATH, else its private copy in .local/uv (a test fails without it)."""
    found = shutil.which("uv") or str(ROOT / ".local" / "uv" / "bin" / "uv")
    assert Path(found).exists(), "uv is neither on PATH nor in .local/uv: run `make python-deps`"
    return found
