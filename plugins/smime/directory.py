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

Addresses are compared by :attr:`siegel.Address.key` (local part lower-cased, domain in IDNA
A-labels): a CA writing ``Max.Muster@Behoerde.de`` into a certificate means the mailbox mail is
sent to as ``max.muster@behoerde.de``.

The rooms around this module: :mod:`.certificates` (what a certificate names), :mod:`.cert_files`
(reading files), :mod:`.policy` (settings and policy), :mod:`.records` (entries and answers),
:mod:`.checks` (one certificate's checks) and :mod:`.paths` (chain building).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from siegel import Address, Clock, PluginState, Services, StateConflict, Text

from .capabilities import SmimeCapabilities
from .cert_files import ImportFailure, load_certificates
from .certificates import (
    certificate_label,
    fingerprint,
    is_ca,
    is_self_signed,
    mentioned_addresses,
    normalize_address,
)
from .checks import address_problems, key_problems, validity_problems
from .paths import trusted_path
from .policy import AlgorithmChooser, DirectoryPolicy
from .records import (
    RECORD_FORMAT,
    CertificateEntry,
    CertificateLookup,
    ImportReport,
    LookupResult,
    Problem,
    Refusal,
    Selection,
    Source,
    UsableCertificate,
    iso_time,
)
from .revocation import RevocationChecker, crl_urls, load_crls, ocsp_urls
from .texts import describe

log = logging.getLogger(__name__)

CERTIFICATES_NAMESPACE = "smime.certificates"
INTERMEDIATES_NAMESPACE = "smime.intermediates"














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
                if is_self_signed(certificate):
                    skipped.append(f"{certificate_label(certificate)}: root certificate not imported; trust "
                                   "anchors come only from the configuration (trust_anchors)")
                else:
                    await self.add_intermediate(certificate, source=source)
                    intermediates.append(describe(certificate))
                continue
            addresses = mentioned_addresses(certificate)
            if not addresses:
                skipped.append(f"{certificate_label(certificate)}: names no e-mail address")
                continue
            for address in addresses:
                entry, is_new = await self.add_for_address(certificate, address, source)
                (added if is_new else present).append(entry)
        taken = [c for c in dict.fromkeys(certificates) if not is_self_signed(c) and (
            is_ca(c) or mentioned_addresses(c))]
        unchecked = await asyncio.to_thread(  # reads the CRL files
            lambda: [certificate_label(c) for c in taken if not self._revocation_checkable(c)])
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
            "format": RECORD_FORMAT,
            "der": base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)
                                    ).decode("ascii"),
            "source": source, "added_at": iso_time(self.clock.now())}).encode()
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
                    problems=[Problem("damaged", Text(de=f"Eintrag beschädigt ({exc})",
                                                      en=f"damaged record ({exc})"))]))
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
            *validity_problems(certificate, now),
            *address_problems(certificate, entry.address),
            *key_problems(certificate, self.policy),
        ]
        if not problems:
            if intermediates is None:
                intermediates = await self.intermediates()
            chain = trusted_path(certificate, self.policy.trust_anchors, intermediates, now)
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
        if certificate != signer_cert and is_ca(certificate) and not is_self_signed(certificate):
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
    "INTERMEDIATES_NAMESPACE",
    "CertificateDirectory",
    "harvest",
]
