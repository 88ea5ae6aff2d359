"""The certificate directory: recipients' S/MIME certificates, where they came from, and whether
one may be used to encrypt for an address right now.

Certificates come from files an administrator imports (PEM, DER, PKCS#7 certs-only bundles,
PKCS#12 with or without a password; private keys in them are ignored) and from signed mail whose
signature the gateway verified (:func:`harvest`, which also keeps the signer's SMIMECapabilities).
They live in the plugin state, namespace ``smime.certificates``, once per address they name
(key ``address/sha256-fingerprint``); CA certificates found alongside are kept in
``smime.intermediates`` to build chains later. Trust anchors never come from imports: only from the
configuration (:class:`SmimeDirectorySettings`).

:meth:`CertificateDirectory.find_usable` picks the certificate to encrypt to and says, for every
other candidate, exactly why it is refused, in German and English (``siegel explain`` shows it).
A certificate is used only if it is valid now, names the address, permits key encipherment (RSA) or
key agreement (EC), permits e-mail protection, has a strong enough key, chains to a configured
trust anchor, and is not revoked (see :mod:`.revocation`). The chain is built here, with a precise
reason when it fails, and then validated once more with `cryptography`'s RFC 5280 path validation
(which also enforces name constraints and unknown critical extensions).

When nothing stored is usable, :meth:`CertificateDirectory.find_usable` asks the directory's
optional :class:`CertificateLookup` (the LDAP lookup of :mod:`.ldap`); what it finds is filed and
then judged exactly like every other certificate.

Addresses are compared case-insensitively (local part lower-cased, domain in IDNA A-labels): a CA
writing ``Max.Muster@Behoerde.de`` into a certificate means the mailbox mail is sent to as
``max.muster@behoerde.de``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509 import verification as x509_verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from siegel import (
    Address,
    Availability,
    Clock,
    ConfigPath,
    InvalidAddress,
    PluginState,
    Services,
    SettingError,
    StateConflict,
    Text,
)

from .capabilities import SmimeCapabilities
from .keys import SUPPORTED_CURVES
from .pki import MAX_CHAIN_DEPTH, validate_path
from .profiles import AlgorithmChoice, Declined
from .revocation import (
    REVOCATION_MODES,
    RevocationChecker,
    RevocationMode,
    crl_urls,
    describe,
    format_time,
    load_crls,
    ocsp_urls,
)

log = logging.getLogger(__name__)

CERTIFICATES_NAMESPACE = "smime.certificates"
INTERMEDIATES_NAMESPACE = "smime.intermediates"
#: Below this no RSA key is used, whatever the policy allows.
RSA_FLOOR_BITS = 2048
_RECORD_FORMAT = 1
_WEAK_SIGNATURE_HASHES = ("md5", "sha1")

EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}

Source = str
"""Where a certificate came from: ``import:FILE NAME``, ``harvest`` or ``ldap``."""


# --- addresses and certificates -------------------------------------------------------------------


def normalize_address(address: str | Address) -> str:
    """The directory's form of an address: local part lower-cased, domain as IDNA A-labels.

    Raises :class:`siegel.InvalidAddress`."""
    parsed = address if isinstance(address, Address) else Address.parse(address)
    return f"{parsed.local.lower()}@{parsed.domain}"


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


def _self_signed(certificate: x509.Certificate) -> bool:
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _label(certificate: x509.Certificate) -> str:
    return f"{fingerprint(certificate)[:16]} ({describe(certificate)})"


# --- loading files --------------------------------------------------------------------------------


class ImportFailure(ValueError):
    """A file could not be read as certificates; the message names the file and says why."""


@attrs.frozen(kw_only=True)
class LoadedCertificates:
    certificates: tuple[x509.Certificate, ...]
    #: What was in the file but not taken (private keys, unknown PEM blocks).
    notes: tuple[str, ...] = ()


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def _pem_body(body: bytes, label: str, name: str) -> bytes:
    lines = [line.strip() for line in body.splitlines()]
    if any(b":" in line for line in lines):
        raise ImportFailure(f"{name}: encrypted or annotated PEM block {label} is not supported")
    try:
        return base64.b64decode(b"".join(lines), validate=True)
    except (binascii.Error, ValueError):
        raise ImportFailure(f"{name}: PEM block {label} is not valid base64") from None


def _pkcs7(der: bytes, name: str) -> list[x509.Certificate]:
    try:
        return list(pkcs7.load_der_pkcs7_certificates(der))
    except ValueError as exc:
        raise ImportFailure(f"{name}: unreadable PKCS#7 bundle: {exc}") from None


def _is_pfx(data: bytes) -> bool:
    try:
        return bool(asn1_pkcs12.Pfx.load(data)["version"].native == "v3")
    except (ValueError, TypeError, KeyError):
        return False


def _pkcs12(data: bytes, name: str, password: bytes | None) -> LoadedCertificates:
    attempts = [password] if password is not None else [None, b""]
    last_error: Exception | None = None
    for attempt in attempts:
        try:
            bundle = pkcs12.load_pkcs12(data, attempt)
        except (ValueError, TypeError) as exc:
            last_error = exc
            continue
        certificates = ([bundle.cert.certificate] if bundle.cert is not None else []) + [
            extra.certificate for extra in bundle.additional_certs]
        notes = (f"{name}: the private key was not imported (siegel needs only certificates of "
                 "recipients)",) if bundle.key is not None else ()
        if not certificates:
            raise ImportFailure(f"{name}: the PKCS#12 file holds no certificate")
        return LoadedCertificates(certificates=tuple(certificates), notes=notes)
    hint = "wrong password" if password is not None else "it needs a password (--password-file)"
    raise ImportFailure(f"{name}: PKCS#12 file cannot be opened: {hint} ({last_error})")


def load_certificates(data: bytes, *, name: str, password: bytes | None = None
                      ) -> LoadedCertificates:
    """Read certificates from PEM (certificates and PKCS#7/CMS blocks), DER, PKCS#7 certs-only
    (DER) or PKCS#12 (with ``password`` if it has one). Raises :class:`ImportFailure`."""
    if b"-----BEGIN " in data:
        certificates: list[x509.Certificate] = []
        notes: list[str] = []
        for raw_label, body in _PEM_BLOCK.findall(data):
            label = raw_label.decode("ascii")
            if "PRIVATE KEY" in label:
                notes.append(f"{name}: a private key was not imported (siegel needs only "
                             "certificates of recipients)")
                continue
            if label not in ("CERTIFICATE", "X509 CERTIFICATE", "PKCS7", "CMS"):
                notes.append(f"{name}: PEM block {label} skipped")
                continue
            der = _pem_body(body, label, name)
            if label in ("PKCS7", "CMS"):
                certificates += _pkcs7(der, name)
                continue
            try:
                certificates.append(x509.load_der_x509_certificate(der))
            except ValueError as exc:
                raise ImportFailure(f"{name}: certificate {len(certificates) + 1} does not parse: "
                                    f"{exc}") from None
        if not certificates:
            raise ImportFailure(f"{name}: no certificate in this PEM file")
        return LoadedCertificates(certificates=tuple(certificates), notes=tuple(notes))
    try:
        return LoadedCertificates(certificates=(x509.load_der_x509_certificate(data),))
    except ValueError:
        pass
    try:
        return LoadedCertificates(certificates=tuple(pkcs7.load_der_pkcs7_certificates(data)))
    except ValueError:
        pass
    if _is_pfx(data):
        return _pkcs12(data, name, password)
    raise ImportFailure(f"{name}: not a certificate file (PEM, DER, PKCS#7 or PKCS#12)")


def load_anchor_file(path: str | os.PathLike[str]) -> tuple[x509.Certificate, ...]:
    """Trust anchors from a PEM file (one or more certificates) or a DER certificate.

    Raises :class:`ValueError` naming the file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    try:
        loaded = load_certificates(data, name=str(path))
    except ImportFailure as exc:
        raise ValueError(str(exc)) from None
    for certificate in loaded.certificates:
        if not is_ca(certificate):
            raise ValueError(f"{path}: {describe(certificate)} is not a CA certificate "
                             "(no basicConstraints with cA true); it cannot be a trust anchor")
    return loaded.certificates


# --- policy and settings --------------------------------------------------------------------------


def _certificates(values: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    return tuple(values)


def _paths(values: Iterable[str | os.PathLike[str]]) -> tuple[Path, ...]:
    return tuple(Path(v) for v in values)


def _mode(_instance: object, _attribute: object, value: str) -> None:
    if value not in REVOCATION_MODES:
        raise ValueError(f"revocation must be one of {', '.join(REVOCATION_MODES)}, not {value!r}")


@attrs.frozen(kw_only=True)
class DirectoryPolicy:
    """What makes a certificate usable; built from the settings by :func:`policy_from_settings`."""

    trust_anchors: tuple[x509.Certificate, ...] = attrs.field(converter=_certificates)
    minimum_rsa_bits: int = 3000
    #: Use RSA keys below ``minimum_rsa_bits`` (never below 2048 bits).
    allow_rsa_below_minimum: bool = False
    #: `cryptography` curve names; default: NIST P-256/384/521 and brainpool 256/384/512.
    allowed_curves: frozenset[str] = frozenset(SUPPORTED_CURVES)
    revocation: RevocationMode = attrs.field(default="crl-or-ocsp", validator=_mode)
    crl_files: tuple[Path, ...] = attrs.field(default=(), converter=_paths)
    #: Fetch CRLs from distribution points and ask OCSP responders over HTTP.
    fetch_revocation: bool = True
    revocation_timeout_seconds: float = 10.0
    cache_seconds: float = 3600.0
    #: How long a failed fetch is not retried.
    failure_cache_seconds: float = 60.0

    def revocation_checker(self) -> RevocationChecker:
        return RevocationChecker(
            mode=self.revocation, crl_files=self.crl_files, fetch=self.fetch_revocation,
            timeout_seconds=self.revocation_timeout_seconds, cache_seconds=self.cache_seconds,
            failure_cache_seconds=self.failure_cache_seconds)


@attrs.frozen(kw_only=True)
class SmimeDirectorySettings:
    """Settings of the certificate directory (a config section; every key has a default)."""

    #: PEM files with the CA certificates that recipients' certificates must chain to (each may
    #: hold several). Without any, no certificate is used.
    trust_anchors: tuple[ConfigPath, ...] = ()
    #: BSI TR-02102-1: RSA keys of at least 3000 bits.
    minimum_rsa_bits: int = 3000
    #: Use RSA keys between 2048 bits and ``minimum_rsa_bits`` anyway.
    allow_weak_rsa: bool = False
    #: "crl-or-ocsp", "crl", "ocsp" or "off".
    revocation: str = "crl-or-ocsp"
    #: CRL files (PEM or DER) kept current by the administrator; read again when they change.
    crl_files: tuple[ConfigPath, ...] = ()
    #: Fetch CRLs from the certificates' distribution points and ask OCSP responders (HTTP).
    fetch_revocation: bool = True
    revocation_timeout_seconds: float = 10.0
    #: How long a fetched CRL or OCSP answer is reused (never past its nextUpdate).
    cache_seconds: float = 3600.0
    _anchors: tuple[x509.Certificate, ...] = attrs.field(init=False, repr=False, eq=False,
                                                         default=())

    def __attrs_post_init__(self) -> None:
        if not RSA_FLOOR_BITS <= self.minimum_rsa_bits <= 16384:
            raise SettingError("minimum_rsa_bits", f"must be between {RSA_FLOOR_BITS} and 16384, "
                               f"not {self.minimum_rsa_bits}")
        if self.revocation not in REVOCATION_MODES:
            raise SettingError("revocation", f"must be one of {', '.join(map(repr, REVOCATION_MODES))}"
                               f", not {self.revocation!r}")
        if self.revocation_timeout_seconds <= 0:
            raise SettingError("revocation_timeout_seconds",
                               f"must be greater than 0, not {self.revocation_timeout_seconds}")
        if self.cache_seconds < 0:
            raise SettingError("cache_seconds", f"must not be negative, not {self.cache_seconds}")
        if not self.fetch_revocation:
            needs = {"ocsp": "OCSP needs fetch_revocation = true",
                     "crl": "without fetch_revocation, revocation = 'crl' needs crl_files",
                     "crl-or-ocsp": "without fetch_revocation, revocation = 'crl-or-ocsp' needs "
                                    "crl_files"}
            if self.revocation == "ocsp" or (self.revocation in needs and not self.crl_files):
                raise SettingError("revocation", needs[self.revocation] + " (or revocation = 'off')")
        anchors: list[x509.Certificate] = []
        for path in self.trust_anchors:
            try:
                anchors += load_anchor_file(path)
            except ValueError as exc:
                raise SettingError("trust_anchors", str(exc)) from None
        crls: list[x509.CertificateRevocationList] = []
        for path in self.crl_files:
            try:
                crls += load_crls(Path(path).read_bytes(), str(path))
            except OSError as exc:
                raise SettingError("crl_files", f"{path}: cannot read: {exc.strerror or exc}"
                                   ) from None
            except ValueError as exc:
                raise SettingError("crl_files", str(exc)) from None
        gaps = unchecked_anchors(anchors, crls) if (
            self.revocation in ("crl", "crl-or-ocsp") and not self.fetch_revocation) else []
        if gaps:
            raise SettingError("crl_files", "no CRL of " + "; ".join(gaps) + ": without "
                               "fetch_revocation nothing tells whether the certificates these CAs "
                               "issued are revoked, so S/MIME would be skipped for all their "
                               "holders; add their CRLs, set fetch_revocation = true, or "
                               "revocation = 'off'")
        object.__setattr__(self, "_anchors", tuple(anchors))

    @property
    def anchors(self) -> tuple[x509.Certificate, ...]:
        """The certificates of ``trust_anchors``, read when the settings were validated."""
        return self._anchors


AlgorithmChooser = Callable[[str, x509.Certificate, "tuple[str, ...] | None"],
                            "AlgorithmChoice | Declined"]
"""``(address, certificate, harvested capabilities) -> choice``, see :mod:`.profiles`."""


def unchecked_anchors(anchors: Sequence[x509.Certificate],
                      crls: Sequence[x509.CertificateRevocationList]) -> list[str]:
    """The trust anchors (described) that issued none of ``crls``: without fetching, the
    revocation of what they issue cannot be checked."""
    issuers = {crl.issuer for crl in crls}
    return [describe(anchor) for anchor in anchors if anchor.subject not in issuers]


def policy_from_settings(settings: SmimeDirectorySettings) -> DirectoryPolicy:
    modes: dict[str, RevocationMode] = {mode: mode for mode in REVOCATION_MODES}
    return DirectoryPolicy(
        trust_anchors=settings.anchors,
        minimum_rsa_bits=settings.minimum_rsa_bits,
        allow_rsa_below_minimum=settings.allow_weak_rsa,
        revocation=modes[settings.revocation],
        crl_files=settings.crl_files,
        fetch_revocation=settings.fetch_revocation,
        revocation_timeout_seconds=settings.revocation_timeout_seconds,
        cache_seconds=settings.cache_seconds,
    )


# --- records and results --------------------------------------------------------------------------


def _iso(when: dt.datetime | None) -> str | None:
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
            "format": _RECORD_FORMAT,
            "der": base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)
                                    ).decode("ascii"),
            "source": self.source,
            "added_at": _iso(self.added_at),
            "seen_at": _iso(self.seen_at),
            "capabilities": list(self.capabilities) if self.capabilities is not None else None,
            "capabilities_at": _iso(self.capabilities_at),
            "last_used": _iso(self.last_used),
        }, separators=(",", ":")).encode()

    @classmethod
    def from_record(cls, key: str, value: bytes, version: int) -> CertificateEntry:
        """Raises :class:`ValueError` for a damaged record (or one whose DER does not match the
        fingerprint in its key)."""
        address, _, expected = key.rpartition("/")
        data = json.loads(value)
        if not isinstance(data, dict) or data.get("format") != _RECORD_FORMAT:
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
        return Text(f"Zertifikat {label}: " + "; ".join(p.reason.de for p in self.problems),
                    f"certificate {label}: " + "; ".join(p.reason.en for p in self.problems))


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
            return Text(f"S/MIME-Zertifikat {label}, gültig bis {until_de}",
                        f"S/MIME certificate {label}, valid until {until_en}")
        if not self.refused:
            reason = Text(f"kein S/MIME-Zertifikat für {self.address} im Verzeichnis",
                          f"no S/MIME certificate for {self.address} in the directory")
        else:
            reason = Text(
                f"kein verwendbares S/MIME-Zertifikat für {self.address}: "
                + " | ".join(r.reason.de for r in self.refused),
                f"no usable S/MIME certificate for {self.address}: "
                + " | ".join(r.reason.en for r in self.refused))
        if not self.notes:
            return reason
        return Text("; ".join([reason.de, *(n.de for n in self.notes)]),
                    "; ".join([reason.en, *(n.en for n in self.notes)]))

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


# --- checks ---------------------------------------------------------------------------------------


def _extension(certificate: x509.Certificate, kind: type[Any]) -> Any:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _validity_problems(certificate: x509.Certificate, now: dt.datetime) -> list[Problem]:
    if now < certificate.not_valid_before_utc:
        de, en = format_time(certificate.not_valid_before_utc)
        return [Problem("not-yet-valid", Text(f"erst ab {de} gültig", f"not valid before {en}"))]
    if now > certificate.not_valid_after_utc:
        de, en = format_time(certificate.not_valid_after_utc)
        return [Problem("expired", Text(f"abgelaufen seit {de}", f"expired since {en}"))]
    return []


def _address_problems(certificate: x509.Certificate, address: str) -> list[Problem]:
    certified = certified_addresses(certificate)
    if address in certified:
        return []
    names = ", ".join(certified) or "-"
    if address in subject_addresses(certificate):
        return [Problem("wrong-address", Text(
            f"{address} steht nur im Subject (emailAddress), das bei vorhandenem subjectAltName "
            f"nicht zählt; subjectAltName nennt {names}",
            f"{address} appears only in the subject's emailAddress, which does not count when "
            f"there is a subjectAltName; the subjectAltName names {names}"))]
    return [Problem("wrong-address", Text(f"nennt nicht {address}, sondern {names}",
                                          f"does not name {address} but {names}"))]


def _key_problems(certificate: x509.Certificate, policy: DirectoryPolicy) -> list[Problem]:
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        return [Problem("unsupported-key", Text(f"Schlüssel nicht lesbar ({exc})",
                                                f"unreadable public key ({exc})"))]
    usage: x509.KeyUsage | None = _extension(certificate, x509.KeyUsage)
    problems: list[Problem] = []
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.key_size
        floor = RSA_FLOOR_BITS if policy.allow_rsa_below_minimum else policy.minimum_rsa_bits
        if bits < floor:
            problems.append(Problem("weak-key", Text(
                f"RSA-Schlüssel mit {bits} Bit unter dem Minimum von {floor} Bit",
                f"RSA key {bits} bits below minimum {floor}")))
        if usage is not None and not usage.key_encipherment:
            problems.append(Problem("no-key-encipherment", Text(
                "keyUsage erlaubt keine Schlüsselverschlüsselung (keyEncipherment)",
                "keyUsage does not permit key encipherment (keyEncipherment)")))
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in policy.allowed_curves:
            problems.append(Problem("unsupported-key", Text(
                f"elliptische Kurve {key.curve.name} ist nicht zugelassen",
                f"elliptic curve {key.curve.name} is not allowed")))
        if usage is not None and not usage.key_agreement:
            problems.append(Problem("no-key-agreement", Text(
                "keyUsage erlaubt keine Schlüsselvereinbarung (keyAgreement)",
                "keyUsage does not permit key agreement (keyAgreement)")))
    else:
        kind = type(key).__name__.removeprefix("_").replace("PublicKey", "")
        problems.append(Problem("unsupported-key", Text(
            f"Schlüsseltyp {kind} kann nicht verschlüsselt werden",
            f"key type {kind} cannot be encrypted to")))
    eku: x509.ExtendedKeyUsage | None = _extension(certificate, x509.ExtendedKeyUsage)
    if eku is not None and not (ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
                                or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku):
        names = ", ".join(EKU_NAMES.get(oid, oid.dotted_string) for oid in eku) or "-"
        problems.append(Problem("no-email-protection", Text(
            f"extendedKeyUsage ohne emailProtection (enthält {names})",
            f"extendedKeyUsage lacks emailProtection (has {names})")))
    return problems


def _untrusted(de: str, en: str) -> Problem:
    return Problem("untrusted", Text(f"Zertifikatskette nicht vertrauenswürdig: {de}",
                                     f"untrusted chain: {en}"))


def _key_identifier_mismatch(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    aki: x509.AuthorityKeyIdentifier | None = _extension(child, x509.AuthorityKeyIdentifier)
    ski: x509.SubjectKeyIdentifier | None = _extension(issuer, x509.SubjectKeyIdentifier)
    return (aki is not None and aki.key_identifier is not None and ski is not None
            and aki.key_identifier != ski.digest)


def _issuer_problem(child: x509.Certificate, issuer: x509.Certificate, now: dt.datetime,
                    anchor: bool) -> Problem | None:
    """Why ``issuer`` cannot have issued ``child`` in a valid path, or None."""
    name = describe(issuer)
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        detail = str(exc) or type(exc).__name__
        return _untrusted(f"Signatur von „{describe(child)}“ passt nicht zu „{name}“ ({detail})",
                          f"the signature of \"{describe(child)}\" does not verify with the key "
                          f"of \"{name}\" ({detail})")
    hash_algorithm = child.signature_hash_algorithm
    if hash_algorithm is not None and hash_algorithm.name in _WEAK_SIGNATURE_HASHES:
        return _untrusted(f"„{describe(child)}“ ist mit {hash_algorithm.name.upper()} signiert",
                          f"\"{describe(child)}\" is signed with {hash_algorithm.name.upper()}")
    if now < issuer.not_valid_before_utc or now > issuer.not_valid_after_utc:
        kind_de, kind_en = ("Vertrauensanker", "trust anchor") if anchor else (
            "Zwischenzertifikat", "intermediate")
        validity = _validity_problems(issuer, now)[0].reason
        return _untrusted(f"{kind_de} „{name}“ {validity.de}", f"{kind_en} \"{name}\" {validity.en}")
    constraints: x509.BasicConstraints | None = _extension(issuer, x509.BasicConstraints)
    if (constraints is None and not anchor) or (constraints is not None and not constraints.ca):
        return _untrusted(f"„{name}“ ist kein CA-Zertifikat (basicConstraints)",
                          f"\"{name}\" is not a CA certificate (basicConstraints)")
    usage: x509.KeyUsage | None = _extension(issuer, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        return _untrusted(f"„{name}“ darf keine Zertifikate signieren (keyUsage)",
                          f"\"{name}\" may not sign certificates (keyUsage)")
    return None


@attrs.define
class _PathSearch:
    anchors: Sequence[x509.Certificate]
    intermediates: Sequence[x509.Certificate]
    now: dt.datetime
    problem: Problem | None = None
    depth: int = -1

    def note(self, depth: int, problem: Problem) -> None:
        # The problem found furthest up the chain explains the failure best.
        if depth > self.depth:
            self.depth, self.problem = depth, problem

    def extend(self, path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        current = path[-1]
        depth = len(path)
        if depth > MAX_CHAIN_DEPTH:
            self.note(depth, _untrusted(f"Kette länger als {MAX_CHAIN_DEPTH} Zertifikate",
                                        f"chain longer than {MAX_CHAIN_DEPTH} certificates"))
            return None
        in_path = {fingerprint(c) for c in path}
        candidates = [(c, True) for c in self.anchors if c.subject == current.issuer] + [
            (c, False) for c in self.intermediates
            if c.subject == current.issuer and fingerprint(c) not in in_path]
        candidates = [(c, a) for c, a in candidates if not _key_identifier_mismatch(current, c)]
        if not candidates:
            issuer = current.issuer.rfc4514_string()
            if _self_signed(current):
                self.note(depth, _untrusted(
                    f"„{issuer}“ ist kein konfigurierter Vertrauensanker",
                    f"\"{issuer}\" is not a configured trust anchor"))
            else:
                self.note(depth, _untrusted(
                    f"Aussteller „{issuer}“ von „{describe(current)}“ fehlt (weder gespeichertes "
                    "Zwischenzertifikat noch Vertrauensanker)",
                    f"issuer \"{issuer}\" of \"{describe(current)}\" is missing (neither a stored "
                    "intermediate nor a trust anchor)"))
            return None
        for candidate, anchor in candidates:
            problem = _issuer_problem(current, candidate, self.now, anchor)
            if problem is not None:
                self.note(depth, problem)
                continue
            found = [*path, candidate]
            path_problem = _path_length_problem(found)
            if path_problem is not None:
                self.note(depth, path_problem)
                continue
            if anchor:
                return found
            result = self.extend(found)
            if result is not None:
                return result
        return None


def _path_length_problem(path: Sequence[x509.Certificate]) -> Problem | None:
    for index in range(1, len(path)):
        constraints: x509.BasicConstraints | None = _extension(path[index], x509.BasicConstraints)
        below = index - 1  # intermediate CAs between this CA and the end entity
        if constraints is not None and constraints.path_length is not None and (
                below > constraints.path_length):
            name = describe(path[index])
            return _untrusted(f"„{name}“ erlaubt nur {constraints.path_length} Zwischen-CAs darunter",
                              f"\"{name}\" allows only {constraints.path_length} intermediate CAs "
                              "below it")
    return None


def _validate_path(leaf: x509.Certificate, anchors: Sequence[x509.Certificate],
                   intermediates: Sequence[x509.Certificate], now: dt.datetime
                   ) -> tuple[x509.Certificate, ...] | Problem:
    if not anchors:
        return _untrusted("keine Vertrauensanker konfiguriert (trust_anchors)",
                          "no trust anchors are configured (trust_anchors)")
    search = _PathSearch(anchors, intermediates, now)
    path = search.extend([leaf])
    if path is None:
        assert search.problem is not None
        return search.problem
    try:
        return validate_path(leaf, path[1:-1], anchors, now, "encryption")
    except x509_verification.VerificationError as exc:
        return _untrusted(f"RFC-5280-Prüfung fehlgeschlagen: {exc}",
                          f"RFC 5280 path validation failed: {exc}")


# --- the directory --------------------------------------------------------------------------------


class CertificateDirectory:
    """Recipients' certificates in the plugin state, and the choice of one to encrypt to.

    Reading (:meth:`entries`, :meth:`find_usable`) never writes, except that :meth:`find_usable`
    files what ``lookup`` found; :meth:`mark_used` records that a certificate was used. Share one
    instance (or one ``revocation`` checker) per tenant so that fetched CRLs and OCSP answers are
    reused.
    """

    def __init__(self, certificates: PluginState, intermediates: PluginState, clock: Clock,
                 policy: DirectoryPolicy, *, revocation: RevocationChecker | None = None,
                 lookup: CertificateLookup | None = None,
                 algorithms: AlgorithmChooser | None = None) -> None:
        self.certificates = certificates
        #: The tenant's choice of algorithms per recipient (``siegel certs check`` shows it).
        self.algorithms = algorithms
        self.intermediates_state = intermediates
        self.clock = clock
        self.policy = policy
        self.revocation = revocation or policy.revocation_checker()
        self.lookup = lookup

    @classmethod
    def from_services(cls, services: Services, policy: DirectoryPolicy, *,
                      revocation: RevocationChecker | None = None,
                      lookup: CertificateLookup | None = None) -> CertificateDirectory:
        """From a plugin context's ``services`` (:class:`siegel.Services`)."""
        return cls(services.state(CERTIFICATES_NAMESPACE), services.state(INTERMEDIATES_NAMESPACE),
                   services.clock, policy, revocation=revocation, lookup=lookup)

    # -- adding ------------------------------------------------------------------------------

    async def import_bytes(self, data: bytes, *, source: Source, name: str | None = None,
                           password: bytes | None = None) -> ImportReport:
        """Import every certificate in ``data`` (any supported format). Raises
        :class:`ImportFailure` when the data cannot be read."""
        loaded = load_certificates(data, name=name or source, password=password)
        return await self.add_certificates(loaded.certificates, source=source, notes=loaded.notes)

    async def import_file(self, path: str | os.PathLike[str], *, password: bytes | None = None
                          ) -> ImportReport:
        file = Path(path)
        try:
            data = await asyncio.to_thread(file.read_bytes)
        except OSError as exc:
            raise ImportFailure(f"{file}: cannot read: {exc.strerror or exc}") from None
        return await self.import_bytes(data, source=f"import:{file.name}", name=str(file),
                                       password=password)

    async def add_certificates(self, certificates: Iterable[x509.Certificate], *, source: Source,
                               notes: Iterable[str] = ()) -> ImportReport:
        """File end-entity certificates under their addresses and keep CA certificates as
        intermediates; self-signed roots are not taken (trust comes from the configuration)."""
        added: list[CertificateEntry] = []
        present: list[CertificateEntry] = []
        intermediates: list[str] = []
        skipped = list(notes)
        for certificate in dict.fromkeys(certificates):
            if is_ca(certificate):
                if _self_signed(certificate):
                    skipped.append(f"{_label(certificate)}: root certificate not imported; trust "
                                   "anchors come only from the configuration (trust_anchors)")
                else:
                    await self.add_intermediate(certificate, source=source)
                    intermediates.append(describe(certificate))
                continue
            addresses = mentioned_addresses(certificate)
            if not addresses:
                skipped.append(f"{_label(certificate)}: names no e-mail address")
                continue
            for address in addresses:
                entry, is_new = await self.add_for_address(certificate, address, source)
                (added if is_new else present).append(entry)
        taken = [c for c in dict.fromkeys(certificates) if not _self_signed(c) and (
            is_ca(c) or mentioned_addresses(c))]
        unchecked = await asyncio.to_thread(  # reads the CRL files
            lambda: [_label(c) for c in taken if not self._revocation_checkable(c)])
        return ImportReport(source=source, added=tuple(added), present=tuple(present),
                            intermediates=tuple(intermediates), skipped=tuple(skipped),
                            unchecked=tuple(unchecked))

    def _revocation_checkable(self, certificate: x509.Certificate) -> bool:
        """Whether the policy has a way to learn that ``certificate`` is revoked: a CRL file of
        its issuer, or (when fetching) a CRL distribution point or OCSP responder it names."""
        policy = self.policy
        if policy.revocation == "off":
            return True
        local = False
        for path in policy.crl_files:
            try:
                local = local or any(crl.issuer == certificate.issuer
                                     for crl in load_crls(path.read_bytes(), str(path)))
            except (OSError, ValueError):
                continue
        crl = local or (policy.fetch_revocation and bool(crl_urls(certificate)[0]))
        ocsp = policy.fetch_revocation and bool(ocsp_urls(certificate))
        return {"crl": crl, "ocsp": ocsp, "crl-or-ocsp": crl or ocsp}[policy.revocation]

    async def add_intermediate(self, certificate: x509.Certificate, *, source: Source) -> bool:
        """Keep a CA certificate for chain building; False if it was there already."""
        key = fingerprint(certificate)
        if await self.intermediates_state.get(key) is not None:
            return False
        record = json.dumps({
            "format": _RECORD_FORMAT,
            "der": base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)
                                    ).decode("ascii"),
            "source": source, "added_at": _iso(self.clock.now())}).encode()
        try:
            await self.intermediates_state.put(key, record, expect_version=0)
        except StateConflict:
            return False
        return True

    async def add_for_address(self, certificate: x509.Certificate, address: str, source: Source
                              ) -> tuple[CertificateEntry, bool]:
        """File ``certificate`` under ``address``; returns the entry and whether it is new (an
        entry already there is returned unchanged). Raises :class:`siegel.InvalidAddress`."""
        address = normalize_address(address)
        entry = CertificateEntry(address=address, fingerprint=fingerprint(certificate),
                                 certificate=certificate, source=source, added_at=self.clock.now())
        existing = await self.get(address, entry.fingerprint)
        if existing is not None:
            return existing, False
        try:
            version = await self.certificates.put(entry.key, entry.to_json(), expect_version=0)
        except StateConflict:
            existing = await self.get(address, entry.fingerprint)
            if existing is None:
                raise
            return existing, False
        return attrs.evolve(entry, version=version), True

    async def update(self, entry: CertificateEntry, **changes: Any) -> CertificateEntry:
        """Change fields of a stored entry (re-reading it if it changed meanwhile)."""
        for _ in range(5):
            current = await self.get(entry.address, entry.fingerprint)
            if current is None:
                raise KeyError(f"no certificate {entry.fingerprint} for {entry.address}")
            updated = attrs.evolve(current, **changes)
            try:
                version = await self.certificates.put(updated.key, updated.to_json(),
                                                      expect_version=current.version)
            except StateConflict:
                continue
            return attrs.evolve(updated, version=version)
        raise StateConflict(f"certificate record {entry.key} keeps changing; try again")

    async def mark_used(self, address: str | Address, fingerprint: str) -> None:
        """Record that the certificate was used to encrypt for ``address`` now."""
        entry = await self.get(normalize_address(address), fingerprint)
        if entry is not None:
            await self.update(entry, last_used=self.clock.now())

    # -- reading -----------------------------------------------------------------------------

    async def get(self, address: str, fingerprint: str) -> CertificateEntry | None:
        record = await self.certificates.get(f"{normalize_address(address)}/{fingerprint}")
        if record is None:
            return None
        return CertificateEntry.from_record(record.key, record.value, record.version)

    async def _scan(self, prefix: str) -> tuple[list[CertificateEntry], list[Refusal]]:
        entries: list[CertificateEntry] = []
        damaged: list[Refusal] = []
        for record in await self.certificates.scan(prefix):
            try:
                entries.append(CertificateEntry.from_record(record.key, record.value,
                                                            record.version))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("damaged certificate record %s: %s", record.key, exc)
                damaged.append(Refusal(
                    fingerprint=record.key.rpartition("/")[2], subject="?",
                    problems=[Problem("damaged", Text(f"Eintrag beschädigt ({exc})",
                                                      f"damaged record ({exc})"))]))
        return entries, damaged

    async def entries(self, address: str | Address | None = None) -> list[CertificateEntry]:
        """Stored entries (of one address), sorted by address, then newest first."""
        prefix = f"{normalize_address(address)}/" if address is not None else ""
        entries, _ = await self._scan(prefix)
        return sorted(entries, key=lambda e: (e.address, -e.certificate.not_valid_before_utc
                                              .timestamp(), e.fingerprint))

    async def find(self, fingerprint_prefix: str) -> list[CertificateEntry]:
        """Entries whose fingerprint starts with ``fingerprint_prefix`` (hex, ':' allowed)."""
        wanted = fingerprint_prefix.replace(":", "").lower()
        return [e for e in await self.entries() if e.fingerprint.startswith(wanted)]

    async def intermediates(self) -> list[x509.Certificate]:
        found: list[x509.Certificate] = []
        for record in await self.intermediates_state.scan():
            try:
                data = json.loads(record.value)
                found.append(x509.load_der_x509_certificate(base64.b64decode(data["der"])))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("damaged intermediate record %s: %s", record.key, exc)
        return found

    async def remove(self, fingerprint_prefix: str, address: str | Address | None = None) -> int:
        """Remove the certificate with this fingerprint (from every address, or one) and an
        intermediate with it. Returns how many records were removed.

        Raises :class:`ValueError` for a prefix shorter than 8 hex digits or one that matches
        more than one certificate."""
        wanted = fingerprint_prefix.replace(":", "").lower()
        if len(wanted) < 8 or wanted.strip("0123456789abcdef"):
            raise ValueError(f"give at least 8 hex digits of the SHA-256 fingerprint, not "
                             f"{fingerprint_prefix!r}")
        entries = await self.find(wanted)
        matches = {e.fingerprint for e in entries} | {
            record.key for record in await self.intermediates_state.scan(wanted)}
        if len(matches) > 1:
            raise ValueError(f"{fingerprint_prefix} matches {len(matches)} certificates; give more "
                             "of the fingerprint")
        if address is not None:
            normalized = normalize_address(address)
            entries = [e for e in entries if e.address == normalized]
        removed = 0
        for entry in entries:
            removed += await self.certificates.delete(entry.key)
        if address is None:
            for record in await self.intermediates_state.scan(wanted):
                removed += await self.intermediates_state.delete(record.key)
        return removed

    # -- choosing ----------------------------------------------------------------------------

    async def evaluate(self, entry: CertificateEntry, *,
                       intermediates: Sequence[x509.Certificate] | None = None
                       ) -> UsableCertificate | Refusal:
        """Whether ``entry`` may be used now to encrypt for its address, and if not, why."""
        now = self.clock.now()
        certificate = entry.certificate
        problems = [
            *_validity_problems(certificate, now),
            *_address_problems(certificate, entry.address),
            *_key_problems(certificate, self.policy),
        ]
        if not problems:
            if intermediates is None:
                intermediates = await self.intermediates()
            chain = _validate_path(certificate, self.policy.trust_anchors, intermediates, now)
            if isinstance(chain, Problem):
                problems.append(chain)
            else:
                failure = await self.revocation.check_chain(chain, now)
                if failure is None:
                    return UsableCertificate(entry=entry, chain=chain)
                problems.append(Problem(failure.code, failure.reason))
        return Refusal(fingerprint=entry.fingerprint, subject=entry.subject, problems=problems,
                       entry=entry)

    async def find_usable(self, address: str | Address) -> Selection:
        """The best usable certificate for ``address`` and why every other one is refused.

        When none stored is usable and the directory has a ``lookup``, that is asked (it files
        what it finds) and its certificates are judged the same way.

        Raises :class:`siegel.InvalidAddress` for an address that cannot be parsed."""
        normalized = normalize_address(address)
        selection = await self._select(normalized)
        if selection.best is not None or self.lookup is None:
            return selection
        return await self._select(normalized, await self.lookup.lookup(self, normalized))

    async def _select(self, normalized: str, found: LookupResult | None = None) -> Selection:
        entries, damaged = await self._scan(f"{normalized}/")
        if found is not None:
            stored = {entry.fingerprint for entry in entries}
            entries += [entry for entry in found.entries if entry.fingerprint not in stored]
        intermediates = [*await self.intermediates(), *(found.intermediates if found else ())
                         ] if entries else []
        results = await asyncio.gather(*(
            self.evaluate(entry, intermediates=intermediates) for entry in entries))
        usable = sorted((r for r in results if isinstance(r, UsableCertificate)),
                        key=lambda u: (-u.certificate.not_valid_before_utc.timestamp(),
                                       -u.certificate.not_valid_after_utc.timestamp(),
                                       u.fingerprint))
        refused = [r for r in results if isinstance(r, Refusal)] + damaged
        capabilities = usable[0].entry.capabilities if usable else None
        if capabilities is None:
            announced = [e for e in entries if e.capabilities is not None]
            if announced:
                newest = max(announced, key=lambda e: e.capabilities_at or e.added_at)
                capabilities = newest.capabilities
        return Selection(address=normalized, usable=tuple(usable), refused=tuple(refused),
                         capabilities=capabilities, notes=(found.note,) if found else ())


def _capability_oids(capabilities: SmimeCapabilities | Iterable[str] | None) -> tuple[str, ...]:
    if capabilities is None:
        return ()
    if isinstance(capabilities, SmimeCapabilities):
        return tuple(entry.oid for entry in capabilities.entries)
    return tuple(str(oid) for oid in capabilities)


async def harvest(directory: CertificateDirectory, signer_cert: x509.Certificate,
                  chain: Sequence[x509.Certificate],
                  capabilities: SmimeCapabilities | Iterable[str] | None,
                  seen_at: dt.datetime) -> list[CertificateEntry]:
    """Keep the certificate of a signature the gateway has verified, under every address it
    names, with the signer's SMIMECapabilities; keep the CA certificates of ``chain`` as
    intermediates. Does not verify anything itself: call it only after the signature verified.

    A later harvest updates ``seen_at`` and replaces the capabilities when it is newer than the
    announcement stored; an empty announcement (the signature carried none) keeps the old one.
    Returns the entries as stored now (none for a CA certificate or one without addresses)."""
    if seen_at.tzinfo is None:
        raise ValueError("seen_at must be timezone-aware")
    if is_ca(signer_cert):
        return []
    for certificate in chain:
        if certificate != signer_cert and is_ca(certificate) and not _self_signed(certificate):
            await directory.add_intermediate(certificate, source="harvest")
    oids = _capability_oids(capabilities)
    stored: list[CertificateEntry] = []
    for address in mentioned_addresses(signer_cert):
        entry, _ = await directory.add_for_address(signer_cert, address, "harvest")
        changes: dict[str, Any] = {}
        if entry.seen_at is None or entry.seen_at < seen_at:
            changes["seen_at"] = seen_at
        if oids and (entry.capabilities_at is None or entry.capabilities_at <= seen_at):
            changes["capabilities"] = oids
            changes["capabilities_at"] = seen_at
        stored.append(await directory.update(entry, **changes) if changes else entry)
    return stored


__all__ = [
    "CERTIFICATES_NAMESPACE",
    "EKU_NAMES",
    "INTERMEDIATES_NAMESPACE",
    "CertificateDirectory",
    "CertificateEntry",
    "CertificateLookup",
    "DirectoryPolicy",
    "ImportFailure",
    "ImportReport",
    "LoadedCertificates",
    "LookupResult",
    "Problem",
    "Refusal",
    "Selection",
    "SmimeDirectorySettings",
    "UsableCertificate",
    "certified_addresses",
    "fingerprint",
    "harvest",
    "load_certificates",
    "normalize_address",
    "policy_from_settings",
]
