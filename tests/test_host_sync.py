"""The rendered sync script run for real against real nginx, openssl and curl, with stand-ins for AWS only.

Stand-ins on PATH: `aws` (SSM GetParameters from files; put-metric-data recorded), `systemctl` (drives the
test's nginx), `nginx` (the real one, pointed at the test's configuration) and `python3` (the hosts' 3.9 when
found). The instance metadata service is a small IMDSv2 server on 127.0.0.1; trust-ca is the real script
with --no-update on a scratch root. Each bad rotation must leave the old certificate served; a good one
must be served after one run.
"""

from __future__ import annotations

import datetime
import json
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components.host_bootstrap import (
    AWS_CLI_CONNECT_TIMEOUT,
    AWS_CLI_READ_TIMEOUT,
    IMDS_URL,
    METRIC_NAME,
    METRIC_NAMESPACE,
    TRUST_CA_PATH,
    HostParameters,
    render_sync_script,
)
from components.local.nginx import write_standalone_conf
from components.local.process import free_port, require_binary
from components.nginx_config import render_server_block
from tests.host_python import find_host_python
from tests.tls_fixtures import TRUST_CA, run

PARAMETERS = HostParameters("/pca-backend/dev/full-chain", "/pca-backend/dev/private-key", "/pca-backend/dev/ca-bundle")
HOST_NAME = "ip-10-0-1-5.eu-west-1.compute.internal"
FLEET_NAME = "*.eu-west-1.compute.internal"
METRIC_BACKEND = "pca-backend-dev"
NOW = datetime.datetime.now(datetime.UTC)


# --- certificates ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ca:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


def new_ca(name: str) -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return Ca(key, certificate)


@dataclass(frozen=True)
class Material:
    full_chain: str
    key: str
    bundle: str
    leaf: x509.Certificate


def issue(ca: Ca, *, names: tuple[str, ...] = (FLEET_NAME,), days: float = 90, starts_in_days: float = -1) -> Material:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.certificate.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + datetime.timedelta(days=starts_in_days))
        .not_valid_after(NOW + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return Material(leaf.public_bytes(serialization.Encoding.PEM).decode(), key_pem, ca.pem, leaf)


# --- IMDSv2 stand-in -------------------------------------------------------------------------------------


class _Imds(BaseHTTPRequestHandler):
    token = "test-imds-token"

    def do_PUT(self) -> None:
        ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        self._answer(200 if ok else 400, self.token if ok else "")

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != self.token:
            self._answer(401, "")  # IMDSv2 only: no token, no answer
        elif self.path == "/latest/meta-data/local-hostname":
            self._answer(200, HOST_NAME)
        else:
            self._answer(404, "")

    def _answer(self, status: int, body: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def imds() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Imds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- the host ------------------------------------------------------------------------------------------

AWS_SHIM = '''#!{python}
"""aws stand-in: ssm get-parameters from $FAKE/ssm/<name>, cloudwatch put-metric-data recorded."""
import json, os, sys
fake = os.environ["FAKE"]
args = sys.argv[1:]
with open(os.path.join(fake, "aws-calls.jsonl"), "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["ssm", "get-parameters"]:
    if os.path.exists(os.path.join(fake, "ssm-down")):
        sys.stderr.write("Could not connect to the endpoint URL\\n")
        sys.exit(255)
    names = args[args.index("--names") + 1:]
    names = names[:next((i for i, a in enumerate(names) if a.startswith("--")), len(names))]
    found, missing = [], []
    for name in names:
        path = os.path.join(fake, "ssm", name.replace("/", "_"))
        if os.path.exists(path):
            found.append({{"Name": name, "Type": "SecureString", "Value": open(path).read()}})
        else:
            missing.append(name)
    print(json.dumps({{"Parameters": found, "InvalidParameters": missing}}))
elif args[:2] == ["cloudwatch", "put-metric-data"]:
    pass
else:
    sys.exit("unexpected aws call: %s" % args)
'''


class Host:
    """One backend host on this machine: the rendered sync script, its files and a real nginx."""

    def __init__(self, tmp_path: Path, imds_url: str) -> None:
        self.fake = tmp_path / "fake"
        self.pki = tmp_path / "pki"
        self.nginx_dir = tmp_path / "nginx"
        bin_dir = self.fake / "bin"
        for directory in (self.fake / "ssm", bin_dir, tmp_path / "trust-root"):
            directory.mkdir(parents=True)
        self.python = find_host_python() or sys.executable
        self.port = free_port()
        write_standalone_conf(
            self.nginx_dir,
            render_server_block(
                server_names=[HOST_NAME],
                certificate_path=str(self.pki / "server.crt"),
                private_key_path=str(self.pki / "private/server.key"),
                port=self.port,
                listen_address="127.0.0.1",
            ),
        )
        nginx = require_binary("nginx")
        conf = f'-p "{self.nginx_dir}" -c "{self.nginx_dir}/nginx.conf"'
        shims = {
            "aws": AWS_SHIM.format(python=sys.executable),
            "nginx": f'#!/bin/bash\nexec {nginx} {conf} "$@"\n',
            "systemctl": f"""#!/bin/bash
echo "systemctl $*" >>"$FAKE/calls"
running() {{ [ -s "{self.nginx_dir}/nginx.pid" ] && kill -0 "$(cat "{self.nginx_dir}/nginx.pid")" 2>/dev/null; }}
case "$1" in
    is-active) running ;;
    is-enabled) true ;;
    start) {nginx} {conf} ;;
    reload) {nginx} {conf} -s reload ;;
esac
""",
            "python3": f'#!/bin/bash\nexec {self.python} "$@"\n',
            "trust-ca": f'#!/bin/bash\nexec {self.python} {TRUST_CA} --root {tmp_path}/trust-root --no-update "$@"\n',
            "sleep": "#!/bin/bash\nexit 0\n",
        }
        for command, body in shims.items():
            (bin_dir / command).write_text(body)
            (bin_dir / command).chmod(0o755)
        script = render_sync_script(region="eu-west-1", parameters=PARAMETERS, metric_backend=METRIC_BACKEND)
        script = (
            script.replace("/etc/pki/nginx", str(self.pki))
            .replace(TRUST_CA_PATH, str(bin_dir / "trust-ca"))
            .replace(IMDS_URL, imds_url)
        )
        self.script = tmp_path / "pca-backend-tls-sync"
        self.script.write_text(script)
        # No /usr/sbin: the only nginx is the shim (a test takes it away as if the package were missing).
        self.env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE": str(self.fake)}

    def put(self, material: Material, *, key: str | None = None, bundle: str | None = None) -> None:
        for name, value in (
            (PARAMETERS.full_chain, material.full_chain),
            (PARAMETERS.private_key, material.key if key is None else key),
            (PARAMETERS.ca_bundle, material.bundle if bundle is None else bundle),
        ):
            (self.fake / "ssm" / name.replace("/", "_")).write_text(value)

    def sync(self) -> tuple[int, str]:
        """Runs the sync script once: (exit code, stdout + stderr)."""
        (self.fake / "aws-calls.jsonl").write_text("")
        result = subprocess.run(
            ["bash", str(self.script)], env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        return result.returncode, result.stdout + result.stderr

    def aws_calls(self) -> list[list[str]]:
        return [json.loads(line) for line in (self.fake / "aws-calls.jsonl").read_text().splitlines()]

    def metrics(self) -> list[dict[str, Any]]:
        calls = [call for call in self.aws_calls() if call[:2] == ["cloudwatch", "put-metric-data"]]
        return [{"args": call, "data": json.loads(call[call.index("--metric-data") + 1])} for call in calls]

    def served(self) -> x509.Certificate:
        pem = ssl.get_server_certificate(("127.0.0.1", self.port))
        return x509.load_pem_x509_certificate(pem.encode())

    def wait_until_served(self, leaf: x509.Certificate, timeout: float = 10) -> float:
        """Seconds until nginx hands out `leaf` (old workers finish their connections after a reload)."""
        start = time.monotonic()
        while self.served() != leaf:
            if time.monotonic() - start > timeout:
                raise AssertionError(f"nginx still serves {self.served().subject} after {timeout}s")
            time.sleep(0.02)
        return time.monotonic() - start

    def stop(self) -> None:
        pid_file = self.nginx_dir / "nginx.pid"
        if pid_file.exists():
            run([require_binary("nginx"), "-p", self.nginx_dir, "-c", self.nginx_dir / "nginx.conf", "-s", "stop"])


@pytest.fixture(scope="module")
def ca() -> Ca:
    return new_ca("pca-backend test CA")


@pytest.fixture
def host(tmp_path: Path, imds: str, ca: Ca) -> Iterator[Host]:
    require_binary("openssl")
    require_binary("curl")
    machine = Host(tmp_path, imds)
    try:
        first = issue(ca)
        machine.put(first)
        status, output = machine.sync()
        assert status == 0, output
        assert machine.served() == first.leaf
        yield machine
    finally:
        machine.stop()


def _refusal_cases(ca: Ca) -> dict[str, tuple[Material, dict[str, str]]]:
    other_ca = new_ca("another CA")
    good = issue(ca)
    return {
        "expired": (issue(ca, days=-1, starts_in_days=-30), {}),
        "not-yet-valid": (issue(ca, days=90, starts_in_days=2), {}),
        "other-ca": (issue(other_ca), {"bundle": ca.pem}),
        "names-miss-the-host": (issue(ca, names=("api.internal.example",)), {}),
        "key-of-another-rotation": (good, {"key": issue(ca).key}),
        "corrupt-ca-bundle": (good, {"bundle": ca.pem[:300]}),
        "bundle-is-a-leaf": (good, {"bundle": good.full_chain}),
    }


REFUSALS = {
    "expired": "outside its validity period",
    "not-yet-valid": "outside its validity period",
    "other-ca": "does not chain to the new CA bundle",
    "names-miss-the-host": f"does not name this host ({HOST_NAME})",
    "key-of-another-rotation": "private key does not match",
    "corrupt-ca-bundle": "CA bundle is not a PEM bundle of CA certificates",
    "bundle-is-a-leaf": "CA bundle is not a PEM bundle of CA certificates",
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_material_is_refused_and_the_old_certificate_keeps_serving(host: Host, ca: Ca, case: str) -> None:
    served_before = host.served()
    material, overrides = _refusal_cases(ca)[case]
    host.put(material, **overrides)
    status, output = host.sync()

    assert status != 0, output
    assert "refused the new TLS material" in output
    assert REFUSALS[case] in output, output
    assert "Still serving the previous certificate" in output
    assert host.served() == served_before
    assert "PRIVATE KEY" not in output, "the key must never reach a log"
    # The metric still reports the certificate that is served.
    (metric,) = host.metrics()
    days = metric["data"][0]["Value"]
    expected = (served_before.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).total_seconds()
    assert abs(days - expected / 86400) < 0.02


def test_good_rotation_is_served_after_one_run(host: Host, ca: Ca) -> None:
    rotated = issue(ca, days=30)
    started = time.monotonic()
    host.put(rotated)  # new material in "SSM"
    status, output = host.sync()
    assert status == 0, output
    seconds = time.monotonic() - started
    seconds += host.wait_until_served(rotated.leaf)
    print(f"\nrotation reached nginx {seconds:.3f}s after it landed in SSM (one sync run plus the reload)")
    assert "nginx reloaded" in output
    assert "PRIVATE KEY" not in output
    key = host.pki / "private/server.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_text() == rotated.key
    assert not list(host.pki.rglob(".*")), "no staged file is left behind"

    (metric,) = host.metrics()
    assert metric["args"][:2] == ["cloudwatch", "put-metric-data"]
    args = metric["args"]
    assert args[args.index("--namespace") + 1] == METRIC_NAMESPACE
    (datum,) = metric["data"]
    assert datum["MetricName"] == METRIC_NAME
    assert datum["Dimensions"] == [{"Name": "Backend", "Value": METRIC_BACKEND}]
    assert datum["Unit"] == "None"
    assert 29.9 < datum["Value"] <= 30


def test_every_aws_call_has_timeouts_and_the_parameters_come_in_one_call(host: Host, ca: Ca) -> None:
    host.put(issue(ca))
    status, output = host.sync()
    assert status == 0, output
    calls = host.aws_calls()
    assert [call[:2] for call in calls] == [["ssm", "get-parameters"], ["cloudwatch", "put-metric-data"]]
    (fetch,) = [call for call in calls if call[1] == "get-parameters"]
    assert fetch[fetch.index("--names") + 1 : fetch.index("--names") + 4] == [
        PARAMETERS.full_chain, PARAMETERS.private_key, PARAMETERS.ca_bundle,
    ]  # fmt: skip
    for call in calls:
        assert call[call.index("--cli-connect-timeout") + 1] == str(AWS_CLI_CONNECT_TIMEOUT)
        assert call[call.index("--cli-read-timeout") + 1] == str(AWS_CLI_READ_TIMEOUT)


def test_unchanged_material_does_not_reload(host: Host) -> None:
    status, output = host.sync()
    assert status == 0, output
    assert "TLS material unchanged" in output
    assert "systemctl reload nginx" not in (host.fake / "calls").read_text().splitlines()[-3:]
    assert len(host.metrics()) == 1


def test_unreachable_ssm_retries_then_fails_and_keeps_serving(host: Host, ca: Ca) -> None:
    served = host.served()
    (host.fake / "ssm-down").touch()
    status, output = host.sync()
    assert status != 0
    assert "attempt 5 of 5" in output
    assert host.served() == served


def test_missing_parameter_is_refused(host: Host) -> None:
    (host.fake / "ssm" / PARAMETERS.private_key.replace("/", "_")).unlink()
    served = host.served()
    status, output = host.sync()
    assert status != 0
    assert f"parameter {PARAMETERS.private_key} not found" in output
    assert host.served() == served


def test_imds_names_are_required(tmp_path: Path, ca: Ca) -> None:
    """Without the instance metadata service the host cannot know its names: nothing is installed."""
    machine = Host(tmp_path, f"http://127.0.0.1:{free_port()}")
    try:
        machine.put(issue(ca))
        status, output = machine.sync()
        assert status != 0
        assert "could not read this host's names" in output
        assert not (machine.pki / "server.crt").exists()
        assert "no certificate is served yet" in output
    finally:
        machine.stop()


def test_missing_packages_are_installed_by_the_sync_and_a_failure_still_reports(host: Host) -> None:
    """A boot that never reached the package repositories: each timer run tries dnf again."""
    bin_dir = host.fake / "bin"
    nginx_shim = (bin_dir / "nginx").read_text()
    (bin_dir / "nginx").unlink()
    (bin_dir / "dnf").write_text(
        '#!/bin/bash\necho "dnf $*" >>"$FAKE/calls"\necho "Curl error (28): Timeout" >&2\nexit 1\n'
    )
    (bin_dir / "dnf").chmod(0o755)
    served = host.served()
    status, output = host.sync()
    assert status != 0
    assert "nginx or openssl is missing: installing them" in output
    assert "dnf install -y nginx openssl" in (host.fake / "calls").read_text()
    assert len(host.metrics()) == 1, "the EXIT trap reports even when the run stops early"

    # The repositories answer on a later run: dnf installs (here: puts nginx back) and the sync goes on.
    (bin_dir / "dnf").write_text(
        f"#!/bin/bash\ncat >{bin_dir}/nginx <<'EOF'\n{nginx_shim}EOF\nchmod 0755 {bin_dir}/nginx\n"
    )
    status, output = host.sync()
    assert status == 0, output
    assert "systemctl enable nginx.service" in (host.fake / "calls").read_text()
    assert host.served() == served
