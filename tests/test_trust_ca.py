"""scripts/trust-ca against fake Debian and RHEL filesystem roots (the real update-ca-certificates runs).

Every test runs twice: under this interpreter and under Python 3.9, the hosts' python3 (tests/host_python.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from components.local.process import require_binary
from components.local.tls import Pki, make_pki
from tests.host_python import INTERPRETERS, interpreter_for
from tests.tls_fixtures import TRUST_CA, run

DEBIAN_ANCHORS = "usr/local/share/ca-certificates"
DEBIAN_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
RHEL_ANCHORS = "etc/pki/ca-trust/source/anchors"


_python = [sys.executable]


@pytest.fixture(autouse=True, params=INTERPRETERS)
def python(request: pytest.FixtureRequest) -> str:
    """The interpreter `trust_ca()` runs the script with, for this test."""
    _python[0] = interpreter_for(request.param)
    return _python[0]


def trust_ca(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    if stdin is not None:
        result = subprocess.run(
            [_python[0], str(TRUST_CA), *map(str, args)], input=stdin, capture_output=True, timeout=60
        )
        return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), "")
    return run([_python[0], TRUST_CA, *args])


def certificates(bundle: Path) -> set[x509.Certificate]:
    return set(x509.load_pem_x509_certificates(bundle.read_bytes()))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def debian_root(tmp_path: Path) -> Path:
    """A Debian trust layout with one distribution CA, so the bundle is never empty (as on a real host)."""
    require_binary("update-ca-certificates")
    root = tmp_path / "debian-root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')
    distribution_ca = make_pki(tmp_path / "distribution").ca_bundle
    (root / "usr/share/ca-certificates/mozilla").mkdir(parents=True)
    (root / "usr/share/ca-certificates/mozilla/Distribution_Root.crt").write_bytes(distribution_ca.read_bytes())
    (root / "etc/ca-certificates.conf").write_text("mozilla/Distribution_Root.crt\n")
    return root


@pytest.fixture
def rhel_root(tmp_path: Path) -> Path:
    root = tmp_path / "rhel-root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text('NAME="Amazon Linux"\nID="amzn"\nID_LIKE="fedora"\n')
    return root


def test_debian_install_writes_the_anchor_and_updates_the_bundle(debian_root: Path, pki: Pki) -> None:
    result = trust_ca("--root", debian_root, pki.ca_bundle)
    assert result.returncode == 0, result.stderr
    anchor = debian_root / DEBIAN_ANCHORS / "private-ca.crt"
    assert anchor.read_bytes() == pki.ca_bundle.read_bytes()
    assert oct(anchor.stat().st_mode & 0o777) == "0o644"
    assert "update-ca-certificates" in result.stdout
    distribution = debian_root / "usr/share/ca-certificates/mozilla/Distribution_Root.crt"
    assert certificates(debian_root / DEBIAN_BUNDLE) == certificates(pki.ca_bundle) | certificates(distribution)
    assert (debian_root / "etc/ssl/certs/private-ca.pem").resolve() == anchor.resolve()


def test_debian_install_twice_changes_nothing_the_second_time(debian_root: Path, pki: Pki) -> None:
    assert trust_ca("--root", debian_root, pki.ca_bundle).returncode == 0
    anchor = debian_root / DEBIAN_ANCHORS / "private-ca.crt"
    bundle = debian_root / DEBIAN_BUNDLE
    before = (anchor.stat().st_mtime_ns, bundle.stat().st_mtime_ns, bundle.read_bytes())

    second = trust_ca("--root", debian_root, pki.ca_bundle)
    assert second.returncode == 0, second.stderr
    assert "unchanged" in second.stdout
    assert "running" not in second.stdout, "no update when nothing changed"
    assert (anchor.stat().st_mtime_ns, bundle.stat().st_mtime_ns, bundle.read_bytes()) == before


def test_debian_reruns_the_update_when_a_previous_update_was_lost(debian_root: Path, pki: Pki) -> None:
    assert trust_ca("--root", debian_root, pki.ca_bundle, "--no-update").returncode == 0
    result = trust_ca("--root", debian_root, pki.ca_bundle)
    assert result.returncode == 0, result.stderr
    assert "running" in result.stdout
    assert pki.ca_bundle.read_text().strip() in (debian_root / DEBIAN_BUNDLE).read_text()


def test_debian_remove_takes_the_ca_out_of_the_bundle(debian_root: Path, pki: Pki) -> None:
    assert trust_ca("--root", debian_root, pki.ca_bundle).returncode == 0
    removed = trust_ca("--root", debian_root, "--remove")
    assert removed.returncode == 0, removed.stderr
    assert not (debian_root / DEBIAN_ANCHORS / "private-ca.crt").exists()
    bundle = (debian_root / DEBIAN_BUNDLE).read_text()
    assert pki.ca_bundle.read_text().strip() not in bundle
    assert "BEGIN CERTIFICATE" in bundle, "the distribution CA stays"
    assert not (debian_root / "etc/ssl/certs/private-ca.pem").is_symlink()

    again = trust_ca("--root", debian_root, "--remove")
    assert again.returncode == 0
    assert "unchanged" in again.stdout


def test_a_multi_certificate_bundle_gets_one_file_per_certificate(debian_root: Path, tmp_path: Path) -> None:
    first, second = make_pki(tmp_path / "a"), make_pki(tmp_path / "b")
    combined = tmp_path / "two-cas.pem"
    combined.write_bytes(first.ca_bundle.read_bytes() + b"\n# comment lines are fine\n" + second.ca_bundle.read_bytes())
    result = trust_ca("--root", debian_root, "--name", "corp", combined)
    assert result.returncode == 0, result.stderr
    anchors = sorted(path.name for path in (debian_root / DEBIAN_ANCHORS).iterdir())
    assert anchors == ["corp-1.crt", "corp-2.crt"]
    assert (debian_root / DEBIAN_ANCHORS / "corp-2.crt").read_bytes() == second.ca_bundle.read_bytes()

    # Rotating down to one CA leaves no stale anchor behind.
    result = trust_ca("--root", debian_root, "--name", "corp", first.ca_bundle)
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (debian_root / DEBIAN_ANCHORS).iterdir()) == ["corp.crt"]
    assert second.ca_bundle.read_text().strip() not in (debian_root / DEBIAN_BUNDLE).read_text()


def test_rhel_family_is_detected_and_uses_the_pki_anchors(rhel_root: Path, pki: Pki) -> None:
    result = trust_ca("--root", rhel_root, "--no-update", pki.ca_bundle)
    assert result.returncode == 0, result.stderr
    assert "(rhel)" in result.stdout
    anchor = rhel_root / RHEL_ANCHORS / "private-ca.pem"
    assert anchor.read_bytes() == pki.ca_bundle.read_bytes()

    again = trust_ca("--root", rhel_root, "--no-update", pki.ca_bundle)
    assert again.returncode == 0
    assert "unchanged" in again.stdout

    removed = trust_ca("--root", rhel_root, "--no-update", "--remove")
    assert removed.returncode == 0
    assert not anchor.exists()


def test_rhel_update_for_a_root_without_update_ca_trust_asks_for_no_update(rhel_root: Path, pki: Pki) -> None:
    result = trust_ca("--root", rhel_root, pki.ca_bundle)
    assert result.returncode == 1
    assert "--no-update" in result.stderr


def test_os_override_beats_detection(debian_root: Path, pki: Pki) -> None:
    result = trust_ca("--root", debian_root, "--os", "rhel", "--no-update", pki.ca_bundle)
    assert result.returncode == 0, result.stderr
    assert (debian_root / RHEL_ANCHORS / "private-ca.pem").exists()
    assert not (debian_root / DEBIAN_ANCHORS).exists()


@pytest.mark.parametrize("os_release", ["ID=alpine\n", None])
def test_unknown_os_exits_4(tmp_path: Path, pki: Pki, os_release: str | None) -> None:
    (tmp_path / "root/etc").mkdir(parents=True)
    if os_release is not None:
        (tmp_path / "root/etc/os-release").write_text(os_release)
    result = trust_ca("--root", tmp_path / "root", pki.ca_bundle)
    assert result.returncode == 4
    assert "--os" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("private_key", "private key"),
        ("garbage", "no PEM certificate"),
        ("empty", "no PEM certificate"),
        ("leaf", "not a CA certificate"),
        ("cert_then_key", "private key"),
        ("bad_base64", "base64"),
        ("not_der", "cannot be parsed"),
        ("binary", "not a PEM text file"),
        ("missing", "cannot read"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    debian_root: Path, pki: Pki, tmp_path: Path, content: str, message: str
) -> None:
    samples = {
        "private_key": pki.leaf_key.read_bytes(),
        "garbage": b"hello, this is not a certificate\n",
        "empty": b"",
        "leaf": pki.leaf_cert.read_bytes(),
        "cert_then_key": pki.ca_bundle.read_bytes() + pki.leaf_key.read_bytes(),
        "bad_base64": b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        "not_der": b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        "binary": b"\x30\x82\x01\x0a\xff\xfe",
    }
    source = tmp_path / "input.pem"
    if content in samples:
        source.write_bytes(samples[content])
    result = trust_ca("--root", debian_root, source)
    assert result.returncode == 3, result.stdout + result.stderr
    assert message in result.stderr
    assert not (debian_root / DEBIAN_ANCHORS).exists()


def test_reads_the_bundle_from_stdin(debian_root: Path, pki: Pki) -> None:
    result = trust_ca("--root", debian_root, "--no-update", "-", stdin=pki.ca_bundle.read_bytes())
    assert result.returncode == 0
    assert (debian_root / DEBIAN_ANCHORS / "private-ca.crt").read_bytes() == pki.ca_bundle.read_bytes()


@pytest.mark.parametrize(
    "arguments", [[], ["--remove", "bundle.pem"], ["--name", "../etc/passwd", "bundle.pem"], ["--os", "arch", "x"]]
)
def test_usage_errors_exit_2(arguments: list[str]) -> None:
    assert trust_ca(*arguments).returncode == 2


def test_help_runs_through_the_shebang_and_documents_exit_codes() -> None:
    result = run([TRUST_CA, "--help"])
    assert result.returncode == 0
    assert "exit codes:" in result.stdout
    for code in range(6):
        assert f"\n  {code}  " in result.stdout


def test_check_validates_without_writing(debian_root: Path, pki: Pki, tmp_path: Path) -> None:
    result = trust_ca("--check", "--root", debian_root, pki.ca_bundle)
    assert result.returncode == 0, result.stderr
    assert "holds 1 CA certificate(s)" in result.stdout
    assert not (debian_root / DEBIAN_ANCHORS).exists()

    truncated = tmp_path / "truncated.pem"
    truncated.write_text(pki.ca_bundle.read_text()[:200])
    result = trust_ca("--check", truncated)
    assert result.returncode == 3
    assert "no PEM certificate found" in result.stderr
    leaf = trust_ca("--check", pki.leaf_cert)
    assert leaf.returncode == 3
    assert "not a CA certificate" in leaf.stderr


def _pins_file(tmp_path: Path, *bundles: Path) -> Path:
    """A pins file (as the hosts' boot script writes it) for every certificate in `bundles`."""
    pins = tmp_path / "ca-pins"
    lines = ["# pinned CAs", ""]
    for bundle in bundles:
        lines += [certificate.fingerprint(hashes.SHA256()).hex() for certificate in certificates(bundle)]
    pins.write_text("\n".join(lines) + "\n")
    return pins


def test_pins_let_only_pinned_cas_in(rhel_root: Path, pki: Pki, tmp_path: Path) -> None:
    """Defence in depth behind the host gate: a bundle that gained an unpinned CA never reaches the trust store."""
    pins = _pins_file(tmp_path, pki.ca_bundle)
    result = trust_ca("--root", rhel_root, "--no-update", "--pins", pins, pki.ca_bundle)
    assert result.returncode == 0, result.stderr

    other = make_pki(tmp_path / "other")
    widened = tmp_path / "widened.pem"
    widened.write_bytes(pki.ca_bundle.read_bytes() + other.ca_bundle.read_bytes())
    for extra in ([], ["--check"]):
        refused = trust_ca("--root", rhel_root, "--no-update", *extra, "--pins", pins, widened)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert "certificate 2 (sha256 " in refused.stderr
        assert "is not pinned" in refused.stderr
    assert sorted(path.name for path in (rhel_root / RHEL_ANCHORS).iterdir()) == ["private-ca.pem"]
    # Without --pins (an operator's own use) the same bundle installs.
    assert trust_ca("--root", rhel_root, "--no-update", widened).returncode == 0


@pytest.mark.parametrize("content", ["", "# nothing\n", "AB" * 32 + "\n", "not a fingerprint\n"])
def test_an_invalid_pins_file_is_a_usage_error(pki: Pki, tmp_path: Path, content: str) -> None:
    pins = tmp_path / "ca-pins"
    pins.write_text(content)
    result = trust_ca("--check", "--pins", pins, pki.ca_bundle)
    assert result.returncode == 2, result.stderr
    assert "SHA-256 fingerprints" in result.stderr
    assert trust_ca("--check", "--pins", tmp_path / "missing", pki.ca_bundle).returncode == 2
    assert trust_ca("--remove", "--pins", pins).returncode == 2
