"""What TLS costs on a backend host: wrk against nginx running the rendered config on 127.0.0.1.

Scenarios, each for a few seconds:
- keep-alive: one TLS handshake per connection, then requests reuse it (what the ALB does);
- `Connection: close`: a new TCP connection and a full handshake per request (wrk does not resume
  sessions), i.e. the handshake rate of the server with an EC P-256 and with an RSA-2048 certificate.
Plain HTTP on the same nginx is the baseline. Prints a markdown table. Usage:

    uv run python bench/nginx_bench.py [--duration 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Run as a file (`python bench/nginx_bench.py`): make the repository importable for the shared helpers.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.local.nginx import plain_http_server_block, running_nginx, tls_server_block, write_standalone_conf
from components.local.process import free_port
from components.local.tls import make_pki

KEY_LABELS = {"ec": "EC P-256", "rsa": "RSA-2048"}


@dataclass(frozen=True)
class Result:
    scenario: str
    certificate: str
    requests_per_second: float
    average_latency: str
    errors: str
    server_cpu_ms_per_1k: float


def nginx_cpu_seconds(master_pid: int) -> float:
    """User + system CPU of nginx's worker processes (the master does no request work)."""
    ticks = 0
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    for pid in children:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk(url: str, duration: int, connections: int, close: bool) -> tuple[float, str, str]:
    binary = shutil.which("wrk")
    if binary is None:
        sys.exit("wrk not found: apt-get install wrk")
    command = [binary, "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--timeout", "5s"]
    if close:
        command += ["-H", "Connection: close"]
    output = subprocess.run([*command, url], capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    latency = re.search(r"Latency\s+(\S+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if rate is None or latency is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    problems = [errors.group(1)] if errors else []
    problems += [f"non-2xx {non_2xx.group(1)}"] if non_2xx else []
    return float(rate.group(1)), latency.group(1), "; ".join(problems) or "0"


def bench_certificate(key_type: str, workdir: Path, duration: int, connections: int) -> list[Result]:
    pki = make_pki(workdir / f"pki-{key_type}", key_type=key_type)
    tls_port, http_port = free_port(), free_port()
    blocks = tls_server_block(pki, tls_port) + plain_http_server_block(http_port, "127.0.0.1")
    conf = write_standalone_conf(workdir / f"nginx-{key_type}", blocks)
    label = KEY_LABELS[key_type]
    results = []
    with running_nginx(conf, [tls_port, http_port]) as nginx:
        for scenario, url, certificate, close in [
            ("HTTP, keep-alive", f"http://127.0.0.1:{http_port}/", "-", False),
            ("HTTPS, keep-alive", f"https://127.0.0.1:{tls_port}/", label, False),
            ("HTTP, new connection per request", f"http://127.0.0.1:{http_port}/", "-", True),
            ("HTTPS, new handshake per request", f"https://127.0.0.1:{tls_port}/", label, True),
        ]:
            if certificate == "-" and key_type != "ec":
                continue  # the plain HTTP baseline does not depend on the certificate: measure it once
            cpu_before = nginx_cpu_seconds(nginx.pid)
            rate, latency, errors = wrk(url, duration, connections, close)
            cpu_ms_per_1k = (nginx_cpu_seconds(nginx.pid) - cpu_before) * 1000 / (rate * duration / 1000)
            results.append(Result(scenario, certificate, rate, latency, errors, cpu_ms_per_1k))
    return results


def environment() -> str:
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10).stderr.strip()
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True, timeout=10).stdout
    openssl = openssl.split("(")[0].strip()
    return f"{nginx.removeprefix('nginx version: ')}, {openssl}, {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=3, help="seconds per scenario (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nginx-bench-") as temporary:
        results = [
            result
            for key_type in ("ec", "rsa")
            for result in bench_certificate(key_type, Path(temporary), args.duration, args.connections)
        ]
    order = [
        "HTTP, keep-alive",
        "HTTPS, keep-alive",
        "HTTP, new connection per request",
        "HTTPS, new handshake per request",
    ]
    results.sort(key=lambda result: (order.index(result.scenario), result.certificate))
    print(
        f"nginx on 127.0.0.1 with the rendered config ({environment()}); "
        f"wrk -t1 -c{args.connections} -d{args.duration}s, client and server share the machine.\n"
    )
    print(
        "Requests/s with a new handshake per request include the client's share of the handshake (wrk runs on\n"
        "the same CPUs); the nginx CPU column is the server's own cost per 1000 requests.\n"
    )
    print("| Scenario | Certificate | Requests/s | Avg latency | nginx CPU ms / 1k requests | Errors |")
    print("|---|---|---:|---:|---:|---|")
    for result in results:
        print(
            f"| {result.scenario} | {result.certificate} | {result.requests_per_second:,.0f} "
            f"| {result.average_latency} | {result.server_cpu_ms_per_1k:,.0f} | {result.errors} |"
        )


if __name__ == "__main__":
    main()
