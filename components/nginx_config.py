"""Render the nginx configuration that terminates TLS on a backend host.

Pure functions, no Pulumi: the user-data of a host and the tests call them alike. The TLS settings follow
Mozilla's "intermediate" profile (https://ssl-config.mozilla.org/, guideline 5.7) minus the DHE cipher
suites, so no `ssl_dhparam` file has to be generated and shipped to every host. Requests proxied to the
application reuse a keep-alive connection pool (an `upstream` block) rather than a TCP connection each.

Every value that reaches the rendered text is checked against an allow-list first: a server name, a path or
a URL can never close a directive (`;`), open or close a block (`{` `}`), start a comment (`#`), quote,
expand an nginx variable (`$`) or break a line, so the output cannot carry an injected directive.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from components.rules.aws import health_check_path_problem
from components.rules.names import is_server_name

__all__ = ["render_server_block", "render_standalone_conf"]

# Mozilla "intermediate" TLS 1.2 suites, ECDHE only: forward secrecy and AEAD without a dhparam file.
# TLS 1.3 suites are not set: OpenSSL's default TLS 1.3 list is exactly Mozilla's.
INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
INTERMEDIATE_CURVES = "X25519:prime256v1:secp384r1"
# Idle keep-alive connections to the application per nginx worker (nginx's documentation example uses 16).
UPSTREAM_KEEPALIVE = 32

# Absolute file paths from a conservative alphabet: no whitespace, quotes, `;`, `{`, `}`, `#` or `$`.
_PATH_RE = re.compile(r"^/[A-Za-z0-9._+@=,/-]*$")


def _check_server_names(server_names: Sequence[str]) -> list[str]:
    if isinstance(server_names, str) or not isinstance(server_names, Sequence):
        raise ValueError(
            "server_names must be a list of host names (for example ['api.internal.example']), "
            f"got {type(server_names).__name__}"
        )
    if not server_names:
        raise ValueError("server_names must contain at least one host name")
    for name in server_names:
        if not is_server_name(name):
            raise ValueError(
                f"server_names entry {name!r} is not allowed: use DNS names (letters, digits, '-', '_', "
                "dots, an optional leading '*.') or IPv4 addresses, at most 253 characters"
            )
    return list(server_names)


def _check_path(argument: str, value: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{argument} must be an absolute path starting with '/', got {value!r}")
    if not _PATH_RE.match(value) or value.endswith("/") or "/../" in f"{value}/" or "//" in value:
        raise ValueError(
            f"{argument} {value!r} is not allowed: use an absolute, normalised file path made of letters, "
            "digits and . _ + @ = , / - (no spaces, quotes, ';', '{', '}', '#', '$' or '..')"
        )
    return value


def _check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer from 1 to 65535, got {port!r}")
    return port


def _listen_target(listen_address: str | None, port: int) -> str:
    if listen_address is None:
        # IPv4 wildcard only: `listen [::]` fails to start on hosts where IPv6 is disabled.
        return str(port)
    try:
        address = ipaddress.ip_address(listen_address)
    except ValueError:
        raise ValueError(
            f"listen_address must be an IPv4 or IPv6 address (or None for all IPv4 addresses), got {listen_address!r}"
        ) from None
    if address.version == 6:
        return f"[{address.compressed}]:{port}"
    return f"{address.compressed}:{port}"


def _check_health_check_path(health_check_path: str) -> str:
    problem = health_check_path_problem(health_check_path)
    if problem is not None:
        raise ValueError(f"health_check_path {problem}")
    return health_check_path


def _check_upstream_keepalive(upstream_keepalive: int) -> int:
    if isinstance(upstream_keepalive, bool) or not isinstance(upstream_keepalive, int) or upstream_keepalive < 0:
        raise ValueError(
            f"upstream_keepalive must be an integer >= 0 (0 = no connection pool), got {upstream_keepalive!r}"
        )
    return upstream_keepalive


def _check_upstream_url(upstream_url: str) -> str:
    if not isinstance(upstream_url, str) or any(c in upstream_url for c in " \t\r\n;{}#$\"'\\"):
        raise ValueError(f"upstream_url {upstream_url!r} contains characters nginx would interpret")
    parts = urlsplit(upstream_url)
    # Only plain HTTP: the application listens on the host itself (loopback). An https upstream would need
    # proxy_ssl_verify and a trust bundle, which this renderer deliberately does not half-configure.
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(
            f"upstream_url must look like http://127.0.0.1:8080 (scheme http, a host, optional port), "
            f"got {upstream_url!r}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"upstream_url must not carry a path, query, fragment or credentials, got {upstream_url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"upstream_url has an invalid port: {upstream_url!r}") from None
    host = parts.hostname
    if not is_server_name(host):
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise ValueError(f"upstream_url has an invalid host: {upstream_url!r}") from None
    return f"http://{host}" + (f":{port}" if port is not None else "")


def render_server_block(
    *,
    server_names: Sequence[str],
    certificate_path: str,
    private_key_path: str,
    port: int = 443,
    listen_address: str | None = None,
    health_check_path: str = "/healthz",
    upstream_url: str | None = None,
    upstream_keepalive: int = UPSTREAM_KEEPALIVE,
) -> str:
    """The nginx `server { ... }` block that terminates TLS (goes in /etc/nginx/conf.d/ on a host).

    `certificate_path` is the full chain (leaf first, then the intermediates); `private_key_path` its key.
    With `upstream_url` (for example http://127.0.0.1:8080) `location /` proxies to the application,
    otherwise it answers 200 with a small JSON body to any method. `health_check_path` always answers
    200 "ok".

    With `upstream_url`, an `upstream { ... }` block precedes the server block (both belong in `http {}`, which
    is where conf.d files are included): each nginx worker keeps up to `upstream_keepalive` idle HTTP/1.1
    connections to the application and reuses them, instead of opening a TCP connection per request.
    `upstream_keepalive=0` proxies without a pool (one upstream connection per request), for an application
    that cannot keep connections open. The upstream is named after the application's address, so two server
    blocks in one nginx may not proxy to the same address with a pool.
    Raises ValueError naming the argument when an input is not allowed.
    """
    names = _check_server_names(server_names)
    certificate = _check_path("certificate_path", certificate_path)
    private_key = _check_path("private_key_path", private_key_path)
    listen = _listen_target(listen_address, _check_port(port))
    health = _check_health_check_path(health_check_path)
    keepalive = _check_upstream_keepalive(upstream_keepalive)
    upstream_block: list[str] = []

    if upstream_url is None:
        app_location = [
            "    location / {",
            "        # `return` runs before any content handler, so every method (GET, POST, ...) gets 200.",
            "        default_type application/json;",
            '        return 200 \'{"status":"ok"}\\n\';',
            "    }",
        ]
    else:
        upstream = _check_upstream_url(upstream_url)
        pool_headers: list[str] = []
        if keepalive:
            address = upstream.removeprefix("http://")
            pool = "application_" + re.sub(r"[^A-Za-z0-9]", "_", address)
            # https://nginx.org/en/docs/http/ngx_http_upstream_module.html#keepalive
            upstream_block = [
                f"upstream {pool} {{",
                f"    server {address};",  # without a port: 80, as in the URL
                "    # Idle connections each worker keeps open to the application and reuses for the next request.",
                f"    keepalive {keepalive};",
                "    # Close idle connections before the application does (Node.js and uvicorn wait 5 s): a request",
                "    # sent on a connection the application is closing fails with 502 and is not retried if a POST.",
                "    keepalive_timeout 4s;",
                "}",
                "",
            ]
            upstream = f"http://{pool}"
            pool_headers = [
                "        # Without this nginx sends `Connection: close` and the application closes every connection.",
                '        proxy_set_header Connection "";',
            ]
        app_location = [
            "    location / {",
            f"        proxy_pass {upstream};",
            "        proxy_http_version 1.1;",
            *pool_headers,
            "        proxy_set_header Host $host;",
            "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "        # Tells the application the hop to this host was encrypted.",
            "        proxy_set_header X-Forwarded-Proto $scheme;",
            "    }",
        ]

    lines = [
        *upstream_block,
        "server {",
        f"    listen {listen} ssl;",
        f"    server_name {' '.join(names)};",
        "",
        "    # Full chain, leaf first: clients that only trust the root still build the path.",
        f"    ssl_certificate {certificate};",
        f"    ssl_certificate_key {private_key};",
        "",
        "    # Mozilla intermediate profile (guideline 5.7) without DHE, so no dhparam file is needed.",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        f"    ssl_ciphers {INTERMEDIATE_CIPHERS};",
        "    # All offered suites are strong; let the client pick the one its hardware does fastest.",
        "    ssl_prefer_server_ciphers off;",
        f"    ssl_ecdh_curve {INTERMEDIATE_CURVES};",
        "",
        "    # Session resumption through a server-side cache shared by the workers (about 40000 sessions).",
        "    ssl_session_cache shared:MozSSL:10m;",
        "    ssl_session_timeout 1d;",
        "    # Tickets are encrypted with a key nginx never rotates while running: they would weaken forward",
        "    # secrecy, so resumption uses the cache above only.",
        "    ssl_session_tickets off;",
        "",
        "    # Exact match: the load balancer's health check never reaches the application.",
        f"    location = {health} {{",
        "        access_log off;",
        "        default_type text/plain;",
        '        return 200 "ok";',
        "    }",
        "",
        *app_location,
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_standalone_conf(*, server_block: str, workdir: str) -> str:
    """A complete nginx.conf that keeps every writable path (pid, logs, temp files) under `workdir`.

    Run it with `nginx -p <workdir> -c <conf>`; `daemon off;` is not set, pass `-g 'daemon off;'` to keep
    nginx in the foreground. `server_block` goes inside `http {}` unchanged (indented).
    """
    work = _check_path("workdir", workdir)
    if not isinstance(server_block, str) or not server_block.strip():
        raise ValueError("server_block must be a non-empty nginx server block (see render_server_block)")
    body = "\n".join(f"    {line}" if line.strip() else "" for line in server_block.strip("\n").splitlines())
    lines = [
        "# Standalone nginx.conf: nothing outside the work directory is written.",
        "worker_processes auto;",
        f"pid {work}/nginx.pid;",
        f"error_log {work}/error.log warn;",
        "",
        "events {",
        "    worker_connections 1024;",
        "}",
        "",
        "http {",
        f"    access_log {work}/access.log;",
        "    # The compiled-in temp paths live under /var/lib/nginx, which an unprivileged run cannot write.",
        f"    client_body_temp_path {work}/client_body_temp;",
        f"    proxy_temp_path {work}/proxy_temp;",
        f"    fastcgi_temp_path {work}/fastcgi_temp;",
        f"    uwsgi_temp_path {work}/uwsgi_temp;",
        f"    scgi_temp_path {work}/scgi_temp;",
        "    default_type application/octet-stream;",
        "    server_tokens off;",
        "",
        body,
        "}",
    ]
    return "\n".join(lines) + "\n"
