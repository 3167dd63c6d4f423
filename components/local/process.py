"""Local processes and loopback ports for tests, benches and scripts: find a binary, a free port, stop cleanly."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time

__all__ = ["free_port", "require_binary", "stop_process", "wait_for_port"]


def require_binary(name: str) -> str:
    """Path of `name`; raises (a test fails, it is not skipped) when missing: CI installs every binary used."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found on PATH; install it (Debian: nginx-light, openssl, tcpdump, wrk)")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], host: str = "127.0.0.1") -> None:
    """Returns once `host:port` accepts a connection; raises if `process` exits first or after 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after 10s")


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 10) -> None:
    """SIGTERM (for nginx: fast shutdown of master and workers), then SIGKILL after `grace` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
