"""The per-host certificate agent on this machine, for tests and benches: stand-ins for what it talks to in AWS, a
host directory with the commands it calls, and runs of the real `scripts/cert-agent`.

- `ImdsStandIn`: IMDSv2 (a session token first) answering the instance's private IPv4 and its instance profile's
  role credentials.
- `FunctionUrlStandIn`: what Lambda does in front of a function URL with AWS_IAM auth, then the real handler. It
  checks the request's Signature Version 4 with botocore's own signer, recomputed from the credentials the IMDS
  stand-in handed out, for service `lambda` and the region; refuses (403) a request that does not verify; builds the
  payload-format-2.0 event whose `requestContext.authorizer.iam` names the instance-profile session of the instance
  holding those credentials; and answers what `components/issuer/handler.py` answers, run against the emulator.
- `AgentHost`: a host's files under one directory (certificate, key, bundle, pins, nginx configuration, the agent's
  configuration) and stand-ins for systemctl (drives a real nginx), nginx, aws (records the metric) and dnf; the
  host gate and trust-ca are the repository's scripts, trust-ca on a scratch root.

Servers listen on the address given, inside a network namespace when one is named (tests make them), else on this
machine. Nothing here runs in AWS.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import hmac
import json
import re
import secrets
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from components.host_agent import render_agent_config
from components.host_bootstrap import render_pins
from components.issuer.handler import Issuer
from components.local.issuer import ACCOUNT, LambdaContext, function_url_event, instance_session_arn
from components.local.nginx import systemctl_shim, write_standalone_conf
from components.local.process import require_binary
from components.local.tls import Pki
from components.nginx_config import render_server_block

__all__ = [
    "AGENT_SCRIPT",
    "AgentHost",
    "FunctionUrlStandIn",
    "ImdsStandIn",
    "Instance",
    "SignatureRefused",
    "in_namespace",
    "tls_peer_certificate",
    "verify_sigv4",
]

REPO = Path(__file__).resolve().parent.parent.parent
AGENT_SCRIPT = REPO / "scripts" / "cert-agent"
GATE_SCRIPT = REPO / "scripts" / "tls-gate"
TRUST_CA_SCRIPT = REPO / "scripts" / "trust-ca"
#: How far a request's X-Amz-Date may be from now: AWS refuses older signatures.
SIGNATURE_WINDOW = datetime.timedelta(minutes=5)

_T = TypeVar("_T")
_CLONE_NEWNET = 0x40000000


def in_namespace(namespace: str | None, action: Callable[[], _T]) -> _T:
    """`action()` run with the network namespace `namespace` (made by `ip netns add`): sockets it creates live
    there and stay there. Only the helper thread switches (setns(2) acts on the calling thread), so the rest of
    this process (the handler's calls to the emulator on 127.0.0.1) stays on this machine's network."""
    if namespace is None:
        return action()
    outcome: dict[str, Any] = {}

    def switched() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        with open(f"/var/run/netns/{namespace}", "rb") as target, open("/proc/thread-self/ns/net", "rb") as home:
            if libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
                outcome["error"] = OSError(ctypes.get_errno(), f"setns into {namespace} failed")
                return
            try:
                outcome["value"] = action()
            except BaseException as error:  # handed to the caller's thread
                outcome["error"] = error
            finally:
                libc.setns(home.fileno(), _CLONE_NEWNET)

    thread = threading.Thread(target=switched)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _listening_socket(address: str, port: int, namespace: str | None) -> socket.socket:
    def make() -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(64)
        return listener

    return in_namespace(namespace, make)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@contextmanager
def _serving(
    handler: type[BaseHTTPRequestHandler],
    address: str,
    namespace: str | None,
    tls: ssl.SSLContext | None = None,
    port: int = 0,
) -> Iterator[_Server]:
    server = _Server((address, port), handler, bind_and_activate=False)
    server.socket.close()
    listener = _listening_socket(address, port, namespace)
    server.socket = tls.wrap_socket(listener, server_side=True) if tls else listener
    server.server_address = server.socket.getsockname()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def tls_peer_certificate(
    address: str, port: int, *, server_hostname: str, cafile: Path, namespace: str | None = None
) -> bytes:
    """DER of the certificate `address:port` serves, after a verified TLS handshake (the chain to `cafile`, the
    name `server_hostname`: a DNS name, or an IP address matched against the certificate's IP entries)."""
    context = ssl.create_default_context(cafile=str(cafile))

    def connect() -> socket.socket:
        return socket.create_connection((address, port), timeout=10)

    with in_namespace(namespace, connect) as raw, context.wrap_socket(raw, server_hostname=server_hostname) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


# --- IMDSv2 --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One instance as AWS knows it, and the instance profile credentials IMDS hands it."""

    instance_id: str
    ipv4: str
    role_name: str
    access_key_id: str = field(default_factory=lambda: "ASIA" + secrets.token_hex(8).upper())
    secret_access_key: str = field(default_factory=lambda: secrets.token_urlsafe(30), repr=False)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(60), repr=False)


class ImdsStandIn:
    """IMDSv2 for one instance: PUT /latest/api/token, then reads with that token."""

    def __init__(self, instance: Instance, *, address: str = "127.0.0.1", namespace: str | None = None) -> None:
        self.instance = instance
        self.address, self.namespace = address, namespace
        self.paths: list[str] = []
        self._token = secrets.token_urlsafe(24)
        self._server: Any = None

    def answers(self) -> dict[str, str]:
        instance = self.instance
        credentials = {
            "Code": "Success",
            "LastUpdated": "2026-12-07T10:00:00Z",
            "Type": "AWS-HMAC",
            "AccessKeyId": instance.access_key_id,
            "SecretAccessKey": instance.secret_access_key,
            "Token": instance.token,
            "Expiration": "2026-12-07T16:00:00Z",
        }
        return {
            "/latest/meta-data/local-ipv4": instance.ipv4,
            "/latest/meta-data/instance-id": instance.instance_id,
            "/latest/meta-data/iam/security-credentials/": instance.role_name,
            f"/latest/meta-data/iam/security-credentials/{instance.role_name}": json.dumps(credentials),
        }

    @contextmanager
    def running(self) -> Iterator[str]:
        """The stand-in's base URL while it serves."""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                outer.paths.append(f"PUT {self.path}")
                ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                self._answer(200 if ok else 400, outer._token if ok else "")

            def do_GET(self) -> None:
                outer.paths.append(f"GET {self.path}")
                answers = outer.answers()
                if self.headers.get("X-aws-ec2-metadata-token") != outer._token:
                    self._answer(401, "")  # IMDSv2 only: no token, no answer
                else:
                    self._answer(200 if self.path in answers else 404, answers.get(self.path, ""))

            def _answer(self, status: int, body: str) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body.encode())))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: object) -> None:
                pass

        with _serving(Handler, self.address, self.namespace) as server:
            yield f"http://{self.address}:{server.server_address[1]}"


# --- the function URL ----------------------------------------------------------------------------------------------


class SignatureRefused(Exception):
    """The request's SigV4 signature does not hold; Lambda answers 403 before the function runs."""


_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)"
    r"/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?Signature=(?P<signature>[0-9a-f]{64})"
)


def verify_sigv4(
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    instances: Mapping[str, Instance],
    region: str,
    service: str = "lambda",
    now: datetime.datetime | None = None,
) -> Instance:
    """The instance whose credentials signed the request, or SignatureRefused saying why. `headers` by lower-case
    name; the signature is recomputed with botocore's SigV4Auth from the signed headers and the body received."""
    match = _AUTHORIZATION.fullmatch(headers.get("authorization", ""))
    if match is None:
        raise SignatureRefused("no SigV4 Authorization header")
    if match["service"] != service or match["region"] != region:
        raise SignatureRefused(f"signed for {match['service']} in {match['region']}, not {service} in {region}")
    instance = instances.get(match["key"])
    if instance is None:
        raise SignatureRefused(f"unknown access key {match['key']}")
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        raise SignatureRefused(f"X-Amz-Date {amz_date!r} is not a SigV4 time stamp") from None
    if (
        abs((now or datetime.datetime.now(datetime.UTC)) - signed_at) > SIGNATURE_WINDOW
        or match["date"] != amz_date[:8]
    ):
        raise SignatureRefused(f"the signature's time {amz_date} is outside the {SIGNATURE_WINDOW} window")
    signed = match["signed"].split(";")
    for required in ("host", "x-amz-date", "x-amz-security-token"):
        if required not in signed:
            raise SignatureRefused(f"{required} is not signed")
    if headers.get("x-amz-security-token") != instance.token:
        raise SignatureRefused("the session token is not the one issued with this access key")
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(body).hexdigest():
        raise SignatureRefused("the body does not hash to the signed X-Amz-Content-SHA256")
    if any(name not in headers for name in signed):
        raise SignatureRefused("a signed header is missing")
    request = AWSRequest(
        method=method, url=f"https://{headers['host']}{path}", data=body, headers={n: headers[n] for n in signed}
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(instance.access_key_id, instance.secret_access_key, instance.token), service, region)
    if signer.signed_headers(signer.headers_to_sign(request)) != match["signed"]:
        raise SignatureRefused("SignedHeaders does not list the signed headers in order")
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise SignatureRefused("the signature does not match the request")
    return instance


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the stand-in received it, and its answer."""

    headers: dict[str, str]
    body: bytes
    status: int
    answer: dict[str, Any]
    caller: str | None
    """The IAM identity the event named (`requestContext.authorizer.iam.userArn`); None when refused before."""


class FunctionUrlStandIn:
    """The issuer's function URL (AWS_IAM auth) over HTTPS, in front of the real handler.

    `unavailable(times)` answers the next requests 503 as the issuer does when AWS is throttling it; `throttled`
    answers 429 as Lambda does when the reserved concurrency is used up.
    """

    def __init__(
        self,
        issuer: Issuer,
        *,
        region: str,
        instances: Mapping[str, Instance],
        tls: Pki,
        address: str = "127.0.0.1",
        namespace: str | None = None,
        account: str = ACCOUNT,
    ) -> None:
        self.issuer, self.region, self.instances, self.tls = issuer, region, dict(instances), tls
        self.address, self.namespace, self.account = address, namespace, account
        self.requests: list[ReceivedRequest] = []
        self._faults: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()

    def unavailable(self, times: int = 1) -> None:
        body = {"error": "IssueCertificate failed (ThrottlingException); retry later", "rule": "aws-unavailable"}
        self._faults += [(503, body)] * times

    def throttled(self, times: int = 1) -> None:
        self._faults += [(429, {"Message": "Rate Exceeded."})] * times

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> ReceivedRequest:
        try:
            instance = verify_sigv4(
                method=method, path=path, headers=headers, body=body, instances=self.instances, region=self.region
            )
        except SignatureRefused as refused:
            return ReceivedRequest(headers, body, 403, {"Message": f"Forbidden: {refused}"}, None)
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            return ReceivedRequest(headers, body, fault[0], fault[1], None)
        caller = instance_session_arn(instance.role_name, instance.instance_id, self.account)
        event = function_url_event(
            body,
            user_arn=caller,
            account=self.account,
            method=method,
            path=path,
            content_type=headers.get("content-type", ""),
        )
        answer = self.issuer.handle(event, LambdaContext())
        return ReceivedRequest(headers, body, int(answer["statusCode"]), json.loads(answer["body"]), caller)

    @contextmanager
    def running(self, port: int = 0) -> Iterator[str]:
        """The function URL (`https://<address>:<port>/`) while it serves; `port` 0: any free port."""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                received = outer._answer("POST", self.path, headers, body)
                outer.requests.append(received)
                raw = json.dumps(received.answer).encode()
                self.send_response(received.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: object) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.fullchain, self.tls.leaf_key)
        with _serving(Handler, self.address, self.namespace, context, port) as server:
            yield f"https://{self.address}:{server.server_address[1]}/"


# --- the host ------------------------------------------------------------------------------------------------------

_AWS_SHIM = '''#!{python}
"""aws stand-in: cloudwatch put-metric-data recorded in $FAKE/aws-calls.jsonl; anything else refused."""
import json, os, sys
with open(os.path.join(os.environ["FAKE"], "aws-calls.jsonl"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] != ["cloudwatch", "put-metric-data"]:
    sys.exit("unexpected aws call: %s" % sys.argv[1:])
'''


class AgentHost:
    """One per-host-mode host under `directory`: its files, the agent's configuration and a real nginx.

    `python` runs the agent, the gate and trust-ca (the hosts' 3.9 in tests). nginx listens on
    `listen_address:port`; with `namespace`, the agent (hence nginx, which it starts) runs inside it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        python: str,
        region: str,
        issuer_url: str,
        imds_url: str,
        issuer_ca: Path,
        service_names: list[str],
        pins: list[str],
        key_algorithm: str = "EC_prime256v1",
        metric_backend: str = "pca-backend-agent-test",
        listen_address: str = "127.0.0.1",
        port: int = 443,
        namespace: str | None = None,
    ) -> None:
        self.directory, self.python, self.namespace, self.issuer_ca = directory, python, namespace, issuer_ca
        self.listen_address, self.port = listen_address, port
        self.fake = directory / "fake"
        self.pki = directory / "pki"
        self.nginx_dir = directory / "nginx"
        self.trust_root = directory / "trust-root"
        self.bin = self.fake / "bin"
        for folder in (self.bin, self.trust_root, self.pki):
            folder.mkdir(parents=True, exist_ok=True)
        self.certificate = self.pki / "server.crt"
        self.key = self.pki / "private" / "server.key"
        self.bundle = self.pki / "ca-bundle.pem"
        self.pins = self.fake / "ca-pins"
        self.pins.write_text(render_pins(pins))
        self.config_path = self.fake / "agent.json"
        self.config: dict[str, Any] = json.loads(
            render_agent_config(
                region=region,
                issuer_url=issuer_url,
                service_names=service_names,
                metric_backend=metric_backend,
                key_algorithm=key_algorithm,
            )
        )
        self.config.update(
            certificate_path=str(self.certificate),
            private_key_path=str(self.key),
            bundle_path=str(self.bundle),
            gate_path=str(self.bin / "pca-backend-tls-gate"),
            trust_ca_path=str(self.bin / "trust-ca"),
            pins_path=str(self.pins),
            imds_url=imds_url,
            issuer_attempts=3,
            retry_seconds=0.05,
        )
        self.write_config()
        conf = write_standalone_conf(
            self.nginx_dir,
            render_server_block(
                server_names=[*service_names, f"*.{self.config['ec2_dns_domain']}"],
                certificate_path=str(self.certificate),
                private_key_path=str(self.key),
                port=port,
                listen_address=listen_address,
            ),
        )
        nginx = require_binary("nginx")
        nginx_args = f'-p "{self.nginx_dir}" -c "{conf}"'
        shims = {
            "aws": _AWS_SHIM.format(python=python),
            "nginx": f'#!/bin/bash\nexec {nginx} {nginx_args} "$@"\n',
            "systemctl": systemctl_shim(nginx, nginx_args, self.nginx_dir / "nginx.pid"),
            "dnf": '#!/bin/bash\necho "dnf $*" >>"$FAKE/calls"\nexit 1\n',
            "trust-ca": f'#!/bin/bash\nexec {python} {TRUST_CA_SCRIPT} --root {self.trust_root} --no-update "$@"\n',
            "pca-backend-tls-gate": f'#!/bin/bash\nexec {python} {GATE_SCRIPT} "$@"\n',
        }
        for name, text in shims.items():
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)

    def write_config(self, **changes: Any) -> None:
        self.config.update(changes)
        self.config_path.write_text(json.dumps(self.config, indent=2) + "\n")

    def install(self, full_chain: str, key: str, bundle: str) -> None:
        """Put a set in place as an earlier run would have (a certificate with chosen dates, say)."""
        self.key.parent.mkdir(mode=0o700, exist_ok=True)
        self.certificate.write_text(full_chain)
        self.key.write_text(key)
        self.key.chmod(0o600)
        self.bundle.write_text(bundle)

    def run(self, timeout: float = 300) -> tuple[int, str]:
        """One run of the agent: (exit status, its output: stdout and stderr interleaved)."""
        (self.fake / "aws-calls.jsonl").write_text("")
        prefix = [require_binary("ip"), "netns", "exec", self.namespace] if self.namespace else []
        environment = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "FAKE": str(self.fake),
            # The function URL stand-in's CA, as AWS's public CAs are in a host's default trust store.
            "SSL_CERT_FILE": str(self.issuer_ca),
        }
        result = subprocess.run(
            [*prefix, self.python, str(AGENT_SCRIPT), "--config", str(self.config_path)],
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        return result.returncode, result.stdout

    def metrics(self) -> list[dict[str, Any]]:
        calls = [json.loads(line) for line in (self.fake / "aws-calls.jsonl").read_text().splitlines()]
        return [json.loads(call[call.index("--metric-data") + 1])[0] for call in calls]

    def calls(self) -> list[str]:
        path = self.fake / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def served(self, server_hostname: str, cafile: Path, client_namespace: str | None = None) -> bytes:
        """DER of the certificate nginx serves, after a handshake verified for `server_hostname` against `cafile`."""
        return tls_peer_certificate(
            self.listen_address, self.port, server_hostname=server_hostname, cafile=cafile, namespace=client_namespace
        )

    def stop(self) -> None:
        pid_file = self.nginx_dir / "nginx.pid"
        if pid_file.exists():
            subprocess.run(
                [require_binary("nginx"), "-p", str(self.nginx_dir), "-c", str(self.nginx_dir / "nginx.conf"), "-s",
                 "stop"], capture_output=True, check=False, timeout=30,
            )  # fmt: skip
