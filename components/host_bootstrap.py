"""Render the EC2 user data that turns an Amazon Linux 2023 host into a TLS backend.

Pure functions, no Pulumi: the component and the tests call them alike.

The user data holds only the *names* of three SSM SecureString parameters (full chain, private key, CA
bundle), never their values. A sync script installed on the host fetches them at boot and again every
`sync_interval_minutes` from a systemd timer, so a rotated certificate (a routine `pulumi up` writes new
parameter values) reaches nginx without replacing the host: the user data does not change on rotation.

What the script does, in order:
1. installs nginx with dnf (the AWS CLI v2 and python3 are part of the AL2023 AMI);
2. writes `/usr/local/sbin/trust-ca` (the repository's `scripts/trust-ca`), the sync script
   `/usr/local/sbin/pca-backend-tls-sync`, the nginx server block `/etc/nginx/conf.d/pca-backend.conf` and
   a systemd service + timer for the sync;
3. runs the sync once, then enables and starts nginx.

The sync writes the certificate, key and bundle through a temporary file and `mv` (atomic), tests the
result with `nginx -t`, restores the previous files if the test fails (nginx is never reloaded onto a
broken configuration), reloads nginx only when something changed, and installs the bundle into the
host's trust store so hosts verify each other.

EC2 refuses user data above 16 KB. When the plain script does not fit, the trust-ca script (the largest
part, public source code) is embedded gzip-compressed and base64-encoded, decoded with `base64 -d | gunzip`.
"""

from __future__ import annotations

import base64
import gzip
import re
import shlex
from dataclasses import dataclass

__all__ = [
    "BUNDLE_PATH",
    "CERTIFICATE_PATH",
    "PRIVATE_KEY_PATH",
    "SERVER_BLOCK_PATH",
    "SYNC_SCRIPT_PATH",
    "TRUST_CA_PATH",
    "USER_DATA_LIMIT_BYTES",
    "HostParameters",
    "check_region",
    "is_parameter_path",
    "is_reserved_parameter_path",
    "render_sync_script",
    "render_user_data",
]

#: EC2's limit on user data, counted before base64 encoding.
USER_DATA_LIMIT_BYTES = 16 * 1024

CERTIFICATE_PATH = "/etc/pki/nginx/server.crt"
PRIVATE_KEY_PATH = "/etc/pki/nginx/private/server.key"
BUNDLE_PATH = "/etc/pki/nginx/ca-bundle.pem"
SERVER_BLOCK_PATH = "/etc/nginx/conf.d/pca-backend.conf"
TRUST_CA_PATH = "/usr/local/sbin/trust-ca"
SYNC_SCRIPT_PATH = "/usr/local/sbin/pca-backend-tls-sync"
SYNC_UNIT = "pca-backend-tls-sync"
#: Anchor name in the trust store (`trust-ca --name`).
TRUST_ANCHOR_NAME = "pca-backend"

# SSM parameter names: a fully qualified path of letters, digits and . _ - /; AWS reserves names starting
# with "aws" or "ssm" (any case). 1011 characters is AWS's maximum for a full name.
_PARAMETER_NAME_RE = re.compile(r"^(?:/[A-Za-z0-9_.-]+)+$")
_RESERVED_PARAMETER_PREFIX_RE = re.compile(r"^/?(?:aws|ssm)", re.IGNORECASE)
_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
_MAX_SYNC_INTERVAL_MINUTES = 24 * 60


@dataclass(frozen=True)
class HostParameters:
    """Names (not values) of the SSM SecureString parameters a host reads its TLS material from."""

    full_chain: str
    """The certificate followed by its intermediates (PEM), installed as the nginx certificate."""
    private_key: str
    """The certificate's private key (PEM)."""
    ca_bundle: str
    """The CA certificates (PEM) the host trusts, installed into its trust store."""


def is_parameter_path(name: object) -> bool:
    """An SSM parameter path: `/` then segments of letters, digits and . _ - (no trailing `/`)."""
    return isinstance(name, str) and bool(_PARAMETER_NAME_RE.match(name))


def is_reserved_parameter_path(name: str) -> bool:
    """AWS reserves parameter names starting with `aws` or `ssm`, in any case."""
    return bool(_RESERVED_PARAMETER_PREFIX_RE.match(name))


def check_region(region: object) -> str:
    """`region`, or ValueError unless it looks like an AWS region name."""
    if not isinstance(region, str) or not _REGION_RE.match(region):
        raise ValueError(f"region must be an AWS region name such as 'eu-west-1', got {region!r}")
    return region


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


def _check_text(argument: str, value: str, *, shebang: bool = False) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{argument} must be a non-empty string")
    if "\0" in value or "\r" in value:
        raise ValueError(f"{argument} must not contain NUL or carriage-return characters")
    if shebang and not value.startswith("#!"):
        raise ValueError(f"{argument} must be a script starting with '#!' (the content of scripts/trust-ca)")
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


def _write_compressed_file(path: str, mode: str, content: str, delimiter: str, argument: str) -> list[str]:
    # mtime=0: the same input always gives the same bytes, so the user data (and the instance) stays
    # unchanged from one `pulumi up` to the next.
    packed = base64.b64encode(gzip.compress(content.encode(), compresslevel=9, mtime=0)).decode()
    wrapped = "\n".join(packed[i : i + 76] for i in range(0, len(packed), 76))
    return [
        *_heredoc(f"base64 -d >{path}.gz", delimiter, wrapped, argument),
        f"gunzip -c {path}.gz >{path}",
        f"rm -f {path}.gz",
        f"chmod {mode} {path}",
    ]


def render_sync_script(*, region: str, parameters: HostParameters) -> str:
    """The bash script installed as /usr/local/sbin/pca-backend-tls-sync (run by a systemd timer).

    It fetches the three parameters with `aws ssm get-parameter --with-decryption`, installs them
    atomically, runs `nginx -t` (restoring the previous files when it fails), reloads nginx only when a
    file changed, and installs the CA bundle into the trust store with trust-ca.
    Raises ValueError naming the argument when an input is not allowed.
    """
    region = check_region(region)
    parameters = _check_parameters(parameters)
    q = shlex.quote
    return f"""#!/bin/bash
# Install the TLS certificate, key and CA bundle kept in SSM Parameter Store (rendered by
# components/host_bootstrap.py). Run at boot and by {SYNC_UNIT}.timer: a rotated certificate reaches nginx
# without replacing the host. Exits non-zero (and changes nothing) when a parameter cannot be read or
# nginx rejects the new material.
set -euo pipefail
umask 077
export AWS_PAGER=""

readonly REGION={q(region)}
readonly FULL_CHAIN_PARAMETER={q(parameters.full_chain)}
readonly PRIVATE_KEY_PARAMETER={q(parameters.private_key)}
readonly CA_BUNDLE_PARAMETER={q(parameters.ca_bundle)}

readonly CERT={CERTIFICATE_PATH}
readonly KEY={PRIVATE_KEY_PATH}
readonly BUNDLE={BUNDLE_PATH}

install -d -m 0755 /etc/pki/nginx
install -d -m 0700 /etc/pki/nginx/private

# Temporary files next to their targets: `mv` within one file system is atomic, and the files inherit
# the directory's SELinux context.
new_cert=$(mktemp /etc/pki/nginx/.server.crt.XXXXXX)
new_key=$(mktemp /etc/pki/nginx/private/.server.key.XXXXXX)
new_bundle=$(mktemp /etc/pki/nginx/.ca-bundle.pem.XXXXXX)
trap 'rm -f -- "$new_cert" "$new_key" "$new_bundle"' EXIT

# fetch NAME DEST [BEGIN-LINE]: the decrypted value of parameter NAME into DEST. Bounded retries: the
# instance profile's credentials can lag behind the first boot by a few seconds.
fetch() {{
    local name=$1 dest=$2 marker=$3 attempt
    for attempt in 1 2 3 4 5; do
        if aws ssm get-parameter --region "$REGION" --name "$name" --with-decryption \\
            --query Parameter.Value --output text >"$dest"; then
            if ! grep -q -- "$marker" "$dest"; then
                echo "parameter $name does not hold the expected PEM data ($marker)" >&2
                return 1
            fi
            return 0
        fi
        echo "could not read parameter $name (attempt $attempt of 5)" >&2
        sleep $((attempt * 3))
    done
    return 1
}}

fetch "$FULL_CHAIN_PARAMETER" "$new_cert" '-----BEGIN CERTIFICATE-----'
fetch "$PRIVATE_KEY_PARAMETER" "$new_key" '-----BEGIN '
fetch "$CA_BUNDLE_PARAMETER" "$new_bundle" '-----BEGIN CERTIFICATE-----'
chmod 0644 "$new_cert" "$new_bundle"
chmod 0600 "$new_key"

if cmp -s "$new_cert" "$CERT" && cmp -s "$new_key" "$KEY" && cmp -s "$new_bundle" "$BUNDLE"; then
    echo "TLS material unchanged"
else
    # Keep the current files (hard links, so the renames below leave them intact) to restore on failure.
    for file in "$CERT" "$KEY" "$BUNDLE"; do
        rm -f -- "$file.previous"
        if [ -e "$file" ]; then ln -f -- "$file" "$file.previous"; fi
    done
    if ! {{ mv -f -- "$new_cert" "$CERT" && mv -f -- "$new_key" "$KEY" && mv -f -- "$new_bundle" "$BUNDLE" \
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
    elif systemctl is-enabled --quiet nginx; then
        # First boot, or a boot whose first sync failed: nginx waits for valid material to start.
        systemctl start nginx
        echo "nginx started"
    fi
fi

# Idempotent: changes (and updates the trust store) only when the bundle differs from the anchors.
{TRUST_CA_PATH} --name {TRUST_ANCHOR_NAME} --os rhel "$BUNDLE"
"""


def _render_units(sync_interval_minutes: int) -> tuple[str, str]:
    service = f"""[Unit]
Description=Install the nginx TLS certificate from SSM Parameter Store (pca-backend)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={SYNC_SCRIPT_PATH}
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


def render_user_data(
    *,
    region: str,
    parameters: HostParameters,
    server_block: str,
    trust_ca_script: str,
    sync_interval_minutes: int = 15,
) -> str:
    """The bash user-data script (cloud-init runs it once, at first boot) for an Amazon Linux 2023 host.

    `parameters` names the SSM SecureString parameters the host reads; `server_block` is the nginx server
    block (see `nginx_config.render_server_block`, with CERTIFICATE_PATH and PRIVATE_KEY_PATH);
    `trust_ca_script` is the content of scripts/trust-ca. The result never contains key material or
    certificates and stays within EC2's 16 KB limit.
    Raises ValueError naming the argument when an input is not allowed or the script would not fit.
    """
    region = check_region(region)
    parameters = _check_parameters(parameters)
    server_block = _check_text("server_block", server_block)
    trust_ca_script = _check_text("trust_ca_script", trust_ca_script, shebang=True)
    interval = _check_interval(sync_interval_minutes)

    sync_script = render_sync_script(region=region, parameters=parameters)
    service, timer = _render_units(interval)

    def render(compress_trust_ca: bool) -> str:
        write_trust_ca = _write_compressed_file if compress_trust_ca else _write_file
        lines = [
            "#!/bin/bash",
            "# pca-backend host bootstrap (rendered by components/host_bootstrap.py). It holds the NAMES of",
            "# the SSM parameters with the TLS material, never the material itself.",
            "set -euo pipefail",
            "# Everything this script prints goes to the journal: journalctl -t pca-backend-bootstrap",
            "exec > >(logger -t pca-backend-bootstrap -s 2>/dev/console) 2>&1",
            "",
            "for attempt in 1 2 3 4 5; do",
            "    if dnf install -y nginx; then break; fi",
            '    echo "dnf install nginx failed (attempt $attempt of 5)"',
            "    sleep $((attempt * 10))",
            "done",
            "command -v nginx >/dev/null",
            "",
            "install -d -m 0755 /usr/local/sbin /etc/pki/nginx",
            "install -d -m 0700 /etc/pki/nginx/private",
            *write_trust_ca(TRUST_CA_PATH, "0755", trust_ca_script, "PCA_BACKEND_TRUST_CA_EOF", "trust_ca_script"),
            *_write_file(SYNC_SCRIPT_PATH, "0700", sync_script, "PCA_BACKEND_SYNC_EOF", "sync_script"),
            *_write_file(SERVER_BLOCK_PATH, "0644", server_block, "PCA_BACKEND_NGINX_EOF", "server_block"),
            *_write_file(
                f"/etc/systemd/system/{SYNC_UNIT}.service", "0644", service, "PCA_BACKEND_UNIT_EOF", "service"
            ),
            *_write_file(f"/etc/systemd/system/{SYNC_UNIT}.timer", "0644", timer, "PCA_BACKEND_UNIT_EOF", "timer"),
            "",
            "systemctl daemon-reload",
            "# Enabled before the first sync: the sync starts an enabled nginx once valid material is in place,",
            "# so if this first sync fails, the timer's next successful run brings nginx up.",
            "systemctl enable nginx.service",
            f"systemctl enable --now {SYNC_UNIT}.timer",
            f"systemctl start {SYNC_UNIT}.service",
            "systemctl enable --now nginx.service",
            'echo "pca-backend bootstrap done"',
        ]
        return "\n".join(lines) + "\n"

    user_data = render(compress_trust_ca=False)
    if len(user_data.encode()) > USER_DATA_LIMIT_BYTES:
        user_data = render(compress_trust_ca=True)
    size = len(user_data.encode())
    if size > USER_DATA_LIMIT_BYTES:
        raise ValueError(
            f"the user data would be {size} bytes, over EC2's limit of {USER_DATA_LIMIT_BYTES}: "
            "shorten server_block or trust_ca_script"
        )
    return user_data
