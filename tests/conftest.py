"""Shared pytest fixtures. Sections: AWS emulator (moto server, recording proxy); the provider host. Add new
sections below."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.retries.standard import ExponentialBackoff

from components.local.emulator import FAKE_AWS_ENVIRONMENT, REAL_AWS_VARIABLES, RecordingProxy, moto_server
from tests.provider_host import Engine, ProviderHost

# --------------------------------------------------------------------------------------------------------
# AWS emulator: moto's server in a subprocess (one per session) and a recording/fault-injecting proxy
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_aws_credentials() -> Iterator[None]:
    """Fake credentials and region for the session; a developer's real profile is never read."""
    with pytest.MonkeyPatch.context() as patch:
        for name in REAL_AWS_VARIABLES:
            patch.delenv(name, raising=False)
        for name, value in FAKE_AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def moto_endpoint(fake_aws_credentials: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`http://127.0.0.1:<port>` of a moto server started for the session (state shared: use unique CAs).

    moto reports every CA as SHORT_LIVED_CERTIFICATE (validity <= 7 days): go through `pca_proxy`, which
    honours the UsageMode the CA was created with, to issue longer-lived certificates.
    """
    log_path = tmp_path_factory.mktemp("moto") / "moto-server.log"
    with log_path.open("wb") as log, moto_server(log=log) as url:
        yield url


@pytest.fixture(scope="session")
def pca_proxy_session(moto_endpoint: str) -> Iterator[RecordingProxy]:
    """The session's `RecordingProxy`: for module- or session-scoped CAs (create them through it so
    their UsageMode is honoured). Tests should take `pca_proxy`, which resets it around each test."""
    with RecordingProxy(moto_endpoint) as proxy:
        yield proxy


@pytest.fixture
def pca_proxy(pca_proxy_session: RecordingProxy) -> Iterator[RecordingProxy]:
    """The session's `RecordingProxy`, with no recorded request and no pending fault at the start:
    `.endpoint_url`, `.calls(target)`, `.bodies(target)`, `.inject(...)`, `.throttle(...)`,
    `.in_progress()`, `.server_error(...)`, `.reset()`."""
    pca_proxy_session.reset()
    yield pca_proxy_session
    pca_proxy_session.reset()


@pytest.fixture
def fast_aws_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's retry back-off (up to 20 s a try for throttling) shrunk to 1 ms; attempts are unchanged."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda _self, _context: 0.001)


# --------------------------------------------------------------------------------------------------------
# The certificate provider as the engine runs it: the SDK's provider host, spoken to over gRPC
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def provider_host(fake_aws_credentials: None) -> Iterator[ProviderHost]:
    """`python -m pulumi.dynamic` started for the module (one process, as the engine keeps one per deployment)."""
    with ProviderHost() as started:
        yield started


@pytest.fixture
def engine(provider_host: ProviderHost) -> Engine:
    """The engine's side of the door: Check, Diff, Create, Read, Update and Delete in the engine's order."""
    return Engine(provider_host)
