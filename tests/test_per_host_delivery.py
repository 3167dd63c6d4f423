"""`PerHostDelivery` plugged into `EncryptedBackend` under Pulumi mocks: its arguments checked when it is made, the
hosts' whole payload checked before any resource, the issuer created for the fleet's role and group, the payload
rendered from the issuer's URL, the CA pinned, and nothing of SSM or KMS. The program in the per-host mode is
tests/test_per_host_program.py."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any, cast

import pulumi
import pytest

from components import x509
from components.arguments import ArgumentsError
from components.encrypted_backend import EncryptedBackend, EncryptedBackendArgs
from components.host_agent import AGENT_CONFIG_PATH, AGENT_PATH
from components.host_bootstrap import CERTIFICATE_PATH, PRIVATE_KEY_PATH, pack_payload
from components.issuer import contract
from components.key_delivery import HostContext
from components.nginx_config import render_server_block
from components.per_host_delivery import PerHostDelivery, PerHostDeliveryArgs, stand_in_issuer_url
from tests.stack_harness import ACCOUNT, PKI_ROOT_PEM, PROJECT, StackRun, _Mocks, run_under_mocks

REGION = "us-east-1"
CA_ARN = f"arn:aws:acm-pca:{REGION}:{ACCOUNT}:certificate-authority/11111111-2222-3333-4444-555555555555"
VPC_ID = "vpc-0a1b2c3d4e5f60718"
LISTENER_CERT_ARN = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
GROUP = "pca-backend-orders"
ISSUER = "pca-backend:index:PerHostIssuer"


def _delivery_args(**changes: Any) -> PerHostDeliveryArgs:
    args: dict[str, Any] = {
        "ca_arn": CA_ARN,
        "ca_bundle_pem": PKI_ROOT_PEM,
        "ca_usage_mode": "SHORT_LIVED_CERTIFICATE",
        "service_names": ["api.internal.example"],
        "key_algorithm": "EC_secp384r1",
        "reserved_concurrency": 4,
        "log_retention_days": 30,
        "tags": {"cost-centre": "pki"},
    }
    args.update(changes)
    return cast(PerHostDeliveryArgs, {key: value for key, value in args.items() if value is not None})


def _backend_args(delivery: PerHostDelivery, **changes: Any) -> EncryptedBackendArgs:
    args: dict[str, Any] = {
        "vpc_id": VPC_ID,
        # The mocks place a subnet in zone a, b, c... by its last digit.
        "alb_subnet_ids": ["subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60712"],
        "host_subnet_ids": ["subnet-0a1b2c3d4e5f60721", "subnet-0a1b2c3d4e5f60722"],
        "internal": True,
        "ingress_cidrs": ["10.0.0.0/16"],
        "host_count": 2,
        "instance_type": "t3.small",
        "listener_certificate_arn": LISTENER_CERT_ARN,
        "server_names": ["*.ec2.internal", "api.internal.example"],
        "backend_name": "orders",
        "region": REGION,
        "certificate_alarm_days": 1,
        "tags": {"team": "platform"},
        "key_delivery": delivery,
    }
    args.update(changes)
    return cast(EncryptedBackendArgs, args)


def _deploy(make: Callable[[], object]) -> tuple[StackRun, BaseException | None]:
    """Runs `make` (which creates resources) under the program's mocks; what it registered, and what it raised."""
    run = StackRun(stack="test", config={f"{PROJECT}:vpcId": VPC_ID})

    async def body() -> None:
        make()

    try:
        run_under_mocks(body, _Mocks(run))
    except Exception as error:  # handed to the test, which says what it expected
        return run, error
    return run, None


def _deployed(delivery: PerHostDelivery | None = None, **changes: Any) -> StackRun:
    delivery = delivery or PerHostDelivery(_delivery_args())
    run, error = _deploy(lambda: EncryptedBackend("orders", _backend_args(delivery, **changes)))
    assert error is None, repr(error)
    return run


# --- arguments, checked when the delivery is made ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"ca_arn": None}, "missing required argument(s): ca_arn"),
        ({"ca_arn": "arn:aws:acm:us-east-1:123456789012:certificate/x"}, "ca_arn must be an ACM PCA"),
        ({"ca_bundle_pem": "not PEM"}, "ca_bundle_pem must be PEM text"),
        ({"ca_bundle_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "PEM CA certificates"),
        ({"validity_days": 0}, "validity_days must be an integer from 1 to 365"),
        ({"validity_days": 8}, "a SHORT_LIVED_CERTIFICATE CA issues certificates of at most 7 days"),
        ({"ca_usage_mode": "CHEAP"}, "ca_usage_mode must be one of"),
        ({"template_arn": "RootCACertificate/V1"}, "use an end-entity template"),
        ({"service_names": ["*.internal.example"]}, "without a wildcard"),
        ({"service_names": ["ip-10-0-0-1.ec2.internal"]}, "is an EC2 instance name"),
        ({"service_names": ["api.internal.example."]}, "ends with a dot"),
        ({"key_algorithm": "ED25519"}, "key_algorithm must be one of"),
        ({"reserved_concurrency": 0}, "reserved_concurrency must be an integer from 1 to 900"),
        ({"log_retention_days": 2}, "log_retention_days must be one of"),
        ({"tags": {"aws:reserved": "x"}}, "tags"),
    ],
)
def test_bad_arguments_are_refused_by_name_when_the_delivery_is_made(changes: dict[str, Any], said: str) -> None:
    with pytest.raises(ValueError, match=re.escape(said)):
        PerHostDelivery(_delivery_args(**changes))


def test_every_bad_argument_is_reported_at_once() -> None:
    with pytest.raises(ArgumentsError) as refused:
        PerHostDelivery(_delivery_args(key_algorithm="DSA", reserved_concurrency=0, tags={"aws:x": "y"}))
    text = str(refused.value)
    assert all(part in text for part in ("key_algorithm", "reserved_concurrency", "tags")), text


def test_defaults_are_a_week_of_ec_p256_from_the_server_auth_template() -> None:
    args = PerHostDelivery({"ca_arn": CA_ARN, "ca_bundle_pem": PKI_ROOT_PEM}).args
    assert (args["validity_days"], args["key_algorithm"], args["template_arn"]) == (
        7,
        "EC_prime256v1",
        "EndEntityServerAuthCertificate/V1",
    )
    assert (args["service_names"], args["reserved_concurrency"], args["log_retention_days"]) == ((), 10, 365)


# --- check: what cannot work for these hosts, before any resource ---------------------------------------------------


def _hosts(**changes: Any) -> HostContext:
    block = render_server_block(
        server_names=["api.internal.example"], certificate_path=CERTIFICATE_PATH, private_key_path=PRIVATE_KEY_PATH
    )
    return HostContext(**{"region": REGION, "backend_name": "orders", "server_block": block, **changes})


def test_check_renders_the_hosts_whole_payload_with_a_stand_in_url() -> None:
    delivery = PerHostDelivery(_delivery_args())
    delivery.check(_hosts())
    assert stand_in_issuer_url("eu-west-1") == f"https://{'0' * 32}.lambda-url.eu-west-1.on.aws/"
    with pytest.raises(ValueError, match="server_block must serve"):
        delivery.check(_hosts(server_block="server {\n}\n"))


@pytest.mark.parametrize(("validity", "alarm"), [(7, 3), (7, 14), (30, 10)])
def test_an_alarm_threshold_outside_the_hosts_renewal_window_is_refused(validity: int, alarm: int) -> None:
    delivery = PerHostDelivery(_delivery_args(ca_usage_mode=None, validity_days=validity))
    with pytest.raises(
        ValueError, match=r"certificate_alarm_days is \d+ but must be less than a third of validity_days"
    ):
        delivery.check(_hosts(certificate_alarm_days=alarm))
    delivery.check(_hosts(certificate_alarm_days=-(-validity // 3) - 1))


def test_the_fleets_default_alarm_with_week_long_certificates_is_refused_before_any_resource() -> None:
    """The fleet's default threshold (14 days) would fire forever over 7-day certificates."""
    delivery = PerHostDelivery(_delivery_args())
    run, error = _deploy(lambda: EncryptedBackend("orders", _backend_args(delivery, certificate_alarm_days=None)))
    assert isinstance(error, ValueError), repr(error)
    assert "certificate_alarm_days is 14" in str(error), repr(error)
    assert run.resources == [], f"registered {[r.urn for r in run.resources]} before refusing"


# --- deliver: the issuer for this fleet, and what the hosts get --------------------------------------------------


def test_the_issuer_is_made_for_the_fleets_role_and_group() -> None:
    run = _deployed()
    (issuer,) = run.of_type(ISSUER)
    (fleet,) = run.of_type("pca-backend:index:HostFleet")
    assert (issuer.name, issuer.parent) == ("orders-issuer", fleet.urn), "a child of the fleet, named after it"
    group = run.one("aws:autoscaling/group:Group")
    assert group.inputs["name"] == GROUP, "a name known before the group exists"
    function = run.one("aws:lambda/function:Function")
    environment = function.inputs["environment"]["variables"]
    role = next(r for r in run.of_type("aws:iam/role:Role") if r.name == "orders-host-role")
    host_role_arn = role.outputs["arn"]
    assert environment[contract.ENV_AUTO_SCALING_GROUP] == GROUP
    assert environment[contract.ENV_HOST_ROLE_ARN] == host_role_arn
    assert environment[contract.ENV_CA_ARN] == CA_ARN
    assert environment[contract.ENV_VALIDITY_DAYS] == "7"
    assert json.loads(environment[contract.ENV_SERVICE_NAMES]) == ["api.internal.example"]
    assert (
        function.inputs["reservedConcurrentExecutions"],
        run.one("aws:cloudwatch/logGroup:LogGroup").inputs["retentionInDays"],
    ) == (4, 30)
    for permission in run.of_type("aws:lambda/permission:Permission"):
        assert permission.inputs["principal"] == host_role_arn, permission.urn
    # The fleet's tags and the delivery's own.
    assert {"team": "platform", "cost-centre": "pki"}.items() <= function.inputs["tags"].items()


def test_the_payload_is_the_agent_with_the_issuers_url_and_the_pins_are_the_bundles() -> None:
    run = _deployed()
    url = run.one("aws:lambda/functionUrl:FunctionUrl").outputs["functionUrl"]
    payload = run.one("aws:s3/bucketObjectv2:BucketObjectv2")
    content = payload.inputs["content"]
    assert f"cat >{AGENT_PATH} <<" in content, "the agent is installed"
    config = content.split(f"cat >{AGENT_CONFIG_PATH} <<'", 1)[1].split("\n", 1)[1].split("\n}\n", 1)[0] + "\n}\n"
    agent = json.loads(config)
    assert (agent["issuer_url"], agent["region"]) == (url, REGION)
    assert (agent["service_names"], agent["key_algorithm"], agent["metric_backend"]) == (
        ["api.internal.example"],
        "EC_secp384r1",
        "orders",
    )
    assert "PRIVATE KEY-----" not in content, "no key material in the payload"
    assert "ssm get-parameters" not in content, "no parameter to read"
    delivery = PerHostDelivery(_delivery_args())
    expected = pack_payload(delivery._payload(_hosts_of(run), url))
    assert (payload.inputs["key"], content) == (expected.key, expected.script)
    user_data = run.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"]

    bootstrap = base64.b64decode(user_data).decode()
    for pin in x509.sha256_fingerprints(PKI_ROOT_PEM):
        assert f"\n{pin}\n" in bootstrap, "the CA bundle's fingerprints are pinned"


def _hosts_of(run: StackRun) -> HostContext:
    """The hosts' context the fleet built (its server block is in the payload)."""
    block = render_server_block(
        server_names=["*.ec2.internal", "api.internal.example"],
        certificate_path=CERTIFICATE_PATH,
        private_key_path=PRIVATE_KEY_PATH,
    )
    return HostContext(region=REGION, backend_name="orders", server_block=block, certificate_alarm_days=1)


def test_the_hosts_need_no_ssm_or_kms_and_wait_for_the_issuer() -> None:
    run = _deployed()
    assert not run.of_type("aws:kms/key:Key")
    assert not run.of_type("aws:ssm/parameter:Parameter")
    policy = json.loads(
        next(p for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == "orders-host-policy").inputs["policy"]
    )
    assert [statement["Sid"] for statement in policy["Statement"]] == [
        "ReadHostPayloads",
        "ReportCertificateDays",
        "SessionManager",
    ], "the fleet's own statements only: the issuer's resource policy lets the role invoke it"
    group = run.one("aws:autoscaling/group:Group")
    waits_for = {
        run.one("aws:lambda/function:Function").urn,
        run.one("aws:lambda/functionUrl:FunctionUrl").urn,
        *(permission.urn for permission in run.of_type("aws:lambda/permission:Permission")),
    }
    assert waits_for <= set(group.dependencies), "the first hosts find the issuer ready to answer"


def test_the_fleets_texts_are_the_per_host_modes() -> None:
    run = _deployed()
    role = next(r for r in run.of_type("aws:iam/role:Role") if r.name == "orders-host-role")
    assert "per-host issuer" in role.inputs["description"], role.inputs["description"]
    template = run.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert "key made on the host" in template.inputs["description"]
    alarm = run.one("aws:cloudwatch/metricAlarm:MetricAlarm").inputs["alarmDescription"]
    assert "pulumi up does not" in alarm, alarm
    assert "journalctl -u pca-backend-cert-agent" in alarm, alarm
    assert len(alarm) <= 1024, "CloudWatch's limit on an alarm's description"


def test_one_delivery_serves_one_fleet() -> None:
    delivery = PerHostDelivery(_delivery_args())
    with pytest.raises(RuntimeError, match="once the fleet has called deliver"):
        _ = delivery.issuer

    def two_fleets() -> None:
        EncryptedBackend("orders", _backend_args(delivery))
        EncryptedBackend("payments", _backend_args(delivery, backend_name="payments"))

    _, error = _deploy(two_fleets)
    assert isinstance(error, ValueError), repr(error)
    assert "make one per fleet" in str(error), repr(error)
    assert isinstance(delivery.issuer, pulumi.ComponentResource)


def test_a_ca_bundle_not_known_yet_is_pinned_once_known() -> None:
    delivery_holder: list[PerHostDelivery] = []

    def make() -> None:
        bundle = pulumi.Output.from_input(PKI_ROOT_PEM).apply(lambda pem: pem)
        delivery_holder.append(PerHostDelivery(_delivery_args(ca_bundle_pem=bundle)))
        EncryptedBackend("orders", _backend_args(delivery_holder[0]))

    run, error = _deploy(make)
    assert error is None, repr(error)

    bootstrap = base64.b64decode(run.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["userData"]).decode()
    assert all(pin in bootstrap for pin in x509.sha256_fingerprints(PKI_ROOT_PEM))
