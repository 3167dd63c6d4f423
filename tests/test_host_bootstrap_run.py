"""The launch template's bootstrap run for real with bash and coreutils, with stand-ins for AWS and the journal only.

Stand-ins on PATH: `aws` (`s3api get-object` copies a file of a scratch "bucket" to the output path, after failing
as many times as a test asks, as an unreachable endpoint does), `logger` (the journal: a file) and `sleep` (records
its back-off instead of waiting). The bootstrap's host paths (the pins' directory, the payload directory, the
console) point into the test's directory; everything else is the rendered script as a host gets it.

The payloads here install their files under the test's directory too: the shared mode's payload with its files
re-rooted, and its commands run against stand-in `systemctl` and `dnf`.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.host_bootstrap import (
    AWS_CLI_CONNECT_TIMEOUT,
    AWS_CLI_READ_TIMEOUT,
    CERTIFICATE_PATH,
    PAYLOAD_DIR,
    PINS_PATH,
    PRIVATE_KEY_PATH,
    HostParameters,
    PackedPayload,
    pack_payload,
    render_bootstrap,
    render_pins,
    render_shared_payload,
)
from components.host_payload import HostFile, HostPayload
from components.nginx_config import render_server_block
from tests.tls_fixtures import REPO

REGION = "eu-west-1"
BUCKET = "backend-host-payloads-0a1b2c3"
FINGERPRINTS = [hashlib.sha256(b"subordinate").hexdigest(), hashlib.sha256(b"root").hexdigest()]

AWS_SHIM = r"""#!/bin/bash
# aws stand-in: s3api get-object from $FAKE/s3/<bucket>/<key>; the first $FAKE/fail-first calls fail as an
# unreachable endpoint does. Every call is logged, one line of arguments each.
printf '%s\n' "$*" >>"$FAKE/aws-calls"
calls=$(($(cat "$FAKE/calls" 2>/dev/null || echo 0) + 1))
echo "$calls" >"$FAKE/calls"
if [ "$calls" -le "$(cat "$FAKE/fail-first" 2>/dev/null || echo 0)" ]; then
    echo "Could not connect to the endpoint URL: \"https://s3.eu-west-1.amazonaws.com/\"" >&2
    exit 255
fi
[ "$1 $2" = "s3api get-object" ] || { echo "unexpected aws call: $*" >&2; exit 2; }
shift 2
bucket="" key="" out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bucket) bucket=$2; shift 2 ;;
        --key) key=$2; shift 2 ;;
        --region|--cli-connect-timeout|--cli-read-timeout) shift 2 ;;
        --*) echo "unexpected option $1" >&2; exit 2 ;;
        *) out=$1; shift ;;
    esac
done
if [ ! -f "$FAKE/s3/$bucket/$key" ]; then
    echo "An error occurred (NoSuchKey) when calling the GetObject operation" >&2
    exit 254
fi
cp "$FAKE/s3/$bucket/$key" "$out"
echo '{"ContentLength": 1}'
"""


@dataclass
class Boot:
    status: int
    output: str
    """What the bootstrap printed outside the journal (nothing, once it redirected itself)."""
    journal: str
    """What the bootstrap and the payload sent to `logger -t pca-backend-bootstrap`."""


class Machine:
    """A host's file system paths of the bootstrap, the stand-in tools and the bucket, under `tmp_path`."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.fake = tmp_path / "fake"
        self.bin = self.fake / "bin"
        self.bin.mkdir(parents=True)
        self.pins = tmp_path / "etc" / "pca-backend" / "ca-pins"
        self.payload_dir = tmp_path / "var" / "lib" / "pca-backend"
        tools = {
            "aws": AWS_SHIM,
            "logger": '#!/bin/bash\n[ "$*" = "-t pca-backend-bootstrap -s" ] || exit 2\ncat >>"$FAKE/journal"\n',
            "sleep": '#!/bin/bash\necho "$1" >>"$FAKE/sleeps"\n',
            "systemctl": '#!/bin/bash\necho "systemctl $*" >>"$FAKE/commands"\n',
            "dnf": '#!/bin/bash\necho "dnf $*" >>"$FAKE/commands"\n',
        }
        for name, body in tools.items():
            (self.bin / name).write_text(body)
            (self.bin / name).chmod(0o755)

    def upload(self, key: str, content: bytes) -> None:
        path = self.fake / "s3" / BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    def boot(self, packed: PackedPayload, *, fail_first: int = 0) -> Boot:
        """Runs the bootstrap for `packed` (its object as uploaded, unless a test uploaded something else)."""
        (self.fake / "fail-first").write_text(str(fail_first))
        script = render_bootstrap(
            region=REGION, bucket=BUCKET, key=packed.key, sha256=packed.sha256, ca_fingerprints=FINGERPRINTS
        )
        rooted = (
            script.replace(str(Path(PINS_PATH).parent), str(self.pins.parent))
            .replace(PAYLOAD_DIR, str(self.payload_dir))
            .replace("/dev/console", str(self.fake / "console"))
        )
        outside = re.findall(r"(?<!<root>)/(?:etc|var|dev/console)\S*", rooted.replace(str(self.root), "<root>"))
        assert outside == [], "every host path points into the test"
        (self.root / "bootstrap.sh").write_text(rooted)
        result = subprocess.run(
            ["bash", str(self.root / "bootstrap.sh")],
            env={"PATH": f"{self.bin}:/usr/bin:/bin", "FAKE": str(self.fake)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        journal = self.fake / "journal"
        return Boot(result.returncode, result.stdout + result.stderr, journal.read_text() if journal.exists() else "")

    def aws_calls(self) -> list[list[str]]:
        calls = self.fake / "aws-calls"
        return [shlex.split(line) for line in calls.read_text().splitlines()] if calls.exists() else []

    def lines(self, name: str) -> list[str]:
        path = self.fake / name
        return path.read_text().splitlines() if path.exists() else []


def _marker_payload(machine: Machine) -> HostPayload:
    """Two files and two commands, everything under the test's directory."""
    installed = machine.root / "installed"
    return HostPayload(
        files=(
            HostFile(f"{installed}/usr/local/sbin/tool", "0755", "#!/bin/sh\necho tool\n"),
            HostFile(f"{installed}/etc/tool.conf", "0600", "setting = 1\n"),
        ),
        commands=(f"echo first >>{machine.fake}/ran", f"echo second >>{machine.fake}/ran"),
    )


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def test_a_payload_whose_digest_matches_is_installed_and_run(machine: Machine) -> None:
    payload = _marker_payload(machine)
    packed = pack_payload(payload)
    machine.upload(packed.key, packed.script.encode())

    boot = machine.boot(packed)

    assert boot.status == 0, boot.journal + boot.output
    assert machine.lines("ran") == ["first", "second"]
    for file in payload.files:
        assert Path(file.path).read_text() == file.content, file.path
    # The pins come from the launch template, before anything of the payload runs.
    assert machine.pins.read_text() == render_pins(FINGERPRINTS)
    assert machine.pins.stat().st_mode & 0o777 == 0o644
    # The payload it ran stays, root only, under its digest, for an operator to read.
    kept = machine.payload_dir / f"payload-{packed.sha256}.sh"
    assert kept.read_text() == packed.script
    assert machine.payload_dir.stat().st_mode & 0o777 == 0o700
    assert f"verified (SHA-256 {packed.sha256}): running it" in boot.journal
    assert boot.output == "", "everything goes to the journal"


def test_a_payload_whose_digest_does_not_match_is_refused_and_nothing_runs(machine: Machine) -> None:
    payload = _marker_payload(machine)
    packed = pack_payload(payload)
    tampered = packed.script.replace("echo second", "echo tampered").encode()
    machine.upload(packed.key, tampered)

    boot = machine.boot(packed)

    assert boot.status != 0
    assert machine.lines("ran") == [], "nothing of a refused payload runs"
    assert not any(Path(file.path).exists() for file in payload.files)
    actual = hashlib.sha256(tampered).hexdigest()
    assert (
        f"refused the host payload s3://{BUCKET}/{packed.key}: its SHA-256 is {actual}, not the {packed.sha256} "
        "the launch template pins: nothing of it runs"
    ) in boot.journal
    assert list(machine.payload_dir.iterdir()) == [], "the refused download is not kept"
    assert len(machine.aws_calls()) == 1, "a wrong payload is refused, not downloaded again"


def test_unreachable_s3_is_retried_with_back_off_then_the_payload_runs(machine: Machine) -> None:
    packed = pack_payload(_marker_payload(machine))
    machine.upload(packed.key, packed.script.encode())

    boot = machine.boot(packed, fail_first=7)

    assert boot.status == 0, boot.journal
    assert machine.lines("ran") == ["first", "second"]
    assert len(machine.aws_calls()) == 8
    # Capped at a minute: 10, 20, ... 50, then 60 s.
    assert machine.lines("sleeps") == ["10", "20", "30", "40", "50", "60", "60"]
    assert f"could not download the host payload s3://{BUCKET}/{packed.key} (attempt 1 of 60); retrying" in boot.journal
    assert "Could not connect to the endpoint URL" in boot.journal, "the AWS CLI's reason is in the journal"


def test_s3_unreachable_for_an_hour_stops_the_boot_and_runs_nothing(machine: Machine) -> None:
    packed = pack_payload(_marker_payload(machine))
    machine.upload(packed.key, packed.script.encode())

    boot = machine.boot(packed, fail_first=1000)

    assert boot.status != 0
    assert len(machine.aws_calls()) == 60
    assert sum(int(seconds) for seconds in machine.lines("sleeps")) == 10 + 20 + 30 + 40 + 50 + 54 * 60, "~ an hour"
    assert machine.lines("ran") == []
    assert f"could not download the host payload s3://{BUCKET}/{packed.key} in 60 attempts" in boot.journal
    assert list(machine.payload_dir.iterdir()) == []


def test_a_payload_missing_from_the_bucket_is_retried_then_refused(machine: Machine) -> None:
    packed = pack_payload(_marker_payload(machine))

    boot = machine.boot(packed)

    assert boot.status != 0
    assert machine.lines("ran") == []
    assert "NoSuchKey" in boot.journal


def test_every_download_names_the_region_the_object_and_its_timeouts(machine: Machine) -> None:
    packed = pack_payload(_marker_payload(machine))
    machine.upload(packed.key, packed.script.encode())

    assert machine.boot(packed, fail_first=1).status == 0

    for call in machine.aws_calls():
        assert call[:2] == ["s3api", "get-object"]
        options = dict(zip(call[2:-1:2], call[3:-1:2], strict=True))
        assert options == {
            "--region": REGION,
            "--cli-connect-timeout": str(AWS_CLI_CONNECT_TIMEOUT),
            "--cli-read-timeout": str(AWS_CLI_READ_TIMEOUT),
            "--bucket": BUCKET,
            "--key": packed.key,
        }
        assert call[-1].startswith(f"{machine.payload_dir}/.payload."), "downloaded into the root-only directory"


def test_the_shared_payload_boots_through_the_bootstrap(machine: Machine) -> None:
    """The SSM mode's real payload (its files re-rooted): every file installed verbatim, then the timer, the
    packages and the first sync started, in that order."""
    shared = render_shared_payload(
        region=REGION,
        parameters=HostParameters(
            "/pca-backend/dev/full-chain", "/pca-backend/dev/private-key", "/pca-backend/dev/ca-bundle"
        ),
        server_block=render_server_block(
            server_names=["api.internal.example"], certificate_path=CERTIFICATE_PATH, private_key_path=PRIVATE_KEY_PATH
        ),
        trust_ca_script=(REPO / "scripts" / "trust-ca").read_text(),
        tls_gate_script=(REPO / "scripts" / "tls-gate").read_text(),
        verify_tls_script=(REPO / "scripts" / "verify-tls").read_text(),
        metric_backend="pca-backend-dev",
    )
    host_root = machine.root / "host"
    payload = HostPayload(
        files=tuple(HostFile(f"{host_root}{file.path}", file.mode, file.content) for file in shared.files),
        commands=shared.commands,
    )
    packed = pack_payload(payload)
    machine.upload(packed.key, packed.script.encode())

    boot = machine.boot(packed)

    assert boot.status == 0, boot.journal
    for file in payload.files:
        assert Path(file.path).read_text() == file.content, file.path
        assert Path(file.path).stat().st_mode & 0o777 == int(file.mode, 8), file.path
    assert machine.lines("commands") == [
        "systemctl daemon-reload",
        "systemctl enable --now pca-backend-tls-sync.timer",
        "dnf install -y nginx openssl",
        "systemctl enable nginx.service",
        "systemctl start --no-block pca-backend-tls-sync.service",
    ]
    assert "pca-backend payload done; the first TLS sync is running" in boot.journal
