"""The issuer's Lambda entry point: `handler(event, context)` behind a function URL with AWS_IAM auth.

For each request, in this order (the first check that fails answers, see `contract` for statuses and rules):
1. the event is a function URL request (payload format 2.0) for `POST /`;
2. the caller is a session of the fleet's host role whose session name is an instance ID (`identity`);
3. the body is JSON `{"csr": "<PEM>"}` of at most `MAX_BODY_BYTES`;
4. the CSR is strict DER, its key EC P-256/P-384 or RSA 2048-4096, its signature verifies (`csr`); its subject
   holds at most one common name and nothing else, its SAN only DNS names and IP addresses;
5. the instance is running and carries the Auto Scaling system tag of the fleet's group (DescribeInstances);
6. every name (the common name and each SAN) is the instance's own or a configured service name;
7. IssueCertificate with the configured template, validity and the CA's signing algorithm, one idempotency token
   per (instance, CSR); GetCertificate until issued, within the function's remaining time.

Every decision is logged as one JSON line (instance, caller, names, rule), without the CSR.

What the handler cannot know: whether it was invoked through its URL. Anyone allowed `lambda:InvokeFunction` on
the function by an identity policy can invoke it directly with an event they wrote, including its IAM context;
keep that permission to administrators (who may call IssueCertificate on the CA anyway).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import csr, der, identity
from .contract import (
    ENV_AUTO_SCALING_GROUP,
    ENV_CA_ARN,
    ENV_HOST_ROLE_ARN,
    ENV_SERVICE_NAMES,
    ENV_SIGNING_ALGORITHM,
    ENV_TEMPLATE_ARN,
    ENV_VALIDITY_DAYS,
    MAX_BODY_BYTES,
    Refused,
    refusal,
    response,
)

logger = logging.getLogger("pca_backend.issuer")

_CA_ARN = re.compile(r"arn:aws[a-z-]*:acm-pca:(?P<region>[a-z0-9-]+):\d{12}:certificate-authority/[0-9a-f-]+")
_TEMPLATE_ARN = re.compile(r"arn:aws[a-z-]*:acm-pca:::template/[A-Za-z0-9_]+/V\d+")
_SIGNING_ALGORITHMS = ("SHA256WITHECDSA", "SHA384WITHECDSA", "SHA512WITHECDSA", "SHA256WITHRSA", "SHA384WITHRSA",
                       "SHA512WITHRSA")  # fmt: skip
#: The signing algorithm for each CA key algorithm when none is configured (as components/x509.py maps them; this
#: package cannot import it: it runs without `cryptography`).
_SIGNING_FOR_KEY = {
    "EC_prime256v1": "SHA256WITHECDSA",
    "EC_secp384r1": "SHA384WITHECDSA",
    "RSA_2048": "SHA256WITHRSA",
    "RSA_3072": "SHA256WITHRSA",
    "RSA_4096": "SHA256WITHRSA",
}
#: A SHORT_LIVED_CERTIFICATE CA issues certificates valid 7 days at most.
SHORT_LIVED_MAX_DAYS = 7
#: IssueCertificate's IdempotencyToken: 1 to 36 characters; AWS returns the first certificate for a token reused
#: within five minutes (https://docs.aws.amazon.com/privateca/latest/APIReference/API_IssueCertificate.html).
TOKEN_LENGTH = 36
#: Time kept back from the function's remaining time to answer after the last GetCertificate.
ANSWER_MARGIN_SECONDS = 2.0
#: GetCertificate polling: the first wait, then doubling up to the cap.
POLL_FIRST_SECONDS = 0.1
POLL_MAX_SECONDS = 1.0
#: The VPC's DHCP domain is re-read after this long (a changed DHCP options set takes effect on the next lease).
DHCP_CACHE_SECONDS = 300.0
#: AWS errors that mean "try again later".
_TRANSIENT = frozenset(
    {"ThrottlingException", "Throttling", "RequestLimitExceeded", "TooManyRequestsException", "ServiceUnavailable",
     "InternalFailure", "InternalError", "InternalServerError", "RequestTimeout", "Unavailable"}
)  # fmt: skip
# One try and a second after a short back-off; more would risk the function's timeout, and the host retries.
_CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=3, read_timeout=10)


class ConfigurationError(ValueError):
    """The function's environment is not a valid issuer configuration (names the variable)."""


@dataclass(frozen=True)
class IssuerConfig:
    """What the component configures, validated."""

    ca_arn: str
    template_arn: str
    validity_days: int
    host_role: identity.HostRole
    auto_scaling_group: str
    service_names: frozenset[str]
    signing_algorithm: str | None

    @property
    def ca_region(self) -> str:
        match = _CA_ARN.fullmatch(self.ca_arn)
        assert match is not None
        return match["region"]

    @classmethod
    def from_environment(cls, environment: Mapping[str, str]) -> IssuerConfig:
        def required(name: str) -> str:
            value = environment.get(name, "").strip()
            if not value:
                raise ConfigurationError(f"{name} is not set")
            return value

        ca_arn = required(ENV_CA_ARN)
        if not _CA_ARN.fullmatch(ca_arn):
            raise ConfigurationError(f"{ENV_CA_ARN} {ca_arn!r} is not an ACM PCA certificate-authority ARN")
        template_arn = required(ENV_TEMPLATE_ARN)
        if not _TEMPLATE_ARN.fullmatch(template_arn):
            raise ConfigurationError(f"{ENV_TEMPLATE_ARN} {template_arn!r} is not an ACM PCA template ARN")
        validity = required(ENV_VALIDITY_DAYS)
        if not validity.isdigit() or not 1 <= int(validity) <= 3650:
            raise ConfigurationError(f"{ENV_VALIDITY_DAYS} {validity!r} is not a number of days from 1 to 3650")
        try:
            host_role = identity.HostRole.parse(required(ENV_HOST_ROLE_ARN))
        except ValueError as error:
            raise ConfigurationError(f"{ENV_HOST_ROLE_ARN}: {error}") from None
        try:
            service_names = json.loads(environment.get(ENV_SERVICE_NAMES) or "[]")
        except ValueError:
            service_names = None
        if not isinstance(service_names, list) or not all(isinstance(name, str) and name for name in service_names):
            raise ConfigurationError(f"{ENV_SERVICE_NAMES} must be a JSON list of DNS names")
        signing = environment.get(ENV_SIGNING_ALGORITHM, "").strip() or None
        if signing is not None and signing not in _SIGNING_ALGORITHMS:
            raise ConfigurationError(
                f"{ENV_SIGNING_ALGORITHM} {signing!r} is not one of {', '.join(_SIGNING_ALGORITHMS)}"
            )
        return cls(
            ca_arn=ca_arn,
            template_arn=template_arn,
            validity_days=int(validity),
            host_role=host_role,
            auto_scaling_group=required(ENV_AUTO_SCALING_GROUP),
            service_names=frozenset(name.lower().rstrip(".") for name in service_names),
            signing_algorithm=signing,
        )


@dataclass(frozen=True)
class _Authority:
    """What the issuer reads of its CA once per process: it cannot change (AWS fixes both at creation)."""

    signing_algorithm: str
    usage_mode: str


class Issuer:
    """Answers function URL events. One per Lambda execution environment: clients and the CA's description are
    reused across invocations."""

    def __init__(self, config: IssuerConfig, session: boto3.session.Session | None = None) -> None:
        session = session or boto3.session.Session()
        self.config = config
        self._ec2: Any = session.client("ec2", config=_CLIENT_CONFIG)
        self._pca: Any = session.client("acm-pca", region_name=config.ca_region, config=_CLIENT_CONFIG)
        self._lock = threading.Lock()
        self._authority: _Authority | None = None
        self._dhcp: dict[str, tuple[float, tuple[str, ...]]] = {}

    # -- the request --------------------------------------------------------------------------------------------

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        decision: dict[str, Any] = {"decision": "refused"}
        try:
            answer = self._issue(event if isinstance(event, Mapping) else {}, context, decision)
        except Refused as refused:
            decision.update(status=refused.status, rule=refused.rule, reason=refused.message)
            logger.warning(json.dumps(decision, sort_keys=True))
            return refusal(refused)
        except Exception as error:
            # Never a stack trace to the caller; the log keeps it (there is no secret in this function).
            decision.update(status=500, rule="internal", reason=type(error).__name__)
            logger.exception(json.dumps(decision, sort_keys=True))
            return response(500, {"error": "the issuer failed unexpectedly; see its log", "rule": "internal"})
        decision.update(decision="issued", status=200, rule="issued", certificate_arn=answer["certificate_arn"])
        logger.info(json.dumps(decision, sort_keys=True))
        return response(200, answer)

    def _issue(self, event: Mapping[str, Any], context: Any, decision: dict[str, Any]) -> dict[str, str]:
        _check_request_line(event)
        instance_id, caller = identity.caller_instance(event, self.config.host_role)
        decision.update(instance=instance_id, caller=caller)
        request = _read_csr(_body(event))
        names = [*request.common_names, *request.dns_names, *request.ip_addresses]
        decision.update(names=names, key=request.key.describe())
        _check_subject(request)
        instance = self._describe_instance(instance_id)
        identity.check_membership(instance, instance_id, self.config.auto_scaling_group)
        assert instance is not None
        allowed = identity.instance_names(instance, self._dhcp_domains(instance.get("VpcId")))
        refused = list(dict.fromkeys(identity.refused_names(names, allowed | self.config.service_names)))
        if refused:
            raise Refused(
                403,
                "name-not-allowed",
                f"{', '.join(refused)} {'is' if len(refused) == 1 else 'are'} not among {instance_id}'s own names "
                "(its private DNS names and IPv4 addresses) or the fleet's service names",
            )
        return self._sign(request, instance_id, context)

    # -- AWS ----------------------------------------------------------------------------------------------------

    def _describe_instance(self, instance_id: str) -> Mapping[str, Any] | None:
        try:
            answer = self._ec2.describe_instances(InstanceIds=[instance_id])
        except ClientError as error:
            if _code(error).startswith("InvalidInstanceID"):
                return None
            raise _aws_failure("DescribeInstances", error) from None
        except BotoCoreError as error:
            raise _aws_failure("DescribeInstances", error) from None
        for reservation in answer.get("Reservations", ()):
            for instance in reservation.get("Instances", ()):
                if instance.get("InstanceId") == instance_id:
                    return instance
        return None

    def _dhcp_domains(self, vpc_id: object) -> tuple[str, ...]:
        """The custom domain names of the VPC's DHCP options set (cached for `DHCP_CACHE_SECONDS`)."""
        if not isinstance(vpc_id, str):
            return ()
        now = time.monotonic()
        with self._lock:
            cached = self._dhcp.get(vpc_id)
        if cached is not None and now - cached[0] < DHCP_CACHE_SECONDS:
            return cached[1]
        try:
            vpcs = self._ec2.describe_vpcs(VpcIds=[vpc_id]).get("Vpcs", ())
            options_id = vpcs[0].get("DhcpOptionsId") if vpcs else None
            domains: tuple[str, ...] = ()
            if options_id and options_id != "default":
                options = self._ec2.describe_dhcp_options(DhcpOptionsIds=[options_id]).get("DhcpOptions", ())
                domains = identity.dhcp_domain_names(options[0] if options else None)
        except (ClientError, BotoCoreError) as error:
            raise _aws_failure("DescribeVpcs/DescribeDhcpOptions", error) from None
        with self._lock:
            self._dhcp[vpc_id] = (now, domains)
        return domains

    def _ca(self) -> _Authority:
        with self._lock:
            if self._authority is not None:
                return self._authority
        try:
            described = self._pca.describe_certificate_authority(CertificateAuthorityArn=self.config.ca_arn)
        except (ClientError, BotoCoreError) as error:
            raise _aws_failure("DescribeCertificateAuthority", error) from None
        authority = described["CertificateAuthority"]
        key_algorithm = authority.get("CertificateAuthorityConfiguration", {}).get("KeyAlgorithm", "")
        signing = self.config.signing_algorithm or _SIGNING_FOR_KEY.get(key_algorithm)
        if signing is None:
            raise Refused(500, "issuer-misconfigured", f"the CA's key algorithm {key_algorithm!r} is not supported")
        found = _Authority(signing, authority.get("UsageMode", "GENERAL_PURPOSE"))
        with self._lock:
            self._authority = found
        return found

    def _sign(self, request: csr.CertificationRequest, instance_id: str, context: Any) -> dict[str, str]:
        authority = self._ca()
        days = self.config.validity_days
        if authority.usage_mode == "SHORT_LIVED_CERTIFICATE" and days > SHORT_LIVED_MAX_DAYS:
            raise Refused(
                500,
                "issuer-misconfigured",
                f"the validity is {days} days but the CA is SHORT_LIVED_CERTIFICATE "
                f"({SHORT_LIVED_MAX_DAYS} days at most)",
            )
        # The same instance sending the same CSR again (a retry after a timeout) gets the same certificate.
        token = hashlib.sha256(instance_id.encode() + b"\0" + request.der).hexdigest()[:TOKEN_LENGTH]
        try:
            arn = self._pca.issue_certificate(
                CertificateAuthorityArn=self.config.ca_arn,
                Csr=request.pem.encode(),
                SigningAlgorithm=authority.signing_algorithm,
                TemplateArn=self.config.template_arn,
                Validity={"Type": "DAYS", "Value": days},
                IdempotencyToken=token,
            )["CertificateArn"]
        except ClientError as error:
            if _code(error) == "MalformedCSRException":
                raise Refused(400, "csr-refused-by-ca", "the CA refused the CSR as malformed") from None
            raise _aws_failure("IssueCertificate", error) from None
        except BotoCoreError as error:
            raise _aws_failure("IssueCertificate", error) from None
        issued = self._wait_for(arn, _deadline(context))
        leaf = issued["Certificate"]
        return {
            "certificate": leaf if leaf.endswith("\n") else leaf + "\n",
            "certificate_chain": issued.get("CertificateChain", ""),
            "not_after": _not_after(leaf),
            "certificate_arn": arn,
        }

    def _wait_for(self, arn: str, deadline: float) -> dict[str, str]:
        """GetCertificate until issued: AWS answers RequestInProgressException meanwhile."""
        delay = POLL_FIRST_SECONDS
        while True:
            try:
                answer: dict[str, str] = self._pca.get_certificate(
                    CertificateAuthorityArn=self.config.ca_arn, CertificateArn=arn
                )
                return answer
            except ClientError as error:
                if _code(error) != "RequestInProgressException":
                    raise _aws_failure("GetCertificate", error) from None
            except BotoCoreError as error:
                raise _aws_failure("GetCertificate", error) from None
            if time.monotonic() + delay >= deadline:
                raise Refused(
                    503, "certificate-pending", "the certificate is not issued yet; send the same CSR again shortly"
                )
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX_SECONDS)


# --- the request, read ------------------------------------------------------------------------------------------


def _check_request_line(event: Mapping[str, Any]) -> None:
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, Mapping) and event.get("version") == "2.0" else None
    if not isinstance(http, Mapping):
        raise Refused(400, "event-format", "not a function URL request (payload format 2.0)")
    if http.get("method") != "POST":
        raise Refused(405, "method", f"{http.get('method')} is not allowed: POST", headers={"Allow": "POST"})
    if event.get("rawPath") not in ("/", ""):
        raise Refused(404, "path", "the issuer answers POST / only")


def _body(event: Mapping[str, Any]) -> bytes:
    headers = event.get("headers")
    headers = {str(key).lower(): value for key, value in headers.items()} if isinstance(headers, Mapping) else {}
    media_type = str(headers.get("content-type", "")).split(";")[0].strip().lower()
    if media_type != "application/json":
        raise Refused(415, "content-type", "the body must be JSON (Content-Type: application/json)")
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise Refused(400, "body", "the body is not text")
    if len(body) > 2 * MAX_BODY_BYTES:  # before decoding anything
        raise Refused(413, "body-too-large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body.encode()
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise Refused(400, "body", "the body is not valid base64") from None
    if len(raw) > MAX_BODY_BYTES:
        raise Refused(413, "body-too-large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    return raw


def _read_csr(raw: bytes) -> csr.CertificationRequest:
    try:
        document = json.loads(raw)
    except ValueError:
        raise Refused(400, "body", 'the body is not JSON; send {"csr": "<PEM>"}') from None
    if not isinstance(document, dict) or set(document) != {"csr"} or not isinstance(document["csr"], str):
        raise Refused(400, "body", 'the body must be exactly {"csr": "<PEM>"}')
    try:
        return csr.read_pem(document["csr"])
    except csr.CsrRefused as refused:
        raise Refused(400, refused.rule, refused.message) from None


def _check_subject(request: csr.CertificationRequest) -> None:
    """The subject may hold one common name and nothing else; the SAN, DNS names and IP addresses only: anything
    else would reach the certificate unchecked (AWS's templates copy the CSR's subject and SAN)."""
    others = sorted({oid for oid, _ in request.subject if oid != csr.COMMON_NAME})
    if others or len(request.common_names) > 1:
        what = f"attribute(s) {', '.join(others)}" if others else "more than one common name"
        raise Refused(403, "subject-attribute", f"the subject may hold one common name only, not {what}")
    if request.other_name_types:
        raise Refused(
            403,
            "name-type",
            f"the SAN may hold DNS names and IP addresses only, not {', '.join(sorted(set(request.other_name_types)))}",
        )
    if not request.common_names and not request.dns_names and not request.ip_addresses:
        raise Refused(400, "no-names", "the CSR names nothing: put the host's names in its SAN")


# --- helpers ----------------------------------------------------------------------------------------------------


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _aws_failure(operation: str, error: Exception) -> Refused:
    """503 (retry later) for throttling, AWS 5xx and network failures; 500 for what a retry will not fix."""
    if isinstance(error, ClientError):
        code = _code(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _TRANSIENT or status >= 500:
            return Refused(503, "aws-unavailable", f"{operation} failed ({code or status}); retry later")
        return Refused(500, "issuer-misconfigured", f"{operation} was refused ({code}); see the issuer's log")
    return Refused(503, "aws-unavailable", f"{operation} could not reach AWS ({type(error).__name__}); retry later")


def _deadline(context: Any) -> float:
    """When waiting must stop: the function's remaining time less a margin to answer."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    seconds = remaining() / 1000.0 if callable(remaining) else 30.0
    return time.monotonic() + seconds - ANSWER_MARGIN_SECONDS


def _not_after(certificate_pem: str) -> str:
    """notAfter of a PEM certificate, as ISO 8601 UTC (`2026-01-31T12:00:00Z`)."""
    (certificate,) = der.pem_blocks(certificate_pem, "CERTIFICATE")
    tbs = der.parse(certificate).children()[0].children()
    fields = tbs[1:] if tbs[0].tag == 0xA0 else tbs  # [0] version is present for v3
    validity = fields[3].expect(der.SEQUENCE, "validity").children()
    return der.time(validity[1], "notAfter")


# --- the Lambda entry point -------------------------------------------------------------------------------------

_issuer: Issuer | None = None
_issuer_lock = threading.Lock()


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda's entry point (`issuer.handler.handler`): one `Issuer` per execution environment, built from the
    environment on the first request."""
    global _issuer
    with _issuer_lock:
        if _issuer is None:
            try:
                _issuer = Issuer(IssuerConfig.from_environment(os.environ))
            except ConfigurationError as error:
                logger.error(json.dumps({"decision": "refused", "rule": "issuer-misconfigured", "reason": str(error)}))
                return response(
                    500, {"error": "the issuer is misconfigured; see its log", "rule": "issuer-misconfigured"}
                )
        issuer = _issuer
    return issuer.handle(event, context)
