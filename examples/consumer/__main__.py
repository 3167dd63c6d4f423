"""A second project that uses pca-backend as a library.

It reads the shared CA from the `pki` stack through StackReference, issues its own server certificate with
the CSR-backed dynamic provider, and keeps the private key where its service can read it (a Secrets Manager
secret) instead of exporting it.
"""

import pulumi
import pulumi_aws as aws

from components.certificate import Certificate

config = pulumi.Config()
ca_stack = pulumi.StackReference("ca", stack_name=config.require("caStack"))

certificate = Certificate(
    "service-certificate",
    {
        "ca_arn": ca_stack.require_output("caArn"),
        "common_name": config.require("commonName"),
        "subject_alternative_names": config.get_object("names") or [],
        "validity_days": config.get_int("validityDays") or 30,
    },
)

key_secret = aws.secretsmanager.Secret(
    "service-tls-key", description=f"TLS private key of {config.require('commonName')}"
)
aws.secretsmanager.SecretVersion(
    "service-tls-key-value", secret_id=key_secret.id, secret_string=certificate.private_key_pem
)

pulumi.export("certificateArn", certificate.certificate_arn)
pulumi.export("fullChainPem", certificate.full_chain_pem)
pulumi.export("notAfter", certificate.not_after)
pulumi.export("keySecretArn", key_secret.arn)
pulumi.export("caTrustBundlePem", ca_stack.require_output("caTrustBundlePem"))
