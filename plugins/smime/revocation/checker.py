"""The revocation checker: asks OCSP and CRLs in the order the mode says, and caches fetched CRLs
(by URL), OCSP answers (by certificate) and local CRL files (until they change on disk).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from siegel import Text

from ..texts import describe, format_time
from .crl import crl_status_from, crl_urls, load_crls
from .fetch import MAX_CRL_BYTES, MAX_OCSP_BYTES, FetchError, HttpClientFactory, default_client, fetch_bytes
from .ocsp import hash_bytes, ocsp_cache_until, ocsp_urls, public_key_bits, read_ocsp_response
from .status import RevocationFailure, RevocationStatus, unknown_status

log = logging.getLogger(__name__)


RevocationMode = Literal["off", "crl", "ocsp", "crl-or-ocsp"]
REVOCATION_MODES: tuple[RevocationMode, ...] = ("off", "crl", "ocsp", "crl-or-ocsp")


#: Above this many cached answers, expired ones are dropped.
MAX_CACHED = 10_000


@attrs.define
class _Cached:
    status: RevocationStatus
    until: dt.datetime


@attrs.define
class _CachedCrl:
    crl: x509.CertificateRevocationList | None
    error: str | None
    until: dt.datetime


@attrs.define
class _LocalFile:
    mtime_ns: int
    crls: tuple[x509.CertificateRevocationList, ...]


class RevocationChecker:
    """Checks certificates against CRLs and OCSP; keeps the caches (one per gateway is enough).

    ``mode``: ``off`` (no check), ``crl``, ``ocsp``, or ``crl-or-ocsp`` (OCSP where the certificate
    names a responder, falling back to CRLs; either must give a verified answer).
    ``crl_files`` are read again when they change on disk (a cron job may replace them).
    """

    def __init__(
        self,
        *,
        mode: RevocationMode,
        crl_files: Iterable[str | os.PathLike[str]] = (),
        fetch: bool = True,
        timeout_seconds: float = 10.0,
        cache_seconds: float = 3600.0,
        failure_cache_seconds: float = 60.0,
        http_client: HttpClientFactory = default_client,
    ) -> None:
        if mode not in REVOCATION_MODES:
            raise ValueError(f"revocation mode must be one of {REVOCATION_MODES}, not {mode!r}")
        self.mode: RevocationMode = mode
        self.crl_files = tuple(Path(p) for p in crl_files)
        self.fetch = fetch
        self.timeout_seconds = timeout_seconds
        self.cache_seconds = cache_seconds
        self.failure_cache_seconds = failure_cache_seconds
        self._http_client = http_client
        self._crl_cache: dict[str, _CachedCrl] = {}
        self._ocsp_cache: dict[tuple[str, bytes, int], _Cached] = {}
        self._local: dict[Path, _LocalFile] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: How often each URL was actually fetched (for diagnostics and tests).
        self.fetches: dict[str, int] = {}

    # -- the public entry points ------------------------------------------------------------

    async def check_chain(self, chain: Sequence[x509.Certificate], now: dt.datetime
                          ) -> RevocationFailure | None:
        """Check every certificate of ``chain`` (leaf first, trust anchor last) except the anchor
        against its issuer. Returns the first failure (the leaf's first), or None."""
        if self.mode == "off":
            return None
        results = await asyncio.gather(*(
            self.check(chain[index], chain[index + 1], now) for index in range(len(chain) - 1)))
        for result in results:
            if result is not None:
                return result
        return None

    async def check(self, certificate: x509.Certificate, issuer: x509.Certificate,
                    now: dt.datetime) -> RevocationFailure | None:
        """None when a verified source says ``certificate`` is not revoked; otherwise why not."""
        if self.mode == "off":
            return None
        details: list[Text] = []
        status: RevocationStatus | None = None
        if self.mode in ("ocsp", "crl-or-ocsp"):
            status = await self.ocsp_status(certificate, issuer, now)
            if status.kind == "unknown":
                details.append(status.detail)
                status = None
        if status is None and self.mode in ("crl", "crl-or-ocsp"):
            status = await self.crl_status(certificate, issuer, now)
            if status.kind == "unknown":
                details.append(status.detail)
                status = None
        subject = describe(certificate)
        if status is None:
            return RevocationFailure(
                code="revocation-unknown", certificate=certificate,
                reason=Text(
                    de=f"Sperrstatus von „{subject}“ nicht feststellbar: "
                    + "; ".join(d.de for d in details),
                    en=f"revocation status of \"{subject}\" unknown: "
                    + "; ".join(d.en for d in details)))
        if status.kind == "revoked":
            assert status.revoked_at is not None
            when_de, when_en = format_time(status.revoked_at)
            why = f" ({status.reason})" if status.reason else ""
            return RevocationFailure(
                code="revoked", certificate=certificate, revoked_at=status.revoked_at,
                reason=Text(de=f"„{subject}“ ist seit {when_de} gesperrt{why} ({status.detail.de})",
                            en=f"\"{subject}\" revoked at {when_en}{why} ({status.detail.en})"))
        return None

    # -- CRLs -------------------------------------------------------------------------------

    async def crl_status(self, certificate: x509.Certificate, issuer: x509.Certificate,
                         now: dt.datetime) -> RevocationStatus:
        problems: list[Text] = []
        for crl, origin in self._local_crls(issuer, problems):
            status = crl_status_from(crl, origin, certificate, issuer, now, problems)
            if status is not None:
                return status
        urls, skipped = crl_urls(certificate)
        if self.fetch:
            for url in urls:
                fetched = await self._fetched_crl(url, now, problems)
                if fetched is None:
                    continue
                status = crl_status_from(fetched, url, certificate, issuer, now, problems)
                if status is not None:
                    return status
        elif urls:
            problems.append(Text(de=f"Abruf von {', '.join(urls)} abgeschaltet",
                                 en=f"fetching {', '.join(urls)} is switched off"))
        if skipped:
            problems.append(Text(de=f"nicht unterstützte Sperrlisten-Adressen {', '.join(skipped)}",
                                 en=f"unsupported distribution points {', '.join(skipped)}"))
        if not problems:
            problems.append(Text(
                de=f"keine Sperrliste von „{describe(issuer)}“ (weder Datei noch Verteilungspunkt)",
                en=f"no CRL of \"{describe(issuer)}\" (no CRL file, no distribution point)"))
        return RevocationStatus("unknown", Text(de="CRL: " + "; ".join(p.de for p in problems),
                                       en="CRL: " + "; ".join(p.en for p in problems)))

    def _local_crls(self, issuer: x509.Certificate, problems: list[Text]
                    ) -> list[tuple[x509.CertificateRevocationList, str]]:
        found: list[tuple[x509.CertificateRevocationList, str]] = []
        for path in self.crl_files:
            try:
                mtime = path.stat().st_mtime_ns
                cached = self._local.get(path)
                if cached is None or cached.mtime_ns != mtime:
                    cached = _LocalFile(mtime, load_crls(path.read_bytes(), str(path)))
                    self._local[path] = cached
            except (OSError, ValueError) as exc:
                self._local.pop(path, None)
                log.warning("CRL file unusable: %s", exc)
                problems.append(Text(de=f"Sperrlisten-Datei unbrauchbar: {exc}",
                                     en=f"CRL file unusable: {exc}"))
                continue
            found += [(crl, str(path)) for crl in cached.crls if crl.issuer == issuer.subject]
        # The newest first: an old file must not hide a newer revocation.
        found.sort(key=lambda item: item[0].last_update_utc, reverse=True)
        return found

    async def _fetched_crl(self, url: str, now: dt.datetime, problems: list[Text]
                           ) -> x509.CertificateRevocationList | None:
        async with self._lock(url):
            cached = self._crl_cache.get(url)
            if cached is None or cached.until <= now:
                try:
                    data = await self._http("GET", url, None, MAX_CRL_BYTES)
                    crl = load_crls(data, url)[0]
                except (FetchError, ValueError) as exc:
                    cached = _CachedCrl(None, str(exc),
                                        now + dt.timedelta(seconds=self.failure_cache_seconds))
                else:
                    until = now + dt.timedelta(seconds=self.cache_seconds)
                    if crl.next_update_utc is not None:
                        until = min(until, crl.next_update_utc)
                    cached = _CachedCrl(crl, None, until)
                self._crl_cache[url] = cached
        if cached.crl is None:
            problems.append(Text(de=f"{url}: {cached.error}", en=f"{url}: {cached.error}"))
        return cached.crl

    # -- OCSP -------------------------------------------------------------------------------

    async def ocsp_status(self, certificate: x509.Certificate, issuer: x509.Certificate,
                          now: dt.datetime) -> RevocationStatus:
        urls = ocsp_urls(certificate)
        if not urls:
            return unknown_status("das Zertifikat nennt keinen OCSP-Dienst",
                            "the certificate names no OCSP responder")
        if not self.fetch:
            return unknown_status(f"OCSP-Abfrage bei {urls[0]} abgeschaltet",
                            f"OCSP queries to {urls[0]} are switched off")
        problems: list[Text] = []
        key_hash = hash_bytes("sha1", public_key_bits(issuer))
        for url in urls:
            cache_key = (url, key_hash, certificate.serial_number)
            async with self._lock(f"ocsp {url} {key_hash.hex()} {certificate.serial_number}"):
                cached = self._ocsp_cache.get(cache_key)
                if cached is None or cached.until <= now:
                    status, until = await self._ask_responder(url, certificate, issuer, now)
                    cached = _Cached(status, until)
                    self._ocsp_cache[cache_key] = cached
                    self._prune(now)
            if cached.status.kind != "unknown":
                return cached.status
            problems.append(cached.status.detail)
        return RevocationStatus("unknown", Text(de="OCSP: " + "; ".join(p.de for p in problems),
                                       en="OCSP: " + "; ".join(p.en for p in problems)))

    async def _ask_responder(self, url: str, certificate: x509.Certificate,
                             issuer: x509.Certificate, now: dt.datetime
                             ) -> tuple[RevocationStatus, dt.datetime]:
        retry_at = now + dt.timedelta(seconds=self.failure_cache_seconds)
        nonce = os.urandom(16)
        request = (ocsp.OCSPRequestBuilder()
                   .add_certificate(certificate, issuer, hashes.SHA1())  # noqa: S303 (CertID)
                   .add_extension(x509.OCSPNonce(nonce), critical=False)
                   .build())
        try:
            data = await self._http("POST", url, request.public_bytes(serialization.Encoding.DER),
                                    MAX_OCSP_BYTES)
        except FetchError as exc:
            return unknown_status(f"{url}: {exc}", f"{url}: {exc}"), retry_at
        status = read_ocsp_response(data, url, nonce, certificate, issuer, now,
                                    self.cache_seconds)
        if status.kind == "unknown":
            return status, retry_at
        return status, ocsp_cache_until(data, now, self.cache_seconds)

    # -- HTTP -------------------------------------------------------------------------------

    def _prune(self, now: dt.datetime) -> None:
        if len(self._ocsp_cache) > MAX_CACHED:
            for key in [k for k, v in self._ocsp_cache.items() if v.until <= now]:
                del self._ocsp_cache[key]
        if len(self._locks) > MAX_CACHED:
            for name in [k for k, lock in self._locks.items() if not lock.locked()]:
                del self._locks[name]

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _http(self, method: str, url: str, body: bytes | None, limit: int) -> bytes:
        self.fetches[url] = self.fetches.get(url, 0) + 1
        return await fetch_bytes(self._http_client, self.timeout_seconds, method, url, body, limit)


__all__ = [
    "MAX_CACHED",
    "REVOCATION_MODES",
    "RevocationChecker",
    "RevocationMode",
]
