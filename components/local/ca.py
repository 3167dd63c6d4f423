"""A throw-away root CA in an ACM PCA endpoint, for trying the backend locally (`scripts/local-backend`).

Stacks create their CA with `components.private_ca.PrivateCa`; this is the same sequence (create, self-sign
with RootCACertificate/V1, import) done directly with boto3, for when there is no stack at all.
"""

from __future__ import annotations

from typing import Any

import boto3

from components import x509
from components.rules.aws import ROOT_CA_TEMPLATE, template_arn

ROOT_CA_TEMPLATE_ARN = template_arn(ROOT_CA_TEMPLATE)


def create_root_ca(
    endpoint_url: str | None,
    *,
    region: str,
    common_name: str,
    key_algorithm: str = "RSA_2048",
    usage_mode: str = "GENERAL_PURPOSE",
    validity_days: int = 3650,
) -> tuple[str, str]:
    """Create, self-sign and activate a root CA: `(ca_arn, ca_certificate_pem)`."""
    client: Any = boto3.session.Session().client("acm-pca", region_name=region, endpoint_url=endpoint_url)
    signing_algorithm = x509.signing_algorithm_for(key_algorithm)
    ca_arn = client.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": key_algorithm,
            "SigningAlgorithm": signing_algorithm,
            "Subject": {"CommonName": common_name},
        },
        CertificateAuthorityType="ROOT",
        UsageMode=usage_mode,
    )["CertificateAuthorityArn"]
    csr = client.get_certificate_authority_csr(CertificateAuthorityArn=ca_arn)["Csr"]
    certificate_arn = client.issue_certificate(
        CertificateAuthorityArn=ca_arn,
        Csr=csr.encode(),
        SigningAlgorithm=signing_algorithm,
        TemplateArn=ROOT_CA_TEMPLATE_ARN,
        Validity={"Value": validity_days, "Type": "DAYS"},
    )["CertificateArn"]
    waiter = client.get_waiter("certificate_issued")
    waiter.wait(CertificateAuthorityArn=ca_arn, CertificateArn=certificate_arn)
    certificate = client.get_certificate(CertificateAuthorityArn=ca_arn, CertificateArn=certificate_arn)["Certificate"]
    client.import_certificate_authority_certificate(CertificateAuthorityArn=ca_arn, Certificate=certificate.encode())
    return ca_arn, x509.join_pem(certificate)
