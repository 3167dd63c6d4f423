"""The real `__main__.py`, run under Pulumi mocks for every stack file in `stacks/`."""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib
import json
import pkgutil
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pulumi
import pytest
from pulumi.runtime import settings as pulumi_settings

import components
from components import x509
from tests import stack_harness
from tests.policy_harness import RecordedResource, check_resources
from tests.stack_harness import (
    CERTIFICATE_TYPE,
    MOCK_AMI,
    MOCK_PRIVATE_KEY,
    PKI_CA_ARN,
    STACKS,
    Registration,
    StackRun,
    run_stack,
)

CA_TYPE = "aws:acmpca/certificateAuthority:CertificateAuthority"
ACTIVATION_TYPE = "aws:acmpca/certificateAuthorityCertificate:CertificateAuthorityCertificate"
CA_CERTIFICATE_TYPE = "aws:acmpca/certificate:Certificate"
PERMISSION_TYPE = "aws:acmpca/permission:Permission"
ACM_CERTIFICATE_TYPE = "aws:acm/certificate:Certificate"
BUCKET_TYPE = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS_BLOCK_TYPE = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
PAYLOAD_TYPE = "aws:s3/bucketObjectv2:BucketObjectv2"
STACK_REFERENCE_TYPE = "pulumi:pulumi:StackReference"

#: The outputs contract (README.md, "Stack outputs"): what each stack exports, no more, no less.
CA_OUTPUTS = {"caArn", "caTrustBundlePem", "caUsageMode"}
CA_OWNER_OUTPUTS = CA_OUTPUTS | {"caCertificatePem", "caNotAfter"}
FLEET_OUTPUTS = {
    "albDnsName",
    "httpsUrl",
    "targetGroupArn",
    "albSecurityGroupId",
    "backendSecurityGroupId",
    "autoScalingGroupName",
}
#: A backend of the shared mode: its certificate and the SSM parameters that deliver it.
BACKEND_OUTPUTS = FLEET_OUTPUTS | {
    "certificateArn",
    "certificatePem",
    "certificateSerial",
    "certificateNotAfter",
    "parameterNames",
}
#: A backend of the per-host mode: no certificate, no parameters; the issuer the hosts ask.
PER_HOST_BACKEND_OUTPUTS = FLEET_OUTPUTS | {"issuerFunctionUrl", "issuerFunctionName", "issuerLogGroupName"}
CONTRACT = {
    "pki": CA_OWNER_OUTPUTS | {"caCrlBucketName"},
    "dev": CA_OUTPUTS | BACKEND_OUTPUTS,
    "prod": CA_OWNER_OUTPUTS | {"caCrlBucketName"} | BACKEND_OUTPUTS,
    "local": CA_OWNER_OUTPUTS | BACKEND_OUTPUTS,
    "per-host": CA_OWNER_OUTPUTS | PER_HOST_BACKEND_OUTPUTS,
}


def per_host(run: StackRun) -> bool:
    """Whether the stack's hosts make their own keys (`hostCertificates: per-host`)."""
    return bool(run.config["pca-backend:backendEnabled"]) and run.config["pca-backend:hostCertificates"] == "per-host"


def host_policy(run: StackRun) -> dict[str, Any]:
    """The hosts' role policy (the per-host issuer's role has its own)."""
    (policy,) = [p for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == "backend-host-policy"]
    return dict(json.loads(policy.inputs["policy"]))


@pytest.fixture
def clean_mocks() -> Iterator[None]:
    """Mocks are process-global: leave no root stack behind for the next test."""
    yield
    pulumi_settings.ROOT.set(None)


@functools.cache
def _cached_run(stack: str) -> StackRun:
    try:
        return run_stack(stack)
    finally:
        pulumi_settings.ROOT.set(None)


@pytest.fixture(params=STACKS)
def run(request: pytest.FixtureRequest) -> StackRun:
    return _cached_run(request.param)


def test_every_stack_has_a_contract() -> None:
    assert set(STACKS) == set(CONTRACT), "each stack file needs an outputs contract here and in README.md"


def test_exports_exactly_the_contract(run: StackRun) -> None:
    assert set(run.outputs) == CONTRACT[run.stack], f"{run.stack}: exports differ from the contract"


def test_no_output_holds_key_material(run: StackRun) -> None:
    for name, value in run.outputs.items():
        text = json.dumps(value)
        assert "PRIVATE KEY" not in text, f"{run.stack}: output {name} holds a private key"


def test_private_key_is_a_secret_output_of_the_certificate(run: StackRun) -> None:
    for certificate in run.of_type(CERTIFICATE_TYPE):
        assert "private_key_pem" in certificate.additional_secret_outputs, certificate.urn


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


#: How the Pulumi wire format marks a secret value.
SECRET_SIGNATURE = "4dabf18193072939515e22adb298388d"


def test_key_reaches_only_the_private_key_parameter_as_a_secret(run: StackRun) -> None:
    holders = [r.urn for r in run.resources if any(MOCK_PRIVATE_KEY in text for text in _strings(r.inputs))]
    key_parameters = [r for r in run.of_type("aws:ssm/parameter:Parameter") if r.name.endswith("private-key")]
    assert holders == [r.urn for r in key_parameters], f"{run.stack}: key material in {holders}"
    for parameter in key_parameters:
        assert SECRET_SIGNATURE in parameter.inputs["value"], f"{parameter.urn}: the key must stay a secret"
    for parameter in run.of_type("aws:ssm/parameter:Parameter"):
        assert parameter.inputs["type"] == "SecureString", parameter.urn


def test_certificate_depends_on_ca_activation(run: StackRun) -> None:
    for certificate in run.of_type(CERTIFICATE_TYPE):
        if run.of_type(CA_TYPE):
            activation = run.one(ACTIVATION_TYPE)
            assert activation.urn in certificate.dependencies, f"{certificate.urn} must wait for activation"
        else:
            reference = run.one(STACK_REFERENCE_TYPE)
            assert reference.urn in certificate.dependencies, certificate.urn
            assert certificate.inputs["ca_arn"] == PKI_CA_ARN, certificate.urn


def test_certificate_settings_come_from_the_stack(run: StackRun) -> None:
    config = run.config
    for certificate in run.of_type(CERTIFICATE_TYPE):
        inputs = certificate.inputs
        assert inputs["key_algorithm"] == config["pca-backend:certKeyAlgorithm"], certificate.urn
        assert inputs["validity_days"] == (config["pca-backend:certValidityDays"] or 90), certificate.urn
        assert "*.ec2.internal" in inputs["subject_alternative_names"], f"{certificate.urn}: host names missing"
        for name in config["pca-backend:certNames"]:
            assert name in inputs["subject_alternative_names"], certificate.urn
        assert inputs["region"] == config["aws:region"], certificate.urn
        assert inputs.get("endpoint_url") == (config["pca-backend:awsEndpointUrl"] or None), certificate.urn


def test_ca_resources_per_mode(run: StackRun) -> None:
    mode = run.config["pca-backend:caMode"]
    if mode == "stack":
        assert not run.of_type(CA_TYPE), f"{run.stack}: a stack-mode CA is referenced, never created"
        assert run.one(STACK_REFERENCE_TYPE).inputs["name"] == run.config["pca-backend:caStack"]
        return
    authority = run.one(CA_TYPE)
    assert authority.inputs["type"] == ("ROOT" if mode == "root" else "SUBORDINATE"), authority.urn
    configuration = authority.inputs["certificateAuthorityConfiguration"]
    assert configuration["keyAlgorithm"] == run.config["pca-backend:caKeyAlgorithm"], authority.urn
    expected_signing = {"RSA_2048": "SHA256WITHRSA", "EC_prime256v1": "SHA256WITHECDSA"}
    assert configuration["signingAlgorithm"] == expected_signing[configuration["keyAlgorithm"]], authority.urn
    assert authority.inputs["usageMode"] == run.config["pca-backend:caUsageMode"], authority.urn
    assert authority.inputs["permanentDeletionTimeInDays"] == run.config["pca-backend:caPermanentDeletionDays"]
    signed = run.one(CA_CERTIFICATE_TYPE)
    activation = run.one(ACTIVATION_TYPE)
    if mode == "root":
        assert signed.inputs["templateArn"] == "arn:aws:acm-pca:::template/RootCACertificate/V1", signed.urn
        assert signed.inputs["certificateAuthorityArn"] == authority.inputs.get(
            "arn", activation.inputs["certificateAuthorityArn"]
        ), signed.urn
        assert signed.inputs["validity"] == {"type": "YEARS", "value": "10"}, signed.urn
        assert "certificateChain" not in activation.inputs, activation.urn
    else:
        template = "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen0/V1"
        assert signed.inputs["templateArn"] == template, signed.urn
        assert signed.inputs["certificateAuthorityArn"] == PKI_CA_ARN, f"{signed.urn}: signed by the pki root"
        # The pki root in the mocks is RSA: the parent signs with its own key's algorithm.
        assert signed.inputs["signingAlgorithm"] == "SHA256WITHRSA", signed.urn
        assert signed.inputs["validity"]["type"] == "END_DATE", signed.urn
        assert signed.inputs["validity"]["value"] < "2035-06-01", f"{signed.urn}: must end before its parent"
        assert activation.inputs["certificateChain"], f"{activation.urn}: a subordinate imports its chain"


def _crl_buckets(run: StackRun) -> list[Registration]:
    return [bucket for bucket in run.of_type(BUCKET_TYPE) if bucket.name.endswith("-crl")]


def _under(run: StackRun, parent: Registration, type_: str) -> Registration:
    (child,) = [resource for resource in run.of_type(type_) if resource.parent == parent.urn]
    return child


def test_crl_bucket_is_private_and_ready_before_the_ca(run: StackRun) -> None:
    if not run.config["pca-backend:caCrlEnabled"] or run.config["pca-backend:caMode"] == "stack":
        assert not _crl_buckets(run), run.stack
        return
    authority = run.one(CA_TYPE)
    crl = authority.inputs["revocationConfiguration"]["crlConfiguration"]
    assert crl["enabled"] is True, authority.urn
    assert crl["s3ObjectAcl"] == "BUCKET_OWNER_FULL_CONTROL", authority.urn
    (bucket,) = _crl_buckets(run)
    block = _under(run, bucket, PUBLIC_ACCESS_BLOCK_TYPE)
    for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert block.inputs[flag] is True, f"{block.urn}: {flag}"
    policy_resource = _under(run, bucket, "aws:s3/bucketPolicy:BucketPolicy")
    for ready in (
        block,
        policy_resource,
        _under(run, bucket, "aws:s3/bucketOwnershipControls:BucketOwnershipControls"),
    ):
        assert ready.urn in authority.dependencies, f"{authority.urn} must wait for {ready.urn}"
    policy = json.loads(policy_resource.inputs["policy"])
    allow = next(s for s in policy["Statement"] if s["Effect"] == "Allow")
    assert allow["Principal"] == {"Service": "acm-pca.amazonaws.com"}, policy_resource.urn
    assert allow["Condition"]["StringEquals"]["aws:SourceAccount"], policy_resource.urn
    assert allow["Condition"]["ArnLike"]["aws:SourceArn"].startswith("arn:aws:acm-pca:"), policy_resource.urn


def test_acm_permission_as_configured(run: StackRun) -> None:
    permissions = run.of_type("aws:acmpca/permission:Permission")
    wanted = run.config["pca-backend:caAcmPermission"] and run.config["pca-backend:caMode"] != "stack"
    assert len(permissions) == (1 if wanted else 0), run.stack
    for permission in permissions:
        assert permission.inputs["principal"] == "acm.amazonaws.com", permission.urn
        assert set(permission.inputs["actions"]) == {"IssueCertificate", "GetCertificate", "ListPermissions"}


def test_backend_only_where_enabled(run: StackRun) -> None:
    backends = run.of_type("pca-backend:index:EncryptedBackend")
    assert len(backends) == (1 if run.config["pca-backend:backendEnabled"] else 0), run.stack
    # The shared mode's one certificate; the per-host mode issues none from the program.
    assert len(run.of_type(CERTIFICATE_TYPE)) == (0 if per_host(run) else len(backends)), run.stack


def test_backend_forwards_https_to_https_targets(run: StackRun) -> None:
    if not run.config["pca-backend:backendEnabled"]:
        return
    target_group = run.one("aws:lb/targetGroup:TargetGroup")
    assert target_group.inputs["protocol"] == "HTTPS", target_group.urn
    assert target_group.inputs["port"] == 443, target_group.urn
    health = target_group.inputs["healthCheck"]
    assert health["protocol"] == "HTTPS", target_group.urn
    assert health["path"] == run.config["pca-backend:healthCheckPath"], target_group.urn
    listeners = {listener.inputs["protocol"]: listener for listener in run.of_type("aws:lb/listener:Listener")}
    https = listeners["HTTPS"]
    assert https.inputs["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06", https.urn
    assert [action["type"] for action in https.inputs["defaultActions"]] == ["forward"], https.urn
    if run.config["pca-backend:httpRedirect"]:
        redirect = listeners["HTTP"]
        actions = redirect.inputs["defaultActions"]
        assert [action["type"] for action in actions] == ["redirect"], f"{redirect.urn}: HTTP may only redirect"
        assert actions[0]["redirect"]["protocol"] == "HTTPS", redirect.urn
    group = run.one("aws:autoscaling/group:Group")
    assert group.inputs["targetGroupArns"] == [
        target_group.inputs.get("arn", f"arn:aws:mock:us-east-1:123456789012:{target_group.name}")
    ]
    assert group.inputs["desiredCapacity"] == run.config["pca-backend:hostCount"], group.urn


def test_backend_hosts_are_hardened(run: StackRun) -> None:
    assert not run.of_type("aws:ec2/instance:Instance"), f"{run.stack}: hosts come from the Auto Scaling group"
    templates = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert len(templates) == (1 if run.config["pca-backend:backendEnabled"] else 0), run.stack
    for template in templates:
        assert template.inputs["imageId"] == MOCK_AMI, f"{template.urn}: AMI from the public SSM parameter"
        assert template.ignore_changes == ["imageId"], f"{template.urn}: kept; later releases must not roll the hosts"
        assert template.inputs["metadataOptions"]["httpTokens"] == "required", f"{template.urn}: IMDSv2"
        assert template.inputs["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true", template.urn
        size = run.config["pca-backend:hostRootVolumeGiB"] or None
        assert template.inputs["blockDeviceMappings"][0]["ebs"].get("volumeSize") == size, template.urn
        assert "keyName" not in template.inputs, f"{template.urn}: no SSH key; Session Manager instead"
        # Hosts named ip-<address>.ec2.internal, which the certificate's EC2 wildcard covers: host to host verifies.
        assert template.inputs["privateDnsNameOptions"] == {"hostnameType": "ip-name"}, template.urn
        if not per_host(run):
            (certificate,) = run.of_type(CERTIFICATE_TYPE)
            assert "*.ec2.internal" in certificate.inputs["subject_alternative_names"], certificate.urn
        user_data = base64.b64decode(template.inputs["userData"]).decode()
        assert "PRIVATE KEY" not in user_data, f"{template.urn}: key material in user data"
        assert len(user_data.encode()) < 3 * 1024, f"{template.urn}: the bootstrap, not the host software"
        payload = run.one(PAYLOAD_TYPE)
        assert f"readonly PAYLOAD_KEY={payload.inputs['key']}\n" in user_data, template.urn
        assert payload.urn in template.dependencies, f"{template.urn}: a new version once the new payload exists"
        # A PEM armour line: the embedded trust-ca names "PRIVATE KEY" in the check that refuses keys.
        assert "PRIVATE KEY-----" not in payload.inputs["content"], f"{payload.urn}: key material in the payload"
        if per_host(run):
            # The agent, which makes the key on the host; no parameter to read.
            assert "PRIVATE_KEY_PARAMETER" not in payload.inputs["content"], payload.urn
            assert "/usr/local/sbin/pca-backend-cert-agent" in payload.inputs["content"], payload.urn
            continue
        prefix = run.config["pca-backend:parameterPrefix"] or "/pca-backend/" + run.stack
        assert f"readonly PRIVATE_KEY_PARAMETER={prefix}/private-key\n" in payload.inputs["content"], payload.urn


def test_hosts_boot_from_a_pinned_payload_in_a_private_bucket(run: StackRun) -> None:
    """Per backend: a private, TLS-only bucket; the payload under its SHA-256, kept when replaced; the launch
    template pins that SHA-256 and the stack's CAs; the hosts may read the payloads and nothing else of S3."""
    if not run.config["pca-backend:backendEnabled"]:
        assert not run.of_type(PAYLOAD_TYPE), run.stack
        return
    (bucket,) = [resource for resource in run.of_type(BUCKET_TYPE) if not resource.name.endswith("-crl")]
    assert bucket.name == "backend-host-payloads", bucket.urn
    assert bucket.inputs["forceDestroy"] is True, bucket.urn
    assert bucket.protect is False, f"{bucket.urn}: generated payloads only, nothing to keep"
    block = _under(run, bucket, PUBLIC_ACCESS_BLOCK_TYPE)
    assert all(block.inputs[flag] is True for flag in ("blockPublicAcls", "blockPublicPolicy")), block.urn
    assert all(block.inputs[flag] is True for flag in ("ignorePublicAcls", "restrictPublicBuckets")), block.urn
    ownership = _under(run, bucket, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced", ownership.urn
    policy = json.loads(_under(run, bucket, "aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    (deny,) = policy["Statement"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}, policy
    payload = run.one(PAYLOAD_TYPE)
    digest = hashlib.sha256(payload.inputs["content"].encode()).hexdigest()
    assert payload.inputs["key"] == f"hosts/{digest}.sh", payload.urn
    assert payload.retain_on_delete is True, payload.urn
    template = run.one("aws:ec2/launchTemplate:LaunchTemplate")
    user_data = base64.b64decode(template.inputs["userData"]).decode()
    assert f"readonly PAYLOAD_SHA256={digest}\n" in user_data, template.urn
    # The stack's CA bundle, pinned: the pki root for dev, the stack's own CAs elsewhere.
    pins = user_data.split("<<'PCA_BACKEND_PINS_EOF'\n", 1)[1].split("PCA_BACKEND_PINS_EOF\n", 1)[0]
    assert [line for line in pins.splitlines() if not line.startswith("#")], template.urn
    if run.config["pca-backend:caMode"] == "stack":
        assert [line for line in pins.splitlines() if not line.startswith("#")] == x509.sha256_fingerprints(
            stack_harness.PKI_ROOT_PEM
        ), template.urn
    group = run.one("aws:autoscaling/group:Group")
    assert payload.urn in group.dependencies, f"{group.urn} waits for the payload"
    statements = host_policy(run)["Statement"]
    reads = [statement for statement in statements if any(a.startswith("s3:") for a in _actions(statement))]
    assert reads == [
        {
            "Sid": "ReadHostPayloads",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::backend-host-payloads-bucket/hosts/*",
        }
    ], reads


def test_host_fleet_rolls_within_the_configured_sizes(run: StackRun) -> None:
    if not run.config["pca-backend:backendEnabled"]:
        assert not run.of_type("aws:autoscaling/group:Group"), run.stack
        return
    count = run.config["pca-backend:hostCount"]
    group = run.one("aws:autoscaling/group:Group")
    assert group.inputs["minSize"] == (run.config["pca-backend:hostMinCount"] or count), group.urn
    max_healthy = min(200, run.config["pca-backend:hostMinHealthyPercent"] + 100)
    assert group.inputs["maxSize"] == (run.config["pca-backend:hostMaxCount"] or -(-count * max_healthy // 100))
    assert group.inputs["healthCheckType"] == "ELB", group.urn
    refresh = group.inputs["instanceRefresh"]
    assert refresh["strategy"] == "Rolling", group.urn
    assert refresh["preferences"]["minHealthyPercentage"] == run.config["pca-backend:hostMinHealthyPercent"]
    # A failed refresh rolls back; an unhealthy host is replaced by one launched first; one failed launch while
    # creation waits for capacity does not fail the deployment.
    assert refresh["preferences"]["autoRollback"] is True, group.urn
    assert group.inputs["instanceMaintenancePolicy"]["minHealthyPercentage"] == 100, group.urn
    assert group.inputs["instanceMaintenancePolicy"]["maxHealthyPercentage"] > 100, group.urn
    assert group.inputs["ignoreFailedScalingActivities"] is True, group.urn
    template = run.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.urn in group.dependencies, f"{group.urn} launches from the template"


def test_parameters_use_the_backend_key(run: StackRun) -> None:
    if not run.config["pca-backend:backendEnabled"] or per_host(run):
        # No key material through SSM: no key, no parameter.
        assert not run.of_type("aws:kms/key:Key"), run.stack
        assert not run.of_type("aws:ssm/parameter:Parameter"), run.stack
        return
    key = run.one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True, key.urn
    assert key.inputs["deletionWindowInDays"] == 30, key.urn
    statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    # The writers the stack declares, not whoever ran `pulumi up` (the mocked deployer is user/mock).
    writers = sorted(run.config["pca-backend:parameterWriterArns"])
    assert writers, f"{run.stack}: a stack that creates the key declares who writes its parameters"
    assert statements["DeployerWritesTheParameters"]["Principal"] == {"AWS": writers}, key.urn
    hosts = statements["HostsReadTheirParameters"]
    assert hosts["Action"] == ["kms:Decrypt"], key.urn
    assert "kms:EncryptionContext:PARAMETER_ARN" in hosts["Condition"]["StringEquals"], key.urn
    for parameter in run.of_type("aws:ssm/parameter:Parameter"):
        assert parameter.inputs["keyId"] == f"arn:aws:mock:us-east-1:123456789012:{key.name}", parameter.urn
        assert key.urn in parameter.dependencies, parameter.urn


def test_certificate_expiry_alarm_per_backend(run: StackRun) -> None:
    alarms = run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    if not run.config["pca-backend:backendEnabled"]:
        assert not alarms, run.stack
        return
    (alarm,) = alarms
    prefix = run.config["pca-backend:parameterPrefix"] or f"/pca-backend/{run.stack}"
    assert alarm.inputs["dimensions"] == {"Backend": prefix.strip("/").replace("/", "-")}, alarm.urn
    assert (alarm.inputs["namespace"], alarm.inputs["metricName"]) == ("PcaBackend", "CertificateDaysToExpiry")
    assert alarm.inputs["statistic"] == "Minimum", alarm.urn
    if per_host(run):
        # Each host renews at a third of its certificate's life (7 days by default): the alarm sits below that.
        validity = run.config["pca-backend:certValidityDays"] or 7
        expected = run.config["pca-backend:certExpiryAlarmDays"] or min(14, max(1, validity // 6))
        assert alarm.inputs["threshold"] == expected, alarm.urn
        assert alarm.inputs["threshold"] < validity / 3, f"{alarm.urn}: inside the hosts' renewal window"
        assert "pulumi up does not" in alarm.inputs["alarmDescription"], f"{alarm.urn}: the hosts renew"
        return
    validity = run.config["pca-backend:certValidityDays"] or 90
    expected = run.config["pca-backend:certExpiryAlarmDays"] or min(14, max(1, validity // 3 // 2))
    assert alarm.inputs["threshold"] == expected, alarm.urn
    assert alarm.inputs["threshold"] < validity // 3, f"{alarm.urn}: inside the renewal window"


def test_host_role_reads_only_its_parameters(run: StackRun) -> None:
    if not run.config["pca-backend:backendEnabled"]:
        return
    prefix = run.config["pca-backend:parameterPrefix"] or f"/pca-backend/{run.stack}"
    policy = host_policy(run)
    reads = [s for s in policy["Statement"] if any("ssm:GetParameter" in a for a in _actions(s))]
    (metrics,) = [s for s in policy["Statement"] if "cloudwatch:PutMetricData" in _actions(s)]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "PcaBackend"}}, metrics
    if per_host(run):
        assert reads == [], f"{run.stack}: the hosts read no parameter"
        assert not [s for s in policy["Statement"] if any(a.startswith("kms:") for a in _actions(s))], policy
        return
    assert len(reads) == 1, policy
    assert sorted(reads[0]["Resource"]) == sorted(
        f"arn:aws:ssm:us-east-1:123456789012:parameter{prefix}/{name}"
        for name in ("ca-bundle", "full-chain", "private-key")
    ), reads
    assert not run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"), "no broad managed policies"


def _key_policy_as(
    stack: str, caller_arn: str, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any] | None = None
) -> str:
    """The parameter key's policy when `caller_arn` runs `pulumi up`."""
    original = stack_harness._Mocks.answer_invoke

    def answer(self: Any, token: str, args: dict[str, Any]) -> Any:
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": "123456789012", "arn": caller_arn, "userId": "AIDA", "id": "123456789012"}
        if token == "aws:iam/getSessionContext:getSessionContext":
            return {"arn": caller_arn, "issuerArn": caller_arn.replace(":sts:", ":iam:").rsplit("/", 1)[0], "id": "x"}
        return original(self, token, args)

    with monkeypatch.context() as patch:
        patch.setattr(stack_harness._Mocks, "answer_invoke", answer)
        try:
            run = run_stack(stack, overrides)
        finally:
            pulumi_settings.ROOT.set(None)
    return str(run.one("aws:kms/key:Key").inputs["policy"])


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
def test_the_key_policy_is_the_same_whoever_runs_pulumi_up(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a person's `pulumi up`, the renewal pipeline's PutParameter must still be allowed: the writers are
    the stack's, never the caller."""
    pipeline = _key_policy_as(stack, "arn:aws:sts::123456789012:assumed-role/pca-backend-deploy/gha-42", monkeypatch)
    person = _key_policy_as(stack, "arn:aws:iam::123456789012:user/alice", monkeypatch)
    assert pipeline == person, f"{stack}: the key policy follows who ran pulumi up"
    assert "alice" not in person
    assert "gha-42" not in pipeline


def test_without_named_writers_the_assumed_role_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    role = "arn:aws:iam::123456789012:role/pca-backend-dev-deploy"
    overrides = {"pca-backend:parameterWriterArns": [], "aws:assumeRoles": [{"roleArn": role}]}
    policy = json.loads(_key_policy_as("dev", "arn:aws:iam::123456789012:user/alice", monkeypatch, overrides))
    (writer,) = [s for s in policy["Statement"] if s["Sid"] == "DeployerWritesTheParameters"]
    assert writer["Principal"] == {"AWS": [role]}


def test_a_stack_creating_the_key_without_writers_is_refused_before_any_resource() -> None:
    from components.settings import SettingsError
    from tests.test_settings_sweep import run_program_keeping_resources

    run, error = run_program_keeping_resources("dev", {"pca-backend:parameterWriterArns": []})
    assert run.resources == [], f"registered {[r.urn for r in run.resources]} before refusing"
    assert isinstance(error, SettingsError), repr(error)
    (problem,) = [problem for problem in error.problems if problem.startswith("parameterWriterArns: ")]
    assert "is required when the stack creates the parameters' KMS key" in problem, problem


@pytest.mark.parametrize(
    ("overrides", "setting", "said"),
    [
        # The dev file's ALB subnets are in us-east-1a and 1b (the mocks place a subnet by its last digit).
        ({"pca-backend:hostSubnetIds": ["subnet-0a1b2c3d4e5f60723"]}, "hostSubnetIds", "is in us-east-1c"),
        (
            {"pca-backend:albSubnetIds": ["subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60741"]},
            "albSubnetIds",
            "are all in us-east-1a",
        ),
    ],
)
def test_host_subnets_outside_the_load_balancers_zones_are_refused_before_any_resource(
    overrides: dict[str, Any], setting: str, said: str
) -> None:
    from components.settings import SettingsError
    from tests.test_settings_sweep import run_program_keeping_resources

    run, error = run_program_keeping_resources("dev", overrides)
    assert run.resources == [], f"registered {[r.urn for r in run.resources]} before refusing"
    assert isinstance(error, SettingsError), repr(error)
    assert any(problem.startswith(f"{setting}: ") and said in problem for problem in error.problems), error.problems


def test_the_subnets_of_a_stack_are_looked_up_once_it_names_them(run: StackRun) -> None:
    looked_up = {args["id"] for token, args in run.invokes if token == "aws:ec2/getSubnet:getSubnet"}
    named = set(run.config["pca-backend:albSubnetIds"]) | set(run.config["pca-backend:hostSubnetIds"])
    assert looked_up == (named if run.config["pca-backend:backendEnabled"] else set()), run.stack


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def _recorded(run: StackRun) -> list[RecordedResource]:
    """The stack's resources as the policy harness takes them, with the engine's property dependencies."""
    recorded = {
        resource.urn: RecordedResource(
            type_=resource.type_,
            name=resource.name,
            props=resource.inputs,
            additional_secret_outputs=resource.additional_secret_outputs,
            outputs=resource.outputs,
        )
        for resource in run.resources
    }
    for resource in run.resources:
        recorded[resource.urn].property_dependencies = {
            prop: [recorded[urn].urn for urn in urns if urn in recorded]
            for prop, urns in resource.property_dependencies.items()
        }
    return list(recorded.values())


def test_program_passes_the_policy_pack(run: StackRun) -> None:
    assert check_resources(_recorded(run)) == [], run.stack


def test_the_bucket_policies_see_every_bucket_of_the_program(run: StackRun) -> None:
    """Without its public access block or its TLS-only policy, each bucket of the stack is reported by name."""
    buckets = run.of_type(BUCKET_TYPE)
    for bucket in buckets:
        guards = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "aws:s3/bucketPolicy:BucketPolicy")
        stripped = [
            resource
            for resource in _recorded(run)
            if not (resource.type_ in guards and resource.name.startswith(bucket.name))
        ]
        violations = check_resources(stripped)
        for policy in ("s3-buckets-public-access-blocked", "s3-buckets-tls-only"):
            assert f"{policy}: {BUCKET_TYPE}::{bucket.name}: S3 bucket {bucket.name}" in "\n".join(violations), (
                f"{bucket.urn}: {policy} did not see it: {violations}"
            )


def _run_expecting_error(stack: str, overrides: dict[str, Any]) -> tuple[str, StackRun | None]:
    try:
        run = run_stack(stack, overrides)
    except Exception as error:
        return str(error), None
    finally:
        pulumi_settings.ROOT.set(None)
    return "", run


@pytest.mark.parametrize(
    ("stack", "overrides", "named"),
    [
        ("dev", {"pca-backend:caStack": ""}, ["caStack"]),
        ("local", {"pca-backend:caStack": "organization/pca-backend/pki"}, ["caMode", "caStack"]),
        (
            "local",
            {"pca-backend:caUsageMode": "SHORT_LIVED_CERTIFICATE", "pca-backend:certValidityDays": 30},
            [
                "certValidityDays",
                "SHORT_LIVED_CERTIFICATE",
            ],
        ),
        ("prod", {"pca-backend:caParentArn": PKI_CA_ARN}, ["caMode", "caStack", "caParentArn"]),
        (
            "dev",
            {"pca-backend:albCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc"},
            [
                "albCertificateArn",
                "albDomainName",
            ],
        ),
        ("dev", {"pca-backend:albIngressCidrs": ["0.0.0.0/0"]}, ["albIngressCidrs", "0.0.0.0/0"]),
        ("dev", {"pca-backend:certKeyAlgorithm": "DSA_1024"}, ["certKeyAlgorithm", "EC_prime256v1"]),
        ("pki", {"pca-backend:caPermanentDeletionDays": 3}, ["caPermanentDeletionDays", "7 to 30"]),
        ("dev", {"pca-backend:hostAmiId": "ami-latest"}, ["hostAmiId", "8 or 17"]),
    ],
)
def test_contradictory_settings_fail_before_any_resource(
    stack: str, overrides: dict[str, Any], named: list[str], clean_mocks: None
) -> None:
    message, run = _run_expecting_error(stack, overrides)
    assert run is None, f"{stack} with {overrides} should have failed"
    assert "invalid stack configuration" in message, message
    for word in named:
        assert word in message, f"error should name {word!r}: {message}"


def test_referenced_short_lived_ca_refuses_long_certificates(
    monkeypatch: pytest.MonkeyPatch, clean_mocks: None
) -> None:
    from tests import stack_harness

    original = stack_harness._Mocks.new_resource

    def short_lived(self: Any, args: Any) -> Any:
        resource_id, outputs = original(self, args)
        if args.typ == STACK_REFERENCE_TYPE:
            outputs["outputs"]["caUsageMode"] = "SHORT_LIVED_CERTIFICATE"
        return resource_id, outputs

    monkeypatch.setattr(stack_harness._Mocks, "new_resource", short_lived)
    message, run = _run_expecting_error("dev", {})
    assert run is None, "dev issues 30-day certificates; a SHORT_LIVED CA must refuse them at preview"
    assert "certValidityDays" in message, message
    assert "SHORT_LIVED_CERTIFICATE" in message, message


def test_a_chosen_ami_is_used_without_lookup_and_rolls_the_hosts(clean_mocks: None) -> None:
    chosen = "ami-0fedcba9876543210"
    run = run_stack("dev", {"pca-backend:hostAmiId": chosen})
    template = run.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.inputs["imageId"] == chosen, template.urn
    assert template.ignore_changes == [], f"{template.urn}: a changed hostAmiId must apply (instance refresh)"
    lookups = [args for token, args in run.invokes if token == "aws:ssm/getParameter:getParameter"]
    assert lookups == [], f"{template.urn}: no AMI lookup when hostAmiId is set"


# --- the clock -----------------------------------------------------------------------------------------------


def _freeze_clock(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    """Make every clock the program reads say `moment`: `datetime` in each `components` module and time.time."""

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return moment.astimezone(tz) if tz is not None else moment.replace(tzinfo=None)

        @classmethod
        def utcnow(cls) -> Any:
            return moment.replace(tzinfo=None)

    for module_info in pkgutil.iter_modules(components.__path__):
        importlib.import_module(f"components.{module_info.name}")
    for name, module in list(sys.modules.items()):
        if name.startswith("components.") and getattr(module, "datetime", None) is datetime:
            monkeypatch.setattr(module, "datetime", FrozenDatetime)
    monkeypatch.setattr(time, "time", lambda: moment.timestamp())


def _registrations(
    stack: str, monkeypatch: pytest.MonkeyPatch, moment: datetime, ami: str = MOCK_AMI
) -> dict[str, Registration]:
    """The stack's resources by URN at `moment`, with the public AMI parameter answering `ami`."""
    with monkeypatch.context() as patch:
        _freeze_clock(patch, moment)
        patch.setattr(stack_harness, "MOCK_AMI", ami)
        try:
            run = run_stack(stack)
        finally:
            pulumi_settings.ROOT.set(None)
    assert run.resources, stack
    return {resource.urn: resource for resource in run.resources}


def _content(value: Any) -> Any:
    """An input as the engine compares it: an asset or archive by what it holds (a function's code archive is a new
    Python object on every run, the same files or not)."""
    if isinstance(value, pulumi.AssetArchive):
        return {path: _content(asset) for path, asset in value.assets.items()}
    if isinstance(value, pulumi.StringAsset):
        return ("text", value.text)
    if isinstance(value, (pulumi.FileAsset, pulumi.FileArchive)):
        return ("file", value.path)
    return value


#: What the public Amazon Linux parameter answers after the next release.
NEXT_RELEASE_AMI = "ami-0aaaabbbbccccdddd"


@pytest.mark.parametrize("stack", STACKS)
def test_no_input_depends_on_the_clock(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `pulumi up` nine days later, after a new Amazon Linux release in the public AMI parameter, asks for
    exactly what the first one did. An input the resource lists in `ignore_changes` keeps its value from state
    (the engine does that; mocks cannot), so only those may differ. (The backend certificate's renewal is
    decided by its provider's `check`/`diff` from its inputs, at deployment time, not by the program.)"""
    first = _registrations(stack, monkeypatch, datetime(2027, 3, 1, 9, 30, tzinfo=UTC))
    later = _registrations(
        stack, monkeypatch, datetime(2027, 3, 1, 9, 30, tzinfo=UTC) + timedelta(days=9), ami=NEXT_RELEASE_AMI
    )
    assert first.keys() == later.keys(), f"{stack}: the resources differ"
    changed = {}
    for urn, before in first.items():
        after = later[urn]
        keys = (before.inputs.keys() | after.inputs.keys()) - set(after.ignore_changes)
        differing = {key: (_content(before.inputs.get(key)), _content(after.inputs.get(key))) for key in keys}
        differing = {key: values for key, values in differing.items() if values[0] != values[1]}
        if differing:
            changed[urn] = differing
    assert not changed, f"{stack}: inputs depend on the clock or on the AMI parameter's latest answer: {changed}"


# --- protection, ordering, caNotAfter ----------------------------------------------------------------------


def test_created_cas_are_protected_as_configured(run: StackRun) -> None:
    authorities = run.of_type(CA_TYPE)
    if not authorities:
        return
    wanted = run.config["pca-backend:caProtect"]
    assert wanted is (run.stack != "local"), f"{run.stack}: only the throw-away local CA goes unprotected"
    owned = [*authorities, run.one(CA_CERTIFICATE_TYPE), run.one(ACTIVATION_TYPE), *_crl_buckets(run)]
    for resource in owned:
        assert resource.protect is wanted, f"{resource.urn}: protect should be {wanted}"
    for permission in run.of_type(PERMISSION_TYPE):
        assert permission.protect is False, f"{permission.urn}: a setting, not a long-lived asset"


def test_acm_private_certificate_waits_for_the_acm_permission(run: StackRun) -> None:
    listener_certificates = run.of_type(ACM_CERTIFICATE_TYPE)
    permissions = run.of_type(PERMISSION_TYPE)
    if run.stack == "prod":
        assert listener_certificates, "prod asks ACM for a private listener certificate"
        assert permissions, "prod grants ACM its permission on the CA it creates"
    for certificate in listener_certificates:
        for permission in permissions:
            assert permission.urn in certificate.dependencies, f"{certificate.urn} must wait for {permission.urn}"


ZERO_TIME = "0001-01-01T00:00:00Z"


def test_ca_not_after_is_the_activated_certificates(run: StackRun) -> None:
    if "caNotAfter" not in run.outputs:
        return
    certificate = x509.load_certificates(run.outputs["caCertificatePem"])[0]
    assert run.outputs["caNotAfter"] == x509.iso_utc(x509.not_after(certificate)), run.stack
    assert run.outputs["caNotAfter"] != ZERO_TIME, f"{run.stack}: the CA resource's value before a refresh"


def test_readme_documents_exactly_the_outputs_contract() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("\n## Stack outputs\n", 1)[1].split("\n## ", 1)[0]
    documented = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert documented == set().union(*CONTRACT.values()), "README.md's output table differs from the contract"
