"""Where a stack's CA comes from: created here (root or subordinate) or read from another stack."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.private_ca import PrivateCa
from components.rules.aws import short_lived_problem
from components.settings import CaSettings

#: Outputs a CA-owning stack exports and `caMode: stack` consumers require (README: "Stack outputs").
CA_ARN_OUTPUT = "caArn"
CA_TRUST_BUNDLE_OUTPUT = "caTrustBundlePem"
CA_USAGE_MODE_OUTPUT = "caUsageMode"


@dataclass(frozen=True)
class CaSource:
    arn: pulumi.Output[str]
    """The CA's ARN; when this stack creates the CA, it resolves only after activation."""
    trust_bundle_pem: pulumi.Output[str]
    usage_mode: pulumi.Output[str]
    acm_issuer_arn: pulumi.Output[str]
    """The ARN to give ACM for private certificates: when this stack grants ACM its permission on the CA, it
    resolves only once that permission exists (PrivateCa.acm_issuer_arn)."""
    private_ca: PrivateCa | None
    """The CA component when this stack owns the CA, else None."""

    def validity_days(self, asked: int) -> pulumi.Output[int]:
        """`asked`, or a preview-time error naming the setting when the CA cannot issue that long."""

        def check(usage_mode: str) -> int:
            problem = short_lived_problem("certValidityDays", asked, usage_mode)
            if problem is not None:
                raise ValueError(problem)
            return asked

        return self.usage_mode.apply(check)


def resolve_ca(ca: CaSettings) -> CaSource:
    """Create the CA this stack owns, or reference the one another stack owns (`caMode: stack`)."""
    reference = pulumi.StackReference("ca-stack", stack_name=ca.stack) if ca.stack else None
    if ca.mode == "stack":
        assert reference is not None  # settings guarantee caStack with caMode stack
        arn = reference.require_output(CA_ARN_OUTPUT)
        return CaSource(
            arn=arn,
            trust_bundle_pem=reference.require_output(CA_TRUST_BUNDLE_OUTPUT),
            usage_mode=reference.require_output(CA_USAGE_MODE_OUTPUT),
            acm_issuer_arn=arn,
            private_ca=None,
        )
    parent_arn = ca.parent_arn or (reference.require_output(CA_ARN_OUTPUT) if reference else None)
    private_ca = PrivateCa(
        "ca",
        ca.private_ca_args(parent_arn),
        # A CA is long-lived: `pulumi destroy` and replacements stop at it unless caProtect is false.
        opts=pulumi.ResourceOptions(protect=ca.protect),
    )
    return CaSource(
        private_ca.arn, private_ca.trust_bundle_pem, private_ca.usage_mode, private_ca.acm_issuer_arn, private_ca
    )
