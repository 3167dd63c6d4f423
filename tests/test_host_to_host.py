"""Host to host over a real (virtual) wire: two network namespaces joined by a veth pair.

server namespace  192.0.2.1  nginx from the rendered config (HTTPS :443) and a cleartext twin (:80)
client namespace  192.0.2.2  curl / verify-tls; its trust store got the CA through scripts/trust-ca

The client's trust store is a copy of this machine's Debian layout under tmp_path, updated by trust-ca
(--root) and bind-mounted over /etc/ssl/certs inside a private mount namespace (`unshare -m`), so the
client verifies with its *default* trust store while the real machine's store is never touched.
tcpdump on the server's veth proves the body never crosses the wire in clear over HTTPS, and, as a
control, that it does over plain HTTP (so the capture itself works).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from components.local.nginx import plain_http_server_block, running_nginx, tls_server_block, write_standalone_conf
from components.local.process import require_binary, stop_process
from components.local.tls import LEAF_DNS_NAME, Pki, make_pki
from tests.netns import Namespaces, linked_namespaces
from tests.tls_fixtures import TRUST_CA, VERIFY_TLS, run

pytestmark = pytest.mark.netns

SERVER_IP = "192.0.2.1"
CLIENT_IP = "192.0.2.2"


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    with linked_namespaces("dp", SERVER_IP, CLIENT_IP) as names:
        yield names


@contextmanager
def capture(namespace: str, interface: str, bpf_filter: str, pcap: Path) -> Iterator[Path]:
    """tcpdump on `interface` inside `namespace`; the file is complete once the block exits."""
    tcpdump = require_binary("tcpdump")
    process = subprocess.Popen(
        # --immediate-mode and -U: every packet reaches the file at once, none waits in a ring-buffer block
        # when tcpdump is stopped; -Z root: do not drop privileges before opening the file.
        [require_binary("ip"), "netns", "exec", namespace, tcpdump, "-i", interface, "-n", "-s", "0",
         "--immediate-mode", "-U",
         "-Z", "root", "-w", str(pcap), bpf_filter],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 10
        banner = ""
        while "listening on" not in banner:  # tcpdump prints this once the capture is armed
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tcpdump did not start: {banner}{process.stderr.read()}")
            banner += process.stderr.readline()
        yield pcap
        time.sleep(0.3)  # let the last FIN/ACK segments reach the capture
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        stop_process(process)
        if process.stderr:
            process.stderr.close()


def in_client(
    names: Namespaces, command: Sequence[str | Path], trust_store: Path | None
) -> subprocess.CompletedProcess[str]:
    """Run `command` in the client namespace; with `trust_store`, that directory is its /etc/ssl/certs."""
    argv = [str(part) for part in command]
    prefix = [require_binary("ip"), "netns", "exec", names.client]
    if trust_store is None:
        return run([*prefix, *argv], timeout=60)
    # A private mount namespace: the bind mount disappears with the process and never reaches the host.
    script = 'mount --bind "$0" /etc/ssl/certs && exec "$@"'
    return run([*prefix, require_binary("unshare"), "--mount", "--propagation", "private",
                "sh", "-c", script, str(trust_store), *argv])  # fmt: skip


def curl_post(url: str, body: str) -> list[str | Path]:
    return [require_binary("curl"), "--silent", "--show-error", "--fail", "--max-time", "10",
            "--resolve", f"{LEAF_DNS_NAME}:443:{SERVER_IP}", "-X", "POST",
            "-H", "Content-Type: text/plain", "--data-binary", body, url]  # fmt: skip


@pytest.fixture
def client_trust_store(tmp_path: Path, pki: Pki) -> Path:
    """A copy of this machine's CA layout, given the test CA by trust-ca; returns its etc/ssl/certs."""
    require_binary("update-ca-certificates")
    root = tmp_path / "client-root"
    shutil.copytree("/usr/share/ca-certificates", root / "usr/share/ca-certificates")
    (root / "etc").mkdir(parents=True)
    shutil.copy("/etc/ca-certificates.conf", root / "etc/ca-certificates.conf")
    shutil.copy("/etc/os-release", root / "etc/os-release")
    result = run([sys.executable, TRUST_CA, "--root", root, "--os", "debian", pki.ca_bundle], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    certs = root / "etc/ssl/certs"
    assert (certs / "ca-certificates.crt").stat().st_size > 10_000, "system CAs plus ours"
    return certs


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", ip_addresses=[SERVER_IP])


@pytest.fixture
def server(namespaces: Namespaces, pki: Pki, tmp_path: Path) -> Iterator[Namespaces]:
    blocks = tls_server_block(pki, 443, listen_address=SERVER_IP) + plain_http_server_block(80, SERVER_IP)
    with running_nginx(write_standalone_conf(tmp_path / "nginx", blocks), netns=namespaces.server):
        yield namespaces


def test_https_between_hosts_is_verified_and_encrypted_on_the_wire(
    server: Namespaces, client_trust_store: Path, tmp_path: Path
) -> None:
    names = server
    marker = f"MARKER-{uuid.uuid4().hex}"
    https_url = f"https://{LEAF_DNS_NAME}/orders"

    with capture(names.server, names.server_link, "tcp port 443", tmp_path / "https.pcap") as https_pcap:
        trusted = in_client(names, curl_post(https_url, marker), client_trust_store)
        by_ip = in_client(names, curl_post(f"https://{SERVER_IP}/orders", marker), client_trust_store)
        stock = in_client(names, curl_post(https_url, marker), trust_store=None)

    # The client that got the CA from trust-ca verifies with its default store, by name and by IP SAN.
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.strip() == '{"status":"ok"}'
    assert by_ip.returncode == 0, by_ip.stderr
    # Verification is enforced: the stock trust store does not know the private CA (curl: exit 60).
    assert stock.returncode == 60, stock.stderr
    assert "certificate" in stock.stderr

    with capture(names.server, names.server_link, "tcp port 80", tmp_path / "http.pcap") as http_pcap:
        plain = in_client(names, curl_post(f"http://{SERVER_IP}/orders", marker), trust_store=None)
    assert plain.returncode == 0, plain.stderr

    https_bytes, http_bytes = https_pcap.read_bytes(), http_pcap.read_bytes()
    assert LEAF_DNS_NAME.encode() in https_bytes, "the capture holds the ClientHello (SNI is cleartext)"
    assert marker.encode() not in https_bytes, "the POST body crossed the wire in clear over HTTPS"
    assert marker.encode() in http_bytes, "control: the same capture sees a cleartext body"

    tshark = require_binary("tshark")
    client_hellos = run(
        [tshark, "-r", https_pcap, "-Y", "tls.handshake.type == 1", "-T", "fields",
         "-e", "tls.handshake.extensions_server_name"],
    )  # fmt: skip
    assert LEAF_DNS_NAME in client_hellos.stdout.split(), client_hellos.stderr
    posts = run([tshark, "-r", http_pcap, "-Y", 'http.request.method == "POST"', "-T", "fields", "-e", "ip.src"])
    assert posts.stdout.split() == [CLIENT_IP], posts.stderr


def test_verify_tls_uses_the_client_trust_store(server: Namespaces, client_trust_store: Path) -> None:
    command: list[str | Path] = [sys.executable, VERIFY_TLS, f"{SERVER_IP}:443", "--servername", LEAF_DNS_NAME]
    trusted = in_client(server, command, client_trust_store)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert "verified against system trust store" in trusted.stdout

    stock = in_client(server, command, trust_store=None)
    assert stock.returncode == 1
    assert "unknown CA" in stock.stdout
