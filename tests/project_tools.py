"""The tools `make` installs for the project, as the tests find them."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def uv_binary() -> str:
    """The uv `make python-deps` uses: on PATH, else its private copy in .local/uv (a test fails without it)."""
    found = shutil.which("uv") or str(ROOT / ".local" / "uv" / "bin" / "uv")
    assert Path(found).exists(), "uv is neither on PATH nor in .local/uv: run `make python-deps`"
    return found


def load_script(name: str) -> ModuleType:
    """`scripts/NAME` (no .py suffix) loaded as a module, to test its functions one by one."""
    loader = importlib.machinery.SourceFileLoader(f"script_{name.replace('-', '_')}", str(ROOT / "scripts" / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # its dataclasses look their module up there
    loader.exec_module(module)
    return module
