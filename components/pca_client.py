"""ACM PCA calls for the certificate provider: shared clients, one request rate per process, bounded retries.

Pulumi runs every dynamic resource of a program in one provider process and calls it concurrently. This module
keeps, per process and never on the provider object (which is pickled into the state):

- one boto3 client per `Target` (region, endpoint, identity), built lazily and reused by every call of every
  resource (boto3 clients are thread-safe; building one costs far more than a request);
- one adaptive request rate per (target, operation), seeded from AWS's default quotas and cut to the rate AWS
  actually accepted whenever it answers `ThrottlingException`, so that many certificates requested together
  go through at close to the quota instead of failing;
- retries: throttling is retried until a deadline (the caller's time budget, `throttle_retry_minutes`, runs
  out); server errors and broken connections a few times with back-off; every other error fails at once;
- idempotency tokens: a call that carries one (IssueCertificate) is retried with the same token only while AWS
  still matches it, and when an attempt may have been processed without its answer reaching us (a dropped
  reply, a read timeout, a 5xx) and the call cannot finish inside that window, it fails with `OutcomeUnknown`
  rather than risk a second certificate.

botocore's own retries are off (one attempt): its standard mode keeps a retry quota per client, which a
shared client under sustained throttling exhausts, after which it stops retrying at all.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

if TYPE_CHECKING:
    from mypy_boto3_acm_pca import ACMPCAClient

#: AWS's default request quotas per account and region (Service Quotas, "AWS Private Certificate Authority":
#: https://docs.aws.amazon.com/general/latest/gr/pca.html#limits_pca; DescribeCertificateAuthority is
#: L-46ADAC63). Adjustable, so they only seed the rate: it adapts to what AWS accepts.
DEFAULT_QUOTAS = {
    "IssueCertificate": 25.0,
    "GetCertificate": 75.0,
    "RevokeCertificate": 20.0,
    "DescribeCertificateAuthority": 20.0,
}
DEFAULT_SESSION_NAME = "pulumi-certificate-provider"

THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown"}
)
TRANSIENT_CODES = frozenset({"InternalFailure", "InternalServerError", "ServiceUnavailable", "RequestTimeout"})
#: Attempts for server errors and broken connections.
TRANSIENT_ATTEMPTS = 4
TRANSIENT_BACKOFF = 0.25
#: AWS treats an IssueCertificate with an idempotency token it saw in the last five minutes as the same request
#: and returns the first result; after that the token starts a new certificate (ACM PCA API reference,
#: IssueCertificate, IdempotencyToken: https://docs.aws.amazon.com/privateca/latest/APIReference/API_IssueCertificate.html;
#: some older pages say one hour: plan for five minutes). Retries with one token stop this long after its first
#: use, a minute inside the window, so a retry still in flight cannot arrive after AWS has forgotten the token.
TOKEN_REUSE_SECONDS = 240.0
#: The rate never drops below this (requests per second), and never grows past this many times its seed.
MIN_RATE = 0.2
MAX_RATE_FACTOR = 4.0
#: On throttling, the rate becomes this share of the rate AWS accepted recently: over `RATE_WINDOW` seconds, or
#: longer at a low rate, so that the window holds about `RATE_SAMPLES` requests (at 1 request/s, two seconds
#: hold one or two: the measured rate would be 0.5 or 1.0, and the cut land far below the quota). After that,
#: each accepted request raises the rate by `RATE_PROBE` of itself, probing for a higher quota: the step scales
#: with the rate, so at any quota the rate grows 5 % in about ten requests and overshoots as rarely.
RATE_CUT = 0.9
RATE_WINDOW = 2.0
RATE_SAMPLES = 16
RATE_COOLDOWN = 1.0
RATE_PROBE = 0.005
#: How late an answer may arrive and still count (the client's read timeout): accepted requests are remembered
#: this long beyond the window.
RATE_ANSWER_DELAY = 60.0

_CLIENT_CONFIG = BotoConfig(
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=10,
    read_timeout=60,
    max_pool_connections=64,  # Pulumi calls the provider for many resources at once
)


@dataclass(frozen=True)
class Identity:
    """Who calls AWS: a profile (None: the default credential chain) and optionally a role it assumes."""

    profile: str | None = None
    role_arn: str | None = None
    session_name: str | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class Target:
    """Where calls go and as whom: the key of the shared client and rates."""

    region: str | None
    endpoint_url: str | None
    identity: Identity = field(default_factory=Identity)

    @classmethod
    def of(cls, props: Mapping[str, Any]) -> Target:
        """From a certificate's inputs (`region`, `endpoint_url`, `profile`, `assume_role_*`)."""
        return cls(
            props.get("region") or None,
            props.get("endpoint_url") or None,
            Identity(
                props.get("profile") or None,
                props.get("assume_role_arn") or None,
                props.get("assume_role_session_name") or None,
                props.get("assume_role_external_id") or None,
            ),
        )


class AdaptiveRate:
    """Requests per second for one operation, shared by every thread of the process."""

    def __init__(self, seed: float) -> None:
        self.rate = seed
        self.max_rate = seed * MAX_RATE_FACTOR
        self._lock = threading.Lock()
        self._next = 0.0
        self._born = time.monotonic()
        self._last_cut = float("-inf")
        self._accepted: deque[float] = deque()

    def acquire(self) -> None:
        """Wait for this request's turn."""
        while True:
            with self._lock:
                now = time.monotonic()
                interval = 1.0 / self.rate
                if now >= self._next:
                    self._next = max(self._next, now - interval) + interval
                    return
                wait = self._next - now
            time.sleep(wait)

    def accepted(self, sent: float) -> None:
        """A request sent at `sent` (`time.monotonic()`) was accepted."""
        with self._lock:
            now = time.monotonic()
            self._accepted.append(sent)
            self._forget_before(now - self._window() - RATE_ANSWER_DELAY)
            if now - self._last_cut >= RATE_COOLDOWN:
                self.rate = min(self.max_rate, self.rate * (1 + RATE_PROBE))

    def throttled(self, sent: float) -> None:
        """A request sent at `sent` was refused: the quota was used up then. Cut to the rate of the requests AWS
        accepted over the window before `sent`, counted by when they were sent, not when their answers came:
        under load answers come late, and counting them by arrival would see a fraction of the real rate."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_cut < RATE_COOLDOWN:
                return  # one cut per burst of throttling answers, not one per answer
            window = self._window()
            span = max(0.5, min(window, sent - self._born))
            accepted_rate = sum(1 for moment in self._accepted if sent - span <= moment <= sent) / span
            base = min(self.rate, accepted_rate) if accepted_rate > 0 else self.rate / 2
            self.rate = max(MIN_RATE, base * RATE_CUT)
            self._last_cut = now

    def _window(self) -> float:
        """Seconds over which the accepted rate is measured: long enough to hold about `RATE_SAMPLES` requests."""
        return max(RATE_WINDOW, RATE_SAMPLES / self.rate)

    def _forget_before(self, moment: float) -> None:
        while self._accepted and self._accepted[0] < moment:
            self._accepted.popleft()


_lock = threading.Lock()
_clients: dict[Target, Any] = {}
_rates: dict[tuple[Target, str], AdaptiveRate] = {}


def client(target: Target) -> ACMPCAClient:
    """The process's ACM PCA client for `target`, built on first use."""
    with _lock:
        found = _clients.get(target)
        if found is None:
            found = _clients[target] = _new_session(target).client(
                "acm-pca", region_name=target.region, endpoint_url=target.endpoint_url, config=_CLIENT_CONFIG
            )
        return found


def rate(target: Target, operation: str) -> AdaptiveRate:
    with _lock:
        found = _rates.get((target, operation))
        if found is None:
            found = _rates[(target, operation)] = AdaptiveRate(DEFAULT_QUOTAS.get(operation, 10.0))
        return found


def forget() -> None:
    """Drop every client and rate, as a new provider process starts (tests and benches)."""
    with _lock:
        _clients.clear()
        _rates.clear()


@dataclass
class IdempotencyToken:
    """The idempotency token of one call (IssueCertificate's `IdempotencyToken`) and what is known of its use."""

    value: str = field(default_factory=lambda: secrets.token_hex(16))
    """At most 36 characters, the API's limit."""
    first_sent: float | None = None
    """`time.monotonic()` of the first attempt with this token."""
    first_sent_at: datetime | None = None
    last_sent_at: datetime | None = None
    """Wall-clock times (UTC) of the first and last attempts, for the operator who looks for what AWS issued."""
    uncertain: bool = False
    """An attempt with this token may have been processed without its answer reaching us."""

    def sent(self) -> None:
        now = datetime.now(UTC)
        if self.first_sent is None:
            self.first_sent, self.first_sent_at = time.monotonic(), now
        self.last_sent_at = now

    def reusable(self) -> bool:
        """Whether AWS still matches this token: a retry with it is the same request."""
        return self.first_sent is None or time.monotonic() - self.first_sent < TOKEN_REUSE_SECONDS

    def renew(self) -> None:
        """A fresh token, for a call none of whose attempts can have been processed."""
        self.value = secrets.token_hex(16)
        self.first_sent = self.first_sent_at = self.last_sent_at = None


class OutcomeUnknown(Exception):
    """A call with an idempotency token may have been processed, and can no longer be retried safely."""

    def __init__(self, operation: str, token: IdempotencyToken, reason: str, cause: Exception | None) -> None:
        super().__init__(f"{operation} with idempotency token {token.value}: {reason}")
        self.operation = operation
        self.token = token
        self.reason = reason
        self.cause = cause


def call(
    target: Target,
    operation: str,
    deadline: float,
    *,
    token: IdempotencyToken | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Call `operation` (e.g. "IssueCertificate") with `params`; retry as the module docstring says.

    `deadline` is a `time.monotonic()` time: throttled attempts are retried until then (at least one attempt is
    made). With `token`, every attempt carries `token.value` as `IdempotencyToken`, and:

    - while no attempt may have been processed (every refusal was throttling or a connection that never
      reached AWS), a token AWS no longer matches is replaced by a fresh one: nothing was issued with it;
    - once an attempt may have been processed (no answer came back), retries keep the token, and when they
      cannot go on inside AWS's window (or the deadline, or the transient attempts, run out), `OutcomeUnknown`
      is raised: a retry with a new token could issue a second certificate.
    """
    method = getattr(client(target), _snake(operation))
    limiter = rate(target, operation)
    transient_failures = 0
    while True:
        limiter.acquire()
        if token is not None:
            if not token.reusable():
                if token.uncertain:
                    raise OutcomeUnknown(operation, token, "AWS no longer matches the token", None)
                token.renew()  # nothing was processed with the old one
            params["IdempotencyToken"] = token.value
            token.sent()
        sent = time.monotonic()
        try:
            answer: dict[str, Any] = method(**params)
        except ClientError as error:
            if error_code(error) in THROTTLING_CODES:  # refused before any processing
                limiter.throttled(sent)
                if time.monotonic() >= deadline:
                    _give_up(operation, token, "throttled until the time budget ran out", error)
                continue
            if not _is_transient(error):
                _give_up(operation, token, "failed", error)
            _mark_uncertain(token)  # a server error may come after the work was done
            failure: ClientError | BotoCoreError = error
        except BotoConnectionError as error:  # no connection: the request never reached AWS
            failure = error
        except HTTPClientError as error:  # sent, but no answer (reset, closed, timed out): maybe processed
            _mark_uncertain(token)
            failure = error
        else:
            limiter.accepted(sent)
            return answer
        transient_failures += 1
        if transient_failures >= TRANSIENT_ATTEMPTS or time.monotonic() >= deadline:
            _give_up(operation, token, f"got no usable answer in {transient_failures} attempts", failure)
        time.sleep(TRANSIENT_BACKOFF * 2 ** (transient_failures - 1) * random.uniform(0.5, 1.0))  # noqa: S311


def _mark_uncertain(token: IdempotencyToken | None) -> None:
    if token is not None:
        token.uncertain = True


def _give_up(operation: str, token: IdempotencyToken | None, reason: str, error: ClientError | BotoCoreError) -> None:
    """Raise `error`, or `OutcomeUnknown` when an earlier attempt with `token` may have been processed."""
    if token is not None and token.uncertain:
        raise OutcomeUnknown(operation, token, reason, error) from error
    raise error


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _is_transient(error: ClientError) -> bool:
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return status >= 500 or error_code(error) in TRANSIENT_CODES


def _snake(operation: str) -> str:
    return "".join(f"_{char.lower()}" if char.isupper() else char for char in operation).lstrip("_")


def _new_session(target: Target) -> boto3.session.Session:
    """A session for `target.identity`: the profile's (or default) credentials, or a role assumed with them."""
    identity = target.identity
    source = boto3.session.Session(profile_name=identity.profile)
    if identity.role_arn is None:
        return source
    source_credentials = source.get_credentials()
    if source_credentials is None:
        raise NoCredentialsError()
    extra_args = {"RoleSessionName": identity.session_name or DEFAULT_SESSION_NAME}
    if identity.external_id:
        extra_args["ExternalId"] = identity.external_id

    def sts_client(service: str, **credentials: Any) -> Any:
        create: Any = source.client  # botocore passes the source credentials as keyword arguments
        return create(service, region_name=target.region, endpoint_url=target.endpoint_url, **credentials)

    fetcher = AssumeRoleCredentialFetcher(sts_client, source_credentials, identity.role_arn, extra_args=extra_args)
    assumed = botocore.session.Session()
    # Refreshed shortly before they expire (an hour by default), so a long `pulumi up` keeps working.
    assumed.register_component("credential_provider", CredentialResolver([_AssumedRole(fetcher)]))
    return boto3.session.Session(botocore_session=assumed)


class _AssumedRole(CredentialProvider):
    METHOD = "assume-role"

    def __init__(self, fetcher: AssumeRoleCredentialFetcher) -> None:
        super().__init__()
        self._fetcher = fetcher

    def load(self) -> DeferredRefreshableCredentials:
        return DeferredRefreshableCredentials(refresh_using=self._fetcher.fetch_credentials, method=self.METHOD)
