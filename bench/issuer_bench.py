"""What the per-host issuer costs on top of issuing itself, against local moto (server mode), side by side in one run.

1. Issuance, per CSR key: the floor is IssueCertificate then GetCertificate for the same CSR with one boto3 client
   built beforehand; the issuer is the real handler answering a function URL event (payload format 2.0) for the
   same CSR, from an `Issuer` built beforehand and warmed by one request (as a warm Lambda execution environment:
   the CA's description and the VPC's DHCP domain cached). Runs are interleaved in pairs (floor, issuer, issuer,
   floor, ...), each pair with a fresh CSR made beforehand. Medians and minimums, their ratios, and the time the
   issuer spends reading and verifying the CSR in pure Python, measured on its own. Each run's AWS calls are
   counted on the clients (floor: IssueCertificate + GetCertificate; issuer: DescribeInstances + the same two), and
   every certificate must carry the CSR's key and exactly its names.
2. A cold start: a new `Issuer` (boto3 clients built) and its first request (it also describes the CA and the VPC's
   DHCP options), against the same floor.
3. What a refusal costs: a caller that is not the host role (nothing reaches AWS) and a host asking for another
   host's name (DescribeInstances only), each checked for its rule and its calls.

moto answers in tens of milliseconds; AWS takes longer to issue, so against AWS the ratios are closer to 1.

    .venv/bin/python bench/issuer_bench.py [--runs 15] [--kinds ec-p256 ec-p384 rsa-2048 rsa-4096]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

# Run as a file (`python bench/issuer_bench.py`): make the repository importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3
from botocore.exceptions import ClientError
from cryptography import x509 as crypto_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from components.issuer import csr
from components.issuer.handler import Issuer, IssuerConfig
from components.local.emulator import (
    FAKE_AWS_ENVIRONMENT,
    REAL_AWS_VARIABLES,
    RecordingProxy,
    create_active_ca,
    moto_server,
)
from components.local.issuer import (
    ACCOUNT,
    TEMPLATE_ARN,
    CountingSession,
    LambdaContext,
    create_fleet,
    csr_body,
    function_url_event,
    instance_session_arn,
    issuer_environment,
)

ROLE = "bench-host-role"
KINDS = ("ec-p256", "ec-p384", "rsa-2048", "rsa-4096")
FLOOR_CALLS = {"IssueCertificate": 1, "GetCertificate": 1}
WARM_CALLS = {"DescribeInstances": 1, "IssueCertificate": 1, "GetCertificate": 1}
COLD_CALLS = {**WARM_CALLS, "DescribeCertificateAuthority": 1, "DescribeVpcs": 1, "DescribeDhcpOptions": 1}


def _key(kind: str) -> Any:
    if kind.startswith("ec-"):
        return ec.generate_private_key(ec.SECP256R1() if kind == "ec-p256" else ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa-")))


def _csr(key: Any, dns_name: str, address: str) -> str:
    builder = crypto_x509.CertificateSigningRequestBuilder().subject_name(
        crypto_x509.Name([crypto_x509.NameAttribute(NameOID.COMMON_NAME, dns_name)])
    )
    names = [crypto_x509.DNSName(dns_name), crypto_x509.IPAddress(ipaddress.ip_address(address))]
    builder = builder.add_extension(crypto_x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _public_der(thing: Any) -> bytes:
    return bytes(
        thing.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _carries(certificate_pem: str, key: Any, dns_name: str, address: str) -> bool:
    """The certificate is for `key` and names exactly `dns_name` and `address`."""
    leaf = crypto_x509.load_pem_x509_certificate(certificate_pem.encode())
    san = leaf.extensions.get_extension_for_class(crypto_x509.SubjectAlternativeName).value
    names = (
        san.get_values_for_type(crypto_x509.DNSName),
        [str(ip) for ip in san.get_values_for_type(crypto_x509.IPAddress)],
    )
    return _public_der(leaf) == _public_der(key) and names == ([dns_name], [address])


class Bench:
    def __init__(self, endpoint: str, runs: int) -> None:
        self.runs = runs
        self.fleet = create_fleet(endpoint, size=2, dhcp_domain="corp.example.com")
        self.ca_arn, _ = create_active_ca(endpoint, usage_mode="SHORT_LIVED_CERTIFICATE", common_name="Bench CA")
        ec2: Any = boto3.session.Session().client("ec2", region_name="us-east-1", endpoint_url=endpoint)
        described = ec2.describe_instances(InstanceIds=list(self.fleet.instance_ids))["Reservations"]
        instances = {i["InstanceId"]: i for reservation in described for i in reservation["Instances"]}
        self.instance, self.neighbour = self.fleet.instance_ids
        self.dns_name = instances[self.instance]["PrivateDnsName"]
        self.address = instances[self.instance]["PrivateIpAddress"]
        self.neighbour_name = instances[self.neighbour]["PrivateDnsName"]
        self.floor_session = CountingSession()
        self.floor_client: Any = self.floor_session.client("acm-pca", region_name="us-east-1")
        self.config = IssuerConfig.from_environment(
            issuer_environment(
                ca_arn=self.ca_arn, fleet=self.fleet, host_role_arn=f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
            )
        )

    # -- the two sides ----------------------------------------------------------------------------------------

    def floor(self, csr_pem: str) -> str:
        arn = self.floor_client.issue_certificate(
            CertificateAuthorityArn=self.ca_arn,
            Csr=csr_pem.encode(),
            SigningAlgorithm="SHA256WITHRSA",
            TemplateArn=TEMPLATE_ARN,
            Validity={"Type": "DAYS", "Value": 7},
        )["CertificateArn"]
        while True:
            try:
                return str(
                    self.floor_client.get_certificate(CertificateAuthorityArn=self.ca_arn, CertificateArn=arn)[
                        "Certificate"
                    ]
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "RequestInProgressException":
                    raise
                time.sleep(0.05)

    def ask(self, issuer: Issuer, csr_pem: str, user_arn: str | None = None) -> dict[str, Any]:
        event = function_url_event(csr_body(csr_pem), user_arn=user_arn or instance_session_arn(ROLE, self.instance))
        answer = issuer.handle(event, LambdaContext())
        return {"status": answer["statusCode"], **json.loads(answer["body"])}

    def warm_issuer(self) -> tuple[Issuer, CountingSession]:
        session = CountingSession()
        issuer = Issuer(self.config, session)
        warm_up = self.ask(issuer, _csr(_key("ec-p256"), self.dns_name, self.address))
        if warm_up["status"] != 200:
            raise SystemExit(f"the issuer refused the warm-up request: {warm_up}")
        session.take()
        return issuer, session

    # -- table 1 ------------------------------------------------------------------------------------------------

    def issuance_row(self, kind: str) -> str:
        issuer, session = self.warm_issuer()
        key = _key(kind)
        timings: dict[str, list[float]] = {"floor": [], "issuer": [], "verify": []}
        problems: list[str] = []
        carried = 0
        for run in range(self.runs):
            csr_pem = _csr(key, self.dns_name, self.address)
            start = time.perf_counter()
            csr.read_pem(csr_pem)
            timings["verify"].append((time.perf_counter() - start) * 1000)
            sides: dict[str, Callable[[], str]] = {
                "floor": partial(self.floor, csr_pem),
                "issuer": partial(self._issued, issuer, csr_pem, problems),
            }
            for side in ("floor", "issuer") if run % 2 == 0 else ("issuer", "floor"):
                counter = self.floor_session if side == "floor" else session
                counter.take()
                start = time.perf_counter()
                pem = sides[side]()
                timings[side].append((time.perf_counter() - start) * 1000)
                calls = counter.take()
                if calls != (FLOOR_CALLS if side == "floor" else WARM_CALLS):
                    problems.append(f"{side} made {calls}")
                carried += bool(pem) and _carries(pem, key, self.dns_name, self.address)
        if carried != 2 * self.runs:
            problems.append(f"{2 * self.runs - carried} certificates without the CSR's key and names")
        return self._row(kind, timings, "3 / 2", problems)

    def _issued(self, issuer: Issuer, csr_pem: str, problems: list[str]) -> str:
        answer = self.ask(issuer, csr_pem)
        if answer["status"] != 200:
            problems.append(f"issuer answered {answer}")
            return ""
        return str(answer["certificate"])

    # -- table 2 ------------------------------------------------------------------------------------------------

    def cold_row(self) -> str:
        key = _key("ec-p256")
        timings: dict[str, list[float]] = {"floor": [], "issuer": [], "verify": []}
        problems: list[str] = []
        for run in range(self.runs):
            csr_pem = _csr(key, self.dns_name, self.address)
            for side in ("floor", "issuer") if run % 2 == 0 else ("issuer", "floor"):
                start = time.perf_counter()
                if side == "floor":
                    self.floor_session.take()
                    pem = self.floor(csr_pem)
                    calls = self.floor_session.take()
                else:
                    session = CountingSession()
                    pem = self._issued(Issuer(self.config, session), csr_pem, problems)
                    calls = session.take()
                timings[side].append((time.perf_counter() - start) * 1000)
                if calls != (FLOOR_CALLS if side == "floor" else COLD_CALLS):
                    problems.append(f"{side} made {calls}")
                if not pem or not _carries(pem, key, self.dns_name, self.address):
                    problems.append(f"{side}: a certificate without the CSR's key and names")
        return self._row("ec-p256, new Issuer each run", timings, "6 / 2", problems)

    def _row(self, label: str, timings: dict[str, list[float]], calls: str, problems: list[str]) -> str:
        floor, issuer = timings["floor"], timings["issuer"]
        verify = f"{statistics.median(timings['verify']):.1f}" if timings["verify"] else "(in the issuer)"
        return (
            f"| {label} | {statistics.median(floor):.1f} | {statistics.median(issuer):.1f} "
            f"| {statistics.median(issuer) / statistics.median(floor):.2f}x | {min(floor):.1f} | {min(issuer):.1f} "
            f"| {min(issuer) / min(floor):.2f}x | {verify} | {calls} | {'; '.join(dict.fromkeys(problems)) or 'ok'} |"
        )

    # -- table 3 ------------------------------------------------------------------------------------------------

    def refusal_rows(self) -> list[str]:
        issuer, session = self.warm_issuer()
        key = _key("ec-p256")
        cases = [
            ("a role that is not the host role", _csr(key, self.dns_name, self.address),
             f"arn:aws:sts::{ACCOUNT}:assumed-role/other-role/{self.instance}", "caller-not-host-role", {}),
            ("another host's name", _csr(key, self.neighbour_name, self.address), None, "name-not-allowed",
             {"DescribeInstances": 1}),
        ]  # fmt: skip
        rows = []
        for label, csr_pem, user_arn, rule, expected_calls in cases:
            timings = []
            problems = []
            for _ in range(self.runs):
                session.take()
                start = time.perf_counter()
                answer = self.ask(issuer, csr_pem, user_arn)
                timings.append((time.perf_counter() - start) * 1000)
                if (answer["status"], answer.get("rule")) != (403, rule):
                    problems.append(f"answered {answer}")
                if session.take() != expected_calls:
                    problems.append("unexpected AWS calls")
            calls = ", ".join(f"{name} {count}" for name, count in expected_calls.items()) or "none"
            rows.append(
                f"| {label} | 403 {rule} | {statistics.median(timings):.1f} | {min(timings):.1f} | {calls} "
                f"| {'; '.join(dict.fromkeys(problems)) or 'ok'} |"
            )
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="interleaved floor/issuer pairs per row")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="CSR key kinds")
    args = parser.parse_args()

    # The issuer logs one line per decision; the tables are the output here.
    logging.getLogger("pca_backend.issuer").addHandler(logging.NullHandler())
    for name in REAL_AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS_ENVIRONMENT)  # never a real account: moto only

    with moto_server() as endpoint, RecordingProxy(endpoint) as proxy:
        # Both sides reach moto through the same proxy (it honours the CA's usage mode, which the issuer reads).
        os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint_url
        bench = Bench(proxy.endpoint_url, args.runs)
        header = (
            "| {what} | floor median (ms) | issuer median (ms) | ratio of medians | floor min (ms) | issuer min (ms) "
            "| ratio of mins | CSR read + verify median (ms) | AWS calls issuer / floor | check |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
        )
        print(f"## Issuance: the warm issuer against the floor ({args.runs} interleaved pairs each, moto)\n")
        print(header.format(what="CSR key"))
        checked = []
        for kind in args.kinds:
            checked.append(bench.issuance_row(kind))
            print(checked[-1], flush=True)
        print(f"\n## A cold start: a new Issuer and its first request ({args.runs} pairs)\n")
        print(header.format(what="case"))
        checked.append(bench.cold_row())
        print(checked[-1], flush=True)
        print(f"\n## What a refusal costs ({args.runs} requests each, warm issuer)\n")
        print("| request | answer | median (ms) | min (ms) | AWS calls | check |")
        print("|---|---|---:|---:|---|---|")
        for row in bench.refusal_rows():
            checked.append(row)
            print(row)
    failed = [row for row in checked if not row.endswith("| ok |")]
    if failed:
        # A row that does not measure what its label says is not a result.
        raise SystemExit(f"{len(failed)} row(s) failed their own check:\n" + "\n".join(failed))


if __name__ == "__main__":
    main()
