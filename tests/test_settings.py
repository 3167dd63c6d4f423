"""`parse_settings` without Pulumi: defaults, every validation rule and how its message reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from components.settings import (
    AL2023_AMI_PARAMETER,
    DECLARED,
    DEFAULTS,
    IssuerSettings,
    Settings,
    SettingsError,
    botocore_regions,
    ec2_private_dns_wildcard,
    parse_settings,
)

CA_ARN = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555"
ACM_ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SUBNET_A, SUBNET_B, SUBNET_C = "subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60712", "subnet-0a1b2c3d"

WRITER = "arn:aws:iam::123456789012:role/deploy"
#: The least a stack with a backend needs: an existing network, ingress, a listener certificate, and who writes
#: the TLS parameters.
BACKEND: dict[str, Any] = {
    "vpcId": "vpc-0123456789abcdef0",
    "albSubnetIds": [SUBNET_A, SUBNET_B],
    "hostSubnetIds": [SUBNET_C],
    "albIngressCidrs": ["10.0.0.0/16"],
    "albCertificateArn": ACM_ARN,
    "parameterWriterArns": [WRITER],
}
SHORT_LIVED = {**BACKEND, "caUsageMode": "SHORT_LIVED_CERTIFICATE"}


def parse(raw: dict[str, Any] | None = None, region: str | None = "eu-west-1", **changes: Any) -> Settings:
    """`raw` (default: `BACKEND`) with `changes` on top."""
    config = {**(BACKEND if raw is None else raw), **changes}
    return parse_settings(config, stack="dev", project="pca-backend", region=region)


def problems(raw: dict[str, Any] | None = None, region: str | None = "eu-west-1", **changes: Any) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        parse(raw, region, **changes)
    assert str(caught.value).startswith("invalid stack configuration:")
    for problem in caught.value.problems:
        assert problem in str(caught.value), "the message lists every problem"
    return caught.value.problems


def problem_of(key: str, raw: dict[str, Any] | None = None, **changes: Any) -> str:
    """The one problem reported for `key` (the message starts with the setting's name)."""
    found = problems(raw, **changes)
    mine = [problem for problem in found if problem.startswith(f"{key}: ")]
    assert len(mine) == 1, f"expected one problem for {key}, got {found}"
    return mine[0]


def without(*keys: str) -> dict[str, Any]:
    return {key: value for key, value in BACKEND.items() if key not in keys}


# --- defaults ---------------------------------------------------------------------------------------------


def test_defaults_of_a_minimal_backend_config() -> None:
    settings = parse()
    assert settings.region == "eu-west-1"
    assert settings.endpoint_url is None
    assert settings.parameter_prefix == "/pca-backend/dev"
    assert settings.warnings == ()
    ca = settings.ca
    assert ca.mode == "root"
    assert ca.subject.common_name == "pca-backend dev CA"
    assert ca.subject.organization is None
    assert ca.subject.country is None
    assert ca.key_algorithm == "RSA_2048"
    assert ca.validity_years == 10
    assert ca.usage_mode == "GENERAL_PURPOSE"
    assert ca.permanent_deletion_days == 30
    assert ca.key_storage_security_standard == "FIPS_140_2_LEVEL_3_OR_HIGHER"
    assert (ca.crl_enabled, ca.crl_expiration_days, ca.crl_custom_cname) == (False, 7, None)
    assert ca.acm_permission is False
    assert ca.protect is True, "a CA is protected unless caProtect says otherwise"
    assert (ca.stack, ca.parent_arn) == (None, None)
    certificate = settings.certificate
    assert certificate is not None
    assert certificate.common_name is None
    assert certificate.names == ()
    assert certificate.key_algorithm == "EC_prime256v1"
    assert certificate.validity_days == 90
    assert certificate.renew_before_days is None
    assert certificate.template == "EndEntityServerAuthCertificate/V1"
    backend = settings.backend
    assert backend is not None
    assert backend.network_cidr is None
    assert backend.vpc_id == BACKEND["vpcId"]
    assert backend.alb_subnet_ids == (SUBNET_A, SUBNET_B)
    assert backend.host_subnet_ids == (SUBNET_C,)
    assert backend.alb_internal is True
    assert backend.alb_ingress_cidrs == ("10.0.0.0/16",)
    assert backend.peer_security_group_ids == ()
    assert backend.host_count == 2
    assert backend.instance_type == "t3.micro"
    assert backend.http_redirect is True
    assert backend.health_check_path == "/healthz"
    assert backend.alb_certificate_arn == ACM_ARN
    assert backend.alb_domain_name is None
    assert backend.ami_parameter == AL2023_AMI_PARAMETER
    assert backend.host_ami_id is None, "empty: the parameter's AMI at the first deployment, kept"


def test_empty_strings_mean_the_default() -> None:
    """Pulumi.yaml declares "" as the default of optional strings: it must read as unset."""
    settings = parse(caMode="", caCommonName="", caStack="", caCountry="", certCommonName="", parameterPrefix="")
    assert settings.ca.mode == "root"
    assert settings.ca.subject.common_name == "pca-backend dev CA"
    assert settings.ca.stack is None
    assert settings.certificate is not None
    assert settings.certificate.common_name is None
    assert settings.parameter_prefix == "/pca-backend/dev"


def test_explicit_values_are_kept() -> None:
    settings = parse(
        caCommonName="Example Root",
        caOrganization="Example Corp",
        caCountry="DE",
        caKeyAlgorithm="EC_secp384r1",
        caValidityYears=20,
        caPermanentDeletionDays=7,
        caCrlEnabled=True,
        caCrlExpirationDays=30,
        caCrlCustomCname="crl.example.com",
        certCommonName="backend.example.com",
        certNames=["backend.example.com", "10.0.0.5", "*.svc.example.com"],
        certKeyAlgorithm="RSA_3072",
        certValidityDays=30,
        certRenewBeforeDays=10,
        certTemplate="EndEntityCertificate/V1",
        hostCount=5,
        albInternal=False,
        albIngressCidrs=["0.0.0.0/0"],
        peerSecurityGroupIds=["sg-0123456789abcdef0"],
        parameterPrefix="/team/app",
    )
    assert settings.ca.subject.common_name == "Example Root"
    assert settings.ca.subject.country == "DE"
    assert settings.ca.key_algorithm == "EC_secp384r1"
    assert settings.ca.validity_years == 20
    assert (settings.ca.crl_enabled, settings.ca.crl_expiration_days) == (True, 30)
    assert settings.certificate is not None
    assert settings.certificate.names == ("backend.example.com", "10.0.0.5", "*.svc.example.com")
    assert settings.certificate.renew_before_days == 10
    assert settings.backend is not None
    assert settings.backend.alb_internal is False
    assert settings.parameter_prefix == "/team/app"


def test_validity_years_zero_means_ten_for_a_root_and_five_for_a_subordinate() -> None:
    assert parse(caValidityYears=0).ca.validity_years == 10
    assert parse(caMode="subordinate", caParentArn=CA_ARN).ca.validity_years == 5
    assert parse(caMode="subordinate", caParentArn=CA_ARN, caValidityYears=0).ca.validity_years == 5
    assert parse(caMode="subordinate", caParentArn=CA_ARN, caValidityYears=3).ca.validity_years == 3


def test_ca_modes_with_their_parents() -> None:
    stack_mode = parse(caMode="stack", caStack="organization/pca-backend/pki").ca
    assert (stack_mode.mode, stack_mode.stack, stack_mode.parent_arn) == ("stack", "organization/pca-backend/pki", None)
    by_stack = parse(caMode="subordinate", caStack="pki").ca
    assert (by_stack.stack, by_stack.parent_arn) == ("pki", None)
    by_arn = parse(caMode="subordinate", caParentArn=CA_ARN).ca
    assert (by_arn.stack, by_arn.parent_arn) == (None, CA_ARN)


def test_short_lived_ca_defaults_certificates_to_seven_days() -> None:
    settings = parse(SHORT_LIVED)
    assert settings.certificate is not None
    assert settings.certificate.validity_days == 7
    assert parse(SHORT_LIVED, certValidityDays=3).certificate.validity_days == 3  # type: ignore[union-attr]


def test_network_cidr_replaces_vpc_and_subnets() -> None:
    settings = parse(without("vpcId", "albSubnetIds", "hostSubnetIds"), networkCidr="10.42.0.0/24")
    assert settings.backend is not None
    assert settings.backend.network_cidr == "10.42.0.0/24"
    assert (settings.backend.vpc_id, settings.backend.alb_subnet_ids, settings.backend.host_subnet_ids) == ("", (), ())


def test_backend_disabled_needs_no_network_settings() -> None:
    settings = parse_settings({"backendEnabled": False}, stack="pki", project="pca-backend", region="us-east-1")
    assert settings.certificate is None
    assert settings.backend is None
    assert settings.ca.mode == "root"


def test_backend_settings_on_a_ca_only_stack_are_refused_not_ignored() -> None:
    """A CA-only stack deploys no backend: a backend setting there has no effect, so it is refused by name."""
    with pytest.raises(SettingsError) as caught:
        parse_settings(
            {"backendEnabled": "false", "hostCount": 3, "certNames": ["api.example.com"], "awsEndpointUrl": "x"},
            stack="pki",
            project="pca-backend",
            region="us-east-1",
        )
    assert sorted(caught.value.problems) == [
        f"{key}: applies only to the certificate and backend, and backendEnabled is false (a CA-only stack): remove it"
        for key in ("awsEndpointUrl", "certNames", "hostCount")
    ]
    defaults = {"backendEnabled": False, "hostCount": 2, "certNames": [], "parameterPrefix": ""}
    assert parse_settings(defaults, stack="pki", project="pca-backend", region="us-east-1").backend is None


@pytest.mark.parametrize(
    ("region", "wildcard"),
    [
        ("us-east-1", "*.ec2.internal"),
        ("us-east-2", "*.us-east-2.compute.internal"),
        ("eu-west-1", "*.eu-west-1.compute.internal"),
        ("ap-southeast-2", "*.ap-southeast-2.compute.internal"),
    ],
)
def test_ec2_private_dns_wildcard(region: str, wildcard: str) -> None:
    assert ec2_private_dns_wildcard(region) == wildcard


# --- values as Pulumi hands them over ----------------------------------------------------------------------


def test_values_given_as_strings_are_accepted() -> None:
    """`load_settings` passes scalars as the strings Pulumi gives it (lists already parsed from JSON)."""
    settings = parse(
        caCrlEnabled="true",
        caAcmPermission="False",
        caProtect="false",
        albInternal="TRUE",
        httpRedirect="false",
        caValidityYears="3",
        caPermanentDeletionDays="7",
        hostCount="4",
        certValidityDays="30",
        certRenewBeforeDays="0",
        albSubnetIds=[SUBNET_B, SUBNET_A],
    )
    assert settings.ca.crl_enabled is True
    assert settings.ca.acm_permission is False
    assert settings.ca.protect is False
    assert settings.ca.validity_years == 3
    assert settings.ca.permanent_deletion_days == 7
    assert settings.backend is not None
    assert settings.backend.alb_internal is True
    assert settings.backend.http_redirect is False
    assert settings.backend.host_count == 4
    assert settings.backend.alb_subnet_ids == (SUBNET_B, SUBNET_A)
    assert settings.certificate is not None
    assert (settings.certificate.validity_days, settings.certificate.renew_before_days) == (30, None)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("caCrlEnabled", "yes", "must be true or false"),
        ("albInternal", 1, "must be true or false"),
        ("hostCount", "two", "must be a whole number from 1 to 50"),
        ("hostCount", 2.5, "must be a whole number from 1 to 50"),
        ("hostCount", True, "must be a whole number from 1 to 50"),
        ("caValidityYears", "1.5", "must be a whole number from 0 to 30"),
        ("albSubnetIds", "subnet-1,subnet-2", "must be a list of strings"),
        ("certNames", [1, 2], "must be a list of strings"),
        ("caCommonName", 42, "must be a string"),
    ],
)
def test_values_of_the_wrong_type(key: str, value: Any, allowed: str) -> None:
    found = problems(**{key: value})
    assert any(problem.startswith(f"{key}: ") and allowed in problem for problem in found), found


# --- certificate authority rules ---------------------------------------------------------------------------


def test_unknown_ca_mode() -> None:
    message = problem_of("caMode", caMode="intermediate")
    assert "'intermediate'" in message
    assert "allowed: root, subordinate, stack" in message


@pytest.mark.parametrize("parent", [{"caStack": "pki"}, {"caParentArn": CA_ARN}])
def test_root_with_a_parent(parent: dict[str, Any]) -> None:
    message = problem_of("caMode", caMode="root", **parent)
    assert "caStack/caParentArn" in message
    assert "caMode stack" in message
    assert "subordinate" in message


def test_stack_mode_without_ca_stack() -> None:
    message = problem_of("caStack", caMode="stack")
    assert "required when caMode is stack" in message
    assert "org/pca-backend/pki" in message


def test_stack_mode_with_parent_arn() -> None:
    message = problem_of("caParentArn", caMode="stack", caStack="pki", caParentArn=CA_ARN)
    assert "only used with caMode subordinate" in message


@pytest.mark.parametrize("parents", [{}, {"caStack": "pki", "caParentArn": CA_ARN}])
def test_subordinate_needs_exactly_one_parent(parents: dict[str, Any]) -> None:
    message = problem_of("caMode", caMode="subordinate", **parents)
    assert "exactly one parent" in message
    assert "caStack" in message
    assert "caParentArn" in message


@pytest.mark.parametrize("name", ["org/project/stack/extra", "has space", "pki!", "/pki", "pki/"])
def test_bad_ca_stack_name(name: str) -> None:
    message = problem_of("caStack", caMode="stack", caStack=name)
    assert repr(name) in message
    assert "stack, project/stack or org/project/stack" in message


@pytest.mark.parametrize("name", ["pki", "pca-backend/pki", "organization/pca-backend/pki", "my_org/app.v2/prod-1"])
def test_good_ca_stack_names(name: str) -> None:
    assert parse(caMode="stack", caStack=name).ca.stack == name


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555",
        "arn:aws:acm-pca:us-east-1:1234:certificate-authority/11111111-2222-3333-4444-555555555555",
        "11111111-2222-3333-4444-555555555555",
        CA_ARN + "/certificate/abc",
    ],
)
def test_bad_ca_parent_arn(arn: str) -> None:
    message = problem_of("caParentArn", caMode="subordinate", caParentArn=arn)
    assert "is not an ACM PCA certificate authority ARN" in message


def test_parent_arn_in_other_partitions() -> None:
    arn = "arn:aws-us-gov:acm-pca:us-gov-west-1:123456789012:certificate-authority/0a1b2c3d-0000-1111-2222-333344445555"
    gov = {
        **BACKEND,
        "albCertificateArn": ACM_ARN.replace("arn:aws:acm:eu-west-1", "arn:aws-us-gov:acm:us-gov-west-1"),
        "parameterWriterArns": [WRITER.replace("arn:aws:", "arn:aws-us-gov:")],
    }
    assert parse(gov, region="us-gov-west-1", caMode="subordinate", caParentArn=arn).ca.parent_arn == arn
    assert "is in partition aws-us-gov, not aws" in problem_of("caParentArn", caMode="subordinate", caParentArn=arn)


@pytest.mark.parametrize("country", ["USA", "us", "U", "1A"])
def test_country_is_two_upper_case_letters(country: str) -> None:
    message = problem_of("caCountry", caCountry=country)
    assert repr(country) in message
    assert "two-letter ISO 3166 code" in message


def test_unknown_ca_key_algorithm() -> None:
    message = problem_of("caKeyAlgorithm", caKeyAlgorithm="RSA_1024")
    assert "'RSA_1024' is not allowed" in message
    assert "allowed: EC_prime256v1, EC_secp384r1, RSA_2048, RSA_3072, RSA_4096" in message


def test_unknown_cert_key_algorithm() -> None:
    assert "allowed: EC_prime256v1" in problem_of("certKeyAlgorithm", certKeyAlgorithm="ED25519")


@pytest.mark.parametrize("years", [-1, 31, 100])
def test_validity_years_out_of_range(years: int) -> None:
    message = problem_of("caValidityYears", caValidityYears=years)
    assert "from 0 to 30" in message
    assert str(years) in message


@pytest.mark.parametrize("days", [0, 6, 31, 365])
def test_permanent_deletion_days_outside_7_to_30(days: int) -> None:
    assert "must be from 7 to 30" in problem_of("caPermanentDeletionDays", caPermanentDeletionDays=days)


@pytest.mark.parametrize("days", [7, 30])
def test_permanent_deletion_days_bounds(days: int) -> None:
    assert parse(caPermanentDeletionDays=days).ca.permanent_deletion_days == days


def test_unknown_usage_mode_and_key_storage() -> None:
    found = problems(caUsageMode="CHEAP", caKeyStorageSecurityStandard="FIPS_140_3")
    assert any(p.startswith("caUsageMode: ") and "GENERAL_PURPOSE, SHORT_LIVED_CERTIFICATE" in p for p in found), found
    assert any(p.startswith("caKeyStorageSecurityStandard: ") and "FIPS_140_2_LEVEL_2_OR_HIGHER" in p for p in found)


def test_crl_with_short_lived_ca() -> None:
    message = problem_of("caCrlEnabled", SHORT_LIVED, caCrlEnabled=True)
    assert "SHORT_LIVED_CERTIFICATE CA has no CRL" in message


def test_acm_permission_with_short_lived_ca() -> None:
    message = problem_of("caAcmPermission", SHORT_LIVED, caAcmPermission=True)
    assert "ACM cannot issue from a SHORT_LIVED_CERTIFICATE CA" in message
    assert "GENERAL_PURPOSE" in message


def test_crl_expiration_days_range() -> None:
    assert "from 1 to 5000" in problem_of("caCrlExpirationDays", caCrlEnabled=True, caCrlExpirationDays=0)


# --- backend certificate rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("days", [8, 30, 90])
def test_cert_validity_over_seven_days_on_short_lived_ca(days: int) -> None:
    message = problem_of("certValidityDays", SHORT_LIVED, certValidityDays=days)
    assert f"is {days}" in message
    assert "a SHORT_LIVED_CERTIFICATE CA issues certificates of at most 7 days" in message


@pytest.mark.parametrize("days", [-1, 3651])
def test_cert_validity_range(days: int) -> None:
    assert "from 0 to 3650" in problem_of("certValidityDays", certValidityDays=days)


def test_cert_validity_zero_means_the_default() -> None:
    assert parse(certValidityDays=0).certificate.validity_days == 90  # type: ignore[union-attr]
    assert parse(SHORT_LIVED, certValidityDays=0).certificate.validity_days == 7  # type: ignore[union-attr]


@pytest.mark.parametrize(("validity", "renew_before"), [(90, 90), (90, 120), (30, 30), (7, 7)])
def test_renew_before_must_be_less_than_validity(validity: int, renew_before: int) -> None:
    message = problem_of("certRenewBeforeDays", certValidityDays=validity, certRenewBeforeDays=renew_before)
    assert f"must be from 0 to {validity - 1}" in message


def test_renew_before_just_under_validity() -> None:
    certificate = parse(certValidityDays=30, certRenewBeforeDays=29).certificate
    assert certificate is not None
    assert certificate.renew_before_days == 29


@pytest.mark.parametrize("name", ["bad name", "under_score.example.com", "-lead.example.com", "a..b", "*.com"])
def test_cert_names_with_an_invalid_name(name: str) -> None:
    message = problem_of("certNames", certNames=["good.example.com", name])
    assert repr(name) in message
    assert "a DNS name or IPv4 address" in message


def test_cert_names_reject_a_mistyped_ipv4_address() -> None:
    """The certificate provider refuses `10.0.0.256` (a DNS name never ends in an all-numeric label):
    settings must refuse it too, before any resource exists."""
    message = problem_of("certNames", certNames=["10.0.0.256"])
    assert "'10.0.0.256'" in message
    assert "a DNS name or IPv4 address" in message
    assert "'10.0.0.256'" in problem_of("certCommonName", certCommonName="10.0.0.256")


def test_cert_names_accept_dns_names_and_addresses() -> None:
    names = ["localhost", "backend.local.internal", "127.0.0.1", "*.ec2.internal", "Backend.Example.COM."]
    certificate = parse(certNames=names).certificate
    assert certificate is not None
    assert certificate.names == tuple(names)


@pytest.mark.parametrize("name", ["not a name", "*", "bad_name.example.com"])
def test_cert_common_name_invalid(name: str) -> None:
    message = problem_of("certCommonName", certCommonName=name)
    assert repr(name) in message
    assert "is not a DNS name or IPv4 address" in message


@pytest.mark.parametrize(
    "template",
    [
        "RootCACertificate/V1",
        "SubordinateCACertificate_PathLen0/V1",
        "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen1/V1",
    ],
)
def test_cert_template_cannot_be_a_ca_template(template: str) -> None:
    message = problem_of("certTemplate", certTemplate=template)
    assert "signs certificate authorities; use an end-entity template" in message


def test_cert_template_malformed() -> None:
    message = problem_of("certTemplate", certTemplate="EndEntity Certificate")
    assert "is not an ACM PCA template" in message
    assert "EndEntityServerAuthCertificate/V1" in message


@pytest.mark.parametrize(
    "template", ["EndEntityCertificate/V1", "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1"]
)
def test_cert_template_names_and_arns(template: str) -> None:
    certificate = parse(certTemplate=template).certificate
    assert certificate is not None
    assert certificate.template == template


# --- network and load balancer rules -----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["vpcId", "albSubnetIds", "hostSubnetIds"])
def test_network_cidr_with_vpc_or_subnets(key: str) -> None:
    raw = {**without("vpcId", "albSubnetIds", "hostSubnetIds"), key: BACKEND[key]}
    message = problem_of("networkCidr", raw, networkCidr="10.42.0.0/24")
    assert "cannot be combined with vpcId, albSubnetIds, hostSubnetIds" in message


@pytest.mark.parametrize("cidr", ["not-a-cidr", "10.42.0.1/24", "10.0.0.0/8", "10.0.0.0/27", "fd00::/64"])
def test_network_cidr_invalid_or_out_of_range(cidr: str) -> None:
    message = problem_of("networkCidr", without("vpcId", "albSubnetIds", "hostSubnetIds"), networkCidr=cidr)
    assert repr(cidr) in message
    assert "an IPv4 network from /16 to /26" in message
    assert not message.startswith("networkCidr: networkCidr"), "the setting is named once"


def test_missing_vpc_id() -> None:
    message = problem_of("vpcId", without("vpcId"))
    assert "is required" in message
    assert "networkCidr" in message


@pytest.mark.parametrize("subnets", [[], [SUBNET_A]])
def test_alb_needs_two_subnets(subnets: list[str]) -> None:
    assert "at least two availability zones" in problem_of("albSubnetIds", albSubnetIds=subnets)


def test_hosts_need_a_subnet() -> None:
    assert "at least one subnet" in problem_of("hostSubnetIds", hostSubnetIds=[])


@pytest.mark.parametrize("key", ["albSubnetIds", "hostSubnetIds"])
def test_subnet_ids_look_like_subnets(key: str) -> None:
    changes: dict[str, Any] = {key: [SUBNET_A, "subnet-0a", "vpc-0b1c2d3e", "sg-0c1d2e3f"]}
    found = problems(**changes)
    mine = [problem for problem in found if problem.startswith(f"{key}: ")]
    assert mine == [
        f"{key}: 'subnet-0a' is not a subnet ID (subnet- and 8 or 17 hex digits)",
        f"{key}: 'vpc-0b1c2d3e' is not a subnet ID (subnet- and 8 or 17 hex digits)",
        f"{key}: 'sg-0c1d2e3f' is not a subnet ID (subnet- and 8 or 17 hex digits)",
    ]


def test_ingress_cidrs_empty() -> None:
    assert "at least one CIDR" in problem_of("albIngressCidrs", albIngressCidrs=[])


@pytest.mark.parametrize("cidr", ["10.0.0.1/16", "10.0.0.0/33", "anywhere"])
def test_ingress_cidrs_invalid(cidr: str) -> None:
    message = problem_of("albIngressCidrs", albIngressCidrs=["10.1.0.0/16", cidr])
    assert repr(cidr) in message
    assert "is not a CIDR block such as 10.0.0.0/16" in message


@pytest.mark.parametrize("world", ["0.0.0.0/0", "::/0"])
def test_world_ingress_refused_on_an_internal_alb(world: str) -> None:
    message = problem_of("albIngressCidrs", albIngressCidrs=["10.0.0.0/8", world])
    assert "not allowed on an internal load balancer" in message
    assert "internal load balancer" in problem_of("albIngressCidrs", albIngressCidrs=[world], albInternal="true")


@pytest.mark.parametrize("world", ["0.0.0.0/0", "::/0"])
def test_world_ingress_allowed_on_an_internet_facing_alb(world: str) -> None:
    backend = parse(albIngressCidrs=[world], albInternal=False).backend
    assert backend is not None
    assert backend.alb_ingress_cidrs == (world,)


@pytest.mark.parametrize("group", ["sg-123", "sg-0123456789ABCDEF0", "vpc-0123456789abcdef0", "sg-0123456789abcdef012"])
def test_peer_security_group_ids_invalid(group: str) -> None:
    message = problem_of("peerSecurityGroupIds", peerSecurityGroupIds=["sg-0123456789abcdef0", group])
    assert message == f"peerSecurityGroupIds: {group!r} is not a security group ID (sg- and 8 or 17 hex digits)"


def test_listener_certificate_both_or_neither() -> None:
    both = problem_of("albCertificateArn", albDomainName="backend.example.com")
    neither = problem_of("albCertificateArn", without("albCertificateArn"))
    for message in (both, neither):
        assert "set exactly one of albCertificateArn" in message
        assert "albDomainName" in message


def test_domain_name_instead_of_a_certificate_arn() -> None:
    settings = parse(without("albCertificateArn"), albDomainName="backend.example.com", caAcmPermission=True)
    assert settings.backend is not None
    assert (settings.backend.alb_domain_name, settings.backend.alb_certificate_arn) == ("backend.example.com", None)
    assert settings.warnings == ()


def test_domain_name_invalid() -> None:
    message = problem_of("albDomainName", without("albCertificateArn"), albDomainName="not a domain")
    assert "'not a domain' is not a DNS name" in message


def test_domain_name_with_short_lived_ca() -> None:
    message = problem_of(
        "albDomainName",
        without("albCertificateArn") | {"caUsageMode": "SHORT_LIVED_CERTIFICATE"},
        albDomainName="b.example.com",
    )
    assert "ACM cannot issue from a SHORT_LIVED_CERTIFICATE CA" in message
    assert "use albCertificateArn" in message


@pytest.mark.parametrize(
    "arn",
    [
        CA_ARN,
        "arn:aws:acm:us-east-1:1234:certificate/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    ],
)
def test_bad_alb_certificate_arn(arn: str) -> None:
    assert f"{arn!r} is not an ACM certificate ARN" in problem_of("albCertificateArn", albCertificateArn=arn)


def test_domain_name_without_acm_permission_warns() -> None:
    settings = parse(without("albCertificateArn"), albDomainName="backend.example.com")
    assert len(settings.warnings) == 1
    assert "caAcmPermission" in settings.warnings[0]
    # AWS: the permission is what ACM's renewal needs; issuance is the deploying identity's own request.
    assert "issues it but cannot renew it" in settings.warnings[0]


def test_no_warning_when_the_ca_belongs_to_another_stack() -> None:
    """The permission is the CA owner's business: a stack-mode stack cannot grant it."""
    settings = parse(without("albCertificateArn"), albDomainName="backend.example.com", caMode="stack", caStack="pki")
    assert settings.warnings == ()


@pytest.mark.parametrize("path", ["healthz", " /healthz", "/health check", "http://host/healthz"])
def test_health_check_path_not_absolute(path: str) -> None:
    message = problem_of("healthCheckPath", healthCheckPath=path)
    assert "must be an absolute URL path of letters, digits and . _ ~ / - such as /healthz" in message


@pytest.mark.parametrize("count", [0, 51, -1])
def test_host_count_out_of_range(count: int) -> None:
    assert "must be from 1 to 50" in problem_of("hostCount", hostCount=count)


# --- plumbing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["127.0.0.1:5000", "ftp://127.0.0.1", "http://", "http://127.0.0.1:5000/path", "http://a b"]
)
def test_endpoint_url_malformed(url: str) -> None:
    message = problem_of("awsEndpointUrl", awsEndpointUrl=url)
    assert repr(url) in message
    assert "http(s) URL like http://127.0.0.1:5000" in message


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:5000", "https://localhost:4566/", "https://moto", "http://localhost:4566", "http://[::1]:5000"],
)
def test_endpoint_url_accepted(url: str) -> None:
    """With the AWS provider's acmpca endpoint at the same URL (aws:endpoints)."""
    settings = parse_settings(
        {**BACKEND, "awsEndpointUrl": url},
        stack="dev",
        project="pca-backend",
        region="eu-west-1",
        aws={"endpoints": [{"acmpca": url.rstrip("/") + "/"}]},
    )
    assert settings.endpoint_url == url


@pytest.mark.parametrize("prefix", ["team/app", "/team/app/", "/team app", "//team", "/team/$app"])
def test_parameter_prefix_malformed(prefix: str) -> None:
    message = problem_of("parameterPrefix", parameterPrefix=prefix)
    assert repr(prefix) in message
    assert "must look like /team/app" in message


@pytest.mark.parametrize("region", [None, ""])
def test_region_is_required(region: str | None) -> None:
    found = problems(region=region)
    assert found == ["aws:region: is required (e.g. us-east-1)"]


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        without("vpcId"),
        region=None,
        caMode="bogus",
        caCountry="usa",
        hostCount=0,
        healthCheckPath="healthz",
        awsEndpointUrl="nope",
    )
    keys = [problem.split(":", 1)[0] if not problem.startswith("aws:") else "aws:region" for problem in found]
    assert sorted(keys) == sorted(
        ["aws:region", "caMode", "caCountry", "vpcId", "hostCount", "healthCheckPath", "awsEndpointUrl"]
    ), found


# --- host fleet, parameter key, expiry alarm ---------------------------------------------------------------


def test_fleet_key_and_alarm_defaults() -> None:
    backend = parse(hostCount=3).backend
    assert backend is not None
    assert (backend.host_min_count, backend.host_count, backend.host_max_count) == (3, 3, None)
    assert backend.host_min_healthy_percent == 100
    assert backend.host_root_volume_gib is None, "the AMI's own size"
    assert (backend.parameter_kms_key_arn, backend.parameter_writer_arns) == (None, (WRITER,))
    # 90-day certificates renew in their last 30 days; the alarm fires at 14.
    assert backend.cert_expiry_alarm_days == 14
    assert backend.cert_expiry_alarm_topic_arn is None


@pytest.mark.parametrize(
    ("validity", "renew_before", "alarm"),
    [(90, 0, 14), (30, 0, 5), (60, 0, 10), (7, 0, 1), (90, 10, 5), (3, 0, 1)],
)
def test_alarm_days_default_to_inside_the_renewal_window(validity: int, renew_before: int, alarm: int) -> None:
    backend = parse(certValidityDays=validity, certRenewBeforeDays=renew_before).backend
    assert backend is not None
    assert backend.cert_expiry_alarm_days == alarm


def test_explicit_fleet_key_and_alarm_values_are_kept() -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    topic = "arn:aws:sns:eu-west-1:123456789012:pca-alarms"
    backend = parse(
        hostCount="3",
        hostMinCount="2",
        hostMaxCount="6",
        hostMinHealthyPercent="50",
        parameterKmsKeyArn=key,
        parameterWriterArns=[],
        certExpiryAlarmDays="20",
        certExpiryAlarmTopicArn=topic,
    ).backend
    assert backend is not None
    assert (backend.host_min_count, backend.host_max_count, backend.host_min_healthy_percent) == (2, 6, 50)
    assert parse(hostRootVolumeGiB="16").backend.host_root_volume_gib == 16  # type: ignore[union-attr]
    assert backend.parameter_kms_key_arn == key
    assert (backend.cert_expiry_alarm_days, backend.cert_expiry_alarm_topic_arn) == (20, topic)
    writers = ["arn:aws:iam::123456789012:role/deploy", "arn:aws:iam::123456789012:role/ci/preview"]
    named = parse(parameterWriterArns=writers).backend
    assert named is not None
    assert named.parameter_writer_arns == tuple(writers)
    for ami_id in ("ami-0123456789abcdef0", "ami-1234abcd"):
        assert parse(hostAmiId=ami_id).backend.host_ami_id == ami_id  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("changes", "key", "allowed"),
    [
        ({"hostCount": 3, "hostMinCount": 4}, "hostMinCount", "is 4 but must be at most hostCount (3)"),
        ({"hostCount": 3, "hostMaxCount": 2}, "hostMaxCount", "is 2 but must be at least hostCount (3)"),
        ({"hostMaxCount": 101}, "hostMaxCount", "must be from 0 to 100"),
        ({"hostMinHealthyPercent": 101}, "hostMinHealthyPercent", "must be from 0 to 100"),
        ({"hostMinHealthyPercent": -5}, "hostMinHealthyPercent", "must be from 0 to 100"),
        ({"hostRootVolumeGiB": 4}, "hostRootVolumeGiB", "is 4 but must be 0 (the AMI's size) or from 8 to 16384"),
        ({"hostRootVolumeGiB": 20000}, "hostRootVolumeGiB", "must be from 0 to 16384"),
        ({"parameterKmsKeyArn": "alias/aws/ssm"}, "parameterKmsKeyArn", "is not a KMS key ARN"),
        (
            {"parameterWriterArns": ["arn:aws:sts::123456789012:assumed-role/deploy/run-1"]},
            "parameterWriterArns",
            "is not an IAM role or user ARN",
        ),
        (
            {
                "parameterKmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/abcd",
                "parameterWriterArns": ["arn:aws:iam::123456789012:role/deploy"],
            },
            "parameterWriterArns",
            "only applies to the key the stack creates",
        ),
        ({"certExpiryAlarmDays": 30}, "certExpiryAlarmDays", "must be less than the renewal window (30 days"),
        ({"certValidityDays": 30, "certExpiryAlarmDays": 14}, "certExpiryAlarmDays", "renewal window (10 days"),
        ({"certExpiryAlarmDays": 400}, "certExpiryAlarmDays", "must be from 0 to 365"),
        ({"certExpiryAlarmTopicArn": "pca-alarms"}, "certExpiryAlarmTopicArn", "is not an SNS topic ARN"),
        ({"hostAmiId": "ami-12345"}, "hostAmiId", "is not an AMI id: 'ami-' followed by 8 or 17 lowercase"),
        ({"hostAmiId": "ami-0123456789ABCDEF0"}, "hostAmiId", "is not an AMI id"),
        ({"hostAmiId": "0123456789abcdef0"}, "hostAmiId", "is not an AMI id"),
        ({"hostAmiId": "/aws/service/ami-amazon-linux-latest/x"}, "hostAmiId", "is not an AMI id"),
    ],
)
def test_fleet_key_and_alarm_rules(changes: dict[str, Any], key: str, allowed: str) -> None:
    assert allowed in problem_of(key, **changes)


# --- declarations -------------------------------------------------------------------------------------------


def test_declared_types_match_pulumi_yaml() -> None:
    """`DECLARED` is the settings' one declaration: its types are Pulumi.yaml's, so `load_settings` parses
    exactly the `type: array` settings as JSON lists; `DEFAULTS` are Pulumi.yaml's, which Pulumi hands over as
    if the stack had set them, so a setting counts as set only when it differs from its default."""
    project = yaml.safe_load((Path(__file__).resolve().parent.parent / "Pulumi.yaml").read_text())
    assert {key: spec["type"] for key, spec in project["config"].items()} == dict(DECLARED)
    assert {key: spec["default"] for key, spec in project["config"].items()} == dict(DEFAULTS)


def test_unknown_key_suggests_the_closest_setting() -> None:
    assert problem_of("caModee", caModee="root") == "caModee: is not a pca-backend setting; did you mean caMode?"
    assert "see README.md, Configuration reference" in problem_of("frobnicate", frobnicate=1)


# --- issue 14: settings checked against each other and against AWS ------------------------------------------


def test_botocore_ships_the_regions_and_their_partitions() -> None:
    regions = botocore_regions()
    assert regions["us-east-1"] == "aws"
    assert regions["cn-north-1"] == "aws-cn"
    assert regions["us-gov-west-1"] == "aws-us-gov"
    assert "us-eest-1" not in regions
    assert {"aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"} <= set(regions.values())


def test_a_region_aws_has_and_its_partition() -> None:
    """The default region list is botocore's; pure callers may pass their own."""
    assert parse(region="il-central-1", albCertificateArn=ACM_ARN.replace("eu-west-1", "il-central-1")).region == (
        "il-central-1"
    )
    assert "did you mean us-east-1 or us-west-1?" in problems(region="us-eest-1")[0]
    only = {"eu-west-1": "aws"}
    assert parse_settings(BACKEND, stack="dev", project="pca-backend", region="eu-west-1", regions=only).region
    with pytest.raises(SettingsError, match="not a region AWS has"):
        parse_settings(BACKEND, stack="dev", project="pca-backend", region="us-east-1", regions=only)


def test_arns_in_the_stacks_partition_and_region_are_accepted() -> None:
    settings = parse(
        parameterKmsKeyArn="arn:aws:kms:eu-west-1:123456789012:key/1234abcd",
        parameterWriterArns=[],
        certExpiryAlarmTopicArn="arn:aws:sns:eu-west-1:123456789012:ops",
        certTemplate="arn:aws:acm-pca:::template/EndEntityCertificate/V1",
        caMode="subordinate",
        caParentArn=CA_ARN,
    )
    assert settings.backend is not None
    assert settings.backend.parameter_kms_key_arn == "arn:aws:kms:eu-west-1:123456789012:key/1234abcd"
    writers = parse(parameterWriterArns=["arn:aws:iam::123456789012:role/ci"]).backend
    assert writers is not None
    assert writers.parameter_writer_arns == ("arn:aws:iam::123456789012:role/ci",)


def test_each_misplaced_arn_is_named() -> None:
    found = problems(
        albCertificateArn=ACM_ARN.replace("eu-west-1", "us-east-1"),
        parameterWriterArns=["arn:aws-cn:iam::123456789012:role/ci"],
        certExpiryAlarmTopicArn="arn:aws:sns:us-west-2:123456789012:ops",
    )
    assert sorted(problem.split(":", 1)[0] for problem in found) == [
        "albCertificateArn",
        "certExpiryAlarmTopicArn",
        "parameterWriterArns",
    ], found


@pytest.mark.parametrize(
    ("instance_type", "parameter"),
    [
        ("t3.micro", "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"),
        ("t4g.small", "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"),
        ("c7gn.large", "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"),
    ],
)
def test_the_default_ami_follows_the_instance_types_architecture(instance_type: str, parameter: str) -> None:
    backend = parse(instanceType=instance_type).backend
    assert backend is not None
    assert backend.ami_parameter == parameter


def test_an_explicit_ami_parameter_of_the_types_architecture_or_unknown_is_kept() -> None:
    arm = "/aws/service/ami-amazon-linux-latest/al2023-ami-minimal-kernel-default-arm64"
    assert parse(instanceType="m7g.large", amiParameter=arm).backend.ami_parameter == arm  # type: ignore[union-attr]
    assert parse(amiParameter="/team/golden-ami").backend.ami_parameter == "/team/golden-ami"  # type: ignore[union-attr]
    message = problem_of("amiParameter", instanceType="t4g.micro", amiParameter=AL2023_AMI_PARAMETER)
    assert "names an AMI for x86_64" in message
    assert "leave amiParameter empty for /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64" in (
        message
    )


@pytest.mark.parametrize(("validity", "alarm"), [(3, 1), (5, 1), (6, 1), (7, 1), (9, 1), (12, 2)])
def test_short_validities_keep_a_window_with_the_alarm_inside(validity: int, alarm: int) -> None:
    from components.rules.aws import renew_before_days

    backend = parse(certValidityDays=validity).backend
    assert backend is not None
    window = renew_before_days(validity, None)
    assert window >= 2
    assert 1 <= backend.cert_expiry_alarm_days == alarm < window


def test_renew_before_two_days_is_the_least_explicit_window() -> None:
    assert parse(certValidityDays=3, certRenewBeforeDays=2).certificate.renew_before_days == 2  # type: ignore[union-attr]
    assert "or from 2 to 29" in problem_of("certRenewBeforeDays", certValidityDays=30, certRenewBeforeDays=1)


def test_a_certificate_ends_before_the_ca_this_stack_creates() -> None:
    assert parse(caValidityYears=1, certValidityDays=364).certificate.validity_days == 364  # type: ignore[union-attr]
    message = problem_of("certValidityDays", caValidityYears=1, certValidityDays=365)
    assert "would outlive the CA this stack creates" in message
    assert "below 365" in message
    sub = problem_of(
        "certValidityDays", caMode="subordinate", caParentArn=CA_ARN, caValidityYears=1, certValidityDays=400
    )
    assert "would outlive the CA" in sub


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("caCommonName", ["Example Root"]),
        ("caOrganization", {"name": "Example"}),
        ("instanceType", ["t3.micro"]),
        ("certCommonName", 5),
    ],
)
def test_a_list_or_map_where_text_is_expected(key: str, value: Any) -> None:
    assert (
        f"must be a string, got a {'list' if isinstance(value, list) else 'map' if isinstance(value, dict) else 'int'}"
        in (problem_of(key, **{key: value}))
    )


@pytest.mark.parametrize("text", ["\u0661\u0662", "\uff12", "\u00b2", "9" * 5000, "-" + "9" * 5000, "1_000"])
def test_only_ascii_digits_of_a_sane_length_are_numbers(text: str) -> None:
    message = problem_of("hostCount", hostCount=text)
    assert "must be a whole number from 1 to 50 (digits 0-9)" in message
    assert len(message) < 200, "a 5,000-digit value is cut"


def test_text_longer_than_any_setting_is_refused_without_repeating_it() -> None:
    message = problem_of("vpcId", vpcId="vpc-" + "0" * 5000)
    assert message == "vpcId: is 5004 characters long; no setting takes more than 2048"


def test_acm_takes_wildcard_domain_names() -> None:
    settings = parse(without("albCertificateArn"), albDomainName="*.dev.example.com", caAcmPermission=True)
    assert settings.backend is not None
    assert settings.backend.alb_domain_name == "*.dev.example.com"
    message = problem_of("albDomainName", without("albCertificateArn"), albDomainName="api.dev.example.com.")
    assert "no trailing dot: 'api.dev.example.com'" in message


def test_ingress_cidrs_compared_as_networks() -> None:
    backend = parse(albIngressCidrs=["10.0.0.0/16", "10.1.0.0/16", "fd00::/64"]).backend
    assert backend is not None
    assert "lies inside 10.0.0.0/8" in problem_of("albIngressCidrs", albIngressCidrs=["10.0.0.0/8", "10.5.0.0/16"])
    assert "no client reaches a load balancer from there" in problem_of(
        "albIngressCidrs", albIngressCidrs=["fe80::/64"]
    )


def test_settings_that_do_not_apply_are_refused_and_defaults_are_not() -> None:
    stack_mode: dict[str, Any] = {"caMode": "stack", "caStack": "pki"}
    # Pulumi hands Pulumi.yaml's defaults over as if set: those are not "given".
    assert parse(**stack_mode, caProtect="true", caValidityYears="0", caKeyAlgorithm="RSA_2048").ca.mode == "stack"
    assert "caMode is stack" in problem_of("caProtect", **stack_mode, caProtect="false")
    assert "caCrlEnabled is false" in problem_of("caCrlCustomCname", caCrlCustomCname="crl.example.com")
    assert parse(caCrlEnabled=True, caCrlCustomCname="crl.example.com").ca.crl_custom_cname == "crl.example.com"
    assert "hostAmiId is set" in problem_of("amiParameter", hostAmiId="ami-0123456789abcdef0", amiParameter="/x/y")


def test_identity_settings_the_certificate_provider_honours() -> None:
    role = {"roleArn": "arn:aws:iam::123456789012:role/deploy", "sessionName": "ci", "duration": "1h"}
    settings = parse_settings(
        BACKEND,
        stack="dev",
        project="pca-backend",
        region="eu-west-1",
        aws={
            "profile": "deploy",
            "assumeRoles": [role],
            "skipCredentialsValidation": "true",
            "useFipsEndpoint": "false",
        },
    )
    assert (settings.aws_identity.profile, settings.aws_identity.assume_role_session_name) == ("deploy", "ci")


def test_identity_settings_it_does_not_are_refused_with_what_to_do() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(
            BACKEND,
            stack="dev",
            project="pca-backend",
            region="eu-west-1",
            aws={"accessKey": "AKIA", "secretKey": "secret", "sharedConfigFiles": ["/x"], "customCaBundle": "/ca.pem"},
        )
    found = {problem.split(":", 2)[1]: problem for problem in caught.value.problems}
    assert set(found) == {"accessKey", "secretKey", "sharedConfigFiles", "customCaBundle"}
    assert "AWS_ACCESS_KEY_ID" in found["accessKey"]
    assert "AWS_CONFIG_FILE" in found["sharedConfigFiles"]
    assert "AWS_CA_BUNDLE" in found["customCaBundle"]
    assert all(
        "secret" not in problem.lower().replace("aws_secret_access_key", "").replace("secretkey", "")
        for problem in found.values()
    ), "no credential is repeated"


def test_a_stack_with_many_ordinary_names_still_fits() -> None:
    """The estimate is an upper bound, not a wall: 60 ordinary names and an RSA-4096 root fit the 8 KB."""
    many = [f"svc-{index:02d}.internal.example.com" for index in range(60)]
    certificate = parse(certNames=many, caKeyAlgorithm="RSA_4096", certKeyAlgorithm="RSA_4096").certificate
    assert certificate is not None
    assert len(certificate.names) == 60
    long_names = [f"svc-{index:03d}.{'a' * 60}.example.com" for index in range(60)]
    message = problem_of("certNames", certNames=long_names, certCommonName="api.example.com")
    assert "holds at most 8,192" in message


# --- hostCertificates: per-host ---------------------------------------------------------------------------------

#: A per-host backend: the shared mode's writers do not apply (no key material goes through SSM).
PER_HOST: dict[str, Any] = {**without("parameterWriterArns"), "hostCertificates": "per-host"}


def test_the_shared_mode_is_the_default() -> None:
    settings = parse()
    assert settings.host_certificates == "shared"
    assert settings.issuer is None
    assert settings.ca.requirements.chain_in_parameters is True


def test_per_host_defaults() -> None:
    settings = parse(PER_HOST)
    assert settings.host_certificates == "per-host"
    assert settings.issuer == IssuerSettings(reserved_concurrency=10, log_retention_days=365)
    certificate = settings.certificate
    assert certificate is not None
    # A week, whatever the CA's usage mode; renewed by each host at a third of it, not by pulumi up.
    assert (certificate.validity_days, certificate.renew_before_days, certificate.common_name) == (7, None, None)
    assert certificate.names == ()
    backend = settings.backend
    assert backend is not None
    assert (backend.parameter_kms_key_arn, backend.parameter_writer_arns) == (None, ())
    # Inside the hosts' renewal window (7 / 3 = 2.3 days): 1 day.
    assert backend.cert_expiry_alarm_days == 1
    # No certificate provider: no endpoint and no identity to follow; no chain in a parameter.
    assert settings.endpoint_url is None
    assert settings.ca.requirements.chain_in_parameters is False
    assert settings.backend_name == "pca-backend-dev"


@pytest.mark.parametrize(("validity", "alarm"), [(4, 1), (7, 1), (12, 2), (30, 5), (84, 14), (365, 14)])
def test_per_host_alarm_defaults_inside_the_hosts_renewal_window(validity: int, alarm: int) -> None:
    backend = parse(PER_HOST, caUsageMode="GENERAL_PURPOSE", certValidityDays=validity).backend
    assert backend is not None
    assert backend.cert_expiry_alarm_days == alarm
    assert 3 * alarm < validity, "the hosts renew at a third of the validity: the alarm must sit below it"


def test_per_host_service_names_and_issuer_settings_are_kept() -> None:
    settings = parse(
        PER_HOST,
        certNames=["api.internal.example", "backend.internal.example"],
        certKeyAlgorithm="EC_secp384r1",
        issuerReservedConcurrency="25",
        issuerLogRetentionDays=30,
    )
    assert settings.certificate is not None
    assert settings.certificate.names == ("api.internal.example", "backend.internal.example")
    assert settings.issuer == IssuerSettings(reserved_concurrency=25, log_retention_days=30)
    # nginx still serves the hosts' EC2 names first.
    assert settings.server_names() == [
        "*.eu-west-1.compute.internal",
        "api.internal.example",
        "backend.internal.example",
    ]


def test_per_host_delivery_args_carry_the_hosts_certificates_and_the_issuer() -> None:
    settings = parse(PER_HOST, certNames=["api.internal.example"], certValidityDays=5, issuerReservedConcurrency=3)
    args = settings.per_host_delivery_args(ca_arn=CA_ARN, ca_bundle_pem="<bundle>")
    assert args == {
        "ca_arn": CA_ARN,
        "ca_bundle_pem": "<bundle>",
        "template_arn": "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1",
        "validity_days": 5,
        "service_names": ["api.internal.example"],
        "key_algorithm": "EC_prime256v1",
        "reserved_concurrency": 3,
        "log_retention_days": 365,
        # The stack creates the CA: its usage mode is what the settings asked for.
        "ca_usage_mode": "GENERAL_PURPOSE",
    }
    read = parse({**PER_HOST, "caMode": "stack", "caStack": "org/pca-backend/pki"})
    assert "ca_usage_mode" not in read.per_host_delivery_args(ca_arn=CA_ARN, ca_bundle_pem="<bundle>")
    with pytest.raises(ValueError, match="hostCertificates is shared"):
        parse().per_host_delivery_args(ca_arn=CA_ARN, ca_bundle_pem="<bundle>")
    # Nor the other way round: a per-host stack has no backend certificate and no parameters.
    with pytest.raises(ValueError, match="hostCertificates is per-host"):
        settings.certificate_args(ca_arn=CA_ARN, validity_days=7)
    with pytest.raises(ValueError, match="hostCertificates is per-host"):
        settings.ssm_key_delivery_args(ca_bundle_pem="<b>", full_chain_pem="<c>", private_key_pem="<k>")


def test_per_host_template_arn_is_in_the_stacks_partition() -> None:
    china = {
        **PER_HOST,
        "albCertificateArn": "arn:aws-cn:acm:cn-north-1:123456789012:certificate/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    }
    settings = parse(china, region="cn-north-1")
    args = settings.per_host_delivery_args(ca_arn=CA_ARN, ca_bundle_pem="<bundle>")
    assert args["template_arn"] == "arn:aws-cn:acm-pca:::template/EndEntityServerAuthCertificate/V1"


def test_a_per_host_stack_does_not_follow_the_certificate_providers_identity_rules() -> None:
    """The shared mode refuses AWS provider settings its certificate provider would not honour; the per-host mode has
    no certificate provider, so they are the AWS provider's business, as on a CA-only stack."""
    provider = {"assumeRoles": [{"roleArn": WRITER}, {"roleArn": WRITER + "-next"}], "sharedConfigFiles": ["/x"]}
    settings = parse_settings(PER_HOST, stack="dev", project="pca-backend", region="eu-west-1", aws=provider)
    assert settings.aws_identity.assume_role_arn is None
    with pytest.raises(SettingsError, match="aws:assumeRoles"):
        parse_settings(BACKEND, stack="dev", project="pca-backend", region="eu-west-1", aws=provider)


def test_settings_of_the_other_mode_are_refused_together() -> None:
    found = problems(
        {**PER_HOST, "parameterWriterArns": [WRITER], "certRenewBeforeDays": 3, "certCommonName": "a.example.com"}
    )
    assert sorted(problem.split(":")[0] for problem in found) == [
        "certCommonName",
        "certRenewBeforeDays",
        "parameterWriterArns",
    ], found
    assert all("this stack is per-host" in problem for problem in found), found
    (shared,) = problems(issuerLogRetentionDays=30)
    assert shared.startswith("issuerLogRetentionDays: applies only to the per-host issuer, and hostCertificates is")


def test_per_host_settings_at_their_defaults_count_as_not_set() -> None:
    """Pulumi hands Pulumi.yaml's defaults over as if the stack had set them."""
    defaults = {key: DEFAULTS[key] for key in ("certRenewBeforeDays", "certThrottleRetryMinutes", "parameterPrefix")}
    assert parse({**PER_HOST, **defaults}).host_certificates == "per-host"
    shared = parse(issuerReservedConcurrency=DEFAULTS["issuerReservedConcurrency"], issuerLogRetentionDays="365")
    assert shared.issuer is None
