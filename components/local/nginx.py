"""A real nginx on this machine running the rendered configuration, for tests and benches.

Configurations come from `components.nginx_config` (what a host runs) wrapped by `render_standalone_conf`,
so every file nginx writes stays in a work directory and no root is needed.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from components.local.process import require_binary, stop_process, wait_for_port
from components.local.tls import LEAF_DNS_NAME, Pki
from components.nginx_config import render_server_block, render_standalone_conf

__all__ = [
    "nginx_test_config",
    "plain_http_server_block",
    "running_nginx",
    "systemctl_shim",
    "tls_server_block",
    "worker_cpu_seconds",
    "worker_pids",
    "write_standalone_conf",
]


def write_standalone_conf(workdir: Path, server_blocks: str) -> Path:
    """`workdir/nginx.conf` with `server_blocks` (any text valid inside `http {}`) in its http block."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(render_standalone_conf(server_block=server_blocks, workdir=str(workdir)))
    return conf


def systemctl_shim(nginx: str, nginx_args: str, pid_file: Path) -> str:
    """A stand-in `systemctl` for host scripts run on this machine: it logs each call to `$FAKE/calls` and drives
    the real `nginx` (started with `nginx_args`, which name its prefix and configuration) as systemd would:
    `is-active` while `pid_file` names a live process, `start`, `reload`; `is-enabled` always answers yes."""
    return f"""#!/bin/bash
echo "systemctl $*" >>"$FAKE/calls"
running() {{ [ -s "{pid_file}" ] && kill -0 "$(cat "{pid_file}")" 2>/dev/null; }}
case "$1" in
    is-active) running ;;
    is-enabled) true ;;
    start) {nginx} {nginx_args} ;;
    reload) {nginx} {nginx_args} -s reload ;;
esac
"""


def tls_server_block(pki: Pki, port: int, listen_address: str = "127.0.0.1", **options: object) -> str:
    """The rendered server block serving `pki`'s full chain; `options` go to `render_server_block`."""
    return render_server_block(
        server_names=[LEAF_DNS_NAME],
        certificate_path=str(pki.fullchain),
        private_key_path=str(pki.leaf_key),
        port=port,
        listen_address=listen_address,
        **options,  # type: ignore[arg-type]
    )


def plain_http_server_block(port: int, listen_address: str) -> str:
    """A cleartext twin of the TLS server (same answer): the control of capture tests, the floor of benches."""
    return (
        "server {\n"
        f"    listen {listen_address}:{port};\n"
        "    location / {\n"
        "        default_type application/json;\n"
        '        return 200 \'{"status":"ok"}\\n\';\n'
        "    }\n"
        "}\n"
    )


def nginx_test_config(conf: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a standalone conf; the caller asserts on returncode and stderr."""
    nginx = require_binary("nginx")
    return subprocess.run(
        [nginx, "-t", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@contextmanager
def running_nginx(conf: Path, ports: Sequence[int] = (), netns: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """nginx in the foreground from `conf`; waits until it listens and always stops it.

    In a network namespace the ports are unreachable from here, so readiness is the pid file, which nginx
    writes only after it has bound every listening socket.
    """
    nginx = require_binary("nginx")
    command = [nginx, "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"]
    if netns is not None:
        command = [require_binary("ip"), "netns", "exec", netns, *command]
    pid_file = conf.parent / "nginx.pid"
    pid_file.unlink(missing_ok=True)
    error_log = conf.parent / "error.log"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            if netns is None:
                for port in ports:
                    wait_for_port(port, process)
            else:
                deadline = time.monotonic() + 10
                while not pid_file.exists():
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"nginx did not start in {netns}: {process.returncode}")
                    time.sleep(0.05)
        except RuntimeError as error:
            stop_process(process)
            stderr = process.stderr.read().decode() if process.stderr else ""
            log = error_log.read_text() if error_log.exists() else ""
            raise RuntimeError(f"{error}\nnginx stderr: {stderr}\nerror.log: {log}") from None
        yield process
    finally:
        stop_process(process)
        if process.stderr:
            process.stderr.close()


def worker_pids(master_pid: int) -> list[int]:
    """The worker processes of the nginx master `master_pid` (Linux: /proc/<pid>/task/<pid>/children)."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def worker_cpu_seconds(master_pid: int) -> float:
    """User + system CPU time of nginx's workers so far (the master does no request work)."""
    ticks = 0
    for pid in worker_pids(master_pid):
        # Fields after the parenthesised command name; utime and stime are fields 14 and 15 of proc(5).
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
