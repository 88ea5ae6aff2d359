"""The SMTP listener (aiosmtpd).

It answers ``250`` for a message only after the store has committed it to disk, ``451`` when it
cannot store it, and refuses what no tenant owns (siegel is never an open relay). It checks the
envelope (client network, sender and recipient syntax, tenant ownership, size) before DATA, so
nothing it has answered 250 for is ever refused later: a message that is merely strange is
quarantined by the pipeline with the reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from siegel.addresses import Address, InvalidAddress
from siegel.config import ListenerConfig
from siegel.runtime import NoTenant, Runtime
from siegel.store import StoreError

log = logging.getLogger(__name__)


class GatewayHandler:
    """aiosmtpd handler: envelope checks and durable acceptance."""

    def __init__(self, runtime: Runtime, listener: ListenerConfig) -> None:
        self.runtime = runtime
        self.listener = listener
        self.networks = [ipaddress.ip_network(n, strict=False) for n in listener.allowed_clients]

    def _client_allowed(self, session: Session) -> bool:
        peer = session.peer
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
        if address:
            try:
                Address.parse(address)
            except InvalidAddress as exc:
                return f"553 5.1.7 Invalid sender address: {exc}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        try:
            recipient = Address.parse(address)
        except InvalidAddress as exc:
            return f"553 5.1.3 Invalid recipient address: {exc}"
        if len(envelope.rcpt_tos) >= self.listener.max_recipients:
            return "452 4.5.3 Too many recipients; send the rest in another transaction"
        sender = Address.parse(envelope.mail_from) if envelope.mail_from else None
        config = self.runtime.config
        if config.tenant_of_sender(sender) is None:
            owner = config.tenant_of_recipient(recipient)
            if owner is None:
                return "550 5.7.1 Relaying denied: neither sender nor recipient is a local domain"
            others = {config.tenant_of_recipient(Address.parse(r)) for r in envelope.rcpt_tos}
            if others and others != {owner}:
                return "452 4.5.3 Recipients of another tenant: send them in another transaction"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw or "").encode("utf-8", "surrogateescape")
        try:
            message_id = await self.runtime.submit(raw, envelope.mail_from or None,
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

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.servers: list[asyncio.Server] = []

    async def start(self) -> list[tuple[str, int]]:
        """Start listening; returns the bound (host, port) pairs (port 0 binds a free port)."""
        loop = asyncio.get_running_loop()
        bound: list[tuple[str, int]] = []
        for listener in self.runtime.config.listeners:
            handler = GatewayHandler(self.runtime, listener)
            tls = server_tls_context(listener, self.runtime.config)

            def factory(handler: GatewayHandler = handler, listener: ListenerConfig = listener,
                        tls: ssl.SSLContext | None = tls) -> SMTP:
                return SMTP(
                    handler,
                    data_size_limit=listener.max_message_size,
                    enable_SMTPUTF8=True,
                    decode_data=False,
                    hostname=listener.hostname,
                    ident="siegel ESMTP",
                    tls_context=tls,
                    require_starttls=listener.starttls == "required",
                )

            server = await loop.create_server(factory, listener.host, listener.port)
            self.servers.append(server)
            sockname = server.sockets[0].getsockname()
            bound.append((sockname[0], sockname[1]))
        return bound

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
        self.servers.clear()
