"""What a certificate says about itself: its fingerprint, the addresses it names (RFC 8550 3),
whether it is a CA certificate or self-signed.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from siegel import Address, InvalidAddress

from .texts import describe


def normalize_address(address: str | Address) -> str:
    """The directory's form of an address: :attr:`siegel.Address.key`, the one form under which
    siegel keys anything about an address (local part unquoted where quotes are needless,
    NFC-normalised, lower-cased; domain as IDNA A-labels).

    Raises :class:`siegel.InvalidAddress`."""
    parsed = address if isinstance(address, Address) else Address.parse(address)
    return parsed.key


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 over the DER encoding, lower-case hex (64 characters)."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def _has_san(certificate: x509.Certificate) -> bool:
    try:
        certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    return True


def _normalized(values: Iterable[str]) -> list[str]:
    found: list[str] = []
    for value in values:
        try:
            address = normalize_address(value)
        except InvalidAddress:
            continue
        if address not in found:
            found.append(address)
    return found


def san_addresses(certificate: x509.Certificate) -> list[str]:
    """The rfc822Name entries of the subjectAltName, normalised."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return _normalized(san.get_values_for_type(x509.RFC822Name))


def subject_addresses(certificate: x509.Certificate) -> list[str]:
    """The subject's emailAddress attributes (PKCS#9, legacy), normalised."""
    values = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
    return _normalized(v for v in values if isinstance(v, str))


def certified_addresses(certificate: x509.Certificate) -> list[str]:
    """The addresses the certificate is valid for: its subjectAltName rfc822Names, or, only when it
    has no subjectAltName at all, the subject's emailAddress (RFC 8550 3)."""
    return san_addresses(certificate) if _has_san(certificate) else subject_addresses(certificate)


def mentioned_addresses(certificate: x509.Certificate) -> list[str]:
    """Every address the certificate mentions anywhere; the directory files it under each, so that
    a certificate naming an address only in a place that does not count still shows up (refused,
    with the reason) when someone looks for that address."""
    return list(dict.fromkeys([*san_addresses(certificate), *subject_addresses(certificate)]))


def is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def is_self_signed(certificate: x509.Certificate) -> bool:
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def certificate_label(certificate: x509.Certificate) -> str:
    return f"{fingerprint(certificate)[:16]} ({describe(certificate)})"


__all__ = [
    "certificate_label",
    "certified_addresses",
    "fingerprint",
    "is_ca",
    "is_self_signed",
    "mentioned_addresses",
    "normalize_address",
    "san_addresses",
    "subject_addresses",
]
