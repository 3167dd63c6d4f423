"""ACM PCA calls for the certificate provider: shared clients, one request rate per process, bounded retries.

Pulumi runs every dynamic resource of a program in one provider process and calls it concurrently. This module
keeps, per process and never on the provider object (which is pickled into the state):

- one boto3 client per `Target` (region, endpoint, identity), built lazily and reused by every call of every
  resource (boto3 clients are thread-safe; building one costs far more than a request);
- one adaptive request rate per (target, operation), seeded from AWS's default quotas and cut to the rate AWS
  actually accepted whenever it answers `ThrottlingException`, so that many certificates requested together
  go through at close to the quota instead of failing;
- retries: throttling is retried until a time budget (minutes, `throttle_retry_minutes`) runs out; server
  errors and broken connections a few times with back-off; every other error fails at once.

botocore's own retries are off (one attempt): its standard mode keeps a retry quota per client, which a
shared client under sustained throttling exhausts, after which it stops retrying at all.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
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
from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError
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
#: Attempts for server errors and broken connections. A retried IssueCertificate carries the same idempotency
#: token, and these retries end within seconds, well inside the 5 minutes AWS matches tokens over.
TRANSIENT_ATTEMPTS = 4
TRANSIENT_BACKOFF = 0.25
#: The rate never drops below this (requests per second), and never grows past this many times its seed.
MIN_RATE = 0.2
MAX_RATE_FACTOR = 4.0
#: On throttling, the rate becomes this share of the rate AWS accepted over `RATE_WINDOW` seconds; after that
#: it grows by `RATE_PROBE` requests/s per success (about 5 % a second), probing for a higher quota.
RATE_CUT = 0.9
RATE_WINDOW = 2.0
RATE_COOLDOWN = 1.0
RATE_PROBE = 0.05

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

    def accepted(self) -> None:
        with self._lock:
            now = time.monotonic()
            self._accepted.append(now)
            self._forget_before(now - RATE_WINDOW)
            if now - self._last_cut >= RATE_COOLDOWN:
                self.rate = min(self.max_rate, self.rate + RATE_PROBE)

    def throttled(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last_cut < RATE_COOLDOWN:
                return  # one cut per burst of throttling answers, not one per answer
            self._forget_before(now - RATE_WINDOW)
            window = max(0.5, min(RATE_WINDOW, now - self._born))
            accepted_rate = len(self._accepted) / window
            base = min(self.rate, accepted_rate) if accepted_rate > 0 else self.rate / 2
            self.rate = max(MIN_RATE, base * RATE_CUT)
            self._last_cut = now

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


def call(target: Target, operation: str, throttle_budget: float, **params: Any) -> dict[str, Any]:
    """Call `operation` (e.g. "IssueCertificate") with `params`; retry as the module docstring says.

    `throttle_budget` is in seconds; 0 means a throttled call fails at once. The same `params` (hence the same
    idempotency token) are sent on every attempt.
    """
    method = getattr(client(target), _snake(operation))
    limiter = rate(target, operation)
    deadline = time.monotonic() + throttle_budget
    transient_failures = 0
    while True:
        limiter.acquire()
        try:
            answer: dict[str, Any] = method(**params)
        except ClientError as error:
            if error_code(error) in THROTTLING_CODES:
                limiter.throttled()
                if time.monotonic() >= deadline:
                    raise
                continue
            if not _is_transient(error):
                raise
            transient_failures += 1
            if transient_failures >= TRANSIENT_ATTEMPTS:
                raise
        except (BotoConnectionError, HTTPClientError):
            transient_failures += 1
            if transient_failures >= TRANSIENT_ATTEMPTS:
                raise
        else:
            limiter.accepted()
            return answer
        time.sleep(TRANSIENT_BACKOFF * 2 ** (transient_failures - 1) * random.uniform(0.5, 1.0))  # noqa: S311


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
