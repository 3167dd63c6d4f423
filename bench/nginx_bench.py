"""What TLS and the upstream pool cost on a backend host: nginx running the rendered config on 127.0.0.1.

One nginx serves every scenario (plain HTTP, TLS with an EC P-256 and with an RSA-2048 chain, and the proxy
with and without the upstream pool); the scenarios of a table run interleaved, round after round in a rotating
order, so load from elsewhere on the machine hits them alike. Each row checks that it measures what its label
says, and the script exits 1 if a check fails.

1. Full handshakes. A client opens a new connection per request and never offers a session to resume, so every
   TLS handshake is a full one; both ends count resumed sessions (nginx logs $ssl_session_reused) and the row
   requires 0. Server CPU per connection is the nginx workers' utime + stime (/proc/<pid>/stat) over the run
   divided by the connections nginx logged. The floor is the same request over plain HTTP (TCP connection,
   request, close): row minus floor is what the handshake costs the server.
2. Proxy. wrk keeps its TLS connections to nginx open, nginx proxies to a real HTTP application (a second nginx
   answering 200 and logging the connection each request arrived on). The floor is the proxy without a pool
   (`upstream_keepalive=0`); the rows check that without the pool every upstream connection carried exactly one
   request and that with it the application accepted far fewer connections than requests.

Usage (bounded: about a minute with the defaults):

    uv run python bench/nginx_bench.py [--rounds 5] [--handshakes 400] [--duration 2] [--connections 16]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# Run as a file (`python bench/nginx_bench.py`): make the repository importable for components.local.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.local.nginx import (
    plain_http_server_block,
    running_nginx,
    tls_server_block,
    worker_cpu_seconds,
    write_standalone_conf,
)
from components.local.process import free_port, require_binary
from components.local.tls import LEAF_DNS_NAME, Pki, make_pki

KEY_LABELS = {"ec": "EC P-256", "rsa": "RSA-2048"}
HANDSHAKE_THREADS = 2  # the client's concurrency for the handshake table (the machine has few cores)
RUN_TIME_LIMIT = 30.0  # seconds; a run stops early rather than overrun
# Appended to the http {} block of the bench's nginx: one line per request, to check what each run measured.
BENCH_LOG_FORMAT = "log_format bench '$server_port $connection $connection_requests $ssl_session_reused';"


# --- the bench's own request log -------------------------------------------------------------------------


@dataclass
class RequestLog:
    """nginx's per-request log; `since_mark()` returns the lines written since the previous call."""

    path: Path
    offset: int = 0

    def directives(self) -> str:
        return f"{BENCH_LOG_FORMAT}\naccess_log {self.path} bench;\n"

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def since_mark(self) -> list[list[str]]:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            text = log.read().decode()
        self.offset += len(text.encode())
        return [line.split() for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class Served:
    """What nginx logged for one port during one run."""

    requests: int
    connections: int
    resumed: int
    max_requests_per_connection: int


def served(lines: list[list[str]], port: int) -> Served:
    mine = [line for line in lines if line[0] == str(port)]
    return Served(
        requests=len(mine),
        connections=len({line[1] for line in mine}),
        resumed=sum(1 for line in mine if line[3] == "r"),
        max_requests_per_connection=max((int(line[2]) for line in mine), default=0),
    )


# --- 1. full handshakes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeScenario:
    label: str
    certificate: str
    port: int
    context: ssl.SSLContext | None  # None: plain HTTP


@dataclass(frozen=True)
class ClientRun:
    connections: int
    resumed: int
    protocols: frozenset[str]
    seconds: float


def new_connection_requests(scenario: HandshakeScenario, count: int) -> ClientRun:
    """`count` GET requests, each on a new TCP connection (and a new TLS session: none is ever offered)."""
    request = f"GET / HTTP/1.1\r\nHost: {LEAF_DNS_NAME}\r\nConnection: close\r\n\r\n".encode()
    lock = threading.Lock()
    done = {"connections": 0, "resumed": 0}
    protocols: set[str] = set()
    deadline = time.monotonic() + RUN_TIME_LIMIT
    errors: list[BaseException] = []

    def worker(share: int) -> None:
        try:
            for _ in range(share):
                if time.monotonic() > deadline:
                    return
                with socket.create_connection(("127.0.0.1", scenario.port), timeout=10) as raw:
                    connection: socket.socket = raw
                    reused, protocol = False, "HTTP"
                    if scenario.context is not None:
                        # No `session=`: the client has nothing to resume, the handshake is a full one.
                        connection = scenario.context.wrap_socket(raw, server_hostname=LEAF_DNS_NAME)
                        reused, protocol = bool(connection.session_reused), str(connection.version())
                    connection.sendall(request)
                    response = b""
                    while chunk := connection.recv(65536):
                        response += chunk
                    if not response.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(f"{scenario.label}: unexpected answer {response[:40]!r}")
                with lock:
                    done["connections"] += 1
                    done["resumed"] += reused
                    protocols.add(protocol)
        except BaseException as error:
            errors.append(error)

    shares = [count // HANDSHAKE_THREADS + (index < count % HANDSHAKE_THREADS) for index in range(HANDSHAKE_THREADS)]
    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return ClientRun(done["connections"], done["resumed"], frozenset(protocols), time.monotonic() - started)


@dataclass
class HandshakeRow:
    scenario: HandshakeScenario
    connections_per_second: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    connections: int = 0
    resumed_server: int = 0
    resumed_client: int = 0
    protocols: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def run_handshake_table(
    scenarios: list[HandshakeScenario], nginx_pid: int, log: RequestLog, rounds: int, count: int
) -> list[HandshakeRow]:
    rows = [HandshakeRow(scenario) for scenario in scenarios]
    for scenario in scenarios:  # warm-up: key loading, page faults, the session cache's first use
        new_connection_requests(scenario, 20)
    for round_number in range(rounds):
        shift = round_number % len(rows)
        for row in rows[shift:] + rows[:shift]:
            log.mark()
            cpu_before = worker_cpu_seconds(nginx_pid)
            client = new_connection_requests(row.scenario, count)
            cpu = worker_cpu_seconds(nginx_pid) - cpu_before
            server = served(log.since_mark(), row.scenario.port)
            if server.connections != client.connections or server.requests != client.connections:
                row.problems.append(
                    f"nginx logged {server.requests} requests on {server.connections} connections, "
                    f"the client made {client.connections}"
                )
            row.connections += server.connections
            row.resumed_server += server.resumed
            row.resumed_client += client.resumed
            row.protocols |= client.protocols
            row.connections_per_second.append(client.connections / client.seconds)
            row.cpu_seconds += cpu
    for row in rows:
        if row.resumed_server or row.resumed_client:
            row.problems.append(f"resumed sessions: nginx {row.resumed_server}, client {row.resumed_client}")
    return rows


def cpu_ms_per_connection(row: HandshakeRow) -> float:
    return row.cpu_seconds * 1000 / max(row.connections, 1)


def print_handshake_table(rows: list[HandshakeRow], count: int, rounds: int) -> None:
    floor = rows[0]
    base = cpu_ms_per_connection(floor)
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    print(
        f"\n### 1. A new connection per request, full TLS handshakes ({rounds} interleaved rounds of {count} "
        f"connections per row, {HANDSHAKE_THREADS} client threads)\n"
    )
    print(
        f"nginx CPU is the workers' utime + stime summed over the rounds ({tick_ms:.0f} ms ticks; the floor used "
        f"{floor.cpu_seconds * 1000 / tick_ms:.0f}) divided by the connections nginx logged. Connections/s is the "
        "median round and is bound by the client, which shares the CPUs.\n"
    )
    print(
        "| Scenario | Certificate | Protocol | Connections/s | nginx CPU ms / connection "
        "| Handshake CPU ms (row - floor) | x floor | Resumed (nginx / client) | Check |"
    )
    print("|---|---|---|---:|---:|---:|---:|---|---|")
    for row in rows:
        cpu = cpu_ms_per_connection(row)
        is_floor = row is floor
        print(
            f"| {row.scenario.label}{' (floor)' if is_floor else ''} | {row.scenario.certificate} "
            f"| {', '.join(sorted(row.protocols))} "
            f"| {statistics.median(row.connections_per_second):,.0f} | {cpu:.3f} "
            f"| {'-' if is_floor else f'{cpu - base:.3f}'} | {cpu / base if base else float('nan'):.2f} "
            f"| {row.resumed_server} / {row.resumed_client} of {row.connections} "
            f"| {'; '.join(row.problems) or 'ok'} |"
        )
    by_certificate = {row.scenario.certificate: row for row in rows if row.scenario.context is not None}
    if {"EC P-256", "RSA-2048"} <= by_certificate.keys():
        ec = cpu_ms_per_connection(by_certificate["EC P-256"]) - base
        rsa = cpu_ms_per_connection(by_certificate["RSA-2048"]) - base
        print(f"\nServer CPU per full handshake, RSA-2048 / EC P-256: {rsa / ec:.2f}" if ec > 0 else "")


# --- 2. proxy with and without the upstream pool -----------------------------------------------------------


@dataclass(frozen=True)
class ProxyScenario:
    label: str
    port: int
    pooled: bool


@dataclass
class ProxyRow:
    scenario: ProxyScenario
    requests_per_second: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    requests: int = 0
    upstream_requests: int = 0
    upstream_connections: int = 0
    problems: list[str] = field(default_factory=list)


def wrk(url: str, duration: int, connections: int) -> tuple[float, int, str]:
    """wrk with keep-alive connections: requests/s, requests completed, and errors ('' when none)."""
    command = [require_binary("wrk"), "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--timeout", "5s", url]
    output = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rate is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    problems = re.findall(r"Socket errors: .*|Non-2xx or 3xx responses: \d+", output)
    return float(rate.group(1)), int(total.group(1)), "; ".join(problems)


def run_proxy_table(
    scenarios: list[ProxyScenario],
    nginx_pid: int,
    app_port: int,
    app_log: RequestLog,
    rounds: int,
    duration: int,
    connections: int,
) -> list[ProxyRow]:
    rows = [ProxyRow(scenario) for scenario in scenarios]
    for scenario in scenarios:
        wrk(f"https://127.0.0.1:{scenario.port}/", 1, connections)  # warm-up
    for round_number in range(rounds):
        shift = round_number % len(rows)
        for row in rows[shift:] + rows[:shift]:
            app_log.mark()
            cpu_before = worker_cpu_seconds(nginx_pid)
            rate, total, errors = wrk(f"https://127.0.0.1:{row.scenario.port}/", duration, connections)
            cpu = worker_cpu_seconds(nginx_pid) - cpu_before
            time.sleep(0.2)  # the last proxied requests' log lines
            upstream = served(app_log.since_mark(), app_port)
            if errors:
                row.problems.append(errors)
            if upstream.requests < total:
                row.problems.append(f"the application logged {upstream.requests} requests, wrk completed {total}")
            if not row.scenario.pooled and upstream.max_requests_per_connection != 1:
                row.problems.append("an upstream connection carried more than one request without the pool")
            if row.scenario.pooled and upstream.connections * 10 > upstream.requests:
                row.problems.append(f"{upstream.connections} upstream connections for {upstream.requests} requests")
            row.requests_per_second.append(rate)
            row.cpu_seconds += cpu
            row.requests += total
            row.upstream_requests += upstream.requests
            row.upstream_connections += upstream.connections
    return rows


def print_proxy_table(rows: list[ProxyRow], rounds: int, duration: int, connections: int) -> None:
    floor = rows[0]
    print(
        f"\n### 2. Proxied to the application: wrk -t1 -c{connections} -d{duration}s over keep-alive TLS (EC P-256) "
        f"to nginx ({rounds} interleaved rounds)\n"
    )
    print(
        "Requests/s is the median round, x floor the median of each round's ratio; nginx CPU and the upstream "
        "connections the application accepted are summed over the rounds.\n"
    )
    print(
        "| Scenario | Requests/s | x floor | nginx CPU ms / 1k requests | Upstream connections accepted "
        "| Requests per upstream connection | Check |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        ratios = [rate / base for rate, base in zip(row.requests_per_second, floor.requests_per_second, strict=True)]
        print(
            f"| {row.scenario.label}{' (floor)' if row is floor else ''} "
            f"| {statistics.median(row.requests_per_second):,.0f} | {statistics.median(ratios):.2f} "
            f"| {row.cpu_seconds * 1e6 / max(row.requests, 1):.1f} | {row.upstream_connections:,} "
            f"| {row.upstream_requests / max(row.upstream_connections, 1):,.1f} "
            f"| {'; '.join(row.problems) or 'ok'} |"
        )


# --- setup -------------------------------------------------------------------------------------------------


@contextmanager
def application(workdir: Path) -> Iterator[tuple[int, RequestLog]]:
    """The upstream application: nginx answering 200 to everything, logging each request's connection."""
    port = free_port()
    log = RequestLog(workdir / "requests.log")
    conf = write_standalone_conf(workdir, log.directives() + plain_http_server_block(port, "127.0.0.1"))
    with running_nginx(conf, [port]):
        yield port, log


def client_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_bundle))
    return context


def environment() -> str:
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10).stderr.strip()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{nginx.removeprefix('nginx version: ')}, {ssl.OPENSSL_VERSION}, {os.cpu_count()} CPUs, load {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per table (default 5)")
    parser.add_argument("--handshakes", type=int, default=400, help="connections per row and round (default 400)")
    parser.add_argument("--duration", type=int, default=2, help="seconds of wrk per proxy row and round (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk's concurrent connections (default 16)")
    args = parser.parse_args()
    for option in ("rounds", "handshakes", "duration", "connections"):
        if not 1 <= getattr(args, option) <= 10_000:
            parser.error(f"--{option} must be from 1 to 10000")

    with tempfile.TemporaryDirectory(prefix="nginx-bench-") as temporary, ExitStack() as stack:
        workdir = Path(temporary)
        app_port, app_log = stack.enter_context(application(workdir / "application"))
        pkis = {key_type: make_pki(workdir / f"pki-{key_type}", key_type=key_type) for key_type in KEY_LABELS}
        ports = {name: free_port() for name in ("http", "ec", "rsa", "pool", "no-pool")}
        upstream_url = f"http://127.0.0.1:{app_port}"
        log = RequestLog(workdir / "nginx" / "requests.log")
        blocks = "\n".join(
            [
                log.directives(),
                plain_http_server_block(ports["http"], "127.0.0.1"),
                tls_server_block(pkis["ec"], ports["ec"]),
                tls_server_block(pkis["rsa"], ports["rsa"]),
                tls_server_block(pkis["ec"], ports["pool"], upstream_url=upstream_url),
                tls_server_block(pkis["ec"], ports["no-pool"], upstream_url=upstream_url, upstream_keepalive=0),
            ]
        )
        nginx = stack.enter_context(
            running_nginx(write_standalone_conf(workdir / "nginx", blocks), list(ports.values()))
        )
        handshake_rows = run_handshake_table(
            [
                HandshakeScenario("HTTP, new connection per request", "-", ports["http"], None),
                HandshakeScenario(
                    "HTTPS, full handshake per request", "EC P-256", ports["ec"], client_context(pkis["ec"])
                ),
                HandshakeScenario(
                    "HTTPS, full handshake per request", "RSA-2048", ports["rsa"], client_context(pkis["rsa"])
                ),
            ],
            nginx.pid,
            log,
            args.rounds,
            args.handshakes,
        )
        proxy_rows = run_proxy_table(
            [
                ProxyScenario(
                    "proxy, new upstream connection per request (upstream_keepalive=0)", ports["no-pool"], False
                ),
                ProxyScenario("proxy, upstream keep-alive pool (the rendered default)", ports["pool"], True),
            ],
            nginx.pid,
            app_port,
            app_log,
            args.rounds,
            args.duration,
            args.connections,
        )

    print(
        f"nginx on 127.0.0.1 with the rendered config ({environment()}); client, nginx and application share the CPUs."
    )
    print_handshake_table(handshake_rows, args.handshakes, args.rounds)
    print_proxy_table(proxy_rows, args.rounds, args.duration, args.connections)
    problems = [*(p for row in handshake_rows for p in row.problems), *(p for row in proxy_rows for p in row.problems)]
    if problems:
        sys.exit(f"\n{len(problems)} check(s) failed: a row does not measure what its label says")


if __name__ == "__main__":
    main()
