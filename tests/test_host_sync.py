"""The rendered sync script run for real against real nginx, openssl and curl, with stand-ins for AWS only.

Stand-ins on PATH: `aws` (SSM GetParameters from files; put-metric-data recorded), `systemctl` (drives the
test's nginx), `nginx` (the real one, pointed at the test's configuration) and `python3` (the hosts' 3.9 when
found). The instance metadata service is a small IMDSv2 server on 127.0.0.1 that answers the shapes EC2 gives
(custom DHCP domain names included); the host gate and trust-ca are the real scripts (trust-ca with --no-update
on a scratch root), under the hosts' 3.9. Each bad rotation must leave the old certificate served; a good one
must be served after one run. The look-alike sets are tests/gate_material.py's, as in tests/test_tls_gate.py.
"""

from __future__ import annotations

import datetime
import json
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509

from components.host_bootstrap import (
    AWS_CLI_CONNECT_TIMEOUT,
    AWS_CLI_READ_TIMEOUT,
    CERTIFICATE_PATH,
    FIRST_SYNC_RETRY_SECONDS,
    GATE_PATH,
    IMDS_URL,
    METRIC_NAME,
    METRIC_NAMESPACE,
    PINS_PATH,
    PRIVATE_KEY_PATH,
    SYNC_EXIT_NO_CERTIFICATE,
    SYNC_EXIT_SERVING_PREVIOUS,
    SYNC_SCRIPT_PATH,
    TRUST_CA_PATH,
    HostParameters,
    render_pins,
    render_shared_payload,
)
from components.local.nginx import systemctl_shim, write_standalone_conf
from components.local.process import free_port, require_binary
from components.nginx_config import render_server_block
from tests.gate_material import HOST_NAME, REFUSALS, LeafOptions, Material, Pki, wrong_set
from tests.host_python import find_host_python
from tests.tls_fixtures import REPO, TRUST_CA, run

PARAMETERS = HostParameters("/pca-backend/dev/full-chain", "/pca-backend/dev/private-key", "/pca-backend/dev/ca-bundle")
PRIVATE_IPV4 = "10.0.1.5"
METRIC_BACKEND = "pca-backend-dev"
GATE = REPO / "scripts" / "tls-gate"


def _sync_script(region: str) -> str:
    """The sync exactly as the shared mode's payload installs it on a host."""
    payload = render_shared_payload(
        region=region,
        parameters=PARAMETERS,
        server_block=render_server_block(
            server_names=["*.eu-west-1.compute.internal"],
            certificate_path=CERTIFICATE_PATH,
            private_key_path=PRIVATE_KEY_PATH,
        ),
        trust_ca_script=TRUST_CA.read_text(),
        tls_gate_script=GATE.read_text(),
        verify_tls_script=(REPO / "scripts" / "verify-tls").read_text(),
        metric_backend=METRIC_BACKEND,
    )
    (sync,) = [file for file in payload.files if file.path == SYNC_SCRIPT_PATH]
    assert sync.mode == "0700", "root runs it; nobody else reads or changes it"
    return sync.content


# --- IMDSv2 stand-in -------------------------------------------------------------------------------------


class _Imds(BaseHTTPRequestHandler):
    token = "test-imds-token"
    DEFAULTS: ClassVar[dict[str, str]] = {"local-ipv4": PRIVATE_IPV4, "local-hostname": HOST_NAME}
    #: What each metadata path answers (a test changes them; the `imds` fixture puts the defaults back).
    answers: ClassVar[dict[str, str]] = dict(DEFAULTS)

    def do_PUT(self) -> None:
        ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        self._answer(200 if ok else 400, self.token if ok else "")

    def do_GET(self) -> None:
        key = self.path.removeprefix("/latest/meta-data/")
        if self.headers.get("X-aws-ec2-metadata-token") != self.token:
            self._answer(401, "")  # IMDSv2 only: no token, no answer
        elif key in self.answers:
            self._answer(200, self.answers[key])
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
def imds_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Imds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def imds(imds_server: str) -> Iterator[str]:
    _Imds.answers = dict(_Imds.DEFAULTS)
    try:
        yield imds_server
    finally:
        _Imds.answers = dict(_Imds.DEFAULTS)


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

    def __init__(self, tmp_path: Path, imds_url: str, pins: list[str], *, region: str = "eu-west-1") -> None:
        self.fake = tmp_path / "fake"
        self.pki = tmp_path / "pki"
        self.nginx_dir = tmp_path / "nginx"
        self.trust_root = tmp_path / "trust-root"
        bin_dir = self.fake / "bin"
        for directory in (self.fake / "ssm", bin_dir, self.trust_root):
            directory.mkdir(parents=True)
        self.pins = self.fake / "ca-pins"
        self.pins.write_text(render_pins(pins))
        self.python = find_host_python() or sys.executable
        self.port = free_port()
        write_standalone_conf(
            self.nginx_dir,
            render_server_block(
                server_names=["*.eu-west-1.compute.internal"],
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
            "systemctl": systemctl_shim(nginx, conf, self.nginx_dir / "nginx.pid"),
            "python3": f'#!/bin/bash\nexec {self.python} "$@"\n',
            "trust-ca": f'#!/bin/bash\nexec {self.python} {TRUST_CA} --root {self.trust_root} --no-update "$@"\n',
            "pca-backend-tls-gate": f'#!/bin/bash\nexec {self.python} {GATE} "$@"\n',
            "sleep": "#!/bin/bash\nexit 0\n",
        }
        for command, body in shims.items():
            (bin_dir / command).write_text(body)
            (bin_dir / command).chmod(0o755)
        script = _sync_script(region)
        script = (
            script.replace("/etc/pki/nginx", str(self.pki))
            .replace(TRUST_CA_PATH, str(bin_dir / "trust-ca"))
            .replace(GATE_PATH, str(bin_dir / "pca-backend-tls-gate"))
            .replace(PINS_PATH, str(self.pins))
            .replace(IMDS_URL, imds_url)
        )
        assert "/etc/" not in script.replace("/etc/os-release", ""), "every host path points into the test"
        self.script = tmp_path / "pca-backend-tls-sync"
        self.script.write_text(script)
        # No /usr/sbin: the only nginx is the shim (a test takes it away as if the package were missing).
        self.env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE": str(self.fake)}

    def put(self, material: Material) -> None:
        for name, value in (
            (PARAMETERS.full_chain, material.full_chain),
            (PARAMETERS.private_key, material.key),
            (PARAMETERS.ca_bundle, material.bundle),
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

    def anchors(self) -> set[x509.Certificate]:
        """The certificates trust-ca put into the (scratch) trust store."""
        directory = self.trust_root / "etc/pki/ca-trust/source/anchors"
        files = sorted(directory.glob("*.pem")) if directory.is_dir() else []
        return {certificate for path in files for certificate in x509.load_pem_x509_certificates(path.read_bytes())}

    def stop(self) -> None:
        pid_file = self.nginx_dir / "nginx.pid"
        if pid_file.exists():
            run([require_binary("nginx"), "-p", self.nginx_dir, "-c", self.nginx_dir / "nginx.conf", "-s", "stop"])


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@contextmanager
def serving_host(directory: Path, imds_url: str, pki: Pki) -> Iterator[Host]:
    """A host that installed a good set and serves it."""
    require_binary("openssl")
    require_binary("curl")
    machine = Host(directory, imds_url, pki.pins)
    try:
        first = pki.issue()
        machine.put(first)
        status, output = machine.sync()
        assert status == 0, output
        assert machine.served() == first.leaf
        yield machine
    finally:
        machine.stop()


@pytest.fixture
def host(tmp_path: Path, imds: str, pki: Pki) -> Iterator[Host]:
    with serving_host(tmp_path, imds, pki) as machine:
        yield machine


@pytest.fixture(scope="module")
def refusing_host(tmp_path_factory: pytest.TempPathFactory, imds_server: str, pki: Pki) -> Iterator[Host]:
    """One serving host for all the look-alikes: a refused set changes nothing on it (each test checks that)."""
    with serving_host(tmp_path_factory.mktemp("refusing-host"), imds_server, pki) as machine:
        yield machine


@pytest.fixture
def fresh_host(tmp_path: Path, imds: str, pki: Pki) -> Iterator[Host]:
    """A host whose first sync has not installed anything yet."""
    require_binary("openssl")
    require_binary("curl")
    machine = Host(tmp_path, imds, pki.pins)
    try:
        yield machine
    finally:
        machine.stop()


def _assert_reports_the_served_certificate(host: Host, served: x509.Certificate) -> None:
    (metric,) = host.metrics()
    days = metric["data"][0]["Value"]
    expected = (served.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).total_seconds()
    assert abs(days - expected / 86400) < 0.02


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_look_alike_material_is_refused_and_the_old_certificate_keeps_serving(
    refusing_host: Host, imds: str, pki: Pki, case: str
) -> None:
    host = refusing_host
    served_before = host.served()
    anchors_before = host.anchors()
    material = wrong_set(pki, case)
    host.put(material)
    status, output = host.sync()

    assert status == SYNC_EXIT_SERVING_PREVIOUS, output
    reason = re.search(r"refused the new TLS material from SSM Parameter Store: (.*)\.\n", output)
    assert reason, output
    assert re.search(REFUSALS[case], reason.group(1)), output
    assert "Still serving the previous certificate" in output
    assert host.served() == served_before
    assert host.anchors() == anchors_before, "nothing reached the trust store"
    assert "PRIVATE KEY" not in output, "the key must never reach a log"
    _assert_reports_the_served_certificate(host, served_before)


def test_the_trust_store_gets_exactly_the_pinned_cas(host: Host, pki: Pki) -> None:
    pinned = {pki.root.certificate, pki.subordinate.certificate}
    assert host.anchors() == pinned


def test_trust_ca_refuses_an_unpinned_ca_even_behind_the_gate(host: Host, pki: Pki) -> None:
    """Defence in depth: were the gate to pass a bundle with an unpinned CA, trust-ca would still refuse it."""
    (host.fake / "bin" / "pca-backend-tls-gate").write_text("#!/bin/bash\nexit 0\n")  # a gate that lets all in
    host.put(wrong_set(pki, "bundle-adds-a-second-anchor"))
    status, output = host.sync()
    assert status == SYNC_EXIT_SERVING_PREVIOUS, output
    assert "is not pinned; refusing to trust it" in output
    assert host.anchors() == {pki.root.certificate, pki.subordinate.certificate}


def test_good_rotation_is_served_after_one_run(host: Host, pki: Pki) -> None:
    rotated = pki.issue(LeafOptions(days=(-1, 30)))
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


@pytest.mark.parametrize(
    "local_hostname",
    [
        "ip-10-0-1-5.corp.example.com",  # a DHCP options set with its own domain name
        "ip-10-0-1-5.corp.example.com.",  # ... written with a trailing dot
        "ip-10-0-1-5.corp.example.com example.com eu-west-1.compute.internal",  # several domain names
        "ip-10-0-1-5.eu-west-1.compute.internal corp.example.com",
        "i-0123456789abcdef0.eu-west-1.compute.internal",  # resource-based naming
        "",  # no answer at all
    ],
)
def test_custom_dhcp_domain_names_do_not_stop_a_host(fresh_host: Host, pki: Pki, local_hostname: str) -> None:
    """The host checks its EC2 name, derived from local-ipv4, whatever local-hostname says."""
    _Imds.answers["local-hostname"] = local_hostname
    material = pki.issue()
    fresh_host.put(material)
    status, output = fresh_host.sync()
    assert status == 0, output
    assert fresh_host.served() == material.leaf


def test_the_ec2_name_is_checked_not_the_dhcp_one(fresh_host: Host, pki: Pki) -> None:
    """A certificate for the custom domain only is refused: host-to-host clients use the EC2 names."""
    _Imds.answers["local-hostname"] = "ip-10-0-1-5.corp.example.com"
    fresh_host.put(pki.issue(LeafOptions(names=("*.corp.example.com",))))
    status, output = fresh_host.sync()
    assert status == SYNC_EXIT_NO_CERTIFICATE, output
    assert f"does not name this host ({HOST_NAME})" in output


def test_us_east_1_hosts_check_their_ec2_internal_name(tmp_path: Path, imds: str, pki: Pki) -> None:
    _Imds.answers["local-ipv4"] = "10.0.7.9"
    machine = Host(tmp_path, imds, pki.pins, region="us-east-1")
    try:
        machine.put(pki.issue(LeafOptions(names=("*.ec2.internal",))))
        status, output = machine.sync()
        assert status == 0, output
        machine.put(pki.issue(LeafOptions(names=("*.us-east-1.compute.internal",))))
        status, output = machine.sync()
        assert status == SYNC_EXIT_SERVING_PREVIOUS, output
        assert "does not name this host (ip-10-0-7-9.ec2.internal)" in output
    finally:
        machine.stop()


@pytest.mark.parametrize("answer", [None, "", "10.0.1", "10.0.1.5; id", "fe80::1"])
def test_without_a_private_ipv4_address_nothing_is_installed(fresh_host: Host, pki: Pki, answer: str | None) -> None:
    if answer is None:
        del _Imds.answers["local-ipv4"]
    else:
        _Imds.answers["local-ipv4"] = answer
    fresh_host.put(pki.issue())
    status, output = fresh_host.sync()
    assert status == SYNC_EXIT_NO_CERTIFICATE, output
    assert "could not read this host's private IPv4 address" in output
    assert not (fresh_host.pki / "server.crt").exists()


def test_imds_is_required(tmp_path: Path, pki: Pki) -> None:
    """Without the instance metadata service the host cannot know its name: nothing is installed."""
    machine = Host(tmp_path, f"http://127.0.0.1:{free_port()}", pki.pins)
    try:
        machine.put(pki.issue())
        status, output = machine.sync()
        assert status == SYNC_EXIT_NO_CERTIFICATE, output
        assert "could not read this host's private IPv4 address" in output
        assert not (machine.pki / "server.crt").exists()
        assert "no certificate is served yet" in output
    finally:
        machine.stop()


# --- first sync: the exit status tells systemd whether to retry soon (75) or wait for the timer (1) ------


def test_a_first_sync_that_fails_asks_for_a_retry(fresh_host: Host, pki: Pki) -> None:
    (fresh_host.fake / "ssm-down").touch()
    status, output = fresh_host.sync()
    assert status == SYNC_EXIT_NO_CERTIFICATE == 75, output
    assert f"no certificate is installed yet: trying again in {FIRST_SYNC_RETRY_SECONDS} s" in output
    assert "Still serving" not in output

    # Refused material on a host that serves nothing yet: a retry too (the parameters may be fixed any moment).
    (fresh_host.fake / "ssm-down").unlink()
    fresh_host.put(wrong_set(pki, "leaf-is-a-ca"))
    status, output = fresh_host.sync()
    assert status == SYNC_EXIT_NO_CERTIFICATE, output
    assert "refused the new TLS material" in output

    # The parameters are right at the next try: installed, nginx started, success.
    good = pki.issue()
    fresh_host.put(good)
    status, output = fresh_host.sync()
    assert status == 0, output
    assert "nginx started" in output
    assert fresh_host.served() == good.leaf


def test_a_failure_while_serving_waits_for_the_timer(host: Host) -> None:
    (host.fake / "ssm-down").touch()
    status, output = host.sync()
    assert status == SYNC_EXIT_SERVING_PREVIOUS == 1, output
    assert "trying again in" not in output


def test_every_aws_call_has_timeouts_and_the_parameters_come_in_one_call(host: Host, pki: Pki) -> None:
    host.put(pki.issue())
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


def test_unreachable_ssm_retries_then_fails_and_keeps_serving(host: Host) -> None:
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
