"""Recipients' certificates from an LDAP directory (optional; ``ldap_url`` in ``[settings.smime]``).

When no stored certificate is usable for an address, :class:`LdapCertificateSource` searches the
configured directory (``ldap_filter``, default ``(mail={address})``, the address escaped per
RFC 4515) below ``ldap_base_dn`` and reads ``userCertificate;binary`` (DER) and
``userSMIMECertificate`` (a PKCS#7 bundle). What it finds is filed in the certificate directory with
source ``ldap`` and then judged like every other certificate (validity, address, key usage, EKU,
chain, revocation): LDAP only supplies candidates, it never makes a certificate trusted.

The answer is kept in the plugin state (namespace ``smime.ldap-cache``, key: the address and the
server's identity): certificates found for ``ldap_cache_seconds``, "nothing there" for
``ldap_negative_cache_seconds``. A server that cannot be asked (down, TLS or bind failure, search
error) yields no certificate and a reason; that failure is remembered only briefly
(:data:`FAILURE_CACHE_SECONDS`) so that a dead server does not delay every recipient, and the next
attempt comes soon. In a dry run (``siegel explain``, read-only plugin state) found certificates are
used in memory and nothing is filed or cached.

Transport: ``ldaps://`` (TLS from the start) or ``ldap://`` with StartTLS, required by default;
TLS 1.2 or newer with certificate and host name verification (``ldap_ca_file`` or the system's
CAs). Plain LDAP (``ldap_starttls = false``) is allowed to a loopback address, elsewhere only with
``ldap_allow_plaintext = true``. Optional simple bind (``ldap_bind_dn`` with
``ldap_password_file``), anonymous otherwise. ldap3 is synchronous: every lookup runs in a worker
thread and must finish within ``ldap_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import logging
import math
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import attrs
import ldap3  # type: ignore[import-untyped]
from cryptography import x509
from ldap3.core.exceptions import LDAPException  # type: ignore[import-untyped]
from ldap3.operation.search import parse_filter  # type: ignore[import-untyped]
from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped]
from ldap3.utils.dn import parse_dn  # type: ignore[import-untyped]

from siegel import Clock, PluginState, SettingError, Text

from .cert_files import ImportFailure, load_certificates
from .certificates import fingerprint, is_ca, mentioned_addresses
from .directory import CertificateDirectory
from .records import CertificateEntry, LookupResult
from .texts import format_time

log = logging.getLogger(__name__)

LDAP_CACHE_NAMESPACE = "smime.ldap-cache"
SOURCE = "ldap"
#: The attributes asked for. OpenLDAP insists on the ``;binary`` option for userCertificate.
CERTIFICATE_ATTRIBUTES = ("userCertificate;binary", "userSMIMECertificate")
#: How long a failed lookup (server down, TLS or bind failure) is remembered before trying again.
FAILURE_CACHE_SECONDS = 60.0
#: More entries than this for one address is a misconfigured filter, not an answer.
MAX_ENTRIES = 20
MAX_CERTIFICATES = 50
ADDRESS_PLACEHOLDER = "{address}"
_RECORD_FORMAT = 1
_MAX_DETAIL = 300

Outcome = Literal["found", "nothing", "failed"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def search_filter(template: str, address: str) -> str:
    """``template`` with every ``{address}`` replaced by ``address`` escaped per RFC 4515, so that
    ``*``, ``(``, ``)``, ``\\`` and NUL in an address are values, never filter syntax."""
    return template.replace(ADDRESS_PLACEHOLDER, escape_filter_chars(address))


@attrs.frozen(kw_only=True)
class LdapConfig:
    """Where and how to look certificates up; validated when built.

    Raises :class:`siegel.SettingError` naming the ``ldap_*`` key of ``[settings.smime]`` at fault.
    """

    url: str
    base_dn: str
    filter: str = "(mail={address})"
    bind_dn: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    #: PEM file with the CA certificates the server's certificate must chain to; None: the system's.
    ca_file: str | None = None
    #: ``ldap://`` only: StartTLS (required), else plain LDAP.
    starttls: bool = True
    #: Plain LDAP to a host that is not loopback (only on a trusted network segment).
    allow_plaintext: bool = False
    timeout_seconds: float = 5.0
    cache_seconds: float = 3600.0
    negative_cache_seconds: float = 300.0
    failure_cache_seconds: float = FAILURE_CACHE_SECONDS
    scheme: str = attrs.field(init=False)
    host: str = attrs.field(init=False)
    port: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        try:
            parts = urlsplit(self.url)
            port = parts.port
        except ValueError as exc:
            raise SettingError("ldap_url", f"{self.url!r} is not a URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise SettingError("ldap_url", f"must be ldap://HOST[:PORT] or ldaps://HOST[:PORT], "
                                           f"not {self.url!r}")
        if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise SettingError("ldap_url", f"{self.url!r}: give only scheme, host and port (base "
                                           "DN, filter and credentials have their own ldap_* keys)")
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "host", parts.hostname)
        object.__setattr__(self, "port", port or (636 if scheme == "ldaps" else 389))
        if scheme == "ldap" and not self.starttls and not _is_loopback(self.host) and (
                not self.allow_plaintext):
            raise SettingError(
                "ldap_starttls", f"ldap_starttls = false would query {self.server} unencrypted"
                + (" and send the bind password in clear" if self.bind_dn else "")
                + "; use ldaps:// or StartTLS, or set ldap_allow_plaintext = true if that network "
                  "segment is trusted")
        if not self.base_dn.strip():
            raise SettingError("ldap_base_dn", "is needed with ldap_url (where to search)")
        try:
            parse_dn(self.base_dn)
        except LDAPException as exc:
            raise SettingError("ldap_base_dn", f"{self.base_dn!r} is not a DN: {exc}") from None
        self._check_filter()
        if self.bind_dn is not None:
            try:
                parse_dn(self.bind_dn)
            except LDAPException as exc:
                raise SettingError("ldap_bind_dn", f"{self.bind_dn!r} is not a DN: {exc}") from None
            if not self.password:
                # RFC 4513 5.1.2: a simple bind with an empty password is an unauthenticated
                # bind that servers may accept as anonymous.
                raise SettingError("ldap_password_file", "ldap_bind_dn needs a non-empty password "
                                                         "(ldap_password_file)")
        elif self.password is not None:
            raise SettingError("ldap_password_file", "a password needs ldap_bind_dn")
        if self.timeout_seconds <= 0:
            raise SettingError("ldap_timeout_seconds",
                               f"must be greater than 0, not {self.timeout_seconds}")
        for key, value in (("ldap_cache_seconds", self.cache_seconds),
                           ("ldap_negative_cache_seconds", self.negative_cache_seconds)):
            if value < 0:
                raise SettingError(key, f"must be at least 0, not {value}")

    def _check_filter(self) -> None:
        template = self.filter
        if ADDRESS_PLACEHOLDER not in template:
            raise SettingError("ldap_filter", f"{template!r} does not contain {ADDRESS_PLACEHOLDER}")
        try:
            # ldap3's own parser, as it will parse the real query (no schema: names unchecked).
            parse_filter(search_filter(template, "probe@example.org"), None, False, False, None,
                         False)
        except LDAPException as exc:
            raise SettingError("ldap_filter", f"{template!r} is not an LDAP filter (RFC 4515, e.g. "
                                              f"(mail={{address}})): {exc}") from None

    @property
    def server(self) -> str:
        """The server for messages: ``ldap://host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def identity(self) -> str:
        """Short hash of what determines the answer; part of the cache key, so that tenants with
        different directories, or a changed configuration, do not share answers."""
        what = "\0".join((self.server, self.base_dn, self.filter, self.bind_dn or ""))
        return hashlib.sha256(what.encode()).hexdigest()[:16]

    def tls(self) -> ldap3.Tls:
        # ldap3 builds ssl.create_default_context() (TLS 1.2+, verification) and checks the host
        # name itself after the handshake.
        return ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.ca_file)


@attrs.frozen(kw_only=True)
class LdapAnswer:
    """One answer of the server (or the reason there is none)."""

    outcome: Outcome
    certificates: tuple[x509.Certificate, ...] = attrs.field(default=(), repr=False)
    #: Why it failed, or what was skipped (unreadable values); English, technical.
    detail: str = ""
    at: dt.datetime
    #: Read from the cache rather than asked now.
    cached: bool = False
    #: How many certificates a cached "found" answer had.
    count: int = 0

    @property
    def found(self) -> int:
        return len(self.certificates) if not self.cached else self.count

    def to_json(self) -> bytes:
        return json.dumps({"format": _RECORD_FORMAT, "outcome": self.outcome, "count": self.found,
                           "detail": self.detail, "at": self.at.astimezone(dt.UTC).isoformat()},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, value: bytes) -> LdapAnswer:
        """Raises :class:`ValueError` for a damaged record."""
        data = json.loads(value)
        if not isinstance(data, dict) or data.get("format") != _RECORD_FORMAT:
            raise ValueError("unknown format")
        outcome = data["outcome"]
        if outcome not in ("found", "nothing", "failed"):
            raise ValueError(f"unknown outcome {outcome!r}")
        return cls(outcome=outcome, detail=str(data.get("detail", "")), cached=True,
                   count=int(data.get("count", 0)), at=dt.datetime.fromisoformat(data["at"]))


class _Failure(Exception):
    """The server could not be asked, or did not answer the question."""


class LdapCertificateSource:
    """Looks certificates up in LDAP for a :class:`~.directory.CertificateDirectory` (its
    ``lookup``, a :class:`~.directory.CertificateLookup`), with the answers cached in ``cache``."""

    def __init__(self, config: LdapConfig, cache: PluginState, clock: Clock) -> None:
        self.config = config
        self.cache = cache
        self.clock = clock

    def cache_key(self, address: str) -> str:
        return f"{address}/{self.config.identity}"

    # -- the directory's hook ------------------------------------------------------------------

    async def lookup(self, directory: CertificateDirectory, address: str) -> LookupResult:
        """A fresh cached answer, else ask the server; file what it found under ``address`` (in
        memory only where the state is read-only). Never raises for server problems."""
        answer = await self.cached(address)
        if answer is None:
            answer = await self.search(address)
            entries, intermediates = await self._file(directory, address, answer.certificates)
            await self._remember(address, answer)
        else:
            entries, intermediates = (), ()
        return LookupResult(entries=entries, intermediates=intermediates,
                            note=self.describe(answer, address))

    async def _file(self, directory: CertificateDirectory, address: str,
                    certificates: Sequence[x509.Certificate]
                    ) -> tuple[tuple[CertificateEntry, ...], tuple[x509.Certificate, ...]]:
        entries: list[CertificateEntry] = []
        intermediates: list[x509.Certificate] = []
        for certificate in certificates:
            if is_ca(certificate):
                if certificate.issuer == certificate.subject:
                    continue  # a root: trust anchors come only from the configuration
                with contextlib.suppress(PermissionError):  # dry run: used in memory below
                    await directory.add_intermediate(certificate, source=SOURCE)
                intermediates.append(certificate)
                continue
            entry = CertificateEntry(address=address, fingerprint=fingerprint(certificate),
                                     certificate=certificate, source=SOURCE,
                                     added_at=self.clock.now())
            # Filed only under the address asked for, and only if it names it; one that does
            # not is judged in memory, so that the reason says what the directory holds.
            if address in mentioned_addresses(certificate):
                with contextlib.suppress(PermissionError):  # dry run: only in memory
                    entry, _ = await directory.add_for_address(certificate, address, SOURCE)
            entries.append(entry)
        return tuple(entries), tuple(intermediates)

    # -- the cache -----------------------------------------------------------------------------

    async def cached(self, address: str) -> LdapAnswer | None:
        """The answer remembered for ``address`` if it is still fresh."""
        record = await self.cache.get(self.cache_key(address))
        if record is None:
            return None
        try:
            return LdapAnswer.from_json(record.value)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("damaged LDAP cache record %s: %s", record.key, exc)
            return None

    def _ttl(self, outcome: Outcome) -> float:
        return {"found": self.config.cache_seconds,
                "nothing": self.config.negative_cache_seconds,
                "failed": self.config.failure_cache_seconds}[outcome]

    async def _remember(self, address: str, answer: LdapAnswer) -> None:
        seconds = self._ttl(answer.outcome)
        if seconds <= 0:
            return
        with contextlib.suppress(PermissionError):  # dry run: nothing is remembered
            await self.cache.put(self.cache_key(address), answer.to_json(),
                                 ttl=dt.timedelta(seconds=seconds))

    # -- asking the server ---------------------------------------------------------------------

    async def search(self, address: str) -> LdapAnswer:
        """Ask the server now (in a worker thread, within ``timeout_seconds``)."""
        config = self.config
        query = search_filter(config.filter, address)
        try:
            values = await asyncio.wait_for(asyncio.to_thread(self._search, query),
                                            timeout=config.timeout_seconds)
        except TimeoutError:
            return self._failed(address, f"no answer within {config.timeout_seconds:g} s")
        except _Failure as exc:
            return self._failed(address, str(exc))
        except (LDAPException, OSError) as exc:
            return self._failed(address, self._error(exc))
        except Exception as exc:  # whatever else ldap3 raises: no answer, fail closed
            log.exception("LDAP %s: unexpected error", config.server)
            return self._failed(address, self._error(exc))
        certificates: dict[str, x509.Certificate] = {}
        notes: list[str] = []
        for name, value in values:
            try:
                loaded = load_certificates(value, name=name)
            except ImportFailure as exc:
                notes.append(str(exc))
                continue
            for certificate in loaded.certificates:
                certificates.setdefault(fingerprint(certificate), certificate)
        if len(certificates) > MAX_CERTIFICATES:
            notes.append(f"only the first {MAX_CERTIFICATES} of {len(certificates)} certificates "
                         "were taken")
        found = tuple(certificates.values())[:MAX_CERTIFICATES]
        detail = "; ".join(notes)
        log.info("LDAP %s: %d certificate(s) for %s%s", config.server, len(found), address,
                 f" ({detail})" if detail else "")
        return LdapAnswer(outcome="found" if found else "nothing", certificates=found,
                          detail=detail, at=self.clock.now())

    def _error(self, exc: Exception) -> str:
        message = str(exc)
        if "doesn't match any name" in message:  # ldap3's host name check (it dumps the certificate)
            return f"{type(exc).__name__}: the server's TLS certificate does not name {self.config.host}"
        if len(message) > _MAX_DETAIL:
            message = message[:_MAX_DETAIL] + "…"
        return f"{type(exc).__name__}: {message}"

    def _failed(self, address: str, detail: str) -> LdapAnswer:
        log.warning("LDAP %s: no lookup for %s: %s", self.config.server, address, detail)
        return LdapAnswer(outcome="failed", detail=detail, at=self.clock.now())

    def _search(self, query: str) -> list[tuple[str, bytes]]:
        """The blocking part: connect, StartTLS, bind, search. Returns the certificate values
        as (``DN attribute``, bytes); raises for anything that is not an answer."""
        config = self.config
        server = ldap3.Server(config.host, port=config.port, use_ssl=config.scheme == "ldaps",
                              tls=config.tls(), connect_timeout=config.timeout_seconds,
                              get_info=ldap3.NONE)
        connection = ldap3.Connection(
            server, user=config.bind_dn, password=config.password,
            authentication=ldap3.SIMPLE if config.bind_dn else ldap3.ANONYMOUS,
            # ldap3 packs the receive timeout into SO_RCVTIMEO as an integer.
            receive_timeout=max(1, math.ceil(config.timeout_seconds)), read_only=True, auto_referrals=False,
            raise_exceptions=False)
        try:
            connection.open()
            if config.scheme == "ldap" and config.starttls and not connection.start_tls():
                raise _Failure(f"StartTLS failed: {connection.last_error or connection.result}")
            if config.bind_dn and not connection.bind():
                raise _Failure(f"bind as {config.bind_dn} failed: {_result(connection)}")
            connection.search(config.base_dn, query, search_scope=ldap3.SUBTREE,
                              dereference_aliases=ldap3.DEREF_NEVER,
                              attributes=list(CERTIFICATE_ATTRIBUTES), size_limit=MAX_ENTRIES,
                              time_limit=max(1, round(config.timeout_seconds)))
            code = (connection.result or {}).get("result")
            if code == 4:  # sizeLimitExceeded
                raise _Failure(f"more than {MAX_ENTRIES} entries match {query}; ldap_filter must "
                               "find one person")
            if code != 0:
                raise _Failure(f"search {query} below {config.base_dn} failed: {_result(connection)}")
            values: list[tuple[str, bytes]] = []
            for entry in connection.response or ():
                if entry.get("type") != "searchResEntry":
                    continue
                for attribute, raw in _certificate_values(entry.get("raw_attributes") or {}):
                    values.extend((f"{entry.get('dn', '?')} {attribute}", value) for value in raw)
            return values
        finally:
            with contextlib.suppress(LDAPException, OSError):
                connection.unbind()

    # -- reasons -------------------------------------------------------------------------------

    def describe(self, answer: LdapAnswer, address: str) -> Text:
        """The note for the directory's reason."""
        server = self.config.server
        at_de, at_en = format_time(answer.at)
        cached_de, cached_en = (f" (Antwort von {at_de})", f" (answer from {at_en})") if (
            answer.cached) else ("", "")
        detail = f" ({answer.detail})" if answer.detail else ""
        if answer.outcome == "found":
            count = answer.found
            return Text(de=f"LDAP {server}: {count} Zertifikat(e) für {address} gefunden{detail}"
                        f"{cached_de}",
                        en=f"LDAP {server}: {count} certificate(s) found for {address}{detail}{cached_en}")
        if answer.outcome == "nothing":
            return Text(de=f"LDAP {server}: kein Zertifikat für {address}{detail}{cached_de}",
                        en=f"LDAP {server}: no certificate for {address}{detail}{cached_en}")
        retry = answer.at + dt.timedelta(seconds=self.config.failure_cache_seconds)
        retry_de, retry_en = format_time(retry)
        return Text(
            de=f"LDAP {server} nicht verfügbar, kein Zertifikat von dort ({answer.detail})"
            + (f"; seit {at_de}, nächster Versuch nach {retry_de}" if answer.cached else ""),
            en=f"LDAP {server} unavailable, no certificate taken from it ({answer.detail})"
            + (f"; since {at_en}, next attempt after {retry_en}" if answer.cached else ""))


def _certificate_values(attributes: dict[str, Any]) -> list[tuple[str, list[bytes]]]:
    wanted = {name.partition(";")[0].lower() for name in CERTIFICATE_ATTRIBUTES}
    found: list[tuple[str, list[bytes]]] = []
    for name, values in attributes.items():
        if name.partition(";")[0].lower() in wanted:
            found.append((name, [v for v in values if isinstance(v, bytes)]))
    return found


def _result(connection: Any) -> str:
    result = connection.result or {}
    text = " ".join(str(part) for part in (result.get("description"), result.get("message")) if part)
    return text or str(connection.last_error or "no result")


def read_password_file(path: str | Path) -> str:
    """The bind password: the file's content without surrounding white space.

    Raises :class:`siegel.SettingError` (``ldap_password_file``)."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise SettingError("ldap_password_file", f"{path}: cannot read: {detail}") from None


__all__ = [
    "CERTIFICATE_ATTRIBUTES",
    "LDAP_CACHE_NAMESPACE",
    "LdapAnswer",
    "LdapCertificateSource",
    "LdapConfig",
    "read_password_file",
    "search_filter",
]
