"""Private-CA-encrypted backends on AWS.

Per stack, from validated config (components/settings.py): a private CA (created here as a root or a
subordinate, or taken from another stack through StackReference) and an encrypted backend (ALB -> HTTPS target
group -> nginx hosts that trust the CA). How the hosts get their key and certificate is `hostCertificates`:
`shared`, one server certificate issued by the CSR-backed dynamic provider and delivered through SSM; or
`per-host`, each host makes its own key and asks the per-host issuer (a Lambda function URL) for its certificate.
The exported outputs are a contract other stacks read: README.md, "Stack outputs".
"""

import pulumi

from components.ca_source import resolve_ca
from components.certificate import Certificate
from components.encrypted_backend import EncryptedBackend
from components.network import Network
from components.per_host_delivery import PerHostDelivery
from components.settings import load_settings
from components.ssm_key_delivery import SsmKeyDelivery

settings = load_settings()
for warning in settings.warnings:
    pulumi.log.warn(warning)

ca = resolve_ca(settings.ca)
pulumi.export("caArn", ca.arn)
pulumi.export("caTrustBundlePem", ca.trust_bundle_pem)
pulumi.export("caUsageMode", ca.usage_mode)
if ca.private_ca is not None:
    pulumi.export("caCertificatePem", ca.private_ca.certificate_pem)
    pulumi.export("caNotAfter", ca.private_ca.not_after)
    if settings.ca.crl_enabled:
        pulumi.export("caCrlBucketName", ca.private_ca.crl_bucket_name)

if settings.backend is not None and settings.certificate is not None:
    key_delivery: SsmKeyDelivery | PerHostDelivery
    if settings.host_certificates == "shared":
        # Mode `shared`: one certificate for the fleet, delivered through SSM Parameter Store.
        certificate = Certificate(
            "backend-certificate",
            settings.certificate_args(
                ca_arn=ca.arn, validity_days=ca.validity_days(settings.certificate.validity_days)
            ),
        )
        key_delivery = SsmKeyDelivery(
            settings.ssm_key_delivery_args(
                ca_bundle_pem=ca.trust_bundle_pem,
                full_chain_pem=certificate.full_chain_pem,
                private_key_pem=certificate.private_key_pem,
            )
        )
        pulumi.export("certificateArn", certificate.certificate_arn)
        pulumi.export("certificatePem", certificate.certificate_pem)
        pulumi.export("certificateSerial", certificate.serial)
        pulumi.export("certificateNotAfter", certificate.not_after)
        pulumi.export("parameterNames", key_delivery.parameter_names)
    else:
        # Mode `per-host`: each host makes its own key and gets its certificate from the issuer; no Certificate.
        key_delivery = PerHostDelivery(
            settings.per_host_delivery_args(ca_arn=ca.arn, ca_bundle_pem=ca.trust_bundle_pem)
        )
    network_args = settings.network_args()
    network = Network("network", network_args) if network_args else None
    backend = EncryptedBackend(
        "backend",
        settings.backend_args(
            acm_issuer_arn=ca.acm_issuer_arn,
            key_delivery=key_delivery,
            network_ids=(network.vpc_id, network.subnet_ids) if network else None,
        ),
    )
    if isinstance(key_delivery, PerHostDelivery):
        pulumi.export("issuerFunctionUrl", key_delivery.issuer.function_url)
        pulumi.export("issuerFunctionName", key_delivery.issuer.function_name)
        pulumi.export("issuerLogGroupName", key_delivery.issuer.log_group_name)

    pulumi.export("albDnsName", backend.alb_dns_name)
    pulumi.export("httpsUrl", backend.https_url)
    pulumi.export("targetGroupArn", backend.target_group_arn)
    pulumi.export("albSecurityGroupId", backend.alb_security_group_id)
    pulumi.export("backendSecurityGroupId", backend.backend_security_group_id)
    pulumi.export("autoScalingGroupName", backend.auto_scaling_group_name)
