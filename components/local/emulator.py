"""A local AWS for tests and benches: moto's server in a subprocess, a recording/fault-injecting proxy, CA set-up.

moto accepts but ignores much of what the provider sends (template, signing algorithm, validity, idempotency
token), so tests assert on the *request* as `RecordingProxy` saw it rather than on moto's answer. The proxy
also answers chosen calls with throttling, in-progress or 5xx errors, which moto never produces, can enforce a
per-operation request quota the way AWS does (`ThrottlingException` above it), and can fail the connection
itself: reset it before the request reaches moto, drop the reply after moto processed it, or hold the reply
past the client's read timeout.

moto quirks are corrected here, in the test layer, never in product code:

- moto reports every CA as `SHORT_LIVED_CERTIFICATE` whatever `UsageMode` asked, so the proxy rewrites
  `DescribeCertificateAuthority` answers with the `UsageMode` of the `CreateCertificateAuthority` request that
  went through it;
- moto issues a new certificate for every IssueCertificate, idempotency token or not. AWS answers a token it
  processed in the last five minutes with that first certificate (ACM PCA API reference, IssueCertificate,
  IdempotencyToken), so the proxy does too (`token_window`, shortened by tests): a retry after a dropped reply
  gets the certificate the first attempt issued, and a retry after the window gets a new one, as on AWS.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import urlsplit

import boto3

from components.local.ca import create_root_ca
from components.local.process import free_port

#: What `moto_endpoint` puts in the environment: fake credentials, and no developer profile or config.
FAKE_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
#: Variables that would point boto3 at a real account or another endpoint: removed for the session.
REAL_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ACM_PCA",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


_CREDENTIAL = re.compile(r"Credential=([^/\s]+)/")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310 - a 127.0.0.1 URL we built
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


@contextmanager
def moto_server(*, startup_timeout: float = 30.0, log: IO[bytes] | None = None) -> Iterator[str]:
    """Run `python -m moto.server` on a free 127.0.0.1 port; yield its URL; terminate it afterwards.

    The caller is responsible for the fake credentials (see `FAKE_AWS_ENVIRONMENT`); the server itself
    gets them too, so it never looks at a real profile.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if key not in REAL_AWS_VARIABLES}
    env.update(FAKE_AWS_ENVIRONMENT)
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + startup_timeout
        while not _answers(url):
            if process.poll() is not None:
                raise RuntimeError(f"moto server exited with status {process.returncode} before answering")
            if time.monotonic() > deadline:
                raise TimeoutError(f"moto server did not answer on {url} within {startup_timeout} s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pca_client(endpoint: str, region: str = "us-east-1") -> Any:
    return boto3.session.Session().client("acm-pca", region_name=region, endpoint_url=endpoint)


def create_active_ca(
    endpoint: str,
    *,
    key_algorithm: str = "RSA_2048",
    usage_mode: str = "GENERAL_PURPOSE",
    common_name: str = "Test Root CA",
    region: str = "us-east-1",
) -> tuple[str, str]:
    """An ACTIVE root CA made by the product's own `create_root_ca`: `(ca_arn, ca_cert_pem)`.

    moto ignores `key_algorithm` for the key itself (always RSA-2048) but echoes it in
    DescribeCertificateAuthority, which is what the provider reads. `usage_mode` only shows when `endpoint`
    is a `RecordingProxy` (see the module docstring).
    """
    return create_root_ca(
        endpoint, region=region, common_name=common_name, key_algorithm=key_algorithm, usage_mode=usage_mode
    )


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the proxy received it, and how it was answered."""

    target: str
    """The `X-Amz-Target` header, e.g. `ACMPrivateCA.IssueCertificate` ("" if absent)."""
    body: dict[str, Any]
    """The JSON body (`{}` when empty or not JSON)."""
    status: int
    """HTTP status returned to the client."""
    injected: bool
    """True when the proxy answered with an injected fault (or a quota refusal) instead of forwarding to moto."""
    access_key_id: str = ""
    """The access key the request was signed with (from its `Authorization` header)."""
    at: float = 0.0
    """`time.monotonic()` when the proxy answered."""
    reply: dict[str, Any] = field(default_factory=dict)
    """moto's JSON answer when the request reached it (`{}` otherwise, or when it was not JSON)."""
    fault: str = ""
    """How the connection failed, if it did: "reset" (before moto saw the request), "dropped" (after moto
    processed it, no reply sent) or "delayed" (the reply held back `delay` seconds); "replayed" for an
    IssueCertificate answered from the idempotency-token record instead of moto."""


@dataclass
class _Fault:
    target: str
    status: int
    body: bytes
    remaining: int | None  # None: every matching call, until cleared
    action: str = "answer"  # or "reset", "drop", "delay"
    delay: float = 0.0


@dataclass
class _TokenUse:
    """An IssueCertificate idempotency token as AWS keeps it: when it was first processed, and its answer."""

    started: float
    done: threading.Event = field(default_factory=threading.Event)
    answer: bytes | None = None
    """The first request's answer; None while it is processed, or when it issued nothing."""


_THROTTLED = _Fault("", 400, json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode(), None)
#: The X-Amz-Target of the ACM PCA operations that tests, benches and the proxy's faults single out.
ISSUE = "ACMPrivateCA.IssueCertificate"
GET = "ACMPrivateCA.GetCertificate"
REVOKE = "ACMPrivateCA.RevokeCertificate"
DESCRIBE = "ACMPrivateCA.DescribeCertificateAuthority"


def _short(target: str) -> str:
    """`IssueCertificate` -> `ACMPrivateCA.IssueCertificate`; a full target stays as it is."""
    return target if "." in target else f"ACMPrivateCA.{target}"


@dataclass
class _Quota:
    """A token bucket: `per_second` requests a second, bursts up to `burst`, as AWS enforces its quotas."""

    per_second: float
    burst: float
    tokens: float
    refilled_at: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.refilled_at) * self.per_second)
        self.refilled_at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many concurrent clients: the default backlog (5) refuses connections


@dataclass
class RecordingProxy:
    """A threaded HTTP proxy on 127.0.0.1 in front of moto: records requests, injects faults.

    Use as a context manager (or `start()` / `stop()`); point clients at `endpoint_url`.
    """

    upstream: str
    honour_usage_mode: bool = True
    honour_idempotency: bool = True
    token_window: float = 300.0
    """Seconds an IssueCertificate idempotency token is matched, from the request that first issued with it."""
    requests: list[RecordedRequest] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _quotas: dict[str, _Quota] = field(default_factory=dict)
    _usage_modes: dict[str, str] = field(default_factory=dict)
    _tokens: dict[tuple[str, str], _TokenUse] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None, "the proxy is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RecordingProxy:
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="recording-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RecordingProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- what was sent -------------------------------------------------------------------------------

    def calls(self, target: str) -> list[RecordedRequest]:
        """Requests for one target, e.g. `calls("ACMPrivateCA.IssueCertificate")`, in order."""
        short = target if "." in target else f"ACMPrivateCA.{target}"
        with self._lock:
            return [request for request in self.requests if request.target == short]

    def bodies(self, target: str) -> list[dict[str, Any]]:
        return [request.body for request in self.calls(target)]

    def clear(self) -> None:
        """Forget recorded requests (faults stay)."""
        with self._lock:
            self.requests.clear()

    # -- faults --------------------------------------------------------------------------------------

    def inject(
        self,
        target: str,
        *,
        error_type: str,
        message: str = "Injected by RecordingProxy",
        status: int = 400,
        times: int | None = 1,
    ) -> None:
        """Answer the next `times` calls of `target` (every call if None) with an AWS JSON error."""
        short = target if "." in target else f"ACMPrivateCA.{target}"
        body = json.dumps({"__type": error_type, "message": message}).encode()
        with self._lock:
            self._faults.append(_Fault(short, status, body, times))

    def throttle(self, target: str, times: int | None = 1) -> None:
        self.inject(target, error_type="ThrottlingException", message="Rate exceeded", times=times)

    def in_progress(self, times: int | None = 1) -> None:
        """GetCertificate answers RequestInProgressException, as AWS does while it is still issuing."""
        self.inject(
            GET,
            error_type="RequestInProgressException",
            message="The request to issue the certificate is still in progress",
            times=times,
        )

    def respond(self, target: str, answer: dict[str, Any], *, times: int | None = 1) -> None:
        """Answer the next `times` calls of `target` with `answer` (HTTP 200) instead of moto's."""
        short = target if "." in target else f"ACMPrivateCA.{target}"
        with self._lock:
            self._faults.append(_Fault(short, 200, json.dumps(answer).encode(), times))

    def server_error(self, target: str, *, status: int = 503, times: int | None = 1) -> None:
        error_type = "ServiceUnavailable" if status == 503 else "InternalFailure"
        self.inject(target, error_type=error_type, message="Transient failure", status=status, times=times)

    def reset_connection(self, target: str, *, times: int | None = 1) -> None:
        """Reset the next `times` connections of `target` before the request reaches moto (nothing processed)."""
        self._add(_Fault(_short(target), 0, b"", times, action="reset"))

    def drop_reply(self, target: str, *, times: int | None = 1) -> None:
        """Forward the next `times` calls of `target` to moto, then close the connection without the reply: the
        call was processed, and the client never learns its outcome."""
        self._add(_Fault(_short(target), 0, b"", times, action="drop"))

    def delay_reply(self, target: str, seconds: float, *, times: int | None = 1) -> None:
        """Forward the next `times` calls of `target` to moto and hold the reply `seconds` (a client with a
        shorter read timeout gives up on a call that was processed)."""
        self._add(_Fault(_short(target), 0, b"", times, action="delay", delay=seconds))

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def quota(self, target: str, per_second: float, *, burst: float | None = None) -> None:
        """Enforce a request quota on `target`: above it, answer ThrottlingException as AWS does.

        A token bucket of `burst` requests (default: one second's worth, at least 1) refilled at `per_second`.
        """
        short = target if "." in target else f"ACMPrivateCA.{target}"
        size = burst if burst is not None else max(1.0, per_second)
        with self._lock:
            self._quotas[short] = _Quota(per_second, size, size, time.monotonic())

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._quotas.clear()

    def reset(self) -> None:
        """Forget recorded requests, pending faults, quotas and idempotency tokens (the UsageMode corrections
        stay)."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self._quotas.clear()
            self._tokens.clear()

    def _take_fault(self, target: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.target == target and (fault.remaining is None or fault.remaining > 0):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
            quota = self._quotas.get(target)
            if quota is not None and not quota.take(time.monotonic()):
                return _THROTTLED
        return None

    def _record(
        self,
        target: str,
        body: dict[str, Any],
        status: int,
        injected: bool,
        authorization: str,
        *,
        answer: bytes = b"",
        fault: str = "",
    ) -> None:
        signed_by = _CREDENTIAL.search(authorization)
        try:
            reply = json.loads(answer) if answer and not injected else {}
        except ValueError:
            reply = {}
        request = RecordedRequest(
            target,
            body,
            status,
            injected,
            signed_by.group(1) if signed_by else "",
            time.monotonic(),
            reply if isinstance(reply, dict) else {},
            fault,
        )
        with self._lock:
            self.requests.append(request)

    # -- AWS's idempotency tokens ----------------------------------------------------------------------

    def _token_key(self, target: str, body: dict[str, Any]) -> tuple[str, str] | None:
        token = body.get("IdempotencyToken")
        if not self.honour_idempotency or target != ISSUE or not isinstance(token, str) or not token:
            return None
        return (str(body.get("CertificateAuthorityArn", "")), token)

    def _claim_token(self, target: str, body: dict[str, Any]) -> tuple[bytes | None, _TokenUse | None]:
        """AWS's idempotency: `(answer, None)` when the token issued in the last `token_window` seconds (a
        request still being processed with it is waited for, as AWS answers it once); else `(None, use)`: the
        request is new, forward it and `_settle_token(use, ...)` with its outcome."""
        key = self._token_key(target, body)
        if key is None:
            return None, None
        while True:
            with self._lock:
                use = self._tokens.get(key)
                now = time.monotonic()
                if use is None or (
                    use.done.is_set() and (use.answer is None or now - use.started >= self.token_window)
                ):
                    use = self._tokens[key] = _TokenUse(now)
                    return None, use
            use.done.wait(timeout=120)
            if use.answer is not None and time.monotonic() - use.started < self.token_window:
                return use.answer, None

    def _settle_token(self, use: _TokenUse | None, status: int, answer: bytes) -> None:
        if use is not None:
            use.answer = answer if status == 200 else None
            use.done.set()

    # -- moto corrections ----------------------------------------------------------------------------

    def _correct(self, target: str, request: dict[str, Any], status: int, answer: bytes) -> bytes:
        if not self.honour_usage_mode or status != 200:
            return answer
        if target == "ACMPrivateCA.CreateCertificateAuthority" and "UsageMode" in request:
            arn = json.loads(answer)["CertificateAuthorityArn"]
            with self._lock:
                self._usage_modes[arn] = request["UsageMode"]
        elif target == "ACMPrivateCA.DescribeCertificateAuthority":
            with self._lock:
                mode = self._usage_modes.get(request.get("CertificateAuthorityArn", ""))
            if mode:
                described = json.loads(answer)
                described["CertificateAuthority"]["UsageMode"] = mode
                return json.dumps(described).encode()
        return answer

    # -- HTTP ----------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        upstream = urlsplit(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                target = self.headers.get("X-Amz-Target", "")
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {}
                authorization = self.headers.get("Authorization", "")
                fault = proxy._take_fault(target)
                if fault is not None and fault.action == "reset":
                    proxy._record(target, body, 0, True, authorization, fault="reset")
                    self._hang_up(reset=True)
                    return
                if fault is not None and fault.action == "answer":
                    proxy._record(target, body, fault.status, True, authorization)
                    self._reply(fault.status, {"Content-Type": "application/x-amz-json-1.1"}, fault.body)
                    return
                replayed, token_use = proxy._claim_token(target, body)
                if replayed is not None:
                    status, reply_headers, answer = 200, {"Content-Type": "application/x-amz-json-1.1"}, replayed
                    proxy._record(target, body, status, True, authorization, fault="replayed")
                else:
                    try:
                        status, reply_headers, answer = self._upstream(raw)
                    except OSError:
                        proxy._settle_token(token_use, 0, b"")
                        raise
                    answer = proxy._correct(target, body, status, answer)
                    proxy._settle_token(token_use, status, answer)
                    outcome = {"drop": "dropped", "delay": "delayed"}.get(fault.action, "") if fault else ""
                    proxy._record(target, body, status, False, authorization, answer=answer, fault=outcome)
                if fault is not None and fault.action == "drop":
                    self._hang_up(reset=False)
                    return
                if fault is not None and fault.action == "delay":
                    time.sleep(fault.delay)
                self._reply(status, reply_headers, answer)

            def _upstream(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
                connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=60)
                try:
                    headers = {key: value for key, value in self.headers.items() if key.lower() != "connection"}
                    connection.request(self.command, self.path, body=raw, headers=headers)
                    response = connection.getresponse()
                    answer = response.read()
                    reply_headers = {
                        key: value
                        for key, value in response.getheaders()
                        if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date")
                    }
                    return response.status, reply_headers, answer
                finally:
                    connection.close()

            def _hang_up(self, *, reset: bool) -> None:
                """Close the connection without a reply; with `reset`, abortively (an RST, as a reset peer)."""
                if reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    self.close_connection = True  # the client gave up (its read timeout) before the reply

            do_POST = _forward
            do_GET = _forward
            do_PUT = _forward
            do_DELETE = _forward

        return Handler
