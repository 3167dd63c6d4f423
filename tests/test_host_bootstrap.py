"""Plain unit tests of the host user data (no Pulumi, no AWS)."""

from __future__ import annotations

import ast
import base64
import gzip
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from components.host_bootstrap import (
    BUNDLE_PATH,
    CERTIFICATE_PATH,
    PRIVATE_KEY_PATH,
    SERVER_BLOCK_PATH,
    SYNC_SCRIPT_PATH,
    TRUST_CA_PATH,
    USER_DATA_LIMIT_BYTES,
    HostParameters,
    render_sync_script,
    render_user_data,
)
from components.nginx_config import render_server_block

REPO_ROOT = Path(__file__).resolve().parent.parent
TRUST_CA = REPO_ROOT / "scripts" / "trust-ca"

PARAMETERS = HostParameters(
    full_chain="/pca-backend/dev/full-chain",
    private_key="/pca-backend/dev/private-key",
    ca_bundle="/pca-backend/dev/ca-bundle",
)
SYNC_KWARGS = {"metric_backend": "pca-backend-dev"}
SMALL_TRUST_CA = "#!/usr/bin/env python3\nprint('trust-ca stand-in')\n"


def _trust_ca_text() -> str:
    # Read lazily: scripts/trust-ca is written by another engineer and may not exist yet.
    if not TRUST_CA.exists():
        pytest.skip("scripts/trust-ca does not exist yet")
    return TRUST_CA.read_text(encoding="utf-8")


def _server_block() -> str:
    return render_server_block(
        server_names=["api.internal.example", "*.api.internal.example"],
        certificate_path=CERTIFICATE_PATH,
        private_key_path=PRIVATE_KEY_PATH,
    )


def _render(**overrides: object) -> str:
    kwargs: dict[str, object] = {
        "region": "eu-west-1",
        "parameters": PARAMETERS,
        "server_block": _server_block(),
        "trust_ca_script": SMALL_TRUST_CA,
    }
    kwargs.update(overrides)
    return render_user_data(**kwargs)  # type: ignore[arg-type]


def _without_comments(script: str) -> str:
    lines = script.splitlines()
    return "\n".join([lines[0], *(line for line in lines[1:] if not line.lstrip().startswith("#"))]) + "\n"


def _bash_syntax_ok(script: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(script)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"bash -n {name}: {result.stderr}"


def _heredoc_body(script: str, delimiter: str) -> str:
    match = re.search(rf"<<'{delimiter}'\n(.*?)\n{delimiter}\n", script, re.DOTALL)
    assert match, f"no heredoc {delimiter} in the script"
    return match.group(1) + "\n"


def test_user_data_with_real_trust_ca_fits_and_is_valid_bash(tmp_path: Path) -> None:
    trust_ca = _trust_ca_text()
    user_data = _render(trust_ca_script=trust_ca)

    assert user_data.startswith("#!/bin/bash\n")
    assert len(user_data.encode()) < USER_DATA_LIMIT_BYTES
    _bash_syntax_ok(user_data, tmp_path, "user-data.sh")
    assert "set -euo pipefail" in user_data


def test_compressed_trust_ca_decodes_to_the_script() -> None:
    trust_ca = _trust_ca_text()
    user_data = _render(trust_ca_script=trust_ca)
    if f"cat >{TRUST_CA_PATH} " in user_data:
        pytest.skip("trust-ca is small enough to be embedded uncompressed")

    packed = _heredoc_body(user_data, "PCA_BACKEND_TRUST_CA_EOF")
    embedded = gzip.decompress(base64.b64decode(packed)).decode()
    # Whole-line comments are left out of the embedded copy; the program is the same.
    assert ast.dump(ast.parse(embedded)) == ast.dump(ast.parse(trust_ca))
    assert embedded.splitlines()[0] == trust_ca.splitlines()[0]
    assert f"gunzip -c {TRUST_CA_PATH}.gz >{TRUST_CA_PATH}" in user_data
    # Deterministic: the same inputs give the same user data (no instance diff on the next `pulumi up`).
    assert _render(trust_ca_script=trust_ca) == user_data


def test_compressed_payload_extracts_with_real_tools(tmp_path: Path) -> None:
    """Runs the user data's own decode lines against a scratch directory."""
    trust_ca = _trust_ca_text()
    user_data = _render(trust_ca_script=trust_ca)
    if f"cat >{TRUST_CA_PATH} " in user_data:
        pytest.skip("trust-ca is small enough to be embedded uncompressed")
    target = tmp_path / "trust-ca"
    start = user_data.index(f"base64 -d >{TRUST_CA_PATH}.gz")
    end = user_data.index(f"chmod 0755 {TRUST_CA_PATH}\n", start) + len(f"chmod 0755 {TRUST_CA_PATH}\n")
    snippet = "set -euo pipefail\n" + user_data[start:end].replace(TRUST_CA_PATH, str(target))
    subprocess.run(["bash", "-c", snippet], check=True)
    assert ast.dump(ast.parse(target.read_text())) == ast.dump(ast.parse(trust_ca))
    assert target.stat().st_mode & 0o777 == 0o755


def test_small_trust_ca_is_embedded_verbatim(tmp_path: Path) -> None:
    user_data = _render()
    assert _heredoc_body(user_data, "PCA_BACKEND_TRUST_CA_EOF") == SMALL_TRUST_CA
    _bash_syntax_ok(user_data, tmp_path, "user-data.sh")


def test_user_data_installs_every_piece() -> None:
    user_data = _render()
    block = _server_block()
    assert "dnf install -y nginx openssl" in user_data
    assert _heredoc_body(user_data, "PCA_BACKEND_NGINX_EOF") == block
    assert f"cat >{SERVER_BLOCK_PATH} " in user_data
    assert f"cat >{SYNC_SCRIPT_PATH} " in user_data
    assert f"chmod 0700 {SYNC_SCRIPT_PATH}" in user_data
    assert "OnUnitActiveSec=15min" in user_data
    assert "systemctl enable --now pca-backend-tls-sync.timer" in user_data
    # The first sync runs before nginx is started, so nginx starts with the certificate in place.
    first_sync = user_data.index("systemctl start pca-backend-tls-sync.service")
    assert first_sync < user_data.index("systemctl enable --now nginx.service")
    assert "logger -t pca-backend-bootstrap" in user_data


def test_sync_interval_reaches_the_timer() -> None:
    assert "OnUnitActiveSec=5min" in _render(sync_interval_minutes=5)


def test_parameter_names_and_region_are_present() -> None:
    user_data = _render()
    for name in (PARAMETERS.full_chain, PARAMETERS.private_key, PARAMETERS.ca_bundle):
        assert name in user_data
    assert "readonly REGION=eu-west-1" in user_data


def test_no_key_material_or_certificate_in_user_data() -> None:
    user_data = _render(trust_ca_script=TRUST_CA.read_text() if TRUST_CA.exists() else SMALL_TRUST_CA)
    assert "PRIVATE KEY-----" not in user_data
    assert "-----BEGIN CERTIFICATE-----\n" not in user_data
    assert not re.search(r"^MII[A-Za-z0-9+/]{20,}", user_data, re.MULTILINE), "DER/PEM body in user data"


def test_sync_script_is_valid_bash(tmp_path: Path) -> None:
    sync = render_sync_script(region="us-gov-west-1", parameters=PARAMETERS, metric_backend="/pca-backend/dev")
    _bash_syntax_ok(sync, tmp_path, "sync.sh")
    # The user data embeds exactly this script (plain, or compressed when the real trust-ca is embedded too).
    assert _heredoc_body(_render(region="us-gov-west-1"), "PCA_BACKEND_SYNC_EOF") == sync
    full = _render(region="us-gov-west-1", trust_ca_script=_trust_ca_text())
    parts = re.findall(r"<<'PCA_BACKEND_SYNC_EOF'\n(.*?)\nPCA_BACKEND_SYNC_EOF\n", full, re.DOTALL)
    if len(parts) == 2:  # plain settings, then the rest compressed
        parts[1] = gzip.decompress(base64.b64decode(parts[1])).decode().removesuffix("\n")
    assert _without_comments("\n".join(parts) + "\n") == _without_comments(sync)
    assert "readonly REGION=us-gov-west-1" in full, "the settings stay readable"


def test_partly_compressed_sync_script_extracts_with_real_tools(tmp_path: Path) -> None:
    user_data = _render(trust_ca_script=_trust_ca_text())
    if f"gunzip -c {SYNC_SCRIPT_PATH}.gz >>{SYNC_SCRIPT_PATH}" not in user_data:
        pytest.skip("the sync script is embedded uncompressed")
    target = tmp_path / "sync"
    start = user_data.index(f"cat >{SYNC_SCRIPT_PATH} <<")
    end = user_data.index(f"chmod 0700 {SYNC_SCRIPT_PATH}\n", start) + len(f"chmod 0700 {SYNC_SCRIPT_PATH}\n")
    snippet = "set -euo pipefail\n" + user_data[start:end].replace(SYNC_SCRIPT_PATH, str(target))
    subprocess.run(["bash", "-c", snippet], check=True)
    assert _without_comments(target.read_text()) == _without_comments(
        render_sync_script(region="eu-west-1", parameters=PARAMETERS, metric_backend="/pca-backend/dev")
    )


def test_sync_script_installs_atomically_and_checks_nginx() -> None:
    sync = render_sync_script(region="eu-west-1", parameters=PARAMETERS, **SYNC_KWARGS)
    assert "umask 077" in sync
    assert sync.count("aws ssm get-parameters ") == 1, "the three parameters in one call"
    assert "aws ssm get-parameter " not in sync
    assert "--with-decryption" in sync
    for path in (CERTIFICATE_PATH, PRIVATE_KEY_PATH, BUNDLE_PATH):
        assert path in sync
    assert 'mv -f -- "$new_key" "$KEY"' in sync
    assert "mktemp /etc/pki/nginx/private/" in sync, "the key is staged in its own directory (atomic mv)"
    assert 'chmod 0600 "$new_key"' in sync
    # nginx -t guards the reload; a failure restores the previous files.
    assert sync.index("nginx -t") < sync.index("systemctl reload nginx")
    assert "previous files restored" in sync
    assert "readonly TRUST_CA=/usr/local/sbin/trust-ca" in sync
    assert '"$TRUST_CA" --name pca-backend --os rhel "$BUNDLE"' in sync
    # The gate runs before anything is moved into place.
    assert sync.index('check_material "$new_cert" "$new_key" "$new_bundle"') < sync.index('mv -f -- "$new_cert"')


def test_sync_script_reports_days_to_expiry_with_timeouts() -> None:
    sync = render_sync_script(region="eu-west-1", parameters=PARAMETERS, metric_backend="orders backend")
    assert "aws cloudwatch put-metric-data" in sync
    assert "--namespace PcaBackend" in sync
    assert '"MetricName":"CertificateDaysToExpiry"' in sync
    assert '"Unit":"None"' in sync
    assert """readonly METRIC_DIMENSIONS='[{"Name":"Backend","Value":"orders backend"}]'""" in sync
    assert "readonly AWS_TIMEOUTS=(--cli-connect-timeout 10 --cli-read-timeout 30)" in sync
    assert sync.count('"${AWS_TIMEOUTS[@]}"') == 2, "both AWS CLI calls are bounded"
    # Reported from the EXIT trap: after every run, also a refused one.
    assert "trap finish EXIT" in sync
    assert sync.index("report_days_to_expiry()") < sync.index("trap finish EXIT")


def test_metric_backend_defaults_to_the_parameter_path() -> None:
    assert """[{"Name":"Backend","Value":"/pca-backend/dev"}]""" in _render()
    assert """[{"Name":"Backend","Value":"orders"}]""" in _render(metric_backend="orders")


def test_boot_retries_packages_and_the_unit_has_a_start_timeout() -> None:
    user_data = _render()
    assert "until dnf install -y nginx openssl; do" in user_data
    assert "sleep $((attempt < 6 ? attempt * 10 : 60))" in user_data
    # The timer (whose sync installs missing packages) is enabled before the package install can stall.
    assert user_data.index("systemctl enable --now pca-backend-tls-sync.timer") < user_data.index("until dnf")
    assert "TimeoutStartSec=10min" in user_data
    sync = render_sync_script(region="eu-west-1", parameters=PARAMETERS, **SYNC_KWARGS)
    assert "dnf install -y nginx openssl" in sync


def test_boot_package_retries_run_until_the_repositories_answer(tmp_path: Path) -> None:
    """The user data's own retry loop, with a dnf that fails three times (no route yet), then works."""
    user_data = _render()
    loop = user_data[user_data.index("attempt=1\n") : user_data.index("done\n", user_data.index("until dnf")) + 5]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dnf").write_text(
        '#!/bin/bash\nn=$(($(cat "$COUNT" 2>/dev/null || echo 0) + 1)); echo $n >"$COUNT"; [ $n -gt 3 ]\n'
    )
    (bin_dir / "sleep").write_text('#!/bin/bash\necho "sleep $1" >>"$SLEEPS"\n')
    for tool in ("dnf", "sleep"):
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "COUNT": str(tmp_path / "count"), "SLEEPS": str(tmp_path / "sleeps")}
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + loop], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "count").read_text().strip() == "4"
    assert (tmp_path / "sleeps").read_text().split("\n")[:3] == ["sleep 10", "sleep 20", "sleep 30"]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck(tmp_path: Path) -> None:
    for name, script in (
        ("user-data.sh", _render()),
        ("sync.sh", render_sync_script(region="eu-west-1", parameters=PARAMETERS, **SYNC_KWARGS)),
    ):
        path = tmp_path / name
        path.write_text(script)
        result = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("overrides", "argument"),
    [
        ({"region": "EU-WEST-1"}, "region"),
        ({"region": "eu-west-1; rm -rf /"}, "region"),
        ({"parameters": {"full_chain": "/a"}}, "parameters"),
        ({"parameters": HostParameters("/a b", "/b", "/c")}, "parameters.full_chain"),
        ({"parameters": HostParameters("/a", "b", "/c")}, "parameters.private_key"),
        ({"parameters": HostParameters("/a", "/b", "/aws/c")}, "parameters.ca_bundle"),
        ({"parameters": HostParameters("/a", "/a", "/c")}, "different"),
        ({"parameters": HostParameters("/a", "/b", "/c'$(id)'")}, "parameters.ca_bundle"),
        ({"server_block": ""}, "server_block"),
        ({"server_block": "server {}\nPCA_BACKEND_NGINX_EOF\n"}, "server_block"),
        ({"server_block": "-----BEGIN PRIVATE KEY-----\nabc\n"}, "server_block"),
        ({"trust_ca_script": "print('no shebang')\n"}, "trust_ca_script"),
        ({"trust_ca_script": 42}, "trust_ca_script"),
        ({"sync_interval_minutes": 0}, "sync_interval_minutes"),
        ({"sync_interval_minutes": True}, "sync_interval_minutes"),
        ({"sync_interval_minutes": "15"}, "sync_interval_minutes"),
        ({"metric_backend": ""}, "metric_backend"),
        ({"metric_backend": "   "}, "metric_backend"),
        ({"metric_backend": "caf\u00e9"}, "metric_backend"),
        ({"metric_backend": "a\nb"}, "metric_backend"),
        ({"metric_backend": 7}, "metric_backend"),
    ],
)
def test_invalid_inputs_name_the_argument(overrides: dict[str, object], argument: str) -> None:
    with pytest.raises(ValueError, match=re.escape(argument)):
        _render(**overrides)


def test_many_server_names_still_fit_with_the_server_block_compressed(tmp_path: Path) -> None:
    names = [f"service-{index}.internal.example" for index in range(40)]
    block = render_server_block(
        server_names=names, certificate_path=CERTIFICATE_PATH, private_key_path=PRIVATE_KEY_PATH
    )
    user_data = _render(server_block=block, trust_ca_script=_trust_ca_text())
    assert len(user_data.encode()) <= USER_DATA_LIMIT_BYTES
    assert f"gunzip -c {SERVER_BLOCK_PATH}.gz >{SERVER_BLOCK_PATH}" in user_data
    target = tmp_path / "pca-backend.conf"
    start = user_data.index(f"base64 -d >{SERVER_BLOCK_PATH}.gz")
    end = user_data.index(f"chmod 0644 {SERVER_BLOCK_PATH}\n", start) + len(f"chmod 0644 {SERVER_BLOCK_PATH}\n")
    subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + user_data[start:end].replace(SERVER_BLOCK_PATH, str(target))], check=True
    )
    assert target.read_text() == _without_comments(block), "the same block, minus its comment lines"


def test_oversized_input_is_refused() -> None:
    # Lines that neither compress well nor are comments (which the compressed copy leaves out).
    padding = "".join(f"    set $pad{i} {hashlib.sha256(str(i).encode()).hexdigest()};\n" for i in range(400))
    huge_block = "server {\n" + padding + "}\n"
    with pytest.raises(ValueError, match="16384"):
        _render(server_block=huge_block)
