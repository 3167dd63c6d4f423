"""The issuer's handler (components/issuer/handler.py) end to end against the session's moto server: instances
launched by an Auto Scaling group (so they carry its system tag), an ACM PCA CA, function URL events in AWS's
payload format 2.0. Requests go through the recording proxy, which shows what reached AWS and injects faults.

moto's quirks stay here: it ignores idempotency tokens (the tests check the token that was *sent*), and it reports
every CA as SHORT_LIVED_CERTIFICATE (the proxy answers with the UsageMode the CA was created with).
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components.issuer import handler as handler_module
from components.issuer.contract import (
    ENV_AUTO_SCALING_GROUP,
    ENV_CA_ARN,
    ENV_HOST_ROLE_ARN,
    ENV_SERVICE_NAMES,
    ENV_SIGNING_ALGORITHM,
    ENV_VALIDITY_DAYS,
    MAX_BODY_BYTES,
)
from components.issuer.handler import Issuer, IssuerConfig
from components.local.emulator import GET, ISSUE, RecordingProxy, create_active_ca
from components.local.issuer import (
    ACCOUNT,
    TEMPLATE_ARN,
    CountingSession,
    Fleet,
    LambdaContext,
    create_fleet,
    csr_body,
    function_url_event,
    instance_session_arn,
    issuer_environment,
)
from components.local.process import free_port
from tests.issuer_fixtures import build_csr, csr_der, key, pem

ROLE_NAME = "fleet-host-role"
HOST_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/pca-backend/{ROLE_NAME}"
SERVICE_NAME = "api.internal.example"
DHCP_DOMAIN = "corp.example.com"


# --- the fleet, the CA and the issuer ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(pca_proxy_session: RecordingProxy) -> Fleet:
    """Three instances of one group, one of them stopped, and one instance outside the group."""
    return create_fleet(pca_proxy_session.endpoint_url, size=3, dhcp_domain=DHCP_DOMAIN)


@pytest.fixture(scope="module")
def ec2(pca_proxy_session: RecordingProxy) -> Any:
    return boto3.session.Session().client("ec2", region_name="us-east-1", endpoint_url=pca_proxy_session.endpoint_url)


@pytest.fixture(scope="module")
def stopped(fleet: Fleet, ec2: Any) -> str:
    instance_id = fleet.instance_ids[2]
    ec2.stop_instances(InstanceIds=[instance_id])
    return instance_id


@pytest.fixture(scope="module")
def outsider(fleet: Fleet, ec2: Any) -> str:
    """A running instance in the fleet's subnet, launched directly (not by the group)."""
    return str(ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=fleet.subnet_id)
               ["Instances"][0]["InstanceId"])  # fmt: skip


@pytest.fixture(scope="module")
def short_lived_ca(pca_proxy_session: RecordingProxy) -> str:
    return create_active_ca(
        pca_proxy_session.endpoint_url, usage_mode="SHORT_LIVED_CERTIFICATE", common_name="Issuer Test CA"
    )[0]


@pytest.fixture(scope="module")
def general_purpose_ca(pca_proxy_session: RecordingProxy) -> str:
    return create_active_ca(pca_proxy_session.endpoint_url, common_name="Issuer General Purpose CA")[0]


def _environment(fleet: Fleet, ca_arn: str, **overrides: str) -> dict[str, str]:
    return issuer_environment(
        ca_arn=ca_arn, fleet=fleet, host_role_arn=HOST_ROLE_ARN, service_names=[SERVICE_NAME], **overrides
    )


@pytest.fixture
def aws(pca_proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch, fast_aws_retries: None) -> RecordingProxy:
    """Every client the issuer builds talks to moto through the proxy (boto3 reads AWS_ENDPOINT_URL)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", pca_proxy.endpoint_url)
    return pca_proxy


@pytest.fixture
def session() -> CountingSession:
    return CountingSession()


def _issuer(
    fleet: Fleet, ca_arn: str, session: boto3.session.Session | None = None, overrides: dict[str, str] | None = None
) -> Issuer:
    return Issuer(IssuerConfig.from_environment(_environment(fleet, ca_arn, **(overrides or {}))), session)


@pytest.fixture
def issuer(aws: RecordingProxy, fleet: Fleet, short_lived_ca: str, session: CountingSession) -> Issuer:
    return _issuer(fleet, short_lived_ca, session)


def _names(ec2: Any, instance_id: str) -> tuple[str, str]:
    """(private DNS name, private IPv4 address) of an instance."""
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return instance["PrivateDnsName"], instance["PrivateIpAddress"]


def _call(issuer: Issuer, instance_id: str, csr_pem: str, *, remaining: float = 30.0, **event: Any) -> dict[str, Any]:
    user_arn = event.pop("user_arn", instance_session_arn(ROLE_NAME, instance_id))
    answer = issuer.handle(function_url_event(csr_body(csr_pem), user_arn=user_arn, **event), LambdaContext(remaining))
    assert answer["headers"]["Content-Type"] == "application/json"
    return {"status": answer["statusCode"], **json.loads(answer["body"]), "_headers": answer["headers"]}


def _refusal(answer: dict[str, Any], status: int, rule: str) -> str:
    """The refusal's message, after checking its status, rule and shape (one sentence, never a traceback)."""
    assert (answer["status"], answer.get("rule")) == (status, rule), answer
    assert set(answer) == {"status", "error", "rule", "_headers"}, answer
    assert "Traceback" not in answer["error"]
    assert "\n" not in answer["error"]
    return str(answer["error"])


def _host_csr(ec2: Any, instance_id: str, *, kind: str = "ec-p256", extra: tuple[str, ...] = ()) -> str:
    dns_name, address = _names(ec2, instance_id)
    return build_csr(key(kind), common_name=dns_name, dns_names=[dns_name, *extra], ip_addresses=[address])


# --- a host gets a certificate with exactly its names ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p384", "rsa-2048"])
def test_a_host_gets_a_certificate_with_exactly_its_names_and_key(
    issuer: Issuer, aws: RecordingProxy, fleet: Fleet, ec2: Any, kind: str
) -> None:
    instance_id = fleet.instance_ids[0]
    dns_name, address = _names(ec2, instance_id)
    custom_name = f"{dns_name.split('.')[0]}.{DHCP_DOMAIN}"
    csr_pem = build_csr(
        key(kind),
        common_name=dns_name,
        dns_names=[dns_name, custom_name, SERVICE_NAME],
        ip_addresses=[address],
        hash_name="sha384",
    )
    answer = _call(issuer, instance_id, csr_pem)
    assert answer["status"] == 200, answer
    assert set(answer) == {"status", "certificate", "certificate_chain", "not_after", "certificate_arn", "_headers"}
    assert answer["_headers"]["Cache-Control"] == "no-store"
    leaf = x509.load_pem_x509_certificate(answer["certificate"].encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted([dns_name, custom_name, SERVICE_NAME])
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [address]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    assert leaf.public_key().public_bytes(serialization.Encoding.DER, public) == key(kind).public_key().public_bytes(
        serialization.Encoding.DER, public
    )
    assert answer["not_after"] == leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert answer["certificate_arn"].startswith(issuer.config.ca_arn + "/certificate/")
    assert x509.load_pem_x509_certificates(answer["certificate_chain"].encode())
    # What reached AWS: the fixed template, the validity, the CA's signing algorithm, the very CSR that was read.
    (sent,) = aws.bodies(ISSUE)
    assert sent["TemplateArn"] == TEMPLATE_ARN
    assert sent["Validity"] == {"Type": "DAYS", "Value": 7}
    assert sent["SigningAlgorithm"] == "SHA256WITHRSA"  # the test CA's key is RSA_2048
    assert csr_der(base64.b64decode(sent["Csr"]).decode()) == csr_der(csr_pem)
    assert 1 <= len(sent["IdempotencyToken"]) <= 36


def test_the_ca_is_described_once_and_the_vpc_dhcp_domain_is_cached(
    issuer: Issuer, session: CountingSession, fleet: Fleet, ec2: Any
) -> None:
    for instance_id in fleet.instance_ids[:2]:
        assert _call(issuer, instance_id, _host_csr(ec2, instance_id))["status"] == 200
    assert session.calls["DescribeCertificateAuthority"] == 1
    assert (session.calls["DescribeVpcs"], session.calls["DescribeDhcpOptions"]) == (1, 1)
    assert (session.calls["IssueCertificate"], session.calls["DescribeInstances"]) == (2, 2)


def test_the_dhcp_domain_is_read_again_once_its_cache_expires(
    issuer: Issuer, session: CountingSession, fleet: Fleet, ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler_module, "DHCP_CACHE_SECONDS", 0.0)
    instance_id = fleet.instance_ids[0]
    for _ in range(2):
        assert _call(issuer, instance_id, _host_csr(ec2, instance_id))["status"] == 200
    assert session.calls["DescribeVpcs"] == 2


def test_one_idempotency_token_per_instance_and_csr(
    issuer: Issuer, aws: RecordingProxy, fleet: Fleet, ec2: Any
) -> None:
    first, second = fleet.instance_ids[:2]
    shared = build_csr(key("ec-p256", 7), dns_names=[SERVICE_NAME])  # a service name: both may ask for it
    own = _host_csr(ec2, first)
    for instance_id, csr_pem in [(first, own), (first, own), (first, shared), (second, shared)]:
        assert _call(issuer, instance_id, csr_pem)["status"] == 200
    tokens = [body["IdempotencyToken"] for body in aws.bodies(ISSUE)]
    assert tokens[0] == tokens[1], "a retry of the same CSR by the same instance must reuse the token"
    assert len(set(tokens[1:])) == 3, "another CSR, or another instance, gets another token"


def test_a_general_purpose_ca_issues_the_configured_longer_validity(
    aws: RecordingProxy, fleet: Fleet, general_purpose_ca: str, ec2: Any
) -> None:
    issuer = _issuer(fleet, general_purpose_ca, overrides={ENV_VALIDITY_DAYS: "30"})
    assert _call(issuer, fleet.instance_ids[0], _host_csr(ec2, fleet.instance_ids[0]))["status"] == 200
    assert aws.bodies(ISSUE)[0]["Validity"] == {"Type": "DAYS", "Value": 30}


def test_a_configured_signing_algorithm_is_used(
    aws: RecordingProxy, fleet: Fleet, general_purpose_ca: str, ec2: Any
) -> None:
    issuer = _issuer(fleet, general_purpose_ca, overrides={ENV_SIGNING_ALGORITHM: "SHA512WITHRSA"})
    assert _call(issuer, fleet.instance_ids[0], _host_csr(ec2, fleet.instance_ids[0]))["status"] == 200
    assert aws.bodies(ISSUE)[0]["SigningAlgorithm"] == "SHA512WITHRSA"


def test_more_than_seven_days_on_a_short_lived_ca_is_a_configuration_error(
    aws: RecordingProxy, fleet: Fleet, short_lived_ca: str, ec2: Any
) -> None:
    issuer = _issuer(fleet, short_lived_ca, overrides={ENV_VALIDITY_DAYS: "8"})
    answer = _call(issuer, fleet.instance_ids[0], _host_csr(ec2, fleet.instance_ids[0]))
    assert "SHORT_LIVED_CERTIFICATE" in _refusal(answer, 500, "issuer-misconfigured")
    assert aws.calls(ISSUE) == []


# --- names that are not the host's own ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "what",
    ["another instance's name", "another instance's address", "another instance's custom-domain name",
     "a wildcard", "a name that is not configured", "an outside address", "an instance name as common name"],
)  # fmt: skip
def test_names_that_are_not_the_hosts_own_are_refused(
    issuer: Issuer, aws: RecordingProxy, fleet: Fleet, ec2: Any, what: str
) -> None:
    me, neighbour = fleet.instance_ids[:2]
    my_name, my_address = _names(ec2, me)
    their_name, their_address = _names(ec2, neighbour)
    dns_names, addresses, common_name = [my_name], [my_address], my_name
    if what == "another instance's name":
        dns_names.append(their_name)
    elif what == "another instance's address":
        addresses.append(their_address)
    elif what == "another instance's custom-domain name":
        dns_names.append(f"{their_name.split('.')[0]}.{DHCP_DOMAIN}")
    elif what == "a wildcard":
        dns_names.append("*.ec2.internal")
    elif what == "a name that is not configured":
        dns_names.append("admin.internal.example")
    elif what == "an outside address":
        addresses.append("192.0.2.1")
    else:
        common_name = their_name
    csr_pem = build_csr(key("ec-p256"), common_name=common_name, dns_names=dns_names, ip_addresses=addresses)
    message = _refusal(_call(issuer, me, csr_pem), 403, "name-not-allowed")
    assert me in message
    assert aws.calls(ISSUE) == []


def test_a_refused_name_is_named_once(issuer: Issuer, fleet: Fleet, ec2: Any) -> None:
    me, neighbour = fleet.instance_ids[:2]
    their_name, _ = _names(ec2, neighbour)
    csr_pem = build_csr(key("ec-p256"), common_name=their_name, dns_names=[their_name, _names(ec2, me)[0]])
    message = _refusal(_call(issuer, me, csr_pem), 403, "name-not-allowed")
    assert message.count(their_name) == 1
    assert message.startswith(f"{their_name} is not among")


# --- callers that are not the fleet's instances -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "rule"),
    [
        ("arn:aws:sts::{account}:assumed-role/other-role/{instance}", "caller-not-host-role"),
        ("arn:aws:iam::{account}:user/alice", "caller-not-host-role"),
        ("arn:aws:iam::{account}:root", "caller-not-host-role"),
        ("arn:aws:sts::{account}:federated-user/alice", "caller-not-host-role"),
        ("arn:aws:sts::999999999999:assumed-role/" + ROLE_NAME + "/{instance}", "caller-account"),
        ("arn:aws:sts::{account}:assumed-role/" + ROLE_NAME + "/alice", "session-not-instance"),
        ("arn:aws:sts::{account}:assumed-role/" + ROLE_NAME + "/i-0123", "session-not-instance"),
    ],
)
def test_callers_that_are_not_an_instance_session_of_the_host_role_are_refused(
    issuer: Issuer, session: CountingSession, fleet: Fleet, ec2: Any, caller: str, rule: str
) -> None:
    instance_id = fleet.instance_ids[0]
    user_arn = caller.format(account=ACCOUNT, instance=instance_id)
    account = user_arn.split(":")[4] or ACCOUNT
    answer = _call(issuer, instance_id, _host_csr(ec2, instance_id), user_arn=user_arn, account=account)
    _refusal(answer, 403, rule)
    assert sum(session.calls.values()) == 0, "nothing may reach AWS for a stranger"


def test_an_iam_context_claiming_another_account_than_the_session_arn_is_refused(
    issuer: Issuer, fleet: Fleet, ec2: Any
) -> None:
    instance_id = fleet.instance_ids[0]
    answer = _call(issuer, instance_id, _host_csr(ec2, instance_id), account="999999999999")
    _refusal(answer, 403, "caller-account")


def test_a_request_without_iam_context_is_refused(issuer: Issuer, fleet: Fleet, ec2: Any) -> None:
    instance_id = fleet.instance_ids[0]
    _refusal(_call(issuer, instance_id, _host_csr(ec2, instance_id), user_arn=None), 403, "caller-not-iam")


# --- instances that are not running members of the group ---------------------------------------------------------


def test_an_instance_outside_the_group_is_refused(issuer: Issuer, aws: RecordingProxy, outsider: str, ec2: Any) -> None:
    _refusal(_call(issuer, outsider, _host_csr(ec2, outsider)), 403, "instance-not-in-group")
    assert aws.calls(ISSUE) == []


def test_an_instance_that_is_not_running_is_refused(
    issuer: Issuer, aws: RecordingProxy, stopped: str, ec2: Any
) -> None:
    assert "stopped" in _refusal(_call(issuer, stopped, _host_csr(ec2, stopped)), 403, "instance-not-running")
    assert aws.calls(ISSUE) == []


def test_an_instance_that_does_not_exist_is_refused(issuer: Issuer, aws: RecordingProxy) -> None:
    csr_pem = build_csr(key("ec-p256"), dns_names=[SERVICE_NAME])
    _refusal(_call(issuer, "i-0123456789abcdef0", csr_pem), 403, "instance-not-found")
    assert aws.calls(ISSUE) == []


def test_a_member_of_another_group_is_refused(
    aws: RecordingProxy, fleet: Fleet, short_lived_ca: str, pca_proxy_session: RecordingProxy, ec2: Any
) -> None:
    other = create_fleet(pca_proxy_session.endpoint_url, size=1)
    issuer = _issuer(fleet, short_lived_ca)
    instance_id = other.instance_ids[0]
    _refusal(_call(issuer, instance_id, _host_csr(ec2, instance_id)), 403, "instance-not-in-group")


# --- CSRs ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "rule"), [("rsa-1024", "key-size"), ("ec-p521", "key-type"), ("ed25519", "key-type")])
def test_weak_or_unsupported_keys_are_refused(
    issuer: Issuer, aws: RecordingProxy, fleet: Fleet, ec2: Any, kind: str, rule: str
) -> None:
    instance_id = fleet.instance_ids[0]
    dns_name, _ = _names(ec2, instance_id)
    csr_pem = build_csr(key(kind), dns_names=[dns_name], hash_name=None if kind == "ed25519" else "sha256")
    _refusal(_call(issuer, instance_id, csr_pem), 400, rule)
    assert aws.calls(ISSUE) == []


def test_a_csr_whose_signature_does_not_verify_is_refused(
    issuer: Issuer, aws: RecordingProxy, fleet: Fleet, ec2: Any
) -> None:
    """A CSR signed by the host for its own name, then edited: the signature no longer matches."""
    me = fleet.instance_ids[0]
    my_name, _ = _names(ec2, me)
    request_der = csr_der(build_csr(key("ec-p256"), dns_names=[my_name]))
    edited = request_der.replace(my_name.encode(), my_name.replace("ip-", "iq-").encode())
    assert edited != request_der
    _refusal(_call(issuer, me, pem(edited)), 400, "csr-signature")
    assert aws.calls(ISSUE) == []


@pytest.mark.parametrize("what", ["organization", "uri", "two common names"])
def test_subjects_and_san_types_beyond_names_are_refused(issuer: Issuer, fleet: Fleet, ec2: Any, what: str) -> None:
    instance_id = fleet.instance_ids[0]
    dns_name, _ = _names(ec2, instance_id)
    extra_subject = {
        "organization": [x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, "Admins")],
        "uri": [],
        "two common names": [x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, dns_name)],
    }[what]
    uris = ["spiffe://fleet/admin"] if what == "uri" else []
    csr_pem = build_csr(
        key("ec-p256"), common_name=dns_name, dns_names=[dns_name], extra_subject=extra_subject, uris=uris
    )
    _refusal(_call(issuer, instance_id, csr_pem), 403, "name-type" if what == "uri" else "subject-attribute")


def test_a_csr_naming_nothing_is_refused(issuer: Issuer, fleet: Fleet) -> None:
    _refusal(_call(issuer, fleet.instance_ids[0], build_csr(key("ec-p256"))), 400, "no-names")


# --- the HTTP request ----------------------------------------------------------------------------------------------


def test_an_oversized_body_is_refused_before_it_is_read(issuer: Issuer, session: CountingSession, fleet: Fleet) -> None:
    instance_id = fleet.instance_ids[0]
    body = json.dumps({"csr": "A" * MAX_BODY_BYTES})
    event = function_url_event(body, user_arn=instance_session_arn(ROLE_NAME, instance_id))
    answer = issuer.handle(event, LambdaContext())
    assert (answer["statusCode"], json.loads(answer["body"])["rule"]) == (413, "body-too-large")
    base64_event = function_url_event(body, user_arn=instance_session_arn(ROLE_NAME, instance_id), base64_encoded=True)
    assert issuer.handle(base64_event, LambdaContext())["statusCode"] == 413
    assert sum(session.calls.values()) == 0


@pytest.mark.parametrize(
    ("body", "rule", "status"),
    [
        ("{not json", "body", 400),
        ('["csr"]', "body", 400),
        ('{"csr": 1}', "body", 400),
        ('{"csr": "x", "names": ["admin.example"]}', "body", 400),
        ('{"csr": "not a pem"}', "csr-malformed", 400),
    ],
)
def test_malformed_bodies_are_refused(issuer: Issuer, fleet: Fleet, body: str, rule: str, status: int) -> None:
    instance_id = fleet.instance_ids[0]
    event = function_url_event(body, user_arn=instance_session_arn(ROLE_NAME, instance_id))
    answer = issuer.handle(event, LambdaContext())
    _refusal({"status": answer["statusCode"], **json.loads(answer["body"]), "_headers": {}}, status, rule)


def test_a_base64_encoded_body_is_decoded(issuer: Issuer, fleet: Fleet, ec2: Any) -> None:
    instance_id = fleet.instance_ids[0]
    assert _call(issuer, instance_id, _host_csr(ec2, instance_id), base64_encoded=True)["status"] == 200


def test_a_body_that_is_not_base64_is_refused(issuer: Issuer, fleet: Fleet) -> None:
    event = function_url_event(b"{}", user_arn=instance_session_arn(ROLE_NAME, fleet.instance_ids[0]))
    event.update(body="not*base64", isBase64Encoded=True)
    assert json.loads(issuer.handle(event, LambdaContext())["body"])["rule"] == "body"


@pytest.mark.parametrize(
    ("change", "status", "rule"),
    [
        ({"method": "GET"}, 405, "method"),
        ({"method": "PUT"}, 405, "method"),
        ({"path": "/admin"}, 404, "path"),
        ({"content_type": "text/plain"}, 415, "content-type"),
    ],
)
def test_other_methods_paths_and_media_types_are_refused(
    issuer: Issuer, session: CountingSession, fleet: Fleet, ec2: Any, change: dict[str, Any], status: int, rule: str
) -> None:
    instance_id = fleet.instance_ids[0]
    answer = _call(issuer, instance_id, _host_csr(ec2, instance_id), **change)
    _refusal(answer, status, rule)
    if status == 405:
        assert answer["_headers"]["Allow"] == "POST"
    assert session.calls["IssueCertificate"] == 0


def test_a_json_content_type_with_parameters_is_accepted(issuer: Issuer, fleet: Fleet, ec2: Any) -> None:
    instance_id = fleet.instance_ids[0]
    answer = _call(issuer, instance_id, _host_csr(ec2, instance_id), content_type="Application/JSON; charset=utf-8")
    assert answer["status"] == 200


NOT_URL_EVENTS = [
    {},
    {"version": "1.0"},
    {"version": "2.0", "requestContext": {}},
    {"version": "2.0", "requestContext": "x"},
]


@pytest.mark.parametrize("event", [*NOT_URL_EVENTS, "text", None])
def test_events_that_are_not_function_url_requests_are_refused(issuer: Issuer, event: Any) -> None:
    answer = issuer.handle(event, LambdaContext())
    assert (answer["statusCode"], json.loads(answer["body"])["rule"]) == (400, "event-format")


# --- AWS-side failures -------------------------------------------------------------------------------------------


def test_throttling_answers_503_for_the_host_to_retry(
    issuer: Issuer, aws: RecordingProxy, fleet: Fleet, ec2: Any
) -> None:
    aws.throttle("IssueCertificate", times=None)
    instance_id = fleet.instance_ids[0]
    _refusal(_call(issuer, instance_id, _host_csr(ec2, instance_id)), 503, "aws-unavailable")
    assert len(aws.calls(ISSUE)) == 2, "one try and one retry, no retry storm"


def test_a_server_error_answers_503(issuer: Issuer, aws: RecordingProxy, fleet: Fleet, ec2: Any) -> None:
    aws.server_error("GetCertificate", status=500, times=None)
    instance_id = fleet.instance_ids[0]
    _refusal(_call(issuer, instance_id, _host_csr(ec2, instance_id)), 503, "aws-unavailable")


def test_ec2_out_of_reach_answers_503(
    aws: RecordingProxy, fleet: Fleet, short_lived_ca: str, ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance_id = fleet.instance_ids[0]
    csr_pem = _host_csr(ec2, instance_id)
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    _refusal(_call(_issuer(fleet, short_lived_ca), instance_id, csr_pem), 503, "aws-unavailable")


def test_a_refusal_by_aws_that_a_retry_will_not_fix_answers_500(
    issuer: Issuer, aws: RecordingProxy, fleet: Fleet, ec2: Any
) -> None:
    aws.inject("IssueCertificate", error_type="AccessDeniedException", message="not allowed")
    instance_id = fleet.instance_ids[0]
    assert "AccessDeniedException" in _refusal(
        _call(issuer, instance_id, _host_csr(ec2, instance_id)), 500, "issuer-misconfigured"
    )


def test_a_csr_the_ca_calls_malformed_answers_400(issuer: Issuer, aws: RecordingProxy, fleet: Fleet, ec2: Any) -> None:
    aws.inject("IssueCertificate", error_type="MalformedCSRException", message="bad csr")
    instance_id = fleet.instance_ids[0]
    _refusal(_call(issuer, instance_id, _host_csr(ec2, instance_id)), 400, "csr-refused-by-ca")


def test_the_issuer_waits_while_the_certificate_is_in_progress(
    issuer: Issuer, aws: RecordingProxy, fleet: Fleet, ec2: Any
) -> None:
    aws.in_progress(times=3)
    instance_id = fleet.instance_ids[0]
    assert _call(issuer, instance_id, _host_csr(ec2, instance_id))["status"] == 200
    assert len(aws.calls(GET)) == 4


def test_a_certificate_still_pending_near_the_timeout_answers_503(
    issuer: Issuer, aws: RecordingProxy, fleet: Fleet, ec2: Any
) -> None:
    aws.in_progress(times=None)
    instance_id = fleet.instance_ids[0]
    # 2.5 s left: half a second to wait once the 2 s kept to answer are set aside.
    answer = _call(issuer, instance_id, _host_csr(ec2, instance_id), remaining=2.5)
    assert "same CSR again" in _refusal(answer, 503, "certificate-pending")
    assert 2 <= len(aws.calls(GET)) <= 4


def test_an_unexpected_failure_answers_500_without_a_trace(
    issuer: Issuer, aws: RecordingProxy, fleet: Fleet, ec2: Any, caplog: pytest.LogCaptureFixture
) -> None:
    aws.respond("GetCertificate", {"Certificate": "not a certificate", "CertificateChain": ""})
    instance_id = fleet.instance_ids[0]
    with caplog.at_level(logging.INFO, logger="pca_backend.issuer"):
        answer = _call(issuer, instance_id, _host_csr(ec2, instance_id))
    _refusal(answer, 500, "internal")
    assert "Traceback" in caplog.text, "the log keeps what the caller does not see"


# --- logs ----------------------------------------------------------------------------------------------------------


def test_each_decision_is_logged_with_instance_names_and_rule_without_the_csr(
    issuer: Issuer, fleet: Fleet, ec2: Any, caplog: pytest.LogCaptureFixture
) -> None:
    me, neighbour = fleet.instance_ids[:2]
    own = _host_csr(ec2, me)
    stolen = build_csr(key("ec-p256"), dns_names=[_names(ec2, neighbour)[0]])
    with caplog.at_level(logging.INFO, logger="pca_backend.issuer"):
        _call(issuer, me, own)
        _call(issuer, me, stolen)
    issued, refused = (json.loads(record.getMessage()) for record in caplog.records)
    assert issued["decision"] == "issued"
    assert issued["instance"] == me
    my_name, my_address = _names(ec2, me)
    assert issued["names"] == [my_name, my_name, my_address]  # the common name, then the SAN
    assert issued["caller"] == instance_session_arn(ROLE_NAME, me)
    assert issued["certificate_arn"]
    assert (refused["decision"], refused["rule"], refused["status"]) == ("refused", "name-not-allowed", 403)
    assert refused["names"] == [_names(ec2, neighbour)[0]]
    body = "".join(own.splitlines()[1:-1])
    assert body[:40] not in caplog.text
    assert "BEGIN" not in caplog.text


# --- the Lambda entry point ----------------------------------------------------------------------------------------


@pytest.fixture
def fresh_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """`handler()` builds its issuer on the first call of an execution environment: start from none."""
    monkeypatch.setattr(handler_module, "_issuer", None)
    return


def test_the_entry_point_builds_its_issuer_from_the_environment(
    aws: RecordingProxy,
    fleet: Fleet,
    short_lived_ca: str,
    ec2: Any,
    monkeypatch: pytest.MonkeyPatch,
    fresh_entry_point: None,
) -> None:
    for name, value in _environment(fleet, short_lived_ca).items():
        monkeypatch.setenv(name, value)
    instance_id = fleet.instance_ids[0]
    event = function_url_event(
        csr_body(_host_csr(ec2, instance_id)), user_arn=instance_session_arn(ROLE_NAME, instance_id)
    )
    assert handler_module.handler(event, LambdaContext())["statusCode"] == 200
    assert handler_module.handler(event, LambdaContext())["statusCode"] == 200
    assert len(aws.calls("DescribeCertificateAuthority")) == 1, "one issuer per execution environment"


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        (ENV_CA_ARN, "arn:aws:acm-pca:us-east-1:123456789012:certificate/x", ENV_CA_ARN),
        (ENV_VALIDITY_DAYS, "seven", ENV_VALIDITY_DAYS),
        (ENV_HOST_ROLE_ARN, "arn:aws:iam::123456789012:user/alice", ENV_HOST_ROLE_ARN),
        (ENV_SERVICE_NAMES, "api.example", ENV_SERVICE_NAMES),
        (ENV_AUTO_SCALING_GROUP, "", ENV_AUTO_SCALING_GROUP),
        (ENV_SIGNING_ALGORITHM, "MD5WITHRSA", ENV_SIGNING_ALGORITHM),
    ],
)
def test_a_misconfigured_function_answers_500_and_logs_which_variable(
    fleet: Fleet, short_lived_ca: str, monkeypatch: pytest.MonkeyPatch, fresh_entry_point: None,
    caplog: pytest.LogCaptureFixture, name: str, value: str, words: str,
) -> None:  # fmt: skip
    for variable, setting in _environment(fleet, short_lived_ca, **{name: value}).items():
        monkeypatch.setenv(variable, setting)
    event = function_url_event("{}", user_arn=instance_session_arn(ROLE_NAME, fleet.instance_ids[0]))
    with caplog.at_level(logging.INFO, logger="pca_backend.issuer"):
        answer = handler_module.handler(event, LambdaContext())
    assert (answer["statusCode"], json.loads(answer["body"])["rule"]) == (500, "issuer-misconfigured")
    assert words in caplog.text
