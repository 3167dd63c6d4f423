"""Private-CA-encrypted backends on AWS.

Per stack, from validated config (components/settings.py): a private CA (created here as a root or a
subordinate, or taken from another stack through StackReference), a server certificate issued from it by the
CSR-backed dynamic provider, and an encrypted backend (ALB -> HTTPS target group -> nginx hosts that trust
the CA). The exported outputs are a contract other stacks read: README.md, "Stack outputs".
"""

import pulumi

from components.ca_source import resolve_ca
from components.certificate import Certificate
from components.encrypted_backend import EncryptedBackend
from components.network import Network
from components.settings import ec2_private_dns_wildcard, load_settings

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

if settings.certificate is not None and settings.backend is not None:
    wanted, backend_settings = settings.certificate, settings.backend
    # The hosts' own EC2 names first, so host-to-host TLS verifies out of the box.
    names = [ec2_private_dns_wildcard(settings.region), *wanted.names]
    certificate = Certificate(
        "backend-certificate",
        {
            "ca_arn": ca.arn,
            "common_name": wanted.common_name or (wanted.names[0] if wanted.names else names[0]),
            "subject_alternative_names": names,
            "key_algorithm": wanted.key_algorithm,
            "validity_days": ca.validity_days(wanted.validity_days),
            "renew_before_days": wanted.renew_before_days,
            "template_arn": wanted.template,
            "region": settings.region,
            "endpoint_url": settings.endpoint_url,
            # Issue as the stack's AWS identity (aws:profile, first aws:assumeRoles entry): names, no credential.
            "profile": settings.aws_identity.profile,
            "assume_role_arn": settings.aws_identity.assume_role_arn,
            "assume_role_session_name": settings.aws_identity.assume_role_session_name,
            "assume_role_external_id": settings.aws_identity.assume_role_external_id,
            "throttle_retry_minutes": wanted.throttle_retry_minutes,
        },
    )

    network = (
        Network("network", {"cidr_block": backend_settings.network_cidr}) if backend_settings.network_cidr else None
    )
    listener_certificate = (
        {"listener_certificate_arn": backend_settings.alb_certificate_arn}
        if backend_settings.alb_certificate_arn
        else {"listener_domain_name": backend_settings.alb_domain_name, "private_ca_arn": ca.acm_issuer_arn}
    )
    backend = EncryptedBackend(
        "backend",
        {
            "vpc_id": network.vpc_id if network else backend_settings.vpc_id,
            "alb_subnet_ids": network.subnet_ids if network else list(backend_settings.alb_subnet_ids),
            "host_subnet_ids": network.subnet_ids if network else list(backend_settings.host_subnet_ids),
            "internal": backend_settings.alb_internal,
            "ingress_cidrs": list(backend_settings.alb_ingress_cidrs),
            "peer_security_group_ids": list(backend_settings.peer_security_group_ids),
            "host_count": backend_settings.host_count,
            "instance_type": backend_settings.instance_type,
            "health_check_path": backend_settings.health_check_path,
            "http_redirect": backend_settings.http_redirect,
            **listener_certificate,  # type: ignore[typeddict-item]
            "server_names": names,
            "full_chain_pem": certificate.full_chain_pem,
            "private_key_pem": certificate.private_key_pem,
            "ca_bundle_pem": ca.trust_bundle_pem,
            "parameter_prefix": settings.parameter_prefix,
            "region": settings.region,
            "ami_parameter": backend_settings.ami_parameter,
            "ami_id": backend_settings.host_ami_id,
            "host_min_count": backend_settings.host_min_count,
            "host_max_count": backend_settings.host_max_count,
            "min_healthy_percent": backend_settings.host_min_healthy_percent,
            "root_volume_gib": backend_settings.host_root_volume_gib,
            "parameter_kms_key_arn": backend_settings.parameter_kms_key_arn,
            "parameter_writer_arns": list(backend_settings.parameter_writer_arns),
            "certificate_alarm_days": backend_settings.cert_expiry_alarm_days,
            "alarm_topic_arn": backend_settings.cert_expiry_alarm_topic_arn,
        },
    )

    pulumi.export("certificateArn", certificate.certificate_arn)
    pulumi.export("certificatePem", certificate.certificate_pem)
    pulumi.export("certificateSerial", certificate.serial)
    pulumi.export("certificateNotAfter", certificate.not_after)
    pulumi.export("albDnsName", backend.alb_dns_name)
    pulumi.export("httpsUrl", backend.https_url)
    pulumi.export("targetGroupArn", backend.target_group_arn)
    pulumi.export("albSecurityGroupId", backend.alb_security_group_id)
    pulumi.export("backendSecurityGroupId", backend.backend_security_group_id)
    pulumi.export("autoScalingGroupName", backend.auto_scaling_group_name)
    pulumi.export("parameterNames", backend.parameter_names)
