"""Plain unit tests of the host user data (no Pulumi, no AWS)."""

from __future__ import annotations

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
    FIRST_SYNC_RETRY_SECONDS,
    GATE_PATH,
    PINS_PATH,
    PRIVATE_KEY_PATH,
    SERVER_BLOCK_PATH,
    SYNC_EXIT_NO_CERTIFICATE,
    SYNC_EXIT_SERVING_PREVIOUS,
    SYNC_SCRIPT_PATH,
    TRUST_CA_PATH,
    USER_DATA_LIMIT_BYTES,
    HostParameters,
    ec2_private_dns_domain,
    pack_user_data,
    render_pins,
    render_sync_script,
    render_user_data,
)
from components.nginx_config import render_server_block
from components.settings import ec2_private_dns_wildcard

REPO_ROOT = Path(__file__).resolve().parent.parent
TRUST_CA = REPO_ROOT / "scripts" / "trust-ca"
TLS_GATE = REPO_ROOT / "scripts" / "tls-gate"

PARAMETERS = HostParameters(
    full_chain="/pca-backend/dev/full-chain",
    private_key="/pca-backend/dev/private-key",
    ca_bundle="/pca-backend/dev/ca-bundle",
)
SYNC_KWARGS = {"metric_backend": "pca-backend-dev"}
SMALL_TRUST_CA = "#!/usr/bin/env python3\nprint('trust-ca stand-in')\n"
SMALL_TLS_GATE = "#!/usr/bin/env python3\nprint('tls-gate stand-in')\n"
#: SHA-256 fingerprints as x509.sha256_fingerprints gives them (two CAs: a subordinate and its root).
FINGERPRINTS = [hashlib.sha256(b"subordinate").hexdigest(), hashlib.sha256(b"root").hexdigest()]
#: The fixed gzip header pack_user_data writes: magic, deflate, no flags, MTIME 0, XFL 2, OS 255 (unknown).
FIXED_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"


def _server_block(names: list[str] | None = None) -> str:
    return render_server_block(
        server_names=names or ["api.internal.example", "*.api.internal.example"],
        certificate_path=CERTIFICATE_PATH,
        private_key_path=PRIVATE_KEY_PATH,
    )


def _render(**overrides: object) -> str:
    kwargs: dict[str, object] = {
        "region": "eu-west-1",
        "parameters": PARAMETERS,
        "server_block": _server_block(),
        "trust_ca_script": SMALL_TRUST_CA,
        "tls_gate_script": SMALL_TLS_GATE,
        "ca_fingerprints": FINGERPRINTS,
    }
    kwargs.update(overrides)
    return render_user_data(**kwargs)  # type: ignore[arg-type]


def _render_real(**overrides: object) -> str:
    """The user data with the repository's own trust-ca and tls-gate, as the component renders it."""
    scripts = {"trust_ca_script": TRUST_CA.read_text(), "tls_gate_script": TLS_GATE.read_text()}
    return _render(**{**scripts, **overrides})


def _unpack(packed: str) -> bytes:
    return gzip.decompress(base64.b64decode(packed, validate=True))


def _bash_syntax_ok(script: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(script)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"bash -n {name}: {result.stderr}"


def _heredoc_body(script: str, delimiter: str) -> str:
    match = re.search(rf"<<'{delimiter}'\n(.*?)\n{delimiter}\n", script, re.DOTALL)
    assert match, f"no heredoc {delimiter} in the script"
    return match.group(1) + "\n"


def test_user_data_with_the_real_scripts_is_valid_bash_and_packs_within_the_limit(tmp_path: Path) -> None:
    user_data = _render_real()

    assert user_data.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in user_data
    _bash_syntax_ok(user_data, tmp_path, "user-data.sh")
    packed = base64.b64decode(pack_user_data(user_data))
    assert len(packed) <= USER_DATA_LIMIT_BYTES, f"{len(packed)} bytes gzip-compressed"


def test_every_file_is_embedded_verbatim_comments_included() -> None:
    sync = render_sync_script(region="eu-west-1", parameters=PARAMETERS, metric_backend="/pca-backend/dev")
    user_data = _render_real()

    embedded = {
        "PCA_BACKEND_TRUST_CA_EOF": TRUST_CA.read_text(),
        "PCA_BACKEND_TLS_GATE_EOF": TLS_GATE.read_text(),
        "PCA_BACKEND_PINS_EOF": render_pins(FINGERPRINTS),
        "PCA_BACKEND_SYNC_EOF": sync,
        "PCA_BACKEND_NGINX_EOF": _server_block(),
    }
    for delimiter, content in embedded.items():
        assert _heredoc_body(user_data, delimiter) == content, delimiter
        comments = [line for line in content.splitlines()[1:] if line.lstrip().startswith("#")]
        assert comments, f"{delimiter}: the check needs a file with comment lines"
        assert all(f"\n{line}\n" in user_data for line in comments), f"{delimiter}: a comment line was left out"
    assert "base64 -d" not in user_data, "no piece is compressed on its own"
    assert "gunzip" not in user_data, "no piece is compressed on its own"


def test_the_boot_script_writes_each_file_byte_for_byte(tmp_path: Path) -> None:
    """Runs the user data's own file-writing lines, under a scratch root instead of /."""
    user_data = _render_real()
    root = tmp_path / "root"

    def rooted(text: str) -> str:
        return text.replace("/usr/local/", f"{root}/usr/local/").replace("/etc/", f"{root}/etc/")

    start = user_data.index("install -d -m 0755 /usr/local/sbin")
    writes = user_data[start : user_data.index("systemctl daemon-reload")]
    (root / "etc/systemd/system").mkdir(parents=True)  # part of the AMI
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + rooted(writes)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr

    sync = render_sync_script(region="eu-west-1", parameters=PARAMETERS, metric_backend="/pca-backend/dev")
    expected = {
        TRUST_CA_PATH: (TRUST_CA.read_text(), 0o755),
        GATE_PATH: (TLS_GATE.read_text(), 0o755),
        PINS_PATH: (render_pins(FINGERPRINTS), 0o644),
        SYNC_SCRIPT_PATH: (sync, 0o700),
        SERVER_BLOCK_PATH: (_server_block(), 0o644),
    }
    for path, (content, mode) in expected.items():
        written = Path(rooted(path))
        assert written.read_text() == rooted(content), path
        assert written.stat().st_mode & 0o777 == mode, path
    # The pins' directory is root's alone to change (the boot script runs as root; 0755, like /usr/local/sbin).
    assert Path(rooted(PINS_PATH)).parent.stat().st_mode & 0o777 == 0o755
    assert GATE_PATH == "/usr/local/sbin/pca-backend-tls-gate", "the path the per-host agent calls too"


def test_packing_is_deterministic() -> None:
    first, second = _render_real(), _render_real()
    assert pack_user_data(first) == pack_user_data(second) == pack_user_data(first)
    # No clock and no build platform in the bytes: zlib's own gzip header carries the OS it was built for.
    assert base64.b64decode(pack_user_data(first))[:10] == FIXED_GZIP_HEADER


def test_packed_user_data_unpacks_to_the_exact_script(tmp_path: Path) -> None:
    user_data = _render_real()
    packed = pack_user_data(user_data)

    assert _unpack(packed).decode() == user_data
    # The gzip tool agrees (cloud-init decompresses with Python's gzip module, checked above).
    archive = tmp_path / "user-data.gz"
    archive.write_bytes(base64.b64decode(packed))
    result = subprocess.run(["gzip", "-dc", str(archive)], capture_output=True, check=True)
    assert result.stdout == user_data.encode()


def test_the_limit_applies_to_the_packed_form() -> None:
    # Over 16 KB as plain text (forty names, both scripts), yet accepted: EC2 counts the gzipped bytes.
    names = [f"service-{index}.internal.example" for index in range(40)]
    user_data = _render_real(server_block=_server_block(names))
    assert len(user_data.encode()) > USER_DATA_LIMIT_BYTES
    assert len(base64.b64decode(pack_user_data(user_data))) <= USER_DATA_LIMIT_BYTES


def test_what_does_not_fit_once_packed_is_refused_with_the_limit_named() -> None:
    # Hashes do not compress: about 22 KB of them stay over the limit once gzipped.
    padding = "".join(f"    set $pad{i} {hashlib.sha512(str(i).encode()).hexdigest()};\n" for i in range(300))
    huge_block = "server {\n" + padding + "}\n"
    with pytest.raises(ValueError, match=r"gzip-compressed, over EC2's limit of 16384: shorten server_block"):
        _render(server_block=huge_block)
    with pytest.raises(ValueError, match=r"16384 bytes \(counted before base64\)"):
        pack_user_data("#!/bin/bash\n" + padding)


def test_pack_user_data_takes_the_script_text() -> None:
    with pytest.raises(ValueError, match="script"):
        pack_user_data(base64.b64encode(b"#!/bin/bash\n").decode())


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
    # nginx is enabled, not started: the first sync starts it once the certificate is in place, and retries
    # every FIRST_SYNC_RETRY_SECONDS until then (the boot script does not wait for that).
    first_sync = user_data.index("systemctl start --no-block pca-backend-tls-sync.service")
    assert user_data.index("systemctl enable nginx.service") < first_sync
    boot = user_data[user_data.index("systemctl daemon-reload") :]  # after the embedded files
    assert "systemctl enable --now nginx" not in boot
    assert "systemctl start nginx" not in boot
    assert "logger -t pca-backend-bootstrap" in user_data


def test_sync_interval_reaches_the_timer() -> None:
    assert "OnUnitActiveSec=5min" in _render(sync_interval_minutes=5)


def test_parameter_names_and_region_are_present() -> None:
    user_data = _render()
    for name in (PARAMETERS.full_chain, PARAMETERS.private_key, PARAMETERS.ca_bundle):
        assert name in user_data
    assert "readonly REGION=eu-west-1" in user_data


def test_no_key_material_or_certificate_in_user_data() -> None:
    user_data = _render_real()
    assert "PRIVATE KEY-----" not in user_data
    assert "-----BEGIN CERTIFICATE-----\n" not in user_data
    assert not re.search(r"^MII[A-Za-z0-9+/]{20,}", user_data, re.MULTILINE), "DER/PEM body in user data"


def test_sync_script_is_valid_bash(tmp_path: Path) -> None:
    sync = render_sync_script(region="us-gov-west-1", parameters=PARAMETERS, metric_backend="/pca-backend/dev")
    _bash_syntax_ok(sync, tmp_path, "sync.sh")
    assert _heredoc_body(_render_real(region="us-gov-west-1"), "PCA_BACKEND_SYNC_EOF") == sync


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
    assert f"readonly GATE={GATE_PATH}" in sync
    assert f"readonly PINS={PINS_PATH}" in sync
    # trust-ca checks the pins again before the bundle reaches the trust store.
    assert '"$TRUST_CA" --name pca-backend --os rhel --pins "$PINS" "$BUNDLE"' in sync
    # The gate, with the contract the per-host agent uses too, runs before anything is moved into place.
    gate = '"$GATE" --certificate "$new_cert" --key "$new_key" --bundle "$new_bundle" --pins "$PINS" \\\n'
    assert gate in sync
    assert sync.index(gate) < sync.index('mv -f -- "$new_cert"')


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
        ({"tls_gate_script": "print('no shebang')\n"}, "tls_gate_script"),
        ({"tls_gate_script": "#!/bin/sh\nPCA_BACKEND_TLS_GATE_EOF\n"}, "tls_gate_script"),
        ({"tls_gate_script": ""}, "tls_gate_script"),
        ({"ca_fingerprints": []}, "ca_fingerprints"),
        ({"ca_fingerprints": FINGERPRINTS[0]}, "ca_fingerprints"),
        ({"ca_fingerprints": [FINGERPRINTS[0].upper()]}, "ca_fingerprints"),
        ({"ca_fingerprints": [":".join(FINGERPRINTS[0][i : i + 2] for i in range(0, 64, 2))]}, "ca_fingerprints"),
        ({"ca_fingerprints": [FINGERPRINTS[0][:40]]}, "ca_fingerprints"),
        ({"ca_fingerprints": [None]}, "ca_fingerprints"),
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


def _units(tmp_path: Path, user_data: str) -> tuple[Path, Path]:
    """The rendered service and timer, as files systemd can read (ExecStart pointed at /bin/true)."""
    service = _heredoc_body(user_data, "PCA_BACKEND_UNIT_EOF")
    timer_start = user_data.index("<<'PCA_BACKEND_UNIT_EOF'", user_data.index("pca-backend-tls-sync.timer <<"))
    timer = _heredoc_body(user_data[timer_start:], "PCA_BACKEND_UNIT_EOF")
    assert "[Timer]" in timer
    assert "[Service]" in service
    paths = (tmp_path / "pca-backend-tls-sync.service", tmp_path / "pca-backend-tls-sync.timer")
    paths[0].write_text(service.replace(f"ExecStart={SYNC_SCRIPT_PATH}", "ExecStart=/bin/true"))
    paths[1].write_text(timer)
    return paths


def test_the_first_sync_retries_within_the_health_check_grace_period(tmp_path: Path) -> None:
    """Restart=on-failure retries a sync that exits 75 (no certificate yet), not one that exits 1 (one served)."""
    from components.encrypted_backend import HEALTH_CHECK_GRACE_SECONDS

    service, _ = _units(tmp_path, _render())
    settings = dict(
        line.split("=", 1) for line in service.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    assert settings["Type"] == "oneshot"
    assert settings["Restart"] == "on-failure"
    assert settings["RestartPreventExitStatus"] == str(SYNC_EXIT_SERVING_PREVIOUS) == "1"
    assert settings["RestartSec"] == str(FIRST_SYNC_RETRY_SECONDS)
    assert SYNC_EXIT_NO_CERTIFICATE not in (0, SYNC_EXIT_SERVING_PREVIOUS)
    # One attempt is at most the fetch's five tries (3+6+9+12+15 s of back-off) and the gate: several fit.
    attempt = FIRST_SYNC_RETRY_SECONDS + sum(3 * n for n in range(1, 6))
    assert 3 * attempt <= HEALTH_CHECK_GRACE_SECONDS, "at least three attempts inside the grace period"
    # The timer still runs every interval once a certificate is served.
    assert "OnUnitActiveSec=15min" in (tmp_path / "pca-backend-tls-sync.timer").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """systemd 252 (Amazon Linux 2023's) loads both units; it refuses what it does not allow for oneshot services."""
    service, timer = _units(tmp_path, _render())
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(service), str(timer)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The same check refuses a oneshot unit with RestartForceExitStatus= (the obvious but refused alternative).
    service.write_text(service.read_text() + f"RestartForceExitStatus={SYNC_EXIT_NO_CERTIFICATE}\n")
    refused = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(service)], capture_output=True, text=True, check=False
    )
    assert refused.returncode != 0
    assert "RestartForceExitStatus" in refused.stdout + refused.stderr


def test_pins_are_sorted_and_the_user_data_does_not_depend_on_the_bundle_order() -> None:
    pins = render_pins([FINGERPRINTS[1], FINGERPRINTS[0], FINGERPRINTS[1]])
    assert [line for line in pins.splitlines() if not line.startswith("#")] == sorted(FINGERPRINTS)
    assert _render(ca_fingerprints=FINGERPRINTS) == _render(ca_fingerprints=FINGERPRINTS[::-1])
    assert _render(ca_fingerprints=FINGERPRINTS) != _render(ca_fingerprints=FINGERPRINTS[:1]), "a new CA rolls hosts"


@pytest.mark.parametrize(
    ("region", "domain"),
    [
        ("us-east-1", "ec2.internal"),
        ("eu-west-1", "eu-west-1.compute.internal"),
        ("us-gov-west-1", "us-gov-west-1.compute.internal"),
    ],
)
def test_the_host_name_is_the_ec2_name_the_certificate_covers(region: str, domain: str) -> None:
    assert ec2_private_dns_domain(region) == domain
    assert ec2_private_dns_wildcard(region) == f"*.{domain}", "the certificate's EC2 wildcard"
    sync = render_sync_script(region=region, parameters=PARAMETERS, **SYNC_KWARGS)
    assert f"readonly EC2_DNS_DOMAIN={domain}" in sync
    # Derived from local-ipv4: local-hostname follows a custom DHCP options domain name.
    assert "latest/meta-data/local-ipv4" in sync
    assert "meta-data/local-hostname" not in sync
    with pytest.raises(ValueError, match="region"):
        ec2_private_dns_domain("us-east-1; id")
