"""Plain unit tests of what hosts run (no Pulumi, no AWS): the shared mode's payload, the install script any payload
becomes, and the bootstrap the launch template carries. tests/test_host_bootstrap_run.py runs the bootstrap."""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from components.host_bootstrap import (
    BUNDLE_PATH,
    CERTIFICATE_PATH,
    FIRST_SYNC_RETRY_SECONDS,
    GATE_PATH,
    PAYLOAD_KEY_PREFIX,
    PINS_PATH,
    PRIVATE_KEY_PATH,
    SERVER_BLOCK_PATH,
    SYNC_EXIT_NO_CERTIFICATE,
    SYNC_EXIT_SERVING_PREVIOUS,
    SYNC_SCRIPT_PATH,
    TRUST_CA_PATH,
    USER_DATA_LIMIT_BYTES,
    VERIFY_TLS_PATH,
    HostParameters,
    check_bootstrap,
    ec2_private_dns_domain,
    pack_payload,
    pack_user_data,
    render_bootstrap,
    render_install_script,
    render_pins,
    render_shared_payload,
    render_sync_script,
)
from components.host_payload import HostFile, HostPayload
from components.nginx_config import render_server_block
from components.settings import ec2_private_dns_wildcard
from components.x509 import generate_private_key, private_key_pem

REPO_ROOT = Path(__file__).resolve().parent.parent
TRUST_CA = REPO_ROOT / "scripts" / "trust-ca"
TLS_GATE = REPO_ROOT / "scripts" / "tls-gate"
VERIFY_TLS = REPO_ROOT / "scripts" / "verify-tls"

PARAMETERS = HostParameters(
    full_chain="/pca-backend/dev/full-chain",
    private_key="/pca-backend/dev/private-key",
    ca_bundle="/pca-backend/dev/ca-bundle",
)
SYNC_KWARGS = {"metric_backend": "pca-backend-dev"}
SERVICE_PATH = "/etc/systemd/system/pca-backend-tls-sync.service"
TIMER_PATH = "/etc/systemd/system/pca-backend-tls-sync.timer"
#: SHA-256 fingerprints as x509.sha256_fingerprints gives them (two CAs: a subordinate and its root).
FINGERPRINTS = [hashlib.sha256(b"subordinate").hexdigest(), hashlib.sha256(b"root").hexdigest()]
BUCKET = "backend-host-payloads-0a1b2c3"
#: Key material, made per run: a text that holds it is refused.
KEY_PEM = private_key_pem(generate_private_key("EC_prime256v1"))


def _server_block(names: list[str] | None = None) -> str:
    return render_server_block(
        server_names=names or ["api.internal.example", "*.api.internal.example"],
        certificate_path=CERTIFICATE_PATH,
        private_key_path=PRIVATE_KEY_PATH,
    )


def _payload(**overrides: object) -> HostPayload:
    """The shared mode's payload with the repository's own scripts, as the SSM delivery renders it."""
    kwargs: dict[str, object] = {
        "region": "eu-west-1",
        "parameters": PARAMETERS,
        "server_block": _server_block(),
        "trust_ca_script": TRUST_CA.read_text(),
        "tls_gate_script": TLS_GATE.read_text(),
        "verify_tls_script": VERIFY_TLS.read_text(),
    }
    kwargs.update(overrides)
    return render_shared_payload(**kwargs)  # type: ignore[arg-type]


def _files(payload: HostPayload) -> dict[str, HostFile]:
    return {file.path: file for file in payload.files}


def _bootstrap(**overrides: object) -> str:
    packed = pack_payload(_payload())
    kwargs: dict[str, object] = {
        "region": "eu-west-1",
        "bucket": BUCKET,
        "key": packed.key,
        "sha256": packed.sha256,
        "ca_fingerprints": FINGERPRINTS,
    }
    kwargs.update(overrides)
    return render_bootstrap(**kwargs)  # type: ignore[arg-type]


def _bash_syntax_ok(script: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(script)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"bash -n {name}: {result.stderr}"


def _heredoc_body(script: str, delimiter: str) -> str:
    match = re.search(rf"<<'{delimiter}'\n(.*?)\n{delimiter}\n", script, re.DOTALL)
    assert match, f"no heredoc {delimiter} in the script"
    return match.group(1) + "\n"


def _rooted(payload: HostPayload, root: Path, commands: tuple[str, ...] = ()) -> HostPayload:
    """`payload`'s files under `root` instead of /, with `commands` instead of its own."""
    return HostPayload(
        files=tuple(HostFile(f"{root}{file.path}", file.mode, file.content) for file in payload.files),
        commands=commands,
    )


def _run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "install.sh"
    path.write_text(script)
    return subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=60, check=False)


# --- the shared mode's payload ---------------------------------------------------------------------------------


def test_the_shared_payload_holds_the_sync_what_it_calls_and_verify_tls() -> None:
    files = _files(_payload(sync_interval_minutes=10, metric_backend="pca-backend-dev"))

    assert list(files) == [
        TRUST_CA_PATH, GATE_PATH, VERIFY_TLS_PATH, SYNC_SCRIPT_PATH, SERVER_BLOCK_PATH, SERVICE_PATH, TIMER_PATH,
    ]  # fmt: skip
    assert PINS_PATH not in files, "the pins come from the launch template (the bootstrap), not from the payload"
    assert files[TRUST_CA_PATH].content == TRUST_CA.read_text()
    assert files[GATE_PATH].content == TLS_GATE.read_text()
    # Back on the hosts: the payload has no size limit.
    assert files[VERIFY_TLS_PATH].content == VERIFY_TLS.read_text()
    assert files[SYNC_SCRIPT_PATH].content == render_sync_script(
        region="eu-west-1", parameters=PARAMETERS, metric_backend="pca-backend-dev"
    )
    assert files[SERVER_BLOCK_PATH].content == _server_block()
    modes = {path: file.mode for path, file in files.items()}
    assert modes == {
        TRUST_CA_PATH: "0755", GATE_PATH: "0755", VERIFY_TLS_PATH: "0755", SYNC_SCRIPT_PATH: "0700",
        SERVER_BLOCK_PATH: "0644", SERVICE_PATH: "0644", TIMER_PATH: "0644",
    }  # fmt: skip
    assert "OnUnitActiveSec=10min" in files[TIMER_PATH].content
    assert GATE_PATH == "/usr/local/sbin/pca-backend-tls-gate", "the path the per-host agent calls too"


def test_the_shared_payload_starts_the_timer_then_installs_packages_then_the_first_sync() -> None:
    commands = "\n".join(_payload().commands)
    assert commands.index("systemctl daemon-reload") < commands.index(
        "systemctl enable --now pca-backend-tls-sync.timer"
    )
    # The timer (whose sync installs missing packages) is enabled before the package install can stall.
    assert commands.index("systemctl enable --now pca-backend-tls-sync.timer") < commands.index("until dnf")
    # nginx is enabled, not started: the first sync starts it once the certificate is in place, and retries
    # every FIRST_SYNC_RETRY_SECONDS until then (the payload does not wait for that).
    first_sync = commands.index("systemctl start --no-block pca-backend-tls-sync.service")
    assert commands.index("until dnf install -y nginx openssl; do") < commands.index("systemctl enable nginx.service")
    assert commands.index("systemctl enable nginx.service") < first_sync
    assert "systemctl enable --now nginx" not in commands
    assert "systemctl start nginx" not in commands


def test_parameter_names_and_region_reach_the_sync_never_key_material() -> None:
    payload = _payload()
    script = render_install_script(payload)
    for name in (PARAMETERS.full_chain, PARAMETERS.private_key, PARAMETERS.ca_bundle):
        assert name in _files(payload)[SYNC_SCRIPT_PATH].content
    assert "readonly REGION=eu-west-1" in script
    assert "PRIVATE KEY-----" not in script
    assert "-----BEGIN CERTIFICATE-----\n" not in script
    assert not re.search(r"^MII[A-Za-z0-9+/]{20,}", script, re.MULTILINE), "DER/PEM body in the payload"


def test_sync_interval_reaches_the_timer() -> None:
    assert "OnUnitActiveSec=5min" in _files(_payload(sync_interval_minutes=5))[TIMER_PATH].content


def test_metric_backend_defaults_to_the_parameter_path() -> None:
    def sync(**overrides: object) -> str:
        return _files(_payload(**overrides))[SYNC_SCRIPT_PATH].content

    assert """[{"Name":"Backend","Value":"/pca-backend/dev"}]""" in sync()
    assert """[{"Name":"Backend","Value":"orders"}]""" in sync(metric_backend="orders")


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
        ({"server_block": KEY_PEM}, "server_block"),
        ({"trust_ca_script": "print('no shebang')\n"}, "trust_ca_script"),
        ({"trust_ca_script": 42}, "trust_ca_script"),
        ({"tls_gate_script": "print('no shebang')\n"}, "tls_gate_script"),
        ({"tls_gate_script": ""}, "tls_gate_script"),
        ({"verify_tls_script": "print('no shebang')\n"}, "verify_tls_script"),
        ({"verify_tls_script": "#!/bin/sh\r\n"}, "verify_tls_script"),
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
        _payload(**overrides)


# --- the install script: any payload, written verbatim -----------------------------------------------------------


def test_the_install_script_writes_every_file_byte_for_byte_with_its_mode(tmp_path: Path) -> None:
    root = tmp_path / "root"
    tricky = (
        HostFile(f"{root}/etc/tool/no-final-newline", "0644", "last line without a newline"),
        HostFile(f"{root}/etc/tool/empty", "0600", ""),
        HostFile(f"{root}/etc/tool/shell-like", "0640", "$(touch pwned) `touch pwned` ${HOME} \\n \t\nEOF\n'\"\n"),
        HostFile(f"{root}/opt/with space/and'quote", "0755", "#!/bin/sh\necho hi\n"),
        HostFile(f"{root}/etc/tool/blank-lines", "0644", "\n\nthree\n\n"),
        # Line breaks to Python's str.splitlines, not to bash: written as they are.
        HostFile(f"{root}/etc/tool/other-breaks", "0644", "a\r\nb\x0cc\x1cd\u2028e\x85f\rg\n"),
    )
    real = _rooted(_payload(), root)
    payload = HostPayload(files=real.files + tricky, commands=())

    result = _run(render_install_script(payload), tmp_path)

    assert result.returncode == 0, result.stderr
    for file in payload.files:
        written = Path(file.path)
        assert written.read_bytes() == file.content.encode(), file.path
        assert stat.S_IMODE(written.stat().st_mode) == int(file.mode, 8), file.path
    assert not (tmp_path / "pwned").exists(), "nothing in a file was expanded"
    assert not Path("pwned").exists(), "nothing in a file was expanded"


def test_existing_directories_keep_their_mode_and_new_ones_are_0755(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.mkdir()
    kept.chmod(0o750)
    payload = HostPayload(
        files=(HostFile(f"{kept}/a", "0644", "a\n"), HostFile(f"{tmp_path}/new/deep/b", "0644", "b\n")), commands=()
    )

    assert _run(render_install_script(payload), tmp_path).returncode == 0
    assert stat.S_IMODE(kept.stat().st_mode) == 0o750, "mkdir -p leaves an existing directory as it is"
    assert stat.S_IMODE((tmp_path / "new" / "deep").stat().st_mode) == 0o755


def test_the_commands_run_in_order_once_every_file_is_in_place(tmp_path: Path) -> None:
    log = tmp_path / "log"
    last = tmp_path / "files" / "z"
    payload = HostPayload(
        files=(HostFile(f"{tmp_path}/files/a", "0644", "a\n"), HostFile(str(last), "0644", "z\n")),
        commands=(f"test -f {last} && echo first >>{log}", f"echo second >>{log}\necho third >>{log}"),
    )

    result = _run(render_install_script(payload), tmp_path)

    assert result.returncode == 0, result.stderr
    assert log.read_text() == "first\nsecond\nthird\n"
    assert "2 files installed, running 2 commands" in result.stdout


def test_a_failing_command_stops_the_script_with_its_status(tmp_path: Path) -> None:
    log = tmp_path / "log"
    payload = HostPayload(files=(), commands=(f"echo ran >>{log}", "exit 7", f"echo too-far >>{log}"))

    result = _run(render_install_script(payload), tmp_path)

    assert result.returncode == 7
    assert log.read_text() == "ran\n"


def test_the_install_script_of_the_shared_payload_is_valid_bash_and_deterministic(tmp_path: Path) -> None:
    script = render_install_script(_payload())
    assert script.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in script
    _bash_syntax_ok(script, tmp_path, "payload.sh")
    assert render_install_script(_payload()) == script
    packed = pack_payload(_payload())
    assert packed.script == script
    assert packed.sha256 == hashlib.sha256(script.encode()).hexdigest()
    assert packed.key == f"{PAYLOAD_KEY_PREFIX}{packed.sha256}.sh" == f"hosts/{packed.sha256}.sh"
    assert "gunzip" not in script, "nothing compressed: the bytes are the text"
    assert "base64 -d" not in script, "nothing encoded: the bytes are the text"


def test_a_changed_payload_is_a_new_content_address() -> None:
    before = pack_payload(_payload())
    after = pack_payload(_payload(server_block=_server_block(["other.internal.example"])))
    assert before.key != after.key
    assert pack_payload(_payload()).key == before.key


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (
            HostPayload(files=(HostFile("/etc/tool", "0644", "a\nPCA_BACKEND_FILE_1_EOF\nb\n"),), commands=()),
            "/etc/tool",
        ),
        (HostPayload(files=(HostFile("/etc/nul", "0644", "a\0b"),), commands=()), "/etc/nul"),
        (HostPayload(files=(), commands=(f"printf %s {shlex.quote(KEY_PEM)}",)), "command 1"),
        (HostPayload(files=(), commands=("true", "printf 'a\0b'")), "command 2"),
    ],
)
def test_what_cannot_be_written_or_must_not_be_is_refused_by_name(payload: HostPayload, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        render_install_script(payload)


def test_the_install_script_takes_a_payload() -> None:
    with pytest.raises(ValueError, match="payload must be a HostPayload"):
        render_install_script({"files": ()})  # type: ignore[arg-type]


# --- the bootstrap: the launch template's user data -------------------------------------------------------------


def test_the_bootstrap_is_small_valid_bash_with_the_pins_and_the_payloads_digest(tmp_path: Path) -> None:
    packed = pack_payload(_payload())
    bootstrap = _bootstrap()

    assert bootstrap.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in bootstrap
    _bash_syntax_ok(bootstrap, tmp_path, "bootstrap.sh")
    assert len(bootstrap.encode()) < 3 * 1024, f"{len(bootstrap.encode())} bytes: the bootstrap stays tiny"
    assert _heredoc_body(bootstrap, "PCA_BACKEND_PINS_EOF") == render_pins(FINGERPRINTS)
    assert f"cat >{PINS_PATH} <<" in bootstrap
    assert f"chmod 0644 {PINS_PATH}" in bootstrap
    assert f"readonly PAYLOAD_SHA256={packed.sha256}\n" in bootstrap
    assert f"readonly PAYLOAD_KEY={packed.key}\n" in bootstrap
    assert f"readonly PAYLOAD_BUCKET={BUCKET}\n" in bootstrap
    assert "readonly REGION=eu-west-1\n" in bootstrap
    assert "exec > >(logger -t pca-backend-bootstrap" in bootstrap
    # One AWS CLI call, in the stack's region, bounded.
    assert bootstrap.count('aws s3api get-object --region "$REGION" --cli-connect-timeout 10') == 1
    assert "--cli-read-timeout 30" in bootstrap
    assert 'sha256sum "$download"' in bootstrap
    assert bootstrap.index('[ "$actual" != "$PAYLOAD_SHA256" ]') < bootstrap.index('bash "$PAYLOAD"')
    # The payload's own content is not here: only its address and digest.
    assert "pca-backend-tls-sync" not in bootstrap
    assert "PRIVATE KEY-----" not in bootstrap


def test_the_bootstrap_pins_do_not_depend_on_the_bundle_order() -> None:
    assert _bootstrap(ca_fingerprints=FINGERPRINTS) == _bootstrap(ca_fingerprints=FINGERPRINTS[::-1])
    assert _bootstrap(ca_fingerprints=FINGERPRINTS) != _bootstrap(ca_fingerprints=FINGERPRINTS[:1]), "a new CA rolls"


@pytest.mark.parametrize(
    ("overrides", "argument"),
    [
        ({"region": "mars-1"}, "region"),
        ({"bucket": "Backend-Payloads"}, "bucket"),
        ({"bucket": "ab"}, "bucket"),
        ({"bucket": "a" * 64}, "bucket"),
        ({"bucket": "b'; id; '"}, "bucket"),
        ({"sha256": "0" * 63}, "sha256"),
        ({"sha256": "A" * 64}, "sha256"),
        ({"key": "hosts/other.sh"}, "key"),
        ({"key": f"hosts/{'0' * 64}.sh"}, "key"),
        ({"ca_fingerprints": []}, "ca_fingerprints"),
        ({"ca_fingerprints": FINGERPRINTS[0]}, "ca_fingerprints"),
        ({"ca_fingerprints": [FINGERPRINTS[0].upper()]}, "ca_fingerprints"),
        ({"ca_fingerprints": [":".join(FINGERPRINTS[0][i : i + 2] for i in range(0, 64, 2))]}, "ca_fingerprints"),
        ({"ca_fingerprints": [None]}, "ca_fingerprints"),
    ],
)
def test_bootstrap_inputs_are_checked_by_name(overrides: dict[str, object], argument: str) -> None:
    with pytest.raises(ValueError, match=re.escape(argument)):
        _bootstrap(**overrides)


def test_pins_that_would_not_fit_the_user_data_are_refused_before_anything_exists() -> None:
    many = [hashlib.sha256(str(index).encode()).hexdigest() for index in range(300)]
    with pytest.raises(ValueError, match=r"over EC2's limit of 16384: ca_fingerprints pins 300 CA certificates"):
        check_bootstrap(region="eu-west-1", ca_fingerprints=many)
    check_bootstrap(region="eu-west-1", ca_fingerprints=many[:100])  # a hundred CAs still fit


def test_the_user_data_is_the_bootstraps_bytes_in_base64() -> None:
    bootstrap = _bootstrap()
    packed = pack_user_data(bootstrap)
    assert base64.b64decode(packed, validate=True) == bootstrap.encode()
    assert pack_user_data(_bootstrap()) == packed, "deterministic on every machine: no compression"


def test_the_user_data_limit_counts_the_bytes_before_base64() -> None:
    just_fits = "#!/bin/bash\n" + "#" * (USER_DATA_LIMIT_BYTES - 13) + "\n"
    assert len(just_fits.encode()) == USER_DATA_LIMIT_BYTES
    assert len(pack_user_data(just_fits)) > USER_DATA_LIMIT_BYTES, "base64 is longer, and does not count"
    with pytest.raises(ValueError, match=r"16385 bytes, over EC2's limit of 16384 bytes \(counted before base64\)"):
        pack_user_data(just_fits + "#")


def test_pack_user_data_takes_the_script_text() -> None:
    with pytest.raises(ValueError, match="script"):
        pack_user_data(base64.b64encode(b"#!/bin/bash\n").decode())


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck(tmp_path: Path) -> None:
    for name, script in (
        ("bootstrap.sh", _bootstrap()),
        ("payload.sh", render_install_script(_payload())),
        ("sync.sh", render_sync_script(region="eu-west-1", parameters=PARAMETERS, **SYNC_KWARGS)),
    ):
        path = tmp_path / name
        path.write_text(script)
        result = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{name}: {result.stdout}"


# --- the sync script -----------------------------------------------------------------------------------------


def test_sync_script_is_valid_bash(tmp_path: Path) -> None:
    sync = render_sync_script(region="us-gov-west-1", parameters=PARAMETERS, metric_backend="/pca-backend/dev")
    _bash_syntax_ok(sync, tmp_path, "sync.sh")
    assert _files(_payload(region="us-gov-west-1", metric_backend="/pca-backend/dev"))[SYNC_SCRIPT_PATH].content == sync


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


def test_the_packages_are_retried_and_the_unit_has_a_start_timeout() -> None:
    files, commands = _files(_payload()), "\n".join(_payload().commands)
    assert "until dnf install -y nginx openssl; do" in commands
    assert "sleep $((attempt < 6 ? attempt * 10 : 60))" in commands
    assert "TimeoutStartSec=10min" in files[SERVICE_PATH].content
    sync = render_sync_script(region="eu-west-1", parameters=PARAMETERS, **SYNC_KWARGS)
    assert "dnf install -y nginx openssl" in sync


def test_boot_package_retries_run_until_the_repositories_answer(tmp_path: Path) -> None:
    """The payload's own retry loop, with a dnf that fails three times (no route yet), then works."""
    (loop,) = [command for command in _payload().commands if "until dnf" in command]
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


def _units(tmp_path: Path) -> tuple[Path, Path]:
    """The payload's service and timer, as files systemd can read (ExecStart pointed at /bin/true)."""
    files = _files(_payload())
    service, timer = files[SERVICE_PATH].content, files[TIMER_PATH].content
    assert "[Timer]" in timer
    assert "[Service]" in service
    paths = (tmp_path / "pca-backend-tls-sync.service", tmp_path / "pca-backend-tls-sync.timer")
    paths[0].write_text(service.replace(f"ExecStart={SYNC_SCRIPT_PATH}", "ExecStart=/bin/true"))
    paths[1].write_text(timer)
    return paths


def test_the_first_sync_retries_within_the_health_check_grace_period(tmp_path: Path) -> None:
    """Restart=on-failure retries a sync that exits 75 (no certificate yet), not one that exits 1 (one served)."""
    from components.encrypted_backend import HEALTH_CHECK_GRACE_SECONDS

    service, _ = _units(tmp_path)
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
    service, timer = _units(tmp_path)
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


def test_pins_are_sorted_and_de_duplicated() -> None:
    pins = render_pins([FINGERPRINTS[1], FINGERPRINTS[0], FINGERPRINTS[1]])
    assert [line for line in pins.splitlines() if not line.startswith("#")] == sorted(FINGERPRINTS)


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
