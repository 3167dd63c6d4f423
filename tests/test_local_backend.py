"""scripts/local-backend's readiness: it is ready only when its own nginx serves its own certificate.

The functions are loaded from the script and run against real nginx on loopback; the whole script runs end to
end in tests/test_end_to_end.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components.local.nginx import running_nginx, tls_server_block, write_standalone_conf
from components.local.process import free_port, require_binary, stop_process
from components.local.tls import make_pki
from tests.project_tools import load_script


@pytest.fixture(scope="module")
def local_backend() -> ModuleType:
    return load_script("local-backend")


def leaf_der(certificate: Path) -> bytes:
    return x509.load_pem_x509_certificate(certificate.read_bytes()).public_bytes(serialization.Encoding.DER)


def test_not_ready_while_another_server_holds_the_port(local_backend: ModuleType, tmp_path: Path) -> None:
    require_binary("nginx")
    port = free_port()
    ours, theirs = make_pki(tmp_path / "ours"), make_pki(tmp_path / "theirs")
    other = write_standalone_conf(tmp_path / "other-server", tls_server_block(theirs, port))
    conf = write_standalone_conf(tmp_path / "backend", tls_server_block(ours, port))
    args = argparse.Namespace(listen="127.0.0.1", port=port)
    with running_nginx(other, [port]):
        # The other server answers TLS handshakes on the port all along; ours cannot bind it and gives up.
        with pytest.raises(local_backend.BackendError, match="another server owns the port"):
            local_backend.start_nginx(conf, args, leaf_der(ours.leaf_cert))
        with pytest.raises(local_backend.BackendError, match=rf"127\.0\.0\.1:{port} \(--port\) is not free"):
            local_backend.ensure_port_free("127.0.0.1", port, "--port")


def test_ready_when_its_own_nginx_serves_its_certificate(local_backend: ModuleType, tmp_path: Path) -> None:
    require_binary("nginx")
    port = free_port()
    local_backend.ensure_port_free("127.0.0.1", port, "--port")
    ours = make_pki(tmp_path / "ours")
    conf = write_standalone_conf(tmp_path / "backend", tls_server_block(ours, port))
    process = local_backend.start_nginx(
        conf, argparse.Namespace(listen="127.0.0.1", port=port), leaf_der(ours.leaf_cert)
    )
    try:
        assert process.poll() is None
        assert local_backend.served_certificate("127.0.0.1", port) == leaf_der(ours.leaf_cert)
    finally:
        stop_process(process)
