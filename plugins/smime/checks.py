"""The checks of one certificate against an address and the policy: validity period, the address
it names, its key and key usages.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from siegel import Text

from .certificates import certified_addresses, subject_addresses
from .policy import RSA_FLOOR_BITS, DirectoryPolicy
from .records import Problem
from .texts import format_time

EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}



def extension_value(certificate: x509.Certificate, kind: type[Any]) -> Any:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def validity_problems(certificate: x509.Certificate, now: dt.datetime) -> list[Problem]:
    if now < certificate.not_valid_before_utc:
        de, en = format_time(certificate.not_valid_before_utc)
        return [Problem("not-yet-valid", Text(de=f"erst ab {de} gültig", en=f"not valid before {en}"))]
    if now > certificate.not_valid_after_utc:
        de, en = format_time(certificate.not_valid_after_utc)
        return [Problem("expired", Text(de=f"abgelaufen seit {de}", en=f"expired since {en}"))]
    return []


def address_problems(certificate: x509.Certificate, address: str) -> list[Problem]:
    certified = certified_addresses(certificate)
    if address in certified:
        return []
    names = ", ".join(certified) or "-"
    if address in subject_addresses(certificate):
        return [Problem("wrong-address", Text(
            de=f"{address} steht nur im Subject (emailAddress), das bei vorhandenem subjectAltName "
            f"nicht zählt; subjectAltName nennt {names}",
            en=f"{address} appears only in the subject's emailAddress, which does not count when "
            f"there is a subjectAltName; the subjectAltName names {names}"))]
    return [Problem("wrong-address", Text(de=f"nennt nicht {address}, sondern {names}",
                                          en=f"does not name {address} but {names}"))]


def key_problems(certificate: x509.Certificate, policy: DirectoryPolicy) -> list[Problem]:
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        return [Problem("unsupported-key", Text(de=f"Schlüssel nicht lesbar ({exc})",
                                                en=f"unreadable public key ({exc})"))]
    usage: x509.KeyUsage | None = extension_value(certificate, x509.KeyUsage)
    problems: list[Problem] = []
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.key_size
        floor = RSA_FLOOR_BITS if policy.allow_rsa_below_minimum else policy.minimum_rsa_bits
        if bits < floor:
            problems.append(Problem("weak-key", Text(
                de=f"RSA-Schlüssel mit {bits} Bit unter dem Minimum von {floor} Bit",
                en=f"RSA key {bits} bits below minimum {floor}")))
        if usage is not None and not usage.key_encipherment:
            problems.append(Problem("no-key-encipherment", Text(
                de="keyUsage erlaubt keine Schlüsselverschlüsselung (keyEncipherment)",
                en="keyUsage does not permit key encipherment (keyEncipherment)")))
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in policy.allowed_curves:
            problems.append(Problem("unsupported-key", Text(
                de=f"elliptische Kurve {key.curve.name} ist nicht zugelassen",
                en=f"elliptic curve {key.curve.name} is not allowed")))
        if usage is not None and not usage.key_agreement:
            problems.append(Problem("no-key-agreement", Text(
                de="keyUsage erlaubt keine Schlüsselvereinbarung (keyAgreement)",
                en="keyUsage does not permit key agreement (keyAgreement)")))
    else:
        kind = type(key).__name__.removeprefix("_").replace("PublicKey", "")
        problems.append(Problem("unsupported-key", Text(
            de=f"Schlüsseltyp {kind} kann nicht verschlüsselt werden",
            en=f"key type {kind} cannot be encrypted to")))
    eku: x509.ExtendedKeyUsage | None = extension_value(certificate, x509.ExtendedKeyUsage)
    if eku is not None and not (ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
                                or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku):
        names = ", ".join(EKU_NAMES.get(oid, oid.dotted_string) for oid in eku) or "-"
        problems.append(Problem("no-email-protection", Text(
            de=f"extendedKeyUsage ohne emailProtection (enthält {names})",
            en=f"extendedKeyUsage lacks emailProtection (has {names})")))
    return problems


__all__ = [
    "EKU_NAMES",
    "address_problems",
    "extension_value",
    "key_problems",
    "validity_problems",
]
