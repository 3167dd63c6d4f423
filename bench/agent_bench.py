"""Boot to serving with the per-host agent, locally: from no certificate to nginx serving a verified TLS handshake
with the host's new certificate, beside the issuance it waits for, side by side in one run against moto.

- floor: the real issuer handler answering one function URL event (payload format 2.0) for a CSR made beforehand,
  in this process, warm (what the agent's request costs at the least);
- boot to serving: one run of the real `scripts/cert-agent` on a host with nothing installed (key and CSR with the
  openssl CLI, IMDSv2 and the function URL stand-ins of components/local/agent.py, whose SigV4 check comes before the
  same handler, the host gate, the install, `nginx -t`, nginx started, trust-ca, the metric) until a client
  completes a TLS handshake verified against moto's CA for the host's EC2 name;
- a timer run with nothing due: the agent on a host that serves a valid certificate (IMDS, the gate, no request).
Runs are interleaved (floor, agent, timer run, ...). Each row checks that it measures what its label says: the
floor's certificate carries the CSR's key and names; each boot made exactly one request, answered 200, and serves
a certificate verified for the host's name that carries the key made on the host; each timer run made no request and
serves the same certificate.

Loopback only (no network namespace: no root needed); the agent runs under Python 3.9 when one is found (Amazon
Linux 2023's), else this interpreter.

    .venv/bin/python bench/agent_bench.py [--runs 5] [--key-algorithms EC_prime256v1 RSA_2048]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a file (`python bench/agent_bench.py`): make the repository importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from components.issuer.handler import Issuer, IssuerConfig
from components.local.agent import AgentHost, FunctionUrlStandIn, ImdsStandIn, Instance
from components.local.emulator import FAKE_AWS_ENVIRONMENT, REAL_AWS_VARIABLES, create_active_ca, moto_server
from components.local.issuer import (
    ACCOUNT,
    LambdaContext,
    create_fleet,
    csr_body,
    function_url_event,
    issuer_environment,
)
from components.local.issuer import instance_session_arn as session_arn
from components.local.process import free_port
from components.local.python import find_python
from components.local.tls import make_pki
from components.x509 import sha256_fingerprints

REGION = "us-east-1"
ROLE_NAME = "pca-backend-bench-hosts"
SERVICE_NAME = "api.internal.example"
KEY_ALGORITHMS = ("EC_prime256v1", "EC_secp384r1", "RSA_2048")


def _key(algorithm: str) -> Any:
    if algorithm.startswith("EC_"):
        return ec.generate_private_key(ec.SECP256R1() if algorithm == "EC_prime256v1" else ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm.removeprefix("RSA_")))


def _spki(public_key: Any) -> bytes:
    return bytes(public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def _names(certificate: x509.Certificate) -> set[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)) | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


class Bench:
    def __init__(self, endpoint: str, workdir: Path, python: str) -> None:
        self.workdir, self.python = workdir, python
        fleet = create_fleet(endpoint, size=1, region=REGION)
        self.ca_arn, ca_pem = create_active_ca(endpoint, common_name="Agent Bench CA")
        self.ca_file = workdir / "moto-ca.pem"
        self.ca_file.write_text(ca_pem)
        self.pins = sha256_fingerprints(ca_pem)
        ec2: Any = boto3.session.Session().client("ec2", region_name=REGION, endpoint_url=endpoint)
        described = ec2.describe_instances(InstanceIds=[fleet.instance_ids[0]])["Reservations"][0]["Instances"][0]
        self.instance = Instance(described["InstanceId"], described["PrivateIpAddress"], ROLE_NAME)
        self.dns_name = f"ip-{self.instance.ipv4.replace('.', '-')}.ec2.internal"
        self.issuer = Issuer(
            IssuerConfig.from_environment(
                issuer_environment(
                    ca_arn=self.ca_arn,
                    fleet=fleet,
                    host_role_arn=f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}",
                    service_names=[SERVICE_NAME],
                )
            )
        )
        self.tls = make_pki(workdir / "function-url-tls", dns_names=("lambda-url.bench",), ip_addresses=["127.0.0.1"])
        self.imds = ImdsStandIn(self.instance)
        self.function_url = FunctionUrlStandIn(
            self.issuer, region=REGION, instances={self.instance.access_key_id: self.instance}, tls=self.tls
        )
        self.expected_names = {self.dns_name, SERVICE_NAME, self.instance.ipv4}
        self.runs = 0
        #: Boots that made exactly one request, answered 200, and serve what they asked for.
        self.good_boots = 0

    def floor(self, key: Any, problems: list[str]) -> float:
        """The handler alone, for a CSR made beforehand: milliseconds."""
        request = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.dns_name)]))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(self.dns_name), x509.DNSName(SERVICE_NAME),
                     x509.IPAddress(ipaddress.ip_address(self.instance.ipv4))]
                ),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        event = function_url_event(
            csr_body(request.public_bytes(serialization.Encoding.PEM).decode()),
            user_arn=session_arn(ROLE_NAME, self.instance.instance_id),
        )
        started = time.perf_counter()
        answer = self.issuer.handle(event, LambdaContext())
        elapsed = (time.perf_counter() - started) * 1000
        body = json.loads(answer["body"])
        if answer["statusCode"] != 200:
            problems.append(f"floor answered {answer['statusCode']} {body}")
        else:
            certificate = x509.load_pem_x509_certificate(body["certificate"].encode())
            if _spki(certificate.public_key()) != _spki(key.public_key()) or _names(certificate) != self.expected_names:
                problems.append("a floor certificate does not carry the CSR's key and names")
        return elapsed

    def boot_and_timer_run(self, algorithm: str, imds_url: str, url: str, problems: list[str]) -> tuple[float, float]:
        """One fresh host: boot to serving, then a timer run with nothing due; milliseconds each."""
        self.runs += 1
        host = AgentHost(
            self.workdir / f"host-{self.runs}", python=self.python, region=REGION, issuer_url=url, imds_url=imds_url,
            issuer_ca=self.tls.ca_bundle, service_names=[SERVICE_NAME], pins=self.pins, key_algorithm=algorithm,
            port=free_port(),
        )  # fmt: skip
        try:
            before = len(self.function_url.requests)
            started = time.perf_counter()
            status, output = host.run()
            served = self._served(host, problems) if status == 0 else None
            boot = (time.perf_counter() - started) * 1000
            made = self.function_url.requests[before:]
            if status != 0 or served is None:
                problems.append(f"boot exited {status}: {output.strip().splitlines()[-1:]}")
            elif [request.status for request in made] != [200]:
                problems.append(f"boot made requests answered {[request.status for request in made]}, not one 200")
            elif (
                _spki(served.public_key())
                != _spki(serialization.load_pem_private_key(host.key.read_bytes(), None).public_key())
                or _names(served) != self.expected_names
            ):
                problems.append("the served certificate does not carry the host's key and exactly its names")
            else:
                self.good_boots += 1
            started = time.perf_counter()
            status, output = host.run()
            timer = (time.perf_counter() - started) * 1000
            if status != 0 or len(self.function_url.requests) != before + 1 or self._served(host, problems) != served:
                problems.append(
                    f"a timer run with nothing due exited {status} or made a request or changed what nginx serves"
                )
            return boot, timer
        finally:
            host.stop()

    def _served(self, host: AgentHost, problems: list[str]) -> x509.Certificate | None:
        """The certificate nginx serves, once a handshake verified for the host's EC2 name succeeds (2 s at most)."""
        deadline = time.monotonic() + 2
        while True:
            try:
                return x509.load_der_x509_certificate(host.served(self.dns_name, self.ca_file))
            except OSError as error:
                if time.monotonic() > deadline:
                    problems.append(f"no verified handshake: {error}")
                    return None
                time.sleep(0.005)

    def row(self, algorithm: str, runs: int) -> str:
        problems: list[str] = []
        floor, boot, timer = [], [], []
        good_before = self.good_boots
        with self.imds.running() as imds_url, self.function_url.running() as url:
            for _ in range(runs):
                floor.append(self.floor(_key(algorithm), problems))
                first, second = self.boot_and_timer_run(algorithm, imds_url, url, problems)
                boot.append(first)
                timer.append(second)
        median = statistics.median
        cells = [
            algorithm, f"{median(floor):.0f}", f"{median(boot):.0f}", f"{median(boot) / median(floor):.1f}x",
            f"{min(floor):.0f}", f"{min(boot):.0f}", f"{median(timer):.0f}", f"{median(timer) / median(floor):.1f}x",
            f"{self.good_boots - good_before} / {runs}", "ok" if not problems else "; ".join(dict.fromkeys(problems)),
        ]  # fmt: skip
        return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved floor / boot / timer-run triples per row")
    parser.add_argument("--key-algorithms", nargs="+", default=list(KEY_ALGORITHMS), choices=KEY_ALGORITHMS)
    args = parser.parse_args()

    logging.getLogger("pca_backend.issuer").addHandler(logging.NullHandler())
    for name in REAL_AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS_ENVIRONMENT)  # never a real account: moto only
    python = find_python(3, 9, override="HOST_PYTHON") or sys.executable  # Amazon Linux 2023's python3
    with moto_server() as endpoint, tempfile.TemporaryDirectory(prefix="agent-bench-") as scratch:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        bench = Bench(endpoint, Path(scratch), python)
        print(f"## Boot to serving with the host agent ({args.runs} interleaved runs each, moto, agent on {python})\n")
        print(
            "| host key | floor: handler median (ms) | boot to serving median (ms) | ratio of medians | floor min (ms) "
            "| boot to serving min (ms) | timer run, nothing due median (ms) | ratio to floor | boots with one request "
            "/ runs | check |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
        )
        rows = []
        for algorithm in args.key_algorithms:
            rows.append(bench.row(algorithm, args.runs))
            print(rows[-1], flush=True)
    failed = [row for row in rows if not row.endswith("| ok |")]
    if failed:
        # A row that does not measure what its label says is not a result.
        raise SystemExit(f"{len(failed)} row(s) failed their own check:\n" + "\n".join(failed))


if __name__ == "__main__":
    main()
