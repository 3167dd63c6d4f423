"""components/nginx_config.py: the rendered text, its validation, and real nginx accepting and serving it."""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.local.nginx import (
    nginx_test_config,
    running_nginx,
    tls_server_block,
    worker_pids,
    write_standalone_conf,
)
from components.local.process import free_port
from components.local.tls import LEAF_DNS_NAME, Pki, make_pki
from components.nginx_config import render_server_block, render_standalone_conf

MOZILLA_INTERMEDIATE_ECDHE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
VALID = {
    "server_names": ["backend.internal.test", "10.0.1.15"],
    "certificate_path": "/etc/pki/tls/certs/backend-fullchain.pem",
    "private_key_path": "/etc/pki/tls/private/backend.key",
}


def directives(text: str) -> list[str]:
    """Directive lines without comments or indentation."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


# --- pure rendering --------------------------------------------------------------------------------------


def test_server_block_follows_the_mozilla_intermediate_profile() -> None:
    lines = directives(render_server_block(**VALID))  # type: ignore[arg-type]
    for expected in [
        "listen 443 ssl;",
        "server_name backend.internal.test 10.0.1.15;",
        "ssl_certificate /etc/pki/tls/certs/backend-fullchain.pem;",
        "ssl_certificate_key /etc/pki/tls/private/backend.key;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        f"ssl_ciphers {MOZILLA_INTERMEDIATE_ECDHE_CIPHERS};",
        "ssl_prefer_server_ciphers off;",
        "ssl_ecdh_curve X25519:prime256v1:secp384r1;",
        "ssl_session_timeout 1d;",
        "ssl_session_tickets off;",
    ]:
        assert expected in lines, f"missing {expected!r} in {lines}"
    assert any(line.startswith("ssl_session_cache shared:") for line in lines)
    assert not any("DHE-RSA" in line and "ECDHE-RSA" not in line for line in lines)
    assert not any(line.startswith("ssl_dhparam") for line in lines), "no DHE suite, so no dhparam"
    assert not any("Strict-Transport-Security" in line for line in lines), "service-to-service: no HSTS"


def test_health_check_is_an_exact_match_returning_ok() -> None:
    text = render_server_block(**VALID, health_check_path="/lb/health")  # type: ignore[arg-type]
    block = text[text.index("location = /lb/health {") :]
    assert directives(block)[1:4] == ["access_log off;", "default_type text/plain;", 'return 200 "ok";']


def test_without_upstream_every_request_gets_200_json() -> None:
    lines = directives(render_server_block(**VALID))  # type: ignore[arg-type]
    assert 'return 200 \'{"status":"ok"}\\n\';' in lines
    assert not any(line.startswith("proxy_pass") for line in lines)


def test_with_upstream_location_root_proxies_to_the_app_through_a_keepalive_pool() -> None:
    text = render_server_block(**VALID, upstream_url="http://127.0.0.1:8080/")  # type: ignore[arg-type]
    upstream = directives(text[text.index("upstream ") : text.index("server {")])
    assert upstream == [
        "upstream application_127_0_0_1_8080 {",
        "server 127.0.0.1:8080;",
        "keepalive 32;",
        "keepalive_timeout 4s;",
        "}",
    ]
    location = directives(text[text.index("location / {") :])
    assert "proxy_pass http://application_127_0_0_1_8080;" in location
    # nginx's documented recipe for upstream keep-alive: HTTP/1.1 and no `Connection: close` sent upstream.
    assert "proxy_http_version 1.1;" in location
    assert 'proxy_set_header Connection "";' in location
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in location
    assert not any(line.startswith("return 200 '") for line in location)


def test_upstream_pool_size_and_no_pool() -> None:
    pooled = directives(render_server_block(**VALID, upstream_url="http://[::1]:9000", upstream_keepalive=4))  # type: ignore[arg-type]
    assert "server [::1]:9000;" in pooled
    assert "keepalive 4;" in pooled
    assert "proxy_pass http://application____1__9000;" in pooled
    unpooled = directives(render_server_block(**VALID, upstream_url="http://127.0.0.1:8080", upstream_keepalive=0))  # type: ignore[arg-type]
    assert "proxy_pass http://127.0.0.1:8080;" in unpooled
    assert not any(line.startswith(("upstream", "keepalive", "proxy_set_header Connection")) for line in unpooled)


@pytest.mark.parametrize(
    ("listen_address", "port", "expected"),
    [
        (None, 443, "listen 443 ssl;"),
        ("10.0.1.15", 8443, "listen 10.0.1.15:8443 ssl;"),
        ("::1", 8443, "listen [::1]:8443 ssl;"),
    ],
)
def test_listen_line(listen_address: str | None, port: int, expected: str) -> None:
    text = render_server_block(**VALID, listen_address=listen_address, port=port)  # type: ignore[arg-type]
    assert expected in directives(text)


@pytest.mark.parametrize(
    ("override", "argument"),
    [
        ({"server_names": []}, "server_names"),
        ({"server_names": "backend.internal.test"}, "server_names"),
        ({"server_names": ["two names"]}, "server_names"),
        ({"server_names": ["a.test;return 302 http://evil"]}, "server_names"),
        ({"server_names": ["a.test{"]}, "server_names"),
        ({"server_names": ["a.test}"]}, "server_names"),
        ({"server_names": ["$host"]}, "server_names"),
        ({"server_names": ["a.test\nlisten 80"]}, "server_names"),
        ({"server_names": [""]}, "server_names"),
        ({"certificate_path": "fullchain.pem"}, "certificate_path"),
        ({"certificate_path": "./fullchain.pem"}, "certificate_path"),
        ({"certificate_path": "/etc/a b.pem"}, "certificate_path"),
        ({"certificate_path": "/etc/a.pem; include /etc/shadow"}, "certificate_path"),
        ({"certificate_path": "/etc/../root/a.pem"}, "certificate_path"),
        ({"certificate_path": "/etc/$var.pem"}, "certificate_path"),
        ({"private_key_path": "key.pem"}, "private_key_path"),
        ({"private_key_path": "/etc/k.pem}"}, "private_key_path"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": True}, "port"),
        ({"port": "443"}, "port"),
        ({"listen_address": "localhost"}, "listen_address"),
        ({"listen_address": "10.0.0.1 ssl; listen 80"}, "listen_address"),
        ({"health_check_path": "healthz"}, "health_check_path"),
        ({"health_check_path": "/"}, "health_check_path"),
        ({"health_check_path": "/health z"}, "health_check_path"),
        ({"health_check_path": "/h;return"}, "health_check_path"),
        ({"upstream_url": "https://127.0.0.1:8443"}, "upstream_url"),
        ({"upstream_url": "127.0.0.1:8080"}, "upstream_url"),
        ({"upstream_url": "http://127.0.0.1:8080/app"}, "upstream_url"),
        ({"upstream_url": "http://127.0.0.1:8080;return 200"}, "upstream_url"),
        ({"upstream_url": "http://127.0.0.1:99999"}, "upstream_url"),
        ({"upstream_url": "http://user:pw@127.0.0.1"}, "upstream_url"),
        ({"upstream_keepalive": -1}, "upstream_keepalive"),
        ({"upstream_keepalive": "32"}, "upstream_keepalive"),
        ({"upstream_keepalive": True}, "upstream_keepalive"),
    ],
)
def test_invalid_input_is_rejected_naming_the_argument(override: dict[str, object], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        render_server_block(**{**VALID, **override})  # type: ignore[arg-type]


def test_standalone_conf_keeps_writable_paths_in_workdir() -> None:
    text = render_standalone_conf(server_block=render_server_block(**VALID), workdir="/srv/nginx-test")  # type: ignore[arg-type]
    lines = directives(text)
    assert "pid /srv/nginx-test/nginx.pid;" in lines
    assert "error_log /srv/nginx-test/error.log warn;" in lines
    assert "access_log /srv/nginx-test/access.log;" in lines
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{temp}_temp_path /srv/nginx-test/{temp}_temp;" in lines
    assert not any(line.startswith("daemon") for line in lines), "the caller chooses with -g"
    assert text.count("{") == text.count("}")
    assert "    server {" in text.splitlines(), "the server block sits inside http {}"


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"server_block": "server {}", "workdir": "relative/dir"}, "workdir"),
        ({"server_block": "server {}", "workdir": "/tmp/a b"}, "workdir"),
        ({"server_block": "  \n", "workdir": "/tmp/nginx"}, "server_block"),
    ],
)
def test_standalone_conf_rejects_bad_input(kwargs: dict[str, str], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        render_standalone_conf(**kwargs)


# --- real nginx ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["ec", "rsa"])
def pki(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp(f"pki-{request.param}"), key_type=request.param)


@pytest.mark.parametrize("upstream_url", [None, "http://127.0.0.1:8080"])
def test_nginx_accepts_the_rendered_config(pki: Pki, tmp_path: Path, upstream_url: str | None) -> None:
    block = tls_server_block(pki, free_port(), upstream_url=upstream_url)
    result = nginx_test_config(write_standalone_conf(tmp_path, block))
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_rejects_a_key_that_does_not_match_the_certificate(tmp_path: Path) -> None:
    """Proves `nginx -t` really loads the certificate and key named in the rendered config."""
    # Same key type: OpenSSL would file an RSA key next to an EC certificate in another slot silently.
    first, second = make_pki(tmp_path / "first"), make_pki(tmp_path / "second")
    block = render_server_block(
        server_names=[LEAF_DNS_NAME],
        certificate_path=str(first.fullchain),
        private_key_path=str(second.leaf_key),
        port=free_port(),
        listen_address="127.0.0.1",
    )
    result = nginx_test_config(write_standalone_conf(tmp_path / "nginx", block))
    assert result.returncode != 0
    assert "key values mismatch" in result.stderr


def test_nginx_rejects_a_missing_certificate(tmp_path: Path) -> None:
    block = render_server_block(
        server_names=[LEAF_DNS_NAME],
        certificate_path=str(tmp_path / "absent.pem"),
        private_key_path=str(tmp_path / "absent.key"),
        port=free_port(),
        listen_address="127.0.0.1",
    )
    result = nginx_test_config(write_standalone_conf(tmp_path / "nginx", block))
    assert result.returncode != 0
    assert "absent.pem" in result.stderr


class _EchoApp(http.server.BaseHTTPRequestHandler):
    """Stands in for the application behind nginx: echoes what nginx forwarded and keeps connections open."""

    protocol_version = "HTTP/1.1"  # keep-alive, as application servers do; HTTP/1.0 would close every connection
    server: _CountingServer

    def do_GET(self) -> None:
        self._reply(b"")

    def do_POST(self) -> None:
        self._reply(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    def _reply(self, body: bytes) -> None:
        self.server.record(self.headers.get("Connection"))
        reply = json.dumps(
            {"path": self.path, "body": body.decode(), "proto": self.headers.get("X-Forwarded-Proto")}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _CountingServer(http.server.ThreadingHTTPServer):
    """Counts the TCP connections it accepts and the `Connection` header of every request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoApp)
        self._lock = threading.Lock()
        self.accepted = 0
        self.connection_headers: list[str | None] = []

    def get_request(self) -> tuple[socket.socket, Any]:
        request = super().get_request()
        with self._lock:
            self.accepted += 1
        return request

    def record(self, connection_header: str | None) -> None:
        with self._lock:
            self.connection_headers.append(connection_header)


@pytest.fixture
def echo_server() -> Iterator[_CountingServer]:
    server = _CountingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def echo_app(echo_server: _CountingServer) -> int:
    return int(echo_server.server_address[1])


def _https_request(pki: Pki, port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(pki.ca_bundle))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_served_health_check_and_default_location(pki: Pki, tmp_path: Path) -> None:
    port = free_port()
    with running_nginx(write_standalone_conf(tmp_path, tls_server_block(pki, port)), [port]):
        assert _https_request(pki, port, "GET", "/healthz") == (200, b"ok")
        status, body = _https_request(pki, port, "POST", "/anything", b'{"order": 1}')
        assert (status, json.loads(body)) == (200, {"status": "ok"})


def test_served_requests_reach_the_upstream_app(pki: Pki, tmp_path: Path, echo_app: int) -> None:
    port = free_port()
    block = tls_server_block(pki, port, upstream_url=f"http://127.0.0.1:{echo_app}")
    with running_nginx(write_standalone_conf(tmp_path, block), [port]):
        status, body = _https_request(pki, port, "POST", "/orders?id=7", b"hello")
        assert status == 200
        assert json.loads(body) == {"path": "/orders?id=7", "body": "hello", "proto": "https"}
        assert _https_request(pki, port, "GET", "/healthz") == (200, b"ok"), "health never hits the app"


def _proxied_requests(pki: Pki, tmp_path: Path, app: _CountingServer, requests: int, keepalive: int = 32) -> int:
    """`requests` GETs through nginx to `app`, each on a new client connection; returns nginx's worker count."""
    port = free_port()
    upstream_url = f"http://127.0.0.1:{app.server_address[1]}"
    block = tls_server_block(pki, port, upstream_url=upstream_url, upstream_keepalive=keepalive)
    with running_nginx(write_standalone_conf(tmp_path, block), [port]) as nginx:
        for number in range(requests):
            status, body = _https_request(pki, port, "GET", f"/orders/{number}")
            assert (status, json.loads(body)["path"]) == (200, f"/orders/{number}")
        return len(worker_pids(nginx.pid))


def test_proxied_requests_reuse_few_upstream_connections(
    pki: Pki, tmp_path: Path, echo_server: _CountingServer
) -> None:
    workers = _proxied_requests(pki, tmp_path, echo_server, 20)
    assert echo_server.connection_headers == [None] * 20, "nginx must not send `Connection: close` upstream"
    # One request at a time: each worker reuses the one connection its pool holds.
    assert 1 <= echo_server.accepted <= workers < 20


def test_without_a_pool_every_proxied_request_opens_an_upstream_connection(
    pki: Pki, tmp_path: Path, echo_server: _CountingServer
) -> None:
    """Control for the test above: the application's count does see one connection per request."""
    _proxied_requests(pki, tmp_path, echo_server, 20, keepalive=0)
    assert echo_server.connection_headers == ["close"] * 20
    assert echo_server.accepted == 20
