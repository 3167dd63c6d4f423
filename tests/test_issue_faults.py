"""No orphans, no duplicates: `create()` under every fault IssueCertificate and GetCertificate can meet.

The RecordingProxy (components/local/emulator.py) stands in for AWS's side of the wire: it throttles, answers
5xx, resets connections before moto sees the request, drops the reply after moto issued, holds a reply past
the client's read timeout, and matches idempotency tokens as AWS does (moto does not). After each scenario the
ledger compares what moto issued with what the creates returned, revoked or named in their errors:

- duplicates: a create (one CSR) for which more than one certificate was issued;
- orphans: an issued certificate that no create returned, that was not revoked, and that no error names, by
  ARN or by the CA and the idempotency token it was requested with (how to find it in the CA's audit report).

Both must be 0 in every scenario. AWS's 5-minute token window is shortened here to `WINDOW` seconds (the
provider stops same-token retries `REUSE` seconds after a token's first use, inside it), and the client's read
timeout to `READ_TIMEOUT`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.config import Config as BotoConfig

from components import certificate, pca_client
from components.certificate import CertificateError, CertificateProvider
from components.local.emulator import GET, ISSUE, REVOKE, RecordingProxy, create_active_ca
from components.local.emulator import pca_client as emulator_client

WINDOW = 1.5
REUSE = 1.0
READ_TIMEOUT = 0.4

provider = CertificateProvider()


@pytest.fixture(autouse=True)
def _shrunk(monkeypatch: pytest.MonkeyPatch, pca_proxy: RecordingProxy) -> Iterator[None]:
    monkeypatch.setattr(certificate, "POLL_INITIAL_DELAY", 0.01)
    monkeypatch.setattr(certificate, "POLL_MAX_DELAY", 0.02)
    monkeypatch.setattr(pca_client, "TRANSIENT_BACKOFF", 0.01)
    monkeypatch.setattr(pca_client, "TOKEN_REUSE_SECONDS", REUSE)
    monkeypatch.setattr(
        pca_client,
        "_CLIENT_CONFIG",
        BotoConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=2,
            read_timeout=READ_TIMEOUT,
            max_pool_connections=64,
        ),
    )
    pca_client.forget()
    certificate.forget_cached_cas()
    pca_proxy.token_window = WINDOW
    yield
    for timer in _timers:
        timer.cancel()
    _timers.clear()
    pca_proxy.token_window = 300.0


@pytest.fixture(scope="module")
def ca_arn(pca_proxy_session: RecordingProxy) -> str:
    return create_active_ca(pca_proxy_session.endpoint_url, common_name="Fault Sweep CA")[0]


@dataclass
class Ledger:
    created: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    issued: dict[str, dict[str, Any]] = field(default_factory=dict)
    """ARN -> the IssueCertificate request moto processed for it."""
    revoked: set[str] = field(default_factory=set)

    def duplicates(self) -> int:
        per_csr = Counter(request["Csr"] for request in self.issued.values())
        return sum(count - 1 for count in per_csr.values())

    def orphans(self, serial_of: Callable[[str], str]) -> list[str]:
        def named(arn: str) -> bool:
            request = self.issued[arn]
            by_token = [
                error
                for error in self.errors
                if request["IdempotencyToken"] in error and request["CertificateAuthorityArn"] in error
            ]
            return any(arn in error for error in self.errors) or bool(by_token)

        return [
            arn
            for arn in self.issued
            if arn not in self.created and serial_of(arn) not in self.revoked and not named(arn)
        ]


def run(proxy: RecordingProxy, inputs: list[dict[str, Any]]) -> Ledger:
    """Create every certificate concurrently, then read the ledger from what the proxy saw."""

    def create(props: dict[str, Any]) -> str | Exception:
        try:
            return provider.create(props).id
        except Exception as error:  # the ledger says whether it named what it left behind
            return error

    with ThreadPoolExecutor(max_workers=max(1, len(inputs))) as pool:
        results = list(pool.map(create, inputs))
    proxy.clear_faults()
    ledger = Ledger()
    for result in results:
        if isinstance(result, str):
            ledger.created.append(result)
        else:
            ledger.errors.append(str(result))
    for call in proxy.calls(ISSUE):
        if not call.injected and call.status == 200:
            ledger.issued[call.reply["CertificateArn"]] = call.body
    ledger.revoked = {call.body["CertificateSerial"] for call in proxy.calls(REVOKE) if call.status == 200}
    return ledger


def inputs_for(ca_arn: str, proxy: RecordingProxy, count: int = 1, **overrides: Any) -> list[dict[str, Any]]:
    result = []
    for index in range(count):
        checked = provider.check(
            {},
            {
                "ca_arn": ca_arn,
                "common_name": f"host{index}.faults.example.com",
                "endpoint_url": proxy.endpoint_url,
                **overrides,
            },
        )
        assert checked.failures == [], checked.failures
        result.append(checked.inputs)
    return result


def serial_reader(proxy: RecordingProxy, ca_arn: str) -> Callable[[str], str]:
    from components import x509

    direct = emulator_client(proxy.upstream)

    def serial_of(arn: str) -> str:
        pem = direct.get_certificate(CertificateAuthorityArn=ca_arn, CertificateArn=arn)["Certificate"]
        return x509.colon_hex(x509.load_certificates(pem)[0].serial_number)

    return serial_of


_timers: list[threading.Timer] = []


def after(seconds: float, action: Callable[[], None]) -> threading.Timer:
    """Run `action` in `seconds`, unless the test is over by then (the autouse fixture cancels it)."""
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    _timers.append(timer)
    timer.start()
    return timer


@dataclass(frozen=True)
class Scenario:
    id: str
    faults: Callable[[RecordingProxy], None]
    creates: int = 1
    succeeds: bool | None = True
    """None: creates may fail (four faults in a row on one create), as long as nothing is left behind unnamed."""
    says: tuple[str, ...] = ()
    overrides: tuple[tuple[str, Any], ...] = ()
    window: float = WINDOW
    """AWS's token window for this scenario (the provider's reuse limit is a third shorter)."""


def each(*steps: Callable[[RecordingProxy], None]) -> Callable[[RecordingProxy], None]:
    """Faults applied in order (the proxy takes the first pending fault that matches a call)."""

    def apply(proxy: RecordingProxy) -> None:
        for step in steps:
            step(proxy)

    return apply


def _persistent_throttling_cleared_after(seconds: float) -> Callable[[RecordingProxy], None]:
    def faults(proxy: RecordingProxy) -> None:
        proxy.throttle(ISSUE, times=None)
        after(seconds, proxy.clear_faults)

    return faults


def _dropped_then_throttled_for(seconds: float | None) -> Callable[[RecordingProxy], None]:
    def faults(proxy: RecordingProxy) -> None:
        proxy.drop_reply(ISSUE)
        proxy.throttle(ISSUE, times=None)
        if seconds is not None:
            after(seconds, proxy.clear_faults)

    return faults


UNKNOWN_OUTCOME = ("may have issued a certificate", "create-certificate-authority-audit-report", "revoke-certificate")

SCENARIOS = [
    Scenario("throttled", lambda proxy: proxy.throttle(ISSUE, times=5)),
    Scenario("quota", lambda proxy: proxy.quota(ISSUE, 3.0, burst=1), creates=8),
    Scenario("5xx", lambda proxy: proxy.server_error(ISSUE, times=2)),
    Scenario("500", lambda proxy: proxy.server_error(ISSUE, status=500, times=3)),
    Scenario("reset-before-processing", lambda proxy: proxy.reset_connection(ISSUE, times=3)),
    Scenario("reply-dropped-after-processing", lambda proxy: proxy.drop_reply(ISSUE)),
    Scenario("replies-dropped-twice", lambda proxy: proxy.drop_reply(ISSUE, times=2)),
    Scenario("read-timeout", lambda proxy: proxy.delay_reply(ISSUE, READ_TIMEOUT * 3)),
    Scenario(
        "dropped-then-5xx",
        each(lambda proxy: proxy.drop_reply(ISSUE), lambda proxy: proxy.server_error(ISSUE, times=1)),
    ),
    Scenario("throttled-past-the-token-window", _persistent_throttling_cleared_after(WINDOW + 0.5)),
    Scenario(
        "dropped-then-the-window-closes-during-throttling",
        _dropped_then_throttled_for(WINDOW + 1.0),
        succeeds=False,
        says=UNKNOWN_OUTCOME,
    ),
    Scenario(
        "dropped-then-throttled-for-good", _dropped_then_throttled_for(None), succeeds=False, says=UNKNOWN_OUTCOME
    ),
    Scenario(
        "dropped-then-throttled-past-the-budget",
        _dropped_then_throttled_for(None),
        succeeds=False,
        says=("time budget", *UNKNOWN_OUTCOME),
        overrides=(("throttle_retry_minutes", 0.01),),  # 0.6 s: the budget ends before the window
    ),
    Scenario(
        "dropped-then-resets",
        each(lambda proxy: proxy.drop_reply(ISSUE), lambda proxy: proxy.reset_connection(ISSUE, times=None)),
        succeeds=False,
        says=UNKNOWN_OUTCOME,
    ),
    Scenario(
        "read-timeouts-for-good",
        lambda proxy: proxy.delay_reply(ISSUE, READ_TIMEOUT * 3, times=None),
        succeeds=False,
        says=UNKNOWN_OUTCOME,
    ),
    Scenario("get-reply-dropped", lambda proxy: proxy.drop_reply(GET, times=2)),
    Scenario("get-reset", lambda proxy: proxy.reset_connection(GET, times=2)),
    Scenario("get-read-timeout", lambda proxy: proxy.delay_reply(GET, READ_TIMEOUT * 3)),
    Scenario(
        "get-fails-for-good",
        lambda proxy: proxy.server_error(GET, times=None),
        succeeds=False,
        says=("then fetching it failed", "it was not revoked", "revoke-certificate"),
    ),
    Scenario(
        "fleet-under-every-fault",
        each(
            lambda proxy: proxy.quota(ISSUE, 5.0, burst=2),
            lambda proxy: proxy.drop_reply(ISSUE, times=3),
            lambda proxy: proxy.reset_connection(ISSUE, times=3),
            lambda proxy: proxy.server_error(ISSUE, times=3),
            lambda proxy: proxy.delay_reply(ISSUE, READ_TIMEOUT * 3, times=2),
            lambda proxy: proxy.drop_reply(GET, times=3),
        ),
        creates=12,
        succeeds=None,
        window=30.0,  # twelve creates queue behind a 5/s quota for seconds: a window as long as theirs
    ),
]


def test_the_fault_sweep_covers_each_class() -> None:
    classes = ("throttl", "5xx", "500", "reset", "dropped", "read-timeout", "window", "budget", "get-")
    assert all(any(cls in scenario.id for scenario in SCENARIOS) for cls in classes)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.id)
def test_no_orphans_no_duplicates(
    pca_proxy: RecordingProxy, ca_arn: str, scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = inputs_for(ca_arn, pca_proxy, scenario.creates, **dict(scenario.overrides))
    pca_proxy.reset()
    pca_proxy.token_window = scenario.window
    monkeypatch.setattr(pca_client, "TOKEN_REUSE_SECONDS", scenario.window * REUSE / WINDOW)
    scenario.faults(pca_proxy)
    ledger = run(pca_proxy, inputs)

    assert ledger.duplicates() == 0, ledger.issued
    assert ledger.orphans(serial_reader(pca_proxy, ca_arn)) == [], (ledger.errors, list(ledger.issued))
    if scenario.succeeds:
        assert ledger.errors == [], "\n".join(ledger.errors)
        assert len(set(ledger.created)) == scenario.creates
    elif scenario.succeeds is None:
        assert len(set(ledger.created)) + len(ledger.errors) == scenario.creates
        assert len(set(ledger.created)) >= scenario.creates - 2, ledger.errors
    else:
        [error] = ledger.errors
        for fragment in (ca_arn, *scenario.says):
            assert fragment in error, error


def test_same_token_retries_stay_inside_the_window(pca_proxy: RecordingProxy, ca_arn: str) -> None:
    """After a dropped reply, every attempt carries the first token and none is sent after the window."""
    [inputs] = inputs_for(ca_arn, pca_proxy)
    pca_proxy.reset()
    _dropped_then_throttled_for(None)(pca_proxy)
    with pytest.raises(CertificateError):
        provider.create(inputs)
    calls = pca_proxy.calls(ISSUE)
    assert len({call.body["IdempotencyToken"] for call in calls}) == 1
    assert calls[-1].at - calls[0].at < REUSE + 0.5  # the last attempt left inside REUSE (+ one in flight)
    assert len(calls) > 2


def test_a_token_nothing_was_issued_with_is_replaced_after_the_window(pca_proxy: RecordingProxy, ca_arn: str) -> None:
    [inputs] = inputs_for(ca_arn, pca_proxy)
    pca_proxy.reset()
    _persistent_throttling_cleared_after(WINDOW + 0.5)(pca_proxy)
    provider.create(inputs)
    tokens = [call.body["IdempotencyToken"] for call in pca_proxy.calls(ISSUE)]
    assert len(set(tokens)) >= 2  # throttled answers mean nothing was issued: a new token is safe
    [issued] = [call for call in pca_proxy.calls(ISSUE) if not call.injected]
    assert issued.body["IdempotencyToken"] == tokens[-1]


def test_the_proxy_matches_tokens_as_aws_does(pca_proxy: RecordingProxy, ca_arn: str) -> None:
    """What the sweep relies on: the same token inside the window gets the first certificate, after it a new one."""
    import time

    client = emulator_client(pca_proxy.endpoint_url)
    [inputs] = inputs_for(ca_arn, pca_proxy)
    _, csr = certificate._key_and_csr(inputs)
    request = {
        "CertificateAuthorityArn": ca_arn,
        "Csr": csr.encode(),
        "SigningAlgorithm": "SHA256WITHRSA",
        "Validity": {"Value": 7, "Type": "DAYS"},
        "IdempotencyToken": "same-token",
    }
    pca_proxy.reset()
    pca_proxy.token_window = 0.5
    first = client.issue_certificate(**request)["CertificateArn"]
    assert client.issue_certificate(**request)["CertificateArn"] == first
    time.sleep(0.6)
    assert client.issue_certificate(**request)["CertificateArn"] != first
    assert [call.fault for call in pca_proxy.calls(ISSUE)] == ["", "replayed", ""]


def test_the_budget_bounds_the_whole_create(pca_proxy: RecordingProxy, ca_arn: str) -> None:
    """Throttled DescribeCertificateAuthority, IssueCertificate and GetCertificate share one budget."""
    import time

    [inputs] = inputs_for(ca_arn, pca_proxy, throttle_retry_minutes=0.02)  # 1.2 s
    certificate.forget_cached_cas()
    pca_proxy.reset()
    pca_proxy.throttle("DescribeCertificateAuthority", times=None)
    after(
        0.8,
        lambda: each(lambda proxy: proxy.clear_faults(), lambda proxy: proxy.throttle(ISSUE, times=None))(pca_proxy),
    )
    started = time.monotonic()
    with pytest.raises(Exception, match="ThrottlingException"):
        provider.create(inputs)
    assert time.monotonic() - started < 1.2 + 1.0  # one budget (and one request in flight), not one per call
