"""scripts/verify-tls against real nginx serving the rendered config on 127.0.0.1; openssl s_client agrees.

Every test runs under this interpreter and under Python 3.9, the hosts' python3 (tests/host_python.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.local.nginx import running_nginx, tls_server_block, write_standalone_conf
from components.local.process import free_port, require_binary
from components.local.tls import LEAF_DNS_NAME, Pki, make_pki
from components.nginx_config import render_server_block
from tests.host_python import INTERPRETERS, interpreter_for
from tests.tls_fixtures import VERIFY_TLS, run

LEAF_DAYS = 90


_python = [sys.executable]


@pytest.fixture(autouse=True, params=INTERPRETERS)
def python(request: pytest.FixtureRequest) -> str:
    """The interpreter `verify_tls()` runs the script with, for this test."""
    _python[0] = interpreter_for(request.param)
    return _python[0]


def verify_tls(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run([_python[0], VERIFY_TLS, *args], timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), days=LEAF_DAYS)


@pytest.fixture(scope="module")
def server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Port of nginx serving the rendered config (full chain, TLS 1.2 and 1.3)."""
    port = free_port()
    conf = write_standalone_conf(tmp_path_factory.mktemp("nginx"), tls_server_block(pki, port))
    with running_nginx(conf, [port]):
        yield port


@pytest.fixture(scope="module")
def tls12_only_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The rendered config with TLS 1.3 switched off, to see the protocol check fail."""
    port = free_port()
    block = tls_server_block(pki, port).replace("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1.2;")
    assert "ssl_protocols TLSv1.2;" in block
    with running_nginx(write_standalone_conf(tmp_path_factory.mktemp("nginx12"), block), [port]):
        yield port


@pytest.fixture(scope="module")
def leaf_only_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Misconfigured on purpose: serves the leaf without its subordinate CA."""
    port = free_port()
    block = render_server_block(
        server_names=[LEAF_DNS_NAME],
        certificate_path=str(pki.leaf_cert),
        private_key_path=str(pki.leaf_key),
        port=port,
        listen_address="127.0.0.1",
    )
    with running_nginx(write_standalone_conf(tmp_path_factory.mktemp("nginx-leaf"), block), [port]):
        yield port


def test_passes_with_the_ca_bundle_and_the_dns_name(server: int, pki: Pki) -> None:
    result = verify_tls(f"127.0.0.1:{server}", "--servername", LEAF_DNS_NAME, "--ca-bundle", pki.ca_bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [
        ["connect", "OK"],
        ["chain", "OK"],
        ["hostname", "OK"],
        ["protocol", "OK"],
        ["expiry", "OK"],
    ]
    assert lines[-1].startswith("OK:")


def test_passes_by_ip_address_through_the_ip_san(server: int, pki: Pki) -> None:
    result = verify_tls(f"127.0.0.1:{server}", "--ca-bundle", pki.ca_bundle)
    assert result.returncode == 0, result.stdout


def test_json_output(server: int, pki: Pki) -> None:
    result = verify_tls(f"127.0.0.1:{server}", "--servername", LEAF_DNS_NAME, "--ca-bundle", pki.ca_bundle, "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["failures"] == []
    assert report["protocol"] == "TLSv1.3"
    assert report["days_left"] in (LEAF_DAYS - 1, LEAF_DAYS)
    assert [check["name"] for check in report["checks"]] == ["connect", "chain", "hostname", "protocol", "expiry"]


def test_fails_without_the_ca_bundle_unknown_ca(server: int) -> None:
    result = verify_tls(f"127.0.0.1:{server}", "--servername", LEAF_DNS_NAME)
    assert result.returncode == 1
    assert "chain     FAIL unknown CA" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("FAIL:")


def test_fails_with_a_wrong_servername(server: int, pki: Pki) -> None:
    result = verify_tls(f"127.0.0.1:{server}", "--servername", "other.internal.test", "--ca-bundle", pki.ca_bundle)
    assert result.returncode == 1
    assert "hostname  FAIL name mismatch" in result.stdout
    assert f"DNS:{LEAF_DNS_NAME}" in result.stdout, "says which names the certificate has"
    assert "chain     OK" in result.stdout


def test_fails_when_the_leaf_expires_before_min_days(server: int, pki: Pki) -> None:
    result = verify_tls(f"127.0.0.1:{server}", "--ca-bundle", pki.ca_bundle, "--min-days", str(LEAF_DAYS + 10))
    assert result.returncode == 1
    assert "expiry    FAIL expiring soon" in result.stdout


def test_fails_when_the_server_is_older_than_min_protocol(tls12_only_server: int, pki: Pki) -> None:
    ok = verify_tls(f"127.0.0.1:{tls12_only_server}", "--ca-bundle", pki.ca_bundle)
    assert ok.returncode == 0, ok.stdout
    assert "TLSv1.2 (minimum TLSv1.2)" in ok.stdout
    old = verify_tls(f"127.0.0.1:{tls12_only_server}", "--ca-bundle", pki.ca_bundle, "--min-protocol", "TLSv1.3")
    assert old.returncode == 1
    assert "protocol  FAIL old protocol" in old.stdout


def test_a_server_without_its_chain_fails_for_root_only_clients(leaf_only_server: int, pki: Pki) -> None:
    result = verify_tls(f"127.0.0.1:{leaf_only_server}", "--ca-bundle", pki.ca_bundle)
    assert result.returncode == 1
    assert "unknown CA" in result.stdout


def test_connection_refused_exits_3() -> None:
    port = free_port()  # nothing listens there once the probe socket is closed
    result = verify_tls(f"127.0.0.1:{port}")
    assert result.returncode == 3
    assert "connection refused" in result.stdout


def test_a_silent_server_times_out_and_exits_3() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the TCP handshake; nobody ever answers the ClientHello
        result = verify_tls(f"127.0.0.1:{silent.getsockname()[1]}", "--timeout", "1")
    assert result.returncode == 3
    assert "timeout" in result.stdout


@pytest.mark.parametrize(("target", "argument"), [("no-port", None), ("127.0.0.1:1", "/nonexistent/ca.pem")])
def test_usage_errors_exit_2(target: str, argument: str | None) -> None:
    result = verify_tls(target, *(["--ca-bundle", argument] if argument else []))
    assert result.returncode == 2


def test_help_runs_through_the_shebang_and_documents_exit_codes() -> None:
    result = run([VERIFY_TLS, "--help"])
    assert result.returncode == 0
    assert "exit codes:" in result.stdout


@pytest.mark.parametrize(
    ("servername", "use_ca_bundle", "min_days", "expected_ok"),
    [
        (LEAF_DNS_NAME, True, 14, True),
        (LEAF_DNS_NAME, False, 14, False),
        ("other.internal.test", True, 14, False),
    ],
    ids=["trusted", "unknown-ca", "name-mismatch"],
)
def test_openssl_s_client_agrees(
    server: int, pki: Pki, servername: str, use_ca_bundle: bool, min_days: int, expected_ok: bool
) -> None:
    openssl = require_binary("openssl")
    trust = ["-CAfile", str(pki.ca_bundle)] if use_ca_bundle else []
    s_client = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{server}", "-servername", servername,
         "-verify_hostname", servername, "-verify_return_error", "-brief", *trust],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    ours = verify_tls(
        f"127.0.0.1:{server}", "--servername", servername, "--min-days", str(min_days),
        *(["--ca-bundle", str(pki.ca_bundle)] if use_ca_bundle else []),
    )  # fmt: skip
    assert (s_client.returncode == 0) is expected_ok, s_client.stderr
    assert (ours.returncode == 0) is expected_ok, ours.stdout
    if expected_ok:
        assert "Verification: OK" in s_client.stderr
