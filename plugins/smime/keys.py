"""Key and certificate helpers shared by enveloping and signing."""

from __future__ import annotations

import functools

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import _asn1
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

_SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
# Derived values per certificate (keyed by its DER, so equal certificates share an entry). A
# gateway signs for a handful of senders and encrypts to a bounded set of peers.
_CACHE_SIZE = 512


def require_key_pair(private_key: PrivateKey, certificate: x509.Certificate, role: str) -> None:
    """Raise :class:`KeyMismatchError` unless ``private_key`` belongs to ``certificate``."""
    ours = private_key.public_key().public_bytes(*_SPKI)
    if ours != _public_key_der(certificate_der(certificate)):
        raise KeyMismatchError(
            f"the {role} key does not belong to the certificate "
            f"{certificate.subject.rfc4514_string()} (serial {certificate.serial_number:#x}); "
            "pass the certificate issued for this key"
        )


def certificate_der(certificate: x509.Certificate) -> bytes:
    """The DER encoding of ``certificate`` (as received; `cryptography` keeps the bytes)."""
    return certificate.public_bytes(serialization.Encoding.DER)


def issuer_and_serial_der(certificate: x509.Certificate) -> bytes:
    """The DER of the IssuerAndSerialNumber identifying ``certificate`` in a RecipientInfo or
    SignerInfo (cached per certificate)."""
    return _issuer_and_serial_der(certificate_der(certificate))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _issuer_and_serial_der(der: bytes) -> bytes:
    # The issuer Name exactly as encoded in the certificate, the serial number re-encoded.
    parsed = asn1_x509.Certificate.load(der)
    return _asn1.der(
        cms.IssuerAndSerialNumber({"issuer": parsed.issuer, "serial_number": parsed.serial_number})
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _public_key_der(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_key().public_bytes(*_SPKI)


def issuer_name_and_serial(certificate: x509.Certificate) -> tuple[bytes, int]:
    """The DER of the issuer Name and the serial number of ``certificate``, as asn1crypto reads
    them (cached per certificate); compare names with :func:`names_equal`."""
    return _issuer_name_and_serial(certificate_der(certificate))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _issuer_name_and_serial(der: bytes) -> tuple[bytes, int]:
    parsed = asn1_x509.Certificate.load(der)
    return _asn1.der(parsed.issuer), _asn1.as_int(parsed["tbs_certificate"]["serial_number"])


@functools.lru_cache(maxsize=_CACHE_SIZE)
def names_equal(first: bytes, second: bytes) -> bool:
    """asn1crypto's comparison of two DER Names (RFC 5280 7.1 normalization: case, spaces),
    cached by the encodings. Unreadable names raise as the comparison itself does."""
    return bool(asn1_x509.Name.load(first) == asn1_x509.Name.load(second))
