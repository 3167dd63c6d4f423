"""What issuing a certificate costs the provider, per key algorithm, against a local moto server.

For each key algorithm:
- key + CSR generation (`x509.generate_private_key` + `x509.build_csr`), median of `--keygen-samples`;
- one full `CertificateProvider.create()` (DescribeCertificateAuthority, key + CSR, IssueCertificate,
  GetCertificate), median of `--create-samples`;
- `--concurrency` creates at once in a thread pool (as Pulumi runs independent resources in parallel):
  wall time and certificates per second.

moto signs with its own RSA-2048 key whatever the CA's algorithm, so the CA side is constant here; only the
generated key varies. moto reports every CA as SHORT_LIVED_CERTIFICATE, so certificates ask for 7 days.
Bounded: fixed sample counts, a per-create timeout, and `--max-seconds` overall. Prints a markdown table.

    uv run python bench/certificate_bench.py [--keygen-samples 10] [--create-samples 3] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a file (`python bench/certificate_bench.py`): make the repository importable for the shared helpers.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components import x509
from components.certificate import CertificateProvider
from tests.aws_emulator import FAKE_AWS_ENVIRONMENT, REAL_AWS_VARIABLES, create_active_ca, moto_server

CREATE_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Row:
    key_algorithm: str
    keygen_ms: float
    create_ms: float
    concurrent_s: float
    per_second: float
    errors: int


def _median_ms(action: Callable[[], object], samples: int, deadline: float) -> float:
    timings: list[float] = []
    for _ in range(samples):
        if timings and time.monotonic() > deadline:
            break
        start = time.perf_counter()
        action()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def _inputs(provider: CertificateProvider, ca_arn: str, endpoint: str, key_algorithm: str) -> dict[str, Any]:
    checked = provider.check(
        {},
        {
            "ca_arn": ca_arn,
            "common_name": "bench.internal.example.com",
            "subject_alternative_names": ["api.bench.internal.example.com", "10.0.0.10"],
            "key_algorithm": key_algorithm,
            "validity_days": 7,
            "endpoint_url": endpoint,
        },
    )
    if checked.failures or checked.inputs is None:
        raise SystemExit(f"check failed: {[(f.property, f.reason) for f in checked.failures]}")
    return checked.inputs


def measure(args: argparse.Namespace, endpoint: str, ca_arn: str, key_algorithm: str, deadline: float) -> Row:
    provider = CertificateProvider()
    names = x509.SubjectNames.parse("bench.internal.example.com", ["10.0.0.10"])

    def keygen() -> None:
        x509.build_csr(x509.generate_private_key(key_algorithm), "bench.internal.example.com", names)

    keygen_ms = _median_ms(keygen, args.keygen_samples, deadline)
    inputs = _inputs(provider, ca_arn, endpoint, key_algorithm)
    create_ms = _median_ms(lambda: provider.create(inputs), args.create_samples, deadline)

    errors = 0
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        futures = [pool.submit(provider.create, inputs) for _ in range(args.concurrency)]
        done, not_done = wait(futures, timeout=CREATE_TIMEOUT_SECONDS)
        for future in not_done:
            future.cancel()
        errors = len(not_done) + sum(1 for future in done if future.exception() is not None)
    concurrent_s = time.perf_counter() - start
    issued = args.concurrency - errors
    return Row(key_algorithm, keygen_ms, create_ms, concurrent_s, issued / concurrent_s, errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keygen-samples", type=int, default=10, help="key+CSR generations per algorithm")
    parser.add_argument("--create-samples", type=int, default=3, help="sequential create() calls per algorithm")
    parser.add_argument("--concurrency", type=int, default=20, help="creates run at once per algorithm")
    parser.add_argument("--algorithms", nargs="+", default=list(x509.KEY_ALGORITHMS), choices=x509.KEY_ALGORITHMS)
    parser.add_argument("--max-seconds", type=float, default=180.0, help="stop sampling after this long")
    args = parser.parse_args()

    for name in REAL_AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS_ENVIRONMENT)  # never a real account: moto only
    deadline = time.monotonic() + args.max_seconds

    rows: list[Row] = []
    with moto_server() as endpoint:
        ca_arn, _ = create_active_ca(endpoint, common_name="Bench CA")
        for key_algorithm in args.algorithms:
            if time.monotonic() > deadline:
                print(f"stopped at --max-seconds before {key_algorithm}", file=sys.stderr)
                break
            rows.append(measure(args, endpoint, ca_arn, key_algorithm, deadline))

    print(
        f"| Key algorithm | key + CSR, median (ms) | create(), median (ms) | "
        f"{args.concurrency} concurrent creates (s) | certificates/s | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.key_algorithm} | {row.keygen_ms:.1f} | {row.create_ms:.1f} | {row.concurrent_s:.2f} "
            f"| {row.per_second:.1f} | {row.errors} |"
        )


if __name__ == "__main__":
    main()
