"""An activated AWS Private CA (root or subordinate), with its optional CRL bucket and ACM permission."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

from components import x509
from components.private_bucket import deny_insecure_transport, private_bucket_guards
from components.rules.aws import (
    CRL_EXPIRATION_DAYS_RANGE,
    KEY_STORAGE_STANDARDS,
    PERMANENT_DELETION_DAYS_RANGE,
    ROOT_CA_TEMPLATE,
    SUBORDINATE_CA_TEMPLATE,
    USAGE_MODES,
)
from components.rules.names import SUBJECT_FIELD_LIMITS, subject_field_problem

ROOT_TEMPLATE = ROOT_CA_TEMPLATE
SUBORDINATE_TEMPLATE = SUBORDINATE_CA_TEMPLATE
#: What ACM needs from the CA to renew the private certificates it issued from it (terraform-provider-aws#46693).
ACM_PERMISSION_ACTIONS = ["IssueCertificate", "GetCertificate", "ListPermissions"]


class CaSubjectArgs(TypedDict):
    common_name: str
    """Subject CN of the CA certificate."""
    organization: NotRequired[str | None]
    organizational_unit: NotRequired[str | None]
    country: NotRequired[str | None]
    """Two-letter ISO 3166 code."""
    state: NotRequired[str | None]
    locality: NotRequired[str | None]


class CrlArgs(TypedDict):
    expiration_days: int
    """How long each published CRL is valid (1-5000)."""
    custom_cname: NotRequired[str | None]
    """A DNS alias put in the CRL distribution point instead of the bucket's name."""


class PrivateCaArgs(TypedDict):
    ca_type: str
    """ROOT or SUBORDINATE."""
    subject: CaSubjectArgs
    key_algorithm: str
    """RSA_2048, RSA_3072, RSA_4096, EC_prime256v1 or EC_secp384r1; the signing algorithm follows from it."""
    validity_years: int
    """Lifetime of the CA certificate. A subordinate's is counted from its parent certificate's notBefore (not
    from today, so every run asks for the same END_DATE) and must end before the parent's notAfter."""
    usage_mode: str
    """GENERAL_PURPOSE or SHORT_LIVED_CERTIFICATE (certificates of 7 days at most; cannot change later)."""
    permanent_deletion_days: int
    """The restore window after deletion, 7-30 days."""
    key_storage_security_standard: str
    """FIPS_140_2_LEVEL_3_OR_HIGHER, or FIPS_140_2_LEVEL_2_OR_HIGHER where level 3 is not offered."""
    parent_ca_arn: NotRequired[pulumi.Input[str] | None]
    """SUBORDINATE only: the ARN of the CA that signs this one."""
    crl: NotRequired[CrlArgs | None]
    """Publish a CRL to a private S3 bucket; None for no CRL."""
    acm_permission: NotRequired[bool]
    """Let ACM renew the private certificates it issues from this CA."""
    tags: NotRequired[Mapping[str, str]]


class PrivateCa(pulumi.ComponentResource):
    """An AWS Private CA that is ACTIVE when this component's `arn` resolves.

    Creates:
    - `aws.s3.Bucket` (+ public access block, ownership controls, bucket policy for acm-pca.amazonaws.com) when a
      CRL is asked for, all in place before the CA;
    - `aws.acmpca.CertificateAuthority`;
    - `aws.acmpca.Certificate`: the CA's own certificate, self-signed (ROOT) or signed by the parent (SUBORDINATE);
    - `aws.acmpca.CertificateAuthorityCertificate`: the import that activates the CA;
    - `aws.acmpca.Permission` for acm.amazonaws.com when `acm_permission` is set.

    Pass `protect=True` in `opts` to protect the CA: the bucket, the CA and its certificate and activation inherit
    it; the ACM permission does not (turning `acm_permission` off must stay a plain update).
    """

    arn: pulumi.Output[str]
    """The CA's ARN, resolved only once the CA is activated: depending on it is depending on activation."""
    certificate_pem: pulumi.Output[str]
    """The CA certificate, PEM."""
    trust_bundle_pem: pulumi.Output[str]
    """The CA certificate then its chain up to the root: what clients and hosts add to their trust store."""
    usage_mode: pulumi.Output[str]
    """GENERAL_PURPOSE or SHORT_LIVED_CERTIFICATE."""
    not_after: pulumi.Output[str]
    """When the CA certificate expires (RFC 3339), read from the activated certificate itself: issued
    certificates must end before it."""
    acm_issuer_arn: pulumi.Output[str]
    """`arn`, resolved only once ACM's permission exists when `acm_permission` is set: what to give ACM to issue
    private certificates from, so they are requested after the permission their renewal needs."""
    crl_bucket_name: pulumi.Output[str | None]
    """The bucket the CRL is published to, or None."""

    def __init__(self, name: str, args: PrivateCaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        _validate(args)
        super().__init__("pca-backend:index:PrivateCa", name, None, opts)
        tags = {**args.get("tags", {}), "Name": args["subject"]["common_name"]}
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
        account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region

        self.crl_bucket: aws.s3.Bucket | None = None
        crl_ready: list[pulumi.Resource] = []
        if args.get("crl"):
            self.crl_bucket, crl_ready = self._crl_bucket(name, partition, account_id, region, tags)
        self.authority = self._authority(name, args, tags, crl_ready)
        signer_arn, signing_algorithm, template, validity = self._signer(args)
        self.ca_certificate = aws.acmpca.Certificate(
            f"{name}-ca-certificate",
            certificate_authority_arn=signer_arn,
            certificate_signing_request=self.authority.certificate_signing_request,
            signing_algorithm=signing_algorithm,
            template_arn=pulumi.Output.concat("arn:", partition, ":acm-pca:::template/", template),
            validity=validity,
            opts=pulumi.ResourceOptions(parent=self.authority),
        )

        # A root imports only its certificate; a subordinate imports its chain (the parent's certificate and
        # the parent's own chain), which AWS returns with the signed certificate.
        chain = self.ca_certificate.certificate_chain if args["ca_type"] == "SUBORDINATE" else None
        self.activation = aws.acmpca.CertificateAuthorityCertificate(
            f"{name}-activation",
            certificate_authority_arn=self.authority.arn,
            certificate=self.ca_certificate.certificate,
            certificate_chain=chain,
            opts=pulumi.ResourceOptions(parent=self.authority),
        )

        self.arn = self.activation.certificate_authority_arn
        self.acm_issuer_arn = self.arn
        self.acm_permission: aws.acmpca.Permission | None = None
        if args.get("acm_permission"):
            self.acm_permission = self._acm_permission(name, account_id)
            # ACM issues a private certificate at the request of the identity that asks for it, but renews it only
            # if the CA granted ACM this permission; without it the CA's owner must renew each one by hand
            # ("Assign certificate renewal permissions to ACM",
            # https://docs.aws.amazon.com/privateca/latest/userguide/PcaPermissions.html, and "Single-account
            # case 2" in https://docs.aws.amazon.com/privateca/latest/userguide/assign-permissions.html).
            # The engine cannot see that link: carrying the permission's id makes whatever takes this ARN (the
            # listener's ACM certificate) wait for the permission instead of racing it.
            self.acm_issuer_arn = pulumi.Output.all(self.arn, self.acm_permission.id).apply(lambda values: values[0])

        self.certificate_pem = self.activation.certificate
        self.trust_bundle_pem = pulumi.Output.all(self.activation.certificate, chain or "").apply(
            lambda parts: x509.join_pem(parts[0], parts[1])
        )
        self.usage_mode = self.authority.usage_mode
        # Not `self.authority.not_after`: the CA resource was read before activation and reports the zero time
        # until a refresh. The certificate that activated it says when it really ends.
        self.not_after = self.activation.certificate.apply(_not_after_of_certificate)
        self.crl_bucket_name = self.crl_bucket.bucket if self.crl_bucket else pulumi.Output.from_input(None)
        self.register_outputs(
            {
                "arn": self.arn,
                "certificate_pem": self.certificate_pem,
                "trust_bundle_pem": self.trust_bundle_pem,
                "usage_mode": self.usage_mode,
                "not_after": self.not_after,
                "crl_bucket_name": self.crl_bucket_name,
            }
        )

    def _authority(
        self, name: str, args: PrivateCaArgs, tags: Mapping[str, str], crl_ready: list[pulumi.Resource]
    ) -> aws.acmpca.CertificateAuthority:
        """The CA itself (PENDING_CERTIFICATE until activated), after its CRL bucket is ready."""
        revocation: aws.acmpca.CertificateAuthorityRevocationConfigurationArgs | None = None
        crl = args.get("crl")
        if crl and self.crl_bucket is not None:
            revocation = aws.acmpca.CertificateAuthorityRevocationConfigurationArgs(
                crl_configuration=aws.acmpca.CertificateAuthorityRevocationConfigurationCrlConfigurationArgs(
                    enabled=True,
                    expiration_in_days=crl["expiration_days"],
                    custom_cname=crl.get("custom_cname"),
                    s3_bucket_name=self.crl_bucket.bucket,
                    # Block Public Access refuses any other ACL (terraform-provider-aws#33306).
                    s3_object_acl="BUCKET_OWNER_FULL_CONTROL",
                )
            )
        subject = args["subject"]
        return aws.acmpca.CertificateAuthority(
            f"{name}-authority",
            type=args["ca_type"],
            usage_mode=args["usage_mode"],
            permanent_deletion_time_in_days=args["permanent_deletion_days"],
            key_storage_security_standard=args["key_storage_security_standard"],
            certificate_authority_configuration=aws.acmpca.CertificateAuthorityCertificateAuthorityConfigurationArgs(
                key_algorithm=args["key_algorithm"],
                signing_algorithm=x509.signing_algorithm_for(args["key_algorithm"]),
                subject=aws.acmpca.CertificateAuthorityCertificateAuthorityConfigurationSubjectArgs(
                    common_name=subject["common_name"],
                    organization=subject.get("organization"),
                    organizational_unit=subject.get("organizational_unit"),
                    country=subject.get("country"),
                    state=subject.get("state"),
                    locality=subject.get("locality"),
                ),
            ),
            revocation_configuration=revocation,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=crl_ready),
        )

    def _signer(
        self, args: PrivateCaArgs
    ) -> tuple[pulumi.Input[str], pulumi.Input[str], str, aws.acmpca.CertificateValidityArgs]:
        """Who signs the CA certificate, with which algorithm, template and validity: itself (ROOT) or its parent."""
        if args["ca_type"] == "ROOT":
            validity = aws.acmpca.CertificateValidityArgs(type="YEARS", value=str(args["validity_years"]))
            return self.authority.arn, x509.signing_algorithm_for(args["key_algorithm"]), ROOT_TEMPLATE, validity
        parent = aws.acmpca.get_certificate_authority_output(
            arn=args["parent_ca_arn"], opts=pulumi.InvokeOutputOptions(parent=self)
        )
        validity = aws.acmpca.CertificateValidityArgs(
            type="END_DATE",
            value=parent.certificate.apply(
                lambda parent_pem: _refuse_ended(subordinate_end_date(args["validity_years"], parent_pem))
            ),
        )
        # The parent signs with its own key: read its algorithm from its certificate.
        signing_algorithm = parent.certificate.apply(_signing_algorithm_of_certificate)
        return parent.arn, signing_algorithm, SUBORDINATE_TEMPLATE, validity

    def _acm_permission(self, name: str, account_id: pulumi.Output[str]) -> aws.acmpca.Permission:
        """ACM may issue, fetch and renew private certificates from this CA. Not protected: turning
        `acm_permission` off stays a plain update."""
        return aws.acmpca.Permission(
            f"{name}-acm-permission",
            certificate_authority_arn=self.activation.certificate_authority_arn,
            principal="acm.amazonaws.com",
            actions=ACM_PERMISSION_ACTIONS,
            source_account=account_id,
            opts=pulumi.ResourceOptions(parent=self.authority, protect=False),
        )

    def _crl_bucket(
        self,
        name: str,
        partition: pulumi.Output[str],
        account_id: pulumi.Output[str],
        region: pulumi.Output[str],
        tags: Mapping[str, str],
    ) -> tuple[aws.s3.Bucket, list[pulumi.Resource]]:
        """A private bucket ACM PCA can write CRLs to; returns it and what must exist before the CA."""
        bucket = aws.s3.Bucket(
            f"{name}-crl",
            force_destroy=False,
            tags={**tags, "Name": f"{tags['Name']} CRL"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        policy = pulumi.Output.all(bucket.arn, partition, account_id, region).apply(
            lambda values: json.dumps(crl_bucket_policy(*values))
        )
        return bucket, private_bucket_guards(f"{name}-crl", bucket, policy)


def crl_bucket_policy(bucket_arn: str, partition: str, account_id: str, region: str) -> dict[str, object]:
    """Let ACM PCA of this account (any of its CAs in this region) write CRLs; nothing else.

    The CA's own ARN cannot be named: the policy must exist before the CA (terraform-provider-aws#19570).
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AcmPcaWritesCrl",
                "Effect": "Allow",
                "Principal": {"Service": "acm-pca.amazonaws.com"},
                "Action": ["s3:PutObject", "s3:PutObjectAcl", "s3:GetBucketAcl", "s3:GetBucketLocation"],
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account_id},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{partition}:acm-pca:{region}:{account_id}:certificate-authority/*"
                    },
                },
            },
            deny_insecure_transport(bucket_arn),
        ],
    }


def _validate(args: PrivateCaArgs) -> None:
    problems = []
    if args["ca_type"] not in ("ROOT", "SUBORDINATE"):
        problems.append(f"ca_type {args['ca_type']!r} is not allowed; allowed: ROOT, SUBORDINATE")
    if args["ca_type"] == "SUBORDINATE" and not args.get("parent_ca_arn"):
        problems.append("parent_ca_arn is required for a SUBORDINATE CA")
    if args["ca_type"] == "ROOT" and args.get("parent_ca_arn"):
        problems.append("parent_ca_arn is only for a SUBORDINATE CA")
    if args["key_algorithm"] not in x509.KEY_ALGORITHMS:
        problems.append(x509.unsupported_key_algorithm(args["key_algorithm"]))
    if args["usage_mode"] not in USAGE_MODES:
        problems.append(f"usage_mode {args['usage_mode']!r}; allowed: {', '.join(USAGE_MODES)}")
    if args["key_storage_security_standard"] not in KEY_STORAGE_STANDARDS:
        problems.append(
            f"key_storage_security_standard {args['key_storage_security_standard']!r}; "
            f"allowed: {', '.join(KEY_STORAGE_STANDARDS)}"
        )
    low, high = PERMANENT_DELETION_DAYS_RANGE
    if not low <= args["permanent_deletion_days"] <= high:
        problems.append(f"permanent_deletion_days must be from {low} to {high}, got {args['permanent_deletion_days']}")
    if args["validity_years"] < 1:
        problems.append(f"validity_years must be at least 1, got {args['validity_years']}")
    if not args["subject"].get("common_name"):
        problems.append("subject.common_name is required")
    for field in SUBJECT_FIELD_LIMITS:
        value = args["subject"].get(field)
        problem = subject_field_problem(field, value) if isinstance(value, str) else None
        if problem is not None:
            problems.append(f"subject.{field} {problem}")
    crl = args.get("crl")
    if crl is not None:
        low, high = CRL_EXPIRATION_DAYS_RANGE
        if not low <= crl["expiration_days"] <= high:
            problems.append(f"crl.expiration_days must be from {low} to {high}, got {crl['expiration_days']}")
    if problems:
        raise ValueError("PrivateCa: " + "; ".join(problems))


def _signing_algorithm_of_certificate(certificate_pem: str) -> str:
    certificate = x509.load_certificates(certificate_pem)[0]
    return x509.signing_algorithm_for(x509.key_algorithm_of(certificate.public_key()))


def _not_after_of_certificate(certificate_pem: str) -> str:
    return x509.iso_utc(x509.not_after(x509.load_certificates(certificate_pem)[0]))


def subordinate_end_date(validity_years: int, parent_certificate_pem: str) -> str:
    """The subordinate's END_DATE (RFC 3339): `validity_years` calendar years after the parent certificate's
    notBefore, refusing one that would not end before the parent's notAfter.

    Only the parent's certificate and the setting decide it, never the clock: every `pulumi up` asks for the same
    date, so the subordinate is issued once and re-issued only when the parent or `caValidityYears` changes.
    """
    parent = x509.load_certificates(parent_certificate_pem)[0]
    parent_start, parent_end = parent.not_valid_before_utc, x509.not_after(parent)
    end = _add_years(parent_start, validity_years)
    if end >= parent_end:
        raise ValueError(
            f"caValidityYears {validity_years} would end the subordinate CA on {x509.iso_utc(end)} "
            f"({validity_years} years after its parent CA's certificate began, {x509.iso_utc(parent_start)}), "
            f"not before its parent CA expires ({x509.iso_utc(parent_end)}); a CA certificate cannot outlive its "
            "parent: lower caValidityYears"
        )
    return x509.iso_utc(end)


def _refuse_ended(end_date: str) -> str:
    """`end_date`, unless it has already passed (a subordinate asked for late in its parent's life, or one that
    has expired): AWS would refuse to sign it. The clock only decides whether to refuse, never the date asked for.
    """
    if x509.parse_iso_utc(end_date) <= datetime.now(UTC):
        raise ValueError(
            f"caValidityYears: the subordinate CA would end on {end_date}, which has already passed (the end is "
            "counted from its parent CA's start): raise caValidityYears, keeping it before the parent's expiry"
        )
    return end_date


def _add_years(moment: datetime, years: int) -> datetime:
    """The same calendar day `years` later; 29 February becomes 28 February in a common year."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)
