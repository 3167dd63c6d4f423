"""sslyze scans nginx serving the rendered config and checks it against Mozilla's "intermediate" profile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sslyze import (
    CertificateInfoExtraArgument,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanResult,
    ServerScanStatusEnum,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)
from sslyze.plugins.session_resumption.implementation import TlsResumptionSupportEnum

from components.local.nginx import running_nginx, tls_server_block, write_standalone_conf
from components.local.process import free_port
from components.local.tls import LEAF_DNS_NAME, Pki, make_pki

# sslyze's bundled public trust stores contain a certificate with a negative serial number; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")

ECDHE_AEAD_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}


@dataclass(frozen=True)
class Scan:
    key_type: str
    pki: Pki
    result: ServerScanResult


def scan_nginx(pki: Pki, server_block: str, workdir: Path, port: int) -> ServerScanResult:
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname=LEAF_DNS_NAME, port=port, ip_address="127.0.0.1"),
        network_configuration=ServerNetworkConfiguration(tls_server_name_indication=LEAF_DNS_NAME),
        scan_commands={*SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER, ScanCommand.SESSION_RESUMPTION},
        # sslyze validates the chain against public trust stores (Mozilla, Apple, ...), which cannot know a
        # private CA; adding the test root as its custom store keeps the path validation check meaningful
        # (the served chain must still lead to that root) instead of excluding it.
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=pki.ca_bundle)
        ),
    )
    with running_nginx(write_standalone_conf(workdir, server_block), [port]):
        scanner = Scanner()
        scanner.queue_scans([request])
        results = list(scanner.get_results())
    assert len(results) == 1
    assert results[0].scan_status == ServerScanStatusEnum.COMPLETED, results[0].connectivity_error_trace
    return results[0]


@pytest.fixture(scope="module", params=["ec", "rsa"], ids=["ecdsa-p256", "rsa-2048"])
def scan(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Scan:
    key_type: str = request.param
    pki = make_pki(tmp_path_factory.mktemp(f"pki-{key_type}"), key_type=key_type)
    port = free_port()
    result = scan_nginx(pki, tls_server_block(pki, port), tmp_path_factory.mktemp(f"nginx-{key_type}"), port)
    return Scan(key_type, pki, result)


def test_complies_with_mozilla_intermediate(scan: Scan) -> None:
    profile = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    try:
        check_server_against_tls_configuration(scan.result, profile)
    except ServerNotCompliantWithTlsConfiguration as error:
        pytest.fail(f"{scan.key_type}: not Mozilla intermediate: {error.issues}")


def test_only_tls12_and_tls13_with_ecdhe_aead_suites(scan: Scan) -> None:
    results = scan.result.scan_result
    assert results is not None
    for old in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
        attempt = getattr(results, f"{old}_cipher_suites")
        assert attempt.status == ScanCommandAttemptStatusEnum.COMPLETED
        assert not attempt.result.is_tls_version_supported, f"{old} must be refused"
    tls12 = results.tls_1_2_cipher_suites.result
    assert tls12 is not None
    accepted = {suite.cipher_suite.name for suite in tls12.accepted_cipher_suites}
    signature = "ECDSA" if scan.key_type == "ec" else "RSA"
    assert accepted == {name for name in ECDHE_AEAD_SUITES if f"_{signature}_" in name}
    tls13 = results.tls_1_3_cipher_suites.result
    assert tls13 is not None
    assert tls13.is_tls_version_supported


def test_chain_is_complete_and_leads_to_the_test_root(scan: Scan) -> None:
    results = scan.result.scan_result
    assert results is not None
    assert results.certificate_info.result is not None
    deployment = results.certificate_info.result.certificate_deployments[0]
    assert len(deployment.received_certificate_chain) == 2, "leaf + subordinate CA (the full chain)"
    assert deployment.verified_certificate_chain is not None
    assert deployment.received_chain_has_valid_order, "leaf first, then its issuer"
    assert deployment.received_chain_contains_anchor_certificate is False, "the root is not sent"


def test_resumption_uses_the_session_cache_not_tickets(scan: Scan) -> None:
    results = scan.result.scan_result
    assert results is not None
    assert results.session_resumption.result is not None
    resumption = results.session_resumption.result
    assert resumption.session_id_resumption_result == TlsResumptionSupportEnum.FULLY_SUPPORTED
    assert resumption.tls_ticket_resumption_result == TlsResumptionSupportEnum.NOT_SUPPORTED


def test_the_checker_is_not_vacuous(tmp_path: Path) -> None:
    """Control: the same scan flags a config that adds a CBC suite, so a pass above means something."""
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    weakened = tls_server_block(pki, port).replace("ssl_ciphers ", "ssl_ciphers ECDHE-ECDSA-AES128-SHA:", 1)
    result = scan_nginx(pki, weakened, tmp_path / "nginx", port)
    profile = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    with pytest.raises(ServerNotCompliantWithTlsConfiguration) as excinfo:
        check_server_against_tls_configuration(result, profile)
    assert "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA" in excinfo.value.issues["ciphers"]
