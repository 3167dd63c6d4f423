"""The shared request rate (pca_client.AdaptiveRate) against AWS's quota, in virtual time.

A fleet of creates all waiting for IssueCertificate, a token-bucket quota as AWS enforces it (as the
RecordingProxy's `quota` does), and the limiter's own decisions, on a simulated clock: deterministic, and
seconds of work instead of minutes. The wall-clock figures are in bench/certificate_bench.py.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from components import pca_client

LATENCY = 0.065  # a round trip to moto here (bench/certificate_bench.py, table 1)


class VirtualTime:
    """Stands in for the `time` module inside pca_client."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        raise AssertionError("the simulation grants turns itself; nothing may sleep")


@dataclass
class Run:
    share: float
    """Accepted requests per second over the run, as a share of the quota."""
    refused: int


def simulate(
    monkeypatch: pytest.MonkeyPatch,
    quota: float,
    requests: int = 100,
    latency: Callable[[float], float] = lambda _sent: LATENCY,
) -> Run:
    """`requests` callers wait for the limiter from t=0; each turn sends one request, which the quota accepts or
    refuses (ThrottlingException, then the caller waits for another turn), as in `pca_client.call`. Its answer
    comes `latency(sent)` seconds after it was sent."""
    clock = VirtualTime()
    monkeypatch.setattr(pca_client, "time", clock)
    limiter = pca_client.AdaptiveRate(pca_client.DEFAULT_QUOTAS["IssueCertificate"])
    burst = max(1.0, quota)
    tokens, refilled = burst, 0.0
    waiting, accepted, refused, last = requests, 0, 0, 0.0
    answers: list[tuple[float, float, bool]] = []
    while accepted < requests:
        turn = max(clock.now, limiter._next) if waiting else float("inf")
        if answers and answers[0][0] <= turn:
            clock.now, sent, ok = heapq.heappop(answers)
            if ok:
                limiter.accepted(sent)
            else:
                limiter.throttled(sent)
                waiting += 1
            continue
        clock.now = turn
        interval = 1.0 / limiter.rate  # what `acquire` does when the turn has come
        limiter._next = max(limiter._next, turn - interval) + interval
        waiting -= 1
        arrival = turn + 0.01  # AWS takes the request (and a token of its quota) as it arrives
        tokens, refilled = min(burst, tokens + (arrival - refilled) * quota), arrival
        ok = tokens >= 1
        if ok:
            tokens -= 1
            accepted += 1
            last = arrival
        else:
            refused += 1
        heapq.heappush(answers, (turn + latency(turn), turn, ok))
    return Run(accepted / last / quota, refused)


@pytest.mark.parametrize("quota", [1.0, 2.0, 5.0, 10.0])
def test_a_fleet_reaches_the_quota_from_aws_default(monkeypatch: pytest.MonkeyPatch, quota: float) -> None:
    """From the 25/s default down to the account's quota, 100 creates get at least 85 % of it."""
    run = simulate(monkeypatch, quota)
    assert run.share >= 0.85, run
    assert run.refused < 25, run


@pytest.mark.parametrize("quota", [1.0, 2.0, 5.0, 10.0])
def test_slow_answers_do_not_hide_what_the_quota_accepts(monkeypatch: pytest.MonkeyPatch, quota: float) -> None:
    """Answers 1.5 s late for the first seconds (a loaded endpoint): counted by arrival, few accepted answers are
    in yet when the first refusal comes, and the cut lands far below the quota (measured here: 45 % of a 5/s
    quota); counted by when they were sent, it does not."""
    run = simulate(monkeypatch, quota, latency=lambda sent: 1.5 if 0.5 < sent < 6 else LATENCY)
    assert run.share >= 0.85, run


def test_the_window_holds_enough_requests_at_a_low_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualTime()
    monkeypatch.setattr(pca_client, "time", clock)
    limiter = pca_client.AdaptiveRate(1.0)
    assert limiter._window() == pca_client.RATE_SAMPLES  # 16 s at 1/s: about 16 requests
    limiter.rate = 25.0
    assert limiter._window() == pca_client.RATE_WINDOW


def test_the_probe_step_scales_with_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same number of accepted requests raises the rate by the same share, at 1/s as at 20/s."""
    growth = {}
    for seed in (1.0, 20.0):
        clock = VirtualTime()
        monkeypatch.setattr(pca_client, "time", clock)
        limiter = pca_client.AdaptiveRate(seed)
        for _ in range(10):
            clock.now += 1 / seed
            limiter.accepted(clock.now - LATENCY)
        growth[seed] = limiter.rate / seed
    assert growth[1.0] == pytest.approx(growth[20.0])
    assert 1.04 < growth[1.0] < 1.06
