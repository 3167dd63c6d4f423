"""The per-host agent (scripts/cert-agent) for real: in a network namespace, against real nginx and the real issuer.

aws namespace   192.0.2.1   IMDSv2 stand-in (token, local-ipv4, role credentials) and the function URL stand-in
                            (HTTPS): SigV4 checked with botocore for `lambda` in us-east-1, then the real handler
                            (components/issuer/handler.py) against the session's moto server
host namespace  192.0.2.10  the agent (Python 3.9 when found, as on Amazon Linux 2023), nginx on :443, the gate
                            and trust-ca (scripts/), stand-ins for systemctl, aws (the metric) and dnf

The instance is a member of an Auto Scaling group in moto (components/local/issuer.py); IMDS gives the host that
instance's private IPv4, so its EC2 name is `ip-10-20-1-x.ec2.internal`. Clients in the aws namespace check what
nginx serves with a verified TLS handshake against moto's CA. moto's quirks stay here: it issues 365-day
certificates whatever the issuer asks, so certificates with chosen dates come from a test CA the host also pins.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components.host_agent import AGENT_EXIT_NO_CERTIFICATE, AGENT_EXIT_SERVING_PREVIOUS
from components.issuer.handler import Issuer, IssuerConfig
from components.local.agent import AgentHost, FunctionUrlStandIn, ImdsStandIn, Instance
from components.local.emulator import create_active_ca
from components.local.issuer import ACCOUNT, Fleet, create_fleet, instance_session_arn, issuer_environment
from components.local.tls import Pki, make_pki
from tests.gate_material import LeafOptions, Material, fingerprint
from tests.gate_material import Pki as DatedCa
from tests.host_python import INTERPRETERS, host_python, interpreter_for
from tests.netns import Namespaces, linked_namespaces

pytestmark = pytest.mark.netns

AWS_SIDE_IP = "192.0.2.1"
HOST_IP = "192.0.2.10"
REGION = "us-east-1"
ROLE_NAME = "pca-backend-dev-hosts"
SERVICE_NAME = "api.internal.example"
METRIC_BACKEND = "pca-backend-agent-test"


# --- AWS: moto, the fleet, the CA and the issuer -------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws_endpoint(moto_endpoint: str) -> Iterator[str]:
    """The clients the issuer builds talk to moto (boto3 reads AWS_ENDPOINT_URL)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
        yield moto_endpoint


@pytest.fixture(scope="module")
def fleet(aws_endpoint: str) -> Fleet:
    return create_fleet(aws_endpoint, size=1, region=REGION)


@pytest.fixture(scope="module")
def ca(aws_endpoint: str) -> tuple[str, str]:
    """(ARN, certificate PEM) of the CA the issuer signs with."""
    return create_active_ca(aws_endpoint, common_name="Agent Test CA")


@pytest.fixture(scope="module")
def issuer(aws_endpoint: str, fleet: Fleet, ca: tuple[str, str]) -> Issuer:
    environment = issuer_environment(
        ca_arn=ca[0],
        fleet=fleet,
        host_role_arn=f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}",
        service_names=[SERVICE_NAME],
    )
    return Issuer(IssuerConfig.from_environment(environment))


@pytest.fixture(scope="module")
def instance(aws_endpoint: str, fleet: Fleet) -> Instance:
    ec2: Any = boto3.session.Session().client("ec2", region_name=REGION, endpoint_url=aws_endpoint)
    described = ec2.describe_instances(InstanceIds=[fleet.instance_ids[0]])["Reservations"][0]["Instances"][0]
    return Instance(described["InstanceId"], described["PrivateIpAddress"], ROLE_NAME)


@pytest.fixture(scope="module")
def function_url_tls(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The function URL's TLS certificate (for its IP in the aws namespace) and the CA the agent trusts it by."""
    return make_pki(
        tmp_path_factory.mktemp("function-url-tls"), dns_names=("lambda-url.test",), ip_addresses=[AWS_SIDE_IP]
    )


@pytest.fixture(scope="module")
def dated_ca() -> DatedCa:
    """A CA the host also pins, for installed certificates with chosen dates (moto always issues 365 days)."""
    return DatedCa()


# --- one host and what it talks to ---------------------------------------------------------------------------------


@dataclass
class World:
    names: Namespaces
    imds: ImdsStandIn
    function_url: FunctionUrlStandIn
    host: AgentHost
    instance: Instance
    moto_ca: Path
    stack: ExitStack
    port: int = 0

    @property
    def dns_name(self) -> str:
        return f"ip-{self.instance.ipv4.replace('.', '-')}.ec2.internal"

    def issuer_down(self) -> None:
        self.stack.close()  # the function URL stops listening: connections are refused

    def issuer_up(self) -> None:
        self.stack.enter_context(self.function_url.running(self.port))

    def served(self, server_hostname: str | None = None, cafile: Path | None = None) -> x509.Certificate:
        """What nginx serves, verified (chain and name) from the aws namespace."""
        der = self.host.served(
            server_hostname or self.dns_name, cafile or self.moto_ca, client_namespace=self.names.server
        )
        return x509.load_der_x509_certificate(der)

    def material(self, dated_ca: DatedCa, days: tuple[float, float], names: tuple[str, ...] = ()) -> Material:
        """A set from the test CA for this host's names, valid over `days` (from, to) around now."""
        options = LeafOptions(
            names=names or (self.dns_name, SERVICE_NAME), ip_addresses=(self.instance.ipv4,), days=days
        )
        return dated_ca.issue(options)


@contextmanager
def _world(tmp_path: Path, python: str, *, issuer: Issuer, instance: Instance, ca: tuple[str, str], tls: Pki,
           dated_ca: DatedCa) -> Iterator[World]:  # fmt: skip
    moto_ca = tmp_path / "moto-ca.pem"
    moto_ca.write_text(ca[1])
    pins = [fingerprint(x509.load_pem_x509_certificate(ca[1].encode())), *dated_ca.pins]
    with linked_namespaces("ag", AWS_SIDE_IP, HOST_IP) as names:
        imds = ImdsStandIn(instance, address=AWS_SIDE_IP, namespace=names.server)
        function_url = FunctionUrlStandIn(
            issuer, region=REGION, instances={instance.access_key_id: instance}, tls=tls, address=AWS_SIDE_IP,
            namespace=names.server,
        )  # fmt: skip
        with imds.running() as imds_url, ExitStack() as stack:
            url = stack.enter_context(function_url.running())
            host = AgentHost(
                tmp_path / "host", python=python, region=REGION, issuer_url=url, imds_url=imds_url,
                issuer_ca=tls.ca_bundle, service_names=[SERVICE_NAME], pins=pins, metric_backend=METRIC_BACKEND,
                listen_address=HOST_IP, port=443, namespace=names.client,
            )  # fmt: skip
            try:
                yield World(names, imds, function_url, host, instance, moto_ca, stack, urlsplit(url).port or 0)
            finally:
                host.stop()


@pytest.fixture
def world(tmp_path: Path, issuer: Issuer, instance: Instance, ca: tuple[str, str], function_url_tls: Pki,
          dated_ca: DatedCa) -> Iterator[World]:  # fmt: skip
    """A host under the hosts' Python 3.9 (skipped, or failed under CI, when there is none)."""
    with _world(tmp_path, host_python(), issuer=issuer, instance=instance, ca=ca, tls=function_url_tls,
                dated_ca=dated_ca) as made:  # fmt: skip
        yield made


def _key_body(key_pem: str) -> str:
    """The base64 body of a PEM private key: what would show if the key leaked anywhere."""
    return "".join(line for line in key_pem.splitlines() if not line.startswith("-----"))


def _names_of(certificate: x509.Certificate) -> tuple[set[str], set[str]]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def _public_key(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_public_key(key_pem: str) -> bytes:
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# --- first boot ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_first_boot_makes_a_key_gets_a_certificate_for_exactly_its_names_and_serves_it(
    tmp_path: Path, issuer: Issuer, instance: Instance, ca: tuple[str, str], function_url_tls: Pki,
    dated_ca: DatedCa, interpreter: str,
) -> None:  # fmt: skip
    with _world(tmp_path, interpreter_for(interpreter), issuer=issuer, instance=instance, ca=ca,
                tls=function_url_tls, dated_ca=dated_ca) as world:  # fmt: skip
        host = world.host
        status, output = host.run()
        assert status == 0, output
        assert "a new certificate is needed: no certificate is installed" in output
        assert "installed a new certificate" in output
        assert "nginx started" in output

        # Served, verified against moto's CA, by the host's EC2 name, the service name and its private IPv4.
        served = world.served()
        assert world.served(SERVICE_NAME) == served
        assert world.served(instance.ipv4) == served
        assert _names_of(served) == ({world.dns_name, SERVICE_NAME}, {instance.ipv4})

        # The key: made on the host, root-only, the served certificate's, and nowhere else.
        key_pem = host.key.read_text()
        assert host.key.stat().st_mode & 0o777 == 0o600
        assert host.key.parent.stat().st_mode & 0o777 == 0o700
        assert _key_public_key(key_pem) == _public_key(served)
        body = _key_body(key_pem)
        assert body not in output
        assert "PRIVATE KEY" not in output
        (request,) = world.function_url.requests
        assert body.encode() not in request.body
        assert b"PRIVATE KEY" not in request.body
        elsewhere = [
            p for p in tmp_path.rglob("*") if p.is_file() and p != host.key and body.encode() in p.read_bytes()
        ]
        assert elsewhere == [], "the key is written nowhere but its file"
        assert not [p.name for p in host.pki.rglob(".*")], "no staged file is left behind"

        # The request: SigV4-verified by the stand-in (it answers 403 otherwise), as the instance's session.
        assert request.status == 200
        assert request.caller == instance_session_arn(ROLE_NAME, instance.instance_id)
        csr = x509.load_pem_x509_csr(json.loads(request.body)["csr"].encode())
        assert _key_public_key(key_pem) == csr.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

        # The trust store got moto's CA (pinned); the metric reports the served certificate.
        anchors = list((host.trust_root / "etc/pki/ca-trust/source/anchors").glob("*.pem"))
        assert [x509.load_pem_x509_certificate(a.read_bytes()) for a in anchors] == [
            x509.load_pem_x509_certificate(ca[1].encode())
        ]
        (metric,) = host.metrics()
        assert metric["MetricName"] == "CertificateDaysToExpiry"
        assert metric["Dimensions"] == [{"Name": "Backend", "Value": METRIC_BACKEND}]
        left = (served.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400
        assert abs(metric["Value"] - left) < 0.02

        # The next timer run keeps it: no request, no reload.
        status, output = host.run()
        assert status == 0, output
        assert "the certificate is valid until" in output
        assert len(world.function_url.requests) == 1
        assert world.served() == served


def test_a_first_boot_without_the_issuer_asks_systemd_for_a_quick_retry(world: World) -> None:
    world.issuer_down()
    status, output = world.host.run()
    assert status == AGENT_EXIT_NO_CERTIFICATE == 75, output
    assert "could not reach the issuer" in output
    assert "the issuer is unavailable after 3 attempts" in output
    assert "no certificate is installed yet: systemd runs this again shortly" in output
    assert not world.host.certificate.exists()
    assert not world.host.key.exists(), "the key of a request that failed is not kept"
    assert "systemctl start nginx" not in world.host.calls()

    world.issuer_up()
    status, output = world.host.run()
    assert status == 0, output
    assert _names_of(world.served()) == ({world.dns_name, SERVICE_NAME}, {world.instance.ipv4})


# --- renewal -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("days_left", "renews"), [(2, True), (3, False)])
def test_renewal_at_two_thirds_of_the_life(world: World, dated_ca: DatedCa, days_left: int, renews: bool) -> None:
    """A 7-day certificate: 2/7 of its life left is a third or less (renew), 3/7 is more (keep)."""
    installed = world.material(dated_ca, days=(days_left - 7, days_left))
    world.host.install(installed.full_chain, installed.key, installed.bundle)
    status, output = world.host.run()
    assert status == 0, output
    if renews:
        assert re.search(r"a third of its life or less is left \([12]\.\d\d of 7\.00 days", output), output
        assert len(world.function_url.requests) == 1
        served = world.served()  # verified against moto's CA
        assert served != installed.leaf
        assert world.host.key.read_text() != installed.key, "a new key for the new certificate"
    else:
        assert "the certificate is valid until" in output
        assert "renewal is due from" in output
        assert world.function_url.requests == []
        assert world.served(cafile=_root_file(world, dated_ca)) == installed.leaf


def _root_file(world: World, dated_ca: DatedCa) -> Path:
    path = world.host.directory / "test-root.pem"
    path.write_text(dated_ca.root.pem)
    return path


@pytest.mark.parametrize("fault", ["connection-refused", "503", "429"])
def test_an_unavailable_issuer_leaves_the_old_certificate_served_and_a_later_run_renews(
    world: World, dated_ca: DatedCa, fault: str
) -> None:
    installed = world.material(dated_ca, days=(-5, 2))
    world.host.install(installed.full_chain, installed.key, installed.bundle)
    if fault == "connection-refused":
        world.issuer_down()
    elif fault == "503":
        world.function_url.unavailable(times=3)
    else:
        world.function_url.throttled(times=3)

    status, output = world.host.run()
    assert status == AGENT_EXIT_SERVING_PREVIOUS == 1, output
    assert "attempt 1 of 3" in output
    assert "attempt 2 of 3" in output
    assert "the issuer is unavailable after 3 attempts" in output
    if fault != "connection-refused":
        assert len(world.function_url.requests) == 3, "bounded: the configured attempts, no more"
        assert f"HTTP {fault}" in output
    assert "still serving the previous certificate" in output
    assert world.served(cafile=_root_file(world, dated_ca)) == installed.leaf
    assert world.host.key.read_text() == installed.key
    assert len(world.host.metrics()) == 1, "the days to expiry are reported all the same"

    if fault == "connection-refused":
        world.issuer_up()
    status, output = world.host.run()
    assert status == 0, output
    assert world.served() != installed.leaf


def test_an_issuer_that_answers_after_a_retry_is_served_within_the_run(world: World) -> None:
    world.function_url.unavailable(times=1)
    world.function_url.throttled(times=1)
    status, output = world.host.run()
    assert status == 0, output
    assert [request.status for request in world.function_url.requests] == [503, 429, 200]
    assert "rule aws-unavailable" in output
    csrs = {request.body for request in world.function_url.requests}
    assert len(csrs) == 1, "the same CSR each attempt: the issuer's idempotency token returns one certificate"


# --- refusals ------------------------------------------------------------------------------------------------------


def test_a_refused_request_keeps_the_old_certificate_and_logs_the_rule(world: World, dated_ca: DatedCa) -> None:
    installed = world.material(dated_ca, days=(-1, 6))
    world.host.install(installed.full_chain, installed.key, installed.bundle)
    world.host.write_config(service_names=[SERVICE_NAME, "admin.internal.example"])  # not among the issuer's

    status, output = world.host.run()
    assert status == AGENT_EXIT_SERVING_PREVIOUS, output
    assert "this host's names changed" in output
    assert "the issuer refused the certificate request (HTTP 403, rule name-not-allowed" in output
    assert "admin.internal.example is not among" in output
    (request,) = world.function_url.requests  # a refusal is not retried
    assert request.status == 403
    assert world.served(cafile=_root_file(world, dated_ca)) == installed.leaf
    assert world.host.key.read_text() == installed.key
    assert not [p.name for p in world.host.pki.rglob(".*")], "the refused request's key is gone"


def test_a_certificate_that_no_longer_passes_the_gate_is_replaced(world: World, dated_ca: DatedCa) -> None:
    """An installed set whose bundle holds a CA the host does not pin: the gate refuses it, so a new one is asked."""
    installed = world.material(dated_ca, days=(-1, 6))
    foreign = DatedCa()
    world.host.install(installed.full_chain, installed.key, installed.bundle + foreign.root.pem)
    status, output = world.host.run()
    assert status == 0, output
    assert "the installed set no longer passes the host gate" in output
    assert "is not pinned" in output
    assert world.served() != installed.leaf


def test_a_certificate_the_gate_refuses_is_never_installed(world: World, dated_ca: DatedCa) -> None:
    """A host that does not pin the issuing CA (its launch template knows another CA) refuses what it is given."""
    world.host.pins.write_text("\n".join(dated_ca.pins) + "\n")
    status, output = world.host.run()
    assert status == AGENT_EXIT_NO_CERTIFICATE, output
    assert "the host gate refused the issued certificate" in output
    assert "is not pinned" in output
    assert not world.host.certificate.exists()
    assert not world.host.key.exists()


def test_when_nginx_refuses_the_new_set_the_previous_files_are_put_back(world: World, dated_ca: DatedCa) -> None:
    installed = world.material(dated_ca, days=(-5, 2))
    world.host.install(installed.full_chain, installed.key, installed.bundle)
    status, output = world.host.run()  # renews: nginx now runs with moto's certificate
    assert status == 0, output
    before = {path: path.read_text() for path in (world.host.certificate, world.host.key, world.host.bundle)}
    served = world.served()

    world.host.install(installed.full_chain, installed.key, installed.bundle)
    nginx = world.host.bin / "nginx"
    real = nginx.read_text()
    nginx.write_text(
        real.replace("exec ", 'if [ "$1" = -t ]; then echo "nginx: [emerg] refused" >&2; exit 1; fi\nexec ', 1)
    )
    status, output = world.host.run()
    assert status == AGENT_EXIT_SERVING_PREVIOUS, output
    assert "nginx -t rejected the new certificate: nginx: [emerg] refused" in output
    assert "the previous files are restored, nginx not reloaded" in output
    restored = {path: path.read_text() for path in (world.host.certificate, world.host.key, world.host.bundle)}
    assert restored == {world.host.certificate: installed.full_chain, world.host.key: installed.key,
                        world.host.bundle: installed.bundle}  # fmt: skip
    assert restored != before
    assert not [p.name for p in world.host.pki.rglob("*.previous")]
    assert not [p.name for p in world.host.pki.rglob(".*")]
    assert world.served() == served, "nginx was not reloaded: it still serves what it served"
