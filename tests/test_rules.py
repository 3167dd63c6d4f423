"""`components/rules` without mocks: each rule once, and the promise that the package stays pure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from components.rules import aws, names, network

RULES = Path(__file__).resolve().parent.parent / "components" / "rules"


def test_rules_import_nothing_but_the_standard_library_and_each_other() -> None:
    """Settings, components, the provider and the renderers import these: no boto3, Pulumi or cryptography.

    Import lines are read as text: `ast.parse` trips a CPython 3.11 bug (SystemError, AST recursion depth
    mismatch) after the Pulumi mocks have run in the same process."""
    allowed = {"__future__", "collections", "dataclasses", "datetime", "ipaddress", "re", "typing", "urllib"}
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
        (1, None, 0, (0, 0)),
    ],
)
def test_renewal_window(validity: int, requested: int | None, days: int, allowed: tuple[int, int]) -> None:
    """One rule for certRenewBeforeDays (settings) and renew_before_days (the certificate provider)."""
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
    ("name", "expected"), [("api.example", True), ("api", False), ("*.api.example", False), ("api.example.", True)]
)
def test_fqdn(name: str, expected: bool) -> None:
    assert names.is_fqdn(name) is expected


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
