"""Built-in delivery channel ``smtp``: hand copies to a relay (the authority's mail server) with
aiosmtplib.

TLS 1.2 or newer with certificate verification is the default (``tls = "starttls-required"``). Plain
SMTP is allowed only to a loopback address (Postfix's re-injection port in a content-filter setup)
unless the administrator says the network is trusted. 4xx answers and connection problems are
temporary failures (retried with back-off by the pipeline); 5xx answers are permanent.

With ``credentials_file`` siegel logs in (SMTP AUTH) after TLS is up; the user name and password
come from that file, never from the configuration. Credentials are sent only over TLS unless
``allow_auth_without_tls`` says otherwise. A refused login (``535``) is a temporary failure: the
copies wait and are retried while the administrator fixes the file, instead of being bounced.

The message is handed to the connection a piece at a time (:func:`_send`), not with
``aiosmtplib.SMTP.sendmail``: that one normalises line endings and dot-stuffs a whole copy of the
message, appends the final dot to another, and computes the SIZE parameter from a third, so a
34 MB carrier mail cost about 150 MB more at the moment of sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import re
import socket
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Literal, cast

import aiosmtplib
import attrs

from siegel import (
    ConfigPath,
    ConfigSection,
    DeliveryChannel,
    DeliveryResult,
    Outgoing,
    Resource,
    Services,
    SettingError,
    Tenant,
    handoff,
    hookimpl,
    settings,
)

SECTION = "relay"
log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.frozen(kw_only=True)
class RelaySettings:
    host: str = "127.0.0.1"
    port: int = settings.checked(25, settings.port)
    #: "starttls-required", "starttls-opportunistic", "implicit" (SMTPS) or "none".
    tls: Literal["starttls-required", "starttls-opportunistic", "implicit", "none"] = (
        "starttls-required"
    )
    verify_certificate: bool = True
    #: CA bundle (PEM) to verify the relay against, instead of the system's.
    ca_file: ConfigPath | None = None
    #: Allow tls = "none" to a host that is not loopback (only on a trusted network segment).
    allow_plaintext_remote: bool = False
    timeout_seconds: float = 60.0
    local_hostname: str | None = None
    #: How long a session to the relay is kept open for the next message; 0 closes each one
    #: after its message.
    idle_seconds: float = settings.checked(5.0, settings.not_negative)
    #: A file whose first line is ``user:password`` for SMTP AUTH at the relay.
    credentials_file: ConfigPath | None = None
    #: Send the credentials even where the session is not encrypted (tls = "none" or a relay
    #: that does not offer STARTTLS with "starttls-opportunistic").
    allow_auth_without_tls: bool = False

    def __attrs_post_init__(self) -> None:
        problems = []
        if self.tls == "none" and not _is_loopback(self.host) and not self.allow_plaintext_remote:
            problems.append(SettingError(
                "tls", f"tls = 'none' would send mail unencrypted to {self.host}; use TLS, or set "
                "allow_plaintext_remote = true if that network segment is trusted"))
        if self.credentials_file is not None:
            if self.tls in ("none", "starttls-opportunistic") and not self.allow_auth_without_tls:
                problems.append(SettingError(
                    "credentials_file", f"with tls = {self.tls!r} the password could go to "
                    f"{self.host} unencrypted; use tls = 'starttls-required' or 'implicit', or "
                    "set allow_auth_without_tls = true"))
            try:
                read_credentials(self.credentials_file)
            except RelayCredentialsError as exc:
                problems.append(SettingError("credentials_file", str(exc)))
        settings.check_fields(self, problems)

    def tls_context(self) -> ssl.SSLContext:
        return _tls_context(self.ca_file, self.verify_certificate)


class RelayCredentialsError(Exception):
    """The credentials file cannot be used (the message names the file, never its content)."""


def read_credentials(path: str) -> tuple[str, str]:
    """``(user, password)`` from the first line of ``path`` (``user:password``; the password may
    contain ``:``). Read for every new session, so a changed file needs no restart."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RelayCredentialsError(f"cannot read {path}: "
                                    f"{getattr(exc, 'strerror', None) or type(exc).__name__}"
                                    ) from None
    line = text.splitlines()[0] if text else ""
    user, colon, password = line.partition(":")
    if not colon or not user or not password:
        raise RelayCredentialsError(f"{path}: the first line must be user:password")
    return user, password


class RelayLoginFailed(Exception):
    """The relay did not let siegel log in, or siegel would not send the password."""


async def _log_in(client: aiosmtplib.SMTP, settings: RelaySettings) -> None:
    assert settings.credentials_file is not None
    target = f"{settings.host}:{settings.port}"
    try:
        user, password = read_credentials(settings.credentials_file)
    except RelayCredentialsError as exc:
        raise RelayLoginFailed(f"{target}: no login possible: {exc}") from None
    if client.get_transport_info("ssl_object") is None and not settings.allow_auth_without_tls:
        raise RelayLoginFailed(f"{target}: the session is not encrypted (no STARTTLS offered?); "
                               "the password is sent only over TLS")
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    if not client.supports_extension("auth"):
        raise RelayLoginFailed(f"{target} does not offer SMTP AUTH (on this connection); "
                               f"credentials_file {settings.credentials_file} cannot be used")
    try:
        await client.login(user, password)
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise RelayLoginFailed(
            f"{target} refused the login of {user!r} from {settings.credentials_file}: "
            f"{_reply(exc)}; check the user name and password in that file") from None
    except aiosmtplib.SMTPException as exc:
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
            raise
        raise RelayLoginFailed(f"{target}: login of {user!r} failed: {exc}") from None


# Loading the CA certificates takes about 50 ms, more than rendering a PDF; a context serves any
# number of connections. A changed CA file is read at the next start.
@functools.lru_cache(maxsize=16)
def _tls_context(ca_file: str | None, verify_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@functools.cache
def _this_host() -> str:
    """What to say in EHLO when no ``local_hostname`` is set; aiosmtplib would look it up (a
    resolver call) for every connection."""
    return socket.getfqdn()


def _reply(response: aiosmtplib.SMTPResponse | aiosmtplib.SMTPResponseException) -> str:
    return f"{response.code} {response.message}".strip()


# What goes over the wire after DATA is what aiosmtplib would send: every line end CRLF (a lone CR
# or LF becomes CRLF), a dot at the start of a line doubled, and the message ending in CRLF.
_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_PIECE_BYTES = 256 * 1024


def _transmitted_size(raw: bytes) -> int:
    """The SIZE parameter (RFC 1870: the message with CRLF line ends, before dot-stuffing),
    counted without making the copy that aiosmtplib's ``sendmail`` makes to measure it."""
    crlf = raw.count(b"\r\n")
    lone_ends = (raw.count(b"\n") - crlf) + (raw.count(b"\r") - crlf)
    ends_with_line_end = raw.endswith((b"\n", b"\r"))
    return len(raw) + lone_ends + (0 if ends_with_line_end else 2)


def _data_pieces(raw: bytes) -> Iterator[bytes]:
    """The DATA payload, terminating dot included, in pieces of about ``_PIECE_BYTES``.

    Each piece ends just after an LF, so that no CRLF is split and every piece starts at the
    start of a line, where a leading dot is recognised."""
    start = 0
    while start < len(raw):
        newline = raw.find(b"\n", min(start + _PIECE_BYTES, len(raw)) - 1)
        end = len(raw) if newline == -1 else newline + 1
        piece = _LEADING_DOT.sub(b"..", _LINE_END.sub(b"\r\n", raw[start:end]))
        start = end
        if start == len(raw) and not piece.endswith(b"\r\n"):
            piece += b"\r\n"
        yield piece
    if not raw:
        yield b"\r\n"
    yield _FINAL_DOT


_FINAL_DOT = b".\r\n"


_BUFFER_POLL_SECONDS = 0.01


def writable_waiter(protocol: asyncio.BaseProtocol) -> Callable[[], Awaitable[None]]:
    """A function to await before writing the next piece: it returns once the connection's
    write buffer has room again.

    aiosmtplib's protocol has asyncio's flow control (``pause_writing``/``resume_writing``) but no
    public ``drain()``; its private ``_drain_helper`` (asyncio's ``FlowControlMixin``) is the one
    exact way to wait, so it is used while it exists. This is the only place siegel touches a
    private member of aiosmtplib. Without it (a later aiosmtplib) the fallback uses only the
    public transport API: it waits while the buffer is above the transport's high-water mark,
    checking every few milliseconds. Both keep memory bounded; without either every piece would
    pile up in the buffer, which would still be correct, only not lighter.
    """
    private = getattr(protocol, "_drain_helper", None)
    if callable(private):
        return cast(Callable[[], Awaitable[None]], private)
    transport = cast(asyncio.WriteTransport | None, getattr(protocol, "transport", None))

    async def buffer_has_room() -> None:
        if transport is None:
            return
        _low, high = transport.get_write_buffer_limits()
        # Polling: the transport tells only the protocol (resume_writing) when the buffer has
        # room, and that protocol is aiosmtplib's, not ours, so there is no event to wait for.
        while not transport.is_closing() and transport.get_write_buffer_size() > high:  # noqa: ASYNC110
            await asyncio.sleep(_BUFFER_POLL_SECONDS)

    return buffer_has_room


async def _data(client: aiosmtplib.SMTP, raw: bytes) -> aiosmtplib.SMTPResponse:
    """``client.data(raw)``, piece by piece, waiting while the connection's buffer is full."""
    answer = await client.execute_command(b"DATA")
    if answer.code != aiosmtplib.SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(answer.code, answer.message)
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    drain = writable_waiter(protocol)
    timeout = client.timeout
    for number, piece in enumerate(_data_pieces(raw)):
        if number:
            await asyncio.wait_for(drain(), timeout)
        if piece == _FINAL_DOT:
            break
        protocol.write(piece)
    # From the final dot on, the relay may have the copy: record the attempt first, and let this
    # instance have no other copy in doubt until the outcome is committed (siegel.handoff).
    async with handoff():
        protocol.write(_FINAL_DOT)
        # Nothing awaited since the dot, so the reply cannot arrive before it is read.
        reply = await protocol.read_response(timeout=timeout)
    if reply.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return reply


async def _send(client: aiosmtplib.SMTP, outgoing: Outgoing
                ) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    """What ``client.sendmail`` does (same commands, options, errors and reset), but with
    :func:`_data`. Returns the refused recipients and the final reply."""
    utf8 = not all(a.isascii() for a in (outgoing.mail_from, *outgoing.recipients))
    encoding = "utf-8" if utf8 else "ascii"
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo()
    if utf8 and not client.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
    options = ["SMTPUTF8"] if utf8 else []
    if client.supports_extension("size"):
        options.insert(0, f"size={_transmitted_size(outgoing.raw)}")
    try:
        await client.mail(outgoing.mail_from, options=options, encoding=encoding)
        refused: list[aiosmtplib.SMTPRecipientRefused] = []
        for recipient in outgoing.recipients:
            try:
                await client.rcpt(recipient, encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused.append(exc)
        if len(refused) == len(outgoing.recipients):
            raise aiosmtplib.SMTPRecipientsRefused(refused)
        reply = await _data(client, outgoing.raw)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await client.rset()
        raise
    return ({r.recipient: aiosmtplib.SMTPResponse(r.code, r.message) for r in refused},
            reply.message)


def _new_client(settings: RelaySettings) -> aiosmtplib.SMTP:
    uses_tls = settings.tls != "none"
    return aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.port,
        use_tls=settings.tls == "implicit",
        start_tls={"starttls-required": True, "starttls-opportunistic": None}.get(settings.tls,
                                                                                  False),
        validate_certs=settings.verify_certificate,
        tls_context=settings.tls_context() if uses_tls else None,
        timeout=settings.timeout_seconds,
        local_hostname=settings.local_hostname or _this_host(),
    )


@attrs.define
class _Idle:
    client: aiosmtplib.SMTP
    since: float
    sent: int


@attrs.define
class _Connections:
    """Open sessions to one relay, kept between deliveries (as Postfix keeps its own): with TLS a
    new session costs a handshake, and every one a connect, EHLO and QUIT. A session is reused
    for at most ``MAX_MESSAGES_PER_SESSION`` messages and ``idle_seconds`` after its last one."""

    settings: RelaySettings
    idle: list[_Idle] = attrs.Factory(list)
    expiry: asyncio.TimerHandle | None = None
    goodbyes: set[asyncio.Task[None]] = attrs.Factory(set)

    async def take(self) -> tuple[aiosmtplib.SMTP, int]:
        """A connected session and how many messages it has sent (0: new)."""
        now = time.monotonic()
        while self.idle:
            session = self.idle.pop()
            if session.client.is_connected and now - session.since < self.settings.idle_seconds:
                return session.client, session.sent
            session.client.close()
        client = _new_client(self.settings)
        try:
            await client.connect()
            if self.settings.credentials_file is not None:
                await _log_in(client, self.settings)
        except BaseException:
            client.close()  # a refused STARTTLS or certificate leaves the connection open
            raise
        return client, 0

    def give_back(self, client: aiosmtplib.SMTP, sent: int) -> None:
        if (not client.is_connected or sent >= MAX_MESSAGES_PER_SESSION
                or len(self.idle) >= MAX_IDLE_SESSIONS or self.settings.idle_seconds <= 0):
            client.close()
            return
        self.idle.append(_Idle(client, time.monotonic(), sent))
        if self.expiry is None:
            self.expiry = asyncio.get_running_loop().call_later(
                self.settings.idle_seconds, self.expire)

    def expire(self) -> None:
        self.expiry = None
        now = time.monotonic()
        stale = [s for s in self.idle if now - s.since >= self.settings.idle_seconds]
        self.idle = [s for s in self.idle if s not in stale]
        if stale:
            task = asyncio.get_running_loop().create_task(_say_goodbye(stale))
            self.goodbyes.add(task)
            task.add_done_callback(self.goodbyes.discard)
        if self.idle:
            self.expiry = asyncio.get_running_loop().call_later(
                self.settings.idle_seconds, self.expire)

    async def close(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        idle, self.idle = self.idle, []
        await asyncio.gather(_say_goodbye(idle), *self.goodbyes)


async def _say_goodbye(sessions: list[_Idle]) -> None:
    """QUIT, so that the relay closes its end too (a TLS session ends cleanly only so)."""
    async def one(client: aiosmtplib.SMTP) -> None:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            await asyncio.wait_for(client.quit(), 5)
        client.close()

    await asyncio.gather(*(one(s.client) for s in sessions))


MAX_MESSAGES_PER_SESSION = 100
MAX_IDLE_SESSIONS = 16


class RelaySessions:
    """The sessions kept open to each relay, per event loop (a session belongs to the loop that
    opened it). Registered as the resource ``smtp-relay-sessions``: opened when the gateway starts,
    every kept session closed with QUIT when it stops. A delivery in a loop the gateway did not
    start (a test calling :func:`deliver` directly) opens its sessions on first use; they are closed
    by :meth:`stop` (or :func:`close_connections`) in that loop."""

    def __init__(self) -> None:
        self._open: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[RelaySettings, _Connections]] = (
            weakref.WeakKeyDictionary())

    async def start(self, _services: Services) -> None:
        self._open.setdefault(asyncio.get_running_loop(), {})

    def connections(self, settings: RelaySettings) -> _Connections:
        per_loop = self._open.setdefault(asyncio.get_running_loop(), {})
        connections = per_loop.get(settings)
        if connections is None:
            connections = per_loop[settings] = _Connections(settings)
        return connections

    async def stop(self) -> None:
        for connections in self._open.pop(asyncio.get_running_loop(), {}).values():
            await connections.close()


SESSIONS = RelaySessions()


async def close_connections() -> None:
    """Close the sessions kept open for this event loop (:meth:`RelaySessions.stop`)."""
    await SESSIONS.stop()


# A kept session that the relay has closed in the meantime fails at once; that is no reason to
# fail the delivery, so it is tried once more on a new session.
_STALE_SESSION = (aiosmtplib.SMTPServerDisconnected, ConnectionError)


async def _send_on_a_session(settings: RelaySettings, outgoing: Outgoing
                             ) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    connections = SESSIONS.connections(settings)
    while True:
        client, sent = await connections.take()
        try:
            result = await _send(client, outgoing)
        except _STALE_SESSION:
            client.close()
            if sent:
                continue
            raise
        except BaseException:
            client.close()
            raise
        connections.give_back(client, sent + 1)
        return result


async def deliver(outgoing: Outgoing, tenant: Tenant) -> DeliveryResult:
    settings: RelaySettings = tenant.settings[SECTION]
    target = f"{settings.host}:{settings.port}"
    try:
        refused, reply = await _send_on_a_session(settings, outgoing)
    except RelayLoginFailed as exc:
        # Not the message's fault: it waits (retried with back-off) until the login works.
        log.error("%s", exc)
        return DeliveryResult.temporary_failure(str(exc))
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        if all(500 <= c < 600 for c in codes):
            return DeliveryResult.permanent_failure(f"{target} refused: {detail}")
        return DeliveryResult.temporary_failure(f"{target} refused: {detail}")
    except aiosmtplib.SMTPNotSupported as exc:
        return DeliveryResult.permanent_failure(f"{target}: {exc}")
    except aiosmtplib.SMTPResponseException as exc:
        if 500 <= exc.code < 600:
            return DeliveryResult.permanent_failure(f"{target}: {_reply(exc)}")
        return DeliveryResult.temporary_failure(f"{target}: {_reply(exc)}")
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return DeliveryResult.temporary_failure(f"{target}: {type(exc).__name__}: {exc}")
    if refused:
        detail = "; ".join(f"{rcpt}: {_reply(r)}" for rcpt, r in refused.items())
        return DeliveryResult.permanent_failure(f"{target} refused: {detail}")
    return DeliveryResult.delivered(f"{target}: {reply}")


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=RelaySettings,
                          description="The SMTP relay that outgoing copies are handed to")]


@hookimpl
def siegel_register_delivery_channels() -> list[DeliveryChannel]:
    return [DeliveryChannel(name="smtp", deliver=deliver,
                            description="SMTP to the configured relay (aiosmtplib, TLS by default)")]


@hookimpl
def siegel_register_resources() -> list[Resource]:
    return [Resource(name="smtp-relay-sessions", start=SESSIONS.start, stop=SESSIONS.stop,
                     description="SMTP sessions kept open to the relay between deliveries")]
