"""How key material reaches the hosts: the seam between the host fleet and the delivery its caller chooses.

The fleet (`components/host_fleet.py`) runs nginx on its hosts; a delivery puts a certificate and its key on
each host and keeps them current. The caller of `EncryptedBackend` (or of `HostFleet`) chooses one:

- `SsmKeyDelivery` (`components/ssm_key_delivery.py`, mode `shared`): one certificate for the whole fleet,
  written by `pulumi up` into SSM SecureString parameters under a customer-managed KMS key; each host reads
  them at boot and on a timer.
- `PerHostDelivery` (`components/per_host_delivery.py`, mode `per-host`): each host makes its own key and asks an
  issuer for its certificate. It needs the host role's ARN (the issuer's resource policy names it), a group name
  known before the group exists (the issuer checks callers belong to it, and the hosts' payload carries the
  issuer's URL, so neither can wait for the other), its own payload and host-role statements.

A delivery describes the software its hosts run as a `HostPayload` (`components/host_payload.py`: files, then
commands) and gives the fleet the SHA-256 fingerprints of the CA certificates its hosts may trust. The fleet stores
the payload in its own S3 bucket under a content-addressed key and gives the launch template a small bootstrap
(`host_bootstrap.render_bootstrap`) that writes those pins, downloads the payload, checks its SHA-256 and runs it.
So a payload has no size limit, and the pins come from the launch template, never from the delivery's channel.

The fleet is built in this order, which is why a delivery has two steps:

1. Before anything is registered, `check(hosts)`: a delivery raises ValueError naming what cannot work for these
   hosts (e.g. a payload that cannot be rendered, `host_bootstrap.render_install_script`, or pins that make the
   bootstrap exceed EC2's user-data limit, `host_bootstrap.check_bootstrap`), so bad input creates nothing.
2. The fleet creates its security group and its role, then calls `deliver(name, fleet, opts)`. The delivery
   creates its resources (as children of `opts.parent`) knowing the role's ARN and, when
   `needs_auto_scaling_group_name`, the name the fleet will give its Auto Scaling group.
3. With what `deliver` returned (`HostSupply`), the fleet uploads the payload, writes the role's policy (the
   delivery's statements, then its own: reading the payloads among them), the launch template (the bootstrap with
   the pins and the payload's address and digest) and the group, which waits for the payload and for
   `HostSupply.wait_for` before it launches a host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi

from components import x509
from components.host_payload import HostPayload

__all__ = [
    "DeliveryTexts",
    "FleetIdentity",
    "HostContext",
    "HostSupply",
    "KeyDelivery",
    "ca_fingerprints",
    "ca_fingerprints_of",
]


@dataclass(frozen=True)
class HostContext:
    """What every host of the fleet runs whatever the delivery, known before any resource exists."""

    region: str
    """AWS region of the hosts: where they call AWS."""
    backend_name: str
    """The backend's name: the `Backend` dimension of the days-to-expiry metric each host reports, and the name
    a delivery gives what it creates per backend (e.g. a KMS alias)."""
    server_block: str
    """The nginx server block the hosts serve, with the certificate at `host_bootstrap.CERTIFICATE_PATH` and the
    key at `host_bootstrap.PRIVATE_KEY_PATH`: where a delivery must install them."""
    certificate_alarm_days: int | None = None
    """The fleet's expiry alarm fires when a host serves a certificate with fewer days left than this: a delivery
    whose hosts renew later than that would keep it firing (None: not known, not checked)."""


@dataclass(frozen=True)
class FleetIdentity:
    """The fleet as a delivery sees it while the fleet is being built: its role exists, its hosts do not."""

    hosts: HostContext
    host_role_arn: pulumi.Output[str]
    """ARN of the hosts' IAM role (the identity every host calls AWS with)."""
    auto_scaling_group_name: str | None
    """The name the Auto Scaling group will have, when the delivery asked for one (`needs_auto_scaling_group_name`);
    None otherwise (the group is then named by Pulumi)."""
    tags: Mapping[str, str]
    """Tags for every resource the delivery creates (add `Name`)."""


@dataclass(frozen=True)
class DeliveryTexts:
    """What the fleet's own resources say about how their hosts get key material: the operators read these in the
    console and in the alarm's notification, so they must fit the delivery, not only the shared mode."""

    host_role: str
    """Description of the hosts' IAM role (at most 1,000 characters)."""
    launch_template: str
    """Description of the launch template: what a host serves and where its certificate comes from (at most 255
    characters). A new text is a new launch template version, which the group rolls out to every host."""
    expiry_alarm_advice: str
    """What to do when the certificate-expiry alarm fires: the end of its description (which holds at most 1,024
    characters in all)."""


def ca_fingerprints(ca_bundle_pem: str, argument: str = "ca_bundle_pem") -> list[str]:
    """The SHA-256 fingerprints of a CA bundle's certificates (`HostSupply.ca_fingerprints`); a bundle that is not PEM
    certificates raises ValueError naming `argument`."""
    try:
        return x509.sha256_fingerprints(ca_bundle_pem)
    except ValueError as error:
        raise ValueError(f"{argument} must be PEM CA certificates: {error}") from None


def ca_fingerprints_of(ca_bundle_pem: str | pulumi.Output[str]) -> list[str] | pulumi.Output[list[str]]:
    """`ca_fingerprints` of a bundle that may be an Output (then an Output too)."""
    if isinstance(ca_bundle_pem, str):
        return ca_fingerprints(ca_bundle_pem)
    return pulumi.Output.from_input(ca_bundle_pem).apply(ca_fingerprints)


class HostSupply(Protocol):
    """What a delivery gives the fleet: usually the component holding the delivery's resources."""

    @property
    def payload(self) -> pulumi.Input[HostPayload]:
        """The software every host installs and starts at boot (files, then commands), run as root by the
        bootstrap once the pins file (`host_bootstrap.PINS_PATH`) is in place: installs nginx, the server block
        (`HostContext.server_block`) and what fetches and renews the key material. An Output when it depends on
        outputs (e.g. an issuer's URL). Never the key itself (`HostFile` refuses key material)."""
        ...

    @property
    def ca_fingerprints(self) -> pulumi.Input[Sequence[str]]:
        """SHA-256 fingerprints (64 lowercase hex digits, `x509.sha256_fingerprints`) of the CA certificates the
        hosts may trust: the bootstrap writes them to `host_bootstrap.PINS_PATH`, where the host gate and trust-ca
        read them. In the launch template, so a new CA is a new launch template version."""
        ...

    @property
    def host_policy_statements(self) -> pulumi.Input[Sequence[Mapping[str, Any]]]:
        """IAM policy statements the host role needs for this delivery (each with a `Sid`)."""
        ...

    @property
    def wait_for(self) -> Sequence[pulumi.Resource]:
        """Resources that must exist before the first host boots (e.g. the parameters it reads at boot)."""
        ...


class KeyDelivery(Protocol):
    """A way key material reaches the hosts; see the module docstring for when the fleet calls what."""

    @property
    def needs_auto_scaling_group_name(self) -> bool:
        """True when `deliver` must know the group's name before the group exists."""
        ...

    @property
    def texts(self) -> DeliveryTexts:
        """The descriptions the fleet gives its role, launch template and expiry alarm for this delivery."""
        ...

    def check(self, hosts: HostContext) -> None:
        """Raise ValueError naming what cannot work for these hosts. Called before any resource is registered: render
        what is known of the payload (`host_bootstrap.render_install_script`) and check the pins, or a stand-in
        while the CA is not known yet (`host_bootstrap.check_bootstrap`)."""
        ...

    def deliver(self, name: str, fleet: FleetIdentity, opts: pulumi.ResourceOptions) -> HostSupply:
        """Create the delivery's resources (under `opts.parent`, names starting with `name`) for `fleet`."""
        ...
