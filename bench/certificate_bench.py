"""What issuing certificates costs the provider, side by side with what it cannot go below, against local moto.

Three tables, from one run:

1. `create()` against the raw floor, per key algorithm: the floor is the same CSR built from the same key, then
   IssueCertificate and GetCertificate with one boto3 client built beforehand. Runs are interleaved in pairs
   (floor, create, create, floor, ...); medians and minimums, and their ratios. RSA key generation time varies
   several-fold from key to key (random prime search), so each pair's key is generated (and timed, in its own
   columns) just before the pair, and both sides get that key from `x509.generate_private_key`, patched inside
   this bench only: the ratios compare the provider with the floor, not one key's luck with another's. Each
   run's AWS calls are counted on the clients (floor: IssueCertificate + GetCertificate; create: the same two,
   plus one DescribeCertificateAuthority per CA and `CA_CACHE_SECONDS`, shared with `check()`), and both
   certificates of a pair must carry the pair's key.
2. A fleet of N concurrent `create()` calls through a proxy that enforces an IssueCertificate quota, at each
   `--quotas` value (1, 2 and 5/s by default, below moto's own ceiling of about 15/s here): the IssueCertificate
   rate achieved as a share of the quota, failed creates, requests the proxy refused and let through, and
   duplicates (issued certificates beyond N). Each quota starts as a fresh provider process does (no client,
   no learnt rate). Side by side, the same fleet with no quota measures what moto itself serves right then (the
   floor): a row whose floor is not 1.5 times its quota fails its check, since moto, not the quota, limits it.
3. AWS calls made by `check()` and by `diff()` for an unchanged stack of `--stack-size` certificates sharing
   one CA, counted at the proxy.

moto signs with its own RSA-2048 key whatever the CA's algorithm and reports every CA as SHORT_LIVED_CERTIFICATE
(the proxy corrects the latter), so only the key's algorithm varies in table 1. Prints markdown tables.

    .venv/bin/python bench/certificate_bench.py [--runs 15] [--fleet 100] [--quotas 1 2 5] [--stack-size 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

# Run as a file (`python bench/certificate_bench.py`): make the repository importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization

from components import certificate, pca_client, x509
from components.certificate import CertificateProvider
from components.local.emulator import (
    FAKE_AWS_ENVIRONMENT,
    ISSUE,
    REAL_AWS_VARIABLES,
    RecordingProxy,
    create_active_ca,
    moto_server,
)
from components.local.emulator import (
    pca_client as emulator_client,
)

COMMON_NAME = "bench.internal.example.com"
NAMES = ["api.bench.internal.example.com", "10.0.0.10"]


def _fresh_process() -> None:
    """What a new provider process starts with: no client, no learnt rate, nothing read of any CA."""
    pca_client.forget()
    certificate.forget_cached_cas()


def _inputs(provider: CertificateProvider, ca_arn: str, endpoint: str, **overrides: Any) -> dict[str, Any]:
    props = {
        "ca_arn": ca_arn,
        "common_name": COMMON_NAME,
        "subject_alternative_names": NAMES,
        "validity_days": 7,
        "endpoint_url": endpoint,
        **overrides,
    }
    checked = provider.check({}, props)
    if checked.failures or checked.inputs is None:
        raise SystemExit(f"check failed: {[(f.property, f.reason) for f in checked.failures]}")
    return checked.inputs


class _CallCounter:
    """Counts the API calls a boto3 client makes (botocore's `before-call` event)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.describes = 0
        client.meta.events.register("before-call.acm-pca", self._count)

    def _count(self, model: Any, **_kwargs: Any) -> None:
        self.calls[model.name] += 1
        self.describes += model.name == "DescribeCertificateAuthority"

    def take(self) -> dict[str, int]:
        taken = dict(self.calls)
        self.calls.clear()
        return taken


# ---------------------------------------------------------------------------------------------------------
# 1. create() against the floor
# ---------------------------------------------------------------------------------------------------------


class _PairKey:
    """Stands in for `x509.generate_private_key` during table 1: hands out the key generated for the current pair.

    RSA key generation time varies several-fold from key to key (a random prime search), so a floor run and a
    `create()` run that each generated their own key would compare keygen luck, not the provider. Both sides of
    a pair call this (the floor through `x509.generate_private_key`, `create()` through the same name in
    components.certificate) and get one key generated beforehand, timed on its own.
    """

    def __init__(self) -> None:
        self.key: x509.PrivateKey | None = None
        self.asked: list[str] = []

    def __call__(self, key_algorithm: str) -> x509.PrivateKey:
        self.asked.append(key_algorithm)
        if self.key is None:
            raise RuntimeError("no key generated for this pair")
        return self.key

    def take(self) -> list[str]:
        asked, self.asked = self.asked, []
        return asked


@contextmanager
def _keys_from(pair_key: _PairKey) -> Iterator[None]:
    """Inside: every `x509.generate_private_key` call (the floor's and `create()`'s) returns `pair_key.key`."""
    generate = x509.generate_private_key
    x509.generate_private_key = pair_key
    try:
        yield
    finally:
        x509.generate_private_key = generate


def _public_der(key_or_certificate: Any) -> bytes:
    return key_or_certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _floor(client: Any, ca_arn: str, key_algorithm: str) -> str:
    """The same key + CSR, IssueCertificate and GetCertificate with a client built beforehand: the leaf's PEM."""
    names = x509.SubjectNames.parse(COMMON_NAME, NAMES)
    key = x509.generate_private_key(key_algorithm)
    csr = x509.build_csr(key, COMMON_NAME, names)
    arn = client.issue_certificate(
        CertificateAuthorityArn=ca_arn,
        Csr=csr.encode(),
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn="arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1",
        Validity={"Value": 7, "Type": "DAYS"},
    )["CertificateArn"]
    while True:
        try:
            return str(client.get_certificate(CertificateAuthorityArn=ca_arn, CertificateArn=arn)["Certificate"])
        except ClientError as error:
            if error.response["Error"]["Code"] != "RequestInProgressException":
                raise
            time.sleep(0.05)


def _create(provider: CertificateProvider, inputs: dict[str, Any]) -> str:
    """`create()`: the leaf's PEM."""
    outs = provider.create(inputs).outs or {}
    return str(outs["certificate_pem"])


def floor_table(endpoint: str, ca_arn: str, algorithms: list[str], runs: int) -> list[str]:
    _fresh_process()
    provider = CertificateProvider()
    floor_client = emulator_client(endpoint)
    floor_calls = _CallCounter(floor_client)
    rows = [
        "| key algorithm | floor median (ms) | create() median (ms) | ratio of medians | floor min (ms) "
        "| create() min (ms) | ratio of mins | key generation median (ms) | key generation min (ms) "
        "| calls per create() / floor | pairs issued for their own key | check |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    expected_floor = {(("GetCertificate", 1), ("IssueCertificate", 1))}
    # The CA read by check() (here the warm-up create) serves every create for CA_CACHE_SECONDS; a run that
    # starts after that reads it once more.
    expected_create = expected_floor | {
        (("DescribeCertificateAuthority", 1), ("GetCertificate", 1), ("IssueCertificate", 1))
    }
    for key_algorithm in algorithms:
        inputs = _inputs(provider, ca_arn, endpoint, key_algorithm=key_algorithm)
        provider.create(inputs)  # builds the shared client, as the floor's was built above
        create_calls = _CallCounter(pca_client.client(pca_client.Target.of(inputs)))
        timings: dict[str, list[float]] = {"floor": [], "create": [], "keygen": []}
        seen: dict[str, set[tuple[tuple[str, int], ...]]] = {"floor": set(), "create": set()}
        actions: dict[str, tuple[Callable[[], str], _CallCounter]] = {
            "floor": (partial(_floor, floor_client, ca_arn, key_algorithm), floor_calls),
            "create": (partial(_create, provider, inputs), create_calls),
        }
        started = time.monotonic()
        generate_private_key = x509.generate_private_key  # the real one, taken before the patch below
        pair_key = _PairKey()
        problems: list[str] = []
        same_key_pairs = 0
        with _keys_from(pair_key):
            for run in range(runs):
                start = time.perf_counter()
                pair_key.key = generate_private_key(key_algorithm)
                timings["keygen"].append((time.perf_counter() - start) * 1000)
                issued_for_key = 0
                for name in ("floor", "create") if run % 2 == 0 else ("create", "floor"):
                    action, counter = actions[name]
                    counter.take()
                    pair_key.take()
                    start = time.perf_counter()
                    pem = action()
                    timings[name].append((time.perf_counter() - start) * 1000)
                    seen[name].add(tuple(sorted(counter.take().items())))
                    if pair_key.take() != [key_algorithm]:
                        problems.append(f"{name} did not ask for exactly one {key_algorithm} key")
                    leaf = x509.load_certificates(pem)[0]
                    issued_for_key += _public_der(leaf) == _public_der(pair_key.key)
                same_key_pairs += issued_for_key == 2
        describes = create_calls.describes
        allowed = 1 + int((time.monotonic() - started) // certificate.CA_CACHE_SECONDS)
        if seen["floor"] != expected_floor or not seen["create"] <= expected_create or describes > allowed:
            problems.append(f"UNEXPECTED CALLS {seen}, {describes} DescribeCertificateAuthority")
        if same_key_pairs != runs:
            problems.append(f"{runs - same_key_pairs} pairs were not issued for the pair's key")
        floor_ms, create_ms, keygen_ms = timings["floor"], timings["create"], timings["keygen"]
        rows.append(
            f"| {key_algorithm} | {statistics.median(floor_ms):.1f} | {statistics.median(create_ms):.1f} "
            f"| {statistics.median(create_ms) / statistics.median(floor_ms):.2f}x | {min(floor_ms):.1f} "
            f"| {min(create_ms):.1f} | {min(create_ms) / min(floor_ms):.2f}x "
            f"| {statistics.median(keygen_ms):.1f} | {min(keygen_ms):.1f} | 2 / 2 | {same_key_pairs} / {runs} "
            f"| {'; '.join(dict.fromkeys(problems)) or 'ok'} |"
        )
    return rows


# ---------------------------------------------------------------------------------------------------------
# 2. a fleet under a quota
# ---------------------------------------------------------------------------------------------------------


def _fleet(proxy: RecordingProxy, ca_arn: str, fleet: int, quota: float | None) -> tuple[float, list[str | None]]:
    """`fleet` concurrent creates from a fresh provider process, under an IssueCertificate quota (None: moto
    alone); the wall time and what each create returned (None for a failure)."""
    _fresh_process()
    provider = CertificateProvider()
    inputs = [
        _inputs(provider, ca_arn, proxy.endpoint_url, common_name=f"host{index}.bench.internal.example.com")
        for index in range(fleet)
    ]
    proxy.reset()
    if quota is not None:
        proxy.quota(ISSUE, quota)

    def create(props: dict[str, Any]) -> str | None:
        try:
            return provider.create(props).id
        except Exception:
            return None

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=fleet) as pool:
        created = list(pool.map(create, inputs))
    wall = time.monotonic() - start
    proxy.clear_faults()
    return wall, created


def fleet_row(proxy: RecordingProxy, ca_arn: str, fleet: int, quota: float) -> str:
    # The floor, side by side: the same fleet with no quota, i.e. what moto serves on this machine right now.
    # A row whose floor is not well above its quota measures moto, not the provider against the quota.
    floor_wall, floor_created = _fleet(proxy, ca_arn, fleet, None)
    floor_rate = sum(1 for arn in floor_created if arn) / floor_wall
    wall, created = _fleet(proxy, ca_arn, fleet, quota)

    issue_calls = proxy.calls(ISSUE)
    accepted = [call for call in issue_calls if not call.injected]
    refused = sum(1 for call in issue_calls if call.injected and call.status == 400)
    failures = sum(1 for arn in created if arn is None)
    distinct = len({arn for arn in created if arn})
    duplicates = len(accepted) - distinct
    achieved = len(accepted) / wall
    problems = []
    if refused == 0:
        problems.append("the quota was never reached")
    if distinct + failures != fleet:
        problems.append("two creates returned one certificate")
    if floor_rate < 1.5 * quota:
        problems.append(f"moto alone served {floor_rate:.1f}/s: too close to the quota to measure it")
    return (
        f"| {quota:g}/s | {fleet} | {floor_rate:.1f}/s | {wall:.1f} | {achieved:.2f}/s | {achieved / quota:.0%} "
        f"| {failures} | {len(accepted)} | {refused} | {duplicates} | {'; '.join(problems) or 'ok'} |"
    )


# ---------------------------------------------------------------------------------------------------------
# 3. check() and diff() of an unchanged stack
# ---------------------------------------------------------------------------------------------------------


def preview_row(proxy: RecordingProxy, ca_arn: str, size: int) -> str:
    _fresh_process()
    provider = CertificateProvider()
    news = [
        {"ca_arn": ca_arn, "common_name": f"svc{index}.bench.internal.example.com", "endpoint_url": proxy.endpoint_url}
        for index in range(size)
    ]
    proxy.reset()
    with ThreadPoolExecutor(max_workers=16) as pool:  # the engine checks resources concurrently
        checked = list(pool.map(lambda props: provider.check({}, props), news))
    check_calls = len(proxy.requests)
    describe_calls = len(proxy.calls("DescribeCertificateAuthority"))
    proxy.reset()
    olds = [
        {**result.inputs, **dict.fromkeys(certificate.OUTPUTS, "x"), "not_after": "2999-01-01T00:00:00Z"}
        for result in checked
    ]
    changed = sum(
        bool(provider.diff("arn", old, result.inputs).changes) for old, result in zip(olds, checked, strict=True)
    )
    diff_calls = len(proxy.requests)
    failures = sum(1 for result in checked if result.failures)
    ok = describe_calls == check_calls and failures == 0 and changed == 0
    return (
        f"| {size} | 1 | {check_calls} | {diff_calls} | {changed} "
        f"| {'ok' if ok else f'{failures} check failures, {changed} diffs with changes'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="interleaved floor/create() runs per algorithm")
    parser.add_argument("--algorithms", nargs="+", default=list(x509.KEY_ALGORITHMS), choices=x509.KEY_ALGORITHMS)
    parser.add_argument("--fleet", type=int, default=100, help="concurrent creates per quota")
    parser.add_argument("--quotas", nargs="+", type=float, default=[1.0, 2.0, 5.0], help="IssueCertificate quotas (/s)")
    parser.add_argument("--stack-size", type=int, default=50, help="certificates in the unchanged stack")
    args = parser.parse_args()

    for name in REAL_AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS_ENVIRONMENT)  # never a real account: moto only

    with moto_server() as endpoint, RecordingProxy(endpoint) as proxy:
        ca_arn, _ = create_active_ca(proxy.endpoint_url, common_name="Bench CA")
        print(f"## create() against the floor ({args.runs} interleaved runs each, moto direct)\n")
        floor_rows = floor_table(endpoint, ca_arn, args.algorithms, args.runs)
        print("\n".join(floor_rows))
        checked_rows = floor_rows[2:]
        print(f"\n## {args.fleet} concurrent creates under an IssueCertificate quota (throttling proxy)\n")
        print(
            "| quota | creates | moto alone (floor) | wall (s) | IssueCertificate accepted/s | share of quota "
            "| failed creates | IssueCertificate reaching moto | refused (throttled) | duplicates | check |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for quota in args.quotas:
            checked_rows.append(fleet_row(proxy, ca_arn, args.fleet, quota))
            print(checked_rows[-1], flush=True)
        print("\n## AWS calls for an unchanged stack (check() then diff() of every certificate)\n")
        print("| certificates | CAs | calls in check() | calls in diff() | diffs with changes | check |")
        print("|---:|---:|---:|---:|---:|---|")
        checked_rows.append(preview_row(proxy, ca_arn, args.stack_size))
        print(checked_rows[-1])
    failed = [row for row in checked_rows if not row.endswith("| ok |")]
    if failed:
        # A row that does not measure what its label says is not a result: fail, as nginx_bench.py does.
        raise SystemExit(f"{len(failed)} row(s) failed their own check:\n" + "\n".join(failed))


if __name__ == "__main__":
    main()
