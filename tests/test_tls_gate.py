"""scripts/tls-gate, the host gate, run as hosts run it: its command-line contract, good sets and look-alikes.

Every test runs twice: under this interpreter and under Python 3.9, the hosts' python3 (tests/host_python.py).
The same look-alikes go through the rendered sync with real nginx in tests/test_host_sync.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.gate_material import (
    FLEET_NAME,
    HOST_NAME,
    REFUSALS,
    LeafOptions,
    Material,
    Pki,
    key_pem,
    new_ca,
    new_key,
    pem,
    wrong_set,
    wrong_set_names,
)
from tests.host_python import INTERPRETERS, interpreter_for
from tests.tls_fixtures import REPO

GATE = REPO / "scripts" / "tls-gate"
_python = [sys.executable]


@pytest.fixture(autouse=True, params=INTERPRETERS)
def python(request: pytest.FixtureRequest) -> str:
    """The interpreter `gate()` runs the script with, for this test."""
    _python[0] = interpreter_for(request.param)
    return _python[0]


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


class Files:
    """The gate's input files in a scratch directory."""

    def __init__(self, directory: Path, pins: Sequence[str]) -> None:
        self.directory = directory
        self.pins = directory / "ca-pins"
        self.pins.write_text("# pinned CAs\n" + "\n".join(pins) + "\n")

    def gate(self, material: Material, *names: str) -> subprocess.CompletedProcess[str]:
        paths = {}
        for part in ("full_chain", "key", "bundle"):
            paths[part] = self.directory / part
            paths[part].write_text(getattr(material, part))
        return run_gate(
            "--certificate", paths["full_chain"], "--key", paths["key"], "--bundle", paths["bundle"],
            "--pins", self.pins, *(argument for name in names or (HOST_NAME,) for argument in ("--name", name)),
        )  # fmt: skip


def run_gate(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_python[0], str(GATE), *map(str, arguments)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def files(tmp_path: Path, pki: Pki) -> Files:
    return Files(tmp_path, pki.pins)


def assert_accepted(result: subprocess.CompletedProcess[str]) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result.stderr


def test_every_wrong_set_has_a_reason(pki: Pki) -> None:
    assert wrong_set_names(pki) == set(REFUSALS)


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_look_alike_material_is_refused_with_one_line_saying_why(files: Files, pki: Pki, case: str) -> None:
    material = wrong_set(pki, case)
    result = files.gate(material)

    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert re.search(REFUSALS[case], result.stderr), result.stderr
    assert "PRIVATE KEY" not in result.stderr
    assert material.key.splitlines()[1] not in result.stderr, "the key must never be printed"


def test_the_look_alikes_are_what_their_names_say(pki: Pki) -> None:
    """The checks above refuse for the stated reason; here the material itself is checked to be that case."""
    sha1 = wrong_set(pki, "sha1-signed-leaf").leaf
    assert isinstance(sha1.signature_hash_algorithm, hashes.SHA1)
    weak = wrong_set(pki, "weak-rsa-1024-leaf").leaf.public_key()
    assert getattr(weak, "key_size", None) == 1024
    cn_only = wrong_set(pki, "host-only-in-the-cn").leaf
    with pytest.raises(x509.ExtensionNotFound):
        cn_only.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    client = wrong_set(pki, "client-auth-only").leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(client.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # Both forgeries carry the real subordinate's name and claim the real root as issuer.
    for case in ("forged-intermediate", "forged-intermediate-beside-the-real-one"):
        impostor = x509.load_pem_x509_certificates(wrong_set(pki, case).full_chain.encode())[1]
        assert impostor.subject == pki.subordinate.certificate.subject
        assert impostor.issuer == pki.root.certificate.subject
        assert impostor != pki.subordinate.certificate


@pytest.mark.parametrize(
    ("shape", "names"),
    [
        ("subordinate-chain-with-root", (HOST_NAME,)),
        ("subordinate-chain-without-root", (HOST_NAME,)),
        ("root-issued", (HOST_NAME,)),
        ("root-issued-leaf-only", (HOST_NAME,)),
        ("exact-names-and-an-ip", ("api.internal.example", HOST_NAME.upper() + ".", "10.0.1.5")),
        ("no-eku-no-key-usage", (HOST_NAME,)),
        ("rsa-leaf", (HOST_NAME,)),
        ("unpinned-intermediate-in-the-chain-only", (HOST_NAME,)),
    ],
)
def test_good_sets_pass_silently(files: Files, pki: Pki, shape: str, names: tuple[str, ...]) -> None:
    root = pki.root.pem
    if shape == "subordinate-chain-with-root":
        material = pki.issue()
    elif shape == "subordinate-chain-without-root":
        material = pki.issue()
        material = Material(pem(material.leaf) + pki.subordinate.pem, material.key, material.bundle, material.leaf)
    elif shape.startswith("root-issued"):
        material = pki.issue(issuer=pki.root)
        chain = pem(material.leaf) + ("" if shape.endswith("leaf-only") else root)
        material = Material(chain, material.key, root, material.leaf)
    elif shape == "exact-names-and-an-ip":
        material = pki.issue(LeafOptions(names=("api.internal.example", HOST_NAME), ip_addresses=("10.0.1.5",)))
    elif shape == "no-eku-no-key-usage":
        material = pki.issue(LeafOptions(extended_key_usage=None, key_usage=None, is_ca=None))
    elif shape == "rsa-leaf":
        material = pki.issue(LeafOptions(key="rsa2048", key_usage=("digital_signature", "key_encipherment")))
    else:
        unpinned = new_ca("intermediate only in the chain", issuer=pki.root)
        material = pki.issue(issuer=unpinned)
        material = Material(pem(material.leaf) + unpinned.pem + root, material.key, root, material.leaf)
    assert_accepted(files.gate(material, *names))


def test_a_wildcard_covers_one_label_only(files: Files, pki: Pki) -> None:
    material = pki.issue(LeafOptions(names=(FLEET_NAME,)))
    assert_accepted(files.gate(material, "ip-10-0-9-9.eu-west-1.compute.internal"))
    for name in ("eu-west-1.compute.internal", "a.ip-10-0-1-5.eu-west-1.compute.internal", "ip-10-0-1-5.ec2.internal"):
        result = files.gate(material, name)
        assert result.returncode == 1, name
        assert f"does not name this host ({name})" in result.stderr


def test_every_name_must_be_covered(files: Files, pki: Pki) -> None:
    material = pki.issue(LeafOptions(names=(FLEET_NAME,)))
    result = files.gate(material, HOST_NAME, "10.0.1.5")
    assert result.returncode == 1
    assert "does not name this host (10.0.1.5)" in result.stderr, "an IP matches IP entries only"


def test_pins_decide_and_a_bundle_of_pinned_cas_passes(tmp_path: Path, pki: Pki) -> None:
    material = pki.issue()
    only_root = Files(tmp_path, [pki.pins[1]])
    result = only_root.gate(material)
    assert result.returncode == 1
    assert "certificate 1 of the CA bundle (CN=pca-backend test subordinate" in result.stderr
    assert "is not pinned" in result.stderr
    # Extra pins (an old CA still pinned during a rotation) are fine.
    assert_accepted(Files(tmp_path, [*pki.pins, "ab" * 32]).gate(material))


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        ("", "holds no fingerprint"),
        ("# only a comment\n\n", "holds no fingerprint"),
        ("AB" * 32 + "\n", "line 1: not a SHA-256 fingerprint"),
        (":".join(["ab"] * 32) + "\n", "line 1: not a SHA-256 fingerprint"),
        ("ab" * 31 + "\n", "line 1: not a SHA-256 fingerprint"),
    ],
)
def test_an_invalid_pins_file_is_a_usage_error(tmp_path: Path, pki: Pki, pins: str, message: str) -> None:
    files = Files(tmp_path, [])
    files.pins.write_text(pins)
    result = files.gate(pki.issue())
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_usage_errors_exit_2(files: Files, pki: Pki) -> None:
    material = pki.issue()
    for part in ("full_chain", "key", "bundle"):
        (files.directory / part).write_text(getattr(material, part))
    base: list[str | Path] = ["--certificate", files.directory / "full_chain", "--key", files.directory / "key"]
    base += ["--bundle", files.directory / "bundle", "--pins", files.pins]
    cases: list[list[str | Path]] = [
        base,  # no --name
        [*base, "--name", "not a name"],
        [*base, "--name", "-bad-.example"],
        [*base[:2], "--key", files.directory / "missing", *base[4:], "--name", HOST_NAME],
        [*base[:-1], files.directory / "missing-pins", "--name", HOST_NAME],
        ["--name", HOST_NAME],
    ]
    for arguments in cases:
        result = run_gate(*arguments)
        assert result.returncode == 2, (arguments, result.stderr)
        assert result.stdout == ""
        assert "PRIVATE KEY" not in result.stderr


def test_an_empty_key_file_is_refused(files: Files, pki: Pki) -> None:
    material = pki.issue()
    result = files.gate(Material(material.full_chain, "", material.bundle, material.leaf))
    assert result.returncode == 1
    assert "the private key file is empty" in result.stderr


def test_a_key_file_holding_a_certificate_is_refused_without_printing_it(files: Files, pki: Pki) -> None:
    material = pki.issue()
    result = files.gate(Material(material.full_chain, material.full_chain, material.bundle, material.leaf))
    assert result.returncode == 1
    assert "the private key cannot be read" in result.stderr
    result = files.gate(Material(material.full_chain, key_pem(new_key()), material.bundle, material.leaf))
    assert result.returncode == 1
    assert "BEGIN" not in result.stderr


def test_help_documents_the_contract() -> None:
    result = run_gate("--help")
    assert result.returncode == 0
    for text in ("--certificate FULL_CHAIN_PEM", "--key KEY_PEM", "--bundle CA_BUNDLE_PEM", "--pins PINS_FILE"):
        assert text in result.stdout
    for code in ("0  the set may be installed", "1  refused", "2  usage error"):
        assert code in result.stdout
