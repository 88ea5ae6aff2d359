"""Key and certificate helpers shared by enveloping and signing."""

from __future__ import annotations

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import KeyMismatchError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
"""Private key types usable for S/MIME: RSA and elliptic-curve keys."""

SUPPORTED_CURVES: dict[str, str] = {
    "secp256r1": "1.2.840.10045.3.1.7",
    "secp384r1": "1.3.132.0.34",
    "secp521r1": "1.3.132.0.35",
    "brainpoolP256r1": "1.3.36.3.3.2.8.1.1.7",
    "brainpoolP384r1": "1.3.36.3.3.2.8.1.1.11",
    "brainpoolP512r1": "1.3.36.3.3.2.8.1.1.13",
}
"""Curves accepted for ECDH and ECDSA (`cryptography` curve name -> OID); all have cofactor 1."""


def require_key_pair(private_key: PrivateKey, certificate: x509.Certificate, role: str) -> None:
    """Raise :class:`KeyMismatchError` unless ``private_key`` belongs to ``certificate``."""
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ours = private_key.public_key().public_bytes(*spki)
    if ours != certificate.public_key().public_bytes(*spki):
        raise KeyMismatchError(
            f"the {role} key does not belong to the certificate "
            f"{certificate.subject.rfc4514_string()} (serial {certificate.serial_number:#x}); "
            "pass the certificate issued for this key"
        )


def to_asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    """The asn1crypto form of a `cryptography` certificate."""
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def issuer_and_serial(certificate: x509.Certificate) -> cms.IssuerAndSerialNumber:
    """The IssuerAndSerialNumber identifying ``certificate`` in a RecipientInfo or SignerInfo."""
    parsed = to_asn1(certificate)
    return cms.IssuerAndSerialNumber(
        {"issuer": parsed.issuer, "serial_number": parsed.serial_number}
    )
