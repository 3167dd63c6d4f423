"""Plain unit tests of the host user data (no Pulumi, no AWS)."""

from __future__ import annotations

import base64
import gzip
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
    assert gzip.decompress(base64.b64decode(packed)).decode() == trust_ca
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
    assert target.read_text() == trust_ca
    assert target.stat().st_mode & 0o777 == 0o755


def test_small_trust_ca_is_embedded_verbatim(tmp_path: Path) -> None:
    user_data = _render()
    assert _heredoc_body(user_data, "PCA_BACKEND_TRUST_CA_EOF") == SMALL_TRUST_CA
    _bash_syntax_ok(user_data, tmp_path, "user-data.sh")


def test_user_data_installs_every_piece() -> None:
    user_data = _render()
    block = _server_block()
    assert "dnf install -y nginx" in user_data
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
    sync = render_sync_script(region="us-gov-west-1", parameters=PARAMETERS)
    _bash_syntax_ok(sync, tmp_path, "sync.sh")
    # The user data embeds exactly this script.
    assert _heredoc_body(_render(region="us-gov-west-1"), "PCA_BACKEND_SYNC_EOF") == sync


def test_sync_script_installs_atomically_and_checks_nginx() -> None:
    sync = render_sync_script(region="eu-west-1", parameters=PARAMETERS)
    assert "umask 077" in sync
    assert sync.count("aws ssm get-parameter") == 1
    assert "--with-decryption" in sync
    for path in (CERTIFICATE_PATH, PRIVATE_KEY_PATH, BUNDLE_PATH):
        assert path in sync
    assert 'mv -f -- "$new_key" "$KEY"' in sync
    assert "mktemp /etc/pki/nginx/private/" in sync, "the key is staged in its own directory (atomic mv)"
    assert 'chmod 0600 "$new_key"' in sync
    # nginx -t guards the reload; a failure restores the previous files.
    assert sync.index("nginx -t") < sync.index("systemctl reload nginx")
    assert "previous files restored" in sync
    assert f'{TRUST_CA_PATH} --name pca-backend --os rhel "$BUNDLE"' in sync


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck(tmp_path: Path) -> None:
    for name, script in (
        ("user-data.sh", _render()),
        ("sync.sh", render_sync_script(region="eu-west-1", parameters=PARAMETERS)),
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
    ],
)
def test_invalid_inputs_name_the_argument(overrides: dict[str, object], argument: str) -> None:
    with pytest.raises(ValueError, match=re.escape(argument)):
        _render(**overrides)


def test_oversized_input_is_refused() -> None:
    huge_block = "server {\n" + "    # padding\n" * 2000 + "}\n"
    with pytest.raises(ValueError, match="16384"):
        _render(server_block=huge_block)


# ---------------------------------------------------------------------------------------------------------
# The sync script run for real, with its paths moved into a scratch directory and fake aws, nginx,
# systemctl, sleep and trust-ca commands on PATH.
# ---------------------------------------------------------------------------------------------------------

FAKE_CERT = "-----BEGIN CERTIFICATE-----\nRkFLRSBMRUFG\n-----END CERTIFICATE-----\n"
FAKE_KEY = "-----BEGIN PRIVATE KEY-----\nRkFLRSBLRVk=\n-----END PRIVATE KEY-----\n"
FAKE_BUNDLE = "-----BEGIN CERTIFICATE-----\nRkFLRSBST09U\n-----END CERTIFICATE-----\n"

FAKE_COMMANDS = {
    # Prints the value stored in $FAKE/ssm/<name with / as _>, like `--output text`; fails if absent.
    "aws": """#!/bin/bash
name=""
while [ $# -gt 0 ]; do
    if [ "$1" = --name ]; then name=$2; fi
    shift
done
echo "aws $name" >>"$FAKE/calls"
file="$FAKE/ssm/${name//\\//_}"
[ -f "$file" ] || { echo "ParameterNotFound: $name" >&2; exit 254; }
cat "$file"
""",
    # `nginx -t` fails when $FAKE/nginx-broken exists (a key that does not match, a bad config...).
    "nginx": """#!/bin/bash
echo "nginx $*" >>"$FAKE/calls"
[ ! -e "$FAKE/nginx-broken" ]
""",
    "systemctl": """#!/bin/bash
echo "systemctl $*" >>"$FAKE/calls"
case "$1" in
    is-active) [ -e "$FAKE/nginx-active" ] ;;
    is-enabled) true ;;
    start|reload) touch "$FAKE/nginx-active" ;;
esac
""",
    "sleep": "#!/bin/bash\nexit 0\n",
    "trust-ca": '#!/bin/bash\necho "trust-ca $*" >>"$FAKE/calls"\n',
}


class SyncHarness:
    def __init__(self, tmp_path: Path) -> None:
        self.fake = tmp_path / "fake"
        self.pki = tmp_path / "pki"
        bin_dir = self.fake / "bin"
        (self.fake / "ssm").mkdir(parents=True)
        bin_dir.mkdir()
        for command, body in FAKE_COMMANDS.items():
            (bin_dir / command).write_text(body)
            (bin_dir / command).chmod(0o755)
        script = render_sync_script(region="eu-west-1", parameters=PARAMETERS)
        script = script.replace("/etc/pki/nginx", str(self.pki)).replace(TRUST_CA_PATH, str(bin_dir / "trust-ca"))
        self.script = tmp_path / "pca-backend-tls-sync"
        self.script.write_text(script)
        self.env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE": str(self.fake)}

    def put(self, full_chain: str, key: str, bundle: str) -> None:
        for name, value in (
            (PARAMETERS.full_chain, full_chain),
            (PARAMETERS.private_key, key),
            (PARAMETERS.ca_bundle, bundle),
        ):
            (self.fake / "ssm" / name.replace("/", "_")).write_text(value)

    def run(self) -> subprocess.CompletedProcess[str]:
        (self.fake / "calls").write_text("")
        return subprocess.run(["bash", str(self.script)], env=self.env, capture_output=True, text=True, check=False)

    def calls(self) -> list[str]:
        return (self.fake / "calls").read_text().splitlines()

    @property
    def cert(self) -> Path:
        return self.pki / "server.crt"

    @property
    def key(self) -> Path:
        return self.pki / "private" / "server.key"

    @property
    def bundle(self) -> Path:
        return self.pki / "ca-bundle.pem"

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.pki.rglob(".*")) + sorted(p.name for p in self.pki.rglob("*.previous"))


@pytest.fixture
def sync(tmp_path: Path) -> SyncHarness:
    return SyncHarness(tmp_path)


def test_sync_first_run_installs_and_starts_nginx(sync: SyncHarness) -> None:
    sync.put(FAKE_CERT, FAKE_KEY, FAKE_BUNDLE)
    result = sync.run()
    assert result.returncode == 0, result.stderr
    assert sync.cert.read_text() == FAKE_CERT
    assert sync.key.read_text() == FAKE_KEY
    assert sync.bundle.read_text() == FAKE_BUNDLE
    assert sync.key.stat().st_mode & 0o777 == 0o600
    assert (sync.pki / "private").stat().st_mode & 0o777 == 0o700
    assert sync.cert.stat().st_mode & 0o777 == 0o644
    calls = sync.calls()
    assert calls.index("nginx -t -q") < calls.index("systemctl start nginx")
    assert f"trust-ca --name pca-backend --os rhel {sync.bundle}" in calls
    assert sync.leftovers() == []


def test_sync_unchanged_does_not_reload(sync: SyncHarness) -> None:
    sync.put(FAKE_CERT, FAKE_KEY, FAKE_BUNDLE)
    assert sync.run().returncode == 0
    result = sync.run()
    assert result.returncode == 0, result.stderr
    assert "TLS material unchanged" in result.stdout
    assert not [c for c in sync.calls() if c.startswith(("nginx", "systemctl reload", "systemctl start"))]
    assert sync.leftovers() == []


def test_sync_rotation_reloads_running_nginx(sync: SyncHarness) -> None:
    sync.put(FAKE_CERT, FAKE_KEY, FAKE_BUNDLE)
    assert sync.run().returncode == 0
    rotated_cert = FAKE_CERT.replace("RkFLRSBMRUFG", "Uk9UQVRFRA==")
    rotated_key = FAKE_KEY.replace("RkFLRSBLRVk=", "TkVXIEtFWQ==")
    sync.put(rotated_cert, rotated_key, FAKE_BUNDLE)
    result = sync.run()
    assert result.returncode == 0, result.stderr
    assert sync.cert.read_text() == rotated_cert
    assert sync.key.read_text() == rotated_key
    calls = sync.calls()
    assert calls.index("nginx -t -q") < calls.index("systemctl reload nginx")
    assert sync.leftovers() == []


def test_sync_keeps_previous_material_when_nginx_rejects_the_new(sync: SyncHarness) -> None:
    sync.put(FAKE_CERT, FAKE_KEY, FAKE_BUNDLE)
    assert sync.run().returncode == 0
    sync.put(FAKE_CERT.replace("RkFLRSBMRUFG", "QlJPS0VO"), FAKE_KEY, FAKE_BUNDLE)
    (sync.fake / "nginx-broken").touch()
    result = sync.run()
    assert result.returncode != 0
    assert "previous files restored" in result.stderr
    assert sync.cert.read_text() == FAKE_CERT
    assert sync.key.read_text() == FAKE_KEY
    assert sync.bundle.read_text() == FAKE_BUNDLE
    assert not [c for c in sync.calls() if c.startswith(("systemctl reload", "systemctl start"))]
    assert sync.leftovers() == []


def test_sync_first_run_rejected_leaves_nothing_behind(sync: SyncHarness) -> None:
    sync.put(FAKE_CERT, FAKE_KEY, FAKE_BUNDLE)
    (sync.fake / "nginx-broken").touch()
    assert sync.run().returncode != 0
    assert not sync.cert.exists()
    assert not sync.key.exists()
    assert not sync.bundle.exists()
    assert sync.leftovers() == []


def test_sync_missing_parameter_fails_without_touching_files(sync: SyncHarness) -> None:
    sync.put(FAKE_CERT, FAKE_KEY, FAKE_BUNDLE)
    assert sync.run().returncode == 0
    (sync.fake / "ssm" / PARAMETERS.ca_bundle.replace("/", "_")).unlink()
    result = sync.run()
    assert result.returncode != 0
    assert "attempt 5 of 5" in result.stderr
    assert sync.bundle.read_text() == FAKE_BUNDLE
    assert not [c for c in sync.calls() if c.startswith(("nginx", "systemctl"))]
    assert sync.leftovers() == []


def test_sync_refuses_a_value_that_is_not_pem(sync: SyncHarness) -> None:
    sync.put(FAKE_CERT, "not a key\n", FAKE_BUNDLE)
    result = sync.run()
    assert result.returncode != 0
    assert "does not hold the expected PEM data" in result.stderr
    assert not sync.key.exists()
