"""Unit tests of the EncryptedBackend component with Pulumi mocks (no AWS, no Pulumi CLI).

The mocks record every resource's inputs; the tests read them back. Mocks are process-global in Pulumi,
so the `mocks` fixture installs them for one test and restores the previous runtime settings afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pulumi
import pulumi.runtime.settings as runtime_settings
import pytest
from pulumi.runtime import rpc

from components.encrypted_backend import (
    DEFAULT_AMI_PARAMETER,
    LISTENER_SSL_POLICY,
    EncryptedBackend,
    EncryptedBackendArgs,
)
from components.host_bootstrap import USER_DATA_LIMIT_BYTES

ACCOUNT = "123456789012"
REGION = "eu-west-1"
AMI_ID = "ami-0abc1234def567890"
CA_ARN = f"arn:aws:acm-pca:{REGION}:{ACCOUNT}:certificate-authority/11111111-2222-3333-4444-555555555555"
LISTENER_CERT_ARN = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"

# Fake PEMs with recognisable bodies: a body found anywhere it should not be is a leak.
KEY_BODY = "RkFLRS1TRUNSRVQtS0VZLURPLU5PVC1MRUFLLTAxMjM0NTY3ODk="
FAKE_KEY_PEM = f"-----BEGIN PRIVATE KEY-----\n{KEY_BODY}\n-----END PRIVATE KEY-----\n"
FAKE_CHAIN_PEM = "-----BEGIN CERTIFICATE-----\nRkFLRS1MRUFG\n-----END CERTIFICATE-----\n"
FAKE_BUNDLE_PEM = "-----BEGIN CERTIFICATE-----\nRkFLRS1ST09U\n-----END CERTIFICATE-----\n"


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like AWS would (ids, ARNs, DNS names) and records every resource and invoke."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.calls: list[pulumi.runtime.MockCallArgs] = []

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
        elif args.typ == "aws:ec2/instance:Instance":
            resource_id = f"i-{args.name}"
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
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/test", "userId": "x"}, []
        raise AssertionError(f"unexpected invoke {args.token}")

    def of_type(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]

    def named(self, name: str) -> pulumi.runtime.MockResourceArgs:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name}, got {[r.name for r in self.resources]}"
        return matches[0]


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
    pulumi.runtime.set_mocks(recording, project="pca-backend", stack="test", preview=False)
    try:
        yield recording
    finally:
        runtime_settings.configure(runtime_settings.Settings(**saved))
        runtime_settings.ROOT.set(saved_root)


def _args(**overrides: Any) -> EncryptedBackendArgs:
    args: dict[str, Any] = {
        "vpc_id": "vpc-0123456789abcdef0",
        "alb_subnet_ids": ["subnet-a1", "subnet-b1"],
        "host_subnet_ids": ["subnet-a2", "subnet-b2"],
        "internal": True,
        "ingress_cidrs": ["10.0.0.0/16", "fd00::/8"],
        "peer_security_group_ids": ["sg-peer1"],
        "host_count": 3,
        "instance_type": "t3.small",
        "listener_certificate_arn": LISTENER_CERT_ARN,
        "server_names": ["api.internal.example"],
        "full_chain_pem": FAKE_CHAIN_PEM,
        "private_key_pem": FAKE_KEY_PEM,
        "ca_bundle_pem": FAKE_BUNDLE_PEM,
        "parameter_prefix": "/pca-backend/test",
        "region": REGION,
        "tags": {"team": "platform"},
    }
    args.update(overrides)
    return args  # type: ignore[return-value]


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
    attachments = mocks.of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")
    assert len(attachments) == 3, urn
    assert {a.inputs["targetId"] for a in attachments} == {f"i-tg-host-{i}" for i in range(3)}, urn
    assert all(a.inputs["port"] == 8443 for a in attachments), urn


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
    assert sorted(r["referencedSecurityGroupId"] for r in backend_in) == sorted([alb_sg, backend_sg, "sg-peer1"]), urn
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


def test_instances_imdsv2_encrypted_root_and_user_data(mocks: RecordingMocks) -> None:
    urn = _deploy("host", _args())

    instances = sorted(mocks.of_type("aws:ec2/instance:Instance"), key=lambda i: i.name)
    assert len(instances) == 3, urn
    assert [i.inputs["subnetId"] for i in instances] == ["subnet-a2", "subnet-b2", "subnet-a2"], urn
    for instance in instances:
        inputs = instance.inputs
        assert inputs["ami"] == AMI_ID, urn
        assert inputs["instanceType"] == "t3.small", urn
        assert inputs["vpcSecurityGroupIds"] == ["sg-host-backend-sg"], urn
        assert inputs["iamInstanceProfile"] == "host-host-profile", urn
        assert inputs["metadataOptions"] == {
            "httpEndpoint": "enabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 1,
        }, urn
        assert inputs["rootBlockDevice"]["encrypted"] is True, urn
        assert inputs["rootBlockDevice"]["volumeType"] == "gp3", urn
        assert inputs["monitoring"] is True, urn
        user_data = inputs["userData"]
        assert user_data.startswith("#!/bin/bash\n"), urn
        assert len(user_data.encode()) < USER_DATA_LIMIT_BYTES, urn
        for name in (
            "/pca-backend/test/full-chain",
            "/pca-backend/test/private-key",
            "/pca-backend/test/ca-bundle",
        ):
            assert name in user_data, urn
        assert "server_name api.internal.example;" in user_data, urn
        assert "readonly REGION=eu-west-1" in user_data, urn
    (ami_call,) = [c for c in mocks.calls if c.token == "aws:ssm/getParameter:getParameter"]
    assert ami_call.args["name"] == DEFAULT_AMI_PARAMETER, urn


@pulumi.runtime.test
def test_subnet_ids_may_be_an_output(mocks: RecordingMocks) -> None:
    def args() -> EncryptedBackendArgs:
        subnets = pulumi.Output.from_input(["subnet-x", "subnet-y"])
        return _args(host_subnet_ids=subnets, alb_subnet_ids=subnets, host_count=3)

    urn = _deploy("outsub", args)
    instances = sorted(mocks.of_type("aws:ec2/instance:Instance"), key=lambda i: i.name)
    assert [i.inputs["subnetId"] for i in instances] == ["subnet-x", "subnet-y", "subnet-x"], urn


def test_key_material_only_in_the_private_key_parameter(mocks: RecordingMocks) -> None:
    urn = _deploy("leak", _args(http_redirect=True))

    holders = [r for r in mocks.resources if KEY_BODY in _dump(r.inputs)]
    assert [(r.typ, r.name) for r in holders] == [("aws:ssm/parameter:Parameter", "leak-private-key")], urn
    assert _secret_value(holders[0].inputs["value"]) == FAKE_KEY_PEM, urn
    # Nor any certificate content outside the parameters.
    for resource in mocks.resources:
        if resource.typ != "aws:ssm/parameter:Parameter":
            assert "RkFLRS1MRUFG" not in _dump(resource.inputs), f"{urn}: chain in {resource.name}"
            assert "RkFLRS1ST09U" not in _dump(resource.inputs), f"{urn}: bundle in {resource.name}"


def test_parameters_are_secure_strings(mocks: RecordingMocks) -> None:
    urn = _deploy("secret", _args())

    params = {p.name: p.inputs for p in mocks.of_type("aws:ssm/parameter:Parameter")}
    assert set(params) == {"secret-full-chain", "secret-private-key", "secret-ca-bundle"}, urn
    for inputs in params.values():
        assert inputs["type"] == "SecureString", urn
    assert params["secret-full-chain"]["name"] == "/pca-backend/test/full-chain", urn
    assert params["secret-private-key"]["name"] == "/pca-backend/test/private-key", urn
    assert params["secret-ca-bundle"]["name"] == "/pca-backend/test/ca-bundle", urn
    assert _secret_value(params["secret-private-key"]["value"]) == FAKE_KEY_PEM, urn
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
        if "*" in resources:
            assert all(
                a.startswith(("ssm:UpdateInstanceInformation", "ssmmessages:", "ec2messages:")) for a in actions
            ), urn
    assert readers, f"{urn}: no statement lets the hosts read their parameters"

    (profile,) = mocks.of_type("aws:iam/instanceProfile:InstanceProfile")
    assert profile.inputs["role"] == role.inputs.get("name", "iam-host-role"), urn


@pulumi.runtime.test
def test_acm_private_certificate_path(mocks: RecordingMocks) -> pulumi.Output[Any]:
    args = _args(listener_domain_name="api.internal.example", private_ca_arn=CA_ARN)
    del args["listener_certificate_arn"]
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

    def check(values: list[Any]) -> None:
        urn, dns, url, tg, alb_sg, backend_sg, hosts, names, listener, role = values
        assert dns == f"out-alb.{REGION}.elb.amazonaws.com", urn
        assert url == f"https://{dns}", urn
        assert tg.endswith("out-targets"), urn
        assert alb_sg == "sg-out-alb-sg", urn
        assert backend_sg == "sg-out-backend-sg", urn
        assert hosts == ["i-out-host-0", "i-out-host-1"], urn
        assert names == {
            "full_chain": "/pca-backend/test/full-chain",
            "private_key": "/pca-backend/test/private-key",
            "ca_bundle": "/pca-backend/test/ca-bundle",
        }, urn
        assert listener.endswith("out-https"), urn
        assert role.endswith("out-host-role"), urn
        (component,) = mocks.of_type("pca-backend:index:EncryptedBackend")
        assert component.name == "out", urn
        children = [r for r in mocks.resources if r.typ != "pca-backend:index:EncryptedBackend"]
        assert all(r.name.startswith("out-") for r in children), urn

    return pulumi.Output.all(
        backend.urn,
        backend.alb_dns_name,
        backend.https_url,
        backend.target_group_arn,
        backend.alb_security_group_id,
        backend.backend_security_group_id,
        backend.host_ids,
        backend.parameter_names,
        backend.listener_arn,
        backend.host_role_arn,
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
        ({"alb_subnet_ids": ["subnet-a1"]}, "alb_subnet_ids"),
        ({"host_subnet_ids": []}, "host_subnet_ids"),
        ({"vpc_id": "vpn-1"}, "vpc_id"),
        ({"peer_security_group_ids": ["default"]}, "peer_security_group_ids"),
        ({"server_names": ["bad name"]}, "server_names"),
        ({"private_key_pem": "not a key"}, "private_key_pem"),
        ({"full_chain_pem": "not a chain"}, "full_chain_pem"),
        ({"tags": {"aws:reserved": "x"}}, "tags"),
        ({"internal": "yes"}, "internal"),
        ({"http_redirect": 1}, "http_redirect"),
    ],
)
def test_bad_args_raise_before_any_resource(mocks: RecordingMocks, overrides: dict[str, Any], message: str) -> None:
    args = {k: v for k, v in _args(**overrides).items() if v is not None}
    with pytest.raises(ValueError, match=message):
        EncryptedBackend("bad", args)  # type: ignore[arg-type]
    assert mocks.resources == [], "a resource was registered before validation failed"


def test_missing_required_argument_is_named(mocks: RecordingMocks) -> None:
    args = dict(_args())
    del args["region"]
    with pytest.raises(ValueError, match="region"):
        EncryptedBackend("missing", args)  # type: ignore[arg-type]
    assert mocks.resources == []
