"""What a host installs and runs at boot, whatever delivers its key material: files, then commands.

A key delivery (`components/key_delivery.py`) describes the software its hosts run as a `HostPayload`: the files
to install (scripts, systemd units, the nginx server block, configuration) and the shell commands that start them
once every file is in place. The fleet stores the payload in S3; its launch template carries a small bootstrap
that downloads it and runs it only if its SHA-256 is the one the template names. Pure data, no
Pulumi: renderers (`components/host_bootstrap.py`) build payloads and tests inspect them.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

__all__ = ["HostFile", "HostPayload", "holds_key_material"]

_MODE = re.compile(r"0[0-7]{3}")


def holds_key_material(text: str) -> bool:
    """Whether `text` holds a PEM private key of any kind (PKCS#8, encrypted, EC, RSA): what a host's software,
    its payload and its launch template must never carry."""
    return "PRIVATE KEY-----" in text


@dataclass(frozen=True)
class HostFile:
    """One file installed on every host, root-owned, written before any command runs."""

    path: str
    """Absolute path on the host, e.g. `/usr/local/sbin/pca-backend-tls-gate`."""
    mode: str
    """Permissions as four octal digits, e.g. `0755` for a script, `0644` for a unit, `0600` for a secret."""
    content: str
    """The file's text, verbatim. Never key material: payloads are not secret."""

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or posixpath.normpath(self.path) != self.path:
            raise ValueError(f"HostFile path must be absolute and normalised, got {self.path!r}")
        if not _MODE.fullmatch(self.mode):
            raise ValueError(f"HostFile mode must be four octal digits such as '0755', got {self.mode!r}")
        if holds_key_material(self.content):
            raise ValueError(f"HostFile {self.path} must not hold key material: payloads are not secret")


@dataclass(frozen=True)
class HostPayload:
    """The software a host runs: files, then the commands (bash, as root, in order) that start it."""

    files: tuple[HostFile, ...]
    """Installed in this order; each path at most once."""
    commands: tuple[str, ...]
    """Shell commands run once every file is in place (e.g. `systemctl daemon-reload`, enable a timer, a first
    run); a failing command stops the boot, so retries belong in the commands or in the units they start."""

    def __post_init__(self) -> None:
        paths = [file.path for file in self.files]
        repeated = sorted({path for path in paths if paths.count(path) > 1})
        if repeated:
            raise ValueError(f"HostPayload installs {', '.join(repeated)} more than once")
