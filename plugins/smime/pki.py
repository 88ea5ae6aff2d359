"""RFC 5280 path validation for e-mail certificates, shared by signature verification and the
certificate directory.

Not the Web PKI's rules: e-mail PKIs (e.g. the German administration's) have no SAN/AKI
requirements of the CA/Browser Forum. `cryptography` still enforces the RFC 5280 core: signatures,
validity, basicConstraints cA and pathLen, name chaining and constraints, unknown critical
extensions. On top of that: a CA's keyUsage (if present) includes keyCertSign, and an
extendedKeyUsage (if present, on CA or end entity) allows emailProtection or anyExtendedKeyUsage.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

from cryptography import x509
from cryptography.x509 import verification as x509_verification
from cryptography.x509.oid import ExtendedKeyUsageOID

MAX_CHAIN_DEPTH = 8
Purpose = Literal["signing", "encryption"]


def _email_protection(_policy: x509_verification.Policy, _certificate: x509.Certificate,
                      value: x509.ExtendedKeyUsage | None) -> None:
    if value is not None and not (ExtendedKeyUsageOID.EMAIL_PROTECTION in value
                                  or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in value):
        raise ValueError("extendedKeyUsage does not include emailProtection")


def _ca_key_usage(_policy: x509_verification.Policy, _certificate: x509.Certificate,
                  value: x509.KeyUsage | None) -> None:
    if value is not None and not value.key_cert_sign:
        raise ValueError("a CA certificate's keyUsage must include keyCertSign")


def _signing_key_usage(_policy: x509_verification.Policy, _certificate: x509.Certificate,
                       value: x509.KeyUsage | None) -> None:
    # RFC 8550 4.4.2: a signing certificate with keyUsage needs digitalSignature or
    # nonRepudiation (contentCommitment).
    if value is not None and not (value.digital_signature or value.content_commitment):
        raise ValueError("keyUsage permits neither digitalSignature nor nonRepudiation")


_AGNOSTIC = x509_verification.Criticality.AGNOSTIC
_CA_POLICY = (
    x509_verification.ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, _AGNOSTIC, None)
    .may_be_present(x509.KeyUsage, _AGNOSTIC, _ca_key_usage)
    .may_be_present(x509.ExtendedKeyUsage, _AGNOSTIC, _email_protection)
)
# Encryption certificates' key usage (keyEncipherment or keyAgreement) is judged by the directory
# itself, with a precise reason; here only the extended key usage.
_EE_POLICIES: dict[Purpose, x509_verification.ExtensionPolicy] = {
    "encryption": (x509_verification.ExtensionPolicy.permit_all()
                   .may_be_present(x509.ExtendedKeyUsage, _AGNOSTIC, _email_protection)),
    "signing": (x509_verification.ExtensionPolicy.permit_all()
                .may_be_present(x509.KeyUsage, _AGNOSTIC, _signing_key_usage)
                .may_be_present(x509.ExtendedKeyUsage, _AGNOSTIC, _email_protection)),
}


def validate_path(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                  anchors: Sequence[x509.Certificate], at: dt.datetime, purpose: Purpose,
                  ) -> tuple[x509.Certificate, ...]:
    """The validated chain, leaf first and anchor last. Raises
    :class:`cryptography.x509.verification.VerificationError` saying what failed."""
    verifier = (
        x509_verification.PolicyBuilder()
        .store(x509_verification.Store(list(anchors)))
        .time(at)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICIES[purpose])
        .build_client_verifier()
    )
    return tuple(verifier.verify(leaf, list(intermediates)).chain)
