"""Render what turns an Amazon Linux 2023 host into a TLS backend: a host payload and the bootstrap that runs it.

Pure functions, no Pulumi: the components and the tests call them alike.

Three pieces, from the launch template down:

1. The **bootstrap** (`render_bootstrap`), the launch template's user data: a small bash script that writes the
   pins file `/etc/pca-backend/ca-pins` (SHA-256 fingerprints of the stack's CA certificates, the only CAs a host
   accepts in a bundle: they come from the launch template, not from whoever can write the key material),
   downloads the host payload from the fleet's S3 bucket, checks its SHA-256 against the one it carries, and runs
   it, or refuses it and exits non-zero. EC2 limits user data to 16 KB, counted "in raw form, before it is
   base64-encoded" (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html); the
   bootstrap is about 2 KB plus 65 bytes a pin, so it is carried as it is (`pack_user_data`: base64, no gzip).
2. The **install script** (`render_install_script`) of a `HostPayload` (`components/host_payload.py`): bash that
   writes every file verbatim with its mode through quoted heredocs, then runs the payload's commands.
   `pack_payload` names it by the SHA-256 of its bytes (`hosts/<sha256>.sh`), the object the fleet uploads.
3. The **shared mode's payload** (`render_shared_payload`): `trust-ca`, the host gate, `verify-tls`, the sync
   script, its systemd service and timer and the nginx server block; then enable the timer, install nginx with dnf
   (retried), start the first sync. It holds only the *names* of three SSM SecureString parameters (full chain,
   private key, CA bundle), never their values: the sync fetches them at boot and every `sync_interval_minutes`,
   so a rotated certificate (a routine `pulumi up` writes new parameter values) reaches nginx without replacing
   the host. The first sync starts nginx once valid material is installed and, until then, runs again every
   FIRST_SYNC_RETRY_SECONDS (well inside the load balancer's health check grace period).

The sync lets the host gate decide on a new set (certificate, key, bundle), writes it through a temporary file and
`mv` (atomic), tests the result with `nginx -t`, restores the previous files if the test fails (nginx is never
reloaded onto a broken configuration), reloads nginx only when something changed, and installs the bundle into
the host's trust store so hosts verify each other.

Nothing here is compressed: the bytes a host checks are the bytes rendered, on every machine. (Deflate output is not
the same everywhere: zlib-ng, Fedora's zlib since Fedora 40, https://fedoraproject.org/wiki/Changes/ZlibNGTransition,
compresses the same input to other bytes than classic zlib; a digest of compressed bytes would move with the
machine that runs `pulumi up` and roll every host.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from components.host_payload import HostFile, HostPayload, holds_key_material
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
    "PAYLOAD_DIR",
    "PAYLOAD_KEY_PREFIX",
    "PAYLOAD_READ_ACTION",
    "PINS_PATH",
    "PRIVATE_KEY_PATH",
    "SERVER_BLOCK_PATH",
    "SYNC_EXIT_NO_CERTIFICATE",
    "SYNC_EXIT_SERVING_PREVIOUS",
    "SYNC_SCRIPT_PATH",
    "TRUST_CA_PATH",
    "USER_DATA_LIMIT_BYTES",
    "VERIFY_TLS_PATH",
    "HostParameters",
    "PackedPayload",
    "check_bootstrap",
    "check_metric_backend",
    "check_region",
    "check_timer_minutes",
    "ec2_private_dns_domain",
    "is_parameter_path",
    "is_reserved_parameter_path",
    "pack_payload",
    "pack_user_data",
    "package_install_command",
    "render_bootstrap",
    "render_install_script",
    "render_pins",
    "render_shared_payload",
    "render_sync_script",
    "unit_boot_commands",
]

#: EC2's limit on user data, counted before base64 encoding.
USER_DATA_LIMIT_BYTES = 16 * 1024

CERTIFICATE_PATH = "/etc/pki/nginx/server.crt"
PRIVATE_KEY_PATH = "/etc/pki/nginx/private/server.key"
BUNDLE_PATH = "/etc/pki/nginx/ca-bundle.pem"
SERVER_BLOCK_PATH = "/etc/nginx/conf.d/pca-backend.conf"
TRUST_CA_PATH = "/usr/local/sbin/trust-ca"
#: The host gate (scripts/tls-gate): every set of key material passes it before nginx or the trust store sees it.
GATE_PATH = "/usr/local/sbin/pca-backend-tls-gate"
#: The operators' TLS check (scripts/verify-tls), on every host for anyone who logs in (Session Manager).
VERIFY_TLS_PATH = "/usr/local/bin/verify-tls"
#: Root-owned, public: the SHA-256 fingerprints of the stack's CA certificates, written by the bootstrap from the
#: launch template before any payload runs.
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
#: Key prefix of the payloads in the fleet's bucket (`hosts/<sha256>.sh`): the host role may read this prefix only.
PAYLOAD_KEY_PREFIX = "hosts/"
#: The one S3 action the bootstrap calls (`aws s3api get-object`).
PAYLOAD_READ_ACTION = "s3:GetObject"
#: Root-only directory where the bootstrap keeps the payload it verified and ran (`payload-<sha256>.sh`).
PAYLOAD_DIR = "/var/lib/pca-backend"

#: The longest a host timer (the sync, the agent) waits between two runs.
TIMER_MINUTES_MAX = 24 * 60
# A SHA-256 digest as the hosts write it (sha256sum, x509.sha256_fingerprints): 64 lowercase hex digits.
_SHA256_HEX_RE = re.compile(r"[0-9a-f]{64}")
#: Attempts of a boot step that waits for the network (the payload's download, the package install): with a
#: back-off capped at a minute, about an hour.
RETRY_ATTEMPTS = 60


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
        if not isinstance(fingerprint, str) or not _SHA256_HEX_RE.fullmatch(fingerprint):
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


def check_timer_minutes(argument: str, minutes: object) -> int:
    """`minutes` between two runs of a host's timer (1 to a day), or ValueError naming `argument`."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= TIMER_MINUTES_MAX:
        raise ValueError(f"{argument} must be an integer from 1 to {TIMER_MINUTES_MAX}, got {minutes!r}")
    return minutes


def _check_text(argument: str, value: str, *, script: str | None = None) -> str:
    """`value`, or ValueError naming `argument`; `script` (a repository path) asks for a `#!` first line."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{argument} must be a non-empty string")
    if "\0" in value or "\r" in value:
        raise ValueError(f"{argument} must not contain NUL or carriage-return characters")
    if script is not None and not value.startswith("#!"):
        raise ValueError(f"{argument} must be a script starting with '#!' (the content of {script})")
    if holds_key_material(value):
        raise ValueError(f"{argument} must not contain key material")
    return value


def _heredoc(command: str, delimiter: str, content: str, argument: str) -> list[str]:
    """`command <<'DELIMITER'` followed by `content` verbatim (quoted delimiter: no expansion at all). Lines are
    split at "\n" only, as bash reads them (str.splitlines would also split at form feeds, CR, U+2028...)."""
    lines = content.removesuffix("\n").split("\n")
    if delimiter in lines:
        raise ValueError(f"{argument} must not contain a line reading {delimiter!r}")
    return [f"{command} <<'{delimiter}'", *lines, delimiter]


def _write_file(path: str, mode: str, content: str, delimiter: str, argument: str) -> list[str]:
    """Bash that writes `content` to `path` byte for byte, then gives it `mode`.

    A heredoc always ends its text with a newline: a content without one gets its last byte (that newline) cut
    again (`truncate -s -1`); an empty content is written without a heredoc.
    """
    if "\0" in content:
        raise ValueError(f"{argument} must not contain NUL characters (bash cannot write them from a heredoc)")
    quoted = shlex.quote(path)
    if not content:
        return [f": >{quoted}", f"chmod {mode} {quoted}"]
    lines = _heredoc(f"cat >{quoted}", delimiter, content, argument)
    if not content.endswith("\n"):
        lines.append(f"truncate -s -1 {quoted}")
    return [*lines, f"chmod {mode} {quoted}"]


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

# The payload installs these at boot; if it could not reach the package repositories, every run retries.
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


def _retried_for_an_hour(command: str, *, retrying: str, giving_up: Sequence[str]) -> list[str]:
    """Bash lines running `command` until it succeeds, with a back-off capped at a minute, RETRY_ATTEMPTS times
    (about an hour); `retrying` is echoed after each failure (`$attempt` is the attempt's number), `giving_up` runs
    before the script exits 1 when the last attempt fails."""
    return [
        "attempt=1",
        f"until {command}; do",
        f'    if [ "$attempt" -ge {RETRY_ATTEMPTS} ]; then',
        *(f"        {line}" for line in giving_up),
        "        exit 1",
        "    fi",
        f'    echo "{retrying}"',
        "    sleep $((attempt < 6 ? attempt * 10 : 60))",
        "    attempt=$((attempt + 1))",
        "done",
    ]


def package_install_command(timer_unit: str) -> str:
    """A boot command: `dnf install -y nginx openssl` retried with a back-off capped at a minute, for about an hour;
    when it still fails the boot stops and `timer_unit` (whose runs install missing packages too) goes on."""
    return "\n".join(
        [
            "# No route to the package repositories yet (NAT gateway or VPC endpoints still coming up) must not",
            "# end the boot: retry with a back-off capped at a minute, for about an hour; the timer goes on after.",
            *_retried_for_an_hour(
                "dnf install -y nginx openssl",
                retrying=f"dnf install nginx openssl failed (attempt $attempt of {RETRY_ATTEMPTS}); retrying",
                giving_up=[f'echo "dnf install failed {RETRY_ATTEMPTS} times; {timer_unit} keeps retrying"'],
            ),
        ]
    )


def render_shared_payload(
    *,
    region: str,
    parameters: HostParameters,
    server_block: str,
    trust_ca_script: str,
    tls_gate_script: str,
    verify_tls_script: str,
    sync_interval_minutes: int = 15,
    metric_backend: str | None = None,
) -> HostPayload:
    """What a host of the shared mode runs: trust-ca, the host gate, verify-tls, the sync script, the nginx server
    block and the sync's systemd service and timer, then the commands that enable the timer, install nginx and
    openssl (dnf, retried) and start the first sync. The pins file (PINS_PATH) is not part of it: the bootstrap
    writes it from the launch template before the payload runs.

    `parameters` names the SSM SecureString parameters the host reads; `server_block` is the nginx server block
    (see `nginx_config.render_server_block`, with CERTIFICATE_PATH and PRIVATE_KEY_PATH); `trust_ca_script`,
    `tls_gate_script` and `verify_tls_script` are the contents of scripts/trust-ca, scripts/tls-gate and
    scripts/verify-tls. `metric_backend` is the backend's name, the same for every host of one backend: the
    `Backend` dimension of the `PcaBackend` / `CertificateDaysToExpiry` metric each host puts after every sync
    (default: the SSM path the three parameters share, which is already unique per backend). Hosts learn their own
    names from IMDSv2, so the same payload serves every host of an Auto Scaling group.
    Never holds key material or certificates: only the SSM parameter names.
    Raises ValueError naming the argument when an input is not allowed.
    """
    region = check_region(region)
    parameters = _check_parameters(parameters)
    server_block = _check_text("server_block", server_block)
    trust_ca_script = _check_text("trust_ca_script", trust_ca_script, script="scripts/trust-ca")
    tls_gate_script = _check_text("tls_gate_script", tls_gate_script, script="scripts/tls-gate")
    verify_tls_script = _check_text("verify_tls_script", verify_tls_script, script="scripts/verify-tls")
    interval = check_timer_minutes("sync_interval_minutes", sync_interval_minutes)
    if metric_backend is None:
        metric_backend = posixpath.commonpath([parameters.full_chain, parameters.private_key, parameters.ca_bundle])
    sync_script = render_sync_script(region=region, parameters=parameters, metric_backend=metric_backend)
    service, timer = _render_units(interval)
    files = (
        HostFile(TRUST_CA_PATH, "0755", trust_ca_script),
        HostFile(GATE_PATH, "0755", tls_gate_script),
        HostFile(VERIFY_TLS_PATH, "0755", verify_tls_script),
        HostFile(SYNC_SCRIPT_PATH, "0700", sync_script),
        HostFile(SERVER_BLOCK_PATH, "0644", server_block),
        HostFile(f"/etc/systemd/system/{SYNC_UNIT}.service", "0644", service),
        HostFile(f"/etc/systemd/system/{SYNC_UNIT}.timer", "0644", timer),
    )
    commands = unit_boot_commands(SYNC_UNIT, exit_no_certificate=SYNC_EXIT_NO_CERTIFICATE, what="the first TLS sync")
    return HostPayload(files=files, commands=commands)


def unit_boot_commands(unit: str, *, exit_no_certificate: int, what: str) -> tuple[str, ...]:
    """A payload's commands for a oneshot `unit` run by `<unit>.timer` that installs the TLS material and starts
    nginx: enable the timer first (from then on it retries, and installs missing packages, even if the boot stops
    or the host reboots), install nginx and openssl, then start the first run without waiting for it. Until the
    first run installs a certificate, systemd runs it again every FIRST_SYNC_RETRY_SECONDS (`exit_no_certificate`,
    Restart=on-failure), inside the load balancer's health-check grace period. `what` names the run in the log."""
    timer = f"{unit}.timer"
    return (
        "\n".join(
            [
                "systemctl daemon-reload",
                "# From here on the timer retries, and installs missing packages, even if this script stops or the",
                "# host reboots: a host never stays without nginx for good.",
                f"systemctl enable --now {timer}",
            ]
        ),
        package_install_command(timer),
        "\n".join(
            [
                "# The run starts the enabled nginx once it installed a certificate. Until then it runs again every",
                f"# {FIRST_SYNC_RETRY_SECONDS} s (exit {exit_no_certificate}, Restart=on-failure); --no-block: this",
                "# script need not wait for it.",
                "systemctl enable nginx.service",
                f"systemctl start --no-block {unit}.service",
                f'echo "pca-backend payload done; {what} is running (journalctl -u {unit})"',
            ]
        ),
    )


def render_install_script(payload: HostPayload) -> str:
    """The bash script that installs `payload` on a host: every file written verbatim with its mode (root-owned:
    the bootstrap runs it as root), the directories they need created (existing ones left as they are), then the
    payload's commands in order. `set -euo pipefail`: a failing command stops it, with a non-zero exit.

    Deterministic: the same payload always gives the same text. Raises ValueError naming the file or command
    that cannot be written (a NUL character, a line that reads like this script's heredoc delimiter) or that
    holds key material.
    """
    if not isinstance(payload, HostPayload):
        raise ValueError(f"payload must be a HostPayload, got {type(payload).__name__}")
    for index, command in enumerate(payload.commands, 1):
        if not isinstance(command, str) or "\0" in command:
            raise ValueError(f"payload command {index} must be shell text without NUL characters")
        if holds_key_material(command):
            raise ValueError(f"payload command {index} must not hold key material: payloads are not secret")
    directories = sorted({posixpath.dirname(file.path) for file in payload.files} - {"/"})
    lines = [
        "#!/bin/bash",
        "# pca-backend host payload (rendered by components/host_bootstrap.py): installs its files, then runs its",
        "# commands. The bootstrap in the launch template runs it once its SHA-256 matches the one it carries.",
        "set -euo pipefail",
        "umask 022",
        "",
    ]
    if directories:
        lines.append("mkdir -p -- " + " ".join(shlex.quote(directory) for directory in directories))
    for index, file in enumerate(payload.files, 1):
        lines += _write_file(file.path, file.mode, file.content, f"PCA_BACKEND_FILE_{index}_EOF", f"file {file.path}")
    lines += [
        f'echo "pca-backend payload: {len(payload.files)} files installed, running {len(payload.commands)} commands"',
        *[f"\n{command}" for command in payload.commands],
    ]
    return "\n".join(lines) + "\n"


# S3 general purpose bucket names: 3-63 lowercase letters, digits, dots and hyphens, a letter or digit at each end
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class PackedPayload:
    """A payload as the fleet stores it: its install script, named by the SHA-256 of the script's bytes."""

    script: str
    """The install script (`render_install_script`), uploaded as it is (UTF-8)."""
    sha256: str
    """SHA-256 of the script's UTF-8 bytes, 64 lowercase hex digits: what the bootstrap checks."""

    @property
    def key(self) -> str:
        """The object's key: `hosts/<sha256>.sh`. A new payload is a new object; the old one stays for hosts
        launched from older launch template versions."""
        return f"{PAYLOAD_KEY_PREFIX}{self.sha256}.sh"


def pack_payload(payload: HostPayload) -> PackedPayload:
    """`payload`'s install script and its SHA-256 (deterministic: the same payload gives the same bytes)."""
    script = render_install_script(payload)
    return PackedPayload(script=script, sha256=hashlib.sha256(script.encode()).hexdigest())


def render_bootstrap(*, region: str, bucket: str, key: str, sha256: str, ca_fingerprints: Sequence[str]) -> str:
    """The launch template's user data: a bash script (cloud-init runs it once, at first boot, as root) that

    - sends everything it and the payload print to the journal (`journalctl -t pca-backend-bootstrap`);
    - writes the pins file (PINS_PATH) from `ca_fingerprints`, the SHA-256 fingerprints of the stack's CA
      certificates (`x509.sha256_fingerprints`): the host accepts no other CA in a bundle, so whoever can write the
      key material cannot add a trust anchor to the hosts; a new CA is a new launch template version;
    - downloads `s3://<bucket>/<key>` with the AWS CLI (`aws s3api get-object` in `region`, connect/read timeouts),
      retrying with a back-off capped at a minute for about an hour: the instance profile's credentials, the role's
      policy and the route to S3 (a NAT gateway, or the S3 gateway endpoint) can lag the first boot;
    - checks the download's SHA-256 against `sha256` and refuses anything else: it says why and exits non-zero,
      and nothing of the download runs;
    - keeps it as `PAYLOAD_DIR/payload-<sha256>.sh` (root only) and runs it with bash.

    Never holds key material or certificates. Raises ValueError naming the argument when an input is not allowed or
    the script would exceed EC2's 16 KB of user data.
    """
    region = check_region(region)
    if not isinstance(bucket, str) or not _BUCKET_RE.fullmatch(bucket):
        raise ValueError(f"bucket must be an S3 bucket name (3-63 lowercase letters, digits, '.', '-'), got {bucket!r}")
    if not isinstance(sha256, str) or not _SHA256_HEX_RE.fullmatch(sha256):
        raise ValueError(f"sha256 must be a SHA-256 digest as 64 lowercase hex digits, got {sha256!r}")
    if key != f"{PAYLOAD_KEY_PREFIX}{sha256}.sh":
        raise ValueError(f"key must be the payload's content address {PAYLOAD_KEY_PREFIX}<sha256>.sh, got {key!r}")
    pins = render_pins(ca_fingerprints)
    q = shlex.quote
    source = "s3://$PAYLOAD_BUCKET/$PAYLOAD_KEY"
    lines = [
        "#!/bin/bash",
        "# pca-backend host bootstrap (rendered by components/host_bootstrap.py). It writes the CA pins this launch",
        "# template carries, then downloads the host payload from S3 and runs it only if its SHA-256 is the one below.",
        "# No key material, no certificate.",
        "set -euo pipefail",
        "umask 022",
        'export AWS_PAGER=""',
        "# Everything this script and the payload print goes to the journal: journalctl -t pca-backend-bootstrap",
        "exec > >(logger -t pca-backend-bootstrap -s 2>/dev/console) 2>&1",
        "",
        f"readonly REGION={q(region)}",
        f"readonly PAYLOAD_BUCKET={q(bucket)}",
        f"readonly PAYLOAD_KEY={q(key)}",
        f"readonly PAYLOAD_SHA256={sha256}",
        f"readonly PAYLOAD={PAYLOAD_DIR}/payload-{sha256}.sh",
        "",
        f"install -d -m 0755 {posixpath.dirname(PINS_PATH)}",
        *_write_file(PINS_PATH, "0644", pins, "PCA_BACKEND_PINS_EOF", "ca_fingerprints"),
        "",
        f"install -d -m 0700 {PAYLOAD_DIR}",
        f'download=$(mktemp "{PAYLOAD_DIR}/.payload.XXXXXX")',
        "# The instance profile's credentials, the role's policy and the route to S3 (NAT gateway or S3 gateway",
        "# endpoint) can lag the first boot: retry with a back-off capped at a minute, for about an hour.",
        *_retried_for_an_hour(
            f'aws s3api get-object --region "$REGION" --cli-connect-timeout {AWS_CLI_CONNECT_TIMEOUT} \\\n'
            f'    --cli-read-timeout {AWS_CLI_READ_TIMEOUT} --bucket "$PAYLOAD_BUCKET" --key "$PAYLOAD_KEY" \\\n'
            '    "$download" >/dev/null',
            retrying=f"could not download the host payload {source} (attempt $attempt of {RETRY_ATTEMPTS}); retrying",
            giving_up=[
                f'echo "could not download the host payload {source} in {RETRY_ATTEMPTS} attempts: nothing installed"',
                'rm -f -- "$download"',
            ],
        ),
        'actual=$(sha256sum "$download" | cut -d " " -f 1)',
        'if [ "$actual" != "$PAYLOAD_SHA256" ]; then',
        (
            f'    echo "refused the host payload {source}: its SHA-256 is $actual, not the $PAYLOAD_SHA256 '
            'the launch template pins: nothing of it runs"'
        ),
        '    rm -f -- "$download"',
        "    exit 1",
        "fi",
        'mv -f -- "$download" "$PAYLOAD"',
        f'echo "host payload {source} verified (SHA-256 $PAYLOAD_SHA256): running it"',
        'bash "$PAYLOAD"',
    ]
    bootstrap = "\n".join(lines) + "\n"
    size = len(bootstrap.encode())
    if size > USER_DATA_LIMIT_BYTES:
        raise ValueError(
            f"the user data would be {size} bytes, over EC2's limit of {USER_DATA_LIMIT_BYTES}: "
            f"ca_fingerprints pins {len(ca_fingerprints)} CA certificates, too many for a launch template"
        )
    return bootstrap


def check_bootstrap(*, region: str, ca_fingerprints: Sequence[str]) -> None:
    """Raise ValueError, before any resource exists, when no bootstrap for these pins fits EC2's user-data limit
    (`render_bootstrap` with the longest bucket name S3 allows and a stand-in digest)."""
    stand_in = "0" * 64
    render_bootstrap(
        region=region,
        bucket="b" * 63,
        key=f"{PAYLOAD_KEY_PREFIX}{stand_in}.sh",
        sha256=stand_in,
        ca_fingerprints=ca_fingerprints,
    )


def pack_user_data(script: str) -> str:
    """The launch template's `user_data` for `script`: its UTF-8 bytes, base64-encoded (as the EC2 API takes them).

    Deterministic and not compressed: the same script always gives the same text on every machine, so a later
    `pulumi up` sees no change. Raises ValueError when the script is over EC2's 16 KB limit on user data, which
    counts the bytes before base64 (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html).
    """
    if not isinstance(script, str) or not script.startswith("#!"):
        raise ValueError("script must be the boot script's text, starting with '#!' (see render_bootstrap)")
    raw = script.encode()
    if len(raw) > USER_DATA_LIMIT_BYTES:
        raise ValueError(
            f"the user data is {len(raw)} bytes, over EC2's limit of {USER_DATA_LIMIT_BYTES} bytes (counted before "
            "base64): shorten the boot script"
        )
    return base64.b64encode(raw).decode()
