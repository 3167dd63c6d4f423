"""End to end on this machine: CA in moto -> CertificateProvider -> scripts/local-backend (real nginx) -> clients.

`scripts/local-backend` runs as a subprocess, as a developer runs it; its one JSON line on stdout says where it
serves. The clients are Python's ssl module and `scripts/verify-tls`; `scripts/sniff-check` captures the
loopback traffic with tcpdump. The `--from-ssm` test stores the three SecureString parameters in moto's SSM
the way the EncryptedBackend component does, and the backend fetches them the way a host does at boot.

Emulator quirk: with the product's default template (EndEntityServerAuthCertificate/V1) moto issues a leaf
with no key usage, EKU or authority key identifier. OpenSSL 3 accepts it unless X509_V_FLAG_X509_STRICT is
set, and Python 3.13's `ssl.create_default_context` sets it, so these tests pass `--template
EndEntityCertificate/V1` (full extensions in moto) to behave the same on every supported Python. Real ACM PCA
fills both templates; the product default is unchanged.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509

from components.certificate import CertificateProvider
from components.local.emulator import create_active_ca
from components.local.nginx import running_nginx, tls_server_block, write_standalone_conf
from components.local.process import free_port, require_binary, stop_process
from components.local.tls import make_pki
from tests.tls_fixtures import REPO, VERIFY_TLS, run

LOCAL_BACKEND = REPO / "scripts" / "local-backend"
SNIFF_CHECK = REPO / "scripts" / "sniff-check"
EMULATOR_TEMPLATE = "EndEntityCertificate/V1"  # see the module docstring
READY_TIMEOUT = 120.0
KEY_MARKERS = ("PRIVATE KEY", "BEGIN", "MII")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _read_ready_line(process: subprocess.Popen[str], stderr_path: Path) -> dict[str, Any]:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if selector.select(timeout=0.5):
            line = process.stdout.readline()
            if line:
                return dict(json.loads(line))
        if process.poll() is not None:
            break
    raise AssertionError(
        f"local-backend gave no JSON line (exit {process.poll()}):\n{stderr_path.read_text(errors='replace')}"
    )


@contextmanager
def local_backend(args: list[str], tmp_path: Path) -> Iterator[tuple[dict[str, Any], subprocess.Popen[str]]]:
    """`scripts/local-backend ARGS` in the background: yields (its JSON line, the process); stops it after."""
    stderr_path = tmp_path / f"local-backend-{uuid.uuid4().hex[:8]}.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(LOCAL_BACKEND), *args], stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    ready: dict[str, Any] = {}
    try:
        ready = _read_ready_line(process, stderr_path)
        yield ready, process
    finally:
        stop_process(process, grace=30)  # local-backend stops its nginx and cleans up on SIGTERM
        if process.stdout:
            process.stdout.close()
        nginx_pid = ready.get("pid")
        if isinstance(nginx_pid, int) and _pid_alive(nginx_pid):  # only if local-backend failed to stop it
            with suppress(ProcessLookupError):
                os.kill(nginx_pid, signal.SIGTERM)


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def tls_connect(port: int, server_name: str, context: ssl.SSLContext) -> dict[str, Any]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return tls.getpeercert() or {}


def trusting(ca_bundle: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_bundle)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    return context


def verify_tls(*args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, VERIFY_TLS, *args])


# ---------------------------------------------------------------------------------------------------------
# one backend for the module: issued from a root CA in moto by the provider, inside local-backend
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend(
    moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, Any], subprocess.Popen[str]]]:
    require_binary("nginx")
    ca_arn, _ = create_active_ca(moto_endpoint, common_name="End-to-end Root CA")
    tmp_path = tmp_path_factory.mktemp("e2e")
    args = ["--endpoint-url", moto_endpoint, "--ca-arn", ca_arn, "--template", EMULATOR_TEMPLATE,
            "--port", str(free_port()), "--plain-port", str(free_port())]  # fmt: skip
    with local_backend(args, tmp_path) as started:
        yield started


def test_ready_line_says_where_to_connect_and_holds_no_key(backend: tuple[dict[str, Any], subprocess.Popen[str]]):
    ready, _ = backend
    assert ready["url"] == f"https://localhost:{ready['port']}/"
    assert ready["server_name"] == "localhost"
    assert ready["plain_url"].startswith("http://localhost:")
    assert ready["mode"] == "issue"
    assert ready["certificate_arn"].startswith("arn:aws:acm-pca:")
    assert Path(ready["ca_bundle"]).is_file()
    assert _pid_alive(ready["pid"])
    line = json.dumps(ready)
    key_pem = Path(ready["private_key_path"]).read_text()
    assert "PRIVATE KEY" in key_pem
    assert not any(marker in line for marker in KEY_MARKERS), line
    key_body = "".join(key_pem.strip().splitlines()[1:-1])
    assert key_body[:40] not in line


def test_key_is_readable_by_its_owner_only(backend: tuple[dict[str, Any], subprocess.Popen[str]]):
    ready, _ = backend
    key = Path(ready["private_key_path"])
    # Same layout as a host (/etc/pki/nginx/private/server.key), rooted in the work directory.
    assert key == Path(ready["workdir"]) / "etc/pki/nginx/private/server.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.parent.stat().st_mode & 0o777 == 0o700


def test_client_trusting_the_ca_verifies_chain_and_host_name(backend: tuple[dict[str, Any], subprocess.Popen[str]]):
    ready, _ = backend
    context = trusting(ready["ca_bundle"])
    for name in ("localhost", "127.0.0.1"):
        certificate = tls_connect(ready["port"], name, context)
        assert ("DNS", "localhost") in certificate["subjectAltName"]
    request = urllib.request.Request(ready["url"], data=b'{"data": "hello"}', method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
        assert response.status == 200
        assert json.loads(response.read()) == {"status": "ok"}

    checked = verify_tls(f"127.0.0.1:{ready['port']}", "--servername", "localhost", "--ca-bundle", ready["ca_bundle"])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK: 127.0.0.1" in checked.stdout


def test_client_without_the_ca_is_refused(
    backend: tuple[dict[str, Any], subprocess.Popen[str]], moto_endpoint: str, tmp_path: Path
):
    ready, _ = backend
    with pytest.raises(ssl.SSLCertVerificationError) as refused:
        tls_connect(ready["port"], "localhost", ssl.create_default_context())  # the system trust store only
    # The served chain ends with the root (moto's chain holds it); untrusted either way: 19 "self-signed
    # certificate in certificate chain" or 20 "unable to get local issuer certificate".
    assert refused.value.verify_code in (19, 20), refused.value.verify_message

    stock = verify_tls(f"127.0.0.1:{ready['port']}", "--servername", "localhost")
    assert stock.returncode == 1, stock.stdout + stock.stderr
    assert "unknown CA" in stock.stdout

    # Another private CA (same emulator, same account) is not this one either.
    _, other_ca_pem = create_active_ca(moto_endpoint, common_name="Some Other Root CA")
    other_bundle = tmp_path / "other-ca.pem"
    other_bundle.write_text(other_ca_pem)
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(ready["port"], "localhost", trusting(str(other_bundle)))
    other = verify_tls(f"127.0.0.1:{ready['port']}", "--servername", "localhost", "--ca-bundle", str(other_bundle))
    assert other.returncode == 1
    assert "unknown CA" in other.stdout


def test_wrong_host_name_is_refused(backend: tuple[dict[str, Any], subprocess.Popen[str]]):
    ready, _ = backend
    with pytest.raises(ssl.SSLCertVerificationError) as refused:
        tls_connect(ready["port"], "other.internal.example", trusting(ready["ca_bundle"]))
    assert "Hostname mismatch" in refused.value.verify_message

    mismatch = verify_tls(
        f"127.0.0.1:{ready['port']}", "--servername", "other.internal.example", "--ca-bundle", ready["ca_bundle"]
    )
    assert mismatch.returncode == 1
    assert "name mismatch" in mismatch.stdout


# ---------------------------------------------------------------------------------------------------------
# the wire: sniff-check against the HTTPS server and its cleartext twin
# ---------------------------------------------------------------------------------------------------------


def sniff_check(*args: str) -> tuple[int, dict[str, Any]]:
    if os.geteuid() != 0:
        pytest.skip("tcpdump needs root here")
    require_binary("tcpdump")
    result = run([sys.executable, SNIFF_CHECK, "--json", *args], timeout=120)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_sniff_check_reads_the_body_over_http_only(backend: tuple[dict[str, Any], subprocess.Popen[str]]):
    ready, _ = backend
    code, report = sniff_check(
        "--https-url", ready["url"], "--http-url", ready["plain_url"], "--ca-bundle", ready["ca_bundle"]
    )
    assert code == 0, report
    https, http = report["results"]
    assert report["marker"].startswith("sniff-check-")
    assert (https["scheme"], https["status"], http["scheme"], http["status"]) == ("https", 200, "http", 200)
    assert https["packets"] > 0
    assert (https["marker_seen"], https["marker_in_bytes"]) == (False, False)
    assert (http["marker_seen"], http["marker_in_bytes"]) == (True, True)
    if report["tshark"]:
        assert https["tshark_frames"] == 0
        assert http["tshark_frames"] >= 1


def test_sniff_check_reports_cleartext_in_a_tls_capture_as_a_leak(
    backend: tuple[dict[str, Any], subprocess.Popen[str]],
):
    # The server name travels in clear in the ClientHello (SNI): used as the marker, it must be found, which
    # shows that "not found over HTTPS" means encrypted, not "the detector never finds anything".
    ready, _ = backend
    code, report = sniff_check("--https-url", ready["url"], "--ca-bundle", ready["ca_bundle"], "--marker", "localhost")
    assert code == 1, report
    assert report["results"][0]["marker_seen"] is True
    assert report["results"][0]["verdict"].startswith("LEAKED")


def test_sniff_check_refuses_addresses_outside_this_machine():
    result = run([sys.executable, SNIFF_CHECK, "--json", "--http-url", "http://192.0.2.10:8080/"], timeout=60)
    assert result.returncode == 2
    assert "--allow-any-address" in json.loads(result.stdout)["results"][0]["error"]


# ---------------------------------------------------------------------------------------------------------
# --from-ssm: what a host fetches at boot, stored as the EncryptedBackend component stores it
# ---------------------------------------------------------------------------------------------------------


def test_from_ssm_serves_the_stored_certificate_and_stops_cleanly(moto_endpoint: str, tmp_path: Path):
    require_binary("nginx")
    ca_arn, ca_pem = create_active_ca(moto_endpoint, common_name="SSM Root CA")
    provider = CertificateProvider()
    checked = provider.check(
        {},
        {
            "ca_arn": ca_arn,
            "common_name": "backend.local.internal",
            "subject_alternative_names": ["localhost", "127.0.0.1"],
            "validity_days": 7,  # moto reports every CA as SHORT_LIVED_CERTIFICATE
            "template_arn": EMULATOR_TEMPLATE,
            "endpoint_url": moto_endpoint,
        },
    )
    assert not checked.failures, checked.failures
    outs = provider.create(checked.inputs or {}).outs or {}
    prefix = f"/pca-backend/e2e-{uuid.uuid4().hex[:8]}"
    ssm = boto3.session.Session().client("ssm", region_name="us-east-1", endpoint_url=moto_endpoint)
    for suffix, value in [
        ("full-chain", outs["full_chain_pem"]),
        ("private-key", outs["private_key_pem"]),
        ("ca-bundle", ca_pem),
    ]:
        ssm.put_parameter(Name=f"{prefix}/{suffix}", Value=value, Type="SecureString")

    args = ["--from-ssm", prefix, "--endpoint-url", moto_endpoint, "--port", str(free_port())]
    with local_backend(args, tmp_path) as (ready, process):
        assert ready["mode"] == "from-ssm"
        # Names come from the certificate itself; the first that resolves here is the URL's.
        assert ready["server_name"] == "localhost"
        assert Path(ready["ca_bundle"]).read_text() == ca_pem
        assert Path(ready["private_key_path"]).stat().st_mode & 0o777 == 0o600
        assert not any(marker in json.dumps(ready) for marker in KEY_MARKERS)

        served = tls_connect(ready["port"], "backend.local.internal", trusting(ready["ca_bundle"]))
        assert ("DNS", "backend.local.internal") in served["subjectAltName"]
        checked_tls = verify_tls(
            f"127.0.0.1:{ready['port']}", "--servername", "localhost", "--ca-bundle", ready["ca_bundle"]
        )
        assert checked_tls.returncode == 0, checked_tls.stdout

        assert stop(process) == 0
        assert not _pid_alive(ready["pid"]), "nginx still runs after local-backend stopped"
        assert not Path(ready["workdir"]).exists(), "the temporary work directory was left behind"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", ready["port"]), timeout=2).close()


def test_from_ssm_missing_parameter_fails_clearly(moto_endpoint: str, tmp_path: Path):
    result = run(
        [sys.executable, LOCAL_BACKEND, "--from-ssm", f"/pca-backend/missing-{uuid.uuid4().hex[:8]}",
         "--endpoint-url", moto_endpoint, "--port", str(free_port())],
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    assert "cannot read SSM parameter" in result.stderr
    assert "ParameterNotFound" in result.stderr


# ---------------------------------------------------------------------------------------------------------
# what a new user meets first: bad arguments, a port someone else holds, the log's validity
# ---------------------------------------------------------------------------------------------------------


def test_invalid_name_is_refused_before_anything_starts():
    emulator_port = free_port()
    result = run(
        [sys.executable, LOCAL_BACKEND, "--start-emulator", "--endpoint-url", f"http://127.0.0.1:{emulator_port}",
         "--name", "localhost", "--name", "not a name!", "--port", str(free_port())],
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("'not a name!'") == 1, result.stderr
    assert "is not a DNS name" in result.stderr
    assert "moto" not in result.stderr, "no emulator may be started for a command line that is refused"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", emulator_port), timeout=2).close()


def test_port_served_by_another_tls_server_is_refused(moto_endpoint: str, tmp_path: Path):
    require_binary("nginx")
    port = free_port()
    pki = make_pki(tmp_path / "other", dns_names=["localhost"])
    with running_nginx(write_standalone_conf(tmp_path / "other-server", tls_server_block(pki, port)), [port]):
        result = run(
            [sys.executable, LOCAL_BACKEND, "--endpoint-url", moto_endpoint, "--template", EMULATOR_TEMPLATE,
             "--port", str(port)],
            timeout=120,
        )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == "", "no ready line for a server that is not this one"
    assert f"127.0.0.1:{port} (--port) is not free" in result.stderr, result.stderr
    assert "another server owns it" in result.stderr


def test_log_states_the_validity_the_certificate_has(moto_endpoint: str, tmp_path: Path):
    require_binary("nginx")
    # No --ca-arn: a throw-away CA; moto reports it SHORT_LIVED_CERTIFICATE, so 7 days are asked for, and
    # moto ignores Validity and issues for a year. The log must say what the certificate says.
    args = ["--endpoint-url", moto_endpoint, "--template", EMULATOR_TEMPLATE, "--port", str(free_port())]
    with local_backend(args, tmp_path) as (ready, _):
        leaf = x509.load_pem_x509_certificate(Path(ready["certificate_path"]).read_bytes())
    (log,) = [path.read_text() for path in tmp_path.glob("local-backend-*.stderr")]
    days = round((leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() / 86400)
    assert f"valid until {ready['not_after']} ({days} days; 7 requested)" in log, log
