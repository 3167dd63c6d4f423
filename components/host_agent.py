"""What a host of the per-host mode runs, as a `HostPayload`: the certificate agent and everything it calls.

Pure functions, no Pulumi. The agent (`scripts/cert-agent`, installed as AGENT_PATH) makes the host's key on the
host and gets its certificate from the per-host issuer (`components/issuer/`, behind a function URL with AWS_IAM
auth); see the script's docstring for one run. The payload holds:
- the agent, its configuration (AGENT_CONFIG_PATH: the issuer's URL, the region, the names, the key algorithm, the
  metric's dimension, and where the files live) and its systemd service and timer;
- the host gate (scripts/tls-gate) and trust-ca (scripts/trust-ca), which the agent calls as the shared mode's sync
  does, and verify-tls (scripts/verify-tls) for operators on the host;
- the nginx server block, which serves CERTIFICATE_PATH and PRIVATE_KEY_PATH;
then the boot commands: enable the timer, install nginx and openssl (dnf, retried), enable nginx, start the first
run. The pins file (PINS_PATH) is not part of it: the launch template's bootstrap writes it.

No key material, certificate or credential is ever part of the payload: the key is made on the host, and the
agent reads the instance role's credentials from IMDSv2 when it needs them.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

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
    TRUST_CA_PATH,
    VERIFY_TLS_PATH,
    check_metric_backend,
    check_region,
    check_timer_minutes,
    ec2_private_dns_domain,
    unit_boot_commands,
)
from components.host_payload import HostFile, HostPayload
from components.rules.aws import KEY_ALGORITHMS
from components.rules.names import service_name_problem

__all__ = [
    "AGENT_CONFIG_PATH",
    "AGENT_EXIT_NO_CERTIFICATE",
    "AGENT_EXIT_SERVING_PREVIOUS",
    "AGENT_EXIT_USAGE",
    "AGENT_PATH",
    "AGENT_UNIT",
    "VERIFY_TLS_PATH",
    "render_agent_config",
    "render_agent_payload",
]

AGENT_PATH = "/usr/local/sbin/pca-backend-cert-agent"
AGENT_CONFIG_PATH = "/etc/pca-backend/agent.json"
AGENT_UNIT = "pca-backend-cert-agent"
#: The agent's exit statuses, as the shared mode's sync: 75 while no certificate is installed (systemd runs it again
#: in FIRST_SYNC_RETRY_SECONDS), 1 when it failed and nginx keeps serving the previous certificate (the timer runs it
#: again), 2 for a configuration error (the timer too: a retry soon would not fix it).
AGENT_EXIT_NO_CERTIFICATE = SYNC_EXIT_NO_CERTIFICATE
AGENT_EXIT_SERVING_PREVIOUS = SYNC_EXIT_SERVING_PREVIOUS
AGENT_EXIT_USAGE = 2
#: systemd's limit on one run: dnf when packages are missing, the issuer's attempts (up to 60 s each) and back-off,
#: the gate, nginx, the trust store and the metric.
AGENT_START_TIMEOUT = "10min"

_SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
#: At most this much random delay before each timer run: hosts launched together fall due together.
_MAX_RANDOMIZED_DELAY_MINUTES = 5
#: A function URL's host: `<url-id>.lambda-url.<region>.on.aws`
#: (https://docs.aws.amazon.com/lambda/latest/dg/urls-configuration.html).
_FUNCTION_URL_HOST = re.compile(r"[a-z0-9]+\.lambda-url\.(?P<region>[a-z0-9-]+)\.on\.aws")


def _script(name: str) -> str:
    text = (_SCRIPTS / name).read_text(encoding="utf-8")
    if not text.startswith("#!"):
        raise ValueError(f"scripts/{name} must start with '#!'")
    return text


def _check_issuer_url(issuer_url: object, region: str) -> str:
    """The function URL as the agent calls it (`https://host/`), or ValueError."""
    url = urllib.parse.urlsplit(issuer_url) if isinstance(issuer_url, str) else None
    if (
        url is None
        or url.scheme != "https"
        or not url.hostname
        or url.username is not None
        or url.query
        or url.fragment
        or url.path not in ("", "/")
    ):
        raise ValueError(
            "issuer_url must be the issuer's function URL, https with no path, query or credentials, such as "
            f"'https://abcdefghij0123456789abcdefghij01.lambda-url.eu-west-1.on.aws/', got {issuer_url!r}"
        )
    function_url = _FUNCTION_URL_HOST.fullmatch(url.hostname)
    if function_url is not None and function_url["region"] != region:
        raise ValueError(
            f"issuer_url is a function URL in {function_url['region']} but region is {region}: the agent signs its "
            "requests for the function's region, so both must be the stack's region"
        )
    return urllib.parse.urlunsplit(("https", url.netloc.lower(), "/", "", ""))


def _check_service_names(service_names: object) -> list[str]:
    if isinstance(service_names, str) or not isinstance(service_names, Sequence):
        raise ValueError(f"service_names must be a list of DNS names, got {service_names!r}")
    accepted: list[str] = []
    for name in service_names:
        problem = service_name_problem(name)
        if problem is not None:
            raise ValueError(f"service_names entry {problem}")
        accepted.append(name.lower())
    return list(dict.fromkeys(accepted))


def _check_key_algorithm(key_algorithm: object) -> str:
    if key_algorithm not in KEY_ALGORITHMS:
        raise ValueError(f"key_algorithm must be one of {', '.join(KEY_ALGORITHMS)}, got {key_algorithm!r}")
    return str(key_algorithm)


def _check_server_block(server_block: object) -> str:
    if not isinstance(server_block, str) or not server_block.strip() or "\0" in server_block or "\r" in server_block:
        raise ValueError("server_block must be a non-empty nginx server block without NUL or carriage returns")
    for path in (CERTIFICATE_PATH, PRIVATE_KEY_PATH):
        if path not in server_block:
            raise ValueError(
                f"server_block must serve {CERTIFICATE_PATH} and {PRIVATE_KEY_PATH}, the files the agent installs "
                f"(nginx_config.render_server_block with them); {path} is missing"
            )
    return server_block


def render_agent_config(
    *, region: str, issuer_url: str, service_names: Sequence[str], metric_backend: str, key_algorithm: str
) -> str:
    """The agent's configuration file (JSON, AGENT_CONFIG_PATH): what `scripts/cert-agent --help` lists.

    Deterministic (sorted keys): the same arguments always give the same text. Raises ValueError naming the
    argument when an input is not allowed.
    """
    region = check_region(region)
    config = {
        "issuer_url": _check_issuer_url(issuer_url, region),
        "region": region,
        "ec2_dns_domain": ec2_private_dns_domain(region),
        "service_names": _check_service_names(service_names),
        "key_algorithm": _check_key_algorithm(key_algorithm),
        "metric_backend": check_metric_backend(metric_backend),
        "certificate_path": CERTIFICATE_PATH,
        "private_key_path": PRIVATE_KEY_PATH,
        "bundle_path": BUNDLE_PATH,
        "gate_path": GATE_PATH,
        "trust_ca_path": TRUST_CA_PATH,
        "pins_path": PINS_PATH,
    }
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def _render_units(check_interval_minutes: int) -> tuple[str, str]:
    no_certificate, serving, usage = AGENT_EXIT_NO_CERTIFICATE, AGENT_EXIT_SERVING_PREVIOUS, AGENT_EXIT_USAGE
    retry = FIRST_SYNC_RETRY_SECONDS
    delay = min(check_interval_minutes, _MAX_RANDOMIZED_DELAY_MINUTES)
    service = f"""[Unit]
Description=Keep this host's TLS certificate issued and renewed by the per-host issuer (pca-backend)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={AGENT_PATH} --config {AGENT_CONFIG_PATH}
# A hung package install, issuer or endpoint must not keep the unit (and the next timer run) waiting forever.
TimeoutStartSec={AGENT_START_TIMEOUT}
# While no certificate is installed (exit {no_certificate}), run again in {retry} s, not at the next timer run: a
# new host must serve within the health check grace period. A failure while the previous certificate is served
# (exit {serving}) and a configuration error (exit {usage}) wait for the timer. Oneshot services may use
# Restart=on-failure since systemd 245 (AL2023 runs 252):
# https://www.freedesktop.org/software/systemd/man/252/systemd.service.html
Restart=on-failure
RestartPreventExitStatus={serving} {usage}
RestartSec={retry}
"""
    timer = f"""[Unit]
Description=Check this host's TLS certificate every {check_interval_minutes} minutes, renew it when due (pca-backend)

[Timer]
OnBootSec=1min
OnUnitActiveSec={check_interval_minutes}min
# Hosts launched together fall due together: spread their requests to the issuer.
RandomizedDelaySec={delay}min

[Install]
WantedBy=timers.target
"""
    return service, timer


def render_agent_payload(
    *,
    region: str,
    issuer_url: str,
    server_block: str,
    service_names: Sequence[str],
    metric_backend: str,
    key_algorithm: str,
    check_interval_minutes: int = 15,
) -> HostPayload:
    """The files and boot commands of a per-host-mode host (see the module docstring).

    `issuer_url` is the per-host issuer's function URL (`PerHostIssuer.function_url`), in `region`, the stack's
    region, which the agent signs its requests for. `server_block` is the nginx server block
    (`nginx_config.render_server_block` with CERTIFICATE_PATH and PRIVATE_KEY_PATH). `service_names` are the
    fleet-wide DNS names every host's certificate carries besides its own EC2 name and private IPv4: the issuer's
    `service_names`, no more (it refuses any other name). `metric_backend` is the `Backend` dimension of the
    `PcaBackend` / `CertificateDaysToExpiry` metric the backend's alarm watches. `key_algorithm` is the hosts' key
    (one of components.rules.aws.KEY_ALGORITHMS). The agent runs at boot and every `check_interval_minutes`.
    Deterministic: the same arguments give the same payload. Raises ValueError naming the argument when an input
    is not allowed.
    """
    config = render_agent_config(
        region=region,
        issuer_url=issuer_url,
        service_names=service_names,
        metric_backend=metric_backend,
        key_algorithm=key_algorithm,
    )
    server_block = _check_server_block(server_block)
    service, timer = _render_units(check_timer_minutes("check_interval_minutes", check_interval_minutes))
    timer_unit = f"{AGENT_UNIT}.timer"
    files = (
        HostFile(TRUST_CA_PATH, "0755", _script("trust-ca")),
        HostFile(GATE_PATH, "0755", _script("tls-gate")),
        HostFile(VERIFY_TLS_PATH, "0755", _script("verify-tls")),
        HostFile(AGENT_PATH, "0755", _script("cert-agent")),
        HostFile(AGENT_CONFIG_PATH, "0644", config),
        HostFile(SERVER_BLOCK_PATH, "0644", server_block),
        HostFile(f"/etc/systemd/system/{AGENT_UNIT}.service", "0644", service),
        HostFile(f"/etc/systemd/system/{timer_unit}", "0644", timer),
    )
    commands = unit_boot_commands(
        AGENT_UNIT, exit_no_certificate=AGENT_EXIT_NO_CERTIFICATE, what="the certificate agent"
    )
    return HostPayload(files=files, commands=commands)
