"""`render_shared_payload`: the shared mode's host software as a `HostPayload`, and the user data built from it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from components.host_bootstrap import (
    CERTIFICATE_PATH,
    GATE_PATH,
    PINS_PATH,
    PRIVATE_KEY_PATH,
    SERVER_BLOCK_PATH,
    SYNC_SCRIPT_PATH,
    TRUST_CA_PATH,
    HostParameters,
    render_pins,
    render_shared_payload,
    render_sync_script,
    render_user_data,
)
from components.nginx_config import render_server_block

REPO = Path(__file__).resolve().parent.parent
PARAMETERS = HostParameters("/pca-backend/dev/full-chain", "/pca-backend/dev/private-key", "/pca-backend/dev/ca-bundle")
FINGERPRINTS = [hashlib.sha256(b"subordinate").hexdigest(), hashlib.sha256(b"root").hexdigest()]
SERVER_BLOCK = render_server_block(
    server_names=["api.internal.example"], certificate_path=CERTIFICATE_PATH, private_key_path=PRIVATE_KEY_PATH
)
ARGUMENTS = {
    "region": "eu-west-1",
    "parameters": PARAMETERS,
    "server_block": SERVER_BLOCK,
    "trust_ca_script": (REPO / "scripts/trust-ca").read_text(),
    "tls_gate_script": (REPO / "scripts/tls-gate").read_text(),
    "sync_interval_minutes": 10,
    "metric_backend": "pca-backend-dev",
}
_HEREDOC = re.compile(r"^cat >(\S+) <<'(\w+)'\n(.*?\n)\2\nchmod (\d{4}) \1$", re.MULTILINE | re.DOTALL)


def test_the_shared_payload_holds_the_sync_and_what_it_calls() -> None:
    payload = render_shared_payload(**ARGUMENTS)  # type: ignore[arg-type]
    files = {file.path: file for file in payload.files}
    assert list(files) == [
        TRUST_CA_PATH, GATE_PATH, SYNC_SCRIPT_PATH, SERVER_BLOCK_PATH,
        "/etc/systemd/system/pca-backend-tls-sync.service", "/etc/systemd/system/pca-backend-tls-sync.timer",
    ]  # fmt: skip
    assert PINS_PATH not in files, "the pins come from the launch template, not from the payload"
    assert files[TRUST_CA_PATH].content == ARGUMENTS["trust_ca_script"]
    assert files[GATE_PATH].content == ARGUMENTS["tls_gate_script"]
    assert files[SYNC_SCRIPT_PATH].content == render_sync_script(
        region="eu-west-1", parameters=PARAMETERS, metric_backend="pca-backend-dev"
    )
    assert files[SYNC_SCRIPT_PATH].mode == "0700"
    assert "OnUnitActiveSec=10min" in files["/etc/systemd/system/pca-backend-tls-sync.timer"].content
    commands = "\n".join(payload.commands)
    assert commands.index("systemctl enable --now pca-backend-tls-sync.timer") < commands.index("dnf install")
    assert commands.index("dnf install") < commands.index("systemctl start --no-block pca-backend-tls-sync.service")


def test_the_user_data_writes_the_shared_payload_and_the_pins_then_runs_its_commands() -> None:
    payload = render_shared_payload(**ARGUMENTS)  # type: ignore[arg-type]
    user_data = render_user_data(**ARGUMENTS, ca_fingerprints=FINGERPRINTS)  # type: ignore[arg-type]
    written = {path: (mode, content) for path, _, content, mode in _HEREDOC.findall(user_data)}
    expected = {file.path: (file.mode, file.content) for file in payload.files}
    expected[PINS_PATH] = ("0644", render_pins(FINGERPRINTS))
    assert written == expected
    assert user_data.endswith("\n\n".join(payload.commands) + "\n")


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("region", "mars-1", "region must be an AWS region name"),
        ("server_block", " ", "server_block must be a non-empty string"),
        ("sync_interval_minutes", 0, "sync_interval_minutes must be an integer from 1"),
        ("tls_gate_script", "print('no shebang')", "tls_gate_script must be a script starting with '#!'"),
    ],
)
def test_bad_arguments_are_refused_by_name(argument: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        render_shared_payload(**{**ARGUMENTS, argument: value})  # type: ignore[arg-type]
