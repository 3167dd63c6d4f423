"""Unit tests of the EncryptedBackend component with Pulumi mocks (no AWS, no Pulumi CLI).

The mocks record every resource's inputs; the tests read them back. Mocks are process-global in Pulumi,
so the `mocks` fixture installs them for one test and restores the previous runtime settings afterwards.
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import hashlib
import json
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pulumi
import pulumi.runtime.settings as runtime_settings
import pulumi_aws as aws
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

from components.arguments import ArgumentsError
from components.encrypted_backend import (
    DEFAULT_AMI_PARAMETER,
    LISTENER_SSL_POLICY,
    TLS_GATE_SCRIPT_PATH,
    TRUST_CA_SCRIPT_PATH,
    EncryptedBackend,
    EncryptedBackendArgs,
)
from components.host_bootstrap import (
    CERTIFICATE_PATH,
    PINS_PATH,
    PRIVATE_KEY_PATH,
    USER_DATA_LIMIT_BYTES,
    VERIFY_TLS_PATH,
    pack_payload,
    pack_user_data,
    render_bootstrap,
    render_shared_payload,
)
from components.host_payload import HostFile, HostPayload
from components.key_delivery import DeliveryTexts, FleetIdentity, HostContext
from components.local.tls import self_signed_ca_pem
from components.nginx_config import render_server_block
from components.ssm_key_delivery import (
    VERIFY_TLS_SCRIPT_PATH,
    SsmKeyDelivery,
    SsmKeyDeliveryArgs,
    SsmKeyParameters,
)
from components.x509 import generate_private_key, private_key_pem, sha256_fingerprints
from tests.stack_harness import PKI_ROOT_PEM

ACCOUNT = "123456789012"
REGION = "eu-west-1"
AMI_ID = "ami-0abc1234def567890"
CA_ARN = f"arn:aws:acm-pca:{REGION}:{ACCOUNT}:certificate-authority/11111111-2222-3333-4444-555555555555"
DEPLOYER_SESSION_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/gha-run-1234"
DEPLOYER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/ci/deploy"
LISTENER_CERT_ARN = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"

# PEMs with recognisable bodies: a body found anywhere it should not be is a leak. The key is made per run.
KEY_PEM = private_key_pem(generate_private_key("EC_prime256v1"))
KEY_BODY = KEY_PEM.splitlines()[1]
FAKE_CHAIN_PEM = "-----BEGIN CERTIFICATE-----\nRkFLRS1MRUFG\n-----END CERTIFICATE-----\n"
# A real certificate: the hosts pin the SHA-256 fingerprint of each certificate in the bundle.
FAKE_BUNDLE_PEM = PKI_ROOT_PEM
BUNDLE_BODY = FAKE_BUNDLE_PEM.splitlines()[1]
VPC_ID = "vpc-0123456789abcdef0"
#: What EC2 says of the subnets the tests name (zone, VPC).
SUBNETS = {
    "subnet-0a1a1a1a": (f"{REGION}a", VPC_ID),
    "subnet-0b1b1b1b": (f"{REGION}b", VPC_ID),
    "subnet-0a2a2a2a": (f"{REGION}a", VPC_ID),
    "subnet-0b2b2b2b": (f"{REGION}b", VPC_ID),
    "subnet-0c2c2c2c": (f"{REGION}c", VPC_ID),
    "subnet-0a3a3a3a": (f"{REGION}a", VPC_ID),
    "subnet-0b9b9b9b": (f"{REGION}b", "vpc-0999999999abcdef0"),
}


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like AWS would (ids, ARNs, DNS names) and records every resource and invoke."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.calls: list[pulumi.runtime.MockCallArgs] = []
        #: The `ignore_changes` option of each resource, by (type, name), as the engine receives it (camelCase).
        self.ignore_changes: dict[tuple[str, str], list[str]] = {}
        #: The `retain_on_delete` option of each resource, by (type, name).
        self.retain_on_delete: dict[tuple[str, str], bool] = {}
        #: The names of the resources each resource depends on (`depends_on` and inputs), by (type, name).
        self.dependencies: dict[tuple[str, str], set[str]] = {}
        #: Who runs `pulumi up` (what sts:GetCallerIdentity answers).
        self.caller_arn = DEPLOYER_SESSION_ARN

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        resource_id = f"{args.name}_id"
        if args.typ == "aws:ssm/parameter:Parameter":
            outputs["arn"] = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{args.inputs['name']}"
        elif args.typ == "aws:lb/loadBalancer:LoadBalancer":
            outputs["arn"] = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/{args.name}/1"
            outputs["dns_name"] = f"{args.name}.{REGION}.elb.amazonaws.com"
        elif args.typ == "aws:ec2/securityGroup:SecurityGroup":
            resource_id = f"sg-{args.name}"
        elif args.typ == "aws:kms/key:Key":
            resource_id = f"key-{args.name}"
            outputs.update(arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{resource_id}", key_id=resource_id)
        elif args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            resource_id = f"lt-{args.name}"
            # AWS numbers versions; a stand-in that changes exactly when the boot script does.
            outputs["latest_version"] = zlib.crc32(args.inputs["userData"].encode()) % 1000
        elif args.typ == "aws:autoscaling/group:Group":
            outputs["name"] = f"{args.name}-asg"
        elif args.typ == "aws:s3/bucket:Bucket":
            # Named by Pulumi: the resource name and a random suffix.
            resource_id = f"{args.name}-0a1b2c3"
            outputs.update(bucket=resource_id, arn=f"arn:aws:s3:::{resource_id}")
        else:
            outputs.setdefault("arn", f"arn:aws:mock:{REGION}:{ACCOUNT}:{args.typ}/{args.name}")
        outputs.setdefault("name", args.name)
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.calls.append(args)
        if args.token == "aws:ssm/getParameter:getParameter":
            name = args.args["name"]
            # Invoke results use the provider's camelCase names.
            result = {"id": name, "name": name, "type": "String", "value": AMI_ID, "insecureValue": AMI_ID}
            return result, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": self.caller_arn, "userId": "x", "id": ACCOUNT}, []
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}, []
        if args.token == "aws:ec2/getSubnet:getSubnet":
            zone, vpc = SUBNETS[args.args["id"]]
            return {"id": args.args["id"], "availabilityZone": zone, "vpcId": vpc}, []
        if args.token == "aws:iam/getSessionContext:getSessionContext":
            assert args.args["arn"] == DEPLOYER_SESSION_ARN
            return {"arn": DEPLOYER_SESSION_ARN, "issuerArn": DEPLOYER_ROLE_ARN, "id": "x"}, []
        raise AssertionError(f"unexpected invoke {args.token}")

    def of_type(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]

    def named(self, name: str) -> pulumi.runtime.MockResourceArgs:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name}, got {[r.name for r in self.resources]}"
        return matches[0]


class _OptionsMonitor(MockMonitor):
    """Keeps what `MockResourceArgs` leaves out: the resource options the engine would apply."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recording = mocks

    def RegisterResource(self, request: Any) -> Any:
        key = (request.type, request.name)
        self.recording.ignore_changes[key] = list(request.ignoreChanges)
        self.recording.retain_on_delete[key] = bool(request.retainOnDelete)
        self.recording.dependencies[key] = {urn.rsplit("::", 1)[-1] for urn in request.dependencies}
        return super().RegisterResource(request)


@pytest.fixture
def mocks() -> Iterator[RecordingMocks]:
    """Installs recording mocks for one test; restores the runtime settings and root resource after."""
    settings = runtime_settings.SETTINGS
    saved = {
        "project": settings.project,
        "stack": settings.stack,
        "monitor": settings.monitor,
        "engine": settings.engine,
        "parallel": settings.parallel,
        "dry_run": settings.dry_run,
        "organization": settings.organization,
        "root_directory": settings.root_directory,
    }
    saved_root = runtime_settings.get_root_resource()
    runtime_settings.ROOT.set(None)
    recording = RecordingMocks()
    pulumi.runtime.set_mocks(
        recording, project="pca-backend", stack="test", preview=False, monitor=_OptionsMonitor(recording)
    )
    try:
        yield recording
    finally:
        runtime_settings.configure(runtime_settings.Settings(**saved))
        runtime_settings.ROOT.set(saved_root)


#: Arguments of the key delivery (`SsmKeyDelivery`), which `_args` takes as overrides too.
DELIVERY_KEYS = frozenset(SsmKeyDeliveryArgs.__annotations__)


def _args(**overrides: Any) -> EncryptedBackendArgs:
    """The backend's arguments with `overrides` (its own, or its `SsmKeyDelivery`'s); None removes an argument."""
    delivery: dict[str, Any] = {
        "full_chain_pem": FAKE_CHAIN_PEM,
        "private_key_pem": KEY_PEM,
        "ca_bundle_pem": FAKE_BUNDLE_PEM,
        "parameter_prefix": "/pca-backend/test",
        "parameter_writer_arns": [DEPLOYER_ROLE_ARN],
    }
    args: dict[str, Any] = {
        "vpc_id": VPC_ID,
        "alb_subnet_ids": ["subnet-0a1a1a1a", "subnet-0b1b1b1b"],
        "host_subnet_ids": ["subnet-0a2a2a2a", "subnet-0b2b2b2b"],
        "internal": True,
        "ingress_cidrs": ["10.0.0.0/16", "fd00::/8"],
        "peer_security_group_ids": ["sg-0e1e1e1e"],
        "host_count": 3,
        "instance_type": "t3.small",
        "listener_certificate_arn": LISTENER_CERT_ARN,
        "server_names": ["api.internal.example"],
        "backend_name": "pca-backend-test",
        "region": REGION,
        "tags": {"team": "platform"},
    }
    for key, value in overrides.items():
        (delivery if key in DELIVERY_KEYS else args)[key] = value
    delivery = {key: value for key, value in delivery.items() if value is not None}
    args = {key: value for key, value in args.items() if value is not None}
    return {**args, "key_delivery": SsmKeyDelivery(delivery)}  # type: ignore[typeddict-item]


def _deploy(name: str, args: EncryptedBackendArgs | Callable[[], EncryptedBackendArgs]) -> str:
    """Runs a program that creates one EncryptedBackend; returns its URN once every resource is registered.

    `args` may be a function, called inside the program (where Outputs can be created).

    Checks of recorded inputs run after the program, not inside an apply: an apply fires as soon as its own
    inputs resolve, possibly before unrelated children (rules, attachments) are registered.
    """
    urns: list[str] = []

    @pulumi.runtime.test
    def program() -> pulumi.Output[None]:
        return EncryptedBackend(name, args() if callable(args) else args).urn.apply(urns.append)

    program()
    (urn,) = urns
    return urn


def _secret_value(value: Any) -> Any:
    """The value of an input the SDK marked secret (mocks see `{<sig key>: <secret sig>, "value": ...}`)."""
    assert isinstance(value, dict), f"expected a secret, got a plain {type(value).__name__}"
    assert value.get(rpc._special_sig_key) == rpc._special_secret_sig, f"expected a secret, got {value!r}"
    return value["value"]


def _dump(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


BUCKET = "aws:s3/bucket:Bucket"
PAYLOAD_OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"


def _user_data(mocks: RecordingMocks) -> str:
    """The launch template's user data as a host gets it: the bootstrap's text (base64 in the API)."""
    (template,) = mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    raw = base64.b64decode(template.inputs["userData"], validate=True)
    assert len(raw) <= USER_DATA_LIMIT_BYTES, "EC2 counts the user data before base64"
    return raw.decode()


def _payload_object(mocks: RecordingMocks) -> dict[str, Any]:
    (payload,) = mocks.of_type(PAYLOAD_OBJECT)
    return dict(payload.inputs)


def _pins(script: str) -> list[str]:
    body = script.split(f"cat >{PINS_PATH} <<'PCA_BACKEND_PINS_EOF'\n", 1)[1].split("PCA_BACKEND_PINS_EOF\n", 1)[0]
    return [line for line in body.splitlines() if not line.startswith("#")]


def test_target_group_and_health_check_are_https(mocks: RecordingMocks) -> None:
    urn = _deploy("tg", _args(backend_port=8443, health_check_path="/ready"))

    (target_group,) = mocks.of_type("aws:lb/targetGroup:TargetGroup")
    inputs = target_group.inputs
    assert inputs["protocol"] == "HTTPS", urn
    assert inputs["port"] == 8443, urn
    assert inputs["targetType"] == "instance", urn
    health = inputs["healthCheck"]
    assert health["protocol"] == "HTTPS", urn
    assert health["path"] == "/ready", urn
    assert health["matcher"] == "200", urn
    # The hosts register through their Auto Scaling group, on the target group's port.
    (group,) = mocks.of_type("aws:autoscaling/group:Group")
    assert group.inputs["targetGroupArns"] == [
        f"arn:aws:mock:{REGION}:{ACCOUNT}:aws:lb/targetGroup:TargetGroup/tg-targets"
    ]
    assert not mocks.of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment"), urn


def test_https_listener_uses_tls13_policy_and_forwards(mocks: RecordingMocks) -> None:
    urn = _deploy("lsn", _args())

    (listener,) = mocks.of_type("aws:lb/listener:Listener")
    inputs = listener.inputs
    assert inputs["protocol"] == "HTTPS", urn
    assert inputs["port"] == 443, urn
    assert inputs["sslPolicy"] == LISTENER_SSL_POLICY == "ELBSecurityPolicy-TLS13-1-2-2021-06", urn
    assert inputs["certificateArn"] == LISTENER_CERT_ARN, urn
    (action,) = inputs["defaultActions"]
    assert action["type"] == "forward", urn
    (alb,) = mocks.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["loadBalancerType"] == "application", urn
    assert alb.inputs["internal"] is True, urn
    assert alb.inputs["dropInvalidHeaderFields"] is True, urn
    assert alb.inputs["securityGroups"] == ["sg-lsn-alb-sg"], urn


def test_http_listener_only_redirects(mocks: RecordingMocks) -> None:
    urn = _deploy("redir", _args(http_redirect=True))

    http = [r for r in mocks.of_type("aws:lb/listener:Listener") if r.inputs["port"] == 80]
    assert len(http) == 1, urn
    inputs = http[0].inputs
    assert inputs["protocol"] == "HTTP", urn
    assert "certificateArn" not in inputs, urn
    (action,) = inputs["defaultActions"]
    assert action["type"] == "redirect", urn
    assert "targetGroupArn" not in action, urn
    assert action["redirect"] == {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}, urn
    alb_80 = [
        r
        for r in mocks.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == "sg-redir-alb-sg" and r.inputs["fromPort"] == 80
    ]
    assert {r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6") for r in alb_80} == {
        "10.0.0.0/16",
        "fd00::/8",
    }, urn


def test_no_http_listener_by_default(mocks: RecordingMocks) -> None:
    urn = _deploy("nohttp", _args())

    assert [r.inputs["port"] for r in mocks.of_type("aws:lb/listener:Listener")] == [443], urn
    rules = mocks.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert all(r.inputs["fromPort"] != 80 for r in rules), urn


def test_security_group_rules(mocks: RecordingMocks) -> None:
    urn = _deploy("sg", _args(backend_port=8443))
    alb_sg, backend_sg = "sg-sg-alb-sg", "sg-sg-backend-sg"

    groups = {g.name: g for g in mocks.of_type("aws:ec2/securityGroup:SecurityGroup")}
    assert groups["sg-alb-sg"].inputs["tags"]["pca-backend:role"] == "alb", urn
    assert groups["sg-backend-sg"].inputs["tags"]["pca-backend:role"] == "backend", urn
    assert groups["sg-backend-sg"].inputs["tags"]["team"] == "platform", urn
    assert groups["sg-backend-sg"].inputs["tags"]["Name"] == "sg-backend-sg", urn
    for group in groups.values():
        assert "ingress" not in group.inputs, f"{urn}: inline ingress rules"
        assert "egress" not in group.inputs, f"{urn}: inline egress rules"

    ingress = mocks.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    egress = mocks.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    for rule in ingress + egress:
        assert rule.inputs["ipProtocol"] == "tcp", f"{urn}: {rule.name}"
        assert rule.inputs["fromPort"] == rule.inputs["toPort"], f"{urn}: {rule.name} opens a range"
        assert rule.inputs["fromPort"] != 22, f"{urn}: {rule.name} opens SSH"

    alb_in = [r.inputs for r in ingress if r.inputs["securityGroupId"] == alb_sg]
    assert {(r["fromPort"], r.get("cidrIpv4") or r.get("cidrIpv6")) for r in alb_in} == {
        (443, "10.0.0.0/16"),
        (443, "fd00::/8"),
    }, urn
    alb_out = [r.inputs for r in egress if r.inputs["securityGroupId"] == alb_sg]
    assert alb_out == [
        {
            "securityGroupId": alb_sg,
            "ipProtocol": "tcp",
            "fromPort": 8443,
            "toPort": 8443,
            "referencedSecurityGroupId": backend_sg,
            "description": alb_out[0]["description"],
        }
    ], urn

    backend_in = [r.inputs for r in ingress if r.inputs["securityGroupId"] == backend_sg]
    assert all(r["fromPort"] == 8443 for r in backend_in), urn
    assert all("cidrIpv4" not in r and "cidrIpv6" not in r for r in backend_in), f"{urn}: CIDR ingress"
    assert sorted(r["referencedSecurityGroupId"] for r in backend_in) == sorted([alb_sg, backend_sg, "sg-0e1e1e1e"]), (
        urn
    )
    backend_out = [r.inputs for r in egress if r.inputs["securityGroupId"] == backend_sg]
    assert {(r["fromPort"], r.get("cidrIpv4"), r.get("referencedSecurityGroupId")) for r in backend_out} == {
        (443, "0.0.0.0/0", None),
        (8443, None, backend_sg),
    }, urn


def test_internet_facing_alb_may_be_open_to_the_world(mocks: RecordingMocks) -> None:
    urn = _deploy("public", _args(internal=False, ingress_cidrs=["0.0.0.0/0"]))

    (alb,) = mocks.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["internal"] is False, urn
    ingress = mocks.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    open_rules = [r for r in ingress if r.inputs.get("cidrIpv4") == "0.0.0.0/0"]
    assert [r.inputs["securityGroupId"] for r in open_rules] == ["sg-public-alb-sg"], urn


def test_launch_template_imdsv2_encrypted_root_and_user_data(mocks: RecordingMocks) -> None:
    urn = _deploy("host", _args())

    assert not mocks.of_type("aws:ec2/instance:Instance"), f"{urn}: hosts come from the Auto Scaling group"
    (template,) = mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    inputs = template.inputs
    assert inputs["imageId"] == AMI_ID, urn
    assert inputs["instanceType"] == "t3.small", urn
    assert inputs["vpcSecurityGroupIds"] == ["sg-host-backend-sg"], urn
    assert inputs["iamInstanceProfile"] == {
        "arn": f"arn:aws:mock:{REGION}:{ACCOUNT}:aws:iam/instanceProfile:InstanceProfile/host-host-profile"
    }, urn
    assert inputs["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
    }, urn
    (root,) = inputs["blockDeviceMappings"]
    assert root["deviceName"] == "/dev/xvda", urn
    assert root["ebs"] == {"encrypted": "true", "volumeType": "gp3", "deleteOnTermination": "true"}, urn
    assert inputs["privateDnsNameOptions"] == {"hostnameType": "ip-name"}, f"{urn}: names under the EC2 wildcard"
    assert inputs["monitoring"] == {"enabled": True}, urn
    assert inputs["updateDefaultVersion"] is True, urn
    assert "keyName" not in inputs, f"{urn}: no SSH key; Session Manager instead"
    # The user data is the small bootstrap: the pins, the payload's address and digest, nothing else.
    user_data = _user_data(mocks)
    assert user_data.startswith("#!/bin/bash\n"), urn
    assert len(user_data.encode()) < 3 * 1024, f"{urn}: {len(user_data.encode())} bytes of user data"
    payload = _payload_object(mocks)
    digest = hashlib.sha256(payload["content"].encode()).hexdigest()
    assert payload["key"] == f"hosts/{digest}.sh", f"{urn}: content-addressed"
    assert user_data == render_bootstrap(
        region=REGION,
        bucket="host-host-payloads-0a1b2c3",
        key=payload["key"],
        sha256=digest,
        ca_fingerprints=sha256_fingerprints(FAKE_BUNDLE_PEM),
    ), urn
    assert _pins(user_data) == sha256_fingerprints(FAKE_BUNDLE_PEM), urn
    # The host software is the payload: parameter names, the nginx block, the region.
    for name in ("/pca-backend/test/full-chain", "/pca-backend/test/private-key", "/pca-backend/test/ca-bundle"):
        assert name in payload["content"], urn
        assert name not in user_data, urn
    assert "server_name api.internal.example;" in payload["content"], urn
    assert "readonly REGION=eu-west-1" in payload["content"], urn
    (ami_call,) = [c for c in mocks.calls if c.token == "aws:ssm/getParameter:getParameter"]
    assert ami_call.args["name"] == DEFAULT_AMI_PARAMETER, urn


LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def test_the_parameters_ami_is_kept_after_the_first_deployment(mocks: RecordingMocks) -> None:
    """The public parameter moves with every Amazon Linux release: only its first answer may reach the hosts.
    Mocks cannot emulate the engine, so the option the engine applies is what is checked."""
    urn = _deploy("pinned", _args())

    (template,) = mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.inputs["imageId"] == AMI_ID, f"{urn}: the parameter's answer at creation"
    ignoring = {key: option for key, option in mocks.ignore_changes.items() if option}
    assert ignoring == {(LAUNCH_TEMPLATE, "pinned-hosts"): ["imageId"]}, (
        f"{urn}: later answers must not change the AMI, and nothing else may ignore changes"
    )


def test_a_given_ami_id_is_used_as_is_and_applies_when_changed(mocks: RecordingMocks) -> None:
    chosen = "ami-0fedcba9876543210"
    urn = _deploy("chosen", _args(ami_id=chosen))

    (template,) = mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.inputs["imageId"] == chosen, urn
    assert [c.token for c in mocks.calls if c.token == "aws:ssm/getParameter:getParameter"] == [], (
        f"{urn}: no AMI lookup when the AMI is given"
    )
    assert mocks.ignore_changes[(LAUNCH_TEMPLATE, "chosen-hosts")] == [], f"{urn}: a changed ami_id must roll the hosts"


@pytest.mark.parametrize(
    "ami_id", ["ami-123", "ami-0123456789ABCDEF0", "0123456789abcdef0", "ami-0123456789abcdef", ""]
)
def test_a_bad_ami_id_is_refused_naming_the_argument(mocks: RecordingMocks, ami_id: str) -> None:
    with pytest.raises(ValueError, match="ami_id must be an AMI id: 'ami-' followed by 8 or 17"):
        EncryptedBackend("bad", _args(ami_id=ami_id))
    assert mocks.resources == [], "a resource was registered before validation failed"


def test_auto_scaling_group_sizes_health_checks_and_refresh(mocks: RecordingMocks) -> None:
    urn = _deploy("asg", _args(host_count=3, host_min_count=2, host_max_count=6, min_healthy_percent=50))

    (group,) = mocks.of_type("aws:autoscaling/group:Group")
    inputs = group.inputs
    assert (inputs["minSize"], inputs["desiredCapacity"], inputs["maxSize"]) == (2, 3, 6), urn
    assert inputs["vpcZoneIdentifiers"] == ["subnet-0a2a2a2a", "subnet-0b2b2b2b"], (
        f"{urn}: spread over the host subnets"
    )
    (template,) = mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    version = str(zlib.crc32(template.inputs["userData"].encode()) % 1000)
    assert inputs["launchTemplate"] == {"id": "lt-asg-hosts", "version": version}, f"{urn}: a pinned version"
    assert inputs["healthCheckType"] == "ELB", urn
    assert inputs["healthCheckGracePeriod"] == 300, urn
    assert inputs["minElbCapacity"] == 2, f"{urn}: creation waits for the minimum to pass the health check"
    assert inputs["instanceRefresh"] == {
        "strategy": "Rolling",
        "preferences": {"minHealthyPercentage": 50, "maxHealthyPercentage": 150, "autoRollback": True},
        "triggers": ["tag"],
    }, urn
    assert "launchConfiguration" not in inputs, urn
    tags = {tag["key"]: tag for tag in inputs["tags"]}
    assert tags["team"] == {"key": "team", "value": "platform", "propagateAtLaunch": True}, urn


def test_fleet_defaults_keep_every_host_serving_during_a_refresh(mocks: RecordingMocks) -> None:
    urn = _deploy("one", _args(host_count=1))

    (group,) = mocks.of_type("aws:autoscaling/group:Group")
    # Room for the replacement beside the old host; without a scaling policy the group still runs one.
    assert (group.inputs["minSize"], group.inputs["desiredCapacity"], group.inputs["maxSize"]) == (1, 1, 2), urn
    # 100/200: a replacement comes up and passes health checks before the old host goes.
    preferences = group.inputs["instanceRefresh"]["preferences"]
    assert preferences == {"minHealthyPercentage": 100, "maxHealthyPercentage": 200, "autoRollback": True}, urn


@pytest.mark.parametrize(("healthy", "replacement_max"), [(100, 200), (50, 150), (5, 110), (0, 110)])
def test_an_unhealthy_host_is_replaced_before_it_is_terminated(
    mocks: RecordingMocks, healthy: int, replacement_max: int
) -> None:
    """Without an instance maintenance policy AWS terminates an unhealthy host first, then launches its
    replacement: a one-host fleet serves nothing meanwhile. Launch before terminate whatever the refresh does."""
    urn = _deploy("heal", _args(host_count=1, min_healthy_percent=healthy))

    (group,) = mocks.of_type("aws:autoscaling/group:Group")
    policy = group.inputs["instanceMaintenancePolicy"]
    assert policy == {"minHealthyPercentage": 100, "maxHealthyPercentage": replacement_max}, urn
    assert group.inputs["maxSize"] >= 2, f"{urn}: room for the replacement beside the unhealthy host"


def test_a_failed_refresh_rolls_back_and_a_failed_launch_does_not_fail_the_deployment(mocks: RecordingMocks) -> None:
    urn = _deploy("safe", _args())

    (group,) = mocks.of_type("aws:autoscaling/group:Group")
    assert group.inputs["instanceRefresh"]["preferences"]["autoRollback"] is True, urn
    # Rollback needs a pinned template version and an AMI ID in the template (not $Latest, not resolve:ssm).
    assert group.inputs["launchTemplate"]["version"].isdigit(), urn
    (template,) = mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.inputs["imageId"].startswith("ami-"), urn
    assert group.inputs["ignoreFailedScalingActivities"] is True, f"{urn}: one failed launch fails pulumi up"


def _fleet_resources(mocks: RecordingMocks, **overrides: Any) -> dict[tuple[str, str], dict[str, Any]]:
    mocks.resources.clear()
    _deploy("roll", _args(**overrides))
    return {(r.typ, r.name): dict(r.inputs) for r in mocks.resources}


def test_a_new_boot_script_is_a_new_template_version_not_new_resources(mocks: RecordingMocks) -> None:
    """Only the launch template's user data and the group's template version change: the group rolls the
    hosts (instance refresh) instead of anything replacing them all at once."""
    before = _fleet_resources(mocks, health_check_path="/healthz")
    after = _fleet_resources(mocks, health_check_path="/ready")

    assert set(before) == set(after), "the same resources, under the same names"
    changed = {key for key in before if before[key] != after[key]}
    template = ("aws:ec2/launchTemplate:LaunchTemplate", "roll-hosts")
    group = ("aws:autoscaling/group:Group", "roll-hosts")
    target_group = ("aws:lb/targetGroup:TargetGroup", "roll-targets")
    payload = (PAYLOAD_OBJECT, "roll-host-payload")
    assert changed == {template, group, target_group, payload}, changed
    # A new payload is a new object (a new key: the engine replaces it, the old one is retained) ...
    assert {k for k in before[payload] if before[payload][k] != after[payload][k]} == {"key", "content"}
    # ... and a new bootstrap naming it: a new launch template version.
    assert {k for k in before[template] if before[template][k] != after[template][k]} == {"userData"}
    assert {k for k in before[group] if before[group][k] != after[group][k]} == {"launchTemplate"}
    assert before[group]["launchTemplate"]["id"] == after[group]["launchTemplate"]["id"]
    assert before[group]["launchTemplate"]["version"] != after[group]["launchTemplate"]["version"]
    assert before[group]["instanceRefresh"]["strategy"] == "Rolling"


@pytest.mark.parametrize("count", [1, 4])
def test_subnet_ids_may_be_an_output(mocks: RecordingMocks, count: int) -> None:
    def args() -> EncryptedBackendArgs:
        subnets = pulumi.Output.from_input(["subnet-0c0c0c0c", "subnet-0d0d0d0d"])
        return _args(host_subnet_ids=subnets, alb_subnet_ids=subnets, host_count=count)

    urn = _deploy("outsub", args)
    (group,) = mocks.of_type("aws:autoscaling/group:Group")
    assert group.inputs["vpcZoneIdentifiers"] == ["subnet-0c0c0c0c", "subnet-0d0d0d0d"], urn
    assert group.inputs["desiredCapacity"] == count, urn
    assert not [c for c in mocks.calls if c.token == "aws:ec2/getSubnet:getSubnet"], f"{urn}: nothing to look up"


@pytest.mark.parametrize(
    ("argument", "value", "allowed"),
    [
        ("alb_subnet_ids", ["subnet-0a1a1a1a", "subnet-a1"], "a subnet ID (subnet- and 8 or 17 hex digits)"),
        ("host_subnet_ids", ["subnet-0a2a2a2a1"], "a subnet ID (subnet- and 8 or 17 hex digits)"),
        ("host_subnet_ids", ["subnet-0A2A2A2A"], "a subnet ID (subnet- and 8 or 17 hex digits)"),
        ("peer_security_group_ids", ["sg-peer1"], "a security group ID (sg- and 8 or 17 hex digits)"),
    ],
)
def test_prefix_only_ids_are_refused_like_settings_refuse_them(
    mocks: RecordingMocks, argument: str, value: list[str], allowed: str
) -> None:
    """The component checks the whole EC2 ID with the rule settings use, not only its prefix."""
    with pytest.raises(ValueError, match=re.escape(f"{argument} entry {value[-1]!r} must be {allowed}")):
        EncryptedBackend("prefix", _args(**{argument: value}))
    assert mocks.resources == [], "a resource was registered before validation failed"


def test_unknown_ids_in_a_list_pass_through_to_aws(mocks: RecordingMocks) -> None:
    """IDs that are Outputs (another component's, not known yet) are left for AWS to check at deployment."""

    def args() -> EncryptedBackendArgs:
        subnet = pulumi.Output.from_input("subnet-from-another-stack")
        group = pulumi.Output.from_input("sg-from-another-stack")
        return _args(host_subnet_ids=[subnet], peer_security_group_ids=[group])

    urn = _deploy("unknown", args)
    (group,) = mocks.of_type("aws:autoscaling/group:Group")
    assert group.inputs["vpcZoneIdentifiers"] == ["subnet-from-another-stack"], urn


def test_key_material_only_in_the_private_key_parameter(mocks: RecordingMocks) -> None:
    urn = _deploy("leak", _args(http_redirect=True))

    holders = [r for r in mocks.resources if KEY_BODY in _dump(r.inputs)]
    assert [(r.typ, r.name) for r in holders] == [("aws:ssm/parameter:Parameter", "leak-private-key")], urn
    assert _secret_value(holders[0].inputs["value"]) == KEY_PEM, urn
    # Nor any certificate content outside the parameters.
    for resource in mocks.resources:
        if resource.typ != "aws:ssm/parameter:Parameter":
            assert "RkFLRS1MRUFG" not in _dump(resource.inputs), f"{urn}: chain in {resource.name}"
            assert BUNDLE_BODY not in _dump(resource.inputs), f"{urn}: bundle in {resource.name}"
    # The user data is base64, opaque to the scan above: read it decoded, as cloud-init does. The payload object's
    # content (plain text) was scanned above.
    script = _user_data(mocks)
    for body in (KEY_BODY, "RkFLRS1MRUFG", BUNDLE_BODY):
        assert body not in script, f"{urn}: PEM body {body} in the user data"


def test_parameters_are_secure_strings(mocks: RecordingMocks) -> None:
    urn = _deploy("secret", _args())

    params = {p.name: p.inputs for p in mocks.of_type("aws:ssm/parameter:Parameter")}
    assert set(params) == {"secret-full-chain", "secret-private-key", "secret-ca-bundle"}, urn
    for inputs in params.values():
        assert inputs["type"] == "SecureString", urn
    assert params["secret-full-chain"]["name"] == "/pca-backend/test/full-chain", urn
    assert params["secret-private-key"]["name"] == "/pca-backend/test/private-key", urn
    assert params["secret-ca-bundle"]["name"] == "/pca-backend/test/ca-bundle", urn
    assert _secret_value(params["secret-private-key"]["value"]) == KEY_PEM, urn
    assert _secret_value(params["secret-full-chain"]["value"]) == FAKE_CHAIN_PEM, urn
    assert _secret_value(params["secret-ca-bundle"]["value"]) == FAKE_BUNDLE_PEM, urn


def test_host_policy_reads_only_the_three_parameters(mocks: RecordingMocks) -> None:
    urn = _deploy("iam", _args())

    (role,) = mocks.of_type("aws:iam/role:Role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ], urn
    assert "managedPolicyArns" not in role.inputs, f"{urn}: managed policy on the host role"
    assert not mocks.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"), urn
    assert not mocks.of_type("aws:iam/policyAttachment:PolicyAttachment"), urn
    assert "AmazonSSMManagedInstanceCore" not in _dump([r.inputs for r in mocks.resources]), urn

    (policy,) = mocks.of_type("aws:iam/rolePolicy:RolePolicy")
    assert policy.inputs["role"] == "iam-host-role_id", urn
    document = json.loads(policy.inputs["policy"])
    expected = sorted(
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/pca-backend/test/{suffix}"
        for suffix in ("full-chain", "private-key", "ca-bundle")
    )
    readers = []
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow", urn
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            assert "*" not in action, f"{urn}: wildcard action {action}"
            if action.lower().startswith(("ssm:getparameter", "ssm:getparametersbypath")):
                readers.append(statement)
                assert "*" not in _dump(resources), f"{urn}: {action} on {resources}"
                assert sorted(resources) == expected, urn
        if "*" in resources and actions == ["cloudwatch:PutMetricData"]:
            # The only metric write: one namespace.
            assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "PcaBackend"}}, urn
        elif "*" in resources:
            assert all(
                a.startswith(("ssm:UpdateInstanceInformation", "ssmmessages:", "ec2messages:")) for a in actions
            ), urn
    assert readers, f"{urn}: no statement lets the hosts read their parameters"
    assert [s["Action"] for s in readers] == ["ssm:GetParameters"], f"{urn}: what the host sync calls, no more"
    (decrypt,) = [s for s in document["Statement"] if "kms:Decrypt" in s["Action"]]
    assert decrypt["Action"] == "kms:Decrypt", urn
    assert decrypt["Resource"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/key-iam-parameter-key", urn
    assert decrypt["Condition"] == {
        "StringEquals": {
            "kms:EncryptionContext:PARAMETER_ARN": expected,
            "kms:ViaService": f"ssm.{REGION}.amazonaws.com",
        }
    }, urn
    assert [s for s in document["Statement"] if "cloudwatch:PutMetricData" in _dump(s["Action"])], urn

    (profile,) = mocks.of_type("aws:iam/instanceProfile:InstanceProfile")
    assert profile.inputs["role"] == role.inputs.get("name", "iam-host-role"), urn


@pulumi.runtime.test
def test_acm_private_certificate_path(mocks: RecordingMocks) -> pulumi.Output[Any]:
    args = _args(listener_domain_name="api.internal.example", private_ca_arn=CA_ARN, listener_certificate_arn=None)
    backend = EncryptedBackend("acm", args)

    def check(values: list[Any]) -> None:
        urn, https_url = values
        (certificate,) = mocks.of_type("aws:acm/certificate:Certificate")
        assert certificate.inputs["domainName"] == "api.internal.example", urn
        assert certificate.inputs["certificateAuthorityArn"] == CA_ARN, urn
        assert "validationMethod" not in certificate.inputs, urn
        (listener,) = mocks.of_type("aws:lb/listener:Listener")
        assert listener.inputs["certificateArn"].endswith("acm-listener-cert"), urn
        assert https_url == "https://api.internal.example", urn

    return pulumi.Output.all(backend.urn, backend.https_url, backend.listener_arn).apply(lambda v: check(v[:2]))


@pulumi.runtime.test
def test_outputs(mocks: RecordingMocks) -> pulumi.Output[Any]:
    backend = EncryptedBackend("out", _args(host_count=2))
    delivered = backend.key_delivery
    assert isinstance(delivered, SsmKeyParameters)

    def check(values: list[Any]) -> None:
        urn, dns, url, tg, alb_sg, backend_sg, group, names, listener, role, key, alarm = values
        assert dns == f"out-alb.{REGION}.elb.amazonaws.com", urn
        assert url == f"https://{dns}", urn
        assert tg.endswith("out-targets"), urn
        assert alb_sg == "sg-out-alb-sg", urn
        assert backend_sg == "sg-out-backend-sg", urn
        assert group == "out-hosts-asg", urn
        assert key == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/key-out-parameter-key", urn
        assert alarm.endswith("out-certificate-expiry"), urn
        assert names == {
            "full_chain": "/pca-backend/test/full-chain",
            "private_key": "/pca-backend/test/private-key",
            "ca_bundle": "/pca-backend/test/ca-bundle",
        }, urn
        assert listener.endswith("out-https"), urn
        assert role.endswith("out-host-role"), urn
        (component,) = mocks.of_type("pca-backend:index:EncryptedBackend")
        assert component.name == "out", urn
        # Its parts are named like it, their resources after it.
        parts = [r for r in mocks.resources if r.typ.startswith("pca-backend:index:")]
        assert {(r.typ, r.name) for r in parts} == {
            ("pca-backend:index:EncryptedBackend", "out"),
            ("pca-backend:index:BackendLoadBalancer", "out"),
            ("pca-backend:index:HostFleet", "out"),
            ("pca-backend:index:SsmKeyParameters", "out"),
        }, urn
        assert all(r.name.startswith("out-") for r in mocks.resources if r not in parts), urn

    return pulumi.Output.all(
        backend.urn,
        backend.alb_dns_name,
        backend.https_url,
        backend.target_group_arn,
        backend.alb_security_group_id,
        backend.backend_security_group_id,
        backend.auto_scaling_group_name,
        delivered.parameter_names,
        backend.listener_arn,
        backend.host_role_arn,
        delivered.key_arn,
        backend.certificate_alarm_arn,
    ).apply(check)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"host_count": 0}, "host_count"),
        ({"host_count": True}, "host_count"),
        ({"ingress_cidrs": []}, "ingress_cidrs"),
        ({"ingress_cidrs": "10.0.0.0/8"}, "ingress_cidrs"),
        ({"ingress_cidrs": ["10.0.0.1/16"]}, "ingress_cidrs"),
        ({"ingress_cidrs": ["not-a-cidr"]}, "ingress_cidrs"),
        ({"ingress_cidrs": ["0.0.0.0/0"]}, "internal is False"),
        ({"ingress_cidrs": ["::/0"]}, "internal is False"),
        ({"backend_port": 0}, "backend_port"),
        ({"backend_port": 70000}, "backend_port"),
        ({"health_check_path": "healthz"}, "health_check_path"),
        ({"listener_certificate_arn": None}, "exactly one listener certificate source"),
        ({"listener_domain_name": "api.internal.example", "private_ca_arn": CA_ARN}, "exactly one"),
        ({"listener_certificate_arn": None, "listener_domain_name": "api.internal.example"}, "exactly one"),
        ({"listener_certificate_arn": None, "private_ca_arn": CA_ARN}, "exactly one"),
        (
            {"listener_certificate_arn": None, "private_ca_arn": CA_ARN, "listener_domain_name": "bad name"},
            "listener_domain_name",
        ),
        ({"parameter_prefix": "pca-backend/dev"}, "parameter_prefix"),
        ({"parameter_prefix": "/pca-backend/dev/"}, "parameter_prefix"),
        ({"parameter_prefix": "/aws/reserved"}, "parameter_prefix"),
        ({"region": "Europe"}, "region"),
        ({"instance_type": "big"}, "instance_type"),
        ({"alb_subnet_ids": ["subnet-0a1a1a1a"]}, "alb_subnet_ids"),
        ({"host_subnet_ids": []}, "host_subnet_ids"),
        ({"vpc_id": "vpn-1"}, "vpc_id"),
        ({"peer_security_group_ids": ["default"]}, "peer_security_group_ids"),
        ({"server_names": ["bad name"]}, "server_names"),
        ({"private_key_pem": "not a key"}, "private_key_pem"),
        ({"full_chain_pem": "not a chain"}, "full_chain_pem"),
        ({"tags": {"aws:reserved": "x"}}, "tags"),
        ({"internal": "yes"}, "internal"),
        ({"http_redirect": 1}, "http_redirect"),
        ({"host_count": 51}, "host_count must be an integer from 1 to 50"),
        ({"host_count": 3, "host_min_count": 4}, r"host_min_count must be at most host_count \(3\)"),
        ({"host_count": 3, "host_max_count": 2}, r"host_max_count must be at least host_count \(3\)"),
        ({"host_min_count": -1}, "host_min_count must be an integer from 0 to 50"),
        ({"host_max_count": 101}, "host_max_count must be an integer from 1 to 100"),
        ({"min_healthy_percent": 101}, "min_healthy_percent must be an integer from 0 to 100"),
        ({"root_volume_gib": 4}, "root_volume_gib must be an integer from 8 to 16384"),
        ({"min_healthy_percent": -1}, "min_healthy_percent must be an integer from 0 to 100"),
        ({"parameter_kms_key_arn": "alias/mine"}, "parameter_kms_key_arn must be an ARN"),
        ({"parameter_writer_arns": ["arn:aws:sts::123456789012:assumed-role/x/y"]}, "parameter_writer_arns"),
        ({"parameter_writer_arns": "arn:aws:iam::123456789012:role/x"}, "parameter_writer_arns must be a list"),
        (
            {
                "parameter_writer_arns": [DEPLOYER_ROLE_ARN],
                "parameter_kms_key_arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/abcd-1234",
            },
            "grant writers in that key's own policy",
        ),
        ({"backend_name": "a/b"}, "backend_name must be 1 to 64 letters"),
        ({"backend_name": "x" * 65}, "backend_name"),
        ({"certificate_alarm_days": 0}, "certificate_alarm_days must be an integer from 1 to 365"),
        ({"alarm_topic_arn": "ops-topic"}, "alarm_topic_arn must be an ARN"),
    ],
)
def test_bad_args_raise_before_any_resource(mocks: RecordingMocks, overrides: dict[str, Any], message: str) -> None:
    # A bad argument of the key delivery is refused when the delivery is made, before the backend.
    with pytest.raises(ValueError, match=message):
        EncryptedBackend("bad", _args(**overrides))
    assert mocks.resources == [], "a resource was registered before validation failed"


def test_every_bad_argument_is_reported_at_once(mocks: RecordingMocks) -> None:
    """One error style with settings: a component used as a library lists every problem, not the first."""
    args = dict(_args(health_check_path="/", host_count=0, ingress_cidrs=["10.0.0.1/8"], tags={"aws:x": "y"}))
    with pytest.raises(ValueError, match="health_check_path") as caught:
        EncryptedBackend("many", args)  # type: ignore[arg-type]
    for argument in ("health_check_path", "host_count", "ingress_cidrs", "tags"):
        assert argument in str(caught.value), f"{argument} missing from {caught.value}"
    assert mocks.resources == []


def test_missing_required_argument_is_named(mocks: RecordingMocks) -> None:
    args = dict(_args())
    del args["region"]
    with pytest.raises(ValueError, match="region"):
        EncryptedBackend("missing", args)  # type: ignore[arg-type]
    assert mocks.resources == []


def _key_policy(mocks: RecordingMocks) -> dict[str, Any]:
    (key,) = mocks.of_type("aws:kms/key:Key")
    return json.loads(key.inputs["policy"])


def test_parameters_are_encrypted_with_a_customer_managed_key(mocks: RecordingMocks) -> None:
    urn = _deploy("kms", _args())

    (key,) = mocks.of_type("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True, urn
    assert key.inputs["deletionWindowInDays"] == 30, f"{urn}: a deleted key stays restorable"
    assert key.inputs["keyUsage"] == "ENCRYPT_DECRYPT", urn
    assert key.inputs["customerMasterKeySpec"] == "SYMMETRIC_DEFAULT", f"{urn}: SSM takes symmetric keys only"
    (alias,) = mocks.of_type("aws:kms/alias:Alias")
    assert alias.inputs == {"name": "alias/pca-backend/pca-backend-test", "targetKeyId": "key-kms-parameter-key"}
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/key-kms-parameter-key"
    for parameter in mocks.of_type("aws:ssm/parameter:Parameter"):
        assert parameter.inputs["keyId"] == key_arn, f"{urn}: {parameter.name} under aws/ssm"


def test_key_policy_lets_only_the_hosts_decrypt_and_the_deployer_write(mocks: RecordingMocks) -> None:
    urn = _deploy("kms", _args())

    statements = {s["Sid"]: s for s in _key_policy(mocks)["Statement"]}
    assert set(statements) == {"KeyAdministration", "DeployerWritesTheParameters", "HostsReadTheirParameters"}
    parameter_arns = sorted(
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/pca-backend/test/{suffix}"
        for suffix in ("full-chain", "private-key", "ca-bundle")
    )
    only_these_parameters = {
        "StringEquals": {
            "kms:EncryptionContext:PARAMETER_ARN": parameter_arns,
            "kms:ViaService": f"ssm.{REGION}.amazonaws.com",
        }
    }
    admin = statements["KeyAdministration"]
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, urn
    assert "kms:*" not in admin["Action"], f"{urn}: the account default would let IAM policies grant Decrypt"

    writer = statements["DeployerWritesTheParameters"]
    assert writer["Principal"] == {"AWS": [DEPLOYER_ROLE_ARN]}, urn
    assert sorted(writer["Action"]) == ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], urn
    assert writer["Condition"] == only_these_parameters, urn

    hosts = statements["HostsReadTheirParameters"]
    assert hosts["Principal"] == {"AWS": f"arn:aws:mock:{REGION}:{ACCOUNT}:aws:iam/role:Role/kms-host-role"}, urn
    assert hosts["Action"] == ["kms:Decrypt"], urn
    assert hosts["Condition"] == only_these_parameters, urn
    for statement in statements.values():
        assert statement["Effect"] == "Allow", urn
        assert statement["Principal"] != {"AWS": "*"}, urn


#: What a key administrator must be able to do to manage the key (and what `pulumi up` and `destroy` do with it).
KEY_MANAGEMENT = {
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:PutKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:EnableKeyRotation",
    "kms:UpdateKeyDescription",
    "kms:ListResourceTags",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RevokeGrant",
}
#: What would let an administrator read the private key: use the key, or grant themselves its use.
KEY_USE = (
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
)


def test_key_administrators_manage_the_key_and_cannot_grant_its_use(mocks: RecordingMocks) -> None:
    """`kms:Create*` (the AWS default for key administrators) covers kms:CreateGrant: an administrator could grant
    themselves Decrypt with no condition. Each administrative action is named instead, none of them a use."""
    urn = _deploy("admin", _args())

    (admin,) = [s for s in _key_policy(mocks)["Statement"] if s["Sid"] == "KeyAdministration"]
    actions = admin["Action"]
    assert "Condition" not in admin, urn
    assert "NotAction" not in admin, urn
    granted = [
        (pattern, use) for pattern in actions for use in KEY_USE if fnmatch.fnmatchcase(use.lower(), pattern.lower())
    ]
    assert granted == [], f"{urn}: administrators may use the key or grant its use: {granted}"
    assert not [action for action in actions if "*" in action or "?" in action], f"{urn}: name each action"
    assert set(actions) >= KEY_MANAGEMENT, f"{urn}: missing {KEY_MANAGEMENT - set(actions)}"


def test_the_key_policy_names_the_writers_whoever_runs_pulumi_up(mocks: RecordingMocks) -> None:
    """A person's `pulumi up` after the pipeline's must not take the pipeline's write access away."""
    writers = [f"arn:aws:iam::{ACCOUNT}:role/preview", f"arn:aws:iam::{ACCOUNT}:role/deploy"]
    policies = []
    for caller in (DEPLOYER_SESSION_ARN, f"arn:aws:iam::{ACCOUNT}:user/alice"):
        mocks.resources.clear()
        mocks.caller_arn = caller
        urn = _deploy("writers", _args(parameter_writer_arns=writers))
        (key,) = mocks.of_type("aws:kms/key:Key")
        policies.append(key.inputs["policy"])
    assert policies[0] == policies[1], f"{urn}: the key policy changed with who ran pulumi up"
    statements = {s["Sid"]: s for s in json.loads(policies[0])["Statement"]}
    assert statements["DeployerWritesTheParameters"]["Principal"] == {"AWS": sorted(writers)}, urn
    assert not [c for c in mocks.calls if c.token == "aws:iam/getSessionContext:getSessionContext"], urn


@pytest.mark.parametrize("writers", [None, []])
def test_a_key_without_named_writers_is_refused_before_any_resource(
    mocks: RecordingMocks, writers: list[str] | None
) -> None:
    with pytest.raises(ValueError, match="parameter_writer_arns must name the IAM roles or users that run"):
        EncryptedBackend("nowriter", _args(parameter_writer_arns=writers))
    assert mocks.resources == [], "a resource was registered before validation failed"


def test_an_existing_key_is_used_as_given(mocks: RecordingMocks) -> None:
    existing = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    urn = _deploy("byok", _args(parameter_kms_key_arn=existing, parameter_writer_arns=None))

    assert not mocks.of_type("aws:kms/key:Key"), urn
    assert not mocks.of_type("aws:kms/alias:Alias"), urn
    for parameter in mocks.of_type("aws:ssm/parameter:Parameter"):
        assert parameter.inputs["keyId"] == existing, urn
    (policy,) = mocks.of_type("aws:iam/rolePolicy:RolePolicy")
    (decrypt,) = [s for s in json.loads(policy.inputs["policy"])["Statement"] if s["Action"] == "kms:Decrypt"]
    assert decrypt["Resource"] == existing, urn


def test_certificate_expiry_alarm(mocks: RecordingMocks) -> None:
    urn = _deploy("alarm", _args(backend_name="payments-prod", certificate_alarm_days=10))

    (alarm,) = mocks.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    inputs = alarm.inputs
    assert (inputs["namespace"], inputs["metricName"]) == ("PcaBackend", "CertificateDaysToExpiry"), urn
    assert inputs["dimensions"] == {"Backend": "payments-prod"}, urn
    assert inputs["statistic"] == "Minimum", f"{urn}: the worst host decides"
    assert inputs["threshold"] == 10, urn
    assert inputs["comparisonOperator"] == "LessThanThreshold", urn
    assert inputs["treatMissingData"] == "breaching", f"{urn}: silence is a problem too"
    assert inputs["evaluationPeriods"] == 1, urn
    assert inputs["period"] == 3600, urn
    assert inputs.get("alarmActions", []) == [], urn
    (alias,) = mocks.of_type("aws:kms/alias:Alias")
    assert alias.inputs["name"] == "alias/pca-backend/payments-prod", urn


def test_alarm_defaults_and_topic(mocks: RecordingMocks) -> None:
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:ops"
    urn = _deploy("alarmdef", _args(alarm_topic_arn=topic))

    (alarm,) = mocks.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarm.inputs["threshold"] == 14, urn
    assert alarm.inputs["dimensions"] == {"Backend": "pca-backend-test"}, f"{urn}: the backend's name"
    assert alarm.inputs["alarmActions"] == [topic], urn
    assert alarm.inputs["okActions"] == [topic], urn


def test_every_declared_output_is_registered() -> None:
    from components import encrypted_backend

    declared = {name for name, kind in EncryptedBackend.__annotations__.items() if "Output" in str(kind)}
    assert set(encrypted_backend._OUTPUTS) == declared


def test_root_volume_size_only_when_asked(mocks: RecordingMocks) -> None:
    urn = _deploy("disk", _args(root_volume_gib=20))

    (template,) = mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    (root,) = template.inputs["blockDeviceMappings"]
    assert root["ebs"]["volumeSize"] == 20, urn
    assert root["ebs"]["encrypted"] == "true", urn


@pytest.mark.parametrize(
    ("count", "healthy", "maximum"), [(3, 100, 6), (3, 50, 5), (4, 0, 5), (10, 0, 11), (50, 100, 100)]
)
def test_default_maximum_leaves_room_for_the_refresh_and_replacements(
    mocks: RecordingMocks, count: int, healthy: int, maximum: int
) -> None:
    urn = _deploy("room", _args(host_count=count, min_healthy_percent=healthy))

    (group,) = mocks.of_type("aws:autoscaling/group:Group")
    assert group.inputs["maxSize"] == maximum, urn
    preferences = group.inputs["instanceRefresh"]["preferences"]
    replacement = group.inputs["instanceMaintenancePolicy"]
    assert maximum >= -(-count * preferences["maxHealthyPercentage"] // 100), f"{urn}: room for the refresh"
    assert maximum == -(-count * replacement["maxHealthyPercentage"] // 100), f"{urn}: and for replacements"


def test_hosts_report_under_the_alarms_dimension(mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch) -> None:
    from components import ssm_key_delivery

    rendered: list[dict[str, Any]] = []

    def recording_render(**kwargs: Any) -> HostPayload:
        rendered.append(kwargs)
        return render_shared_payload(**kwargs)

    monkeypatch.setattr(ssm_key_delivery, "render_shared_payload", recording_render)
    urn = _deploy("metric", _args(backend_name="orders-prod"))

    # Rendered once to check it before any resource, then for the payload: the same payload.
    call = rendered[-1]
    assert all(other == call for other in rendered), urn
    (alarm,) = mocks.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarm.inputs["dimensions"] == {"Backend": call["metric_backend"]} == {"Backend": "orders-prod"}, urn
    packed = pack_payload(render_shared_payload(**call))
    payload = _payload_object(mocks)
    assert (payload["key"], payload["content"]) == (packed.key, packed.script), f"{urn}: the payload as rendered"
    (template,) = mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    bootstrap = render_bootstrap(
        region=REGION,
        bucket="metric-host-payloads-0a1b2c3",
        key=packed.key,
        sha256=packed.sha256,
        ca_fingerprints=sha256_fingerprints(FAKE_BUNDLE_PEM),
    )
    assert template.inputs["userData"] == pack_user_data(bootstrap), f"{urn}: the bootstrap for that payload"
    # The hosts get trust-ca, the host gate and verify-tls, verbatim, and pin the bundle's CA.
    assert call["trust_ca_script"] == TRUST_CA_SCRIPT_PATH.read_text(), urn
    assert call["tls_gate_script"] == TLS_GATE_SCRIPT_PATH.read_text(), urn
    assert call["verify_tls_script"] == VERIFY_TLS_SCRIPT_PATH.read_text(), urn
    assert f"cat >{VERIFY_TLS_PATH} <<" in payload["content"], f"{urn}: verify-tls is on the hosts again"


def test_hosts_pin_the_ca_bundle_even_when_it_is_an_output(mocks: RecordingMocks) -> None:
    """The CA bundle usually comes from the CA component or a StackReference: the user data waits for it."""
    urn = _deploy("pinned", lambda: _args(ca_bundle_pem=pulumi.Output.from_input(FAKE_BUNDLE_PEM)))

    assert _pins(_user_data(mocks)) == sha256_fingerprints(FAKE_BUNDLE_PEM), urn
    assert f"cat >{PINS_PATH}" not in _payload_object(mocks)["content"], f"{urn}: the pins are not the payload's"


def test_a_ca_bundle_without_a_certificate_is_refused_before_any_resource(mocks: RecordingMocks) -> None:
    not_a_certificate = "-----BEGIN CERTIFICATE-----\nbm90\n-----END CERTIFICATE-----\n"
    with pytest.raises(ValueError, match=r"ca_bundle_pem must be PEM CA certificates"):
        EncryptedBackend("nopins", _args(ca_bundle_pem=not_a_certificate))
    assert mocks.resources == [], "a resource was registered before validation failed"


# --- the key delivery seam -----------------------------------------------------------------------------------


#: The CA a second delivery pins (any CA: the fleet takes the delivery's fingerprints as they are).
ISSUER_PINS = [hashlib.sha256(b"issuer CA").hexdigest()]


def _issuer_payload(issuer_url: str, backend_name: str) -> HostPayload:
    return HostPayload(
        files=(
            HostFile(
                "/usr/local/sbin/ask-issuer", "0755", f"#!/bin/bash\necho 'ask {issuer_url} for {backend_name}'\n"
            ),
        ),
        commands=("/usr/local/sbin/ask-issuer",),
    )


class _IssuerDelivery:
    """A second delivery, as a per-host mode would plug in: its own payload (an output: it carries the issuer's
    address), pins and role statements, a resource the hosts wait for, and the Auto Scaling group's name before
    the group exists. No key material anywhere."""

    needs_auto_scaling_group_name = True
    texts = DeliveryTexts(
        host_role="test hosts: ask the issuer",
        launch_template="test host: nginx with a certificate from the issuer",
        expiry_alarm_advice="Ask the issuer's operators.",
    )

    def __init__(self) -> None:
        self.checked: list[HostContext] = []
        self.fleets: list[FleetIdentity] = []

    def check(self, hosts: HostContext) -> None:
        self.checked.append(hosts)
        if "refused.example" in hosts.server_block:
            raise ValueError("server_names: refused.example cannot be issued")

    def deliver(self, name: str, fleet: FleetIdentity, opts: pulumi.ResourceOptions) -> _Issuer:
        self.fleets.append(fleet)
        return _Issuer(name, fleet, opts)


class _Issuer(pulumi.ComponentResource):
    def __init__(self, name: str, fleet: FleetIdentity, opts: pulumi.ResourceOptions) -> None:
        super().__init__("test:index:Issuer", name, None, opts)
        # Stands for the issuer, which checks callers against the group's name.
        endpoint = aws.cloudwatch.LogGroup(
            f"{name}-issuer", name=f"/issuer/{fleet.auto_scaling_group_name}", opts=pulumi.ResourceOptions(parent=self)
        )
        self.payload = endpoint.name.apply(lambda url: _issuer_payload(url, fleet.hosts.backend_name))
        self.ca_fingerprints = ISSUER_PINS
        self.host_policy_statements = fleet.host_role_arn.apply(
            lambda arn: [
                {"Sid": "AskTheIssuer", "Effect": "Allow", "Action": "lambda:InvokeFunctionUrl", "Resource": arn}
            ]
        )
        self.wait_for = [endpoint]
        self.register_outputs({})


def test_a_second_delivery_plugs_in_without_ssm_key_material(mocks: RecordingMocks) -> None:
    delivery = _IssuerDelivery()
    urn = _deploy("perhost", lambda: {**_args(backend_name="orders"), "key_delivery": delivery})

    # Checked (before any resource) with what every host runs, the same each time it was asked.
    (hosts,) = set(delivery.checked)
    assert (hosts.backend_name, hosts.region) == ("orders", REGION), urn
    assert "server_name api.internal.example;" in hosts.server_block, f"{urn}: the fleet's nginx block"
    (fleet,) = delivery.fleets
    # A name the group gets on creation: the delivery knew it before the group existed.
    (group,) = mocks.of_type("aws:autoscaling/group:Group")
    assert fleet.auto_scaling_group_name == group.inputs["name"] == "pca-backend-orders", urn
    assert not mocks.of_type("aws:kms/key:Key"), f"{urn}: the SSM delivery's key is not the fleet's"
    assert not mocks.of_type("aws:ssm/parameter:Parameter"), f"{urn}: nor its parameters"
    (issuer_log,) = mocks.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert issuer_log.inputs["name"] == "/issuer/pca-backend-orders", urn
    # The delivery's payload (an output) is the fleet's object, and its pins are in the launch template.
    payload = _payload_object(mocks)
    expected = pack_payload(_issuer_payload("/issuer/pca-backend-orders", "orders"))
    assert (payload["key"], payload["content"]) == (expected.key, expected.script), f"{urn}: the delivery's payload"
    user_data = _user_data(mocks)
    assert _pins(user_data) == ISSUER_PINS, urn
    assert f"readonly PAYLOAD_SHA256={expected.sha256}\n" in user_data, urn
    (policy,) = mocks.of_type("aws:iam/rolePolicy:RolePolicy")
    statements = json.loads(policy.inputs["policy"])["Statement"]
    assert [s["Sid"] for s in statements] == [
        "AskTheIssuer", "ReadHostPayloads", "ReportCertificateDays", "SessionManager",
    ], urn  # fmt: skip
    (role,) = mocks.of_type("aws:iam/role:Role")
    assert statements[0]["Resource"] == f"arn:aws:mock:{REGION}:{ACCOUNT}:aws:iam/role:Role/{role.name}", (
        f"{urn}: the delivery saw the host role's ARN"
    )
    (issuer,) = mocks.of_type("test:index:Issuer")
    (fleet_component,) = mocks.of_type("pca-backend:index:HostFleet")
    assert issuer.name == fleet_component.name == "perhost", urn
    # What the fleet's role, launch template and alarm say is the delivery's, not the SSM delivery's.
    assert role.inputs["description"] == "test hosts: ask the issuer", urn
    (template,) = mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.inputs["description"] == "test host: nginx with a certificate from the issuer", urn
    (alarm,) = mocks.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarm.inputs["alarmDescription"].endswith("no host has reported for an hour. Ask the issuer's operators.")
    assert "pulumi up" not in alarm.inputs["alarmDescription"], urn


def test_the_group_waits_for_what_the_delivery_provides(mocks: RecordingMocks) -> None:
    dependencies: dict[str, list[str]] = {}

    class _Monitor(_OptionsMonitor):
        def RegisterResource(self, request: Any) -> Any:
            dependencies[request.name] = list(request.dependencies)
            return super().RegisterResource(request)

    pulumi.runtime.set_mocks(mocks, project="pca-backend", stack="test", preview=False, monitor=_Monitor(mocks))
    urn = _deploy("waits", lambda: {**_args(), "key_delivery": _IssuerDelivery()})

    group_dependencies = {dependency.rsplit("::", 1)[-1] for dependency in dependencies["waits-hosts"]}
    assert {"waits-issuer", "waits-host-policy", "waits-host-payload"} <= group_dependencies, (
        f"{urn}: {group_dependencies}"
    )


def test_a_delivery_refusal_comes_before_any_resource(mocks: RecordingMocks) -> None:
    with pytest.raises(ValueError, match=r"refused\.example cannot be issued"):
        EncryptedBackend("refused", {**_args(server_names=["refused.example"]), "key_delivery": _IssuerDelivery()})
    assert mocks.resources == [], "a resource was registered before the delivery refused"


def test_names_that_would_not_have_fit_the_user_data_deploy_in_the_payload(mocks: RecordingMocks) -> None:
    """300 long names (36 KB of server_name, which does not compress) were over EC2's 16 KB with the software in the
    user data; the payload has no such limit and the user data stays the bootstrap."""
    digests = [hashlib.sha256(str(index).encode()).hexdigest() for index in range(300)]
    names = [f"{digest[:60]}.{digest[4:64]}.example" for digest in digests]
    urn = _deploy("huge", _args(server_names=names))

    assert all(f" {name}" in _payload_object(mocks)["content"] for name in names), urn
    assert len(_user_data(mocks).encode()) < 3 * 1024, urn


def _bundle_of(count: int) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = datetime.datetime(2035, 1, 1, tzinfo=datetime.UTC)
    return "".join(self_signed_ca_pem(key, f"CA {index}", not_after) for index in range(count))


def test_pins_over_the_user_data_limit_are_refused_before_any_resource(mocks: RecordingMocks) -> None:
    # 300 CA certificates in the bundle: 300 pins do not fit the launch template (a hundred would).
    with pytest.raises(ValueError, match=r"over EC2's limit of 16384: ca_fingerprints pins 300 CA certificates"):
        EncryptedBackend("pinned", _args(ca_bundle_pem=_bundle_of(300)))
    assert mocks.resources == [], "a resource was registered before the pins were refused"


def test_the_ssm_delivery_renders_its_whole_payload_when_it_checks(mocks: RecordingMocks) -> None:
    """The shared payload is rendered in full before anything exists: a file it could not write stops it."""
    block_end = "PCA_BACKEND_FILE_5_EOF"  # the heredoc delimiter of the server block, the payload's fifth file
    hosts = HostContext(region=REGION, backend_name="x", server_block=f"server {{\n}}\n{block_end}\n")
    refused = f"file /etc/nginx/conf.d/pca-backend.conf must not contain a line reading {block_end!r}"
    with pytest.raises(ValueError, match=re.escape(refused)):
        _args()["key_delivery"].check(hosts)
    assert mocks.resources == []


# --- the payload bucket and object ---------------------------------------------------------------------------


def test_the_payload_bucket_is_private_encrypted_and_tls_only(mocks: RecordingMocks) -> None:
    urn = _deploy("store", _args())

    (bucket,) = mocks.of_type(BUCKET)
    assert bucket.name == "store-host-payloads", urn
    assert bucket.inputs["forceDestroy"] is True, f"{urn}: only generated payloads: destroy empties it"
    (block,) = mocks.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert block.inputs == {
        "bucket": "store-host-payloads-0a1b2c3",
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }, urn
    (ownership,) = mocks.of_type("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}, f"{urn}: ACLs disabled"
    (encryption,) = mocks.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    assert encryption.inputs["rules"] == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}], urn
    (policy,) = mocks.of_type("aws:s3/bucketPolicy:BucketPolicy")
    assert json.loads(policy.inputs["policy"])["Statement"] == [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": ["arn:aws:s3:::store-host-payloads-0a1b2c3", "arn:aws:s3:::store-host-payloads-0a1b2c3/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ], f"{urn}: nothing is granted here; requests without TLS are refused"
    guards = {block.name, ownership.name, encryption.name, policy.name}
    assert guards <= mocks.dependencies[(PAYLOAD_OBJECT, "store-host-payload")], (
        f"{urn}: the bucket is locked down before anything is put in it"
    )


def test_the_payload_is_content_addressed_and_retained_when_replaced(mocks: RecordingMocks) -> None:
    urn = _deploy("addr", _args())

    payload = _payload_object(mocks)
    expected = pack_payload(
        render_shared_payload(
            region=REGION,
            parameters=_args()["key_delivery"].parameters,  # type: ignore[attr-defined]
            server_block=render_server_block(
                server_names=["api.internal.example"],
                certificate_path=CERTIFICATE_PATH,
                private_key_path=PRIVATE_KEY_PATH,
            ),
            trust_ca_script=TRUST_CA_SCRIPT_PATH.read_text(),
            tls_gate_script=TLS_GATE_SCRIPT_PATH.read_text(),
            verify_tls_script=VERIFY_TLS_SCRIPT_PATH.read_text(),
            metric_backend="pca-backend-test",
        )
    )
    assert payload["key"] == expected.key == f"hosts/{hashlib.sha256(payload['content'].encode()).hexdigest()}.sh", urn
    assert payload["content"] == expected.script, urn
    assert payload["bucket"] == "addr-host-payloads-0a1b2c3", urn
    assert payload["contentType"] == "text/x-shellscript", urn
    assert mocks.retain_on_delete[(PAYLOAD_OBJECT, "addr-host-payload")] is True, (
        f"{urn}: a replaced payload stays for hosts launched from an older launch template version"
    )
    retained = {key for key, retain in mocks.retain_on_delete.items() if retain}
    assert retained == {(PAYLOAD_OBJECT, "addr-host-payload")}, f"{urn}: nothing else is left behind"
    # The template follows the object: a new version only once the new object exists.
    assert "addr-host-payload" in mocks.dependencies[("aws:ec2/launchTemplate:LaunchTemplate", "addr-hosts")], urn
    assert "addr-host-payload" in mocks.dependencies[("aws:autoscaling/group:Group", "addr-hosts")], urn


def test_the_host_role_reads_the_payloads_prefix_only(mocks: RecordingMocks) -> None:
    urn = _deploy("reads", _args())

    (policy,) = mocks.of_type("aws:iam/rolePolicy:RolePolicy")
    statements = json.loads(policy.inputs["policy"])["Statement"]
    s3 = [s for s in statements if "s3:" in _dump(s["Action"])]
    assert s3 == [
        {
            "Sid": "ReadHostPayloads",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::reads-host-payloads-0a1b2c3/hosts/*",
        }
    ], f"{urn}: the bootstrap's one call, on the payloads only"
    assert "reads-host-payloads" in mocks.dependencies[("aws:iam/rolePolicy:RolePolicy", "reads-host-policy")], urn


class _PreviewMocks(RecordingMocks):
    """A first `pulumi preview`: the bucket's name and ARN are not known yet (nor is anything computed from them)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate" and not isinstance(args.inputs.get("userData"), str):
            self.resources.append(args)
            return f"lt-{args.name}", {}
        resource_id, outputs = super().new_resource(args)
        if args.typ == BUCKET:
            outputs = {key: value for key, value in outputs.items() if key not in ("bucket", "arn")}
        return resource_id, outputs


def _preview(name: str, args: Callable[[], EncryptedBackendArgs]) -> dict[str, dict[str, Any]]:
    """Runs `args`' backend as a preview (the `mocks` fixture restores the runtime after)."""
    preview = _PreviewMocks()
    pulumi.runtime.set_mocks(
        preview, project="pca-backend", stack="test", preview=True, monitor=_OptionsMonitor(preview)
    )
    _deploy(name, args)
    return {r.typ: dict(r.inputs) for r in preview.resources if r.typ in (PAYLOAD_OBJECT, LAUNCH_TEMPLATE)}


def _unknown(value: Any) -> bool:
    return type(value).__name__ == "Unknown"


def test_a_preview_renders_a_known_payload_and_leaves_the_rest_unknown(mocks: RecordingMocks) -> None:
    """The CA created in the same deployment and the auto-named bucket are unknown at the first preview: the shared
    payload is known all the same (it does not depend on them); the user data waits for both."""

    def args() -> EncryptedBackendArgs:
        ca = aws.cloudwatch.LogGroup("ca-source")  # stands for the CA: its kms_key_id is not known at preview
        return _args(ca_bundle_pem=ca.kms_key_id.apply(lambda _: FAKE_BUNDLE_PEM))

    registered = _preview("prev", args)

    payload = registered[PAYLOAD_OBJECT]
    assert payload["key"] == f"hosts/{hashlib.sha256(payload['content'].encode()).hexdigest()}.sh"
    assert _unknown(payload["bucket"])
    assert _unknown(registered[LAUNCH_TEMPLATE]["userData"])


def test_a_preview_with_an_unknown_payload_registers_it_unknown(mocks: RecordingMocks) -> None:
    """A delivery whose payload depends on an output not known at preview (an issuer's URL)."""

    class _UnknownUrlIssuer(_Issuer):
        def __init__(self, name: str, fleet: FleetIdentity, opts: pulumi.ResourceOptions) -> None:
            super().__init__(name, fleet, opts)
            url = aws.cloudwatch.LogGroup(f"{name}-url", opts=pulumi.ResourceOptions(parent=self)).kms_key_id
            self.payload = url.apply(lambda value: _issuer_payload(str(value), fleet.hosts.backend_name))

    class _UnknownUrlDelivery(_IssuerDelivery):
        def deliver(self, name: str, fleet: FleetIdentity, opts: pulumi.ResourceOptions) -> _Issuer:
            return _UnknownUrlIssuer(name, fleet, opts)

    registered = _preview("later", lambda: {**_args(), "key_delivery": _UnknownUrlDelivery()})

    assert _unknown(registered[PAYLOAD_OBJECT]["key"])
    assert _unknown(registered[PAYLOAD_OBJECT]["content"])
    assert _unknown(registered[LAUNCH_TEMPLATE]["userData"])


def test_the_same_inputs_give_the_same_payload_and_user_data(mocks: RecordingMocks) -> None:
    first = _fleet_resources(mocks)
    second = _fleet_resources(mocks)
    for key in ((PAYLOAD_OBJECT, "roll-host-payload"), ("aws:ec2/launchTemplate:LaunchTemplate", "roll-hosts")):
        assert first[key] == second[key], key


# --- where the subnets are -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "named", "said"),
    [
        (
            {"host_subnet_ids": ["subnet-0a2a2a2a", "subnet-0c2c2c2c"]},
            "host_subnet_ids: 'subnet-0c2c2c2c' is in eu-west-1c, where the load balancer has no subnet",
            "alb_subnet_ids are in eu-west-1a, eu-west-1b",
        ),
        (
            {"alb_subnet_ids": ["subnet-0a1a1a1a", "subnet-0a3a3a3a"], "host_subnet_ids": ["subnet-0a2a2a2a"]},
            "alb_subnet_ids: are all in eu-west-1a",
            "at least two Availability Zones",
        ),
        (
            {"alb_subnet_ids": ["subnet-0a1a1a1a", "subnet-0b9b9b9b"]},
            "alb_subnet_ids: 'subnet-0b9b9b9b' is in vpc-0999999999abcdef0",
            f"not in vpc_id {VPC_ID}",
        ),
    ],
)
def test_subnets_out_of_place_are_refused_before_any_resource(
    mocks: RecordingMocks, overrides: dict[str, Any], named: str, said: str
) -> None:
    with pytest.raises(ArgumentsError, match=re.escape(named)) as caught:
        EncryptedBackend("placed", _args(**overrides))
    assert said in str(caught.value), str(caught.value)
    assert mocks.resources == [], "a resource was registered before the subnets were checked"


def test_the_load_balancer_serves_every_host_zone(mocks: RecordingMocks) -> None:
    urn = _deploy("zones", _args(host_subnet_ids=["subnet-0a2a2a2a", "subnet-0b2b2b2b"]))
    looked_up = sorted(c.args["id"] for c in mocks.calls if c.token == "aws:ec2/getSubnet:getSubnet")
    assert set(looked_up) == {"subnet-0a1a1a1a", "subnet-0b1b1b1b", "subnet-0a2a2a2a", "subnet-0b2b2b2b"}, urn


@pulumi.runtime.test
def test_a_wildcard_listener_domain_is_issued_and_the_url_is_the_load_balancers(
    mocks: RecordingMocks,
) -> pulumi.Output[Any]:
    """ACM issues wildcard names; a wildcard names no one host, so the service URL is the load balancer's name."""
    args = _args(listener_certificate_arn=None, listener_domain_name="*.dev.example.com", private_ca_arn=CA_ARN)
    backend = EncryptedBackend("wildcard", args)

    def check(values: list[Any]) -> None:
        urn, https_url, dns_name = values
        (certificate,) = mocks.of_type("aws:acm/certificate:Certificate")
        assert certificate.inputs["domainName"] == "*.dev.example.com", urn
        assert https_url == f"https://{dns_name}", urn

    return pulumi.Output.all(backend.urn, backend.https_url, backend.alb_dns_name).apply(check)


@pytest.mark.parametrize("domain_name", ["api.example.com.", "*", "*.com", "a" * 60 + ".example"])
def test_a_listener_domain_acm_would_refuse_is_refused_by_name(mocks: RecordingMocks, domain_name: str) -> None:
    args = _args(listener_certificate_arn=None, listener_domain_name=domain_name, private_ca_arn=CA_ARN)
    with pytest.raises(ArgumentsError, match="listener_domain_name"):
        EncryptedBackend("acm-name", args)
    assert mocks.resources == [], "a resource was registered before validation failed"
