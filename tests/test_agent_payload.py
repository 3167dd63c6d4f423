"""The per-host mode's host software (components/host_agent.py) and the agent's own pieces, without a network.

The agent's run against real nginx, IMDS and the issuer is tests/test_cert_agent.py; here: what the payload holds,
that the agent reads the configuration it is given, that its SigV4 signature is what botocore computes (and that the
function URL stand-in's check refuses what AWS would), and how it decides to renew.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from components.host_agent import (
    AGENT_CONFIG_PATH,
    AGENT_PATH,
    VERIFY_TLS_PATH,
    render_agent_config,
    render_agent_payload,
)
from components.host_bootstrap import (
    BUNDLE_PATH,
    CERTIFICATE_PATH,
    GATE_PATH,
    PINS_PATH,
    PRIVATE_KEY_PATH,
    SERVER_BLOCK_PATH,
    TRUST_CA_PATH,
    package_install_command,
)
from components.local.agent import Instance, SignatureRefused, verify_sigv4
from components.nginx_config import render_server_block
from tests.project_tools import load_script

REPO = Path(__file__).resolve().parent.parent
URL = "https://abcdefghij0123456789abcdefghij01.lambda-url.eu-west-1.on.aws/"
SERVER_BLOCK = render_server_block(
    server_names=["api.internal.example"], certificate_path=CERTIFICATE_PATH, private_key_path=PRIVATE_KEY_PATH
)
ARGUMENTS: dict[str, Any] = {
    "region": "eu-west-1",
    "issuer_url": URL,
    "server_block": SERVER_BLOCK,
    "service_names": ["api.internal.example"],
    "metric_backend": "pca-backend-dev",
    "key_algorithm": "EC_prime256v1",
}


@pytest.fixture(scope="module")
def agent() -> ModuleType:
    return load_script("cert-agent")


# --- the payload -------------------------------------------------------------------------------------------------


def test_the_payload_holds_the_agent_what_it_calls_and_its_units() -> None:
    payload = render_agent_payload(**ARGUMENTS, check_interval_minutes=10)
    files = {file.path: file for file in payload.files}
    assert list(files) == [
        TRUST_CA_PATH, GATE_PATH, VERIFY_TLS_PATH, AGENT_PATH, AGENT_CONFIG_PATH, SERVER_BLOCK_PATH,
        "/etc/systemd/system/pca-backend-cert-agent.service", "/etc/systemd/system/pca-backend-cert-agent.timer",
    ]  # fmt: skip
    for path, script in [(TRUST_CA_PATH, "trust-ca"), (GATE_PATH, "tls-gate"), (VERIFY_TLS_PATH, "verify-tls"),
                         (AGENT_PATH, "cert-agent")]:  # fmt: skip
        assert files[path].content == (REPO / "scripts" / script).read_text()
        assert files[path].mode == "0755"
    assert PINS_PATH not in files, "the launch template's bootstrap writes the pins"
    assert files[SERVER_BLOCK_PATH].content == SERVER_BLOCK
    service = files["/etc/systemd/system/pca-backend-cert-agent.service"].content
    assert f"ExecStart={AGENT_PATH} --config {AGENT_CONFIG_PATH}\n" in service
    assert "Restart=on-failure\nRestartPreventExitStatus=1 2\nRestartSec=20\n" in service
    assert "TimeoutStartSec=10min\n" in service
    timer = files["/etc/systemd/system/pca-backend-cert-agent.timer"].content
    assert "OnUnitActiveSec=10min\n" in timer
    assert "RandomizedDelaySec=5min\n" in timer
    commands = "\n".join(payload.commands)
    assert package_install_command("pca-backend-cert-agent.timer") in payload.commands
    order = ["systemctl daemon-reload", "systemctl enable --now pca-backend-cert-agent.timer", "dnf install",
             "systemctl enable nginx.service", "systemctl start --no-block pca-backend-cert-agent.service"]  # fmt: skip
    assert [commands.index(step) for step in order] == sorted(commands.index(step) for step in order)


def test_the_configuration_names_the_files_the_server_block_serves(agent: ModuleType, tmp_path: Path) -> None:
    payload = render_agent_payload(**ARGUMENTS)
    (config_file,) = [file for file in payload.files if file.path == AGENT_CONFIG_PATH]
    path = tmp_path / "agent.json"
    path.write_text(config_file.content)
    config = agent.read_config(str(path))  # what the agent reads is what was rendered
    assert (config.certificate_path, config.private_key_path, config.bundle_path) == (
        CERTIFICATE_PATH, PRIVATE_KEY_PATH, BUNDLE_PATH,
    )  # fmt: skip
    assert (config.gate_path, config.trust_ca_path, config.pins_path) == (GATE_PATH, TRUST_CA_PATH, PINS_PATH)
    assert config.issuer_url == URL
    assert config.region == "eu-west-1"
    assert config.ec2_dns_domain == "eu-west-1.compute.internal"
    assert config.service_names == ("api.internal.example",)
    assert config.imds_url == "http://169.254.169.254"
    config_arguments = {key: value for key, value in ARGUMENTS.items() if key != "server_block"}
    us_east_1 = json.loads(
        render_agent_config(
            **{**config_arguments, "region": "us-east-1", "issuer_url": URL.replace("eu-west-1", "us-east-1")}
        )
    )
    assert us_east_1["ec2_dns_domain"] == "ec2.internal"


def test_the_payload_is_deterministic_and_holds_no_secret() -> None:
    first, second = render_agent_payload(**ARGUMENTS), render_agent_payload(**ARGUMENTS)
    assert first == second
    text = "\n".join(file.content for file in first.files) + "\n".join(first.commands)
    assert "PRIVATE KEY-----" not in text
    assert "AKIA" not in text
    assert "SecretAccessKey" in text, "only the agent's code that reads it from IMDS"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"region": "Mars"}, "region must be an AWS region name"),
        ({"issuer_url": URL.replace("https", "http")}, "issuer_url must be the issuer's function URL, https"),
        ({"issuer_url": URL + "issue"}, "issuer_url must be the issuer's function URL"),
        ({"issuer_url": "https://user:pw@example.com/"}, "issuer_url must be the issuer's function URL"),
        ({"issuer_url": URL.replace("eu-west-1", "us-east-2")}, "issuer_url is a function URL in us-east-2 but region"),
        ({"service_names": "api.internal.example"}, "service_names must be a list of DNS names"),
        ({"service_names": ["*.internal.example"]}, "is not a DNS name of two labels or more without a wildcard"),
        ({"service_names": ["localhost"]}, "is not a DNS name of two labels or more"),
        ({"service_names": ["api.example."]}, "ends with a dot"),
        ({"service_names": ["ip-10-0-1-5.eu-west-1.compute.internal"]}, "is an EC2 instance name"),
        ({"metric_backend": ""}, "metric_backend must be the backend's name"),
        ({"key_algorithm": "EC_secp521r1"}, "key_algorithm must be one of EC_prime256v1, EC_secp384r1, RSA_2048"),
        ({"check_interval_minutes": 0}, "check_interval_minutes must be an integer from 1 to 1440"),
        ({"check_interval_minutes": True}, "check_interval_minutes must be an integer"),
        ({"server_block": "server { listen 443 ssl; }"}, f"server_block must serve {CERTIFICATE_PATH}"),
    ],
)
def test_bad_arguments_are_refused_naming_the_argument(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        render_agent_payload(**{**ARGUMENTS, **changes})


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    payload = render_agent_payload(**ARGUMENTS)
    units = []
    for file in payload.files:
        if file.path.startswith("/etc/systemd/system/"):
            unit = tmp_path / Path(file.path).name
            unit.write_text(file.content.replace(AGENT_PATH, "/bin/true"))
            units.append(str(unit))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [line for line in result.stderr.splitlines() if "pca-backend-cert-agent" in line]
    assert problems == [], result.stderr


# --- the agent's configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"issuer_url": "http://issuer.example/"}, "issuer_url must be the issuer's https URL"),
        ({"key_algorithm": "DSA"}, "key_algorithm must be one of"),
        ({"service_names": ["api_bad.example"]}, "service_names must be a list of DNS names"),
        ({"issuer_attempts": 0}, "issuer_attempts must be an integer from 1 to 20"),
        ({"retry_seconds": 31}, "retry_seconds must be a number from 0 to 30"),
        ({"imds_url": "file:///etc/passwd"}, "imds_url must be an http URL"),
        ({"validity": 7}, "unknown validity"),
        ({"region": ""}, "region must be a non-empty string"),
    ],
)
def test_the_agent_refuses_a_bad_configuration_with_a_usage_error(
    agent: ModuleType, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    config = json.loads(render_agent_config(**{k: v for k, v in ARGUMENTS.items() if k != "server_block"}))
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({**config, **changes}))
    with pytest.raises(agent.UsageError, match=re.escape(message)):
        agent.read_config(str(path))
    result = subprocess.run(
        [str(REPO / "scripts/cert-agent"), "--config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == agent.EXIT_USAGE == 2
    assert message in result.stderr


def test_a_missing_field_is_named(agent: ModuleType, tmp_path: Path) -> None:
    config = json.loads(render_agent_config(**{k: v for k, v in ARGUMENTS.items() if k != "server_block"}))
    del config["pins_path"]
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(config))
    with pytest.raises(agent.UsageError, match="missing pins_path"):
        agent.read_config(str(path))


# --- SigV4: the agent's signature, checked as the function URL checks it -----------------------------------------

INSTANCE = Instance("i-0123456789abcdef0", "10.0.1.5", "pca-backend-dev-hosts")
NOW = datetime.datetime(2026, 12, 7, 10, 0, 0, tzinfo=datetime.UTC)


def _signed(agent: ModuleType, body: bytes = b'{"csr": "x"}', region: str = "eu-west-1", **changes: str) -> Any:
    credentials = agent.Credentials(
        changes.pop("access_key_id", INSTANCE.access_key_id),
        changes.pop("secret_access_key", INSTANCE.secret_access_key),
        changes.pop("token", INSTANCE.token),
    )
    return agent.sigv4_headers(URL, body, credentials, region, NOW)


def _verify(headers: dict[str, str], body: bytes = b'{"csr": "x"}', path: str = "/") -> Instance:
    return verify_sigv4(
        method="POST", path=path, headers=headers, body=body, instances={INSTANCE.access_key_id: INSTANCE},
        region="eu-west-1", now=NOW,
    )  # fmt: skip


def test_the_agents_signature_is_what_botocore_computes(agent: ModuleType) -> None:
    headers = _signed(agent)
    assert _verify(headers) == INSTANCE
    assert headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={INSTANCE.access_key_id}/20261207/eu-west-1/lambda/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="
    )
    assert headers["host"] == "abcdefghij0123456789abcdefghij01.lambda-url.eu-west-1.on.aws"
    assert headers["x-amz-content-sha256"] == hashlib.sha256(b'{"csr": "x"}').hexdigest()


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda a: (_signed(a), b'{"csr": "y"}', "/"), "the body does not hash to the signed X-Amz-Content-SHA256"),
        (lambda a: ({**_signed(a), "x-amz-content-sha256": hashlib.sha256(b"y").hexdigest()}, b"y", "/"),
         "the signature does not match"),
        (lambda a: (_signed(a), b'{"csr": "x"}', "/other"), "the signature does not match"),
        (lambda a: (_signed(a, secret_access_key="wrong"), b'{"csr": "x"}', "/"), "the signature does not match"),
        (lambda a: (_signed(a, region="us-east-1"), b'{"csr": "x"}', "/"), "not lambda in eu-west-1"),
        (lambda a: (_signed(a, token="stolen-elsewhere"), b'{"csr": "x"}', "/"), "the session token is not"),
        (lambda a: (_signed(a, access_key_id="ASIAUNKNOWN"), b'{"csr": "x"}', "/"), "unknown access key"),
        (lambda a: ({k: v for k, v in _signed(a).items() if k != "authorization"}, b'{"csr": "x"}', "/"),
         "no SigV4 Authorization header"),
    ],
)  # fmt: skip
def test_the_function_url_stand_in_refuses_what_aws_would(agent: ModuleType, tamper: Any, reason: str) -> None:
    headers, body, path = tamper(agent)
    with pytest.raises(SignatureRefused, match=re.escape(reason)):
        _verify(headers, body, path)


def test_a_stale_signature_is_refused(agent: ModuleType) -> None:
    headers = agent.sigv4_headers(
        URL, b"{}", agent.Credentials(INSTANCE.access_key_id, INSTANCE.secret_access_key, INSTANCE.token),
        "eu-west-1", NOW - datetime.timedelta(minutes=6),
    )  # fmt: skip
    with pytest.raises(SignatureRefused, match="outside the 0:05:00 window"):
        _verify(headers, b"{}")


# --- when to renew -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("life_days", "left_days", "due"),
    [(7, 2, True), (7, 3, False), (3, 1, True), (3, 1.1, False), (365, 122, False), (365, 121, True)],
)
def test_renewal_is_due_with_a_third_of_the_life_left(
    agent: ModuleType, life_days: float, left_days: float, due: bool
) -> None:
    day = 86400.0
    installed = agent.Installed(0.0, life_days * day, frozenset(), frozenset())
    now = (life_days - left_days) * day
    assert (installed.remaining_share(now) <= agent.RENEW_AT_REMAINING_SHARE) is due
    assert installed.renews_at() == pytest.approx(life_days * day * 2 / 3)
