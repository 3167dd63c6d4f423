"""Two network namespaces joined by a veth pair, for tests that need a real (virtual) wire between two machines.

Addresses come from 192.0.2.0/24 (TEST-NET-1) and exist only inside the namespaces: this machine's own network is
never touched, and tests run side by side (names carry the pid and a counter).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import count

import pytest

from tests.tls_fixtures import run

_instances = count()


@dataclass(frozen=True)
class Namespaces:
    server: str
    client: str
    server_link: str
    client_link: str


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return run([shutil.which("ip") or "ip", *args], timeout=30)


def _checked_ip(*args: str) -> None:
    result = ip(*args)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


def _delete_namespace(name: str) -> None:
    # Stop anything still running inside (only this test's processes can be there), then drop it;
    # deleting a namespace also destroys the veth end it holds.
    for pid in ip("netns", "pids", name).stdout.split():
        with suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    ip("netns", "delete", name)


@contextmanager
def linked_namespaces(prefix: str, server_ip: str, client_ip: str) -> Iterator[Namespaces]:
    """`<prefix>-srv-…` with `server_ip`/24 and `<prefix>-cli-…` with `client_ip`/24 on the two ends of a veth pair,
    loopback up in both. Skips the test without root or iproute2."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 `ip` is not installed")
    suffix = f"{os.getpid()}x{next(_instances)}"
    names = Namespaces(
        server=f"{prefix}-srv-{suffix}",
        client=f"{prefix}-cli-{suffix}",
        server_link=f"{prefix}s{suffix}"[:15],  # interface names are at most 15 characters
        client_link=f"{prefix}c{suffix}"[:15],
    )
    probe = ip("netns", "add", names.server)
    if probe.returncode != 0:
        pytest.skip(f"`ip netns add` is not permitted here: {probe.stderr.strip()}")
    try:
        _checked_ip("netns", "add", names.client)
        _checked_ip("link", "add", names.server_link, "type", "veth", "peer", "name", names.client_link)
        _checked_ip("link", "set", names.server_link, "netns", names.server)
        _checked_ip("link", "set", names.client_link, "netns", names.client)
        for namespace, link, address in [
            (names.server, names.server_link, server_ip),
            (names.client, names.client_link, client_ip),
        ]:
            _checked_ip("-n", namespace, "addr", "add", f"{address}/24", "dev", link)
            _checked_ip("-n", namespace, "link", "set", link, "up")
            _checked_ip("-n", namespace, "link", "set", "lo", "up")
        yield names
    finally:
        _delete_namespace(names.client)
        _delete_namespace(names.server)
        # If setup stopped before the move into a namespace, the veth pair is still here.
        if ip("link", "show", names.server_link).returncode == 0:
            ip("link", "delete", names.server_link)
