"""Render the EC2 user data that turns an Amazon Linux 2023 host into a TLS backend.

Pure functions, no Pulumi: the component and the tests call them alike.

The user data holds only the *names* of three SSM SecureString parameters (full chain, private key, CA
bundle), never their values. A sync script installed on the host fetches them at boot and again every
`sync_interval_minutes` from a systemd timer, so a rotated certificate (a routine `pulumi up` writes new
parameter values) reaches nginx without replacing the host: the user data does not change on rotation.

What the script does, in order:
1. writes `/usr/local/sbin/trust-ca` (the repository's `scripts/trust-ca`), the host gate
   `/usr/local/sbin/pca-backend-tls-gate` (`scripts/tls-gate`), the pins file `/etc/pca-backend/ca-pins` (SHA-256
   fingerprints of the stack's CA certificates: the only CAs the host accepts in a bundle), the sync script
   `/usr/local/sbin/pca-backend-tls-sync`, the nginx server block `/etc/nginx/conf.d/pca-backend.conf` and a
   systemd service + timer for the sync;
2. enables the timer, installs nginx with dnf (the AWS CLI v2 and python3 are part of the AL2023 AMI);
3. enables nginx and starts the first sync, which starts nginx once valid material is installed and, until
   then, runs again every FIRST_SYNC_RETRY_SECONDS (well inside the load balancer's health check grace period)
   instead of waiting for the timer.

The sync lets the host gate decide on a new set (certificate, key, bundle), writes it through a temporary file and
`mv` (atomic), tests the result with `nginx -t`, restores the previous files if the test fails (nginx is never
reloaded onto a broken configuration), reloads nginx only when something changed, and installs the bundle into
the host's trust store so hosts verify each other.

The script is plain bash with every file embedded verbatim (comments and all). `pack_user_data` turns it into
what the launch template carries: base64 of the gzip-compressed script. cloud-init uncompresses gzip user
data before acting on it ("Content found to be gzip compressed will be uncompressed",
https://cloudinit.readthedocs.io/en/22.1_a/topics/format.html), and EC2's 16 KB limit counts the user data
"in raw form, before it is base64-encoded"
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html): the gzipped bytes.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
import shlex
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from components.host_payload import HostFile, HostPayload
from components.rules.aws import is_parameter_path, is_region, is_reserved_parameter_path
from components.settings import ec2_private_dns_wildcard

__all__ = [
    "BUNDLE_PATH",
    "CERTIFICATE_PATH",
    "FIRST_SYNC_RETRY_SECONDS",
    "GATE_PATH",
    "METRIC_DIMENSION",
    "METRIC_NAME",
    "METRIC_NAMESPACE",
    "METRIC_PUT_ACTION",
    "PARAMETER_READ_ACTION",
    "PINS_PATH",
    "PRIVATE_KEY_PATH",
    "SERVER_BLOCK_PATH",
    "SYNC_EXIT_NO_CERTIFICATE",
    "SYNC_EXIT_SERVING_PREVIOUS",
    "SYNC_SCRIPT_PATH",
    "TRUST_CA_PATH",
    "USER_DATA_LIMIT_BYTES",
    "HostParameters",
    "check_metric_backend",
    "check_region",
    "ec2_private_dns_domain",
    "is_parameter_path",
    "is_reserved_parameter_path",
    "pack_user_data",
    "package_install_command",
    "render_pins",
    "render_shared_payload",
    "render_sync_script",
    "render_user_data",
]

#: EC2's limit on user data, counted before base64 encoding: here, on the gzip-compressed script.
USER_DATA_LIMIT_BYTES = 16 * 1024

CERTIFICATE_PATH = "/etc/pki/nginx/server.crt"
PRIVATE_KEY_PATH = "/etc/pki/nginx/private/server.key"
BUNDLE_PATH = "/etc/pki/nginx/ca-bundle.pem"
SERVER_BLOCK_PATH = "/etc/nginx/conf.d/pca-backend.conf"
TRUST_CA_PATH = "/usr/local/sbin/trust-ca"
#: The host gate (scripts/tls-gate): every set of key material passes it before nginx or the trust store sees it.
GATE_PATH = "/usr/local/sbin/pca-backend-tls-gate"
#: Root-owned, public: the SHA-256 fingerprints of the stack's CA certificates, from the launch template.
PINS_PATH = "/etc/pca-backend/ca-pins"
SYNC_SCRIPT_PATH = "/usr/local/sbin/pca-backend-tls-sync"
SYNC_UNIT = "pca-backend-tls-sync"
#: Anchor name in the trust store (`trust-ca --name`).
TRUST_ANCHOR_NAME = "pca-backend"
#: The sync's exit status when it failed and no certificate is installed yet: systemd runs it again after
#: FIRST_SYNC_RETRY_SECONDS (Restart=on-failure). EX_TEMPFAIL of sysexits.h.
SYNC_EXIT_NO_CERTIFICATE = 75
#: Its exit status for every other failure: nginx keeps serving the previous certificate and the next try is the
#: timer's (RestartPreventExitStatus), so a refused rotation does not hammer SSM and KMS.
SYNC_EXIT_SERVING_PREVIOUS = 1
#: Seconds between two first-sync attempts: a host whose material arrives late (the parameters written after
#: the group launched it, credentials or endpoints still coming up) serves within the load balancer's health
#: check grace period (300 s) instead of failing it and being replaced.
FIRST_SYNC_RETRY_SECONDS = 20

_MAX_SYNC_INTERVAL_MINUTES = 24 * 60
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")
# Boot-time package install attempts (back-off capped at 60 s: about an hour).
_PACKAGE_ATTEMPTS = 60


@dataclass(frozen=True)
class HostParameters:
    """Names (not values) of the SSM SecureString parameters a host reads its TLS material from."""

    full_chain: str
    """The certificate followed by its intermediates (PEM), installed as the nginx certificate."""
    private_key: str
    """The certificate's private key (PEM)."""
    ca_bundle: str
    """The CA certificates (PEM) the host trusts, installed into its trust store."""


def check_region(region: object) -> str:
    """`region`, or ValueError unless it looks like an AWS region name."""
    if not is_region(region):
        raise ValueError(f"region must be an AWS region name such as 'eu-west-1', got {region!r}")
    return region


def ec2_private_dns_domain(region: str) -> str:
    """The domain of the IP-based EC2 private DNS names in `region`: `ec2.internal` in us-east-1,
    `<region>.compute.internal` elsewhere (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-naming.html).

    The names on the certificate come from the same rule (settings.ec2_private_dns_wildcard). A DHCP options set
    with its own domain name changes the instances' `local-hostname`, not these names, whose A records EC2's DNS
    always answers ("DNS A record queries are always responded to irrespective of the guest OS hostname settings").
    """
    return ec2_private_dns_wildcard(check_region(region)).removeprefix("*.")


def _check_fingerprints(ca_fingerprints: Sequence[str]) -> list[str]:
    """The fingerprints sorted and de-duplicated (the pins file must not change with the bundle's order)."""
    if isinstance(ca_fingerprints, str) or not isinstance(ca_fingerprints, Sequence) or not ca_fingerprints:
        raise ValueError(
            "ca_fingerprints must be a non-empty list of the SHA-256 fingerprints of the CA bundle's certificates "
            f"(x509.sha256_fingerprints), got {ca_fingerprints!r}"
        )
    for fingerprint in ca_fingerprints:
        if not isinstance(fingerprint, str) or not _FINGERPRINT_RE.fullmatch(fingerprint):
            raise ValueError(
                "ca_fingerprints entries must be SHA-256 fingerprints as 64 lowercase hex digits without colons, "
                f"got {fingerprint!r}"
            )
    return sorted(set(ca_fingerprints))


def render_pins(ca_fingerprints: Sequence[str]) -> str:
    """The pins file (PINS_PATH) the host gate and trust-ca read: one fingerprint a line, sorted."""
    lines = [
        "# SHA-256 fingerprints of the CA certificates this host accepts in its CA bundle (pca-backend).",
        "# From the launch template: a new CA is a new launch template version.",
        *_check_fingerprints(ca_fingerprints),
    ]
    return "\n".join(lines) + "\n"


def _check_parameters(parameters: HostParameters) -> HostParameters:
    if not isinstance(parameters, HostParameters):
        raise ValueError(f"parameters must be a HostParameters of SSM parameter names, got {type(parameters).__name__}")
    for field in ("full_chain", "private_key", "ca_bundle"):
        value = getattr(parameters, field)
        if not is_parameter_path(value) or len(value) > 1011 or is_reserved_parameter_path(value):
            raise ValueError(
                f"parameters.{field} must be an SSM parameter name such as '/pca-backend/dev/full-chain' "
                "(starts with '/', letters, digits and . _ - / only, not starting with 'aws' or 'ssm'), "
                f"got {value!r}"
            )
        if "-----BEGIN" in value:
            raise ValueError(f"parameters.{field} must be a parameter name, not PEM content")
    names = [parameters.full_chain, parameters.private_key, parameters.ca_bundle]
    if len(set(names)) != 3:
        raise ValueError(f"parameters must name three different SSM parameters, got {names!r}")
    return parameters


def _check_interval(sync_interval_minutes: int) -> int:
    if (
        isinstance(sync_interval_minutes, bool)
        or not isinstance(sync_interval_minutes, int)
        or not 1 <= sync_interval_minutes <= _MAX_SYNC_INTERVAL_MINUTES
    ):
        raise ValueError(
            f"sync_interval_minutes must be an integer from 1 to {_MAX_SYNC_INTERVAL_MINUTES}, "
            f"got {sync_interval_minutes!r}"
        )
    return sync_interval_minutes


def _check_text(argument: str, value: str, *, script: str | None = None) -> str:
    """`value`, or ValueError naming `argument`; `script` (a repository path) asks for a `#!` first line."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{argument} must be a non-empty string")
    if "\0" in value or "\r" in value:
        raise ValueError(f"{argument} must not contain NUL or carriage-return characters")
    if script is not None and not value.startswith("#!"):
        raise ValueError(f"{argument} must be a script starting with '#!' (the content of {script})")
    if "PRIVATE KEY-----" in value:
        raise ValueError(f"{argument} must not contain key material")
    return value


def _heredoc(command: str, delimiter: str, content: str, argument: str) -> list[str]:
    """`command <<'DELIMITER'` followed by `content` verbatim (quoted delimiter: no expansion at all)."""
    if delimiter in content.splitlines():
        raise ValueError(f"{argument} must not contain a line reading {delimiter!r}")
    body = content if content.endswith("\n") else content + "\n"
    return [f"{command} <<'{delimiter}'", *body.splitlines(), delimiter]


def _write_file(path: str, mode: str, content: str, delimiter: str, argument: str) -> list[str]:
    return [
        *_heredoc(f"cat >{path}", delimiter, content, argument),
        f"chmod {mode} {path}",
    ]


#: CloudWatch metric every host puts after each sync (the backend's alarm is built against this contract).
METRIC_NAMESPACE = "PcaBackend"
METRIC_NAME = "CertificateDaysToExpiry"
METRIC_DIMENSION = "Backend"
#: The IAM actions the sync calls: the host role needs the first on the three parameters (each action is
#: authorized on its own: ssm:GetParameter does not allow GetParameters,
#: https://docs.aws.amazon.com/systems-manager/latest/userguide/ps-retrieval-authorization.html) and the
#: second on "*" (PutMetricData has no resource-level permissions; scope it with a cloudwatch:namespace condition).
PARAMETER_READ_ACTION = "ssm:GetParameters"
METRIC_PUT_ACTION = "cloudwatch:PutMetricData"
#: Connect/read timeouts (seconds) of every AWS CLI call on a host: a hung endpoint must not hold the unit.
AWS_CLI_CONNECT_TIMEOUT = 10
AWS_CLI_READ_TIMEOUT = 30
#: systemd's limit on one sync run (packages, three fetch attempts, the gate, nginx, trust store, metric).
SYNC_START_TIMEOUT = "10min"
#: Where a host asks for its own names (IMDSv2).
IMDS_URL = "http://169.254.169.254"

# Splits the one GetParameters answer (JSON on stdin) into the three staged files; the key goes only to its
# 0600 file, never to stdout or a log. Exit 75: no usable answer (retry); 3: a parameter is missing or is
# not PEM (no retry). Python 3.9: AL2023's python3.
_SPLIT_PARAMETERS_PY = """\
import json, sys
names, paths = sys.argv[1:4], sys.argv[4:7]
markers = ["-----BEGIN CERTIFICATE-----", "-----BEGIN ", "-----BEGIN CERTIFICATE-----"]
try:
    answer = json.loads(sys.stdin.read() or "null")
    values = {item["Name"]: item["Value"] for item in answer["Parameters"]}
except (ValueError, TypeError, KeyError):
    sys.exit(75)
for name, path, marker in zip(names, paths, markers):
    value = values.get(name)
    if value is None:
        print("parameter %s not found" % name, file=sys.stderr)
        sys.exit(3)
    if marker not in value:
        print("parameter %s does not hold the expected PEM data (%s)" % (name, marker), file=sys.stderr)
        sys.exit(3)
    with open(path, "w") as staged:
        staged.write(value.rstrip("\\n") + "\\n")
"""


def check_metric_backend(metric_backend: object) -> str:
    """`metric_backend`, or ValueError unless CloudWatch accepts it as a dimension value.

    CloudWatch dimension values are 1-1024 ASCII characters with at least one that is not whitespace:
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_Dimension.html
    """
    if (
        not isinstance(metric_backend, str)
        or not 1 <= len(metric_backend) <= 1024
        or not all(" " <= character <= "~" for character in metric_backend)
        or not metric_backend.strip()
    ):
        raise ValueError(
            "metric_backend must be the backend's name for its CloudWatch dimension: 1-1024 printable ASCII "
            f"characters, not only spaces (the same for every host of one backend), got {metric_backend!r}"
        )
    return metric_backend


def render_sync_script(*, region: str, parameters: HostParameters, metric_backend: str) -> str:
    """The bash script installed as /usr/local/sbin/pca-backend-tls-sync (run by a systemd timer).

    It reads the three parameters in one `aws ssm get-parameters --with-decryption` call (so a certificate
    is never paired with a key of another rotation), lets the host gate (GATE_PATH, scripts/tls-gate) decide on
    the new set as a whole before installing it (only pinned CAs in the bundle; a server certificate that
    chains to them, inside its validity period, names this host's EC2 private DNS name and matches the key),
    installs it atomically, runs `nginx -t` (restoring the previous files when it fails), reloads nginx only
    when a file changed, and installs the CA bundle into the trust store with trust-ca (which checks the pins
    again). A refused set leaves the previous one served, is logged with the reason and makes the run exit
    non-zero: SYNC_EXIT_NO_CERTIFICATE while no certificate is installed (systemd retries soon), else
    SYNC_EXIT_SERVING_PREVIOUS (the timer retries).

    The host's name is derived from its private IPv4 address (IMDSv2 `local-ipv4`) and the region, not read from
    `local-hostname`: in a VPC whose DHCP options set a domain name, `local-hostname` is in that domain
    (`ip-10-0-1-5.corp.example.com`, or several names separated by spaces), a name the certificate's EC2
    wildcard does not cover, while the EC2 name still resolves (see ec2_private_dns_domain).

    After every run, refused or not, it puts the days left on the certificate nginx serves to CloudWatch
    (`PcaBackend` / `CertificateDaysToExpiry`, dimension `Backend` = `metric_backend`: the backend's name,
    the same for every host of one backend).
    Raises ValueError naming the argument when an input is not allowed.
    """
    region = check_region(region)
    parameters = _check_parameters(parameters)
    metric_backend = check_metric_backend(metric_backend)
    q = shlex.quote
    no_certificate, serving, retry = SYNC_EXIT_NO_CERTIFICATE, SYNC_EXIT_SERVING_PREVIOUS, FIRST_SYNC_RETRY_SECONDS
    dimensions = json.dumps([{"Name": METRIC_DIMENSION, "Value": metric_backend}], separators=(",", ":"))
    return f"""#!/bin/bash
# Install the TLS certificate, key and CA bundle kept in SSM Parameter Store (rendered by
# components/host_bootstrap.py). Run at boot and by {SYNC_UNIT}.timer: a rotated certificate reaches nginx
# without replacing the host. New material is checked as a whole first; a refused set (or an unreadable
# parameter, or nginx -t failing) changes nothing and makes this exit non-zero with the reason logged.
# Every run ends by reporting the served certificate's days to expiry to CloudWatch.
set -euo pipefail
umask 077
export AWS_PAGER=""

readonly REGION={q(region)}
readonly FULL_CHAIN_PARAMETER={q(parameters.full_chain)}
readonly PRIVATE_KEY_PARAMETER={q(parameters.private_key)}
readonly CA_BUNDLE_PARAMETER={q(parameters.ca_bundle)}
readonly METRIC_DIMENSIONS={q(dimensions)}
readonly IMDS={IMDS_URL}
readonly EC2_DNS_DOMAIN={q(ec2_private_dns_domain(region))}
readonly AWS_TIMEOUTS=(--cli-connect-timeout {AWS_CLI_CONNECT_TIMEOUT} --cli-read-timeout {AWS_CLI_READ_TIMEOUT})

readonly CERT={CERTIFICATE_PATH}
readonly KEY={PRIVATE_KEY_PATH}
readonly BUNDLE={BUNDLE_PATH}
readonly TRUST_CA={TRUST_CA_PATH}
readonly GATE={GATE_PATH}
readonly PINS={PINS_PATH}

# days until the served certificate's notAfter (negative once expired) -> CloudWatch.
report_days_to_expiry() {{
    local not_after expires days
    if [ ! -s "$CERT" ]; then
        echo "no certificate is served yet: nothing to report" >&2
        return 1
    fi
    not_after=$(openssl x509 -in "$CERT" -noout -enddate) || return 1
    expires=$(date -u -d "${{not_after#notAfter=}}" +%s) || return 1
    days=$(LC_ALL=C awk -v left="$((expires - $(date -u +%s)))" 'BEGIN {{ printf "%.2f", left / 86400 }}')
    echo "served certificate: ${{not_after#notAfter=}}, $days days left"
    aws cloudwatch put-metric-data "${{AWS_TIMEOUTS[@]}}" --region "$REGION" --namespace {METRIC_NAMESPACE} \\
        --metric-data "$(printf '[{{"MetricName":"{METRIC_NAME}","Dimensions":%s,"Unit":"None","Value":%s}}]' \\
            "$METRIC_DIMENSIONS" "$days")"
}}

new_cert="" new_key="" new_bundle=""
# Exit status: 0; {no_certificate} when the run failed and no certificate is installed (the unit runs again in
# {retry} s); {serving} when it failed and nginx keeps serving the previous certificate (the timer runs it again).
finish() {{
    local status=$? staged
    for staged in "$new_cert" "$new_key" "$new_bundle"; do
        if [ -n "$staged" ]; then rm -f -- "$staged"; fi
    done
    if ! report_days_to_expiry; then
        echo "could not put {METRIC_NAME} to CloudWatch" >&2
        if [ "$status" -eq 0 ]; then status=1; fi
    fi
    if [ "$status" -ne 0 ] && [ -s "$CERT" ]; then
        status={serving}
    elif [ "$status" -ne 0 ]; then
        echo "no certificate is installed yet: trying again in {retry} s" >&2
        status={no_certificate}
    fi
    exit "$status"
}}
trap finish EXIT

# The boot script installs these; if it could not reach the package repositories, every run retries.
if ! command -v nginx >/dev/null || ! command -v openssl >/dev/null; then
    echo "nginx or openssl is missing: installing them"
    dnf install -y nginx openssl
    systemctl enable nginx.service
fi

install -d -m 0755 /etc/pki/nginx
install -d -m 0700 /etc/pki/nginx/private

# Temporary files next to their targets: `mv` within one file system is atomic, and the files inherit
# the directory's SELinux context.
new_cert=$(mktemp /etc/pki/nginx/.server.crt.XXXXXX)
new_key=$(mktemp /etc/pki/nginx/private/.server.key.XXXXXX)
new_bundle=$(mktemp /etc/pki/nginx/.ca-bundle.pem.XXXXXX)

read -r -d '' SPLIT_PARAMETERS <<'PCA_BACKEND_PY_EOF' || true
{_SPLIT_PARAMETERS_PY}PCA_BACKEND_PY_EOF

# The three parameters in ONE call: a certificate is never paired with a key from another rotation.
# Bounded retries: the instance profile's credentials can lag behind the first boot by a few seconds.
fetch() {{
    local attempt status
    for attempt in 1 2 3 4 5; do
        status=0
        aws ssm get-parameters "${{AWS_TIMEOUTS[@]}}" --region "$REGION" --with-decryption --output json \\
            --names "$FULL_CHAIN_PARAMETER" "$PRIVATE_KEY_PARAMETER" "$CA_BUNDLE_PARAMETER" \\
            | python3 -c "$SPLIT_PARAMETERS" "$FULL_CHAIN_PARAMETER" "$PRIVATE_KEY_PARAMETER" \\
                "$CA_BUNDLE_PARAMETER" "$new_cert" "$new_key" "$new_bundle" || status=$?
        if [ "$status" -eq 0 ]; then return 0; fi
        if [ "$status" -ne 75 ]; then return 1; fi
        echo "could not read the parameters (attempt $attempt of 5)" >&2
        sleep $((attempt * 3))
    done
    return 1
}}

# This host's EC2 private DNS name: ip-<private IPv4 with dashes>.<EC2 domain of the region>, the IP-based name
# the launch template asks for and the certificate's EC2 wildcard covers. Derived from IMDSv2 local-ipv4, not read
# from local-hostname, which follows a custom DHCP options domain name (and may list several names):
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-naming.html
host_name() {{
    local token ipv4
    token=$(curl -sSf --connect-timeout 2 --max-time 5 --retry 3 -X PUT \\
        -H "X-aws-ec2-metadata-token-ttl-seconds: 60" "$IMDS/latest/api/token") || return 1
    ipv4=$(curl -sSf --connect-timeout 2 --max-time 5 --retry 3 -H "X-aws-ec2-metadata-token: $token" \\
        "$IMDS/latest/meta-data/local-ipv4") || return 1
    [[ $ipv4 =~ ^[0-9]{{1,3}}(\\.[0-9]{{1,3}}){{3}}$ ]] || return 1
    echo "ip-${{ipv4//./-}}.$EC2_DNS_DOMAIN"
}}

fetch
chmod 0644 "$new_cert" "$new_bundle"
chmod 0600 "$new_key"

if cmp -s "$new_cert" "$CERT" && cmp -s "$new_key" "$KEY" && cmp -s "$new_bundle" "$BUNDLE"; then
    echo "TLS material unchanged"
else
    if ! name=$(host_name); then
        reason="could not read this host's private IPv4 address from the instance metadata service (IMDSv2)"
    elif ! reason=$("$GATE" --certificate "$new_cert" --key "$new_key" --bundle "$new_bundle" --pins "$PINS" \\
        --name "$name" 2>&1); then
        reason=${{reason:-the host gate failed without a reason}}
    else
        reason=""
    fi
    if [ -n "$reason" ]; then
        echo "refused the new TLS material from SSM Parameter Store: $reason." >&2
        if [ -s "$CERT" ]; then echo "Still serving the previous certificate; nginx not reloaded" >&2; fi
        exit 1
    fi
    # Keep the current files (hard links, so the renames below leave them intact) to restore on failure.
    for file in "$CERT" "$KEY" "$BUNDLE"; do
        rm -f -- "$file.previous"
        if [ -e "$file" ]; then ln -f -- "$file" "$file.previous"; fi
    done
    if ! {{ mv -f -- "$new_cert" "$CERT" && mv -f -- "$new_key" "$KEY" && mv -f -- "$new_bundle" "$BUNDLE" \\
        && nginx -t -q; }}; then
        for file in "$CERT" "$KEY" "$BUNDLE"; do
            if [ "$file" -ef "$file.previous" ]; then
                rm -f -- "$file.previous"  # never replaced
            elif [ -e "$file.previous" ]; then
                mv -f -- "$file.previous" "$file"
            else
                rm -f -- "$file"  # first install: nothing to go back to
            fi
        done
        echo "nginx -t rejected the new TLS material: previous files restored, nginx not reloaded" >&2
        exit 1
    fi
    rm -f -- "$CERT.previous" "$KEY.previous" "$BUNDLE.previous"
    echo "installed new TLS material from SSM Parameter Store"
    if systemctl is-active --quiet nginx; then
        systemctl reload nginx
        echo "nginx reloaded"
    fi
fi
if [ -s "$CERT" ] && ! systemctl is-active --quiet nginx && systemctl is-enabled --quiet nginx; then
    # First boot, or a boot whose packages or first sync came late: nginx waits for valid material.
    systemctl start nginx
    echo "nginx started"
fi

# Idempotent: changes (and updates the trust store) only when the bundle differs from the anchors. --pins:
# it refuses a CA that is not pinned, whatever wrote the bundle file.
"$TRUST_CA" --name {TRUST_ANCHOR_NAME} --os rhel --pins "$PINS" "$BUNDLE"
"""


def _render_units(sync_interval_minutes: int) -> tuple[str, str]:
    no_certificate, serving, retry = SYNC_EXIT_NO_CERTIFICATE, SYNC_EXIT_SERVING_PREVIOUS, FIRST_SYNC_RETRY_SECONDS
    service = f"""[Unit]
Description=Install the nginx TLS certificate from SSM Parameter Store (pca-backend)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={SYNC_SCRIPT_PATH}
# A hung package install or endpoint must not keep the unit (and the next timer run) waiting forever.
TimeoutStartSec={SYNC_START_TIMEOUT}
# While no certificate is installed (exit {no_certificate}), run again in {retry} s, not at the next
# timer run: a new host must serve within the health check grace period. A failure while the previous
# certificate is served (exit {serving}) waits for the timer. Oneshot services may use
# Restart=on-failure since systemd 245 (systemd/systemd@10e7272; AL2023 runs 252), not RestartForceExitStatus=:
# https://www.freedesktop.org/software/systemd/man/252/systemd.service.html
Restart=on-failure
RestartPreventExitStatus={serving}
RestartSec={retry}
"""
    timer = f"""[Unit]
Description=Pick up a rotated TLS certificate every {sync_interval_minutes} minutes (pca-backend)

[Timer]
OnBootSec=1min
OnUnitActiveSec={sync_interval_minutes}min
# Spread the fleet's SSM calls.
RandomizedDelaySec=60

[Install]
WantedBy=timers.target
"""
    return service, timer


# A gzip member (RFC 1952) with a fixed header: no file name, MTIME 0, XFL 2 (best compression), OS 255
# (unknown). gzip.compress takes its header from zlib, whose OS byte is the platform zlib was built for, so
# a stack updated from two kinds of machine would see its user data (and every host) change.
_GZIP_HEADER = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\xff"
_GZIP_LEVEL = 9


def _gzip(data: bytes) -> bytes:
    """`data` as one gzip member whose bytes depend only on `data` (and on zlib's deflate at level 9)."""
    deflate = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY)
    body = deflate.compress(data) + deflate.flush()
    return _GZIP_HEADER + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def package_install_command(timer_unit: str) -> str:
    """A boot command: `dnf install -y nginx openssl` retried with a back-off capped at a minute, for about an hour;
    when it still fails the boot stops and `timer_unit` (whose runs install missing packages too) goes on."""
    return "\n".join(
        [
            "# No route to the package repositories yet (NAT gateway or VPC endpoints still coming up) must not",
            "# end the boot: retry with a back-off capped at a minute, for about an hour; the timer goes on after.",
            "attempt=1",
            "until dnf install -y nginx openssl; do",
            f'    if [ "$attempt" -ge {_PACKAGE_ATTEMPTS} ]; then',
            f'        echo "dnf install failed {_PACKAGE_ATTEMPTS} times; {timer_unit} keeps retrying"',
            "        exit 1",
            "    fi",
            f'    echo "dnf install nginx openssl failed (attempt $attempt of {_PACKAGE_ATTEMPTS}); retrying"',
            "    sleep $((attempt < 6 ? attempt * 10 : 60))",
            "    attempt=$((attempt + 1))",
            "done",
        ]
    )


def render_shared_payload(
    *,
    region: str,
    parameters: HostParameters,
    server_block: str,
    trust_ca_script: str,
    tls_gate_script: str,
    sync_interval_minutes: int = 15,
    metric_backend: str | None = None,
) -> HostPayload:
    """What a host of the shared mode runs, as files and boot commands: trust-ca, the host gate, the sync script,
    the nginx server block and the sync's systemd service and timer, then the commands that enable the timer,
    install nginx and openssl (dnf, retried) and start the first sync. The pins file (PINS_PATH) is not part of
    it: it comes from the launch template (see `render_user_data`).

    Arguments as for `render_user_data`. Never holds key material or certificates: only the SSM parameter names.
    Raises ValueError naming the argument when an input is not allowed.
    """
    region = check_region(region)
    parameters = _check_parameters(parameters)
    server_block = _check_text("server_block", server_block)
    trust_ca_script = _check_text("trust_ca_script", trust_ca_script, script="scripts/trust-ca")
    tls_gate_script = _check_text("tls_gate_script", tls_gate_script, script="scripts/tls-gate")
    interval = _check_interval(sync_interval_minutes)
    if metric_backend is None:
        metric_backend = posixpath.commonpath([parameters.full_chain, parameters.private_key, parameters.ca_bundle])
    sync_script = render_sync_script(region=region, parameters=parameters, metric_backend=metric_backend)
    service, timer = _render_units(interval)
    files = (
        HostFile(TRUST_CA_PATH, "0755", trust_ca_script),
        HostFile(GATE_PATH, "0755", tls_gate_script),
        HostFile(SYNC_SCRIPT_PATH, "0700", sync_script),
        HostFile(SERVER_BLOCK_PATH, "0644", server_block),
        HostFile(f"/etc/systemd/system/{SYNC_UNIT}.service", "0644", service),
        HostFile(f"/etc/systemd/system/{SYNC_UNIT}.timer", "0644", timer),
    )
    commands = (
        "\n".join(
            [
                "systemctl daemon-reload",
                "# From here on the timer retries the sync, which also installs missing packages, even if this",
                "# script stops or the host reboots: a host never stays without nginx for good.",
                f"systemctl enable --now {SYNC_UNIT}.timer",
            ]
        ),
        package_install_command(f"{SYNC_UNIT}.timer"),
        "\n".join(
            [
                "# The sync starts the enabled nginx once it installed valid material. Until then it runs again",
                f"# every {FIRST_SYNC_RETRY_SECONDS} s (exit {SYNC_EXIT_NO_CERTIFICATE}, Restart=on-failure),",
                "# inside the health check's grace period; --no-block: this script need not wait for it.",
                "systemctl enable nginx.service",
                f"systemctl start --no-block {SYNC_UNIT}.service",
                f'echo "pca-backend bootstrap done; the first TLS sync is running (journalctl -u {SYNC_UNIT})"',
            ]
        ),
    )
    return HostPayload(files=files, commands=commands)


#: How the user data writes each file of the shared payload: its heredoc delimiter, and the argument an error names.
_USER_DATA_HEREDOCS = {
    TRUST_CA_PATH: ("PCA_BACKEND_TRUST_CA_EOF", "trust_ca_script"),
    GATE_PATH: ("PCA_BACKEND_TLS_GATE_EOF", "tls_gate_script"),
    PINS_PATH: ("PCA_BACKEND_PINS_EOF", "ca_fingerprints"),
    SYNC_SCRIPT_PATH: ("PCA_BACKEND_SYNC_EOF", "sync_script"),
    SERVER_BLOCK_PATH: ("PCA_BACKEND_NGINX_EOF", "server_block"),
    f"/etc/systemd/system/{SYNC_UNIT}.service": ("PCA_BACKEND_UNIT_EOF", "service"),
    f"/etc/systemd/system/{SYNC_UNIT}.timer": ("PCA_BACKEND_UNIT_EOF", "timer"),
}


def render_user_data(
    *,
    region: str,
    parameters: HostParameters,
    server_block: str,
    trust_ca_script: str,
    tls_gate_script: str,
    ca_fingerprints: Sequence[str],
    sync_interval_minutes: int = 15,
    metric_backend: str | None = None,
) -> str:
    """The bash user-data script (cloud-init runs it once, at first boot) for an Amazon Linux 2023 host.

    `parameters` names the SSM SecureString parameters the host reads; `server_block` is the nginx server
    block (see `nginx_config.render_server_block`, with CERTIFICATE_PATH and PRIVATE_KEY_PATH);
    `trust_ca_script` and `tls_gate_script` are the contents of scripts/trust-ca and scripts/tls-gate (the
    operators' scripts/verify-tls no longer fits beside them in EC2's 16 KB). `ca_fingerprints` are the SHA-256
    fingerprints of the CA bundle's certificates (`x509.sha256_fingerprints`): the host accepts no other CA in a
    bundle, so whoever can write the parameters cannot add a trust anchor to the hosts; a new CA is a new launch
    template version.
    `metric_backend` is the backend's name, the same for every host of one backend: the `Backend` dimension
    of the `PcaBackend` / `CertificateDaysToExpiry` metric each host puts after every sync (default: the SSM
    path the three parameters share, which is already unique per backend). Every file is embedded verbatim.
    The result never contains key material or certificates, and `pack_user_data` of it fits EC2's 16 KB
    limit. Hosts launched from a launch template with this user data learn their own names from IMDSv2, so
    the same user data serves every host of an Auto Scaling group.
    It writes the files of `render_shared_payload` and the pins file, then runs the payload's commands.
    Raises ValueError naming the argument when an input is not allowed or the packed script would not fit.
    """
    payload = render_shared_payload(
        region=region,
        parameters=parameters,
        server_block=server_block,
        trust_ca_script=trust_ca_script,
        tls_gate_script=tls_gate_script,
        sync_interval_minutes=sync_interval_minutes,
        metric_backend=metric_backend,
    )
    pins = HostFile(PINS_PATH, "0644", render_pins(ca_fingerprints))
    files = list(payload.files)
    files.insert([file.path for file in files].index(GATE_PATH) + 1, pins)
    written: list[str] = []
    for file in files:
        delimiter, argument = _USER_DATA_HEREDOCS[file.path]
        written += _write_file(file.path, file.mode, file.content, delimiter, argument)
    lines = [
        "#!/bin/bash",
        "# pca-backend host bootstrap (rendered by components/host_bootstrap.py). It holds the NAMES of",
        "# the SSM parameters with the TLS material, never the material itself.",
        "set -euo pipefail",
        "# Everything this script prints goes to the journal: journalctl -t pca-backend-bootstrap",
        "exec > >(logger -t pca-backend-bootstrap -s 2>/dev/console) 2>&1",
        "",
        f"install -d -m 0755 /usr/local/sbin /etc/pki/nginx /etc/nginx/conf.d {posixpath.dirname(PINS_PATH)}",
        "install -d -m 0700 /etc/pki/nginx/private",
        *written,
        "",
        "\n\n".join(payload.commands),
    ]
    user_data = "\n".join(lines) + "\n"
    packed_size = len(_gzip(user_data.encode()))
    if packed_size > USER_DATA_LIMIT_BYTES:
        raise ValueError(
            f"the user data would be {packed_size} bytes gzip-compressed, over EC2's limit of "
            f"{USER_DATA_LIMIT_BYTES}: shorten server_block, trust_ca_script or tls_gate_script"
        )
    return user_data


def pack_user_data(script: str) -> str:
    """The launch template's `user_data` for `script`: base64 of the gzip-compressed script.

    Deterministic: the same script always gives the same text, so a later `pulumi up` sees no change.
    cloud-init uncompresses gzip user data and runs the script as if it had been sent plain:
    https://cloudinit.readthedocs.io/en/22.1_a/topics/format.html ("Gzip Compressed Content").
    Raises ValueError when the compressed script is over EC2's 16 KB limit on user data, which counts the
    bytes before base64 (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html).
    """
    if not isinstance(script, str) or not script.startswith("#!"):
        raise ValueError("script must be the boot script's text, starting with '#!' (see render_user_data)")
    packed = _gzip(script.encode())
    if len(packed) > USER_DATA_LIMIT_BYTES:
        raise ValueError(
            f"the user data is {len(packed)} bytes gzip-compressed, over EC2's limit of {USER_DATA_LIMIT_BYTES} "
            "bytes (counted before base64): shorten the boot script"
        )
    return base64.b64encode(packed).decode()
