"""TLS material for the host gate: a good set and the wrong-but-well-formed look-alikes it must refuse.

Every wrong set parses, and most are what a careless or hostile writer of the SSM parameters could produce:
an extra CA in the chain, a second anchor in the bundle, a leaf that is a CA, a name only in the CN, a wrong key
usage, an expired intermediate, a chain out of order, a forged intermediate with a real CA's name... The
hierarchy mirrors a `prod` stack: a root, a subordinate that issues the leaf, a full chain of leaf + subordinate
+ root and a CA bundle of subordinate + root, both pinned.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST_NAME = "ip-10-0-1-5.eu-west-1.compute.internal"
FLEET_NAME = "*.eu-west-1.compute.internal"
NOW = datetime.datetime.now(datetime.UTC)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_DAY = datetime.timedelta(days=1)


def new_key(kind: str = "ec") -> PrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa")))


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: PrivateKey, password: bytes | None = None) -> str:
    encryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )  # fmt: skip
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _usage(*allowed: str) -> x509.KeyUsage:
    flags = dict.fromkeys(
        ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
         "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
        False,
    )  # fmt: skip
    flags.update(dict.fromkeys(allowed, True))
    return x509.KeyUsage(**flags)


@dataclass(frozen=True)
class Ca:
    key: PrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> str:
        return pem(self.certificate)


def new_ca(
    common_name: str,
    *,
    issuer: Ca | None = None,
    days: tuple[float, float] = (-1, 3650),
    is_ca: bool = True,
    extended_key_usage: Sequence[x509.ObjectIdentifier] | None = None,
    signing_key: PrivateKey | None = None,
    issuer_name: x509.Name | None = None,
) -> Ca:
    """A CA (root when `issuer` is None); `signing_key`/`issuer_name` forge one that only claims an issuer."""
    key = new_key()
    builder = (
        x509.CertificateBuilder().subject_name(_name(common_name))
        .issuer_name(issuer_name or (issuer.certificate.subject if issuer else _name(common_name)))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW + days[0] * _DAY).not_valid_after(NOW + days[1] * _DAY)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(_usage("key_cert_sign", "crl_sign") if is_ca else _usage("digital_signature"), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )  # fmt: skip
    if extended_key_usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended_key_usage), critical=False)
    signer = signing_key or (issuer.key if issuer else key)
    return Ca(key, builder.sign(signer, hashes.SHA256()))


@dataclass(frozen=True)
class Material:
    """What the three SSM parameters hold: the full chain, the key and the CA bundle (all PEM)."""

    full_chain: str
    key: str
    bundle: str
    leaf: x509.Certificate


@dataclass(frozen=True)
class LeafOptions:
    names: Sequence[str] = (FLEET_NAME,)
    ip_addresses: Sequence[str] = ()
    common_name: str | None = None
    subject_alt_name: bool = True
    is_ca: bool | None = False
    extended_key_usage: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,)
    key_usage: Sequence[str] | None = ("digital_signature",)
    key: str = "ec"
    days: tuple[float, float] = (-1, 90)
    digest: str = "sha256"
    self_signed: bool = False


def new_leaf(issuer: Ca, options: LeafOptions = LeafOptions()) -> tuple[x509.Certificate, PrivateKey]:
    key = new_key(options.key)
    subject = _name(options.common_name or (options.names[0] if options.names else HOST_NAME))
    builder = (
        x509.CertificateBuilder().subject_name(subject)
        .issuer_name(subject if options.self_signed else issuer.certificate.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW + options.days[0] * _DAY).not_valid_after(NOW + options.days[1] * _DAY)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                key.public_key() if options.self_signed else issuer.key.public_key()
            ),
            critical=False,
        )
    )  # fmt: skip
    if options.is_ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=options.is_ca, path_length=None), critical=True)
    if options.key_usage is not None:
        builder = builder.add_extension(_usage(*options.key_usage), critical=True)
    if options.extended_key_usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(options.extended_key_usage), critical=False)
    if options.subject_alt_name:
        general_names: list[x509.GeneralName] = [x509.DNSName(name) for name in options.names]
        general_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in options.ip_addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    certificate = builder.sign(key if options.self_signed else issuer.key, hashes.SHA256())
    if options.digest != "sha256":
        certificate = _resigned(certificate, key, issuer, options.digest)
    return certificate, key


def _resigned(certificate: x509.Certificate, key: PrivateKey, issuer: Ca, digest: str) -> x509.Certificate:
    """`certificate` issued again by `issuer` with `digest`, through the openssl CLI (cryptography refuses SHA-1)."""
    with tempfile.TemporaryDirectory() as scratch:
        paths = {name: Path(scratch, name) for name in ("in.pem", "in.key", "req.pem", "ca.pem", "ca.key", "out.pem")}
        paths["in.pem"].write_text(pem(certificate))
        paths["in.key"].write_text(key_pem(key))
        paths["ca.pem"].write_text(issuer.pem)
        paths["ca.key"].write_text(key_pem(issuer.key))
        for command in (
            ["x509", "-x509toreq", "-in", paths["in.pem"], "-signkey", paths["in.key"], "-copy_extensions", "copyall",
             "-out", paths["req.pem"]],
            ["x509", "-req", "-in", paths["req.pem"], "-CA", paths["ca.pem"], "-CAkey", paths["ca.key"], f"-{digest}",
             "-copy_extensions", "copyall", "-days", "90", "-out", paths["out.pem"]],
        ):  # fmt: skip
            subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
        return x509.load_pem_x509_certificate(paths["out.pem"].read_bytes())


@dataclass
class Pki:
    """Root -> subordinate -> leaves, as a `prod` stack has them; `pins` are what the hosts know."""

    root: Ca = field(default_factory=lambda: new_ca("pca-backend test root"))
    subordinate: Ca = field(init=False)

    def __post_init__(self) -> None:
        self.subordinate = new_ca("pca-backend test subordinate", issuer=self.root)

    @property
    def pins(self) -> list[str]:
        return [fingerprint(self.subordinate.certificate), fingerprint(self.root.certificate)]

    @property
    def bundle(self) -> str:
        return self.subordinate.pem + self.root.pem

    def issue(self, options: LeafOptions = LeafOptions(), *, issuer: Ca | None = None) -> Material:
        """A leaf from the subordinate (or `issuer`), with the full chain and bundle a stack would store."""
        issuer = issuer or self.subordinate
        leaf, key = new_leaf(issuer, options)
        chain = self.subordinate.pem + self.root.pem if issuer is self.subordinate else self.root.pem
        return Material(pem(leaf) + chain, key_pem(key), self.bundle, leaf)


def _forged_subordinate(pki: Pki) -> Ca:
    """A CA with the subordinate's name that claims the root as issuer, signed by a key of its own."""
    return new_ca(
        "pca-backend test subordinate", signing_key=new_key(), issuer_name=pki.root.certificate.subject
    )  # fmt: skip


def _wrong_set_builders(pki: Pki) -> dict[str, Callable[[], Material]]:
    other_ca = new_ca("another CA")
    sub, root = pki.subordinate.pem, pki.root.pem

    def good(options: LeafOptions = LeafOptions()) -> Callable[[], Material]:
        return lambda: pki.issue(options)

    def altered(change: Callable[[Material], dict[str, str]], issuer: Ca | None = None) -> Callable[[], Material]:
        """A good set (from `issuer`) with the parts `change` returns replaced."""

        def build() -> Material:
            material = pki.issue(issuer=issuer)
            parts = {"full_chain": material.full_chain, "key": material.key, "bundle": material.bundle}
            return Material(**{**parts, **change(material)}, leaf=material.leaf)

        return build

    def leaf(material: Material) -> str:
        return pem(material.leaf)

    def forged(twin_in_bundle: bool) -> Callable[[], Material]:
        def build() -> Material:
            impostor = _forged_subordinate(pki)
            certificate, key = new_leaf(impostor)
            bundle = pki.bundle if twin_in_bundle else root
            return Material(pem(certificate) + impostor.pem + root, key_pem(key), bundle, certificate)

        return build

    def via(intermediate: Ca, *, in_bundle: bool = False) -> Callable[[], Material]:
        bundle = intermediate.pem + root if in_bundle else pki.bundle
        return altered(lambda m: {"full_chain": leaf(m) + intermediate.pem + root, "bundle": bundle}, intermediate)

    client_auth_only = (ExtendedKeyUsageOID.CLIENT_AUTH,)
    return {
        # The four the first host gate installed.
        "chain-carries-an-unrelated-ca": altered(lambda m: {"full_chain": m.full_chain + other_ca.pem}),
        "bundle-adds-a-second-anchor": altered(lambda m: {"bundle": m.bundle + other_ca.pem}),
        "leaf-is-a-ca": good(LeafOptions(is_ca=True, key_usage=("digital_signature", "key_cert_sign"))),
        "host-only-in-the-cn": good(LeafOptions(common_name=HOST_NAME, subject_alt_name=False)),
        # More look-alikes.
        "host-in-the-cn-other-names-in-the-san": good(LeafOptions(common_name=HOST_NAME, names=("api.example",))),
        "host-ip-but-not-its-name": good(LeafOptions(names=("api.example",), ip_addresses=("10.0.1.5",))),
        "wildcard-two-labels-up": good(LeafOptions(names=("*.compute.internal",))),
        "partial-label-wildcard": good(LeafOptions(names=("ip-*.eu-west-1.compute.internal",))),
        "client-auth-only": good(LeafOptions(extended_key_usage=client_auth_only)),
        "key-usage-without-digital-signature": good(LeafOptions(key="rsa2048", key_usage=("key_encipherment",))),
        "key-of-another-algorithm": altered(lambda m: {"key": key_pem(new_key("rsa2048"))}),
        "key-of-another-rotation": altered(lambda m: {"key": pki.issue().key}),
        "encrypted-key": altered(lambda m: {"key": key_pem(new_key(), password=b"not-for-hosts")}),
        "weak-rsa-1024-leaf": good(LeafOptions(key="rsa1024")),
        "sha1-signed-leaf": good(LeafOptions(digest="sha1")),
        "expired-leaf": good(LeafOptions(days=(-30, -1))),
        "not-yet-valid-leaf": good(LeafOptions(days=(2, 90))),
        "expired-intermediate": via(new_ca("dated subordinate", issuer=pki.root, days=(-400, -1))),
        "not-yet-valid-intermediate": via(new_ca("dated subordinate", issuer=pki.root, days=(2, 400))),
        "intermediate-is-not-a-ca": via(new_ca("not a CA", issuer=pki.root, is_ca=False)),
        "intermediate-for-client-auth-only": via(
            new_ca("client CA", issuer=pki.root, extended_key_usage=client_auth_only)
        ),
        "chain-in-the-wrong-order": altered(lambda m: {"full_chain": leaf(m) + root + sub}),
        "leaf-after-its-issuer": altered(lambda m: {"full_chain": sub + leaf(m) + root}),
        "duplicate-certificate": altered(lambda m: {"full_chain": leaf(m) + sub + sub + root}),
        "duplicate-anchor-in-the-bundle": altered(lambda m: {"bundle": sub + root + root}),
        "pinned-root-plus-an-unpinned-intermediate": via(
            new_ca("unpinned subordinate", issuer=pki.root), in_bundle=True
        ),
        "self-signed-leaf": good(LeafOptions(self_signed=True, names=(HOST_NAME,))),
        "issued-by-another-ca-that-it-carries": altered(lambda m: {"full_chain": leaf(m) + other_ca.pem}, other_ca),
        "issued-by-another-ca": altered(lambda m: {"full_chain": leaf(m)}, other_ca),
        "forged-intermediate": forged(twin_in_bundle=False),
        "forged-intermediate-beside-the-real-one": forged(twin_in_bundle=True),
        "bundle-is-a-leaf": altered(lambda m: {"bundle": leaf(m)}),
        "bundle-carries-a-private-key": altered(lambda m: {"bundle": m.bundle + m.key}),
        "corrupt-bundle": altered(lambda m: {"bundle": m.bundle[:300]}),
    }


_FINGERPRINT = r"sha256 [0-9a-f]{16}"
#: Why each wrong set is refused: a regular expression the gate's one line on stderr must match.
REFUSALS: dict[str, str] = {
    "chain-carries-an-unrelated-ca": rf"the full chain carries certificate 4 of the full chain \(CN=another CA, "
    rf"{_FINGERPRINT}\), which is not on the certificate's issuing path",
    "bundle-adds-a-second-anchor": rf"certificate 3 of the CA bundle \(CN=another CA, {_FINGERPRINT}\) is not pinned",
    "leaf-is-a-ca": r"the certificate \(CN=.*\) is a CA certificate \(basicConstraints cA\), not a server certificate",
    "host-only-in-the-cn": rf"the certificate \(CN={HOST_NAME}, .*\) does not name this host \({HOST_NAME}\) in its "
    "subjectAltName",
    "host-in-the-cn-other-names-in-the-san": rf"does not name this host \({HOST_NAME}\)",
    "host-ip-but-not-its-name": rf"does not name this host \({HOST_NAME}\)",
    "wildcard-two-labels-up": rf"does not name this host \({HOST_NAME}\)",
    "partial-label-wildcard": rf"does not name this host \({HOST_NAME}\)",
    "client-auth-only": r"has an extendedKeyUsage without serverAuth",
    "key-usage-without-digital-signature": r"has a keyUsage without digitalSignature",
    "key-of-another-algorithm": r"the private key does not match the certificate",
    "key-of-another-rotation": r"the private key does not match the certificate",
    "encrypted-key": r"the private key cannot be read",
    "weak-rsa-1024-leaf": r"openssl does not verify the certificate .*: .*EE certificate key too weak",
    "sha1-signed-leaf": r"openssl does not verify the certificate .*: .*digest algorithm too weak",
    "expired-leaf": r"openssl does not verify the certificate .*: .*certificate has expired",
    "not-yet-valid-leaf": r"openssl does not verify the certificate .*: .*certificate is not yet valid",
    "expired-intermediate": r"openssl .*: error \d+ at 1 depth .*certificate has expired",
    "not-yet-valid-intermediate": r"openssl .*: error \d+ at 1 depth .*certificate is not yet valid",
    "intermediate-is-not-a-ca": r"openssl does not verify the certificate .*: error \d+ at 1 depth",
    "intermediate-for-client-auth-only": r"openssl .*: error \d+ at 1 depth .*unsuitable certificate purpose",
    "chain-in-the-wrong-order": r"the full chain is out of order: certificate 2 of the full chain "
    rf"\(CN=pca-backend test root, {_FINGERPRINT}\) is not the issuer of the one before it",
    "leaf-after-its-issuer": r"the certificate \(CN=pca-backend test subordinate, .*\) is a CA certificate",
    "duplicate-certificate": r"certificates 2 and 3 of the full chain are the same \(CN=pca-backend test subordinate",
    "duplicate-anchor-in-the-bundle": r"certificates 2 and 3 of the CA bundle are the same \(CN=pca-backend test root",
    "pinned-root-plus-an-unpinned-intermediate": rf"\(CN=unpinned subordinate, {_FINGERPRINT}\) is not pinned",
    "self-signed-leaf": r"the certificate \(.*\) is self-signed but not in the CA bundle",
    "issued-by-another-ca-that-it-carries": r"certificate 2 of the full chain \(CN=another CA, .*\) is self-signed but "
    "not in the CA bundle",
    "issued-by-another-ca": r"was issued by a CA that is neither in the full chain nor in the bundle",
    "forged-intermediate": r"openssl .*: error \d+ at 1 depth .*certificate signature failure",
    "forged-intermediate-beside-the-real-one": r"has 2 candidate issuers with the same name",
    "bundle-is-a-leaf": r"certificate 1 of the CA bundle \(.*\) is not a CA certificate",
    "bundle-carries-a-private-key": r"block 3 of the CA bundle is not a CERTIFICATE",
    "corrupt-bundle": r"the CA bundle holds no PEM certificate",
}


def wrong_set(pki: Pki, case: str) -> Material:
    """The wrong set named `case` (a key of REFUSALS), built for `pki`."""
    return _wrong_set_builders(pki)[case]()


def wrong_set_names(pki: Pki) -> set[str]:
    return set(_wrong_set_builders(pki))
