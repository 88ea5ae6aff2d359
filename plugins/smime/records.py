"""What the directory stores and answers: an entry per certificate and address, the reasons a
certificate is refused, the selection for one address, import reports and lookups.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from siegel import Availability, Text

from .certificates import fingerprint
from .texts import describe, format_time

RECORD_FORMAT = 1


Source = str
"""Where a certificate came from: ``import:FILE NAME``, ``harvest`` or ``ldap``."""
if TYPE_CHECKING:
    from .directory import CertificateDirectory



def iso_time(when: dt.datetime | None) -> str | None:
    return when.astimezone(dt.UTC).isoformat() if when is not None else None


def _parse_time(value: object) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else None


@attrs.frozen(kw_only=True)
class CertificateEntry:
    """One certificate filed under one address."""

    address: str
    fingerprint: str
    certificate: x509.Certificate = attrs.field(repr=False, eq=False)
    source: Source
    added_at: dt.datetime
    #: When a signed message last showed this certificate (harvest).
    seen_at: dt.datetime | None = None
    #: SMIMECapabilities OIDs the holder announced, in their order; None: never announced.
    capabilities: tuple[str, ...] | None = None
    capabilities_at: dt.datetime | None = None
    last_used: dt.datetime | None = None
    #: The state record's version (for updates without lost writes).
    version: int = attrs.field(default=0, eq=False)

    @property
    def key(self) -> str:
        return f"{self.address}/{self.fingerprint}"

    @property
    def subject(self) -> str:
        return describe(self.certificate)

    def to_json(self) -> bytes:
        return json.dumps({
            "format": RECORD_FORMAT,
            "der": base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)
                                    ).decode("ascii"),
            "source": self.source,
            "added_at": iso_time(self.added_at),
            "seen_at": iso_time(self.seen_at),
            "capabilities": list(self.capabilities) if self.capabilities is not None else None,
            "capabilities_at": iso_time(self.capabilities_at),
            "last_used": iso_time(self.last_used),
        }, separators=(",", ":")).encode()

    @classmethod
    def from_record(cls, key: str, value: bytes, version: int) -> CertificateEntry:
        """Raises :class:`ValueError` for a damaged record (or one whose DER does not match the
        fingerprint in its key)."""
        address, _, expected = key.rpartition("/")
        data = json.loads(value)
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise ValueError(f"record {key}: unknown format")
        certificate = x509.load_der_x509_certificate(base64.b64decode(data["der"], validate=True))
        if fingerprint(certificate) != expected:
            raise ValueError(f"record {key}: the certificate does not match its fingerprint")
        capabilities = data.get("capabilities")
        added_at = _parse_time(data.get("added_at"))
        if added_at is None:
            raise ValueError(f"record {key}: no added_at")
        return cls(
            address=address, fingerprint=expected, certificate=certificate,
            source=str(data.get("source", "")), added_at=added_at,
            seen_at=_parse_time(data.get("seen_at")),
            capabilities=tuple(str(c) for c in capabilities) if isinstance(capabilities, list)
            else None,
            capabilities_at=_parse_time(data.get("capabilities_at")),
            last_used=_parse_time(data.get("last_used")), version=version)


@attrs.frozen
class Problem:
    """One reason a certificate is not used. ``code`` is stable, for programs:

    ``expired``, ``not-yet-valid``, ``wrong-address``, ``no-key-encipherment``,
    ``no-key-agreement``, ``no-email-protection``, ``weak-key``, ``unsupported-key``,
    ``untrusted``, ``revoked``, ``revocation-unknown``, ``damaged``.
    """

    code: str
    reason: Text


@attrs.frozen(kw_only=True)
class UsableCertificate:
    entry: CertificateEntry
    #: The validated path, the certificate first and the trust anchor last.
    chain: tuple[x509.Certificate, ...] = attrs.field(repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        return self.entry.certificate

    @property
    def fingerprint(self) -> str:
        return self.entry.fingerprint


def _problems(values: Iterable[Problem]) -> tuple[Problem, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class Refusal:
    """A candidate certificate that is not used, and every reason why."""

    fingerprint: str
    subject: str
    problems: tuple[Problem, ...] = attrs.field(converter=_problems)
    entry: CertificateEntry | None = attrs.field(default=None, repr=False)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(problem.code for problem in self.problems)

    @property
    def reason(self) -> Text:
        label = f"{self.fingerprint[:16]} ({self.subject})"
        return Text(de=f"Zertifikat {label}: " + "; ".join(p.reason.de for p in self.problems),
                    en=f"certificate {label}: " + "; ".join(p.reason.en for p in self.problems))


@attrs.frozen(kw_only=True)
class Selection:
    """What :meth:`CertificateDirectory.find_usable` found for one address."""

    address: str
    #: Usable certificates, best first (newest notBefore, then longest remaining validity).
    usable: tuple[UsableCertificate, ...]
    refused: tuple[Refusal, ...]
    #: SMIMECapabilities to encrypt with: the chosen certificate's, else the newest announcement
    #: harvested for this address; None when the holder never announced any.
    capabilities: tuple[str, ...] | None = None
    #: What a :class:`CertificateLookup` said (e.g. LDAP unreachable); part of :attr:`reason`
    #: when nothing is usable.
    notes: tuple[Text, ...] = ()

    @property
    def best(self) -> UsableCertificate | None:
        return self.usable[0] if self.usable else None

    @property
    def certificate(self) -> x509.Certificate | None:
        return self.usable[0].certificate if self.usable else None

    @property
    def reason(self) -> Text:
        best = self.best
        if best is not None:
            until_de, until_en = format_time(best.certificate.not_valid_after_utc)
            label = f"{best.fingerprint[:16]} ({best.entry.subject})"
            return Text(de=f"S/MIME-Zertifikat {label}, gültig bis {until_de}",
                        en=f"S/MIME certificate {label}, valid until {until_en}")
        if not self.refused:
            reason = Text(de=f"kein S/MIME-Zertifikat für {self.address} im Verzeichnis",
                          en=f"no S/MIME certificate for {self.address} in the directory")
        else:
            reason = Text(
                de=f"kein verwendbares S/MIME-Zertifikat für {self.address}: "
                + " | ".join(r.reason.de for r in self.refused),
                en=f"no usable S/MIME certificate for {self.address}: "
                + " | ".join(r.reason.en for r in self.refused))
        if not self.notes:
            return reason
        return Text(de="; ".join([reason.de, *(n.de for n in self.notes)]),
                    en="; ".join([reason.en, *(n.en for n in self.notes)]))

    def availability(self) -> Availability:
        """The answer of a protection method's ``can_serve``."""
        return Availability(self.best is not None, self.reason)


@attrs.frozen(kw_only=True)
class ImportReport:
    """What one import did."""

    source: Source
    added: tuple[CertificateEntry, ...] = ()
    #: Already in the directory under the same address (left as they were).
    present: tuple[CertificateEntry, ...] = ()
    #: Subjects of CA certificates kept as intermediates.
    intermediates: tuple[str, ...] = ()
    #: Certificates not taken, and other notes (private keys ignored, ...).
    skipped: tuple[str, ...] = ()
    #: Certificates taken whose revocation the tenant's settings cannot check (no CRL
    #: distribution point, OCSP responder or CRL file for them): they will be refused.
    unchecked: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class LookupResult:
    """What a :class:`CertificateLookup` found for one address."""

    #: Certificates for the address, filed in the directory or, where the plugin state is
    #: read-only (``siegel explain``), only in memory; judged like every stored certificate.
    entries: tuple[CertificateEntry, ...] = ()
    #: CA certificates that came along, for chain building.
    intermediates: tuple[x509.Certificate, ...] = ()
    #: What the lookup did, for the reason when nothing is usable.
    note: Text


class CertificateLookup(Protocol):
    """Somewhere else to look for an address's certificates (:class:`.ldap.LdapCertificateSource`).

    Called by :meth:`CertificateDirectory.find_usable` only when no stored certificate is usable.
    Must not raise for an unreachable or misbehaving server: it returns no entries and says why
    in ``note`` (fail closed)."""

    async def lookup(self, directory: CertificateDirectory, address: str) -> LookupResult: ...


__all__ = [
    "RECORD_FORMAT",
    "CertificateEntry",
    "CertificateLookup",
    "ImportReport",
    "LookupResult",
    "Problem",
    "Refusal",
    "Selection",
    "Source",
    "UsableCertificate",
    "iso_time",
]
