"""Revocation checking for the certificate directory: CRLs (local files and distribution points
fetched over HTTP) and OCSP (RFC 6960), failing closed.

A certificate is only *not revoked* when a CRL or an OCSP response that siegel verified says so:
signed by the issuer (or, for OCSP, by a responder the issuer delegated with the OCSPSigning
extended key usage), covering the certificate, and fresh. An unreachable responder, an OCSP
"unknown", an expired CRL or a bad signature all mean *unknown*, and the directory does not use the
certificate.

Fetched CRLs are cached by URL and OCSP answers by certificate for ``cache_seconds`` (never past
their own nextUpdate); failures are cached briefly so that a dead responder does not stall every
message for the full time-out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import attrs
import httpx
from asn1crypto import algos
from asn1crypto import keys as asn1_keys
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
    SignatureAlgorithmOID,
)

from siegel import Text

log = logging.getLogger(__name__)

RevocationMode = Literal["off", "crl", "ocsp", "crl-or-ocsp"]
REVOCATION_MODES: tuple[RevocationMode, ...] = ("off", "crl", "ocsp", "crl-or-ocsp")

#: Clocks of CAs, responders and siegel differ a little.
CLOCK_SKEW = dt.timedelta(minutes=5)
MAX_CRL_BYTES = 64 * 1024 * 1024
MAX_OCSP_BYTES = 1024 * 1024
#: Above this many cached answers, expired ones are dropped.
MAX_CACHED = 10_000

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def format_time(when: dt.datetime) -> tuple[str, str]:
    """A point in time for people: (German, English), always in UTC."""
    utc = when.astimezone(dt.UTC)
    return utc.strftime("%d.%m.%Y %H:%M UTC"), utc.strftime("%Y-%m-%d %H:%M UTC")


def describe(certificate: x509.Certificate) -> str:
    """A short, readable name of a certificate: its subject (RFC 4514)."""
    return (certificate.subject.rfc4514_string({NameOID.EMAIL_ADDRESS: "emailAddress"})
            or f"serial {certificate.serial_number:#x}")


@attrs.frozen(kw_only=True)
class RevocationFailure:
    """Why a certificate of a chain must not be used: ``code`` is ``revoked`` or
    ``revocation-unknown``."""

    code: str
    reason: Text
    certificate: x509.Certificate = attrs.field(repr=False, eq=False)
    revoked_at: dt.datetime | None = None


@attrs.frozen
class _Status:
    kind: Literal["good", "revoked", "unknown"]
    detail: Text
    revoked_at: dt.datetime | None = None
    reason: str | None = None


def _unknown(de: str, en: str) -> _Status:
    return _Status("unknown", Text(de, en))


class FetchError(Exception):
    """An HTTP fetch of a CRL or an OCSP answer failed; the message says how."""


HttpClientFactory = Callable[[float], httpx.AsyncClient]


def _default_client(timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=True,
                             max_redirects=3)


@attrs.define
class _Cached:
    status: _Status
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


def _key_bits(certificate: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's value, as OCSP's issuerKeyHash hashes it."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    bits = asn1_keys.PublicKeyInfo.load(spki)["public_key"]
    return bytes(bits.contents[1:])  # without the unused-bits octet


def _hash(name: str, data: bytes) -> bytes:
    return hashlib.new(name, data).digest()


def _verify_signature(public_key: object, signature: bytes, data: bytes,
                      hash_algorithm: hashes.HashAlgorithm | None,
                      algorithm_oid: x509.ObjectIdentifier,
                      pss: padding.PSS | None) -> None:
    """Raise :class:`InvalidSignature` or :class:`UnsupportedAlgorithm` unless it verifies."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if hash_algorithm is None:
            raise UnsupportedAlgorithm("RSA signature without a hash algorithm")
        if algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS:
            if pss is None:
                raise UnsupportedAlgorithm("RSASSA-PSS without readable parameters")
            public_key.verify(signature, data, pss, hash_algorithm)
        else:
            public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if hash_algorithm is None:
            raise UnsupportedAlgorithm("ECDSA signature without a hash algorithm")
        public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
    elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        public_key.verify(signature, data)
    else:
        raise UnsupportedAlgorithm(f"signatures with {type(public_key).__name__} keys")


def _ocsp_pss(der: bytes) -> tuple[padding.PSS | None, hashes.HashAlgorithm | None]:
    """RSASSA-PSS parameters of a BasicOCSPResponse signature (cryptography does not expose them)."""
    try:
        basic = asn1_ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
        algorithm: algos.SignedDigestAlgorithm = basic["signature_algorithm"]
        params = algorithm["parameters"]
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf_hash = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
        salt = int(params["salt_length"].native)
        return (padding.PSS(mgf=padding.MGF1(_HASHES[mgf_hash]()), salt_length=salt),
                _HASHES[hash_name]())
    except (KeyError, ValueError, TypeError, AttributeError):
        return None, None


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


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
                if _is_http(name.value) and point.crl_issuer is None and point.reasons is None:
                    usable.append(name.value)
                else:
                    skipped.append(name.value)
    return usable, skipped


def ocsp_urls(certificate: x509.Certificate) -> list[str]:
    try:
        access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return []
    return [
        description.access_location.value
        for description in access.value
        if description.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(description.access_location, x509.UniformResourceIdentifier)
        and _is_http(description.access_location.value)
    ]


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


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
        http_client: HttpClientFactory = _default_client,
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
        status: _Status | None = None
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
                    f"Sperrstatus von „{subject}“ nicht feststellbar: "
                    + "; ".join(d.de for d in details),
                    f"revocation status of \"{subject}\" unknown: "
                    + "; ".join(d.en for d in details)))
        if status.kind == "revoked":
            assert status.revoked_at is not None
            when_de, when_en = format_time(status.revoked_at)
            why = f" ({status.reason})" if status.reason else ""
            return RevocationFailure(
                code="revoked", certificate=certificate, revoked_at=status.revoked_at,
                reason=Text(f"„{subject}“ ist seit {when_de} gesperrt{why} ({status.detail.de})",
                            f"\"{subject}\" revoked at {when_en}{why} ({status.detail.en})"))
        return None

    # -- CRLs -------------------------------------------------------------------------------

    async def crl_status(self, certificate: x509.Certificate, issuer: x509.Certificate,
                         now: dt.datetime) -> _Status:
        problems: list[Text] = []
        for crl, origin in self._local_crls(issuer, problems):
            status = self._from_crl(crl, origin, certificate, issuer, now, problems)
            if status is not None:
                return status
        urls, skipped = crl_urls(certificate)
        if self.fetch:
            for url in urls:
                fetched = await self._fetched_crl(url, now, problems)
                if fetched is None:
                    continue
                status = self._from_crl(fetched, url, certificate, issuer, now, problems)
                if status is not None:
                    return status
        elif urls:
            problems.append(Text(f"Abruf von {', '.join(urls)} abgeschaltet",
                                 f"fetching {', '.join(urls)} is switched off"))
        if skipped:
            problems.append(Text(f"nicht unterstützte Sperrlisten-Adressen {', '.join(skipped)}",
                                 f"unsupported distribution points {', '.join(skipped)}"))
        if not problems:
            problems.append(Text(
                f"keine Sperrliste von „{describe(issuer)}“ (weder Datei noch Verteilungspunkt)",
                f"no CRL of \"{describe(issuer)}\" (no CRL file, no distribution point)"))
        return _Status("unknown", Text("CRL: " + "; ".join(p.de for p in problems),
                                       "CRL: " + "; ".join(p.en for p in problems)))

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
                problems.append(Text(f"Sperrlisten-Datei unbrauchbar: {exc}",
                                     f"CRL file unusable: {exc}"))
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
            problems.append(Text(f"{url}: {cached.error}", f"{url}: {cached.error}"))
        return cached.crl

    def _from_crl(self, crl: x509.CertificateRevocationList, origin: str,
                  certificate: x509.Certificate, issuer: x509.Certificate, now: dt.datetime,
                  problems: list[Text]) -> _Status | None:
        """The status according to one CRL, or None (with the problem noted) if it is unusable."""
        name = describe(issuer)
        if crl.issuer != issuer.subject:
            problems.append(Text(f"{origin}: Sperrliste von „{crl.issuer.rfc4514_string()}“, "
                                 f"nicht von „{name}“",
                                 f"{origin}: CRL issued by \"{crl.issuer.rfc4514_string()}\", "
                                 f"not by \"{name}\""))
            return None
        try:
            usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.crl_sign:
            problems.append(Text(f"{origin}: „{name}“ darf keine Sperrlisten signieren (keyUsage)",
                                 f"{origin}: \"{name}\" may not sign CRLs (keyUsage)"))
            return None
        try:
            valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        except (TypeError, UnsupportedAlgorithm, ValueError):
            valid = False
        if not valid:
            problems.append(Text(f"{origin}: Signatur der Sperrliste ungültig",
                                 f"{origin}: CRL signature does not verify with the key of "
                                 f"\"{name}\""))
            return None
        scope = self._crl_scope_problem(crl, certificate)
        if scope is not None:
            problems.append(Text(f"{origin}: {scope.de}", f"{origin}: {scope.en}"))
            return None
        if crl.last_update_utc > now + CLOCK_SKEW:
            when_de, when_en = format_time(crl.last_update_utc)
            problems.append(Text(f"{origin}: Sperrliste erst ab {when_de} gültig",
                                 f"{origin}: CRL not valid before {when_en}"))
            return None
        if crl.next_update_utc is not None and crl.next_update_utc < now - CLOCK_SKEW:
            when_de, when_en = format_time(crl.next_update_utc)
            problems.append(Text(f"{origin}: Sperrliste seit {when_de} veraltet (nextUpdate)",
                                 f"{origin}: CRL outdated since {when_en} (nextUpdate)"))
            return None
        entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        issued_de, issued_en = format_time(crl.last_update_utc)
        detail = Text(f"Sperrliste {origin} vom {issued_de}", f"CRL {origin} of {issued_en}")
        if entry is None:
            return _Status("good", detail)
        reason: str | None = None
        try:
            flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            pass
        else:
            if flag is x509.ReasonFlags.remove_from_crl:
                return _Status("good", detail)
            reason = flag.value
        return _Status("revoked", detail, revoked_at=entry.revocation_date_utc, reason=reason)

    @staticmethod
    def _crl_scope_problem(crl: x509.CertificateRevocationList, certificate: x509.Certificate
                           ) -> Text | None:
        for extension in crl.extensions:
            value = extension.value
            if isinstance(value, x509.DeltaCRLIndicator):
                return Text("Delta-Sperrliste (nur mit Basis-Sperrliste lesbar)",
                            "delta CRL (needs its base CRL)")
            if isinstance(value, x509.IssuingDistributionPoint):
                if value.indirect_crl:
                    return Text("indirekte Sperrliste (nicht unterstützt)",
                                "indirect CRL (not supported)")
                if value.only_some_reasons is not None:
                    return Text("Sperrliste nur für einige Sperrgründe",
                                "CRL covers only some revocation reasons")
                if value.only_contains_attribute_certs:
                    return Text("Sperrliste nur für Attributzertifikate",
                                "CRL covers attribute certificates only")
                if value.only_contains_ca_certs and not _is_ca(certificate):
                    return Text("Sperrliste nur für CA-Zertifikate",
                                "CRL covers CA certificates only")
                if value.only_contains_user_certs and _is_ca(certificate):
                    return Text("Sperrliste nur für Endnutzer-Zertifikate",
                                "CRL covers end-entity certificates only")
            elif extension.critical and isinstance(value, x509.UnrecognizedExtension):
                return Text(f"unbekannte kritische Erweiterung {extension.oid.dotted_string}",
                            f"unknown critical extension {extension.oid.dotted_string}")
        return None

    # -- OCSP -------------------------------------------------------------------------------

    async def ocsp_status(self, certificate: x509.Certificate, issuer: x509.Certificate,
                          now: dt.datetime) -> _Status:
        urls = ocsp_urls(certificate)
        if not urls:
            return _unknown("das Zertifikat nennt keinen OCSP-Dienst",
                            "the certificate names no OCSP responder")
        if not self.fetch:
            return _unknown(f"OCSP-Abfrage bei {urls[0]} abgeschaltet",
                            f"OCSP queries to {urls[0]} are switched off")
        problems: list[Text] = []
        key_hash = _hash("sha1", _key_bits(issuer))
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
        return _Status("unknown", Text("OCSP: " + "; ".join(p.de for p in problems),
                                       "OCSP: " + "; ".join(p.en for p in problems)))

    async def _ask_responder(self, url: str, certificate: x509.Certificate,
                             issuer: x509.Certificate, now: dt.datetime
                             ) -> tuple[_Status, dt.datetime]:
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
            return _unknown(f"{url}: {exc}", f"{url}: {exc}"), retry_at
        status = self._read_ocsp(data, url, nonce, certificate, issuer, now)
        if status.kind == "unknown":
            return status, retry_at
        return status, self._ocsp_until(data, now)

    def _ocsp_until(self, data: bytes, now: dt.datetime) -> dt.datetime:
        until = now + dt.timedelta(seconds=self.cache_seconds)
        response = ocsp.load_der_ocsp_response(data)
        if response.next_update_utc is not None:
            until = min(until, response.next_update_utc)
        return until

    def _read_ocsp(self, data: bytes, url: str, nonce: bytes, certificate: x509.Certificate,
                   issuer: x509.Certificate, now: dt.datetime) -> _Status:
        try:
            response = ocsp.load_der_ocsp_response(data)
        except ValueError as exc:
            return _unknown(f"{url}: keine OCSP-Antwort ({exc})", f"{url}: not an OCSP response ({exc})")
        if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            status = response.response_status.name.lower()
            return _unknown(f"{url}: Antwort „{status}“", f"{url}: responder answered {status!r}")
        signer = self._ocsp_signer(response, issuer, now)
        if isinstance(signer, Text):
            return _unknown(f"{url}: {signer.de}", f"{url}: {signer.en}")
        pss, pss_hash = _ocsp_pss(data) if (
            response.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS) else (None, None)
        try:
            _verify_signature(signer.public_key(), response.signature, response.tbs_response_bytes,
                              pss_hash or response.signature_hash_algorithm,
                              response.signature_algorithm_oid, pss)
        except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError) as exc:
            return _unknown(f"{url}: Signatur der OCSP-Antwort ungültig ({type(exc).__name__})",
                            f"{url}: the OCSP response signature does not verify "
                            f"({type(exc).__name__})")
        try:
            echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            echoed = None
        if echoed is not None and echoed != nonce:
            return _unknown(f"{url}: OCSP-Nonce passt nicht (Wiederholung?)",
                            f"{url}: OCSP nonce does not match (replayed answer?)")
        single = self._single_response(response, certificate, issuer)
        if single is None:
            return _unknown(f"{url}: Antwort betrifft das Zertifikat nicht",
                            f"{url}: the answer does not cover the certificate")
        this_update = single.this_update_utc
        if this_update > now + CLOCK_SKEW:
            return _unknown(f"{url}: Antwort aus der Zukunft ({format_time(this_update)[0]})",
                            f"{url}: answer from the future ({format_time(this_update)[1]})")
        next_update = single.next_update_utc
        stale = (next_update < now - CLOCK_SKEW if next_update is not None
                 else this_update < now - dt.timedelta(seconds=max(self.cache_seconds, 300)))
        if stale:
            return _unknown(f"{url}: Antwort veraltet (thisUpdate {format_time(this_update)[0]})",
                            f"{url}: outdated answer (thisUpdate {format_time(this_update)[1]})")
        produced_de, produced_en = format_time(response.produced_at_utc)
        detail = Text(f"OCSP {url} vom {produced_de}", f"OCSP {url} of {produced_en}")
        if single.certificate_status is ocsp.OCSPCertStatus.GOOD:
            return _Status("good", detail)
        if single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
            reason = single.revocation_reason.value if single.revocation_reason else None
            assert single.revocation_time_utc is not None
            return _Status("revoked", detail, revoked_at=single.revocation_time_utc, reason=reason)
        return _unknown(f"{url}: Status „unbekannt“ (der Dienst kennt das Zertifikat nicht)",
                        f"{url}: status 'unknown' (the responder does not know the certificate)")

    @staticmethod
    def _single_response(response: ocsp.OCSPResponse, certificate: x509.Certificate,
                         issuer: x509.Certificate) -> ocsp.OCSPSingleResponse | None:
        name_der = issuer.subject.public_bytes()
        key_bits = _key_bits(issuer)
        for single in response.responses:
            if single.serial_number != certificate.serial_number:
                continue
            hash_name = single.hash_algorithm.name
            if hash_name not in _HASHES:
                continue
            if (single.issuer_key_hash == _hash(hash_name, key_bits)
                    and single.issuer_name_hash == _hash(hash_name, name_der)):
                return single
        return None

    @staticmethod
    def _ocsp_signer(response: ocsp.OCSPResponse, issuer: x509.Certificate, now: dt.datetime
                     ) -> x509.Certificate | Text:
        """The certificate that may have signed the answer: the issuer itself, or a responder
        certificate in the answer that the issuer signed, with OCSPSigning, valid now."""

        def names(candidate: x509.Certificate) -> bool:
            if response.responder_name is not None:
                return candidate.subject == response.responder_name
            return response.responder_key_hash == _hash("sha1", _key_bits(candidate))

        if names(issuer):
            return issuer
        for candidate in response.certificates:
            if not names(candidate):
                continue
            subject = describe(candidate)
            try:
                candidate.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                return Text(f"Responder „{subject}“ nicht vom Aussteller „{describe(issuer)}“ "
                            "beauftragt",
                            f"responder \"{subject}\" is not certified by the issuer "
                            f"\"{describe(issuer)}\"")
            try:
                eku = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                eku = None
            if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
                return Text(f"Responder „{subject}“ hat nicht den Verwendungszweck OCSPSigning",
                            f"responder \"{subject}\" lacks the OCSPSigning extended key usage")
            if not candidate.not_valid_before_utc <= now <= candidate.not_valid_after_utc:
                return Text(f"Responder-Zertifikat „{subject}“ ist nicht gültig",
                            f"responder certificate \"{subject}\" is not valid now")
            return candidate
        return Text("Antwort von einem unbekannten Responder",
                    "answer signed by an unknown responder")

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
        headers = {"Content-Type": "application/ocsp-request"} if body is not None else {}
        try:
            async with asyncio.timeout(self.timeout_seconds), \
                    self._http_client(self.timeout_seconds) as client, \
                    client.stream(method, url, content=body, headers=headers) as response:
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise FetchError(f"answer larger than {limit} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except TimeoutError:
            raise FetchError(f"no answer within {self.timeout_seconds:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                             ) from None


__all__ = [
    "REVOCATION_MODES",
    "FetchError",
    "RevocationChecker",
    "RevocationFailure",
    "RevocationMode",
    "crl_urls",
    "describe",
    "format_time",
    "load_crls",
    "ocsp_urls",
]
