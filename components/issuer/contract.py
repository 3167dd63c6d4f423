"""The issuer's contracts: its HTTP interface (what the host agent is written against) and its configuration (the
environment variables `components/per_host_issuer.py` sets). Standard library only.

HTTP, through the function URL (AWS_IAM auth, payload format 2.0):

    request  POST /  Content-Type: application/json  {"csr": "<PEM>"}, SigV4-signed for service `lambda` with
             the instance role's credentials
    200      {"certificate": "<leaf PEM>", "certificate_chain": "<PEM>", "not_after": "<ISO 8601 UTC>",
              "certificate_arn": "..."}
    4xx/5xx  {"error": "<one sentence>", "rule": "<rule id>"}

Statuses: 400 a malformed event, body or CSR (or a weak key, a bad signature); 403 the caller, its instance or a
name is refused; 404 another path; 405 another method; 413 the body is too large; 415 not JSON; 500 the issuer
is misconfigured; 503 an AWS-side failure (throttling, 5xx, the certificate still pending): retry later.
"""

from __future__ import annotations

import json
from typing import Any

# --- configuration: environment variables ----------------------------------------------------------------------

ENV_CA_ARN = "ISSUER_CA_ARN"
"""ARN of the ACM PCA certificate authority that signs."""
ENV_TEMPLATE_ARN = "ISSUER_TEMPLATE_ARN"
"""ARN of the ACM PCA template every certificate is issued with (an end-entity template)."""
ENV_VALIDITY_DAYS = "ISSUER_VALIDITY_DAYS"
"""Validity of each certificate in days (at most 7 on a SHORT_LIVED_CERTIFICATE CA)."""
ENV_HOST_ROLE_ARN = "ISSUER_HOST_ROLE_ARN"
"""ARN of the fleet's host role: the only role whose instance sessions are served."""
ENV_AUTO_SCALING_GROUP = "ISSUER_AUTO_SCALING_GROUP"
"""Name of the fleet's Auto Scaling group: callers must be running members of it."""
ENV_SERVICE_NAMES = "ISSUER_SERVICE_NAMES"
"""JSON list of fleet-wide DNS names any member may also put in its certificate."""
ENV_SIGNING_ALGORITHM = "ISSUER_SIGNING_ALGORITHM"
"""Optional ACM PCA signing algorithm; empty: the one matching the CA's key algorithm (read from the CA)."""

# --- HTTP ----------------------------------------------------------------------------------------------------------

#: The largest request body accepted, in bytes. An RSA-4096 CSR with a dozen names is under 3 KB of PEM.
MAX_BODY_BYTES = 16 * 1024
#: JSON headers of every answer; `no-store`: a certificate answer is for its caller only.
HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


class Refused(Exception):
    """A request the issuer answers with `status` and `{"error": message, "rule": rule}`."""

    def __init__(self, status: int, rule: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.rule = rule
        self.message = message
        self.headers = headers or {}


def response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A function URL response (payload format 2.0) with a JSON body."""
    return {"statusCode": status, "headers": {**HEADERS, **(headers or {})}, "body": json.dumps(body)}


def refusal(refused: Refused) -> dict[str, Any]:
    return response(refused.status, {"error": refused.message, "rule": refused.rule}, refused.headers)
