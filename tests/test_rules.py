"""`components/rules` without mocks: each rule once, and the promise that the package stays pure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from components.rules import aws, names, network, sizes

RULES = Path(__file__).resolve().parent.parent / "components" / "rules"


def test_rules_import_nothing_but_the_standard_library_and_each_other() -> None:
    """Settings, components, the provider and the renderers import these: no boto3, Pulumi or cryptography.

    Import lines are read as text: `ast.parse` trips a CPython 3.11 bug (SystemError, AST recursion depth
    mismatch) after the Pulumi mocks have run in the same process."""
    allowed = {
        "__future__",
        "collections",
        "dataclasses",
        "datetime",
        "difflib",
        "ipaddress",
        "math",
        "re",
        "typing",
        "urllib",
    }
    for path in sorted(RULES.glob("*.py")):
        statements = re.findall(r"^(?:from\s+([\w.]+)\s+import\s|import\s+([\w.]+)$)", path.read_text(), re.MULTILINE)
        assert statements or path.name == "__init__.py", f"{path.name}: no imports found; the pattern no longer matches"
        for module in (first or second for first, second in statements):
            assert module.split(".")[0] in allowed or module.startswith("components.rules"), f"{path.name}: {module}"


@pytest.mark.parametrize(
    ("text", "prefix", "expected"),
    [
        ("vpc-0a1b2c3d4e5f60718", "vpc", True),
        ("vpc-0a1b2c3d", "vpc", True),
        ("vpc-0a1b2c3d4", "vpc", False),
        ("vpc-0A1B2C3D", "vpc", False),
        ("subnet-0a1b2c3d4e5f60711", "subnet", True),
        ("subnet-0a1b2c3d4e5f60711", "vpc", False),
        ("sg-12", "sg", False),
        (None, "sg", False),
    ],
)
def test_resource_ids(text: object, prefix: str, expected: bool) -> None:
    assert aws.is_resource_id(text, prefix) is expected


@pytest.mark.parametrize(
    ("validity", "requested", "days", "allowed"),
    [
        (90, None, 30, (0, 89)),
        (90, 0, 0, (0, 89)),
        (90, 89, 89, (0, 89)),
        (7, None, 2, (0, 6)),
        (6, None, 2, (0, 5)),
        (3, None, 2, (0, 2)),
        (2, None, 1, (0, 1)),
        (1, None, 0, (0, 0)),
    ],
)
def test_renewal_window(validity: int, requested: int | None, days: int, allowed: tuple[int, int]) -> None:
    """One rule for certRenewBeforeDays (settings) and renew_before_days (the certificate provider). The default
    window is a third of the validity but at least two days while the validity leaves room: before, 2-day
    certificates had a 0-day window (replaced only once expired) and 3- to 5-day ones a 1-day window with no
    room for the expiry alarm inside it."""
    assert aws.renew_before_days(validity, requested) == days
    assert aws.renew_before_range(validity) == allowed
    low, high = aws.renew_before_range(0)
    assert low > high, "a certificate valid for no days has no renewal window"


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/healthz", None),
        ("/a/b-c_d.e~f", None),
        ("/", "use a path of its own"),
        ("healthz", "absolute URL path"),
        ("/healthz;", "absolute URL path"),
        ("/" + "a" * 1024, "at most 1024"),
        (None, "absolute URL path"),
        ("/healthz/", None),
        ("/healthz/../admin", "use '/admin'"),
        ("//healthz", "use '/healthz'"),
        ("/./healthz", "use '/healthz'"),
        ("/healthz/.", "use '/healthz/'"),
        ("/a//b/./c/../d", "use '/a/b/d'"),
        ("/../healthz", "climbs above the root"),
        ("/healthz/..", "'/' is the application's own location"),
    ],
)
def test_health_check_path(path: object, problem: str | None) -> None:
    found = aws.health_check_path_problem(path)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_security_group_rules_count_ipv4_and_ipv6_apart() -> None:
    v4 = [f"10.{i}.0.0/16" for i in range(30)]
    v6 = [f"fd00:{i:x}::/64" for i in range(30)]
    assert aws.security_group_rules_problem(v4 + v6, 2) is None, "60 of each is within the quota"
    assert "needs 62 IPv4 rules" in (aws.security_group_rules_problem([*v4, "10.99.0.0/16"], 2) or "")
    assert "needs 61 IPv6 rules" in (aws.security_group_rules_problem([*v6, *v6[:1] * 31], 1) or "")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:5000", None),
        ("http://127.8.9.10", None),
        ("http://localhost:4566/", None),
        ("http://[::1]:5000", None),
        ("https://acm-pca.vpce.example", None),
        ("http://10.0.0.5:5000", "use https"),
        ("http://acm-pca.internal", "use https"),
        ("ftp://127.0.0.1", "http(s) URL"),
        ("http://127.0.0.1:5000/path", "http(s) URL"),
        ("http://127.0.0.1:99999", "http(s) URL"),
        ("http://user@127.0.0.1", "http(s) URL"),
        ("http://127.0.0.1 ", "http(s) URL"),
    ],
)
def test_endpoint_url(url: str, problem: str | None) -> None:
    found = aws.endpoint_url_problem(url)
    assert (found is None) if problem is None else (found is not None and problem in found), found


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("/pca-backend/dev", None),
        ("/aws/x", "AWS reserves"),
        ("/SSM", "AWS reserves"),
        ("pca", "must look like /team/app"),
        ("/pca/", "must look like /team/app"),
        ("/" + "p" * 900, "at most 900"),
        ("/l" * 14, None),
        ("/l" * 15, "Parameter Store allows 15 levels"),
    ],
)
def test_parameter_prefix(prefix: str, problem: str | None) -> None:
    found = aws.parameter_prefix_problem(prefix)
    assert (found is None) if problem is None else (found is not None and problem in found), found


def test_tags() -> None:
    assert aws.tag_problems({"team": "platform"}) == []
    assert aws.tag_problems(["team"]) == ["must map tag keys to values, got ['team']"]
    assert "reserved for AWS" in aws.tag_problems({"aws:x": "y"})[0]
    assert "1-128 characters" in aws.tag_problems({"k" * 129: "v"})[0]
    assert "at most 256" in aws.tag_problems({"k": "v" * 257})[0]
    assert "control characters" in aws.tag_problems({"k": "a\nb"})[0]
    assert "AWS allows 50" in aws.tag_problems({f"k{i}": "v" for i in range(51)})[0]


def test_short_lived_cap() -> None:
    assert aws.short_lived_problem("certValidityDays", 7, "SHORT_LIVED_CERTIFICATE") is None
    assert aws.short_lived_problem("certValidityDays", 90, "GENERAL_PURPOSE") is None
    message = aws.short_lived_problem("validity_days", 8, "SHORT_LIVED_CERTIFICATE")
    assert message is not None
    assert message.startswith("validity_days is 8")
    assert "at most 7 days" in message


def test_template_arn_for() -> None:
    assert (
        aws.template_arn_for("EndEntityCertificate/V1", "aws-cn")
        == "arn:aws-cn:acm-pca:::template/EndEntityCertificate/V1"
    )
    with pytest.raises(ValueError, match="signs certificate authorities"):
        aws.template_arn_for("RootCACertificate/V1")
    with pytest.raises(ValueError, match="is not an ACM PCA template"):
        aws.template_arn_for("EndEntity")


def test_ca_arn_groups() -> None:
    match = aws.parse_ca_arn("arn:aws-us-gov:acm-pca:us-gov-west-1:123456789012:certificate-authority/0a-1b")
    assert match is not None
    assert (match["partition"], match["region"]) == ("aws-us-gov", "us-gov-west-1")
    assert aws.parse_ca_arn("arn:aws:acm:us-east-1:123456789012:certificate/0a") is None
    assert aws.parse_ca_arn(42) is None


@pytest.mark.parametrize(
    ("name", "certificate", "server"),
    [
        ("backend.example.com", True, True),
        ("*.ec2.internal", True, True),
        ("localhost", True, True),
        ("10.0.0.5", True, True),
        ("::1", True, False),
        ("under_score.example.com", False, True),
        ("10.0.0.256", False, True),
        ("a.example.com;", False, False),
        ("a b", False, False),
    ],
)
def test_certificate_and_server_names(name: str, certificate: bool, server: bool) -> None:
    assert names.is_certificate_name(name) is certificate
    assert names.is_server_name(name) is server


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("api.example", True),
        ("api", False),
        ("*.api.example", True),
        ("*.example", False),
        ("*.com", False),
        ("a.*.example", False),
        ("api.example.", False),
        (f"{'a' * 60}.abc", True),
        (f"{'a' * 60}.abcd", False),
    ],
)
def test_fqdn_is_what_acm_issues_for(name: str, expected: bool) -> None:
    """ACM's DomainName: wildcards allowed, no trailing dot, 64 characters (it becomes the common name)."""
    assert names.is_fqdn(name) is expected


def test_acm_domain_name_messages() -> None:
    assert "'api.example'" in (names.acm_domain_name_problem("api.example.") or "")
    assert "at most 64" in (names.acm_domain_name_problem(f"{'a' * 63}.ab") or "")
    assert "two labels or more" in (names.acm_domain_name_problem("api") or "")


def test_subject_fields() -> None:
    assert names.subject_field_problem("common_name", "C" * 64) is None
    assert "at most 64" in (names.subject_field_problem("common_name", "C" * 65) or "")
    assert names.subject_field_problem("locality", "L" * 128) is None
    assert "at most 128" in (names.subject_field_problem("locality", "L" * 129) or "")
    assert "control characters" in (names.subject_field_problem("organization", "A\u0085B") or "")
    assert "spaces" in (names.subject_field_problem("organization", " Example") or "")


@pytest.mark.parametrize(
    ("cidr", "halves"),
    [
        ("10.42.0.0/24", ["10.42.0.0/25", "10.42.0.128/25"]),
        ("10.0.0.0/16", ["10.0.0.0/17", "10.0.128.0/17"]),
        ("10.0.0.0/26", ["10.0.0.0/27", "10.0.0.32/27"]),
    ],
)
def test_subnet_cidrs(cidr: str, halves: list[str]) -> None:
    assert network.subnet_cidrs(cidr) == halves


@pytest.mark.parametrize("cidr", ["10.0.0.0/15", "10.0.0.0/27", "10.0.0.1/24", "fd00::/56", "nope", ""])
def test_subnet_cidrs_refused(cidr: str) -> None:
    with pytest.raises(ValueError, match="IPv4 network from /16 to /26"):
        network.subnet_cidrs(cidr)


def test_cidr_helpers() -> None:
    assert network.is_cidr("fd00::/8")
    assert not network.is_cidr("10.0.0.1/8")
    assert not network.is_cidr(None)
    assert network.is_world("::/0")
    assert not network.is_world("10.0.0.0/8")


def test_settings_import_neither_boto3_nor_pulumi() -> None:
    """Settings are pure: reading them must not load the provider's boto3 or Pulumi (before, a few constants
    pulled in components.certificate and components.network)."""
    code = (
        "import sys; import components.settings; "
        "heavy = ('boto3', 'botocore', 'pulumi', 'pulumi_aws', 'cryptography'); "
        "loaded = sorted(m for m in heavy if m in sys.modules); "
        "print(','.join(loaded))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=RULES.parent.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"components.settings loads {result.stdout.strip()}"


def test_only_local_tooling_imports_components_local() -> None:
    """The layers: Pulumi components and pure rules never depend on the local tooling."""
    for path in sorted(RULES.parent.rglob("*.py")):
        if "local" in path.relative_to(RULES.parent).parts[:1]:
            continue
        assert "components.local" not in path.read_text(), f"{path.name} imports local tooling"


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (aws.is_iam_role_arn, "arn:aws:iam::123456789012:role/deploy", "arn:aws:iam::123456789012:user/deploy"),
        (aws.is_iam_principal_arn, "arn:aws:iam::123456789012:user/ci", "arn:aws:iam::1234:role/ci"),
        (aws.is_kms_key_arn, "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab", "alias/aws/ssm"),
        (aws.is_sns_topic_arn, "arn:aws:sns:us-east-1:123456789012:alarms.fifo", "arn:aws:sns:us-east-1:1:alarms"),
        (aws.is_role_session_name, "pulumi-dev", "x"),
        (aws.is_external_id, "team:prod/1", "a b"),
    ],
)
def test_iam_kms_sns_shapes(rule: Any, good: str, bad: str) -> None:
    assert rule(good)
    assert not rule(bad)
    assert not rule(None)


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        (aws.is_region, "us-east-1\n"),
        (aws.is_parameter_path, "/pca/dev\n"),
        (names.is_server_name, "backend.example.com\n"),
        (aws.is_iam_role_arn, "arn:aws:iam::123456789012:role/deploy\n"),
        (lambda text: aws.is_resource_id(text, "vpc"), "vpc-0a1b2c3d\n"),
        (lambda text: aws.health_check_path_problem(text) is None, "/healthz\n"),
        (
            lambda text: aws.parse_ca_arn(text) is not None,
            f"arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/{'a' * 8}\n",
        ),
    ],
)
def test_a_trailing_newline_never_passes(rule: Any, text: str) -> None:
    """`$` matches before a final newline; every rule matches the whole string, so nothing reaches nginx or a
    shell script with a line break in it."""
    assert not rule(text)
    assert rule(text.rstrip("\n"))


def test_renewal_is_due_from_not_after_minus_renew_before() -> None:
    from datetime import UTC, datetime, timedelta

    not_after = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    opens = not_after - timedelta(days=30)
    assert not aws.renewal_due(not_after, 30, opens - timedelta(seconds=1))
    assert aws.renewal_due(not_after, 30, opens)
    assert aws.renewal_due(not_after, 0, not_after), "0 days: due once expired"
    assert not aws.renewal_due(not_after, 0, not_after - timedelta(seconds=1))


# --- issue 14: partitions and regions, architectures, formats, sizes ------------------------------------------

REGIONS = {"us-east-1": "aws", "eu-west-1": "aws", "cn-north-1": "aws-cn", "us-gov-west-1": "aws-us-gov"}


@pytest.mark.parametrize(
    ("arn", "regional", "problem"),
    [
        ("arn:aws:kms:us-east-1:123456789012:key/abcd", True, None),
        ("arn:aws:kms:eu-west-1:123456789012:key/abcd", True, "is in eu-west-1, not in us-east-1 (aws:region)"),
        ("arn:aws:iam::123456789012:role/ci", False, None),
        ("arn:aws-cn:iam::123456789012:role/ci", False, "partition aws-cn, not aws"),
        ("arn:awsfoo:iam::123456789012:role/ci", False, "partition awsfoo, not aws"),
        ("arn:aws-us-gov:sns:us-east-1:123456789012:ops", True, "partition aws-us-gov, not aws"),
        ("arn:aws:acm-pca:::template/EndEntityCertificate/V1", False, None),
        ("not an arn", True, None),
    ],
)
def test_arn_placement(arn: str, regional: bool, problem: str | None) -> None:
    found = aws.arn_placement_problem(arn, partition="aws", region="us-east-1", regional=regional)
    assert (found is None) if problem is None else (found is not None and problem in found), found


def test_arn_fields() -> None:
    parsed = aws.parse_arn("arn:aws-us-gov:acm-pca:us-gov-west-1:123456789012:certificate-authority/0a")
    assert parsed == aws.Arn("aws-us-gov", "acm-pca", "us-gov-west-1", "123456789012", "certificate-authority/0a")
    assert aws.parse_arn("arn:aws:iam") is None
    assert aws.parse_arn(None) is None


def test_partition_shapes_refuse_look_alikes() -> None:
    """The shapes accept aws and aws-<word> partitions; settings then compare with the stack's exactly."""
    for shape in (aws.is_kms_key_arn, aws.is_sns_topic_arn, aws.is_acm_certificate_arn):
        good = {
            aws.is_kms_key_arn: "arn:aws-cn:kms:cn-north-1:123456789012:key/abcd",
            aws.is_sns_topic_arn: "arn:aws-cn:sns:cn-north-1:123456789012:ops",
            aws.is_acm_certificate_arn: "arn:aws-cn:acm:cn-north-1:123456789012:certificate/0a",
        }[shape]
        assert shape(good)
        assert not shape(good.replace("arn:aws-cn:", "arn:awsfoo:"))
    assert aws.parse_ca_arn("arn:awscn:acm-pca:us-east-1:123456789012:certificate-authority/0a") is None


def test_regions_are_the_ones_aws_has() -> None:
    assert aws.region_problem("cn-north-1", REGIONS) is None
    assert "did you mean us-east-1?" in (aws.region_problem("us-eest-1", REGIONS) or ""), "us-west-1 is not in REGIONS"
    assert "is not a region AWS has" in (aws.region_problem("eu-west-9", REGIONS) or "")


@pytest.mark.parametrize(
    ("instance_type", "architecture"),
    [
        ("t3.micro", "x86_64"),
        ("m7i-flex.large", "x86_64"),
        ("m6a.large", "x86_64"),
        ("g4ad.xlarge", "x86_64"),
        ("u-6tb1.metal", "x86_64"),
        ("t4g.micro", "arm64"),
        ("m7g.large", "arm64"),
        ("c6gn.xlarge", "arm64"),
        ("c7gd.large", "arm64"),
        ("im4gn.large", "arm64"),
        ("is4gen.large", "arm64"),
        ("x2gd.large", "arm64"),
        ("g5g.xlarge", "arm64"),
        ("hpc7g.4xlarge", "arm64"),
        ("a1.large", "arm64"),
    ],
)
def test_instance_architecture(instance_type: str, architecture: str) -> None:
    assert aws.instance_architecture(instance_type) == architecture


def test_ami_parameter_architecture() -> None:
    assert aws.ami_parameter_architecture(aws.AL2023_AMI_PARAMETERS["arm64"]) == "arm64"
    assert aws.ami_parameter_architecture(aws.AL2023_AMI_PARAMETERS["x86_64"]) == "x86_64"
    assert aws.ami_parameter_architecture(
        "/aws/service/ami-amazon-linux-latest/al2023-ami-minimal-kernel-default-arm64"
    )
    assert aws.ami_parameter_architecture("/team/golden-ami") is None, "a name that does not say: not refused"


def test_special_ranges_and_overlaps_are_networks_not_text() -> None:
    assert network.special_range("127.0.0.0/8") == "127.0.0.0/8 (loopback)"
    assert network.special_range("169.254.169.0/24") == "169.254.0.0/16 (link-local)"
    assert network.special_range("ff02::/16") == "ff00::/8 (multicast)"
    assert network.special_range("10.0.0.0/8") is None
    assert network.special_range("0.0.0.0/0") is None, "the whole internet is not a special range"
    assert network.overlap_problems(["10.0.0.0/16", "10.1.0.0/16", "fd00::/64"]) == []
    assert network.overlap_problems(["fd00::/64", "FD00:0::/64"]) == [
        "'FD00:0::/64' and 'fd00::/64' are the same network; list it once"
    ]
    assert network.overlap_problems(["10.0.1.0/24", "10.0.0.0/16", "10.0.1.0/24"]) == [
        "'10.0.1.0/24' lies inside 10.0.0.0/16; list only 10.0.0.0/16"
    ], "the same text twice is the list rule's problem, reported once"
    for cidr in ("224.0.0.0/24", "169.254.0.0/24", "127.0.0.0/24", "240.0.0.0/24", "0.0.0.0/24"):
        with pytest.raises(ValueError, match="which AWS does not allow for a VPC"):
            network.subnet_cidrs(cidr)


# --- sizes: the estimates are upper bounds of what `cryptography` builds, and not far above them --------------

_KEYS: dict[str, Any] = {}


def _key(algorithm: str) -> Any:
    from components import x509 as project_x509

    if algorithm not in _KEYS:
        _KEYS[algorithm] = project_x509.generate_private_key(algorithm)
    return _KEYS[algorithm]


_SUBJECTS = (["backend.example.com"], ["c" * 64])
_ISSUERS = (["Root"], ["C" * 64, "O" * 64, "U" * 64, "US", "S" * 128, "L" * 128])
_NAME_SETS: tuple[list[str], ...] = (
    [],
    ["a.example.com", "10.0.0.5", "fd00::5"],
    [f"h{index}.{'a' * 60}.example.com" for index in range(30)],
)


def _real_certificate_pem(
    subject: list[str], issuer: list[str], key: str, issuer_key: str, names: list[str], crl_host: int
) -> str:
    """A certificate with the extensions ACM PCA's end-entity templates write, signed as ACM PCA signs."""
    import datetime as dt
    import ipaddress

    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    oids = [
        NameOID.COMMON_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.COUNTRY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.LOCALITY_NAME,
    ]

    def name(values: list[str]) -> cx509.Name:
        return cx509.Name([cx509.NameAttribute(oid, value) for oid, value in zip(oids, values, strict=False)])

    start = dt.datetime(2060, 1, 1, tzinfo=dt.UTC)  # GeneralizedTime: the longer encoding of a date
    builder = (
        cx509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(_key(key).public_key())
        .serial_number((1 << 158) | 12345)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .add_extension(cx509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(cx509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(
            cx509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(cx509.SubjectKeyIdentifier.from_public_key(_key(key).public_key()), critical=False)
        .add_extension(
            cx509.AuthorityKeyIdentifier.from_issuer_public_key(_key(issuer_key).public_key()), critical=False
        )
    )
    if names:
        general: list[cx509.GeneralName] = []
        for text in names:
            try:
                general.append(cx509.IPAddress(ipaddress.ip_address(text)))
            except ValueError:
                general.append(cx509.DNSName(text))
        builder = builder.add_extension(cx509.SubjectAlternativeName(general), critical=False)
    if crl_host:
        uri = f"http://{'h' * crl_host}/crl/01234567-89ab-cdef-0123-456789abcdef.crl"
        point = cx509.DistributionPoint([cx509.UniformResourceIdentifier(uri)], None, None, None)
        builder = builder.add_extension(cx509.CRLDistributionPoints([point]), critical=False)
    digest = hashes.SHA384() if issuer_key == "EC_secp384r1" else hashes.SHA256()
    return builder.sign(_key(issuer_key), digest).public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("key", sorted(sizes.KEY_SIZES))
@pytest.mark.parametrize("issuer_key", sorted(sizes.KEY_SIZES))
def test_certificate_size_bounds_real_certificates(key: str, issuer_key: str) -> None:
    for subject in _SUBJECTS:
        for issuer in _ISSUERS:
            for names_ in _NAME_SETS:
                for crl_host in (0, 253):
                    real = len(_real_certificate_pem(subject, issuer, key, issuer_key, names_, crl_host))
                    estimate = sizes.pem_size(
                        sizes.certificate_size(
                            subject=subject,
                            issuer=issuer,
                            key_algorithm=key,
                            issuer_key_algorithm=issuer_key,
                            names=names_,
                            crl_host_length=crl_host,
                        )
                    )
                    label = f"{key} by {issuer_key}, {len(names_)} names, CRL host {crl_host}"
                    assert real <= estimate, f"{label}: {real} > estimate {estimate}"
                    assert estimate - real <= 400, f"{label}: estimate {estimate} is far above {real}"


@pytest.mark.parametrize("key", sorted(sizes.KEY_SIZES))
def test_csr_size_bounds_real_csrs(key: str) -> None:
    """The certificate provider's own CSR (components.x509.build_csr), which also lists the CN as a SAN."""
    from components import x509 as project_x509

    for names_ in (["a.example.com"], [f"h{index}.{'a' * 60}.{'b' * 60}.example.com" for index in range(150)]):
        common_name = "backend.example.com"
        real = len(project_x509.build_csr(_key(key), common_name, project_x509.SubjectNames.parse(common_name, names_)))
        estimate = sizes.pem_size(
            sizes.csr_size(common_name=common_name, names=names_, key_algorithm=key), "CERTIFICATE REQUEST"
        )
        assert real <= estimate <= real + 16, f"{key}, {len(names_)} names: real {real}, estimate {estimate}"


def test_der_lengths() -> None:
    assert [sizes.tlv(n) for n in (0, 127, 128, 255, 256, 65535, 65536)] == [2, 129, 131, 258, 260, 65539, 65541]


def test_the_largest_private_key_fits_a_standard_parameter() -> None:
    """The private-key parameter stays in the Standard tier (4 KB): no key algorithm a setting allows outgrows
    it, so no setting needs a size check for it."""
    from components import x509 as project_x509

    largest = max(len(project_x509.private_key_pem(_key(algorithm))) for algorithm in sizes.KEY_SIZES)
    assert largest <= aws.PARAMETER_VALUE_MAX["Standard"], largest


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("10.0.1.5", "is an IP address"),
        ("api.internal.example.", "ends with a dot"),
        ("*.internal.example", "without a wildcard"),
        ("localhost", "two labels or more"),
        ("ip-10-0-1-5.ec2.internal", "EC2 instance name"),
        ("ip-10-0-1-5.eu-west-1.compute.internal", "EC2 instance name"),
        (42, "is not a DNS name"),
    ],
)
def test_a_service_name_names_the_service_never_one_host(name: object, why: str) -> None:
    problem = names.service_name_problem(name)
    assert problem is not None
    assert why in problem, problem


def test_service_names_are_dns_names_of_two_labels_or_more() -> None:
    assert names.service_name_problem("api.internal.example") is None
    assert names.service_name_problem("API.Internal.Example") is None


def test_a_long_value_is_shown_cut_with_its_length() -> None:
    assert names.shown("x" * 5000).endswith("... (5000 characters)")
    assert names.shown("short") == "'short'"
