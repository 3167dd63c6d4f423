"""Paths and a command runner for the data-plane tests.

The PKI, free ports and the real nginx process the tests share with the benches live in `components.local`
(tls, process, nginx); this module keeps only what is particular to the test suite.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRUST_CA = REPO / "scripts" / "trust-ca"
VERIFY_TLS = REPO / "scripts" / "verify-tls"


def run(command: Sequence[str | os.PathLike[str]], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout, check=False)
