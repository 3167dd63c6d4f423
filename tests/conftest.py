"""Shared pytest fixtures. Sections: AWS emulator (moto server, recording proxy). Add new sections below."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aws_emulator import FAKE_AWS_ENVIRONMENT, REAL_AWS_VARIABLES, RecordingProxy, moto_server

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


@pytest.fixture
def pca_proxy(moto_endpoint: str) -> Iterator[RecordingProxy]:
    """A `RecordingProxy` in front of the session's moto server: `.endpoint_url`, `.calls(target)`,
    `.bodies(target)`, `.inject(...)`, `.throttle(...)`, `.in_progress(...)`, `.server_error(...)`."""
    with RecordingProxy(moto_endpoint) as proxy:
        yield proxy
