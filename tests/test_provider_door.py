"""The certificate provider through the engine's door: the SDK's provider host over gRPC, against moto's server.

Inputs are exactly what `Certificate` registers (serialized by the SDK, `__provider` included), the engine's
sequences are followed (tests/provider_host.py), and every promise of the README's provider section is held
here: the renewal window (default and explicit), identity inputs replace, settings update in place, refresh
keeps a live certificate with no diff afterwards, a preview with unknowns plans, delete revokes and a second
delete is quiet, and state written by an earlier version diffs as unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization

from components import x509 as pki
from components.certificate import IDENTITY_INPUTS, INPUTS
from components.local.emulator import DESCRIBE, GET, ISSUE, REVOKE, RecordingProxy, create_active_ca
from tests.provider_host import (
    PROVIDER_KEY,
    SECRET_SIG,
    SIG_KEY,
    UNKNOWN,
    CheckFailed,
    Engine,
    ProviderHost,
    Stored,
    registered,
    replaced,
    to_dict,
    to_struct,
    unknown_output,
)


@pytest.fixture(scope="module")
def ca_arn(pca_proxy_session: RecordingProxy) -> str:
    return create_active_ca(pca_proxy_session.endpoint_url, common_name="Door Tests CA")[0]


@pytest.fixture(scope="module")
def other_ca_arn(pca_proxy_session: RecordingProxy) -> str:
    return create_active_ca(pca_proxy_session.endpoint_url, common_name="Door Tests Other CA")[0]


def args(ca_arn: Any, proxy: RecordingProxy, **overrides: Any) -> dict[str, Any]:
    """CertificateArgs as a program gives them."""
    return {
        "ca_arn": ca_arn,
        "common_name": "app.internal.example.com",
        "subject_alternative_names": ["api.internal.example.com", "10.0.1.17"],
        "endpoint_url": proxy.endpoint_url,
        **overrides,
    }


def news(ca_arn: str, proxy: RecordingProxy, **overrides: Any) -> Any:
    """What the engine receives from `Certificate(...)` at `up`."""
    return registered(args(ca_arn, proxy, **overrides)).properties


def expiring_in(state: Stored, delta: timedelta) -> Stored:
    """The stored certificate as if it expired `delta` from now (time has passed since it was issued)."""
    not_after = pki.iso_utc(datetime.now(UTC) + delta)
    return Stored(state.id, state.inputs, replaced(state.outputs, not_after=not_after))


@pytest.fixture
def deployed(engine: Engine, ca_arn: str, pca_proxy: RecordingProxy) -> Stored:
    _, state = engine.up(news(ca_arn, pca_proxy))
    pca_proxy.reset()
    return state


# ---------------------------------------------------------------------------------------------------------
# what reaches the host
# ---------------------------------------------------------------------------------------------------------


def test_the_engine_sees_floats_a_secret_provider_and_no_nulls(provider_host: ProviderHost, ca_arn: str) -> None:
    registration = registered({"ca_arn": ca_arn, "common_name": "app.internal.example.com", "validity_days": 30})
    sent = to_dict(registration.properties)
    assert sent["validity_days"] == 30.0
    assert isinstance(sent["validity_days"], float)
    assert sent[PROVIDER_KEY][SIG_KEY] == SECRET_SIG  # the serialized provider is a secret...
    assert provider_host.accepts_secrets is False  # ...which the host does not take: the engine strips it
    assert "csr_pem" not in sent  # None-valued inputs never travel
    assert "private_key_pem" not in sent
    assert "private_key_pem" in registration.additional_secret_outputs


def test_a_preview_sends_the_unknown_sentinel() -> None:
    registration = registered(
        lambda: {
            "ca_arn": unknown_output(),
            "common_name": "app.internal.example.com",
            "subject_alternative_names": ["api.internal.example.com", unknown_output()],
        },
        preview=True,
    )
    sent = to_dict(registration.properties)
    assert sent["ca_arn"] == UNKNOWN
    assert sent["subject_alternative_names"] == ["api.internal.example.com", UNKNOWN]


# ---------------------------------------------------------------------------------------------------------
# the two defects of issue 13
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("renew_before", "days_left", "renews"),
    [
        (None, 29, True),  # the default window: a third of 90 days
        (None, 31, False),
        (None, 1, True),
        (None, -1, True),  # already expired
        (10, 9, True),
        (10, 11, False),
    ],
)
def test_renewal_fires_through_the_door(
    engine: Engine,
    ca_arn: str,
    pca_proxy: RecordingProxy,
    renew_before: int | None,
    days_left: int,
    renews: bool,
) -> None:
    """Over gRPC `renew_before_days` arrives as 30.0: the window must still open."""
    inputs = news(ca_arn, pca_proxy, renew_before_days=renew_before)
    _, state = engine.up(inputs)
    aged = expiring_in(state, timedelta(days=days_left))

    plan = engine.preview(inputs, aged)
    assert plan.operation == ("replace" if renews else "same")
    assert plan.replaces == (["not_after"] if renews else [])
    if renews:
        pca_proxy.reset()
        _, renewed = engine.up(inputs, aged)
        assert renewed.id != state.id
        assert len(pca_proxy.calls(ISSUE)) == 1
        # The old certificate is revoked, unless it has expired already (then nothing accepts it any more).
        revoked = [state.out["serial"]] if days_left > 0 else []
        assert [body["CertificateSerial"] for body in pca_proxy.bodies(REVOKE)] == revoked
        assert engine.preview(inputs, renewed).operation == "same"


def test_the_first_preview_of_a_stack_that_creates_its_ca_plans(engine: Engine, pca_proxy: RecordingProxy) -> None:
    """At the first preview the CA does not exist: its ARN, and a SAN built from another resource, are unknown."""
    inputs = registered(
        lambda: args(
            unknown_output(), pca_proxy, subject_alternative_names=["api.internal.example.com", unknown_output()]
        ),
        preview=True,
    ).properties
    plan = engine.preview(inputs)
    assert plan.operation == "create"
    planned = to_dict(plan.inputs)
    assert planned["ca_arn"] == UNKNOWN
    assert planned["subject_alternative_names"] == ["api.internal.example.com", UNKNOWN]
    assert pca_proxy.requests == []  # nothing to read about a CA that does not exist yet


# ---------------------------------------------------------------------------------------------------------
# preview with unknowns
# ---------------------------------------------------------------------------------------------------------

UNKNOWABLE = INPUTS


@pytest.mark.parametrize("key", UNKNOWABLE)
def test_a_first_preview_with_one_unknown_input_plans_a_create(
    engine: Engine, ca_arn: str, pca_proxy: RecordingProxy, key: str
) -> None:
    role = {"assume_role_arn": "arn:aws:iam::123456789012:role/issuer"} if key.startswith("assume_role_s") else {}
    inputs = registered(lambda: {**args(ca_arn, pca_proxy, **role), key: unknown_output()}, preview=True).properties
    plan = engine.preview(inputs)
    assert plan.operation == "create"
    assert to_dict(plan.inputs)[key] == UNKNOWN


@pytest.mark.parametrize("key", UNKNOWABLE)
def test_a_later_preview_with_one_unknown_input_plans(
    engine: Engine, ca_arn: str, pca_proxy: RecordingProxy, deployed: Stored, key: str
) -> None:
    """An input that depends on a resource being replaced is unknown: a replacement or an update is planned."""
    role = {"assume_role_arn": "arn:aws:iam::123456789012:role/issuer"} if key.startswith("assume_role_s") else {}
    inputs = registered(lambda: {**args(ca_arn, pca_proxy, **role), key: unknown_output()}, preview=True).properties
    plan = engine.preview(inputs, deployed)
    assert plan.operation == ("replace" if key in IDENTITY_INPUTS else "update")


def test_a_preview_with_one_unknown_alternative_name_plans_a_replacement(
    engine: Engine, ca_arn: str, pca_proxy: RecordingProxy, deployed: Stored
) -> None:
    inputs = registered(
        lambda: args(ca_arn, pca_proxy, subject_alternative_names=["api.internal.example.com", unknown_output()]),
        preview=True,
    ).properties
    plan = engine.preview(inputs, deployed)
    assert (plan.operation, plan.replaces) == ("replace", ["subject_alternative_names"])


# ---------------------------------------------------------------------------------------------------------
# up, update, replace, refresh, destroy
# ---------------------------------------------------------------------------------------------------------


def test_up_issues_with_whole_numbers_and_stores_the_outputs(
    engine: Engine, ca_arn: str, pca_proxy: RecordingProxy
) -> None:
    plan, state = engine.up(news(ca_arn, pca_proxy, validity_days=45, renew_before_days=5))
    assert plan.operation == "create"
    [issue] = pca_proxy.bodies(ISSUE)
    assert issue["Validity"] == {"Value": 45, "Type": "DAYS"}
    outputs = state.out
    leaf = cx509.load_pem_x509_certificate(outputs["certificate_pem"].encode())
    key = serialization.load_pem_private_key(outputs["private_key_pem"].encode(), password=None)
    assert leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert outputs["serial"] == pki.colon_hex(leaf.serial_number)
    assert outputs["certificate_arn"] == state.id
    assert outputs[PROVIDER_KEY]  # the host stores the provider with the outputs, for destroy
    assert engine.preview(news(ca_arn, pca_proxy, validity_days=45, renew_before_days=5), state).operation == "same"


def test_an_unchanged_stack_plans_no_change_and_calls_no_aws(
    engine: Engine, ca_arn: str, pca_proxy: RecordingProxy, deployed: Stored
) -> None:
    plan, state = engine.up(news(ca_arn, pca_proxy), deployed)
    assert plan.operation == "same"
    assert state.outputs == deployed.outputs
    assert [call.target for call in pca_proxy.requests if call.target != DESCRIBE] == []


IDENTITY_CHANGES: list[tuple[str, Any]] = [
    ("common_name", "other.internal.example.com"),
    ("subject_alternative_names", ["api.internal.example.com"]),
    ("key_algorithm", "RSA_2048"),
    ("validity_days", 30),
    ("template_arn", "EndEntityCertificate/V1"),
]


@pytest.mark.parametrize(("key", "value"), IDENTITY_CHANGES)
def test_an_identity_input_replaces_create_before_delete(
    engine: Engine, ca_arn: str, pca_proxy: RecordingProxy, deployed: Stored, key: str, value: Any
) -> None:
    inputs = news(ca_arn, pca_proxy, **{key: value})
    plan, state = engine.up(inputs, deployed)
    assert (plan.operation, plan.replaces) == ("replace", [key])
    assert [call.target for call in pca_proxy.requests if call.target != DESCRIBE] == [ISSUE, GET, REVOKE]
    assert pca_proxy.bodies(REVOKE)[0]["CertificateSerial"] == deployed.out["serial"]
    assert state.id != deployed.id
    assert engine.preview(inputs, state).operation == "same"


def test_another_ca_replaces(engine: Engine, other_ca_arn: str, pca_proxy: RecordingProxy, deployed: Stored) -> None:
    plan, state = engine.up(news(other_ca_arn, pca_proxy), deployed)
    assert (plan.operation, plan.replaces) == ("replace", ["ca_arn"])
    assert state.id.startswith(other_ca_arn)
    [revoke] = pca_proxy.bodies(REVOKE)
    assert revoke["CertificateAuthorityArn"] == deployed.out["ca_arn"]  # revoked by the CA that issued it


SETTING_CHANGES: list[tuple[str, Any]] = [
    ("renew_before_days", 10),
    ("revoke_on_delete", False),
    ("throttle_retry_minutes", 30),
    ("assume_role_arn", "arn:aws:iam::123456789012:role/certificate-issuer"),
]


@pytest.mark.parametrize(("key", "value"), SETTING_CHANGES)
def test_a_setting_updates_in_place(
    engine: Engine, ca_arn: str, pca_proxy: RecordingProxy, deployed: Stored, key: str, value: Any
) -> None:
    inputs = news(ca_arn, pca_proxy, **{key: value})
    plan, state = engine.up(inputs, deployed)
    assert (plan.operation, plan.replaces) == ("update", [])
    assert state.id == deployed.id
    for output in ("certificate_pem", "private_key_pem", "serial", "not_after", "certificate_arn"):
        assert state.out[output] == deployed.out[output], output
    assert state.out[key] == value
    assert [call.target for call in pca_proxy.requests if call.target.startswith("ACMPrivateCA.")] in ([], [DESCRIBE])
    assert engine.preview(inputs, state).operation == "same"


def test_refresh_keeps_a_live_certificate_and_shows_no_diff(
    engine: Engine, ca_arn: str, pca_proxy: RecordingProxy, deployed: Stored
) -> None:
    refreshed = engine.refresh(deployed)
    assert refreshed is not None
    assert refreshed.id == deployed.id
    assert to_dict(refreshed.outputs) == to_dict(deployed.outputs)
    assert [call.target for call in pca_proxy.requests] == [GET]
    assert engine.preview(news(ca_arn, pca_proxy), refreshed).operation == "same"


def test_refresh_drops_a_certificate_aws_does_not_know(
    engine: Engine, pca_proxy: RecordingProxy, deployed: Stored
) -> None:
    pca_proxy.inject(GET, error_type="ResourceNotFoundException")
    assert engine.refresh(deployed) is None


def test_destroy_revokes_and_a_second_destroy_is_quiet(
    engine: Engine, pca_proxy: RecordingProxy, deployed: Stored
) -> None:
    engine.destroy(deployed)
    [revoke] = pca_proxy.bodies(REVOKE)
    assert revoke["CertificateSerial"] == deployed.out["serial"]
    assert revoke["CertificateAuthorityArn"] == deployed.out["ca_arn"]
    # AWS answers a second revocation with RequestAlreadyProcessedException (moto accepts it again).
    pca_proxy.inject(REVOKE, error_type="RequestAlreadyProcessedException")
    engine.destroy(deployed)
    assert [call.injected for call in pca_proxy.calls(REVOKE)] == [False, True]


def test_destroy_without_revoke_on_delete_calls_nothing(engine: Engine, ca_arn: str, pca_proxy: RecordingProxy) -> None:
    _, state = engine.up(news(ca_arn, pca_proxy, revoke_on_delete=False))
    pca_proxy.reset()
    engine.destroy(state)
    assert pca_proxy.requests == []


def test_a_check_failure_reaches_the_engine_by_name(engine: Engine, ca_arn: str, pca_proxy: RecordingProxy) -> None:
    with pytest.raises(CheckFailed) as failed:
        engine.preview(news(ca_arn, pca_proxy, validity_days=400))  # beyond the CA's own expiry (moto: 365 days)
    [(prop, reason)] = failed.value.failures
    assert prop == "validity_days"
    assert "must expire before its issuer" in reason


# ---------------------------------------------------------------------------------------------------------
# state written by an earlier version
# ---------------------------------------------------------------------------------------------------------


def _as_main_wrote_it(state: Stored, ca_arn: str, endpoint: str) -> dict[str, Any]:
    """The outputs the provider before issue 13 stored for this certificate: its checked inputs as they came
    over gRPC (numbers as floats, None-valued inputs absent), the outputs of GetCertificate, the key, the
    provider. Recorded through this door with that provider (commit 36f40db); only values that differ per
    run are taken from `state`."""
    current = state.out
    return {
        "ca_arn": ca_arn,
        "common_name": "app.internal.example.com",
        "subject_alternative_names": ["10.0.1.17", "api.internal.example.com"],
        "key_algorithm": "EC_prime256v1",
        "validity_days": 90.0,
        "template_arn": "arn:aws:acm-pca:::template/EndEntityServerAuthCertificate/V1",
        "renew_before_days": 30.0,
        "revoke_on_delete": True,
        "region": "us-east-1",
        "endpoint_url": endpoint,
        "throttle_retry_minutes": 10.0,
        **{
            key: current[key]
            for key in (
                "certificate_arn",
                "certificate_pem",
                "certificate_chain_pem",
                "full_chain_pem",
                "private_key_pem",
                "serial",
                "not_after",
                PROVIDER_KEY,
            )
        },
    }


def test_state_written_by_the_previous_version_diffs_as_unchanged(
    engine: Engine, ca_arn: str, pca_proxy: RecordingProxy, deployed: Stored
) -> None:
    older = _as_main_wrote_it(deployed, ca_arn, pca_proxy.endpoint_url)
    state = Stored(deployed.id, deployed.inputs, to_struct(older))
    assert engine.preview(news(ca_arn, pca_proxy), state).operation == "same"
    refreshed = engine.refresh(state)
    assert refreshed is not None
    assert engine.preview(news(ca_arn, pca_proxy), refreshed).operation == "same"


def test_state_written_before_the_identity_and_budget_inputs_diffs_as_unchanged(
    engine: Engine, ca_arn: str, pca_proxy: RecordingProxy, deployed: Stored
) -> None:
    older = _as_main_wrote_it(deployed, ca_arn, pca_proxy.endpoint_url)
    del older["throttle_retry_minutes"]
    state = Stored(deployed.id, deployed.inputs, to_struct(older))
    assert engine.preview(news(ca_arn, pca_proxy), state).operation == "same"


def test_a_destroy_runs_the_provider_stored_in_the_state(
    engine: Engine, pca_proxy: RecordingProxy, deployed: Stored
) -> None:
    """Delete carries only the stored outputs: the host finds the provider there."""
    engine.destroy(Stored(deployed.id, to_struct({}), deployed.outputs))
    assert len(pca_proxy.calls(REVOKE)) == 1
