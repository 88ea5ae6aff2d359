"""Certificate revocation lists: reading them (PEM or DER), the distribution points a certificate
names, and the status one CRL gives a certificate after checking its issuer, signature, scope
and freshness.
"""

from __future__ import annotations

import datetime as dt
import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from siegel import Text

from ..texts import describe, format_time
from .fetch import is_http
from .status import CLOCK_SKEW, RevocationStatus

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


def load_crls(data: bytes, where: str) -> tuple[x509.CertificateRevocationList, ...]:
    """Every CRL in ``data``: DER, or PEM with one or more ``X509 CRL`` blocks.

    Raises :class:`ValueError` naming ``where`` when there is none or one does not parse."""
    if b"-----BEGIN" in data:
        blocks = _PEM_CRL.findall(data)
        if not blocks:
            raise ValueError(f"{where}: no '-----BEGIN X509 CRL-----' block")
        crls = []
        for index, block in enumerate(blocks):
            try:
                crls.append(x509.load_pem_x509_crl(block))
            except ValueError as exc:
                raise ValueError(f"{where}: CRL {index + 1} does not parse: {exc}") from None
        return tuple(crls)
    try:
        return (x509.load_der_x509_crl(data),)
    except ValueError as exc:
        raise ValueError(f"{where}: not a CRL (PEM or DER): {exc}") from None


def crl_urls(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    """(HTTP URLs, skipped URLs) of the certificate's CRL distribution points."""
    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return [], []
    usable: list[str] = []
    skipped: list[str] = []
    for point in points:
        # A point with its own cRLIssuer is an indirect CRL, which siegel does not read.
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier):
                if is_http(name.value) and point.crl_issuer is None and point.reasons is None:
                    usable.append(name.value)
                else:
                    skipped.append(name.value)
    return usable, skipped


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def crl_status_from(crl: x509.CertificateRevocationList, origin: str,
              certificate: x509.Certificate, issuer: x509.Certificate, now: dt.datetime,
              problems: list[Text]) -> RevocationStatus | None:
    """The status according to one CRL, or None (with the problem noted) if it is unusable."""
    name = describe(issuer)
    if crl.issuer != issuer.subject:
        problems.append(Text(de=f"{origin}: Sperrliste von „{crl.issuer.rfc4514_string()}“, "
                             f"nicht von „{name}“",
                             en=f"{origin}: CRL issued by \"{crl.issuer.rfc4514_string()}\", "
                             f"not by \"{name}\""))
        return None
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.crl_sign:
        problems.append(Text(de=f"{origin}: „{name}“ darf keine Sperrlisten signieren (keyUsage)",
                             en=f"{origin}: \"{name}\" may not sign CRLs (keyUsage)"))
        return None
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, UnsupportedAlgorithm, ValueError):
        valid = False
    if not valid:
        problems.append(Text(de=f"{origin}: Signatur der Sperrliste ungültig",
                             en=f"{origin}: CRL signature does not verify with the key of "
                             f"\"{name}\""))
        return None
    scope = _crl_scope_problem(crl, certificate)
    if scope is not None:
        problems.append(Text(de=f"{origin}: {scope.de}", en=f"{origin}: {scope.en}"))
        return None
    if crl.last_update_utc > now + CLOCK_SKEW:
        when_de, when_en = format_time(crl.last_update_utc)
        problems.append(Text(de=f"{origin}: Sperrliste erst ab {when_de} gültig",
                             en=f"{origin}: CRL not valid before {when_en}"))
        return None
    if crl.next_update_utc is not None and crl.next_update_utc < now - CLOCK_SKEW:
        when_de, when_en = format_time(crl.next_update_utc)
        problems.append(Text(de=f"{origin}: Sperrliste seit {when_de} veraltet (nextUpdate)",
                             en=f"{origin}: CRL outdated since {when_en} (nextUpdate)"))
        return None
    entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
    issued_de, issued_en = format_time(crl.last_update_utc)
    detail = Text(de=f"Sperrliste {origin} vom {issued_de}", en=f"CRL {origin} of {issued_en}")
    if entry is None:
        return RevocationStatus("good", detail)
    reason: str | None = None
    try:
        flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        pass
    else:
        if flag is x509.ReasonFlags.remove_from_crl:
            return RevocationStatus("good", detail)
        reason = flag.value
    return RevocationStatus("revoked", detail, revoked_at=entry.revocation_date_utc, reason=reason)


def _crl_scope_problem(crl: x509.CertificateRevocationList, certificate: x509.Certificate
                       ) -> Text | None:
    for extension in crl.extensions:
        value = extension.value
        if isinstance(value, x509.DeltaCRLIndicator):
            return Text(de="Delta-Sperrliste (nur mit Basis-Sperrliste lesbar)",
                        en="delta CRL (needs its base CRL)")
        if isinstance(value, x509.IssuingDistributionPoint):
            if value.indirect_crl:
                return Text(de="indirekte Sperrliste (nicht unterstützt)",
                            en="indirect CRL (not supported)")
            if value.only_some_reasons is not None:
                return Text(de="Sperrliste nur für einige Sperrgründe",
                            en="CRL covers only some revocation reasons")
            if value.only_contains_attribute_certs:
                return Text(de="Sperrliste nur für Attributzertifikate",
                            en="CRL covers attribute certificates only")
            if value.only_contains_ca_certs and not _is_ca(certificate):
                return Text(de="Sperrliste nur für CA-Zertifikate",
                            en="CRL covers CA certificates only")
            if value.only_contains_user_certs and _is_ca(certificate):
                return Text(de="Sperrliste nur für Endnutzer-Zertifikate",
                            en="CRL covers end-entity certificates only")
        elif extension.critical and isinstance(value, x509.UnrecognizedExtension):
            return Text(de=f"unbekannte kritische Erweiterung {extension.oid.dotted_string}",
                        en=f"unknown critical extension {extension.oid.dotted_string}")
    return None


__all__ = [
    "crl_status_from",
    "crl_urls",
    "load_crls",
]
