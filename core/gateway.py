"""The SMTP listener (aiosmtpd).

It answers ``250`` for a message only after the store has committed it to disk, ``451`` when it
cannot store it, and refuses what no tenant owns (siegel is never an open relay). It checks the
envelope (client network, sender and recipient syntax, tenant ownership, size) before DATA, so
nothing it has answered 250 for is ever refused later: a message that is merely strange is
quarantined by the pipeline with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import ssl
import weakref
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from siegel.addresses import Address, InvalidAddress
from siegel.config import ListenerConfig, Tenant
from siegel.runtime import NoTenant, Runtime
from siegel.store import StoreError

log = logging.getLogger(__name__)

#: What aiosmtpd passes (and keeps in ``envelope.mail_from``) for the null reverse-path ``<>``.
NULL_SENDER = "<>"


def _parse(address: str) -> Address:
    """Parse an address from the SMTP dialogue. aiosmtpd hands over bytes that are not UTF-8 as
    lone surrogates, which :meth:`Address.parse` cannot encode."""
    try:
        address.encode("utf-8")
    except UnicodeError:
        raise InvalidAddress("the address is not valid UTF-8") from None
    return Address.parse(address)


_HEADER_END = re.compile(rb"\r?\n\r?\n")


def header_block_size(raw: bytes, limit: int) -> int:
    """The size of the header block of ``raw`` (up to the blank line), looking no further than
    just past ``limit``: anything larger than ``limit`` is reported as ``limit + 1``."""
    if raw.startswith((b"\r\n", b"\n")):
        return 0
    end = _HEADER_END.search(raw, 0, limit + 4)
    if end is None:
        return len(raw) if len(raw) <= limit else limit + 1
    return end.start()


def _tenant_id(tenant: Tenant | None) -> str | None:
    return tenant.id if tenant is not None else None


def _sender(envelope: Envelope) -> str | None:
    """The envelope sender, or None for the null reverse-path (bounces, notices)."""
    mail_from = envelope.mail_from
    return None if not mail_from or mail_from == NULL_SENDER else mail_from


class _Storing:
    """Counts messages being stored right now, so a stopping listener can let them finish and
    answer 250 instead of cutting the client off after the commit."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def __enter__(self) -> None:
        self.count += 1
        self.idle.clear()

    def __exit__(self, *exc_info: object) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle.set()


class GatewayHandler:
    """aiosmtpd handler: envelope checks and durable acceptance."""

    def __init__(self, runtime: Runtime, listener: ListenerConfig) -> None:
        self.runtime = runtime
        self.listener = listener
        self.networks = [ipaddress.ip_network(n, strict=False) for n in listener.allowed_clients]
        self.storing = _Storing()

    def _client_allowed(self, session: Session) -> bool:
        peer: object = session.peer  # aiosmtpd's annotation is narrower than what it stores
        host = peer[0] if isinstance(peer, tuple) else None
        if host is None:  # a Unix socket: local by definition
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if not self._client_allowed(session):
            log.warning("refused client %s: not in allowed_clients", session.peer)
            return "554 5.7.1 Client not allowed to send through this gateway"
        if address and address != NULL_SENDER:
            try:
                _parse(address)
            except InvalidAddress as exc:
                return f"553 5.1.7 Invalid sender address: {exc}"
        # The null sender stays "<>" here: aiosmtpd refuses RCPT while mail_from is empty.
        envelope.mail_from = address or NULL_SENDER
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        try:
            recipient = _parse(address)
        except InvalidAddress as exc:
            return f"553 5.1.3 Invalid recipient address: {exc}"
        if len(envelope.rcpt_tos) >= self.listener.max_recipients:
            return "452 4.5.3 Too many recipients; send the rest in another transaction"
        mail_from = _sender(envelope)
        sender = Address.parse(mail_from) if mail_from else None
        config = self.runtime.config
        if config.tenant_of_sender(sender) is None:
            owner = config.tenant_of_recipient(recipient)
            if owner is None:
                return "550 5.7.1 Relaying denied: neither sender nor recipient is a local domain"
            # Compared by id: tenants carry their settings and need not be hashable.
            others = {_tenant_id(config.tenant_of_recipient(Address.parse(r)))
                      for r in envelope.rcpt_tos}
            if others and others != {owner.id}:
                return "452 4.5.3 Recipients of another tenant: send them in another transaction"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw or "").encode("utf-8", "surrogateescape")
        limit = self.listener.max_header_size
        if header_block_size(raw, limit) > limit:
            log.warning("refused a message whose header block exceeds %d bytes", limit)
            return f"552 5.3.4 Message header block too large (limit {limit} bytes)"
        try:
            with self.storing:
                message_id = await self.runtime.submit(raw, _sender(envelope),
                                                       envelope.rcpt_tos)
        except NoTenant as exc:
            return f"550 5.7.1 {exc}"
        except InvalidAddress as exc:
            return f"553 5.1.3 {exc}"
        except StoreError:
            log.exception("could not store a message; answering 451")
            return "451 4.3.0 Message not stored (temporary problem); please try again later"
        except Exception:
            log.exception("unexpected error while accepting a message; answering 451")
            return "451 4.3.0 Message not stored (internal error); please try again later"
        log.info("accepted message %s (%d bytes, %d recipients)", message_id, len(raw),
                 len(envelope.rcpt_tos))
        return f"250 2.0.0 OK queued as {message_id}"


def server_tls_context(listener: ListenerConfig, base: Any) -> ssl.SSLContext | None:
    if listener.starttls == "off":
        return None
    assert listener.tls_certificate and listener.tls_key
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(base.path(listener.tls_certificate), base.path(listener.tls_key))
    return context


class SmtpGateway:
    """One listening socket per ``[[listeners]]`` entry."""

    def __init__(self, runtime: Runtime, *, drain_seconds: float = 10.0) -> None:
        self.runtime = runtime
        #: On stop, how long messages being stored may take to be committed and answered.
        self.drain_seconds = drain_seconds
        self.servers: list[asyncio.Server] = []
        self.handlers: list[GatewayHandler] = []
        self.sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    async def start(self) -> list[tuple[str, int]]:
        """Start listening; returns the bound (host, port) pairs (port 0 binds a free port)."""
        loop = asyncio.get_running_loop()
        bound: list[tuple[str, int]] = []
        # aiosmtpd would look the name up (getfqdn, possibly slow DNS) in every new connection,
        # blocking the event loop; do it once.
        fqdn: str | None = None
        for listener in self.runtime.config.listeners:
            handler = GatewayHandler(self.runtime, listener)
            tls = server_tls_context(listener, self.runtime.config)
            if listener.hostname:
                hostname = listener.hostname
            else:
                if fqdn is None:
                    fqdn = await loop.run_in_executor(None, socket.getfqdn)
                hostname = fqdn

            def factory(handler: GatewayHandler = handler, listener: ListenerConfig = listener,
                        tls: ssl.SSLContext | None = tls, hostname: str = hostname) -> SMTP:
                session = SMTP(
                    handler,
                    data_size_limit=listener.max_message_size,
                    enable_SMTPUTF8=True,
                    decode_data=False,
                    hostname=hostname,
                    ident="siegel ESMTP",
                    tls_context=tls,
                    require_starttls=listener.starttls == "required",
                )
                self.sessions.add(session)
                return session

            server = await loop.create_server(factory, listener.host, listener.port)
            self.servers.append(server)
            self.handlers.append(handler)
            sockname = server.sockets[0].getsockname()
            bound.append((sockname[0], sockname[1]))
        return bound

    async def stop(self) -> None:
        """Stop listening, let messages being stored be answered, then drop the connections.

        Open client connections are closed (an idle client would otherwise keep
        ``wait_closed`` waiting, on Python 3.12 and newer, until aiosmtpd's timeout)."""
        for server in self.servers:
            server.close()
        storing = [h.storing.idle.wait() for h in self.handlers if h.storing.count]
        if storing:
            try:
                await asyncio.wait_for(asyncio.gather(*storing), self.drain_seconds)
            except TimeoutError:
                log.warning("stopping with messages still being stored; their clients get no "
                            "answer and will send them again")
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        for server in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)
        self.servers.clear()
        self.handlers.clear()
